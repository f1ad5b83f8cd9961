"""Bounded waits: what can never happen is refused in one line before any run is recorded:
resources no node has, an unreachable tracking server, an unreachable --address, an unwritable
--storage."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, **extra) -> dict:
    config = {
        "name": "e2e-waits", "data": {"source": "synthetic", "samples": 200, "features": 8, "classes": 2, "validation_split": 0.2},
        "model": {"builder": "mlp", "args": {"units": [8]}}, "fit": {"epochs": 1},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"sampler": "random", "trials": 2, "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2}}},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    }
    config.update(extra)
    return config


def _no_parent_run(uri: str) -> bool:
    from sweep.tracking import store

    return not Path(uri.removeprefix("sqlite:///")).exists() or store.find_parent_run(uri, "e2e-waits") is None


@pytest.mark.parametrize("resources, key, offer", [
    ({"cpus_per_trial": 8}, "resources.cpus_per_trial", "at most 2 CPUs on one node"),
    ({"gpus_per_trial": 1}, "resources.gpus_per_trial", "no GPUs"),
    ({"custom": {"tpu_v9": 1}}, "resources.custom.tpu_v9", "no 'tpu_v9' resource"),
], ids=["cpus", "gpu", "custom"])
def test_resources_no_node_has_are_refused_before_any_trial(ray_session, tmp_path, resources, key, offer):
    import sweep
    from sweep.errors import SweepConfigError

    started = time.monotonic()
    with pytest.raises(SweepConfigError) as caught:
        sweep.run(_config(tmp_path, resources=resources), storage=str(tmp_path / "runs"), quiet=True)
    message = str(caught.value)
    assert key in message and offer in message and "\n" not in message, message
    assert time.monotonic() - started < 60
    assert _no_parent_run(f"sqlite:///{tmp_path / 'mlflow.db'}"), "refused before any run was recorded"


def test_an_unreachable_tracking_server_fails_in_seconds(ray_session, tmp_path):
    import sweep
    from sweep.errors import SweepConfigError

    started = time.monotonic()
    with pytest.raises(SweepConfigError) as caught:
        sweep.run(_config(tmp_path), storage=str(tmp_path / "runs"), quiet=True, tracking_uri="http://127.0.0.1:9")
    took = time.monotonic() - started
    assert str(caught.value).startswith("--tracking-uri: expected a reachable MLflow tracking store") and "127.0.0.1:9" in str(caught.value)
    assert took < 10, f"took {took:.1f} s"

    path = tmp_path / "waits.yaml"  # the CLI without --quiet first looks for an earlier sweep of that name
    path.write_text(yaml.safe_dump(_config(tmp_path)))
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "sweep.cli", "run", str(path), "--tracking-uri", "http://127.0.0.1:9"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    took = time.monotonic() - started
    assert run.returncode == 2 and [line for line in run.stderr.splitlines() if line.strip()] == [run.stderr.strip()], run.stderr[-2000:]
    assert "--tracking-uri: expected a reachable MLflow tracking store" in run.stderr and took < 20, (took, run.stderr)


def test_an_unwritable_storage_is_one_line_and_leaves_no_run(ray_session, tmp_path):
    import sweep
    from sweep.errors import SweepConfigError

    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(SweepConfigError) as caught:
        sweep.run(_config(tmp_path), storage=str(tmp_path / "afile" / "sub"), quiet=True)
    message = str(caught.value)
    assert message == f"--storage: expected a writable folder, got {tmp_path / 'afile'} (not a folder)", message
    assert _no_parent_run(f"sqlite:///{tmp_path / 'mlflow.db'}"), "no orphan parent run for the next sweep to adopt"


def test_a_read_only_store_or_storage_is_one_line_before_ray_starts(tmp_path):
    """A read-only sqlite store failed at the sweep's first write after 67 lines of MLflow's
    errors and two tracebacks, and said "expected a reachable store"; a read-only --storage
    was found only after Ray's start (~10 s, with Ray's noise). Both are one line at once."""
    import sweep
    from sweep.errors import SweepConfigError

    from .test_storage_fault import _can_bind_mount, read_only

    locked, open_ = tmp_path / "locked", tmp_path / "open"
    if not _can_bind_mount(locked):
        pytest.skip("needs root and bind mounts (a real read-only folder)")
    open_.mkdir()
    started = time.monotonic()
    with read_only(locked):
        with pytest.raises(SweepConfigError) as caught:
            sweep.run(_config(tmp_path), storage=str(open_ / "runs"), quiet=True, tracking_uri=f"sqlite:///{locked / 'mlflow.db'}")
        assert str(caught.value).startswith(f"--tracking-uri: expected a writable MLflow store at sqlite:///{locked / 'mlflow.db'}, but its folder "
                                          f"{locked} cannot be written (read-only, or not yours): the read-only commands (sweep best, status, report) still read it")
        with pytest.raises(SweepConfigError) as caught:
            sweep.run(_config(tmp_path), storage=str(locked / "runs"), quiet=True, tracking_uri=f"sqlite:///{open_ / 'mlflow.db'}")
        assert str(caught.value) == f"--storage: expected a writable folder, got {locked} (read-only, or not yours)"
    assert time.monotonic() - started < 20, "refused before Ray's start"
    assert not (open_ / "mlflow.db").exists(), "nothing written anywhere"


def _run_at(tmp_path: Path, address: str) -> tuple[subprocess.CompletedProcess, float, list[str]]:
    """``sweep run --address ADDRESS`` of a small sweep: the process, its seconds, its error lines."""
    path = tmp_path / "waits.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path)))
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "sweep.cli", "run", str(path), "--address", address, "--quiet"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return run, time.monotonic() - started, [line for line in run.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"], ids=["gcs", "ray-client"])
def test_an_unreachable_address_is_one_line_in_seconds(tmp_path, address):
    run, took, errors = _run_at(tmp_path, address)
    assert run.returncode == 2, run.stderr[-3000:]
    assert errors == [errors[0]] and "--address" in errors[0] and address in errors[0], run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert took < 60, f"took {took:.1f} s (imports and the preflight included)"


WAITING_DRIVER = """
import sys
from sweep.views import progress
progress.HEARTBEAT_SECONDS = 1.0  # the batch log's heartbeat, every second instead of every 30
from sweep import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def test_on_an_autoscaling_cluster_the_heartbeat_says_what_the_sweep_waits_for(tmp_path):
    """SWEEP_AUTOSCALING=1 skips the resource refusal: trials bigger than today's nodes wait for
    new ones. A batch log must say so every heartbeat (what one trial needs, what is free), and
    Ctrl-C must still end the wait (exit 130, resumable)."""
    import os
    import signal

    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(_config(tmp_path, resources={"cpus_per_trial": 64})))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(SWEEP_AUTOSCALING="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]), TF_CPP_MIN_LOG_LEVEL="3")
    log = tmp_path / "out.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", WAITING_DRIVER, "run", str(sweep_file), "--storage", str(tmp_path / "runs")],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while log.read_text().count("waiting for resources") < 2:  # said again at the next heartbeat
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    line = next(line for line in text.splitlines() if "waiting for resources" in line)
    cpus = os.cpu_count()
    assert re.search(r"\d trial\(s\) pending, each needs CPU 64; the cluster has CPU (\d+) free of (\d+)", line), line
    assert re.search(r"free of (\d+)", line).group(1) == str(cpus), line  # a local Ray: this machine's CPUs
    assert "this sweep started its own local Ray, which never gains nodes" in text  # said once, up front
    assert code == 130, text[-2000:]
    assert "Traceback" not in text


def test_an_address_where_something_else_listens_is_one_line_in_seconds(ray_session, tmp_path):
    """--address at the dashboard's port (or any web server, or a port that accepts and says
    nothing) made ray.init retry for minutes with Ray's C++ warnings only, deaf to Ctrl-C for
    ~40 s. A GCS answers HTTP/2's preface with a SETTINGS frame; anything else is one line."""
    import http.server
    import socket
    import threading

    from sweep.driver import cluster

    cluster.check_address(ray_session)  # a real GCS passes
    web = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        web_address, silent_address = f"127.0.0.1:{web.server_address[1]}", f"127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ConnectionError, match="it answered '<!DOCTYPE HTML>'"):
            cluster.check_address(web_address)
        with pytest.raises(ConnectionError, match="it said nothing within 1 s"):
            cluster.check_address(silent_address, timeout=1)
        run, took, errors = _run_at(tmp_path, web_address)
        assert run.returncode == 2 and len(errors) == 1, run.stderr[-3000:]
        assert "--address" in errors[0] and f"expected a Ray cluster's GCS at {web_address}" in errors[0], errors
        assert took < 60, f"took {took:.1f} s (imports and the preflight included)"
    finally:
        web.shutdown()
        silent.close()
