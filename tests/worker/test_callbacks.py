"""The Tune reporter inside a real Tune trial: one report per epoch, checkpoints only on improvement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sweep.worker.callbacks import KERAS_CALLBACKS, keras_callbacks
from sweep.spec.config import FitConfig, ObjectiveConfig
from sweep.errors import InputError

SCRIPTED = [0.5, 0.7, 0.6, 0.8, 0.8]  # improves at epochs 1, 2 and 4 only


def _scripted_trial(config):
    import keras

    from sweep.worker.callbacks import TuneReporter

    class Script(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_score"] = SCRIPTED[epoch]

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.zeros((8, 3), "float32")
    reporter = TuneReporter(ObjectiveConfig(metric="val_score", mode="max"), epochs=len(SCRIPTED))
    model.fit(x, x[:, :1], epochs=len(SCRIPTED), verbose=0, callbacks=[Script(), reporter])


class _Recorder:
    """A real Tune callback that keeps what the driver receives."""

    def __new__(cls):
        from ray import tune

        class Recorder(tune.Callback):
            def __init__(self):
                self.results, self.checkpoints = [], []

            def on_trial_result(self, iteration, trials, trial, result, **info):
                self.results.append(result)

            def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
                self.checkpoints.append(json.loads((Path(checkpoint.path) / "meta.json").read_text()))

        return Recorder()


@pytest.mark.slow
def test_reports_every_epoch_and_checkpoints_only_on_improvement(ray_session, tmp_path):
    import sys

    from ray import cloudpickle, tune

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import test modules
    recorder = _Recorder()
    tuner = tune.Tuner(
        _scripted_trial,
        tune_config=tune.TuneConfig(metric="val_score", mode="max", num_samples=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="reporter", verbose=0, callbacks=[recorder]),
    )
    assert tuner.fit()[0].error is None
    results = recorder.results
    assert [r["training_iteration"] for r in results] == [1, 2, 3, 4, 5]
    assert [r["val_score"] for r in results] == SCRIPTED
    assert [r["sweep_improved"] for r in results] == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert [r.get("sweep_end") for r in results] == [None, None, None, None, "completed"]
    assert set(results[0]["sweep_keys"].split(",")) == {"loss", "val_score"}
    assert [c["epoch"] for c in recorder.checkpoints] == [1, 2, 4]
    assert [c["value"] for c in recorder.checkpoints] == [0.5, 0.7, 0.8]


def test_terminate_on_nan_is_always_on_and_named_callbacks_follow_the_objective():
    made = keras_callbacks(FitConfig(callbacks=[{"early_stopping": {"patience": 2}}]), ObjectiveConfig(metric="val_accuracy", mode="max"))
    names = [type(c).__name__ for c in made]
    assert names == ["EarlyStopping", "TerminateOnNaN"]
    assert made[0].monitor == "val_accuracy" and made[0].patience == 2


def test_unknown_callback_names_the_entry():
    with pytest.raises(InputError) as err:
        keras_callbacks(FitConfig(callbacks=["early_stoping"]), ObjectiveConfig())
    assert str(err.value) == (
        f"fit.callbacks.0: expected one of {', '.join(KERAS_CALLBACKS)} or package.module:Name, got 'early_stoping'; did you mean 'early_stopping'?"
    )


def test_a_users_own_callback_by_spec_with_arguments(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "e2e" / "user_code"))
    made = keras_callbacks(FitConfig(callbacks=[{"fit_shapes:CountEpochs": {"every": 2}}]), ObjectiveConfig())
    assert type(made[0]).__name__ == "CountEpochs" and made[0].every == 2
    with pytest.raises(InputError, match="expected valid arguments"):
        keras_callbacks(FitConfig(callbacks=[{"fit_shapes:CountEpochs": {"often": 2}}]), ObjectiveConfig())
    with pytest.raises(InputError, match="to make a keras.callbacks.Callback"):
        keras_callbacks(FitConfig(callbacks=["fit_shapes:onehot"]), ObjectiveConfig())


def test_a_callback_module_next_to_the_sweep_file_is_found_and_shipped_as_user_code(tmp_path):
    """``my_callbacks.py`` beside the sweep file imports without being on sys.path (the ``sweep``
    console script does not put the working directory there), as the model builder's module does,
    and is part of the user's code that reaches the workers."""
    import sys

    from sweep.inputs import imports

    (tmp_path / "beside_sweep_callbacks.py").write_text(
        "import keras\n\nclass Beside(keras.callbacks.Callback):\n    def __init__(self, every=1):\n        super().__init__()\n        self.every = every\n"
    )
    assert str(tmp_path) not in sys.path
    fit = FitConfig(callbacks=[{"beside_sweep_callbacks:Beside": {"every": 3}}])
    with pytest.raises(InputError, match=r"fit.callbacks.0: expected an importable module 'beside_sweep_callbacks'"):
        keras_callbacks(fit, ObjectiveConfig())
    made = keras_callbacks(fit, ObjectiveConfig(), (tmp_path,))
    assert type(made[0]).__name__ == "Beside" and made[0].every == 3
    assert "beside_sweep_callbacks" in imports.user_code((tmp_path,)).modules
