"""Chaos soak (issue 18 section 8): over >= 20 rounds, a tiny sweep's driver is started
(``sweep run FILE``, or ``sweep resume NAME`` when the sweep is unfinished) and stopped at a random
moment with a random signal (SIGINT to the process group as a terminal's Ctrl-C, SIGTERM as
SLURM/``ray job stop``, SIGKILL as the OOM killer). A sweep that ran to its end is checked and
the next round starts another one; at the end every unfinished sweep runs to completion.

What must hold, per round and at the end (section 2's invariant):

* every requested trial has exactly one child run (nothing duplicated, nothing lost: a trial that
  had ended keeps its run and its status), none RUNNING once the driver ended on SIGINT/SIGTERM
  or once a resume ran, epochs 1..k contiguous;
* no process of the driver's group is left, and no trial worker of the sweep outlives it.

The randomness is seeded (``CHAOS_SOAK_SEED``, printed), so a failing round can be replayed.
A per-signal tally is printed: tried / survived / lost / duplicated / left RUNNING.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .test_chaos import _trial_workers

pytestmark = pytest.mark.slow

ROUNDS = int(os.environ.get("CHAOS_SOAK_ROUNDS", "20"))
SEED = int(os.environ.get("CHAOS_SOAK_SEED", "18"))
TRIALS, EPOCHS = 4, 2
STOP_AFTER_S = (1.0, 8.0)  # the random moment: from the driver's start (half the rounds) ...
STOP_IN_TRIAL_S = (0.0, 3.0)  # ... or from the first moment a trial run is RUNNING (startup alone takes ~5-8 s)
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
EXPECTED_EXIT = {signal.SIGINT: {130, -signal.SIGINT}, signal.SIGTERM: {143, -signal.SIGTERM}, signal.SIGKILL: {-signal.SIGKILL}}


def _sweep_file(folder: Path, name: str) -> Path:
    sweep = {
        "name": name,
        "data": {"source": "synthetic", "samples": 400, "features": 8, "classes": 2, "validation_split": 0.25},
        "model": {"builder": "mlp", "args": {"units": [8]}},
        "fit": {"epochs": EPOCHS, "batch_size": 16, "steps_per_execution": 1},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"sampler": "random", "seed": 3, "trials": TRIALS,
                   "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}},
        "scheduler": {"type": "fifo"},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "soak.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def _records(db: Path) -> tuple[list[tuple[str, str]], list[dict]]:
    """(parents as (run id, status), children as dicts) of a sweep's own sqlite store, read-only
    (a second MLflow store object on a database a driver may still be creating races its migration)."""
    if not db.exists():
        return [], []
    query = """
        SELECT r.run_uuid, r.status,
               (SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = 'mlflow.parentRunId'),
               (SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = 'sweep.trial_id'),
               (SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = 'sweep.status'),
               (SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = 'sweep.role')
        FROM runs r"""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as connection:
            rows = connection.execute(query).fetchall()
            steps = collections.defaultdict(list)
            for run_id, step in connection.execute("SELECT run_uuid, step FROM metrics WHERE key = 'val_accuracy'"):
                steps[run_id].append(step)
    except sqlite3.OperationalError:  # killed before MLflow made its tables
        return [], []
    parents = [(run_id, status) for run_id, status, parent, _, _, role in rows if role == "parent"]
    children = [{"run_id": run_id, "status": status, "trial": trial, "sweep_status": sweep_status, "steps": sorted(steps[run_id])}
                for run_id, status, parent, trial, sweep_status, _ in rows if parent]
    return parents, children


def _check(db: Path, ended_before: dict[str, str], allow_running: bool) -> dict[str, list]:
    """The invariant's breaches in a sweep's store right now (empty lists: it holds)."""
    parents, children = _records(db)
    by_trial = collections.Counter(c["trial"] for c in children)
    now = {c["trial"]: c["sweep_status"] for c in children}
    problems = {
        "duplicated": sorted(t for t, n in by_trial.items() if n > 1) + (["<parent>"] if len(parents) > 1 else []),
        "lost": sorted(t for t, status in ended_before.items() if now.get(t) != status),
        "running": [] if allow_running else [c["trial"] for c in children if c["status"] == "RUNNING"]
                   + [p for p, status in parents if status == "RUNNING"],
        "epochs": [(c["trial"], c["steps"]) for c in children if c["steps"] != list(range(1, len(c["steps"]) + 1))],
    }
    return problems


def _ended(db: Path) -> dict[str, str]:
    return {c["trial"]: c["sweep_status"] for c in _records(db)[1] if c["sweep_status"] in ("completed", "stopped_early", "failed")}


def _unfinished(db: Path) -> bool:
    parents, _ = _records(db)
    return bool(parents) and parents[-1][1] in ("RUNNING", "SCHEDULED", "KILLED")


def _snapshot(db: Path) -> dict[str, tuple[str, int]]:
    return {c["run_id"]: (c["status"], len(c["steps"])) for c in _records(db)[1]}


def _trial_in_flight(db: Path, before: dict[str, tuple[str, int]]) -> bool:
    """A child run RUNNING that this driver opened or advanced (not one a SIGKILLed driver left)."""
    return any(c["status"] == "RUNNING" and before.get(c["run_id"]) != (c["status"], len(c["steps"])) for c in _records(db)[1])


def _wait_for_the_moment(driver: subprocess.Popen, db: Path, in_trial: bool, after: float, before: dict) -> bool:
    """Wait until the random moment to stop ``driver``; True if it ended on its own first."""
    if in_trial:  # first until this driver runs a trial (bounded: a driver with nothing left to run ends)
        deadline = time.monotonic() + 60
        while driver.poll() is None and time.monotonic() < deadline:
            if _trial_in_flight(db, before):
                break
            time.sleep(0.2)
    try:
        driver.wait(timeout=after)
        return True
    except subprocess.TimeoutExpired:
        return False


def _group_gone(pgid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _command(folder: Path, name: str, ray_address: str, resume: bool) -> list[str]:
    common = ["--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}", "--storage", str(folder / "runs"), "--address", ray_address, "--quiet"]
    if resume:
        return [sys.executable, "-m", "sweep.cli", "resume", name, *common]
    return [sys.executable, "-m", "sweep.cli", "run", str(folder / "soak.yaml"), *common]


def test_random_driver_stops_then_resume_keep_every_trial_once(ray_session, tmp_path):
    chooser = random.Random(SEED)
    print(f"\nchaos soak: seed {SEED} (CHAOS_SOAK_SEED), {ROUNDS} rounds")
    tally = {sig.name: collections.Counter() for sig in SIGNALS}
    failures: list[str] = []
    sweeps: list[tuple[Path, str]] = []
    started = time.monotonic()

    def new_sweep() -> tuple[Path, str]:
        name = f"soak-{len(sweeps)}"
        folder = tmp_path / name
        _sweep_file(folder, name)
        sweeps.append((folder, name))
        return folder, name

    folder, name = new_sweep()
    for round_no in range(1, ROUNDS + 1):
        db = folder / "mlflow.db"
        sig = chooser.choice(SIGNALS)
        after = chooser.uniform(*STOP_AFTER_S)
        resume = _unfinished(db) and chooser.random() < 0.5
        ended_before, before = _ended(db), _snapshot(db)
        driver = subprocess.Popen(_command(folder, name, ray_session, resume), cwd=folder, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)
        in_trial = chooser.random() < 0.5
        if in_trial:
            after = chooser.uniform(*STOP_IN_TRIAL_S)
        finished_first = _wait_for_the_moment(driver, db, in_trial, after, before)
        if not finished_first:
            if _trial_in_flight(db, before):
                tally[sig.name]["mid-trial"] += 1
            if sig == signal.SIGINT:
                os.killpg(driver.pid, sig)  # the whole group, as a terminal's Ctrl-C does
            else:
                os.kill(driver.pid, sig)
        try:
            _, err = driver.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            driver.kill()
            _, err = driver.communicate()
            failures.append(f"round {round_no} {sig.name}: the driver did not exit within 90 s of the signal")
        label = (f"round {round_no} ({name}, {'resume' if resume else 'run'}, {sig.name} {after:.1f}s after "
                 f"{'a trial started' if in_trial else 'the start'}, rc {driver.returncode})")
        if not _group_gone(driver.pid):
            failures.append(f"{label}: a process of the driver's group is left")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(driver.pid, signal.SIGKILL)
        if finished_first or driver.returncode == 0:
            tally[sig.name]["finished first"] += 1
            if driver.returncode != 0:
                failures.append(f"{label}: exited on its own with {driver.returncode}: {err[-1500:]}")
        else:
            tally[sig.name]["tried"] += 1
            if driver.returncode not in EXPECTED_EXIT[sig]:
                failures.append(f"{label}: unexpected exit code: {err[-1500:]}")
            if sig != signal.SIGKILL and "Traceback" in err:
                failures.append(f"{label}: a traceback: {err[-1500:]}")
        problems = _check(db, ended_before, allow_running=(sig == signal.SIGKILL and not finished_first))
        for kind in ("lost", "duplicated", "running", "epochs"):
            if problems[kind]:
                tally[sig.name][kind] += 1
                failures.append(f"{label}: {kind}: {problems[kind]}")
        if not any(problems.values()):
            tally[sig.name]["survived"] += 1
        if not _unfinished(db) and _records(db)[0]:  # it ran to its end: check it whole, start another
            folder, name = new_sweep()

    for folder, name in sweeps:  # every sweep to its end
        db = folder / "mlflow.db"
        if not _records(db)[0] or _unfinished(db):
            ended_before = _ended(db)
            done = subprocess.run(_command(folder, name, ray_session, resume=False), cwd=folder, capture_output=True, text=True, timeout=300, check=False)
            if done.returncode != 0:
                failures.append(f"completing {name}: exit {done.returncode}: {done.stderr[-2000:]}")
            problems = _check(db, ended_before, allow_running=False)
            for kind, found in problems.items():
                if found:
                    failures.append(f"completing {name}: {kind}: {found}")
        parents, children = _records(db)
        statuses = [(c["trial"], c["status"], c["sweep_status"], c["steps"]) for c in children]
        if [status for _, status in parents] != ["FINISHED"]:
            failures.append(f"{name}: parents {parents}")
        if len(children) != TRIALS or len({c["trial"] for c in children}) != TRIALS:
            failures.append(f"{name}: {len(children)} child runs for {TRIALS} trials: {statuses}")
        bad = [s for s in statuses if s[1] != "FINISHED" or s[2] != "completed" or s[3] != list(range(1, EPOCHS + 1))]
        if bad:
            failures.append(f"{name}: trials not completed once with epochs 1..{EPOCHS}: {bad}")

    deadline = time.monotonic() + 30
    while _trial_workers() and time.monotonic() < deadline:  # Ray ends a dead driver's workers
        time.sleep(0.5)
    if _trial_workers():
        failures.append(f"trial workers left after every driver ended: {[p.pid for p in _trial_workers()]}")

    took = time.monotonic() - started
    print(f"chaos soak: {ROUNDS} rounds, {len(sweeps)} sweeps of {TRIALS} trials, {took:.0f} s")
    for sig_name, counts in tally.items():
        print(f"  {sig_name:8s} tried {counts['tried']:2d} ({counts['mid-trial']} mid-trial, +{counts['finished first']} finished first)  survived {counts['survived']:2d}  "
              f"lost {counts['lost']}  duplicated {counts['duplicated']}  left RUNNING {counts['running']}  epoch gaps {counts['epochs']}")
    assert not failures, f"seed {SEED}:\n" + "\n".join(failures)
