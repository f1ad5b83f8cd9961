"""End to end: the end of a sweep is never a crash. A sweep whose registration fails (a store
whose registry table is gone) still records every trial and its best model, ends its parent run FAILED
with the reason as a tag (never RUNNING), says what failed in one line, exits 1, answers
`sweep best` / `status`, and is not "resumed" by the next run of the same file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.slow


def test_a_sweep_that_fails_while_finishing_ends_cleanly_and_is_not_resumed(ray_session, tmp_path):
    import sweep
    from sweep.tracking import store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _break_the_registry(uri, tmp_path / "mlflow.db")
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({
        "name": "finish-error",
        "data": {"source": "digits"},
        "model": {"builder": "mlp", "args": {"units": [16]}},
        "fit": {"epochs": 2},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"seed": 0, "trials": 2, "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}},
        "scheduler": {"type": "fifo"},
        "tracking": {"registered_model": "team-digits"},
    }))
    cli = [sys.executable, "-m", "sweep.cli"]
    run = subprocess.run([*cli, "run", str(path), "--tracking-uri", uri, "--storage", str(tmp_path / "runs"), "--address", ray_session],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr[-3000:]
    assert "finishing it failed: registering the best model as 'team-digits'" in errors[0]

    parent = store.find_parent_run(uri, "finish-error")
    assert parent.info.status == "FAILED"
    assert "team-digits" in parent.data.tags["sweep.finish_error"]
    assert parent.data.tags.get("sweep.best_value")
    children = store.child_runs(uri, parent)
    assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}, "every trial's record stays, none RUNNING"
    best = subprocess.run([*cli, "best", "finish-error", "--json", "--tracking-uri", uri], capture_output=True, text=True, cwd=tmp_path)
    assert best.returncode == 0, best.stderr
    assert json.loads(best.stdout)["value"] == pytest.approx(float(parent.data.tags["sweep.best_value"]))
    status = subprocess.run([*cli, "status", "finish-error", "--json", "--tracking-uri", uri], capture_output=True, text=True, cwd=tmp_path)
    assert status.returncode == 0 and json.loads(status.stdout)["trials"] == {"completed": 2}
    assert sweep.load_best("finish-error", tracking_uri=uri) is not None, "the best model was logged before the registry failed"

    # the next `sweep run` of the same file starts a new sweep: the ended one is not "unfinished"
    from sweep.spec import config
    from sweep.driver import recovery
    from sweep.driver import runner

    assert recovery.unfinished_parent(uri, "finish-error") is None
    again = config.load(str(path), {"tracking.uri": uri})
    assert runner._decide_resume(again, str(path), runner.storage_folder(str(tmp_path / "runs"), "finish-error"), fresh=False) is None


def _break_the_registry(uri: str, db) -> None:
    """A real store whose model registry fails every write: its table renamed away. (A registry
    name MLflow refuses, '/' or ':', did this before the sweep file refused such names.)"""
    import contextlib
    import sqlite3

    from mlflow.tracking import MlflowClient

    MlflowClient(uri).search_experiments()  # the store and its tables
    with contextlib.closing(sqlite3.connect(db)) as connection:
        connection.execute("ALTER TABLE registered_models RENAME TO registered_models_gone")
        connection.commit()


@pytest.mark.parametrize("error, status", [(RuntimeError("object store full"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_a_sweep_that_fails_between_its_parent_run_and_its_first_trial_leaves_nothing_running(ray_session, tmp_path, monkeypatch, error, status):
    """Issue 18 section 2 for the window after the parent run opened and before Tune runs a trial
    (building the Tuner, ray.put of the data, Ctrl-C): the parent run ends, never RUNNING, and
    the storage lock is released."""
    import sweep
    from sweep.driver import recovery, runner
    from sweep.tracking import store

    def broken_tuner(*args, **kwargs):
        raise error

    monkeypatch.setattr(runner, "_tuner", broken_tuner)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = {
        "name": "no-start",
        "data": {"source": "digits"},
        "model": {"builder": "mlp", "args": {"units": [8]}},
        "fit": {"epochs": 1},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"trials": 1, "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2}}},
    }
    with pytest.raises(type(error)):
        sweep.run(spec, tracking_uri=uri, storage=str(tmp_path / "runs"), quiet=True)
    parent = store.find_parent_run(uri, "no-start")
    assert parent.info.status == status
    if status == "FAILED":
        assert "object store full" in parent.data.tags["sweep.finish_error"]
    assert not recovery.lock_path(runner.storage_folder(str(tmp_path / "runs"), "no-start")).exists(), "the lock is released"
