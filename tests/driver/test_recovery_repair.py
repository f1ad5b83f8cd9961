"""A driver killed between a trial's end tags and its end (rel-03): resume ends that run as its
tags say, so no run stays RUNNING forever."""

from __future__ import annotations


def test_load_state_ends_a_run_whose_end_tags_landed(mlflow_uri):
    from mlflow.tracking import MlflowClient

    from sweep.spec import config as config_module
    from sweep.driver import recovery

    config = config_module.load({
        "name": "repair", "data": {"source": "digits"}, "model": {"builder": "mlp"},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"trials": 3, "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1}}},
    }, {})
    client = MlflowClient(mlflow_uri)
    experiment = client.create_experiment("repair")
    parent = client.create_run(experiment, tags={"sweep.role": "parent", "sweep.name": "repair"})
    runs = {}
    for number, status in enumerate(("stopped_early", "failed", "running", "interrupted")):
        run = client.create_run(experiment, tags={
            "mlflow.parentRunId": parent.info.run_id, "sweep.role": "trial", "sweep.name": "repair",
            "sweep.trial_id": f"t{number}", "sweep.trial_number": str(number), "sweep.status": status})
        client.log_param(run.info.run_id, "learning_rate", 0.01)
        runs[status] = run.info.run_id
    client.set_terminated(runs["interrupted"], "KILLED")

    state = recovery.load_state(mlflow_uri, client.get_run(parent.info.run_id), config)

    assert {t.status for t in state.ended} == {"stopped_early", "failed"}
    assert {t.status for t in state.interrupted} == {"running", "interrupted"}
    assert client.get_run(runs["stopped_early"]).info.status == "FINISHED"
    assert client.get_run(runs["failed"]).info.status == "FAILED"
    assert client.get_run(runs["running"]).info.status == "RUNNING", "interrupted trials are left to the resume"
