"""Assembling the Tuner: preflight, Ray session, searcher, scheduler, callbacks, result.

Everything that can be checked before a trial starts is checked here, in the driver, with
errors that name the sweep file and key: data loads, the builder imports and returns a model
that accepts the data, the objective metric is one the model will log. Only then does Ray
start spending workers on the sweep.
"""

from __future__ import annotations

import contextlib
import json
import dataclasses
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from sweep.driver import cluster
from sweep.spec import config as config_module
from sweep.spec.config import CategoricalParam, SweepConfig, condition_order
from sweep.errors import InputError, SweepConfigError
from sweep.driver.ledger import SweepResult
from sweep.protocol import TrialStatus
from sweep.tracking.tags import (
    CONFIG_HASH_TAG, DATA_INPUTS_TAG, DATA_LABELS_TAG, DATA_OUTPUTS_TAG, DATA_TAG, DATA_TASK_TAG, FILE_TAG, STORAGE_ROOT_TAG,
)

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
    fresh: bool = False,
    **overrides: Any,
) -> SweepResult:
    """Run a sweep from a YAML path or a dict; ``overrides`` are dotted keys or aliases.

    Example: ``sweep.run("search_spaces/digits_mlp.yaml", trials=8, epochs=4)``.

    The resume rule, with no prompt: if the newest run of a sweep with this name never
    finished (its driver died) and no live driver holds it, the same sweep file continues it;
    a changed file is refused unless ``fresh=True`` (which closes the old run as KILLED and
    starts over). A finished sweep of the same name is never touched: a new run starts.
    """
    started = time.time()  # the elapsed time users see counts from here (Ray start-up included)
    tracking_uri = overrides.get("tracking_uri")  # validated with the file (a URI without a scheme is one line)
    config = config_module.load(source, overrides)
    overrides.pop("tracking_uri", None)
    if cluster.is_client_address(cluster.resolve_address(address)):  # Ray Client: the driver runs on the cluster
        extra = {**overrides, "tracking_uri": tracking_uri or config.tracking.uri, "fresh": fresh}
        return cluster.run_via_client(source, cluster.resolve_address(address), storage=storage, quiet=quiet, overrides=extra)
    if tracking_uri:
        config.tracking.uri = tracking_uri
    label = _label(source)
    storage_dir = storage_folder(storage, config.name)
    resume_state = _decide_resume(config, label, storage_dir, fresh)
    prepared = prepare_while_ray_starts(config, label, _search_paths(source), address)
    _say_what_the_data_is(prepared, quiet, stream)
    return execute(prepared, storage=storage, address=address, quiet=quiet, stream=stream, resume=resume_state, started=started)


def resume(
    name: str,
    *,
    tracking_uri: str | None = None,
    storage: str | None = None,
    address: str | None = None,
    quiet: bool = False,
    stream: Any = None,
) -> SweepResult:
    """Continue the unfinished sweep ``name`` from the sweep file recorded on its parent run."""
    started = time.time()
    from sweep.driver import recovery as resume_module
    from sweep.tracking.client import resolve_uri

    uri = resolve_uri(tracking_uri)
    _check_tracking(uri, "--tracking-uri")
    parent = resume_module.unfinished_parent(uri, name)
    if parent is None:
        raise SweepConfigError(name, "", f"expected an unfinished sweep named {name!r} in {uri}, found none to resume")
    source_file = parent.data.tags.get(FILE_TAG, "")
    config = config_module.load(_recorded_sweep(uri, parent, source_file, name), {"tracking.uri": uri})
    label = source_file or name
    storage_dir = storage_folder(storage or parent.data.tags.get(STORAGE_ROOT_TAG), config.name)
    state = _decide_resume(config, label, storage_dir, fresh=False)
    search = (Path(source_file).parent,) if source_file else ()
    prepared = prepare_while_ray_starts(config, label, search + (Path.cwd(),), address)
    _say_what_the_data_is(prepared, quiet, stream)
    root = storage or parent.data.tags.get(STORAGE_ROOT_TAG)
    return execute(prepared, storage=root, address=address, quiet=quiet, stream=stream, resume=state, started=started)


def _recorded_sweep(uri: str, parent: Any, source_file: str, name: str) -> Any:
    """The sweep file an unfinished sweep recorded (``sweep/config.json``), or, when its driver
    was killed before recording it, the file named by its ``sweep.file`` tag (the config hash
    check that follows refuses it if it changed since)."""
    from sweep.tracking.client import client

    try:
        return json.loads(Path(client(uri).download_artifacts(parent.info.run_id, "sweep/config.json")).read_text())
    except Exception:
        if source_file and Path(source_file).is_file():
            return Path(source_file)
        raise SweepConfigError(
            name, "", "expected the unfinished sweep's recorded sweep file (sweep/config.json), but its driver stopped before "
            "recording it: run `sweep run FILE` with the sweep file again, it continues the sweep",
        ) from None


def _say_what_the_data_is(prepared: Prepared, quiet: bool, stream: Any) -> None:
    """One line at the start: what the sweep read from the data (task, outputs, inputs)."""
    if not quiet:
        print(f"data: {prepared.dataset.info.summary()}", file=stream or sys.stdout)


def storage_folder(storage: str | None, name: str) -> str:
    """Where Ray keeps this sweep's checkpoints and state: ``<storage>/<name>``."""
    root = storage or DEFAULT_STORAGE
    if "://" in root:
        return f"{root.rstrip('/')}/{name}"
    return str(Path(root).expanduser().resolve() / name)


def config_hash(config: SweepConfig) -> str:
    """What must not change for a resume to make sense (the budget and the store may)."""
    import hashlib

    data = config.model_dump_json(exclude={"search": {"trials"}, "tracking": {"uri"}})
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _decide_resume(config: SweepConfig, label: str, storage_dir: str, fresh: bool) -> Any:
    from sweep.driver import recovery as resume_module
    from sweep.tracking.client import resolve_uri, store_exists

    uri = resolve_uri(config.tracking.uri)
    _check_tracking(uri, label)  # first: MLflow's own HTTP retries below take minutes on a dead server
    if not store_exists(uri):
        return None
    try:
        parent = resume_module.unfinished_parent(uri, config.name)
    except Exception:
        return None  # an unreachable store is reported when tracking starts
    if parent is None:
        return None
    holder = resume_module.live_driver(storage_dir)
    if holder is not None:
        raise SweepConfigError(label, "name", f"expected a sweep that is not running, but {config.name!r} is running (pid {holder.get('pid')} on {holder.get('host')})")
    if fresh:
        _close_abandoned(uri, parent)
        return None
    if parent.data.tags.get(CONFIG_HASH_TAG) != config_hash(config):
        raise SweepConfigError(
            label, "name",
            f"expected the same sweep file as the unfinished sweep {config.name!r} (it changed): "
            f"run `sweep resume {config.name}` to continue it, or `sweep run FILE --fresh` to start over",
        )
    return resume_module.load_state(uri, parent, config)


def _check_tracking(uri: str, label: str) -> None:
    """An unreachable tracking server is one line in seconds, before anything else asks it."""
    from sweep.tracking.client import check_reachable, redact, set_sweep_http_defaults

    set_sweep_http_defaults()  # the writer retries outages itself
    try:
        check_reachable(uri)
    except ConnectionError as exc:
        raise SweepConfigError(label, "tracking.uri", f"expected a reachable MLflow tracking store at {redact(uri)}, but: {exc}") from None


def _check_resources(config: SweepConfig, label: str) -> None:
    """A trial no node can ever hold would wait forever: refuse it before the first trial, naming
    the key and what the cluster offers (skipped on a cluster declared autoscaling)."""
    import ray

    if cluster.autoscaling():
        log.warning("the cluster is declared autoscaling (SWEEP_AUTOSCALING=1): trials wait for nodes with the resources they need")
        return
    res = config.resources
    need = {"cpus_per_trial": res.cpus_per_trial, "gpus_per_trial": res.gpus_per_trial, **{f"custom.{k}": v for k, v in res.custom.items()}}
    try:
        nodes = ray.nodes()
    except Exception:  # cannot tell: let Tune schedule
        return
    shortfall = cluster.resource_shortfall(need, nodes)
    if shortfall is not None:
        raise SweepConfigError(label, *shortfall)


def _close_abandoned(uri: str, parent: Any) -> None:
    """``--fresh``: the old unfinished runs end as KILLED rather than RUNNING forever."""
    from sweep.tracking.client import client as mlflow_client
    from sweep.tracking.store import child_runs

    client = mlflow_client(uri)
    for run in child_runs(uri, parent):
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, "KILLED")
    client.set_terminated(parent.info.run_id, "KILLED")


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
    from sweep.inputs import data
    from sweep.inputs import models

    try:
        dataset = data.load(config.data, search_paths)
        dataset.class_weight = data.class_weights(config.fit.class_weight, dataset)
        builder = models.resolve_builder(config.model, search_paths)
        _check_names(config, builder, dataset)
        _preflight_model(config, builder, dataset)
    except InputError as exc:
        raise SweepConfigError(label, exc.key, exc.expected) from None
    return Prepared(config, label, dataset, builder, search_paths)


def _check_names(config: SweepConfig, builder: Callable, dataset: Any) -> None:
    """Names that reach Keras (optimizer, activation, loss and metric choices) against its registries."""
    from sweep.inputs import models
    from sweep.search import space as space_module

    if config.search.sampler == "grid":
        space_module.check_grid_size(config.search)  # refused before the grid is listed (it could fill the memory)
    space = config.search.space
    compiles = True
    if ("optimizer" in space or "loss" in space) and config.model.builder not in models.BUILDERS:
        compiles = models.sweep_compiles(builder, example_hyperparameters(config), dataset.info, config.model)
    models.check_names(space, config.model, compiles)


def prepare_while_ray_starts(config: SweepConfig, label: str, search_paths: tuple[Path, ...], address: str | None) -> Prepared:
    """:func:`prepare` in a thread while this one starts (or joins) Ray.

    Both take seconds and they hardly compete: the preflight is this process importing
    TensorFlow and building a model, while ``ray.init`` mostly waits for the GCS and raylet
    processes it spawns. Measured on 2 cores: 5.1 s one after the other, 3.8 s side by side.
    Ray starts in the main thread because ``ray.init`` from another thread lost its GCS
    connection here. A config error still wins over a Ray error, as when they ran in order,
    because the user must fix the sweep file first. Joining a cluster (an address) stays
    after the preflight: an unreachable address can keep ``ray.init`` retrying for minutes,
    and a mistake in the sweep file must not wait for that.
    """
    import threading

    if address or os.environ.get("RAY_ADDRESS"):
        prepared = prepare(config, label, search_paths)
        ensure_ray(address)
        return prepared

    import ray  # noqa: F401 - imported before the thread starts, so the two never import Ray's modules at once

    outcome: dict[str, Any] = {}

    def preflight() -> None:
        try:
            outcome["prepared"] = prepare(config, label, search_paths)
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=preflight, name="sweep-preflight", daemon=True)
    thread.start()
    ray_error: BaseException | None = None
    try:
        ensure_ray(address)
    except Exception as exc:
        ray_error = exc
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    if ray_error is not None:
        raise ray_error
    return outcome["prepared"]


def example_hyperparameters(config: SweepConfig, fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One valid point of the space (first choices, lows), respecting ``when:`` conditions.

    ``fixed`` sets some entries (each kept only where its own condition holds).
    """
    from sweep.search.space import condition_holds

    space = config.search.space
    fixed = fixed or {}
    hp: dict[str, Any] = {}
    for name in condition_order(space):
        param = space[name]
        if condition_holds(param.when, hp):
            hp[name] = fixed[name] if name in fixed else (param.choices[0] if isinstance(param, CategoricalParam) else param.low)
    return hp


MAX_EXAMPLE_POINTS = 12  # models the preflight builds (not trains) to see which hyperparameters are read


def example_points(config: SweepConfig) -> list[dict[str, Any]]:
    """Points of the space that walk its branches: the first point, each categorical choice
    (and each value a ``when:`` names) one at a time, and every number at its high end.
    At most :data:`MAX_EXAMPLE_POINTS`."""
    space = config.search.space
    points = [example_hyperparameters(config)]
    highs = {n: p.high for n, p in space.items() if not isinstance(p, CategoricalParam)}
    points.append(example_hyperparameters(config, highs))
    for name, param in space.items():
        values = list(param.choices[1:]) if isinstance(param, CategoricalParam) else []
        for other in space.values():
            wanted = (other.when or {}).get(name)
            values += wanted if isinstance(wanted, list) else ([wanted] if wanted is not None else [])
        for value in values:
            points.append(example_hyperparameters(config, {name: value}))
    unique: list[dict[str, Any]] = []
    for point in points:
        if point not in unique:
            unique.append(point)
    return unique[:MAX_EXAMPLE_POINTS]


def _preflight_model(config: SweepConfig, builder: Callable, dataset: Any) -> None:
    """Build one model and evaluate a few rows, so shape and metric mistakes surface now;
    then check that every space entry is read by something (:func:`check_hyperparameters_read`)."""
    import keras

    from sweep.inputs import models
    from sweep.worker.callbacks import keras_callbacks
    from sweep.worker.checkpoints import check_reloadable

    keras_callbacks(config.fit, config.objective)
    _check_fit_settings(config, dataset)
    hp = example_hyperparameters(config)
    model = models.build(builder, hp, dataset.info, config.model)
    check_reloadable(model, config.model)  # loads back with model.safe_mode / custom objects, before any trial
    try:
        logs = _evaluate_few(model, dataset)
    except Exception as exc:
        models.check_model_output(model, dataset.info)  # evaluating failed: a width that does not fit the targets is the likely cause, said plainly
        first = _telling_line(exc)
        raise InputError(
            "model.builder",
            f"expected a model that accepts inputs of shape {_input_text(dataset.info)} and "
            f"targets for {_output_text(dataset.info)}, but evaluating it failed: {first[:300]}",
        ) from None
    finally:
        keras.backend.clear_session(free_memory=False)  # no full GC (0.25-0.45 s with TF loaded) on the start-up path
    names = sorted(set(logs) | {f"val_{name}" for name in logs})
    if config.objective.metric not in names:
        raise InputError("objective.metric", f"expected one of the metrics the model logs ({', '.join(names)}), got {config.objective.metric!r}")
    _check_objective_name(config.objective.metric)
    check_hyperparameters_read(config, models.hyperparameters_read(builder, dataset.info, example_points(config)))


def _telling_line(exc: BaseException) -> str:
    """The line of an error that says what went wrong: TensorFlow's start with a header
    ("Graph execution error:") and node names; the cause is a later line."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    skip = ("Graph execution error", "Detected at node", "File ", "[[", "Traceback", "Stack trace")
    telling = [line for line in lines if not line.startswith(skip) and not line.endswith(":")]
    return (telling or lines or [type(exc).__name__])[0]


def _check_objective_name(metric: str) -> None:
    """Other metrics MLflow refuses are logged under a sanitized name (sweep.tracking.writer), but the
    objective is read back from MLflow by name (sweep best, resume, warm start): refuse it."""
    from sweep.tracking.writer import name_problem, sanitized

    problem = name_problem(metric)
    if problem:
        raise InputError(
            "objective.metric",
            f"expected a metric name MLflow can record, got {metric!r} ({problem}): name the metric without it in the model, e.g. {sanitized(metric)!r}",
        )


def _evaluate_few(model: Any, dataset: Any, rows: int = 8) -> dict[str, float]:
    from sweep.inputs.structures import take_rows

    def first(part: Any) -> Any:
        return None if part is None else take_rows(part, slice(0, rows))

    return model.evaluate(
        first(dataset.x_val), first(dataset.y_val), sample_weight=first(dataset.val_sample_weight), verbose=0, return_dict=True
    )


def _input_text(info: Any) -> str:
    shapes = info.input_shapes if info.input_shapes is not None else info.input_shape
    return str(shapes) if info.num_inputs > 1 else str(tuple(info.input_shape))


def _output_text(info: Any) -> str:
    if info.num_heads > 1:
        return f"outputs {info.output_sizes}"
    return f"{info.num_outputs} output(s) ({info.task})"


def _check_fit_settings(config: SweepConfig, dataset: Any) -> None:
    """fit() settings that the data cannot honour, refused before any trial."""
    info, space = dataset.info, config.search.space
    pipeline = getattr(dataset, "pipeline", None)
    if pipeline is not None and "batch_size" in space and not pipeline.takes_batch_size:
        raise InputError(
            "search.space.batch_size",
            f"expected a data function that takes batch_size, since {info.source} returns pipelines: "
            "add a batch_size parameter to it (the trial's batch size is passed), or remove batch_size from the space",
        )
    if pipeline is not None and pipeline.is_generator and config.fit.steps_per_epoch is None:
        raise InputError("fit.steps_per_epoch", f"expected fit.steps_per_epoch for the generators of {info.source} (a generator has no length), got none")
    if pipeline is None and not getattr(info, "streamed", False) and info.n_train > 0:
        _check_batch_size_fits(config, info.n_train)
    if config.fit.class_weight is not None and info.num_heads > 1:
        raise InputError("fit.class_weight", f"expected a model with one output for class_weight (Keras' rule), got {info.num_heads} outputs: use sample weights per output")


def _check_batch_size_fits(config: SweepConfig, rows: int) -> None:
    """A batch larger than the training rows cannot run (each trial would fail as infeasible):
    the fixed fit.batch_size, or any value of a searched batch_size, is refused now."""
    searched = config.search.space.get("batch_size")
    what = f"expected at most {rows} (the training rows)"
    if searched is None:
        if config.fit.batch_size > rows:
            raise InputError("fit.batch_size", f"{what}, got {config.fit.batch_size}")
    elif isinstance(searched, CategoricalParam):
        for index, value in enumerate(searched.choices):
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > rows:
                raise InputError(f"search.space.batch_size.choices.{index}", f"{what}, got {value}")
    elif getattr(searched, "high", 0) > rows:
        raise InputError("search.space.batch_size.high", f"{what}, got {config_module.show_value(searched.high)}")


def check_hyperparameters_read(config: SweepConfig, read: set[str]) -> None:
    """Every space entry must be read by the factory, the optimizer, compile or fit: one that
    nothing reads would be sampled, logged and ranked with no effect on training."""
    import difflib

    from sweep.inputs.models import TRIAL_HP_KEYS

    for name in config.search.space:
        if name in read:
            continue
        known = sorted(k for k in read if k not in TRIAL_HP_KEYS) or ["none"]
        close = difflib.get_close_matches(name, sorted(read), n=1, cutoff=0.75)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(
            f"search.space.{name}",
            f"expected a hyperparameter that the model factory, the optimizer, compile or fit reads, got {name!r}, which nothing reads "
            f"(read: {', '.join(known)}; a factory that reads it only on some branches: give it a when: condition){guess}",
        )


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


class _TrialFailureFilter(logging.Filter):
    """Drops Ray Tune's own reports of trial failures; every other Tune message passes."""

    PREFIXES = ("Trial task failed for trial", "Trials did not complete")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.PREFIXES)


def _quiet_ray_and_optuna() -> None:
    """Keep the terminal for the sweep's own view: Ray/Optuna notices that need no action go."""
    import warnings

    import optuna

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # we record results ourselves
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")  # a stopped trial's error is ours to report, once
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name in ("ray.tune.analysis.experiment_analysis", "ray.tune.result_grid", "ray._private.authentication"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # A failed trial's traceback is the sweep's to tell (one line per trial in the live view,
    # the tail once when fail_fast stops a sweep), not Ray's to print in full for every trial.
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune"):
        tune_logger = logging.getLogger(name)
        if not any(isinstance(f, _TrialFailureFilter) for f in tune_logger.filters):
            tune_logger.addFilter(_TrialFailureFilter())
    from sweep.tracking import client  # noqa: F401 - sets MLflow's environment (telemetry) before mlflow loads
    import mlflow  # noqa: F401 - mlflow sets up its logger on import; quiet it afterwards

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------------------
# the Ray side


def is_secret_name(name: str) -> bool:
    """An environment variable that holds a credential (AWS_SECRET_ACCESS_KEY, *_TOKEN, *_PASSWORD, ...)."""
    import re

    return bool(re.search(r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|ACCESS_KEY|API_KEY|PRIVATE_KEY", name.upper()))


def _withhold_secrets_from_ray() -> None:
    """Ray Tune copies AWS_* credentials from the driver's environment into every trial actor's
    runtime_env, and Ray's runtime env agent writes runtime_envs in clear to its log (a world-
    readable file under the temp folder, kept after the sweep). The sweep never hands them over:
    a local Ray's workers inherit the driver's environment anyway; a cluster's nodes use their own."""
    from ray.tune.execution import class_cache

    names = class_cache.ENV_VARS_TO_PROPAGATE
    if any(is_secret_name(name) for name in names):
        class_cache.ENV_VARS_TO_PROPAGATE = type(names)(name for name in names if not is_secret_name(name))


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` (or RAY_ADDRESS); else start a local Ray bound to 127.0.0.1."""
    import ray

    _withhold_secrets_from_ray()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    env = {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow", "PYTHONWARNINGS": "ignore"}}
    # A reused worker waits this long for a stopped trial's thread to end; past it (Ray's default
    # is 2 s, less than one busy epoch on 2 cores) the reuse fails and the *next* trial errors.
    env["env_vars"]["TUNE_FUNCTION_THREAD_TIMEOUT_S"] = os.environ.get("TUNE_FUNCTION_THREAD_TIMEOUT_S", "30")
    common = dict(log_to_driver=False, logging_level=logging.ERROR)
    if address:
        address = cluster.bootstrap_address(address)  # "auto" -> the HOST:PORT Ray would pick
        try:  # seconds, and Ctrl-C works: ray.init of a dead address retries for minutes in C++
            cluster.check_address(address)
        except ConnectionError as exc:
            raise SweepConfigError("--address", "", f"{address}: {exc}") from None
        with cluster.connecting(address):  # a loopback-only cluster is joined on loopback
            ray.init(address=address, runtime_env=env, **common)
    else:
        # A local Ray's workers inherit this process's environment, so the variables go there
        # rather than into a job runtime_env: Ray prestarts idle workers when it starts, and
        # only a job without a runtime_env can hand them to the trial actors (with one, they
        # sat unused while each actor started a process of its own). The values win over the
        # driver's, as the runtime_env's did (workers run Keras on TensorFlow whatever
        # KERAS_BACKEND a user exports), except TensorFlow's log level: the driver's own is kept.
        for name, value in env["env_vars"].items():
            if name == "TF_CPP_MIN_LOG_LEVEL":
                os.environ.setdefault(name, value)
            else:
                os.environ[name] = value
        with cluster.loopback_only():  # otherwise Ray 2.x on Linux listens on every interface
            ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", **common)


def execute(
    prepared: Prepared,
    *,
    storage: str | None = None,
    address: str | None = None,
    quiet: bool = False,
    stream: Any = None,
    resume: Any = None,
    trial: Callable | None = None,
    started: float | None = None,
) -> SweepResult:
    """Launch the trials and return the result; MLflow is complete when this returns.

    ``trial`` replaces the Keras trial body (see ``trainable.make``); only benchmarks pass it.
    ``started``: when the command began (``run``/``resume`` pass it), so the live view's elapsed
    time and ``wall_seconds`` include Ray's start-up; default now.

    With ``resume`` (a ``recovery.ResumeState``) the earlier session's ended trials are kept,
    given to Optuna as history and not re-run; its interrupted trials run first, from their
    checkpoints, in their own MLflow runs; only the rest of the budget is new.
    """
    from sweep.driver import recovery as resume_module
    _quiet_ray_and_optuna()
    import ray
    from ray import tune

    from sweep.search import schedulers
    from sweep.search import space
    from sweep.driver import retries
    from sweep.worker import launch, trainable
    from sweep.tracking import tracker as tracking
    from sweep.tracking.client import check_reachable, redact, resolve_uri
    from sweep.views.progress import LiveView
    from sweep.driver.ledger import FailFast, Ledger

    config = prepared.config
    started = started or time.time()
    uri = resolve_uri(config.tracking.uri)
    storage_path = str(Path(storage or DEFAULT_STORAGE).expanduser().resolve()) if "://" not in (storage or "") else storage
    ledger = Ledger(config.objective.metric, config.objective.mode, space.hyperparameters, config.max_epochs)
    storage_dir = storage_folder(storage_path, config.name)
    if resume is not None:
        ledger.seed(resume.ended + resume.interrupted)
    from sweep.search import warmstart

    try:  # before the parent run exists, so a wrong warm_start name leaves no empty run behind
        warm = warmstart.prepare(config.search, config.objective.metric, config.objective.mode, uri)
    except InputError as exc:
        raise SweepConfigError(prepared.label, exc.key, exc.expected) from None
    try:  # before the parent run exists: an unwritable --storage leaves no run behind
        resume_module.take_lock(storage_dir)
    except resume_module.StorageNotWritable as exc:
        raise SweepConfigError("--storage", "", str(exc)) from None
    try:
        ensure_ray(address)
        _check_resources(config, prepared.label)  # a trial no node can hold would wait forever
        check_reachable(uri)
    except BaseException:
        resume_module.release_lock(storage_dir)
        raise
    try:
        tracker = tracking.MLflowTracker(
            ledger, uri, config.experiment, config.name, sweep_params(config), parent_tags(prepared, storage_path), resume=resume
        )
        if resume is None:
            tracker.log_config(_config_json(config))
        tracker.registered_model = config.tracking.registered_model or config.name
        tracker.model_settings = (config.model, tuple(prepared.search_paths))  # how the best model loads
        tracker.checkpoint_quota_mb = config.resources.checkpoint_quota_mb
    except Exception as exc:
        resume_module.release_lock(storage_dir)
        raise SweepConfigError(prepared.label, "tracking.uri", f"expected a reachable MLflow tracking store at {redact(uri)}, but: {str(exc).splitlines()[0][:300]}") from None
    fail_fast = FailFast(ledger, config.failure.fail_fast)
    view = LiveView(ledger, config.name, trial_budget(config), stream=stream, quiet=quiet, rungs=LiveView.rungs_for(config), started=started)
    ended = len(resume.ended) if resume is not None else 0
    if resume is not None and not quiet:
        print(f"resuming sweep {config.name}: {ended} trial(s) ended, {resume.remaining} interrupted trial(s) continue", file=stream or sys.stdout)
    data_ref = ray.put(prepared.dataset)
    settings = trainable.TrialSettings.from_config(config)
    tuner = tune.Tuner(
        launch.make(settings, data_ref, prepared.dataset.info.fingerprint, prepared.builder, trial, search_paths=prepared.search_paths),
        tune_config=tune.TuneConfig(
            metric=config.objective.metric,
            mode=config.objective.mode,
            search_alg=_with_resumed_trials(
                space.make_searcher(
                    config.search,
                    config.objective.metric,
                    config.objective.mode,
                    points_to_evaluate=(warm.points or None) if warm and resume is None else None,  # re-runs happened before
                    history=(warmstart.frozen_history(config.search, warm) or [])
                    + (resume_module.optuna_history(config, resume) if resume is not None else [])
                    or None,
                ),
                resume,
            ),
            scheduler=schedulers.build(config),
            num_samples=max(1, trial_budget(config) - ended),
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
            stop=fail_fast,
            # A trial whose worker died restarts from its latest checkpoint (the tracker tags the retry).
            failure_config=tune.FailureConfig(max_failures=config.failure.max_retries),
            verbose=0,
        ),
    )
    retries.install_retry_policy()  # failure.max_retries: lost workers and infrastructure errors only
    status = "FAILED"
    stop = _Interrupts(fail_fast, config.name)
    stop.install()  # until the sweep's records are closed (the end of the finally below)
    try:
        if trial_budget(config) > ended:
            tuner.fit()
        status = "FINISHED"
        if stop.signal is not None or fail_fast.halt:
            status = "KILLED"  # stopped before its end: resumable (recovery.unfinished_parent)
    except KeyboardInterrupt:  # a second Ctrl-C (or one outside Tune's loop): stop now, still resumable
        status = "KILLED"
        stop.signal = stop.signal or signal.SIGINT
        raise SweepInterrupted(config.name, stop.signal) from None
    except BaseException:
        status = "KILLED"  # the driver failing: the sweep stays resumable
        raise
    finally:
        stop.closing = True
        # Every trial still open ends now: its run KILLED and tagged interrupted (never RUNNING).
        why = stop.reason() or fail_fast.halt or ("the sweep stopped (failure.fail_fast)" if fail_fast.tripped() else "the sweep's driver stopped")
        with contextlib.suppress(Exception):
            tracker.close_interrupted(ledger.interrupt_open_trials(), why)
        # The end of a sweep is never a crash: each step below that fails is reported in one line
        # (stderr, SweepResult.finish_error, the parent run's sweep.finish_error tag), the trials'
        # records stay, and the parent run still ends (FAILED, never left RUNNING).
        problems: list[str] = []
        with contextlib.suppress(Exception):
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
        if fail_fast.halt and stop.signal is None:
            result.stopped_because = f"sweep stopped: {fail_fast.halt}; fix it, then continue with `sweep resume {config.name}`"
            print(result.stopped_because, file=sys.stderr)
        if result.best is None and status == "FINISHED":
            status = "FAILED"
        result.stopped_because = _fail_fast_message(fail_fast, ledger) or result.stopped_because
        if result.stopped_because and not fail_fast.halt:
            status = "FAILED"
            print(result.stopped_because, file=sys.stderr)
        # An interrupted sweep has no final best yet: the parent run gets the counts only (the best
        # trial's params, once logged, could not change when the resumed sweep finds a better one).
        final = result if status != "KILLED" else dataclasses.replace(result, best=None)
        problems += tracker.finish(final, status, input_example=prepared.dataset.example())  # never raises
        with _finish_step(problems, "reading the trials back"):
            result.trials = ledger.frame()  # now with MLflow run ids
        with _finish_step(problems, "releasing the sweep's lock"):
            resume_module.release_lock(storage_dir)
        if status != "KILLED":
            from sweep.views.report import log_to_parent_run

            with _finish_step(problems, "the report"):
                if log_to_parent_run(uri, config.name, tracker.parent_run_id, ledger.outcomes.values()) is None and ledger.outcomes:
                    raise RuntimeError("it could not be made (see the warning above)")
        if problems:
            result.finish_error = "; ".join(problems)
            tracker.record_finish_error(result.finish_error)  # the parent run's tag, if an earlier step did not set it
            print(f"error: sweep {config.name} ran, but finishing it failed: {result.finish_error}", file=sys.stderr)
        stop.restore()
    if stop.signal is not None:
        raise SweepInterrupted(config.name, stop.signal)
    return result


class SweepInterrupted(KeyboardInterrupt):
    """The sweep stopped on SIGINT/SIGTERM; its records are closed and it can be resumed."""

    def __init__(self, name: str | None, signum: int = 2):
        super().__init__(name)
        self.name, self.signum = name, int(signum)


class _Interrupts:
    """SIGINT and SIGTERM while ``tuner.fit()`` runs.

    Ray Tune catches the first SIGINT itself and returns from ``fit()`` as if the sweep were
    done. Here the first SIGINT or SIGTERM asks Tune to stop every trial (through the sweep's
    stopper, checked each step) and the sweep then ends as interrupted; a second one raises
    KeyboardInterrupt at once; a third gets Python's default handling.
    """

    def __init__(self, stopper: Any, name: str):
        self.stopper, self.name, self.signal, self.count = stopper, name, None, 0
        self._saved: dict[int, Any] = {}
        self._env: str | None = None

    def reason(self) -> str | None:
        if self.signal is None:
            return None
        return f"interrupted by {signal.Signals(self.signal).name}"

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        self.signal = self.signal or signum
        if self.count == 1:
            self.stopper.halt = self.reason()
            with contextlib.suppress(Exception):
                print(f"sweep: {signal.Signals(signum).name}: stopping the trials (again to stop at once)", file=sys.stderr, flush=True)
            return
        for sig in (signal.SIGINT, signal.SIGTERM):  # a third one is not caught
            with contextlib.suppress(Exception):
                signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)
        if not self.closing:  # while the trials run: stop now (the finally still closes the records)
            raise SweepInterrupted(self.name, self.signal)
        # already closing the records (about a second): let that finish, then exit; a third kills

    closing = False  # set once tuner.fit() returned: the sweep's records are being closed

    def install(self) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return  # signals reach only the main thread: nothing to install
        self._saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Tune's own swallows the first Ctrl-C
        for sig in self._saved:
            signal.signal(sig, self._handle)

    def restore(self) -> None:
        if not self._saved:
            return
        for sig, handler in self._saved.items():
            with contextlib.suppress(Exception):
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._saved = {}
        if self._env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env


@contextlib.contextmanager
def _finish_step(problems: list[str], what: str) -> Iterator[None]:
    """One step of the end of a sweep: a failure becomes one line in ``problems``, not a traceback."""
    try:
        yield
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        problems.append(f"{what}: {type(exc).__name__}: {lines[0][:300]}" if lines else f"{what}: {type(exc).__name__}")


def _config_json(config: SweepConfig) -> str:
    """The validated sweep file for ``sweep/config.json``, with no password in the tracking URI."""
    from sweep.tracking.client import redact

    data = config.model_dump(mode="json")
    if data["tracking"].get("uri"):
        data["tracking"]["uri"] = redact(data["tracking"]["uri"])
    import json

    return json.dumps(data, indent=2)


def _fail_fast_message(fail_fast: Any, ledger: Any) -> str | None:
    """One message for a sweep stopped by ``failure.fail_fast``: the error once, with its trial's traceback tail."""
    error = fail_fast.tripped()
    if error is None:
        return None
    failed = ledger.count(TrialStatus.FAILED)
    tail = ledger.first_error or error
    return (
        f"sweep stopped: the first {failed} trials all failed with the same error before finishing an epoch "
        f"(failure.fail_fast: {fail_fast.limit}):\n  {error}\n"
        f"the first failed trial's traceback ends with:\n" + "\n".join(f"    {line}" for line in tail.splitlines())
    )


def _with_resumed_trials(searcher: Any, resume: Any) -> Any:
    from sweep.driver import recovery as resume_module

    if resume is None or not resume.interrupted:
        return searcher
    return resume_module.resuming_searcher(searcher, resume.resume_configs())


def _tasks(info: Any) -> str:
    """The task, or each output's task for several outputs (``{'kind': 'classification', ...}``)."""
    from sweep.inputs.structures import is_nested, map_leaves

    if not is_nested(info.target_layout):
        return info.task
    return str(map_leaves(lambda layout: "regression" if layout == "values" else "classification", info.target_layout))


def parent_tags(prepared: Prepared, storage_root: str) -> dict[str, str]:
    """What ``sweep resume`` needs to find again: the file, the storage, the config's identity."""
    label = prepared.label
    info = prepared.dataset.info
    return {
        DATA_TAG: info.summary(),  # what the sweep read from the data, as printed at the start
        DATA_TASK_TAG: _tasks(info),
        **({DATA_LABELS_TAG: json.dumps(list(info.labels))} if info.labels else {}),  # class index -> original label
        DATA_INPUTS_TAG: str(info.input_shapes if info.input_shapes is not None else info.input_shape),
        DATA_OUTPUTS_TAG: str(info.output_sizes if info.output_sizes is not None else info.num_outputs),
        FILE_TAG: str(Path(label).resolve()) if label != "<dict>" else "",
        STORAGE_ROOT_TAG: storage_root,
        CONFIG_HASH_TAG: config_hash(prepared.config),
    }


def trial_budget(config: SweepConfig) -> int:
    """``search.trials``, capped by the grid's size: a grid never repeats a configuration."""
    from sweep.search import space

    if config.search.sampler == "grid":
        return min(config.search.trials, space.grid_size(config.search))
    return config.search.trials


def sweep_params(config: SweepConfig) -> dict[str, Any]:
    """The sweep's settings as flat ``config.*`` params of the parent run (space excluded)."""
    from sweep.tracking.tracker import flat_config

    flat = flat_config(config.model_dump(mode="json"))
    if flat.get("config.tracking.uri"):  # never a password in a param
        from sweep.tracking.client import redact

        flat["config.tracking.uri"] = redact(flat["config.tracking.uri"])
    return flat
