"""What a sweep knows about its trials: one ``TrialOutcome`` per trial, kept by the ``Ledger``.

The ledger is the first Ray Tune callback on the driver. It turns Tune's stream of results into
small typed records (status, epochs, best value, checkpoint) that the tracker, the live view
and the final ``SweepResult`` all read, so no one re-derives trial state from Ray internals or
rescans files. It keeps a constant amount of data per trial (no metric histories), so driver
memory stays flat on long sweeps.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import pandas as pd
from ray import tune

from sweep.protocol import END_FIELD, EPOCH_FIELD, FINISHED, KEYS_FIELD, WORKER_METRICS, FailureKind, Objective, TrialStatus, failure_kind, trial_label


def keras_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The Keras logs of one Tune result (loss, metrics, val_*), without Ray's own keys."""
    names = str(result.get(KEYS_FIELD, "")).split(",")
    return {name: float(result[name]) for name in names if name and name in result}


def worker_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The worker's memory and epoch time in one result, under their MLflow names."""
    return {name: float(result[field]) for field, name in WORKER_METRICS.items() if result.get(field) is not None}


def epoch_of(result: dict[str, Any]) -> int:
    """The epoch a result belongs to: the reporter's own count, which a resumed trial continues
    (Tune's training_iteration restarts at 1 in a new session)."""
    epoch = result.get(EPOCH_FIELD)
    return int(epoch if epoch is not None else result.get("training_iteration", 0))


@dataclass
class TrialOutcome:
    """Everything the sweep keeps about one trial."""

    trial_id: str
    number: int
    params: dict[str, Any]
    status: str = TrialStatus.PENDING
    epochs: int = 0
    value: float | None = None  # best objective over the epochs it ran
    best_epoch: int | None = None
    last_metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None  # why it failed
    checkpoint: str | None = None  # path of its best checkpoint
    superseded: str | None = None  # the checkpoint the best one replaced, until the tracker prunes it
    node_ip: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    mlflow_run_id: str | None = None
    retries: int = 0  # restarts from its checkpoint after its worker died
    resumed_as: str | None = None  # a resumed trial: Ray's trial id in this session (its checkpoint folder's), not trial_id

    def row(self) -> dict[str, Any]:
        """One flat row for trials.csv and the DataFrame: params as ``param.<name>``."""
        data = asdict(self)
        del data["superseded"]  # the driver's bookkeeping, not a result
        data["status"] = str(self.status)  # the plain value (a TrialStatus is a str too)
        params = data.pop("params")
        last = data.pop("last_metrics")
        data.update({f"param.{k}": v for k, v in params.items()})
        data.update({f"last.{k}": v for k, v in last.items()})
        return data


@dataclass
class BestTrial:
    """The winning trial, as ``SweepResult.best`` and ``sweep best --json`` report it."""

    trial_id: str
    params: dict[str, Any]
    value: float
    epoch: int | None
    epochs: int
    checkpoint: str | None
    mlflow_run_id: str | None
    number: int | None = None  # the identifier users see: ``trial 0002``, MLflow run ``NAME-0002``
    resumed_as: str | None = None  # a resumed trial: Ray's trial id in the session that continued it


@dataclass
class SweepResult:
    """What ``sweep.run()`` returns."""

    name: str
    metric: str
    mode: str
    best: BestTrial | None
    trials: pd.DataFrame
    tracking_uri: str
    experiment: str
    parent_run_id: str | None
    storage: str
    wall_seconds: float
    stopped_because: str | None = None  # set when failure.fail_fast ended the sweep
    finish_error: str | None = None  # one line: what failed while the sweep finished (best model, registry, report...)

    def counts(self) -> dict[str, int]:
        if self.trials.empty:
            return {}
        return self.trials["status"].value_counts().to_dict()


class DriverCallback(tune.Callback):
    """A Tune callback that lives on the driver and holds threads, clients or consoles.

    Tune pickles its run config (callbacks included) into the experiment folder; those live
    objects cannot be pickled and are meaningless elsewhere, so they are left out.
    """

    transient: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self.transient}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in self.transient:
            self.__dict__.setdefault(name, None)


def creation_count(trial: Any) -> int | None:
    """Tune's 1-based count of the trials its search generator created, read from the trial's
    ``experiment_tag`` (``"3_learning_rate=0.01,..."``); None for a trial made another way."""
    head = str(getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]
    return int(head) if head.isdigit() else None


@dataclass(frozen=True)
class TrialNumbering:
    """Each trial's number (the ``0002`` users see) from the order Tune created it, so the ledger
    and Tune's ``trial_dirname_creator`` (which names the trial's checkpoint folder before the
    ledger ever sees the trial) give the same number without sharing state.

    A resumed sweep's interrupted trials keep their numbers (``resumed``: Ray trial id of the
    earlier session -> number); they are created first, and the new trials count on from
    ``prior``, the number of trials of the earlier sessions.
    """

    prior: int = 0
    resumed: Mapping[str, int] = field(default_factory=dict)

    def number(self, trial: Any) -> int | None:
        """The trial's number, or None when Tune did not say in which order it created it."""
        config = getattr(trial, "config", None) or {}
        earlier = config.get("_resume_trial_id")
        if earlier in self.resumed:
            return self.resumed[earlier]
        count = creation_count(trial)
        return None if count is None else self.prior + count - 1 - len(self.resumed)

    def dirname(self, trial: Any) -> str:
        """Tune's ``trial_dirname_creator``: ``0002_<ray trial id>`` (unique, and sorts by number)."""
        number = self.number(trial)
        return f"{trial_label(number)}_{trial.trial_id}" if number is not None else f"trial_{trial.trial_id}"


class Ledger(DriverCallback):
    """Keeps one ``TrialOutcome`` per trial as Tune reports on it (driver side, cheap)."""

    def __init__(self, metric: str, mode: str, hyperparameters: Any, max_epochs: int):
        self.metric, self.mode, self.max_epochs = metric, mode, max_epochs
        self._hyperparameters = hyperparameters  # config dict -> hp dict (space.hyperparameters)
        self.outcomes: dict[str, TrialOutcome] = {}
        self.started = time.time()
        self.best: TrialOutcome | None = None
        self.prior_ended = 0  # trials that ended in an earlier session of a resumed sweep
        self.first_error: str | None = None  # traceback tail of the first trial that failed before any epoch
        self.numbering = TrialNumbering()  # a resumed sweep's: set by seed()
        self.storage_root = ""  # --storage as Tune was given it: a URI's query travels with each checkpoint location

    @property
    def objective(self) -> Objective:
        """The sweep's objective: which of two values is better."""
        return Objective(self.metric, self.mode)

    # -- Tune callback hooks --------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        outcome = self.outcome(trial)
        outcome.status, outcome.started_at = TrialStatus.RUNNING, outcome.started_at or time.time()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        outcome = self.outcome(trial)
        outcome.status = TrialStatus.RUNNING
        outcome.epochs = epoch_of(result)
        outcome.last_metrics = keras_metrics(result) or outcome.last_metrics  # a final infeasible report has none
        outcome.node_ip = result.get("node_ip", outcome.node_ip)
        value = outcome.last_metrics.get(self.metric)
        if value is not None and self.objective.is_better(value, outcome.value):
            outcome.value, outcome.best_epoch = value, outcome.epochs
            if self.best is None or self.objective.is_better(value, self.best.value):
                self.best = outcome
        end = result.get(END_FIELD)
        if end and end != TrialStatus.COMPLETED:
            from sweep.tracking.client import redact_text

            outcome.reason = redact_text(str(end))  # a trial's own reason (out of memory: ...) may quote a URI too

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        """Trials checkpoint only on improvement, so the newest checkpoint is the best one and
        the one it supersedes can go. It goes through the tracker, after MLflow names the new
        one (``MLflowTracker.on_checkpoint``): a driver killed in between leaves MLflow naming a
        checkpoint that still exists, which is what ``sweep resume`` continues from."""
        from sweep.worker import storage

        outcome = self.outcome(trial)
        previous, outcome.checkpoint = outcome.checkpoint, storage.checkpoint_location(checkpoint, self.storage_root)
        if previous and previous != outcome.checkpoint:
            outcome.superseded = previous

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        outcome = self.outcome(trial)
        end = (trial.last_result or {}).get(END_FIELD)
        if end == TrialStatus.COMPLETED:
            outcome.status = TrialStatus.COMPLETED
        elif end:
            from sweep.tracking.client import redact_text

            outcome.status, outcome.reason = TrialStatus.FAILED, redact_text(str(end))
        else:
            outcome.status = TrialStatus.STOPPED_EARLY
        if outcome.status != TrialStatus.FAILED:  # a retried trial that ended well: its retry's error is not its reason
            outcome.reason = None  # (kept as sweep.retry_reason); it read "completed (same error as trial 0000)"
        outcome.ended_at = time.time()

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Its worker died and Tune restarts it from its latest checkpoint (``failure.max_retries``)."""
        outcome = self.outcome(trial)
        outcome.retries += 1
        outcome.reason = error_summary(trial)
        if _storage_fault(trial, self.storage_root):  # a full or read-only storage fails the retry too: the sweep halts now (resumable), not after max_retries
            outcome.reason = _storage_fault_reason(trial, self.storage_root) or outcome.reason
            self.infrastructure_fault = self.infrastructure_fault or outcome.reason

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        outcome = self.outcome(trial)
        outcome.status, outcome.ended_at = TrialStatus.FAILED, time.time()
        outcome.reason = error_summary(trial)
        if _storage_fault(trial, self.storage_root):  # the storage failed, not the trial: it runs again on resume
            outcome.status = TrialStatus.INTERRUPTED
            outcome.reason = _storage_fault_reason(trial, self.storage_root) or outcome.reason
            self.infrastructure_fault = self.infrastructure_fault or outcome.reason
            return
        if self.first_error is None and outcome.epochs == 0:
            self.first_error = traceback_tail(trial)
        self._forget_lost_checkpoint(outcome)

    def _forget_lost_checkpoint(self, outcome: TrialOutcome) -> None:
        """A trial that failed because its checkpoint is gone (deleted before a resume) cannot be
        the sweep's best model: the best becomes the best trial whose checkpoint is there."""
        from sweep.worker import storage

        local = storage.local_path(outcome.checkpoint) if outcome.checkpoint else None
        if local is None or local.exists():
            return
        outcome.checkpoint = None
        if self.best is outcome:
            kept = [o for o in self.outcomes.values() if o.value is not None and o.checkpoint]
            self.best = None
            for other in kept:
                if self.best is None or self.objective.is_better(other.value, self.best.value):
                    self.best = other

    infrastructure_fault: str | None = None  # set when a trial failed because the storage did

    def interrupt_open_trials(self) -> list[TrialOutcome]:
        """The sweep stops before these trials ended: mark them interrupted (and return them)."""
        stopped = [o for o in self.outcomes.values() if o.status == TrialStatus.RUNNING]
        for outcome in stopped:
            outcome.status, outcome.ended_at = TrialStatus.INTERRUPTED, time.time()
        return stopped

    # -- queries -----------------------------------------------------------------------------
    def outcome(self, trial: Any) -> TrialOutcome:
        """The trial's record; a resumed trial keeps the identity it had before the crash."""
        key = trial.config.get("_resume_trial_id") or trial.trial_id
        outcome = self.outcomes.get(key)
        if outcome is None:
            number = self.numbering.number(trial)
            outcome = TrialOutcome(
                trial_id=key,
                number=len(self.outcomes) if number is None else number,
                params=self._hyperparameters(trial.config),
            )
            self.outcomes[key] = outcome
        if key != trial.trial_id:
            outcome.resumed_as = trial.trial_id
        return outcome

    def seed(self, priors: list[Any]) -> None:
        """Take in the trials of an earlier session (``recovery.PriorTrial``) before Tune starts."""
        for prior in priors:
            ended = prior.status in FINISHED
            outcome = TrialOutcome(
                trial_id=prior.trial_id,
                number=prior.number,
                params=prior.params,
                status=prior.status if ended else TrialStatus.PENDING,
                epochs=prior.epochs,
                value=prior.value,
                best_epoch=prior.best_epoch,
                reason=prior.reason if ended else None,  # an interrupted trial runs again: not an error of its own
                checkpoint=prior.checkpoint,
                mlflow_run_id=prior.run_id,
                ended_at=time.time() if ended else None,
            )
            self.outcomes[prior.trial_id] = outcome
            self.prior_ended += int(ended)
            if outcome.value is not None and (self.best is None or self.objective.is_better(outcome.value, self.best.value)):
                self.best = outcome
        resumed = {o.trial_id: o.number for o in self.outcomes.values() if o.status == TrialStatus.PENDING}
        self.numbering = TrialNumbering(prior=len(self.outcomes), resumed=resumed)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes.values() if o.status == status)

    def frame(self) -> pd.DataFrame:
        rows = [o.row() for o in sorted(self.outcomes.values(), key=lambda o: o.number)]
        return pd.DataFrame(rows)

    def best_trial(self) -> BestTrial | None:
        best = self.best
        if best is None or best.value is None:
            return None
        return BestTrial(
            trial_id=best.trial_id,
            params=best.params,
            value=best.value,
            epoch=best.best_epoch,
            epochs=best.epochs,
            checkpoint=best.checkpoint,
            mlflow_run_id=best.mlflow_run_id,
            number=best.number,
            resumed_as=best.resumed_as,
        )


def _storage_fault_reason(trial: Any, storage_root: str = "") -> str | None:
    from sweep.driver import retries

    return retries.storage_fault_reason(retries.LAST_ERRORS.get(trial.trial_id), storage_root)


def _storage_fault(trial: Any, storage_root: str = "") -> bool:
    """Whether the trial's latest error was the storage failing (read-only, full, I/O error, its folder deleted)."""
    from sweep.driver import retries

    return retries.is_storage_fault(retries.LAST_ERRORS.get(trial.trial_id), storage_root)


class FailFast(tune.Stopper):
    """Stops a sweep whose first trials all fail the same way before reporting one epoch.

    A broken model factory or data that does not fit the model fails every trial identically;
    running the whole budget would only print the same traceback again and again.
    """

    def __init__(self, ledger: Ledger, limit: int):
        self.ledger, self.limit = ledger, limit
        self.error: str | None = None  # latched: trials Tune stops afterwards do not undo it
        self.settled = False  # some trial finished an epoch: never trips, never scans again
        self.halt: str | None = None  # why the whole sweep stops now (a signal, a storage fault)

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        if self.halt is None and self.ledger.infrastructure_fault:
            self.halt = f"storage fault: {self.ledger.infrastructure_fault}"
        return self.halt is not None or self.tripped() is not None

    def tripped(self) -> str | None:
        """The shared error line once ``limit`` trials failed with it and none got an epoch in."""
        if self.error is not None or self.limit <= 0 or self.settled:
            return self.error
        outcomes = self.ledger.outcomes.values()
        if any(o.epochs > 0 for o in outcomes):
            self.settled = True  # an epoch got in: this sweep can no longer trip (Tune asks every step)
            return None
        reasons = [o.reason for o in outcomes if o.status == TrialStatus.FAILED and not _hyperparameter_specific(o.reason)]
        if len(reasons) >= self.limit and len({_without_numbers(reason) for reason in reasons}) == 1:
            self.error = reasons[0]
        return self.error


def _without_numbers(reason: str | None) -> str:
    """An error line with its numbers masked: "lr=0.05 too high" and "lr=0.03 too high" are the
    same failure (a factory quoting the trial's hyperparameters), which fail-fast must see."""
    return re.sub(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?", "#", reason or "")


def _hyperparameter_specific(reason: str | None) -> bool:
    """Failures caused by one configuration (infeasible batch size, out of memory), not by the sweep."""
    return bool(reason) and (
        failure_kind(reason) in (FailureKind.INFEASIBLE, FailureKind.OUT_OF_MEMORY)
        or any(kind in reason for kind in ("InfeasibleTrial", "ResourceExhaustedError", "OutOfMemoryError"))
    )


def _error_text(trial: Any) -> str:
    """The failed trial's error text, every URI in it masked (a callback's error quoting
    ``https://user:password@host/?token=...`` reached the terminal, MLflow's ``sweep.reason``
    and trials.csv in clear)."""
    from sweep.tracking.client import redact_text

    return redact_text(_raw_error_text(trial))


def _raw_error_text(trial: Any) -> str:
    """Tune writes the error to the trial's local folder first and syncs it to storage later,
    so ``get_error()`` (which reads storage) can come back empty while ``on_trial_error`` runs;
    the local file is read first."""
    try:
        local = trial.error_file  # None when the trial has no local folder (it ran elsewhere)
        if local and os.path.isfile(local):
            with open(local, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
            if text.strip():
                return text
    except Exception:  # an unreadable file: try storage below
        pass
    text = ""
    try:
        text = trial.get_error() or ""
    except Exception:  # the error file may be gone on remote storage; fall back below
        pass
    return text or str(getattr(trial, "error_msg", "") or "")


ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")
EXECUTOR_HEADER = "ray::TrialExecutor."  # Ray's header above the traceback of a trial run on a warm executor


def traceback_tail(trial: Any, lines: int = 10) -> str:
    """The end of the failed trial's own traceback: its root cause, without Ray's frames.

    Ray chains the user's exception under its own wrappers; the first exception of the chain
    is where the user's code failed, so that part is shown, minus Ray frames and caret lines.
    """
    text = ANSI_CODES.sub("", _error_text(trial)).strip()  # Ray colours its actor headers even in a log
    root = re.split(r"\n\s*(?:The above exception was the direct cause|During handling of the above exception)[^\n]*\n", text)[0]
    executor = root.rfind(EXECUTOR_HEADER)
    if executor >= 0:  # a trial on a warm executor: the trainable's own frames, then the trial's under Ray's header
        root = root[root.find("\n", executor) + 1:]
    kept: list[str] = []
    skip_code = False
    for line in root.splitlines():
        stripped = line.strip()
        if stripped.startswith("File ") and "/ray/" in stripped:
            skip_code = True  # a Ray frame: drop it and the source line under it
            continue
        if not stripped or set(stripped) <= set("^~ ") or (skip_code and not stripped.startswith("File ")):
            skip_code = skip_code and bool(stripped) and set(stripped) <= set("^~ ")
            continue
        skip_code = False
        if not stripped.startswith(("Failure # ", "ray::")):
            kept.append(line.rstrip())
    return "\n".join(kept[-lines:])


def error_summary(trial: Any) -> str:
    """The last meaningful line of a failed trial's traceback (e.g. ``ValueError: ...``)."""
    text = _error_text(trial)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(_TF_FRAMING):  # TensorFlow's node names ("[[{{node compile_loss/...}}]]"): the cause is above them
            continue
        if not line.startswith(("File ", "^", "~")) and ("Error" in line or "Exception" in line or ":" in line):
            return _strip_ray_prefix(line)[:500]
    return lines[-1][:500] if lines else "unknown error"


_TF_FRAMING = ("[[", "{{", "[Op:", "Detected at node", "Stack trace for op definition")


def _strip_ray_prefix(line: str) -> str:
    """The line without Ray's wrapper, and without this package's own error class: an
    ``InputError`` reads ``model.builder: expected ...`` as at start-up."""
    for prefix in ("ray.exceptions.RayTaskError", "ray::"):
        if line.startswith(prefix) and ": " in line:
            line = line.split(": ", 1)[1]
    return line.removeprefix("sweep.errors.InputError: ")
