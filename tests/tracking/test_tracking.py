"""The MLflow writer: ordered, batched, nothing lost under a burst (real sqlite store)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np

from sweep.tracking import tracker
from sweep.tracking.client import client as tracking_client
from sweep.tracking.client import create_sqlite_in_wal_mode, resolve_uri
from sweep.tracking.writer import OpKind, Writer, WriterProcess, _coalesce, _Op


def test_each_runs_operations_become_one_batch_in_order():
    ops = [
        _Op(OpKind.START, "a", {"name": "a", "tags": {}, "params": {"lr": 0.1}}),
        _Op(OpKind.METRICS, "a", [("loss", 1.0, 1, 0)]),
        _Op(OpKind.START, "b", {"name": "b", "tags": {}, "params": {}}),
        _Op(OpKind.METRICS, "b", [("loss", 2.0, 1, 0)]),
        _Op(OpKind.TAGS, "a", {"sweep.checkpoint": "e1"}),
        _Op(OpKind.METRICS, "a", [("loss", 0.5, 2, 0)]),
        _Op(OpKind.TAGS, "a", {"sweep.checkpoint": "e2"}),
        _Op(OpKind.END, "a", {"status": "FINISHED"}),
        _Op(OpKind.METRICS, "b", [("loss", 1.5, 2, 0)]),
    ]
    merged = _coalesce(ops)
    assert [(op.kind, op.key) for op in merged] == [
        (OpKind.START, "a"), (OpKind.BATCH, "a"), (OpKind.END, "a"), (OpKind.START, "b"), (OpKind.BATCH, "b"),
    ]
    assert merged[1].payload == {"metrics": [("loss", 1.0, 1, 0), ("loss", 0.5, 2, 0)], "tags": {}, "params": {"lr": 0.1}}
    assert merged[0].payload["params"] == {}
    assert merged[0].payload["tags"] == {"sweep.checkpoint": "e2"}, "a run created in this batch gets its tags at creation"
    assert merged[4].payload["metrics"] == [("loss", 2.0, 1, 0), ("loss", 1.5, 2, 0)]
    assert ops[1].payload == [("loss", 1.0, 1, 0)] and ops[0].payload["params"] == {"lr": 0.1}, "the caller's operations are not mutated"
    assert ops[0].payload["tags"] == {} and ops[4].payload == {"sweep.checkpoint": "e1"}
    later = _coalesce([_Op(OpKind.TAGS, "a", {"sweep.status": "done"}), _Op(OpKind.END, "a", {"status": "FINISHED"})])
    assert [op.kind for op in later] == [OpKind.BATCH, OpKind.END] and later[0].payload["tags"] == {"sweep.status": "done"}, "no start here: log_batch"


def test_a_second_start_of_an_existing_run_still_logs_the_tags_it_took_over(tmp_path):
    """A retried trial's second start, with its final tags and end in the same batch: the run
    exists, so the start creates nothing, and the tags it carries must land anyway (they were
    lost once: a chaos run left a FINISHED run tagged ``sweep.status=running``)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracker.ensure_experiment(tracking_client(uri), uri, "second-start")
    writer = Writer(uri, experiment_id)
    start = {"name": "a", "tags": {"sweep.status": "running"}, "params": {"lr": 0.1}}
    writer.submit(OpKind.START, "a", start)
    writer.flush(timeout=20)
    writer.submit(OpKind.START, "a", start)  # the retry, before the driver learnt the run's id
    writer.submit(OpKind.TAGS, "a", {"sweep.status": "completed", "sweep.epochs": 3})
    writer.submit(OpKind.END, "a", {"status": "FINISHED"})
    writer.close()
    assert not writer.errors
    runs = tracking_client(uri).search_runs([experiment_id])
    assert len(runs) == 1, "never two runs per trial"
    assert runs[0].data.tags["sweep.status"] == "completed" and runs[0].data.tags["sweep.epochs"] == "3"
    assert runs[0].info.status == "FINISHED"


def test_a_run_written_late_keeps_the_times_the_trial_had(tmp_path):
    """Writes buffered through a tracking outage land minutes late; the trial's run still shows
    when the trial started and ended (a 3 s trial once showed 0:51, the time the writes landed)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracker.ensure_experiment(tracking_client(uri), uri, "late-writes")
    writer = Writer(uri, experiment_id)
    started = int(time.time() * 1000) - 120_000  # two minutes ago, during the outage
    writer.submit(OpKind.START, "a", {"name": "a", "tags": {}, "params": {}, "start_time": started})
    writer.submit(OpKind.END, "a", {"status": "FINISHED", "end_time": started + 3_000})
    writer.close()
    assert not writer.errors
    run = tracking_client(uri).search_runs([experiment_id])[0]
    assert (run.info.start_time, run.info.end_time) == (started, started + 3_000)


def test_nothing_moves_across_a_flush():
    ops = [_Op(OpKind.METRICS, "a", [("loss", 1.0, 1, 0)]), _Op(OpKind.FLUSH, ""), _Op(OpKind.METRICS, "a", [("loss", 0.5, 2, 0)])]
    assert [op.kind for op in _coalesce(ops)] == [OpKind.BATCH, OpKind.FLUSH, OpKind.BATCH]


def test_a_big_batch_respects_mlflows_request_limits(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracker.ensure_experiment(tracking_client(uri), uri, "limits")
    writer = Writer(uri, experiment_id)
    params = {f"p{i}": i for i in range(150)}
    writer.submit(OpKind.START, "a", {"name": "a", "tags": {}, "params": params})
    writer.submit(OpKind.TAGS, "a", {f"t{i}": i for i in range(120)})
    writer.submit(OpKind.METRICS, "a", [("m", float(step), step, 0) for step in range(2500)])
    writer.close()
    assert not writer.errors
    run = tracking_client(uri).get_run(writer.run_ids["a"])
    assert len(run.data.params) == 150 and sum(k.startswith("t") for k in run.data.tags) == 120
    assert len(tracking_client(uri).get_metric_history(run.info.run_id, "m")) == 2500


def test_a_flush_does_not_wait_out_the_batch_window(tmp_path, monkeypatch):
    """With a 60 s window, a flush still lands what came before it at once (the end of every
    sweep flushes; it waited out the window before)."""
    from sweep.tracking import writer as writer_module

    monkeypatch.setattr(writer_module, "BATCH_WINDOW_S", 60.0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracker.ensure_experiment(tracking_client(uri), uri, "window")
    writer = Writer(uri, experiment_id)
    writer.submit(OpKind.START, "a", {"name": "a", "tags": {}, "params": {"lr": 0.1}})
    writer.submit(OpKind.METRICS, "a", [("m", 1.0, 1, 0)])
    writer.flush(timeout=20)
    assert "a" in writer.run_ids
    assert len(tracking_client(uri).get_metric_history(writer.run_ids["a"], "m")) == 1
    writer.submit(OpKind.METRICS, "a", [("m", 2.0, 2, 0)])
    started = time.monotonic()
    writer.close()
    assert time.monotonic() - started < 30  # close flushes too; the window would have held it 60 s
    assert len(tracking_client(uri).get_metric_history(writer.run_ids["a"], "m")) == 2


def test_a_burst_of_200_trials_loses_no_metric(tmp_path):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    mlflow_client = tracking_client(uri)
    experiment_id = tracker.ensure_experiment(mlflow_client, uri, "burst")
    writer = Writer(uri, experiment_id)
    reported = 0
    for trial in range(200):
        key = f"t{trial}"
        writer.submit(OpKind.START, key, {"name": key, "tags": {"sweep.trial_id": key}, "params": {"lr": trial}})
        for epoch in range(1, 4):
            writer.submit(OpKind.METRICS, key, [("loss", 1.0 / epoch, epoch, 0), ("val_loss", 2.0 / epoch, epoch, 0)])
            reported += 2
        writer.submit(OpKind.END, key, {"status": "FINISHED"})
    writer.close()
    assert not writer.errors
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select count(*) from metrics").fetchone()[0]
        runs = conn.execute("select count(*), sum(status = 'FINISHED') from runs").fetchone()
        steps = conn.execute("select count(distinct step) from metrics").fetchone()[0]
    assert rows == reported == 1200
    assert runs == (200, 200)
    assert steps == 3


def test_the_writer_process_loses_nothing_and_reports_its_run_ids(tmp_path):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    experiment_id = tracker.ensure_experiment(tracking_client(uri), uri, "process")
    writer = WriterProcess(uri, experiment_id)
    for trial in range(50):
        key = f"t{trial}"
        writer.submit(OpKind.START, key, {"name": key, "tags": {"sweep.trial_id": key}, "params": {"lr": trial * 0.1}})
        writer.submit(OpKind.METRICS, key, [("loss", np.float32(0.5), 1, 0), ("val_loss", float("nan"), 1, 0)])  # numpy and NaN travel
        writer.submit(OpKind.END, key, {"status": "FINISHED"})
    writer.flush()
    assert len(writer.run_ids) == 50  # known in the driver after a flush
    writer.close()
    assert not writer.errors
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from metrics").fetchone()[0] == 100
        assert conn.execute("select count(*) from runs where status = 'FINISHED'").fetchone()[0] == 50
        assert conn.execute("select run_uuid from runs").fetchall() != []
    assert tracking_client(uri).get_run(writer.run_ids["t3"]).data.params == {"lr": "0.30000000000000004"}


def test_what_the_driver_handed_over_lands_after_the_driver_dies(tmp_path):
    """The driver is SIGKILLed right after submitting: the child drains its pipe anyway."""
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    experiment_id = tracker.ensure_experiment(tracking_client(uri), uri, "orphan")
    script = (
        "import os, signal, time\n"
        "from sweep.tracking.writer import OpKind, WriterProcess\n"
        f"w = WriterProcess({uri!r}, {experiment_id!r})\n"
        "for t in range(20):\n"
        "    w.submit(OpKind.START, f't{t}', {'name': f't{t}', 'tags': {}, 'params': {}})\n"
        "    w.submit(OpKind.METRICS, f't{t}', [('loss', 1.0, 1, 0)])\n"
        "while not w._outbox.empty(): time.sleep(0.01)\n"
        "time.sleep(0.2)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.time() + 60
    rows = 0
    while time.time() < deadline and rows < 20:
        time.sleep(0.5)
        with sqlite3.connect(db) as conn:
            rows = conn.execute("select count(*) from metrics").fetchone()[0]
    assert rows == 20


def test_relative_sqlite_uri_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_uri("sqlite:///x/m.db") == f"sqlite:///{tmp_path / 'x' / 'm.db'}"
    assert resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_a_new_store_is_a_copy_of_an_empty_one_made_once_per_mlflow_version(tmp_path, monkeypatch):
    """MLflow ran ~50 schema migrations for every new store (2-3 s of CPU, the quickstart's
    first seconds); an empty store made once in the cache folder is copied instead. What MLflow
    adds on opening a store (its Default experiment) is made where the copy is opened."""
    import mlflow
    import sqlalchemy

    from sweep.tracking import client as client_module

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    first, second = tmp_path / "a" / "first.db", tmp_path / "b" / "second.db"
    first.parent.mkdir()
    second.parent.mkdir()
    assert client_module.create_sqlite_store(f"sqlite:///{first}")
    template = tmp_path / "cache" / "sweep" / f"empty-mlflow-{mlflow.__version__}-sqlalchemy-{sqlalchemy.__version__}.db"
    assert template.is_file() and sorted(p.name for p in template.parent.iterdir()) == [template.name], "no leftovers of its making"
    made = template.stat().st_mtime_ns
    assert client_module.create_sqlite_store(f"sqlite:///{second}")
    assert template.stat().st_mtime_ns == made, "made once, then copied"
    assert not client_module.create_sqlite_store(f"sqlite:///{second}"), "an existing store is never replaced"
    assert sorted(p.name for p in second.parent.iterdir()) == ["second.db"]
    with sqlite3.connect(second) as connection:
        assert connection.execute("pragma journal_mode").fetchone()[0] == "wal"
        assert connection.execute("select count(*) from experiments").fetchone()[0] == 0
    mlflow_client = tracking_client(f"sqlite:///{second}")
    default = mlflow_client.get_experiment("0")
    assert default.name == "Default" and default.artifact_location == str(tmp_path / "mlruns" / "0"), "as MLflow makes it here"
    run = mlflow_client.create_run(mlflow_client.create_experiment("x"))
    mlflow_client.log_metric(run.info.run_id, "loss", 0.5, step=1)
    assert mlflow_client.get_run(run.info.run_id).data.metrics == {"loss": 0.5}


def test_a_new_store_is_made_by_mlflow_where_no_cache_folder_can_be_written(tmp_path, monkeypatch):
    from sweep.tracking import client as client_module

    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    fresh = tmp_path / "fresh.db"
    assert client_module.create_sqlite_store(f"sqlite:///{fresh}")
    assert tracking_client(f"sqlite:///{fresh}").get_experiment("0").name == "Default"
    with sqlite3.connect(fresh) as connection:
        assert connection.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_a_store_the_sweep_creates_is_in_wal_mode_and_one_it_finds_keeps_its_mode(tmp_path, monkeypatch):
    fresh = tmp_path / "fresh.db"
    tracking_client(f"sqlite:///{fresh}").search_experiments()  # MLflow creates its tables in the file
    existing = tmp_path / "existing.db"
    sqlite3.connect(existing).execute("create table t (x)").connection.close()  # somebody else's database
    tracking_client(f"sqlite:///{existing}").search_experiments()

    def mode(path):
        with sqlite3.connect(path) as connection:
            return connection.execute("pragma journal_mode").fetchone()[0]

    assert mode(fresh) == "wal"
    assert mode(existing) == "delete"
    assert not create_sqlite_in_wal_mode(f"sqlite:///{fresh}")  # exists now: never touched again
    monkeypatch.chdir(tmp_path)
    assert not create_sqlite_in_wal_mode("sqlite:///:memory:")
    assert not (tmp_path / ":memory:").exists()  # no file named after sqlite's in-memory database
