"""A user's model factory that misbehaves on purpose, per the trial's ``fault`` hyperparameter.

- ``none``: a plain regression MLP.
- ``nan``: a plain MLP whose learning rate makes the loss overflow to NaN in the first epoch.
- ``raise``: the factory raises, as a broken user factory would.
- ``kill_once``: the worker process is SIGKILLed ~2.5 s into the trial, once per marker file
  (a worker lost mid-epoch); the retried trial trains normally.
The driver's preflight build (no Ray actor) never faults.
"""

import os
import signal
import threading
from pathlib import Path

import keras

MARKER = Path(__file__).resolve().parent / "killed.marker"


def _in_trial_worker() -> bool:
    import ray

    return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None


def _kill_this_worker_soon(seconds: float) -> None:
    if MARKER.exists():
        return
    MARKER.write_text(str(os.getpid()))
    threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGKILL)).start()


def build(hp, info):
    fault = hp.get("fault", "none")
    if _in_trial_worker():
        if fault == "raise":
            raise RuntimeError("faulty factory refused to build")
        if fault == "kill_once":
            _kill_this_worker_soon(2.5)
    inputs = keras.Input(shape=info.input_shape)
    x = keras.layers.Dense(32, activation="relu")(inputs)
    outputs = keras.layers.Dense(info.num_outputs)(x)
    model = keras.Model(inputs, outputs)
    if fault == "nan" and _in_trial_worker():
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e12), loss="mse", metrics=["mae"])
    return model


def build_always_broken(hp, info):
    """Fails in every trial worker, passes the driver's preflight."""
    if _in_trial_worker():
        raise ValueError(f"cannot build a model for input shape {info.input_shape}: broken on purpose")
    inputs = keras.Input(shape=info.input_shape)
    return keras.Model(inputs, keras.layers.Dense(info.num_outputs)(inputs))
