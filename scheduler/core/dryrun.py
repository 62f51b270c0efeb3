"""The dry run (Slurm's ``sbatch --test-only``, Kueue's what-if): would this spec start now, and if
not, why, when, and whom would it preempt?

Nothing is decided here twice: the spec goes through the submit's own checks (``Submitter.check``),
and the job, never stored, is put in the writer's indexes for the length of one question
(``Writer.imagined``) while the scheduling pass's own decisions are asked (``Pass.holds``,
``Pass.admission``, ``Pass.make_room``) and the queue view explains it. No action is applied: no
row, no event, no metric, no idempotency key.
"""

from __future__ import annotations

from typing import Any

from ..jobs import iso
from ..policy import accelerators
from .actions import CancelUnmet, Hold, MakeWay, Resize
from .scheduling import Pass
from .submit import Submitter
from .views import Views
from .writer import Writer


class DryRun:
    """Answers what a submit would do now, changing nothing."""

    def __init__(self, writer: Writer, submitter: Submitter, passes: Pass, views: Views) -> None:
        self.writer = writer
        self.submitter = submitter
        self.passes = passes
        self.views = views

    def ask(self, data: Any, owner: str | None = None) -> dict[str, Any]:
        """``{"dry_run", "would_start", "pending_reason", "eta", "eta_basis", "preempts",
        "queue_position"}`` for ``data`` (a sweep: its first member); an invalid spec raises the
        error a submit would."""
        new = self.submitter.check(data, owner)
        job_id, ctx = new.job.job_id, self.writer.ctx
        now = ctx.clock()
        with self.writer.imagined(new.job, new.spec):
            holds = [a for a in self.passes.holds() if isinstance(a, Hold | CancelUnmet) and a.job_id == job_id]
            cancelled = next((a.reason for a in holds if isinstance(a, CancelUnmet)), None)
            if cancelled is not None:
                return _answer(False, {"code": "dependency", "message": f"would be cancelled: {cancelled}"})
            for hold in holds:
                if isinstance(hold, Hold):
                    self.writer.set_held(job_id, hold.held)
            capacity = ctx.cluster.capacity()
            adm, _ = self.passes.admission(now, capacity)
            if any(a.job_id == job_id for a in adm.start):
                return _answer(True, None, eta=iso(now), eta_basis="fits in what is free now")
            preempts: list[str] = []
            head = adm.head
            snap = self.passes.snapshot
            if head is not None and accelerators.choose(head, snap.free(), snap.nodes_free()) is None:
                preempts = [a.job_id for a in self.passes.make_room(head, capacity, now, set(adm.held))
                            if isinstance(a, MakeWay | Resize) and a.for_job == job_id]  # a shrink too
            view = self.views.fresh(now)
            why = view.why(job_id)
            return _answer(False, why.reason() if why else None, preempts, view.positions.get(job_id),
                           iso(why.eta) if why else None, why.eta_basis if why else None)


def _answer(would_start: bool, reason: dict[str, Any] | None, preempts: list[str] | None = None,
            position: int | None = None, eta: str | None = None, eta_basis: str | None = None) -> dict[str, Any]:
    return {"dry_run": True, "would_start": would_start, "pending_reason": reason, "eta": eta,
            "eta_basis": eta_basis, "preempts": preempts or [], "queue_position": position}
