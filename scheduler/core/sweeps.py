"""A sweep as users see it (its members ranked by its metric), and a verb applied to all its members.

A sweep is no record of its own: its members carry ``sweep`` and ``sweep_id`` in their specs and
have the ids ``<sweep id>-<n>`` (``core.submit``), so it survives a restart with the jobs and needs
no table. Pause, resume and cancel of a sweep are the same verbs, applied to each member whose
state the transition table lets take them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import InvalidSpec, TrainqError
from ..policy import dependencies as rule
from ..spec import SweepSpec
from ..states import ACTIVE, RESUMABLE, JobStatus, allowed
from ..verbs import SweepVerb

if TYPE_CHECKING:
    from .facade import Scheduler

S = JobStatus


def applies(verb: SweepVerb, status: JobStatus) -> bool:
    """Whether a member in ``status`` takes ``verb`` (from the transition table)."""
    if verb == "pause":
        return allowed(status, S.PAUSED) or allowed(status, S.PAUSING)
    if verb == "resume":
        return status in RESUMABLE
    return allowed(status, S.CANCELLED)


class Sweeps:
    """Reads a sweep's members and applies a verb to them (through the core's own verbs, so each
    member's change is checked, authorized and followed by its pass as a one-job verb is)."""

    def __init__(self, core: Scheduler) -> None:
        self.core = core

    def view(self, sweep_id: str) -> dict[str, Any]:
        """The sweep: its parameters and limit, counts by state, and its members (public form) best
        first by its metric (``policy.dependencies.rank``); ``JobNotFound`` for an unknown id."""
        jobs = self.core.dependencies.members(sweep_id)
        sweep = SweepSpec.model_validate(jobs[0].spec["sweep"])
        members = [self.core.get(j.job_id) for j in jobs]
        counts: dict[str, int] = {}
        for m in members:
            counts[m["status"]] = counts.get(m["status"], 0) + 1
        return {"sweep_id": sweep_id, "parameters": sweep.parameters, "max_running": sweep.max_running,
                "metric": sweep.metric, "mode": sweep.mode, "counts": counts,
                "jobs": rule.rank(members, sweep.metric, sweep.mode)}

    def act(self, sweep_id: str, verb: SweepVerb, as_user: str | None = None) -> dict[str, Any]:
        """Pause, resume or cancel every member that takes ``verb`` now; each member's answer is its
        state after, or the error that refused it (another caller may have moved it meanwhile)."""
        core = self.core
        verbs: dict[str, Callable[[str], Any]] = {"pause": lambda j: core.pause(j, as_user=as_user),
                                                  "resume": lambda j: core.resume(j, as_user=as_user),
                                                  "cancel": lambda j: core.cancel(j, as_user=as_user)}
        do = verbs.get(verb)
        if do is None:
            raise InvalidSpec(f"a sweep takes pause, resume or cancel, not {verb!r}", "action")
        members = core.dependencies.members(sweep_id)
        if verb != "resume":
            # The members not started first: each verb runs its pass, and the pass after an active
            # member's pause would start a queued one only for the next step to stop it again.
            members.sort(key=lambda j: j.status in ACTIVE)
        out = []
        for member in members:
            job = core.job(member.job_id)  # as it is now: the pass of an earlier member's verb may have moved it
            if not applies(verb, job.status):
                continue
            try:
                do(job.job_id)
                out.append({"job_id": job.job_id, "previous_status": job.status.value,
                            "status": core.job(job.job_id).status.value, "error": None})
            except TrainqError as e:
                out.append({"job_id": job.job_id, "previous_status": job.status.value,
                            "status": job.status.value, "error": str(e)})
        return {"sweep_id": sweep_id, "action": verb, "jobs": out}
