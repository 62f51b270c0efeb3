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
- When the nodes are known (``nodes``, free per node id), "fits" means the head's gang can be
  placed (one of its accelerator types, its strategy: ``accelerators.choose``) on the nodes as
  they would be once the victims (and jobs already stopping) have freed *their* nodes, as
  admission recorded them (``Candidate.nodes``): room freed on the wrong nodes is no room. A
  candidate whose nodes are unknown frees room on no node. Placement is monotone in free room, so
  the greedy-then-trim choice keeps only victims each of which is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .accelerators import Choice, choose
from .queue import Entry, Resources, add, fits


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
    worker: Mapping[str, float] = field(default_factory=dict)  # one worker's resources, as placed
    nodes: Mapping[str, int] | None = None  # workers per node id, as admission placed it (None: unknown)
    #: when its workers started (it entered ``running``); None: not known (its attempt's start counts)
    running_since: float | None = None


@dataclass(frozen=True)
class Preemption:
    """What to do for the head: pause ``victims``; ``waiting_for`` are already stopping."""

    head: str
    victims: list[str] = field(default_factory=list)
    waiting_for: list[str] = field(default_factory=list)
    lost_work_s: dict[str, float] = field(default_factory=dict)  # expected, per victim
    #: with nodes known: the head's type and workers per node id in the room made for it
    accelerator_type: str | None = None
    placement: dict[str, int] | None = None


def dominant_share(demand: Mapping[str, float], capacity: Mapping[str, float]) -> float:
    """The largest fraction of any one resource of the cluster that ``demand`` holds."""
    shares = [amount / capacity[name] for name, amount in demand.items() if capacity.get(name, 0) > 0]
    return max(shares, default=0.0)


def expected_loss_s(c: Candidate, now: float) -> float:
    """Seconds of work a pause now would redo: since the last checkpoint, or since the attempt began."""
    base = c.last_checkpoint_at if (c.last_checkpoint_at is not None and c.resumable is not False) \
        else c.attempt_started_at
    return max(0.0, now - base)


def running_from(c: Candidate) -> float:
    """When ``c``'s attempt started running: its workers' start, not its admission. The minimum
    runtime and the elastic churn bound count from here: a start can take minutes (a GPU job
    loading its model), and counted from the admission a job slower to start than the bound lost
    its protection the moment it ran (seen on a real Ray: a grow 0.06 s after a 10 s start)."""
    return c.running_since if c.running_since is not None else c.attempt_started_at


def running_for(c: Candidate, now: float) -> float:
    """How long ``c``'s attempt has run (``running_from``)."""
    return now - running_from(c)


def eligible(c: Candidate, head_priority: int, now: float) -> bool:
    """Whether ``c`` may be preempted for a job of ``head_priority`` now."""
    return (not c.stopping and c.preemptible and c.priority < head_priority
            and running_for(c, now) >= c.min_runtime_s)


def eligible_from(holders: Sequence[Candidate], head_priority: int, now: float) -> list[float]:
    """The moments after ``now`` at which a holder becomes a victim for ``head_priority`` (its
    attempt past its ``min_runtime_s`` of running), earliest first: when a preemption blocked only by
    minimum runtimes could happen (a pending reason's ETA)."""
    return sorted({at for c in holders if not c.stopping and c.preemptible and c.priority < head_priority
                   and (at := running_from(c) + c.min_runtime_s) > now})


def choose_victims(head_id: str, head_priority: int, head_demand: Mapping[str, float],
                   holders: Sequence[Candidate], free: Mapping[str, float],
                   capacity: Mapping[str, float], now: float, *, gang: Entry | None = None,
                   nodes: Mapping[str, Mapping[str, float]] | None = None) -> Preemption | None:
    """The preemption that lets the head start, or None when it fits or nothing can make room.

    ``gang`` (the head's queue entry) and ``nodes`` (free per node id) make the choice node-aware;
    without them it reasons over totals (``free``) alone."""
    room = _Room(free, nodes, gang, head_demand)
    if room.fits():
        return None
    stopping = [c for c in holders if c.stopping]
    for c in stopping:
        room.add(c)
    if room.fits():
        return Preemption(head_id, waiting_for=[c.job_id for c in stopping], accelerator_type=room.where()[0],
                          placement=room.where()[1])
    ranked = sorted((c for c in holders if eligible(c, head_priority, now)), key=lambda c: (
        c.resumable is False, c.priority, dominant_share(c.demand, capacity) * expected_loss_s(c, now),
        -c.attempt_started_at))
    chosen: list[Candidate] = []
    for c in ranked:
        chosen.append(c)
        room.add(c)
        if room.fits():
            break
    else:
        return None
    for c in reversed(chosen[:-1]):  # most expensive first; the last one taken made it fit
        room.add(c, -1)
        if room.fits():
            chosen.remove(c)
        else:
            room.add(c)
    return Preemption(head_id, victims=[c.job_id for c in chosen], waiting_for=[c.job_id for c in stopping],
                      lost_work_s={c.job_id: round(expected_loss_s(c, now), 3) for c in chosen},
                      accelerator_type=room.where()[0], placement=room.where()[1])


class _Room:
    """The room a head would have: totals, and per node when the nodes are known."""

    def __init__(self, free: Mapping[str, float], nodes: Mapping[str, Mapping[str, float]] | None,
                 gang: Entry | None, demand: Mapping[str, float]) -> None:
        self.total: Resources = dict(free)
        self.nodes = {n: dict(r) for n, r in nodes.items()} if nodes is not None and gang is not None else None
        self.gang, self.demand = gang, demand

    def add(self, c: Candidate, sign: int = 1) -> None:
        self.total = add(self.total, {k: sign * v for k, v in c.demand.items()})
        if self.nodes is not None and c.nodes is not None:
            for node_id, count in c.nodes.items():
                if node_id in self.nodes:  # a node gone since frees nothing
                    self.nodes[node_id] = add(self.nodes[node_id], {k: sign * v * count for k, v in c.worker.items()})

    def _choice(self) -> Choice | None:
        if self.gang is None:
            return None
        return choose(self.gang, self.total, None if self.nodes is None else list(self.nodes.values()))

    def fits(self) -> bool:
        return self._choice() is not None if self.gang is not None else fits(self.demand, self.total)

    def where(self) -> tuple[str | None, dict[str, int] | None]:
        """The head's type, and workers per node id when the nodes are known, in this room."""
        choice = self._choice()
        if choice is None or self.nodes is None or choice.placement is None:
            return (None if choice is None else choice.accelerator_type), None
        ids = list(self.nodes)
        return choice.accelerator_type, {ids[i]: k for i, k in enumerate(choice.placement) if k}


