"""A long-lived process (the warm session, a notebook) whose sqlite store was deleted between two
sweeps opens it anew: MLflow's cached engine had kept writing into the deleted file, so the next
sweep looked recorded and was lost (found by a new user: `rm mlflow.db` between two warm runs)."""

from __future__ import annotations

from sweep.tracking.client import client, forget_deleted_stores


def test_a_deleted_sqlite_store_is_opened_anew(tmp_path):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    forget_deleted_stores()
    client(uri).create_experiment("before")
    forget_deleted_stores()  # the file is there: kept
    for path in tmp_path.glob("mlflow.db*"):
        path.unlink()
    forget_deleted_stores()
    client(uri).create_experiment("after")
    assert db.exists(), "written to a new file, not the deleted one"
    import sqlite3

    with sqlite3.connect(db) as connection:
        names = {name for (name,) in connection.execute("SELECT name FROM experiments")}
    assert "after" in names and "before" not in names


def test_a_sqlite_store_deleted_while_a_sweep_writes_is_written_back_with_every_record(tmp_path, caplog):
    """`rm mlflow.db*` mid-sweep: the writer went on into the unlinked file, and every record,
    from before the rm too, was lost at its exit; the finish then pointed at an empty store. The
    writer puts the file back from its open connection (WAL included) and writes on into it."""
    import logging

    from sweep.tracking import tracker
    from sweep.tracking.client import create_sqlite_in_wal_mode
    from sweep.tracking.writer import OpKind, Writer

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    forget_deleted_stores()
    assert create_sqlite_in_wal_mode(uri)
    writer = Writer(uri, tracker.ensure_experiment(client(uri), uri, "deleted-mid-sweep"))
    writer.submit(OpKind.START, "a", {"name": "a", "tags": {"sweep.status": "running"}, "params": {"units": 32}})
    writer.submit(OpKind.METRICS, "a", [("loss", 1.0, 1, 0)])
    writer.flush(timeout=30)
    removed = [path.name for path in tmp_path.glob("mlflow.db*") if path.unlink() is None]
    assert "mlflow.db-wal" in removed, removed  # the rows so far live in the log, not yet in the file
    with caplog.at_level(logging.WARNING, logger="sweep.tracking"):
        writer.submit(OpKind.METRICS, "a", [("loss", 0.5, 2, 0)])
        writer.flush(timeout=30)
        writer.submit(OpKind.START, "b", {"name": "b", "tags": {}, "params": {"units": 64}})
        writer.submit(OpKind.END, "a", {"status": "FINISHED"})
        writer.submit(OpKind.END, "b", {"status": "FINISHED"})
        writer.close()

    assert db.exists(), "written back to its path"
    assert writer.errors == [], writer.errors
    assert any("written back" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    forget_deleted_stores()
    import sqlite3

    with sqlite3.connect(db) as connection:
        runs = dict(connection.execute("SELECT name, status FROM runs"))
        steps = [step for (step,) in connection.execute("SELECT step FROM metrics WHERE key = 'loss' ORDER BY step")]
    assert runs == {"a": "FINISHED", "b": "FINISHED"}, "the runs from before the rm and after it"
    assert steps == [1, 2]


def test_a_store_this_process_never_opened_is_not_written_back_or_created(tmp_path):
    from sweep.tracking.client import restore_deleted_sqlite

    uri = f"sqlite:///{tmp_path / 'never-opened.db'}"
    assert restore_deleted_sqlite(uri) is False, "no connection of this process holds it: nothing to write back"
    assert not (tmp_path / "never-opened.db").exists()
