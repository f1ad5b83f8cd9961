"""sweep: Keras ``model.fit()`` hyperparameter sweeps on Ray Tune, Optuna and MLflow.

Python API for notebooks::

    import sweep
    result = sweep.run("search_spaces/digits_mlp.yaml", trials=8)
    result.best.params, result.best.value, result.trials

Heavy modules (Ray, TensorFlow, MLflow) load on first use, so ``import sweep`` and
``sweep --help`` stay fast.
"""

from typing import Any

from sweep.errors import SweepConfigError

# Loaded on first use: the sweep file's models import pydantic (~0.1 s), which the writer child
# process and `sweep --help` do not need.
_LAZY = {"SweepConfig": "sweep.spec.config", "load": "sweep.spec.config", "SweepResult": "sweep.driver.ledger", "BestTrial": "sweep.driver.ledger", "TrialOutcome": "sweep.driver.ledger"}


def run(source: Any, **overrides: Any) -> Any:
    """Run a sweep from a YAML path or dict and return a ``SweepResult`` (see ``sweep.driver.runner.run``)."""
    from sweep.driver.runner import run as _run

    return _run(source, **overrides)


def load_best(name: str, tracking_uri: str | None = None, safe_mode: bool | None = None, custom_objects: dict | None = None) -> Any:
    """The best model of sweep ``name`` as a ``keras.Model``, loaded with the sweep's own
    ``model.safe_mode`` (on by default) and custom objects; the arguments override them."""
    from sweep.driver.quiet import quiet_tensorflow
    from sweep.tracking.export import load_best as _load_best

    quiet_tensorflow()  # TensorFlow's C++ start-up lines (oneDNN, "failed call to cuInit") are not the user's business here

    return _load_best(name, tracking_uri, safe_mode=safe_mode, custom_objects=custom_objects)


def trials(name: str, tracking_uri: str | None = None) -> Any:
    """A past sweep's trials as a typed pandas DataFrame (see ``sweep.tracking.store.trials_frame``):
    one row per trial, its best ``value``, ``params_<name>`` columns with numbers as numbers."""
    from sweep.tracking import store
    from sweep.tracking.client import resolve_uri

    return store.trials_frame(resolve_uri(tracking_uri), name)


def resume(name: str, **options: Any) -> Any:
    """Continue the unfinished sweep ``name`` (see ``sweep.driver.runner.resume``)."""
    from sweep.driver.runner import resume as _resume

    return _resume(name, **options)


def custom_objects(model_uri: str) -> dict:
    """The custom objects a model logged by a sweep needs, for ``mlflow.keras.load_model(uri,
    custom_objects=sweep.custom_objects(uri))`` in a fresh process (see
    ``sweep.tracking.export.custom_objects``)."""
    from sweep.tracking.export import custom_objects as _custom_objects

    return _custom_objects(model_uri)


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "export":  # the documented old path (sweep/export.py), reached as an attribute
        return importlib.import_module("sweep.export")
    raise AttributeError(f"module 'sweep' has no attribute {name!r}")


__all__ = ["run", "resume", "trials", "load", "load_best", "custom_objects", "SweepConfig", "SweepConfigError", "SweepResult", "BestTrial", "TrialOutcome"]
