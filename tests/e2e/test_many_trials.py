"""300 tiny Keras trials through the whole path (TPE + ASHA + warm workers + model reuse + the
MLflow writer process): one child run per trial, one row per reported epoch, and the CLI's
``status`` and ``best`` agree with what the sweep returned."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

import sweep

pytestmark = pytest.mark.slow

TRIALS = 300
KERAS_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def tiny_sweep() -> dict:
    return {
        "name": "e2e-many",
        "data": {"source": "synthetic", "samples": 32, "features": 8, "classes": 2, "validation_split": 0.25, "seed": 0},
        "model": {"builder": "mlp", "args": {"units": [16]}},
        "fit": {"epochs": 3},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {
            "sampler": "tpe", "seed": 0, "trials": TRIALS, "max_concurrent": 2,
            "space": {
                "learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
                "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
                "batch_size": {"type": "categorical", "choices": [8, 24]},
            },
        },
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
    }


def cli_json(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "sweep.cli", *args, "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_300_tiny_trials_are_all_in_mlflow_and_the_cli_agrees(ray_session, tmp_path):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    result = sweep.run(tiny_sweep(), storage=str(tmp_path / "runs"), tracking_uri=uri, quiet=True)

    trials = result.trials
    assert len(trials) == TRIALS and trials["trial_id"].is_unique
    assert set(trials["status"]) <= {"completed", "stopped_early"}
    assert (trials["status"] == "stopped_early").sum() >= TRIALS // 10  # ASHA stopped some (ties on 8 rows keep many)
    reported_epochs = int(trials["epochs"].sum())
    with sqlite3.connect(db) as con:
        children = con.execute(
            "SELECT COUNT(*), SUM(r.status = 'FINISHED') FROM runs r JOIN tags t ON r.run_uuid = t.run_uuid "
            "WHERE t.key = 'mlflow.parentRunId' AND t.value = ?", (result.parent_run_id,)
        ).fetchone()
        rows = dict(con.execute(
            "SELECT m.key, COUNT(*) FROM metrics m JOIN tags t ON m.run_uuid = t.run_uuid "
            "WHERE t.key = 'mlflow.parentRunId' AND t.value = ? GROUP BY m.key", (result.parent_run_id,)
        ).fetchall())
        duplicated = con.execute(
            "SELECT COUNT(*) FROM (SELECT m.run_uuid, m.key, m.step FROM metrics m GROUP BY m.run_uuid, m.key, m.step HAVING COUNT(*) > 1)"
        ).fetchone()[0]
    assert children == (TRIALS, TRIALS)
    assert {name: rows.get(name) for name in KERAS_METRICS} == {name: reported_epochs for name in KERAS_METRICS}
    assert duplicated == 0

    status = cli_json("status", "e2e-many", "--tracking-uri", uri)
    assert status["trials"] == trials["status"].value_counts().to_dict()
    best = cli_json("best", "e2e-many", "--tracking-uri", uri)
    assert best["value"] == pytest.approx(result.best.value)
    assert best["trial_id"] == result.best.trial_id
    assert {k: str(v) for k, v in best["params"].items()} == {k: str(v) for k, v in result.best.params.items()}
