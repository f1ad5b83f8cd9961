"""Issue 18, section 3 (rel-02): the storage goes read-only in the middle of a sweep.

A real ``sweep run`` (CLI, its own local Ray), real trials writing checkpoints; the storage folder
is made read-only under it with a read-only bind mount, the way a disk remounted read-only or an
NFS hiccup looks to a process. That needs root with mount rights (this project's CI container has
them); elsewhere the test is skipped, saying why.

The sweep must end resumable (parent KILLED, no run RUNNING, the trial budget not spent), in one
line that names the storage fault and ``sweep resume``, with no traceback; once the storage is
writable again, ``sweep resume`` finishes every trial exactly once.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from sweep.tracking.tags import TRIAL_NUMBER_TAG

from .servers import child_run_progress, kill_group

NAME = "storage-fault"
TRIALS = 4
EPOCHS = 12
REPO = Path(__file__).resolve().parents[2]


def _can_bind_mount(folder: Path) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    made = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if made.returncode != 0:
        return False
    subprocess.run(["umount", str(folder)], capture_output=True)
    return True


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` read-only for every process until the block ends (a read-only bind mount)."""
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        # the remount is refused ("mount point is busy") while a file in it is open for writing
        # (a checkpoint being copied): try again for a few seconds, as a busy machine needs
        deadline = time.monotonic() + 15
        while subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, f"could not make {folder} read-only within 15 s"
            time.sleep(0.1)
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _sweep_file(folder: Path) -> Path:
    spec = {
        "name": NAME,
        "data": {"source": "digits", "validation_split": 0.2},
        "model": {"builder": "mlp", "args": {"units": [32]}},
        "fit": {"epochs": EPOCHS, "batch_size": 16, "steps_per_execution": 1},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"sampler": "random", "seed": 3, "trials": TRIALS,
                   "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}}},
        "scheduler": {"type": "fifo"},
        "resources": {"cpus_per_trial": 1},
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _sweep(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "sweep.cli", *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _children(uri: str) -> tuple[str, list]:
    from sweep.tracking import store

    parent = store.find_parent_run(uri, NAME)
    return parent.info.status, store.child_runs(uri, parent)


def _start_run(tmp_path: Path, storage: Path) -> tuple[subprocess.Popen, str, list[str], Path]:
    """``sweep run`` of the test's sweep into ``tmp_path/mlflow.db``, checkpoints in ``storage``."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ["--storage", str(storage), "--tracking-uri", uri]
    log = tmp_path / "run.log"
    return _sweep(["run", str(_sweep_file(tmp_path)), *common], tmp_path, log), uri, common, log


def _resume_finishes_every_trial_once(common: list[str], tmp_path: Path, uri: str) -> None:
    log = tmp_path / "resume.log"
    resumed = _sweep(["resume", NAME, *common], tmp_path, log)
    try:
        assert resumed.wait(timeout=240) == 0, log.read_text()[-3000:]
    finally:
        kill_group(resumed)
    status, children = _children(uri)
    assert status == "FINISHED"
    numbers = sorted(int(c.data.tags[TRIAL_NUMBER_TAG]) for c in children)
    assert numbers == list(range(TRIALS))  # every trial exactly once
    assert {c.info.status for c in children} == {"FINISHED"}


def test_a_storage_gone_read_only_ends_the_sweep_resumable_and_resume_finishes_it(tmp_path):
    storage = tmp_path / "runs"
    if not _can_bind_mount(storage):
        pytest.skip("needs root with mount rights (a read-only bind mount stands in for a disk gone read-only)")
    proc, uri, common, log = _start_run(tmp_path, storage)
    db = tmp_path / "mlflow.db"
    try:
        deadline = time.monotonic() + 150
        while child_run_progress(db)[1] < 1:  # a trial is running with a checkpoint written
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        with read_only(storage):
            code = proc.wait(timeout=150)
    finally:
        kill_group(proc)
    out = log.read_text()
    assert code == 1, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    stopped = [line for line in out.splitlines() if line.startswith("sweep stopped: storage fault")]
    assert len(stopped) == 1 and f"sweep resume {NAME}" in stopped[0], out[-3000:]
    assert "finishing it failed" not in out  # the lock left on the read-only storage names a dead process: not a failure
    status, children = _children(uri)
    assert status == "KILLED"  # resumable: the budget is not spent
    assert children and not [c for c in children if c.info.status == "RUNNING"]

    _resume_finishes_every_trial_once(common, tmp_path, uri)


def _small_tmpfs(folder: Path, size: str) -> bool:
    """``folder`` as a tmpfs of ``size`` (root with mount rights), True if mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True).returncode == 0


def test_a_storage_that_fills_up_says_so_once_and_resume_finishes_it(tmp_path):
    """A full disk truncated the error files Tune writes there, and Tune's end of fit then
    failed reading one back ("pickle data was truncated"): after the right stop line came a
    second one, "sweep run failed unexpectedly", with a traceback file."""
    storage = tmp_path / "small"
    if not _small_tmpfs(storage, "120k"):
        pytest.skip("needs root with mount rights (a 120 KB tmpfs stands in for a disk that fills up)")
    try:
        proc, uri, common, log = _start_run(tmp_path, storage)
        try:
            code = proc.wait(timeout=240)
        finally:
            kill_group(proc)
        out = log.read_text()
        stopped = [line for line in out.splitlines() if line.startswith("sweep stopped: storage fault")]
        assert code == 1 and len(stopped) == 1 and f"sweep resume {NAME}" in stopped[0], out[-3000:]
        assert "failed unexpectedly" not in out and "Traceback" not in out, out[-3000:]
        status, children = _children(uri)
        assert status == "KILLED" and not [c for c in children if c.info.status == "RUNNING"]
        retries = [int(c.data.tags.get("sweep.retries", 0)) for c in children]
        assert max(retries) <= 1, retries  # a full disk fails every retry: the sweep halts at the first (each trial was retried twice)

        subprocess.run(["mount", "-o", "remount,size=64m", str(storage)], check=True)  # space freed
        _resume_finishes_every_trial_once(common, tmp_path, uri)
    finally:
        subprocess.run(["umount", "-l", str(storage)], capture_output=True)


WIPE = '''
import shutil
from pathlib import Path

import keras


class WipeStorage(keras.callbacks.Callback):
    """In the second trial's first epoch, delete the sweep's storage folder (a disk replaced, a cleanup job)."""

    def __init__(self, folder, marker):
        super().__init__()
        self.folder, self.marker = Path(folder), Path(marker)

    def on_train_begin(self, logs=None):
        self.second = self.marker.exists()
        self.marker.touch()

    def on_epoch_end(self, epoch, logs=None):
        if self.second and self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)
'''


def test_a_storage_folder_deleted_mid_sweep_stops_it_resumable_in_one_line(ray_session, tmp_path):
    """The folder deleted under a running sweep: every later trial failed with Ray's "check that
    all nodes have read/write access" and spent the budget, and the finish failed on the best
    trial's missing checkpoint file (parent FAILED)."""
    storage = tmp_path / "runs"
    (tmp_path / "wipe_storage.py").write_text(WIPE)
    spec = yaml.safe_load(_sweep_file(tmp_path).read_text())
    spec["name"] = "storage-gone"
    spec["fit"] = {"epochs": 3, "batch_size": 32, "callbacks": [
        {"wipe_storage:WipeStorage": {"folder": str(storage / "storage-gone"), "marker": str(tmp_path / "started")}}]}
    spec["search"]["max_concurrent"] = 1
    path = tmp_path / "gone.yaml"
    path.write_text(yaml.safe_dump(spec))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    run = subprocess.run([sys.executable, "-m", "sweep.cli", "run", str(path), "--storage", str(storage), "--tracking-uri", uri, "--address", ray_session],
                         capture_output=True, text=True, cwd=tmp_path, timeout=400, env={**env, "PYTHONPATH": str(REPO)})
    out = run.stdout + run.stderr
    assert run.returncode == 1, out[-3000:]
    stopped = [line for line in out.splitlines() if line.startswith("sweep stopped: storage fault")]
    assert len(stopped) == 1 and "sweep resume storage-gone" in stopped[0], out[-3000:]
    assert f"the sweep's folder under {storage} is gone or cannot be read" in stopped[0], stopped[0]
    assert "finishing it failed" not in out and "Traceback" not in out and "all nodes in the cluster" not in out, out[-3000:]
    from sweep.tracking import store

    parent = store.find_parent_run(uri, "storage-gone")
    assert parent.info.status == "KILLED", "resumable: the budget is not spent"
    children = store.child_runs(uri, parent)
    assert len(children) < TRIALS and not [c for c in children if c.info.status == "RUNNING"]
