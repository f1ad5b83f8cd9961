"""Trials that end without the objective in their last epoch's logs must not abort the sweep
(Ray Tune refuses a trial result without the metric it optimizes, and ends the whole ``fit()``
with a traceback). Each kind ends as the user would expect:

* the last epoch was not validated (``fit.validation_freq``): the trial completes, ranked by the
  best validated epoch; only validated epochs carry a val_ metric in MLflow, every epoch its
  training logs;
* no epoch was ever validated (a user's callback stopping training first): failed, saying why.
  (An ``epochs`` choice below ``validation_freq`` is refused before any trial:
  tests/driver/test_preflight.py.)
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

NAME = "e2e-unvalidated"

STOPPER = '''
import keras


class StopAtLearningRate(keras.callbacks.Callback):
    """Stops training when the trial's learning rate is ``stop_at`` (Keras ends the first epoch)."""

    def __init__(self, stop_at):
        super().__init__()
        self.stop_at = float(stop_at)

    def on_train_begin(self, logs=None):
        if abs(float(self.model.optimizer.learning_rate) - self.stop_at) < 1e-9:
            self.model.stop_training = True
'''


def test_trials_without_a_last_validation_end_as_expected_and_the_sweep_goes_on(ray_session, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    import sweep
    from sweep.tracking import store

    monkeypatch.chdir(tmp_path)
    (tmp_path / "stop_callbacks.py").write_text(STOPPER)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = {
        "name": NAME, "data": {"source": "digits", "validation_split": 0.2},
        "model": {"builder": "mlp", "args": {"units": [16]}},
        "fit": {"epochs": 3, "batch_size": 64, "validation_freq": 2, "callbacks": [{"stop_callbacks:StopAtLearningRate": {"stop_at": 0.0007}}]},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"sampler": "grid", "trials": 4, "space": {
            "learning_rate": {"type": "categorical", "choices": [0.01, 0.0007]},
            "epochs": {"type": "categorical", "choices": [3, 2]}}},
        "scheduler": {"type": "fifo"}, "failure": {"fail_fast": 0}, "tracking": {"uri": uri},
    }
    result = sweep.run(config, storage=str(tmp_path / "runs"), quiet=True)
    parent = store.find_parent_run(uri, NAME)
    assert parent.info.status == "FINISHED"
    children = store.child_runs(uri, parent)
    client = MlflowClient(uri)
    by_kind = {}
    for child in children:
        by_kind[(float(child.data.params["learning_rate"]), child.data.params["epochs"])] = child
    assert set(by_kind) == {(0.01, "3"), (0.01, "2"), (0.0007, "3"), (0.0007, "2")}, sorted(by_kind)

    completed = by_kind[(0.01, "3")]
    assert completed.data.tags["sweep.status"] == "completed", completed.data.tags
    validated = client.get_metric_history(completed.info.run_id, "val_accuracy")
    assert [m.step for m in validated] == [2], "only the validated epoch carries val_accuracy"
    # every epoch's training logs reach MLflow at their own steps, validated or not
    assert sorted(m.step for m in client.get_metric_history(completed.info.run_id, "loss")) == [1, 2, 3]
    assert sorted(m.step for m in client.get_metric_history(completed.info.run_id, "accuracy")) == [1, 2, 3]
    assert result.best is not None and result.best.value == pytest.approx(validated[0].value)

    last_validated = by_kind[(0.01, "2")]
    assert last_validated.data.tags["sweep.status"] == "completed", last_validated.data.tags
    assert [m.step for m in client.get_metric_history(last_validated.info.run_id, "val_accuracy")] == [2]

    for epochs in ("3", "2"):
        stopped = by_kind[(0.0007, epochs)]
        assert stopped.data.tags["sweep.status"] == "failed"
        assert "val_accuracy was never computed: the trial ended at epoch 1" in stopped.data.tags["sweep.reason"], stopped.data.tags
    assert not [c for c in children if c.info.status == "RUNNING"]
