"""Elastic jobs on a simulated cluster (no Ray): mean job completion time and makespan (issue 31).

A trace of mixed jobs on 8 and 64 GPUs, arriving over time (Poisson, the cluster loaded to about
90%): 60% elastic (``min`` 1-2 workers, ``max`` up to 16× that, at most half the cluster), the rest
fixed (1-8 workers, a few at priority 1); each job's work is GPU-seconds at one worker, run at a
sublinear speed ``k ** alpha`` on ``k`` workers (alpha 0.7-0.95, Pollux's diminishing returns).
Side by side, the same trace twice with the same rules (strict queue order, preemption by priority):

- **fixed**: every elastic job pinned at the size a user would have picked (its min, its max, or
  in between, at random), as today;
- **elastic**: the policy of ``scheduler.policy.elastic``: ``start_size`` at admission,
  ``plan_grow`` after each pass (into room nothing queued can use, backfill's spare while a job
  waits, not within ``min_interval_s`` of a job's start), ``plan_shrink`` before pausing for priority.

A resize or a resume costs ``restart_s`` without progress (a relaunch from a checkpoint taken at
once with the cooperative hook, so no work is lost); totals only, nodes are not modelled.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scheduler.policy.backfill import Holder, reserve
from scheduler.policy.elastic import Elastic, at_size, plan_grow, plan_shrink, start_size
from scheduler.policy.preemption import Candidate, choose_victims
from scheduler.policy.queue import Entry, fits, subtract

from .common import Row

GPU = {"GPU": 1.0}
RESTART_S = 60.0
MIN_INTERVAL_S = 300.0


@dataclass(frozen=True)
class Job:
    job_id: str
    submit_at: float
    work: float  # GPU-seconds at one worker
    alpha: float  # speed on k workers: k ** alpha
    priority: int
    lo: int  # min workers (fixed: lo == hi)
    hi: int
    fixed: int  # the size pinned in the fixed run

    def time_at(self, k: int, work: float) -> float:
        return work / k ** self.alpha


@dataclass
class _Run:
    job: Job
    size: int
    started: float  # last (re)start
    ready: float  # progress from here (after the restart)
    left: float  # work to go


def trace(seed: int, gpus: int, n: int, load: float = 0.9) -> list[Job]:
    """``n`` jobs arriving at random on a ``gpus``-GPU cluster, loaded to about ``load``."""
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        if rng.random() < 0.6:
            lo = rng.choice([1, 2])
            hi = min(gpus // 2, lo * rng.choice([4, 8, 16]))
            fixed = rng.choice([lo, hi, max(lo, hi // 2)])
            prio = 0
        else:
            lo = hi = fixed = min(gpus, rng.choice([1, 2, 4, 8]))
            prio = 1 if rng.random() < 0.15 else 0
        work = 3600.0 * fixed * rng.uniform(0.25, 4.0)  # 15 min to 4 h at the size a user would pick
        jobs.append(Job(f"j{i:03d}", 0.0, work, rng.uniform(0.7, 0.95), prio, lo, hi, fixed))
    mean_busy = statistics.fmean(j.time_at(j.fixed, j.work) * j.fixed for j in jobs)
    gap = mean_busy / (gpus * load)
    t = 0.0
    out = []
    for j in jobs:
        out.append(dataclasses.replace(j, submit_at=t))
        t += rng.expovariate(1.0 / gap)
    return out


@dataclass(frozen=True)
class Outcome:
    mean_jct_s: float
    makespan_s: float
    resizes: int
    pauses: int
    jct_s: dict[str, float]  # per job


def run_trace(jobs: list[Job], gpus: int, elastic: bool) -> Outcome:
    """Simulate ``jobs`` to completion; ``elastic`` False pins every job at its ``fixed`` size."""
    cap = {"GPU": float(gpus)}
    arrivals = sorted(jobs, key=lambda j: j.submit_at)
    seq = {j.job_id: i for i, j in enumerate(arrivals)}
    left = {j.job_id: j.work for j in jobs}
    queue: list[Job] = []
    running: dict[str, _Run] = {}
    end: dict[str, float] = {}
    t, resizes, pauses = 0.0, 0, 0
    while arrivals or queue or running:
        while arrivals and arrivals[0].submit_at <= t:
            queue.append(arrivals.pop(0))
        queue.sort(key=lambda j: (-j.priority, seq[j.job_id]))
        # admission, strict order
        free = subtract(cap, *({"GPU": float(r.size)} for r in running.values()))
        started = []
        while queue and fits({"GPU": float(_min(queue[0], elastic))}, free):
            j = queue.pop(0)
            running[j.job_id] = _Run(j, _min(j, elastic), t, t + RESTART_S, left[j.job_id])
            free = subtract(free, {"GPU": float(_min(j, elastic))})
            started.append(j)
        # Workers beyond min at the start are a grow at once: only what the blocked head cannot use.
        for j in started if elastic else []:
            r = running[j.job_id]
            keep = {"GPU": float(_min(queue[0], elastic))} if queue else {}
            sized = start_size(at_size(Entry(j.job_id, j.priority, 0, {}, worker=GPU), j.lo), j.lo, j.hi,
                               subtract(free, {"GPU": -float(r.size)}), keep=keep)
            if sized is not None and sized.workers > r.size:
                free = subtract(free, {"GPU": float(sized.workers - r.size)})
                r.size = sized.workers
        # room for a blocked head of higher priority: shrink (elastic) or pause
        if queue and (elastic or any(r.job.priority < queue[0].priority for r in running.values())):
            head = queue[0]
            entry = at_size(Entry(head.job_id, head.priority, seq[head.job_id], {}, worker=GPU), _min(head, elastic))
            holders = [_cand(r) for r in running.values()]
            if elastic:
                sizes = {r.job.job_id: Elastic(r.size, r.job.lo, r.job.hi) for r in running.values()
                         if r.job.lo < r.job.hi}
                plan = plan_shrink(entry, holders, sizes, free, cap, t, reclaim_after_s=MIN_INTERVAL_S)
                victims = plan.preemption.victims if plan and plan.preemption else []
                for s in plan.shrinks if plan else []:
                    _resize(running[s.job_id], s.to_workers, t, left)
                    resizes += 1
            else:
                p = choose_victims(head.job_id, head.priority, entry.demand, holders, free, cap, t)
                victims = p.victims if p else []
            for v in victims:
                r = running.pop(v)
                left[v] = _progress(r, t)
                queue.append(r.job)
                pauses += 1
            if victims or (elastic and plan and plan.shrinks):
                continue  # a new pass on the room made (same time)
        if elastic:
            resizes += _grow(queue, running, cap, t, left, seq)
        nxt = _next_event(arrivals, running, t, elastic)
        if nxt is None:
            break
        for job_id, r in list(running.items()):
            r.left = _progress(r, nxt)
            if r.left <= 1e-6:
                end[job_id] = nxt
                del running[job_id]
        t = nxt
    jct = {j.job_id: end[j.job_id] - j.submit_at for j in jobs}
    return Outcome(statistics.fmean(jct.values()), max(end.values()) - min(j.submit_at for j in jobs), resizes,
                   pauses, jct)


def _min(j: Job, elastic: bool) -> int:
    return j.lo if elastic else j.fixed


def _cand(r: _Run) -> Candidate:
    return Candidate(r.job.job_id, r.job.priority, {"GPU": float(r.size)}, r.started, last_checkpoint_at=None,
                     worker=GPU)


def _progress(r: _Run, t: float) -> float:
    """Work left at ``t`` (no progress while it restarts)."""
    return max(0.0, r.left - max(0.0, t - r.ready) * r.size ** r.job.alpha)


def _resize(r: _Run, to: int, t: float, left: dict[str, float]) -> None:
    r.left, r.size, r.started, r.ready = _progress(r, t), to, t, t + RESTART_S


def _grow(queue: list[Job], running: dict[str, _Run], cap: dict[str, float], t: float, left: dict[str, float],
          seq: dict[str, int]) -> int:
    free = subtract(cap, *({"GPU": float(r.size)} for r in running.values()))
    ends = [Holder(r.job.job_id, {"GPU": float(r.size)}, t + max(0.0, r.ready - t) + r.job.time_at(r.size, r.left))
            for r in running.values()]
    reservation = reserve(queue[0].job_id, {"GPU": float(queue[0].lo)}, free, ends, t) if queue else None
    sizes = {r.job.job_id: Elastic(r.size, r.job.lo, r.job.hi) for r in running.values() if r.job.lo < r.job.hi}
    # The churn bound: a grow gains at least one worker and, at one restart per interval, pays for itself.
    grows = plan_grow([_cand(r) for r in running.values()], sizes, free, t, min_interval_s=MIN_INTERVAL_S,
                      waiting=bool(queue), reservation=reservation)
    for g in grows:
        _resize(running[g.job_id], g.to_workers, t, left)
    return len(grows)


def _next_event(arrivals: list[Job], running: dict[str, _Run], t: float, elastic: bool) -> float | None:
    times = [arrivals[0].submit_at] if arrivals else []
    for r in running.values():
        times.append(max(t, r.ready) + r.job.time_at(r.size, r.left))
        if elastic and r.size < r.job.hi and r.started + MIN_INTERVAL_S > t:
            times.append(r.started + MIN_INTERVAL_S)  # it may grow from then
    return max(t, min(times)) if times else None


def run(client: Any, ws: Any, quick: bool) -> list[Row]:
    """``client`` and ``ws`` are unused: everything here is simulated."""
    rows = []
    for gpus, n in ((8, 40), (64, 160)):
        seeds = range(3 if quick else 10)
        traces = [trace(s, gpus, n) for s in seeds]
        fixed = [run_trace(tr, gpus, elastic=False) for tr in traces]
        grown = [run_trace(tr, gpus, elastic=True) for tr in traces]
        jct, jct0 = _mean(grown, traces, lambda j: True), _mean(fixed, traces, lambda j: True)
        el, el0 = _mean(grown, traces, lambda j: j.lo < j.hi), _mean(fixed, traces, lambda j: j.lo < j.hi)
        span = statistics.fmean(o.makespan_s for o in grown) / 3600
        span0 = statistics.fmean(o.makespan_s for o in fixed) / 3600
        resizes = statistics.fmean(o.resizes for o in grown) / n
        pauses = (statistics.fmean(o.pauses for o in grown), statistics.fmean(o.pauses for o in fixed))
        rows += [
            Row(f"elastic: mean job completion time, {n} mixed jobs on {gpus} GPUs ({len(traces)} traces)", jct, jct0,
                "h", "≤ 0.75 × fixed", jct <= 0.75 * jct0,
                f"baseline: the same jobs at a fixed size; {resizes:.2f} resizes per job; whole-job pauses "
                f"{pauses[0]:.1f} vs {pauses[1]:.1f} per trace"),
            Row(f"elastic: the same, elastic jobs only (~60%), {gpus} GPUs", el, el0, "h", "context", None,
                "baseline: those jobs at a fixed size"),
            Row(f"elastic: makespan, {n} mixed jobs on {gpus} GPUs", span, span0, "h", "context", None,
                "baseline: the same jobs at a fixed size"),
        ]
    return rows


def _mean(outcomes: list[Outcome], traces: list[list[Job]], which: Callable[[Job], bool]) -> float:
    """Mean completion time in hours of the jobs ``which`` picks, over every trace."""
    return statistics.fmean(o.jct_s[j.job_id] for o, tr in zip(outcomes, traces, strict=True)
                            for j in tr if which(j)) / 3600
