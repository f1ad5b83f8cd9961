"""What the driver, the model builders and the workers know about a sweep's data.

:class:`DataInfo` (shapes, task, rows, fingerprint) and :class:`Dataset` (the arrays ``fit()``
receives, or a pipeline's recipe) are made by :mod:`sweep.inputs.data` for arrays and by
:mod:`sweep.inputs.pipelines` for pipelines, and read by the builders (:mod:`sweep.inputs.models`)
and the trial workers. They live here, apart from both makers, so neither has to import the
other. Light at module level (the standard library and the sweep's structure helpers), as the
config validator imports :mod:`sweep.inputs.data`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sweep.inputs.structures import is_nested, leaves, map_leaves, named_leaves, shapes, take_rows
from sweep.inputs.targets import TargetKind

__all__ = ["EXAMPLE_ROWS", "DataInfo", "Dataset", "data_info", "describe_targets"]

EXAMPLE_ROWS = 5  # validation inputs in the best model's MLflow input example


@dataclass(frozen=True)
class DataInfo:
    """What a model factory and the trial runner need to know about the data.

    ``input_shapes`` and ``output_sizes`` have the form of ``x`` and ``y`` as the data
    function returned them: one shape tuple (one sample, no batch dimension) for a single
    array, a list for a list of arrays, a dict by name for a dict. ``input_shape`` and
    ``num_outputs`` are the first input's and the first output's, for single-array models.
    """

    input_shape: tuple[int, ...]  # the first input: one sample, no batch dimension (after data.reshape)
    num_outputs: int  # the first output: classes (>= 2) for classification; values per row for regression
    task: str  # the first output's: "classification" | "regression"
    n_train: int  # rows (0 when a pipeline does not know its length)
    n_val: int
    source: str
    fingerprint: str  # hex hash of the arrays (bytes, shapes, dtypes), or of a pipeline's settings
    input_shapes: Any = None  # every input's shape, in x's form (tuple | list | dict)
    output_sizes: Any = None  # every output's size, in y's form (int | list | dict)
    target_layout: Any = None  # per output: sparse | onehot | multilabel | values (sweep.inputs.targets.LOSSES); default by task
    inferred: str = ""  # what the sweep read from the targets, for the start-up line
    streamed: bool = False  # a pipeline built on each worker (sweep.inputs.pipelines), not arrays
    labels: tuple[str, ...] | None = None  # encoded classification: the original label of each class index

    def __post_init__(self) -> None:
        if self.target_layout is None:  # one output, described by its task alone
            object.__setattr__(self, "target_layout", "sparse" if self.task == "classification" else "values")

    @property
    def num_inputs(self) -> int:
        return len(leaves(self.input_shapes)) if is_nested(self.input_shapes) else 1

    @property
    def num_heads(self) -> int:
        """The number of model outputs the targets are for."""
        return len(leaves(self.output_sizes)) if is_nested(self.output_sizes) else 1

    def summary(self) -> str:
        """One line: task, outputs and inputs, as printed at the start of a sweep."""
        inputs = self.input_shapes if self.input_shapes is not None else self.input_shape
        rows_text = f"{self.n_train} train / {self.n_val} validation rows" if not self.streamed else "streamed on workers"
        return f"{self.inferred or self.task}; inputs {_show_shapes(inputs)}; {rows_text}"


def _show_shapes(structure: Any) -> str:
    if isinstance(structure, dict):
        return "{" + ", ".join(f"{k}: {_show_shapes(v)}" for k, v in structure.items()) + "}"
    if isinstance(structure, list):
        return "[" + ", ".join(_show_shapes(v) for v in structure) + "]"
    shape = tuple(structure)
    return str(shape) if shape else "(one value per row)"  # e.g. a text column, or a 1-D feature


@dataclass
class Dataset:
    """The arrays ``fit()`` receives (each an array or a Keras structure of arrays).

    For a pipeline (``info.streamed``) the arrays are None and ``pipeline`` says how a worker
    builds the datasets (:class:`sweep.inputs.pipelines.Pipeline`).
    """

    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any
    info: DataInfo
    sample_weight: Any = None  # per training row, or None
    val_sample_weight: Any = None
    pipeline: Any = None
    class_weight: dict[int, float] | None = None  # fit(class_weight=...), from fit.class_weight
    preparation: Any = None  # sweep.inputs.preparation.Preparation: what was done to x before fit(), or None
    raw_example: Any = None  # the first validation inputs as the source gave them (unprepared, in its dtypes)

    def validation_data(self) -> tuple:
        """``fit(validation_data=...)``: ``(x, y)`` or ``(x, y, sample_weight)``."""
        if self.val_sample_weight is None:
            return (self.x_val, self.y_val)
        return (self.x_val, self.y_val, self.val_sample_weight)

    def example(self, count: int = EXAMPLE_ROWS) -> Any:
        """The first ``count`` validation inputs as the data source gave them (the best model's
        MLflow input example: it takes raw inputs), None for a pipeline."""
        if self.raw_example is not None:
            return take_rows(self.raw_example, slice(0, count))
        if self.x_val is None:
            return None
        return take_rows(self.x_val, slice(0, count))


def data_info(
    x: Any, kinds: Any, source: str, digest: str, n_train: int, n_val: int, streamed: str = "", labels: list[str] | None = None
) -> DataInfo:
    """The :class:`DataInfo` of inputs ``x`` (rows first) and targets of ``kinds``
    (:class:`~sweep.inputs.targets.TargetKind`, in y's form); ``streamed`` names a pipeline's kind;
    ``labels`` are the original labels of encoded classes."""
    first = leaves(kinds)[0]
    inferred = describe_targets(kinds)
    if labels:  # encoded by data.encode_labels: the user's own labels, not only "integer labels 0..K-1"
        shown = ", ".join(str(label) for label in list(labels)[:6]) + (", ..." if len(labels) > 6 else "")
        inferred += f", encoded from the labels {shown}"
    return DataInfo(
        input_shape=leaves(shapes(x))[0],
        num_outputs=first.size,
        task=first.task,
        n_train=n_train,
        n_val=n_val,
        source=source,
        fingerprint=digest,
        input_shapes=shapes(x),
        output_sizes=map_leaves(lambda k: k.size, kinds),
        target_layout=map_leaves(lambda k: k.layout, kinds),
        inferred=f"{inferred}; {streamed} pipeline" if streamed else inferred,
        streamed=bool(streamed),
        labels=tuple(labels) if labels else None,
    )


def describe_targets(kinds: Any) -> str:
    """``classification, 12 classes (integer labels 0..11)`` or one such entry per output."""
    named = named_leaves(kinds)

    def one(kind: TargetKind) -> str:
        if kind.task == "classification":
            size = "2 classes as one 0/1 output" if kind.size == 1 else f"{kind.size} classes" if kind.layout != "multilabel" else f"{kind.size} labels"
        else:
            size = f"{kind.size} value(s)"
        return f"{kind.task}, {size} ({kind.reason})"

    if len(named) == 1:
        return one(named[0][1])
    return "; ".join(f"{name}: {one(kind)}" for name, kind in named)
