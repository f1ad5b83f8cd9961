"""The checkpoint format: what a checkpoint folder holds, and writing and reading it.

A checkpoint is a folder (Ray names it ``checkpoint_*``; where it lives, locally or behind a
URI, is :mod:`sweep.worker.storage`'s concern) with two files:

* ``model.keras`` (:data:`MODEL_FILE`): the Keras archive of the model, its weights and its
  optimizer state, written by ``model.save``;
* ``meta.json`` (:data:`META_FILE`): a small JSON object; a trial writes ``epoch`` (epochs done,
  1-based), ``metric`` (the objective's name) and ``value`` (the objective there).

Trials write one when the objective improved (:class:`sweep.worker.callbacks.TuneReporter`);
retries and resumes continue from one (:func:`load_checkpoint`, :func:`read_meta`); the driver
logs the best one to MLflow and ``load_best``/``sweep export`` load it (:func:`load_model_file`),
always with the sweep's ``model.safe_mode`` and custom objects.

Keras is imported by the functions that need it, so the readers of :data:`MODEL_FILE` (the
export command) stay light.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.errors import InputError, telling_line

if TYPE_CHECKING:
    import keras

    from sweep.spec.config import ModelConfig

MODEL_FILE = "model.keras"  # the model inside every checkpoint folder
META_FILE = "meta.json"  # the trial's epoch and objective value at the checkpoint


def save_checkpoint(model: keras.Model, folder: Path, **meta: Any) -> None:
    """Write the model (architecture, weights, optimizer state) and a small metadata file."""
    _reuse_keras_attr_skipsets()
    model.save(folder / MODEL_FILE)
    (folder / META_FILE).write_text(json.dumps(meta))


# Keras' saver asks, for every layer, optimizer, metric and loss it walks, which attributes a
# plain object of that kind has (``saving_lib.get_attr_skipset``), by building a reference
# Layer(), Optimizer(), Metric()... It means to cache the answer in Keras' global state, but
# stores it under "saving_attr_skipset_<kind>" and looks it up under "saving_attr_skiplist_<kind>"
# (Keras 3.15), so every save builds them all again: a third of a checkpoint of a 256-256 MLP
# (12.2 -> 7.9 ms per model.save here). The answer depends only on the Keras version, so we
# compute it once per process and put it where Keras looks, before each save (that state is
# per thread, and each trial runs in a thread of its own). What is saved does not change.
_SKIPSET_KINDS = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss")
_SKIPSETS: dict[str, set[str]] = {}


def _reuse_keras_attr_skipsets() -> None:
    try:
        from keras.src.backend.common import global_state
        from keras.src.saving import saving_lib

        if not _SKIPSETS:
            _SKIPSETS.update({kind: saving_lib.get_attr_skipset(kind) for kind in _SKIPSET_KINDS})
        for kind, skipset in _SKIPSETS.items():
            global_state.set_global_attribute(f"saving_attr_skiplist_{kind}", skipset)
    except Exception:  # another Keras layout: it computes them itself, as before
        _SKIPSETS.clear()


# ---------------------------------------------------------------------------------------------
# reading a checkpoint back: trial retries and resumes, the best model, load_best, export
#
# Every load goes through :func:`load_model_file` with the sweep's ``model.safe_mode`` (on unless
# the sweep file turns it off) and custom objects from three places: the user's own modules that
# the checkpoint names (found by name, whether their classes are registered or not), the
# sweep file's ``model.custom_objects``, and what the caller passes.

_LOAD_SETTINGS: dict[str, Any] = {}  # this process's sweep: {"model": ModelConfig, "search_paths": (...)}


def use_model_settings(model_cfg: ModelConfig | None, search_paths: tuple[Path, ...] = ()) -> None:
    """The sweep's load settings for :func:`load_checkpoint` calls that pass none (a worker's retry)."""
    _LOAD_SETTINGS.update(model=model_cfg, search_paths=tuple(search_paths))


def load_checkpoint(
    folder: str | Path,
    custom_objects: dict | None = None,
    model_cfg: ModelConfig | None = None,
    search_paths: tuple[Path, ...] | None = None,
    safe_mode: bool | None = None,
) -> keras.Model:
    """Load a checkpoint written by ``save_checkpoint`` (see :func:`load_model_file`); without
    ``model_cfg`` the settings of :func:`use_model_settings` apply (safe_mode on by default)."""
    if model_cfg is None:
        model_cfg = _LOAD_SETTINGS.get("model")
    if search_paths is None:
        search_paths = _LOAD_SETTINGS.get("search_paths", ())
    return load_model_file(Path(folder) / MODEL_FILE, model_cfg, search_paths, custom_objects, safe_mode)


def load_model_file(
    path: str | Path,
    model_cfg: ModelConfig | None = None,
    search_paths: tuple[Path, ...] = (),
    custom_objects: dict | None = None,
    safe_mode: bool | None = None,
) -> keras.Model:
    """``keras.saving.load_model`` with the sweep's safe_mode and every custom object it can know."""
    import keras

    objects = {**known_custom_objects(path, model_cfg, search_paths), **(custom_objects or {})}
    if safe_mode is None:
        safe_mode = True if model_cfg is None else bool(getattr(model_cfg, "safe_mode", True))
    with _global_policy(saved_dtype_policy(path)):
        return keras.saving.load_model(path, custom_objects=objects or None, safe_mode=safe_mode)


def saved_dtype_policy(path: str | Path) -> str | None:
    """The dtype policy a ``.keras`` archive's model was built with (``"mixed_float16"``), read
    from its ``config.json``; None when the archive does not say (or is no zip)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            dtype = json.loads(archive.read("config.json")).get("config", {}).get("dtype")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    return dtype if isinstance(dtype, str) else None


@contextlib.contextmanager
def _global_policy(name: str | None) -> Iterator[None]:
    """Keras' global dtype policy set to ``name`` while a model loads, then put back.

    ``compile()`` wraps the optimizer in a ``LossScaleOptimizer`` only when the model's policy
    is ``mixed_float16``, and a loaded model takes the global one: a mixed-precision checkpoint
    loaded in a process left at ``float32`` (a retried or resumed trial before the user's factory
    set the policy, the driver logging the best model) got a plain Adam, Keras skipped the saved
    optimizer's variables with a warning ("10 variables whereas the saved optimizer has 14"),
    and the trial went on with no loss scaling and its Adam moments and step count at zero."""
    import keras

    current = keras.mixed_precision.global_policy()
    if name is None or name == current.name:
        yield
        return
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(current)


def known_custom_objects(path: str | Path, model_cfg: ModelConfig | None = None, search_paths: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Every custom object the model file at ``path`` names that the sweep can find (see
    :func:`load_model_file`): what loading it, or compiling from its compile config, needs."""
    return {**custom_objects_in(path, search_paths), **configured_custom_objects(model_cfg, search_paths)}


def configured_custom_objects(model_cfg: ModelConfig | None, search_paths: tuple[Path, ...] = ()) -> dict[str, Any]:
    """``model.custom_objects`` of the sweep file (``package.module:name`` specs, or name: spec)."""
    import keras

    from sweep.inputs.imports import resolve

    entries = getattr(model_cfg, "custom_objects", None) or []
    pairs = list(entries.items()) if isinstance(entries, dict) else [(None, spec) for spec in entries]
    objects: dict[str, Any] = {}
    for index, (name, spec) in enumerate(pairs):
        key = f"model.custom_objects.{name if name is not None else index}"
        obj = resolve(spec, key, tuple(search_paths))
        names = {name} if name is not None else {spec.rpartition(":")[2].split(".")[-1], keras.saving.get_registered_name(obj)}
        objects.update({n: obj for n in names if n})
    return objects


_NOT_USER_MODULES = ("keras", "keras_hub", "keras_cv", "keras_nlp", "tensorflow", "builtins", "numpy")


def custom_objects_in(path: str | Path, search_paths: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The user's own classes and functions a ``.keras`` file names, by the names Keras looks up.

    Only modules of the user's (imported by the sweep from its folders, or files in
    ``search_paths``) are imported; a module an arbitrary file names (the standard library, an
    installed package) is not, so a checkpoint cannot make us import or call anything else.
    Keras records a class's module, and a plain function by its name only (module ``builtins``);
    such a name is looked up in the user's modules, never shadowing a Keras built-in.
    """
    import zipfile

    from sweep.inputs.imports import import_local, local_modules, remember_loaded

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}  # not a .keras archive: Keras says what is wrong when it loads it
    classes: list[tuple[str, str, str | None]] = []
    functions: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            module, class_name = node.get("module"), node.get("class_name")
            if isinstance(module, str) and isinstance(class_name, str):
                if class_name == "function" and isinstance(node.get("config"), str):
                    functions.add(node["config"])
                elif module.split(".")[0] not in _NOT_USER_MODULES:
                    registered = node.get("registered_name")
                    classes.append((module, class_name, registered if isinstance(registered, str) else None))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    objects: dict[str, Any] = {}
    modules: dict[str, Any] = {}
    for module_name, class_name, registered in classes:
        if module_name not in modules:
            modules[module_name] = import_local(module_name, tuple(search_paths))
        found = getattr(modules[module_name], class_name, None) if modules[module_name] is not None else None
        if isinstance(found, type) and getattr(found, "__module__", None) == module_name:
            objects[class_name] = found
            objects[registered or class_name] = found
    for name in sorted(functions - set(objects)):  # registered as module>name (models.register_user_functions): that module, no other
        module_name, sep, short = name.rpartition(">")
        if sep and module_name not in modules:
            modules[module_name] = import_local(module_name, tuple(search_paths))
        found = getattr(modules.get(module_name), short, None) if sep else None
        if callable(found) and not isinstance(found, type):
            objects[name] = found
            functions.discard(name)
    if functions - set(objects):
        remember_loaded(tuple(search_paths))  # helper modules a factory imported in its body
        for module_name in local_modules():
            if module_name not in modules:
                modules[module_name] = import_local(module_name, tuple(search_paths))
        for name in sorted(functions - set(objects)):
            short = name.rpartition(">")[2]
            if ">" not in name and _is_keras_builtin_function(short):
                continue
            found = _function_in(short, modules)
            if found is None:  # a fresh process (load_best, export): the user's modules are not imported yet
                for module_name in _modules_defining(short, tuple(search_paths)):
                    if module_name not in modules:
                        modules[module_name] = import_local(module_name, tuple(search_paths))
                found = _function_in(short, modules)
            if found is not None:
                objects[name] = found
    return objects


def _function_in(name: str, modules: dict[str, Any]) -> Any | None:
    """A plain function ``name`` defined (not imported) by one of ``modules``."""
    for module_name, module in modules.items():
        found = getattr(module, name, None) if module is not None else None
        if callable(found) and not isinstance(found, type) and getattr(found, "__module__", None) == module_name:
            return found
    return None


def _modules_defining(name: str, search_paths: tuple[Path, ...]) -> list[str]:
    """The user's modules (files in ``search_paths``: the sweep file's folder, the logged copy of
    its code; one package level deep) whose source defines a function ``name``. Keras records a
    plain function (a loss, a metric, a Lambda's function) by its bare name only, so a process
    that has not imported the user's modules could not load the model ("Could not locate
    function 'focal'"); only a module that defines that name is imported."""
    import re

    pattern = re.compile(rf"^def {re.escape(name)}\s*\(", re.MULTILINE)
    found: list[str] = []
    for folder in search_paths:
        folder = Path(folder)
        files = sorted(folder.glob("*.py")) + sorted(p for p in folder.glob("*/*.py") if (p.parent / "__init__.py").is_file())
        for file in files:
            try:
                defines = pattern.search(file.read_text(encoding="utf-8", errors="replace")) is not None
            except OSError:
                continue
            module = ".".join(file.relative_to(folder).with_suffix("").parts)
            if defines and module not in found and all(part.isidentifier() for part in module.split(".")):
                found.append(module)
    return found


def _is_keras_builtin_function(name: str) -> bool:
    """An activation, loss or metric Keras itself names ``name`` (e.g. relu): never the user's."""
    try:
        from keras.src.api_export import get_symbol_from_name
        from keras.src.saving.serialization_lib import BUILTIN_MODULES
    except ImportError:
        return False
    return any(get_symbol_from_name(f"keras.{module}.{name}") is not None for module in BUILTIN_MODULES)


def check_reloadable(model: keras.Model, model_cfg: ModelConfig, search_paths: tuple[Path, ...] = (), sample: Any = None) -> None:
    """Preflight: the model saves, loads back with the sweep's settings and, given ``sample``
    (a few input rows), runs once loaded, as every trial checkpoint, retry, resume and the best
    model will; else one line naming what to change. A Lambda whose function reads its
    module's globals loaded fine and then failed every prediction of the registered best model.

    The built-in builders (no custom objects) always reload, so they skip the round trip.
    """
    if model_cfg.builder in ("mlp", "cnn") and not getattr(model_cfg, "custom_objects", None):
        return
    hint = (
        "give each custom layer, model, loss or metric a get_config() that returns its __init__ arguments, "
        "define it in a module next to the sweep file or an installed package (not __main__), "
        "or list it in model.custom_objects as package.module:name"
    )
    import warnings

    with tempfile.TemporaryDirectory(prefix="sweep-preflight-") as folder, warnings.catch_warnings():
        # an untrained model's optimizer has no slots yet: Keras warns that it skips loading them,
        # which is true and harmless here, and reads as if checkpoints were broken
        warnings.simplefilter("ignore")
        try:
            save_checkpoint(model, Path(folder))
        except Exception as exc:
            raise InputError("model.builder", f"expected a model Keras can save (every trial checkpoints it), but saving failed: {_said(exc)}; {hint}") from None
        try:
            loaded = load_checkpoint(folder, model_cfg=model_cfg, search_paths=tuple(search_paths))
        except InputError:
            raise
        except Exception as exc:
            if "safe_mode" in str(exc):
                raise InputError(
                    "model.safe_mode",
                    "expected a model that loads with Keras safe_mode (checkpoints are loaded back for retries, resumes and the "
                    "best model), but it holds Python code that only loads with safe_mode off (a Lambda layer with a Python "
                    "lambda): set model.safe_mode: false to run code stored in the checkpoint (only for checkpoints you "
                    "produced), or replace the Lambda by a layer class",
                ) from None
            raise InputError("model.builder", f"expected a model Keras can load back from its checkpoint, but loading failed: {_said(exc)}; {hint}") from None
        if sample is not None:
            try:
                loaded(sample)
            except Exception as exc:
                raise InputError(
                    "model.builder",
                    f"expected the model loaded back from its checkpoint to run (as the best model must), but calling it failed: {_said(exc)}; "
                    "a Lambda's function runs without its module's globals once loaded: import what it uses inside the function, or use a layer class",
                ) from None


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {telling_line(exc, 300)}"


def read_meta(folder: str | Path) -> dict[str, Any]:
    """The checkpoint's ``meta.json`` (``epoch``, ``metric``, ``value``), or {} when it has none."""
    path = Path(folder) / META_FILE
    return json.loads(path.read_text()) if path.exists() else {}
