"""cluster.yaml passes Ray's own cluster-config validation and starts trainq on the head."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_cluster_yaml_is_valid_for_the_ray_cluster_launcher() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    # What `ray up` does: fill in the provider's defaults, then Ray's JSON schema and checks.
    config = prepare_config(config)
    validate_config(config)
    assert config["head_node_type"] in config["available_node_types"]


def test_cluster_yaml_installs_trainq_and_serves_it_on_the_head() -> None:
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert config["file_mounts"]["~/trainq"] == "."
    assert any("pip install" in c and "~/trainq" in c for c in config["setup_commands"])
    head = " ".join(config["head_start_ray_commands"])
    assert "ray start --head" in head and "trainq serve --address auto" in head
    assert "TRAINQ_API_TOKEN_FILE" in head  # binds 0.0.0.0, so a token is required
    assert "TRAINQ_STORAGE=/mnt/trainq" in head  # shared storage, same path on every node
    gpu = config["available_node_types"]["gpu_worker"]
    assert gpu["max_workers"] >= 1 and gpu["min_workers"] == 0
