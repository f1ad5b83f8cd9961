"""The checkpoint disk quota: over it, ended trials' checkpoints go worst first, after MLflow
has its copy; the sweep's best and running trials' checkpoints stay (real sqlite MLflow)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from sweep.tracking import tracker as tracking
from sweep.tracking.client import client as tracking_client
from sweep.driver.ledger import Ledger
from sweep.protocol import END_FIELD, EPOCH_FIELD, KEYS_FIELD, TrialStatus

MB = 1024 * 1024


def _checkpoint(folder: Path, name: str, megabytes: float) -> SimpleNamespace:
    path = folder / name
    path.mkdir(parents=True)
    (path / "model.keras").write_bytes(b"\0" * int(megabytes * MB))
    return SimpleNamespace(path=str(path), filesystem=None)


def test_quota_evicts_ended_trials_worst_first_and_keeps_the_best_and_running(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ledger = Ledger("val_accuracy", "max", lambda config: dict(config), 3)
    tracker = tracking.MLflowTracker(ledger, uri, "quota", "quota", {}, checkpoint_quota_mb=2.5)  # room for two of the 1 MB checkpoints, not three
    callbacks = [ledger, tracker]
    trials = [SimpleNamespace(trial_id=f"t{i}", config={"lr": i}, last_result={}) for i in range(4)]
    values = {"t0": 0.9, "t1": 0.5, "t2": 0.7, "t3": 0.6}
    for number, trial in enumerate(trials):
        for callback in callbacks:
            callback.on_trial_start(0, [], trial)
        result = {EPOCH_FIELD: 1, KEYS_FIELD: "val_accuracy", "val_accuracy": values[trial.trial_id]}
        if trial.trial_id != "t3":  # t3 is still running at the end
            result[END_FIELD] = TrialStatus.COMPLETED
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
    client = tracking_client(uri)
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


def _improving_trial(ledger, tracker, folder: Path, checkpoints: int) -> list[SimpleNamespace]:
    """One trial whose every epoch improves and checkpoints, through the ledger and the tracker."""
    trial = SimpleNamespace(trial_id="t0", config={"lr": 0.1}, last_result={})
    made = []
    for callback in (ledger, tracker):
        callback.on_trial_start(0, [], trial)
    for epoch in range(1, checkpoints + 1):
        result = {EPOCH_FIELD: epoch, KEYS_FIELD: "val_accuracy", "val_accuracy": 0.1 * epoch}
        for callback in (ledger, tracker):
            callback.on_trial_result(0, [], trial, result)
        made.append(_checkpoint(folder, f"checkpoint_{epoch - 1:06d}", 0.01))
        for callback in (ledger, tracker):
            callback.on_checkpoint(0, [], trial, made[-1])
    return made


def test_a_superseded_checkpoint_goes_only_after_mlflow_names_its_successor(tmp_path):
    """The record first, then the deletion, in the writer's order: a driver killed between the
    two must leave MLflow naming a checkpoint that exists (``sweep resume`` loads it). The
    ledger deleted at once before, while the tag waited in the queue."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ledger = Ledger("val_accuracy", "max", lambda config: dict(config), 3)
    tracker = tracking.MLflowTracker(ledger, uri, "supersede", "supersede", {})
    made = _improving_trial(ledger, tracker, tmp_path / "runs", 3)
    assert all(Path(c.path).is_dir() for c in made), "nothing deleted before the writer ran"
    tracker.writer.flush()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["checkpoint_000002"], "best (= latest) only"
    run = tracking_client(uri).get_run(tracker.writer.run_ids["t0"])
    assert run.data.tags["sweep.checkpoint"] == made[-1].path
    tracker.writer.close()


def test_a_checkpoint_whose_record_failed_is_kept(tmp_path, monkeypatch):
    """When the tag naming the new checkpoint never lands, the old one stays on disk: it may be
    the one MLflow still names. A missing checkpoint file is no outage: no 900 s of retries."""
    from sweep.tracking.writer import OpKind, Writer

    monkeypatch.setenv("SWEEP_TRACKING_RETRY_S", "900")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracking.ensure_experiment(tracking_client(uri), uri, "kept")
    writer = Writer(uri, experiment_id)
    old, new = (_checkpoint(tmp_path / "runs", f"checkpoint_00000{i}", 0.01) for i in (0, 1))
    writer.submit(OpKind.START, "a", {"name": "a", "tags": {}, "params": {}})
    writer.flush(timeout=20)
    writer.submit(OpKind.CHECKPOINT, "a", str(tmp_path / "runs" / "checkpoint_000009"))  # never existed
    writer.submit(OpKind.PRUNE, "a", old.path)
    writer.submit(OpKind.EVICT, "a", new.path)
    writer.submit(OpKind.END, "a", {"status": "FINISHED"})
    started = time.monotonic()
    writer.close()
    assert time.monotonic() - started < 60, "a missing file is not retried like an outage"
    assert len(writer.errors) == 1 and "checkpoint_000009" in writer.errors[0]
    assert Path(old.path).is_dir() and Path(new.path).is_dir(), "after a failed write nothing is deleted"
    assert tracking_client(uri).get_run(writer.run_ids["a"]).info.status == "FINISHED", "later writes still land"


def test_a_best_checkpoint_the_storage_lost_is_read_from_mlflows_copy(tmp_path):
    """The storage folder deleted after the best trial ended (resumed afterwards): the finish
    failed on its missing model file, though the trial's run holds a copy."""
    import shutil

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ledger = Ledger("val_accuracy", "max", lambda config: dict(config), 3)
    tracker = tracking.MLflowTracker(ledger, uri, "lost", "lost", {})
    trial = SimpleNamespace(trial_id="t0", config={"lr": 0.1}, last_result={})
    result = {EPOCH_FIELD: 1, KEYS_FIELD: "val_accuracy", "val_accuracy": 0.9, END_FIELD: TrialStatus.COMPLETED}
    checkpoint = _checkpoint(tmp_path / "runs", "checkpoint_000000", 0.01)
    for callback in (ledger, tracker):
        callback.on_trial_start(0, [], trial)
        callback.on_trial_result(0, [], trial, result)
        callback.on_checkpoint(0, [], trial, checkpoint)
        callback.on_trial_complete(0, [], trial)
    tracker.writer.flush()
    original = (Path(checkpoint.path) / "model.keras").read_bytes()
    shutil.rmtree(tmp_path / "runs")
    best = ledger.best_trial()
    best.mlflow_run_id = tracker.writer.run_ids["t0"]
    tracker._registry_best = ("val_accuracy", best)
    with tracker._best_checkpoint_folder(best.checkpoint) as folder:
        assert (folder / "model.keras").read_bytes() == original
    tracker.writer.close()


def test_ctrl_c_while_the_tracker_starts_ends_its_parent_run_killed(tmp_path, monkeypatch):
    """Ctrl-C just after the start-up line: the parent run existed, the tracker did not, and the
    run stayed RUNNING (`sweep status` then said the driver was gone)."""
    import pytest

    from sweep.tracking import store

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setattr(tracking, "WriterProcess", interrupted)  # the writer's start: the slowest step, where Ctrl-C lands
    with pytest.raises(KeyboardInterrupt) as caught:
        tracking.MLflowTracker(Ledger("val_loss", "min", lambda config: dict(config), 3), uri, "ctrl-c", "ctrl-c", {})
    assert getattr(caught.value, "name", None) == "ctrl-c", "the CLI's line says how to continue it"
    assert store.find_parent_run(uri, "ctrl-c").info.status == "KILLED"
