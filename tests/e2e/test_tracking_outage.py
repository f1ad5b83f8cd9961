"""Fault: the MLflow tracking server goes away mid-sweep and comes back. What must survive:
training goes on, and at the end every run, epoch metric and checkpoint artifact is there.
Also checked on the same sweep: credentials in the environment or in the tracking URI never reach
MLflow, the output or the sweep's state files."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .servers import MlflowServer, child_run_progress

pytestmark = pytest.mark.slow

TRIALS, EPOCHS = 4, 6
SECRETS = {"MLFLOW_TRACKING_TOKEN": "tok-SECRET-3141", "AWS_SECRET_ACCESS_KEY": "aws-SECRET-2718"}
URI_PASSWORD = "uri-SECRET-1618"  # in the sweep file's tracking.uri: MLflow printed it in "View run ... at: URI"


def _sweep_file(folder: Path, uri: str) -> Path:
    sweep = {
        "name": "e2e-outage",
        "data": {"source": "synthetic", "samples": 3000, "features": 16, "classes": 3, "validation_split": 0.2},
        "model": {"builder": "mlp", "args": {"units": [32]}},
        "fit": {"epochs": EPOCHS, "batch_size": 8, "steps_per_execution": 1},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"sampler": "random", "seed": 1, "trials": TRIALS,
                   "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}},
        "scheduler": {"type": "fifo"},
        "tracking": {"uri": uri},
    }
    path = folder / "outage.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_server_restart_mid_sweep_loses_nothing_and_no_secret_leaks(ray_session, tmp_path):
    import os

    from mlflow.tracking import MlflowClient

    from sweep.tracking import store

    server = MlflowServer(tmp_path / "server")
    server.folder.mkdir()
    server.start()
    try:
        path = _sweep_file(tmp_path, server.uri.replace("http://", f"http://alice:{URI_PASSWORD}@"))  # the server ignores it
        env = {**os.environ, **SECRETS}
        driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(path), "--storage", str(tmp_path / "runs"),
                                   "--address", ray_session], cwd=tmp_path, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 240
        while child_run_progress(server.db) == (0, 0):  # some trial is running with a checkpoint
            assert time.time() < deadline and driver.poll() is None, "the sweep never got going"
            time.sleep(0.5)
        server.stop()  # the outage: every tracking write fails for a while
        time.sleep(8)
        assert driver.poll() is None, "the sweep goes on while tracking is down"
        server.start()
        output, _ = driver.communicate(timeout=600)
        assert driver.returncode == 0, output[-3000:]

        assert "tracking writes are buffered and retried" in output, "the user is told about the outage"
        assert "View run" not in output, "MLflow's run links (4 lines a trial) are not the sweep's output (they broke --json)"
        client = MlflowClient(server.uri)
        parent = store.find_parent_run(server.uri, "e2e-outage")
        children = store.child_runs(server.uri, parent)
        assert parent.info.status == "FINISHED"
        assert len(children) == TRIALS, "one run per trial, none duplicated by a retried create"
        for child in children:
            assert child.info.status == "FINISHED"
            for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
                steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, metric))
                assert steps == list(range(1, EPOCHS + 1)), (metric, steps)
            assert [a.path for a in client.list_artifacts(child.info.run_id, "checkpoint")] == ["checkpoint/model.keras"]

        recorded = [output]
        for run in [parent, *children]:
            recorded += [str(run.data.params), str(run.data.tags)]
        config_json = Path(client.download_artifacts(parent.info.run_id, "sweep/config.json", str(tmp_path))).read_text()
        recorded.append(config_json)
        for name, secret in {**SECRETS, "the tracking URI's password": URI_PASSWORD}.items():
            assert not any(secret in text for text in recorded), f"{name}'s value leaked"
        state = [path for path in (tmp_path / "runs").rglob("*") if path.is_file() and URI_PASSWORD.encode() in path.read_bytes()]
        assert state == [], f"the tracking URI's password is in the sweep's state files: {state}"
    finally:
        server.stop()


def test_ctrl_c_while_the_server_is_down_exits_in_bounded_time_and_the_writer_ends_the_run_later(ray_session, tmp_path):
    """One Ctrl-C while MLflow was down: the command said nothing for minutes (each write retried
    for 900 s), and the writer process later printed into the dead command's terminal. Now the
    end waits a bounded time, says for what, exits 130, and the writer lands the writes and the
    parent run's end (KILLED: resumable) once the server is back, its lines in a log file."""
    import os
    import signal

    from sweep.tracking import store

    server = MlflowServer(tmp_path / "server")
    server.folder.mkdir()
    server.start()
    try:
        driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(_sweep_file(tmp_path, server.uri)), "--storage",
                                   str(tmp_path / "runs"), "--address", ray_session, "--epochs", "40"], cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 240
        while child_run_progress(server.db) == (0, 0):
            assert time.time() < deadline and driver.poll() is None, "the sweep never got going"
            time.sleep(0.5)
        server.stop()
        time.sleep(3)
        driver.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        try:
            output, _ = driver.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            driver.kill()
            output, _ = driver.communicate()
            raise AssertionError("no exit 120 s after Ctrl-C: " + output[-4000:]) from None
        took = time.monotonic() - interrupted
        assert driver.returncode == 130, output[-3000:]
        assert took < 60, f"{took:.0f} s after Ctrl-C"
        assert "waiting for MLflow (" in output and "Ctrl-C to leave them to the writer process" in output, output[-3000:]
        log = tmp_path / "runs" / "e2e-outage" / "mlflow-writer.log"
        assert f"its log: {log}" in output, output[-3000:]
        server.start()
        deadline = time.time() + 150
        while store.find_parent_run(server.uri, "e2e-outage").info.status == "RUNNING":
            assert time.time() < deadline, "the writer process never ended the parent run"
            time.sleep(1)
        parent = store.find_parent_run(server.uri, "e2e-outage")
        assert parent.info.status == "KILLED", "resumable"
        assert all(run.info.status != "RUNNING" for run in store.child_runs(server.uri, parent))
        assert not [line for line in os.popen(f"pgrep -f 'sweep.tracking.writer --serve' -P {driver.pid}")], "no writer of it left"
    finally:
        server.stop()
