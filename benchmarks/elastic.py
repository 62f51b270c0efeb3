"""Elastic jobs on a simulated cluster (no Ray): mean job completion time and makespan (issue 31).

A trace of mixed jobs on 8 and 64 GPUs, arriving over time (Poisson, the cluster loaded to about
90%): 60% elastic (``min`` 1-2 workers, ``max`` up to 16× that, at most half the cluster), the rest
fixed (1-8 workers, a few at priority 1); each job's work is GPU-seconds at one worker, run at a
sublinear speed ``k ** alpha`` on ``k`` workers (alpha 0.7-0.95, Pollux's diminishing returns).
Side by side, the same trace twice with the same rules (queue order, preemption by priority,
backfill around a blocked head, every job's run time known as a time limit would make it):

- **fixed**: every elastic job pinned at the size a user would have picked (its min, its max, or
  in between, at random), as today;
- **elastic**: the policy of ``scheduler.policy.elastic``: ``start_size`` at admission (and for a
  job backfilled to end or make way before the head's earliest start),
  ``plan_grow`` after each pass (into room nothing queued can use; while a job waits, the jobs
  ahead of it into its reservation's spare room and, on a loan given back before its earliest
  start, into the rest; not within ``min_interval_s`` of a job's start), ``plan_shrink`` before
  pausing for priority and to take back lent workers.

And once more with no run time known (no time limits): strict queue order, no backfill, nothing
grows while a job waits; and that again with a policy trainq does not have (``lend_unforeseen``):
while the head waits with no start in sight, the jobs ahead of it grow into the room it cannot use,
each given back (a shrink) the moment the head would fit with it. And once more with every start,
resume and resize free and instant and no churn bound, in both runs: what the price of a resize
takes from the gain. And the elastic run once more with each elastic job's ``max`` up to the whole
cluster (the fixed run unchanged): what the trace's cap takes. And last, under the same rules, an
ideal elastic scheduler (``benchmarks/elastic_ideal.py``: resizes free, instant and at any moment,
no head's start protected): what any elastic policy that keeps queue order could reach on the
trace. The simulator is ``benchmarks/elastic_sim.py``.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from .common import Row
from .elastic_ideal import ideal_mean_jct
from .elastic_sim import Job, Outcome, run_trace, trace


def run(client: Any, ws: Any, quick: bool) -> list[Row]:
    """``client`` and ``ws`` are unused: everything here is simulated."""
    rows = []
    for gpus, n in ((8, 40), (64, 160)):
        seeds = range(3 if quick else 10)
        traces = [trace(s, gpus, n) for s in seeds]
        fixed = [run_trace(tr, gpus, elastic=False) for tr in traces]
        grown = [run_trace(tr, gpus, elastic=True) for tr in traces]
        jct, jct0 = _mean(grown, traces, _all), _mean(fixed, traces, _all)
        el, el0 = _mean(grown, traces, lambda j: j.lo < j.hi), _mean(fixed, traces, lambda j: j.lo < j.hi)
        span = statistics.fmean(o.makespan_s for o in grown) / 3600
        span0 = statistics.fmean(o.makespan_s for o in fixed) / 3600
        resizes = statistics.fmean(o.resizes for o in grown) / n
        pauses = (statistics.fmean(o.pauses for o in grown), statistics.fmean(o.pauses for o in fixed))
        idle = [statistics.fmean(o.idle_waiting_gpu_s for o in runs)
                / (gpus * statistics.fmean(o.makespan_s for o in runs)) for runs in (grown, fixed)]
        blind = [run_trace(tr, gpus, elastic=True, time_limits=False) for tr in traces]
        blind0 = [run_trace(tr, gpus, elastic=False, time_limits=False) for tr in traces]
        lent = [run_trace(tr, gpus, elastic=True, time_limits=False, lend_unforeseen=True) for tr in traces]
        # What the resizes' cost and the churn bound take from the gain: every start and resize
        # free and instant, any job resized at any time, in both runs.
        free = [run_trace(tr, gpus, elastic=True, restart_s=0.0, min_interval_s=0.0) for tr in traces]
        free0 = [run_trace(tr, gpus, elastic=False, restart_s=0.0, min_interval_s=0.0) for tr in traces]
        # What the trace's cap on ``max`` (half the cluster) takes: the same jobs, each elastic
        # one free to grow to the whole cluster; the fixed run is the one above.
        wide = [trace(s, gpus, n, whole_cluster_max=True) for s in seeds]
        widened = [run_trace(tr, gpus, elastic=True) for tr in wide] if wide != traces else grown
        # What any elastic policy that keeps queue order could reach here (``elastic_ideal``).
        ideal = statistics.fmean(ideal_mean_jct(tr, gpus) for tr in traces) / 3600
        ideal_wide = statistics.fmean(ideal_mean_jct(tr, gpus) for tr in wide) / 3600
        rows += [
            Row(f"elastic: mean job completion time, {n} mixed jobs on {gpus} GPUs ({len(traces)} traces)", jct, jct0,
                "h", "≤ 0.75 × fixed", jct <= 0.75 * jct0,
                f"baseline: the same jobs at a fixed size; run times known (backfill, loans); {resizes:.2f} resizes"
                f" per job; whole-job pauses {pauses[0]:.1f} vs {pauses[1]:.1f} per trace"),
            Row(f"elastic: the same, elastic jobs only (~60%), {gpus} GPUs", el, el0, "h", "context", None,
                "baseline: those jobs at a fixed size"),
            Row(f"elastic: makespan, {n} mixed jobs on {gpus} GPUs", span, span0, "h", "context", None,
                "baseline: the same jobs at a fixed size"),
            # What is left to gain from idle room: GPU time idle while some job waited, as a share
            # of the cluster's time (the rest of the idle time has nothing queued to run).
            Row(f"elastic: GPUs idle while a job waits, {gpus} GPUs", 100 * idle[0], 100 * idle[1], "%", "context",
                None, "baseline: the same jobs at a fixed size; share of GPU time over the makespan"),
            Row(f"elastic: mean job completion time, no run time known, {gpus} GPUs", _mean(blind, traces, _all),
                _mean(blind0, traces, _all), "h", "context", None,
                "baseline: the same jobs at a fixed size; strict queue order, no backfill, no grow while a job waits"),
            Row(f"elastic: the same, lending while the head's start is unforeseen (not trainq's policy), {gpus} GPUs",
                _mean(lent, traces, _all), _mean(blind0, traces, _all), "h", "context", None,
                "jobs ahead of a waiting head grow into room it cannot use, shrunk back the moment it would fit"),
            Row(f"elastic: mean job completion time, resizes free and instant, {gpus} GPUs", _mean(free, traces, _all),
                _mean(free0, traces, _all), "h", "context", None,
                "baseline: the same jobs at a fixed size, starts free too; no restart cost, no churn bound"),
            Row(f"elastic: mean job completion time, elastic jobs' max up to the whole cluster, {gpus} GPUs",
                _mean(widened, wide, _all), jct0, "h", "context", None,
                "baseline: the fixed run above (the same sizes); the trace caps max at half the cluster"
                + ("" if wide != traces else ", which never binds here")),
            Row(f"elastic: mean job completion time, an ideal elastic scheduler, {gpus} GPUs", ideal, jct0, "h",
                "context", None, "baseline: the fixed run above; resizes free, instant and at any moment, no head's"
                " start protected, spare GPUs by marginal speed (benchmarks/elastic_ideal.py)"),
            Row(f"elastic: the same, elastic jobs' max up to the whole cluster, {gpus} GPUs", ideal_wide, jct0, "h",
                "context", None, "baseline: the fixed run above"),
        ]
    return rows


def _all(j: Job) -> bool:
    return True


def _mean(outcomes: list[Outcome], traces: list[list[Job]], which: Callable[[Job], bool]) -> float:
    """Mean completion time in hours of the jobs ``which`` picks, over every trace."""
    return statistics.fmean(o.jct_s[j.job_id] for o, tr in zip(outcomes, traces, strict=True)
                            for j in tr if which(j)) / 3600
