"""What the sweep did to the inputs before ``fit()``, and the same steps as Keras layers.

The built-in sources (and ``data.normalize`` / ``data.reshape`` for a user's arrays) prepare the
inputs: floating-point features standardized with the train split's per-feature mean and std,
keras image datasets divided by 255 (and given a channel axis), a single input reshaped. The
trials train on the prepared arrays, so a trained model expects prepared rows. Handed out as it
is, that model is a trap: on the rows the data source gives (a CSV file's own columns, MNIST's
0..255 pixels) it predicts without a word of warning, and wrongly (0.48 accuracy on digits where
the sweep reported 0.99).

:class:`Preparation` records the steps (:func:`fit` learns them from the training inputs,
:meth:`Preparation.apply` applies them to arrays), and :meth:`Preparation.front` puts the same
steps in front of a trained model as Keras' own ``Reshape``, ``Normalization`` and ``Rescaling``
layers. The best model the sweep logs, registers and exports is that model: it takes the inputs
as the data source gives them, and loads in ``safe_mode`` with nothing but Keras.

Light at module level (NumPy only): the data loader imports it; Keras is imported by ``front``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sweep.inputs.structures import is_nested, leaves, map_leaves, named_leaves, rebuild

__all__ = ["InputSteps", "Preparation", "fit"]

IMAGE_SCALE = 1.0 / 255.0  # keras image datasets: 0..255 pixels -> 0..1


@dataclass(frozen=True)
class InputSteps:
    """One input's steps, in the order they run: reshape to ``stats_shape``, standardize with
    ``mean``/``std`` (each of ``stats_shape``) or multiply by ``scale``, reshape to ``shape``.

    Shapes are one sample's (no batch dimension); ``raw_shape`` and ``dtype`` are the input as
    the data source gives it.
    """

    raw_shape: tuple[int, ...]
    dtype: str
    stats_shape: tuple[int, ...]
    shape: tuple[int, ...]
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    scale: float | None = None

    @property
    def changes_anything(self) -> bool:
        return self.mean is not None or self.scale is not None or self.shape != self.raw_shape or self.stats_shape != self.raw_shape

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The steps on rows ``x`` of ``raw_shape`` (any number of rows); ``x`` itself when none."""
        if not self.changes_anything:
            return x
        x = x.reshape((len(x), *self.stats_shape))
        if self.mean is not None:
            x = (x.astype(self.mean.dtype, copy=False) - self.mean) / self.std
        elif self.scale is not None:
            x = x * np.asarray(self.scale, dtype=x.dtype)
        return x.reshape((len(x), *self.shape))


@dataclass(frozen=True)
class Preparation:
    """Every input's :class:`InputSteps`, in ``x``'s form (one, a list, or a dict by name)."""

    steps: Any = field(default=None)

    @property
    def changes_anything(self) -> bool:
        return self.steps is not None and any(s.changes_anything for s in leaves(self.steps))

    def apply(self, x: Any) -> Any:
        """The prepared form of inputs ``x`` (raw, in the form the data source gives)."""
        if not self.changes_anything:
            return x
        if not is_nested(self.steps):
            return self.steps.apply(x)
        by_name = dict(named_leaves(self.steps))
        return rebuild(x, {name: by_name[name].apply(leaf) for name, leaf in named_leaves(x)}, "")

    def reshaped(self, shape: tuple[int, ...]) -> Preparation:
        """The same steps, ending in a reshape of the single input to ``shape`` (``data.reshape``)."""
        return Preparation(replace(self.steps, shape=tuple(shape)))

    def summary(self) -> str:
        """What was done, in a few words (the parent run's ``sweep.inputs_prepared`` tag)."""
        done = []
        for name, step in named_leaves(self.steps) if self.steps is not None else []:
            what = "standardized" if step.mean is not None else (f"scaled by {step.scale:.6g}" if step.scale is not None else "")
            if step.shape != step.raw_shape:
                what = f"{what}, reshaped {step.raw_shape} -> {step.shape}".lstrip(", ")
            if what:
                done.append(f"{name}: {what}" if name else what)
        return "; ".join(done)

    def front(self, model: Any, custom_objects: dict[str, Any] | None = None) -> Any:
        """``model`` behind these steps as Keras layers: a functional model taking raw inputs.

        Inputs keep ``model``'s input names where it has them; the compile settings (loss,
        metrics, loss weights) are copied, so ``evaluate`` on raw rows gives the trial's
        numbers; ``custom_objects`` (name -> class or function) are the user's losses and
        metrics they name, unregistered ones included. ``model`` itself when nothing is changed.

        The compile settings move to the front model: ``model`` is left uncompiled, so the saved
        file holds them once, at the top, where ``load_model(compile=False)`` skips them (nested,
        they were read anyway, and a user's unregistered loss class failed every plain load).
        """
        if not self.changes_anything:
            return model
        import keras

        inputs = _inputs(self.steps, [getattr(t, "name", None) for t in (getattr(model, "inputs", None) or [])])
        raw_inputs = rebuild(self.steps, inputs, "")
        prepared = rebuild(self.steps, {name: _layers(inputs[name], step) for name, step in named_leaves(self.steps)}, "")
        compiled = model.get_compile_config() if getattr(model, "compiled", False) else None
        wrapper = keras.Model(raw_inputs, model(prepared), name=f"{model.name}_on_raw_inputs")
        if compiled:
            with keras.saving.custom_object_scope(custom_objects or {}):
                wrapper.compile_from_config(compiled)
        model.compiled = False  # after the copy: a failed one leaves the model as it came
        return wrapper


def fit(x_train: Any, *, standardize: bool = False, scale: float | None = None, raw_shape: Any = None, dtypes: Any = None) -> Preparation:
    """The steps learned from training inputs ``x_train`` (prepared up to the statistics).

    ``standardize``: every floating-point input gets the train split's per-element mean and
    std (a std of 0 counts as 1); integer inputs (token ids) are left alone. ``scale``: every
    input is multiplied by it. ``raw_shape``: the single input's sample shape as the source gave
    it, when the loader already reshaped it (a channel axis added to images). ``dtypes``: each
    input's dtype as the source gave it, in x's form (float64 before the loader stored it as
    float32): the dtype the front model's inputs take.
    """
    given = dict(named_leaves(dtypes)) if dtypes is not None and is_nested(x_train) else {"": dtypes}
    names = iter(name for name, _ in named_leaves(x_train))

    def steps_of(leaf: np.ndarray) -> InputSteps:
        sample = tuple(int(d) for d in leaf.shape[1:])
        raw = tuple(raw_shape) if raw_shape is not None and not is_nested(x_train) else sample
        source_dtype = given.get(next(names))
        steps = InputSteps(raw_shape=raw, dtype=source_dtype if isinstance(source_dtype, str) else str(leaf.dtype), stats_shape=sample, shape=sample)
        if standardize and np.issubdtype(leaf.dtype, np.floating):
            mean = leaf.mean(axis=0, dtype=np.float64)
            std = leaf.std(axis=0, dtype=np.float64)
            std[std == 0] = 1.0
            # at least float32: float16 statistics overflow (std 400 -> variance inf) or underflow,
            # and the Normalization layer computes in float32 anyway
            dtype = np.result_type(leaf.dtype, np.float32)
            return replace(steps, mean=mean.astype(dtype), std=std.astype(dtype))
        if scale is not None:
            return replace(steps, scale=float(scale))
        return steps

    return Preparation(map_leaves(steps_of, x_train))


def _inputs(steps: Any, model_names: list[str | None]) -> dict[str, Any]:
    """One ``keras.Input`` per input, by its name in ``steps`` (as :func:`named_leaves` gives it),
    of the raw shape and dtype. Named by the dict key for a dict of inputs, else after the
    model's own inputs, so an MLflow signature keeps the names the model had."""
    import keras

    flat = named_leaves(steps)
    given = model_names if len(model_names) == len(flat) else [None] * len(flat)
    return {name: keras.Input(shape=step.raw_shape, dtype=step.dtype, name=name if isinstance(steps, dict) else model_name)
            for (name, step), model_name in zip(flat, given)}


def _layers(tensor: Any, step: InputSteps) -> Any:
    import keras

    if step.stats_shape != step.raw_shape:
        tensor = keras.layers.Reshape(step.stats_shape)(tensor)
    if step.mean is not None:
        # the mean by Normalization, the std by Rescaling: Normalization divides by
        # max(sqrt(variance), 1e-7), which turned a feature of std 1e-9 into noise, and a float32
        # variance overflows above std 1.8e19; (x - mean) * (1 / std) is the array's own arithmetic
        axis = tuple(range(1, len(step.stats_shape) + 1)) or None
        tensor = keras.layers.Normalization(axis=axis, mean=step.mean, variance=np.ones_like(step.mean))(tensor)
        tensor = keras.layers.Rescaling(scale=(1.0 / step.std).astype(step.std.dtype))(tensor)
    elif step.scale is not None:
        tensor = keras.layers.Rescaling(step.scale)(tensor)
    if step.shape != step.stats_shape:
        tensor = keras.layers.Reshape(step.shape)(tensor)
    return tensor
