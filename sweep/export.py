"""The best model of a sweep, ready to use: ``sweep.load_best(NAME)`` and ``sweep export NAME DIR``.

The model comes from MLflow (the parent run's ``best_checkpoint/model.keras`` artifact), so it
works wherever the tracking store is reachable, not only on the machine that ran the sweep;
a local checkpoint path recorded by the sweep is the fallback. Loading always uses Keras'
``safe_mode=True``: a ``.keras`` file never runs arbitrary code (no lambda deserialization).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sweep import tracking
from sweep.storage import MODEL_FILE

log = logging.getLogger("sweep.export")

BEST_ARTIFACT = f"best_checkpoint/{MODEL_FILE}"


@contextlib.contextmanager
def _no_progress_bar() -> Any:
    """MLflow draws a download progress bar on the terminal; a sweep's output has no room for it."""
    saved = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = saved


def _fetch_best_file(name: str, uri: str, folder: Path) -> Path:
    """Download the best model file of sweep ``name`` into ``folder`` (or find its checkpoint)."""
    parent = tracking.find_parent_run(uri, name)
    if parent is None:
        raise LookupError(f"no sweep named {name!r} in {uri}")
    mlflow_client = tracking.client(uri)
    try:
        with _no_progress_bar():
            return Path(mlflow_client.download_artifacts(parent.info.run_id, BEST_ARTIFACT, str(folder)))
    except Exception:  # not logged (sweep still running or no checkpoint): fall back below
        pass
    summary = tracking.best_summary(uri, name) or {}
    checkpoint = summary.get("checkpoint")
    if checkpoint and (Path(checkpoint) / MODEL_FILE).is_file():
        return Path(checkpoint) / MODEL_FILE
    raise LookupError(f"sweep {name!r} in {uri} has no best model yet (no trial finished with a checkpoint)")


def load_best(name: str, tracking_uri: str | None = None) -> Any:
    """The best trial's ``keras.Model`` of the newest sweep called ``name`` (safe_mode=True)."""
    import keras

    uri = tracking.resolve_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="sweep-best-") as folder:
        path = _fetch_best_file(name, uri, Path(folder))
        return keras.saving.load_model(path, safe_mode=True)


def export_best(name: str, directory: str | Path, tracking_uri: str | None = None, saved_model: bool = False) -> list[Path]:
    """Write ``DIR/model.keras`` (and ``DIR/saved_model`` with ``saved_model``); return what was written."""
    uri = tracking.resolve_uri(tracking_uri)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="sweep-export-") as folder:
        source = _fetch_best_file(name, uri, Path(folder))
        target = out / MODEL_FILE
        shutil.copyfile(source, target)
        written.append(target)
    if saved_model:
        import keras

        model = keras.saving.load_model(target, safe_mode=True)
        target_dir = out / "saved_model"
        if target_dir.exists():
            shutil.rmtree(target_dir)
        model.export(str(target_dir), format="tf_saved_model", verbose=False)
        written.append(target_dir)
    return written


def model_requirements() -> list[str]:
    """The logged model's pip requirements, stated rather than inferred.

    Without them MLflow infers requirements by re-importing the model in a subprocess, about
    5 s per save on 2 cores (measured with benchmarks/peers.py --profile), twice per sweep.
    """
    import keras
    import mlflow
    import tensorflow as tf

    return [f"mlflow=={mlflow.__version__}", f"keras=={keras.__version__}", f"tensorflow=={tf.__version__}"]


def attach_input_example(model_info: Any, model: Any, signature: Any, input_example: Any) -> None:
    """Give an already logged Keras model its input example (files and ``MLmodel`` entry).

    MLflow 3's Keras flavor writes the example before it creates the model folder, so
    ``log_model(input_example=...)`` fails with FileNotFoundError. Saving into a folder that
    already exists works; the example files it writes are then added to the logged model, and
    its ``MLmodel`` gains ``saved_input_example_info``, keeping the model id and registry version.
    """
    try:
        with _no_progress_bar():
            _attach_input_example(model_info, model, signature, input_example)
    except Exception as exc:  # the model is logged and registered; only its example is missing
        log.warning("the best model was logged without its input example (%s: %s)", type(exc).__name__, exc)


def _attach_input_example(model_info: Any, model: Any, signature: Any, input_example: Any) -> None:
    import mlflow
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="sweep-example-") as folder:
        saved = Path(folder) / "saved"
        saved.mkdir()
        mlflow.keras.save_model(model, str(saved), signature=signature, input_example=input_example, pip_requirements=model_requirements())
        example_info = Model.load(str(saved)).saved_input_example_info
        upload = Path(folder) / "upload"
        upload.mkdir()
        for key in ("artifact_path", "serving_input_path"):
            name = (example_info or {}).get(key)
            if name and (saved / name).is_file():
                shutil.copyfile(saved / name, upload / name)
        location = mlflow.get_logged_model(model_info.model_id).artifact_location
        logged = Model.load(mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/MLmodel", dst_path=str(Path(folder) / "dl")))
        logged.saved_input_example_info = example_info
        logged.save(str(upload / "MLmodel"))
        mlflow.MlflowClient().log_model_artifacts(model_info.model_id, str(upload))


def register(model_info: Any, name: str) -> Any | None:
    """Register a logged model as a new version of ``name`` in the MLflow Model Registry.

    Separate from ``log_model`` so that a tracking store without a registry (or without the
    permission to write to it) costs the registration only, with a warning, never the sweep.
    """
    import mlflow

    try:
        return mlflow.register_model(model_info.model_uri, name)
    except Exception as exc:  # the model stays logged on the parent run
        log.warning("the best model was not registered as %r (%s: %s)", name, type(exc).__name__, str(exc).splitlines()[0][:300])
        return None
