"""Dependencies and sweep limits, pure: which queued jobs are held, which can never start.

Rules (Slurm's ``--dependency`` and ``--array=...%k``, docs/design.md "Pipelines and sweeps"):
- A dependency names a job and an end: ``completed`` (Slurm's ``afterok``), ``failed``
  (``afternotok``) or ``finished`` (``afterany``: completed, failed or cancelled). It is *met* when
  that job is in such an end state now, *impossible* when that job has ended otherwise (a job that
  completed never fails; a cancelled or failed one may only come back by a resume, and then its
  dependents are revived), and *unmet* while it may still get there.
- A queued job starts only when every dependency is met (held with reason ``dependency``, naming
  the jobs it waits for); one impossible dependency cancels it, with the reason.
- The rule is checked whenever the job is queued, so a job requeued later waits again if a job it
  depends on was resumed meanwhile.
- A sweep's members hold at most ``max_running`` pending, running or pausing at once: of its queued
  members whose dependencies are met, only as many as there are free slots, in queue order, are
  not held (reason ``sweep_limit``); so one pass can never start more than the slots.
- A dependency on an unknown job, on the job itself, or one that would close a cycle is refused
  at submit (``check_graph``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEPENDENCY, SWEEP_LIMIT = "dependency", "sweep_limit"
MET, UNMET, IMPOSSIBLE = "met", "unmet", "impossible"
#: the end states, and which of them meet each kind of dependency
ENDED = frozenset({"completed", "failed", "cancelled"})
MEETS: Mapping[str, frozenset[str]] = {"completed": frozenset({"completed"}), "failed": frozenset({"failed"}),
                                       "finished": ENDED}
#: the start of ``error`` on a job this rule cancelled: a resume of the job it needed revives it
CANCELLED_BY = "dependency: "


@dataclass(frozen=True)
class Need:
    """One dependency: the job needed and the end it must reach."""

    job_id: str
    on: str = "completed"


def verdict(need: Need, status: str | None) -> str:
    """``MET``, ``UNMET`` or ``IMPOSSIBLE`` for one dependency, given the needed job's state (None: gone)."""
    if status is None:
        return IMPOSSIBLE
    if status in MEETS[need.on]:
        return MET
    return IMPOSSIBLE if status in ENDED else UNMET


@dataclass(frozen=True)
class Conditional:
    """A queued job with dependencies or in a sweep, in queue order."""

    job_id: str
    needs: Sequence[Need] = ()
    sweep_id: str | None = None


@dataclass(frozen=True)
class Decision:
    """What the rule says for the queued conditional jobs: the held ones (job id -> (code, message))
    and the ones to cancel (job id -> reason)."""

    held: dict[str, tuple[str, str]] = field(default_factory=dict)
    cancel: dict[str, str] = field(default_factory=dict)


def decide(queued: Iterable[Conditional], status: Mapping[str, str | None],
           active: Mapping[str, int], limits: Mapping[str, int | None]) -> Decision:
    """Hold or cancel the queued ``Conditional`` jobs (given in queue order).

    ``status``: the state of every job needed (missing or None: no such job); ``active``: per sweep,
    its members pending, running or pausing now; ``limits``: per sweep, its ``max_running``.
    """
    out = Decision()
    slots = {s: None if limit is None else max(0, limit - active.get(s, 0)) for s, limit in limits.items()}
    for job in queued:
        verdicts = [(n, verdict(n, status.get(n.job_id))) for n in job.needs]
        impossible = [(n, status.get(n.job_id)) for n, v in verdicts if v == IMPOSSIBLE]
        if impossible:
            out.cancel[job.job_id] = CANCELLED_BY + "; ".join(
                f"{n.job_id} is {s or 'unknown'}, so it can never be {n.on}" for n, s in impossible)
            continue
        unmet = [n for n, v in verdicts if v == UNMET]
        if unmet:
            out.held[job.job_id] = (DEPENDENCY, "waits for " + ", ".join(
                f"{n.job_id} to be {n.on} (now {status.get(n.job_id)})" for n in unmet))
            continue
        if job.sweep_id is None:
            continue
        left = slots.get(job.sweep_id)
        if left is None:
            continue
        if left <= 0:
            limit = limits[job.sweep_id]
            members = "1 member" if limit == 1 else f"{limit} members"
            message = f"sweep {job.sweep_id} has {members} pending, running or pausing (its max_running)"
            out.held[job.job_id] = (SWEEP_LIMIT, message)
        else:
            slots[job.sweep_id] = left - 1
    return out


def check_graph(job_id: str, needs: Sequence[str], needs_of: Callable[[str], Sequence[str] | None]) -> str | None:
    """Why ``job_id`` may not depend on ``needs`` (None: it may): a job that does not exist (``needs_of``
    returns None for it), the job itself, or a chain that leads back to ``job_id`` (a cycle)."""
    for first in needs:
        if first == job_id:
            return f"{job_id} cannot depend on itself"
        if needs_of(first) is None:
            return f"no job {first} (a dependency must name a job submitted before)"
    seen: set[str] = set()
    stack: list[tuple[str, tuple[str, ...]]] = [(n, (job_id, n)) for n in needs]
    while stack:
        current, path = stack.pop()
        if current == job_id:
            return "a cycle: " + " -> ".join(path)
        if current in seen:
            continue
        seen.add(current)
        stack.extend((n, (*path, n)) for n in needs_of(current) or ())
    return None


def combinations(parameters: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of a sweep's values, the first parameter changing slowest."""
    names = list(parameters)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*parameters.values())]


def member_name(base: str, values: Mapping[str, Any]) -> str:
    """A sweep member's name: the base name and its values (``train[lr=0.001,seed=0]``)."""
    shown = ",".join(f"{k}={v}" for k, v in values.items())
    return f"{base}[{shown}]"[:200]


def rank(members: Sequence[Mapping[str, Any]], metric: str | None, mode: str) -> list[Mapping[str, Any]]:
    """Members best first by the latest value of ``metric`` (``mode`` min or max); those without a
    number for it come last, in their order."""
    if metric is None:
        return list(members)

    def value(m: Mapping[str, Any]) -> float | None:
        v = (m.get("metrics") or {}).get(metric)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return None
        return float(v)

    scored = [m for m in members if value(m) is not None]
    rest = [m for m in members if value(m) is None]
    scored.sort(key=lambda m: value(m) or 0.0, reverse=mode == "max")
    return scored + rest
