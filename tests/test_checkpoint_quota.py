"""The checkpoint disk quota: over it, ended trials' checkpoints go worst first, after MLflow
has its copy; the sweep's best and running trials' checkpoints stay (real sqlite MLflow)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from sweep import tracking
from sweep.results import COMPLETED, END_FIELD, EPOCH_FIELD, KEYS_FIELD, Ledger

MB = 1024 * 1024


def _checkpoint(folder: Path, name: str, megabytes: float) -> SimpleNamespace:
    path = folder / name
    path.mkdir(parents=True)
    (path / "model.keras").write_bytes(b"\0" * int(megabytes * MB))
    return SimpleNamespace(path=str(path), filesystem=None)


def test_quota_evicts_ended_trials_worst_first_and_keeps_the_best_and_running(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ledger = Ledger("val_accuracy", "max", lambda config: dict(config), 3)
    tracker = tracking.MLflowTracker(ledger, uri, "quota", "quota", {})
    tracker.checkpoint_quota_mb = 2.5  # room for two of the 1 MB checkpoints, not three
    callbacks = [ledger, tracker]
    trials = [SimpleNamespace(trial_id=f"t{i}", config={"lr": i}, last_result={}) for i in range(4)]
    values = {"t0": 0.9, "t1": 0.5, "t2": 0.7, "t3": 0.6}
    for number, trial in enumerate(trials):
        for callback in callbacks:
            callback.on_trial_start(0, [], trial)
        result = {EPOCH_FIELD: 1, KEYS_FIELD: "val_accuracy", "val_accuracy": values[trial.trial_id]}
        if trial.trial_id != "t3":  # t3 is still running at the end
            result[END_FIELD] = COMPLETED
        trial.last_result = result
        for callback in callbacks:
            callback.on_trial_result(0, [], trial, result)
        checkpoint = _checkpoint(tmp_path / "runs", f"checkpoint_{number:06d}", 1.0)
        for callback in callbacks:
            callback.on_checkpoint(0, [], trial, checkpoint)
        if trial.trial_id != "t3":
            for callback in callbacks:
                callback.on_trial_complete(0, [], trial)
    tracker.writer.flush()

    kept = {o.trial_id for o in ledger.outcomes.values() if o.checkpoint}
    assert kept == {"t0", "t3"}, "the best (t0) and the running trial (t3) keep theirs; t1 (worst) and t2 went"
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert folders == ["checkpoint_000000", "checkpoint_000003"]
    client = tracking.client(uri)
    for trial_id in ("t1", "t2"):  # evicted from disk, but MLflow kept the model and says why
        run_id = tracker.writer.run_ids[trial_id]
        assert [a.path for a in client.list_artifacts(run_id, "checkpoint")] == ["checkpoint/model.keras"]
        assert client.get_run(run_id).data.tags["sweep.checkpoint_evicted"].startswith("disk quota")
    tracker.writer.close()


def test_no_quota_keeps_every_checkpoint(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ledger = Ledger("val_loss", "min", lambda config: dict(config), 3)
    tracker = tracking.MLflowTracker(ledger, uri, "noquota", "noquota", {})
    assert tracker.enforce_quota() == []
    tracker.writer.close()
