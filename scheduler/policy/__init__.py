"""Pure policies: each one takes a snapshot (and the clock) and returns decisions; none touches Ray.

- ``queue``: queue order, gang admission (totals and per node), positions.
- ``placement``: whether a gang of identical workers fits on the free resources of the nodes.
- ``preemption``: which running jobs to pause (at a checkpoint) to make room for the head.
- ``failure``: what the end of an attempt, or the loss of its runner, means for the job.
- ``pausing``: the deadline a pause gets from the job's own checkpoint cadence, and when to expect it.
- ``quota``: guaranteed and max resources per user; borrowing beyond the guarantee; reclaiming.
- ``fairshare``: decayed usage per user and the fair order within a priority.
- ``backfill``: the head's reservation and the jobs that may start around it without delaying it.
- ``timeslice``: which running jobs make way for equal-priority waiting ones (opt-in).
- ``pending``: why a queued job waits, and its ETA.
- ``elastic``: an elastic job's start size, growing into idle room, shrinking before pausing.
- ``simulate``: a discrete-event simulation of the queue, for property tests and benchmarks.

``core.Scheduler`` carries the decisions out through its one transition function.
"""

from .placement import gang_fits, place_gang
from .queue import Entry, QueueIndex, Resources, add, admit, fits, head, never_fits, queue_key, ready, subtract

__all__ = ["Entry", "QueueIndex", "Resources", "add", "admit", "fits", "gang_fits", "head", "never_fits", "place_gang",
           "queue_key", "ready", "subtract"]
