"""Overhead: the same small Ray Train job run directly and through trainq, interleaved."""

from __future__ import annotations

import time

from .common import JOBS_DIR, Row, Workspace, median, steps_spec, wait_status


def _direct(config: dict, storage: str, name: str, poll_s: float | None = None, lean: bool = False) -> float:
    """TorchTrainer.fit() in a Ray task, the way a user would run it without trainq.

    ``poll_s`` sets Ray Train's report poll (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S) as trainq's
    runners do; None keeps Ray's default (2 s). ``lean``: the trainer trainq's runs use instead
    (``raycompat.trainer_class``: no dataset manager when there are no datasets), like for like.
    """
    import ray

    from scheduler import raycompat

    # The same uploaded package trainq's runners get (a task cannot take a local folder).
    env = raycompat.upload_local_dirs({"working_dir": JOBS_DIR})
    if poll_s is not None:
        env["env_vars"] = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": str(poll_s)}

    @ray.remote(num_cpus=0, runtime_env=env)
    def run(config: dict, storage: str, name: str) -> None:
        import steps
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        args = {"train_loop_config": config, "scaling_config": ScalingConfig(num_workers=1),
                "run_config": RunConfig(name=name, storage_path=storage)}
        if lean:
            raycompat.trainer_class()(steps.count_steps, backend_config=TorchConfig(), **args).fit()
        else:
            TorchTrainer(steps.count_steps, **args).fit()

    t0 = time.perf_counter()
    ray.get(run.remote(config, storage, name))
    return time.perf_counter() - t0


def _trainq(client, config: dict, name: str, log: str) -> float:
    t0 = time.perf_counter()
    job = client.submit(steps_spec(name, log, **config))
    done = wait_status(client, job["job_id"], {"completed", "failed"})
    assert done["status"] == "completed", done["error"]
    return time.perf_counter() - t0


def run(client, ws: Workspace, quick: bool) -> list[Row]:
    from scheduler.config import Settings

    reps = 2 if quick else 5
    poll_s = Settings().report_poll_s
    config = {"total": 10, "every": 5, "step_s": 0.1}
    same_poll, ray_default, lean, through = [], [], [], []
    _direct(dict(config), ws.storage + "/direct", "warmup")  # first run pays imports; not counted
    for i in range(reps):  # interleaved, so drift on a shared machine hits all alike
        same_poll.append(_direct(dict(config), ws.storage + "/direct", f"same{i}", poll_s))
        ray_default.append(_direct(dict(config), ws.storage + "/direct", f"default{i}"))
        lean.append(_direct(dict(config), ws.storage + "/direct", f"lean{i}", poll_s, lean=True))
        through.append(_trainq(client, dict(config), f"overhead{i}", str(ws.dir / f"o{i}.log")))
    d, t, r, le = median(same_poll), median(through), median(ray_default), median(lean)
    return [
        Row("overhead: submit→completed vs fit() in a task, same report poll (median wall time)", t, d, "s",
            "ratio ≤ 1.05", t / d <= 1.05, f"{reps} runs each, extra {t - d:+.2f} s"),
        Row("overhead: the same, baseline with Ray's default 2 s report poll", t, r, "s", "context", None,
            "trainq's 0.5 s poll ends runs sooner"),
        Row("overhead: the same, baseline fit() of trainq's trainer (no dataset manager): like for like",
            t, le, "s", "context", None, "trainq's own cost alone (its runs skip the dataset manager)"),
    ]
