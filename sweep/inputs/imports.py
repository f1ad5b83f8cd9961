"""The one place that turns ``package.module:function`` strings into Python callables."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from sweep.errors import InputError

SPEC_PATTERN = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def is_spec(text: str) -> bool:
    """True when ``text`` has the form ``package.module:function``."""
    return bool(SPEC_PATTERN.match(text))


def resolve(spec: str, key: str, search_paths: tuple[Path, ...] = ()) -> Callable[..., Any]:
    """Import ``package.module:function`` and return the callable.

    ``search_paths`` (the sweep file's folder, the working directory) are tried so that a
    user's ``my_models.py`` next to the sweep file imports without installing it. Such local
    modules (and the local modules they import) are remembered: they reach Ray workers by
    name, not by value (:func:`user_code`, :func:`ensure_importable`), so a class defined there
    is the same class on every worker, its ``register_keras_serializable`` decorator runs
    there, and the checkpoints the workers write name it as the driver does.
    """
    if not is_spec(spec):
        raise InputError(key, f"expected package.module:function, got {spec!r}")
    module_name, _, attr_path = spec.partition(":")
    captured = _ThisThreadsWrites(sys.stderr)
    try:
        # what the module prints while it imports is held back: an argparse usage text (a training
        # script reused as a module) must not stand in for the one line that names the key
        with contextlib.redirect_stderr(captured), _os_exit_raises_here():
            module = _import(module_name, search_paths)
    except SystemExit as exc:  # sys.exit() or argparse at import: a user error, not the sweep's exit code
        said = [line.strip() for line in captured.getvalue().splitlines() if line.strip()]
        detail = f": {said[-1][:200]}" if said else ""
        how = f"called os._exit({exc.code})" if isinstance(exc, _OsExit) else f"exited (SystemExit: {exc.code})"
        raise InputError(key, f"expected an importable module {module_name!r}, but import {how}{detail}") from None
    except Exception as exc:  # ImportError, or the user's module raising at import
        raise InputError(key, f"expected an importable module {module_name!r}, but import failed: {_one_line(exc)}") from None
    except KeyboardInterrupt as exc:
        if threading.current_thread() is threading.main_thread():
            raise  # a Ctrl-C while it imports (one the module raises itself cannot be told apart here)
        # the preflight's thread: Python delivers a Ctrl-C to the main thread only, so this one is
        # the module's own ("interrupted ... run the same command again", and again, for ever)
        raise InputError(key, f"expected an importable module {module_name!r}, but import raised {_one_line(exc) or 'KeyboardInterrupt'} itself") from None
    except BaseException as exc:  # a BaseException of the user's own (not Exception): still the module's failure, said in one line
        raise InputError(key, f"expected an importable module {module_name!r}, but import raised {_one_line(exc)}") from None
    finally:
        held = captured.getvalue()
    if held:
        sys.stderr.write(held)
    target: Any = module
    for part in attr_path.split("."):
        if not hasattr(target, part):
            raise InputError(key, f"expected {module_name!r} to define {attr_path!r}, but it does not{_closest_name(part, target)}")
        target = getattr(target, part)
    if not callable(target):
        raise InputError(key, f"expected {spec!r} to be callable, got {type(target).__name__}")
    return target


def _closest_name(name: str, namespace: Any) -> str:
    """``; did you mean 'build'?`` for a misspelt function name: the callables the module (or
    class) defines whose names are close to ``name``; "" when none is."""
    import difflib

    names = [n for n in dir(namespace) if not n.startswith("_") and callable(getattr(namespace, n, None))]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


class _ThisThreadsWrites(io.StringIO):
    """``sys.stderr`` while a user module imports: holds what the importing thread writes and
    passes every other thread's writes on. ``sys.stderr`` is the process's: the preflight
    imports in a thread while the main thread starts Ray, and a module that blocked at import
    held the main thread's Ctrl-C lines forever (the command ended saying nothing)."""

    def __init__(self, passthrough: Any):
        super().__init__()
        self._passthrough, self._thread = passthrough, threading.current_thread()

    def write(self, text: str) -> int:
        if threading.current_thread() is self._thread:
            return super().write(text)
        return self._passthrough.write(text)

    def flush(self) -> None:
        if threading.current_thread() is not self._thread:
            self._passthrough.flush()

    def fileno(self) -> int:
        return self._passthrough.fileno()


class _OsExit(SystemExit):
    """``os._exit(code)`` called by a module while it imports, as an exception."""


@contextlib.contextmanager
def _os_exit_raises_here() -> Iterator[None]:
    """While this thread imports a user's module, ``os._exit`` raises :class:`_OsExit` in it
    instead of ending the process: such a module ended ``sweep run`` silently, exit 0, with
    nothing said. Every other thread's ``os._exit`` (Ray's) is the real one."""
    real, here = os._exit, threading.current_thread()

    def exit_or_raise(code: int) -> None:
        if threading.current_thread() is here:
            raise _OsExit(code)
        real(code)

    os._exit = exit_or_raise
    try:
        yield
    finally:
        os._exit = real


def _import(module_name: str, search_paths: tuple[Path, ...]) -> Any:
    """Import ``module_name`` with ``search_paths`` first on sys.path; remember the user's modules."""
    for path in reversed(search_paths):  # the sweep file's folder first, as Python does for a script
        if str(path) in sys.path:
            sys.path.remove(str(path))
        sys.path.insert(0, str(path))
    _forget_if_shadowed(module_name, search_paths)
    _forget_shadowed_locals(search_paths)
    before = set(sys.modules)
    module = importlib.import_module(module_name)
    imported = set(sys.modules) - before
    for name in imported:  # read from its file just now: stamped anew below
        _STAMPS.pop(name, None)
    _remember_local([module_name, *imported], search_paths)
    return module


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


# ---------------------------------------------------------------------------------------------
# the user's own modules, importable by name everywhere
#
# The rule: a module found next to the sweep file (or in the working directory) is imported by
# its name on every Ray worker too. On a local Ray, or a cluster whose nodes see the same folder
# (a shared filesystem), the worker puts the sweep's folders on ``sys.path``; where a folder does
# not exist (another machine), the driver's copy of those module files (shipped with the
# trainable, a few KB) is written to a temp folder there and imported from it. Installed
# packages are imported by name as always, so they must be installed on every node.

_LOCAL: dict[str, tuple[Path, Path]] = {}  # module name -> (its file, the search path it was found under)
_STAMPS: dict[str, tuple[int, int]] = {}  # module name -> (mtime in ns, size) of its file when it was imported


def forget_edited_modules() -> list[str]:
    """Before a sweep's preflight, in a process that ran an earlier sweep (a notebook, a loop):
    when one of the user's own modules changed on disk since it was imported, drop all of them
    (a module that imports the edited one holds its old classes), so this sweep imports the
    files as they are now. Returns the edited modules' names. Python never re-reads a module
    that is in ``sys.modules``: without this, an edited data function silently gave the old
    arrays and an edited factory was checked in its old version."""
    edited = [name for name, (file, _) in _LOCAL.items() if _stamp(file) != _STAMPS.get(name)]
    if edited:
        for name in list(_LOCAL):
            sys.modules.pop(name, None)
        _LOCAL.clear()
        _STAMPS.clear()
        importlib.invalidate_caches()
    return edited


def _stamp(file: Path) -> tuple[int, int] | None:
    try:
        stat = file.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _remember_local(names: list[str], search_paths: tuple[Path, ...]) -> None:
    """Record which of ``names`` (just imported) are the user's own modules in ``search_paths``."""
    roots = [Path(p).resolve() for p in search_paths]
    for name in names:
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if file is None or name.split(".")[0] == "sweep" or "site-packages" in file or "dist-packages" in file:
            continue
        for root in roots:
            if _local_file(name, (root,)) == Path(file).resolve():
                _LOCAL.pop(name, None)  # the latest resolve goes last (it wins on sys.path)
                _LOCAL[name] = (Path(file).resolve(), root)
                _STAMPS.setdefault(name, _stamp(Path(file)))  # as imported (a re-resolve of a loaded module keeps it)
                break


def _forget_shadowed_locals(search_paths: tuple[Path, ...]) -> None:
    """A remembered local module that ``search_paths`` has a different file for (a helper module
    of the same name next to another sweep file) is imported again from there."""
    for name, (file, _) in list(_LOCAL.items()):
        wanted = _local_file(name, search_paths)
        if wanted is not None and wanted != file:
            _forget_if_shadowed(name, search_paths)
            _LOCAL.pop(name, None)
            _STAMPS.pop(name, None)


def remember_loaded(search_paths: tuple[Path, ...]) -> None:
    """Remember the user's modules in ``search_paths`` that were imported some other way than
    :func:`resolve`: a factory or data function importing a helper module inside its body
    (``from my_losses import smooth_ce`` in ``build``). Their functions and classes are then
    found when a checkpoint names them, and their files ship with the user's code."""
    _remember_local([name for name in list(sys.modules) if name not in _LOCAL], search_paths)


def local_modules() -> dict[str, Path]:
    """The user's own modules imported so far (name -> file), for finding their Keras objects."""
    return {name: file for name, (file, _) in _LOCAL.items()}


@dataclass(frozen=True)
class UserCode:
    """What a worker needs to import the user's modules by name: the sweep's folders, and a copy
    of the module files for machines where those folders do not exist."""

    paths: tuple[str, ...]
    files: tuple[tuple[str, str, str], ...]  # (module name, path relative to its folder, source)
    digest: str

    @property
    def modules(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.files)


MAX_SHIPPED_BYTES = 8 * 1024 * 1024


def user_code(search_paths: tuple[Path, ...]) -> UserCode:
    """The user's modules under ``search_paths`` that this process imported (see :func:`resolve`)."""
    roots = [Path(p).resolve() for p in search_paths]
    files = []
    for name, (file, root) in _LOCAL.items():
        if root in roots and file.is_file():
            try:
                files.append((name, str(file.relative_to(root)), file.read_text()))
            except (OSError, UnicodeDecodeError, ValueError):
                continue
    if sum(len(text) for _, _, text in files) > MAX_SHIPPED_BYTES:
        files = []  # too big to ship with the trainable: the folders must exist on the workers
    paths = tuple(str(p) for p in roots)
    digest = hashlib.sha256(repr((paths, files)).encode()).hexdigest()[:16]
    return UserCode(paths, tuple(files), digest)


_INSTALLED: list[str] = []  # [digest] of the UserCode this process set up last
_ROOTS: list[Path] = []  # where this process imports the sweep's user modules from


def installed_digest() -> str | None:
    """The digest of the :class:`UserCode` this process set up last (None before any sweep's):
    a worker that outlives a sweep (``sweep.worker.executor``) compares it with the next sweep's."""
    return _INSTALLED[0] if _INSTALLED else None


def ensure_importable(code: UserCode | None) -> tuple[Path, ...]:
    """On a worker, before the sweep's builder is unpickled: make the user's modules importable
    by name (see the rule above) and forget same-named modules of an earlier sweep. Cheap after
    the first call of a sweep. Returns the folders the modules import from."""
    if code is None:
        return ()
    if _INSTALLED == [code.digest]:
        return tuple(_ROOTS)
    roots = [Path(p) for p in code.paths if Path(p).is_dir()]
    if any(not _same_file(code.paths, relative, text) for _, relative, text in code.files):
        copy = Path(tempfile.gettempdir()) / f"sweep-code-{code.digest}"
        for _, relative, text in code.files:
            target = copy / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.is_file() or target.read_text() != text:
                target.write_text(text)
        roots.insert(0, copy)
    for root in _ROOTS:  # an earlier sweep's folders (a process that outlives a sweep): not this one's
        if str(root) in sys.path and root not in roots:
            sys.path.remove(str(root))
    for root in reversed(roots):
        if str(root) in sys.path:
            sys.path.remove(str(root))
        sys.path.insert(0, str(root))
    for name in code.modules:  # imported again, from here, on first use
        sys.modules.pop(name, None)
    if _INSTALLED:  # a process that outlives a sweep: the earlier sweep's helper modules too
        _forget_modules_under(tuple(_ROOTS) + tuple(roots))
    importlib.invalidate_caches()
    _INSTALLED[:] = [code.digest]
    _ROOTS[:] = roots
    return tuple(roots)


def _forget_modules_under(roots: tuple[Path, ...]) -> None:
    """Drop every module imported from a file under ``roots`` (the user's folders), so the next
    import reads the files as they are now: a module the builder imports indirectly (not named
    in the sweep file, so not in ``UserCode.modules``) may have changed, or be another sweep's
    module of the same name. Installed packages and ``sweep`` itself are never dropped."""
    prefixes = tuple(str(root).rstrip("/\\") + sep for root in roots for sep in ("/", "\\"))
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not file or name.split(".")[0] == "sweep" or "site-packages" in file or "dist-packages" in file:
            continue
        if file.startswith(prefixes):
            sys.modules.pop(name, None)


def _same_file(paths: tuple[str, ...], relative: str, text: str) -> bool:
    for path in paths:
        candidate = Path(path) / relative
        try:
            if candidate.is_file():
                return candidate.read_text() == text
        except (OSError, UnicodeDecodeError):
            return False
    return False


def import_local(module_name: str, search_paths: tuple[Path, ...]) -> Any | None:
    """The user's module ``module_name`` if it is one of theirs (remembered, or a file in
    ``search_paths``), imported by name; None for anything else (installed packages, the
    standard library), which a checkpoint must not get imported just by naming it."""
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        return None
    loaded = sys.modules.get(module_name)
    file = getattr(loaded, "__file__", None)
    wanted = _local_file(module_name, search_paths)
    if file is not None and "site-packages" not in file and "dist-packages" not in file:
        remembered = _LOCAL.get(module_name)
        if wanted == Path(file).resolve():
            return loaded  # the user's module, as this process already has it
        if remembered is not None and wanted is None:
            return loaded  # theirs, and these folders have no other: as loaded
        # else another folder's module of that name (an earlier sweep in this process): this one's below
    if wanted is None:
        return None
    try:
        return _import(module_name, search_paths)
    except Exception:
        return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
