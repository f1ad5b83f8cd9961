"""Keras callbacks that run inside a trial: the Tune reporter and the ones users name in ``fit:``.

``TuneReporter`` differs from Ray's own Keras callback in one way that matters for cost: it
saves a checkpoint only when the objective improved, not every epoch. Because ASHA can stop a
trial at any rung, the best weights must already be on disk when the stop comes; saving on
improvement gives exactly that with a fraction of the writes.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any, Callable

import keras

from sweep.spec.config import FitConfig, ObjectiveConfig
from sweep.errors import InputError
from sweep.protocol import END_FIELD, EPOCH_FIELD, HELD_EPOCHS_FIELD, IMPROVED_FIELD, KEYS_FIELD, NAN_LOSS, Objective, TrialStatus
from sweep.worker import reporting
from sweep.worker.checkpoints import save_checkpoint


class TuneReporter(keras.callbacks.Callback):
    """Reports each epoch's logs to Tune (with the true epoch number, which survives a resume); checkpoints on improvement.

    Put it last in the callback list so that flags set by earlier callbacks in the same epoch
    (EarlyStopping, TerminateOnNaN) are visible when it decides whether this is the last epoch.
    """

    def __init__(self, objective: ObjectiveConfig, epochs: int, best: float | None = None, extra: Callable[[], dict] | None = None):
        super().__init__()
        self.metric, self.mode, self.epochs = objective.metric, objective.mode, epochs
        self.best = best
        self._extra = extra or (lambda: {})
        self._held: list[tuple[int, dict[str, float]]] = []  # epochs not validated yet to report

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = scalar_logs(logs)
        value = metrics.get(self.metric)
        improved = value is not None and Objective(self.metric, self.mode).is_better(value, self.best)
        report = {**metrics, KEYS_FIELD: ",".join(metrics), EPOCH_FIELD: epoch + 1, IMPROVED_FIELD: float(improved), **self._extra()}
        end = self._end_reason(epoch, metrics)
        if end:
            report[END_FIELD] = end
            if value is None:  # the last epoch skipped validation (fit.validation_freq)
                report.update(self._objective_without_validation(end, epoch + 1))
        elif value is None and self.metric.startswith("val_"):
            # fit.validation_freq skipped validation this epoch: the scheduler sees validated
            # epochs only; its logs go to MLflow with the next report
            self._held.append((epoch + 1, metrics))
            return
        if self._held:
            report[HELD_EPOCHS_FIELD] = json.dumps(self._held)
            self._held = []
        if not improved:
            reporting.report(report)
            return
        self.best = value
        with tempfile.TemporaryDirectory(prefix="sweep-ckpt-") as folder:
            save_checkpoint(self.model, Path(folder), epoch=epoch + 1, metric=self.metric, value=value)
            reporting.report(report, checkpoint_dir=folder)

    def _objective_without_validation(self, end: str, epochs_run: int) -> dict[str, Any]:
        """The objective of a last report whose epoch was not validated: Tune refuses a trial's
        result without it. The best validated value stands for the trial (outside the logged
        keys, so no epoch metric is invented); a trial never validated ends as failed, saying why."""
        if self.best is not None:
            return {self.metric: self.best}
        said = {self.metric: Objective(self.metric, self.mode).worst}
        if end == TrialStatus.COMPLETED.value:
            said[END_FIELD] = (
                f"{self.metric} was never computed: the trial ended at epoch {epochs_run}, "
                "before fit.validation_freq validated any epoch"
            )
        return said

    def _end_reason(self, epoch: int, metrics: dict[str, float]) -> str | None:
        """``completed`` on the natural last epoch, ``nan_loss`` when the loss blew up, else None."""
        loss = metrics.get("loss")
        if loss is not None and not math.isfinite(loss):
            self.model.stop_training = True
            return NAN_LOSS
        if epoch + 1 >= self.epochs or self.model.stop_training:
            return TrialStatus.COMPLETED.value  # a plain str crosses to the driver
        return None


def scalar_logs(logs: dict[str, Any] | None) -> dict[str, float]:
    """Keras' epoch logs as numbers: a one-element array (``F1Score`` on one output unit) is its
    value; a metric with one value per class (``F1Score(average=None)``) becomes ``name_0``,
    ``name_1``...; anything else that is not a number is left out."""
    import numpy as np

    found: dict[str, float] = {}
    for name, value in (logs or {}).items():
        try:
            array = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            continue
        if array.size == 1:
            found[name] = float(array.reshape(()))
        else:
            found.update({f"{name}_{index}": float(v) for index, v in enumerate(array.ravel())})
    return found


# ---------------------------------------------------------------------------------------------
# callbacks users can name in ``fit.callbacks``


def _early_stopping(objective: ObjectiveConfig, **kwargs: Any) -> keras.callbacks.Callback:
    kwargs.setdefault("monitor", objective.metric)
    kwargs.setdefault("mode", objective.mode)
    return keras.callbacks.EarlyStopping(**kwargs)


def _reduce_lr_on_plateau(objective: ObjectiveConfig, **kwargs: Any) -> keras.callbacks.Callback:
    kwargs.setdefault("monitor", objective.metric)
    kwargs.setdefault("mode", objective.mode)
    return keras.callbacks.ReduceLROnPlateau(**kwargs)


def _terminate_on_nan(objective: ObjectiveConfig, **kwargs: Any) -> keras.callbacks.Callback:
    return keras.callbacks.TerminateOnNaN(**kwargs)


KERAS_CALLBACKS: dict[str, Callable[..., keras.callbacks.Callback]] = {
    "early_stopping": _early_stopping,
    "reduce_lr_on_plateau": _reduce_lr_on_plateau,
    "terminate_on_nan": _terminate_on_nan,
}


class _NotAFactory(TypeError):
    """A user's function named in fit.callbacks that cannot be called with the entry's arguments."""


def _user_callback(spec: str, key: str, search_paths: tuple[Path, ...]) -> Callable[..., keras.callbacks.Callback]:
    """``package.module:Name``: the user's Callback class (or factory), called with the entry's
    arguments. Its module is looked up in ``search_paths`` too (a ``my_callbacks.py`` next to the
    sweep file), like the model builder's, and so reaches the workers with the user's code."""
    from sweep.inputs.imports import is_spec, resolve

    if not is_spec(spec):
        import difflib

        close = difflib.get_close_matches(spec, list(KERAS_CALLBACKS), n=1, cutoff=0.75)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(key, f"expected one of {', '.join(KERAS_CALLBACKS)} or package.module:Name, got {spec!r}{guess}")
    cls = resolve(spec, key, search_paths)

    def make(objective: Any, **kwargs: Any) -> keras.callbacks.Callback:
        try:
            return cls(**kwargs)
        except TypeError as exc:
            if isinstance(cls, type):
                raise
            # a function (the model factory named by mistake): its missing 'hp' and 'info' were
            # said as if the entry's arguments were wrong
            shown = f"with {kwargs}" if kwargs else "with no arguments"
            raise _NotAFactory(f"expected {spec} to make a keras.callbacks.Callback, but it is a function whose call {shown} failed: {exc}") from None

    return make


def callback_entries(fit: FitConfig) -> list[tuple[str, dict[str, Any]]]:
    """``fit.callbacks`` as ``(name, keyword arguments)`` pairs: ``early_stopping`` and
    ``{early_stopping: {patience: 3}}`` alike."""
    return [(entry, {}) if isinstance(entry, str) else next(iter(entry.items())) for entry in fit.callbacks]


def keras_callbacks(fit: FitConfig, objective: ObjectiveConfig, search_paths: tuple[Path, ...] = ()) -> list[keras.callbacks.Callback]:
    """The callbacks named in ``fit.callbacks``, plus TerminateOnNaN which is always on.

    ``search_paths``: where a user's callback module may be (the driver's preflight passes the
    sweep file's folder and the working directory; a worker has the user's code on sys.path).
    Raises :class:`InputError` naming ``fit.callbacks.<i>`` for an unknown name, a module that
    does not import, bad arguments, or something that is not a Keras callback."""
    made: list[keras.callbacks.Callback] = []
    names = set()
    for index, (entry, (name, kwargs)) in enumerate(zip(fit.callbacks, callback_entries(fit))):
        key = f"fit.callbacks.{index}"
        if not isinstance(entry, str) and len(entry) != 1:
            raise InputError(key, f"expected one callback name per entry, got {sorted(entry)}")
        factory = KERAS_CALLBACKS.get(name) or _user_callback(name, key, search_paths)
        try:
            callback = factory(objective, **(kwargs or {}))
        except _NotAFactory as exc:
            raise InputError(key, str(exc)) from None
        except (TypeError, ValueError) as exc:  # ValueError: a value Keras refuses (ReduceLROnPlateau's factor >= 1)
            raise InputError(key, f"expected valid arguments for {name}: {exc}") from None
        except SystemExit as exc:  # not the sweep's exit (it ended `sweep run` silently with code 0)
            raise InputError(key, f"expected {name} to make a callback, but it called sys.exit({exc.code!r})") from None
        if not isinstance(callback, keras.callbacks.Callback):
            raise InputError(key, f"expected {name} to make a keras.callbacks.Callback, got {type(callback).__name__}")
        made.append(callback)
        names.add(name)
    if "terminate_on_nan" not in names:
        made.append(keras.callbacks.TerminateOnNaN())
    return made
