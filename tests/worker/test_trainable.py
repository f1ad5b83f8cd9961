"""sweep.worker.trainable / sweep.worker.resources pieces, run directly in this process (real Keras, no Ray).

A trial's numbers must not depend on how it was run: several steps per execution give the
same per-epoch metrics as a plain ``model.fit()``; a trial after another one on the same
(reused) worker gives the same metrics as the first trial of a fresh worker.
"""

from __future__ import annotations

import functools
import json
import os

import keras
import numpy as np
import pytest

from sweep.inputs import models
from sweep.worker import trainable
from sweep.worker import resources
from sweep.worker.state import STATE
from sweep.spec.config import FitConfig, ModelConfig
from sweep.inputs.dataset import DataInfo

SEED, EPOCHS, ROWS = 7, 3, 480
HP = {"learning_rate": 0.01, "optimizer": "adam", "batch_size": 32}


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS + 160, 12)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64") + (x[:, 2] > 1).astype("int64")
    info = DataInfo(input_shape=(12,), num_outputs=3, task="classification", n_train=ROWS, n_val=160, source="test", fingerprint="t")
    return x[:ROWS], y[:ROWS], x[ROWS:], y[ROWS:], info


BUILDER = functools.partial(models.mlp, units=[32, 32])


def sweep_trial(arrays, hp: dict, steps: int | str = "auto") -> tuple[dict, keras.Model]:
    """What ``trainable.run_trial`` does around ``fit()``, minus the Tune report."""
    x, y, xv, yv, info = arrays
    STATE.reset(SEED)
    batch = int(hp["batch_size"])
    model = models.build(BUILDER, hp, info, ModelConfig(), steps_per_execution=resources.steps_per_execution(steps, batch, len(x)))
    history = model.fit(
        x, y, batch_size=batch, epochs=EPOCHS, validation_data=(xv, yv), validation_batch_size=max(batch, 1024), shuffle=True, verbose=0
    )
    return history.history, model


def plain_fit(arrays, hp: dict) -> dict:
    """The reference: a plain compile + fit of the same model with the same seed."""
    x, y, xv, yv, info = arrays
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    model = BUILDER(hp, info)
    model.compile(optimizer=keras.optimizers.Adam(hp["learning_rate"]), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model.fit(x, y, batch_size=hp["batch_size"], epochs=EPOCHS, validation_data=(xv, yv), shuffle=True, verbose=0).history


def assert_same_history(got: dict, want: dict, atol: float) -> None:
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=atol, err_msg=name)


@pytest.mark.parametrize(
    ("setting", "batch", "rows", "expected"),
    [("auto", 32, 480, 15), ("auto", 16, 12800, 32), ("auto", 64, 12800, 32), ("auto", 128, 12800, 32), ("auto", 1, 1, 1), (4, 32, 480, 4), (None, 32, 31, 1)],
)
def test_steps_per_execution(setting, batch, rows, expected):
    got = resources.steps_per_execution(setting, batch, rows)
    assert got == expected
    steps = -(-rows // batch)
    assert got <= max(steps, 1) or setting not in ("auto", None)


@pytest.mark.parametrize(("steps_per_epoch", "validation_steps", "expected"), [(5, None, 5), (100, None, 25), (37, None, 1), (64, None, 32), (None, 2, 2), (10, 4, 2)])
def test_auto_steps_per_execution_divides_set_step_counts(steps_per_epoch, validation_steps, expected):
    got = resources.steps_per_execution("auto", 16, 320, steps_per_epoch=steps_per_epoch, validation_steps=validation_steps)
    assert got == expected


def test_fit_steps_per_epoch_and_validation_steps_on_arrays_match_a_plain_fit(arrays):
    """fit.steps_per_epoch trains that many batches per epoch and fit.validation_steps
    validates that many batches of the trial's batch size, exactly as a plain fit() does
    (the automatic steps per call had run the whole epoch; validation had used 1024-row batches)."""
    x, y, xv, yv, info = arrays
    hp, epoch_steps, validation_steps = {**HP, "batch_size": 16}, 5, 2

    def fit(steps_per_execution: int, **data) -> dict:
        STATE.reset(SEED)
        model = models.build(BUILDER, hp, info, ModelConfig(), steps_per_execution=steps_per_execution)
        return model.fit(**data, epochs=EPOCHS, steps_per_epoch=epoch_steps, validation_steps=validation_steps, shuffle=False, verbose=0).history

    dataset = type("Arrays", (), {"pipeline": None, "x_train": x, "y_train": y, "sample_weight": None, "validation_data": lambda self: (xv, yv)})()
    per_call = resources.steps_per_execution("auto", 16, len(x), steps_per_epoch=epoch_steps, validation_steps=validation_steps)
    swept = fit(per_call, **trainable.fit_inputs(dataset, 16))
    plain = fit(1, x=x, y=y, batch_size=16, validation_data=(xv, yv))
    assert_same_history(swept, plain, atol=1e-6)


def test_fit_config_steps_per_execution_key():
    assert FitConfig().steps_per_execution == "auto"
    assert FitConfig(steps_per_execution=8).steps_per_execution == 8
    with pytest.raises(ValueError):
        FitConfig(steps_per_execution=0)


def test_several_steps_per_execution_match_a_plain_fit(arrays):
    want = plain_fit(arrays, HP)
    auto, model = sweep_trial(arrays, HP)
    assert int(model.steps_per_execution) == 15  # the whole 15-step epoch in one call
    assert_same_history(auto, want, atol=1e-5)
    uneven, _ = sweep_trial(arrays, HP, steps=4)  # 15 steps in calls of 4: last call shorter
    assert_same_history(uneven, want, atol=1e-5)


def test_a_trial_after_another_trial_matches_a_first_trial(arrays):
    first, first_model = sweep_trial(arrays, HP)
    first_names = [layer.name for layer in first_model.layers]
    first_weights = [w.copy() for w in first_model.get_weights()]
    del first_model
    # a different trial on the same worker: other optimizer (other slot variables), other batch
    sweep_trial(arrays, {"learning_rate": 0.05, "optimizer": "rmsprop", "batch_size": 16})
    again, again_model = sweep_trial(arrays, HP)
    assert_same_history(again, first, atol=0)  # bit-identical: nothing bled over
    assert [layer.name for layer in again_model.layers] == first_names  # Keras name counters were reset
    assert len(again_model.optimizer.variables) == len(keras.optimizers.Adam().variables) + 2 * len(again_model.trainable_weights)
    for got, want in zip(again_model.get_weights(), first_weights):
        np.testing.assert_array_equal(got, want)


def test_a_warm_worker_keeps_no_traced_graph_of_an_earlier_trial(arrays):
    """Issue 18 (rel-14): each trace of a train step registered a ``CustomGradient-*`` entry in
    TensorFlow's global gradient registry holding the whole traced graph (~5 MB a trial); the
    reset drops them, so the number of live ``FuncGraph`` objects stays flat trial after trial."""
    import gc

    from tensorflow.python.framework import ops as tf_ops

    def live_graphs() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o).__name__ == "FuncGraph")

    counts = []
    for optimizer in ("adam", "sgd", "rmsprop", "adam"):  # a fresh model (and trace) each trial
        sweep_trial(arrays, {**HP, "optimizer": optimizer})
        STATE.reset(SEED)
        counts.append(live_graphs())
        assert not [k for k in tf_ops._gradient_registry._registry if str(k).startswith("CustomGradient-")]
    assert counts[-1] <= counts[0], counts


def test_worker_reports_its_memory():
    fields = resources.memory_fields()
    assert fields[resources.RSS_FIELD] > 50  # a process with TensorFlow loaded uses well over 50 MiB
    assert 50 < fields[resources.CURRENT_RSS_FIELD] <= fields[resources.RSS_FIELD] + 1  # now, never above the peak


def test_current_memory_follows_what_the_process_holds():
    before = resources.current_rss_mb()
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched
    held = resources.current_rss_mb()
    del block
    after = resources.current_rss_mb()
    assert held - before > 50 and held - after > 50, (before, held, after)


def test_trace_writes_json_lines_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.delenv(resources.TRACE_ENV, raising=False)
    silent = resources.Trace("t0")
    silent.mark("trial_start")
    assert silent.path is None
    monkeypatch.setenv(resources.TRACE_ENV, str(tmp_path))
    trace = resources.Trace("t1")
    trace.mark("trial_start")
    trace.mark("epoch_end", epoch=0, value=0.5)
    lines = (tmp_path / f"trace-{os.getpid()}.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["trial_start", "epoch_end"]


def test_resuming_from_a_checkpoint_that_is_gone_says_so(tmp_path):
    present = tmp_path / "checkpoint_000001"
    present.mkdir()
    (present / "model.keras").write_bytes(b"zip")
    assert trainable.resume_checkpoint(str(present)).path == str(present)
    gone = tmp_path / "checkpoint_000002"
    with pytest.raises(FileNotFoundError, match="cannot resume this trial: its checkpoint .*checkpoint_000002 is gone"):
        trainable.resume_checkpoint(str(gone))


def _conv_net(batch_size: int | None = None) -> keras.Model:
    inputs = keras.Input((48, 48, 3), batch_size=batch_size)
    x = keras.layers.Conv2D(128, 3, padding="same")(inputs)
    x = keras.layers.Conv2D(128, 3, padding="same")(x)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(3)

    def call(self, x):
        return self.dense(x)


def test_validation_batches_grow_only_while_their_layer_outputs_stay_small(arrays):
    """fit.validation_batch_size auto validated every model in 1024-row batches: a conv net trained
    in batches of 8 peaked at 3367 MB where a plain fit() of it took 1057 MB (a new user's OOM)."""
    info = arrays[4]
    fit = FitConfig()
    conv = _conv_net()
    per_row = models.activation_bytes_per_row(conv)
    assert per_row >= 2 * 48 * 48 * 128 * 4, "both conv layers' outputs counted"
    rows = trainable.validation_batch_size(conv, 8, fit, info)
    assert 8 <= rows < 64 and rows * per_row <= trainable.VALIDATION_BATCH_BYTES, rows
    mlp = models.build(BUILDER, HP, info, ModelConfig())
    assert trainable.validation_batch_size(mlp, 32, fit, info) == trainable.VALIDATION_ROWS, "a small MLP keeps the fast path"
    assert trainable.validation_batch_size(mlp, 32, FitConfig(validation_batch_size=50), info) == 50
    assert trainable.validation_batch_size(mlp, 32, FitConfig(validation_steps=2), info) == 32
    subclassed = _Subclassed()
    subclassed(np.zeros((2, 12), "float32"))
    assert models.activation_bytes_per_row(subclassed) is None
    assert trainable.validation_batch_size(subclassed, 32, fit, info) == 32, "sizes unknown: a plain fit()'s batch"
    fixed = _conv_net(batch_size=16)
    assert models.fixed_batch_size(fixed) == 16 and models.fixed_batch_size(conv) is None
    assert trainable.validation_batch_size(fixed, 16, FitConfig(validation_batch_size=64), info) == 16, "a fixed-batch model takes no other"
