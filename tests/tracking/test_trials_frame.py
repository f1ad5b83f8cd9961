"""sweep.trials / `sweep trials` of a sweep whose trials are all still running."""

from __future__ import annotations

from fake_sweeps import _fake_parent, _fake_trial

from sweep.tracking import store, tracker
from sweep.tracking.client import client as tracking_client


def test_a_sweep_with_no_ended_trial_yet_has_a_table_with_empty_durations(tmp_path):
    """With every run still open, the end times were all missing and came out without a time
    zone: `sweep trials` failed with "Cannot subtract tz-naive and tz-aware datetime-like objects"."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking_client(uri)
    experiment_id = tracker.ensure_experiment(client, uri, "live")
    parent = _fake_parent(client, experiment_id, "live")
    for number in range(2):
        _fake_trial(client, experiment_id, parent, "live", number, "running", [0.5], {"learning_rate": "0.01"})
    frame = store.trials_frame(uri, "live")
    assert list(frame["status"]) == ["running", "running"]
    assert frame["duration"].isna().all() and str(frame["datetime_start"].dt.tz) == "UTC"
