"""The control plane at thousands of jobs, in simulation: the real core and SQLite store with a
fake launcher and cluster (no Ray), 10,000 queued and 1,000 running jobs, every running job
reporting once a second (1,000 reports/s).

Measures how many reports a second the core records (it keeps up when that is >= the arrival
rate), the latency of ``get``/``list``/``queue`` while reports arrive, and the scheduler's
memory per job. Run alone with ``python -m benchmarks.scale [--queued N --running N]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from .common import Row, percentile, table

SPEC = {"entrypoint": "bench:never_runs", "num_workers": 1}


class _Launcher:
    def launch(self, job: Any, attempt: Any, run_root: str) -> None:
        pass

    def request_pause(self, job_id: str, attempt: int) -> None:
        pass

    def stop(self, job_id: str, attempt: int) -> None:
        pass

    def request_checkpoint(self, job_id: str, attempt: int) -> None:
        pass


class _Cluster:
    def __init__(self, cpus: float) -> None:
        self.total = {"CPU": cpus}

    def capacity(self) -> dict[str, float]:
        return dict(self.total)

    def max_capacity(self) -> dict[str, float]:
        return dict(self.total)

    def nodes(self) -> list[dict[str, float]]:
        return []

    def nodes_free(self) -> None:
        return None

    def nodes_free_by_id(self) -> None:
        return None

    def request(self, bundles: list[dict[str, float]]) -> None:
        pass


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def simulate(queued: int, running: int, seconds: int) -> dict[str, Any]:
    """Fill a registry with ``running`` + ``queued`` jobs, then drive ``seconds`` of reports."""
    from scheduler.core import Scheduler
    from scheduler.store import SQLiteStore

    tmp = Path(tempfile.mkdtemp(prefix="trainq-scale-"))
    store = SQLiteStore(str(tmp / "trainq.db"))
    clock_now = [1_800_000_000.0]
    core = Scheduler(store, _Launcher(), _Cluster(running), storage_root=str(tmp / "storage"),
                     clock=lambda: clock_now[0])
    gc.collect()
    tracemalloc.start()
    base_mem = tracemalloc.get_traced_memory()[0]
    mem_at: dict[int, float] = {}
    t0 = time.perf_counter()
    total = running + queued
    for i in range(total):
        core.submit(SPEC)
        if (i + 1) in (total // 4, total // 2, total):
            mem_at[i + 1] = (tracemalloc.get_traced_memory()[0] - base_mem) / 1e6
    submit_s = time.perf_counter() - t0
    tracemalloc.stop()
    active = \
        [(j["job_id"], j["attempt"]) for j in core.list(["pending"], None, 0)]
    for job_id, attempt in active:
        core.on_runner_event({"kind": "started", "job_id": job_id, "attempt": attempt})
    some = active[len(active) // 2][0]
    # Reports: each running job once per simulated second; reads interleaved as clients make them.
    latencies: dict[str, list[float]] = {"get": [], "list": [], "queue": []}
    reads = {"get": lambda: core.get(some), "list": lambda: (core.list(None, 100, 0), core.count(None)),
             "queue": lambda: core.queue(100, 0)}
    handled = 0
    busy = 0.0
    for second in range(seconds):
        clock_now[0] += 1.0
        t = time.perf_counter()
        for n, (job_id, attempt) in enumerate(active):
            core.on_runner_event({"kind": "report", "job_id": job_id, "attempt": attempt, "seq": second + 1,
                                  "at": clock_now[0], "metrics": {"step": second, "loss": 1.0 / (second + 1)},
                                  "checkpoint_path": None})
            handled += 1
            if n % 50 == 0:  # ~20 reads of each kind per simulated second
                for name, read in reads.items():
                    r0 = time.perf_counter()
                    read()
                    latencies[name].append(time.perf_counter() - r0)
        busy += time.perf_counter() - t
        core.tick()
    reads_s = sum(sum(v) for v in latencies.values())
    store.close()
    return {"queued": queued, "running": running, "submit_per_s": total / submit_s,
            "reports_per_s": handled / max(busy - reads_s, 1e-9), "arrival_per_s": running,
            "p99_ms": {k: percentile(v, 0.99) * 1000 for k, v in latencies.items()},
            "p50_ms": {k: percentile(v, 0.5) * 1000 for k, v in latencies.items()},
            "mem_mb_at": mem_at, "rss_mb": _rss_mb()}


def rows(result: dict[str, Any]) -> list[Row]:
    """The simulation's figures as benchmark rows, each against its target."""
    q, r = result["queued"], result["running"]
    where = f"{q:,} queued + {r:,} running, simulated"
    mem = result["mem_mb_at"]
    counts = sorted(mem)
    per_job_small = mem[counts[0]] / counts[0] * 1e3
    per_job_large = mem[counts[-1]] / counts[-1] * 1e3
    out = [Row(f"scale: reports recorded per second ({where}; baseline: arrival rate)",
               result["reports_per_s"], result["arrival_per_s"], "/s", "ratio ≥ 1 (keeps up)",
               result["reports_per_s"] >= result["arrival_per_s"])]
    for name in ("get", "list", "queue"):
        p99 = result["p99_ms"][name]
        out.append(Row(f"scale: {name} p99 while 1,000 reports/s arrive ({where})", p99, None, "ms",
                       "< 50 ms", p99 < 50, note=f"p50 {result['p50_ms'][name]:.2f} ms"))
    out.append(Row(f"scale: scheduler memory per job at {counts[-1]:,} jobs (baseline: at {counts[0]:,})",
                   per_job_large, per_job_small, "kB", "ratio ≤ 1.2 (linear)", per_job_large <= 1.2 * per_job_small))
    return out


def run(client: Any, ws: Any, quick: bool) -> list[Row]:
    """Part of ``python -m benchmarks`` (needs no Ray; the client is unused)."""
    return rows(simulate(queued=10_000, running=1_000, seconds=5 if quick else 20))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--running", type=int, default=1_000)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    result = simulate(args.queued, args.running, args.seconds)
    print(table(rows(result)))
    print(f"\nsubmit {result['submit_per_s']:.0f}/s; RSS {result['rss_mb']:.0f} MB; cores {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
