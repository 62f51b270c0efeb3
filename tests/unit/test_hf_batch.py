"""The hf-causal-lm workload's elastic batch: the same global batch at every worker count (issue 31)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.errors import InvalidSpec
from scheduler.workloads.hf_config import batch_plan, validate


def test_the_global_batch_is_kept_by_accumulation_when_workers_go() -> None:
    assert batch_plan(16, 8, 2) == (8, 1)
    assert batch_plan(16, 8, 1) == (8, 2)  # the same 8-sample batches, accumulated on one worker
    assert batch_plan(24, 8, 3) == (8, 1)
    assert batch_plan(12, 8, 1) == (6, 2)  # 12 has no 8-sample split: the largest divisor below it
    with pytest.raises(ValueError, match="does not divide among 3 workers"):
        batch_plan(16, 8, 3)


@given(world=st.integers(1, 16), share=st.integers(1, 64), per_device=st.integers(1, 32))
def test_the_plan_adds_up_and_never_exceeds_the_per_device_batch(world, share, per_device) -> None:
    device, accumulation = batch_plan(world * share, per_device, world)
    assert device * accumulation * world == world * share and 1 <= device <= per_device


def test_global_batch_and_explicit_accumulation_are_exclusive(tmp_path) -> None:
    data = tmp_path / "d.txt"
    data.write_text("text")
    base = {"model_config": {"model_type": "gpt2"}, "train_files": [str(data)], "max_steps": 1}
    assert validate({**base, "global_batch_size": 16})["global_batch_size"] == 16
    with pytest.raises(InvalidSpec, match="global_batch_size or gradient_accumulation_steps"):
        validate({**base, "global_batch_size": 16, "gradient_accumulation_steps": 2})
