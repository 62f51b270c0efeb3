"""What the multi-node scenarios (``tests/*_scenario.py``, each run in a process of its own by
``tests/scenarios.py``) share: the jobs folder, waiting for a condition, and a timeline."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: the tiny train functions (tests/jobs), shipped to the workers as the jobs' working_dir
JOBS_DIR = str(Path(__file__).parent / "jobs")


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.2) -> Any:
    """The predicate's first true value, polled every ``every_s``; ``TimeoutError(what)`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(what)


def timeline(out: dict[str, Any]) -> Callable[[str], None]:
    """A ``mark(what)`` that records seconds since now in ``out["timeline"]``: where a scenario's
    time goes, for whoever makes it faster."""
    out["timeline"] = {}
    t0 = time.monotonic()

    def mark(what: str) -> None:
        out["timeline"][what] = round(time.monotonic() - t0, 1)

    return mark
