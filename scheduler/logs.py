"""Run logs: every worker's output (and the runner's) teed into the attempt's folder.

Files live next to the checkpoints, ``<job root>/<run name>/logs/<source>.log``, so on a
cluster they are on shared storage and the scheduler (on the head) can read any of them
without the dashboard. Output still goes to Ray's own logs as well.
"""

from __future__ import annotations

import io
import os
import sys
from collections import deque
from typing import Any, TextIO


class _Tee(io.TextIOBase):
    def __init__(self, original: TextIO, copy: TextIO) -> None:
        self._original, self._copy = original, copy

    def write(self, text: str) -> int:
        self._copy.write(text)
        self._copy.flush()
        return self._original.write(text)

    def flush(self) -> None:
        self._original.flush()
        self._copy.flush()

    def fileno(self) -> int:  # some libraries ask; give them the real stream
        return self._original.fileno()


def log_dir(attempt_dir: str) -> str | None:
    """The attempt's log folder, or None when storage is not a local/NFS path (e.g. s3://)."""
    return None if "://" in attempt_dir else os.path.join(attempt_dir, "logs")


def tee_output(attempt_dir: str, source: str) -> None:
    """Copy this process's stdout and stderr into ``<attempt_dir>/logs/<source>.log``."""
    folder = log_dir(attempt_dir)
    if folder is None or isinstance(sys.stdout, _Tee):
        return
    os.makedirs(folder, exist_ok=True)
    copy = open(os.path.join(folder, f"{source}.log"), "a", buffering=1)  # noqa: SIM115 - lives with the process
    sys.stdout = _Tee(sys.stdout, copy)
    sys.stderr = _Tee(sys.stderr, copy)


def read_logs(job_root: str, attempt: int, tail: int = 200, run_name: str | None = None) -> dict[str, Any]:
    """The last ``tail`` lines of each log of one attempt, by source (``runner``, ``rank-0`` ...).

    ``run_name`` is the attempt's Ray Train run name (its folder); default ``attempt-<n>``.
    """
    attempt_dir = os.path.join(job_root, run_name or f"attempt-{attempt}")
    folder = log_dir(attempt_dir)
    out: dict[str, list[str]] = {}
    if folder and os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".log"):
                with open(os.path.join(folder, name), errors="replace") as f:
                    out[name[:-4]] = [line.rstrip("\n") for line in deque(f, maxlen=tail)]
    return {"attempt": attempt, "folder": folder, "logs": out}
