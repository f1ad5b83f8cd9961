"""cluster.yaml and cluster/local.yaml are valid Ray cluster launcher configs (Ray's own schema)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FILES = [REPO / "cluster.yaml", REPO / "cluster" / "local.yaml"]


def _schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(os.path.dirname(ray.autoscaler.__file__)) / "ray-schema.json").read_text())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_cluster_file_passes_rays_schema(path: Path) -> None:
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(path.read_text())
    jsonschema.validate(config, _schema())  # the file as written
    validate_config(prepare_config(config))  # as `ray up` sees it, defaults filled in


def test_aws_cluster_has_cpu_and_gpu_workers_that_install_the_project() -> None:
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    types = config["available_node_types"]
    assert types["gpu_worker"]["resources"]["GPU"] >= 1 and "GPU" not in types["cpu_worker"]["resources"]
    assert types["cpu_worker"]["resources"].get("cpu_node") == 1  # what CPU-only trials pin to
    assert all(types[name]["max_workers"] >= types[name]["min_workers"] for name in ("cpu_worker", "gpu_worker"))
    assert config["idle_timeout_minutes"] > 0
    assert any("pip install -e" in command and "sweep" in command for command in config["setup_commands"])
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])


def test_slurm_script_starts_head_then_workers_then_the_sweep() -> None:
    text = (REPO / "cluster" / "slurm.sbatch").read_text()
    head, worker, driver = text.index("ray start --head"), text.index('ray start --address "$ip_head"'), text.index('sweep run "$SWEEP_FILE"')
    assert head < worker < driver
    assert '--address "$ip_head"' in text[driver:]
