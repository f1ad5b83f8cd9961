"""sweep.worker.state: what a warm worker keeps between trials, and the reset before each trial.

Real Keras in this process for the reset; a stand-in for ``ray.get`` for the object-store caches.
"""

from __future__ import annotations

import keras
import numpy as np

from sweep.spec.config import ResourcesConfig
from sweep.worker.state import STATE, WorkerState

SEED = 7


def keras_draws() -> tuple:
    """What a seeded trial draws first: Python, NumPy, a Keras initializer, a Keras layer name."""
    import random

    initial = keras.ops.convert_to_numpy(keras.initializers.GlorotUniform()((3, 2)))
    return random.random(), float(np.random.rand()), initial.tolist(), keras.layers.Dense(1).name


def test_the_reset_that_keeps_compiled_functions_resets_everything_else():
    assert STATE.reset(SEED) is False  # the full reset; TensorFlow's seed is now SEED
    want = keras_draws()
    # what a previous trial may leave behind: layer names taken, global settings changed, draws made
    keras.layers.Dense(1), keras.layers.Dense(1)
    for keep in (True, False):
        keras.config.set_floatx("float16")
        keras.config.set_epsilon(1e-3)
        keras.config.set_image_data_format("channels_first")
        keras.config.set_dtype_policy("mixed_float16")
        keras_draws()
        assert STATE.reset(SEED, keep_compiled=keep) is keep
        assert (keras.config.floatx(), keras.config.epsilon(), keras.config.image_data_format()) == ("float32", 1e-7, "channels_last")
        assert keras.config.dtype_policy().name == "float32"
        assert keras_draws() == want  # same seeds, same first layer name
    # another seed than TensorFlow's: the full reset, which also reseeds TensorFlow
    assert STATE.reset(SEED + 1, keep_compiled=True) is False
    assert STATE.reset(SEED + 1, keep_compiled=True) is True


def test_data_and_parts_are_fetched_once_per_worker_and_replaced_by_a_new_sweeps(monkeypatch):
    import ray

    fetched = []
    monkeypatch.setattr(ray, "get", lambda ref: fetched.append(ref) or {"value": ref})
    state = WorkerState()
    first = state.fetch_data("ref-a", "fingerprint-a")
    assert state.fetch_data("ref-a", "fingerprint-a") is first and fetched == ["ref-a"]
    state.fetch_data("ref-b", "fingerprint-b")  # another sweep's data: fetched, the old one let go
    assert fetched == ["ref-a", "ref-b"] and list(state.data) == [("fingerprint-b", "ref-b")]
    # the same data in a later sweep (a warm executor's next sweep) comes with that sweep's own
    # settings (class_weight) under its own reference: fetched again, not the earlier sweep's
    state.fetch_data("ref-c", "fingerprint-b")
    assert fetched == ["ref-a", "ref-b", "ref-c"] and list(state.data) == [("fingerprint-b", "ref-c")]
    parts = state.bound_parts("parts-1")
    assert state.bound_parts("parts-1") is parts and fetched[-1] == "parts-1" and len(fetched) == 4
    state.bound_parts("parts-2")
    assert list(state.parts) == ["parts-2"]


def test_a_worker_is_configured_once(monkeypatch):
    """Threads, grappler, GPUs and the freeze happen on the first trial only (stand-ins here:
    this test process must keep its own TensorFlow settings and garbage collector)."""
    import gc

    import tensorflow as tf

    from sweep.worker import placement

    calls = []
    monkeypatch.setattr(placement, "configure_gpus", lambda resources: calls.append("gpus"))
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(tf.config.optimizer, "set_experimental_options", lambda options: calls.append(options))
    monkeypatch.setattr(tf.config.threading, "set_intra_op_parallelism_threads", lambda n: calls.append(("intra", n)))
    monkeypatch.setattr(tf.config.threading, "set_inter_op_parallelism_threads", lambda n: calls.append(("inter", n)))
    state = WorkerState()
    state.configure(ResourcesConfig(cpus_per_trial=4))
    state.configure(ResourcesConfig(cpus_per_trial=2))
    assert state.configured
    assert calls == [("intra", 4), ("inter", 2), {"min_graph_nodes": 40}, "gpus", "freeze"]


def test_a_full_collection_runs_on_the_first_reset_and_then_once_per_interval():
    state = WorkerState()
    state.reset(SEED)
    first = state.last_full_gc
    assert first is not None and state.tf_seed == SEED
    state.reset(SEED)
    assert state.last_full_gc == first  # within the interval: a young-generation collection only
    state.full_gc_interval_s = 0.0
    state.reset(SEED)
    assert state.last_full_gc > first
