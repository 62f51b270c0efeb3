"""Issue 11's pure policies on a simulated cluster (no Ray): backfill packing, ETA error, fair turns.

Packing: 20 mixed jobs (1-8 of 8 GPUs, 10-120 min, some with time limits, some preemptible),
submitted together; makespan in strict order and with backfill against the ideal (a lower
bound: the busiest resource's work over its capacity, or the longest job), backfill told every
true run time (an oracle: how far this backfill gets when told everything), and a clairvoyant
list schedule that knows every run time and ignores the queue order (what could be done at all).
ETA: ``pending.explain`` against the true starts of a simulated queue whose running jobs' rates
are measured with 10% error.
"""

from __future__ import annotations

import statistics

from scheduler.policy import simulate
from scheduler.policy.fairshare import fair_order
from scheduler.policy.queue import Entry

from .common import Row


def run(client, ws, quick: bool) -> list[Row]:
    """``client`` and ``ws`` are unused: everything here is simulated."""
    seeds = range(5 if quick else 20)
    packs = [simulate.packing(seed) for seed in seeds]
    backfill = statistics.fmean(p.backfill_s / p.ideal_s for p in packs)
    strict = statistics.fmean(p.strict_s / p.ideal_s for p in packs)
    clairvoyant = statistics.fmean(p.clairvoyant_s / p.ideal_s for p in packs)
    oracle = statistics.fmean(p.oracle_s / p.ideal_s for p in packs)
    limited = [simulate.packing(seed, limited_share=1.0) for seed in seeds]
    all_limited = statistics.fmean(p.backfill_s / p.ideal_s for p in limited)
    all_limited_strict = statistics.fmean(p.strict_s / p.ideal_s for p in limited)
    util_b = statistics.fmean(p.backfill_waiting_utilisation for p in packs)
    util_s = statistics.fmean(p.strict_waiting_utilisation for p in packs)
    eta = simulate.eta_error(range(10 if quick else 50))
    n = len(packs)
    return [
        Row(f"backfill: makespan of 20 mixed jobs / ideal (lower bound), mean of {n} workloads", backfill,
            strict, "×", "≤ 1.10", backfill <= 1.10, "baseline: strict order / ideal"),
        Row("backfill: worst workload's makespan / ideal", max(p.backfill_s / p.ideal_s for p in packs),
            max(p.strict_s / p.ideal_s for p in packs), "×", "context", None, "baseline: strict order"),
        Row("backfill: the same, when every job declares a time limit", all_limited, all_limited_strict, "×",
            "context", None, "baseline: strict order / ideal"),
        Row("backfill knowing every true run time (an oracle), in queue order / ideal", oracle, None, "×",
            "context", None, "how far this backfill gets when told everything"),
        Row("clairvoyant list schedule (knows run times, any order) / ideal", clairvoyant, None, "×", "context",
            None, "how close the lower bound can be got at all"),
        Row("backfill: GPUs busy while jobs wait", util_b, util_s, "", "≥ 0.91 (1/1.10)", util_b >= 1 / 1.10,
            "baseline: strict order"),
        Row(f"ETA: median absolute error of queued jobs' start ({eta.n} jobs)", eta.median_s, None, "s", "context",
            None, f"mean {eta.mean_s:.0f} s, mean relative {eta.mean_relative:.0%}, {eta.covered:.0%} got an ETA"),
        Row("fair share: 2 users × 10 equal jobs, largest lead in start order (one pass)", _largest_lead(), 1.0, "jobs",
            "≤ 1", _largest_lead() <= 1),
    ]


def _largest_lead() -> float:
    entries = [Entry(f"{u}{i}", 0, k, {"GPU": 1.0}) for k, (u, i) in
               enumerate([("a", i) for i in range(10)] + [("b", i) for i in range(10)])]
    order = [e.job_id[0] for e in fair_order(entries, {e.job_id: e.job_id[0] for e in entries}, {}, {}, {"GPU": 8.0})]
    return float(max(abs(order[:k].count("a") - order[:k].count("b")) for k in range(1, len(order) + 1)))
