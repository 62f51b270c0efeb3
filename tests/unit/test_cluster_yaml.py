"""cluster.yaml passes Ray's own cluster-config validation and starts trainq on the head, its
registry's URL read from a secret on the head alone (never inline, never in Ray's environment),
with Ray's GCS fault tolerance when the secret names a Redis."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
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


def _commands(config: dict, *keys: str) -> str:
    return "\n".join(c for key in keys for c in config.get(key) or [])


def test_the_registry_url_comes_from_a_secret_read_on_the_head_alone() -> None:
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    everything = _commands(config, "setup_commands", "head_setup_commands", "worker_setup_commands",
                           "head_start_ray_commands", "worker_start_ray_commands", "initialization_commands")
    # Never inline: no connection URL and no TRAINQ_DB assignment in any command or file mount.
    assert "postgresql://" not in everything and "postgres://" not in everything
    assert set(re.findall(r"TRAINQ_DB=(\S+)", everything)) == {'"$TRAINQ_DB"'}  # passed on, never written
    assert "TRAINQ_DB" not in str(config["file_mounts"])
    fetch = _commands(config, "head_setup_commands")
    assert "aws secretsmanager get-secret-value" in fetch and "umask 077" in fetch and "~/.trainq/secrets.env" in fetch
    # The workers (users' code runs there) neither fetch nor read it.
    workers = _commands(config, "setup_commands", "worker_setup_commands", "worker_start_ray_commands")
    assert "secrets" not in workers
    serve = next(c for c in config["head_start_ray_commands"] if "trainq serve" in c)
    assert ". ~/.trainq/secrets.env" in serve and "TRAINQ_DB:?" in serve  # missing: stop, no SQLite fallback


def _run_with_secret(command: str, secret: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run one of the head's commands in bash with ``secret`` as the fetched secret and ``ray`` and
    ``trainq`` replaced by a stub that prints its environment's secrets and its arguments."""
    (tmp_path / ".trainq").mkdir(exist_ok=True)
    (tmp_path / ".trainq" / "secrets.env").write_text(secret)
    (tmp_path / ".trainq" / "gcs-namespace").write_text("trainq-test\n")
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    for tool in ("ray", "trainq"):
        (stub / tool).write_text('#!/bin/sh\nenv | grep -E "^(TRAINQ_DB|TRAINQ_API_TOKEN=|RAY_|REDIS)" | sort\n'
                                 'echo "ARGS $*"\n')
        (stub / tool).chmod(0o755)
    command = command.replace("> ~/trainq-serve.log 2>&1 &", "")  # in the foreground, to read what it printed
    return subprocess.run(["bash", "-c", command], env={"HOME": str(tmp_path), "PATH": f"{stub}:/usr/bin:/bin"},
                          capture_output=True, text=True, check=False, timeout=60)


#: A password with a shell character and a query with '&': the secret's quoting keeps both as they are.
URL = "postgresql://trainq:pw-of-the-$registry@db.internal:5432/trainq?sslmode=require&application_name=tq"


@pytest.mark.parametrize("gcs_ft", [False, True])
def test_serve_reads_the_registry_from_the_secret_and_ray_never_sees_it(tmp_path: Path, gcs_ft: bool) -> None:
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    start_ray, serve = config["head_start_ray_commands"][1:]
    redis = "RAY_REDIS_ADDRESS='redis.internal:6379'\nREDIS_PASSWORD='pw-of-redis'\n"
    secret = f"TRAINQ_DB='{URL}'\nTRAINQ_API_TOKEN='tok-of-the-api'\n" + (redis if gcs_ft else "")
    ray = _run_with_secret(start_ray, secret, tmp_path)
    assert ray.returncode == 0, ray.stderr
    # Every Ray process on the head inherits ray start's environment: the registry's URL stays out.
    assert "TRAINQ_DB" not in ray.stdout and "pw-of-the" not in ray.stdout and "tok-of-the-api" not in ray.stdout
    assert "RAY_external_storage_namespace=trainq-test" in ray.stdout
    if gcs_ft:  # Ray's GCS fault tolerance: the external Redis's address in the env, its password as the flag
        assert "RAY_REDIS_ADDRESS=redis.internal:6379" in ray.stdout and "--redis-password=pw-of-redis" in ray.stdout
    else:
        assert "RAY_REDIS_ADDRESS" not in ray.stdout and "--redis-password" not in ray.stdout
    served = _run_with_secret(serve, secret, tmp_path)
    assert served.returncode == 0, served.stderr
    assert f"TRAINQ_DB={URL}\n" in served.stdout  # in serve's environment, whole ...
    assert "TRAINQ_API_TOKEN=tok-of-the-api" in served.stdout
    args = served.stdout.split("ARGS ", 1)[1]
    assert "pw-of-the" not in args and "pw-of-redis" not in served.stdout  # ... never on its command line


def test_serve_does_not_start_when_the_secret_names_no_registry(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    serve = config["head_start_ray_commands"][2]
    served = _run_with_secret(serve, "SOMETHING_ELSE=1\n", tmp_path)
    assert served.returncode != 0 and "no TRAINQ_DB" in served.stderr and "ARGS" not in served.stdout


def test_a_spot_gpu_worker_type_is_offered_beside_the_on_demand_one() -> None:
    types = yaml.safe_load((ROOT / "cluster.yaml").read_text())["available_node_types"]
    spot = types["gpu_spot_worker"]
    assert spot["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert spot["node_config"]["InstanceType"] == types["gpu_worker"]["node_config"]["InstanceType"]
    assert spot["min_workers"] == 0  # nothing runs on spot unless the autoscaler asks for it
