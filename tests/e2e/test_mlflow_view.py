"""End to end (issue 19): MLflow shows the sweep the way ``sweep best`` sees it, and the CLI's
read-only commands (``list``, ``best``) read it back. One small real sweep (4 trials, 3 epochs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SWEEP = {
    "name": "e2e-view",
    "data": {"source": "digits", "validation_split": 0.25},
    "model": {"builder": "mlp", "args": {"units": [16]}},
    "fit": {"epochs": 3},
    "objective": {"metric": "val_accuracy", "mode": "max"},
    "search": {
        "seed": 1,
        "trials": 4,
        "space": {
            "learning_rate": {"type": "float", "low": 1e-3, "high": 3e-1, "log": True},
            "batch_size": {"type": "categorical", "choices": [32, 64]},
        },
    },
    "scheduler": {"type": "fifo"},
    "tracking": {"registered_model": "e2e-view-model"},
}


@pytest.fixture(scope="module")
def finished(ray_session, tmp_path_factory):
    import sweep

    folder = tmp_path_factory.mktemp("view")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = sweep.run(SWEEP, storage=str(folder / "runs"), tracking_uri=uri, quiet=True)
    assert result.best is not None, result.trials
    return result, uri


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweep.cli", *args], capture_output=True, text=True, timeout=120)


def test_sorting_by_the_best_objective_ranks_trials_as_sweep_best(finished):
    from sweep.tracking import store
    from sweep.tracking.client import client as tracking_client

    result, uri = finished
    mlflow_client = tracking_client(uri)
    parent = store.find_parent_run(uri, "e2e-view")
    best = store.best_summary(uri, "e2e-view")
    top = mlflow_client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        order_by=["metrics.best_val_accuracy DESC"],
    )
    assert top[0].info.run_id == best["mlflow_run_id"]
    for run in top:  # every ended trial: its best value, at the epoch it was reached
        history = mlflow_client.get_metric_history(run.info.run_id, "best_val_accuracy")
        assert history[-1].value == pytest.approx(float(run.data.tags["sweep.best_value"]))
        assert history[-1].step == int(run.data.tags["sweep.best_epoch"])
        assert run.data.tags["mlflow.user"] and run.data.tags["mlflow.source.name"]
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(best["value"])
    assert parent.data.tags["mlflow.source.type"] == "LOCAL"
    experiment = mlflow_client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_parent_params_are_what_differs_from_defaults(finished):
    from sweep.tracking import store
    from sweep.tracking.client import client as tracking_client

    _, uri = finished
    mlflow_client = tracking_client(uri)
    parent = store.find_parent_run(uri, "e2e-view")
    params = parent.data.params
    assert params["config.search.trials"] == "4" and params["config.objective.metric"] == "val_accuracy"
    assert params["config.data.validation_split"] == "0.25"  # not the default 0.2
    assert "config.data.samples" not in params and "config.fit.shuffle" not in params  # defaults
    assert len([k for k in params if k.startswith("config.")]) < 20
    config = json.loads(Path(mlflow_client.download_artifacts(parent.info.run_id, "sweep/config.json")).read_text())
    assert config["data"]["samples"] == 2000  # the whole file is still there


def test_model_version_lineage_is_the_best_trial(finished):
    from sweep.tracking.client import client as tracking_client

    result, uri = finished
    mlflow_client = tracking_client(uri)
    version = mlflow_client.get_model_version_by_alias("e2e-view-model", "champion")
    assert version.run_id == result.best.mlflow_run_id
    assert result.best.trial_id in version.description and "e2e-view" in version.description
    assert version.tags["sweep.trial_id"] == result.best.trial_id


def test_cli_list_and_best(finished, tmp_path):
    result, uri = finished
    out = _cli("list", "--tracking-uri", uri, "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["name"] for r in rows] == ["e2e-view"]
    assert rows[0]["trials_done"] == 4 and rows[0]["trials_requested"] == 4
    assert rows[0]["best_value"] == pytest.approx(result.best.value)
    text = _cli("list", "--tracking-uri", uri)
    assert text.returncode == 0 and "e2e-view" in text.stdout and "finished" in text.stdout.lower()

    out = _cli("best", "e2e-view", "--tracking-uri", uri, "--json")
    summary = json.loads(out.stdout)
    assert isinstance(summary["params"]["learning_rate"], float) and isinstance(summary["params"]["batch_size"], int)
    human = _cli("best", "e2e-view", "--tracking-uri", uri)
    assert human.returncode == 0 and "{" not in human.stdout and "learning_rate" in human.stdout
    assert _cli("best", "e2e-view", "--tracking-uri", uri, "--quiet").stdout == ""

    missing = _cli("best", "e2e-veiw", "--tracking-uri", uri)
    assert missing.returncode == 2 and "did you mean 'e2e-view'" in missing.stderr
