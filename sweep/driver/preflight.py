"""The preflight: everything that can be checked before a trial starts, checked in the driver.

Errors name the sweep file and key: data loads, the builder imports and returns a model that
accepts the data, the objective metric is one the model will log, every space entry is read by
something, a trial fits on a node. Only then does Ray start spending workers on the sweep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from sweep.driver import cluster
from sweep.driver.quiet import quiet_tensorflow
from sweep.spec import config as config_module
from sweep.spec.config import CategoricalParam, SweepConfig, condition_order
from sweep.errors import InputError, SweepConfigError, telling_line

log = logging.getLogger("sweep")


@dataclass
class Prepared:
    """A validated sweep with its data loaded and its model factory resolved."""

    config: SweepConfig
    label: str  # the sweep file, for error lines
    dataset: Any
    builder: Callable
    search_paths: tuple[Path, ...]


def prepare(config: SweepConfig, label: str, search_paths: tuple[Path, ...] = ()) -> Prepared:
    """Load data, resolve the builder and try one model in the driver (errors name the file)."""
    quiet_tensorflow()
    from sweep.inputs import data, imports
    from sweep.inputs import models

    imports.forget_edited_modules()  # an earlier sweep in this process imported the user's files
    warn_secret_arguments(config, label)
    warn_unlikely_mode(config, label)
    try:
        batch_size = example_hyperparameters(config).get("batch_size", config.fit.batch_size)  # for a data function that takes one
        dataset = data.load(config.data, search_paths, batch_size=int(batch_size))
        dataset.class_weight = data.class_weights(config.fit.class_weight, dataset)
        builder = models.resolve_builder(config.model, search_paths)
        _check_names(config, builder, dataset)
        _preflight_model(config, builder, dataset, search_paths, label)
    except InputError as exc:
        raise SweepConfigError(label, exc.key, exc.expected) from None
    return Prepared(config, label, dataset, builder, search_paths)


# words of an argument's name that say it holds a credential (api_key, db_password, hf_token)
_SECRET_WORDS = frozenset({"password", "passwd", "pwd", "secret", "token", "apikey", "credential", "credentials"})
_SECRET_NAMES = frozenset({"api_key", "access_key", "secret_key", "private_key", "auth_token", "access_token"})
# parts of a name with its separators dropped (X-Api-Key -> xapikey, Authorization): a header's words
_SECRET_PARTS = ("apikey", "accesskey", "secretkey", "privatekey", "authorization", "bearer", "clientsecret", "sessiontoken")


def warn_secret_arguments(config: SweepConfig, label: str) -> None:
    """``data.args: {api_key: ...}`` reaches MLflow as a param and in ``sweep/config.json``, where
    everyone who can read the store sees it (the values must stay: the data function and a
    resumed sweep need them). Said once, with where a credential belongs instead."""
    sections = (("data.args", config.data.args), ("model.args", config.model.args), ("fit.callbacks", list(config.fit.callbacks or [])))
    for section, arguments in sections:
        for path in _credential_names(arguments, section):
            log.warning("%s: %s looks like a credential: it is recorded in MLflow (a param and sweep/config.json) for anyone who "
                        "can read the store; read it from the environment in your code instead (os.environ)", label or "the sweep", path)


# words in a metric's name that say which way is better (as Keras' own callbacks infer "auto" mode)
_HIGHER_IS_BETTER = ("accuracy", "auc", "precision", "recall", "f1", "fbeta", "iou", "r2", "top_k")
_LOWER_IS_BETTER = ("loss", "error", "mae", "mse", "rmse", "crossentropy", "hinge", "logcosh", "poisson")


def warn_unlikely_mode(config: SweepConfig, label: str) -> None:
    """``objective: {metric: val_accuracy, mode: min}`` ran and ranked the worst trial best,
    exit 0. Said once (not refused: a user may mean it)."""
    metric, mode = config.objective.metric.lower(), config.objective.mode
    likely = "max" if any(word in metric for word in _HIGHER_IS_BETTER) else "min" if any(word in metric for word in _LOWER_IS_BETTER) else None
    if likely is not None and likely != mode:
        log.warning("%s: objective.mode is %s for %s, so the %s value ranks best; did you mean mode: %s?", label or "the sweep",
                    mode, config.objective.metric, "lowest" if mode == "min" else "highest", likely)


def _credential_names(value: Any, path: str) -> list[str]:
    """The dotted paths under ``value`` (nested dicts and lists, e.g. a callback's arguments)
    whose key names a credential (``api_token``, ``password``, ``X-Api-Key``, ``Authorization``)
    or whose text carries one (``postgresql://user:password@host``, ``https://...?sig=...``)."""
    from sweep.tracking.client import secret_query_names, userinfo

    found: list[str] = []
    if isinstance(value, str):
        return [path] if "://" in value and ((userinfo(value) or ("", ""))[1] or secret_query_names(value)) else []
    if isinstance(value, dict):
        for name, inner in value.items():
            lowered = str(name).lower()
            here = f"{path}.{name}"
            squeezed = "".join(ch for ch in lowered if ch.isalnum())
            if lowered in _SECRET_NAMES or _SECRET_WORDS & set(lowered.replace("-", "_").split("_")) or any(part in squeezed for part in _SECRET_PARTS):
                found.append(here)
                continue
            found.extend(_credential_names(inner, here))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found.extend(_credential_names(inner, f"{path}.{index}"))
    return found


def _check_names(config: SweepConfig, builder: Callable, dataset: Any) -> None:
    """Names that reach Keras (optimizer, activation, loss and metric choices) against its registries."""
    from sweep.inputs import models
    from sweep.search import space as space_module

    if config.search.sampler == "grid":
        space_module.check_grid_size(config.search)  # refused before the grid is listed (it could fill the memory)
    space = config.search.space
    compiles = True
    fixed = [key for key in ("loss", "metrics", "loss_weights") if getattr(config.model, key) not in (None, [], {})]
    if ("optimizer" in space or "loss" in space or fixed) and config.model.builder not in models.BUILDERS:
        compiles = models.sweep_compiles(builder, example_hyperparameters(config), dataset.info, config.model)
    if fixed and not compiles:  # its own compile() wins: the setting changed nothing, yet the parent run recorded it
        raise InputError(
            f"model.{fixed[0]}",
            f"expected no model.{fixed[0]} for {config.model.builder}, which compiles the model itself (its compile() settings are "
            f"the ones used): set it in that compile() call, or return the model uncompiled",
        )
    models.check_names(space, config.model, compiles)
    if compiles:
        models.check_losses_fit_targets(space, config.model, dataset.info)


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


def _preflight_model(config: SweepConfig, builder: Callable, dataset: Any, search_paths: tuple[Path, ...] = (), label: str = "") -> None:
    """Build one model and evaluate a few rows, so shape and metric mistakes surface now;
    then check that every space entry is read by something (:func:`check_hyperparameters_read`)."""
    import keras

    from sweep.inputs import imports, models
    from sweep.worker.callbacks import callback_entries, keras_callbacks
    from sweep.worker.checkpoints import check_reloadable

    keras_callbacks(config.fit, config.objective, search_paths)
    _check_fit_settings(config, dataset)
    hp = example_hyperparameters(config)
    model = _build_within_memory(config, builder, hp, dataset, search_paths)
    imports.remember_loaded(search_paths)  # helper modules the factory imported in its body ship with the user's code
    fixed = models.fixed_batch_size(model)
    if fixed is not None:
        _check_fixed_batch_size(config, dataset.info, fixed)
    rows = fixed or 8
    try:
        try:
            logs = _evaluate_few(model, dataset, rows, fixed=fixed is not None)
        except SystemExit as exc:  # a loss, a metric or the model's call: not the sweep's exit (it ended silently, code 0)
            raise InputError("model.builder", f"expected the model, its loss and metrics to evaluate a batch, but one of them called sys.exit({exc.code!r})") from None
        except Exception as exc:
            models.check_model_output(model, dataset.info)  # evaluating failed: a width that does not fit the targets is the likely cause, said plainly
            first = telling_line(exc, 300)
            _blame_a_compile_setting(config, model, first)
            _blame_by_recompiling(config, builder, hp, dataset, model, search_paths, first)
            if "Could not interpret" in first and "identifier" in first:  # the factory's own compile(): a name Keras does not know
                raise InputError("model.builder", f"expected the factory's compile() to name losses and metrics Keras knows, but Keras said: {first[:300]}") from None
            raise InputError(
                "model.builder",
                f"expected a model that accepts inputs of shape {_input_text(dataset.info)} and "
                f"targets for {_output_text(dataset.info)}, but evaluating it failed: {first[:300]}",
            ) from None
        _check_loss_weight_names(config, model)
        # loads back with model.safe_mode / custom objects, before any trial; after a call, as
        # every trial's checkpoint is (a subclassed model's layers are built only by a call)
        check_reloadable(model, config.model, search_paths, sample=_first_rows(dataset.x_val, fixed or 2))
    finally:
        keras.backend.clear_session(free_memory=False)  # no full GC (0.25-0.45 s with TF loaded) on the start-up path
    names = sorted(set(logs) | {f"val_{name}" for name in logs})
    own_callbacks = [name for name, _ in callback_entries(config.fit) if ":" in name]  # package.module:Name: may add to the logs
    _check_monitors(config, names, bool(own_callbacks))
    if config.objective.metric not in names and own_callbacks:
        # a callback of the user's may put it in the epoch's logs (the preflight evaluates, it does not fit)
        log.warning("%s: objective.metric %r is not a metric the model computes (%s); it must come from a callback of yours (%s), "
                    "or every trial fails as never computed", label or "the sweep", config.objective.metric, ", ".join(names), ", ".join(own_callbacks))
    elif config.objective.metric not in names:
        import difflib

        close = difflib.get_close_matches(config.objective.metric, names, n=1, cutoff=0.6)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError("objective.metric", f"expected one of the metrics the model logs ({', '.join(names)}), got {config.objective.metric!r}{guess}")
    _check_objective_name(config.objective.metric)
    _check_objective_is_one_number(config.objective.metric, logs)
    points = example_points(config)
    outputs: list[Any] = []
    found = models.hyperparameters_read(builder, dataset.info, points, outputs)
    _check_every_point_builds(config, points, found, lambda point: models.hyperparameters_read(builder, dataset.info, [point])[0])
    _check_objective_head_in_every_point(config, points, outputs)
    reads: list[set[str] | None] = [None if isinstance(read, Exception) else read for read in found]
    check_hyperparameters_read(config, set().union(*(read for read in reads if read is not None)) | set(models.TRIAL_HP_KEYS))
    check_conditions_reach_a_reader(config, points, reads)
    warn_partly_read(config, label, points, reads)


def _build_within_memory(config: SweepConfig, builder: Callable, hp: dict[str, Any], dataset: Any, search_paths: tuple[Path, ...]) -> Any:
    """The preflight's model, or one line when building it ran out of memory (``units`` of 1e8
    in the space): Keras' OOM message, cut at "name:", was blamed on model.builder."""
    from sweep.inputs import models

    try:
        return models.build(builder, hp, dataset.info, config.model, search_paths=search_paths)
    except Exception as exc:
        if not isinstance(exc, MemoryError) and type(exc).__name__ != "ResourceExhaustedError":
            raise
        searched = {key: value for key, value in hp.items() if key in config.search.space}
        shown = ", ".join(f"{key}={config_module.show_value(value)}" for key, value in searched.items())
        key = "search.space" if searched else "model.builder"
        where = f" at {shown}" if shown else ""
        advice = "narrow the searched sizes" if searched else "make the model smaller"
        raise InputError(key, f"expected a model that fits in memory, but building it{where} ran out of memory ({type(exc).__name__}): {advice}") from None


def _check_objective_head_in_every_point(config: SweepConfig, points: list[dict[str, Any]], outputs: list[Any]) -> None:
    """An objective on one head of a model whose outputs Keras names by its layer counter
    (``val_dense_1_accuracy``): the names move with a searched depth, so every trial at another
    depth failed as "never computed" and the search kept one slice of the space."""
    metric = config.objective.metric
    named = [names for names in outputs if names and len(names) > 1]
    head = next((name for names in named for name in names if metric.removeprefix("val_").startswith(f"{name}_")), None)
    if head is None:
        return
    for point, names in zip(points, outputs):
        if names and len(names) > 1 and head not in names:
            shown = ", ".join(f"{key}={config_module.show_value(value)}" for key, value in point.items() if key in config.search.space)
            raise InputError(
                "objective.metric",
                f"expected an output every trial's model has, got {metric!r} on the output {head!r}, which the model built at {shown} "
                f"does not have (its outputs: {', '.join(names)}): Keras names unnamed layers by a counter that moves with the searched "
                "layers; name the output layers (e.g. Dense(3, name='kind')) and use that name",
            )


def _check_monitors(config: SweepConfig, names: list[str], own_callbacks: bool) -> None:
    """``early_stopping`` / ``reduce_lr_on_plateau`` watching a metric that is never logged
    (``monitor: val_acc`` where Keras logs ``val_accuracy``) never fire: Keras only warns, once
    per epoch, in a worker's log. Refused here (accepted with a callback of the user's, which
    may add the metric)."""
    import difflib

    from sweep.worker.callbacks import callback_entries

    for index, (name, kwargs) in enumerate(callback_entries(config.fit)):
        monitor = kwargs.get("monitor") if isinstance(kwargs, dict) else None
        if name in ("early_stopping", "reduce_lr_on_plateau") and isinstance(monitor, str) and monitor not in names and not own_callbacks:
            close = difflib.get_close_matches(monitor, names, n=1, cutoff=0.6)
            guess = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(f"fit.callbacks.{index}.{name}.monitor", f"expected one of the metrics the model logs ({', '.join(names)}), got {monitor!r}{guess}")


def _check_loss_weight_names(config: SweepConfig, model: Any) -> None:
    """``model.loss_weights: {foo: 1.0}`` naming no output was accepted and did nothing."""
    weights = config.model.loss_weights
    names = list(getattr(model, "output_names", None) or [])
    if isinstance(weights, dict) and names:
        for name in weights:
            if str(name) not in names:
                raise InputError(f"model.loss_weights.{name}", f"expected an output name of the model ({', '.join(names)}), got {str(name)!r}")


def _blame_a_compile_setting(config: SweepConfig, model: Any, first: str) -> None:
    """Raise InputError on ``model.loss`` / ``loss_weights`` / ``metrics`` when Keras' error is
    about that setting's structure (a loss dict naming an output the model lacks, one loss with
    two loss weights): the line blamed model.builder, whose model was fine."""
    outputs = ", ".join(getattr(model, "output_names", None) or [])
    settings = [("loss_weights", "`loss_weights`" in first or "loss_weights" in first),
                ("loss", "loss dict" in first or ("loss" in first.lower() and "Expected keys" in first)),
                ("metrics", "metrics" in first.lower() and ("Expected keys" in first or "must match" in first))]
    for key, named in settings:
        if named and getattr(config.model, key) not in (None, [], {}):
            hint = "; give model.loss per output (a dict by output name)" if key == "loss_weights" and not isinstance(config.model.loss, (dict, list)) and config.model.loss else ""
            raise InputError(f"model.{key}", f"expected model.{key} to match the model's outputs ({outputs}), but Keras said: {first[:300]}{hint}")


def _blame_by_recompiling(
    config: SweepConfig, builder: Callable, hp: dict[str, Any], dataset: Any, model: Any, search_paths: tuple[Path, ...], first: str
) -> None:
    """Which of the file's compile settings made evaluating fail, found by evaluating the same
    model built again without it: Keras' messages do not say where they come from
    ("FBetaScore expects 2D inputs", "target.shape=(None,), output.shape=(None, 3)"), and the
    line blamed model.builder for ``metrics: [f1_score]`` or ``loss: binary_crossentropy`` on
    integer labels. Raises InputError on ``model.metrics``, ``model.loss`` or
    ``search.space.loss``; returns when neither setting is the cause. Runs only on failure."""
    from sweep.inputs import models

    if not models.compiled_by_sweep(model):
        return
    info = dataset.info
    searched_loss = "loss" in hp and hp.get("loss") is not None
    trials: list[tuple[str, dict[str, Any], dict[str, Any], str]] = []
    if config.model.metrics:
        trials.append(("model.metrics", {"metrics": None}, {}, "metrics"))
    if config.model.loss or searched_loss:
        key = "search.space.loss" if searched_loss else "model.loss"
        trials.append((key, {"loss": None, "loss_weights": None, "metrics": None}, {"loss": None}, "loss"))
    for key, settings, hp_changes, what in trials:
        if _evaluates_with(builder, {**hp, **hp_changes}, dataset, config.model.model_copy(update=settings), search_paths):
            shown = f"{hp.get('loss')!r}" if key == "search.space.loss" else config_module.show_value(getattr(config.model, what))
            raise InputError(
                key,
                f"expected {'a loss that takes' if what == 'loss' else 'metrics that take'} targets for {_output_text(info)}, got {shown}, "
                f"and evaluating {'it' if what == 'loss' else 'them'} failed: {first}",
            )


def _evaluates_with(builder: Callable, hp: dict[str, Any], dataset: Any, model_cfg: Any, search_paths: tuple[Path, ...]) -> bool:
    from sweep.inputs import models

    try:
        _evaluate_few(models.build(builder, hp, dataset.info, model_cfg, search_paths=search_paths), dataset)
        return True
    except Exception:  # noqa: BLE001 - still failing: not this setting
        return False


def _check_objective_is_one_number(metric: str, logs: dict[str, Any]) -> None:
    """A metric with a value per class (``F1Score()``, ``FBetaScore()`` with ``average=None``)
    cannot rank trials: Tune compared nothing, and every trial ended "never validated"."""
    import numpy as np

    value = logs.get(metric[len("val_"):] if metric.startswith("val_") and metric not in logs else metric)
    size = int(np.size(value)) if value is not None else 1
    if size > 1:
        raise InputError(
            "objective.metric",
            f"expected a metric with one value per epoch, got {metric!r}, which has {size} (one per class): "
            "compile it averaged in a factory of your own, e.g. keras.metrics.F1Score(average='macro')",
        )


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


def _first_rows(x: Any, rows: int) -> Any:
    from sweep.inputs.structures import take_rows

    return None if x is None else take_rows(x, slice(0, rows))


def _evaluate_few(model: Any, dataset: Any, rows: int = 8, fixed: bool = False) -> dict[str, float]:
    """The model's logs on the first ``rows`` validation rows (in one batch of exactly that many
    when the model is ``fixed`` to that batch size)."""
    return model.evaluate(
        _first_rows(dataset.x_val, rows), _first_rows(dataset.y_val, rows), sample_weight=_first_rows(dataset.val_sample_weight, rows),
        batch_size=rows if fixed else None, verbose=0, return_dict=True,
    )


def _check_fixed_batch_size(config: SweepConfig, info: Any, fixed: int) -> None:
    """A model built for batches of exactly ``fixed`` rows (``keras.Input(batch_size=16)``, a
    stateful RNN) fails in fit() on any other batch, and on a last partial one: said now, where
    the preflight's 8-row evaluation blamed model.builder with "Incompatible shapes: [8,32] vs.
    [16,32]" for a model a plain ``fit(batch_size=16)`` trains."""
    why = f"the model takes batches of exactly {fixed} rows (its inputs' batch_size)"
    searched = config.search.space.get("batch_size")
    if searched is None and config.fit.batch_size != fixed:
        raise InputError("fit.batch_size", f"expected {fixed}, since {why}, got {config.fit.batch_size}")
    if searched is not None:
        raise InputError("search.space.batch_size", f"expected no batch_size to search, since {why}: remove it and set fit.batch_size: {fixed}")
    for part, count in (("training", info.n_train), ("validation", info.n_val)):
        if not getattr(info, "streamed", False) and count and count % fixed:
            raise InputError("data", f"expected {part} rows in whole batches of {fixed}, since {why}, got {count} rows: "
                                     f"keep {count - count % fixed} of them (a last partial batch fails in fit())")


def _input_text(info: Any) -> str:
    shapes = info.input_shapes if info.input_shapes is not None else info.input_shape
    return str(shapes) if info.num_inputs > 1 else str(tuple(info.input_shape))


def _output_text(info: Any) -> str:
    if info.num_heads > 1:
        return f"outputs {info.output_sizes}"
    if info.task == "classification":  # one output of K classes, not K outputs
        return f"one output of {info.num_outputs} classes"
    return f"one output of {info.num_outputs} value(s) per row (regression)"


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
    if pipeline is not None:
        _check_pipeline_ends(config, pipeline, info.source)
    if pipeline is None and not getattr(info, "streamed", False) and info.n_train > 0:
        _check_batch_size_fits(config, info.n_train)
    freq, metric = config.fit.validation_freq, config.objective.metric
    if metric.startswith("val_") and freq > config.fit.epochs:
        raise InputError("fit.validation_freq", f"expected at most fit.epochs ({config.fit.epochs}) since the objective {metric} is a validation metric, got {freq}: no epoch would be validated")
    searched = space.get("epochs")
    if metric.startswith("val_") and freq > 1 and searched is not None:  # each trial drawing fewer epochs could only fail
        values = list(enumerate(searched.choices)) if isinstance(searched, CategoricalParam) else [("low", searched.low)]
        for where, value in values:
            if isinstance(value, (int, float)) and value < freq:
                key = f"search.space.epochs.choices.{where}" if isinstance(where, int) else "search.space.epochs.low"
                raise InputError(key, f"expected at least fit.validation_freq ({freq}) since the objective {metric} is a validation metric, got {value}: no epoch of such a trial would be validated")
    if config.fit.class_weight is not None and info.num_heads > 1:
        raise InputError("fit.class_weight", f"expected a model with one output for class_weight (Keras' rule), got {info.num_heads} outputs: use sample weights per output")


def _check_pipeline_ends(config: SweepConfig, pipeline: Any, source: str) -> None:
    """A pipeline with no end of its own (``.repeat()``, a generator, an endless ``PyDataset``)
    needs ``steps_per_epoch`` (training) or ``validation_steps`` (validation): without them
    Keras reads it forever and the sweep runs with no trial ever ending."""
    train_endless, val_endless = getattr(pipeline, "endless", (False, False))
    what = "generators have no length" if pipeline.is_generator else "it repeats without end"
    if (train_endless or pipeline.is_generator) and config.fit.steps_per_epoch is None:
        raise InputError("fit.steps_per_epoch", f"expected fit.steps_per_epoch for the training pipeline of {source} ({what}: an epoch would never end), got none")
    if val_endless and config.fit.validation_steps is None:
        raise InputError("fit.validation_steps", f"expected fit.validation_steps for the validation pipeline of {source} ({what}: validation would never end), got none")


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


def check_conditions_reach_a_reader(config: SweepConfig, points: list[dict[str, Any]], reads: list[set[str] | None]) -> None:
    """An entry with ``when:`` must be read at some point where its condition holds:
    ``momentum`` ``when: {optimizer: adam}`` was sampled and logged for adam trials, which never
    use it, while the same entry without ``when:`` was refused as read by nothing."""
    from sweep.inputs.models import TRIAL_HP_KEYS

    for name, param in config.search.space.items():
        if not param.when or name in TRIAL_HP_KEYS:
            continue
        active = [read for point, read in zip(points, reads) if name in point]
        if not active or any(read is None or name in read for read in active):
            continue  # not tried, a point that failed to build, or read: nothing to say
        holds = ", ".join(f"{key}={config_module.show_value(value)}" for key, value in param.when.items())
        raise InputError(
            f"search.space.{name}.when",
            f"expected a condition under which something reads {name!r}, but where it holds ({holds}) nothing does: "
            "change the condition to where it is read, or remove the entry",
        )


def _check_every_point_builds(config: SweepConfig, points: list[dict[str, Any]], found: list[Any], build: Callable[[dict], Any]) -> None:
    """The model builds at every point the preflight tried (the space's high ends, each
    choice), not only at its first: ``units`` up to 1e30 passed and every trial then failed
    with "out-of-range integer". Raises InputError on the entry that differs from the first
    point; for the point of every high end, each high is tried alone to find which
    (``search.space`` when none fails alone)."""
    base = points[0]
    for point, read in zip(points, found):
        if not isinstance(read, Exception):
            continue
        varied = [key for key in point if point.get(key) != base.get(key)]
        for name in varied if len(varied) > 1 else []:
            alone = build({**base, name: point[name]})
            if isinstance(alone, Exception):
                point, read, varied = {**base, name: point[name]}, alone, [name]
                break
        key = f"search.space.{varied[0]}" if len(varied) == 1 else "search.space"
        shown = ", ".join(f"{name}={config_module.show_value(point[name])}" for name in (varied or list(point)))
        detail = (str(read).strip().splitlines() or [""])[0][:200]
        raise InputError(key, f"expected the model to build at {shown}, but {config.model.builder} raised {type(read).__name__}{': ' + detail if detail else ''}")


def warn_partly_read(config: SweepConfig, label: str, points: list[dict[str, Any]], reads: list[set[str] | None]) -> None:
    """A space entry without ``when:`` that is read at some choices of a categorical and not at
    others (``momentum`` beside ``optimizer: [adam, sgd]``): every trial with another choice
    samples it, logs it and ranks by it while it changes nothing. Said in one warning with the
    condition to add; not refused (the sweep still trains what the user wrote).

    ``points[0]`` is the base point; a point that differs from it in one categorical only tells
    whether that categorical decides the read (:func:`example_points` builds them so)."""
    space = config.search.space
    base, base_read = points[0], reads[0]
    if base_read is None:
        return
    for name, param in space.items():
        if param.when or name not in base:
            continue
        for choice_name, choice in space.items():
            if choice_name == name or not isinstance(choice, CategoricalParam) or choice_name not in base:
                continue  # a conditional categorical absent at the base point decides nothing here
            read_at, unread_at = [], []
            for point, read in zip(points, reads):
                varied = [key for key in point if key in base and point[key] != base[key]]
                if read is None or name not in point or choice_name not in point or varied not in ([], [choice_name]):
                    continue
                (read_at if name in read else unread_at).append(point[choice_name])
            if read_at and unread_at:
                shown = config_module.show_value(read_at[0] if len(read_at) == 1 else read_at)
                log.warning(
                    "%s: search.space.%s is read only when %s is %s (not %s): trials with another %s sample and log it with no "
                    "effect; give it when: {%s: %s}",
                    label or "the sweep", name, choice_name, shown, config_module.show_value(unread_at if len(unread_at) > 1 else unread_at[0]),
                    choice_name, choice_name, shown,
                )
                break


def check_resources(config: SweepConfig, label: str, own_ray: bool = False) -> None:
    """A trial no node can ever hold would wait forever: refuse it before the first trial, naming
    the key and what the cluster offers (skipped on a cluster declared autoscaling; ``own_ray``:
    the sweep started a local Ray, which can never gain a node, and says so)."""
    import ray

    if cluster.autoscaling():
        if own_ray:
            log.warning("SWEEP_AUTOSCALING=1, but this sweep started its own local Ray, which never gains nodes: "
                        "a trial that does not fit on this machine waits until Ctrl-C (give --address of an autoscaling cluster)")
        else:
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
