"""End to end: a real digits sweep on local Ray with Optuna TPE, ASHA and a sqlite MLflow store."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TRIALS, EPOCHS = 8, 4

SWEEP = {
    "name": "e2e-digits",
    "data": {"source": "digits", "validation_split": 0.25},
    "model": {"builder": "mlp", "args": {"units": [32]}},
    "fit": {"epochs": EPOCHS},
    "objective": {"metric": "val_accuracy", "mode": "max"},
    "search": {
        "sampler": "tpe",
        "seed": 1,
        "trials": TRIALS,
        "space": {
            "learning_rate": {"type": "float", "low": 1e-5, "high": 3e-1, "log": True},
            "batch_size": {"type": "categorical", "choices": [32, 128]},
            "optimizer": {"type": "categorical", "choices": ["adam", "sgd", "rmsprop"]},
            "momentum": {"type": "float", "low": 0.0, "high": 0.9, "when": {"optimizer": "sgd"}},
        },
    },
    "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
}


@pytest.fixture(scope="module")
def digits(ray_session, tmp_path_factory):
    """Run the sweep once; every test below inspects the same result and store."""
    import sweep

    folder = tmp_path_factory.mktemp("digits")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = sweep.run(SWEEP, storage=str(folder / "runs"), tracking_uri=uri, quiet=True)
    return result, uri


def _children(result, uri):
    from sweep.tracking import store

    parent = store.find_parent_run(uri, result.name)
    return parent, store.child_runs(uri, parent)


def test_every_trial_is_accounted_for(digits):
    result, _ = digits
    assert len(result.trials) == TRIALS
    assert set(result.trials["status"]) <= {"completed", "stopped_early", "failed"}
    assert (result.trials["status"] != "failed").all(), result.trials[["status", "reason"]]
    assert result.trials["trial_id"].is_unique


def test_asha_stopped_a_trial_early(digits):
    result, _ = digits
    stopped = result.trials[result.trials["status"] == "stopped_early"]
    assert len(stopped) >= 1
    assert (stopped["epochs"] < EPOCHS).all()
    completed = result.trials[result.trials["status"] == "completed"]
    assert (completed["epochs"] == EPOCHS).all()


def test_one_child_run_per_trial_with_one_step_per_epoch(digits):
    from mlflow.tracking import MlflowClient

    result, uri = digits
    parent, children = _children(result, uri)
    assert parent.data.tags["sweep.role"] == "parent"
    assert len(children) == TRIALS
    epochs_by_trial = dict(zip(result.trials["trial_id"], result.trials["epochs"]))
    client = MlflowClient(uri)
    for child in children:
        trial_id = child.data.tags["sweep.trial_id"]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["sweep.status"] in ("completed", "stopped_early")
        assert child.info.status == "FINISHED"
        for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
            steps = [m.step for m in client.get_metric_history(child.info.run_id, metric)]
            assert sorted(steps) == list(range(1, epochs_by_trial[trial_id] + 1)), (metric, steps)


def test_best_checkpoint_reproduces_the_objective(digits):
    import keras

    from sweep.inputs import data
    from sweep.spec.config import DataConfig

    result, _ = digits
    best = result.best
    assert best is not None and best.checkpoint
    model = keras.saving.load_model(Path(best.checkpoint) / "model.keras", safe_mode=True)
    dataset = data.load(DataConfig(**SWEEP["data"]))
    logs = model.evaluate(dataset.x_val, dataset.y_val, verbose=0, return_dict=True)
    assert math.isclose(logs["accuracy"], best.value, abs_tol=1e-6)
    assert best.value == result.trials["value"].max()


def test_sweep_best_json_agrees_with_mlflow(digits):
    from mlflow.tracking import MlflowClient

    result, uri = digits
    out = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "best", result.name, "--json", "--tracking-uri", uri],
        capture_output=True, text=True, check=True,
    )
    best = json.loads(out.stdout)
    for key in ("name", "metric", "mode", "value", "params", "trial_id", "epochs", "checkpoint", "mlflow_run_id", "tracking_uri"):
        assert key in best
    assert best["value"] == pytest.approx(result.best.value)
    assert best["trial_id"] == result.best.trial_id
    assert best["mlflow_run_id"] == result.best.mlflow_run_id
    run = MlflowClient(uri).get_run(best["mlflow_run_id"])
    assert run.data.params == {k: str(v) for k, v in best["params"].items()}  # MLflow keeps text; --json keeps the types
    assert best["params"] == result.best.params
    assert max(m.value for m in MlflowClient(uri).get_metric_history(run.info.run_id, "val_accuracy")) == pytest.approx(best["value"])


def test_conditional_parameter_only_where_its_condition_holds(digits):
    result, uri = digits
    _, children = _children(result, uri)
    optimizers = [c.data.params["optimizer"] for c in children]
    assert "sgd" in optimizers and set(optimizers) - {"sgd"}, optimizers
    for child in children:
        assert ("momentum" in child.data.params) == (child.data.params["optimizer"] == "sgd")
    for _, row in result.trials.iterrows():
        has_momentum = "param.momentum" in row and not (isinstance(row["param.momentum"], float) and math.isnan(row["param.momentum"]))
        assert has_momentum == (row["param.optimizer"] == "sgd")


def test_parent_run_holds_best_params_model_and_trials_csv(digits):
    from mlflow.tracking import MlflowClient

    result, uri = digits
    parent, _ = _children(result, uri)
    client = MlflowClient(uri)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["val_accuracy"] == pytest.approx(result.best.value)
    for name, value in result.best.params.items():
        assert parent.data.params[name] == str(value)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "trials.csv" in artifacts
    trials_csv = Path(client.download_artifacts(parent.info.run_id, "trials.csv"))
    assert len(trials_csv.read_text().strip().splitlines()) == TRIALS + 1
    import mlflow

    mlflow.set_tracking_uri(uri)
    logged = mlflow.search_logged_models(experiment_ids=[parent.info.experiment_id], output_format="list")
    assert logged, "the best model is logged with MLflow's Keras flavor"
    model = mlflow.keras.load_model(f"models:/{logged[0].model_id}")
    assert model.output_shape[-1] == 10


def test_one_trial_identifier_names_the_run_and_the_checkpoint_folder(digits):
    """The 0002 of the live view and `sweep best` is the MLflow run's name suffix and the start of
    the trial's folder under --storage (issue 19)."""
    result, uri = digits
    _, children = _children(result, uri)
    numbers = dict(zip(result.trials["trial_id"], result.trials["number"]))
    assert sorted(numbers.values()) == list(range(TRIALS))
    for child in children:
        trial_id = child.data.tags["sweep.trial_id"]
        label = f"{int(numbers[trial_id]):04d}"
        assert child.data.tags["mlflow.runName"].endswith(f"-{label}")
        checkpoint = child.data.tags.get("sweep.checkpoint")
        if checkpoint:
            assert Path(checkpoint).parent.name == f"{label}_{trial_id}", checkpoint
    assert Path(result.best.checkpoint).parent.name.startswith(f"{int(result.best.number):04d}_")


def test_the_parent_run_lasts_as_long_as_the_command_said(digits):
    """The parent run started once Ray was up and the preflight done, so the MLflow UI's and
    ``sweep list``'s duration left those seconds out of the "finished in" the command printed."""
    result, uri = digits
    parent, children = _children(result, uri)
    took = (parent.info.end_time - parent.info.start_time) / 1000
    print(f"parent run {took:.2f} s, command {result.wall_seconds:.2f} s")
    assert took == pytest.approx(result.wall_seconds, abs=0.5)
    assert parent.info.start_time <= min(child.info.start_time for child in children)
