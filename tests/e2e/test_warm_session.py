"""``sweep up`` / ``sweep down``: a warm session runs ``sweep run`` and ``sweep resume`` for the
shell as a second sweep in one Python process runs, on the same warm trial workers; it behaves as
a command in its own process would (output, exit codes, one-line errors, Ctrl-C, resume)."""

from __future__ import annotations

import contextlib
import json
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

PID_FACTORY = '''
import os

import keras


def build(hp, info):
    with open(os.path.join(os.path.dirname(__file__), "pids.txt"), "a") as out:
        out.write(f"{os.getpid()}\\n")
    model = keras.Sequential([keras.Input(info.input_shape), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(info.num_outputs, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(hp["learning_rate"]), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
'''

SLOW_CALLBACK = '''
import time

import keras


class SlowEpochs(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(0.5)
'''


def _sweep_file(folder: Path, name: str, epochs: int, trials: int, slow: bool = False) -> Path:
    fit = {"epochs": epochs, "batch_size": 64}
    if slow:
        fit["callbacks"] = ["slow_callbacks:SlowEpochs"]
    sweep = {
        "name": name, "data": {"source": "digits", "validation_split": 0.2},
        "model": {"builder": "pid_models:build"}, "fit": fit,
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"sampler": "random", "seed": 1, "trials": trials,
                   "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}},
        "scheduler": {"type": "fifo"},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def _pids(folder: Path) -> list[int]:
    path = folder / "pids.txt"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan here may wait for a reaper that never comes)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def test_up_run_ctrl_c_resume_down(tmp_path):
    from mlflow.tracking import MlflowClient

    from sweep.tracking import store

    # an earlier in-process sweep's mlflow.set_tracking_uri() exported MLFLOW_TRACKING_URI: not this test's store
    env = {k: v for k, v in os.environ.items() if k not in ("SWEEP_SESSION", "RAY_ADDRESS") and not k.startswith("MLFLOW_TRACKING_")}
    env["SWEEP_SESSION_DIR"] = str(tmp_path / "session")
    cli = [sys.executable, "-m", "sweep.cli"]

    def sweep(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)

    (tmp_path / "pid_models.py").write_text(PID_FACTORY)
    (tmp_path / "slow_callbacks.py").write_text(SLOW_CALLBACK)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    session_pid = None
    try:
        up = sweep("up", "--num-cpus", "2", timeout=240)
        assert up.returncode == 0 and "warm session up" in up.stdout, up.stdout + up.stderr
        session_pid = json.loads((tmp_path / "session" / "session.json").read_text())["pid"]
        assert oct((tmp_path / "session").stat().st_mode & 0o777) == "0o700", "the session's folder is private to its user"
        assert "already up" in sweep("up").stdout

        first = sweep("run", str(_sweep_file(tmp_path, "warm-first", epochs=2, trials=2)))
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
        assert "sweep warm-first finished" in first.stdout and "best val_accuracy" in first.stdout
        first_pids = set(_pids(tmp_path))
        (tmp_path / "pids.txt").unlink()
        second = sweep("run", str(_sweep_file(tmp_path, "warm-second", epochs=2, trials=2)), "--json")
        assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
        assert json.loads(second.stdout.strip().splitlines()[-1])["trial_id"], second.stdout
        assert set(_pids(tmp_path)) <= first_pids, "the second sweep's models were built on the first sweep's warm workers"
        for name in ("warm-first", "warm-second"):
            parent = store.find_parent_run(uri, name)
            assert parent.info.status == "FINISHED" and len(store.child_runs(uri, parent)) == 2

        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump({**yaml.safe_load((tmp_path / "warm-first.yaml").read_text()), "fit": {"epochs": "ten"}}))
        refused = sweep("run", str(bad))
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert [line for line in refused.stderr.splitlines() if line.strip()] == [refused.stderr.strip()] and "fit.epochs" in refused.stderr

        slow = _sweep_file(tmp_path, "warm-interrupted", epochs=3, trials=2, slow=True)
        client = subprocess.Popen([*cli, "run", str(slow)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child_run_progress(tmp_path / "mlflow.db")[1] == 0:  # a trial mid-way, with a checkpoint
            assert client.poll() is None, client.communicate()
            time.sleep(0.3)
        client.send_signal(signal.SIGINT)  # the client's Ctrl-C stops the sweep in the session
        out, err = client.communicate(timeout=60)
        assert client.returncode == 130, out[-2000:] + err[-2000:]
        assert "interrupted: sweep warm-interrupted stopped" in err and "Traceback" not in err, err[-2000:]
        assert store.find_parent_run(uri, "warm-interrupted").info.status == "KILLED"

        resumed = sweep("resume", "warm-interrupted")
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
        parent = store.find_parent_run(uri, "warm-interrupted")
        assert parent.info.status == "FINISHED"
        children = store.child_runs(uri, parent)
        assert len(children) == 2 and all(c.data.tags["sweep.status"] == "completed" for c in children), [c.data.tags for c in children]
        for child in children:
            steps = sorted(m.step for m in MlflowClient(uri).get_metric_history(child.info.run_id, "val_accuracy"))
            assert steps == [1, 2, 3], steps

        down = sweep("down", timeout=120)
        assert down.returncode == 0 and "ended" in down.stdout, down.stdout + down.stderr
        assert not (tmp_path / "session" / "session.sock").exists()
        assert not _running(session_pid), "the session process ended"
        session_pid = None
        assert "no warm session is up" in sweep("down").stdout
    finally:
        if session_pid is not None:
            with contextlib.suppress(Exception):
                sweep("down", timeout=120)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(session_pid, signal.SIGKILL)
