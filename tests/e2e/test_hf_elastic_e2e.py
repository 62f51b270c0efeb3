"""The built-in HF workload resized 2 -> 1 -> 2 workers under plain Ray Train (issue 31, item 5).

An elastic job's resize is a stop at a checkpoint and a relaunch from it at another size; here each
attempt is a ``TorchTrainer`` of its own, resumed from the previous one's last HF checkpoint, as
trainq's runner resumes one. Each attempt trains to a further ``max_steps``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from scheduler.demo import demo_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]


class StepLog:
    """A Ray Train callback (in the run's controller) writing each step's log report to a file."""

    def __init__(self, path: str, attempt: int) -> None:
        self.path, self.attempt = path, attempt

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        m = metrics[0] if metrics else {}
        if checkpoint is None and "loss" in m:  # checkpoint reports repeat the last logged step
            with open(self.path, "a") as f:
                f.write(json.dumps({"attempt": self.attempt, "step": m["global_step"], "world": m["world_size"],
                                    "global_batch": m["global_batch_size"]}) + "\n")


def _loop(resume_from: str | None) -> Any:
    def loop(config: dict[str, Any]) -> None:
        from scheduler import raycompat
        from scheduler.workloads.hf import train_causal_lm

        raycompat.seed_checkpoint(resume_from)  # what trainq's wrapper does for each attempt
        train_causal_lm(config)

    return loop


def _attempt(config: dict[str, Any], workers: int, max_steps: int, attempt: int, tmp: Path,
             resume_from: str | None) -> str:
    import ray.cloudpickle
    import ray.train
    from ray.train.torch import TorchTrainer

    callback = type("StepLogCallback", (StepLog, ray.train.UserCallback), {})(str(tmp / "steps.jsonl"), attempt)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the controller cannot import tests/
    trainer = TorchTrainer(
        _loop(resume_from), train_loop_config={**config, "max_steps": max_steps},
        scaling_config=ray.train.ScalingConfig(num_workers=workers),
        run_config=ray.train.RunConfig(name=f"elastic-{attempt}", storage_path=str(tmp / "runs"),
                                       callbacks=[callback]))
    result = trainer.fit()
    # The last HF checkpoint (with optimizer, scheduler and data position), not the final model folder.
    hf = [(m["global_step"], c) for c, m in result.best_checkpoints if "final" not in m]
    return str(max(hf, key=lambda sc: sc[0])[1].path)


def test_resized_two_one_two_workers_continues_global_step_with_the_same_global_batch(ray_cluster, tmp_path) -> None:
    config = demo_spec(data=str(tmp_path / "data.txt"))["config"]
    config.update(save_steps=3, global_batch_size=16, per_device_train_batch_size=8)
    ckpt: str | None = None
    for attempt, (workers, upto) in enumerate([(2, 3), (1, 6), (2, 9)], start=1):
        ckpt = _attempt(config, workers, upto, attempt, tmp_path, ckpt)
    rows = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    by_attempt = {a: [r["step"] for r in rows if r["attempt"] == a] for a in (1, 2, 3)}
    assert by_attempt == {1: [1, 2, 3], 2: [4, 5, 6], 3: [7, 8, 9]}  # continues exactly, each step once
    assert {(r["attempt"], r["world"]) for r in rows} == {(1, 2), (2, 1), (3, 2)}
    assert {r["global_batch"] for r in rows} == {16}  # 8 × 2 workers, then 8 × 1 worker × 2 accumulation
