"""What a user's targets are, read from the targets as given (never changed to fit a guess).

The sweep needs the task (classification or regression), the output size and the target
layout only for its defaults: the built-in builders' output layer and the loss and metrics
when the sweep file names none. A user's own arrays reach ``fit()`` exactly as returned, so
each rule below only *reads* them, and when the targets could be either class labels or a
quantity the sweep asks for ``data.task`` instead of guessing silently.

Rules for one output's targets ``y`` (``N`` rows), unless ``data.task`` says otherwise:

==========================================  ==============  =========================
targets                                     task            layout (default loss)
==========================================  ==============  =========================
booleans                                    classification  sparse (sparse CE)
integers ``0..K-1``, every one present,     classification  sparse (sparse CE)
``2 <= K <= N/2`` (``(N,)`` or ``(N, 1)``);
stored as floats only for ``K = 2``
one-hot rows, or rows of probabilities      classification  onehot (categorical CE)
summing to 1 (``(N, K)``)
rows of 0/1 with several ones (multi-hot)   classification  multilabel (binary CE)
non-integer numbers, or more than           regression      values (mse)
``MAX_AMBIGUOUS_INTEGERS`` distinct integers
other integers (``1..5``, ``{3, 7}``),      asks for ``data.task``
whole-number floats (``0.0..6.0``), and
``0..K-1`` or ``1..K`` with at least 90%
of the labels present
==========================================  ==============  =========================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sweep.errors import InputError

__all__ = ["TargetKind", "LOSSES", "MAX_AMBIGUOUS_INTEGERS", "infer", "check_outputs"]

# Integer targets that are not 0..K-1 are a quantity when they take more distinct values than
# this (a count, a price in cents); up to it they could be class codes or scores (ratings
# 1..5, wine quality 3..9), and the sweep asks rather than guesses.
MAX_AMBIGUOUS_INTEGERS = 50

# The default loss for each target layout (when neither the sweep file nor the factory gives one).
LOSSES = {
    "sparse": "sparse_categorical_crossentropy",
    "onehot": "categorical_crossentropy",
    "multilabel": "binary_crossentropy",
    "values": "mse",
}


@dataclass(frozen=True)
class TargetKind:
    """One output's task, size and target layout, and why (for the start-up line)."""

    task: str  # "classification" | "regression"
    size: int  # classes (classification) or values per row (regression)
    layout: str  # a key of LOSSES
    reason: str  # e.g. "integer labels 0..11", "data.task"


def infer(y: np.ndarray, task: str | None, name: str) -> TargetKind:
    """The :class:`TargetKind` of targets ``y`` as given (see the module docstring).

    ``task`` is ``data.task`` (None: infer). ``name`` names the targets in messages
    (``y`` or ``y.kind``). Raises :class:`InputError` (``data.task``) when the targets do not
    say which task they are, or do not fit the task asked for.
    """
    if y.ndim == 0:
        raise InputError("data.source", f"expected targets {name} with one row per sample, got a scalar")
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        first = y.flat[0] if y.size else None
        got = f"text labels (e.g. {str(first)!r})" if isinstance(first, (str, bytes)) else f"dtype {y.dtype}"
        raise InputError(
            "data.encode_labels",
            f"expected numeric targets {name}, got {got} (set data.encode_labels: true to encode labels 0..K-1 in sorted order)",
        )
    column = y if y.ndim == 1 else (y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else None)
    if column is not None:
        return _infer_column(column, task, name)
    if y.ndim == 2:
        return _infer_rows(y, task, name)
    return TargetKind("regression" if task is None else task, int(y.shape[-1]), "values", f"targets of shape {list(y.shape[1:])}")


def _infer_column(y: np.ndarray, task: str | None, name: str) -> TargetKind:
    if y.dtype == np.bool_:
        return TargetKind("classification", 2, "sparse", "boolean targets") if task != "regression" else TargetKind("regression", 1, "values", "data.task")
    if task == "regression":
        return TargetKind("regression", 1, "values", "data.task")
    finite = np.isfinite(y).all()
    integral = finite and bool(np.equal(np.mod(y, 1), 0).all())
    if not integral:
        if task == "classification":
            raise InputError("data.task", f"expected integer class labels in {name} for classification, got non-integer values (set data.encode_labels: true to encode them)")
        return TargetKind("regression", 1, "values", "non-integer targets")
    low, high = int(y.min()), int(y.max())
    distinct = len(np.unique(y))
    if task == "classification":
        if low < 0:
            raise InputError("data.task", f"expected class labels 0..K-1 in {name}, got negative labels (set data.encode_labels: true to encode them)")
        reason = "data.task"
        if distinct != high + 1:  # labels with gaps or not from 0: Keras needs max label + 1 outputs
            reason += f"; labels {low}..{high}, so {high + 1} outputs, some never a target (data.encode_labels: true makes them 0..{distinct - 1})"
        return TargetKind("classification", max(high + 1, 2), "sparse", reason)
    stored_as_integers = np.issubdtype(y.dtype, np.integer)
    if low == 0 and distinct == high + 1 and 2 <= distinct <= len(y) / 2 and (stored_as_integers or distinct == 2):
        return TargetKind("classification", distinct, "sparse", f"integer labels 0..{high}")
    if not stored_as_integers and distinct <= MAX_AMBIGUOUS_INTEGERS:  # 0.0, 1.0, ... 6.0: scores or counts as often as classes
        raise InputError(
            "data.task",
            f"expected data.task (classification or regression): the targets {name} are {distinct} distinct whole numbers "
            f"{low}..{high} stored as {y.dtype}, which could be class labels or a quantity",
        )
    span = high - low + 1
    if distinct > MAX_AMBIGUOUS_INTEGERS and low in (0, 1) and distinct >= 0.9 * span:  # 0..199 over 300 rows too: classes or a rank
        raise InputError(
            "data.task",
            f"expected data.task (classification or regression): the targets {name} are {distinct} distinct integers "
            f"{low}..{high} ({span - distinct} of that range never occur), which could be class labels with some classes "
            "absent from these rows, or a quantity",
        )
    if distinct > MAX_AMBIGUOUS_INTEGERS:
        return TargetKind("regression", 1, "values", f"{distinct} distinct integer values")
    raise InputError(
        "data.task",
        f"expected data.task (classification or regression): the targets {name} are {distinct} distinct integers "
        f"{low}..{high}, which could be class labels or a quantity",
    )


def _infer_rows(y: np.ndarray, task: str | None, name: str) -> TargetKind:
    width = int(y.shape[1])
    if task == "regression":
        return TargetKind("regression", width, "values", "data.task")
    binary = bool(np.isin(y, (0, 1)).all())
    sums = y.sum(axis=1)
    if binary and (sums == 1).all():
        return TargetKind("classification", width, "onehot", "one-hot rows")
    if bool((y >= 0).all()) and np.allclose(sums, 1.0, atol=1e-3):
        return TargetKind("classification", width, "onehot", "rows of class probabilities")
    if binary:
        return TargetKind("classification", width, "multilabel", "rows of 0/1 (several labels per row)")
    if task == "classification":
        raise InputError("data.task", f"expected one-hot, probability or 0/1 rows in {name} for classification, got other values")
    return TargetKind("regression", width, "values", f"{width} target values per row")


def check_outputs(given: int | None, kind: TargetKind) -> TargetKind:
    """``data.num_outputs`` against what the targets need (one output)."""
    if given is None:
        return kind
    if kind.task == "classification" and given < kind.size:
        raise InputError("data.num_outputs", f"expected at least {kind.size} (the number of classes), got {given}")
    if kind.task == "regression" and given != kind.size:
        raise InputError("data.num_outputs", f"expected {kind.size} (the number of target columns), got {given}")
    return TargetKind(kind.task, given, kind.layout, kind.reason)
