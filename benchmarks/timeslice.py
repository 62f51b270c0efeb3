"""Time slicing: what one turn costs.

Side by side in one run: a short whole-cluster job (2 workers) submitted on an empty cluster (the
baseline: submit → its first report, the unavoidable start), then the same job submitted while an
equal-priority job that has had its slice holds the cluster. Measured: the end of that slice (the
running job is told to make way, ``pausing``) → the waiting job's first report, which adds the wait
for the running job's next checkpoint and its release; and the work the rotated job lost (steps
redone after it came back, and the lost work trainq recorded for its attempt).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from .common import Row, Workspace, median, steps_spec, wait_status

SLICE_S = 2.0
STEP_S = 0.2
EVERY = 5  # the running job's checkpoint interval, in steps


def _t(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _first_report_at(client: Any, job_id: str, timeout_s: float = 300) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reports = client.reports(job_id)
        if reports:
            return _t(reports[0]["at"])
        time.sleep(0.02)
    raise TimeoutError(f"no report from {job_id}")


def _steps(log: Path) -> list[int]:
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def _alone(client: Any, ws: Workspace, tag: str) -> float:
    submitted = time.time()
    job_id = client.submit(steps_spec(f"short-{tag}", str(ws.dir / f"short-{tag}.log"), num_workers=2,
                                      total=5, step_s=0.05))["job_id"]
    first = _first_report_at(client, job_id)
    wait_status(client, job_id, {"completed"})
    return first - submitted


def _turn(client: Any, ws: Workspace, rep: int) -> dict[str, float]:
    log = ws.dir / f"long-{rep}.log"
    long_id = client.submit({**steps_spec(f"long-{rep}", str(log), num_workers=2, total=10_000, every=EVERY,
                                          step_s=STEP_S), "min_runtime_s": 0})["job_id"]
    wait_status(client, long_id, {"running"})
    time.sleep(SLICE_S + 0.5)  # its slice is over: the next equal job to arrive gets a turn
    short_id = client.submit(steps_spec(f"short-sliced-{rep}", str(ws.dir / f"short-sliced-{rep}.log"),
                                        num_workers=2, total=5, step_s=0.05))["job_id"]
    first = _first_report_at(client, short_id)
    wait_status(client, short_id, {"completed"})
    back = len(_steps(log))
    wait_status(client, long_id, {"running"})  # its turn again, from its checkpoint
    while len(_steps(log)) < back + 3:
        time.sleep(0.05)
    client.cancel(long_id)
    history = client.history(long_id)
    pausing = next(t for t in history["transitions"] if t["to_status"] == "pausing")
    assert pausing["reason"].startswith("time slice"), pausing
    steps = _steps(log)
    lost = history["attempts"][0]["lost_work"] or {}
    return {"switch": first - _t(pausing["at"]), "redone": len(steps) - len(set(steps)),
            "lost_s": float(lost.get("seconds") or 0.0)}


def run(client: Any, ws: Workspace, quick: bool) -> list[Row]:
    import ray

    reps = 2 if quick else 3
    _alone(client, ws, "warm-up")  # the first run on a fresh Ray pays for cold worker processes
    alone: list[float] = []
    turns: list[dict[str, float]] = []
    ray.get(client.handle.set_time_slice.remote(SLICE_S))
    try:
        for i in range(reps):  # interleaved, so drift on a shared machine hits both alike
            ray.get(client.handle.set_time_slice.remote(0))
            alone.append(_alone(client, ws, f"empty-{i}"))
            ray.get(client.handle.set_time_slice.remote(SLICE_S))
            turns.append(_turn(client, ws, i))
    finally:
        ray.get(client.handle.set_time_slice.remote(0))
    base, switch = median(alone), median([t["switch"] for t in turns])
    interval = EVERY * STEP_S
    return [
        Row(f"time slice ({SLICE_S:g} s): slice over → the waiting job's first report (baseline: its start on an"
            " empty cluster)", switch, base, "s", f"≤ baseline + checkpoint interval ({interval:g} s) + 2 s",
            switch <= base + interval + 2.0),
        # A plain loop (no hook) runs on while its runner stops it after the checkpoint report:
        # those steps are redone (the preemption suite shows the hook brings this to 0).
        Row("time slice: steps the rotated job (plain loop, no hook) redid after its turn came back",
            max(t["redone"] for t in turns), EVERY, "steps", "≤ one checkpoint interval",
            max(t["redone"] for t in turns) <= EVERY, "worst of the runs; baseline = one checkpoint interval"),
        Row("time slice: lost work trainq recorded for the rotated attempt", median([t["lost_s"] for t in turns]),
            interval, "s", "context", None, "baseline = one checkpoint interval"),
    ]
