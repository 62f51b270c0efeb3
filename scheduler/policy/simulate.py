"""A small discrete-event simulation of the queue on a fake cluster and clock, pure.

It runs the real policies (strict gang admission in queue order, ``backfill.plan_backfill``,
``pending.explain``) against jobs whose true run times it knows, for the backfill property
tests and for the benchmarks (packing against the ideal, and the error of the ETAs).
One priority, submission order; a preempted (backfilled) job pauses at a checkpoint without
losing work and keeps its queue position.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .backfill import PREEMPTIBLE, SPARE, Holder, PlannedPause, due_preemptions, plan_backfill
from .pending import RunningEnd, Waiting, explain
from .queue import Entry, fits, subtract


@dataclass(frozen=True)
class SimJob:
    """A job with its true run time and what the scheduler is told about it."""

    job_id: str
    demand: Mapping[str, float]
    duration_s: float  # its true run time
    time_limit_s: float | None = None  # what it declares (>= duration_s when limits are enforced)
    preemptible: bool = False
    pause_s: float = 0.0  # from a pause request to its resources being free again
    submit_at: float = 0.0


@dataclass
class SimResult:
    start: dict[str, float] = field(default_factory=dict)  # first start of each job
    end: dict[str, float] = field(default_factory=dict)
    reservations: dict[str, float] = field(default_factory=dict)  # each blocked head's first reserved start
    #: heads with a reservation that a job ahead of them in queue order came back in front of
    #: (a paused job keeps its place): their reservation no longer binds
    overtaken: set[str] = field(default_factory=set)
    backfilled: int = 0
    preemptions: int = 0
    makespan: float = 0.0
    utilisation: float = 0.0  # busy fraction of the most used resource over the makespan
    #: busy fraction of the most used resource while jobs wait in the queue: how well the queue packs,
    #: apart from the tail after the last start, which no queue order controls
    waiting_utilisation: float = 1.0


@dataclass
class _Run:
    job: SimJob
    start: float
    end: float  # true end if it is not paused
    preempt_at: float | None = None
    preempt_for: str = ""  # the head its planned pause makes way for
    release_at: float | None = None  # pausing: when its resources are free
    spare: bool = False  # backfilled into what the head leaves spare


def simulate(jobs: Sequence[SimJob], capacity: Mapping[str, float], *, backfill: bool = False,
             oracle: bool = False, max_events: int = 100_000) -> SimResult:
    """Run ``jobs`` to completion in submission order (``submit_at``, then list order); strict, or with backfill.

    ``oracle``: backfill knows every job's true run time, running or queued (no scheduler
    does): what backfill in queue order could reach at best, apart from what it is told.
    """
    arrivals = sorted(jobs, key=lambda j: j.submit_at)  # stable: list order breaks ties
    order = {j.job_id: i for i, j in enumerate(arrivals)}
    done_s = {j.job_id: 0.0 for j in jobs}  # work done in earlier attempts
    queue: list[SimJob] = []
    running: dict[str, _Run] = {}
    out = SimResult()
    t = 0.0
    busy: dict[str, float] = {}  # resource-seconds in use while jobs waited
    waited = 0.0
    for _ in range(max_events):
        while arrivals and arrivals[0].submit_at <= t:
            queue.append(arrivals.pop(0))
        queue.sort(key=lambda j: order[j.job_id])
        _step(t, queue, running, done_s, capacity, backfill, out, oracle)
        times = [a.submit_at for a in arrivals[:1]]
        for r in running.values():
            times.append(r.end if r.release_at is None else min(r.end, r.release_at))
            if r.preempt_at is not None and r.release_at is None:
                times.append(r.preempt_at)
        if not times:
            if queue:
                raise ValueError(f"{queue[0].job_id} can never fit {dict(capacity)}")
            break
        nxt = max(t, min(times))
        if queue and nxt > t:
            for k in capacity:
                busy[k] = busy.get(k, 0.0) + sum(r.job.demand.get(k, 0.0) for r in running.values()) * (nxt - t)
            waited += nxt - t
        t = nxt
        for job_id, r in list(running.items()):
            if r.end <= t:
                out.end[job_id] = r.end
                del running[job_id]
            elif r.release_at is not None and r.release_at <= t:
                done_s[job_id] += r.release_at - r.start
                del running[job_id]
                queue.append(r.job)
                out.overtaken |= {j.job_id for j in queue if j.job_id in out.reservations
                                  and order[j.job_id] > order[job_id]}
    else:
        raise RuntimeError("simulation did not finish")
    out.makespan = max(out.end.values(), default=0.0)
    out.utilisation = _busy(jobs, capacity, out.makespan)
    if waited > 0:
        out.waiting_utilisation = max(busy.get(k, 0.0) / (cap * waited) for k, cap in capacity.items() if cap > 0)
    return out


def _step(t: float, queue: list[SimJob], running: dict[str, _Run], done_s: dict[str, float],
          capacity: Mapping[str, float], backfill: bool, out: SimResult, oracle: bool = False) -> None:
    free = subtract(capacity, *(r.job.demand for r in running.values()))
    while queue and fits(queue[0].demand, free):  # strict gang admission, in order
        job = queue.pop(0)
        _start(t, job, running, done_s, out)
        free = subtract(free, job.demand)
    # A pass: admission, then the planned pauses (asked for, or forgotten once their head started), then
    # backfill, which must not count on a pause that will not happen.
    planned = [PlannedPause(j, r.preempt_for, r.preempt_at) for j, r in running.items()
               if r.preempt_at is not None and r.release_at is None]
    pauses = due_preemptions(planned, {j.job_id for j in queue}, t)
    for job_id in pauses.dropped:
        running[job_id].preempt_at = None
    for job_id in pauses.due:
        running[job_id].release_at = t + running[job_id].job.pause_s
        out.preemptions += 1
    if not backfill or not queue:
        return
    entries = [Entry(j.job_id, 0, i, j.demand) for i, j in enumerate(queue)]
    holders = [Holder(r.job.job_id, r.job.demand, _expected_release(r, done_s, oracle), r.spare)
               for r in running.values()]
    run_s = {j.job_id: j.duration_s - done_s[j.job_id] for j in queue} if oracle else _run_s(queue, done_s)
    plan = plan_backfill(entries, free, holders, t, run_s=run_s,
                         preemptible={j.job_id: j.pause_s for j in queue if j.preemptible})
    if plan.reservation is not None and plan.reservation.start_at is not None:
        out.reservations.setdefault(plan.reservation.job_id, plan.reservation.start_at)
    by_id = {j.job_id: j for j in queue}
    for b in plan.start:
        job = by_id[b.job_id]
        queue.remove(job)
        _start(t, job, running, done_s, out)
        out.backfilled += 1
        if b.why == PREEMPTIBLE:
            assert plan.reservation is not None  # plan_backfill starts preemptible jobs only around a reservation
            running[job.job_id].preempt_at, running[job.job_id].preempt_for = b.preempt_at, plan.reservation.job_id
        running[job.job_id].spare = b.why == SPARE


def _start(t: float, job: SimJob, running: dict[str, _Run], done_s: dict[str, float], out: SimResult) -> None:
    out.start.setdefault(job.job_id, t)
    running[job.job_id] = _Run(job, t, t + job.duration_s - done_s[job.job_id])


def _expected_release(r: _Run, done_s: Mapping[str, float], oracle: bool = False) -> float | None:
    """What the scheduler believes: a pause's end, the pause it scheduled, or the time limit
    (``oracle``: it also knows the true end)."""
    known = [r.end] if oracle else []
    if r.release_at is not None:
        known.append(r.release_at)
    if r.preempt_at is not None:
        known.append(r.preempt_at + r.job.pause_s)
    if r.job.time_limit_s is not None:
        known.append(r.start + r.job.time_limit_s - done_s[r.job.job_id])
    return min(known) if known else None


def _run_s(queue: Sequence[SimJob], done_s: Mapping[str, float]) -> dict[str, float]:
    return {j.job_id: max(0.0, j.time_limit_s - done_s[j.job_id]) for j in queue if j.time_limit_s is not None}


def _busy(jobs: Sequence[SimJob], capacity: Mapping[str, float], makespan: float) -> float:
    if makespan <= 0:
        return 0.0
    return max((sum(j.demand.get(k, 0.0) * j.duration_s for j in jobs) / (cap * makespan)
                for k, cap in capacity.items() if cap > 0), default=0.0)


def ideal_makespan(jobs: Sequence[SimJob], capacity: Mapping[str, float]) -> float:
    """A lower bound no schedule beats: the busiest resource's work over its capacity, or the longest job."""
    work = max((sum(j.demand.get(k, 0.0) * j.duration_s for j in jobs) / cap for k, cap in capacity.items()
                if cap > 0), default=0.0)
    return max([work] + [j.submit_at + j.duration_s for j in jobs])


# -- workloads for the benchmarks -----------------------------------------------------------------
def mixed_jobs(seed: int, n: int = 20, gpus: int = 8, limited_share: float = 0.6) -> list[SimJob]:
    """``n`` mixed jobs on a ``gpus``-GPU cluster: gang sizes 1-8, run times 10-120 min, a share of them
    with a time limit (1-1.5× their run time), half preemptible with a 1-minute pause, submitted together."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        size = rng.choice([1, 1, 2, 2, 4, gpus])
        duration = 60.0 * rng.randint(10, 120)
        limited = rng.random() < limited_share
        out.append(SimJob(f"j{i:02d}", {"GPU": float(size)}, duration,
                          time_limit_s=duration * rng.uniform(1.0, 1.5) if limited else None,
                          preemptible=rng.random() < 0.5, pause_s=60.0))
    return out


def clairvoyant_makespan(jobs: Sequence[SimJob], capacity: Mapping[str, float], tries: int = 50,
                         seed: int = 0) -> float:
    """The best makespan of greedy list schedules that know every true run time and may start any job
    that fits, in any order (longest first, most work first, and ``tries`` random orders): an
    achievable schedule, for judging how far the lower bound is from what can really be done."""
    rng = random.Random(seed)
    orders = [sorted(jobs, key=lambda j: -j.duration_s),
              sorted(jobs, key=lambda j: -max(j.demand.values(), default=0.0) * j.duration_s)]
    orders += [rng.sample(list(jobs), len(jobs)) for _ in range(tries)]
    return min(_greedy(order, capacity) for order in orders)


def _greedy(order: Sequence[SimJob], capacity: Mapping[str, float]) -> float:
    running: list[tuple[float, SimJob]] = []
    t, end, waiting = 0.0, 0.0, list(order)
    while waiting or running:
        free = subtract(capacity, *(j.demand for _, j in running))
        for job in list(waiting):
            if job.submit_at <= t and fits(job.demand, free):
                running.append((t + job.duration_s, job))
                waiting.remove(job)
                free = subtract(free, job.demand)
        times = [e for e, _ in running] + [j.submit_at for j in waiting if j.submit_at > t]
        if not times:
            raise ValueError("a job can never fit")
        t = min(times)
        end = max([end] + [e for e, _ in running if e <= t])
        running = [(e, j) for e, j in running if e > t]
    return end


@dataclass(frozen=True)
class Packing:
    strict_s: float
    backfill_s: float
    ideal_s: float  # the lower bound
    clairvoyant_s: float
    oracle_s: float  # backfill in queue order knowing every true run time
    strict_waiting_utilisation: float
    backfill_waiting_utilisation: float


def packing(seed: int, n: int = 20, gpus: int = 8, limited_share: float = 0.6) -> Packing:
    """One mixed workload in strict order and with backfill, against the lower bound and a clairvoyant schedule."""
    jobs = mixed_jobs(seed, n, gpus, limited_share)
    cap = {"GPU": float(gpus)}
    strict, filled = simulate(jobs, cap), simulate(jobs, cap, backfill=True)
    oracle = simulate(jobs, cap, backfill=True, oracle=True)
    return Packing(strict.makespan, filled.makespan, ideal_makespan(jobs, cap), clairvoyant_makespan(jobs, cap),
                   oracle.makespan, strict.waiting_utilisation, filled.waiting_utilisation)


@dataclass(frozen=True)
class EtaError:
    mean_s: float
    median_s: float
    mean_relative: float  # absolute error over the true wait
    covered: float  # fraction of queued jobs that got an ETA (not None)
    n: int


def eta_error(seeds: Sequence[int], gpus: int = 8, running_n: int = 6, queued_n: int = 14,
              rate_noise: float = 0.1) -> EtaError:
    """How far ``pending.explain``'s ETAs land from the true starts, in strict order.

    Each seed: ``running_n`` jobs already running (their ends estimated from a step rate
    measured with ``rate_noise`` relative error, or a time limit), ``queued_n`` queued with a
    time limit 1-1.5× their true run time, or (one in five) none. The true starts come from
    ``simulate`` on the true run times.
    """
    errors: list[float] = []
    relative: list[float] = []
    asked = covered = 0
    for seed in seeds:
        rng = random.Random(seed)
        cap = {"GPU": float(gpus)}
        running: list[RunningEnd] = []
        sim_jobs: list[SimJob] = []
        used = 0.0
        for i in range(running_n):
            size = float(rng.choice([1, 2, 2, 4]))
            if used + size > gpus:
                break
            used += size
            left = 60.0 * rng.randint(5, 90)
            rate_seen = 1.0 * (1 + rng.uniform(-rate_noise, rate_noise))  # true rate 1 step/s
            running.append(RunningEnd(f"r{i}", {"GPU": size}, left / rate_seen, "step rate"))
            sim_jobs.append(SimJob(f"r{i}", {"GPU": size}, left))
        waiting: list[Waiting] = []
        for i in range(queued_n):
            size = float(rng.choice([1, 1, 2, 4, gpus]))
            duration = 60.0 * rng.randint(10, 120)
            limit = duration * rng.uniform(1.0, 1.5) if rng.random() < 0.8 else None
            waiting.append(Waiting(Entry(f"q{i:02d}", 0, i, {"GPU": size}), run_s=limit))
            sim_jobs.append(SimJob(f"q{i:02d}", {"GPU": size}, duration))
        truth = simulate(sim_jobs, cap).start  # the running ones start at 0, as they already hold resources
        # The queued jobs that fit at once start at once, as admission would; the rest wait.
        started = [w for w in waiting if truth[w.entry.job_id] <= 0.0]
        running += [RunningEnd(w.entry.job_id, w.entry.demand, w.run_s, "time limit") for w in started]
        free = subtract(cap, *(r.demand for r in running))
        queue = [w for w in waiting if w not in started]
        for p in explain(queue, running, free, 0.0):
            asked += 1
            if p.eta is None:
                continue
            covered += 1
            err = abs(p.eta - truth[p.job_id])
            errors.append(err)
            relative.append(err / max(truth[p.job_id], 1.0))
    return EtaError(statistics.fmean(errors) if errors else math.nan,
                    statistics.median(errors) if errors else math.nan,
                    statistics.fmean(relative) if relative else math.nan, covered / max(asked, 1), asked)
