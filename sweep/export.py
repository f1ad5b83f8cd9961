"""The best model of a sweep, ready to use: ``sweep.load_best(NAME)`` and ``sweep export NAME DIR``.

The model comes from MLflow (the parent run's ``best_checkpoint/model.keras`` artifact), so it
works wherever the tracking store is reachable, not only on the machine that ran the sweep;
a local checkpoint path recorded by the sweep is the fallback. Loading always uses Keras'
``safe_mode=True``: a ``.keras`` file never runs arbitrary code (no lambda deserialization).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from sweep import tracking

MODEL_FILE = "model.keras"
BEST_ARTIFACT = "best_checkpoint/model.keras"


def _fetch_best_file(name: str, uri: str, folder: Path) -> Path:
    """Download the best model file of sweep ``name`` into ``folder`` (or find its checkpoint)."""
    parent = tracking.find_parent_run(uri, name)
    if parent is None:
        raise LookupError(f"no sweep named {name!r} in {uri}")
    mlflow_client = tracking.client(uri)
    try:
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
