"""Interrupts: Ctrl-C (SIGINT), a second Ctrl-C, SIGTERM (SLURM, ``ray job stop``), and fail-fast
while a trial is being built. Invariant after the driver ends: no child run RUNNING, the parent
resumable (KILLED) after a signal, and ``sweep resume`` runs every requested trial exactly once."""

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

TRIALS, EPOCHS, NAME = 5, 5, "e2e-interrupt"
PROMPT_S = 20.0  # SIGINT to exit, measured ~3-6 s on 2 busy cores


def _sweep_file(folder: Path) -> Path:
    sweep = {
        "name": NAME,
        "data": {"source": "synthetic", "samples": 3000, "features": 32, "classes": 4, "validation_split": 0.2},
        "model": {"builder": "mlp", "args": {"units": [64, 64]}},
        "fit": {"epochs": EPOCHS, "batch_size": 8, "steps_per_execution": 1},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"sampler": "random", "seed": 5, "trials": TRIALS,
                   "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}}},
        "scheduler": {"type": "fifo"},
    }
    path = folder / "interrupt.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def _runs(uri: str, name: str = NAME):
    from sweep.tracking import store

    parent = store.find_parent_run(uri, name)
    return parent, (store.child_runs(uri, parent) if parent else [])


def _start(tmp_path: Path, ray_address: str | None) -> tuple[subprocess.Popen, list[str], str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ["--tracking-uri", uri, "--storage", str(tmp_path / "runs"), "--quiet"] + (["--address", ray_address] if ray_address else [])
    driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(_sweep_file(tmp_path)), *common], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline:  # once a trial ended and another is mid-way (it has a checkpoint)
        time.sleep(0.3)
        assert driver.poll() is None, driver.communicate()
        ended, running = child_run_progress(tmp_path / "mlflow.db")
        if ended >= 1 and running:
            return driver, common, uri
    pytest.fail("the sweep never reached the state to interrupt")


def _signal_and_wait(driver: subprocess.Popen, *signals: int) -> tuple[float, str, str]:
    started = time.monotonic()
    for sig in signals:
        os.killpg(driver.pid, sig)  # the whole group, as a terminal's Ctrl-C does
        time.sleep(0.3)
    out, err = driver.communicate(timeout=120)
    return time.monotonic() - started, out, err


def _assert_nothing_running(uri: str) -> tuple:
    parent, children = _runs(uri)
    assert parent.info.status == "KILLED", parent.info.status
    assert children and not [c for c in children if c.info.status == "RUNNING"], [(c.info.status, c.data.tags.get("sweep.status")) for c in children]
    interrupted = [c for c in children if c.data.tags.get("sweep.status") == "interrupted"]
    assert interrupted and all(c.info.status == "KILLED" for c in interrupted)
    return parent, children


def test_one_ctrl_c_stops_promptly_and_the_sweep_resumes(ray_session, tmp_path):
    from mlflow.tracking import MlflowClient

    driver, common, uri = _start(tmp_path, ray_session)
    took, out, err = _signal_and_wait(driver, signal.SIGINT)
    assert driver.returncode == 130, err[-3000:]
    assert took < PROMPT_S, f"SIGINT to exit took {took:.1f} s"
    lines = [line for line in err.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1 and f"sweep resume {NAME}" in lines[0], err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    _assert_nothing_running(uri)

    resumed = subprocess.run([sys.executable, "-m", "sweep.cli", "resume", NAME, *common],
                             cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    parent, children = _runs(uri)
    assert parent.info.status == "FINISHED"
    assert len(children) == TRIALS and len({c.data.tags["sweep.trial_id"] for c in children}) == TRIALS
    client = MlflowClient(uri)
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["sweep.status"] == "completed", child.data.tags
        steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy"))
        assert steps == list(range(1, EPOCHS + 1)), steps
        assert not child.data.tags.get("sweep.reason"), "a trial that ran again and completed has no error reason"
    learning_rates = [c.data.params["learning_rate"] for c in children]
    assert len(set(learning_rates)) == TRIALS, "the resumed search did not suggest an interrupted trial's point again"
    from sweep.tracking import store

    summary = store.status_summary(uri, NAME)
    assert summary["trials"] == {"completed": TRIALS}, "no interrupted count lingers from the first session"


def test_sigterm_to_the_group_that_stops_the_sweeps_own_ray_too_closes_the_records_in_seconds(tmp_path):
    """``timeout``, ``docker stop`` and SLURM signal every process of the job: a sweep's own
    local Ray stops with the driver, whose next call into Ray hung 60 s before Ray aborted it,
    every run left RUNNING. The records close without Ray, and the exit says how to continue."""
    driver, _, uri = _start(tmp_path, None)  # its own Ray, in its process group
    took, out, err = _signal_and_wait(driver, signal.SIGTERM)
    assert driver.returncode == 143, err[-3000:]
    assert took < PROMPT_S, f"SIGTERM to exit took {took:.1f} s"
    assert [line for line in err.splitlines() if line.startswith("interrupted:")] and "Traceback" not in err, err[-3000:]
    _assert_nothing_running(uri)


def test_ctrl_c_while_a_user_module_blocks_at_import_stops_and_says_so(tmp_path):
    """A module that blocks at import (a data download, a lock, ``input()``): the first Ctrl-C
    did nothing (the main thread slept in a join the signal never woke), and the second ended
    the command silently, because the module import's capture of stderr swallowed the main
    thread's lines too. Now each Ctrl-C is heard and said."""
    marker = tmp_path / "importing.marker"
    (tmp_path / "blocking.py").write_text(f"import pathlib, time\npathlib.Path({str(marker)!r}).touch()\ntime.sleep(600)\n\n\ndef build(hp, info):\n    pass\n")
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err_file:
        driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(_sweep_file(tmp_path)), "--set", "model.builder=blocking:build",
                                   "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--storage", str(tmp_path / "runs")],
                                  cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err_file, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while not marker.exists():  # bounded: the preflight imports it within seconds
                assert driver.poll() is None and time.monotonic() < deadline, err_path.read_text()[-3000:]
                time.sleep(0.3)
            os.killpg(driver.pid, signal.SIGINT)
            deadline = time.monotonic() + 30
            while "stopping after Ray's start and the preflight" not in err_path.read_text():
                assert time.monotonic() < deadline, "the first Ctrl-C was not heard: " + err_path.read_text()[-3000:]
                time.sleep(0.2)
            started = time.monotonic()
            os.killpg(driver.pid, signal.SIGINT)
            code = driver.wait(timeout=30)
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
    err = err_path.read_text()
    assert code == 130 and time.monotonic() - started < 10, (code, err[-3000:])
    assert "interrupted before any trial started; nothing was recorded: run the same command again" in err, err[-3000:]


def test_ctrl_c_while_ray_starts_and_tensorflow_imports_exits_130_in_one_line(tmp_path):
    """A Ctrl-C in the start-up window (Ray starting in the main thread, the preflight importing
    TensorFlow in another) crashed the interpreter (SIGSEGV, abort) or was swallowed and the sweep
    ran on, exit 0. It is held until both are done, then the sweep stops before any trial."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(_sweep_file(tmp_path)), "--tracking-uri", uri,
                               "--storage", str(tmp_path / "runs")], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(4.0)  # python and sweep imported; Ray starting, TensorFlow importing
    took, out, err = _signal_and_wait(driver, signal.SIGINT)
    assert driver.returncode == 130, (driver.returncode, err[-3000:])
    assert "Traceback" not in err and "interrupted" in err, err[-3000:]
    assert took < PROMPT_S, f"SIGINT to exit took {took:.1f} s"
    parent, _ = _runs(uri) if (tmp_path / "mlflow.db").exists() else (None, [])
    assert parent is None or parent.info.status != "RUNNING"
    # the advice holds: `sweep resume` of a sweep that recorded nothing found none to resume
    advice = "nothing was recorded: run the same command again" if parent is None else f"continue it with `sweep resume {NAME}`"
    assert advice in err, err[-3000:]


@pytest.mark.parametrize("signals, code", [((signal.SIGTERM,), 143), ((signal.SIGINT, signal.SIGINT), 130)], ids=["sigterm", "ctrl-c-twice"])
def test_sigterm_and_a_second_ctrl_c_end_the_sweep_resumable(ray_session, tmp_path, signals, code):
    from sweep.driver import recovery

    driver, _, uri = _start(tmp_path, ray_session)
    took, _, err = _signal_and_wait(driver, *signals)
    assert driver.returncode == code, err[-3000:]
    assert took < PROMPT_S, f"signal to exit took {took:.1f} s"
    assert f"sweep resume {NAME}" in err and "Traceback" not in err, err[-3000:]
    _assert_nothing_running(uri)
    assert recovery.unfinished_parent(uri, NAME) is not None, "resumable"


def test_a_closed_terminal_sighup_ends_the_sweep_resumable_without_failing_on_the_dead_terminal(tmp_path):
    """Closing the terminal (or an ssh drop) sends SIGHUP to the job's process group, whose
    default action killed the driver and the MLflow writer at once: every run left RUNNING. Now
    it ends like SIGTERM, exit 129. Its terminal is gone (every write fails with EIO) and so is
    the sweep's own Ray (same group), while the driver may be blocked inside a call into it: the
    records still close within seconds (it took 60 s and left them RUNNING in one run of four)."""
    import pty

    master, slave = pty.openpty()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(_sweep_file(tmp_path)), "--tracking-uri", uri,
                               "--storage", str(tmp_path / "runs")], cwd=tmp_path,
                              stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    deadline = time.time() + 240
    while time.time() < deadline:
        time.sleep(0.3)
        try:
            os.read(master, 65536)  # a terminal that shows what it is sent
        except OSError:
            pass
        assert driver.poll() is None, "the driver ended before the terminal closed"
        ended, running = child_run_progress(tmp_path / "mlflow.db")
        if ended >= 1 and running:
            break
    else:
        pytest.fail("the sweep never reached the state to interrupt")
    os.close(master)  # the terminal window closes: every later write of the driver fails with EIO
    started = time.monotonic()
    os.killpg(driver.pid, signal.SIGHUP)
    assert driver.wait(timeout=120) == 129
    assert time.monotonic() - started < PROMPT_S
    _assert_nothing_running(uri)
    from sweep.driver import recovery

    assert recovery.unfinished_parent(uri, NAME) is not None, "resumable"


SLOW_FACTORY = '''
import time
import keras


def build(hp, info):
    import ray

    in_trial = ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None
    if in_trial and hp["learning_rate"] > 0.01:  # the preflight (no actor) builds them all fine
        raise ValueError("learning rate too high for this model")
    if in_trial:
        time.sleep(30)  # a big model being built when fail-fast stops the sweep
    return keras.Sequential([keras.Input(info.input_shape), keras.layers.Dense(info.num_outputs, activation="softmax")])
'''


def test_fail_fast_while_a_trial_is_built_leaves_no_run_running_and_retries_nothing(ray_session, tmp_path, monkeypatch):
    import sweep

    monkeypatch.chdir(tmp_path)
    (tmp_path / "slow_models.py").write_text(SLOW_FACTORY)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = {
        "name": "e2e-failfast", "data": {"source": "digits", "validation_split": 0.2},
        "model": {"builder": "slow_models:build"}, "fit": {"epochs": 2},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        # grid order: three high learning rates fail first while the low one is being built
        "search": {"sampler": "grid", "trials": 4, "max_concurrent": 2,
                   "space": {"learning_rate": {"type": "categorical", "choices": [0.05, 0.001, 0.02, 0.03]}}},
        "scheduler": {"type": "fifo"}, "failure": {"fail_fast": 3, "max_retries": 2}, "tracking": {"uri": uri},
    }
    started = time.monotonic()
    result = sweep.run(config, storage=str(tmp_path / "runs"), quiet=True)
    took = time.monotonic() - started
    assert result.stopped_because and "learning rate too high" in result.stopped_because
    parent, children = _runs(uri, "e2e-failfast")
    assert parent.info.status == "FAILED"
    assert not [c for c in children if c.info.status == "RUNNING"], [(c.info.status, c.data.tags) for c in children]
    failed = [c for c in children if c.data.tags.get("sweep.status") == "failed"]
    assert len(failed) >= 3
    for child in failed:  # a ValueError in the user's factory is not retried
        assert "sweep.retries" not in child.data.tags, child.data.tags
    assert took < 120, took
