"""Warm trial executors: TensorFlow-loaded worker processes that outlive one ``Tuner.fit``.

Tune starts its trial actors with ``Tuner.fit`` and kills them when it returns, so every sweep
used to pay a new process and TensorFlow's import (~3 s on 2 cores) before its first epoch, a
second sweep in the same Python process (a notebook, a refine loop) included. Ray has no public
way to keep those processes, so on a sweep's own local Ray the sweep keeps its own:

- a :class:`TrialExecutor` is a Ray actor with no CPU of its own that imports TensorFlow as
  soon as Ray is up (while the driver's preflight runs) and then runs trials, one at a time,
  keeping its :data:`~sweep.worker.state.STATE` (data, pipelines, compiled models) from one
  sweep to the next in this driver;
- Tune's trainable stays the trial's owner and holds the trial's CPUs: it claims a free
  executor (:func:`run_on_executor`), starts the trial there and hands each epoch's result to
  Tune as it comes, in lockstep (the executor waits for Tune to take each result, as
  ``tune.report`` makes a trial wait), so schedulers stop trials at the same epochs;
- a trial that finds no free executor runs in the trainable's own process, as before.

The trial's code is the same in both places: it reports through :mod:`sweep.worker.reporting`.
Which sweeps use executors, and how many, is the driver's choice (:mod:`sweep.driver.session`).
"""

from __future__ import annotations

import os
import queue
import threading
import uuid
from typing import Any

STOP_TIMEOUT_S = 30.0  # a stopped trial ends at its next report; an epoch on a busy worker can take this long
POLL_S = 10.0  # each wait for the executor's next event; the trainable asks again until the trial ends
UNCLAIMED_ACK_S = 600.0  # a result nobody takes for this long ends the trial
OWNER_CHECK_S = 2.0  # while a result waits to be taken, how often the executor checks its trainable is alive

# events from the trial thread to the trainable
RESULT, DONE, FAILED = "result", "done", "failed"


class TrialExecutor:
    """One warm trial worker (a Ray actor with ``num_cpus=0``; the claiming trainable holds the
    trial's CPUs). Methods run in threads (``max_concurrency``): the trial runs in its own."""

    def __init__(self, cpus_per_trial: float = 1) -> None:
        # the threads a Tune trial actor with these CPUs gets from Ray (this actor has none),
        # set before TensorFlow loads its math libraries
        os.environ["OMP_NUM_THREADS"] = str(max(1, int(cpus_per_trial)))
        self._lock = threading.Lock()
        self._owner: str | None = None
        self._thread: threading.Thread | None = None
        self._events: queue.Queue = queue.Queue()
        self._taken = threading.Semaphore(0)  # released when Tune took the last result
        self._stopping = threading.Event()

    def warm_up(self, after: Any = None) -> int:
        """Import Keras and TensorFlow now, so the first trial here does not wait for them; the
        pid. ``after``: another executor's ``warm_up`` result, which Ray resolves first (see
        :func:`sweep.driver.session.start_warm_executors`)."""
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras  # noqa: F401

        return os.getpid()

    def claim(self, owner: str) -> bool:
        """Reserve this executor for ``owner``'s trial; False when another trial has it."""
        with self._lock:
            if self._owner is not None or (self._thread is not None and self._thread.is_alive()):
                return False
            self._owner = owner
            return True

    def start(
        self, owner: str, refs: list[Any], hp: dict[str, Any], code: Any, fingerprint: str, checkpoint: Any, trial_id: str | None,
        workdir: str | None = None,
    ) -> None:
        """Begin ``owner``'s trial in a thread of its own (see :func:`run_on_executor`).

        ``refs`` is ``[the sweep's parts ObjectRef, an object the trainable owns]``, nested so
        Ray hands the references over, not their values: the second one becomes unreadable
        when the trainable's process dies, which is how the trial here learns it was orphaned.
        ``workdir``: the trainable's working directory (Tune puts it in the trial's folder), where
        the trial runs too, so a user's callback writing ``log.csv`` writes it where it did.
        """
        self._check_owner(owner)
        self._events = queue.Queue()
        self._taken = threading.Semaphore(0)
        self._stopping.clear()
        parts_ref, alive = refs
        channel = _ExecutorChannel(self, checkpoint, trial_id, alive)
        self._thread = threading.Thread(target=self._run, args=(channel, hp, parts_ref, code, fingerprint, workdir), name="sweep-trial", daemon=True)
        self._thread.start()

    def next(self, owner: str, took_last: bool, timeout_s: float = POLL_S) -> tuple[str, Any, Any] | None:
        """The trial's next event, ``(RESULT, metrics, checkpoint folder or None)`` or
        ``(DONE, None, None)``; None when none came within ``timeout_s``. ``took_last``: Tune
        took the previous result, so the trial may go on. A trial that raised raises here."""
        self._check_owner(owner)
        if took_last:
            self._taken.release()
        try:
            kind, first, second = self._events.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if kind == FAILED:
            raise first
        return kind, first, second

    def stop(self, owner: str, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """End ``owner``'s trial (at its next report) and free the executor; True once it ended."""
        if self._owner != owner:
            return True
        return self.abort(timeout_s)

    def abort(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """End whatever trial runs here, whoever claimed it (the driver, between sweeps, for a
        trial whose trainable was killed), and free the executor; True once nothing runs."""
        self._stopping.set()
        self._taken.release()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        ended = thread is None or not thread.is_alive()
        if ended:
            with self._lock:
                self._owner = None
        return ended

    def _check_owner(self, owner: str) -> None:
        if self._owner != owner:
            raise RuntimeError("this trial lost its warm executor (another sweep's driver reclaimed it)")

    def _run(self, channel: "_ExecutorChannel", hp: dict[str, Any], parts_ref: Any, code: Any, fingerprint: str, workdir: str | None) -> None:
        from sweep.worker import reporting
        from sweep.worker.trainable import run_sweep_trial

        reporting.use_channel(channel)
        home = _working_directory()
        try:
            if workdir and os.path.isdir(workdir):
                os.chdir(workdir)  # one trial at a time in this process

            run_sweep_trial(hp, parts_ref, code, fingerprint)
            self._events.put((DONE, None, None))
        except reporting.TrialStopped:
            self._events.put((DONE, None, None))
        except BaseException as exc:  # handed to the trainable, which raises it to Tune
            self._events.put((FAILED, exc, None))
        finally:
            reporting.use_channel(None)
            if home is not None:
                os.chdir(home)
            if channel.orphaned:  # nobody will stop or free it: free for the next trial
                with self._lock:
                    self._owner = None


def _working_directory() -> str | None:
    """This process's working directory, or None when it was deleted under it."""
    try:
        return os.getcwd()
    except OSError:
        return None


class _ExecutorChannel:
    """The trial's :class:`~sweep.worker.reporting.Channel` on an executor: each result goes to
    the trainable, and the trial waits until Tune took it (or stopped the trial)."""

    def __init__(self, executor: TrialExecutor, checkpoint: Any, trial_id: str | None, alive: Any):
        self._executor, self._checkpoint, self._trial_id, self._alive = executor, checkpoint, trial_id, alive
        self.orphaned = False  # its trainable died: the trial ended here without being told

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        """Hand the result over, then wait until Tune took it; a stop, the trainable's death or
        :data:`UNCLAIMED_ACK_S` without an answer end the trial (``TrialStopped``)."""
        import time

        from sweep.worker.reporting import TrialStopped

        executor = self._executor
        if executor._stopping.is_set():
            raise TrialStopped()
        executor._events.put((RESULT, metrics, checkpoint_dir))
        deadline = time.monotonic() + UNCLAIMED_ACK_S
        while not executor._taken.acquire(timeout=OWNER_CHECK_S):
            if executor._stopping.is_set():
                break
            if not owner_alive(self._alive) or time.monotonic() > deadline:
                self.orphaned = True
                break
        if executor._stopping.is_set() or self.orphaned:
            raise TrialStopped()

    def get_checkpoint(self) -> Any:
        return self._checkpoint

    def trial_id(self) -> str | None:
        return self._trial_id


def run_on_executor(executors: tuple[Any, ...], hp: dict[str, Any], parts_ref: Any, code: Any, fingerprint: str) -> bool:
    """In Tune's trainable: run this trial on a free warm executor, handing each result to
    Tune; False (nothing ran) when none is free or reachable, and the caller runs it here.

    Raises what the trial raised, and Ray's ``RayActorError`` when the executor died under it
    (a lost worker: ``failure.max_retries`` retries it). When Tune stops the trial, its
    ``tune.report`` raises; the executor is told to stop before that goes on.
    """
    import ray
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    owner = f"{trial_id}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    executor = _claim(executors, owner)
    if executor is None:
        return False
    try:
        refs = [parts_ref, ray.put(owner)]  # see TrialExecutor.start
        ray.get(executor.start.remote(owner, refs, hp, code, fingerprint, tune.get_checkpoint(), trial_id, os.getcwd()))
        took_last = False
        while True:
            event = ray.get(executor.next.remote(owner, took_last))
            took_last = False
            if event is None:
                continue
            kind, metrics, folder = event
            if kind == DONE:
                return True
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder) if folder else None)
            took_last = True
    finally:
        try:
            ray.get(executor.stop.remote(owner), timeout=STOP_TIMEOUT_S + 5)
        except Exception:  # a dead executor: the error above (if any) says so
            pass


def owner_alive(owned: Any) -> bool:
    """Whether the process that owns the object ``owned`` (a trainable) is still alive."""
    import ray
    from ray.exceptions import GetTimeoutError

    try:
        ray.get(owned, timeout=OWNER_CHECK_S)
        return True
    except GetTimeoutError:  # slow to answer is not dead
        return True
    except Exception:  # OwnerDiedError, ObjectLostError: its owner is gone
        return False


def _claim(executors: tuple[Any, ...], owner: str) -> Any | None:
    """The first executor that accepts ``owner``'s claim, or None."""
    import ray

    for executor in executors:
        try:
            if ray.get(executor.claim.remote(owner), timeout=STOP_TIMEOUT_S):
                return executor
        except Exception:  # dead or unreachable: try the next one
            continue
    return None
