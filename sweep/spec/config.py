"""The sweep file: pydantic models, defaults, ``load(path)`` and one-line errors.

Everything a user can write in a sweep YAML file is declared here and nowhere else, so the
reference documentation, validation and defaults come from one source of truth. Validation
errors are turned into a single readable line ``FILE: KEY.PATH: what was expected`` because a
user who mistyped a key should never see a pydantic or Ray traceback.
"""

from __future__ import annotations

import copy
import difflib
import logging
import math
import os
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Mapping, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator, PrivateAttr

from sweep.errors import SweepConfigError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
# the sweep's name is a folder name (storage, MLflow artifacts) and the default experiment name
MAX_NAME_LENGTH = 100
# fit() and compile() settings that are not hyperparameters of a trial (epochs and loss are:
# see SweepConfig._check_fit_words_in_space)
UNSEARCHABLE = ("metrics", "validation_split", "shuffle", "class_weight", "steps_per_epoch", "validation_steps", "validation_freq", "callbacks")


# where each of UNSEARCHABLE is set in the sweep file (the rest are fit.<word>)
_FIXED_HOME = {"metrics": "model.metrics", "validation_split": "data.validation_split"}


class _Strict(BaseModel):
    """Base for every section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data: Any) -> Any:
        """``true`` where a number is expected is an error (pydantic would read it as 1).

        Numbers stay lax otherwise: PyYAML reads ``1e-4`` as a string, which must still be a float.
        """
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name) if isinstance(name, str) else None
                if field is not None:
                    where = _boolean_where_number(field.annotation, value, [name])
                    if where is not None:
                        path, number = where
                        raise _FieldError(".".join(path), f"expected {number}, got {show_value(value if len(path) == 1 else _dig(value, path[1:]))}")
        return data


# ---------------------------------------------------------------------------------------------
# search space entries


class _Param(_Strict):
    when: dict[str, Any] | None = Field(
        default=None,
        description="Only sample this entry when every named parameter has the given value "
        "(a list means any of those values), e.g. `{optimizer: sgd}`.",
    )


class FloatParam(_Param):
    """A real number between ``low`` and ``high`` (log-uniform with ``log: true``)."""

    type: Literal["float"]
    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    log: bool = False
    step: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check_range(self) -> "FloatParam":
        _check_low_high(self.low, self.high, self.log, self.step)
        return self


class IntParam(_Param):
    """An integer between ``low`` and ``high`` inclusive."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(default=1, gt=0)

    @model_validator(mode="after")
    def _check_range(self) -> "IntParam":
        _check_low_high(self.low, self.high, self.log, None if self.step == 1 else self.step)
        return self


class CategoricalParam(_Param):
    """One of a list of values (strings, numbers, booleans)."""

    type: Literal["categorical"]
    choices: list[str | int | float | bool | None] = Field(min_length=1, json_schema_extra={"uniqueItems": True})

    @model_validator(mode="after")
    def _check_distinct(self) -> "CategoricalParam":
        """``choices: [32, 64, 32]`` is a slip, not a weight: Optuna samples the two 32s as two
        categories (TPE learns each apart) and every plot shows 32 twice."""
        seen: list[tuple[bool, Any]] = []
        for index, value in enumerate(self.choices):
            key = (isinstance(value, bool), value)  # True == 1 in Python; as choices they differ
            if key in seen:
                raise _KeyedError(f"choices.{index}", f"expected distinct choices, but {show_value(value)} is given twice")
            seen.append(key)
        return self


def _check_low_high(low: float, high: float, log: bool, step: float | None) -> None:
    if low > high:
        raise ValueError(f"expected low <= high, got low={low} > high={high}")
    if step is not None and low < high and step > high - low:
        raise _KeyedError("step", f"expected a step at most high - low ({show_value(high - low)}), got {show_value(step)}: the range would hold only low")
    if log and low <= 0:
        raise ValueError(f"expected low > 0 with log: true, got low={low}")
    if log and step is not None:
        raise ValueError("expected either log: true or step, not both")


Param = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]


class SearchConfig(_Strict):
    """What Optuna samples and how many trials run."""

    sampler: Literal["tpe", "random", "cmaes", "grid"] = "tpe"
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="Makes the sequence of suggestions reproducible (0 to 2**32 - 1).")
    trials: int = Field(default=16, ge=1, le=1_000_000)  # more is no sweep one machine or cluster ends (an ETA of 10**23 hours)
    max_concurrent: int | None = Field(
        default=None, ge=1, description="Trials running at once (default: as many as resources allow)."
    )
    space: dict[str, Param] = Field(min_length=1)
    warm_start: str | None = Field(
        default=None,
        min_length=1,
        description="Name of an earlier sweep (or MLflow experiment) whose finished trials seed this one: "
        "its best configurations run first and its full-budget results inform the sampler; "
        "values outside this space are dropped with a warning.",
    )

    @field_validator("space", mode="before")
    @classmethod
    def _space_is_mapping(cls, value: Any) -> Any:
        if value is None or value == {}:
            raise ValueError("expected at least one parameter, got an empty space")
        return value

    @model_validator(mode="after")
    def _check_conditions(self) -> "SearchConfig":
        for name, param in self.space.items():
            for parent, wanted in (param.when or {}).items():
                _check_condition(self.space, name, parent, wanted)
        _condition_order(self.space)  # raises on cycles
        for name, param in self.space.items():
            _check_known_range(name, param)
        if self.sampler == "grid":
            for name, param in self.space.items():
                if isinstance(param, FloatParam):
                    raise _KeyedError(
                        f"space.{name}.type",
                        "expected categorical or int with sampler: grid, got float",
                    )
        return self


# Space entries whose meaning the sweep defines (it passes them to fit(), the optimizer or the
# built-in builders): values outside these ranges cannot train and are refused before any trial.
_POSITIVE_INTEGERS = {
    "batch_size": "a batch size", "epochs": "an epoch count", "steps_per_execution": "steps per call", "layers": "a layer count",
    "units": "a layer width", "filters": "a filter count",
}
_OPEN_RANGES = {  # name: (lowest allowed, highest allowed, low inclusive, high inclusive, what)
    "learning_rate": (0, math.inf, False, False, "a learning rate"),
    "momentum": (0, 1, True, True, "a momentum"),
    "dropout": (0, 1, True, False, "a dropout rate"),
    "weight_decay": (0, math.inf, True, False, "a weight decay"),
}


def _check_known_range(name: str, param: Any) -> None:
    """``batch_size: {choices: [0, 32]}`` or ``learning_rate: {low: -1}`` ran trials that
    trained nothing (or failed one by one); refused here with the key of the bad value."""
    if isinstance(param, CategoricalParam):
        values = [(f"space.{name}.choices.{index}", value) for index, value in enumerate(param.choices)]
    else:
        values = [(f"space.{name}.low", param.low), (f"space.{name}.high", param.high)]
    numbers = [(key, value) for key, value in values if isinstance(value, (int, float)) and not isinstance(value, bool)]
    if name in _POSITIVE_INTEGERS or name in _OPEN_RANGES:  # numbers only: '32' or 'fast' failed in the trials (or the preflight, with a traceback)
        what = _POSITIVE_INTEGERS[name] if name in _POSITIVE_INTEGERS else _OPEN_RANGES[name][4]
        for key, value in values:
            if (key, value) not in numbers:
                raise _KeyedError(key, f"expected a number ({what}), got {show_value(value)}")
    if name in _POSITIVE_INTEGERS:
        if isinstance(param, FloatParam):
            raise _KeyedError(f"space.{name}.type", f"expected int or categorical for {_POSITIVE_INTEGERS[name]}, got float")
        for key, value in numbers:
            if value < 1 or value != int(value):
                raise _KeyedError(key, f"expected a positive integer ({_POSITIVE_INTEGERS[name]}), got {show_value(value)}")
    elif name in _OPEN_RANGES:
        lowest, highest, low_in, high_in, what = _OPEN_RANGES[name]
        for key, value in numbers:
            if value < lowest or (value == lowest and not low_in) or value > highest or (value == highest and not high_in):
                bound = f"{'>=' if low_in else '>'} {show_value(lowest)}" + (f" and {'<=' if high_in else '<'} {show_value(highest)}" if highest != math.inf else "")
                raise _KeyedError(key, f"expected {what} {bound}, got {show_value(value)}")


class _KeyedError(ValueError):
    """A validator error that belongs to a deeper key than the validator's own."""

    def __init__(self, subkey: str, message: str):
        self.subkey = subkey
        super().__init__(message)


class _FieldError(_KeyedError):
    """A section's error about one of its own fields: the subkey is appended as is."""


def _members(annotation: Any) -> list[Any]:
    """The types a field accepts, ``Annotated`` and unions flattened."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


def _boolean_where_number(annotation: Any, value: Any, path: list[str]) -> tuple[list[str], str] | None:
    """The path of a boolean given where ``annotation`` wants a number (not a boolean), with the
    words for that number; None when there is none. Looks inside dicts and lists of numbers."""
    members = _members(annotation)
    if isinstance(value, bool):
        if bool in members or Any in members or str in members or not any(m in (int, float) for m in members):
            return None
        return path, ("a number" if float in members else "an integer")
    if isinstance(value, dict):
        inner = next((get_args(m) for m in members if get_origin(m) is dict), None)
        if inner and len(inner) == 2:
            for key, item in value.items():
                found = _boolean_where_number(inner[1], item, path + [str(key)])
                if found:
                    return found
    if isinstance(value, list):
        inner = next((get_args(m) for m in members if get_origin(m) is list), None)
        if inner:
            for index, item in enumerate(value):
                found = _boolean_where_number(inner[0], item, path + [str(index)])
                if found:
                    return found
    return None


def _dig(value: Any, path: list[str]) -> Any:
    for part in path:
        value = value[int(part)] if isinstance(value, list) else next(v for k, v in value.items() if str(k) == part)
    return value


def _check_condition(space: Mapping[str, Any], name: str, parent: str, wanted: Any) -> None:
    key = f"space.{name}.when.{parent}"
    if parent == name:
        raise _KeyedError(key, "expected another parameter, got the parameter itself")
    if parent not in space:
        others = [other for other in space if other != name]
        close = difflib.get_close_matches(str(parent), others, n=1, cutoff=0.75)
        raise _KeyedError(key, f"expected one of the space's other parameters ({', '.join(others)}), got {parent!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
    parent_param = space[parent]
    values = wanted if isinstance(wanted, list) else [wanted]
    if isinstance(parent_param, CategoricalParam):
        for value in values:
            if not any(isinstance(value, bool) == isinstance(c, bool) and value == c for c in parent_param.choices):
                raise _KeyedError(key, f"expected one of {', '.join(map(show_value, parent_param.choices))}, got {show_value(value)}")
    elif isinstance(parent_param, IntParam):
        allowed = range(parent_param.low, parent_param.high + 1, parent_param.step)
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
                raise _KeyedError(
                    key, f"expected an integer {parent_param.low}..{parent_param.high} (step {parent_param.step}), got {show_value(value)}"
                )
    else:
        raise _KeyedError(key, f"expected a categorical or int parameter, got float parameter {parent!r}")


def condition_order(space: Mapping[str, Any]) -> list[str]:
    """Parameter names ordered so that every ``when:`` parent is sampled before its children."""
    return _condition_order(space)


def _condition_order(space: Mapping[str, Any]) -> list[str]:
    ordered: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name in visiting:
            cycle = visiting[visiting.index(name):] + [name]
            raise _KeyedError(f"space.{name}.when", f"expected conditions without a cycle, got {' -> '.join(cycle)}")
        visiting.append(name)
        for parent in (space[name].when or {}):
            if parent in space:
                visit(parent)
        visiting.pop()
        ordered.append(name)

    for name in space:
        visit(name)
    return ordered


# ---------------------------------------------------------------------------------------------
# the other sections


class DataConfig(_Strict):
    """Where the arrays come from and how they are split."""

    _task_from: str | None = PrivateAttr(default=None)  # "model.loss: mse" when the loss set data.task (the start-up line says so)

    source: str = Field(
        description="digits | diabetes | synthetic | npz:PATH | csv:PATH | keras:NAME | package.module:function"
    )
    validation_split: float = Field(default=0.2, gt=0, lt=1)
    target: str | None = Field(default=None, description="Target column of a csv: source.")
    task: Literal["classification", "regression"] | dict[str, Literal["classification", "regression"]] | None = Field(
        default=None,
        description="Inferred from the targets when not given: integer labels 0..K-1, booleans, one-hot or probability rows "
        "are classification; non-integer values or more than 50 distinct integers are regression; other integers "
        "(ratings 1..5) must be given. A regression loss in model.loss (mse, mae, huber, poisson, ...) means regression. Several outputs: a dict by output name (by position, 0, 1, ..., for a list of outputs), or one task for the outputs the targets leave open.",
    )
    num_outputs: int | None = Field(default=None, ge=1, description="Inferred when not given.")

    @field_validator("task", mode="before")
    @classmethod
    def _outputs_by_position(cls, value: Any) -> Any:
        """``task: {1: regression}`` names a list output by its position, as the sweep's own
        advice writes it; YAML reads the key as a number, which a dict by name refused."""
        if isinstance(value, dict):
            return {str(key) if isinstance(key, int) and not isinstance(key, bool) else key: task for key, task in value.items()}
        return value
    reshape: list[int] | None = Field(
        default=None, description="Reshape each input sample, e.g. [8, 8, 1] for a CNN on digits."
    )
    normalize: bool | None = Field(
        default=None,
        description="Standardize floating-point inputs to zero mean and unit variance (train statistics; integer inputs "
        "such as token ids are never changed). Default: on for the built-in sources (digits, diabetes, synthetic, csv; "
        "keras images are divided by 255), off for your own arrays (npz:, package.module:function), which reach fit() as given. "
        "The best model the sweep logs takes raw inputs: these steps are Keras layers in front of it.",
    )
    encode_labels: bool | None = Field(
        default=None,
        description="Encode the labels 0..K-1 in sorted order (strings, {3, 7}, one-hot to indices). Default: on for the "
        "built-in sources, off for your own arrays.",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seed of the train/validation split and of synthetic data (0 to 2**32 - 1, as NumPy takes it).")
    samples: int = Field(default=2000, ge=10, description="synthetic: number of rows.")
    features: int = Field(default=20, ge=1, description="synthetic: number of input columns.")
    classes: int = Field(default=2, ge=2, description="synthetic classification: number of classes.")
    args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for a user function.")

    @model_validator(mode="after")
    def _synthetic_fits_in_memory(self) -> "DataConfig":
        """``samples: 1000000000000`` failed unexpectedly with a MemoryError (36 TiB) once loaded."""
        if self.source == "synthetic":
            needed = self.samples * self.features * 8  # float64 as generated
            if needed > _memory_bytes():
                raise _FieldError("samples", f"expected synthetic data that fits in this machine's memory ({_memory_bytes() / 2**30:.0f} GiB), "
                                  f"got {self.samples} x {self.features} values ({needed / 2**30:.0f} GiB)")
        return self

    @model_validator(mode="after")
    def _keys_its_source_reads(self) -> "DataConfig":
        """``args`` go to a user's function and ``target`` names a csv column: given with a
        source that reads neither, they did nothing without a word."""
        kind, sep, _ = self.source.partition(":")
        user_function = bool(sep) and kind not in ("npz", "csv", "keras")
        if self.args and not user_function:
            raise _FieldError("args", f"expected no args with data.source: {self.source} (args are the keyword arguments of a package.module:function source)")
        if self.target is not None and kind != "csv":
            raise _FieldError("target", f"expected no target with data.source: {self.source} (target names the label column of a csv: source)")
        return self

    @field_validator("source")
    @classmethod
    def _source_form(cls, value: str) -> str:
        from sweep.inputs.data import check_source  # data owns the list of sources

        check_source(value)
        return value


class ModelConfig(_Strict):
    """Which network to build and how it is compiled."""

    builder: str = Field(default="mlp", description="mlp | cnn | package.module:function")
    args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the builder.")
    loss: str | dict[str, str] | list[str] | None = Field(
        default=None,
        description="Keras loss name or your own function as package.module:function, or one per output (a dict by output name or a list). Default: by the targets "
        "(sparse_categorical_crossentropy, categorical_crossentropy for one-hot rows, binary_crossentropy for 0/1 rows, mse).",
    )
    metrics: list[str] | list[list[str]] | dict[str, str | list[str]] | None = Field(
        default=None,
        description="Keras metric names (or your own functions as package.module:function), or per output (a dict of names or lists by output name, "
        "or a list with one list per output). "
        "Default: accuracy or mae, by task.",
    )
    loss_weights: dict[str, float] | list[float] | None = Field(default=None, description="Per-output loss weights (compile(loss_weights=...)).")
    safe_mode: bool = Field(
        default=True,
        description="Keras safe_mode for every load of the sweep's models (retries, resumes, the best model, load_best, export). "
        "false loads code stored in the checkpoint, e.g. the Python lambda of a Lambda layer: only for checkpoints you produced.",
    )
    custom_objects: list[str] | dict[str, str] = Field(
        default_factory=list,
        description="Custom Keras objects passed to every load, as package.module:name (or name: package.module:name). "
        "Classes and functions of your modules next to the sweep file are found without it.",
    )

    @field_validator("builder")
    @classmethod
    def _builder_form(cls, value: str) -> str:
        from sweep.inputs.imports import is_spec  # imports depends on this module

        if value in ("mlp", "cnn") or is_spec(value):
            return value
        close = difflib.get_close_matches(value, ["mlp", "cnn"], n=1, cutoff=0.6)
        raise ValueError(f"expected mlp, cnn or package.module:function, got {value!r}" + (f"; did you mean {close[0]!r}?" if close else ""))

    @field_validator("custom_objects")
    @classmethod
    def _custom_object_specs(cls, value: list[str] | dict[str, str]) -> list[str] | dict[str, str]:
        from sweep.inputs.imports import is_spec

        for spec in value.values() if isinstance(value, dict) else value:
            if not is_spec(spec):
                raise ValueError(f"expected package.module:name, got {spec!r}")
        return value


class FitConfig(_Strict):
    """Arguments of ``model.fit()`` shared by every trial (the space may override batch_size)."""

    epochs: int = Field(default=10, ge=1, le=1_000_000)
    batch_size: int = Field(default=32, ge=1, description="Used when the space has no batch_size; an override (--set fit.batch_size=64) fixes a searched one.")
    shuffle: bool = True
    steps_per_execution: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        default="auto",
        description="Train steps per compiled call: auto (from batch size and rows, at most 32) or an integer >= 1; "
        "same math, fewer Python round trips. Batch-level callbacks run once per call.",
    )
    callbacks: list[str | dict[str, dict[str, Any] | None]] = Field(
        default_factory=list,
        description="Keras callbacks by name, e.g. [early_stopping] or [{early_stopping: {patience: 3}}] (early_stopping, "
        "reduce_lr_on_plateau, terminate_on_nan), or your own keras.callbacks.Callback class as package.module:Name with "
        "its keyword arguments, e.g. [{my_callbacks:LogLR: {every: 2}}].",
    )
    class_weight: dict[int | str, float] | Literal["balanced"] | None = Field(
        default=None,
        description="fit(class_weight=...): a weight per class index, or balanced (n_samples / (n_classes * count), "
        "computed from the training labels). One output only. With data.encode_labels the keys may be your own labels "
        "(e.g. {cat: 2.0}); keys that are all labels are read as labels, else as indices 0..K-1.",
    )

    @field_validator("class_weight")
    @classmethod
    def _weights_are_finite_and_not_negative(cls, value: Any) -> Any:
        """A negative weight trained toward the wrong class with exit 0; a NaN one failed every trial as nan_loss."""
        if isinstance(value, dict):
            for key, weight in value.items():
                if not math.isfinite(weight) or weight < 0:
                    raise _FieldError(str(key), f"expected a finite weight >= 0, got {show_value(weight)}")
            if value and not any(value.values()):
                raise ValueError("expected at least one weight above 0, got all 0 (every trial's loss would be 0)")
        return value

    steps_per_epoch: int | None = Field(default=None, ge=1, description="fit(steps_per_epoch=...): needed for infinite pipelines and generators.")
    validation_steps: int | None = Field(default=None, ge=1, description="fit(validation_steps=...): needed for a validation pipeline with no end (repeat(), a generator).")
    validation_batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        default="auto",
        description="fit(validation_batch_size=...): rows per validation batch (the metrics do not depend on it). auto: "
        "the trial's batch size, raised toward 1024 rows (fewer calls) only while one batch's activations stay under "
        "64 MiB; the trial's batch size itself for a model with several outputs, with fit.validation_steps, or when the "
        "model's layer sizes are unknown. A model built for a fixed batch size (keras.Input(batch_size=N)) validates in N.",
    )
    validation_freq: int = Field(
        default=1, ge=1, description="fit(validation_freq=...): validate every N epochs; Tune gets a report on those epochs "
        "and on the trial's last one (ranked by its best validated value); MLflow gets every epoch's training logs. "
        "With a val_ objective, at most fit.epochs."
    )
    reuse_model: bool = Field(
        default=True,
        description="A warm worker keeps its compiled model for the next trial with the same architecture and optimizer "
        "settings (learning rate and batch size may differ): weights and optimizer state are reset from the trial's seed, "
        "so the math is a fresh build's, without retracing, and TensorFlow keeps the model's instantiated functions between "
        "trials. false: build every trial and fully reset TensorFlow (also restarts TF's stateful random ops such as "
        "`tf.random.uniform`, which a warm worker otherwise continues).",
    )
    reuse_model_mb: float = Field(
        default=40.0, gt=0,
        description="The resident memory (MiB) a warm worker's kept compiled models may hold: each is charged what the "
        "worker's memory grew by while it trained (its traced graphs), and past this the least recently used are dropped. "
        "More keeps more architectures compiled (fewer retraces) at the cost of a larger worker.",
    )


class ObjectiveConfig(_Strict):
    """The metric the search optimizes and ASHA ranks trials by."""

    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"


class AshaConfig(_Strict):
    type: Literal["asha"]
    grace_period: int = Field(default=1, ge=1)
    reduction_factor: float = Field(default=3, gt=1)
    max_t: int | None = Field(default=None, ge=1, description="Default: fit.epochs.")


class HyperbandConfig(_Strict):
    type: Literal["hyperband"]
    reduction_factor: float = Field(default=3, gt=1)
    max_t: int | None = Field(default=None, ge=1, description="Default: fit.epochs.")


class MedianConfig(_Strict):
    type: Literal["median"]
    grace_period: int = Field(default=1, ge=1)
    min_samples_required: int = Field(default=3, ge=1)


class FifoConfig(_Strict):
    type: Literal["fifo"]


SchedulerConfig = Annotated[
    Union[AshaConfig, HyperbandConfig, MedianConfig, FifoConfig], Field(discriminator="type")
]


def _memory_bytes() -> int:
    """This machine's physical memory (a large number where it cannot be read)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**50


# Keras losses for quantities (by name), which decide data.task when the file leaves it open
REGRESSION_LOSSES = frozenset({
    "mse", "mae", "mape", "msle", "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error", "huber", "huber_loss", "log_cosh", "logcosh", "poisson",
    # Keras' class names, which compile() takes too (compared lowercased)
    "meansquarederror", "meanabsoluteerror", "meanabsolutepercentageerror", "meansquaredlogarithmicerror",
})

RAY_RESOURCE_UNIT = 0.0001  # Ray's resource quantities are whole multiples of this


class ResourcesConfig(_Strict):
    """What one trial takes from the cluster."""

    cpus_per_trial: float = Field(default=1, gt=0)
    gpus_per_trial: float = Field(default=0, ge=0)
    custom: dict[str, float] = Field(default_factory=dict, description="Custom Ray resources per trial.")
    checkpoint_quota_mb: float | None = Field(
        default=None,
        gt=0,
        description="Disk quota for the sweep's checkpoints under --storage (local paths). Over it, the checkpoints "
        "of ended trials go, worst first, once MLflow has their copy; the best trial's and running trials' stay.",
    )
    scale_batch_size: bool = Field(
        default=False,
        description="With gpus_per_trial > 1 (MirroredStrategy): multiply the batch size by the number of GPUs.",
    )
    warm_workers: bool = Field(
        default=True,
        description="On the sweep's own single-node Ray, CPU trials run on worker processes that import TensorFlow "
        "while the sweep starts and stay up (with TensorFlow's memory) for the next sweep in the same Python process: "
        "its first epoch in about 2 s instead of 4-5. false: every sweep starts its own, as Ray Tune alone does.",
    )

    @field_validator("cpus_per_trial", "gpus_per_trial")
    @classmethod
    def _in_rays_units(cls, value: float) -> float:
        """Ray counts resources in units of 0.0001: 0.00001 CPU failed inside Tune's controller
        ("Tracked actor is not managed by this event manager") after the sweep had started."""
        if value and (value < RAY_RESOURCE_UNIT or abs(round(value / RAY_RESOURCE_UNIT) * RAY_RESOURCE_UNIT - value) > 1e-12):
            raise ValueError(f"expected a multiple of {RAY_RESOURCE_UNIT:g} (Ray's smallest unit of a resource), got {value:g}")
        return value

    @field_validator("gpus_per_trial")
    @classmethod
    def _whole_gpus_above_one(cls, value: float) -> float:
        """Ray shares a GPU only below 1: 0.5 is fine, 1.5 is not (it cannot be placed)."""
        if value > 1 and value != int(value):
            raise ValueError(f"expected a fraction up to 1 or a whole number of GPUs, got {value}")
        return value


class TrackingConfig(_Strict):
    """Where MLflow records the sweep."""

    uri: str | None = Field(default=None, description="Default: sqlite:///mlflow.db in the working directory.")
    experiment: str | None = Field(default=None, description="Default: the sweep name.")
    registered_model: str | None = Field(
        default=None,
        min_length=1,
        description="MLflow Model Registry name the best model is registered under (default: the sweep name).",
    )

    @field_validator("uri")
    @classmethod
    def _uri_has_a_scheme(cls, value: str | None) -> str | None:
        """A bare path (``mlflow.db``, ``./mlruns``) means MLflow's file store, which MLflow refuses
        (maintenance mode) with a message about migrating: say what the user meant instead."""
        if value is None:
            return value
        if not value.strip():
            raise ValueError("expected a tracking URI such as sqlite:///mlflow.db or http://HOST:PORT, got ''")
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", value) and not re.match(r"^[A-Za-z]:[\\/]", value) or value == "databricks":
            return value
        from sweep.tracking.client import sqlite_hint

        hint = sqlite_hint(value)
        raise ValueError(f"expected a URI with a scheme (sqlite:///FILE, http://HOST:PORT, ...), got {value!r}: did you mean {hint!r}?")

    @model_validator(mode="after")
    def _safe_names(self) -> "TrackingConfig":
        """MLflow names that become folder names (a sqlite store keeps an experiment's artifacts in
        ``mlartifacts/<experiment>``) must stay inside that folder: no ``..``, no absolute path
        (Databricks' workspace paths excepted: there the name is not a local folder)."""
        databricks = (self.uri or "").startswith("databricks")
        for key in ("experiment", "registered_model"):
            value = getattr(self, key)
            problem = None if value is None else name_problem(value)
            if problem and not (databricks and problem == "an absolute path"):
                raise _FieldError(key, f"expected a name that stays inside the store's artifact folder, got {show_value(value)} ({problem})")
        name = self.registered_model
        if name is not None and not databricks and any(c in name for c in "/:"):
            # MLflow's registry refuses it only when the best model is registered, after every trial ran
            raise _FieldError("registered_model", f"expected a model name without '/' or ':' (MLflow's registry rule), got {show_value(name)}")
        return self


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be used as one folder under the store's artifact folder; None if it can."""
    if not name.strip():
        return "it is empty"
    if len(name.encode("utf-8")) > 255:  # a folder name's limit is in bytes: 200 'é' are 400
        return f"{len(name.encode('utf-8'))} bytes in UTF-8, at most 255 (one folder name)"
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        return "a control character"
    if name.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    if any(part in ("..", ".") for part in re.split(r"[/\\]", name)):
        return "a '..' or '.' path part"
    if "\\" in name:
        return "a backslash"
    return None


class FailureConfig(_Strict):
    """What the sweep does when trials fail."""

    max_retries: int = Field(
        default=2,
        ge=0,
        description="Times a trial whose worker died (killed, lost node) is restarted from its latest checkpoint.",
    )
    fail_fast: int = Field(
        default=3,
        ge=0,
        description="Stop the sweep when this many trials failed with the same error before any trial "
        "reported an epoch (a broken model factory, data that does not fit); 0 never stops.",
    )


class SweepConfig(_Strict):
    """One sweep file."""

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME_LENGTH)
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    fit: FitConfig = Field(default_factory=FitConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    search: SearchConfig
    scheduler: SchedulerConfig = Field(default_factory=lambda: AshaConfig(type="asha"))

    @model_validator(mode="before")
    @classmethod
    def _scheduler_type_defaults_to_asha(cls, data: Any) -> Any:
        """``scheduler: {grace_period: 2}`` (or ``--set scheduler.grace_period=2`` on a file with no
        scheduler) tunes the default scheduler, ASHA: it said "scheduler.type: required key is
        missing". Only ASHA's own keys imply it; anything else still asks for the type."""
        scheduler = data.get("scheduler") if isinstance(data, dict) else None
        if isinstance(scheduler, dict) and scheduler and "type" not in scheduler and set(scheduler) <= set(AshaConfig.model_fields) - {"type"}:
            data = {**data, "scheduler": {"type": "asha", **scheduler}}
        return data
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    failure: FailureConfig = Field(default_factory=FailureConfig)

    @model_validator(mode="after")
    def _check_scheduler_fits_epochs(self) -> "SweepConfig":
        grace = getattr(self.scheduler, "grace_period", None)
        if grace is not None and grace > self.fit.epochs:
            raise _KeyedError(
                "scheduler.grace_period",
                f"expected at most fit.epochs ({self.fit.epochs}), got {grace}",
            )
        max_t = getattr(self.scheduler, "max_t", None)
        if max_t is not None and max_t > self.fit.epochs:
            raise _KeyedError("scheduler.max_t", f"expected at most fit.epochs ({self.fit.epochs}), got {max_t}")
        if max_t is not None and grace is not None and grace > max_t:  # Ray asserted it after the parent run existed (left FAILED)
            raise _KeyedError("scheduler.grace_period", f"expected at most scheduler.max_t ({max_t}), got {grace}")
        return self

    @model_validator(mode="after")
    def _regression_loss_means_regression(self) -> "SweepConfig":
        """``model.loss: mse`` (or mae, huber, poisson, ...) says the targets are quantities: counts
        0..5 were read as 6 classes, and the sweep refused the model, blaming model.builder.
        Fills ``data.task`` where the file left it open (per output for a dict of losses)."""
        loss = self.model.loss
        if self.data.task is not None or loss is None:
            return self
        if isinstance(loss, str) and loss.lower() in REGRESSION_LOSSES:
            self.data.task = "regression"
            self.data._task_from = f"model.loss: {loss}"
        elif isinstance(loss, (dict, list)):  # per output: by name, or by position for list outputs
            pairs = loss.items() if isinstance(loss, dict) else enumerate(loss)
            heads = {str(name): "regression" for name, value in pairs if isinstance(value, str) and value.lower() in REGRESSION_LOSSES}
            if heads and len(loss) > 1:  # one entry may name an output the model lacks: Keras says so, on model.loss
                self.data.task = heads
                self.data._task_from = "model.loss"
        return self

    @model_validator(mode="after")
    def _check_fit_words_in_space(self) -> "SweepConfig":
        """``epochs`` and ``loss`` in the space mean the trial's epoch budget and compile's
        loss; the other words of fit() and compile() cannot be searched."""
        space = self.search.space
        epochs = space.get("epochs")
        if epochs is not None:
            values = epochs.choices if isinstance(epochs, CategoricalParam) else [epochs.low, epochs.high]
            if isinstance(epochs, FloatParam) or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= self.max_epochs for v in values):
                raise _KeyedError(
                    "search.space.epochs",
                    f"expected whole numbers of epochs from 1 to {self.max_epochs} (fit.epochs, the budget ASHA stops within), got {show_value(values)}",
                )
        loss = space.get("loss")
        if loss is not None:
            if not isinstance(loss, CategoricalParam) or not all(isinstance(v, str) for v in loss.choices):
                raise _KeyedError("search.space.loss", "expected a categorical of Keras loss names, e.g. {type: categorical, choices: [mse, huber]}")
            if self.objective.metric in ("loss", "val_loss"):
                raise _KeyedError(
                    "objective.metric",
                    f"expected a metric other than {self.objective.metric} when the loss is searched (losses are not comparable with each other), got {self.objective.metric!r}",
                )
        for word in UNSEARCHABLE:
            if word in space:
                home = _FIXED_HOME.get(word, f"fit.{word}")
                raise _KeyedError(f"search.space.{word}", f"expected a hyperparameter, got {word!r}, which is a fixed setting of fit() or compile(): set {home}")
        return self

    @property
    def max_epochs(self) -> int:
        """The epoch budget a trial may reach (the scheduler's max_t or fit.epochs)."""
        return getattr(self.scheduler, "max_t", None) or self.fit.epochs

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name


# ---------------------------------------------------------------------------------------------
# loading

class _Reset:
    """An override that removes a key, so its default applies (``--set model.loss=null``)."""

    def __repr__(self) -> str:
        return "null"

    def __reduce__(self) -> str:
        return "RESET"


RESET = _Reset()

OVERRIDE_ALIASES = {
    "trials": "search.trials",
    "seed": "search.seed",
    "epochs": "fit.epochs",
    "tracking_uri": "tracking.uri",
    "experiment": "tracking.experiment",
}


def load(source: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | None = None, *, quiet: bool = False) -> SweepConfig:
    """Read, override and validate a sweep; relative paths resolve against the file's folder.

    ``source`` is a YAML path or an already-parsed mapping (then paths resolve against the
    working directory). ``overrides`` maps dotted keys (``fit.epochs``) or the aliases in
    ``OVERRIDE_ALIASES`` to values; ``None`` values are ignored so CLI flags can pass through,
    :data:`RESET` removes the key (its default applies: ``--set model.loss=null``).
    An override of a setting the space searches (``fit.batch_size``, ``model.loss``) fixes it,
    with one warning unless ``quiet`` (a second load of the same file).
    """
    if isinstance(source, Mapping):
        label, base, raw = "<dict>", Path.cwd(), copy.deepcopy(dict(source))
    else:
        path = Path(source)
        label, base, raw = str(source), path.resolve().parent, _read_yaml(path)
    applied = {key: value for key, value in (overrides or {}).items() if value is not None}
    for key, value in applied.items():
        if value is RESET:
            _delete_dotted(raw, OVERRIDE_ALIASES.get(key, key))
            continue
        _set_dotted(raw, OVERRIDE_ALIASES.get(key, key), value, label)
        _fix_searched(raw, label, key, value, quiet)
    _resolve_paths(raw, base)
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as exc:
        error = _first_error(label, exc)
        raise SweepConfigError(_blame_override(label, error.key, applied, error.expected), error.key, error.expected) from None


# settings an override may give that the space can also search: the override fixes the dimension
_SEARCHED_AS = {"fit.batch_size": "batch_size", "model.loss": "loss"}


def _fix_searched(raw: dict[str, Any], label: str, key: str, value: Any, quiet: bool) -> None:
    """``--set fit.batch_size=64`` on a file whose space searches ``batch_size`` means "every
    trial with batch 64" (the README's own example), said in one warning; before, the searched
    value silently won and the override did nothing. The entry becomes that one value (a
    categorical of one choice), so every trial's params and ``sweep best`` still show it and a
    ``when:`` condition that names it still holds."""
    name = _SEARCHED_AS.get(OVERRIDE_ALIASES.get(key, key))
    search = raw.get("search") if isinstance(raw, dict) else None
    space = search.get("space") if isinstance(search, dict) else None
    if name is None or not isinstance(space, dict) or not isinstance(space.get(name), dict):
        return
    if not isinstance(value, (str, int, float, bool)):  # a per-output loss dict: not one choice of the space
        return
    entry = space[name]
    space[name] = {"type": "categorical", "choices": [value], **({"when": entry["when"]} if entry.get("when") else {})}
    if not quiet:
        logging.getLogger(__name__).warning(
            "%s: override %s=%s fixes search.space.%s to that one value in every trial", label, key, show_value(value), name
        )


def _blame_override(label: str, key: str, applied: Mapping[str, Any], expected: str = "") -> str:
    """The source an error names: the file, and the override (``--set``, ``--epochs``, a keyword
    of ``sweep.run``) that put the bad value there or changed its section, so a user does not
    search the file for a key it never had (``--set fit.epoch=3``), or for why a key it has is
    now refused (``--set scheduler.type=fifo`` under a file's ``grace_period``)."""
    from sweep.tracking.client import redact  # a tracking URI's password never reaches an error line

    shown = {name: redact(value) if isinstance(value, str) and "://" in value else value for name, value in applied.items()}
    dotted = {OVERRIDE_ALIASES.get(name, name): f"{name}={show_value(value)}" for name, value in shown.items()}
    if not key:
        return label
    exact = [shown for path, shown in dotted.items() if path == key or key.startswith(path + ".") or path.startswith(key + ".")]
    if exact:
        return f"{label} (override {exact[0]})"
    section = key.split(".")[0]
    # an override elsewhere in the section is to blame only when it changed what the section's
    # other keys may be (scheduler.type; tracking.uri: a databricks URI allows absolute names);
    # "search.space.lr.type: expected ..." after --trials 2 is the file's own error
    nearby = [shown for path, shown in dotted.items() if path.split(".")[0] == section and path.rpartition(".")[2] in ("type", "uri")]
    if not nearby:  # the message names the bound an override set (search.space.epochs "... to 2 (fit.epochs ...)" after --epochs 2)
        nearby = [shown for path, shown in dotted.items() if re.search(rf"\b{re.escape(path)}\b", expected)]
    return f"{label} (with override {nearby[0]})" if nearby else label


def _read_yaml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise SweepConfigError(str(path), "", "expected a sweep YAML file, got a folder")
    if not path.is_file():
        raise SweepConfigError(str(path), "", "expected a sweep YAML file, but no such file exists")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SweepConfigError(str(path), "", f"expected a readable sweep YAML file, but: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")  # the encoding YAML files are read in, whatever the locale; a BOM is fine
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":
            raise SweepConfigError(str(path), "", f"expected a UTF-8 text file, got one that ends inside a character at position {exc.start} (truncated?)") from None
        byte = data[exc.start:exc.start + 1].hex()
        raise SweepConfigError(str(path), "", f"expected a UTF-8 text file, got byte 0x{byte} at position {exc.start} (save it as UTF-8)") from None
    try:
        _check_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        raw = yaml.safe_load(text)
    except SweepConfigError as exc:
        raise SweepConfigError(str(path), exc.key, exc.expected) from None
    except yaml.YAMLError as exc:
        raise SweepConfigError(str(path), "", f"expected valid YAML, {_yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise SweepConfigError(str(path), "", f"expected a mapping of sections, got {_kind(raw)}")
    return raw


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's problem, located where the user must look: an unclosed quote or bracket is
    reported by PyYAML at the end of the file, but its ``context_mark`` is where it opened."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if mark is None:
        position = getattr(exc, "position", None)  # a ReaderError: a character YAML does not allow
        return f"position {position}: {problem}" if position is not None else problem
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    hint = _yaml_hint(context or "", problem)
    opened_earlier = context and context_mark is not None and context_mark.line < mark.line
    if opened_earlier and not context.startswith("while parsing a block"):  # a block's start says nothing: its bad line does
        return f"line {context_mark.line + 1}, column {context_mark.column + 1}: {hint}{context}, {problem} (at {where})"
    return f"{where}: {hint}{problem}"


# PyYAML's words for the slips people make, and what to change: (words in its context or
# problem, what the line says first). The first that matches wins.
_YAML_HINTS = (
    ("'\\t'", "indent with spaces, not tabs"),
    ("mapping values are not allowed here", "a key indented deeper than the keys above it, or a value holding ': ' that needs quotes"),
    ("expected <block end>", "a line indented less or more than the keys beside it"),
    ("expected ',' or '}'", "a '{' that is not closed with '}'"),
    ("expected ',' or ']'", "a '[' that is not closed with ']'"),
    ("quoted scalar", "a quote that is not closed"),
    ("could not find expected ':'", "a key without ':' after it"),
    ("cannot start any token", "a value starting with a character YAML reserves: quote it"),
)


def _yaml_hint(context: str, problem: str) -> str:
    """What to change, said before PyYAML's own words (``"indent with spaces, not tabs; PyYAML
    says: "``), or "" for a problem with no plainer wording."""
    said = f"{context} {problem}"
    for words, hint in _YAML_HINTS:
        if words in said:
            return f"{hint}; PyYAML says: "
    return ""


def _check_duplicate_keys(node: Any) -> None:
    """A key given twice in one mapping is an error (PyYAML silently keeps the last value)."""
    seen_nodes: set[int] = set()

    def walk(node: Any, path: list[str]) -> None:
        if node is None or id(node) in seen_nodes:  # an alias: its anchor was walked already
            return
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is not None and key != "<<":
                    if key in first:
                        where = f"line {key_node.start_mark.line + 1} (first at line {first[key].start_mark.line + 1})"
                        raise SweepConfigError("", ".".join(path + [str(key)]), f"expected each key once, got it again at {where}")
                    first[key] = key_node
                walk(value_node, path + [str(key)])
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, path + [str(index)])

    walk(node, [])


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any, label: str = "<overrides>") -> None:
    """Set ``a.b.c`` in ``raw``; a section on the way that the file (``label``) gives as no
    mapping is the file's error, said as it is without the override."""
    node = raw
    *parents, leaf = dotted.split(".")
    for depth, part in enumerate(parents):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SweepConfigError(label, ".".join(parents[: depth + 1]), f"expected a mapping, got {show_value(node)}")
    node[leaf] = value


def _delete_dotted(raw: dict[str, Any], dotted: str) -> None:
    node: Any = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make ``npz:``/``csv:`` data paths, and ``data.args`` strings that name an existing file or
    folder next to the sweep file, absolute: workers read them from another working directory."""
    data = raw.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("source"), str):
        return
    kind, sep, rest = data["source"].partition(":")
    if sep and kind in ("npz", "csv") and rest:
        path = Path(rest).expanduser()
        data["source"] = f"{kind}:{path if path.is_absolute() else (base / path).resolve()}"
    args = data.get("args")
    if isinstance(args, dict):  # a relative path to a file or folder next to the sweep file (read on workers too)
        for key, value in args.items():
            if isinstance(value, str) and value and not Path(value).expanduser().is_absolute() and (base / value).exists():
                args[key] = str((base / value).resolve())


# ---------------------------------------------------------------------------------------------
# turning pydantic errors into one line

def _first_error(label: str, exc: ValidationError) -> SweepConfigError:
    errors = exc.errors(include_url=False)
    error = _typo_of_a_missing_key(errors) or errors[0]
    raw = list(error["loc"])
    key_parts, union_at = _walk(raw)
    expected = None
    if union_at is not None and error["type"] != "value_error":
        # every member of a plain union (``str | int | ...``) failed: prefer a member whose
        # shape matched and failed deeper inside, else list what each member expects
        prefix = raw[:union_at]
        group = [e for e in errors if list(e["loc"])[:union_at] == prefix and len(e["loc"]) > union_at]
        deeper = [e for e in group if len(e["loc"]) > union_at + 1]
        bounded = [e for e in group if e["type"] in _CONSTRAINT_ERRORS]  # its type matched, its value is out of range
        if deeper or bounded:
            error = (deeper or bounded)[0]
            raw = list(error["loc"])
            key_parts, _ = _walk(raw)
        else:
            words = _dedupe([_union_word(e) for e in group])
            if words:
                expected = f"expected {_or(words)}, got {show_value(error.get('input'))}{_close_literal(group)}"
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _FieldError):
        key_parts = key_parts + ctx_error.subkey.split(".")
    elif isinstance(ctx_error, _KeyedError):
        key_parts = _dedupe_prefix(key_parts, ctx_error.subkey)
    elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        key_parts = key_parts + ["type"]
    key = ".".join(key_parts)
    return SweepConfigError(label, key, expected or _expected(error, raw))


def _typo_of_a_missing_key(errors: list[Any]) -> Any:
    """The unknown key that is a typo of a missing one (``serach:`` for ``search:``), said
    instead of "search: required key is missing", which never named the typo. Also when an
    override created the section the typo left out (``--trials 2``: ``search.space`` missing)."""
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    for missing in (e for e in errors if e["type"] == "missing"):
        loc = [str(part) for part in missing["loc"]]
        for error in unknown:
            where = [str(part) for part in error["loc"]]
            depth = len(where) - 1
            if depth < len(loc) and where[:-1] == loc[:depth] and difflib.get_close_matches(where[-1], [loc[depth]], n=1, cutoff=0.75):
                return error
    return None


def _dedupe_prefix(loc: list[str], subkey: str) -> list[str]:
    """A model validator's loc already names its section; the subkey restates part of it."""
    sub = subkey.split(".")
    head = list(loc)
    if head and sub and head[-1] == sub[0]:
        head = head[:-1]
    return head + sub


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``Optional``: what pydantic validates without a loc step."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if get_origin(annotation) in (Union, UnionType):
            members = [m for m in get_args(annotation) if m is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _tagged_members(annotation: Any) -> dict[str, type[BaseModel]] | None:
    """``{tag: model}`` when ``annotation`` is a union of models told apart by ``type``."""
    if get_origin(annotation) not in (Union, UnionType):
        return None
    members: dict[str, type[BaseModel]] = {}
    for member in get_args(annotation):
        field = getattr(member, "model_fields", {}).get("type") if isinstance(member, type) else None
        if field is None or get_origin(field.annotation) is not Literal:
            return None
        for tag in get_args(field.annotation):
            members[tag] = member
    return members


def _member_label_matches(member: Any, label: str) -> bool:
    label = label.lower().replace(" ", "")
    origin = get_origin(member)
    if origin is not None:
        return label.startswith(getattr(origin, "__name__", str(origin)).lower() + "[")
    return label == getattr(member, "__name__", "").lower()


def _walk(loc: list[Any]) -> tuple[list[str], int | None]:
    """The user's key path for a pydantic loc (tags and union labels dropped).

    Walks the schema alongside the loc so that only pydantic's own steps (a discriminated
    union's tag, a plain union's member label) are dropped; user keys that happen to read
    like one (a parameter named ``int``) stay. Also returns the loc index of the first plain
    union member label, if any.
    """
    parts: list[str] = []
    union_at: int | None = None
    annotation: Any = SweepConfig
    for index, part in enumerate(loc):
        annotation = _unwrap(annotation)
        tagged = _tagged_members(annotation)
        if tagged is not None and part in tagged:
            annotation = tagged[part]  # the discriminator tag pydantic inserts
            continue
        if get_origin(annotation) in (Union, UnionType):
            members = [m for m in get_args(annotation) if m is not type(None)]
            if isinstance(part, str) and (part.startswith(("function-", "constrained-")) or any(_member_label_matches(m, part) for m in members)):
                if union_at is None:
                    union_at = index
                annotation = next((m for m in members if _member_label_matches(m, part)), Any)
                continue
        if isinstance(part, str) and part.startswith("function-"):
            continue
        parts.append(str(part))
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            annotation = field.annotation if field is not None else Any
        elif get_origin(annotation) in (dict, list):
            annotation = get_args(annotation)[-1] if get_args(annotation) else Any
        else:
            annotation = Any
    return parts, union_at


def _annotation_at(loc: list[Any]) -> Any:
    annotation: Any = SweepConfig
    for part in loc:
        annotation = _unwrap(annotation)
        tagged = _tagged_members(annotation)
        if tagged is not None and part in tagged:
            annotation = tagged[part]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            annotation = field.annotation if field is not None else Any
        elif get_origin(annotation) in (dict, list):
            annotation = get_args(annotation)[-1] if get_args(annotation) else Any
        else:
            return Any
    return _unwrap(annotation)


_CONSTRAINT_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short", "too_long", "finite_number", "multiple_of")


def _union_word(error: dict[str, Any]) -> str:
    """What one member of a plain union expects, in a user's words (a literal's values)."""
    if error["type"] == "literal_error":
        return f"one of {(error.get('ctx') or {}).get('expected', '').replace(' or ', ', ')}"
    return _UNION_WORDS.get(error["type"], "")


def _close_literal(group: list[dict[str, Any]]) -> str:
    """`` (did you mean 'classification'?)`` for a string close to one of a union's literal values."""
    for error in group:
        if error["type"] == "literal_error" and isinstance(error.get("input"), str):
            values = re.findall(r"'([^']*)'", (error.get("ctx") or {}).get("expected", ""))
            close = difflib.get_close_matches(error["input"], values, n=1, cutoff=0.75)
            if close:
                return f" (did you mean {close[0]!r}?)"
    return ""


_UNION_WORDS = {
    "string_type": "a string",
    "int_type": "a number",
    "int_parsing": "a number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}


def _expected(error: dict[str, Any], raw_loc: list[Any]) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    got = f", got {show_value(value)}"
    simple = {
        "missing": "required key is missing",
        "float_parsing": f"expected a number{got}",
        "float_type": f"expected a number{got}",
        "int_parsing": f"expected an integer{got}",
        "int_type": f"expected an integer{got}",
        "int_from_float": f"expected an integer{got}",
        "bool_parsing": f"expected true or false{got}",
        "bool_type": f"expected true or false{got}",
        "string_type": f"expected a string{got}",
        "dict_type": f"expected a mapping{got}",
        "model_type": f"expected a mapping{got}",
        "model_attributes_type": f"expected a mapping{got}",
        "list_type": f"expected a list{got}",
        "too_short": f"expected at least {ctx.get('min_length', 1)} item{'' if ctx.get('min_length', 1) == 1 else 's'}{got}",
        "string_pattern_mismatch": f"expected letters, digits, '.', '_' or '-' (starting with a letter or digit){got}",
        "string_too_long": f"expected at most {ctx.get('max_length')} characters, got {len(value) if isinstance(value, str) else show_value(value)}",
        "string_too_short": f"expected at least {ctx.get('min_length')} character{'' if ctx.get('min_length') == 1 else 's'}{got}",
    }
    if kind in simple:
        return simple[kind]
    if kind == "extra_forbidden":
        return "unknown key" + _allowed_keys_hint(raw_loc[:-1], raw_loc[-1] if raw_loc else None)
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected', '').replace(' or ', ', ')}{got}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        members = list(_tagged_members(_annotation_at(raw_loc)) or {})
        tags = ", ".join(repr(t) for t in members)
        if kind == "union_tag_not_found":
            return f"required key is missing (expected one of {tags})"
        close = difflib.get_close_matches(str(ctx.get("tag")), [str(t) for t in members], n=1, cutoff=0.75)
        return f"expected one of {tags}, got {show_value(ctx.get('tag'))}" + (f"; did you mean {close[0]!r}?" if close else "")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        sign = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(v for k, v in ctx.items() if k in ("gt", "ge", "lt", "le")), "")
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"expected a value {sign} {bound}{got}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "finite_number":
        return f"expected a finite number{got}"
    return f"{error['msg'][0].lower()}{error['msg'][1:]}{got}"


def _allowed_keys_hint(parent_loc: list[Any], key: Any = None) -> str:
    """The keys allowed where an unknown one was found, and the likely intended one for a typo."""
    model = _annotation_at(parent_loc)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return ""
    names = [n for n in model.model_fields if n != "when"] + (["when"] if "when" in model.model_fields else [])
    if not names:
        return ""
    close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.75) if key is not None else []
    guess = f"; did you mean {close[0]!r}?" if close else ""
    elsewhere = _section_holding(key) if key is not None and len(parent_loc) == 1 else None
    if elsewhere is not None and elsewhere != parent_loc[0]:
        guess = f"; {key} is set under {elsewhere}: ({elsewhere}.{key})"
    return f" (expected one of: {', '.join(names)}{guess})"


def _section_holding(key: Any) -> str | None:
    """The section of the sweep file that has a key of this name (``validation_split`` is under
    ``data:``), for a key put in the wrong section."""
    for section, field in SweepConfig.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and key in annotation.model_fields:
            return section
    return None


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def _or(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def show_value(value: Any) -> str:
    """A value as an error message quotes it (YAML-like, at most 60 characters); shared with the runner's messages."""
    if isinstance(value, _Reset):
        return "null"
    text = repr(value) if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()
    text = re.sub(r"\n\.\.\.$", "", text)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "an empty file"
    names = {str: "a string", list: "a list", int: "a number", float: "a number", bool: "a boolean"}
    return f"{names.get(type(value), 'a ' + type(value).__name__)} {show_value(value)}"
