"""Shared fixtures: one local Ray per test session (2 CPUs), temp MLflow stores per sweep."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ["SWEEP_SESSION"] = "0"  # a warm session (`sweep up`) a developer left up never runs the suite's sweeps

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray with 2 CPUs, bound to 127.0.0.1, shared by every end-to-end test."""
    import ray

    from sweep.driver.session import ensure_ray

    ensure_ray(num_cpus=2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture()
def mlflow_uri(tmp_path: Path) -> str:
    """A fresh sqlite MLflow store in the test's temp folder."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
