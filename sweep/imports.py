"""The one place that turns ``package.module:function`` strings into Python callables."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any, Callable

import cloudpickle

from sweep.config import InputError

SPEC_PATTERN = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def is_spec(text: str) -> bool:
    """True when ``text`` has the form ``package.module:function``."""
    return bool(SPEC_PATTERN.match(text))


def resolve(spec: str, key: str, search_paths: tuple[Path, ...] = ()) -> Callable[..., Any]:
    """Import ``package.module:function`` and return the callable.

    ``search_paths`` (the sweep file's folder, the working directory) are tried so that a
    user's ``my_models.py`` next to the sweep file imports without installing it. Modules that
    live outside site-packages are registered to be pickled by value, so Ray workers that
    cannot import them (other machines, other working directories) still receive them.
    """
    if not is_spec(spec):
        raise InputError(key, f"expected package.module:function, got {spec!r}")
    module_name, _, attr_path = spec.partition(":")
    for path in reversed(search_paths):  # the sweep file's folder first, as Python does for a script
        if str(path) in sys.path:
            sys.path.remove(str(path))
        sys.path.insert(0, str(path))
    _forget_if_shadowed(module_name, search_paths)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the user's module raising at import
        raise InputError(key, f"expected an importable module {module_name!r}, but import failed: {_one_line(exc)}") from None
    target: Any = module
    for part in attr_path.split("."):
        if not hasattr(target, part):
            raise InputError(key, f"expected {module_name!r} to define {attr_path!r}, but it does not")
        target = getattr(target, part)
    if not callable(target):
        raise InputError(key, f"expected {spec!r} to be callable, got {type(target).__name__}")
    _pickle_by_value_if_local(module)
    return target


def _local_file(module_name: str, search_paths: tuple[Path, ...]) -> Path | None:
    """The user's file for ``module_name`` in the first search path that has one."""
    relative = Path(*module_name.split("."))
    for path in search_paths:
        for candidate in (path / relative.with_suffix(".py"), path / relative / "__init__.py"):
            if candidate.is_file():
                return candidate.resolve()
    return None


def _forget_if_shadowed(module_name: str, search_paths: tuple[Path, ...]) -> None:
    """A module of the same name loaded earlier from another folder (a previous sweep in the same
    notebook or process) must not stand in for the one next to this sweep file."""
    loaded = sys.modules.get(module_name)
    wanted = _local_file(module_name, search_paths)
    if loaded is None or wanted is None:
        return
    current = getattr(loaded, "__file__", None)
    if current is not None and Path(current).resolve() == wanted:
        return
    root = module_name.split(".")[0]
    for name in [n for n in sys.modules if n == root or n.startswith(root + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def _pickle_by_value_if_local(module: Any) -> None:
    file = getattr(module, "__file__", None)
    if file is None or "site-packages" in file or "dist-packages" in file:
        return
    if module.__name__.split(".")[0] == "sweep":
        return
    cloudpickle.register_pickle_by_value(module)
    from ray import cloudpickle as ray_cloudpickle  # Ray ships its own copy, used for trainables

    ray_cloudpickle.register_pickle_by_value(module)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
