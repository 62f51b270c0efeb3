"""Multi-node scenarios run in the background while the rest of the suite runs.

Each scenario (``tests/*_scenario.py``) starts a ``ray.cluster_utils.Cluster`` of its own in a
subprocess, drives trainq through a story and prints one ``RESULT {json}`` line; its test module
asserts on that. A scenario is mostly waiting (nodes starting, checkpoints, drain deadlines), so
the session starts the selected ones as soon as it starts, one after the other in a background
thread, beside the tests in the foreground; a test module that needs a result waits for it there.
Run one after the other, not all at once: three clusters starting together on 2 cores slow each
other down more than they overlap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
TIMEOUT_S = 600


class Scenarios:
    """The background runs of the scenarios a session selected, and their results."""

    def __init__(self, tmp_root: Path) -> None:
        self._tmp_root = tmp_root
        self._done: dict[str, threading.Event] = {}
        self._results: dict[str, dict | str] = {}

    def start(self, scripts: Iterable[str]) -> None:
        """Runs each script (a file name in tests/) in turn, in one background thread."""
        scripts = [s for s in dict.fromkeys(scripts) if s not in self._done]
        for script in scripts:
            self._done[script] = threading.Event()
        if scripts:
            threading.Thread(target=self._run_all, args=(scripts,), name="scenarios", daemon=True).start()

    def result(self, script: str) -> dict:
        """The scenario's RESULT object, once it has run (started now if it was not selected at
        session start); fails the calling test with the scenario's output if it failed."""
        if script not in self._done:
            self.start([script])
        self._done[script].wait(TIMEOUT_S + 60)
        result = self._results.get(script, f"{script} did not finish")
        if isinstance(result, str):
            pytest.fail(result, pytrace=False)
        return result

    def _run_all(self, scripts: list[str]) -> None:
        for script in scripts:
            try:
                self._results[script] = self._run(script)
            except Exception as e:  # noqa: BLE001 - reported to the test that reads the result
                self._results[script] = f"{script}: {type(e).__name__}: {e}"
            finally:
                self._done[script].set()

    def _run(self, script: str) -> dict | str:
        tmp = self._tmp_root / Path(script).stem
        tmp.mkdir(parents=True, exist_ok=True)
        # never the session's Ray: each scenario starts and addresses its own cluster
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
        proc = subprocess.run([sys.executable, str(TESTS_DIR / script), str(tmp)], capture_output=True,
                              text=True, timeout=TIMEOUT_S, env=env, check=False)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            return f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        return json.loads(lines[-1][len("RESULT "):])
