"""sweep.reuse: a warm worker's compiled model serves the next trial with the same architecture.

Real Keras in this process. The promise is the same math: a trial trained on a reused model
logs exactly the per-epoch metrics of a fresh build with its seed; anything that changes the
traced graph (optimizer, its settings, shapes, layers) builds anew.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest

from sweep.inputs import models
from sweep.spec.config import ModelConfig
from sweep.inputs.dataset import DataInfo
from sweep.worker.reuse import ModelCache, signature
from sweep.worker.state import STATE

EPOCHS = 3


def make_data(features: int = 10, rows: int = 256, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows + 64, features)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64") + (x[:, 2] > 1).astype("int64")
    info = DataInfo(input_shape=(features,), num_outputs=3, task="classification", n_train=rows, n_val=64, source="test", fingerprint=f"f{features}")
    return x[:rows], y[:rows], x[rows:], y[rows:], info


DATA = make_data()
BUILDER = functools.partial(models.mlp, units=[24, 24], dropout=0.2)


def trial(hp: dict, seed: int, cache: ModelCache | None, data=DATA) -> tuple[dict, bool, keras.Model]:
    """What trainable.run_trial does: reset + seed, build + compile, take from the cache, fit."""
    x, y, xv, yv, info = data
    STATE.reset(seed, keep_compiled=cache is not None and len(cache) > 0)
    model = models.build(BUILDER, hp, info, ModelConfig(), steps_per_execution=4)
    reused = False
    if cache is not None:
        model, reused = cache.take(model)
    history = model.fit(x, y, batch_size=int(hp.get("batch_size", 32)), epochs=EPOCHS, validation_data=(xv, yv), shuffle=True, verbose=0)
    return history.history, reused, model


def test_a_reused_model_trains_exactly_like_a_fresh_build():
    cache = ModelCache()
    first, reused_first, _ = trial({"optimizer": "adam", "learning_rate": 0.03}, seed=1, cache=cache)
    second, reused_second, model = trial({"optimizer": "adam", "learning_rate": 0.002, "batch_size": 16}, seed=2, cache=cache)
    assert (reused_first, reused_second) == (False, True)
    assert cache.hits == 1
    fresh, _, _ = trial({"optimizer": "adam", "learning_rate": 0.002, "batch_size": 16}, seed=2, cache=None)
    assert second == fresh  # bit for bit: weights, dropout seeds, optimizer state, shuffling
    assert second != first
    assert float(model.optimizer.learning_rate) == pytest.approx(0.002)


def test_a_reused_model_on_a_worker_that_kept_its_compiled_functions_trains_like_a_fresh_build():
    """The sweep's seed is the same for every trial, so a warm worker keeps TensorFlow's
    instantiated functions (WorkerState.reset): the numbers must not change."""
    cache = ModelCache()
    trial({"optimizer": "adam", "learning_rate": 0.03}, seed=11, cache=cache)
    kept = STATE.reset(11, keep_compiled=True)
    assert kept  # the fast reset ran (same seed, Keras laid out as expected)
    second, reused, _ = trial({"optimizer": "adam", "learning_rate": 0.002, "batch_size": 16}, seed=11, cache=cache)
    assert reused
    fresh, _, _ = trial({"optimizer": "adam", "learning_rate": 0.002, "batch_size": 16}, seed=11, cache=None)
    assert second == fresh  # bit for bit, shuffling and dropout included


def test_nothing_of_the_previous_trial_survives_in_a_reused_model():
    cache = ModelCache()
    trial({"optimizer": "rmsprop", "learning_rate": 0.05}, seed=3, cache=cache)
    x, y, xv, yv, info = DATA
    STATE.reset(4)
    fresh = models.build(BUILDER, {"optimizer": "rmsprop", "learning_rate": 0.01}, info, ModelConfig(), steps_per_execution=4)
    initial = [keras.ops.convert_to_numpy(v) for v in fresh.variables]
    model, reused = cache.take(fresh)
    assert reused and model is not fresh
    for got, want in zip(model.variables, initial):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got), want)  # the trial's own seeded weights
    assert int(model.optimizer.iterations) == 0
    slots = [v for v in model.optimizer.variables if "velocity" in v.path or "momentum" in v.path]
    assert slots and all(not np.any(keras.ops.convert_to_numpy(v)) for v in slots)  # no optimizer state carried over


@pytest.mark.parametrize(
    ("changed", "why"),
    [
        ({"optimizer": "sgd", "learning_rate": 0.01}, "another optimizer"),
        ({"optimizer": "adam", "learning_rate": 0.01, "beta_1": 0.5}, "an optimizer setting baked into the graph"),
        ({"optimizer": "adam", "learning_rate": 0.01, "units": 16}, "another layer width"),
        ({"optimizer": "adam", "learning_rate": 0.01, "dropout": 0.0}, "another layer stack"),
    ],
)
def test_a_change_that_alters_the_graph_builds_anew(changed, why):
    cache = ModelCache()
    trial({"optimizer": "adam", "learning_rate": 0.01}, seed=1, cache=cache)
    history, reused, _ = trial(changed, seed=5, cache=cache)
    assert not reused, why
    fresh, _, _ = trial(changed, seed=5, cache=None)
    assert history == fresh
    assert len(cache) == 2  # both kept: the sweep may come back to either


def test_another_input_shape_builds_anew():
    cache = ModelCache()
    trial({"learning_rate": 0.01}, seed=1, cache=cache)
    _, reused, model = trial({"learning_rate": 0.01}, seed=1, cache=cache, data=make_data(features=7))
    assert not reused
    assert tuple(model.inputs[0].shape) == (None, 7)


def test_the_cache_keeps_the_most_recently_used_models_only():
    cache = ModelCache(max_models=2)
    for units in (8, 12, 16):
        trial({"learning_rate": 0.01, "units": units}, seed=1, cache=cache)
    assert len(cache) == 2
    _, reused_oldest, _ = trial({"learning_rate": 0.01, "units": 8}, seed=1, cache=cache)
    _, reused_newest, _ = trial({"learning_rate": 0.01, "units": 16}, seed=1, cache=cache)
    assert (reused_oldest, reused_newest) == (False, True)


def test_the_cache_respects_its_byte_budget():
    cache = ModelCache(max_bytes=1)  # any model is over budget: only the newest stays
    for units in (8, 12):
        trial({"learning_rate": 0.01, "units": units}, seed=1, cache=cache)
    assert len(cache) == 1


def test_the_cache_gives_back_the_memory_its_models_grew_the_worker_by():
    """Each cached model is charged what the worker's resident memory grew by while it trained;
    past ``max_mb`` the least recently used go, the newest stays (issue 18, section 5)."""
    readings = iter([100.0, 115.0, 115.0, 131.0, 131.0, 129.0, 129.0])  # MiB at each take() and settle()
    cache = ModelCache(max_mb=20.0, rss=lambda: next(readings))
    trial({"learning_rate": 0.01, "units": 8}, seed=1, cache=cache)  # the worker's first trial: not charged (TensorFlow warming up)
    cache.settle()
    assert (len(cache), cache.charged_mb) == (1, 0.0)
    trial({"learning_rate": 0.01, "units": 12}, seed=1, cache=cache)
    cache.settle()
    assert (len(cache), cache.charged_mb) == (2, 15.0)
    trial({"learning_rate": 0.01, "units": 16}, seed=1, cache=cache)
    cache.settle()  # 15 + 16 > 20: the older models go, the newest stays
    assert (len(cache), cache.charged_mb) == (1, 16.0)
    _, reused, _ = trial({"learning_rate": 0.02, "units": 16}, seed=2, cache=cache)
    cache.settle()  # a trial that freed memory charges nothing
    assert reused and (len(cache), cache.charged_mb) == (1, 16.0)
    _, reused, _ = trial({"learning_rate": 0.01, "units": 8}, seed=1, cache=cache)
    assert not reused


def test_the_worker_charges_its_cache_the_memory_a_real_trial_kept():
    cache = ModelCache()
    for units in (20, 28):
        trial({"learning_rate": 0.01, "units": units}, seed=1, cache=cache)
        cache.settle()
    assert len(cache) == 2 and 0.0 <= cache.charged_mb < 200.0  # measured from /proc: a tiny MLP's traces


def test_models_without_a_config_are_never_shared():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3, activation="softmax")

        def call(self, inputs):
            return self.dense(inputs)

    model = Subclassed()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert signature(model) is None
    fresh, reused = ModelCache().take(model)
    assert fresh is model and not reused
    assert signature(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])) is None  # not compiled
