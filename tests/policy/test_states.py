"""The transition table, walked pair by pair through the one function that applies it."""

from __future__ import annotations

import itertools

import pytest

from scheduler.errors import IllegalTransition
from scheduler.jobs import Job, Transition
from scheduler.states import TRANSITIONS, JobStatus, allowed

PAIRS = list(itertools.product(JobStatus, JobStatus))


def _job_in(core, status: JobStatus) -> Job:
    job = Job(job_id=f"job_{status.value}", name="t", spec={"entrypoint": "m:f"}, priority=0, seq=0,
              status=status, created_at=1.0, updated_at=1.0)
    core.store.insert_job(job, Transition(job.job_id, None, status, 1.0, "test setup", 0))
    core.writer.index(job)
    return job


def test_table_matches_design() -> None:
    s = JobStatus
    assert TRANSITIONS[s.COMPLETED] == frozenset()
    assert TRANSITIONS[s.PAUSED] == {s.QUEUED, s.CANCELLED}
    assert TRANSITIONS[s.FAILED] == {s.QUEUED} and TRANSITIONS[s.CANCELLED] == {s.QUEUED}
    assert TRANSITIONS[s.PAUSING] == {s.PAUSED, s.QUEUED, s.COMPLETED, s.FAILED, s.CANCELLED}
    assert sum(len(v) for v in TRANSITIONS.values()) == 22


@pytest.mark.parametrize("source,target", PAIRS, ids=[f"{a.value}->{b.value}" for a, b in PAIRS])
def test_every_pair(make_core, source: JobStatus, target: JobStatus) -> None:
    core = make_core()
    job = _job_in(core, source)
    if allowed(source, target):
        updated = core.writer.transition(job, target, "test", "walk")
        assert updated.status is target
        history = core.store.transitions(job.job_id)
        assert (history[-1].from_status, history[-1].to_status) == (source, target)
        assert history[-1].reason == "walk"
    else:
        with pytest.raises(IllegalTransition) as err:
            core.writer.transition(job, target, "test", "walk")
        assert err.value.fields["status"] == source.value
        assert core.store.get_job(job.job_id).status is source
        assert len(core.store.transitions(job.job_id)) == 1


def test_stale_compare_and_set_is_refused(make_core) -> None:
    """A caller holding an outdated copy of the job cannot overwrite a newer state."""
    core = make_core()
    job = _job_in(core, JobStatus.QUEUED)
    core.writer.transition(job, JobStatus.CANCELLED, "cancel", "first")
    with pytest.raises(IllegalTransition) as err:
        core.writer.transition(job, JobStatus.PAUSED, "pause", "stale copy says queued")
    assert err.value.fields["status"] == "cancelled"
    assert core.store.get_job(job.job_id).status is JobStatus.CANCELLED
