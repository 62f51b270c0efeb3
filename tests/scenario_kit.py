"""What the multi-node scenarios (``tests/*_scenario.py``, each run in a process of its own by
``tests/scenarios.py``) share: the jobs folder, waiting for a condition (``helpers``'), and a timeline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from helpers import JOBS_DIR
from helpers import wait_until as wait_for

__all__ = ["JOBS_DIR", "timeline", "wait_for"]


def timeline(out: dict[str, Any]) -> Callable[[str], None]:
    """A ``mark(what)`` that records seconds since now in ``out["timeline"]``: where a scenario's
    time goes, for whoever makes it faster."""
    out["timeline"] = {}
    t0 = time.monotonic()

    def mark(what: str) -> None:
        out["timeline"][what] = round(time.monotonic() - t0, 1)

    return mark
