"""Shared pieces: the result row, the table, statistics, and the bench's own local Ray."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

JOBS_DIR = str(Path(__file__).resolve().parent.parent / "tests" / "jobs")


@dataclass
class Row:
    """One measure: trainq against its baseline (ratio = trainq / baseline)."""

    measure: str
    trainq: float
    baseline: float | None
    unit: str
    target: str
    met: bool | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0) or self.trainq is None:
            return None
        return self.trainq / self.baseline

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def table(rows: list[Row]) -> str:
    """A Markdown table: measure, trainq, baseline, ratio, target."""
    lines = ["| measure | trainq | baseline | ratio | target |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        verdict = "" if r.met is None else (" ✓" if r.met else " ✗ missed")
        ratio = fmt(r.ratio) if r.ratio is not None else "-"
        note = f" ({r.note})" if r.note else ""
        lines.append(f"| {r.measure}{note} | {fmt(r.trainq, r.unit)} | {fmt(r.baseline, r.unit)} | {ratio} | "
                     f"{r.target}{verdict} |")
    return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values)


class Workspace:
    """A temp folder for the bench's storage and registry."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="trainq-bench-"))
        self.storage = str(self.dir / "storage")
        self.db = str(self.dir / "trainq.db")


def start_ray(num_cpus: int = 2) -> None:
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        ray.init(num_cpus=num_cpus, namespace="trainq", log_to_driver=False, configure_logging=False)


def wait_status(client: Any, job_id: str, statuses: set[str], timeout_s: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(job_id)
        if job["status"] in statuses:
            return job
        time.sleep(0.05)
    raise TimeoutError(f"{job_id} did not reach {statuses}")


def steps_spec(name: str, log: str, num_workers: int = 1, **config: Any) -> dict[str, Any]:
    return {"name": name, "entrypoint": "steps:count_steps", "num_workers": num_workers,
            "runtime_env": {"working_dir": JOBS_DIR}, "config": {"log": log, **config}}


def run_apart(module: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """``python -m <module> <args>`` in a subprocess that starts a Ray of its own (never the bench's:
    ``RAY_ADDRESS`` is dropped), and the JSON of the ``RESULT`` line it prints last."""
    root = str(Path(__file__).resolve().parent.parent)
    full = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")} | (env or {})
    full["PYTHONPATH"] = os.pathsep.join([root, full.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=1200,
                          env=full, cwd=root, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{module} {' '.join(args)} failed: {proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])
