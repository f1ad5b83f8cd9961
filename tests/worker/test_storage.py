"""Where checkpoints live: local paths and URIs, local copies, removal, locations kept as text."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.worker import storage


def _checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"weights")
    return folder


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-uri"])
def test_local_copy_reads_paths_and_file_uris(tmp_path: Path, as_uri: bool) -> None:
    folder = _checkpoint(tmp_path / "run" / "checkpoint_000001")
    location = folder.as_uri() if as_uri else str(folder)
    with storage.local_copy(location) as local:
        assert (local / "model.keras").read_bytes() == b"weights"


def test_remove_checkpoint_deletes_only_checkpoint_folders(tmp_path: Path) -> None:
    kept = _checkpoint(tmp_path / "trial_folder")
    gone = _checkpoint(tmp_path / "checkpoint_000000")
    storage.remove_checkpoint(str(kept))
    storage.remove_checkpoint(gone.as_uri())
    assert kept.exists() and not gone.exists()


def test_checkpoint_location_keeps_remote_schemes() -> None:
    import pyarrow.fs
    from ray import tune

    local = tune.Checkpoint("/data/run/checkpoint_000001", filesystem=pyarrow.fs.LocalFileSystem())
    assert storage.checkpoint_location(local) == "/data/run/checkpoint_000001"
    sub = pyarrow.fs.SubTreeFileSystem("/tmp", pyarrow.fs.LocalFileSystem())
    assert storage.checkpoint_location(tune.Checkpoint("run/checkpoint_1", filesystem=sub)).endswith("://run/checkpoint_1")
