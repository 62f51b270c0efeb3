"""The demo job of ``trainq serve --demo``: a tiny GPT-2 trained from a config on generated text."""

from __future__ import annotations

import random
from typing import Any

from .config import trainq_home

WORDS = ["the", "queue", "starts", "a", "job", "when", "all", "of", "its", "workers", "fit", "and", "pauses",
         "it", "right", "after", "a", "checkpoint", "so", "that", "a", "resume", "continues", "from",
         "exactly", "where", "it", "stopped", "without", "losing", "a", "step"]


def demo_text(path: str, lines: int = 400, seed: int = 0) -> str:
    """Write deterministic toy text to ``path`` (if missing) and return the path."""
    import os

    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        rng = random.Random(seed)
        with open(path, "w") as f:
            f.writelines(" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))) + ".\n" for _ in range(lines))
    return path


def demo_spec(steps: int = 60, data: str | None = None) -> dict[str, Any]:
    """A job spec for the built-in hf-causal-lm workload on 2 CPU workers."""
    data = demo_text(data or str(trainq_home() / "demo" / "demo.txt"))
    return {
        "name": "demo-tiny-gpt2",
        "workload": "hf-causal-lm",
        "num_workers": 2,
        "config": {
            "model_config": {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 128},
            "train_files": [data],
            "block_size": 64,
            "max_steps": steps,
            "per_device_train_batch_size": 8,
            "learning_rate": 2e-3,
            "save_steps": 20,
            "logging_steps": 1,
        },
    }
