"""Placement helpers (GPU sharing, replicas, node identity) and Ray addresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.driver import cluster
from sweep.worker import placement
from sweep.spec.config import ResourcesConfig


def test_memory_limit_is_the_trials_fraction_of_the_card() -> None:
    assert placement.memory_limit_mb(0.5, 24576) == 12288
    assert placement.memory_limit_mb(0.25, 16000) == 4000
    assert placement.memory_limit_mb(1.0, 24576) is None  # whole card: memory growth instead
    assert placement.memory_limit_mb(0.5, None) is None  # size unknown (no nvidia-smi)


def test_batch_size_scales_with_replicas_only_when_asked() -> None:
    assert placement.batch_size(32, ResourcesConfig(gpus_per_trial=2, scale_batch_size=True), 2) == 64
    assert placement.batch_size(32, ResourcesConfig(gpus_per_trial=2), 2) == 32
    assert placement.batch_size(32, ResourcesConfig(scale_batch_size=True), 1) == 32


def test_no_strategy_without_several_gpus() -> None:
    assert placement.strategy(ResourcesConfig(gpus_per_trial=0.5)) is None
    assert placement.strategy(ResourcesConfig(gpus_per_trial=2)) is None  # this machine has no GPU


def test_identity_fields_become_tags() -> None:
    result = {"sweep_node_id": "abc", "sweep_gpus": 0.5, "sweep_cuda_visible_devices": "1", "loss": 0.3}
    assert placement.identity_tags(result) == {"sweep.node_id": "abc", "sweep.gpus": "0.5", "sweep.cuda_visible_devices": "1"}


def test_visible_device_ids_follow_cuda_visible_devices(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert placement.visible_device_ids() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert placement.visible_device_ids() == []


def test_addresses() -> None:
    assert cluster.is_loopback("127.0.0.1:6379") and cluster.is_loopback("localhost:1") and cluster.is_loopback("[::1]:6379")
    assert not cluster.is_loopback("10.0.0.5:6379") and not cluster.is_loopback("ray://127.0.0.1:10001")
    assert cluster.is_client_address("ray://head:10001") and not cluster.is_client_address("auto")
    assert cluster.bootstrap_address("10.0.0.5:6379") == "10.0.0.5:6379"


def test_loopback_only_restores_the_environment(monkeypatch) -> None:
    from ray._private import ray_constants

    monkeypatch.delenv(cluster.SINGLE_MACHINE_ENV, raising=False)
    before = ray_constants.ENABLE_RAY_CLUSTER
    with cluster.loopback_only():
        import os

        assert os.environ[cluster.SINGLE_MACHINE_ENV] == "0" and ray_constants.ENABLE_RAY_CLUSTER is False
    assert cluster.SINGLE_MACHINE_ENV not in __import__("os").environ and ray_constants.ENABLE_RAY_CLUSTER == before


def test_gpus_above_one_must_be_whole(tmp_path: Path) -> None:
    from sweep.spec import config
    from sweep.errors import SweepConfigError

    spec = {"name": "g", "data": {"source": "synthetic"}, "search": {"space": {"lr": {"type": "float", "low": 0.1, "high": 1}}}}
    assert config.load({**spec, "resources": {"gpus_per_trial": 2}}, {}).resources.gpus_per_trial == 2
    with pytest.raises(SweepConfigError, match="resources.gpus_per_trial: expected a fraction up to 1 or a whole number"):
        config.load({**spec, "resources": {"gpus_per_trial": 1.5}}, {})
