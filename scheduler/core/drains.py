"""Drain notices: a node Ray is about to take away moves its jobs at a checkpoint.

Ray announces a spot reclaim or planned maintenance by draining the node, with a reason and a
deadline (``scheduler.raycompat.draining_nodes``). The shell polls that, finds which nodes each
active attempt's workers are on, and hands both here as plain data (``Drains.apply``); nothing
here asks Ray anything.

What a drain does to an active job with a worker on the node, as a preemption by the node
(``failure.PREEMPT``, with the node as ``preempted_by``), so the same machinery carries it out:

- running: paused right after its next checkpoint report (a cooperative loop saves at once), at
  the latest ``STOP_MARGIN_S`` before the drain's deadline, then stopped at its last recorded
  checkpoint; it goes back to the queue by itself in its old place, ``retries`` unchanged (an
  elastic job so shrinks: in its old place it starts again at once with what fits off the node,
  at least its fewest, rather than wait for its old size; one relaunch either way);
- already pausing: its pause deadline is brought forward to the same limit (a person's pause
  still ends ``paused``);
- pending (launched, not yet training): its start is abandoned and it is requeued in its place.

Applying the same notices again changes nothing: a job already moving for a drain is left alone.
The scheduling pass keeps new work off draining nodes because the shell leaves them out of
``Cluster.nodes_free``.

Idle termination: Ray itself refuses an idle-termination drain of a node that holds any work (the
raylet answers ``is_accepted=False``), so the autoscaler cannot take a node a trainq job trains on;
trainq's own ``drain --reason idle`` is refused before Ray is asked when a trainq job is placed
there (``idle_drain_refusal``). An idle drain Ray did accept (the node was idle when asked) that
still touches a job, and a drain whose reason trainq cannot read (``unknown``: Ray lists none),
are handled as above, like a preemption.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..jobs import Job, iso
from ..policy import failure
from ..states import JobStatus
from .attempts import Attempts
from .writer import Writer

S = JobStatus

#: How long before a drain's deadline a job still waiting for its checkpoint is stopped: time for
#: the abort (about 2 s seen here) and Ray Train's report poll, so trainq, not the node's death or
#: Ray Train's own teardown at the deadline, ends the run.
STOP_MARGIN_S = 5.0


@dataclass(frozen=True)
class DrainNotice:
    """A node Ray is draining: why (``preemption``, ``idle``, or ``unknown`` when Ray does not say)
    and until when (epoch seconds; None: no deadline)."""

    node_id: str
    deadline_at: float | None
    reason: str = "unknown"
    message: str = ""

    def describe(self) -> str:
        """How the node and its drain read in a job's reason: ``node 3f2a9c1d draining (preemption: spot)``."""
        why = self.reason + (f": {self.message}" if self.message else "")
        return f"node {self.node_id[:8]} draining ({why})"


@dataclass(frozen=True)
class Move:
    """One job a drain acted on, and how (``pausing``, ``deadline`` or ``requeued``)."""

    job_id: str
    node_id: str
    how: str


class Drains:
    """Applies drain notices to the active jobs whose workers are on draining nodes."""

    def __init__(self, writer: Writer, attempts: Attempts) -> None:
        self.writer = writer
        self.ctx = writer.ctx
        self.attempts = attempts

    def apply(self, notices: Iterable[DrainNotice], placements: Mapping[tuple[str, int], Iterable[str]]
              ) -> list[Move]:
        """Move the active jobs with a worker on a draining node (see the module docstring).

        ``placements``: the nodes each active ``(job_id, attempt)``'s workers are on, as far as the
        shell knows; an attempt not in it is left alone (its workers are not placed yet, and Ray
        places no new work on a draining node).
        """
        by_node = {n.node_id: n for n in notices}
        if not by_node:
            return []
        moves = []
        for (job_id, attempt), nodes in placements.items():
            job = self.writer.find(job_id)
            notice = _earliest([by_node[n] for n in nodes if n in by_node])
            if job is None or notice is None or job.attempt != attempt:
                continue
            how = self._move(job, notice)
            if how is not None:
                moves.append(Move(job_id, notice.node_id, how))
        return moves

    def _move(self, job: Job, notice: DrainNotice) -> str | None:
        now = self.ctx.clock()
        cap_s = None if notice.deadline_at is None else max(0.0, notice.deadline_at - now - STOP_MARGIN_S)
        by = notice.describe()
        if job.status is S.RUNNING:
            plan = self.attempts.plan_pause(job, now, cap_s=cap_s)
            reason = f"preempted by {by}; pausing at its next checkpoint ({plan.message})"
            spec = self.writer.spec(job)
            if spec.elastic:  # its place in the queue keeps it first: it starts at once with what fits elsewhere
                reason += (f"; it starts again at once with the workers that fit off the node"
                           f" (at least {spec.min_workers}), not waiting for its {job.workers}")
            self.attempts.begin_pause(job, plan, failure.PREEMPT, reason, preempted_by=by,
                                      preemptions=job.preemptions + 1)
            self.writer.notify({"type": "preemption", "job_id": job.job_id, "preempted_by": by,
                                "node_id": notice.node_id, "drain": notice.reason, "at": iso(now)})
            return "pausing"
        if job.status is S.PAUSING:
            limit = None if cap_s is None else now + cap_s
            if limit is None or (job.pause_deadline_at is not None and job.pause_deadline_at <= limit):
                return None  # already due in time (or asked again: nothing changes)
            self.writer.update(job, pause_deadline_at=limit)
            return "deadline"
        if job.status is S.PENDING:
            job = self.writer.requeue(job, "requeue", f"preempted by {by} before it started training;"
                                      " requeued in its place", job.resume_from)
            self.attempts.stop(job, "moved (drain)", now)
            return "requeued"
        return None


def idle_drain_refusal(node_id: str, reason: str, placements: Mapping[tuple[str, int], Iterable[str]]
                       ) -> str | None:
    """Why trainq will not ask Ray to drain ``node_id`` for idle termination, or None.

    An idle termination is for nodes nobody uses; on a node a trainq job is placed on (``placements``:
    the nodes of each active attempt) it would end the job's run for no one's benefit, so it is
    refused, as Ray refuses it for a node with work of its own. A preemption drain is never refused.
    """
    if reason != "idle":
        return None
    jobs = sorted({job_id for (job_id, _), nodes in placements.items() if node_id in set(nodes)})
    if not jobs:
        return None
    return (f"node {node_id[:8]} is not idle: trainq job{'s' if len(jobs) > 1 else ''} {', '.join(jobs)}"
            " run there; drain it with reason preemption to move them at a checkpoint")


def _earliest(notices: list[DrainNotice]) -> DrainNotice | None:
    """Of the drains touching one job, the one that ends first (no deadline counts as last)."""
    if not notices:
        return None
    return min(notices, key=lambda n: (n.deadline_at is None, n.deadline_at or 0.0, n.node_id))
