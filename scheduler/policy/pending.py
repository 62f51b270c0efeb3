"""Why a queued job waits, and when it should start, pure (Slurm's reason codes + ``squeue --start``).

Codes: ``priority`` (jobs ahead of it), ``resources`` (it is the head and does not fit; with
the numbers, and when lower priorities can make way once past their minimum runtime, who and
when: its ETA then), ``quota`` (its owner's max holds it), ``preempting`` (room is being made for it:
the victims are pausing at a checkpoint), ``reserved`` (it would fit now, but the room is held
for the head), ``backoff`` (a requeue after an infrastructure failure waits out its delay).

The ETA walks forward in simulated time in strict queue order: running jobs release their
resources at their estimated ends, each queued job starts as soon as it fits and then holds
its resources for its own known run time (forever when unknown). A job that would wait on a
release nobody can estimate gets ``eta`` None: a null beats a guess. ``eta_basis`` says which
estimates the ETA rests on. Backfill can only start jobs earlier than this walk says, never the
head later.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .accelerators import why_not
from .queue import Entry, Resources, fits, subtract

PRIORITY, RESOURCES, QUOTA, PREEMPTING, RESERVED, BACKOFF = \
    "priority", "resources", "quota", "preempting", "reserved", "backoff"


@dataclass(frozen=True)
class RunningEnd:
    """A job holding resources, with its estimated release (None: unknown) and what that rests on."""

    job_id: str
    demand: Mapping[str, float]
    end_at: float | None
    basis: str = ""


@dataclass(frozen=True)
class Waiting:
    """A queued job as this policy sees it."""

    entry: Entry
    run_s: float | None = None  # its own expected run time, when known
    quota: str | None = None  # why its owner's quota holds it (None: it does not)
    preempting: Sequence[str] = ()  # victims pausing to make room for it
    #: when room can be made for it by pausing or shrinking these lower-priority jobs, once past
    #: their minimum runtime (None: no preemption will, or one is under way)
    room_at: tuple[float, Sequence[str]] | None = None


@dataclass(frozen=True)
class Pending:
    """Why a queued job waits, and its estimated start."""

    job_id: str
    code: str
    message: str
    eta: float | None
    eta_basis: str | None
    ahead: int = 0

    def reason(self) -> dict[str, Any]:
        """``pending_reason`` as the API shows it."""
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class EndEstimate:
    """When a running job is expected to end, and what that rests on."""

    end_at: float | None
    basis: str = field(default="")


def step_rate(reports: Sequence[tuple[float, float]], window: int = 20) -> float | None:
    """Steps per second over the last ``window`` reports ``(at, step)`` of one attempt; None if unknown."""
    recent = sorted(reports)[-window:]
    if len(recent) < 2:
        return None
    (t0, s0), (t1, s1) = recent[0], recent[-1]
    return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else None


def estimate_end(now: float, started_at: float, *, time_limit_s: float | None = None,
                 total_steps: float | None = None, step: float | None = None,
                 rate: float | None = None) -> EndEstimate:
    """A running attempt's expected end: the earlier of its time limit and its steps to go at its rate."""
    found: list[tuple[float, str]] = []
    if time_limit_s is not None:
        found.append((started_at + time_limit_s, f"time limit {time_limit_s:g} s"))
    if total_steps is not None and step is not None and rate:
        left = max(0.0, total_steps - step)
        found.append((now + left / rate, f"step {step:g} of {total_steps:g} at {rate:.3g} steps/s"))
    if not found:
        return EndEstimate(None, "no time limit and no step total with a rate")
    end, basis = min(found)
    return EndEstimate(max(now, end), basis)


def explain(waiting: Sequence[Waiting], running: Sequence[RunningEnd], free: Mapping[str, float],
            now: float, nodes: Sequence[Mapping[str, float]] | None = None,
            draining: Sequence[str] = ()) -> list[Pending]:
    """Every queued job's ``pending_reason``, ``eta`` and ``eta_basis``, in queue order.

    ``waiting`` is the queue in admission order after this pass's decisions; ``running`` every
    job holding resources (a pausing one ends at its expected pause); ``free`` what is free now;
    ``nodes`` what each node has free (when known: a head that fits the totals but not the nodes,
    with its types and strategy, is told why, with the numbers); ``draining`` the nodes Ray is
    draining, as a head blocked on resources is told (their room is not counted in ``nodes``).
    """
    reasons = _reasons(waiting, free, now, nodes, draining)
    etas = _etas(waiting, running, free, now)
    return [Pending(w.entry.job_id, code, message, *etas[w.entry.job_id], ahead=ahead)
            for w, (code, message, ahead) in zip(waiting, reasons, strict=True)]


def beyond(job_id: str, position: int, depth: int, head: str | None, quota: str | None = None) -> Pending:
    """Why a job at ``position`` (1-based) waits when only the first ``depth`` jobs are explained in
    full: its place, and no ETA (as Slurm estimates starts only for its first ``bf_max_job_test``
    jobs), so a long queue costs O(depth) per pass and O(1) per job read."""
    if quota is not None:
        return Pending(job_id, QUOTA, f"its owner's quota: {quota}", None, "its owner's quota holds it; no estimate",
                       ahead=position - 1)
    first = f" (first: {head})" if head else ""
    return Pending(job_id, PRIORITY, f"{position - 1} jobs ahead{first}", None,
                   f"no estimate: more than {depth} jobs ahead", ahead=position - 1)


def _reasons(waiting: Sequence[Waiting], free: Mapping[str, float], now: float,
             nodes: Sequence[Mapping[str, float]] | None = None, draining: Sequence[str] = ()
             ) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    head: Entry | None = None
    ahead = 0
    for w in waiting:
        e = w.entry
        if w.quota is not None:
            out.append((QUOTA, f"its owner's quota: {w.quota}", ahead))
            continue
        if e.not_before is not None and e.not_before > now:
            out.append((BACKOFF, f"requeued after a failure; may start again in {e.not_before - now:.0f} s", ahead))
            continue
        if w.preempting:
            out.append((PREEMPTING, f"making room: waiting for {', '.join(w.preempting)} to pause at a checkpoint",
                        ahead))
        elif head is None:
            on_nodes = why_not(e, free, nodes) if nodes is not None and fits(e.demand, free) else None
            short = _short(e.demand, free) if not fits(e.demand, free) else on_nodes
            # A drain takes room away before Ray's totals show it: say which node, and why.
            gone = f"; {', '.join(draining)}: nothing new starts there" if short and draining else ""
            later = f"; {_made(w.room_at, now)}" if short and w.room_at is not None else ""
            out.append((RESOURCES, short + gone + later, ahead) if short
                       else (RESOURCES, "fits now: starts at the next scheduling pass", ahead))
        elif fits(e.demand, free):
            out.append((RESERVED, f"fits now, but the room is held for {head.job_id}, ahead of it", ahead))
        else:
            out.append((PRIORITY, f"{ahead} job{'s' if ahead != 1 else ''} ahead (first: {head.job_id}); "
                        + _short(e.demand, free), ahead))
        head = head or e
        ahead += 1
    return out


def _etas(waiting: Sequence[Waiting], running: Sequence[RunningEnd], free: Mapping[str, float],
          now: float) -> dict[str, tuple[float | None, str | None]]:
    order = itertools.count()
    releases: list[tuple[float, int, str, Mapping[str, float], str]] = [
        (r.end_at, next(order), r.job_id, r.demand, r.basis) for r in running if r.end_at is not None]
    heapq.heapify(releases)
    unknown = sorted(r.job_id for r in running if r.end_at is None)
    room: Resources = dict(free)
    t = now
    used: list[str] = []  # the estimates the walk has relied on so far
    out: dict[str, tuple[float | None, str | None]] = {}
    blocked: str | None = None
    for w in waiting:
        e = w.entry
        if w.quota is not None:
            out[e.job_id] = (None, "its owner's quota holds it; no estimate")
            continue
        if blocked is not None:
            out[e.job_id] = (None, blocked)
            continue
        start = max(t, e.not_before or t)
        while releases and releases[0][0] <= start:
            room = _release(room, heapq.heappop(releases), used)
        while not fits(e.demand, room):
            if not releases:
                why = f"waits on {', '.join(unknown)}, whose end nobody can estimate" if unknown \
                    else "waits on jobs ahead with no known run time"
                blocked = f"no estimate: {why}"
                break
            nxt = heapq.heappop(releases)
            start = max(start, nxt[0])
            room = _release(room, nxt, used)
        if blocked is not None:
            out[e.job_id] = (None, blocked) if w.room_at is None else (w.room_at[0], _made(w.room_at, now))
            continue
        t = start
        room = subtract(room, e.demand)
        if w.run_s is not None:
            heapq.heappush(releases, (start + w.run_s, next(order), e.job_id, e.demand, f"expected run {w.run_s:g} s"))
        else:
            unknown.append(e.job_id)
        # Room made by a preemption may come first; the walk behind it goes on from its own start.
        out[e.job_id] = (start, _basis(start, now, used)) if w.room_at is None or w.room_at[0] >= start \
            else (w.room_at[0], _made(w.room_at, now))
    return out


def _release(room: Resources, release: tuple[float, int, str, Mapping[str, float], str], used: list[str]) -> Resources:
    _, _, job_id, demand, basis = release
    used.append(f"{job_id}: {basis}" if basis else job_id)
    return {**room, **{k: room.get(k, 0.0) + v for k, v in demand.items()}}


def _basis(start: float, now: float, used: list[str]) -> str:
    if start <= now or not used:
        return "fits in what is free now"
    shown = used[-3:]
    more = f" and {len(used) - 3} earlier" if len(used) > 3 else ""
    return "strict queue order, after the ends of " + "; ".join(shown) + more


def _made(room_at: tuple[float, Sequence[str]], now: float) -> str:
    at, jobs = room_at
    return (f"in {max(0.0, at - now):.0f} s room can be made for it: {', '.join(jobs)} (lower priority) "
            f"may pause or shrink once past {'their' if len(jobs) > 1 else 'its'} minimum runtime")


def _short(demand: Mapping[str, float], free: Mapping[str, float]) -> str:
    short = [f"needs {_n(v)} {k}, {_n(max(0.0, free.get(k, 0.0)))} free" for k, v in sorted(demand.items())
             if v > free.get(k, 0.0) + 1e-9]
    return "; ".join(short) or "fits the totals but not the free resources of any set of nodes"


def _n(x: float) -> str:
    return f"{x:g}"
