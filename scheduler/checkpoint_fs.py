"""The checkpoint-storage seam: does a checkpoint still exist, how big is it, delete it.

The core asks these questions through ``CheckpointFS`` (a ``Protocol`` passed in, like the store
and the launcher); ``StorageFS`` answers them for local folders (NFS included) with ``os`` and
for URIs (``s3://...``, ``gs://...``) with ``pyarrow.fs``, which Ray Train itself uses for storage.
``BackgroundDeletes`` keeps slow deletions (a 14 GB folder on NFS or S3) off the scheduler's
call path: the core records ``deleted`` at once, the folder goes in a worker thread.
``sweep_leftovers`` is the start-up sweep: a checkpoint recorded as deleted whose folder is still
there (the process died between the record and the deletion, or the deletion failed) is removed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

logger = logging.getLogger("trainq.checkpoints")


class CheckpointFS(Protocol):
    """What the core needs to know about, and do to, a checkpoint folder."""

    def complete(self, path: str) -> bool:
        """True when the checkpoint folder exists and is not empty."""

    def size(self, path: str) -> int | None:
        """Bytes of every file under the folder (None when it cannot be read)."""

    def delete(self, path: str) -> None:
        """Remove the folder and everything under it; a folder already gone is fine."""


class StorageFS:
    """Local folders with ``os``/``shutil``; URIs with ``pyarrow.fs``.

    "Complete" means the folder exists and is non-empty: Ray Train writes (uploads) a checkpoint
    folder fully before it registers the checkpoint and calls the report callback, so a folder
    trainq recorded is either whole or was damaged later, by hand or by another process; an
    emptied or removed folder is what such damage looks like.
    """

    def complete(self, path: str) -> bool:
        if "://" not in path:
            try:
                with os.scandir(path) as entries:
                    return any(True for _ in entries)
            except OSError:  # missing, not a folder, unreadable: not something to resume from
                return False
        from pyarrow import fs as pafs

        filesystem, inner = arrow_fs(path)
        try:
            return bool(filesystem.get_file_info(pafs.FileSelector(inner, recursive=False)))
        except (FileNotFoundError, OSError):
            return False

    def size(self, path: str) -> int | None:
        if "://" not in path:
            if not os.path.isdir(path):
                return None
            total = 0
            for folder, _, files in os.walk(path):
                for name in files:
                    try:
                        total += os.lstat(os.path.join(folder, name)).st_size
                    except OSError:
                        pass  # removed while we walked
            return total
        from pyarrow import fs as pafs

        filesystem, inner = arrow_fs(path)
        try:
            infos = filesystem.get_file_info(pafs.FileSelector(inner, recursive=True))
        except (FileNotFoundError, OSError):
            return None
        return sum(i.size or 0 for i in infos if i.type == pafs.FileType.File)

    def delete(self, path: str) -> None:
        if "://" not in path:
            try:
                shutil.rmtree(path)
            except FileNotFoundError:
                pass
            return
        filesystem, inner = arrow_fs(path)
        try:
            filesystem.delete_dir(inner)
        except FileNotFoundError:
            pass


def arrow_fs(uri: str) -> tuple[Any, str]:
    """``pyarrow.fs`` filesystem and path inside it for a URI (``s3://bucket/key`` -> S3, ``bucket/key``).

    Credentials and endpoint come from the environment as for Ray Train (``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``...), so the scheduler reads what the workers wrote.
    """
    from pyarrow import fs as pafs

    filesystem, inner = pafs.FileSystem.from_uri(uri)
    return filesystem, inner


class BackgroundDeletes:
    """Another ``CheckpointFS`` whose deletions run one at a time in a worker thread.

    One thread, so deletions never compete with each other for the storage's bandwidth, and
    they happen in the order the core decided them. A failed deletion is logged (the record
    already says ``deleted``; the folder is left for an operator to remove).
    """

    def __init__(self, inner: CheckpointFS) -> None:
        self.inner = inner
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainq-delete")

    def complete(self, path: str) -> bool:
        return self.inner.complete(path)

    def size(self, path: str) -> int | None:
        return self.inner.size(path)

    def delete(self, path: str) -> None:
        self._pool.submit(self._delete, path).add_done_callback(_log_failure)

    def _delete(self, path: str) -> str:
        self.inner.delete(path)
        return path

    def remove_leftovers(self, paths: Iterable[str]) -> Future[SweepOutcome]:
        """``remove_leftovers`` on the inner storage, in the deletion thread (after what is queued)."""
        return self._pool.submit(remove_leftovers, self.inner, list(paths))

    def drain(self, timeout_s: float | None = None) -> None:
        """Wait for every deletion queued so far (tests, shutdown)."""
        self._pool.submit(lambda: None).result(timeout=timeout_s)


def _log_failure(future: Future[str]) -> None:
    err = future.exception()
    if err is not None:
        logger.error("deleting a checkpoint failed: %s: %s", type(err).__name__, err)


# -- the start-up sweep -------------------------------------------------------------------------------
class Leftover(NamedTuple):
    """A checkpoint the registry records as deleted, which the sweep may remove from storage."""

    job_id: str
    path: str
    deleted_at: float


@dataclass(frozen=True)
class SweepOutcome:
    """What a sweep did: how many recorded deletions it checked, which folders it found still on
    storage and removed (and their bytes), and which it could not remove."""

    checked: int = 0
    removed: tuple[str, ...] = ()
    bytes_freed: int = 0
    failed: tuple[str, ...] = ()


def remove_leftovers(fs: CheckpointFS, paths: Iterable[str]) -> SweepOutcome:
    """Remove each of ``paths`` that is still on storage (blocking: run it off the event loop).

    Callers pass only checkpoints the registry records as deleted. One folder that cannot be
    removed (a permission, a network error) is logged and counted, and the rest still go.
    """
    checked, removed, failed, freed = 0, [], [], 0
    for path in paths:
        checked += 1
        size = fs.size(path)
        if size is None:  # gone, as it should be: the common case
            continue
        try:
            fs.delete(path)
        except OSError as err:  # keep going: one bad folder must not keep the others on storage
            logger.warning("sweep: could not remove %s: %s: %s", path, type(err).__name__, err)
            failed.append(path)
            continue
        removed.append(path)
        freed += size
    return SweepOutcome(checked, tuple(removed), freed, tuple(failed))


class SweepSource(Protocol):
    """What the sweep reads from and reports to (the core's ``Checkpoints``)."""

    def sweep_window(self) -> tuple[float | None, float]:
        """``(since, now)``: look at deletions recorded from ``since`` (None: all); ``now`` begins this sweep."""

    def leftovers(self, since: float | None, offset: int, limit: int) -> tuple[list[Leftover], int | None]:
        """One page of jobs' leftovers, and the next page's offset (None: that was the last)."""

    def swept(self, began_at: float, found: list[Leftover], outcome: SweepOutcome) -> None:
        """Record what the sweep did, and from when the next one must look."""


async def sweep_leftovers(source: SweepSource, fs: CheckpointFS, page_jobs: int = 500) -> SweepOutcome | None:
    """The start-up sweep: remove the checkpoints recorded as deleted that are still on storage.

    Run as a background task: the registry is read a page of jobs at a time with the event loop
    free in between, and storage (S3 can take seconds per folder) is touched only in a thread
    (``BackgroundDeletes``' own, after the deletions already queued), so start-up never waits for it.
    Returns what it did, or None when it failed (logged; the next start sweeps the same again).
    """
    try:
        return await _sweep(source, fs, page_jobs)
    except Exception:  # a background task nobody awaits: log it, never lose it silently
        logger.exception("sweep: failed; the next start tries again")
        return None


async def _sweep(source: SweepSource, fs: CheckpointFS, page_jobs: int) -> SweepOutcome:
    since, began_at = source.sweep_window()
    found: list[Leftover] = []
    offset: int | None = 0
    while offset is not None:
        page, offset = source.leftovers(since, offset, page_jobs)
        found += page
        await asyncio.sleep(0)  # calls are served between pages
    paths = [f.path for f in found]
    if isinstance(fs, BackgroundDeletes):
        outcome = await asyncio.wrap_future(fs.remove_leftovers(paths))
    else:
        outcome = await asyncio.to_thread(remove_leftovers, fs, paths)
    source.swept(began_at, found, outcome)
    if outcome.removed or outcome.failed:
        logger.warning("sweep: removed %d checkpoint(s) recorded as deleted but still on storage (%d bytes);"
                       " %d could not be removed", len(outcome.removed), outcome.bytes_freed, len(outcome.failed))
    else:
        logger.info("sweep: %d checkpoint(s) recorded as deleted since the last sweep, none left on storage",
                    outcome.checked)
    return outcome
