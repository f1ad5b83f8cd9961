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

from sweep import placement
from sweep.config import FitConfig, ModelConfig, ObjectiveConfig, ResourcesConfig, SweepConfig
from sweep.reuse import ModelCache

# Per-worker state: survives between trials on a reused worker.
_DATA_CACHE: dict[str, Any] = {}
MODELS = ModelCache()  # compiled models by signature (sweep.reuse)
REUSED_FIELD = "sweep_model_reused"  # in each result: did this trial train a reused compiled model
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


def make(settings: TrialSettings, data_ref: Any, fingerprint: str, builder: Callable, trial: Callable | None = None) -> Any:
    """The Tune trainable: a function of the trial's hyperparameters, with our parts bound.

    ``data_ref`` travels inside a list so Tune passes the ObjectRef itself, not its value:
    the worker decides whether it needs to fetch it. ``trial`` replaces :func:`run_trial`
    (same arguments); ``benchmarks/scale.py`` uses it to time the orchestrator without Keras.
    """
    from ray import tune

    body = trial or run_trial

    def sweep_trial(hp: dict[str, Any], settings: TrialSettings, data: list, builder: Callable) -> None:
        body(hp, settings, data[0], fingerprint, builder)

    trainable = tune.with_parameters(sweep_trial, settings=settings, data=[data_ref], builder=builder)
    resources: dict[str, Any] = {"cpu": settings.resources.cpus_per_trial, "gpu": settings.resources.gpus_per_trial}
    resources.update(settings.resources.custom)
    return tune.with_resources(trainable, resources)


def run_trial(hp: dict[str, Any], settings: TrialSettings, data_ref: Any, fingerprint: str, builder: Callable) -> None:
    """One trial: build and compile the model, then fit with the Tune reporter attached."""
    configure_worker(settings.resources)
    from ray import tune

    from sweep import worker
    from sweep.callbacks import load_checkpoint, read_meta

    trace = worker.Trace(_trial_id())
    trace.mark("trial_start")
    dataset = fetch_data(data_ref, fingerprint)
    trace.mark("data_ready")
    reset_state(settings.seed)
    trace.mark("reset_done")
    initial_epoch, best, model = 0, None, None
    checkpoint = tune.get_checkpoint()
    if checkpoint is None and hp.get("_resume_from"):  # interrupted before its driver died (sweep.resume)
        checkpoint = tune.Checkpoint(hp["_resume_from"])
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


def _build_and_fit(
    hp: dict[str, Any], settings: TrialSettings, dataset: Any, builder: Callable, model: Any,
    initial_epoch: int, best: float | None, trace: Any, progress: dict[str, int],
) -> None:
    """Build (unless resuming ``model``), then fit with the Tune reporter attached."""
    from sweep import models, worker
    from sweep.callbacks import TuneReporter, keras_callbacks

    strategy = placement.strategy(settings.resources)  # MirroredStrategy when > 1 GPU, else None
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    batch_size = placement.batch_size(int(hp.get("batch_size", settings.fit.batch_size)), settings.resources, replicas)
    check_batch_size(batch_size, len(dataset.x_train))
    steps = worker.steps_per_execution(getattr(settings.fit, "steps_per_execution", "auto"), batch_size, len(dataset.x_train))
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
    callbacks.append(TuneReporter(settings.objective, settings.epochs, best=best, extra=lambda: {**worker.result_fields(trace), **identity, REUSED_FIELD: reused}))
    callbacks.append(worker.ReportDone(trace))
    callbacks.append(_epoch_counter(progress))
    try:
        model.fit(
            dataset.x_train,
            dataset.y_train,
            batch_size=batch_size,
            epochs=settings.epochs,
            initial_epoch=initial_epoch,
            validation_data=(dataset.x_val, dataset.y_val),
            validation_batch_size=max(batch_size, 1024),
            shuffle=settings.fit.shuffle,
            callbacks=callbacks,
            verbose=0,
        )
    finally:
        # Only drop the reference: clearing the session here would stall Tune's reuse of this
        # worker (a stopped trial's thread must end within TUNE_FUNCTION_THREAD_TIMEOUT_S, 2 s,
        # or the next trial fails); the next trial's reset_state clears it instead.
        del model


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

    from sweep.results import END_FIELD, EPOCH_FIELD, KEYS_FIELD

    kind = "out of memory" if not isinstance(exc, InfeasibleTrial) else "infeasible"
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    worst = float("-inf") if objective.mode == "max" else float("inf")
    tune.report({objective.metric: worst, KEYS_FIELD: "", EPOCH_FIELD: epoch, END_FIELD: f"{kind}: {detail}"})


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


def configure_worker(resources: ResourcesConfig) -> None:
    """Once per worker process: TF threads to match the trial's CPUs, GPU memory growth on."""
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
    placement.configure_gpus(resources)  # hide / share (memory limit) / grow, per gpus_per_trial
    _CONFIGURED = True


def fetch_data(data_ref: Any, fingerprint: str) -> Any:
    """The sweep's Dataset, fetched from the object store at most once per worker."""
    cached = _DATA_CACHE.get(fingerprint)
    if cached is None:
        import ray

        _DATA_CACHE.clear()  # a new sweep's data replaces the old one
        cached = _DATA_CACHE[fingerprint] = ray.get(data_ref)
    return cached


FULL_GC_INTERVAL_S = 10.0  # seconds of trials between full garbage collections on a warm worker
_LAST_FULL_GC: float | None = None


def reset_state(seed: int) -> None:
    """Forget everything the previous trial on this worker left behind, then seed.

    The one place a worker clears Keras (session, name counters) and collects the previous
    model's cycles. A full collection with TensorFlow loaded costs ~0.25-0.45 s on 2 cores
    (Keras' own ``clear_session()`` runs one by default, so calling both paid it twice); a
    young-generation one ~4 ms. So each trial collects the young generations, where the
    previous trial's objects are, and a full collection runs on the first trial and then at
    most once per ``FULL_GC_INTERVAL_S``: one per trial when trials are long, one per few
    dozen when they take 0.2 s (where a full collection per 8 trials had cost 12% of the
    worker's time), which bounds what can creep into the old generation either way.
    """
    global _LAST_FULL_GC
    import time

    import keras

    keras.backend.clear_session(free_memory=False)
    now = time.monotonic()
    if _LAST_FULL_GC is None or now - _LAST_FULL_GC >= FULL_GC_INTERVAL_S:
        gc.collect()
        _LAST_FULL_GC = now
    else:
        gc.collect(1)
    keras.utils.set_random_seed(seed)
