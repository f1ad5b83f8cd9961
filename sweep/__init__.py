"""sweep: Keras ``model.fit()`` hyperparameter sweeps on Ray Tune, Optuna and MLflow.

Python API for notebooks::

    import sweep
    result = sweep.run("search_spaces/digits_mlp.yaml", trials=8)
    result.best.params, result.best.value, result.trials

Heavy modules (Ray, TensorFlow, MLflow) load on first use, so ``import sweep`` and
``sweep --help`` stay fast.
"""

from typing import Any

from sweep.config import SweepConfig, SweepConfigError, load

_LAZY = {"SweepResult": "sweep.results", "BestTrial": "sweep.results", "TrialOutcome": "sweep.results"}


def run(source: Any, **overrides: Any) -> Any:
    """Run a sweep from a YAML path or dict and return a ``SweepResult`` (see ``sweep.runner.run``)."""
    from sweep.runner import run as _run

    return _run(source, **overrides)


def load_best(name: str, tracking_uri: str | None = None, safe_mode: bool | None = None, custom_objects: dict | None = None) -> Any:
    """The best model of sweep ``name`` as a ``keras.Model``, loaded with the sweep's own
    ``model.safe_mode`` (on by default) and custom objects; the arguments override them."""
    from sweep.export import load_best as _load_best

    return _load_best(name, tracking_uri, safe_mode=safe_mode, custom_objects=custom_objects)


def trials(name: str, tracking_uri: str | None = None) -> Any:
    """A past sweep's trials as a typed pandas DataFrame (see ``sweep.store.trials_frame``):
    one row per trial, its best ``value``, ``params_<name>`` columns with numbers as numbers."""
    from sweep import store

    return store.trials_frame(store.resolve_uri(tracking_uri), name)


def resume(name: str, **options: Any) -> Any:
    """Continue the unfinished sweep ``name`` (see ``sweep.runner.resume``)."""
    from sweep.runner import resume as _resume

    return _resume(name, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sweep' has no attribute {name!r}")


__all__ = ["run", "resume", "trials", "load", "load_best", "SweepConfig", "SweepConfigError", "SweepResult", "BestTrial", "TrialOutcome"]
