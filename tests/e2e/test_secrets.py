"""End to end: no secret from the environment reaches a file the sweep or its Ray writes (rel-04)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SECRETS = {"AWS_SECRET_ACCESS_KEY": "awsS3cretKeyE2E", "AWS_SESSION_TOKEN": "awsS3ssionTokE2E", "MLFLOW_TRACKING_TOKEN": "tokS3cretTokE2E"}


def _files_holding(root: Path, needles: list[str]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and path.stat().st_size < 50_000_000:
                data = path.read_bytes()
                found += [f"{path}: {n}" for n in needles if n.encode() in data]
        except OSError:
            continue
    return found


def test_environment_secrets_reach_no_file(ray_session, tmp_path, monkeypatch):
    import ray

    import sweep

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    result = sweep.run(
        {
            "name": "e2e-secrets",
            "data": {"source": "synthetic", "samples": 60, "features": 4},
            "model": {"builder": "mlp", "args": {"units": [4]}},
            "fit": {"epochs": 1, "batch_size": 16},
            "search": {"trials": 2, "seed": 0, "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}},
            "scheduler": {"type": "fifo"},
        },
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        storage=str(tmp_path / "runs"),
        quiet=True,
    )
    assert result.best is not None
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    leaks = _files_holding(session, list(SECRETS.values())) + _files_holding(tmp_path, list(SECRETS.values()))
    assert leaks == []
