"""What tests share besides fixtures: paths, the session's token and secret, a spec factory,
and a poller. Importable from any test folder (``tests/`` is on ``sys.path``: see conftest)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: The tests' folder and the repository's root.
TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
#: The tests' train functions (``steps``, ``failing``, ...), used as a job's working_dir.
JOBS_DIR = str(TESTS_DIR / "jobs")
#: Logical CPUs of the session's shared Ray.
RAY_CPUS = 2
#: The API token of the session's HTTP server.
API_TOKEN = "test-token-123"
#: A secret the session's scheduler hands to training workers (setting TRAINQ_SECRET_ENV).
SECRET_VAR, SECRET_VALUE = "TQ_TEST_SECRET", "tq-secret-" + uuid.uuid4().hex


def spec(**overrides: Any) -> dict[str, Any]:
    """A valid spec for the step-counting test job."""
    base: dict[str, Any] = {"entrypoint": "steps:count_steps", "num_workers": 1}
    base.update(overrides)
    return base


def wait_until(predicate: Callable[[], T], timeout_s: float, what: str, poll_s: float = 0.2) -> T:
    """Poll ``predicate`` every ``poll_s`` until it returns something truthy (returned), or time out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(what)
