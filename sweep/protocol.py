"""The names that cross a process boundary between the trial workers and the driver.

A trial worker reports each epoch to Ray Tune as one flat dict; the driver (the ledger, the
tracker, the live view) reads those dicts back, and ends trials with a status that is written to
MLflow, ``--json`` output and the trials CSV. Both sides import the names from here, so a key or
a status is spelled once (modelled on Ray Tune's ``tune/result.py``: one constant per key, a
comment per key). Also here: how a failure reason is written and read back, and the objective's
direction (``min``/``max``), decided in one place.

This module imports nothing from ``sweep`` and nothing heavy: a worker, the driver and the
command all load it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterable, TypeVar

T = TypeVar("T")

# --- keys the reporting callback adds beside Keras' own logs (see worker.callbacks.TuneReporter)

# Comma-joined names of the Keras logs in this result (the rest of the dict is Ray's or ours).
KEYS_FIELD = "sweep_keys"
# On a trial's last epoch: ``TrialStatus.COMPLETED``, ``NAN_LOSS`` or a failure reason (format_failure).
END_FIELD = "sweep_end"
# The epoch number, 1-based; schedulers and MLflow steps use it (it survives a resume).
EPOCH_FIELD = "sweep_epoch"
# 1.0 when this epoch improved the objective (and checkpointed), else 0.0.
IMPROVED_FIELD = "sweep_improved"
# JSON list of [epoch, {name: value}] for the epochs held back before this result: not validated
# (fit.validation_freq), so not reported to Tune on their own (each result must hold the
# objective); the tracker logs their Keras logs at their own steps.
HELD_EPOCHS_FIELD = "sweep_held_epochs"
# Whether this trial trained a reused compiled model (a warm worker's cache, worker.reuse).
REUSED_FIELD = "sweep_model_reused"

# --- what a warm worker reports about itself (see worker.resources): it describes the worker,
# not the model, so it is logged under its own MLflow metric names (WORKER_METRICS).

# The worker process's peak resident memory so far, in MB.
RSS_FIELD = "worker_peak_rss_mb"
# The worker process's resident memory at the end of this epoch, in MB (Linux).
CURRENT_RSS_FIELD = "worker_rss_mb"
# The worker's peak GPU memory so far, in MB (absent without a GPU).
GPU_FIELD = "worker_gpu_peak_mb"
# Wall seconds of this epoch.
EPOCH_SECONDS_FIELD = "epoch_seconds"
# Result key -> the MLflow metric it is logged as.
WORKER_METRICS = {RSS_FIELD: "worker/peak_rss_mb", CURRENT_RSS_FIELD: "worker/rss_mb", GPU_FIELD: "worker/gpu_peak_mb", EPOCH_SECONDS_FIELD: "worker/epoch_seconds"}

# --- where a trial runs and with what (see worker.placement.trial_identity); the driver turns
# them into MLflow tags (placement.IDENTITY_TAGS).

# Ray's id of the node the trial runs on.
NODE_ID_FIELD = "sweep_node_id"
# That node's IP address.
NODE_IP_FIELD = "sweep_node_ip"
# CPUs the trial was given (resources.cpus_per_trial).
CPUS_FIELD = "sweep_cpus"
# GPUs the trial was given, possibly a fraction (resources.gpus_per_trial).
GPUS_FIELD = "sweep_gpus"
# CUDA_VISIBLE_DEVICES as the trial's worker saw it ("" without a GPU).
CUDA_DEVICES_FIELD = "sweep_cuda_visible_devices"


class TrialStatus(str, Enum):
    """Where a trial stands. The values are a public contract: they are written to MLflow tags,
    ``--json`` output and the trials CSV, and read back on resume.

    A ``str`` so that it compares equal to the plain value read back from a tag; ``__str__`` and
    ``__format__`` give that plain value on every Python version (3.11 changed what an enum mixed
    with ``str`` formats as), so f-strings, ``str()`` and ``json.dumps`` all write ``completed``.
    """

    COMPLETED = "completed"  # ran to its last epoch (or stopped itself: EarlyStopping)
    STOPPED_EARLY = "stopped_early"  # the scheduler (ASHA) stopped it
    FAILED = "failed"  # raised, or ended infeasible / out of memory / with a NaN loss
    RUNNING = "running"
    PENDING = "pending"  # not started yet (or an interrupted trial of a resumed sweep, before it runs again)
    # The sweep stopped it before it ended (Ctrl-C, SIGTERM, a storage fault, fail-fast): its
    # MLflow run ends KILLED, and ``sweep resume`` runs it again from its checkpoint in that run.
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def is_finished(self) -> bool:
        """Whether the trial ended for good (a resumed sweep does not run it again)."""
        return self in FINISHED


# The statuses of a trial that ended for good, in the order counts are shown.
FINISHED = (TrialStatus.COMPLETED, TrialStatus.STOPPED_EARLY, TrialStatus.FAILED)
# The statuses the live view and the parent run's counts always show, zero or not.
COUNTED = (TrialStatus.RUNNING, *FINISHED)


def is_finished(status: str | None) -> bool:
    """Whether a status as read back (a tag's text, possibly absent or unknown) ended for good."""
    return status in FINISHED


# END_FIELD when the loss became NaN or infinite (TerminateOnNaN-like): the trial failed.
NAN_LOSS = "nan_loss"


class FailureKind(str, Enum):
    """Why a worker ended its trial as failed on purpose, written as ``"<kind>: <detail>"`` in
    END_FIELD (``format_failure``) and read back by the driver (``failure_kind``)."""

    INFEASIBLE = "infeasible"  # the configuration cannot run here (batch larger than the data, ...)
    OUT_OF_MEMORY = "out of memory"  # it ran out of host or GPU memory

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


def format_failure(kind: FailureKind, detail: str) -> str:
    """The one-line reason a worker reports in END_FIELD (and the ledger keeps as the trial's reason)."""
    return f"{kind.value}: {detail}"


def failure_kind(reason: str | None) -> FailureKind | None:
    """The kind of a reason ``format_failure`` wrote, or None for any other reason (an exception's line)."""
    for kind in FailureKind:
        if reason and reason.startswith(f"{kind.value}: "):
            return kind
    return None


@dataclass(frozen=True)
class Objective:
    """The metric a sweep optimises and its direction: the one place that decides ``max`` vs ``min``.

    Like KerasTuner's ``Objective.better_than``: callers ask which value is better, what the
    worst value is or how to rank, instead of comparing ``mode == "max"`` themselves.
    """

    metric: str
    mode: str = "min"  # "min" or "max" (the sweep file's objective.mode)

    @property
    def maximize(self) -> bool:
        """Whether larger values are better."""
        return self.mode == "max"

    @property
    def direction(self) -> str:
        """The direction as Optuna names it (``create_study(direction=...)``)."""
        return "maximize" if self.maximize else "minimize"

    @property
    def worst(self) -> float:
        """The worst possible value (-inf for max, +inf for min): what an infeasible trial reports,
        so the search ranks its region below every feasible trial."""
        return float("-inf") if self.maximize else float("inf")

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b`` (both numbers; NaN is never better)."""
        return a > b if self.maximize else a < b

    def is_better(self, value: float | None, best: float | None) -> bool:
        """True when ``value`` beats ``best`` (None/NaN: no best yet); a missing or NaN value never does."""
        if value is None or math.isnan(value):
            return False
        if best is None or math.isnan(best):
            return True
        return self.better(value, best)

    def badness(self, value: float | None) -> float:
        """A sort key: larger is worse; no value (or NaN) is the worst of all."""
        if value is None or value != value:
            return float("inf")
        return -value if self.maximize else value

    def best_of(self, items: Iterable[T], key: Callable[[T], Any] | None = None) -> T:
        """The best of ``items`` (``max`` or ``min`` by ``key``; the first of equals). Raises on none."""
        pick = max if self.maximize else min
        return pick(items, key=key) if key is not None else pick(items)  # type: ignore[type-var]

    def best_first(self, items: Iterable[T], key: Callable[[T], Any]) -> list[T]:
        """``items`` sorted best first by ``key`` (a value, or a tuple led by one; the whole key is
        reversed for max, as ``sorted(reverse=True)`` does; equal keys keep their order)."""
        return sorted(items, key=key, reverse=self.maximize)


def trial_label(number: int | None) -> str:
    """The one trial identifier users see: ``0002`` in the live view, ``sweep best``, the report,
    the MLflow run name (``NAME-0002``) and the trial's checkpoint folder (``0002_<ray id>``);
    Ray's trial id is shown beside it where it helps."""
    return "-" if number is None else f"{int(number):04d}"
