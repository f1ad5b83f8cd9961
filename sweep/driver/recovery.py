"""Continuing a sweep whose driver died: what MLflow knows decides what runs again.

MLflow is the record users trust, so it is also the record a resume starts from (not Ray's
experiment snapshot, which lags the last results and re-runs or duplicates trials):

* trials whose child run ended (completed / stopped_early / failed) are kept as they are and
  handed to Optuna as history, so the search continues from what it learned;
* trials whose child run is still RUNNING were interrupted: they run again with the same
  hyperparameters, from their last checkpoint, in the same child run, and epochs already in
  MLflow are not logged a second time;
* the remaining budget is ``search.trials`` minus what already ended.

A small lock file next to the sweep's checkpoints tells a live driver from a dead one.
"""

from __future__ import annotations

import contextlib

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.spec.config import SweepConfig
from sweep.tracking.store import int_or_none
from sweep.protocol import Objective, TrialStatus, is_finished
from sweep.tracking.tags import (
    BEST_EPOCH_TAG, BEST_VALUE_TAG, CHECKPOINT_TAG, EPOCHS_TAG, FINISH_ERROR_TAG, REASON_TAG, STATUS_TAG, TRIAL_NUMBER_TAG, TRIAL_TAG,
)

LOCK_FILE = "driver.json"


@dataclass
class PriorTrial:
    """A trial of the earlier session, as its MLflow child run records it."""

    trial_id: str
    run_id: str
    number: int
    params: dict[str, Any]
    status: str
    value: float | None  # best objective over its epochs
    last_value: float | None  # objective at its last epoch (what Optuna was told)
    epochs: int
    best_epoch: int | None
    checkpoint: str | None
    reason: str | None
    last_step: int  # highest epoch already logged
    curve: dict[int, float] = field(default_factory=dict)  # the objective by epoch, as logged


@dataclass
class ResumeState:
    """Everything ``runner.execute`` needs to continue instead of starting over."""

    parent_run_id: str
    ended: list[PriorTrial] = field(default_factory=list)
    interrupted: list[PriorTrial] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return len(self.interrupted)

    def curves(self) -> list[dict[int, float]]:
        """Every earlier trial's objective by epoch: what the scheduler's rungs had recorded."""
        return [t.curve for t in (*self.ended, *self.interrupted) if t.curve]

    def resume_configs(self) -> list[dict[str, Any]]:
        """Trial configs for the interrupted trials: their params plus private resume keys."""
        return [
            {**t.params, "_resume_trial_id": t.trial_id, "_resume_run_id": t.run_id, "_resume_from": t.checkpoint}
            for t in self.interrupted
        ]


RESUMABLE = ("RUNNING", "SCHEDULED", "KILLED")  # its driver died, or was interrupted (Ctrl-C)


def unfinished_parent(uri: str, name: str) -> Any | None:
    """The newest parent run of ``name`` if its driver died or was interrupted, else None.

    A sweep that ran to its end is never "unfinished", whatever its status: FINISHED, or FAILED
    (no trial produced a result, ``failure.fail_fast`` stopped it, or finishing it failed, which
    its ``sweep.finish_error`` tag says); the next ``sweep run`` of its file starts a new sweep.
    """
    from sweep.tracking.store import find_parent_run

    parent = find_parent_run(uri, name)
    if parent is None or parent.info.status not in RESUMABLE:
        return None
    if parent.info.status != "KILLED" and parent.data.tags.get(FINISH_ERROR_TAG):
        return None  # it ended, but could not even be closed (the store went away at the very end)
    return parent


def load_state(uri: str, parent: Any, config: SweepConfig) -> ResumeState:
    """Read the earlier session's child runs and sort them into ended and interrupted."""
    from sweep.search import space
    from sweep.tracking.client import client as mlflow_client
    from sweep.tracking.store import child_runs

    client = mlflow_client(uri)
    metric = config.objective.metric
    state = ResumeState(parent_run_id=parent.info.run_id)
    for run in child_runs(uri, parent):
        tags = run.data.tags
        params, _ = space.typed_params(config.search, dict(run.data.params))
        history = client.get_metric_history(run.info.run_id, metric)
        values = {m.step: m.value for m in history}
        last_step = max(values, default=0)
        status = tags.get(STATUS_TAG, "running")
        best_text = tags.get(BEST_VALUE_TAG)
        best = float(best_text) if best_text else _best(values, config.objective.mode)
        prior = PriorTrial(
            trial_id=tags.get(TRIAL_TAG, run.info.run_id),
            run_id=run.info.run_id,
            number=int(tags.get(TRIAL_NUMBER_TAG, 0)),
            params=params,
            status=status,
            value=best,
            last_value=values.get(last_step),
            epochs=int(tags.get(EPOCHS_TAG, last_step) or last_step),
            best_epoch=int_or_none(tags.get(BEST_EPOCH_TAG)) or _step_of(values, best),
            checkpoint=tags.get(CHECKPOINT_TAG),
            reason=tags.get(REASON_TAG),
            last_step=last_step,
            curve=values,
        )
        if is_finished(status) and run.info.status == "RUNNING":
            _repair_end(client, run.info.run_id, status)
        (state.ended if is_finished(status) else state.interrupted).append(prior)
    state.ended.sort(key=lambda t: t.number)
    state.interrupted.sort(key=lambda t: t.number)
    return state


def _repair_end(client: Any, run_id: str, status: str) -> None:
    """A run whose end tags landed but whose end did not (the driver died between the two
    writes): end it as the tags say, so no run stays RUNNING forever."""
    try:
        client.set_terminated(run_id, "FAILED" if status == TrialStatus.FAILED else "FINISHED")
    except Exception:  # the resume still works; the next resume tries again
        pass


def optuna_history(config: SweepConfig, state: ResumeState) -> list[Any]:
    """Ended trials as Optuna records, valued as Ray's OptunaSearch would have valued them."""
    from sweep.search import space

    return [
        space.frozen_trial(config.search, t.params, t.last_value, failed=t.status == TrialStatus.FAILED)
        for t in state.ended
        if t.params
    ]


def _step_of(values: dict[int, float], value: float | None) -> int | None:
    """The first epoch that reached ``value``: an interrupted trial's best epoch (its tag is
    written when the trial ends; a trial resumed after its last epoch had it as None, and its
    best_<metric> was logged again at step 0)."""
    return next((step for step, seen in sorted(values.items()) if seen == value), None) if value is not None else None


def _best(values: dict[int, float], mode: str) -> float | None:
    finite = [v for v in values.values() if v == v]
    if not finite:
        return None
    return Objective("", mode).best_of(finite)


# ---------------------------------------------------------------------------------------------
# the driver lock


def lock_path(storage_dir: str) -> Path:
    return Path(storage_dir) / LOCK_FILE


def live_driver(storage_dir: str) -> dict[str, Any] | None:
    """The lock's content if a driver on this host still holds it, else None."""
    path = lock_path(storage_dir)
    if "://" in storage_dir or not path.exists():
        return None
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if holder.get("host") != socket.gethostname():
        return holder  # another machine: assume alive, the user decides
    try:
        os.kill(int(holder["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    started = holder.get("started")
    if started is not None and process_start(int(holder["pid"])) not in (None, started):
        return None  # the pid was given to another process since (a reboot, pid wrap-around): its driver is gone
    return holder if int(holder["pid"]) != os.getpid() else None


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22), None where
    it cannot be read: with the pid, it names one process, not whichever process reuses the pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])  # the fields after "(comm) ": state is the 3rd field, starttime the 22nd
    except (OSError, ValueError, IndexError):
        return None


def take_lock(storage_dir: str) -> None:
    """Write this driver's lock; :class:`SweepRunning` when a live driver holds it (the same
    sweep started twice: both ran every trial into one folder and MLflow got each trial twice),
    :class:`StorageNotWritable` (one line) when the folder cannot be made or written (below a
    file, read-only, /proc...). The lock is created with O_EXCL, so of two drivers starting at
    once one wins; a lock whose process is gone is taken over."""
    if "://" in storage_dir:
        return
    path = lock_path(storage_dir)
    mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": process_start(os.getpid())})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "w") as out:
                    out.write(mine)
                return
            except FileExistsError:
                holder = live_driver(storage_dir)
                if holder is not None:
                    raise SweepRunning(holder) from None
                path.unlink(missing_ok=True)  # a dead driver's (or this process's earlier) lock
        path.write_text(mine)
    except OSError as exc:
        if isinstance(exc, SweepRunning):
            raise
        raise StorageNotWritable(f"expected a writable folder, got {Path(storage_dir).parent} ({exc.strerror or type(exc).__name__})") from None


class StorageNotWritable(OSError):
    """The sweep's storage folder cannot be created or written."""


class SweepRunning(OSError):
    """A live driver holds the sweep's lock: ``holder`` is its lock (pid, host)."""

    def __init__(self, holder: dict[str, Any]):
        self.holder = holder
        super().__init__(f"pid {holder.get('pid')} on {holder.get('host')}")


def release_lock(storage_dir: str) -> None:
    """Remove this driver's lock. Where the storage cannot be written any more (it went
    read-only or full: the storage fault that stopped the sweep), the lock stays: it names this
    process, and :func:`live_driver` ignores a lock whose process is gone, so the next ``sweep
    resume`` takes it over. Not a problem worth a failed finish (rel-02)."""
    if "://" not in storage_dir:
        with contextlib.suppress(OSError):
            lock_path(storage_dir).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# handing the interrupted trials out first


def resuming_searcher(inner: Any, configs: list[dict[str, Any]]) -> Any:
    """Wrap a Tune searcher so the interrupted trials' configs are suggested before new ones.

    Those trials were already suggested (and counted) by Optuna in the earlier session, so
    their results are not reported to it again.
    """
    from ray.tune.search import Searcher

    class ResumingSearcher(Searcher):
        def __init__(self) -> None:
            super().__init__(metric=inner.metric, mode=inner.mode)
            self.inner, self.pending, self.resumed = inner, list(configs), set()

        def set_search_properties(self, metric: Any, mode: Any, config: dict, **spec: Any) -> bool:
            return self.inner.set_search_properties(metric, mode, config, **spec)

        def suggest(self, trial_id: str) -> dict | None:
            if self.pending:
                self.resumed.add(trial_id)
                return self.pending.pop(0)
            return self.inner.suggest(trial_id)

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            if trial_id not in self.resumed:
                self.inner.on_trial_result(trial_id, result)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if trial_id not in self.resumed:
                self.inner.on_trial_complete(trial_id, result=result, error=error)

        def save(self, checkpoint_path: str) -> None:
            self.inner.save(checkpoint_path)

        def restore(self, checkpoint_path: str) -> None:
            self.inner.restore(checkpoint_path)

    return ResumingSearcher()
