"""End to end: names MLflow refuses (a metric named ``top@3``, a space entry ``units(hidden)``)
reach MLflow under sanitized names, said once and mapped on the parent run, and a write MLflow
rejects is never retried as an outage (against a real ``mlflow server``: the HTTP 400 path)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import pytest
import yaml

from .servers import MlflowServer

pytestmark = pytest.mark.slow

USER_CODE = Path(__file__).parent / "user_code"
TRIALS, EPOCHS = 2, 2
RETRY_S = "600"  # a rejected write retried as an outage would hold the sweep 10 minutes per batch


@pytest.mark.timeout(400)
def test_every_epoch_of_every_metric_lands_under_a_name_mlflow_accepts(ray_session, mlflow_uri, tmp_path, monkeypatch, caplog):
    import sweep
    from sweep.tracking.client import client as tracking_client
    from sweep.tracking import store

    monkeypatch.setenv("SWEEP_TRACKING_RETRY_S", RETRY_S)
    shutil.copy(USER_CODE / "named_metrics.py", tmp_path / "named_metrics.py")
    config = {
        "name": "e2e-odd-names",
        "data": {"source": "digits"},
        "model": {"builder": "named_metrics:build"},
        "fit": {"epochs": EPOCHS},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"seed": 0, "trials": TRIALS, "space": {"units(hidden)": {"type": "categorical", "choices": [16, 32]}}},
        "scheduler": {"type": "fifo"},
    }
    path = tmp_path / "odd.yaml"
    path.write_text(yaml.safe_dump(config))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        result = sweep.run(str(path), storage=str(tmp_path / "runs"), tracking_uri=mlflow_uri, quiet=True)
    elapsed = time.monotonic() - started

    assert elapsed < 200, f"{elapsed:.0f} s: a rejected write waited out a retry window"
    assert list(result.trials["status"]) == ["completed"] * TRIALS, result.trials
    said = [record.getMessage() for record in caplog.records]
    assert not any("buffered and retried" in line or "rejected" in line for line in said), said
    for name, logged in (("top@3", "top_3"), ("val_top@3", "val_top_3"), ("units(hidden)", "units_hidden_")):
        assert sum(f"{name!r} is logged to MLflow as {logged!r}" in line for line in said) == 1, (name, said)

    parent = store.find_parent_run(mlflow_uri, "e2e-odd-names")
    assert json.loads(parent.data.tags["sweep.metric_names"]) == {"top@3": "top_3", "val_top@3": "val_top_3"}
    assert json.loads(parent.data.tags["sweep.param_names"]) == {"units(hidden)": "units_hidden_"}
    assert "units_hidden_" in parent.data.params, "the best trial's params, on the parent under the same names"
    # what comes back to the user is under the space's own name, the one hp[...] reads
    assert set(store.best_summary(mlflow_uri, "e2e-odd-names")["params"]) == {"units(hidden)"}
    assert "params_units(hidden)" in store.trials_frame(mlflow_uri, "e2e-odd-names").columns
    children = store.child_runs(mlflow_uri, parent)
    assert len(children) == TRIALS
    mlflow_client = tracking_client(mlflow_uri)
    for child in children:
        assert child.info.status == "FINISHED" and child.data.params["units_hidden_"] in ("16", "32")
        for metric in ("loss", "accuracy", "top_3", "val_loss", "val_accuracy", "val_top_3", "worker/epoch_seconds"):
            steps = sorted(m.step for m in mlflow_client.get_metric_history(child.info.run_id, metric))
            assert steps == list(range(1, EPOCHS + 1)), (metric, steps)


@pytest.mark.timeout(180)
def test_a_server_rejecting_a_batch_is_not_an_outage(tmp_path, monkeypatch, caplog):
    """The writer itself, given a name the tracker would have renamed: the server answers 400,
    the other items of the batch land at once, the bad one is reported once."""
    from sweep.tracking import tracker as tracking
    from sweep.tracking.client import client as tracking_client
    from sweep.tracking.writer import OpKind, Writer

    monkeypatch.setenv("SWEEP_TRACKING_RETRY_S", RETRY_S)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    server = MlflowServer(tmp_path / "server")
    server.folder.mkdir()
    server.start()
    try:
        experiment_id = tracking.ensure_experiment(tracking_client(server.uri), server.uri, "rejected")
        writer = Writer(server.uri, experiment_id)
        started = time.monotonic()
        writer.submit(OpKind.START, "a", {"name": "a", "tags": {"sweep.trial_id": "a"}, "params": {"units": 16}})
        for epoch in (1, 2):
            writer.submit(OpKind.METRICS, "a", [("loss", 1.0 / epoch, epoch, 0), ("val/AR@100", 0.5, epoch, 0), ("val_loss", 2.0 / epoch, epoch, 0)])
        writer.submit(OpKind.TAGS, "a", {"sweep.status": "completed"})
        writer.submit(OpKind.END, "a", {"status": "FINISHED"})
        with caplog.at_level(logging.WARNING, logger="sweep.tracking"):
            writer.close()
        assert time.monotonic() - started < 30, "no retry window"
        mlflow_client = tracking_client(server.uri)
        run = mlflow_client.get_run(writer.run_ids["a"])
        assert run.info.status == "FINISHED" and run.data.tags["sweep.status"] == "completed" and run.data.params == {"units": "16"}
        for metric in ("loss", "val_loss"):
            assert sorted(m.step for m in mlflow_client.get_metric_history(run.info.run_id, metric)) == [1, 2]
        said = [record.getMessage() for record in caplog.records]
        assert sum("'val/AR@100'" in line for line in said) == 1 and len(writer.errors) == 1, said
        assert not any("buffered and retried" in line for line in said), said
    finally:
        server.stop()
