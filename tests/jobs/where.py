"""A train function that first writes which Ray node each rank runs on, then counts steps
(``steps.count_steps``, same config); ``config["where"]``: a file prefix, one file per rank."""

from __future__ import annotations

import ray
import ray.train
from steps import count_steps


def where(config: dict) -> None:
    """Record ``<where>.<rank>`` = this worker's node id, then count steps."""
    rank = ray.train.get_context().get_world_rank()
    with open(f"{config['where']}.{rank}", "w") as f:
        f.write(ray.get_runtime_context().get_node_id())
    count_steps(config)
