"""Preemption: how soon a high-priority job starts on a full cluster, and what its victim loses.

Side by side in one run: the same high-priority job (2 workers) submitted on an empty cluster
(the baseline), then on a cluster full with a low-priority job that is (a) cooperative (its loop
calls ``should_checkpoint()``) or (b) plain, checkpointing every 5 steps. Measured: submit → the
high job's first report, and the victim's steps redone after it came back by itself.
"""

from __future__ import annotations

import time
from pathlib import Path

from .common import Row, Workspace, median, steps_spec, wait_status

STEP_S = 0.2
EVERY = 5  # the plain victim's checkpoint interval, in steps


def _steps(log: Path) -> list[int]:
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def _first_report(client, job_id: str, t0: float, timeout_s: float = 300) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.reports(job_id):
            return time.perf_counter() - t0
        time.sleep(0.02)
    raise TimeoutError(f"no report from {job_id}")


def _high(client, ws: Workspace, tag: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    job_id = client.submit({**steps_spec(f"high-{tag}", str(ws.dir / f"high-{tag}.log"), num_workers=2,
                                         total=5, step_s=0.05), "priority": 10})["job_id"]
    latency = _first_report(client, job_id, t0)
    wait_status(client, job_id, {"completed"})
    return job_id, latency


def _preempted(client, ws: Workspace, kind: str, rep: int, total: int = 40) -> dict[str, float]:
    log = ws.dir / f"victim-{kind}-{rep}.log"
    config = {"total": total, "step_s": STEP_S, "every": EVERY if kind == "plain" else 10_000,
              "cooperative": kind == "cooperative"}
    victim = client.submit({**steps_spec(f"victim-{kind}", str(log), num_workers=2, **config),
                            "min_runtime_s": 0})["job_id"]
    wait_status(client, victim, {"running"})
    while len(_steps(log)) < 8:
        time.sleep(0.02)
    _, latency = _high(client, ws, f"{kind}-{rep}")
    wait_status(client, victim, {"completed"})
    steps = _steps(log)
    return {"latency": latency, "redone": len(steps) - len(set(steps)),
            "preemptions": client.get(victim)["preemptions"]}


def run(client, ws: Workspace, quick: bool) -> list[Row]:
    reps = 2 if quick else 3
    _high(client, ws, "warm-up")  # the first run on a fresh Ray pays for cold worker processes
    empties: list[float] = []
    results: dict[str, list[dict[str, float]]] = {"cooperative": [], "plain": []}
    for i in range(reps):  # interleaved, so drift on a shared machine hits all three alike
        empties.append(_high(client, ws, f"empty-{i}")[1])
        for kind, runs in results.items():
            runs.append(_preempted(client, ws, kind, i))
    empty = median(empties)
    assert all(r["preemptions"] == 1 for rs in results.values() for r in rs), results
    coop, plain = results["cooperative"], results["plain"]
    c_lat, p_lat = median([r["latency"] for r in coop]), median([r["latency"] for r in plain])
    interval = EVERY * STEP_S
    rows = [
        Row("preemption, cooperative victim: high-priority submit → its first report (baseline: empty cluster)",
            c_lat, empty, "s", "ratio ≤ 1.2", c_lat / empty <= 1.2),
        Row("preemption, cooperative victim: steps redone by the victim (lost work)", max(r["redone"] for r in coop),
            None, "steps", "≤ 1 step", max(r["redone"] for r in coop) <= 1, "worst of the runs"),
        Row(f"preemption, plain victim (checkpoint every {EVERY} steps of {STEP_S} s): submit → first report,"
            " minus the empty-cluster start", p_lat - empty, interval + 2.0, "s",
            f"≤ checkpoint interval + 2 s = {interval + 2:g} s", p_lat - empty <= interval + 2.0),
        Row("preemption, plain victim: steps redone by the victim (lost work)", median([r["redone"] for r in plain]),
            EVERY, "steps", "context", None, "baseline = one checkpoint interval"),
    ]
    return rows
