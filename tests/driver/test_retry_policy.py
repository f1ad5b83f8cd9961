"""failure.max_retries: only lost workers/nodes and infrastructure errors are retried; a Python
error in the user's code ends the trial at once (it would fail the same way again)."""

from __future__ import annotations

import errno

import pytest


def _task_error(cause: BaseException):
    from ray.exceptions import RayTaskError

    return RayTaskError("sweep_trial", "Traceback ...", cause)


@pytest.mark.parametrize("cause", [ValueError("bad dropout"), TypeError("x"), KeyError("units"), RuntimeError("factory refused")])
def test_user_errors_are_not_retried(cause):
    from sweep.driver.retries import is_retryable

    assert not is_retryable(_task_error(cause))


def test_lost_workers_and_infrastructure_errors_are_retried():
    from ray.exceptions import ActorDiedError, RayActorError, WorkerCrashedError

    from sweep.driver.retries import is_retryable, is_storage_fault

    assert is_retryable(RayActorError())
    assert is_retryable(ActorDiedError())
    assert is_retryable(WorkerCrashedError())
    assert is_retryable(_task_error(ConnectionError("reset")))
    read_only = OSError(errno.EROFS, "Read-only file system")
    assert is_retryable(_task_error(read_only)) and is_storage_fault(_task_error(read_only))
    assert not is_storage_fault(_task_error(ValueError("x")))
    assert is_retryable(None)


def test_the_policy_marks_a_deterministic_error_past_the_limit():
    from ray.tune.experiment import Trial

    from sweep.driver import retries

    retries.install_retry_policy()
    retries.install_retry_policy()  # idempotent
    def trial(tmp: str) -> Trial:
        from ray.tune.experiment.trial import _TrainingRunMetadata

        made = Trial.__new__(Trial)  # only what handle_error and should_recover read
        made.trial_id, made.max_failures, made.run_metadata = "t1", 2, _TrainingRunMetadata()
        made.temporary_state = type("State", (), {"restoring_from": None})()
        made.storage = type("Storage", (), {"trial_driver_staging_path": None})()
        return made

    deterministic = trial("a")
    deterministic.handle_error(_task_error(ValueError("bad")))
    assert not deterministic.should_recover()
    lost = trial("b")
    lost.handle_error(_task_error(OSError(errno.EIO, "I/O error")))
    assert lost.should_recover()


def test_a_storage_folder_gone_is_a_storage_fault_but_a_resumed_trials_lost_checkpoint_is_not():
    """Ray's "Unable to set up cluster storage" and a checkpoint file missing under the storage
    are the storage's fault (the sweep stops, resumable); a resumed trial whose checkpoint was
    deleted is that trial's (as a fault it stopped every resume the same way, for ever)."""
    from sweep.driver.retries import is_storage_fault, storage_fault_reason

    root = "/data/runs"
    gone = RuntimeError("Unable to set up cluster storage with the following settings: ...\nCheck that all nodes ...")
    assert is_storage_fault(_task_error(gone), root)
    assert storage_fault_reason(_task_error(gone), root) == "the sweep's folder under /data/runs is gone or cannot be read (deleted or unmounted while the sweep ran)"
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", f"{root}/demo/0001_ab/checkpoint_000002/model.keras")
    assert is_storage_fault(_task_error(missing), root) and not is_storage_fault(_task_error(missing), "/elsewhere")
    lost = FileNotFoundError(f"cannot resume this trial: its checkpoint {root}/demo/0000_cd/checkpoint_000001 is gone")
    assert not is_storage_fault(_task_error(lost), root)
