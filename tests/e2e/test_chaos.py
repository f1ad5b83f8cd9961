"""Chaos: 60 short trials while trial worker processes are SIGKILLed at random. What must
survive: every trial accounted for exactly once in MLflow, no epoch logged twice, no run left
RUNNING, and the sweep exits cleanly."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
import yaml

pytestmark = pytest.mark.slow

TRIALS, EPOCHS, KILLS = 60, 3, 6


def _sweep_file(folder: Path) -> Path:
    sweep = {
        "name": "e2e-chaos",
        "data": {"source": "synthetic", "samples": 600, "features": 8, "classes": 2, "validation_split": 0.25},
        "model": {"builder": "mlp", "args": {"units": [16]}},
        "fit": {"epochs": EPOCHS, "batch_size": 8, "steps_per_execution": 1},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"sampler": "tpe", "seed": 5, "trials": TRIALS,
                   "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
        "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}"},
    }
    path = folder / "chaos.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def _trial_workers() -> list[psutil.Process]:
    """This test session's Ray actor processes running a sweep trial (Ray titles them
    ``ray::ImplicitFunc...``): descendants of this process, whose ``ray_session`` started the
    raylet. Every such process on the machine was fair game before, and the chaos test killed
    the trials of another user's sweep running beside the suite."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline = proc.cmdline()
        except psutil.Error:
            continue
        if cmdline and cmdline[0].startswith("ray::ImplicitFunc"):
            found.append(proc)
    return found


def _killer(stop: threading.Event, killed: list[int]) -> None:
    chooser = random.Random(7)
    while not stop.is_set() and len(killed) < KILLS:
        if stop.wait(chooser.uniform(1.5, 4.0)):
            return  # the sweep ended: kill nothing more
        workers = _trial_workers()
        if workers:
            victim = chooser.choice(workers)
            try:
                victim.kill()
                killed.append(victim.pid)
            except psutil.Error:
                pass


def test_random_worker_kills_lose_and_duplicate_nothing(ray_session, tmp_path):
    from mlflow.tracking import MlflowClient

    from sweep.tracking import store

    path = _sweep_file(tmp_path)
    stop, killed = threading.Event(), []
    chaos = threading.Thread(target=_killer, args=(stop, killed), daemon=True)
    driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(path), "--storage", str(tmp_path / "runs"),
                               "--address", ray_session, "--quiet"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    chaos.start()
    try:
        output, _ = driver.communicate(timeout=800)
    finally:
        stop.set()
        chaos.join(10)
    assert killed, "the chaos helper killed at least one worker"
    assert driver.returncode in (0, 1), output[-3000:]

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = store.find_parent_run(uri, "e2e-chaos")
    children = store.child_runs(uri, parent)
    assert parent.info.status in ("FINISHED", "FAILED")
    assert len(children) == TRIALS, "every trial accounted for, once"
    assert len({c.data.tags["sweep.trial_id"] for c in children}) == TRIALS
    client = MlflowClient(uri)
    for child in children:
        assert child.info.status in ("FINISHED", "FAILED"), "no run left RUNNING"
        assert child.data.tags["sweep.status"] in ("completed", "stopped_early", "failed")
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")]
        assert sorted(steps) == list(range(1, len(steps) + 1)), ("no epoch twice, no gap", steps)
    retried = [c for c in children if "sweep.retries" in c.data.tags]
    assert retried, f"killed workers' trials were retried ({len(killed)} kills)"
