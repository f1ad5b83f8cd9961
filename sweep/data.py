"""Named data sources, the train/validation split and :class:`DataInfo`.

``data.source`` in a sweep file names where the arrays come from:

* ``digits`` / ``diabetes``: small datasets that ship with scikit-learn (no download);
* ``synthetic``: ``make_classification`` / ``make_regression`` sized by ``samples``,
  ``features`` and ``classes`` and seeded by ``seed``;
* ``npz:PATH``: arrays ``x_train, y_train, x_val, y_val`` or ``x, y`` (pickles are never loaded);
* ``csv:PATH``: numeric feature columns plus the ``target`` column;
* ``keras:NAME``: ``keras.datasets.NAME.load_data()`` (may download on first use);
* ``package.module:function``: a user function called with ``data.args`` that returns
  ``(x, y)`` or ``((x_train, y_train), (x_val, y_val))``.

Every path ends in :func:`load`, which returns float32 inputs, int64 class labels ``0..K-1``
(classification) or float32 targets (regression), and a :class:`DataInfo` with the shapes the
model builder needs and a fingerprint workers use to cache the arrays.

This module is imported by the config validator (:func:`check_source`), so at module level it
imports only the standard library and numpy; scikit-learn, pandas and keras are imported by the
loaders that need them.
"""

from __future__ import annotations

import hashlib
import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from sweep.config import InputError

if TYPE_CHECKING:
    from sweep.config import DataConfig

__all__ = ["DataInfo", "Dataset", "SOURCES", "KERAS_DATASETS", "check_source", "load"]

# Task inference: integer-valued targets with at most this many distinct values ...
MAX_INFERRED_CLASSES = 50
# ... are class labels when there are at most SMALL_CLASS_COUNT of them, or when they are
# fewer than this fraction of the rows (a column of many repeated integers is labels; a
# column where most values are distinct, like diabetes' disease progression, is a quantity).
SMALL_CLASS_COUNT = 10
CLASS_FRACTION = 0.05

# keras.datasets whose load_data() returns fixed-size numeric arrays (imdb/reuters return
# variable-length sequences a plain fit() cannot take).
KERAS_DATASETS = ("boston_housing", "california_housing", "cifar10", "cifar100", "fashion_mnist", "mnist")

_FORMS = "digits, diabetes, synthetic, npz:PATH, csv:PATH, keras:NAME or package.module:function"


@dataclass(frozen=True)
class DataInfo:
    """What a model builder and the trial runner need to know about the arrays."""

    input_shape: tuple[int, ...]  # one sample, no batch dimension (after data.reshape)
    num_outputs: int  # classes (>= 2) for classification; 1 or y.shape[1] for regression
    task: str  # "classification" | "regression"
    n_train: int
    n_val: int
    source: str
    fingerprint: str  # hex hash of the four arrays (bytes, shapes, dtypes)


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    info: DataInfo


# ---------------------------------------------------------------------------------------------
# loaders: each returns (x, y) or ((x_train, y_train), (x_val, y_val))


def _load_digits(config: "DataConfig") -> tuple:
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


def _load_diabetes(config: "DataConfig") -> tuple:
    from sklearn.datasets import load_diabetes

    return load_diabetes(return_X_y=True)


def _load_synthetic(config: "DataConfig") -> tuple:
    if config.task == "regression":
        from sklearn.datasets import make_regression

        return make_regression(
            n_samples=config.samples, n_features=config.features, n_informative=min(config.features, 10),
            noise=1.0, random_state=config.seed,
        )
    from sklearn.datasets import make_classification

    # one cluster per class needs 2**n_informative >= classes; use about half the features
    needed = max(1, math.ceil(math.log2(config.classes)))
    if needed > config.features:
        raise InputError(
            "data.features",
            f"expected at least {needed} features for {config.classes} synthetic classes, got {config.features}",
        )
    informative = max(needed, min(config.features, max(2, config.features // 2)))
    return make_classification(
        n_samples=config.samples, n_features=config.features, n_informative=informative,
        n_redundant=min(2, config.features - informative), n_repeated=0, n_classes=config.classes,
        n_clusters_per_class=1, random_state=config.seed,
    )


def _load_npz(config: "DataConfig") -> tuple:
    path = _existing_file(config.source, ".npz")
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if not (magic.startswith(b"PK") or magic == b"\x93NUMPY"):
        raise InputError("data.source", f"expected a .npz archive (numpy.savez), got {str(path)!r} (not a numpy file)")
    try:
        archive = np.load(path, allow_pickle=False)  # never unpickle a user's file
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a single .npy array
            raise InputError("data.source", f"expected arrays x_train, y_train, x_val, y_val or x, y in {path}, got a single array")
        with archive:
            found = set(archive.files)
            if {"x_train", "y_train", "x_val", "y_val"} <= found:
                return (archive["x_train"], archive["y_train"]), (archive["x_val"], archive["y_val"])
            if {"x", "y"} <= found:
                return archive["x"], archive["y"]
    except ValueError as exc:
        if isinstance(exc, InputError):
            raise
        if "allow_pickle" in str(exc):
            raise InputError("data.source", f"expected numeric arrays in {path}, got object arrays (pickled data is never loaded)") from None
        raise InputError("data.source", f"expected a readable .npz file, got {str(path)!r} ({_one_line(exc)})") from None
    except (OSError, EOFError) as exc:
        raise InputError("data.source", f"expected a readable .npz file, got {str(path)!r} ({_one_line(exc)})") from None
    shown = ", ".join(sorted(found)) or "none"
    raise InputError("data.source", f"expected arrays x_train, y_train, x_val, y_val or x, y in {path}, got {shown}")


def _load_csv(config: "DataConfig") -> tuple:
    import pandas as pd

    path = _existing_file(config.source, ".csv")
    if not config.target:
        raise InputError("data.target", f"expected the name of the target column of {config.source}, got none")
    try:
        frame = pd.read_csv(path)
    except Exception as exc:  # pandas raises many kinds of parser errors
        raise InputError("data.source", f"expected a readable .csv file, got {str(path)!r} ({_one_line(exc)})") from None
    columns = [str(c) for c in frame.columns]
    if config.target not in columns:
        raise InputError("data.target", f"expected one of the columns of {config.source} ({', '.join(columns)}), got {config.target!r}")
    y = frame.pop(config.target).to_numpy()
    bad = [str(c) for c in frame.columns if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))]
    if bad:
        raise InputError(
            "data.source",
            f"expected numeric feature columns in {config.source}, got non-numeric column(s) "
            f"{', '.join(repr(b) for b in bad)} (encode or drop them)",
        )
    if frame.shape[1] == 0:
        raise InputError("data.source", f"expected at least one feature column besides {config.target!r} in {config.source}, got none")
    return frame.to_numpy(dtype=np.float64), y


def _load_keras(config: "DataConfig") -> tuple:
    name = config.source.partition(":")[2]
    if name not in KERAS_DATASETS:
        raise InputError("data.source", f"expected keras:NAME with NAME one of {', '.join(KERAS_DATASETS)}, got {name!r}")
    loader = _keras_loader(name)
    try:
        (x_train, y_train), (x_val, y_val) = loader()
    except Exception as exc:  # no network, corrupt cache, ...
        raise InputError("data.source", f"expected keras.datasets.{name}.load_data() to succeed, but it raised {_one_line(exc)}") from None
    return (x_train, y_train), (x_val, y_val)


def _keras_loader(name: str) -> Callable[[], Any]:
    """``keras.datasets.NAME.load_data`` (imports keras; does not download)."""
    return importlib.import_module(f"keras.datasets.{name}").load_data


SOURCES: dict[str, Callable[["DataConfig"], tuple]] = {
    "digits": _load_digits,
    "diabetes": _load_diabetes,
    "synthetic": _load_synthetic,
    "npz": _load_npz,  # npz:PATH
    "csv": _load_csv,  # csv:PATH
    "keras": _load_keras,  # keras:NAME
}
_PREFIXED = ("npz", "csv", "keras")
# sources whose task is known without looking at the targets (when data.task is not given)
_KNOWN_TASKS = {"synthetic": "classification"}


def check_source(source: str) -> None:
    """Raise ``ValueError`` unless ``source`` has one of the accepted forms (no file checks)."""
    from sweep.imports import is_spec

    kind, sep, rest = source.partition(":")
    if not sep and kind in SOURCES and kind not in _PREFIXED:
        return
    if sep and kind in _PREFIXED and rest.strip():
        return
    if sep and kind not in _PREFIXED and is_spec(source):
        return
    raise ValueError(f"expected one of {_FORMS}, got {source!r}")


# ---------------------------------------------------------------------------------------------
# load


def load(config: "DataConfig", search_paths: tuple[Path, ...] = ()) -> Dataset:
    """Load, check, split, encode, normalize and reshape ``config``'s data.

    Steps, in order:

    1. the source's loader returns ``(x, y)`` or ``((x_train, y_train), (x_val, y_val))``;
    2. ``x`` becomes float32 (an ``(N,)`` x becomes ``(N, 1)``); x and y lengths must match;
    3. the task is ``config.task``, else classification for ``synthetic``, else inferred:
       non-numeric or boolean targets, one-hot targets, and integer-valued 1-D targets with at
       most 50 distinct values that are either at most 10 or fewer than 5% of the rows are
       classification; anything else is regression;
    4. classification labels that are not exactly ``0..K-1`` (strings, ``{3, 7}``, negatives)
       are encoded ``0..K-1`` in sorted order; labels become int64; regression targets float32
       (an ``(N, 1)`` y becomes ``(N,)``);
    5. ``(x, y)`` is split by ``validation_split`` with ``config.seed``, stratified by class
       when every class has at least two rows;
    6. with ``normalize`` (the default) x is standardized with the *train* split's per-feature
       mean and std (a std of 0 counts as 1): statistics from the validation rows would leak
       them into training and make validation scores optimistic. keras image datasets are
       instead scaled to [0, 1] by dividing by 255 (per-pixel statistics would only add noise);
    7. ``reshape`` reshapes every sample (one ``-1`` allowed).
    """
    kind, sep, _ = config.source.partition(":")
    if sep and kind not in _PREFIXED:
        raw = _call_user_function(config, search_paths)
    elif kind in SOURCES:
        raw = SOURCES[kind](config)
    else:  # config validation normally stops this earlier
        raise InputError("data.source", f"expected one of {_FORMS}, got {config.source!r}")
    is_images = kind == "keras"
    pairs = _as_pairs(raw, config.source)
    pairs = [(_as_x(x, config.source), np.asarray(y)) for x, y in pairs]
    for x, y in pairs:
        if len(x) != len(y):
            raise InputError("data.source", f"expected as many targets as inputs in {config.source}, got {len(x)} inputs and {len(y)} targets")
        if len(x) == 0:
            raise InputError("data.source", f"expected at least one row in {config.source}, got none")
    is_images = is_images and pairs[0][0].ndim >= 3
    if is_images and pairs[0][0].ndim == 3:  # (N, H, W) -> (N, H, W, 1) for Conv2D
        pairs = [(x[..., np.newaxis], y) for x, y in pairs]

    try:
        y_all = np.concatenate([_flatten_column(y) for _, y in pairs])
    except ValueError:
        shapes = " and ".join(str(list(y.shape)) for _, y in pairs)
        raise InputError("data.source", f"expected train and validation targets of the same width in {config.source}, got {shapes}") from None
    _check_targets_present(y_all, config.source)
    task = config.task or _KNOWN_TASKS.get(kind) or _infer_task(y_all)
    if task == "classification":
        mapping = _label_mapping(y_all)
        pairs = [(x, _encode(_flatten_column(y), mapping, config.source)) for x, y in pairs]
        n_classes = max(int(y.max()) for _, y in pairs) + 1
        num_outputs = _check_outputs(config.num_outputs, max(n_classes, 2), task)
    else:
        pairs = [(x, _regression_targets(y, config.source)) for x, y in pairs]
        y0 = pairs[0][1]
        num_outputs = _check_outputs(config.num_outputs, 1 if y0.ndim == 1 else y0.shape[1], task)

    if len(pairs) == 1:
        (x_train, y_train), (x_val, y_val) = _split(*pairs[0], config, task)
    else:
        (x_train, y_train), (x_val, y_val) = pairs

    if is_images:
        if config.normalize:
            x_train, x_val = x_train / np.float32(255), x_val / np.float32(255)
    elif config.normalize:
        x_train, x_val = _standardize(x_train, x_val)

    if config.reshape is not None:
        x_train, x_val = (_reshape(x, config.reshape) for x in (x_train, x_val))
    arrays = [np.ascontiguousarray(a) for a in (x_train, y_train, x_val, y_val)]
    info = DataInfo(
        input_shape=tuple(int(d) for d in arrays[0].shape[1:]),
        num_outputs=num_outputs,
        task=task,
        n_train=len(arrays[0]),
        n_val=len(arrays[2]),
        source=config.source,
        fingerprint=fingerprint(*arrays),
    )
    return Dataset(*arrays, info=info)


def fingerprint(*arrays: np.ndarray) -> str:
    """A short hex digest of the arrays' dtypes, shapes and bytes (equal data, equal digest)."""
    digest = hashlib.blake2b(digest_size=8)
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# helpers


def _call_user_function(config: "DataConfig", search_paths: tuple[Path, ...]) -> Any:
    from sweep.imports import resolve

    function = resolve(config.source, "data.source", search_paths)
    try:
        return function(**config.args)
    except Exception as exc:
        raise InputError("data.source", f"expected {config.source} to return data, but it raised {_one_line(exc)}") from None


def _as_pairs(raw: Any, source: str) -> list[tuple[Any, Any]]:
    """``[(x, y)]`` or ``[(x_train, y_train), (x_val, y_val)]`` from a loader's result.

    The split form is recognized by its two inner *tuples*, so an ``(x, y)`` whose x is a
    nested list is not mistaken for it.
    """
    if isinstance(raw, (tuple, list)) and len(raw) == 2:
        first, second = raw
        if isinstance(first, tuple) and isinstance(second, tuple):
            if len(first) == 2 and len(second) == 2:
                return [first, second]
        elif not isinstance(first, (tuple, dict, str)) and not isinstance(second, (tuple, dict, str)):
            return [(first, second)]
    if isinstance(raw, (tuple, list)):
        got = f"a {type(raw).__name__} of {len(raw)} item(s)"
        if len(raw) == 2:
            got += f" ({type(raw[0]).__name__}, {type(raw[1]).__name__})"
    else:
        got = type(raw).__name__
    raise InputError("data.source", f"expected {source} to return (x, y) or ((x_train, y_train), (x_val, y_val)), got {got}")


def _as_x(x: Any, source: str) -> np.ndarray:
    try:
        array = np.asarray(x)
    except Exception as exc:  # ragged nested lists
        raise InputError("data.source", f"expected inputs x of {source} to form an array, got {_one_line(exc)}") from None
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise InputError("data.source", f"expected numeric inputs x in {source}, got dtype {array.dtype}")
    array = array.astype(np.float32, copy=False)
    if array.ndim == 0:
        raise InputError("data.source", f"expected inputs x of {source} to have one row per sample, got a scalar")
    if array.ndim == 1:
        array = array[:, np.newaxis]
    if not np.isfinite(array).all():
        count = int(array.size - np.isfinite(array).sum())
        raise InputError("data.source", f"expected finite inputs x in {source}, got {count} NaN or infinite value(s)")
    return array


def _check_targets_present(y: np.ndarray, source: str) -> None:
    if np.issubdtype(y.dtype, np.number):
        missing = int(y.size - np.isfinite(y).sum())
    elif y.dtype == object:
        missing = sum(1 for v in y.ravel() if v is None or (isinstance(v, float) and math.isnan(v)))
    else:
        missing = 0
    if missing:
        raise InputError("data.source", f"expected a target for every row of {source}, got {missing} missing or infinite value(s)")


def _flatten_column(y: np.ndarray) -> np.ndarray:
    """``(N, 1)`` -> ``(N,)``; one-hot ``(N, K)`` -> class indices; other shapes unchanged."""
    if y.ndim == 2 and y.shape[1] == 1:
        return y[:, 0]
    if _is_onehot(y):
        return y.argmax(axis=1)
    return y


def _is_onehot(y: np.ndarray) -> bool:
    if y.ndim != 2 or y.shape[1] < 2 or not np.issubdtype(y.dtype, np.number):
        return False
    return bool(np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all())


def _infer_task(y: np.ndarray) -> str:
    """See :func:`load`, step 3. ``y`` is already flattened (one-hot became indices)."""
    if y.ndim != 1:
        return "regression"
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.number):
        return "classification"
    if not np.isfinite(y).all() or not np.equal(np.mod(y, 1), 0).all():
        return "regression"
    distinct = len(np.unique(y))
    if distinct <= SMALL_CLASS_COUNT or (distinct <= MAX_INFERRED_CLASSES and distinct <= CLASS_FRACTION * len(y)):
        return "classification"
    return "regression"


def _label_mapping(y: np.ndarray) -> np.ndarray | None:
    """The sorted distinct labels when they must be encoded, None when already ``0..K-1``."""
    if y.ndim != 1:
        raise InputError("data.task", f"expected one label per row for classification, got targets of shape {list(y.shape)}")
    try:
        labels = np.unique(y)
    except TypeError:  # mixed types in an object column
        labels = np.unique(y.astype(str))
    if np.issubdtype(labels.dtype, np.number) and labels.dtype != np.bool_:
        if np.array_equal(labels, np.arange(len(labels))):
            return None
    return labels


def _encode(y: np.ndarray, mapping: np.ndarray | None, source: str) -> np.ndarray:
    if mapping is None:
        return y.astype(np.int64)
    if mapping.dtype.kind in "OUS" and y.dtype != mapping.dtype:
        y = y.astype(str)
    return np.searchsorted(mapping, y).astype(np.int64)


def _regression_targets(y: np.ndarray, source: str) -> np.ndarray:
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise InputError("data.task", f"expected numeric targets for regression in {source}, got dtype {y.dtype}")
    y = y.astype(np.float32)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim > 2:
        raise InputError("data.task", f"expected targets of shape (N,) or (N, outputs) for regression, got {list(y.shape)}")
    return y


def _check_outputs(given: int | None, inferred: int, task: str) -> int:
    if given is None:
        return inferred
    if task == "classification" and given < inferred:
        raise InputError("data.num_outputs", f"expected at least {inferred} (the number of classes), got {given}")
    if task == "regression" and given != inferred:
        raise InputError("data.num_outputs", f"expected {inferred} (the number of target columns), got {given}")
    return given


def _split(x: np.ndarray, y: np.ndarray, config: "DataConfig", task: str) -> tuple:
    from sklearn.model_selection import train_test_split

    stratify = None
    if task == "classification":
        counts = np.bincount(y)
        if counts[counts > 0].min() >= 2:
            stratify = y
    try:
        x_train, x_val, y_train, y_val = train_test_split(
            x, y, test_size=config.validation_split, random_state=config.seed, stratify=stratify
        )
    except ValueError as exc:
        if stratify is None:
            raise InputError("data.validation_split", f"expected a split that leaves rows on both sides, got {config.validation_split} of {len(x)} rows ({_one_line(exc)})") from None
        # too few validation rows to hold every class: fall back to a plain shuffled split
        x_train, x_val, y_train, y_val = train_test_split(
            x, y, test_size=config.validation_split, random_state=config.seed
        )
    return (x_train, y_train), (x_val, y_val)


def _standardize(x_train: np.ndarray, x_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature z-score with the train split's statistics (see :func:`load`, step 6)."""
    mean = x_train.mean(axis=0, dtype=np.float64)
    std = x_train.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    mean, std = mean.astype(np.float32), std.astype(np.float32)
    return (x_train - mean) / std, (x_val - mean) / std


def _reshape(x: np.ndarray, shape: list[int]) -> np.ndarray:
    per_sample = int(np.prod(x.shape[1:]))
    if any(d == 0 or d < -1 for d in shape) or shape.count(-1) > 1:
        raise InputError("data.reshape", f"expected positive sizes (at most one -1), got {shape}")
    known = int(np.prod([d for d in shape if d != -1]))
    fits = per_sample % known == 0 if -1 in shape else per_sample == known
    if not fits:
        raise InputError("data.reshape", f"expected a shape with {per_sample} values per sample, got {shape} ({known})")
    return x.reshape((len(x), *shape))


def _existing_file(source: str, suffix: str) -> Path:
    path = Path(source.partition(":")[2]).expanduser().resolve()
    if not path.is_file():
        raise InputError("data.source", f"expected an existing {suffix} file, got {str(path)!r} (no such file)")
    return path


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
