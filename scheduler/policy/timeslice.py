"""Time slicing, pure and opt-in (``TRAINQ_TIME_SLICE_S``): equal-priority jobs take turns.

When queued jobs wait that would fit in the place of running jobs of their own priority, a
running job that has run at least one slice in its current attempt (counted from when its workers
started, not from its admission: a start can take longer than a slice, and a slice spent starting
would send two jobs back and forth with almost no step run in either turn) is paused at its next
checkpoint and requeued behind them (Gandiva's slices, Tiresias's least attained service):
waiting jobs are served least attained service (resources × seconds, over all attempts) first,
and running jobs with the most attained service are rotated out first. A job is only rotated
out for a waiting one that has had strictly less service, so two jobs swap once per slice at
most and never back and forth within one (no ping-pong), and only as many are rotated out as
the waiting job needs.

A job known to ignore its checkpoint (``resumable`` False) is never rotated out: each turn
would throw its whole attempt away, and a job longer than one slice would then never finish.
(Strictly higher priorities may still preempt it, as a last resort: ``policy.preemption``.)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .queue import Entry, Resources, fits, subtract


def slice_from_env(environ: Mapping[str, str] | None = None) -> float | None:
    """``$TRAINQ_TIME_SLICE_S`` in seconds, or None when time slicing is off (unset, empty or 0)."""
    raw = (os.environ if environ is None else environ).get("TRAINQ_TIME_SLICE_S", "")
    if not raw.strip():
        return None
    value = float(raw)
    if value < 0 or math.isnan(value) or math.isinf(value):
        raise ValueError(f"TRAINQ_TIME_SLICE_S must be a number of seconds >= 0 (got {raw!r})")
    return value or None


@dataclass(frozen=True)
class Sliced:
    """A running job as time slicing sees it."""

    job_id: str
    priority: int
    demand: Mapping[str, float]
    running_since: float  # when its current attempt's workers started (it entered ``running``)
    attained: float  # resources × seconds over all its attempts (its dominant share × seconds)
    preemptible: bool = True
    stopping: bool = False
    resumable: bool | None = None  # False: its train function never reads its checkpoint


@dataclass(frozen=True)
class Rotation:
    """Pause ``job_id`` at its next checkpoint and requeue it behind ``for_jobs``."""

    job_id: str
    for_jobs: list[str] = field(default_factory=list)


#: Whether the places of these running jobs, with what is free, hold the waiting job on the nodes
#: (its accelerator types, its placement strategy); the totals alone decide without one.
Holds = Callable[[Entry, Sequence[Sliced]], bool]


def rotate_out(waiting: Sequence[Entry], attained: Mapping[str, float], running: Sequence[Sliced],
               free: Mapping[str, float], now: float, slice_s: float, holds: Holds | None = None) -> list[Rotation]:
    """Which running jobs to rotate out now so that waiting jobs of equal priority get a turn.

    ``waiting`` are the queued jobs that did not start in this pass; ``attained`` their service
    so far (0 when absent). Each waiting job, least attained first, may take the place of
    running jobs of its priority that ran at least ``slice_s`` in this attempt (since their workers
    started) and had strictly more service than it, most served first; only if their places (with
    what is free) hold it, in total and, given ``holds``, on the nodes: a job whose place the
    waiting one could not use (another accelerator type, another node) is passed over for one
    whose place it can, rather than the waiting job going without a turn.
    """
    room: Resources = dict(free)
    pool = sorted((r for r in running if r.preemptible and not r.stopping and r.resumable is not False
                   and now - r.running_since >= slice_s), key=lambda r: (-r.attained, r.job_id))
    taken: dict[str, list[str]] = {}
    for w in sorted(waiting, key=lambda e: (-e.priority, attained.get(e.job_id, 0.0), e.seq)):
        mine = attained.get(w.job_id, 0.0)
        if fits(w.demand, room):  # room freed for an earlier waiting job is not counted twice
            room = subtract(room, w.demand)
            continue
        eligible = [r for r in pool if r.job_id not in taken and r.priority == w.priority and r.attained > mine]
        places = _places(w, eligible, room, holds)
        if places is None:
            continue
        chosen, trial = places
        for r in chosen:
            taken[r.job_id] = [w.job_id]
        room = subtract(trial, w.demand)
    return [Rotation(job_id, for_jobs) for job_id, for_jobs in taken.items()]


#: How many sets of places, each enough in total, are checked on the nodes for one waiting job
#: before it goes without a turn this pass: the check walks the nodes, and a pass must stay
#: about linear in the queue when many waiting jobs fit no running job's place.
NODE_CHECKS = 8


def _places(w: Entry, eligible: Sequence[Sliced], room: Resources,
            holds: Holds | None) -> tuple[list[Sliced], Resources] | None:
    """The running jobs, most served first, whose places with ``room`` hold ``w`` (and the room
    they leave with it), each of them needed; None when none do."""
    chosen: list[Sliced] = []
    trial = dict(room)
    checks = 0
    for r in eligible:
        chosen.append(r)
        trial = {**trial, **{k: trial.get(k, 0.0) + v for k, v in r.demand.items()}}
        if not fits(w.demand, trial):
            continue
        if holds is None or holds(w, chosen):
            break
        checks += 1
        if checks >= NODE_CHECKS:
            return None
    else:
        return None
    for r in list(reversed(chosen[:-1])):  # drop the ones not needed, least served first
        without = subtract(trial, r.demand)
        rest = [c for c in chosen if c is not r]
        if fits(w.demand, without) and (holds is None or holds(w, rest)):
            chosen, trial = rest, without
    return chosen, trial
