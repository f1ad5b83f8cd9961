"""The driver's side of the worker: the Tune trainable that carries a sweep to its trial workers.

:func:`make` runs in the driver, once per sweep: it puts the sweep's parts in the object store
and returns the function Tune calls for each trial. That function runs on a worker and hands
the trial to :func:`sweep.worker.trainable.run_sweep_trial`; everything it does there is in
:mod:`sweep.worker.trainable` and :mod:`sweep.worker.state`.
"""

from __future__ import annotations

from typing import Any, Callable

from sweep.worker.trainable import TrialSettings, run_sweep_trial


def make(
    settings: TrialSettings, data_ref: Any, fingerprint: str, builder: Callable, trial: Callable | None = None,
    search_paths: tuple[Any, ...] = (), executors: tuple[Any, ...] = (),
) -> Any:
    """The Tune trainable: a function of the trial's hyperparameters, with our parts bound.

    The parts (settings, builder, the data's ObjectRef) go to the object store once, and the
    trainable carries only that one reference: a worker fetches them on its first trial and
    keeps them (:meth:`~sweep.worker.state.WorkerState.bound_parts`). ``tune.with_parameters``
    fetched every bound value again on every trial, and deserializing the data's ObjectRef
    registered the worker as a borrower with the driver each time: with GIL sampling, a third
    of a warm worker's Python time in a 1,000-trial no-op sweep. The data itself is fetched
    once per worker (:meth:`~sweep.worker.state.WorkerState.fetch_data`). ``trial`` replaces
    :func:`~sweep.worker.trainable.run_trial` (same arguments); ``benchmarks/scale.py`` uses it
    to time the orchestrator without Keras.

    The user's modules in ``search_paths`` (the sweep file's folder) are imported by name on
    the worker, before the builder is unpickled (``imports.ensure_importable``: the folders on
    ``sys.path``, or a shipped copy of the files where a folder does not exist), and the
    worker's checkpoint loads (retries, resumes) use the sweep's ``model.safe_mode`` and
    custom objects (``checkpoints.use_model_settings``).

    With ``executors`` (warm :class:`~sweep.worker.executor.TrialExecutor` handles, see
    :func:`sweep.driver.session.warm_executors`) a trial runs on a free one, which kept
    TensorFlow, the data and compiled models from earlier trials and sweeps; the trainable
    itself then never imports TensorFlow. Without one free, it runs here.
    """
    import ray
    from ray import tune

    from sweep.inputs import imports

    parts_ref = ray.put((settings, data_ref, builder))  # a nested ref comes back as the ref, not its value
    code = imports.user_code(tuple(search_paths))

    def sweep_trial(hp: dict[str, Any]) -> None:  # Tune names the trials after it (sweep_trial_<id>)
        if executors and trial is None:
            from sweep.worker.executor import run_on_executor

            if run_on_executor(executors, hp, parts_ref, code, fingerprint):
                return
        run_sweep_trial(hp, parts_ref, code, fingerprint, trial)

    resources: dict[str, Any] = {"cpu": settings.resources.cpus_per_trial, "gpu": settings.resources.gpus_per_trial}
    resources.update(settings.resources.custom)
    return tune.with_resources(sweep_trial, resources)
