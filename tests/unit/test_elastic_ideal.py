"""The ideal elastic scheduler the elastic benchmark measures trainq's policy against
(benchmarks/elastic_ideal.py): what it gives each job, and that it is the yardstick it claims."""

from __future__ import annotations

import statistics

import pytest

from benchmarks.elastic_ideal import allocate, ideal_mean_jct
from benchmarks.elastic_sim import Job, run_trace, trace


def _job(job_id: str, at: float, work: float, lo: int, hi: int, alpha: float = 0.8, priority: int = 0) -> Job:
    return Job(job_id, at, work, alpha, priority, lo, hi, lo)


def test_a_job_alone_runs_at_its_max_from_its_arrival_with_no_restart() -> None:
    assert ideal_mean_jct([_job("a", 50.0, 36_000.0, 1, 4)], 8) == pytest.approx(36_000.0 / 4 ** 0.8)


def test_min_in_queue_order_then_spare_gpus_where_one_more_worker_adds_most_speed() -> None:
    queue = [_job("big", 0, 1, 4, 4), _job("b", 0, 1, 2, 8, alpha=0.9), _job("a", 0, 1, 1, 8, alpha=0.9),
             _job("c", 0, 1, 3, 3)]
    # big 4, b 2, a 1 (7 of 8); c (3) does not fit; the last GPU goes to a, behind b in the queue:
    # 1 -> 2 workers adds more speed than b's 2 -> 3
    assert allocate(queue, 8) == {"big": 4, "b": 2, "a": 2}


def test_a_job_that_does_not_fit_lets_the_ones_behind_it_by() -> None:
    queue = [_job("wide", 0, 1, 6, 6), _job("small", 0, 1, 1, 1)]
    assert allocate(queue, 4) == {"small": 1}


def test_the_jobs_share_then_the_survivor_takes_everything_when_the_other_ends() -> None:
    # Two equal jobs of 1-2 workers on 2 GPUs: one each until the short one ends, then 2 for the long one.
    short, long = _job("s", 0.0, 1000.0, 1, 2), _job("l", 0.0, 3000.0, 1, 2)
    t_short = 1000.0  # at speed 1
    t_long = t_short + (3000.0 - 1000.0) / 2 ** 0.8
    assert ideal_mean_jct([short, long], 2) == pytest.approx((t_short + t_long) / 2)


@pytest.mark.parametrize("gpus, n", [(8, 40), (64, 160)])
def test_it_beats_trainqs_elastic_run_on_the_benchmarks_traces(gpus: int, n: int) -> None:
    traces = [trace(s, gpus, n) for s in range(3)]
    ideal = statistics.fmean(ideal_mean_jct(tr, gpus) for tr in traces)
    real = statistics.fmean(run_trace(tr, gpus, elastic=True).mean_jct_s for tr in traces)
    fixed = statistics.fmean(run_trace(tr, gpus, elastic=False).mean_jct_s for tr in traces)
    assert ideal < real < fixed
