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


def test_a_checkpoint_location_keeps_the_storage_uris_options() -> None:
    """A MinIO store (``s3://b/p?endpoint_override=...``): checkpoint locations lost the query,
    so the driver looked for the checkpoints it logs to MLflow on AWS."""
    import pyarrow.fs
    from ray import tune

    root = "s3://bucket/sweeps?endpoint_override=127.0.0.1:9000&scheme=http&region=eu-west-3"
    s3 = pyarrow.fs.S3FileSystem(endpoint_override="127.0.0.1:9000", scheme="http", region="eu-west-3")
    location = storage.checkpoint_location(tune.Checkpoint("bucket/sweeps/demo/trial/checkpoint_000001", filesystem=s3), root)
    assert location == "s3://bucket/sweeps/demo/trial/checkpoint_000001?endpoint_override=127.0.0.1:9000&scheme=http&region=eu-west-3"
    reopened, path = pyarrow.fs.FileSystem.from_uri(location)
    assert path == "bucket/sweeps/demo/trial/checkpoint_000001" and reopened.region == "eu-west-3"
    local = tune.Checkpoint("/data/run/checkpoint_000001", filesystem=pyarrow.fs.LocalFileSystem())
    assert storage.checkpoint_location(local, root) == "/data/run/checkpoint_000001", "a local path takes no query"


def test_a_cloud_storage_that_does_not_answer_is_a_bounded_wait_that_says_so():
    """gs:// with no network hung Ray's first access for minutes, deaf to Ctrl-C."""
    import time

    from sweep.worker.storage import check_answers

    said: list[str] = []
    started = time.monotonic()
    problem = check_answers("gs://sweep-no-such-bucket/x", timeout_s=4.0, say=said.append)
    assert problem is not None and time.monotonic() - started < 8.0
    assert not said or said == ["sweep: waiting at most 4 s for the storage gs://sweep-no-such-bucket/x to answer"]
    assert check_answers("mock://bucket/x") is None  # pyarrow's in-memory store answers
    assert check_answers("/a/local/folder") is None  # local folders are not probed
