"""The MLflow writer: ordered, batched, nothing lost under a burst (real sqlite store)."""

from __future__ import annotations

import sqlite3

from sweep import tracking
from sweep.tracking import Writer, _coalesce, _Op


def test_consecutive_metrics_of_one_run_are_merged_in_order():
    ops = [
        _Op("start", "a", {}),
        _Op("metrics", "a", [("loss", 1.0, 1, 0)]),
        _Op("metrics", "a", [("loss", 0.5, 2, 0)]),
        _Op("metrics", "b", [("loss", 2.0, 1, 0)]),
        _Op("end", "a", "FINISHED"),
    ]
    merged = _coalesce(ops)
    assert [op.kind for op in merged] == ["start", "metrics", "metrics", "end"]
    assert merged[1].payload == [("loss", 1.0, 1, 0), ("loss", 0.5, 2, 0)]
    assert ops[1].payload == [("loss", 1.0, 1, 0)], "the caller's operations are not mutated"


def test_a_burst_of_200_trials_loses_no_metric(tmp_path):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    mlflow_client = tracking.client(uri)
    experiment_id = tracking.ensure_experiment(mlflow_client, uri, "burst")
    writer = Writer(uri, experiment_id)
    reported = 0
    for trial in range(200):
        key = f"t{trial}"
        writer.submit("start", key, {"name": key, "tags": {"sweep.trial_id": key}, "params": {"lr": trial}})
        for epoch in range(1, 4):
            writer.submit("metrics", key, [("loss", 1.0 / epoch, epoch, 0), ("val_loss", 2.0 / epoch, epoch, 0)])
            reported += 2
        writer.submit("end", key, "FINISHED")
    writer.close()
    assert not writer.errors
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select count(*) from metrics").fetchone()[0]
        runs = conn.execute("select count(*), sum(status = 'FINISHED') from runs").fetchone()
        steps = conn.execute("select count(distinct step) from metrics").fetchone()[0]
    assert rows == reported == 1200
    assert runs == (200, 200)
    assert steps == 3


def test_relative_sqlite_uri_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.resolve_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tracking.resolve_uri("sqlite:///x/m.db") == f"sqlite:///{tmp_path / 'x' / 'm.db'}"
    assert tracking.resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
