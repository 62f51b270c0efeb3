"""The elastic benchmark's simulator (no Ray): a trace of mixed jobs and trainq's policies run over it.

``trace`` draws the jobs (``benchmarks/elastic.py`` says which and why); ``run_trace`` runs them
to completion through the pure policies trainq's pass uses (``scheduler.policy``: admission order,
``elastic``, ``backfill``, ``preemption``), an event at a time. A resize or a resume costs
``RESTART_S`` without progress (a relaunch from a checkpoint taken at once with the cooperative
hook, so no work is lost); totals only, nodes are not modelled. Tested in
``tests/unit/test_elastic_sim.py``.
"""
from __future__ import annotations

import dataclasses
import math
import random
import statistics
from dataclasses import dataclass

from scheduler.policy import backfill as backfill_policy
from scheduler.policy.elastic import Elastic, Loan, at_size, plan_grow, plan_shrink, start_size
from scheduler.policy.preemption import Candidate, choose_victims
from scheduler.policy.queue import Entry, add, fits, subtract

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
    backfill: backfill_policy.Backfill | None = None  # how it started around a blocked head
    head: str = ""  # that head
    loan: Loan | None = None  # workers lent by a waiting head, given back at ``loan.at``
    running_since: float = 0.0  # when this (re)start's restart was over: the churn bound counts from here

    def progress(self, t: float) -> float:
        """Work left at ``t`` (no progress while it restarts)."""
        return max(0.0, self.left - max(0.0, t - self.ready) * self.size ** self.job.alpha)

    def end_at(self, t: float) -> float:
        return max(t, self.ready) + self.job.time_at(self.size, self.left)


def trace(seed: int, gpus: int, n: int, load: float = 0.9, *, whole_cluster_max: bool = False) -> list[Job]:
    """``n`` jobs arriving at random on a ``gpus``-GPU cluster, loaded to about ``load``.

    ``whole_cluster_max``: the same jobs, each elastic one's ``max`` allowed up to the whole cluster
    (as the issue's job of 2 to 8 GPUs on 8) instead of half of it; the size a user would pin it
    at in the fixed run stays the one drawn under the half-cluster cap, so the baseline is unchanged.
    """
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        if rng.random() < 0.6:
            lo = rng.choice([1, 2])
            most = lo * rng.choice([4, 8, 16])
            capped = min(gpus // 2, most)
            hi = min(gpus, most) if whole_cluster_max else capped
            fixed = rng.choice([lo, capped, max(lo, capped // 2)])
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
    idle_waiting_gpu_s: float  # GPU-seconds idle while a job waited


class _Sim:
    """One run of a trace: each pass admits, gives loans back, makes room, backfills and grows, in
    the order of a trainq pass (``core.scheduling``); then time moves to the next event."""

    def __init__(self, jobs: list[Job], gpus: int, elastic: bool, time_limits: bool, restart_s: float,
                 min_interval_s: float, lend_unforeseen: bool = False) -> None:
        self.jobs, self.cap, self.elastic = jobs, {"GPU": float(gpus)}, elastic
        self.restart_s, self.min_interval_s = restart_s, min_interval_s
        self.time_limits = time_limits  # every job's run time is known (backfill and loans count on it)
        self.lend_unforeseen = lend_unforeseen and not time_limits  # loans with no time (``run_trace``)
        self.arrivals = sorted(jobs, key=lambda j: j.submit_at)
        self.seq = {j.job_id: i for i, j in enumerate(self.arrivals)}
        self.left = {j.job_id: j.work for j in jobs}
        self.queue: list[Job] = []
        self.running: dict[str, _Run] = {}
        self.end: dict[str, float] = {}
        self.t, self.resizes, self.pauses, self.idle_waiting = 0.0, 0, 0, 0.0

    def run(self) -> Outcome:
        while self.arrivals or self.queue or self.running:
            while self.arrivals and self.arrivals[0].submit_at <= self.t:
                self.queue.append(self.arrivals.pop(0))
            self.queue.sort(key=self._key)
            self._admit()
            if self._due() or self._make_room():
                continue  # a new pass on the room made (same time)
            if self.time_limits:
                self._backfill()
            if self.elastic:
                self._grow()
            if not self._advance():
                break
        jct = {j.job_id: self.end[j.job_id] - j.submit_at for j in self.jobs}
        return Outcome(statistics.fmean(jct.values()), max(self.end.values()) - min(j.submit_at for j in self.jobs),
                       self.resizes, self.pauses, jct, self.idle_waiting)

    # -- the stages ----------------------------------------------------------------------------------
    def _admit(self) -> None:
        """Strict queue order; an elastic job's workers beyond min only what the blocked head cannot use."""
        started = []
        while self.queue and fits(self._gang(self.queue[0]), self._free()):
            j = self.queue.pop(0)
            self._start(j)
            started.append(j)
        for j in started if self.elastic else []:
            r = self.running[j.job_id]
            keep = self._gang(self.queue[0]) if self.queue else {}
            sized = start_size(at_size(Entry(j.job_id, j.priority, 0, {}, worker=GPU), j.lo), j.lo, j.hi,
                               add(self._free(), {"GPU": float(r.size)}), keep=keep)
            if sized is not None and sized.workers > r.size:
                r.size = sized.workers

    def _due(self) -> bool:
        """Loans given back and backfilled jobs paused at their time, while their head waits."""
        waiting = {j.job_id for j in self.queue}
        acted = self._give_back_unforeseen()
        for job_id, r in list(self.running.items()):
            if r.loan is not None and (r.loan.head not in waiting or r.loan.at <= self.t):
                if r.loan.head in waiting:
                    self._resize(r, r.loan.to_workers)
                    acted = True
                r.loan = None
            b = r.backfill
            if b is not None and b.preempt_at is not None and r.head not in waiting:
                r.backfill = None  # its head has started: the pause planned for it is forgotten
            elif b is not None and b.preempt_at is not None and b.preempt_at <= self.t:
                self._pause(job_id)
                acted = True
        return acted

    def _give_back_unforeseen(self) -> bool:
        """Loans with no time (``lend_unforeseen``) given back, latest first, once the head would fit with them."""
        head = self.queue[0].job_id if self.queue else ""
        lent = sorted((r for r in self.running.values() if r.loan and r.loan.at == math.inf and r.loan.head == head),
                      key=lambda r: -r.started)
        gang = self._gang(self.queue[0]) if lent else {}
        if not lent or not fits(gang, add(self._free(), {"GPU": float(sum(r.size - r.loan.to_workers
                                                                              for r in lent if r.loan))})):
            return False
        for r in lent:
            if r.loan and not fits(gang, self._free()):
                self._resize(r, r.loan.to_workers)
            r.loan = None
        return True

    def _make_room(self) -> bool:
        """Room for a blocked head: shrinks first (elastic), whole-job pauses for higher priorities."""
        if not self.queue or fits(self._gang(self.queue[0]), self._free()):
            return False
        head = self.queue[0]
        entry = at_size(Entry(head.job_id, head.priority, self.seq[head.job_id], {}, worker=GPU), self._size(head))
        holders = [_cand(r) for r in self.running.values()]
        free = self._free()
        if self.elastic:
            plan = plan_shrink(entry, holders, self._sizes(), free, self.cap, self.t,
                               reclaim_after_s=self.min_interval_s)
            for sh in plan.shrinks if plan else []:
                self._resize(self.running[sh.job_id], sh.to_workers)
            victims = plan.preemption.victims if plan and plan.preemption else []
            shrunk = bool(plan and plan.shrinks)
        else:
            p = choose_victims(head.job_id, head.priority, entry.demand, holders, free, self.cap, self.t)
            victims, shrunk = (p.victims if p else []), False
        for v in victims:
            self._pause(v)
        return bool(victims) or shrunk

    def _backfill(self) -> None:
        """Jobs behind the blocked head that cannot delay it (``policy.backfill``; trainq's default):
        known run times here, and every job may pause at a checkpoint (at once)."""
        if not self.queue:
            return
        entries = [Entry(j.job_id, j.priority, self.seq[j.job_id], self._gang(j)) for j in self.queue]
        run_s = {j.job_id: self.restart_s + j.time_at(self._size(j), self.left[j.job_id]) for j in self.queue}
        plan = backfill_policy.plan_backfill(entries, self._free(), self._ends(), self.t, run_s=run_s,
                                             preemptible=dict.fromkeys(run_s, 0.0))
        later = sum(self._size(j) for b in plan.start for j in self.queue if j.job_id == b.job_id)
        for b in plan.start:
            j = next(q for q in self.queue if q.job_id == b.job_id)
            self.queue.remove(j)
            self._start(j, b, self.queue[0].job_id)
            later -= self._size(j)
            r = self.running[j.job_id]
            if self.elastic and j.lo < j.hi and b.why != backfill_policy.SPARE:
                # As the product's backfill: out of the head's way by its earliest start whatever its
                # size, so it takes the room left once the other backfilled jobs have theirs.
                sized = start_size(at_size(Entry(j.job_id, j.priority, 0, {}, worker=GPU), j.lo), j.lo, j.hi,
                                   add(self._free(), {"GPU": float(r.size)}), keep={"GPU": float(later)})
                r.size = sized.workers if sized is not None else r.size

    def _grow(self) -> None:
        if self.lend_unforeseen and self.queue:
            self._lend_unforeseen()
            return
        key = self._key(self.queue[0]) if self.queue else None
        reservation = backfill_policy.reserve(self.queue[0].job_id, self._gang(self.queue[0]), self._free(),
                                              self._ends(), self.t) if self.queue and self.time_limits else None
        # Jobs ahead of the head in queue order relaunch before it: they may borrow what it cannot use yet.
        lenders = {j for j, r in self.running.items() if key is not None and self._key(r.job) < key}
        # The churn bound: a grow gains at least one worker and, at one restart per interval, pays for itself.
        grows = plan_grow([_cand(r) for r in self.running.values()], self._sizes(), self._free(), self.t,
                          min_interval_s=self.min_interval_s, waiting=bool(self.queue), reservation=reservation,
                          lenders=lenders)
        for g in grows:
            r = self.running[g.job_id]
            self._resize(r, g.to_workers)
            r.loan = g.loan

    def _lend_unforeseen(self) -> None:
        """The jobs ahead of the waiting head grow into all the free room (it cannot use it: it
        does not fit, and nothing behind it may start before it), as loans given back in ``_due``."""
        head = self.queue[0]
        lenders = [_cand(r) for r in self.running.values() if self._key(r.job) < self._key(head)]
        for g in plan_grow(lenders, self._sizes(), self._free(), self.t, min_interval_s=self.min_interval_s):
            r = self.running[g.job_id]
            before = r.loan.to_workers if r.loan is not None else r.size
            self._resize(r, g.to_workers)
            r.loan = Loan(head.job_id, math.inf, before)

    def _advance(self) -> bool:
        """Move to the next arrival, end, grow chance, loan or planned pause; False when none is left."""
        times = [self.arrivals[0].submit_at] if self.arrivals else []
        for r in self.running.values():
            times.append(r.end_at(self.t))
            if self.elastic and r.job.lo < r.job.hi and r.running_since + self.min_interval_s > self.t:
                # from then it may grow, or a waiting job of its priority take its extra workers back
                # (the interval counts from its running, after the restart: ``preemption.running_for``)
                times.append(r.running_since + self.min_interval_s)
            times += [r.loan.at] if r.loan and r.loan.at < math.inf else []
            times += [r.backfill.preempt_at] if r.backfill and r.backfill.preempt_at is not None else []
        if not times:
            return False
        nxt = max(self.t, min(times))
        if self.queue:
            self.idle_waiting += self._free()["GPU"] * (nxt - self.t)
        for job_id, r in list(self.running.items()):
            r.left, r.ready = r.progress(nxt), max(r.ready, nxt)  # counted up to nxt: once
            if r.left <= 1e-6:
                self.end[job_id] = nxt
                del self.running[job_id]
        self.t = nxt
        return True

    # -- helpers ---------------------------------------------------------------------------------------
    def _start(self, j: Job, how: backfill_policy.Backfill | None = None, head: str = "") -> None:
        ready = self.t + self.restart_s
        self.running[j.job_id] = _Run(j, self._size(j), self.t, ready, self.left[j.job_id], how, head,
                                      running_since=ready)

    def _pause(self, job_id: str) -> None:
        r = self.running.pop(job_id)
        self.left[job_id] = r.progress(self.t)
        self.queue.append(r.job)
        self.pauses += 1

    def _resize(self, r: _Run, to: int) -> None:
        r.left, r.size, r.started, r.ready = r.progress(self.t), to, self.t, self.t + self.restart_s
        r.running_since = r.ready
        self.resizes += 1

    def _ends(self) -> list[backfill_policy.Holder]:
        """When each run releases what it holds: a loan at its time, a preemptible backfill at its pause."""
        out = []
        for job_id, r in self.running.items():
            end = r.end_at(self.t)
            if r.backfill is not None and r.backfill.preempt_at is not None:
                end = min(end, r.backfill.preempt_at)
            if r.loan is not None:
                out.append(backfill_policy.Holder(job_id + "/loan", {"GPU": float(r.size - r.loan.to_workers)},
                                                  r.loan.at))
            held = r.loan.to_workers if r.loan is not None else r.size
            out.append(backfill_policy.Holder(job_id, {"GPU": float(held)}, end,
                                              r.backfill is not None and r.backfill.why == backfill_policy.SPARE))
        return out

    def _free(self) -> dict[str, float]:
        return subtract(self.cap, *({"GPU": float(r.size)} for r in self.running.values()))

    def _sizes(self) -> dict[str, Elastic]:
        return {j: Elastic(r.size, r.job.lo, r.job.hi) for j, r in self.running.items() if r.job.lo < r.job.hi}

    def _size(self, j: Job) -> int:
        return j.lo if self.elastic else j.fixed

    def _gang(self, j: Job) -> dict[str, float]:
        return {"GPU": float(self._size(j))}

    def _key(self, j: Job) -> tuple[int, int]:
        return (-j.priority, self.seq[j.job_id])


def run_trace(jobs: list[Job], gpus: int, elastic: bool, time_limits: bool = True, *, restart_s: float = RESTART_S,
              min_interval_s: float = MIN_INTERVAL_S, lend_unforeseen: bool = False) -> Outcome:
    """Simulate ``jobs`` to completion; ``elastic`` False pins every job at its ``fixed`` size.
    ``time_limits`` False: no job's end is known, as without time limits in trainq, so nothing is
    backfilled and nothing grows while a job waits (strict queue order). ``restart_s``: what a
    start, resume or resize costs without progress; ``min_interval_s``: the churn bound.
    ``lend_unforeseen`` (with ``time_limits`` False; not trainq's policy, a measure of one): while
    the head waits, the jobs ahead of it grow into the free room, each shrunk back the moment the
    head would fit with its lent workers (trainq lends only what a known earliest start allows)."""
    return _Sim(jobs, gpus, elastic, time_limits, restart_s, min_interval_s, lend_unforeseen).run()


def _cand(r: _Run) -> Candidate:
    return Candidate(r.job.job_id, r.job.priority, {"GPU": float(r.size)}, r.started, last_checkpoint_at=None,
                     worker=GPU, running_since=r.running_since)
