"""Named data sources and the train/validation split, ending in a :class:`~sweep.inputs.dataset.Dataset`.

``data.source`` in a sweep file names where the arrays come from:

* ``digits`` / ``diabetes``: small datasets that ship with scikit-learn (no download);
* ``synthetic``: ``make_classification`` / ``make_regression`` sized by ``samples``,
  ``features`` and ``classes`` and seeded by ``seed``;
* ``npz:PATH``: arrays ``x_train, y_train, x_val, y_val`` or ``x, y`` (pickles are never loaded);
* ``csv:PATH``: numeric feature columns plus the ``target`` column;
* ``keras:NAME``: ``keras.datasets.NAME.load_data()`` (may download on first use);
* ``package.module:function``: a user function called with ``data.args`` that returns
  ``(x, y)``, ``(x, y, sample_weight)``, ``((x_train, y_train), (x_val, y_val))`` (x and y
  may be lists or dicts of arrays), or a ``(train, validation)`` pair of pipelines.

Every path ends in :func:`load`, which returns the arrays ``fit()`` receives (a user's own as
given; the built-in sources prepared for the built-in models) and a :class:`~sweep.inputs.dataset.DataInfo` with
the shapes the model builder needs and a fingerprint workers use to cache the arrays.

This module is imported by the config validator (:func:`check_source`), so at module level it
imports only the standard library and numpy; scikit-learn, pandas and keras are imported by the
loaders that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from sweep.inputs import pipelines, preparation
from sweep.inputs import targets
from sweep.errors import InputError, raised_at
from sweep.inputs.dataset import EXAMPLE_ROWS, DataInfo, Dataset, data_info
from sweep.inputs.pipelines import kind_of
from sweep.inputs.structures import is_nested, leaves, map_leaves, named_leaves, rebuild, rows, shapes, take_rows
from sweep.inputs.targets import TargetKind

if TYPE_CHECKING:
    from sweep.spec.config import DataConfig

__all__ = ["SOURCES", "KERAS_DATASETS", "check_source", "load"]

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
    if len(frame) == 0:  # a header and no rows: every column reads as text, which is not the problem
        raise InputError("data.source", f"expected rows of data in {config.source}, got 0 rows (only the header)")
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
_KNOWN_TASKS = {"synthetic": "classification", "digits": "classification", "diabetes": "regression"}


def check_source(source: str) -> None:
    """Raise ``ValueError`` unless ``source`` has one of the accepted forms (no file checks)."""
    from sweep.inputs.imports import is_spec

    kind, sep, rest = source.partition(":")
    if not sep and kind in SOURCES and kind not in _PREFIXED:
        return
    if sep and kind in _PREFIXED and rest.strip():
        return
    if sep and kind not in _PREFIXED and is_spec(source):
        return
    raise ValueError(f"expected one of {_FORMS}, got {source!r}" + _did_you_mean(kind, [*SOURCES, *_PREFIXED]))


def _did_you_mean(word: str, names: list[str]) -> str:
    """``; did you mean 'digits'?`` for a name a letter or two off one of ``names`` ('' if none is close)."""
    import difflib

    close = difflib.get_close_matches(word, sorted(set(names)), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close and close[0] != word else ""


# ---------------------------------------------------------------------------------------------
# load

# Sources that are this project's own conveniences: their arrays are prepared for the built-in
# models (labels encoded 0..K-1, targets flattened, inputs scaled). A user's own arrays
# (npz:PATH, package.module:function) reach fit() exactly as given unless the sweep file asks.
BUILT_IN = ("digits", "diabetes", "synthetic", "csv", "keras")

Part = tuple  # (x, y, sample_weight or None): x and y are arrays or Keras structures of arrays


def load(config: "DataConfig", search_paths: tuple[Path, ...] = (), batch_size: int | None = None) -> Dataset:
    """Load, check and split ``config``'s data; change it only where the sweep file asks.

    A user's own arrays (``package.module:function``, ``npz:PATH``) reach ``fit()`` as given:

    1. the function returns ``(x, y)``, ``(x, y, sample_weight)`` or
       ``((x_train, y_train[, w_train]), (x_val, y_val[, w_val]))``; ``x`` and ``y`` may each be
       an array, a list of arrays or a dict of arrays (several inputs or outputs, as
       ``fit()`` takes them). A pair of ``tf.data.Dataset`` or ``keras.utils.PyDataset``
       objects is a pipeline, built on each worker instead (:mod:`sweep.inputs.pipelines`);
    2. nothing is reshaped, re-encoded or rescaled (float64 becomes float32, which is what
       Keras casts float arrays to anyway; integers stay integers); the task, output sizes and target
       layout are read from the targets (:func:`sweep.inputs.targets.infer`), which asks for
       ``data.task`` when integer targets could be classes or a quantity;
    3. opt-in: ``data.encode_labels`` encodes one output's labels 0..K-1 (sorted order),
       ``data.normalize`` standardizes floating-point inputs with the train split's
       statistics (integer inputs, such as token ids, are never standardized),
       ``data.reshape`` reshapes a single input array.

    The built-in sources (digits, diabetes, synthetic, csv, keras) are prepared for the
    built-in models: x becomes float32 (an ``(N,)`` x ``(N, 1)``); labels are encoded 0..K-1
    (one-hot made indices, ``(N, 1)`` flattened); regression targets become float32; inputs
    are standardized (keras image datasets are divided by 255 instead); integer targets are
    classes when they are 0..K-1 with every label present (K at most half the rows), or take
    at most 10 distinct values, or at most 50 that are fewer than 5% of the rows.

    Either way ``(x, y)`` is split by ``validation_split`` with ``config.seed``, stratified by
    class when every class has at least two rows; standardization uses the *train* split's
    per-feature mean and std (a std of 0 counts as 1), so no validation statistic leaks into
    training. What was done to the inputs is ``Dataset.preparation``
    (:mod:`sweep.inputs.preparation`): the best model the sweep logs takes raw inputs.

    A data function with a ``batch_size`` parameter (pipelines batched by the trial) is called
    with ``batch_size`` here, unless ``data.args`` sets it: the preflight passes one the sweep
    can draw, as each worker later passes its trial's.

    Raises :class:`InputError` naming the key to change.
    """
    kind, sep, _ = config.source.partition(":")
    if sep and kind not in _PREFIXED:
        raw = _call_user_function(config, search_paths, batch_size)
        if pipelines.is_pipeline_result(raw):
            return pipelines.describe(config, search_paths, raw)
    elif kind in SOURCES:
        raw = SOURCES[kind](config)
    else:  # config validation normally stops this earlier
        raise InputError("data.source", f"expected one of {_FORMS}, got {config.source!r}")
    built_in = kind in BUILT_IN
    parts = _as_parts(raw, config.source)
    dtypes = _source_dtypes(parts[0][0])  # before float64 is stored as float32: what the best model is given later
    if built_in:
        parts, kinds, labels = _prepare_built_in(parts, config, kind)
    else:
        parts, kinds, labels = _as_given(parts, config)
    kinds = _credit_the_loss(kinds, config)
    train, val = _split(parts[0], config, kinds) if len(parts) == 1 else parts
    raw_example = take_rows(val[0], slice(0, EXAMPLE_ROWS))
    raw_shape = None
    if kind == "keras" and train[0].ndim == 3:  # (N, H, W) -> (N, H, W, 1) for Conv2D
        raw_shape = train[0].shape[1:]
        train, val = ((part[0][..., np.newaxis], *part[1:]) for part in (train, val))
    normalize = config.normalize if config.normalize is not None else built_in
    is_images = kind == "keras" and train[0].ndim >= 4
    prepared = preparation.fit(
        train[0], standardize=normalize and not is_images, scale=preparation.IMAGE_SCALE if normalize and is_images else None,
        raw_shape=raw_shape, dtypes=dtypes,
    )
    if config.reshape is not None:
        _check_reshape(train[0], config.reshape)  # applied with the other steps
        prepared = prepared.reshaped(tuple(config.reshape))
    train, val = ((prepared.apply(part[0]), *part[1:]) for part in (train, val))
    dataset = _dataset(train, val, kinds, config, labels)
    dataset.raw_example = _in_dtypes(raw_example, dtypes)
    if prepared.changes_anything:
        dataset.preparation = prepared
    return dataset


def _source_dtypes(x: Any) -> Any:
    """Each input's dtype as the data source gives it, in x's form (a DataFrame: its columns'
    common dtype): the best model's MLflow signature is in these, since a served model is sent
    what the source gives (float64 from pandas or scikit-learn, uint8 pixels), and MLflow's
    tensor signatures take exactly their dtype. None where it cannot be read."""
    def dtype_of(leaf: Any) -> str | None:
        dtypes = getattr(leaf, "dtypes", None)
        if dtypes is not None and hasattr(dtypes, "items"):  # a DataFrame
            kinds = [d for _, d in dtypes.items() if isinstance(d, np.dtype) and (np.issubdtype(d, np.number) or d == np.bool_)]
            return str(np.result_type(*kinds)) if kinds and len(kinds) == len(dtypes) else None
        dtype = getattr(leaf, "dtype", None)
        return str(dtype) if isinstance(dtype, np.dtype) and dtype.kind in "biuf" else None

    if isinstance(x, tuple):
        x = list(x)
    if isinstance(x, list) and _numbers_only(x):
        return None
    return map_leaves(dtype_of, x) if is_nested(x) else dtype_of(x)


def _in_dtypes(x: Any, dtypes: Any) -> Any:
    """Rows ``x`` in the source's ``dtypes`` (float32 rows back to float64), where known."""
    if x is None or dtypes is None:
        return x
    if not is_nested(x):
        return x.astype(dtypes) if isinstance(dtypes, str) and np.asarray(x).dtype.kind in "biuf" else x
    by_name = dict(named_leaves(dtypes))
    return rebuild(x, {name: leaf.astype(by_name[name]) if isinstance(by_name.get(name), str) and leaf.dtype.kind in "biuf" else leaf
                       for name, leaf in named_leaves(x)}, "")


def _credit_the_loss(kinds: Any, config: "DataConfig") -> Any:
    """A task that ``model.loss`` decided (``mse``: a regression) says so on the start-up line,
    not "(data.task)", which the file does not set."""
    said_by = getattr(config, "_task_from", None)
    if not said_by:
        return kinds
    return map_leaves(lambda kind: replace(kind, reason=said_by) if kind.reason == "data.task" else kind, kinds)


def _dataset(train: Part, val: Part, kinds: Any, config: "DataConfig", labels: list[str] | None = None) -> Dataset:
    x_train, y_train, w_train = (_contiguous(p) for p in train)
    x_val, y_val, w_val = (_contiguous(p) for p in val)
    arrays = [a for part in (x_train, y_train, w_train, x_val, y_val, w_val) if part is not None for a in leaves(part)]
    info = data_info(x_train, kinds, config.source, fingerprint(*arrays), rows(x_train), rows(x_val), labels=labels)
    return Dataset(x_train, y_train, x_val, y_val, info=info, sample_weight=w_train, val_sample_weight=w_val)


def _contiguous(part: Any) -> Any:
    return None if part is None else map_leaves(np.ascontiguousarray, part)


def class_weights(setting: dict[int, float] | str | None, dataset: Dataset) -> dict[int, float] | None:
    """``fit.class_weight`` as ``fit()`` takes it: the dict as given, or ``balanced``.

    ``balanced`` weighs class ``c`` by ``n_samples / (n_classes * count_c)`` over the training
    labels, as scikit-learn's ``compute_class_weight("balanced")`` (King & Zeng, 2001), so
    every class contributes the same total weight. Raises :class:`InputError` when the
    targets are not one output's class labels.
    """
    if setting is None:
        return None
    info = dataset.info
    if info.num_heads > 1 or info.task != "classification":
        what = f"{info.num_heads} outputs" if info.num_heads > 1 else f"{info.task} targets"
        raise InputError("fit.class_weight", f"expected the class labels of one output, got {what}")
    pipeline = getattr(dataset, "pipeline", None)
    if pipeline is not None and getattr(pipeline, "is_generator", False):  # Keras refused it in every trial
        raise InputError(
            "fit.class_weight",
            f"expected arrays, tf.data or a keras.utils.PyDataset for class_weight (Keras' rule), got generators from {info.source}: "
            "yield (x, y, sample_weight) batches with the class weights instead, or return a tf.data.Dataset",
        )
    weighted_batches = pipeline is not None and getattr(pipeline, "weighted", False)
    if getattr(dataset, "sample_weight", None) is not None or weighted_batches:  # Keras: "You cannot class_weight and sample_weight at the same time", in every trial
        what = "its training batches are (x, y, sample_weight)" if weighted_batches else "returns sample weights"
        raise InputError(
            "fit.class_weight",
            f"expected class weights or per-row sample weights, got both ({info.source} {what}): "
            "fold the class weights into the sample weights, or drop one",
        )
    if info.target_layout == "multilabel":  # Keras weighs each row by its argmax: the first of its labels, silently
        raise InputError("fit.class_weight", "expected one class per row, got multi-hot rows (Keras would weigh each row by its first label only): give per-row sample weights instead")
    if isinstance(setting, dict):
        return _weights_by_index(setting, info)
    labels = None if info.streamed else class_labels(dataset.y_train, TargetKind(info.task, info.num_outputs, info.target_layout, ""))
    if labels is None:
        raise InputError("fit.class_weight", f"expected labels to count for balanced, got {'a pipeline (give a dict of weights)' if info.streamed else 'multi-hot rows'}")
    counts = np.bincount(labels, minlength=info.num_outputs)
    present = counts > 0
    weights = len(labels) / (int(present.sum()) * counts[present])
    return {int(c): float(w) for c, w in zip(np.flatnonzero(present), weights)}


def _weights_by_index(setting: dict[int | str, float], info: DataInfo) -> dict[int, float]:
    """A ``fit.class_weight`` dict keyed as ``fit()`` takes it: by class index.

    With encoded labels (``info.labels``) a user writes the labels it gave (``{cat: 2.0}``,
    ``{7: 3.0}`` for labels {3, 7}); keys that are all such labels are read as labels, any other
    keys as indices 0..K-1. Raises :class:`InputError` naming the keys that are neither."""
    index_of = {str(label): i for i, label in enumerate(info.labels or ())}
    if index_of and all(str(c) in index_of for c in setting):
        return {index_of[str(c)]: float(w) for c, w in setting.items()}
    if any(str(c) in index_of for c in setting):  # read as labels: name the keys that are not
        bad = [c for c in setting if str(c) not in index_of]
    else:
        bad = [c for c in setting if _as_index(c) is None or not 0 <= _as_index(c) < info.num_outputs]
    if bad:
        expected = f"class indices 0..{info.num_outputs - 1}"
        if index_of:
            expected += f" or the labels {_show_labels(info.labels)}, all keys one kind"
        elif any(isinstance(c, str) for c in bad):
            expected += " (labels are keys only with data.encode_labels: true)"
        raise InputError("fit.class_weight", f"expected {expected}, got {bad}")
    return {_as_index(c): float(w) for c, w in setting.items()}


def _as_index(key: int | str) -> int | None:
    """A class index written as a number or as digits (``"1": 5.0`` in JSON), else None."""
    if isinstance(key, int):
        return key
    return int(key) if key.strip().isdigit() else None


def _show_labels(labels: tuple[str, ...] | None, most: int = 12) -> str:
    shown = ", ".join(map(str, (labels or ())[:most]))
    return "{" + shown + (", ..." if len(labels or ()) > most else "") + "}"


def fingerprint(*arrays: np.ndarray) -> str:
    """A short hex digest of the arrays' dtypes, shapes and bytes (equal data, equal digest)."""
    digest = hashlib.blake2b(digest_size=8)
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# the loader's result


def _call_user_function(config: "DataConfig", search_paths: tuple[Path, ...], batch_size: int | None = None) -> Any:
    from sweep.inputs.imports import resolve

    function = resolve(config.source, "data.source", search_paths)
    kwargs = dict(config.args)
    if batch_size is not None and "batch_size" not in kwargs:
        with contextlib.suppress(TypeError, ValueError):  # a callable without an inspectable signature
            if "batch_size" in inspect.signature(function).parameters:
                kwargs["batch_size"] = int(batch_size)
    try:
        return function(**kwargs)
    except SystemExit as exc:  # sys.exit() or argparse in a script reused as the data function: not the sweep's exit
        raise InputError("data.source", f"expected {config.source} to return data, but it called sys.exit({exc.code!r})") from None
    except Exception as exc:
        raise InputError("data.source", f"expected {config.source} to return data, but it raised {_one_line(exc)}{raised_at(exc)}") from None


_RETURN_FORMS = "(x, y), (x, y, sample_weight) or ((x_train, y_train), (x_val, y_val))"


def _as_parts(raw: Any, source: str) -> list[Part]:
    """``[(x, y, w)]`` or ``[(x_train, y_train, w_train), (x_val, y_val, w_val)]`` (w may be None).

    The split form is recognized by its two inner *tuples* of 2 or 3 items, so several inputs
    or outputs are given as lists or dicts (as Keras takes them), never as tuples.
    """
    if isinstance(raw, (tuple, list)) and len(raw) == 2 and all(isinstance(p, tuple) and len(p) in (2, 3) for p in raw):
        return [_with_weight(part) for part in raw]
    if isinstance(raw, (tuple, list)) and len(raw) in (2, 3) and not any(isinstance(p, (str, bytes)) or p is None for p in raw[:2]):
        _refuse_arrays_beside_a_pipeline(raw, source)
        _refuse_two_frames(raw, source)
        if not (len(raw) == 2 and isinstance(raw[0], tuple) and isinstance(raw[1], tuple)):
            return [_with_weight(tuple(raw))]
    if isinstance(raw, (tuple, list)):
        got = f"a {type(raw).__name__} of {len(raw)} item(s)"
        if 0 < len(raw) <= 3:
            got += f" ({', '.join(type(item).__name__ for item in raw)})"
    else:
        got = type(raw).__name__
    hint = ""
    if kind_of(raw) is not None:
        hint = " (a pipeline needs both: return (train, validation) datasets)"
    raise InputError("data.source", f"expected {source} to return {_RETURN_FORMS}, got {got}{hint}")


def _refuse_arrays_beside_a_pipeline(raw: Any, source: str) -> None:
    """``((x, y), val_ds)`` or ``(train_ds, (x_val, y_val))``: one part arrays, the other a
    pipeline. It was read as ``(x, y)`` and the pipeline called "y"."""
    kinds = [kind_of(part) for part in raw[:2]]
    if len(raw) != 2 or (kinds[0] is None) == (kinds[1] is None):
        return
    at = 0 if kinds[0] is not None else 1
    if not isinstance(raw[1 - at], tuple):  # (x, y) with a pipeline as x or y: said by the arrays' check
        return
    parts = ("training", "validation")
    raise InputError(
        "data.source",
        f"expected {source} to return both parts as arrays ((x, y), (x_val, y_val)) or both as pipelines (train, validation), "
        f"got {parts[1 - at]} arrays and a {kinds[at]} {parts[at]} pipeline ({type(raw[at]).__name__})",
    )


def _refuse_two_frames(raw: Any, source: str) -> None:
    """``(train_df, val_df)`` with the label column inside each frame was read as ``(x, y)``: a
    misleading row-count error, or, with equal halves, a regression from training rows to
    validation rows that ran to its end. Two DataFrames with the same columns are not (x, y)."""
    x, y = raw[0], raw[1]
    columns_x, columns_y = getattr(x, "columns", None), getattr(y, "columns", None)
    if columns_x is None or columns_y is None or getattr(x, "ndim", 0) != 2 or getattr(y, "ndim", 0) != 2:
        return
    if len(columns_y) > 1 and list(columns_x) == list(columns_y):
        raise InputError(
            "data.source",
            f"expected {source} to return {_RETURN_FORMS}, got two DataFrames with the same columns ({len(x)} and {len(y)} rows), "
            "which reads as training and validation tables: split each into inputs and labels, "
            "e.g. ((train.drop(columns='label'), train['label']), (val.drop(columns='label'), val['label']))",
        )


def _with_weight(part: tuple) -> Part:
    return (part[0], part[1], part[2] if len(part) == 3 else None)


def _as_given(parts: list[Part], config: "DataConfig") -> tuple[list[Part], Any, list[str] | None]:
    """A user's arrays, checked and read but not changed (unless data.encode_labels)."""
    source = config.source
    parts = [(_arrays(x, source, "x"), _arrays(y, source, "y"), None if w is None else _arrays(w, source, "sample_weight")) for x, y, w in parts]
    for index, (x, y, w) in enumerate(parts):
        _check_weights_fit_targets(y, w, source)
        _check_rows(x, y, w, source, _part_name(index, len(parts)))
        _check_sample_weights(y, w, source, _part_name(index, len(parts)))
        for name, leaf in named_leaves(x, "x"):
            _check_inputs(leaf, source, name)
        for name, leaf in named_leaves(y, "y"):
            _check_targets_present(leaf, source)
    _check_same_structure(parts, source)
    labels = None
    if config.encode_labels:
        parts, labels = _encode_user_labels(parts, config)
    all_y = [p[1] for p in parts]
    named = [name for name, _ in named_leaves(all_y[0], "y")]
    _check_task_names(config, named)
    found = {}
    for name in named:
        column = np.concatenate([dict(named_leaves(y, "y"))[name] for y in all_y])
        found[name] = _infer_output(column, config.task, name, several=len(named) > 1)
    if len(named) == 1:
        kinds = targets.check_outputs(config.num_outputs, found[named[0]])
    else:
        if config.num_outputs is not None:
            raise InputError("data.num_outputs", f"expected no data.num_outputs with several outputs ({', '.join(named)}), got {config.num_outputs}")
        kinds = rebuild(all_y[0], found, "y")
    return parts, kinds, labels


def _check_task_names(config: "DataConfig", named: list[str]) -> None:
    """A ``data.task`` dict names outputs the targets have (``{kind: ..., size: ...}``; list
    outputs by position, ``{0: ..., 1: ...}``): a mistyped name was silently ignored, and its
    output's task guessed."""
    if not isinstance(config.task, dict) or getattr(config, "_task_from", None):
        return
    outputs = [name.partition(".")[2] for name in named]
    if outputs == [""]:
        raise InputError("data.task", f"expected classification or regression for the one output of {config.source}, got a dict")
    for key in config.task:
        if str(key) not in outputs:
            import difflib

            close = difflib.get_close_matches(str(key), outputs, n=1, cutoff=0.6)
            raise InputError(f"data.task.{key}", f"expected an output name of {config.source} ({', '.join(outputs)}), got {str(key)!r}"
                             + (f"; did you mean {close[0]!r}?" if close else ""))


def _infer_output(y: np.ndarray, task: Any, name: str, several: bool) -> TargetKind:
    """One output's kind. ``data.task`` is a task for every output, or a dict by output name
    (or position, for a list of outputs); with several outputs a single task decides only what
    the targets leave open."""
    if isinstance(task, dict):
        return targets.infer(y, {str(key): value for key, value in task.items()}.get(name.partition(".")[2]), name)
    if not several:
        return targets.infer(y, task, name)
    try:
        return targets.infer(y, None, name)
    except InputError as exc:
        if task is None:
            output = name.partition(".")[2]
            raise InputError(exc.key, f"{exc.expected} (several outputs: data.task: {{{output}: classification}} names this one)") from None
        return targets.infer(y, task, name)


def _arrays(structure: Any, source: str, what: str) -> Any:
    """Every leaf as a numpy array (pandas frames and series too), nothing else changed."""
    def convert(leaf: Any) -> np.ndarray:
        _refuse_unshippable(leaf, source, what)
        columns = _non_numeric_columns(leaf)
        frame_dtypes = _frame_dtypes(leaf)
        if hasattr(leaf, "to_numpy") and not isinstance(leaf, np.ndarray):  # pandas
            leaf = leaf.to_numpy()
        try:
            array = np.asarray(leaf)
        except Exception as exc:  # ragged nested lists
            raise InputError("data.source", f"expected {what} of {source} to form an array, got {_one_line(exc)}") from None
        if array.ndim == 0:
            raise InputError("data.source", f"expected {what} of {source} to have one row per sample, got a scalar ({type(leaf).__name__})")
        if array.dtype == np.float64:  # Keras casts float inputs to float32 (floatx) anyway; half the bytes to ship
            array = array.astype(np.float32)
        elif array.dtype.kind in "US":  # text: Keras' fit takes strings as an object array only ("Invalid dtype: str736")
            array = array.astype(object)
        elif columns and array.dtype == object and not _is_text(array):
            raise InputError(
                "data.source",
                f"expected numeric {what} of {source}, got a DataFrame whose column(s) {', '.join(columns[:5])} are not numbers "
                "(encode them, e.g. pd.get_dummies or .cat.codes, or return a dict of columns for a model with one input each)",
            )
        elif frame_dtypes and array.dtype == object and not _is_text(array):  # numbers, but no one numpy dtype (Float32, Int64, bool + float)
            raise InputError(
                "data.source",
                f"expected {what} of {source} of one numpy dtype, got a DataFrame of {', '.join(frame_dtypes[:4])} columns, which numpy holds as "
                "objects (Keras refuses them): return df.to_numpy('float32') (pandas' nullable dtypes need a value for NA first: .fillna)",
            )
        return array

    if isinstance(structure, dict) and not structure:
        raise InputError("data.source", f"expected {what} of {source} to hold arrays, got an empty dict")
    if isinstance(structure, tuple):  # several arrays, as Keras reads a tuple
        structure = list(structure)
    if isinstance(structure, list) and (_numbers_only(structure) or not all(hasattr(item, "shape") or isinstance(item, (list, dict)) for item in structure)):
        return convert(structure)  # a (nested) list of numbers or strings: one array
    return map_leaves(convert, structure)


def _numbers_only(value: Any) -> bool:
    """A list of rows as plain Python values (``[[0.1, 2.0], ...]``, ``[1, 0, 1]``): one array, not
    one input per row."""
    if isinstance(value, (list, tuple)):
        return bool(value) and all(_numbers_only(item) for item in value)
    return isinstance(value, (int, float, bool, str, bytes, np.generic))


def _refuse_unshippable(leaf: Any, source: str, what: str) -> None:
    """Pipelines, sparse matrices and ragged tensors are not arrays of rows: say what came and
    what to return instead (``np.asarray`` of them made a scalar, "one row per sample")."""
    kind = kind_of(leaf)
    if kind is not None:
        raise InputError("data.source", f"expected arrays for {what} of {source}, got a {type(leaf).__name__} (return (train, validation) datasets to stream them)")
    names = {cls.__name__ for cls in type(leaf).__mro__}
    if hasattr(leaf, "tocsr") or names & {"SparseTensor", "spmatrix", "sparray"}:
        raise InputError("data.source", f"expected dense arrays for {what} of {source}, got a sparse {type(leaf).__name__} "
                         "(pass .toarray(), or return (train, validation) tf.data datasets of it)")
    if "RaggedTensor" in names:
        raise InputError("data.source", f"expected arrays of one shape for {what} of {source}, got a RaggedTensor "
                         "(pad it, e.g. keras.utils.pad_sequences, or return (train, validation) tf.data datasets of it)")


def _frame_dtypes(leaf: Any) -> list[str]:
    """A pandas DataFrame's distinct column dtypes (``Float32``, ``bool``), [] for anything else."""
    dtypes = getattr(leaf, "dtypes", None)
    if dtypes is None or not hasattr(dtypes, "items"):
        return []
    return sorted({str(dtype) for _, dtype in dtypes.items()})


def _non_numeric_columns(leaf: Any) -> list[str]:
    """A pandas DataFrame's columns that are not numbers or booleans (for the error that names them)."""
    dtypes = getattr(leaf, "dtypes", None)
    if dtypes is None or not hasattr(dtypes, "items"):
        return []
    return [str(name) for name, dtype in dtypes.items() if getattr(dtype, "kind", "O") not in "biuf"]


def _check_inputs(x: np.ndarray, source: str, name: str) -> None:
    if x.dtype == object and _is_text(x):
        if x.ndim > 1:  # Keras' own error, "Invalid dtype: object", read as the model's fault
            column = f"{name}[:, 0] (one column)" if x.shape[1:] == (1,) else "one 1-D array per text field (a dict of inputs)"
            raise InputError("data.source", f"expected text inputs {name} in {source} as one string per row (shape (N,)), got shape {x.shape}: "
                                            f"Keras' fit() takes string arrays in one dimension only; give {column}, or a tf.data pipeline")
        return  # strings, for a model that reads them (a string keras.Input, TextVectorization, StringLookup)
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise InputError("data.source", f"expected numeric or string inputs {name} in {source}, got dtype {x.dtype}{_mixed_hint(x)}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        count = int(x.size - np.isfinite(x).sum())
        raise InputError("data.source", f"expected finite inputs {name} in {source}, got {count} NaN or infinite value(s)")


def _check_weights_fit_targets(y: Any, w: Any, source: str) -> None:
    """Per-output sample weights (a dict or list) name every output the targets have: Keras
    wants one array per output, and its error surfaced as a model.builder failure."""
    if w is None or not is_nested(w):
        return
    outputs = [name for name, _ in named_leaves(y, "y")]
    weighted = [name.replace("sample_weight", "y", 1) for name, _ in named_leaves(w, "sample_weight")]
    if sorted(outputs) != sorted(weighted):
        raise InputError("data.source", f"expected one sample_weight per output of {source} ({_output_list(outputs)}), got {_output_list(weighted) or 'none'}")


def _output_list(names: list[str]) -> str:
    """``y.kind, y.size`` as a user names the outputs: ``kind, size``."""
    return ", ".join(name.partition(".")[2] or name for name in names)


def _is_text(x: np.ndarray) -> bool:
    """An object array whose every item is a string (or bytes): text for the model to read."""
    return x.size > 0 and all(isinstance(item, (str, bytes)) for item in x.flat)


def _mixed_hint(x: np.ndarray) -> str:
    """What an object array holds, when it is not all text (a column of mixed types, None)."""
    if x.dtype != object or x.size == 0:
        return ""
    kinds = sorted({type(item).__name__ for item in x.flat})
    return f" (it holds {', '.join(kinds[:4])}: convert the column to one type)"


def _part_name(index: int, parts: int) -> str:
    """`` (the training part)`` / `` (the validation part)`` of a (train, validation) pair."""
    return "" if parts == 1 else (" (the training part)", " (the validation part)")[index]


def _check_sample_weights(y: Any, w: Any, source: str, part: str = "") -> None:
    """Sample weights as ``fit()`` can use them: numbers, finite, at least 0, not all 0, one
    per row (``(N,)``, ``(N, 1)``, or one per timestep of ``(N, T, ...)`` targets). A NaN weight
    failed every trial as a NaN loss, or made every val_loss NaN (the sweep then said that no
    trial produced a result); strings and ``(N, 2)`` weights failed as ``model.builder``."""
    if w is None:
        return
    targets_by_name = dict(named_leaves(y, "y"))
    for name, leaf in named_leaves(w, "sample_weight"):
        target = targets_by_name.get(name.replace("sample_weight", "y", 1), leaves(y)[0])
        if not (np.issubdtype(leaf.dtype, np.number) or leaf.dtype == np.bool_):
            first = leaf.flat[0] if leaf.size else None
            got = f"text (e.g. {str(first)!r})" if isinstance(first, (str, bytes)) else f"dtype {leaf.dtype}"
            raise InputError("data.source", f"expected numeric {name} in {source}{part}, got {got}")
        per_row = leaf.ndim == 1 or (leaf.ndim == 2 and leaf.shape[1] == 1)
        per_step = leaf.ndim == 2 and target.ndim >= 3 and leaf.shape[1] == target.shape[1]
        if not (per_row or per_step):
            raise InputError("data.source", f"expected one {name} per row in {source}{part} (shape (N,) or (N, 1)), got shape {list(leaf.shape)}")
        values = leaf.astype(np.float64, copy=False)
        bad = int((~np.isfinite(values)).sum())
        if bad:
            raise InputError("data.source", f"expected finite {name} in {source}{part}, got {bad} NaN or infinite value(s)")
        if (values < 0).any():
            raise InputError("data.source", f"expected {name} of at least 0 in {source}{part}, got {int((values < 0).sum())} negative value(s)")
        if values.size and not values.any():
            raise InputError("data.source", f"expected some non-zero {name} in {source}{part}, got all zeros (nothing would count)")


def _check_rows(x: Any, y: Any, w: Any, source: str, part: str = "") -> None:
    counts = {name: len(leaf) for name, leaf in named_leaves(x, "x") + named_leaves(y, "y") + (named_leaves(w, "sample_weight") if w is not None else [])}
    if len(set(counts.values())) > 1:
        x_rows = len(leaves(x)[0])
        odd = next(name for name, n in counts.items() if n != x_rows)
        inputs = "inputs" if not is_nested(x) else f"rows in {named_leaves(x, 'x')[0][0]}"
        if odd.startswith("y") and not is_nested(x) and not is_nested(y):
            raise InputError("data.source", f"expected as many targets as inputs in {source}{part}, got {x_rows} inputs and {counts[odd]} targets")
        raise InputError("data.source", f"expected as many rows in {odd} as {inputs} in {source}{part}, got {counts[odd]} and {x_rows}")
    if not counts or next(iter(counts.values())) == 0:
        raise InputError("data.source", f"expected at least one row in {source}{part}, got none")


def _check_same_structure(parts: list[Part], source: str) -> None:
    if len(parts) != 2:
        return
    for index, what in ((0, "inputs"), (1, "targets")):
        a, b = (shapes(p[index]) for p in parts)
        names_a, names_b = ([n for n, _ in named_leaves(s)] for s in (a, b))
        if names_a != names_b:
            raise InputError("data.source", f"expected the same {what} in train and validation of {source}, got {names_a} and {names_b}")
        for (name, shape_a), (_, shape_b) in zip(named_leaves(a, what), named_leaves(b, what)):
            if shape_a != shape_b:
                raise InputError("data.source", f"expected train and validation {what} of the same shape in {source}, got {list(shape_a)} and {list(shape_b)}" + (f" for {name}" if name != what else ""))
    weighted = [p[2] is not None for p in parts]
    if weighted == [False, True]:
        raise InputError("data.source", f"expected sample weights for the training rows of {source} when the validation rows have them, got none")


def _encode_user_labels(parts: list[Part], config: "DataConfig") -> tuple[list[Part], list[str] | None]:
    """``data.encode_labels``: one output's labels become 0..K-1 (sorted order), int64."""
    if is_nested(parts[0][1]):
        raise InputError("data.encode_labels", f"expected one target array to encode, got several outputs in {config.source} (encode them in your function)")
    ys = [_flatten_column(p[1]) for p in parts]
    mapping = _label_mapping(np.concatenate(ys))
    return [(x, _encode(y, mapping, config.source), w) for (x, _, w), y in zip(parts, ys)], _labels(mapping)


def _labels(mapping: np.ndarray | None) -> list[str] | None:
    """The original label of each class index, when labels were encoded."""
    return None if mapping is None else [str(v) for v in mapping.tolist()]



def _prepare_built_in(parts: list[Part], config: "DataConfig", kind: str) -> tuple[list[Part], TargetKind, list[str] | None]:
    """The built-in sources' conveniences (see :func:`load`): float32 x, labels 0..K-1."""
    given_task = config.task
    if isinstance(given_task, dict):
        if not getattr(config, "_task_from", None):
            raise InputError("data.task", f"expected classification or regression for the one output of {config.source}, got a dict")
        given_task = None  # set per output by a list or dict of losses: those are checked against the model, on model.loss
    parts = [(_as_x(x, config.source), np.asarray(y), None) for x, y, _ in parts]
    for x, y, _ in parts:
        if len(x) != len(y):
            raise InputError("data.source", f"expected as many targets as inputs in {config.source}, got {len(x)} inputs and {len(y)} targets")
        if len(x) == 0:
            raise InputError("data.source", f"expected at least one row in {config.source}, got none")
    try:
        y_all = np.concatenate([_flatten_column(y) for _, y, _ in parts])
    except ValueError:
        shapes_ = " and ".join(str(list(y.shape)) for _, y, _ in parts)
        raise InputError("data.source", f"expected train and validation targets of the same width in {config.source}, got {shapes_}") from None
    _check_targets_present(y_all, config.source)
    task = given_task or _KNOWN_TASKS.get(kind) or _infer_task(y_all)
    labels = None
    if task == "classification":
        mapping = _label_mapping(y_all)
        labels = _labels(mapping)
        parts = [(x, _encode(_flatten_column(y), mapping, config.source), w) for x, y, w in parts]
        n_classes = max(int(y.max()) for _, y, _ in parts) + 1
        found = TargetKind(task, max(n_classes, 2), "sparse", "data.task" if given_task else f"{len(np.unique(y_all))} distinct labels")
    else:
        parts = [(x, _regression_targets(y, config.source), w) for x, y, w in parts]
        y0 = parts[0][1]
        found = TargetKind(task, 1 if y0.ndim == 1 else int(y0.shape[1]), "values", "data.task" if given_task else "numeric targets")
    return parts, targets.check_outputs(config.num_outputs, found), labels


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
    """The built-in sources' rule (see :func:`load`). ``y`` is already flattened."""
    if y.ndim != 1:
        return "regression"
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.number):
        return "classification"
    if not np.isfinite(y).all() or not np.equal(np.mod(y, 1), 0).all():
        return "regression"
    values = np.unique(y)
    distinct = len(values)
    if np.issubdtype(y.dtype, np.floating) and 2 < distinct <= MAX_INFERRED_CLASSES:  # "2.0, 0.0, ..." in a CSV: counts as often as classes
        raise InputError(
            "data.task",
            f"expected data.task (classification or regression): the targets are {distinct} distinct whole numbers "
            f"{values[0]:g}..{values[-1]:g} stored as {y.dtype}, which could be class labels or a quantity",
        )
    if values[0] == 0 and values[-1] == distinct - 1 and 2 <= distinct <= len(y) / 2:
        return "classification"  # labels 0..K-1, every one present (CIFAR-100-style codes in a CSV)
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


# ---------------------------------------------------------------------------------------------
# split, scale, reshape


def class_labels(y: Any, kinds: Any) -> np.ndarray | None:
    """One class index per row for a single classification output (one-hot by argmax), else None."""
    if is_nested(y) or not isinstance(kinds, TargetKind) or kinds.task != "classification" or kinds.layout == "multilabel":
        return None
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    return y.reshape(len(y)).astype(np.int64) if y.ndim <= 2 else None


def _split(part: Part, config: "DataConfig", kinds: Any) -> tuple[Part, Part]:
    from sklearn.model_selection import train_test_split

    x, y, w = part
    index = np.arange(rows(x))
    labels = class_labels(y, kinds)
    stratify = None
    if labels is not None:
        counts = np.bincount(labels)
        if counts[counts > 0].min() >= 2:
            stratify = labels
    try:
        train_index, val_index = train_test_split(index, test_size=config.validation_split, random_state=config.seed, stratify=stratify)
    except ValueError:
        try:  # too few validation rows to hold every class: a plain shuffled split
            train_index, val_index = train_test_split(index, test_size=config.validation_split, random_state=config.seed)
        except ValueError as exc:
            raise InputError("data.validation_split", f"expected a split that leaves rows on both sides, got {config.validation_split} of {len(index)} rows ({_one_line(exc)})") from None
    return (
        tuple(None if p is None else take_rows(p, train_index) for p in part),
        tuple(None if p is None else take_rows(p, val_index) for p in part),
    )


def _check_reshape(x: Any, shape: list[int]) -> None:
    """Refuse a ``data.reshape`` that does not fit one input array's samples."""
    if is_nested(x):
        raise InputError("data.reshape", f"expected a single input array to reshape, got {len(leaves(x))} inputs")
    per_sample = int(np.prod(x.shape[1:]))
    if any(d == 0 or d < -1 for d in shape) or shape.count(-1) > 1:
        raise InputError("data.reshape", f"expected positive sizes (at most one -1), got {shape}")
    known = int(np.prod([d for d in shape if d != -1]))
    fits = per_sample % known == 0 if -1 in shape else per_sample == known
    if not fits:
        raise InputError("data.reshape", f"expected a shape with {per_sample} values per sample, got {shape} ({known})")


def _existing_file(source: str, suffix: str) -> Path:
    path = Path(source.partition(":")[2]).expanduser().resolve()
    if not path.is_file():
        raise InputError("data.source", f"expected an existing {suffix} file, got {str(path)!r} (no such file)")
    return path


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
