"""The elastic benchmark's simulator counts each second of progress once (benchmarks/elastic_sim.py).

It once subtracted a run's progress since its last restart again at every event, so a job
finished early whenever anything else happened meanwhile; the figures it printed were wrong.
"""

from __future__ import annotations

import pytest

from benchmarks.elastic_sim import MIN_INTERVAL_S, RESTART_S, Job, run_trace, trace


def _job(job_id: str, at: float, work: float, lo: int, hi: int, fixed: int, alpha: float = 0.8) -> Job:
    return Job(job_id, at, work, alpha, 0, lo, hi, fixed)


@pytest.mark.parametrize("elastic", [False, True])
def test_a_job_alone_takes_its_restart_plus_its_work_at_its_size(elastic: bool) -> None:
    job = _job("a", 0.0, 36_000.0, 1, 4, 2)
    size = 4 if elastic else 2  # alone, an elastic job starts with all it may take
    out = run_trace([job], 8, elastic=elastic)
    assert out.jct_s["a"] == pytest.approx(RESTART_S + 36_000.0 / size ** 0.8)


@pytest.mark.parametrize("elastic", [False, True])
def test_other_jobs_coming_and_going_beside_it_do_not_change_its_completion(elastic: bool) -> None:
    job = _job("a", 0.0, 36_000.0, 2, 2, 2)
    alone = run_trace([job], 64, elastic=elastic).jct_s["a"]
    # Arrivals and ends at many moments while it runs; the cluster is big enough for all of them.
    others = [_job(f"o{i}", 100.0 * i, 500.0, 1, 1, 1) for i in range(1, 40)]
    assert run_trace([job, *others], 64, elastic=elastic).jct_s["a"] == pytest.approx(alone)


def test_every_job_of_a_trace_completes_in_both_runs_and_no_sooner_than_it_could() -> None:
    jobs = trace(0, 8, 40)
    for elastic in (False, True):
        out = run_trace(jobs, 8, elastic=elastic)
        for j in jobs:
            fastest = RESTART_S + j.time_at(j.hi if elastic else j.fixed, j.work)
            assert out.jct_s[j.job_id] >= fastest - 1e-6


def test_idle_gpus_are_counted_only_while_a_job_waits() -> None:
    # A 4-GPU job runs alone, then an 8-GPU job waits for it: 4 GPUs idle while it waits, none after.
    first, whole = _job("a", 0.0, 3_600.0, 4, 4, 4), _job("b", 0.0, 3_600.0, 8, 8, 8)
    out = run_trace([first, whole], 8, elastic=False)
    assert out.idle_waiting_gpu_s == pytest.approx(4 * (RESTART_S + 3_600.0 / 4 ** 0.8))
    assert run_trace([first], 8, elastic=False).idle_waiting_gpu_s == 0.0


def test_with_free_instant_resizes_a_job_grows_the_moment_room_frees_and_loses_nothing() -> None:
    # b holds 3 of 4 GPUs for 1,000 s; a (1-4 workers) starts beside it with 1 and grows to 4 when
    # b ends: no restart and no churn bound, so a's progress never stops.
    b = _job("b", 0.0, 1_000.0 * 3 ** 0.8, 3, 3, 3)
    a = _job("a", 0.0, 36_000.0, 1, 4, 1)
    out = run_trace([b, a], 4, elastic=True, restart_s=0.0, min_interval_s=0.0)
    assert out.jct_s["b"] == pytest.approx(1_000.0)
    assert out.jct_s["a"] == pytest.approx(1_000.0 + (36_000.0 - 1_000.0) / 4 ** 0.8)
    assert out.resizes == 1
    # The defaults: a waits out the interval at 1 worker and its resize costs a restart.
    slow = run_trace([b, a], 4, elastic=True)
    assert slow.jct_s["a"] > out.jct_s["a"] + RESTART_S


def test_lending_while_the_heads_start_is_unforeseen_gives_the_room_back_the_moment_it_fits() -> None:
    # 6 GPUs, no run time known: d (2 GPUs) ends at 1,060 s, f (2) at 1,260 s; a (2-4 workers)
    # runs beside them from the start; c (4) arrives at 5 s and waits for both. With the policy
    # measured, a borrows the 2 GPUs d frees and gives them back when f ends, 200 s after the
    # grow (within the resize interval, when a job of c's priority could not take them back yet):
    # c starts exactly then, as without the loan.
    d = _job("d", 0.0, 1_000.0 * 2 ** 0.8, 2, 2, 2)
    f = _job("f", 0.0, 1_200.0 * 2 ** 0.8, 2, 2, 2)
    a = _job("a", 0.0, 36_000.0, 2, 4, 2)
    c = _job("c", 5.0, 3_600.0, 4, 4, 4)
    plain = run_trace([d, f, a, c], 6, elastic=True, time_limits=False)
    lent = run_trace([d, f, a, c], 6, elastic=True, time_limits=False, lend_unforeseen=True)
    assert lent.resizes == plain.resizes + 2  # the grow at 1,060 s, the give-back at 1,260 s
    starts_c = 1_260.0 + RESTART_S
    assert lent.jct_s["c"] == pytest.approx(plain.jct_s["c"]) == pytest.approx(starts_c + 3_600.0 / 4 ** 0.8 - 5.0)


def test_a_waiting_job_takes_lent_workers_back_the_moment_the_interval_allows() -> None:
    # a (1-4 workers) starts alone with all 4 GPUs; c (2) arrives at 10 s. Nothing else happens
    # until a ends, yet c takes 2 of a's workers back at 360 s, when a has run the interval with
    # them (counted from the end of its 60 s start, as trainq counts it from its workers' start).
    a = _job("a", 0.0, 36_000.0, 1, 4, 4)
    c = _job("c", 10.0, 1_000.0, 2, 2, 2)
    out = run_trace([a, c], 4, elastic=True)
    assert out.jct_s["c"] == pytest.approx(RESTART_S + MIN_INTERVAL_S + RESTART_S + 1_000.0 / 2 ** 0.8 - 10.0)
