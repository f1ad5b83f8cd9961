"""Which trial errors ``failure.max_retries`` retries: lost workers and infrastructure only.

Runs in the driver. Tune's ``FailureConfig(max_failures=N)`` retries every trial error;
:func:`install_retry_policy` patches Tune's ``Trial.handle_error`` so a deterministic error in
the user's code (it would fail the same way again) ends the trial at once, and keeps each
trial's latest error (:data:`LAST_ERRORS`) for the ledger to tell a storage fault from the rest.
Nothing here runs on a worker: the errors are classified as they reach the driver.
"""

from __future__ import annotations

from typing import Any

# errno values that say "the storage or the machine failed", not "this trial's code is wrong"
INFRA_ERRNOS = frozenset({5, 28, 30, 116, 122, 110, 111, 112, 113, 104})  # EIO ENOSPC EROFS ESTALE EDQUOT ETIMEDOUT ECONNREFUSED EHOSTDOWN EHOSTUNREACH ECONNRESET
STORAGE_ERRNOS = frozenset({5, 28, 30, 116, 122})  # EIO ENOSPC EROFS ESTALE EDQUOT


def error_cause(exc: BaseException | None) -> BaseException | None:
    """The user-side exception inside Ray's wrappers (``RayTaskError.cause``), else ``exc``."""
    seen = 0
    while exc is not None and seen < 5:
        cause = getattr(exc, "cause", None)
        if cause is None or cause is exc:
            return exc
        exc, seen = cause, seen + 1
    return exc


def is_worker_loss(exc: BaseException | None) -> bool:
    """The trial's worker or node died (killed, OOM-killed, node lost): worth a retry."""
    try:
        import ray.exceptions as rex
    except ImportError:  # pragma: no cover - Ray is a dependency
        return False
    kinds = tuple(
        getattr(rex, name) for name in (
            "RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError", "NodeDiedError",
            "ObjectLostError", "OwnerDiedError", "LocalRayletDiedError", "RaySystemError", "OutOfMemoryError",
        ) if hasattr(rex, name)
    )
    return isinstance(exc, kinds) or isinstance(error_cause(exc), kinds)


RAY_STORAGE_CHECK = "Unable to set up cluster storage"  # Ray Train's RuntimeError when the storage's marker file is gone


def is_storage_fault(exc: BaseException | None, storage_root: str = "") -> bool:
    """An error that says the storage went away: an OSError of read-only, full, stale NFS handle
    or I/O error; Ray's check that the sweep's storage folder is still there (it was deleted);
    a file missing under ``storage_root`` (its ``filename``: a checkpoint Ray was writing, its
    folder deleted). A file missing elsewhere is the trial's own (its code opened a wrong path),
    and so is a resumed trial's checkpoint found gone (said in the message, no filename): a
    storage fault there stopped every resume the same way, for ever."""
    cause = error_cause(exc)
    if isinstance(cause, OSError) and getattr(cause, "errno", None) in STORAGE_ERRNOS:
        return True
    if isinstance(cause, RuntimeError) and RAY_STORAGE_CHECK in str(cause):
        return True
    root = storage_root.partition("?")[0].rstrip("/")
    return bool(root) and isinstance(cause, FileNotFoundError) and root in str(cause.filename or "")


def storage_fault_reason(exc: BaseException | None, storage_root: str = "") -> str | None:
    """A short reason for a storage fault whose own message is Ray's advice about clusters
    ("Check that all nodes in the cluster have read/write access ..."), which misleads on one
    machine whose folder was deleted; None to keep the error's own line."""
    cause = error_cause(exc)
    if isinstance(cause, RuntimeError) and RAY_STORAGE_CHECK in str(cause):
        where = storage_root.partition("?")[0] or "the storage"
        return f"the sweep's folder under {where} is gone or cannot be read (deleted or unmounted while the sweep ran)"
    return None


def is_infrastructure_error(exc: BaseException | None) -> bool:
    """Not the trial's own fault: a storage, network or timeout error from the machine around it."""
    cause = error_cause(exc)
    if isinstance(cause, (ConnectionError, TimeoutError)):
        return True
    return isinstance(cause, OSError) and getattr(cause, "errno", None) in INFRA_ERRNOS


def is_retryable(exc: BaseException | None) -> bool:
    """Whether ``failure.max_retries`` applies: a lost worker/node or an infrastructure error.

    A deterministic Python error in the user's code (ValueError, TypeError, a factory that
    raises, ...) fails the same way every time: it ends the trial at once, not after retries.
    Unknown Ray-side errors (no user exception inside) are retried, as Tune would.
    """
    if exc is None or is_worker_loss(exc) or is_infrastructure_error(exc):
        return True
    try:
        from ray.exceptions import RayTaskError
    except ImportError:  # pragma: no cover
        return True
    if not isinstance(exc, RayTaskError):
        return True  # Tune's own error (a failed restore, ...): do as Tune would
    cause = error_cause(exc)
    if cause is None or cause is exc or not isinstance(cause, Exception):
        return True  # Ray could not carry the trial's exception over: do as Tune would
    return False  # a Python exception raised by the trial's own code


LAST_ERRORS: dict[str, BaseException] = {}  # driver side: each failing trial's latest error, by Tune trial id


def install_retry_policy() -> None:
    """In the driver: Tune's ``FailureConfig(max_failures=N)`` retries every trial error; make
    it retry only :func:`is_retryable` ones. Tune decides right after ``Trial.handle_error``
    (``should_recover``: failures so far <= max_failures), so the hook marks a deterministic
    error as past the limit there. Idempotent; a Ray without that method keeps Tune's policy."""
    from ray.tune.experiment import trial as trial_module

    cls = trial_module.Trial
    original = getattr(cls, "handle_error", None)
    if original is None or getattr(original, "_sweep_policy", False):
        return

    def handle_error(self: Any, exc: Any = None, *args: Any, **kwargs: Any) -> Any:
        value = original(self, exc, *args, **kwargs)
        try:
            LAST_ERRORS[self.trial_id] = exc
            if exc is not None and not is_retryable(exc) and self.max_failures >= 0:
                self.run_metadata.num_failures = max(self.run_metadata.num_failures, self.max_failures + 1)
        except Exception:  # never let the policy break Tune's own error handling
            pass
        return value

    handle_error._sweep_policy = True  # type: ignore[attr-defined]
    cls.handle_error = handle_error
