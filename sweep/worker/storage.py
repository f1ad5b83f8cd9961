"""Checkpoints wherever ``--storage`` puts them: a local or shared folder, or a pyarrow URI.

Where a checkpoint folder lives, and copying or deleting it; what the folder holds is
:mod:`sweep.worker.checkpoints`.

On a cluster, trials on other nodes write their checkpoints straight to ``--storage`` (Ray does
not sync checkpoints between nodes), so it must be a path every node shares (NFS) or a cloud
URI (``s3://``, ``gs://``). The driver still logs the best checkpoints to MLflow: it reads them
back through the same pyarrow filesystem Ray wrote them with, via a temporary local copy.

A checkpoint's *location* is a plain local path when its filesystem is local (the common case,
``file://`` URIs included) and ``scheme://bucket/path`` otherwise, so it can be stored as text
(ledger, MLflow tags) and opened again later without the ``Checkpoint`` object.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

# pyarrow's filesystem type names -> the URI scheme that opens them again
_SCHEMES = {"s3": "s3", "gcs": "gs", "hdfs": "hdfs", "abfs": "abfs"}


def is_uri(location: str | None) -> bool:
    """True for ``scheme://...`` (``file://`` included), False for plain paths."""
    return bool(location) and "://" in str(location)


def checkpoint_location(checkpoint: Any, storage_root: str = "") -> str:
    """Where a Ray ``Checkpoint`` lives, as text that ``local_copy`` can open again.

    A URI keeps ``storage_root``'s query (``s3://b/p?endpoint_override=127.0.0.1:9000``): the
    filesystem options Ray opened the storage with, without which a MinIO checkpoint would be
    looked for on AWS. ``--storage`` refuses credentials in that query, so it is safe to record."""
    import pyarrow.fs

    filesystem = getattr(checkpoint, "filesystem", None)
    if filesystem is None or isinstance(filesystem, pyarrow.fs.LocalFileSystem):
        return str(checkpoint.path)
    scheme = _SCHEMES.get(filesystem.type_name, filesystem.type_name)
    query = storage_root.partition("?")[2] if is_uri(storage_root) else ""
    return f"{scheme}://{str(checkpoint.path).lstrip('/')}" + (f"?{query}" if query else "")


def _filesystem(location: str) -> tuple[Any, str]:
    import pyarrow.fs

    if not is_uri(location):
        return pyarrow.fs.LocalFileSystem(), str(Path(location).resolve())
    return pyarrow.fs.FileSystem.from_uri(location)


STORAGE_ANSWER_S = 30.0  # a cloud store that has not answered by then will not (no network, no credentials)


def check_answers(location: str, timeout_s: float = STORAGE_ANSWER_S, say: Any = None) -> str | None:
    """Why the storage at ``location`` cannot be used, or None when it answers: pyarrow opens it
    and lists it, in a thread, for at most ``timeout_s`` (``say`` is told after 2 s that the wait
    is on, and for how long). A ``gs://`` store without network hung Ray's own first access
    silently for minutes, deaf to Ctrl-C (a call into C++ that never returned)."""
    import threading

    if not is_uri(location) or location.startswith("file://"):
        return None
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            filesystem, path = _filesystem(location)
            filesystem.get_file_info(path)
            outcome.append(None)
        except Exception as exc:  # noqa: BLE001 - whatever pyarrow raises is the reason
            outcome.append(f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}")

    thread = threading.Thread(target=probe, name="sweep-storage-probe", daemon=True)
    thread.start()
    thread.join(min(2.0, timeout_s))
    if thread.is_alive() and say is not None:
        say(f"sweep: waiting at most {timeout_s:g} s for the storage {location} to answer")
    thread.join(max(0.0, timeout_s - 2.0))
    if thread.is_alive():
        return f"no answer within {timeout_s:g} s (no network, or no credentials for it here?)"
    return outcome[0] if outcome else None


def local_path(location: str) -> Path | None:
    """The local folder of a checkpoint, or None when it lives on a remote filesystem."""
    import pyarrow.fs

    filesystem, path = _filesystem(location)
    return Path(path) if isinstance(filesystem, pyarrow.fs.LocalFileSystem) else None


@contextlib.contextmanager
def local_copy(location: str) -> Iterator[Path]:
    """A local folder with the checkpoint's files: the folder itself when local, else a temp copy."""
    import pyarrow.fs

    local = local_path(location)
    if local is not None:
        yield local
        return
    filesystem, path = _filesystem(location)
    with tempfile.TemporaryDirectory(prefix="sweep-ckpt-") as folder:
        pyarrow.fs.copy_files(path, folder, source_filesystem=filesystem, destination_filesystem=pyarrow.fs.LocalFileSystem())
        yield Path(folder)


def remove_checkpoint(location: str) -> None:
    """Delete a superseded checkpoint folder (only folders Ray named ``checkpoint_*``)."""
    if not location or not Path(str(location).rstrip("/")).name.startswith("checkpoint_"):
        return
    local = local_path(location)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)
        return
    filesystem, path = _filesystem(location)
    try:
        filesystem.delete_dir(path)
    except OSError:  # already gone, or no permission to delete: keeping it is harmless
        pass


def size_bytes(location: str) -> int:
    """Bytes a local checkpoint folder takes (0 for remote ones: the quota covers local disks)."""
    local = local_path(location)
    if local is None or not local.is_dir():
        return 0
    return sum(entry.stat().st_size for entry in local.rglob("*") if entry.is_file())
