"""Reusing a warm worker's compiled model when the next trial has the same architecture.

A short trial's fixed cost is mostly Keras, not Ray: compiling and, above all, tracing the
train and eval functions on the first step (~0.4 s for a tiny MLP on one core, more than
three of its epochs). Consecutive trials on a worker often differ only in the learning rate,
batch size or seed, so they would trace the very same graph again.

How a trial reuses a model without changing its math:

1. The trial's model is built and compiled as usual, right after its seed is set (building
   is cheap; it is tracing that costs). Its freshly initialized variables are exactly the
   ones a cold run of this trial starts from, random-seed state of dropout layers included.
2. If a cached model has the same :func:`signature` (architecture, variable shapes, loss,
   metrics, optimizer class and every optimizer setting except a plain learning rate, steps
   per execution), the fresh variables are copied into it, and its optimizer's state is
   replaced by the state of the fresh optimizer built for the same variables (iterations 0,
   zero or initial-accumulator slots, the trial's learning rate). The cached model keeps its
   traced functions, so the trial starts training at once.
3. Anything else (another optimizer, momentum, shapes, layers, a model whose config cannot be
   serialized, a multi-GPU strategy) uses the fresh model, which then joins the cache.

The cache is per worker process and small, least recently used first out: at most
:data:`MAX_MODELS` entries, :data:`MAX_BYTES` of variables, and :data:`MAX_MB` of the worker's
resident memory. That last bound is the one that matters: a cached model's traced functions
(graphs, several per model as batch shapes vary) cost far more than its variables, and only the
process's memory shows it. So each cached model is charged what the worker's resident memory
grew by while it trained (measured at the next trial's reset, after the collection), and the
cache evicts until the charges fit (issue 18, section 5: a warm worker must not grow by 50 MB
over 100 trials). ``fit.reuse_model: false`` turns the cache off.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover - keras is imported by the worker, after its TF settings
    import keras

MAX_MODELS = 8  # compiled models kept per worker (e.g. one per optimizer of the space)
MAX_BYTES = 512 * 1024 * 1024  # variables (weights + optimizer slots) the cache may hold
MAX_MB = 40.0  # resident memory (MiB) the cached models may hold, as charged by ModelCache.settle (fit.reuse_model_mb)


def signature(model: keras.Model) -> str | None:
    """What must be equal for two compiled models to share traced functions; None: never reuse.

    A plain float learning rate is left out: it lives in a variable that can be assigned. A
    learning-rate schedule is part of the signature (its settings are baked into the graph).
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not getattr(model, "compiled", False) or not _is_graph_model(model):
        return None
    try:
        compile_config = dict(model.get_compile_config() or {})
        optimizer_config = dict(optimizer.get_config())
        architecture = model.get_config()  # layers only (to_json would add the compile config, lr included)
    except Exception:  # a subclassed model or a layer without get_config: rebuild every trial
        return None
    if isinstance(optimizer_config.get("learning_rate"), (int, float)):
        optimizer_config.pop("learning_rate")
    compile_config.pop("optimizer", None)
    shapes = [(v.path, tuple(v.shape), str(v.dtype)) for v in model.variables]
    payload = {
        "architecture": architecture,
        "variables": shapes,
        "compile": compile_config,
        "optimizer": [type(optimizer).__module__, type(optimizer).__qualname__, optimizer_config],
    }
    try:
        return json.dumps(payload, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return None


def _is_graph_model(model: keras.Model) -> bool:
    """Functional and Sequential models are fully described by their config; a subclassed
    model's ``call`` may depend on anything, so it is never shared."""
    cls = type(model)
    return cls.__module__.startswith("keras.") and cls.__name__ in {"Functional", "Sequential"}


def variable_bytes(model: keras.Model) -> int:
    """Bytes of a model's variables and its optimizer's slots (once built)."""
    variables = list(model.variables) + list(getattr(model.optimizer, "variables", []) or [])
    total = 0
    for variable in variables:
        count = 1
        for dim in variable.shape:
            count *= int(dim or 1)
        total += count * _itemsize(variable.dtype)
    return total


def _itemsize(dtype: Any) -> int:
    import keras
    import numpy as np

    try:
        return int(np.dtype(keras.backend.standardize_dtype(dtype)).itemsize)
    except TypeError:
        return 4


def _current_rss_mb() -> float | None:
    from sweep.worker.resources import current_rss_mb

    return current_rss_mb()


class ModelCache:
    """A worker's compiled models by signature, least recently used first out.

    ``rss`` reads the process's resident memory in MiB (None where it cannot be read: then
    only the count and variable bounds apply).
    """

    def __init__(
        self, max_models: int = MAX_MODELS, max_bytes: int = MAX_BYTES, max_mb: float = MAX_MB,
        rss: Callable[[], float | None] = _current_rss_mb,
    ):
        self.max_models, self.max_bytes, self.max_mb = max_models, max_bytes, max_mb
        self._rss = rss
        self._models: OrderedDict[str, "keras.Model"] = OrderedDict()
        self._charged_mb: dict[str, float] = {}
        self._training: tuple[str, float] | None = None  # the last trial's cached model and the RSS when it began
        self.hits = self.misses = 0

    @property
    def charged_mb(self) -> float:
        """Resident memory (MiB) charged to the cached models so far."""
        return sum(self._charged_mb.get(key, 0.0) for key in self._models)

    def __len__(self) -> int:
        return len(self._models)

    def take(self, fresh: keras.Model) -> tuple[keras.Model, bool]:
        """The model this trial trains, and whether it is a reused one.

        ``fresh`` is the trial's just-built, compiled model. A cached model with its signature
        comes back holding exactly ``fresh``'s initial state; otherwise ``fresh`` itself does,
        and is kept for the trials after this one.
        """
        key = signature(fresh)
        warming_up = self.hits + self.misses == 0  # a worker's first trial grows it by TensorFlow's own one-time state
        self._training = None
        if key is None:
            self.misses += 1
            return fresh, False
        rss = None if warming_up else self._rss()
        if rss is not None:
            self._training = (key, rss)
        cached = self._models.get(key)
        if cached is not None and _load_initial_state(cached, fresh):
            self._models.move_to_end(key)
            self.hits += 1
            return cached, True
        self.misses += 1
        self._models[key] = fresh
        self._models.move_to_end(key)
        self._evict()
        return fresh, False

    def clear(self) -> None:
        """Forget every kept model (the user's code changed under them)."""
        self._models.clear()
        self._charged_mb.clear()
        self._training = None

    def settle(self) -> None:
        """Charge the last trial's cached model what the worker's memory grew by since it began
        (call between trials, after the garbage collection), then evict to fit :data:`MAX_MB`.

        A reused model that traced again (a new batch shape) is charged the growth too; a
        trial that freed memory charges nothing; the worker's first trial charges nothing (its
        growth is mostly TensorFlow's own one-time state: kernels, thread pools). The newest
        model is always kept.
        """
        training, self._training = self._training, None
        if training is None:
            return
        key, began = training
        now = self._rss()
        if now is not None and key in self._models:
            self._charged_mb[key] = self._charged_mb.get(key, 0.0) + max(0.0, now - began)
        self._evict()

    def _evict(self) -> None:
        while len(self._models) > self.max_models:
            self._drop_oldest()
        while len(self._models) > 1 and sum(variable_bytes(m) for m in self._models.values()) > self.max_bytes:
            self._drop_oldest()
        while len(self._models) > 1 and self.charged_mb > self.max_mb:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        key, _ = self._models.popitem(last=False)
        self._charged_mb.pop(key, None)


def _load_initial_state(cached: keras.Model, fresh: keras.Model) -> bool:
    """Copy ``fresh``'s variables and a fresh optimizer state into ``cached``; False if they don't line up."""
    targets, sources = list(cached.variables), list(fresh.variables)
    if not _same_shapes(targets, sources):
        return False
    optimizer = fresh.optimizer
    if not optimizer.built:  # slots for the cached model's variables, initialized as a fresh fit would
        optimizer.build(cached.trainable_variables)
    cached_slots, fresh_slots = list(cached.optimizer.variables), list(optimizer.variables)
    if not _same_shapes(cached_slots, fresh_slots):
        return False
    for target, source in zip(targets + cached_slots, sources + fresh_slots):
        target.assign(source)
    return True


def _same_shapes(targets: list[Any], sources: list[Any]) -> bool:
    return len(targets) == len(sources) and all(
        tuple(t.shape) == tuple(s.shape) and str(t.dtype) == str(s.dtype) for t, s in zip(targets, sources)
    )
