"""Tiny train functions for the tests: they log every step they execute to a file.

``config``: total (steps), every (checkpoint every k steps), step_s (sleep per step),
log (a file each rank 0 step is appended to), cooperative (use the hook: should_checkpoint()
then pause_requested()), legacy_hook (pause_requested() every step, the older pattern),
fail_at (raise at that step; only once if fail_once names a marker file), ignore_checkpoint
(start from 0 regardless), never_read (never call ray.train.get_checkpoint(): not resumable),
ckpt_log (a file each rank 0 checkpoint step is appended to), ckpt_at (checkpoint exactly at
these steps instead of every k), say (print "<say> <step> on rank <rank>" every step),
report_torch (every report says whether torch is imported in this worker: ``torch_imported``),
until (a file: once it exists, the step is the last one), sizes (a file rank 0 appends
"<first step> <world size>" to when it starts: an elastic job's size per attempt), alpha (the
step's work is shared by the workers: a step takes ``step_s / world_size ** alpha``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import ray.train

import scheduler.train


def _save(step: int) -> ray.train.Checkpoint:
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "state.json"), "w") as f:
        json.dump({"step": step}, f)
    return ray.train.Checkpoint.from_directory(d)


def count_steps(config: dict) -> None:
    """Counts steps; checkpoints every ``every`` steps (and on pause, when cooperative)."""
    start = 0
    checkpoint = None if config.get("never_read") else ray.train.get_checkpoint()
    if checkpoint is not None and not config.get("ignore_checkpoint"):
        with checkpoint.as_directory() as d, open(os.path.join(d, "state.json")) as f:
            start = json.load(f)["step"] + 1
    rank = ray.train.get_context().get_world_rank()
    total, every = int(config.get("total", 10)), int(config.get("every", 2))
    if rank == 0 and config.get("sizes"):
        with open(config["sizes"], "a") as f:
            f.write(f"{start} {ray.train.get_context().get_world_size()}\n")
    step_s = float(config.get("step_s", 0.05))
    if config.get("alpha") is not None:  # data parallel with diminishing returns
        step_s /= ray.train.get_context().get_world_size() ** float(config["alpha"])
    for step in range(start, total):
        time.sleep(step_s)
        if config.get("fail_at") == step:
            marker = config.get("fail_once")
            if not marker or not os.path.exists(marker):
                if marker:
                    open(marker, "w").close()
                raise RuntimeError(f"boom at step {step}")
        if rank == 0 and config.get("log"):
            with open(config["log"], "a") as f:
                f.write(f"{step}\n")
        if config.get("say"):
            print(f"{config['say']} {step} on rank {rank}", flush=True)  # for the logs route
        last = step == total - 1 or bool(config.get("until") and os.path.exists(config["until"]))
        if config.get("legacy_hook"):
            pause = scheduler.train.pause_requested()
            asked = pause
        else:
            asked = scheduler.train.should_checkpoint() if config.get("cooperative") else False
            pause = False
        scheduled = step in config["ckpt_at"] if "ckpt_at" in config else (step + 1) % every == 0
        metrics = {"step": step, **({"torch_imported": "torch" in sys.modules} if config.get("report_torch") else {})}
        if asked or last or scheduled:
            ray.train.report(metrics, checkpoint=_save(step) if rank == 0 else None)
            if rank == 0 and config.get("ckpt_log"):
                with open(config["ckpt_log"], "a") as f:
                    f.write(f"{step}\n")
            if asked and not config.get("legacy_hook"):
                pause = scheduler.train.pause_requested()
        else:
            ray.train.report(metrics)
        if pause or last:
            return


def hook_cost(config: dict) -> None:
    """Steps of ``step_s`` (a sleep, then an all-reduce of one number across the ranks, as a
    data-parallel step ends with the gradients' all-reduce), calling the hook every step when
    ``hook`` is set; rank 0 reports the loop's own elapsed time (the benchmark compares with and
    without). Without a torch process group (``backend: none``) the steps are sleeps alone."""
    steps, step_s = int(config.get("steps", 100)), float(config.get("step_s", 0.05))
    use_hook = bool(config.get("hook"))
    dist = sys.modules.get("torch.distributed")
    grad = None
    if dist is not None and dist.is_initialized():
        import torch

        grad = torch.zeros(1)
        dist.barrier()  # every rank starts its clock together
    if use_hook:
        scheduler.train.should_checkpoint()  # the first call sets up (the state poller), not timed
    start = time.perf_counter()
    for _ in range(steps):
        time.sleep(step_s)
        if grad is not None:
            dist.all_reduce(grad)
        if use_hook and scheduler.train.should_checkpoint():
            break
    elapsed = time.perf_counter() - start
    ray.train.report({"elapsed_s": elapsed, "steps": steps})
