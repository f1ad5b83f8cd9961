"""End to end: models with the user's own Keras objects (a layer, a loss, a metric, an activation,
an initializer, a regularizer; registered or not; a subclassed keras.Model; a Lambda) from a
module next to the sweep file survive the whole sweep: trials on Ray workers, the checkpoint a
retried trial reloads, the best model logged and registered in MLflow (loaded back in a fresh
Python process), `sweep export` and `sweep.load_best`. A model that only loads with
safe_mode off is refused before any trial, unless the sweep file opts in."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

USER_CODE = Path(__file__).parent / "user_code"


def _sweep_file(folder: Path, name: str, module: str, **model) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(USER_CODE / f"{module}.py", folder / f"{module}.py")
    sweep = {
        "name": name,
        "data": {"source": "digits"},
        "model": {"builder": f"{module}:build", **model},
        "fit": {"epochs": 2},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"seed": 0, "trials": 2, "space": {"units": {"type": "categorical", "choices": [16, 32]}}},
        "scheduler": {"type": "fifo"},
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


# Run in a fresh Python process, from a folder without the user's module: what a user does
# with the sweep's models afterwards. argv: tracking uri, sweep name, mode, [checkpoint, folder].
FRESH = r"""
import json, sys
import mlflow, numpy as np
uri, name, mode = sys.argv[1:4]
mlflow.set_tracking_uri(uri)
import sweep, sweep.tracking.export
out = {}
x = np.zeros((2, 64), dtype="float32")
if mode == "import":  # Keras' documented way for registered classes: import their module first
    sys.path.insert(0, sys.argv[5])
    __import__(sys.argv[6])
    registry = mlflow.keras.load_model(f"models:/{name}/1")
else:  # any custom object, registered or not: the sweep finds them in the logged model's code/
    registry = mlflow.keras.load_model(f"models:/{name}/1", custom_objects=sweep.custom_objects(f"models:/{name}/1"))
out["registry"] = [type(registry).__name__, list(registry.predict(x, verbose=0).shape)]
best = sweep.load_best(name, tracking_uri=uri)
trained = best.layers[-1] if best.name.endswith("_on_raw_inputs") else best  # digits are standardized: the model takes raw rows
out["load_best"] = [type(trained).__name__, [type(layer).__name__ for layer in trained.layers], [type(layer).__name__ for layer in best.layers]]
out["export"] = [p.name for p in sweep.tracking.export.export_best(name, "exported", tracking_uri=uri, saved_model=True)]
if sys.argv[4] != "-":  # what a retried trial's worker does: the sweep's folder importable, then load its checkpoint
    from sweep.worker import checkpoints
    from sweep.inputs import imports
    from sweep.spec.config import ModelConfig
    roots = imports.ensure_importable(imports.UserCode(paths=(sys.argv[5],), files=(), digest="retry"))
    checkpoints.use_model_settings(ModelConfig(builder="x:build"), roots)
    out["checkpoint"] = type(checkpoints.load_checkpoint(sys.argv[4])).__name__
print("RESULT " + json.dumps(out))
"""


def _fresh(tmp_path: Path, uri: str, name: str, mode: str, checkpoint: str = "-", *extra: str) -> dict:
    cwd = tmp_path / f"fresh-{name}"
    cwd.mkdir()
    run = subprocess.run([sys.executable, "-c", FRESH, uri, name, mode, checkpoint, *extra], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def _parent(uri: str, name: str):
    from sweep.tracking import store

    return store.find_parent_run(uri, name)


def test_unregistered_custom_objects_survive_the_sweep_via_cli(ray_session, tmp_path):
    path = _sweep_file(tmp_path / "project", "custom-parts", "custom_parts")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "run", str(path), "--tracking-uri", uri, "--storage", str(tmp_path / "runs"), "--address", ray_session],
        capture_output=True, text=True, cwd=elsewhere, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    parent = _parent(uri, "custom-parts")
    assert parent.info.status == "FINISHED" and "sweep.finish_error" not in parent.data.tags
    from sweep.tracking import store

    children = store.child_runs(uri, parent)
    assert len(children) == 2 and all(c.data.tags["sweep.status"] == "completed" for c in children)
    assert all("hits" in c.data.metrics and "val_hits" in c.data.metrics for c in children), "the custom metric is logged"
    worst = min(children, key=lambda c: float(c.data.tags["sweep.best_value"]))
    out = _fresh(tmp_path, uri, "custom-parts", "scan", worst.data.tags["sweep.checkpoint"], str(path.parent))
    assert out["registry"] == ["Functional", [2, 10]]
    assert out["load_best"][1] == ["InputLayer", "Rescale", "Dense", "Dense"]
    assert out["load_best"][2] == ["InputLayer", "Normalization", "Rescaling", "Functional"], "the sweep's standardization in front"
    assert out["export"] == ["model.keras", "saved_model"]
    assert out["checkpoint"] == "Functional"


def test_a_registered_subclassed_model_survives_the_sweep(ray_session, tmp_path):
    """Keras' documented fix (register the classes) works: the sweep's workers import the module
    by name, so the checkpoints name the classes as registered, and importing the module is
    all a fresh process needs for mlflow.keras.load_model."""
    import sweep

    path = _sweep_file(tmp_path / "project", "registered-parts", "registered_parts")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = sweep.run(str(path), storage=str(tmp_path / "runs"), tracking_uri=uri, quiet=True)
    assert result.best is not None and result.finish_error is None
    assert result.counts() == {"completed": 2}
    assert _parent(uri, "registered-parts").info.status == "FINISHED"
    out = _fresh(tmp_path, uri, "registered-parts", "import", "-", str(path.parent), "registered_parts")
    assert out["registry"] == ["Functional", [2, 10]]  # TinyNet behind the digits' standardization
    assert out["load_best"][0] == "TinyNet"
    assert out["export"] == ["model.keras", "saved_model"]


def test_a_lambda_model_is_refused_before_any_trial_unless_the_file_opts_in(ray_session, tmp_path):
    import sweep

    path = _sweep_file(tmp_path / "project", "lambda-net", "lambda_net")
    db = tmp_path / "mlflow.db"
    run = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "run", str(path), "--tracking-uri", f"sqlite:///{db}", "--storage", str(tmp_path / "runs")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]  # TensorFlow may print its CUDA probe
    assert len(lines) == 1, run.stderr
    line = lines[0]
    assert line.startswith(f"error: {path}: model.safe_mode: expected a model that loads with Keras safe_mode")
    assert "set model.safe_mode: false" in line
    assert not db.exists(), "refused before anything was tracked or trained"

    opted_in = _sweep_file(tmp_path / "project", "lambda-net", "lambda_net", safe_mode=False)
    uri = f"sqlite:///{db}"
    result = sweep.run(str(opted_in), storage=str(tmp_path / "runs"), tracking_uri=uri, quiet=True)
    assert result.best is not None and result.finish_error is None
    assert _parent(uri, "lambda-net").info.status == "FINISHED"
    model = sweep.load_best("lambda-net", tracking_uri=uri)  # the sweep's own safe_mode: false
    assert "Lambda" in [type(layer).__name__ for layer in model.layers[-1].layers]  # behind the digits' standardization
    with pytest.raises(ValueError, match="safe_mode"):
        sweep.load_best("lambda-net", tracking_uri=uri, safe_mode=True)
