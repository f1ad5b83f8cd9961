"""Clusters, with real processes on 127.0.0.1: a three-node Ray cluster (two CPU nodes and one
node advertising two fake GPUs), sweeps submitted to it with ``--address`` / ``ray://`` /
``ray job submit``, and a real ``mlflow server`` receiving a sweep over HTTP.

Everything runs in subprocesses (``tests/e2e/cluster_nodes.py`` for the cluster, ``python -m
sweep.cli`` / ``ray job submit`` for the drivers) with their own RAY_TMPDIR and ports, so the test session's own Ray
(the ``ray_session`` fixture) is never touched, and every process started here is stopped here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from .servers import MlflowServer, free_port, kill_group

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 2


@pytest.fixture(scope="module")
def ray_tmp() -> Iterator[Path]:
    """A short private RAY_TMPDIR (Unix socket paths must stay under ~100 characters)."""
    folder = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _env(ray_tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(RAY_TMPDIR=str(ray_tmp), PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


@pytest.fixture(scope="module")
def cluster(ray_tmp: Path) -> Iterator[dict[str, Any]]:
    """Head (1 CPU, cpu_node) + CPU node (1 CPU, cpu_node) + GPU node (4 CPUs, 2 fake GPUs)."""
    client_port, dashboard_port = free_port(), free_port()
    spec = {
        "head": {"num_cpus": 1, "resources": {"cpu_node": 1}, "include_dashboard": True, "dashboard_port": dashboard_port, "ray_client_server_port": client_port,
                 # not Ray's default 52365: the test session's own Ray may hold it, and a head whose
                 # agent cannot bind answers every job submission "No available agent"
                 "dashboard_agent_listen_port": free_port()},
        "nodes": [{"num_cpus": 1, "resources": {"cpu_node": 1}}, {"num_cpus": 4, "num_gpus": 2}],
    }
    log = (ray_tmp / "cluster.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests/e2e/cluster_nodes.py"), json.dumps(spec)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=_env(ray_tmp), start_new_session=True,
    )
    try:
        line = proc.stdout.readline()
        assert line, f"cluster did not start: {(ray_tmp / 'cluster.log').read_text()[-3000:]}"
        info = json.loads(line)
        info.update(client=f"ray://127.0.0.1:{client_port}", head_id=info["node_ids"][0], cpu_ids=info["node_ids"][:2], gpu_id=info["node_ids"][2])
        yield info
    finally:
        with contextlib.suppress(Exception):
            proc.stdin.close()  # the helper shuts its nodes down when stdin closes
            proc.wait(60)
        kill_group(proc)
        log.close()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """A real MLflow tracking server on 127.0.0.1: sqlite backend, artifacts proxied."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    try:
        yield server.uri
    finally:
        server.stop()


def _sweep_file(folder: Path, name: str, trials: int, resources: dict[str, Any], epochs: int = EPOCHS, samples: int = 300) -> Path:
    spec = {
        "name": name,
        "data": {"source": "synthetic", "samples": samples, "features": 8},
        "model": {"builder": "mlp", "args": {"units": [8]}},
        "fit": {"epochs": epochs},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"sampler": "random", "seed": 0, "trials": trials, "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}},
        "scheduler": {"type": "fifo"},  # every trial runs all its epochs and checkpoints
        "resources": resources,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _run_sweep(ray_tmp: Path, args: list[str], cwd: Path, timeout: int = 180) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "run", *args], cwd=cwd, env=_env(ray_tmp), capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    return proc


def _trial_runs(uri: str, name: str) -> tuple[Any, list[Any]]:
    from sweep.tracking import store

    parent = store.find_parent_run(uri, name)
    assert parent is not None, f"no parent run for {name} in {uri}"
    return parent, store.child_runs(uri, parent)


def _trials_csv(uri: str, parent: Any) -> Any:
    import pandas as pd
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as folder:
        path = MlflowClient(uri).download_artifacts(parent.info.run_id, "trials.csv", folder)
        return pd.read_csv(path)


def _max_overlap(frame: Any) -> int:
    """Most trials running at the same moment, from their start/end times."""
    events = sorted([(t, 1) for t in frame["started_at"]] + [(t, -1) for t in frame["ended_at"]], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_sweep_spans_two_cpu_nodes_into_an_mlflow_server(cluster, mlflow_server, ray_tmp, tmp_path):
    """``ray://`` (Ray Client: the driver runs on the cluster), pinned CPU trials on both CPU nodes
    (never the GPU node), file:// storage, and every run, metric and checkpoint artifact on a real
    tracking server over HTTP."""
    from mlflow.tracking import MlflowClient

    path = _sweep_file(tmp_path / "cpu", "cluster-cpu", 4, {"cpus_per_trial": 1, "custom": {"cpu_node": 1}})
    storage = (tmp_path / "runs").as_uri()
    _run_sweep(ray_tmp, [str(path), "--address", cluster["client"], "--tracking-uri", mlflow_server, "--storage", storage, "--quiet"], tmp_path)

    parent, children = _trial_runs(mlflow_server, "cluster-cpu")
    assert len(children) == 4
    nodes = {run.data.tags.get("sweep.node_id") for run in children}
    assert nodes == set(cluster["cpu_ids"]), "trials should run on both CPU nodes and never on the GPU node"
    client = MlflowClient(mlflow_server)
    for run in children:
        tags = run.data.tags
        assert tags["sweep.node_ip"] == "127.0.0.1"
        assert (tags["sweep.cpus"], tags["sweep.gpus"], tags["sweep.cuda_visible_devices"]) == ("1.0", "0.0", "")
        assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == EPOCHS
        assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == ["checkpoint/model.keras"]
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"trials.csv", "best_checkpoint"}
    assert parent.data.tags["sweep.best_checkpoint"].startswith(str(tmp_path / "runs"))  # file:// resolved to the shared path


def test_fractional_gpus_are_packed_four_at_a_time(cluster, ray_tmp, tmp_path):
    """gpus_per_trial 0.5 on a node with 2 (fake) GPUs: 4 run together, each sees its own GPU."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Trials long enough (8 epochs of 100 steps) to outlast the stagger of four workers starting on 2
    # real cores: with 2 epochs, the first trial could end before the fourth worker finished importing
    # TensorFlow, and with 8 epochs of 8 steps it did once in a full run on a busy machine (3 at once).
    path = _sweep_file(tmp_path / "gpu", "cluster-gpu", 5, {"cpus_per_trial": 1, "gpus_per_trial": 0.5}, epochs=8, samples=4000)
    _run_sweep(ray_tmp, [str(path), "--address", "auto", "--tracking-uri", uri, "--storage", str(tmp_path / "runs"), "--quiet"], tmp_path)

    parent, children = _trial_runs(uri, "cluster-gpu")
    assert len(children) == 5
    assert {run.data.tags["sweep.node_id"] for run in children} == {cluster["gpu_id"]}
    devices = [run.data.tags["sweep.cuda_visible_devices"] for run in children]
    assert set(devices) == {"0", "1"}, devices  # one GPU each, both GPUs used
    assert {run.data.tags["sweep.gpus"] for run in children} == {"0.5"}
    frame = _trials_csv(uri, parent)
    assert _max_overlap(frame) == 4, frame[["trial_id", "started_at", "ended_at"]]


def test_ray_job_submit_runs_a_sweep_on_the_head(cluster, ray_tmp, tmp_path):
    """``ray job submit --working-dir . -- sweep run FILE``: succeeds, logs name the best trial."""
    work = tmp_path / "job"
    _sweep_file(work, "cluster-job", 2, {"cpus_per_trial": 1, "custom": {"cpu_node": 1}})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [
        sys.executable, "-m", "ray.scripts.scripts", "job", "submit", "--address", cluster["dashboard"], "--working-dir", str(work), "--",
        "sweep", "run", "sweep.yaml", "--tracking-uri", uri, "--storage", str(tmp_path / "runs"),
    ]
    deadline = time.time() + 180  # the job server answers 500 "No available agent" until the head's agent registers (slow on a busy 2-core box)
    while True:
        proc = subprocess.run(command, cwd=work, env=_env(ray_tmp), capture_output=True, text=True, timeout=240)
        if "No available agent" not in proc.stderr + proc.stdout or time.time() > deadline:
            break
        time.sleep(5)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from sweep.tracking import store

    best = store.best_summary(uri, "cluster-job")
    assert best is not None and best["trial_id"]
    assert f"trial {best['trial']} (ray {best['trial_id']})" in proc.stdout  # the CLI's "best ... (trial 0001 (ray ID), ...)" line
    sweep_lines = [line for line in proc.stdout.splitlines() if line.startswith(("sweep cluster-job", "trial ", "best "))]
    assert sweep_lines[0].startswith("sweep cluster-job: 2 trials") and len(sweep_lines) >= 4  # header, 2 trials, best
    assert not any("\x1b[" in line for line in sweep_lines)  # plain lines in a batch log: no live table
