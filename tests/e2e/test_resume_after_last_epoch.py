"""A trial whose last epoch was reported and checkpointed, but which had not ended when the sweep
was interrupted, has nothing left to train when it resumes. It must end as completed, once, with
its epochs as they were: not abort the resumed sweep because it reported no result (Ray Tune
refuses a trial whose only result lacks the objective). Found by the chaos soak (seed 18)."""

from __future__ import annotations

import signal

import pytest

pytestmark = pytest.mark.slow

EPOCHS, NAME = 2, "e2e-resume-last-epoch"

HOLD = '''
import os, signal, time
from pathlib import Path

import keras


class InterruptAfterFit(keras.callbacks.Callback):
    """The first time fit() ends (every epoch reported): Ctrl-C the driver, and stay in fit()
    a while, so the trial is interrupted after its last checkpoint but before it ended."""

    def __init__(self, driver_pid, marker):
        super().__init__()
        self.driver_pid, self.marker = int(driver_pid), Path(marker)

    def on_train_end(self, logs=None):
        if self.marker.exists():
            return
        self.marker.write_text("interrupted")
        os.kill(self.driver_pid, signal.SIGINT)
        time.sleep(6)
'''


@pytest.fixture()
def _signal_handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_trial_interrupted_after_its_last_checkpoint_resumes_as_completed(ray_session, tmp_path, monkeypatch, _signal_handlers):
    import os

    from mlflow.tracking import MlflowClient

    import sweep
    from sweep.driver.interrupts import SweepInterrupted
    from sweep.tracking import store

    monkeypatch.chdir(tmp_path)
    (tmp_path / "hold_callbacks.py").write_text(HOLD)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    hold = {"hold_callbacks:InterruptAfterFit": {"driver_pid": os.getpid(), "marker": str(tmp_path / "interrupted")}}
    config = {
        "name": NAME, "data": {"source": "digits", "validation_split": 0.2},
        "model": {"builder": "mlp", "args": {"units": [32]}},
        # a learning rate that improves val_accuracy at both epochs: the last checkpoint is epoch 2's
        "fit": {"epochs": EPOCHS, "batch_size": 32, "callbacks": [hold]},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"sampler": "grid", "trials": 1, "space": {"learning_rate": {"type": "categorical", "choices": [0.003]}}},
        "scheduler": {"type": "fifo"}, "tracking": {"uri": uri},
    }
    with pytest.raises(SweepInterrupted):
        sweep.run(config, storage=str(tmp_path / "runs"), quiet=True)
    parent = store.find_parent_run(uri, NAME)
    (child,) = store.child_runs(uri, parent)
    assert child.data.tags["sweep.status"] == "interrupted", child.data.tags
    assert child.data.tags.get("sweep.checkpoint_epoch") == str(EPOCHS), "the setup did not checkpoint the last epoch"

    result = sweep.resume(NAME, tracking_uri=uri, storage=str(tmp_path / "runs"), quiet=True)
    assert result.stopped_because is None, result.stopped_because
    parent = store.find_parent_run(uri, NAME)
    assert parent.info.status == "FINISHED"
    (child,) = store.child_runs(uri, parent)
    assert child.info.status == "FINISHED" and child.data.tags["sweep.status"] == "completed", child.data.tags
    steps = sorted(m.step for m in MlflowClient(uri).get_metric_history(child.info.run_id, "val_accuracy"))
    assert steps == list(range(1, EPOCHS + 1)), steps
    assert result.best is not None and result.best.trial_id == child.data.tags["sweep.trial_id"]
    # its best epoch stays the one it was reached at (the tag read 'None', and best_val_accuracy
    # got a second point at step 0), found by a helper
    assert child.data.tags["sweep.best_epoch"] == str(EPOCHS), child.data.tags
    best_steps = sorted(m.step for m in MlflowClient(uri).get_metric_history(child.info.run_id, "best_val_accuracy"))
    assert best_steps == sorted(set(best_steps)) and 0 not in best_steps, best_steps
    assert result.best.epoch == EPOCHS
