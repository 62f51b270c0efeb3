"""Dependencies and sweeps in the core: what the pure rule (``policy.dependencies``) is shown, the
submit-time checks, reviving dependents when a job they need is resumed, and a sweep's members.

The scheduling pass asks ``decide`` first and carries out its holds and cancels (``core.scheduling``);
nothing here changes a state but through the writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import BadDependency, JobNotFound
from ..jobs import Job
from ..policy import dependencies as rule
from ..spec import JobSpec
from ..states import ACTIVE, JobStatus
from .writer import Writer

S = JobStatus


class Dependencies:
    """Looks up what the dependency and sweep rule needs, and acts on jobs it names."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.ctx = writer.ctx

    # -- the scheduling pass's question -------------------------------------------------------------
    def decide(self) -> rule.Decision:
        """The rule's holds and cancels for the queued jobs that have dependencies or a sweep."""
        writer = self.writer
        if not writer.conditional:
            return rule.Decision()
        queue = writer.queue
        ids = sorted((j for j in writer.conditional if j in queue), key=lambda j: queue.position(j) or 0)
        specs = {j: writer.spec_of(j) for j in ids}
        queued = [rule.Conditional(j, [rule.Need(d.job_id, d.on) for d in s.depends_on], s.sweep_id)
                  for j, s in specs.items()]
        needed = {n.job_id for c in queued for n in c.needs}
        return rule.decide(queued, self.statuses(needed), *self._sweeps(specs.values()))

    def statuses(self, job_ids: set[str]) -> dict[str, str | None]:
        """Each job's state now (None: no such job); active ones from memory, the rest in one query."""
        live = self.writer.live
        out: dict[str, str | None] = {j: live[j].status.value for j in job_ids if j in live}
        rest = [j for j in job_ids if j not in out]
        found = self.ctx.store.get_jobs(rest) if rest else {}
        out.update({j: found[j].status.value if j in found else None for j in rest})
        return out

    def _sweeps(self, queued: Iterable[JobSpec]) -> tuple[dict[str, int], dict[str, int | None]]:
        """Per sweep with a queued member: its members pending, running or pausing, and its limit."""
        limits = {s.sweep_id: s.sweep.max_running for s in queued if s.sweep_id and s.sweep is not None}
        active: dict[str, int] = {}
        if limits:
            for job in self.writer.live.values():
                sweep_id = self.writer.spec(job).sweep_id
                if sweep_id is not None and sweep_id in limits and job.status in ACTIVE:
                    active[sweep_id] = active.get(sweep_id, 0) + 1
        return active, limits

    # -- submit -------------------------------------------------------------------------------------
    def check(self, job_id: str, spec: JobSpec) -> None:
        """Refuse a dependency on an unknown job, on the job itself, or one that closes a cycle
        (``BadDependency``: an ``InvalidSpec`` naming ``depends_on``, 409 over HTTP)."""
        if not spec.depends_on:
            return

        def needs_of(other: str) -> Sequence[str] | None:
            job = self.writer.find(other)
            return None if job is None else [d.get("job_id", "") for d in job.spec.get("depends_on") or ()]

        why = rule.check_graph(job_id, [d.job_id for d in spec.depends_on], needs_of)
        if why is not None:
            raise BadDependency(why)

    # -- resume -------------------------------------------------------------------------------------
    def revive(self, job_id: str) -> list[str]:
        """``job_id`` was resumed: the jobs this rule cancelled because of it wait again (and theirs,
        in turn). Returns the jobs requeued."""
        out: list[str] = []
        todo = [job_id]
        cancelled = [j for j in self.ctx.store.jobs_in([S.CANCELLED]) if (j.error or "").startswith(rule.CANCELLED_BY)]
        while todo and cancelled:
            current = todo.pop()
            for job in [j for j in cancelled if current in _needs(j)]:
                cancelled.remove(job)
                self.writer.requeue(job, "resume", f"{current} was resumed: waits for it again", job.checkpoint_path)
                out.append(job.job_id)
                todo.append(job.job_id)
        return out

    # -- sweeps -------------------------------------------------------------------------------------
    def members(self, sweep_id: str) -> list[Job]:
        """A sweep's jobs in submission order (``<sweep id>-<n>``), or ``JobNotFound``."""
        first = self.writer.find(f"{sweep_id}-0")
        sweep = first.spec.get("sweep") if first is not None else None
        if first is None or first.spec.get("sweep_id") != sweep_id or not isinstance(sweep, dict):
            raise JobNotFound(sweep_id)
        size = JobSpec.model_validate(first.spec).sweep
        count = size.size() if size is not None else 1
        found = self.ctx.store.get_jobs([f"{sweep_id}-{i}" for i in range(count)])
        return [found[k] for k in (f"{sweep_id}-{i}" for i in range(count)) if k in found]


def _needs(job: Job) -> list[str]:
    return [d.get("job_id", "") for d in job.spec.get("depends_on") or ()]
