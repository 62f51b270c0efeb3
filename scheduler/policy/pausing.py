"""How long a pause may wait for a checkpoint, and when it is expected to land, pure.

A pause without an explicit deadline gets one from the job's own checkpoint cadence in its
current attempt: ``1.5 ×`` the median interval between its checkpoint reports, at least
``floor_s`` and at most ``max_wait_s``. With no checkpoint report yet it gets ``default_s``
(the seed's 30 s). One report gives one interval, counted from the attempt's start (which
includes start-up, so it errs long). A loop that uses the cooperative hook checkpoints at its
next step, so its pause is expected within about one step.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: Time from a checkpoint report to a stopped run (report poll + graceful abort), for estimates.
STOP_ALLOWANCE_S = 2.0


@dataclass(frozen=True)
class PausePlan:
    """A pause's deadline (None: wait for the checkpoint however long) and its expected end."""

    deadline_at: float | None
    expected_at: float | None
    cadence_s: float | None  # median seconds between checkpoint reports, when known
    message: str


def cadence(attempt_started_at: float, checkpoint_times: Sequence[float]) -> float | None:
    """Median seconds between checkpoint reports in this attempt (None before the first)."""
    times = sorted(checkpoint_times)
    if not times:
        return None
    if len(times) == 1:
        return max(0.0, times[0] - attempt_started_at)
    return statistics.median(b - a for a, b in itertools.pairwise(times))


def plan_pause(now: float, attempt_started_at: float, checkpoint_times: Sequence[float], *,
               step_s: float | None = None, cooperative: bool = False, deadline_s: float | None = None,
               wait_forever: bool = False, default_s: float = 30.0, floor_s: float = 30.0,
               max_wait_s: float = 1800.0) -> PausePlan:
    """The deadline and expected end of a pause asked for at ``now``."""
    every = cadence(attempt_started_at, checkpoint_times)
    expected: float | None = None
    if cooperative:
        expected = now + (step_s or 1.0) + STOP_ALLOWANCE_S
        said = "its loop checkpoints at its next step on request"
    elif every is not None:
        next_at = max(now, max(checkpoint_times) + every)
        expected = next_at + STOP_ALLOWANCE_S
        said = f"checkpoints about every {_secs(every)}"
    else:
        said = "no checkpoint reported yet in this attempt"
    if wait_forever:
        deadline = None
    elif deadline_s is not None:
        deadline = now + deadline_s
    elif every is None:
        deadline = now + default_s
    else:
        deadline = now + min(max_wait_s, max(floor_s, 1.5 * every))
    if expected is not None and deadline is not None:
        expected = min(expected, deadline + STOP_ALLOWANCE_S)
    parts = [said]
    if expected is not None:
        parts.append(f"expected paused within ~{_secs(expected - now)}")
    parts.append("no deadline: it waits for the checkpoint however long it takes" if deadline is None
                 else f"at the latest in {_secs(deadline - now)}, then it is stopped at its last checkpoint")
    return PausePlan(deadline, expected, every, "; ".join(parts))


def _secs(s: float) -> str:
    if s >= 600:
        return f"{s / 60:.0f} min"
    return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
