"""Data pipelines (``tf.data``, ``keras.utils.PyDataset``, generators) built where the trial runs.

A data function that returns a pair ``(train, validation)`` of ``tf.data.Dataset`` or
``keras.utils.PyDataset`` objects (or of Python generators) describes data read from files:
an image folder (``keras.utils.image_dataset_from_directory``), TFRecord, CSV or Parquet
shards. Such data is never loaded into the driver nor pushed through Ray's object store:

* the driver calls the function once, reads **one batch** of the training pipeline to check
  its structure, shapes and dtypes (the preflight evaluates the model on it), and ships only
  a small :class:`Pipeline` recipe (the function's ``package.module:name`` and ``data.args``);
* each worker calls the function itself (:func:`datasets`), once per worker and batch size,
  and keeps the result while the sweep's data settings are unchanged. Paths in
  ``data.args`` are read **on the worker**: on a cluster they must name a shared filesystem
  or an object-storage URI that every node can read.

Batch size: a function with a ``batch_size`` parameter is called with the trial's batch size
(so ``batch_size`` stays a searchable hyperparameter; ``image_dataset_from_directory`` takes
it directly). A function without one returns batched pipelines that every trial uses as they
are; ``batch_size`` in the search space is then refused, since it would change nothing.
Generators are consumed as they run, so a generator function is called again for every trial
and needs ``fit.steps_per_epoch`` (and ``fit.validation_steps``), as Keras requires.
Infinite or repeated datasets need ``fit.steps_per_epoch`` / ``fit.validation_steps`` too.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sweep.inputs import targets
from sweep.errors import InputError
from sweep.inputs.dataset import Dataset, data_info
from sweep.inputs.structures import leaves, map_leaves, named_leaves, rebuild, take_rows

if TYPE_CHECKING:
    from sweep.spec.config import DataConfig

__all__ = ["Pipeline", "is_pipeline_result", "describe", "datasets", "PEEK_ROWS"]

PEEK_ROWS = 8  # rows of the first batch the driver keeps for the preflight and MLflow's input example


@dataclass(frozen=True)
class Pipeline:
    """How a worker builds the sweep's datasets: small and picklable."""

    source: str  # package.module:function
    args: dict[str, Any]
    search_paths: tuple[str, ...]
    takes_batch_size: bool
    is_generator: bool
    fingerprint: str
    endless: tuple[bool, bool] = (False, False)  # (training, validation): no end of their own (repeat(), a generator, num_batches None)
    weighted: bool = False  # training batches are (x, y, sample_weight)

    def build(self, batch_size: int | None) -> tuple[Any, Any]:
        """Call the data function here (a worker) and return ``(train, validation)``."""
        from sweep.inputs.imports import resolve

        function = resolve(self.source, "data.source", tuple(Path(p) for p in self.search_paths))
        kwargs = dict(self.args)
        if self.takes_batch_size and batch_size is not None:
            kwargs["batch_size"] = int(batch_size)
        try:
            train, val = function(**kwargs)
        except SystemExit as exc:  # a plain trial failure, not this worker's death (retried as one)
            raise InputError("data.source", f"expected {self.source} to return pipelines, but it called sys.exit({exc.code!r})") from None
        return train, val


def kind_of(value: Any) -> str | None:
    """``tf.data``, ``PyDataset`` or ``generator`` for a pipeline object, else None (no TF import)."""
    names = {cls.__name__ for cls in type(value).__mro__}
    if "DatasetV2" in names:
        return "tf.data"
    if "PyDataset" in names:
        return "PyDataset"
    if inspect.isgenerator(value):
        return "generator"
    return None


def is_pipeline_result(raw: Any) -> bool:
    """True for a ``(train, validation)`` pair of pipeline objects of one kind."""
    if not (isinstance(raw, (tuple, list)) and len(raw) == 2):
        return False
    kinds = [kind_of(part) for part in raw]
    if kinds[0] is None and kinds[1] is None:
        return False
    if None in kinds:
        return False  # sweep.data says what is wrong with a pipeline next to an array
    return True


_CACHE: dict[tuple[str, int | None], tuple[Any, Any]] = {}  # this worker's datasets


def forget_built() -> None:
    """Drop this worker's pipelines (the data function's module changed since they were built)."""
    _CACHE.clear()


def datasets(pipeline: Pipeline, batch_size: int | None) -> tuple[Any, Any]:
    """The ``(train, validation)`` pipelines for a trial on this worker.

    Built once per worker and batch size (a new sweep's data settings replace what was
    kept); generator functions are called for every trial, since a generator runs once.
    """
    if pipeline.is_generator:
        return pipeline.build(batch_size)
    key = (pipeline.fingerprint, batch_size if pipeline.takes_batch_size else None)
    if key not in _CACHE:
        if any(k[0] != pipeline.fingerprint for k in _CACHE):
            _CACHE.clear()
        _CACHE[key] = pipeline.build(batch_size)
    return _CACHE[key]


def describe(config: "DataConfig", search_paths: tuple[Path, ...], raw: Any) -> Dataset:
    """The driver's view of a pipeline result: one batch checked, a recipe for the workers."""
    from sweep.inputs.imports import resolve

    train, val = raw
    kinds = {kind_of(part) for part in raw}
    if len(kinds) > 1:
        raise InputError("data.source", f"expected two pipelines of one kind from {config.source}, got {' and '.join(sorted(kinds))}")
    kind = kinds.pop()
    if config.reshape is not None or config.normalize or config.encode_labels:
        key = "data.reshape" if config.reshape is not None else ("data.normalize" if config.normalize else "data.encode_labels")
        raise InputError(key, f"expected no {key} for a {kind} pipeline (do it inside the pipeline, e.g. with a Rescaling layer or dataset.map)")
    if config.validation_split != type(config).model_fields["validation_split"].default:  # Keras' fit refuses it for a dataset; the sweep ignored it
        # (by value, not by "was it set": a resumed sweep's recorded file sets every key)
        raise InputError("data.validation_split", f"expected no data.validation_split: {config.source} returns its own validation {kind} pipeline")
    function = resolve(config.source, "data.source", search_paths)
    takes_batch_size = "batch_size" in _parameters(function)
    x, y, w = _first_batch(train, config.source, "training")
    _first_batch(val, config.source, "validation")
    kinds_of_targets = _target_kinds(config, y, train, val)
    recipe = Pipeline(
        source=config.source,
        args=dict(config.args),
        search_paths=tuple(str(p) for p in search_paths),
        takes_batch_size=takes_batch_size,
        is_generator=kind == "generator",
        fingerprint=_fingerprint(config, search_paths),
        endless=(is_endless(train), is_endless(val)),
        weighted=w is not None,
    )
    class_names = getattr(train, "class_names", None)  # image_dataset_from_directory's folders: recorded, so predictions can be decoded
    labels = [str(name) for name in class_names] if isinstance(class_names, (list, tuple)) and class_names else None
    info = data_info(x, kinds_of_targets, config.source, recipe.fingerprint, 0, 0, streamed=kind, labels=labels)  # rows: unknown for a stream
    peek = slice(0, PEEK_ROWS)
    return Dataset(None, None, take_rows(x, peek), take_rows(y, peek), info=info, pipeline=recipe,
                   val_sample_weight=None if w is None else take_rows(w, peek))


def is_endless(pipeline: Any) -> bool:
    """True for a pipeline with no end Keras can see: a repeated ``tf.data`` dataset (infinite
    cardinality), a ``PyDataset`` whose ``num_batches`` is None, a generator (no length). Keras'
    fit reads such a one forever unless ``steps_per_epoch``/``validation_steps`` bound it."""
    kind = kind_of(pipeline)
    if kind == "tf.data":
        return int(pipeline.cardinality()) == -1  # tf.data.INFINITE_CARDINALITY; unknown (-2) is left to Keras
    if kind == "PyDataset":
        try:
            return pipeline.num_batches is None
        except Exception:  # noqa: BLE001 - neither num_batches nor __len__: Keras refuses it itself
            return False
    return kind == "generator"


def _parameters(function: Any) -> set[str]:
    try:
        return set(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return set()


def _first_batch(pipeline: Any, source: str, which: str) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight or None)`` of the first batch, as numpy arrays."""
    kind = kind_of(pipeline)
    try:
        if kind == "tf.data":
            element = next(iter(pipeline.take(1)))
        elif kind == "PyDataset":
            element = pipeline[0]
        else:
            element = next(pipeline)
    except StopIteration:
        raise InputError("data.source", f"expected at least one batch in the {which} {kind} of {source}, got none") from None
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise InputError("data.source", f"expected the {which} {kind} of {source} to yield a batch, but it raised {type(exc).__name__}: {first}") from None
    if not (isinstance(element, tuple) and len(element) in (2, 3)):
        raise InputError("data.source", f"expected the {which} {kind} of {source} to yield (x, y) or (x, y, sample_weight) batches, got {type(element).__name__}")
    batch = tuple(None if part is None else map_leaves(_numpy, _tuples_as_lists(part)) for part in (*element, None)[:3])
    _check_batched(batch, kind, source, which)
    _check_finite(batch, kind, source, which)
    return batch  # type: ignore[return-value]


def _check_finite(batch: tuple, kind: str, source: str, which: str) -> None:
    """The peeked batch's floating-point values are finite and its sample weights at least 0, as
    arrays' are checked: a NaN input or weight made every trial's loss NaN, negative weights a
    negative loss the sweep ranked best. Only this batch is read (the rest streams on workers)."""
    for part, label in zip(batch, ("inputs", "targets", "sample weights")):
        for name, leaf in named_leaves(part, "") if part is not None else []:
            array = np.asarray(leaf)
            where = f" ({name})" if name else ""
            if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
                bad = int(array.size - np.isfinite(array).sum())
                raise InputError("data.source", f"expected finite {label} in the {which} {kind} of {source}, got {bad} NaN or infinite value(s) in its first batch{where}")
            if label == "sample weights" and np.issubdtype(array.dtype, np.number) and (array < 0).any():  # as arrays' are refused
                raise InputError("data.source", f"expected sample weights of at least 0 in the {which} {kind} of {source}, got {int((array < 0).sum())} negative value(s) in its first batch{where}")


def _check_batched(batch: tuple, kind: str, source: str, which: str) -> None:
    """Keras' fit takes batches: a pipeline of single rows (``from_tensor_slices`` without
    ``.batch()``) failed deep in the sweep's own label reading, or in Keras with a shape error."""
    arrays = [leaf for part in batch if part is not None for leaf in leaves(part)]
    scalar = any(np.ndim(leaf) == 0 for leaf in arrays)
    leading = {np.shape(leaf)[0] for leaf in arrays if np.ndim(leaf) > 0}
    if scalar or len(leading) > 1:
        raise InputError(
            "data.source",
            f"expected the {which} {kind} of {source} to yield batches (one leading batch dimension shared by x and y), "
            f"got single rows (shapes {', '.join(str(tuple(np.shape(leaf))) for leaf in arrays[:4])}): call .batch(batch_size) on it "
            "(a data function with a batch_size parameter gets the trial's)",
        )


def _tuples_as_lists(part: Any) -> Any:
    """A batch's x, y or weights with every tuple made a list: ``((x_a, x_b), y)`` from tf.data or
    a PyDataset is two inputs to Keras, as ``[x_a, x_b]`` is (a tuple is one leaf in
    :mod:`sweep.inputs.structures`)."""
    if isinstance(part, (tuple, list)):
        return [_tuples_as_lists(value) for value in part]
    if isinstance(part, dict):
        return {key: _tuples_as_lists(value) for key, value in part.items()}
    return part


def _numpy(value: Any) -> np.ndarray:
    """A batch's tensor as numpy; a string tensor's bytes as ``str`` (Keras' evaluate refuses an
    object array of bytes, "Invalid dtype: object", where it takes one of ``str``, as fit does)."""
    array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    if array.dtype == object and array.size and isinstance(array.flat[0], bytes):
        array = np.vectorize(lambda item: item.decode("utf-8", "replace") if isinstance(item, bytes) else item, otypes=[object])(array)
    return array


def _target_kinds(config: "DataConfig", y: Any, train: Any, val: Any) -> Any:
    """Task and output sizes: ``data.task``/``num_outputs``, the pipeline's ``class_names``, the
    labels of a small validation pipeline, or one batch."""
    class_names = getattr(train, "class_names", None)
    named = named_leaves(y, "y")
    hint = "; this validation pipeline has no end, so it also needs fit.validation_steps" if is_endless(val) else ""
    scanned: dict[str, Any] = {}

    def labels_of(name: str) -> Any:
        """The validation pipeline's labels of output ``name``, with the first training batch's:
        a class seen in training only (rare, absent from the validation rows) made every trial
        fail on a label outside the output's range."""
        if "all" not in scanned:
            scanned["all"] = _validation_labels(val)
        found = scanned["all"]
        if found is None:
            return None
        validation, training = dict(named_leaves(found, "y")).get(name), dict(named_leaves(y, "y")).get(name)
        if validation is None or training is None or np.ndim(training) != np.ndim(validation):
            return validation
        return np.concatenate([np.asarray(validation), np.asarray(training)])

    if len(named) > 1:
        found = {name: _one_target(config, leaf, None, name, lambda name=name: labels_of(name), several=True, hint=hint) for name, leaf in named}
        return rebuild(y, found, "y")
    only = named[0][0]  # "y", or "y.label" for a dict of one output
    return _one_target(config, named[0][1], class_names, "y", lambda: labels_of(only), hint=hint)


MAX_SCANNED_BATCHES = 200  # a validation pipeline this small is read once in the driver for its labels


def _validation_labels(val: Any) -> Any | None:
    """Every label of a finite validation pipeline of at most MAX_SCANNED_BATCHES batches (a
    ``tf.data`` dataset of known cardinality or a ``PyDataset`` with a length), in y's form
    (one array, or a list/dict of them); else None. The classes of a pipeline without
    ``class_names``."""
    kind = kind_of(val)
    if kind == "tf.data":
        batches = int(val.cardinality())
        elements: Any = val.as_numpy_iterator()
    elif kind == "PyDataset":
        try:
            batches = len(val)
        except Exception:  # noqa: BLE001 - an endless PyDataset has no length
            return None
        elements = (val[index] for index in range(batches))
    else:
        return None
    if batches < 0 or batches > MAX_SCANNED_BATCHES:  # infinite (-1) or unknown (-2) or large
        return None
    targets_seen = [map_leaves(_numpy, _tuples_as_lists(element[1])) for element in elements]
    if not targets_seen:
        return None
    names = [name for name, _ in named_leaves(targets_seen[0], "y")]
    columns = {name: np.concatenate([np.atleast_1d(dict(named_leaves(t, "y"))[name]) for t in targets_seen]) for name in names}
    return rebuild(targets_seen[0], columns, "y")


def _one_target(
    config: "DataConfig", y: np.ndarray, class_names: Any, name: str, labels: Any = None, several: bool = False, hint: str = ""
) -> targets.TargetKind:
    """One output's kind, read as arrays are (:func:`sweep.inputs.targets.infer`) from the
    validation pipeline's labels where they can be read, else from the first batch: columns of
    floats are regression, 0/1 rows with several ones multi-label, float 0/1 labels classes.
    Before, the dtype and shape alone decided (3 regression columns trained as a softmax)."""
    given = config.task.get(name.partition(".")[2]) if isinstance(config.task, dict) else config.task
    classes = len(class_names) if class_names is not None else config.num_outputs
    if y.ndim == 2 and y.shape[1] == 1 and class_names is not None and len(class_names) == 2:
        return targets.TargetKind("classification", 1, "multilabel", "binary labels, class_names of the pipeline")
    if y.ndim == 2 and y.shape[1] > 1 and given != "regression":
        if class_names is not None:
            return targets.TargetKind("classification", int(y.shape[1]), "onehot", "one-hot batches, class_names of the pipeline")
        scanned = labels() if labels is not None else None
        found = targets.infer(scanned if scanned is not None else y, given, name)
        where = "the validation pipeline" if scanned is not None else "the first batch"
        return targets.TargetKind(found.task, found.size, found.layout, f"{found.reason} in {where}")
    whole = np.issubdtype(y.dtype, np.floating) and bool(np.isfinite(y).all()) and bool(np.equal(np.mod(y, 1), 0).all())
    integral = np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_ or whole
    task = given or ("classification" if integral else "regression")
    if task == "regression":
        width = 1 if y.ndim == 1 else int(y.shape[-1])
        size = width if several else (config.num_outputs or width)  # with several outputs, num_outputs counts a classification head's classes
        return targets.TargetKind("regression", size, "values", "data.task" if given else "non-integer targets")
    scanned = labels() if classes is None and labels is not None else None
    if scanned is not None:
        found = targets.infer(scanned, given, name)  # may say regression (many distinct values), as for arrays
        return targets.TargetKind(found.task, found.size, found.layout, f"{found.reason} in the validation pipeline")
    if classes is None:
        regression = " (or data.task: regression, for whole-number quantities)" if whole and not given else ""
        raise InputError(
            "data.num_outputs",
            f"expected data.num_outputs (the number of classes of {name}){regression} for a pipeline without class_names "
            f"whose validation labels cannot be read up front (only a finite tf.data or PyDataset of at most {MAX_SCANNED_BATCHES} "
            f"batches is read{hint}), got none",
        )
    reason = "class_names of the pipeline" if class_names is not None else "data.num_outputs"
    return targets.TargetKind("classification", int(classes), "sparse", reason)


def _fingerprint(config: "DataConfig", search_paths: tuple[Path, ...]) -> str:
    settings = json.dumps({"source": config.source, "args": config.args, "paths": [str(p) for p in search_paths]}, sort_keys=True, default=str)
    return hashlib.blake2b(settings.encode(), digest_size=8).hexdigest()
