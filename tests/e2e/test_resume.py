"""Fault: the driver is SIGKILLed mid-sweep. What must survive: every finished trial, once;
the resumed sweep runs exactly the requested number of trials and leaves MLflow clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .servers import child_run_progress

pytestmark = pytest.mark.slow

TRIALS, EPOCHS = 6, 6
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def _sweep_file(folder: Path) -> Path:
    sweep = {
        "name": "e2e-resume",
        "data": {"source": "synthetic", "samples": 2400, "features": 32, "classes": 4, "validation_split": 0.2},
        "model": {"builder": "mlp", "args": {"units": [64, 64]}},
        "fit": {"epochs": EPOCHS, "batch_size": 8, "steps_per_execution": 1},  # slow enough to interrupt,
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {
            "sampler": "random",
            "seed": 3,
            "trials": TRIALS,
            "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}},
        },
        "scheduler": {"type": "fifo"},
    }
    path = folder / "resume.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def _children(uri: str):
    from sweep.tracking import store

    parent = store.find_parent_run(uri, "e2e-resume")
    return parent, (store.child_runs(uri, parent) if parent else [])


def test_sigkill_driver_then_resume(ray_session, tmp_path):
    from mlflow.tracking import MlflowClient

    path = _sweep_file(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ["--tracking-uri", uri, "--storage", str(tmp_path / "runs"), "--address", ray_session, "--quiet"]
    driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(path), *common], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill once some trials ended and another is mid-way
        time.sleep(0.5)
        assert driver.poll() is None, driver.stdout.read()[-3000:]
        ended, running = child_run_progress(tmp_path / "mlflow.db")
        if ended >= 2 and running:
            break
    else:
        pytest.fail("the sweep never reached the state to interrupt")
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    parent, before = _children(uri)
    ended_before = {c.data.tags["sweep.trial_id"] for c in before if c.data.tags.get("sweep.status") in ("completed", "stopped_early")}
    assert parent.info.status == "RUNNING" and len(ended_before) >= 2
    status = subprocess.run([sys.executable, "-m", "sweep.cli", "status", "e2e-resume", "--tracking-uri", uri], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert "its driver is gone" in status.stdout and "sweep resume e2e-resume" in status.stdout, status.stdout + status.stderr

    resumed = subprocess.run([sys.executable, "-m", "sweep.cli", "resume", "e2e-resume", *common],
                             cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert resumed.stdout == "", "--quiet prints nothing (it printed the 6-line summary)"

    parent, children = _children(uri)
    client = MlflowClient(uri)
    assert parent.info.status == "FINISHED"
    assert len(children) == TRIALS, "one child run per requested trial, none duplicated"
    trial_ids = [c.data.tags["sweep.trial_id"] for c in children]
    assert len(set(trial_ids)) == TRIALS
    for child in children:
        assert child.info.status == "FINISHED", (child.data.tags, child.info.status)
        assert child.data.tags["sweep.status"] == "completed"
        for metric in METRICS:
            steps = [m.step for m in client.get_metric_history(child.info.run_id, metric)]
            assert sorted(steps) == list(range(1, EPOCHS + 1)), (metric, steps)
    after = {c.data.tags["sweep.trial_id"]: c for c in children}
    for trial_id in ended_before:  # finished before the crash: untouched by the resume
        assert "sweep.resumed_from_epoch" not in after[trial_id].data.tags
    resumed_runs = [c for c in children if "sweep.resumed_from_epoch" in c.data.tags]
    assert resumed_runs, "the interrupted trial continued in its own run"
    for run in resumed_runs:  # Ray gave it a new id in the resume: a checkpoint made since is in a folder that carries it, and so does a tag
        tags = run.data.tags
        assert tags["sweep.resumed_as"] != tags["sweep.trial_id"]
        improved_since = int(tags["sweep.best_epoch"]) > int(tags["sweep.resumed_from_epoch"])  # checkpoints only when it improves:
        folder_id = tags["sweep.resumed_as"] if improved_since else tags["sweep.trial_id"]  # a best epoch before the kill keeps its folder
        assert f"_{folder_id}/" in tags["sweep.checkpoint"], (tags, improved_since)
    learning_rates = [c.data.params["learning_rate"] for c in children]
    assert len(set(learning_rates)) == TRIALS, "the resumed search did not repeat a suggestion"
