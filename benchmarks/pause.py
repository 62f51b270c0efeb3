"""Pause and resume: latency and steps redone for the three kinds of pause; resume vs a fresh start."""

from __future__ import annotations

import time
from pathlib import Path

from .common import Row, Workspace, median, steps_spec, wait_status

STEP_S = 0.2


def _steps(log: Path) -> list[int]:
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def _first_report_after(client, job_id: str, attempt: int, t0: float, timeout_s: float = 300) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(r["attempt"] == attempt for r in client.reports(job_id)):
            return time.perf_counter() - t0
        time.sleep(0.02)
    raise TimeoutError("no report")


def _one(client, ws: Workspace, kind: str, rep: int, total: int = 60) -> dict[str, float]:
    log = ws.dir / f"pause-{kind}-{rep}.log"
    config = {"total": total, "step_s": STEP_S, "every": 5 if kind == "every-k" else 10_000,
              "cooperative": kind == "cooperative"}
    t_submit = time.perf_counter()
    job_id = client.submit(steps_spec(f"pause-{kind}", str(log), **config))["job_id"]
    fresh = _first_report_after(client, job_id, 1, t_submit)
    while len(_steps(log)) < 8:
        time.sleep(0.02)
    at_request = max(_steps(log))
    t0 = time.perf_counter()
    if kind == "deadline":
        client.pause(job_id, deadline_s=1.0)  # never checkpoints: the deadline stops it
    else:
        client.pause(job_id)
    checkpointed = None
    while (job := client.get(job_id))["status"] != "paused":
        if checkpointed is None and any(c["at"] >= job["pause_requested_at"] for c in client.checkpoints(job_id)):
            checkpointed = time.perf_counter() - t0
        time.sleep(0.02)
    stopped = time.perf_counter() - t0
    ck_step = -1
    if job["checkpoint_path"]:
        ck_step = next(c["metrics"]["step"] for c in client.checkpoints(job_id) if c["path"] == job["checkpoint_path"])
    t1 = time.perf_counter()
    client.resume(job_id)
    resumed = _first_report_after(client, job_id, 2, t1)
    wait_status(client, job_id, {"completed"})
    steps = _steps(log)
    return {"to_checkpoint": checkpointed if checkpointed is not None else stopped, "to_paused": stopped,
            "steps_after_request": ck_step - at_request,
            "redone": len(steps) - len(set(steps)), "fresh": fresh, "resume": resumed, "ck_step": ck_step}


def run(client, ws: Workspace, quick: bool) -> list[Row]:
    kinds = ["cooperative", "every-k", "deadline"]
    reps = 1 if quick else 3
    results = {k: [_one(client, ws, k, rep) for rep in range(reps)] for k in kinds}
    rows = []
    step_and_write = STEP_S + 0.05  # one step plus one (tiny) checkpoint write
    coop = results["cooperative"]
    after = max(r["steps_after_request"] for r in coop)
    rows.append(Row("pause (a) cooperative: steps run between the request and the pause checkpoint", after, 1,
                    "steps", "≤ 1 step + 1 checkpoint write", after <= 1, "worst of the runs"))
    c_ck = median([r["to_checkpoint"] for r in coop])
    rows.append(Row("pause (a) cooperative: request → checkpoint recorded by trainq", c_ck, step_and_write, "s",
                    "context", None, "baseline = one step + one write; the rest is Ray Train's 0.5 s report poll"))
    rows.append(Row("pause (a) cooperative: request → paused (run stopped, resources free)",
                    median([r["to_paused"] for r in coop]), None, "s", "context", None))
    redone = max(r["redone"] for r in coop)
    rows.append(Row("pause (a) cooperative: steps redone after resume", redone, None, "steps", "0", redone == 0))
    every = results["every-k"]
    rows.append(Row("pause (b) unmodified, checkpoint every 5 steps: request → paused",
                    median([r["to_paused"] for r in every]), None, "s", "context", None,
                    f"step {STEP_S} s"))
    rows.append(Row("pause (b) unmodified: steps redone after resume", median([r["redone"] for r in every]),
                    None, "steps", "context", None, "the steps run while the run shut down"))
    dl = results["deadline"]
    rows.append(Row("pause (c) deadline 1 s, no checkpoint: request → paused",
                    median([r["to_paused"] for r in dl]), 1.0, "s", "context", None, "baseline = the deadline"))
    resume = median([r["resume"] for k in kinds for r in results[k]])
    fresh = median([r["fresh"] for k in kinds for r in results[k]])
    rows.append(Row("resume → first report, vs submit → first report of a fresh start", resume, fresh, "s",
                    "ratio ≤ 1.1", resume / fresh <= 1.1))
    return rows
