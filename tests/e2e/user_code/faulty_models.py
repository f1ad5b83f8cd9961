"""A user's model factory that misbehaves on purpose, per the trial's ``fault`` hyperparameter.

- ``none``: a plain regression MLP.
- ``nan``: a plain MLP whose learning rate makes the loss overflow to NaN in the first epoch.
- ``raise``: the factory raises, as a broken user factory would.
- ``exit``: the model's loss calls ``sys.exit(3)`` inside fit().
- ``interrupt``: the model's loss raises ``KeyboardInterrupt`` inside fit() (a "stop now").
- ``kill_once``: the worker process is SIGKILLed just after its trial's first checkpoint, once
  per marker file (a worker lost mid-epoch); the retried trial trains normally.
The driver's preflight build (no Ray actor) never faults.
"""

import os
import signal
import threading
import time
from pathlib import Path

import keras

MARKER = Path(__file__).resolve().parent / "killed.marker"


def _in_trial_worker() -> bool:
    import ray

    return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None


def _kill_this_worker_after_first_checkpoint(timeout: float = 60) -> None:
    """SIGKILL this worker mid-epoch, once its trial has saved a checkpoint (once per marker)."""
    if MARKER.exists():
        return
    MARKER.write_text(str(os.getpid()))
    from sweep.worker import reporting

    # the test's --storage is runs/ next to this file, where this trial's folder (0001_<ray id>)
    # gets its checkpoints; the trial may run on a warm executor, outside Tune's own session
    pattern = f"runs/*/*_{reporting.trial_id()}/checkpoint_*"

    def watch() -> None:
        deadline = time.time() + timeout
        while time.time() < deadline and not any(MARKER.parent.glob(pattern)):
            time.sleep(0.05)
        time.sleep(0.1)  # into the next epoch
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()


def build(hp, info):
    fault = hp.get("fault", "none")
    if _in_trial_worker():
        if fault == "raise":
            raise RuntimeError("faulty factory refused to build")
        if fault == "kill_once":
            _kill_this_worker_after_first_checkpoint()
    inputs = keras.Input(shape=info.input_shape)
    x = keras.layers.Dense(32, activation="relu")(inputs)
    outputs = keras.layers.Dense(info.num_outputs)(x)
    model = keras.Model(inputs, outputs)
    if fault == "nan" and _in_trial_worker():
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e12), loss="mse", metrics=["mae"])
    if fault == "exit" and _in_trial_worker():
        model.compile(optimizer="adam", loss=_exits, metrics=["mae"])
    if fault == "interrupt" and _in_trial_worker():
        model.compile(optimizer="adam", loss=_interrupts, metrics=["mae"])
    return model


def _interrupts(y_true, y_pred):
    """A loss that raises KeyboardInterrupt when fit() traces it."""
    raise KeyboardInterrupt("stop now")


def _exits(y_true, y_pred):
    """A loss that calls sys.exit when fit() traces it (a training script's habit)."""
    import sys

    sys.exit(3)


def build_always_broken(hp, info):
    """Fails in every trial worker, passes the driver's preflight."""
    if _in_trial_worker():
        raise ValueError(f"cannot build a model for input shape {info.input_shape}: broken on purpose")
    inputs = keras.Input(shape=info.input_shape)
    return keras.Model(inputs, keras.layers.Dense(info.num_outputs)(inputs))


class FailAtSecondEpoch(keras.callbacks.Callback):
    """fit.callbacks entry: every trial fails as its second epoch begins (a user's bug that
    shows only once training runs: after a good first epoch and its checkpoint)."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise ValueError("broken at the second epoch on purpose")
