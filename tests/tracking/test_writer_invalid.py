"""A write MLflow rejects as invalid is not an outage: the writer lands everything else in its
batch at once, reports the bad item once, and never waits out the retry window. Names MLflow
refuses get a sanitized name that no other name of the sweep has (real sqlite store)."""

from __future__ import annotations

import logging
import time

import pytest

from sweep.tracking import tracker
from sweep.tracking.client import client as tracking_client
from sweep.tracking.writer import MlflowNames, OpKind, Writer, name_problem, rejected, sanitized

RETRY_S = "600"  # a rejected write that were retried as an outage would hold the test 10 minutes


def _writer(tmp_path, name: str) -> tuple[str, Writer]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, Writer(uri, tracker.ensure_experiment(tracking_client(uri), uri, name))


@pytest.mark.timeout(60)
def test_a_batch_with_an_invalid_metric_name_lands_the_rest_at_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SWEEP_TRACKING_RETRY_S", RETRY_S)
    uri, writer = _writer(tmp_path, "invalid-metric")
    started = time.monotonic()
    writer.submit(OpKind.START, "a", {"name": "a", "tags": {"sweep.status": "running"}, "params": {"units": 32}})
    for epoch in (1, 2, 3):
        writer.submit(OpKind.METRICS, "a", [("loss", 1.0 / epoch, epoch, 0), ("top@3", 0.5, epoch, 0), ("val_accuracy", 0.1 * epoch, epoch, 0)])
    writer.submit(OpKind.TAGS, "a", {"sweep.status": "completed"})
    writer.submit(OpKind.END, "a", {"status": "FINISHED"})
    with caplog.at_level(logging.WARNING, logger="sweep.tracking"):
        writer.close()
    elapsed = time.monotonic() - started

    assert elapsed < 15, f"{elapsed:.0f} s: the rejected batch was retried as an outage"
    mlflow_client = tracking_client(uri)
    run = mlflow_client.get_run(writer.run_ids["a"])
    for metric in ("loss", "val_accuracy"):
        assert sorted(m.step for m in mlflow_client.get_metric_history(run.info.run_id, metric)) == [1, 2, 3], metric
    assert "top@3" not in run.data.metrics
    assert run.data.params == {"units": "32"} and run.data.tags["sweep.status"] == "completed"
    assert run.info.status == "FINISHED"
    assert len(writer.errors) == 1 and "'top@3'" in writer.errors[0], writer.errors
    said = [r.getMessage() for r in caplog.records]
    assert sum("top@3" in line for line in said) == 1, said
    assert not any("buffered and retried" in line for line in said), "not an outage"


@pytest.mark.timeout(60)
def test_any_item_mlflow_refuses_is_isolated_not_only_names(tmp_path, monkeypatch):
    """A change of a logged param's value (MLflow refuses it: INVALID_PARAMETER_VALUE) in a
    batch of 300 metrics and other params: only that param is left out."""
    monkeypatch.setenv("SWEEP_TRACKING_RETRY_S", RETRY_S)
    uri, writer = _writer(tmp_path, "invalid-value")
    writer.submit(OpKind.START, "a", {"name": "a", "tags": {}, "params": {"lr": 0.1}})
    writer.flush(timeout=20)
    writer.submit(OpKind.START, "a", {"name": "a", "tags": {}, "params": {"lr": 0.2, "units": 8}})  # lr changed
    writer.submit(OpKind.METRICS, "a", [("m", float(step), step, 0) for step in range(300)])
    started = time.monotonic()
    writer.close()
    assert time.monotonic() - started < 15
    run = tracking_client(uri).get_run(writer.run_ids["a"])
    assert run.data.params == {"lr": "0.1", "units": "8"}
    assert len(tracking_client(uri).get_metric_history(run.info.run_id, "m")) == 300
    assert len(writer.errors) == 1 and "param 'lr'" in writer.errors[0], writer.errors


def test_rejected_is_a_refusal_not_an_outage():
    from mlflow.exceptions import MlflowException, RestException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

    invalid = MlflowException("Invalid value", INVALID_PARAMETER_VALUE)
    assert rejected(invalid) and rejected(invalid, item=True)
    assert rejected(RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad name"}), item=True)
    assert rejected(MlflowException("gone", RESOURCE_DOES_NOT_EXIST)) and not rejected(MlflowException("gone", RESOURCE_DOES_NOT_EXIST), item=True)
    for outage in (
        MlflowException("database is locked", TEMPORARILY_UNAVAILABLE),  # sqlite busy
        MlflowException("API request to http://x failed with exception ConnectionError"),  # no answer: INTERNAL_ERROR
        RestException({"error_code": "503", "message": "restarting"}),
        RestException({"error_code": "429", "message": "slow down"}),
        ConnectionError("refused"),
    ):
        assert not rejected(outage), outage


def test_names_mlflow_refuses_are_named_and_sanitized():
    assert name_problem("val_accuracy") is None and name_problem("worker/peak_rss_mb") is None and name_problem("a b:c-d.e") is None
    assert name_problem("top@3") == "MLflow does not allow '@'"
    assert "'()'" in name_problem("auc(pr)")
    assert "resolves to 'b'" in name_problem("a/../b")
    for name in ("top@3", "auc(pr)", "training gpu:0 mem(%)", "a/../b", "/a", "a//b", ".", "", "x" * 300, "val/AR@100"):
        assert name_problem(sanitized(name)) is None, (name, sanitized(name))
    assert sanitized("top@3") == "top_3" and sanitized("timing(s)/gen") == "timing_s_/gen"


def test_no_two_names_share_one_mlflow_name():
    names = MlflowNames()
    renames = names.add(["top@3", "top_3", "top#3", "loss"])  # valid names keep theirs: they go first
    assert names["top_3"] == "top_3" and names["loss"] == "loss"
    assert {names["top@3"], names["top#3"]} == {"top_3_2", "top_3_3"}
    assert [r[0] for r in renames] == ["top@3", "top#3"] and renames[0][2] == "MLflow does not allow '@'"
    assert names.add(["top@3", "loss"]) == [], "each rename is made (and said) once"

    later = MlflowNames()
    later.add(["top@3"])
    (renamed,) = later.add(["top_3"])  # a later trial brings a valid name an earlier rename took
    assert renamed[:2] == ("top_3", "top_3_2") and later["top@3"] == "top_3"
    assert len(set(later.renamed.values())) == len(later.renamed)

    resumed = MlflowNames(later.renamed)  # a resumed sweep starts from the recorded mapping
    assert resumed.add(["top@3", "top_3", "loss"]) == [] and resumed["top_3"] == "top_3_2"


@pytest.mark.timeout(60)
def test_once_the_driver_is_gone_an_outage_is_retried_for_a_bounded_time(monkeypatch):
    """A writer whose driver died while its store was unreachable retried every operation for
    SWEEP_TRACKING_RETRY_S each (hours in all), ignoring signals, writing tracebacks to a dead
    terminal. Once stdin ends it has ORPHAN_DRAIN_S in all."""
    import socket

    monkeypatch.setenv("SWEEP_TRACKING_RETRY_S", RETRY_S)
    with socket.socket() as probe:  # a port nothing listens on: every write fails as an outage
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    writer = Writer(f"http://127.0.0.1:{port}", "0")
    writer.drain_deadline = time.monotonic() + 2.0  # as serve() sets it when stdin ends
    started = time.monotonic()
    for key in ("a", "b", "c"):
        writer.submit(OpKind.START, key, {"name": key, "tags": {}, "params": {}})
    writer.close()
    assert time.monotonic() - started < 30
    assert len(writer.errors) == 3 and all("after retrying" in error for error in writer.errors), writer.errors


def test_an_outage_line_says_what_the_database_said():
    """A locked sqlite store was "MLflow write failed ((raised as a result of Query-invoked
    autoflush; ...))", which does not say the database is locked."""
    from sweep.tracking.writer import _first_line

    error = Exception("(raised as a result of Query-invoked autoflush; consider using a session.no_autoflush block)\n"
                      "(sqlite3.OperationalError) database is locked\n[SQL: INSERT INTO metrics]")
    assert _first_line(error) == "(sqlite3.OperationalError) database is locked"
    assert _first_line(ConnectionError("refused")) == "refused" and _first_line(ValueError()) == "ValueError"


def test_a_store_file_deleted_mid_sweep_is_said_once_and_written_back(tmp_path, caplog):
    """Writes went on into the unlinked sqlite file and were lost, without a word until the
    finish printed a dozen tracebacks (tests/tracking/test_deleted_store.py: with a WAL)."""
    uri, writer = _writer(tmp_path, "deleted-store")
    writer.submit(OpKind.START, "a", {"name": "a", "tags": {}, "params": {}})
    writer.flush(timeout=20)
    (tmp_path / "mlflow.db").unlink()
    with caplog.at_level(logging.WARNING, logger="sweep.tracking"):
        for epoch in (1, 2):
            writer.submit(OpKind.METRICS, "a", [("loss", 1.0 / epoch, epoch, 0)])
            writer.flush(timeout=20)
    writer.close()
    said = [r.getMessage() for r in caplog.records if "was deleted while the sweep ran" in r.getMessage()]
    assert len(said) == 1 and str(tmp_path / "mlflow.db") in said[0] and "written back" in said[0]
    assert writer.errors == []
    from sweep.tracking.client import forget_deleted_stores

    forget_deleted_stores()
    assert [m.step for m in tracking_client(uri).get_metric_history(writer.run_ids["a"], "loss")] == [1, 2]
