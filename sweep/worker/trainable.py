"""What runs in a Ray worker for each trial: fetch data once, reset, build, fit, report.

Workers are reused between trials (Tune's ``reuse_actors``), so TensorFlow is imported once
per worker and the sweep's arrays are fetched from the object store once per worker and
cached by fingerprint. Between trials the Keras session is cleared and seeds are reset, so a
trial on a reused worker computes exactly what it would on a fresh one. What a worker keeps
between trials is :data:`sweep.worker.state.STATE`; the trainable that brings each trial here
is built in the driver by :func:`sweep.worker.launch.make`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

from sweep.worker import placement
from sweep.spec.config import FitConfig, ModelConfig, ObjectiveConfig, ResourcesConfig, SweepConfig
from sweep.worker.state import STATE
from sweep.errors import raised_at
from sweep.protocol import REUSED_FIELD


@dataclass(frozen=True)
class TrialSettings:
    """The parts of the sweep a worker needs; small and picklable (shipped once per sweep)."""

    fit: FitConfig
    model: ModelConfig
    objective: ObjectiveConfig
    resources: ResourcesConfig
    epochs: int
    seed: int
    workdir: str | None = None  # the driver's working directory: where a trial's relative paths point

    @classmethod
    def from_config(cls, config: SweepConfig) -> "TrialSettings":
        return cls(
            fit=config.fit,
            model=config.model,
            objective=config.objective,
            resources=config.resources,
            epochs=config.max_epochs,
            seed=config.search.seed if config.search.seed is not None else 0,
            workdir=os.getcwd(),
        )


def run_sweep_trial(hp: dict[str, Any], parts_ref: Any, code: Any, fingerprint: str, body: Callable | None = None) -> None:
    """One trial on this worker, as the trainable of :func:`sweep.worker.launch.make` calls it.

    The user's modules (``code``, from ``imports.user_code``) are made importable before the
    builder is unpickled by name; the sweep's parts come from the worker's state (fetched once
    per sweep); the worker's checkpoint loads (retries, resumes) take the sweep's
    ``model.safe_mode`` and custom objects. ``body`` replaces :func:`run_trial` (same
    arguments; ``benchmarks/scale.py`` times the orchestrator without Keras with it).
    """
    from sweep.inputs import imports

    earlier = imports.installed_digest()
    roots = imports.ensure_importable(code)  # before the builder's module is imported by name
    if earlier is not None and code is not None and code.digest != earlier:
        STATE.forget_user_code()  # a warm executor's next sweep, with other or edited modules
    settings, data_ref, builder = STATE.bound_parts(parts_ref)
    if body is None:
        from sweep.worker.checkpoints import use_model_settings

        importlib.import_module("keras")  # loaded before STATE.configure's gc.freeze(), as the Keras trial always had it
        use_model_settings(settings.model, roots)
    with sweep_working_directory(settings.workdir):
        try:
            (body or run_trial)(hp, settings, data_ref, fingerprint, builder)
        except KeyboardInterrupt as exc:
            raise_as_trial_error(exc)


def raise_as_trial_error(exc: KeyboardInterrupt) -> None:
    """A ``KeyboardInterrupt`` the trial's own code raised (a callback's "stop now", a data
    function's) fails this trial with its reason. Ray takes one escaping a task for a
    cancellation and said only ``TaskCancelledError: Task ... was cancelled``. A trial runs in a
    thread of its own (Tune's runner thread, or a warm executor's), where no signal is delivered:
    in the main thread it is a real interrupt and goes on as one."""
    if threading.current_thread() is threading.main_thread():
        raise exc
    said = f": {exc}" if str(exc) else ""
    raise RuntimeError(f"the trial's own code raised KeyboardInterrupt{said}{raised_at(exc)}") from None


TRIAL_DIR_ENV = "SWEEP_TRIAL_DIR"


@contextlib.contextmanager
def sweep_working_directory(workdir: str | None) -> Any:
    """Run the trial in the directory the sweep was started from, when it exists on this node
    (always on one machine), as a plain script's ``model.fit()`` would: a data function's
    ``image_dataset_from_directory("images/train")`` reads there, when the files are opened
    lazily during fit() too. Tune starts a trial in its own folder (Ray Tune's default); that
    folder stays reachable as ``$SWEEP_TRIAL_DIR``, for files a callback writes per trial. On a
    node without that directory (a cluster) the trial stays in Tune's folder."""
    try:
        trial_dir: str | None = os.getcwd()
        os.environ[TRIAL_DIR_ENV] = trial_dir
    except OSError:  # Tune's folder was deleted under this worker
        trial_dir = None
    moved = bool(workdir) and workdir != trial_dir and os.path.isdir(workdir)
    if moved:
        os.chdir(workdir)
    try:
        yield
    finally:
        if moved and trial_dir is not None:
            with contextlib.suppress(OSError):
                os.chdir(trial_dir)


def run_trial(hp: dict[str, Any], settings: TrialSettings, data_ref: Any, fingerprint: str, builder: Callable) -> None:
    """One trial: build and compile the model, then fit with the Tune reporter attached."""
    STATE.configure(settings.resources)
    from sweep.worker import reporting
    from sweep.worker import resources as worker
    from sweep.worker.checkpoints import load_checkpoint, read_meta

    trace = worker.Trace(reporting.trial_id())
    trace.mark("trial_start")
    dataset = STATE.fetch_data(data_ref, fingerprint)
    trace.mark("data_ready")
    STATE.reset(settings.seed, keep_compiled=settings.fit.reuse_model and len(STATE.models) > 0)
    trace.mark("reset_done")
    initial_epoch, best, model = 0, None, None
    checkpoint = reporting.get_checkpoint()
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
        if checkpoint is not None and initial_epoch >= trial_epochs(hp, settings.epochs):
            report_nothing_left(settings.objective, initial_epoch, best)
        else:
            _build_and_fit(hp, settings, dataset, builder, model, initial_epoch, best, trace, progress)
    except Exception as exc:
        if not isinstance(exc, infeasible_errors()):
            raise
        report_infeasible(settings.objective, exc, progress["epoch"])  # say so; the search learns it is the worst
    finally:
        trace.mark("trial_end")


def resume_checkpoint(location: str) -> Any:
    """The checkpoint an interrupted trial continues from, or a clear error when it is gone
    (deleted since the crash) rather than Keras failing to open a file deep inside the load."""
    from ray import tune

    from sweep.worker import storage
    from sweep.worker.checkpoints import MODEL_FILE

    local = storage.local_path(location)
    if local is not None and not (local / MODEL_FILE).is_file():
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
    steps = worker.steps_per_execution(
        getattr(settings.fit, "steps_per_execution", "auto"), batch_size, dataset.info.n_train or batch_size, steps_per_epoch=settings.fit.steps_per_epoch, validation_steps=settings.fit.validation_steps,
    )
    epochs = trial_epochs(hp, settings.epochs)
    reused = False
    if model is None:
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            model = models.build(builder, hp, dataset.info, settings.model, steps_per_execution=steps)
        if strategy is None and settings.fit.reuse_model:
            STATE.models.max_mb = settings.fit.reuse_model_mb
            model, reused = STATE.models.take(model)  # same architecture as an earlier trial here: no retracing
    trace.mark("model_ready", reused=reused)
    if "validation_batch_size" in inputs:
        inputs["validation_batch_size"] = validation_batch_size(model, batch_size, settings.fit, dataset.info)
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
    except SystemExit as exc:
        if getattr(exc, "from_tune", False):
            raise
        # the trial's own code (a callback, a loss, train_step) called sys.exit: its error, said
        # as such; as SystemExit it ended the worker, and Ray retried it as a lost worker twice
        raise RuntimeError(f"the trial's own code called sys.exit({exc.code!r}) during fit(){raised_at(exc)}") from None
    finally:
        # Only drop the reference: clearing the session here would stall Tune's reuse of this
        # worker (a stopped trial's thread must end within TUNE_FUNCTION_THREAD_TIMEOUT_S, 2 s,
        # or the next trial fails); the next trial's STATE.reset clears it instead.
        del model


def fit_inputs(dataset: Any, batch_size: int) -> dict[str, Any]:
    """The data arguments of ``model.fit()``: arrays (any Keras structure, with sample weights)
    with the trial's batch size, or this worker's pipelines (:mod:`sweep.inputs.pipelines`).
    Arrays validate in the trial's batch size until :func:`validation_batch_size` sets it for
    the built model."""
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
        "validation_batch_size": batch_size,  # see validation_batch_size, once the model is built
    }


VALIDATION_ROWS = 1024  # at most, in fit.validation_batch_size: auto
VALIDATION_BATCH_BYTES = 64 * 2**20  # one auto validation batch's layer outputs, at most


def validation_batch_size(model: Any, batch_size: int, fit: FitConfig, info: Any) -> int:
    """Rows per validation batch (``fit.validation_batch_size``).

    ``auto``: in batches of up to :data:`VALIDATION_ROWS` rows (fewer calls, the same metrics),
    but only while one batch's layer outputs (:func:`~sweep.inputs.models.activation_bytes_per_row`)
    stay under :data:`VALIDATION_BATCH_BYTES`: a flat 1024 rows took a conv net trained in batches
    of 8 from 1057 to 3367 MB of resident memory, where a plain ``fit()`` validates in its batch
    size. The trial's batch size, as a plain ``fit()``, with ``fit.validation_steps`` (which
    counts batches), for a model with several outputs (whose per-output validation losses Keras
    averages over batches unweighted by their size: ``val_kind_loss`` depended on the batch size,
    1.2496 against a plain fit's 1.2366), and when the layers' sizes are unknown (a subclassed
    model). A model built for a fixed batch size validates in that size, whatever the setting."""
    from sweep.inputs import models

    fixed = models.fixed_batch_size(model)
    if fixed is not None:
        return fixed
    if fit.validation_batch_size != "auto":
        return int(fit.validation_batch_size)
    if fit.validation_steps or info.num_heads > 1:
        return batch_size
    per_row = models.activation_bytes_per_row(model)
    if per_row is None:
        return batch_size
    return max(batch_size, min(VALIDATION_ROWS, VALIDATION_BATCH_BYTES // per_row))


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
    from sweep.protocol import END_FIELD, EPOCH_FIELD, KEYS_FIELD, FailureKind, Objective, format_failure
    from sweep.worker import reporting

    kind = FailureKind.OUT_OF_MEMORY if not isinstance(exc, InfeasibleTrial) else FailureKind.INFEASIBLE
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    worst = Objective(objective.metric, objective.mode).worst
    reporting.report({objective.metric: worst, KEYS_FIELD: "", EPOCH_FIELD: epoch, END_FIELD: format_failure(kind, detail)})


def report_nothing_left(objective: Any, epoch: int, value: float | None) -> None:
    """End a trial that resumes from its last epoch's checkpoint (the sweep stopped after that
    epoch was reported, before the trial ended): nothing is left to train, so it reports once,
    as completed, with the checkpoint's objective ``value``. Without a report Tune would abort the
    whole resumed sweep (a trial's only result must hold the objective). The epoch's metrics were
    logged in the first session; the tracker logs an epoch once, so nothing is logged twice."""
    from sweep.protocol import END_FIELD, EPOCH_FIELD, KEYS_FIELD, Objective, TrialStatus
    from sweep.worker import reporting

    found = value if value is not None else Objective(objective.metric, objective.mode).worst
    reporting.report({objective.metric: found, KEYS_FIELD: "", EPOCH_FIELD: epoch, END_FIELD: TrialStatus.COMPLETED.value})


def check_batch_size(batch_size: int, rows: int) -> None:
    """A batch larger than the training data is not the batch size the search asked for
    (Keras silently trains on the whole set at once): the trial fails, saying so in one line."""
    if batch_size > rows:
        raise InfeasibleTrial(f"batch_size {batch_size} is larger than the {rows} training rows")

