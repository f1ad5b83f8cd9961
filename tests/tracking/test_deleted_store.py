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
