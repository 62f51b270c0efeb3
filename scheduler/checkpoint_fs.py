"""The checkpoint-storage seam: does a checkpoint still exist, how big is it, delete it.

The core asks these questions through ``CheckpointFS`` (a ``Protocol`` passed in, like the store
and the launcher); ``StorageFS`` answers them for local folders (NFS included) with ``os`` and
for URIs (``s3://...``, ``gs://...``) with ``pyarrow.fs``, which Ray Train itself uses for storage.
``BackgroundDeletes`` keeps slow deletions (a 14 GB folder on NFS or S3) off the scheduler's
call path: the core records ``deleted`` at once, the folder goes in a worker thread.
"""

from __future__ import annotations

import logging
import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

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

    def drain(self, timeout_s: float | None = None) -> None:
        """Wait for every deletion queued so far (tests, shutdown)."""
        self._pool.submit(lambda: None).result(timeout=timeout_s)


def _log_failure(future: Future[str]) -> None:
    err = future.exception()
    if err is not None:
        logger.error("deleting a checkpoint failed: %s: %s", type(err).__name__, err)
