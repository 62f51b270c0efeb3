"""Preemption, pure: which running jobs to pause (right after a checkpoint) so the head can start.

Rules (docs/design.md, "Preemption"; Kueue's greedy-then-reverse pass, Determined's "room on its way"):
- Only when the head of the queue does not fit in what is free now *plus* what jobs already
  stopping will free (pausing jobs and attempts still releasing): never preempt more than needed.
- Victims are running, ``preemptible`` jobs of strictly lower priority whose attempt has run at
  least its ``min_runtime_s``. Strictly lower means two jobs of equal priority never preempt
  each other, and a requeued victim can never preempt its preemptor back (no ping-pong).
- Order: jobs that can resume first: one known to ignore its checkpoint (``resumable`` False)
  loses its whole attempt, so it is chosen only when the others cannot make room; then lowest
  priority first; then the least expected lost work, its dominant share of the cluster times
  the seconds since its last checkpoint (or since its attempt started); then the newest attempt.
- Take victims in that order until the head fits, then drop, most expensive first, every
  victim that turned out not to be needed. If even all of them would not make room, preempt
  nobody: a pause that does not let the head start only costs work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .queue import Resources, fits, subtract


@dataclass(frozen=True)
class Candidate:
    """A job holding resources, as preemption sees it."""

    job_id: str
    priority: int
    demand: Mapping[str, float]
    attempt_started_at: float
    stopping: bool = False  # pausing or releasing: its room is already on its way
    preemptible: bool = True
    min_runtime_s: float = 0.0
    last_checkpoint_at: float | None = None  # of the current attempt
    resumable: bool | None = None  # False: its train function never reads its checkpoint


@dataclass(frozen=True)
class Preemption:
    """What to do for the head: pause ``victims``; ``waiting_for`` are already stopping."""

    head: str
    victims: list[str] = field(default_factory=list)
    waiting_for: list[str] = field(default_factory=list)
    lost_work_s: dict[str, float] = field(default_factory=dict)  # expected, per victim


def dominant_share(demand: Mapping[str, float], capacity: Mapping[str, float]) -> float:
    """The largest fraction of any one resource of the cluster that ``demand`` holds."""
    shares = [amount / capacity[name] for name, amount in demand.items() if capacity.get(name, 0) > 0]
    return max(shares, default=0.0)


def expected_loss_s(c: Candidate, now: float) -> float:
    """Seconds of work a pause now would redo: since the last checkpoint, or since the attempt began."""
    base = c.last_checkpoint_at if (c.last_checkpoint_at is not None and c.resumable is not False) \
        else c.attempt_started_at
    return max(0.0, now - base)


def eligible(c: Candidate, head_priority: int, now: float) -> bool:
    """Whether ``c`` may be preempted for a job of ``head_priority`` now."""
    return (not c.stopping and c.preemptible and c.priority < head_priority
            and now - c.attempt_started_at >= c.min_runtime_s)


def choose_victims(head_id: str, head_priority: int, head_demand: Mapping[str, float],
                   holders: Sequence[Candidate], free: Mapping[str, float],
                   capacity: Mapping[str, float], now: float) -> Preemption | None:
    """The preemption that lets the head start, or None when it fits or nothing can make room."""
    if fits(head_demand, free):
        return None
    stopping = [c for c in holders if c.stopping]
    room: Resources = subtract(free, *({k: -v for k, v in c.demand.items()} for c in stopping))
    if fits(head_demand, room):
        return Preemption(head_id, waiting_for=[c.job_id for c in stopping])
    ranked = sorted((c for c in holders if eligible(c, head_priority, now)), key=lambda c: (
        c.resumable is False, c.priority, dominant_share(c.demand, capacity) * expected_loss_s(c, now),
        -c.attempt_started_at))
    chosen: list[Candidate] = []
    for c in ranked:
        chosen.append(c)
        room = _add(room, c.demand)
        if fits(head_demand, room):
            break
    else:
        return None
    for c in reversed(chosen[:-1]):  # most expensive first; the last one taken made it fit
        without = subtract(room, c.demand)
        if fits(head_demand, without):
            chosen.remove(c)
            room = without
    return Preemption(head_id, victims=[c.job_id for c in chosen], waiting_for=[c.job_id for c in stopping],
                      lost_work_s={c.job_id: round(expected_loss_s(c, now), 3) for c in chosen})


def _add(a: Mapping[str, float], b: Mapping[str, float]) -> Resources:
    out = dict(a)
    for name, amount in b.items():
        out[name] = out.get(name, 0.0) + amount
    return out
