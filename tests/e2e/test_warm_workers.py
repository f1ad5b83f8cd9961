"""Warm workers on real Ray: a trial on a reused worker computes what it computes on a fresh one.

Three trials run one after another through sweep's own trainable, on one reused worker:
adam, then rmsprop (other optimizer slots, other batch size), then adam again. The third reuses
the first one's compiled model (sweep.worker.reuse) and must reproduce the first bit for bit, and both
must match a plain in-process fit of the same seed.
"""

from __future__ import annotations

from typing import Any

import functools
from collections import defaultdict

import keras
import numpy as np
import pytest
from ray import tune

from sweep.inputs import models
from sweep.worker import launch, trainable
from sweep.spec.config import FitConfig, ModelConfig, ObjectiveConfig, ResourcesConfig
from sweep.inputs.dataset import DataInfo, Dataset
from sweep.protocol import CURRENT_RSS_FIELD, EPOCH_SECONDS_FIELD, KEYS_FIELD, REUSED_FIELD, RSS_FIELD

pytestmark = pytest.mark.slow

SEED, EPOCHS = 3, 3
UNITS = [32, 32]


class Collector(tune.Callback):
    """A Tune callback keeping every result, by trial, in order (driver side)."""

    def __init__(self):
        self.results = defaultdict(list)
        self.configs = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results[trial.trial_id].append(result)
        self.configs[trial.trial_id] = dict(trial.config)


def dataset() -> Dataset:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 10)).astype("float32")
    y = ((x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5)).astype("int64")
    info = DataInfo(input_shape=(10,), num_outputs=3, task="classification", n_train=480, n_val=120, source="test", fingerprint="warm")
    return Dataset(x[:480], y[:480], x[480:], y[480:], info)


@pytest.fixture(scope="module")
def three_trials(ray_session, tmp_path_factory):
    return run_three_trials(FitConfig(epochs=EPOCHS), tmp_path_factory.mktemp("warm"))


def run_three_trials(fit: FitConfig, storage: Any):
    """adam, rmsprop, adam on one reused worker; (data, configs, each trial's results) in order."""
    import ray

    data = dataset()
    settings = trainable.TrialSettings(
        fit=fit, model=ModelConfig(args={"units": UNITS}), objective=ObjectiveConfig(metric="val_accuracy", mode="max"),
        resources=ResourcesConfig(), epochs=EPOCHS, seed=SEED,
    )
    builder = models.resolve_builder(settings.model)
    collector = Collector()
    tuner = tune.Tuner(
        launch.make(settings, ray.put(data), data.info.fingerprint, builder),
        param_space={
            "learning_rate": 0.01,
            "optimizer": tune.grid_search(["adam", "rmsprop", "adam"]),
            "batch_size": tune.sample_from(lambda spec: 16 if spec.config.optimizer == "rmsprop" else 32),
        },
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(storage), callbacks=[collector], verbose=0),
    )
    grid = tuner.fit()
    assert not grid.errors, grid.errors
    trials = sorted(collector.results.values(), key=lambda results: results[0]["timestamp"])
    return data, [collector.configs[r[0]["trial_id"]] for r in trials], trials


def history(results: list[dict]) -> dict[str, list[float]]:
    names = results[0][KEYS_FIELD].split(",")
    return {name: [r[name] for r in results] for name in names}


def test_three_trials_ran_on_one_reused_worker(three_trials):
    _, configs, trials = three_trials
    assert [c["optimizer"] for c in configs] == ["adam", "rmsprop", "adam"]
    assert [len(t) for t in trials] == [EPOCHS] * 3
    assert len({r["pid"] for t in trials for r in t}) == 1  # one process ran all three
    # the third trial (adam again, same architecture) trained the first trial's compiled model
    assert [t[0][REUSED_FIELD] for t in trials] == [False, False, True]


def test_the_memory_budget_of_kept_models_reaches_the_worker(ray_session, tmp_path):
    """fit.reuse_model_mb: with no memory for kept models, the rmsprop trial's growth pushes
    the first adam model out, and the third trial builds anew."""
    _, _, trials = run_three_trials(FitConfig(epochs=EPOCHS, reuse_model_mb=1e-6), tmp_path)
    assert [t[0][REUSED_FIELD] for t in trials] == [False, False, False]


def test_a_reused_worker_reproduces_a_fresh_one_bit_for_bit(three_trials):
    _, _, (first, _, third) = three_trials
    assert history(third) == history(first)
    assert history(first)["val_accuracy"] != []


def test_worker_metrics_match_a_plain_fit(three_trials):
    data, _, (first, _, _) = three_trials
    keras.utils.set_random_seed(SEED)
    model = functools.partial(models.mlp, units=UNITS)({}, data.info)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    plain = model.fit(data.x_train, data.y_train, batch_size=32, epochs=EPOCHS, validation_data=(data.x_val, data.y_val), verbose=0).history
    got = history(first)
    for name, values in plain.items():
        np.testing.assert_allclose(got[name], values, rtol=0, atol=1e-4, err_msg=name)


def test_results_carry_worker_memory_but_not_as_keras_metrics(three_trials):
    _, _, trials = three_trials
    for result in (r for t in trials for r in t):
        assert result[RSS_FIELD] > 50 and 50 < result[CURRENT_RSS_FIELD] <= result[RSS_FIELD] + 1
        assert result[EPOCH_SECONDS_FIELD] > 0
        assert not {RSS_FIELD, CURRENT_RSS_FIELD} & set(result[KEYS_FIELD].split(","))  # so MLflow does not log it as a model metric


def test_a_worker_freezes_its_imports_and_still_collects_what_trials_leave(ray_session):
    """``WorkerState.configure`` moves TensorFlow's objects out of the collector's way; garbage made
    afterwards (a trial's reference cycles) is still collected."""
    import ray

    @ray.remote(num_cpus=1)
    def configured_worker() -> tuple[int, bool]:
        import gc
        import weakref

        from sweep.worker.state import STATE
        from sweep.spec.config import ResourcesConfig

        class Cycle:  # defined here: the worker cannot import this test module
            pass

        STATE.configure(ResourcesConfig())
        frozen = gc.get_freeze_count()
        a, b = Cycle(), Cycle()
        a.other, b.other = b, a
        probe = weakref.ref(a)
        del a, b
        gc.collect()
        return frozen, probe() is None

    frozen, collected = ray.get(configured_worker.remote())
    assert frozen > 100_000, "TensorFlow's objects should be in the permanent generation"
    assert collected, "a worker must still collect the garbage its trials make"


def test_a_worker_fetches_the_sweeps_parts_once_and_a_new_sweeps_parts_replace_them(ray_session):
    """The trainable carries one ObjectRef to (settings, data ref, builder); a worker fetches it on
    its first trial and keeps it, instead of a ``ray.get`` of every bound value on every trial."""
    import ray

    @ray.remote(num_cpus=1)
    class Worker:
        def parts(self, refs: list) -> tuple[bool, bool, int, str]:
            from sweep.worker.state import STATE

            first = STATE.bound_parts(refs[0])
            again = STATE.bound_parts(refs[0])
            other = STATE.bound_parts(refs[1])
            return again is first, other is not first, len(STATE.parts), other[0]

    worker = Worker.remote()
    refs = [ray.put(("sweep-a", None, None)), ray.put(("sweep-b", None, None))]
    same, replaced, kept, name = ray.get(worker.parts.remote(refs))
    assert same, "a second trial must reuse the parts its worker already fetched"
    assert replaced and name == "sweep-b", "a new sweep's parts must be fetched"
    assert kept == 1, "only the current sweep's parts stay on the worker"
    ray.kill(worker)
