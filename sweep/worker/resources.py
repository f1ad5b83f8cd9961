"""What a warm trial worker knows about itself: memory, epoch timing, a trace for profiling.

Workers are reused between trials, so two things must be watched that a fresh process per
trial would hide: memory that creeps up trial after trial, and time spent around ``fit()``
rather than inside it. This module measures both, cheaply (a ``getrusage`` call and two
``perf_counter`` reads per epoch), and reports them beside each epoch's Keras logs:

* ``worker_peak_rss_mb``: the worker process's peak resident memory so far (``ru_maxrss``).
* ``worker_rss_mb``: its resident memory now, at the epoch's end (``/proc/self/statm``; Linux
  only). The peak only rises, so one big trial (a wide layer, a large batch) lifts it for every
  trial after it; the current figure is what shows whether a warm worker creeps.
* ``worker_gpu_peak_mb``: peak GPU memory of ``GPU:0`` (only when the worker sees a GPU).
* ``epoch_seconds``: wall time of the epoch inside ``fit()`` (train steps + validation).

They travel in Tune's result next to the Keras logs but are not listed in ``sweep_keys``, so
they are not model metrics (see ``driver.ledger.keras_metrics``): MLflow records them per epoch
under ``worker/peak_rss_mb``, ``worker/rss_mb``, ``worker/gpu_peak_mb`` and ``worker/epoch_seconds``.

Setting ``SWEEP_TRACE_DIR`` (an existing folder) makes every worker append one JSON line per
trial phase and per epoch to ``<dir>/trace-<pid>.jsonl``: trial start, data fetch, reset,
build+compile, each epoch's begin/end and the end of its report (+ checkpoint). The
benchmark (``benchmarks/peers.py --profile``) reads these; nothing else does.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time

import numpy as np
from typing import Any

import keras

TRACE_ENV = "SWEEP_TRACE_DIR"
from sweep.protocol import CURRENT_RSS_FIELD, EPOCH_SECONDS_FIELD, GPU_FIELD, RSS_FIELD


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float | None:
    """Resident set size of this process now, in MiB; None where ``/proc`` does not exist."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def gpu_peak_mb() -> float | None:
    """Peak memory TensorFlow allocated on the first GPU, in MiB; None without a GPU."""
    import tensorflow as tf

    if not tf.config.list_logical_devices("GPU"):
        return None
    try:
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / (1024 * 1024)
    except (ValueError, RuntimeError):
        return None


def memory_fields() -> dict[str, float]:
    """The worker-memory fields of a result (GPU only where there is one)."""
    fields = {RSS_FIELD: round(peak_rss_mb(), 1)}
    current = current_rss_mb()
    if current is not None:
        fields[CURRENT_RSS_FIELD] = round(current, 1)
    gpu = gpu_peak_mb()
    if gpu is not None:
        fields[GPU_FIELD] = round(gpu, 1)
    return fields


class Trace:
    """Per-trial timing on a worker; written as JSON lines only when ``SWEEP_TRACE_DIR`` is set."""

    def __init__(self, trial: str | None = None):
        folder = os.environ.get(TRACE_ENV)
        self.path = os.path.join(folder, f"trace-{os.getpid()}.jsonl") if folder else None
        if folder:
            try:  # once per trial, not per event; a timing aid never fails a trial
                os.makedirs(folder, exist_ok=True)
            except OSError:
                self.path = None
        self.trial = trial or "?"
        self.epoch_began: float | None = None
        self.last_epoch_seconds: float | None = None

    def mark(self, event: str, **fields: Any) -> None:
        """Append ``event`` with a wall-clock timestamp (no-op unless tracing)."""
        if self.path is None:
            return
        line = {"event": event, "t": time.time(), "trial": self.trial, "pid": os.getpid(), **fields}
        try:  # a timing aid never fails a trial
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(line) + "\n")
        except OSError:
            pass


class EpochTimer(keras.callbacks.Callback):
    """Times each epoch inside ``fit()``; put it just before the reporter so the time excludes reporting."""

    def __init__(self, trace: Trace, metric: str):
        super().__init__()
        self.trace, self.metric = trace, metric

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.trace.epoch_began = time.perf_counter()
        self.trace.mark("epoch_begin", epoch=epoch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        began = self.trace.epoch_began
        self.trace.last_epoch_seconds = None if began is None else time.perf_counter() - began
        value = (logs or {}).get(self.metric)
        self.trace.mark("epoch_end", epoch=epoch, value=None if value is None else float(np.asarray(value, dtype=float).ravel()[0]))


class ReportDone(keras.callbacks.Callback):
    """Marks the end of the reporter's work for an epoch; put it right after the reporter."""

    def __init__(self, trace: Trace):
        super().__init__()
        self.trace = trace

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.trace.mark("reported", epoch=epoch)


def result_fields(trace: Trace) -> dict[str, float]:
    """What each epoch's result carries about the worker (the reporter's ``extra`` hook)."""
    fields = memory_fields()
    if trace.last_epoch_seconds is not None:
        fields[EPOCH_SECONDS_FIELD] = round(trace.last_epoch_seconds, 4)
    return fields


STEPS_PER_EXECUTION_CAP = 32


def steps_per_execution(
    setting: int | str | None, batch_size: int, rows: int, cap: int = STEPS_PER_EXECUTION_CAP,
    steps_per_epoch: int | None = None, validation_steps: int | None = None,
) -> int:
    """How many train steps Keras runs per compiled call (``fit.steps_per_execution``).

    ``auto`` runs a whole epoch in one call when it has at most ``cap`` steps, else calls of
    ``cap`` steps (the last one shorter). The math is the same as one step per call (same
    batches, same order); only Python round trips are saved. Every epoch longer than ``cap``
    steps gets the same value whatever its batch size, so trials that differ only in batch
    size share one compiled model on a warm worker (``sweep.worker.reuse``); sizing the calls evenly
    (29 for 200 steps) had given each batch size its own graph for no measurable gain.
    Batch-level callbacks then run once per call, which is why the cap is not a whole epoch.

    With ``fit.steps_per_epoch`` (or ``fit.validation_steps``) an epoch (its validation) is that
    many steps, and Keras keeps that math only when each call's steps divide it (16 steps per call
    ran 16 steps of a 5-step epoch, silently training on other batches than a plain fit): ``auto``
    is then the largest divisor of both up to ``cap``.
    """
    if setting is None or setting == "auto":
        fixed = [int(count) for count in (steps_per_epoch, validation_steps) if count]
        if fixed:
            common = math.gcd(*fixed)
            return max(d for d in range(1, min(common, cap) + 1) if common % d == 0)
        steps = max(1, -(-int(rows) // max(1, int(batch_size))))
        return min(steps, cap)
    return max(1, int(setting))
