"""What a warm worker keeps between trials, and when it is cleared: one :class:`WorkerState`.

Tune reuses a worker (a Ray actor) for trial after trial (``reuse_actors``), so a worker process
imports TensorFlow once, fetches the sweep's parts and data from the object store once, and
keeps compiled models; before each trial it forgets what the previous trial left behind in
Keras and TensorFlow, so a trial on a reused worker computes exactly what it would on a fresh
one. Everything a worker keeps across trials is an attribute of the one :data:`STATE` of its
process, apart from three caches that belong to the modules that fill them: the pipelines
built on this worker (:func:`sweep.inputs.pipelines.datasets`, by fingerprint and batch size),
the sweep's checkpoint load settings (:func:`sweep.worker.checkpoints.use_model_settings`, set
by every trial) and Keras' saving skipsets (:mod:`sweep.worker.checkpoints`, per process).
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
import sys
from typing import Any

from sweep.spec.config import ResourcesConfig
from sweep.worker import placement
from sweep.worker.reuse import ModelCache

# Grappler skips function graphs smaller than this. Keras' fit() builds a new tf.data iterator
# for the training and the validation data every epoch, and each one instantiates the
# pipeline's small functions (index shuffle, batch slicing, gather; < 40 nodes each), which
# grappler optimized anew every time: 19 ms of a 34 ms epoch of a tiny MLP on one core. A
# model's train and eval step bodies are larger (85 nodes for the eval step of a one-layer
# MLP, hundreds to thousands for real models) and are still optimized, once per trace.
GRAPPLER_MIN_GRAPH_NODES = 40

FULL_GC_INTERVAL_S = 10.0  # seconds of trials between full garbage collections on a warm worker


class WorkerState:
    """The per-process state of a trial worker: what survives from one trial to the next.

    - ``parts``: the sweep's ``(settings, data_ref, builder)`` by the ObjectRef the trainable
      carries; fetched on the worker's first trial of a sweep, replaced by a new sweep's.
    - ``data``: the sweep's :class:`~sweep.inputs.dataset.Dataset` by its fingerprint and
      reference; fetched once per worker and sweep, replaced when another sweep's comes.
    - ``models``: compiled models by architecture (:class:`~sweep.worker.reuse.ModelCache`), so
      a trial with an earlier trial's architecture skips building and tracing (``fit.reuse_model``).
    - ``configured``: TensorFlow's threads, grappler and GPUs are set, and the imports' objects
      frozen out of the garbage collector (:meth:`configure`, once per process).
    - ``tf_seed``: TensorFlow's eager global seed as :meth:`reset` last set it; the same seed
      again lets a reset keep TensorFlow's compiled functions.
    - ``last_full_gc``: when :meth:`reset` last ran a full collection (``time.monotonic()``
      seconds; None before the first trial), against ``full_gc_interval_s``.
    - ``keras_config``: the worker's Keras settings (floatx, epsilon, image data format)
      before any trial changed them; every reset puts them back.
    """

    def __init__(self) -> None:
        self.parts: dict[Any, tuple] = {}
        self.data: dict[str, Any] = {}
        self.models = ModelCache()
        self.configured = False
        self.tf_seed: int | None = None
        self.last_full_gc: float | None = None
        self.full_gc_interval_s = FULL_GC_INTERVAL_S
        self.keras_config: dict[str, Any] = {}

    def bound_parts(self, parts_ref: Any) -> tuple:
        """The sweep's (settings, data_ref, builder), fetched from the object store once per worker."""
        return _fetched_once(self.parts, parts_ref, parts_ref)

    def fetch_data(self, data_ref: Any, fingerprint: str) -> Any:
        """The sweep's Dataset, fetched from the object store at most once per worker and sweep.

        Keyed by the sweep's reference, not only the data's fingerprint: the Dataset carries
        the sweep's own settings (``class_weight``), and a warm executor runs the next sweep
        over the same data with other settings."""
        return _fetched_once(self.data, (fingerprint, data_ref), data_ref)

    def forget_user_code(self) -> None:
        """Drop what was built from the user's modules as an earlier sweep imported them: the
        compiled models (a custom layer's ``call`` may have changed under the same config) and
        the pipelines built on this worker. A warm executor (``sweep.worker.executor``) calls
        this when a sweep comes with other or edited modules; Tune's own workers never see two."""
        from sweep.inputs import pipelines

        self.models.clear()
        pipelines.forget_built()

    def configure(self, resources: ResourcesConfig) -> None:
        """Once per worker process: TF threads to match the trial's CPUs, grappler's
        small-graph threshold, GPU memory growth on; and what the imports made frozen out of
        the garbage collector.

        TensorFlow and Keras give a worker ~430,000 tracked objects that live as long as it does;
        every full collection (:meth:`reset` runs one on a worker's first trial and then every
        ``FULL_GC_INTERVAL_S``) walked them all, 0.25-0.45 s each on 2 cores. ``gc.freeze()``
        moves them to the permanent generation that collections skip, so a full collection walks
        only what trials made. No collection before it: right after the imports there is next
        to nothing to collect (45 unreachable objects of 427,000 here).
        """
        if self.configured:
            return
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        threads = max(1, int(resources.cpus_per_trial))
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(max(1, min(threads, 2)))
        except RuntimeError:  # TF already initialised in this process: its settings stand
            pass
        tf.config.optimizer.set_experimental_options({"min_graph_nodes": GRAPPLER_MIN_GRAPH_NODES})
        placement.configure_gpus(resources)  # hide / share (memory limit) / grow, per gpus_per_trial
        gc.freeze()  # see the docstring
        self.configured = True

    def reset(self, seed: int, keep_compiled: bool = False) -> bool:
        """Forget everything the previous trial on this worker left behind, then seed; True when
        TensorFlow's compiled functions were kept.

        The one place a worker clears Keras (session, name counters, global settings), seeds
        Python, NumPy, Keras and TensorFlow, and collects the previous model's cycles.

        ``keep_compiled`` (a warm worker whose model cache may serve this trial, see
        :mod:`sweep.worker.reuse`) leaves TensorFlow's eager kernel cache alone when TensorFlow's seed
        is already ``seed``. Both ``clear_session()`` and ``tf.random.set_seed()`` empty that
        cache, which throws away the instantiated (grappler-optimized) train and eval functions
        of every cached model: a reused trial then paid ~100 ms in its first epoch to
        instantiate them again, and ~20 ms more building its model, about a third of a tiny
        trial. Everything else is reset exactly as the full path does (see
        :func:`_reset_keeping_compiled_functions`); tests prove a trial after it trains bit for
        bit like a first trial.

        Garbage: a full collection with TensorFlow loaded cost ~0.25-0.45 s on 2 cores (Keras'
        own ``clear_session()`` runs one by default, so calling both paid it twice); a
        young-generation one ~4 ms. Since :meth:`configure` freezes TensorFlow's objects,
        a full collection walks only what trials made, but it still grows with them. So each
        trial collects the young generations, where the previous trial's objects are, and a
        full collection runs on the first trial and then at most once per
        ``full_gc_interval_s``: one per trial when trials are long, one per few dozen when they
        take 0.2 s (where a full collection per 8 trials had cost 12% of the worker's time),
        which bounds what can creep into the old generation either way.
        """
        import time

        import keras

        kept = keep_compiled and self.tf_seed == seed and _reset_keeping_compiled_functions(seed)
        if not kept:
            keras.backend.clear_session(free_memory=False)
            keras.utils.set_random_seed(seed)
            self.tf_seed = seed
        self._restore_keras_config()
        _forget_custom_gradients()
        now = time.monotonic()
        if self.last_full_gc is None or now - self.last_full_gc >= self.full_gc_interval_s:
            gc.collect()
            _return_freed_memory()
            self.last_full_gc = now
        else:
            gc.collect(1)
        self.models.settle()  # charge the last trial's cached model what the worker grew by
        return kept

    def _restore_keras_config(self) -> None:
        """Put back the Keras settings that live outside ``clear_session()``'s reach (module
        globals, read from keras.json at import): a builder that calls ``keras.config.set_floatx``
        must not change the trials after it on this worker."""
        import keras

        settings = {
            "floatx": (keras.config.floatx, keras.config.set_floatx),
            "epsilon": (keras.config.epsilon, keras.config.set_epsilon),
            "image_data_format": (keras.config.image_data_format, keras.config.set_image_data_format),
        }
        if not self.keras_config:
            self.keras_config.update({name: get() for name, (get, _) in settings.items()})
        for name, (get, set_) in settings.items():
            if get() != self.keras_config[name]:
                set_(self.keras_config[name])


STATE = WorkerState()  # this process's: a worker runs one trial at a time, one sweep at a time


def _fetched_once(cache: dict, key: Any, ref: Any) -> Any:
    """``ray.get(ref)``, kept in ``cache`` under ``key``; a new key (a new sweep) replaces what was kept."""
    value = cache.get(key)
    if value is None:
        import ray

        cache.clear()
        value = cache[key] = ray.get(ref)
    return value


def _return_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere nothing).

    TensorFlow and Keras free a finished trial's graphs and tensors, but glibc keeps freed
    blocks in its arenas, so a warm worker's resident memory kept the high-water mark of every
    trial's fragmentation: ~0.5 MB more per trial on real Ray workers (issue 18, rel-14). Trimming
    after a full collection costs a few milliseconds, at most once per ``full_gc_interval_s``.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl, or no libc.so.6
        return None


def _forget_custom_gradients() -> int:
    """Drop the gradient functions earlier trials' traces registered in TensorFlow's global
    gradient registry; how many were dropped.

    This was the memory a warm worker gained every trial (issue 18, rel-14; ~5 MB a trial, with
    ``fit.reuse_model`` on or off): each trace of a train step in graph mode runs
    ``tf.custom_gradient`` (Keras' optimizer all-reduces its gradients through the replica
    context, whose ``all_reduce`` has a custom gradient), which registers a new
    ``CustomGradient-<uid>`` entry in ``ops._gradient_registry`` and never removes it. The
    entry's closure holds the traced train function's whole ``FuncGraph`` (thousands of
    Python ops and tensors), so no model, cache or ``clear_session()`` could let it go.

    The entries are only looked up while a graph that calls them is being differentiated,
    i.e. while a train step is traced; a trace registers its own. At a trial's reset every
    trace of earlier trials is finished (a reused model's functions are already concrete), so
    none is needed any more. A TensorFlow version that lays the registry out otherwise: nothing.
    """
    try:
        from tensorflow.python.framework import ops as tf_ops

        entries = tf_ops._gradient_registry._registry
    except (ImportError, AttributeError):
        return 0
    stale = [name for name in list(entries) if isinstance(name, str) and name.startswith("CustomGradient-")]
    for name in stale:
        entries.pop(name, None)
    return len(stale)


def _reset_keeping_compiled_functions(seed: int) -> bool:
    """``clear_session()`` + ``set_random_seed(seed)`` minus the emptying of TF's kernel cache.

    What it resets: Keras' per-thread global state and settings (name counters, dtype
    policy, floatx and the rest), which is what ``clear_session()`` replaces besides the
    kernel cache; TF1's default graph; the Python, NumPy and Keras seeds, through
    ``set_random_seed`` with TensorFlow's part aimed at a throwaway graph, so TensorFlow's
    eager seed stays the ``seed`` it already is. Keras 3 layers and ``keras.random`` draw
    through stateless ops seeded from those, and ``fit()``'s shuffling is traced in graphs
    whose seeds derive from the global seed, so the math equals a cold run.

    What it does not reset: the state of TensorFlow's *stateful* random kernels (e.g.
    ``tf.random.uniform`` called outside ``keras.random`` inside a custom layer or in the
    builder), which would go on drawing where the previous trial stopped on this worker
    instead of starting over. ``fit.reuse_model: false`` restores the full reset.

    Keras has no public call for the first part: it uses the module state that
    ``clear_session()`` itself replaces, and returns False (the caller then does the full
    reset) when a Keras version lays it out differently.
    """
    import threading

    import keras
    import tensorflow as tf

    try:
        from keras.src.backend.common import global_state
    except ImportError:
        return False
    if not (hasattr(global_state, "GLOBAL_STATE_TRACKER") and hasattr(global_state, "GLOBAL_SETTINGS_TRACKER")):
        return False
    global_state.GLOBAL_STATE_TRACKER = threading.local()
    global_state.GLOBAL_SETTINGS_TRACKER = threading.local()
    tf.compat.v1.reset_default_graph()
    with tf.Graph().as_default():  # tf.random.set_seed only sets this graph's seed: no cache clearing
        keras.utils.set_random_seed(seed)
    return True
