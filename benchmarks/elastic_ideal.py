"""What resizing could give on a trace at most, under the elastic benchmark's own rules: an ideal
elastic scheduler, run over the same jobs as ``benchmarks/elastic_sim.py``.

Not a policy trainq could run, a yardstick for the one it runs: every start and resize is free
and instant, sizes change at every arrival and every end (no checkpoint to wait for, no churn
bound), and no head's start is protected. At each moment the waiting and running jobs, in queue
order (priority, then arrival), each get their ``min`` (a fixed job its size) while it fits, a job
that does not fit letting the ones behind it by (backfill with no promise to keep); then the GPUs
left go one at a time to the job whose speed grows most with one more worker (``k ** alpha``,
Pollux's marginal goodput at a constant batch), up to its ``max``. What trainq's elastic run
misses of it is about what a better policy could still take; a target this misses too asks more
of the trace than resizing gives under these rules.
"""
from __future__ import annotations

import statistics

from .elastic_sim import Job


def ideal_mean_jct(jobs: list[Job], gpus: int) -> float:
    """Mean completion time in seconds of ``jobs`` on ``gpus`` GPUs under the ideal scheduler above."""
    arrivals = sorted(jobs, key=lambda j: j.submit_at)
    queue: list[Job] = []  # arrived, not ended: in queue order
    left = {j.job_id: j.work for j in jobs}
    end: dict[str, float] = {}
    t = 0.0
    while arrivals or queue:
        while arrivals and arrivals[0].submit_at <= t:
            queue.append(arrivals.pop(0))
        queue.sort(key=lambda j: (-j.priority, j.submit_at))
        sizes = allocate(queue, gpus)
        speed = {job_id: sizes[job_id] ** j.alpha for j in queue if (job_id := j.job_id) in sizes}
        ends = [t + left[job_id] / s for job_id, s in speed.items()]
        nxt = min(ends + ([arrivals[0].submit_at] if arrivals else []))
        for j in list(queue):
            if j.job_id in speed:
                left[j.job_id] -= speed[j.job_id] * (nxt - t)
                if left[j.job_id] <= 1e-6 * j.work:
                    end[j.job_id] = nxt
                    queue.remove(j)
        t = nxt
    return statistics.fmean(end[j.job_id] - j.submit_at for j in jobs)


def allocate(queue: list[Job], gpus: int) -> dict[str, int]:
    """Each job's workers now: ``min`` in queue order while it fits, the rest by marginal speed."""
    sizes: dict[str, int] = {}
    free = gpus
    for j in queue:
        if j.lo <= free:
            sizes[j.job_id], free = j.lo, free - j.lo
    while free > 0:
        grow = [j for j in queue if 0 < sizes.get(j.job_id, 0) < j.hi]
        if not grow:
            break
        best = max(grow, key=lambda j: (sizes[j.job_id] + 1) ** j.alpha - sizes[j.job_id] ** j.alpha)
        sizes[best.job_id] += 1
        free -= 1
    return sizes
