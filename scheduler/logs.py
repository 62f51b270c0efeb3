"""Run logs: every worker's output (and the runner's) teed into the attempt's folder.

Files live next to the checkpoints, ``<job root>/<run name>/logs/<source>.log``, so on a
cluster they are on shared storage and the scheduler (on the head) can read any of them
without the dashboard. Output still goes to Ray's own logs as well.

On a local or NFS folder the copy is appended to as the process writes. Object storage
(``s3://``) has no append, so there the copy is a local file that a background thread uploads
whole to the same place every ``TRAINQ_LOG_UPLOAD_S`` seconds (default 5) when it grew, and once
more when the process calls ``sync()`` (the end of a train function, the end of a run).
Reading goes through ``pyarrow.fs``, as Ray Train's own storage does.
"""

from __future__ import annotations

import atexit
import contextvars
import io
import logging
import os
import sys
import tempfile
import threading
from collections import deque
from typing import Any, TextIO

from .checkpoint_fs import arrow_fs

#: URI schemes whose logs trainq writes and reads (object storage, through ``pyarrow.fs``).
#: Others (gs://, hdfs://...) are left alone: untested here, and reading them may reach for
#: credentials services the scheduler should not call on a request's behalf.
URI_SCHEMES = ("s3://",)
#: bytes read from the end of a log on object storage, per line asked for (and at least 64 KiB)
_BYTES_PER_LINE = 1024


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
    """The attempt's log folder (a path or an ``s3://`` URI), or None for storage trainq does not log to."""
    if "://" in attempt_dir and not attempt_dir.startswith(URI_SCHEMES):
        return None
    return attempt_dir.rstrip("/") + "/logs" if "://" in attempt_dir else os.path.join(attempt_dir, "logs")


class _Uploader:
    """Uploads a growing local file to object storage, whole, when it changed."""

    def __init__(self, local: str, uri: str, interval_s: float) -> None:
        self.local, self.uri, self.interval_s = local, uri, interval_s
        self._uploaded = -1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._loop, name="trainq-log-upload", daemon=True).start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sync()

    def sync(self) -> None:
        """Upload now if the file grew since the last upload; a failure is retried next time."""
        with self._lock:  # the timer thread and sync() at the end must not upload at once
            try:
                size = os.path.getsize(self.local)
                if size == self._uploaded:
                    return
                filesystem, path = arrow_fs(self.uri)
                with open(self.local, "rb") as src, filesystem.open_output_stream(path) as out:
                    out.write(src.read())
                self._uploaded = size
            except Exception as e:  # noqa: BLE001 - logging must never break a training run
                if sys.__stderr__ is not None:  # None in a process started without a stderr
                    sys.__stderr__.write(f"trainq: uploading {self.local} to {self.uri} failed: {e}\n")


_uploaders: list[_Uploader] = []


def tee_output(attempt_dir: str, source: str) -> None:
    """Copy this process's stdout and stderr into ``<attempt_dir>/logs/<source>.log``."""
    folder = log_dir(attempt_dir)
    if folder is None or isinstance(sys.stdout, _Tee):
        return
    if "://" in folder:
        local_dir = tempfile.mkdtemp(prefix="trainq-logs-")
        local = os.path.join(local_dir, f"{source}.log")
        open(local, "a").close()
        interval_s = float(os.environ.get("TRAINQ_LOG_UPLOAD_S", "5"))
        _uploaders.append(_Uploader(local, f"{folder}/{source}.log", interval_s))
        if len(_uploaders) == 1:
            atexit.register(sync)
    else:
        os.makedirs(folder, exist_ok=True)
        local = os.path.join(folder, f"{source}.log")
    copy = open(local, "a", buffering=1)  # noqa: SIM115 - lives with the process
    sys.stdout = _Tee(sys.stdout, copy)
    sys.stderr = _Tee(sys.stderr, copy)


def open_log(attempt_dir: str, source: str) -> tuple[TextIO, Any] | None:
    """A file for one log of an attempt, ``<attempt_dir>/logs/<source>.log``, and a function that
    finishes it (closes it, and uploads it to object storage); None where trainq keeps no logs.

    For a log that is not a process's whole output (the runner host's lines of one attempt).
    """
    folder = log_dir(attempt_dir)
    if folder is None:
        return None
    if "://" not in folder:
        os.makedirs(folder, exist_ok=True)
        f = open(os.path.join(folder, f"{source}.log"), "a", buffering=1)  # noqa: SIM115 - closed by finish
        return f, f.close
    local = os.path.join(tempfile.mkdtemp(prefix="trainq-logs-"), f"{source}.log")
    f = open(local, "a", buffering=1)  # noqa: SIM115 - closed by finish
    uploader = _Uploader(local, f"{folder}/{source}.log", float(os.environ.get("TRAINQ_LOG_UPLOAD_S", "5")))

    def finish() -> None:
        f.close()
        uploader.sync()
        uploader._stop.set()
        os.unlink(local)

    return f, finish


def sync() -> None:
    """Upload this process's logs to object storage now (no-op for local folders)."""
    for uploader in _uploaders:
        uploader.sync()


def read_logs(job_root: str, attempt: int, tail: int = 200, run_name: str | None = None) -> dict[str, Any]:
    """The last ``tail`` lines of each log of one attempt, by source (``runner``, ``rank-0`` ...).

    ``run_name`` is the attempt's Ray Train run name (its folder); default ``attempt-<n>``.
    Storage that cannot be read gives no lines and an ``error`` saying why, never an exception.
    """
    name = run_name or f"attempt-{attempt}"
    attempt_dir = f"{job_root.rstrip('/')}/{name}" if "://" in job_root else os.path.join(job_root, name)
    folder = log_dir(attempt_dir)
    out: dict[str, list[str]] = {}
    error = None
    if folder is None:
        error = f"logs are kept only on local or NFS folders and {', '.join(URI_SCHEMES)} storage"
    elif "://" in folder:
        try:
            out = _read_uri_logs(folder, tail)
        except Exception as e:  # noqa: BLE001 - a storage problem is shown, not raised
            error = f"cannot read logs from {folder}: {type(e).__name__}: {e}"
    elif os.path.isdir(folder):
        for entry in sorted(os.listdir(folder)):
            if entry.endswith(".log"):
                with open(os.path.join(folder, entry), errors="replace") as f:
                    out[entry[:-4]] = [line.rstrip("\n") for line in deque(f, maxlen=tail)]
    return {"attempt": attempt, "folder": folder, "logs": out, "error": error}


def _read_uri_logs(folder: str, tail: int) -> dict[str, list[str]]:
    from pyarrow import fs as pafs

    filesystem, inner = arrow_fs(folder)
    infos = filesystem.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
    out: dict[str, list[str]] = {}
    for info in sorted(infos, key=lambda i: i.base_name):
        if info.type != pafs.FileType.File or not info.base_name.endswith(".log"):
            continue
        with filesystem.open_input_file(info.path) as f:
            want = max(65536, tail * _BYTES_PER_LINE)
            start = max(0, f.size() - want)
            f.seek(start)
            lines = f.read().decode(errors="replace").splitlines()
        if start > 0:
            lines = lines[1:]  # the first line read is most likely cut
        out[info.base_name[:-4]] = lines[-tail:]
    return out


#: The attempt whose code runs in this thread or task: routes log records to its runner.log.
ATTEMPT: contextvars.ContextVar[str | None] = contextvars.ContextVar("trainq_attempt", default=None)


class AttemptLog(logging.Handler):
    """The host's log records of one attempt (its own, and Ray Train's from its ``fit()``
    thread) into ``<attempt>/logs/runner.log``, next to the workers' logs."""

    def __init__(self, name: str, file: Any, finish: Any) -> None:
        super().__init__()
        self.attempt = name
        self._file, self._finish = file, finish
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if ATTEMPT.get() == self.attempt:
            self._file.write(self.format(record) + "\n")

    def close(self) -> None:
        self._finish()  # closes the file; on object storage, uploads it
        super().close()


def route(handler: logging.Handler | None, attach: bool) -> None:
    """Attach (or detach) an attempt's handler to the loggers its records come through."""
    if handler is None:
        return
    for name in ("", "ray", "ray.train"):  # Ray's loggers do not all propagate to the root
        (logging.getLogger(name).addHandler if attach else logging.getLogger(name).removeHandler)(handler)
