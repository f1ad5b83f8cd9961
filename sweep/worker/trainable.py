"""What runs in a Ray worker: fetch data once, reset, build, fit, report.

Workers are reused between trials (Tune's ``reuse_actors``), so TensorFlow is imported once
per worker and the sweep's arrays are fetched from the object store once per worker and
cached by fingerprint. Between trials the Keras session is cleared and seeds are reset, so a
trial on a reused worker computes exactly what it would on a fresh one.
"""

from __future__ import annotations

import contextlib
import gc
import os
from dataclasses import dataclass
from typing import Any, Callable

from sweep.worker import placement
from sweep.spec.config import FitConfig, ModelConfig, ObjectiveConfig, ResourcesConfig, SweepConfig
from sweep.worker.reuse import ModelCache
from sweep.protocol import REUSED_FIELD

# Per-worker state: survives between trials on a reused worker.
_DATA_CACHE: dict[str, Any] = {}
MODELS = ModelCache()  # compiled models by signature (sweep.worker.reuse)
_CONFIGURED = False


@dataclass(frozen=True)
class TrialSettings:
    """The parts of the sweep a worker needs; small and picklable (shipped once per sweep)."""

    fit: FitConfig
    model: ModelConfig
    objective: ObjectiveConfig
    resources: ResourcesConfig
    epochs: int
    seed: int

    @classmethod
    def from_config(cls, config: SweepConfig) -> "TrialSettings":
        return cls(
            fit=config.fit,
            model=config.model,
            objective=config.objective,
            resources=config.resources,
            epochs=config.max_epochs,
            seed=config.search.seed if config.search.seed is not None else 0,
        )


def make(
    settings: TrialSettings, data_ref: Any, fingerprint: str, builder: Callable, trial: Callable | None = None,
    search_paths: tuple[Any, ...] = (),
) -> Any:
    """The Tune trainable: a function of the trial's hyperparameters, with our parts bound.

    The parts (settings, builder, the data's ObjectRef) go to the object store once, and the
    trainable carries only that one reference: a worker fetches them on its first trial and
    keeps them (:func:`bound_parts`). ``tune.with_parameters`` fetched every bound value again
    on every trial, and deserializing the data's ObjectRef registered the worker as a borrower
    with the driver each time: with GIL sampling, a third of a warm worker's Python time in a
    1,000-trial no-op sweep. The data itself is fetched once per worker (:func:`fetch_data`).
    ``trial`` replaces :func:`run_trial` (same arguments); ``benchmarks/scale.py`` uses it to
    time the orchestrator without Keras.

    The user's modules in ``search_paths`` (the sweep file's folder) are imported by name on
    the worker, before the builder is unpickled (``imports.ensure_importable``: the folders on
    ``sys.path``, or a shipped copy of the files where a folder does not exist), and the
    worker's checkpoint loads (retries, resumes) use the sweep's ``model.safe_mode`` and
    custom objects (``callbacks.use_model_settings``).
    """
    import ray
    from ray import tune

    from sweep.inputs import imports

    body = trial or run_trial
    parts_ref = ray.put((settings, data_ref, builder))  # a nested ref comes back as the ref, not its value
    code = imports.user_code(tuple(search_paths))

    def sweep_trial(hp: dict[str, Any]) -> None:
        roots = imports.ensure_importable(code)  # before the builder's module is imported by name
        settings, data_ref, builder = bound_parts(parts_ref)
        if trial is None:
            from sweep.worker.callbacks import use_model_settings

            use_model_settings(settings.model, roots)
        body(hp, settings, data_ref, fingerprint, builder)

    resources: dict[str, Any] = {"cpu": settings.resources.cpus_per_trial, "gpu": settings.resources.gpus_per_trial}
    resources.update(settings.resources.custom)
    return tune.with_resources(sweep_trial, resources)


_BOUND: dict[Any, tuple] = {}  # this worker's sweep parts, by their ObjectRef (one sweep at a time)


def bound_parts(parts_ref: Any) -> tuple:
    """The sweep's (settings, data_ref, builder), fetched from the object store once per worker."""
    return _fetched_once(_BOUND, parts_ref, parts_ref)


def _fetched_once(cache: dict, key: Any, ref: Any) -> Any:
    """``ray.get(ref)``, kept in ``cache`` under ``key``; a new key (a new sweep) replaces what was kept."""
    value = cache.get(key)
    if value is None:
        import ray

        cache.clear()
        value = cache[key] = ray.get(ref)
    return value


def run_trial(hp: dict[str, Any], settings: TrialSettings, data_ref: Any, fingerprint: str, builder: Callable) -> None:
    """One trial: build and compile the model, then fit with the Tune reporter attached."""
    configure_worker(settings.resources)
    from ray import tune

    from sweep.worker import resources as worker
    from sweep.worker.callbacks import load_checkpoint, read_meta

    trace = worker.Trace(_trial_id())
    trace.mark("trial_start")
    dataset = fetch_data(data_ref, fingerprint)
    trace.mark("data_ready")
    reset_state(settings.seed, keep_compiled=settings.fit.reuse_model and len(MODELS) > 0)
    trace.mark("reset_done")
    initial_epoch, best, model = 0, None, None
    checkpoint = tune.get_checkpoint()
    if checkpoint is None and hp.get("_resume_from"):  # interrupted before its driver died (sweep.resume)
        checkpoint = resume_checkpoint(hp["_resume_from"])
    hp = {k: v for k, v in hp.items() if not str(k).startswith("_")}  # private resume keys
    if checkpoint is not None:  # a retried or resumed trial continues from its checkpoint
        with checkpoint.as_directory() as folder:
            model = load_checkpoint(folder)
            meta = read_meta(folder)
        initial_epoch, best = int(meta.get("epoch", 0)), meta.get("value")
    progress = {"epoch": initial_epoch}  # the last epoch reported, for an infeasible trial's final report
    try:
        _build_and_fit(hp, settings, dataset, builder, model, initial_epoch, best, trace, progress)
    except Exception as exc:
        if not isinstance(exc, infeasible_errors()):
            raise
        report_infeasible(settings.objective, exc, progress["epoch"])  # say so; the search learns it is the worst
    finally:
        trace.mark("trial_end")


# ---------------------------------------------------------------------------------------------
# which trial errors are retried (failure.max_retries): lost workers and infrastructure only

# errno values that say "the storage or the machine failed", not "this trial's code is wrong"
INFRA_ERRNOS = frozenset({5, 28, 30, 116, 122, 110, 111, 112, 113, 104})  # EIO ENOSPC EROFS ESTALE EDQUOT ETIMEDOUT ECONNREFUSED EHOSTDOWN EHOSTUNREACH ECONNRESET
STORAGE_ERRNOS = frozenset({5, 28, 30, 116, 122})  # EIO ENOSPC EROFS ESTALE EDQUOT


def error_cause(exc: BaseException | None) -> BaseException | None:
    """The user-side exception inside Ray's wrappers (``RayTaskError.cause``), else ``exc``."""
    seen = 0
    while exc is not None and seen < 5:
        cause = getattr(exc, "cause", None)
        if cause is None or cause is exc:
            return exc
        exc, seen = cause, seen + 1
    return exc


def is_worker_loss(exc: BaseException | None) -> bool:
    """The trial's worker or node died (killed, OOM-killed, node lost): worth a retry."""
    try:
        import ray.exceptions as rex
    except ImportError:  # pragma: no cover - Ray is a dependency
        return False
    kinds = tuple(
        getattr(rex, name) for name in (
            "RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError", "NodeDiedError",
            "ObjectLostError", "OwnerDiedError", "LocalRayletDiedError", "RaySystemError", "OutOfMemoryError",
        ) if hasattr(rex, name)
    )
    return isinstance(exc, kinds) or isinstance(error_cause(exc), kinds)


def is_storage_fault(exc: BaseException | None) -> bool:
    """An OSError that says the storage went away (read-only, full, stale NFS handle, I/O error)."""
    cause = error_cause(exc)
    return isinstance(cause, OSError) and getattr(cause, "errno", None) in STORAGE_ERRNOS


def is_infrastructure_error(exc: BaseException | None) -> bool:
    """Not the trial's own fault: a storage, network or timeout error from the machine around it."""
    cause = error_cause(exc)
    if isinstance(cause, (ConnectionError, TimeoutError)):
        return True
    return isinstance(cause, OSError) and getattr(cause, "errno", None) in INFRA_ERRNOS


def is_retryable(exc: BaseException | None) -> bool:
    """Whether ``failure.max_retries`` applies: a lost worker/node or an infrastructure error.

    A deterministic Python error in the user's code (ValueError, TypeError, a factory that
    raises, ...) fails the same way every time: it ends the trial at once, not after retries.
    Unknown Ray-side errors (no user exception inside) are retried, as Tune would.
    """
    if exc is None or is_worker_loss(exc) or is_infrastructure_error(exc):
        return True
    try:
        from ray.exceptions import RayTaskError
    except ImportError:  # pragma: no cover
        return True
    if not isinstance(exc, RayTaskError):
        return True  # Tune's own error (a failed restore, ...): do as Tune would
    cause = error_cause(exc)
    if cause is None or cause is exc or not isinstance(cause, Exception):
        return True  # Ray could not carry the trial's exception over: do as Tune would
    return False  # a Python exception raised by the trial's own code


LAST_ERRORS: dict[str, BaseException] = {}  # driver side: each failing trial's latest error, by Tune trial id


def install_retry_policy() -> None:
    """In the driver: Tune's ``FailureConfig(max_failures=N)`` retries every trial error; make
    it retry only :func:`is_retryable` ones. Tune decides right after ``Trial.handle_error``
    (``should_recover``: failures so far <= max_failures), so the hook marks a deterministic
    error as past the limit there. Idempotent; a Ray without that method keeps Tune's policy."""
    from ray.tune.experiment import trial as trial_module

    cls = trial_module.Trial
    original = getattr(cls, "handle_error", None)
    if original is None or getattr(original, "_sweep_policy", False):
        return

    def handle_error(self: Any, exc: Any = None, *args: Any, **kwargs: Any) -> Any:
        value = original(self, exc, *args, **kwargs)
        try:
            LAST_ERRORS[self.trial_id] = exc
            if exc is not None and not is_retryable(exc) and self.max_failures >= 0:
                self.run_metadata.num_failures = max(self.run_metadata.num_failures, self.max_failures + 1)
        except Exception:  # never let the policy break Tune's own error handling
            pass
        return value

    handle_error._sweep_policy = True  # type: ignore[attr-defined]
    cls.handle_error = handle_error


def resume_checkpoint(location: str) -> Any:
    """The checkpoint an interrupted trial continues from, or a clear error when it is gone
    (deleted since the crash) rather than Keras failing to open a file deep inside the load."""
    from ray import tune

    from sweep.worker import storage

    local = storage.local_path(location)
    if local is not None and not (local / storage.MODEL_FILE).is_file():
        raise FileNotFoundError(f"cannot resume this trial: its checkpoint {location} is gone (deleted after the sweep was interrupted?)")
    return tune.Checkpoint(location)


def _build_and_fit(
    hp: dict[str, Any], settings: TrialSettings, dataset: Any, builder: Callable, model: Any,
    initial_epoch: int, best: float | None, trace: Any, progress: dict[str, int],
) -> None:
    """Build (unless resuming ``model``), then fit with the Tune reporter attached."""
    from sweep.inputs import models
    from sweep.worker import resources as worker
    from sweep.worker.callbacks import TuneReporter, keras_callbacks

    strategy = placement.strategy(settings.resources)  # MirroredStrategy when > 1 GPU, else None
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    batch_size = placement.batch_size(int(hp.get("batch_size", settings.fit.batch_size)), settings.resources, replicas)
    inputs = fit_inputs(dataset, batch_size)
    if not dataset.info.streamed:
        check_batch_size(batch_size, dataset.info.n_train)
    steps = worker.steps_per_execution(getattr(settings.fit, "steps_per_execution", "auto"), batch_size, dataset.info.n_train or batch_size)
    epochs = trial_epochs(hp, settings.epochs)
    reused = False
    if model is None:
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            model = models.build(builder, hp, dataset.info, settings.model, steps_per_execution=steps)
        if strategy is None and settings.fit.reuse_model:
            model, reused = MODELS.take(model)  # same architecture as an earlier trial here: no retracing
    trace.mark("model_ready", reused=reused)
    callbacks = keras_callbacks(settings.fit, settings.objective)
    identity = placement.trial_identity(settings.resources)  # node id/ip, cpus, gpus -> MLflow tags
    callbacks.append(worker.EpochTimer(trace, settings.objective.metric))
    callbacks.append(TuneReporter(settings.objective, epochs, best=best, extra=lambda: {**worker.result_fields(trace), **identity, REUSED_FIELD: reused}))
    callbacks.append(worker.ReportDone(trace))
    callbacks.append(_epoch_counter(progress))
    fit = settings.fit
    try:
        model.fit(
            **inputs,
            epochs=epochs,
            initial_epoch=initial_epoch,
            shuffle=fit.shuffle,
            class_weight=dataset.class_weight,
            steps_per_epoch=fit.steps_per_epoch,
            validation_steps=fit.validation_steps,
            validation_freq=fit.validation_freq,
            callbacks=callbacks,
            verbose=0,
        )
    finally:
        # Only drop the reference: clearing the session here would stall Tune's reuse of this
        # worker (a stopped trial's thread must end within TUNE_FUNCTION_THREAD_TIMEOUT_S, 2 s,
        # or the next trial fails); the next trial's reset_state clears it instead.
        del model


def fit_inputs(dataset: Any, batch_size: int) -> dict[str, Any]:
    """The data arguments of ``model.fit()``: arrays (any Keras structure, with sample weights)
    with the trial's batch size, or this worker's pipelines (:mod:`sweep.inputs.pipelines`)."""
    if dataset.pipeline is not None:
        from sweep.inputs import pipelines

        train, val = pipelines.datasets(dataset.pipeline, batch_size)
        return {"x": train, "validation_data": val}
    return {
        "x": dataset.x_train,
        "y": dataset.y_train,
        "sample_weight": dataset.sample_weight,
        "batch_size": batch_size,
        "validation_data": dataset.validation_data(),
        "validation_batch_size": max(batch_size, 1024),
    }


def trial_epochs(hp: dict[str, Any], budget: int) -> int:
    """The trial's epoch budget: ``epochs`` from the space (at most the sweep's), else the sweep's."""
    drawn = hp.get("epochs")
    return budget if drawn is None else max(1, min(int(drawn), budget))


def _epoch_counter(progress: dict[str, int]) -> Any:
    """A callback keeping the last finished epoch where the trial's error handler can read it."""
    import keras

    class EpochCounter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            progress["epoch"] = epoch + 1

    return EpochCounter()


class InfeasibleTrial(ValueError):
    """This trial's hyperparameters cannot run here (not a bug in the sweep): the trial fails,
    the sweep goes on, and ``failure.fail_fast`` does not count it as a systematic error."""


def infeasible_errors() -> tuple[type[BaseException], ...]:
    """Errors that say "this configuration cannot run here": too big a batch, out of memory."""
    import tensorflow as tf

    return (InfeasibleTrial, MemoryError, tf.errors.ResourceExhaustedError)


def report_infeasible(objective: Any, exc: BaseException, epoch: int) -> None:
    """End the trial as failed with a one-line reason, reporting the objective's worst value
    (-inf for max, +inf for min) so Optuna ranks this region below every feasible trial and
    moves away from it, instead of learning nothing from a bare failure."""
    from ray import tune

    from sweep.protocol import END_FIELD, EPOCH_FIELD, KEYS_FIELD, FailureKind, Objective, format_failure

    kind = FailureKind.OUT_OF_MEMORY if not isinstance(exc, InfeasibleTrial) else FailureKind.INFEASIBLE
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    worst = Objective(objective.metric, objective.mode).worst
    tune.report({objective.metric: worst, KEYS_FIELD: "", EPOCH_FIELD: epoch, END_FIELD: format_failure(kind, detail)})


def check_batch_size(batch_size: int, rows: int) -> None:
    """A batch larger than the training data is not the batch size the search asked for
    (Keras silently trains on the whole set at once): the trial fails, saying so in one line."""
    if batch_size > rows:
        raise InfeasibleTrial(f"batch_size {batch_size} is larger than the {rows} training rows")


def _trial_id() -> str | None:
    """This trial's Tune id (None when called outside Tune, e.g. from a test)."""
    try:
        from ray import tune

        return tune.get_context().get_trial_id()
    except Exception:
        return None


# Grappler skips function graphs smaller than this. Keras' fit() builds a new tf.data iterator
# for the training and the validation data every epoch, and each one instantiates the
# pipeline's small functions (index shuffle, batch slicing, gather; < 40 nodes each), which
# grappler optimized anew every time: 19 ms of a 34 ms epoch of a tiny MLP on one core. A
# model's train and eval step bodies are larger (85 nodes for the eval step of a one-layer
# MLP, hundreds to thousands for real models) and are still optimized, once per trace.
GRAPPLER_MIN_GRAPH_NODES = 40


def configure_worker(resources: ResourcesConfig) -> None:
    """Once per worker process: TF threads to match the trial's CPUs, grappler's
    small-graph threshold, GPU memory growth on; and what the imports made frozen out of
    the garbage collector.

    TensorFlow and Keras give a worker ~430,000 tracked objects that live as long as it does;
    every full collection (``reset_state`` runs one on a worker's first trial and then every
    ``FULL_GC_INTERVAL_S``) walked them all, 0.25-0.45 s each on 2 cores. ``gc.freeze()``
    moves them to the permanent generation that collections skip, so a full collection walks
    only what trials made. No collection before it: right after the imports there is next
    to nothing to collect (45 unreachable objects of 427,000 here).
    """
    global _CONFIGURED
    if _CONFIGURED:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    threads = max(1, int(resources.cpus_per_trial))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(threads, 2)))
    except RuntimeError:  # TF already initialised in this process: its settings stand
        pass
    tf.config.optimizer.set_experimental_options({"min_graph_nodes": GRAPPLER_MIN_GRAPH_NODES})
    placement.configure_gpus(resources)  # hide / share (memory limit) / grow, per gpus_per_trial
    gc.freeze()  # see the docstring
    _CONFIGURED = True


def fetch_data(data_ref: Any, fingerprint: str) -> Any:
    """The sweep's Dataset, fetched from the object store at most once per worker."""
    return _fetched_once(_DATA_CACHE, fingerprint, data_ref)


FULL_GC_INTERVAL_S = 10.0  # seconds of trials between full garbage collections on a warm worker
_LAST_FULL_GC: float | None = None
_TF_SEED: int | None = None  # TensorFlow's eager global seed, as this module last set it


def reset_state(seed: int, keep_compiled: bool = False) -> bool:
    """Forget everything the previous trial on this worker left behind, then seed; True when
    TensorFlow's compiled functions were kept.

    The one place a worker clears Keras (session, name counters, global settings), seeds
    Python, NumPy, Keras and TensorFlow, and collects the previous model's cycles.

    ``keep_compiled`` (a warm worker whose model cache may serve this trial, see
    :mod:`sweep.worker.reuse`) leaves TensorFlow's eager kernel cache alone when TensorFlow's seed
    is already ``seed``. Both ``clear_session()`` and ``tf.random.set_seed()`` empty that
    cache, which throws away the instantiated (grappler-optimized) train and eval functions
    of every cached model: a reused trial then paid ~100 ms in its first epoch to
    instantiate them again, and ~20 ms more building its model, about a third of a tiny
    trial. Everything else is reset exactly as the full path does (see
    :func:`_reset_keeping_compiled_functions`); tests prove a trial after it trains bit for
    bit like a first trial.

    Garbage: a full collection with TensorFlow loaded cost ~0.25-0.45 s on 2 cores (Keras'
    own ``clear_session()`` runs one by default, so calling both paid it twice); a
    young-generation one ~4 ms. Since :func:`configure_worker` freezes TensorFlow's objects,
    a full collection walks only what trials made, but it still grows with them. So each
    trial collects the young generations, where the previous trial's objects are, and a
    full collection runs on the first trial and then at most once per
    ``FULL_GC_INTERVAL_S``: one per trial when trials are long, one per few dozen when they
    take 0.2 s (where a full collection per 8 trials had cost 12% of the worker's time),
    which bounds what can creep into the old generation either way.
    """
    global _LAST_FULL_GC, _TF_SEED
    import time

    import keras

    kept = keep_compiled and _TF_SEED == seed and _reset_keeping_compiled_functions(seed)
    if not kept:
        keras.backend.clear_session(free_memory=False)
        keras.utils.set_random_seed(seed)
        _TF_SEED = seed
    _restore_keras_config()
    _forget_custom_gradients()
    now = time.monotonic()
    if _LAST_FULL_GC is None or now - _LAST_FULL_GC >= FULL_GC_INTERVAL_S:
        gc.collect()
        _LAST_FULL_GC = now
    else:
        gc.collect(1)
    return kept


def _forget_custom_gradients() -> int:
    """Drop the gradient functions earlier trials' traces registered in TensorFlow's global
    gradient registry; how many were dropped.

    This was the memory a warm worker gained every trial (issue 18, rel-14; ~5 MB a trial, with
    ``fit.reuse_model`` on or off): each trace of a train step in graph mode runs
    ``tf.custom_gradient`` (Keras' optimizer all-reduces its gradients through the replica
    context, whose ``all_reduce`` has a custom gradient), which registers a new
    ``CustomGradient-<uid>`` entry in ``ops._gradient_registry`` and never removes it. The
    entry's closure holds the traced train function's whole ``FuncGraph`` (thousands of
    Python ops and tensors), so no model, cache or ``clear_session()`` could let it go.

    The entries are only looked up while a graph that calls them is being differentiated,
    i.e. while a train step is traced; a trace registers its own. At a trial's reset every
    trace of earlier trials is finished (a reused model's functions are already concrete), so
    none is needed any more. A TensorFlow version that lays the registry out otherwise: nothing.
    """
    try:
        from tensorflow.python.framework import ops as tf_ops

        entries = tf_ops._gradient_registry._registry
    except (ImportError, AttributeError):
        return 0
    stale = [name for name in list(entries) if isinstance(name, str) and name.startswith("CustomGradient-")]
    for name in stale:
        entries.pop(name, None)
    return len(stale)


_KERAS_CONFIG: dict[str, Any] = {}  # the worker's Keras settings before any trial changed them


def _restore_keras_config() -> None:
    """Put back the Keras settings that live outside ``clear_session()``'s reach (module
    globals, read from keras.json at import): a builder that calls ``keras.config.set_floatx``
    must not change the trials after it on this worker."""
    import keras

    settings = {
        "floatx": (keras.config.floatx, keras.config.set_floatx),
        "epsilon": (keras.config.epsilon, keras.config.set_epsilon),
        "image_data_format": (keras.config.image_data_format, keras.config.set_image_data_format),
    }
    if not _KERAS_CONFIG:
        _KERAS_CONFIG.update({name: get() for name, (get, _) in settings.items()})
    for name, (get, set_) in settings.items():
        if get() != _KERAS_CONFIG[name]:
            set_(_KERAS_CONFIG[name])


def _reset_keeping_compiled_functions(seed: int) -> bool:
    """``clear_session()`` + ``set_random_seed(seed)`` minus the emptying of TF's kernel cache.

    What it resets: Keras' per-thread global state and settings (name counters, dtype
    policy, floatx and the rest), which is what ``clear_session()`` replaces besides the
    kernel cache; TF1's default graph; the Python, NumPy and Keras seeds, through
    ``set_random_seed`` with TensorFlow's part aimed at a throwaway graph, so TensorFlow's
    eager seed stays the ``seed`` it already is. Keras 3 layers and ``keras.random`` draw
    through stateless ops seeded from those, and ``fit()``'s shuffling is traced in graphs
    whose seeds derive from the global seed, so the math equals a cold run.

    What it does not reset: the state of TensorFlow's *stateful* random kernels (e.g.
    ``tf.random.uniform`` called outside ``keras.random`` inside a custom layer or in the
    builder), which would go on drawing where the previous trial stopped on this worker
    instead of starting over. ``fit.reuse_model: false`` restores the full reset.

    Keras has no public call for the first part: it uses the module state that
    ``clear_session()`` itself replaces, and returns False (the caller then does the full
    reset) when a Keras version lays it out differently.
    """
    import threading

    import keras
    import tensorflow as tf

    try:
        from keras.src.backend.common import global_state
    except ImportError:
        return False
    if not (hasattr(global_state, "GLOBAL_STATE_TRACKER") and hasattr(global_state, "GLOBAL_SETTINGS_TRACKER")):
        return False
    global_state.GLOBAL_STATE_TRACKER = threading.local()
    global_state.GLOBAL_SETTINGS_TRACKER = threading.local()
    tf.compat.v1.reset_default_graph()
    with tf.Graph().as_default():  # tf.random.set_seed only sets this graph's seed: no cache clearing
        keras.utils.set_random_seed(seed)
    return True
