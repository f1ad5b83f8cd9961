"""End to end: a regression sweep whose model factory and data live outside the package,
driven through the real `sweep` command against the session's Ray cluster."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

USER_CODE = Path(__file__).parent / "user_code"


def _write_sweep(folder: Path, **extra) -> Path:
    for module in ("my_models.py", "my_data.py"):
        shutil.copy(USER_CODE / module, folder / module)
    sweep = {
        "name": "e2e-user-regression",
        "data": {"source": "my_data:make", "args": {"rows": 300}, "validation_split": 0.25},
        "model": {"builder": "my_models:build", "loss": "mse", "metrics": ["mae"]},
        "fit": {"epochs": 3, "batch_size": 32},
        "objective": {"metric": "val_loss", "mode": "min"},
        "search": {
            "sampler": "random",
            "seed": 0,
            "trials": 3,
            "space": {
                "learning_rate": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
                "units": {"type": "int", "low": 8, "high": 32, "step": 8},
            },
        },
        "scheduler": {"type": "fifo"},
        **extra,
    }
    path = folder / "user_sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_regression_with_user_factory_and_data_via_cli(ray_session, tmp_path):
    sweep_file = _write_sweep(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()  # run from another folder: user modules must resolve next to the YAML file
    run = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "run", str(sweep_file), "--tracking-uri", uri,
         "--storage", str(tmp_path / "runs"), "--address", ray_session],
        capture_output=True, text=True, cwd=elsewhere, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "best val_loss" in run.stdout
    status = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "status", "e2e-user-regression", "--json", "--tracking-uri", uri],
        capture_output=True, text=True, check=True,
    )
    counts = json.loads(status.stdout)["trials"]
    assert counts == {"completed": 3}
    best = json.loads(subprocess.run(
        [sys.executable, "-m", "sweep.cli", "best", "e2e-user-regression", "--json", "--tracking-uri", uri],
        capture_output=True, text=True, check=True,
    ).stdout)
    assert best["mode"] == "min" and math.isfinite(best["value"])
    assert set(best["params"]) == {"learning_rate", "units"}
    assert int(best["params"]["units"]) in (8, 16, 24, 32)


def test_bad_sweep_file_is_one_line_and_exit_code_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ndata: {source: digits}\nsearch: {space: {lr: {type: float, low: 1, high: 0}}}\n")
    run = subprocess.run([sys.executable, "-m", "sweep.cli", "run", str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip() == f"error: {path}: search.space.lr: expected low <= high, got low=1.0 > high=0.0"
    assert "Traceback" not in run.stderr


def test_factory_that_returns_no_model_is_caught_before_any_trial(tmp_path):
    (tmp_path / "broken.py").write_text("def build(hp, info):\n    return None\n")
    path = _write_sweep(tmp_path, model={"builder": "broken:build"})
    run = subprocess.run([sys.executable, "-m", "sweep.cli", "run", str(path), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().startswith(f"error: {path}: model.builder: expected 'broken:build' to return a keras.Model")
    assert "\n" not in run.stderr.strip(), "one line, with no noise from the local Ray that started alongside the preflight"
    assert not (tmp_path / "m.db").exists(), "nothing is tracked before the input is valid"
