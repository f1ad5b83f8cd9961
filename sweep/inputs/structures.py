"""Keras' nested data structures (an array, a list or a dict of arrays) as plain functions.

``model.fit()`` takes ``x`` and ``y`` as one array, a list of arrays (one per input or output,
in order) or a dict of arrays (by input or output name). The data path keeps that structure
untouched from the user's function to ``fit()``; these helpers visit its arrays (the leaves)
without importing Keras, so :mod:`sweep.inputs.data` stays light for the config validator.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["is_nested", "leaves", "map_leaves", "named_leaves", "rebuild", "rows", "shapes", "take_rows"]


def is_nested(structure: Any) -> bool:
    """True for a list or dict of arrays (several inputs or outputs).

    Tuples are leaves here: a sample's shape is a tuple, and :mod:`sweep.inputs.data` turns a tuple
    of arrays from a user's function into a list before anything else.
    """
    return isinstance(structure, (list, dict))


def map_leaves(fn: Callable[[Any], Any], structure: Any) -> Any:
    """``structure`` with every leaf replaced by ``fn(leaf)``; dicts keep their key order."""
    if isinstance(structure, dict):
        return {key: map_leaves(fn, value) for key, value in structure.items()}
    if isinstance(structure, list):
        return [map_leaves(fn, value) for value in structure]
    return fn(structure)


def named_leaves(structure: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``[(name, leaf)]``: dict keys, list positions (``0``, ``1``), or ``prefix`` for one array.

    Names are dotted paths for deeper nesting (``text.ids``), as in messages to the user.
    """
    if isinstance(structure, dict):
        items = [(str(k), v) for k, v in structure.items()]
    elif isinstance(structure, list):
        items = [(str(i), v) for i, v in enumerate(structure)]
    else:
        return [(prefix, structure)]
    found: list[tuple[str, Any]] = []
    for name, value in items:
        found.extend(named_leaves(value, f"{prefix}.{name}" if prefix else name))
    return found


def leaves(structure: Any) -> list[Any]:
    """Every array of ``structure``, in order."""
    return [leaf for _, leaf in named_leaves(structure)]


def rows(structure: Any) -> int:
    """The number of samples (the first leaf's first dimension)."""
    first = leaves(structure)[0]
    return int(first.shape[0])


def take_rows(structure: Any, index: Any) -> Any:
    """The rows ``index`` (a slice or an integer array) of every leaf."""
    return map_leaves(lambda leaf: leaf[index], structure)


def shapes(structure: Any) -> Any:
    """One sample's shape per leaf (no batch dimension), in ``structure``'s form."""
    return map_leaves(lambda leaf: tuple(int(d) for d in np.shape(leaf)[1:]), structure)


def rebuild(structure: Any, values: dict[str, Any], prefix: str) -> Any:
    """``structure`` with each leaf replaced by ``values[name]``, names as :func:`named_leaves` gives them."""
    if isinstance(structure, dict):
        return {key: rebuild(value, values, f"{prefix}.{key}" if prefix else str(key)) for key, value in structure.items()}
    if isinstance(structure, list):
        return [rebuild(value, values, f"{prefix}.{i}" if prefix else str(i)) for i, value in enumerate(structure)]
    return values[prefix]
