"""Assembling the Tuner: preflight, Ray session, searcher, scheduler, callbacks, result.

Everything that can be checked before a trial starts is checked here, in the driver, with
errors that name the sweep file and key: data loads, the builder imports and returns a model
that accepts the data, the objective metric is one the model will log. Only then does Ray
start spending workers on the sweep.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from sweep import config as config_module
from sweep.config import CategoricalParam, InputError, SweepConfig, SweepConfigError, condition_order
from sweep.results import SweepResult

log = logging.getLogger("sweep")

DEFAULT_STORAGE = "sweep_runs"


@dataclass
class Prepared:
    """A validated sweep with its data loaded and its model factory resolved."""

    config: SweepConfig
    label: str  # the sweep file, for error lines
    dataset: Any
    builder: Callable
    search_paths: tuple[Path, ...]


def run(
    source: str | Path | Mapping[str, Any],
    *,
    storage: str | None = None,
    address: str | None = None,
    quiet: bool = False,
    stream: Any = None,
    **overrides: Any,
) -> SweepResult:
    """Run a sweep from a YAML path or a dict; ``overrides`` are dotted keys or aliases.

    Example: ``sweep.run("search_spaces/digits_mlp.yaml", trials=8, epochs=4)``.
    """
    tracking_uri = overrides.pop("tracking_uri", None)
    config = config_module.load(source, overrides)
    if tracking_uri:
        config.tracking.uri = tracking_uri
    prepared = prepare(config, _label(source), _search_paths(source))
    return execute(prepared, storage=storage, address=address, quiet=quiet, stream=stream)


def _label(source: Any) -> str:
    return "<dict>" if isinstance(source, Mapping) else str(source)


def _search_paths(source: Any) -> tuple[Path, ...]:
    paths = [Path.cwd()]
    if not isinstance(source, Mapping):
        paths.insert(0, Path(source).resolve().parent)
    return tuple(paths)


# ---------------------------------------------------------------------------------------------
# preflight


def prepare(config: SweepConfig, label: str, search_paths: tuple[Path, ...] = ()) -> Prepared:
    """Load data, resolve the builder and try one model in the driver (errors name the file)."""
    _quiet_tensorflow()
    from sweep import data, models

    try:
        dataset = data.load(config.data, search_paths)
        builder = models.resolve_builder(config.model, search_paths)
        _preflight_model(config, builder, dataset)
    except InputError as exc:
        raise SweepConfigError(label, exc.key, exc.expected) from None
    return Prepared(config, label, dataset, builder, search_paths)


def example_hyperparameters(config: SweepConfig) -> dict[str, Any]:
    """One valid point of the space (first choices, lows), respecting ``when:`` conditions."""
    space = config.search.space
    hp: dict[str, Any] = {}
    for name in condition_order(space):
        param = space[name]
        when = param.when or {}
        if all(hp.get(k) in (v if isinstance(v, list) else [v]) for k, v in when.items()):
            hp[name] = param.choices[0] if isinstance(param, CategoricalParam) else param.low
    return hp


def _preflight_model(config: SweepConfig, builder: Callable, dataset: Any) -> None:
    """Build one model and evaluate a few rows, so shape and metric mistakes surface now."""
    import keras

    from sweep import models
    from sweep.callbacks import keras_callbacks

    keras_callbacks(config.fit, config.objective)
    hp = example_hyperparameters(config)
    model = models.build(builder, hp, dataset.info, config.model)
    rows = min(8, len(dataset.x_val))
    try:
        logs = model.evaluate(dataset.x_val[:rows], dataset.y_val[:rows], verbose=0, return_dict=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            "model.builder",
            f"expected a model that accepts inputs of shape {dataset.info.input_shape} and "
            f"targets for {dataset.info.num_outputs} output(s) ({dataset.info.task}), but evaluating it failed: {first[:300]}",
        ) from None
    finally:
        keras.backend.clear_session()
    names = sorted(set(logs) | {f"val_{name}" for name in logs})
    if config.objective.metric not in names:
        raise InputError("objective.metric", f"expected one of the metrics the model logs ({', '.join(names)}), got {config.objective.metric!r}")


def _quiet_tensorflow() -> None:
    """TensorFlow's C++ start-up chatter (oneDNN, missing CUDA) is noise in a sweep's output.

    TF 2.21 prints it through absl before any log level applies, so the one import in the
    driver runs with file descriptor 2 pointed at /dev/null; an import error still raises.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" not in sys.modules:
        with _stderr_silenced():
            import tensorflow  # noqa: F401
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _quiet_ray_and_optuna() -> None:
    """Keep the terminal for the sweep's own view: Ray/Optuna notices that need no action go."""
    import warnings

    import optuna

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # we record results ourselves
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name in ("ray.tune.analysis.experiment_analysis", "ray.tune.result_grid", "ray._private.authentication"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import mlflow  # noqa: F401 - mlflow sets up its logger on import; quiet it afterwards

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------------------
# the Ray side


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` (or RAY_ADDRESS); else start a local Ray bound to 127.0.0.1."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    env = {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow", "PYTHONWARNINGS": "ignore"}}
    common = dict(log_to_driver=False, logging_level=logging.ERROR, runtime_env=env)
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", **common)


def execute(prepared: Prepared, *, storage: str | None = None, address: str | None = None, quiet: bool = False, stream: Any = None) -> SweepResult:
    """Launch the trials and return the result; MLflow is complete when this returns."""
    _quiet_ray_and_optuna()
    import ray
    from ray import tune

    from sweep import schedulers, space, trainable, tracking
    from sweep.progress import LiveView
    from sweep.results import Ledger

    config = prepared.config
    started = time.time()
    uri = tracking.resolve_uri(config.tracking.uri)
    storage_path = str(Path(storage or DEFAULT_STORAGE).expanduser().resolve()) if "://" not in (storage or "") else storage
    ledger = Ledger(config.objective.metric, config.objective.mode, space.hyperparameters, config.max_epochs)
    try:
        tracker = tracking.MLflowTracker(ledger, uri, config.experiment, config.name, sweep_params(config))
        tracker.registered_model = config.tracking.registered_model or config.name
    except Exception as exc:
        raise SweepConfigError(prepared.label, "tracking.uri", f"expected a reachable MLflow tracking store at {uri}, but: {str(exc).splitlines()[0][:300]}") from None
    view = LiveView(ledger, config.name, trial_budget(config), stream=stream, quiet=quiet)
    ensure_ray(address)
    data_ref = ray.put(prepared.dataset)
    settings = trainable.TrialSettings.from_config(config)
    tuner = tune.Tuner(
        trainable.make(settings, data_ref, prepared.dataset.info.fingerprint, prepared.builder),
        tune_config=tune.TuneConfig(
            metric=config.objective.metric,
            mode=config.objective.mode,
            search_alg=space.make_searcher(config.search, config.objective.metric, config.objective.mode),
            scheduler=schedulers.build(config),
            num_samples=trial_budget(config),
            max_concurrent_trials=config.search.max_concurrent,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=config.name,
            storage_path=storage_path,
            callbacks=[ledger, tracker, view],
            # Trials checkpoint only on improvement and the ledger prunes superseded ones; Ray's
            # own num_to_keep would force an experiment snapshot per checkpoint (cost grows with trials).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            failure_config=tune.FailureConfig(max_failures=0),
            verbose=0,
        ),
    )
    status = "FAILED"
    try:
        tuner.fit()
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        view.stop()
        result = SweepResult(
            name=config.name,
            metric=config.objective.metric,
            mode=config.objective.mode,
            best=ledger.best_trial(),
            trials=ledger.frame(),
            tracking_uri=uri,
            experiment=config.experiment,
            parent_run_id=tracker.parent_run_id,
            storage=str(Path(storage_path) / config.name) if "://" not in storage_path else f"{storage_path}/{config.name}",
            wall_seconds=time.time() - started,
        )
        if result.best is None and status == "FINISHED":
            status = "FAILED"
        tracker.finish(result, status, input_example=prepared.dataset.x_val[:5])
        result.trials = ledger.frame()  # now with MLflow run ids
        if status != "KILLED":
            from sweep.report import log_to_parent_run

            log_to_parent_run(uri, config.name, tracker.parent_run_id)  # warns, never raises
    return result


def trial_budget(config: SweepConfig) -> int:
    """``search.trials``, capped by the grid's size: a grid never repeats a configuration."""
    from sweep import space

    if config.search.sampler == "grid":
        return min(config.search.trials, space.grid_size(config.search))
    return config.search.trials


def sweep_params(config: SweepConfig) -> dict[str, Any]:
    """The sweep's settings as flat ``config.*`` params of the parent run (space excluded)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value and prefix != "config.search.space":
            for key, item in value.items():
                walk(f"{prefix}.{key}", item)
        else:
            flat[prefix] = value

    walk("config", config.model_dump(mode="json"))
    return flat
