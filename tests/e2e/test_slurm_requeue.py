"""SLURM's time limit, end to end: ``cluster/slurm.sbatch`` run by bash, SIGTERM to the batch shell
only (``--signal=B:TERM@120``), the job requeues itself, and the next start of the same script
finishes the sweep with every trial run exactly once.

Only SLURM's own commands are fakes (``srun``, ``scontrol``: small scripts on PATH). The rest is
real: the script's ``ray start --head --block`` on free ports (RAY_PORT, RAY_HEAD_OPTS) and its own
RAY_TMPDIR, in Ray's single-machine mode on 127.0.0.1 as tests/e2e/cluster_nodes.py runs its
nodes, and the ``sweep run`` driver. The script runs in a session of its own; whatever it leaves
is stopped here: its process group, then any process whose environment names this test's
RAY_TMPDIR (never ``ray stop``, which would stop every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from .servers import child_run_progress, free_port, kill_group

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "cluster" / "slurm.sbatch"
NAME, TRIALS, EPOCHS, JOB_ID = "e2e-slurm", 6, 10, "4242"

# srun: drop srun's own options (--nodes=1 --ntasks=1 -w HOST), run the command here.
SRUN = """#!/bin/bash
while [ $# -gt 0 ]; do
    case "$1" in
        -w|-N|-n|--nodelist|--nodes|--ntasks) shift 2 ;;
        -*) shift ;;
        *) break ;;
    esac
done
if [ "$1" = hostname ] && [ "${2:-}" = --ip-address ]; then echo 127.0.0.1; exit 0; fi
exec "$@"
"""
# scontrol: the job's one node; a requeue is written down for the test to read.
SCONTROL = """#!/bin/bash
case "$1 ${2:-}" in
    "show hostnames") echo localhost ;;
    "requeue "*) echo "requeue $2" >> "$FAKE_SLURM_REQUEUES" ;;
    *) echo "fake scontrol: unexpected: $*" >&2; exit 1 ;;
esac
"""


def _fake_slurm(folder: Path) -> Path:
    folder.mkdir()
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL)):
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


def _sweep_file(folder: Path) -> Path:
    sweep = {
        "name": NAME,
        "data": {"source": "digits", "validation_split": 0.2},
        "model": {"builder": "mlp", "args": {"units": [32]}},
        # about 3-6 s a trial on 2 busy cores, two at a time: a sweep of ~20-30 s to interrupt
        "fit": {"epochs": EPOCHS, "batch_size": 16, "steps_per_execution": 1},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"sampler": "random", "seed": 11, "trials": TRIALS,
                   "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}}},
        "scheduler": {"type": "fifo"},  # every trial runs all its epochs
        "resources": {"cpus_per_trial": 1},
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


@pytest.fixture()
def ray_tmp() -> Iterator[Path]:
    """A short private RAY_TMPDIR (Unix socket paths must stay under ~100 characters); on the way
    out, any process of this test's Ray still alive is killed (found by its environment)."""
    folder = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    try:
        yield folder
    finally:
        _kill_leftovers(folder)
        shutil.rmtree(folder, ignore_errors=True)


def _our_processes(ray_tmp: Path) -> list[Any]:
    """Live processes started with RAY_TMPDIR=ray_tmp: this test's Ray, driver and workers only."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and proc.environ().get("RAY_TMPDIR") == str(ray_tmp) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def _kill_leftovers(ray_tmp: Path) -> None:
    import psutil

    procs = _our_processes(ray_tmp)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=10)


def _env(tmp_path: Path, fake_bin: Path, ray_tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI") and not k.startswith("SLURM_")}
    head_ports = f"--dashboard-port={free_port()} --dashboard-agent-listen-port={free_port()} --ray-client-server-port={free_port()}"
    env.update(
        PATH=os.pathsep.join([str(fake_bin), str(Path(sys.executable).parent), env.get("PATH", "")]),  # srun, scontrol; ray, sweep
        PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3",
        RAY_TMPDIR=str(ray_tmp), RAY_PORT=str(free_port()), RAY_HEAD_OPTS=head_ports,
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # Ray's single-machine mode: the head stays on 127.0.0.1
        SLURM_JOB_NODELIST="localhost", SLURM_JOB_ID=JOB_ID, SLURM_JOB_NUM_NODES="1", SLURM_CPUS_PER_TASK="2",
        SWEEP_FILE=str(_sweep_file(tmp_path)), STORAGE=str(tmp_path / "runs"), TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        FAKE_SLURM_REQUEUES=str(tmp_path / "requeues"),
    )
    return env


def _start_job(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    """The batch script as SLURM starts it: bash, in a session of its own."""
    with log.open("a") as out:
        return subprocess.Popen(["bash", str(SCRIPT)], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _runs(uri: str) -> tuple[list[Any], list[Any]]:
    """Every parent run of the sweep, and the newest one's trial runs."""
    from mlflow.tracking import MlflowClient

    from sweep.tracking import store

    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    parents = client.search_runs(experiments, filter_string=f"tags.`sweep.role` = 'parent' and tags.`sweep.name` = '{NAME}'")
    newest = store.find_parent_run(uri, NAME)
    return parents, (store.child_runs(uri, newest) if newest else [])


def _wait_for_no_processes(ray_tmp: Path, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = _our_processes(ray_tmp)
        if not left or time.monotonic() > deadline:
            return [" ".join(p.cmdline())[:120] for p in left]
        time.sleep(0.5)


def test_sigterm_requeues_the_job_and_the_next_start_finishes_the_sweep(tmp_path, ray_tmp):
    from mlflow.tracking import MlflowClient

    from sweep.driver import recovery

    env = _env(tmp_path, _fake_slurm(tmp_path / "bin"), ray_tmp)
    uri, requeues, log = env["TRACKING_URI"], tmp_path / "requeues", tmp_path / "job.log"
    jobs: list[subprocess.Popen] = []

    def log_tail() -> str:
        return log.read_text(errors="replace")[-5000:]

    try:
        # First start: wait (bounded) until a trial has ended and another is mid-way (it has
        # logged epochs and has a checkpoint), then SIGTERM to the batch shell only.
        first = _start_job(env, tmp_path, log)
        jobs.append(first)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            assert first.poll() is None, f"the job ended (exit {first.returncode}) before it could be interrupted:\n{log_tail()}"
            ended, running = child_run_progress(tmp_path / "mlflow.db")
            if ended >= 1 and running:
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"the sweep never reached a trial mid-way:\n{log_tail()}")
        signalled = time.monotonic()
        os.kill(first.pid, signal.SIGTERM)  # --signal=B:TERM: the batch shell, not its children
        try:
            code = first.wait(110)  # SLURM's SIGKILL comes 120 s after the SIGTERM
        except subprocess.TimeoutExpired:
            pytest.fail(f"the job did not end within 110 s of SIGTERM:\n{log_tail()}")
        took = time.monotonic() - signalled
        assert code == 143, f"exit {code}:\n{log_tail()}"
        assert took < 60, f"SIGTERM to exit took {took:.0f} s"
        assert requeues.read_text() == f"requeue {JOB_ID}\n", log_tail()
        assert f"requeueing job {JOB_ID}" in log_tail()
        left = _wait_for_no_processes(ray_tmp, 30)
        assert not left, f"the job's Ray (or driver) outlived the job: {left}"

        parents, children = _runs(uri)
        assert len(parents) == 1
        assert parents[0].info.status == "KILLED", parents[0].info.status  # resumable, not FINISHED
        assert recovery.unfinished_parent(uri, NAME) is not None
        statuses = [(c.data.tags.get("sweep.trial_id"), c.info.status, c.data.tags.get("sweep.status")) for c in children]
        assert children and not [s for s in statuses if s[1] == "RUNNING"], statuses
        ended_before = {c.data.tags["sweep.trial_id"] for c in children if c.data.tags.get("sweep.status") == "completed"}
        interrupted = {c.data.tags["sweep.trial_id"] for c in children if c.data.tags.get("sweep.status") == "interrupted"}
        assert ended_before and interrupted, statuses
        assert all(c.info.status == "KILLED" for c in children if c.data.tags["sweep.trial_id"] in interrupted), statuses

        # The requeued job: the same script, the same environment, run to its end.
        second = _start_job(env, tmp_path, log)
        jobs.append(second)
        try:
            code = second.wait(150)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the requeued job did not finish in 150 s:\n{log_tail()}")
        assert code == 0, f"exit {code}:\n{log_tail()}"
        assert "Termination is unexpected" not in log_tail(), "the end's kill of its own Ray reached the output"
        assert requeues.read_text() == f"requeue {JOB_ID}\n", "a finished job does not requeue"
        left = _wait_for_no_processes(ray_tmp, 10)  # its end kills its own Ray (a bare exit left the raylet's agents for 20 s+)
        assert not left, f"the job's Ray (or driver) outlived the job: {left}"

        parents, children = _runs(uri)
        assert len(parents) == 1 and parents[0].info.status == "FINISHED", [p.info.status for p in parents]
        trial_ids = [c.data.tags["sweep.trial_id"] for c in children]
        assert len(children) == TRIALS and len(set(trial_ids)) == TRIALS, sorted(trial_ids)  # none lost, none twice
        assert ended_before | interrupted <= set(trial_ids)
        client = MlflowClient(uri)
        for child in children:
            tags = child.data.tags
            assert (child.info.status, tags["sweep.status"]) == ("FINISHED", "completed"), (tags["sweep.trial_id"], child.info.status, tags)
            steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy"))
            assert steps == list(range(1, EPOCHS + 1)), (tags["sweep.trial_id"], steps)  # every epoch once, none missing
            if tags["sweep.trial_id"] in ended_before:
                assert "sweep.resumed_from_epoch" not in tags, "a trial that had ended ran again"
        assert len({c.data.params["learning_rate"] for c in children}) == TRIALS, "the resumed search repeated a point"
    finally:
        for job in jobs:  # the batch shell if still there, then what it left in its group
            kill_group(job)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.pid, signal.SIGTERM)
        _wait_for_no_processes(ray_tmp, 20)  # `ray start --block` stops its node on SIGTERM; ray_tmp kills the rest
