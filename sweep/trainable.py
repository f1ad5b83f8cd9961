"""What runs in a Ray worker: fetch data once, reset, build, fit, report.

Workers are reused between trials (Tune's ``reuse_actors``), so TensorFlow is imported once
per worker and the sweep's arrays are fetched from the object store once per worker and
cached by fingerprint. Between trials the Keras session is cleared and seeds are reset, so a
trial on a reused worker computes exactly what it would on a fresh one.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any, Callable

from sweep.config import FitConfig, ModelConfig, ObjectiveConfig, ResourcesConfig, SweepConfig

# Per-worker state: survives between trials on a reused worker.
_DATA_CACHE: dict[str, Any] = {}
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


def make(settings: TrialSettings, data_ref: Any, fingerprint: str, builder: Callable) -> Any:
    """The Tune trainable: a function of the trial's hyperparameters, with our parts bound.

    ``data_ref`` travels inside a list so Tune passes the ObjectRef itself, not its value:
    the worker decides whether it needs to fetch it.
    """
    from ray import tune

    def sweep_trial(hp: dict[str, Any], settings: TrialSettings, data: list, builder: Callable) -> None:
        run_trial(hp, settings, data[0], fingerprint, builder)

    trainable = tune.with_parameters(sweep_trial, settings=settings, data=[data_ref], builder=builder)
    resources: dict[str, Any] = {"cpu": settings.resources.cpus_per_trial, "gpu": settings.resources.gpus_per_trial}
    resources.update(settings.resources.custom)
    return tune.with_resources(trainable, resources)


def run_trial(hp: dict[str, Any], settings: TrialSettings, data_ref: Any, fingerprint: str, builder: Callable) -> None:
    """One trial: build and compile the model, then fit with the Tune reporter attached."""
    configure_worker(settings.resources)
    import keras
    from ray import tune

    from sweep import models
    from sweep.callbacks import TuneReporter, keras_callbacks, load_checkpoint, read_meta

    dataset = fetch_data(data_ref, fingerprint)
    reset_state(settings.seed)
    initial_epoch, best = 0, None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retried or resumed trial continues from its checkpoint
        with checkpoint.as_directory() as folder:
            model = load_checkpoint(folder)
            meta = read_meta(folder)
        initial_epoch, best = int(meta.get("epoch", 0)), meta.get("value")
    else:
        model = models.build(builder, hp, dataset.info, settings.model)
    batch_size = int(hp.get("batch_size", settings.fit.batch_size))
    callbacks = keras_callbacks(settings.fit, settings.objective)
    callbacks.append(TuneReporter(settings.objective, settings.epochs, best=best))
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
        del model
        keras.backend.clear_session()
        gc.collect()


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
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass
    _CONFIGURED = True


def fetch_data(data_ref: Any, fingerprint: str) -> Any:
    """The sweep's Dataset, fetched from the object store at most once per worker."""
    cached = _DATA_CACHE.get(fingerprint)
    if cached is None:
        import ray

        _DATA_CACHE.clear()  # a new sweep's data replaces the old one
        cached = _DATA_CACHE[fingerprint] = ray.get(data_ref)
    return cached


def reset_state(seed: int) -> None:
    """Forget everything the previous trial on this worker left behind, then seed."""
    import keras

    keras.backend.clear_session()
    gc.collect()
    keras.utils.set_random_seed(seed)
