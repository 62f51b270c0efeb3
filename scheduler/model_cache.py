"""The model cache: models downloaded from the HuggingFace hub into shared storage.

Each model lives in ``<root>/<org>--<name>/`` (a plain folder ``from_pretrained`` can load),
with its state in ``<root>/<org>--<name>.json``: ``downloading`` (with bytes done/total),
``ready`` or ``failed``. A download first lands in a ``.partial-`` folder and is moved into
place only when complete, so a job never sees half a model. Progress is measured on disk, the
same whatever transport ``huggingface_hub`` uses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import IllegalTransition, InvalidSpec, MissingOnServer, TrainqError

# ASCII and without "..", in a form a JSON Schema (the OpenAPI document) can state as it is:
# dots only between other characters, so no segment can be ".." or climb out of the cache.
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*"
MODEL_ID_PATTERN = rf"^{_SEGMENT}(/{_SEGMENT})?$"
MODEL_ID_RE = re.compile(MODEL_ID_PATTERN)
MODEL_ID_MAX = 200


class ModelNotFound(TrainqError):
    """The model is not in the cache."""

    code = "not_found"

    def __init__(self, model_id: str) -> None:
        super().__init__(f"model {model_id!r} is not in the model cache", model_id=model_id)


def check_model_id(model_id: str) -> str:
    """A hub model id ("org/name" or "name"), or InvalidSpec."""
    if not isinstance(model_id, str) or len(model_id) > MODEL_ID_MAX or not MODEL_ID_RE.match(model_id):
        raise InvalidSpec(f"model_id {model_id!r} is not a hub model id like 'org/name'", field="model_id")
    return model_id


class ModelCache:
    """Download, list, find and delete cached models."""

    def __init__(self, root: str, endpoint: str | None = None, poll_s: float = 0.25) -> None:
        self.root = Path(root)
        self.endpoint = endpoint or None
        self.poll_s = poll_s

    @staticmethod
    def default_root() -> str:
        from .config import Settings

        return str(Path(Settings().storage_root) / "models")

    def folder(self, model_id: str) -> Path:
        return self.root / check_model_id(model_id).replace("/", "--")

    def _meta(self, model_id: str) -> Path:
        return self.root / f"{check_model_id(model_id).replace('/', '--')}.json"

    def entry(self, model_id: str) -> dict[str, Any]:
        """The model's state, or ModelNotFound."""
        path = self._meta(model_id)
        if not path.exists():
            raise ModelNotFound(model_id)
        return json.loads(path.read_text())

    def list(self) -> list[dict[str, Any]]:
        """Every model the cache knows, by id."""
        if not self.root.is_dir():
            return []
        return sorted((json.loads(p.read_text()) for p in self.root.glob("*.json")), key=lambda e: e["model_id"])

    def path_of(self, model_id: str) -> str:
        """The folder of a ready model (for ``from_pretrained``)."""
        try:
            entry = self.entry(model_id)
        except (ModelNotFound, InvalidSpec):  # not even an id: neither a folder nor a cached model
            raise MissingOnServer(f"model {model_id!r} is neither a folder nor in the model cache;"
                              f" download it first: trainq models pull {model_id}", field="config.model") from None
        if entry["status"] != "ready":
            raise MissingOnServer(f"model {model_id!r} is {entry['status']} in the model cache, not ready",
                              field="config.model")
        return entry["path"]

    def delete(self, model_id: str) -> dict[str, Any]:
        """Remove a model that is not downloading."""
        entry = self.entry(model_id)
        if entry["status"] == "downloading":
            raise IllegalTransition(model_id, "downloading", "deleted", "delete model")
        shutil.rmtree(self.folder(model_id), ignore_errors=True)
        self._meta(model_id).unlink(missing_ok=True)
        return {**entry, "status": "deleted"}

    def start(self, model_id: str, revision: str | None = None) -> dict[str, Any]:
        """Record a download as started (call ``download`` next, off the caller's thread)."""
        check_model_id(model_id)
        try:
            if self.entry(model_id)["status"] == "downloading":
                return self.entry(model_id)
        except ModelNotFound:
            pass
        entry = {"model_id": model_id, "revision": revision, "status": "downloading", "bytes_done": 0,
                 "bytes_total": None, "path": str(self.folder(model_id)), "error": None,
                 "started_at": time.time(), "finished_at": None}
        self._write(entry)
        return entry

    def download(self, model_id: str, revision: str | None = None,
                 on_progress: Callable[[dict[str, Any]], None] = lambda e: None) -> dict[str, Any]:
        """Download (blocking) into the cache, reporting progress; returns the final entry."""
        from huggingface_hub import HfApi, snapshot_download

        entry = self.start(model_id, revision) if not self._meta(model_id).exists() else self.entry(model_id)
        partial = self.root / f".partial-{model_id.replace('/', '--')}"
        done = threading.Event()
        try:
            info = HfApi(endpoint=self.endpoint).model_info(model_id, revision=revision, files_metadata=True)
            entry["bytes_total"] = sum(s.size or 0 for s in info.siblings or [])
            entry["revision"] = info.sha or revision
            self._write(entry)
            on_progress(dict(entry))
            watcher = threading.Thread(target=self._watch, args=(entry, partial, done, on_progress), daemon=True)
            watcher.start()
            snapshot_download(model_id, revision=revision, local_dir=partial, endpoint=self.endpoint)
            done.set()
            watcher.join()
            shutil.rmtree(partial / ".cache", ignore_errors=True)
            final = self.folder(model_id)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(partial, final)
            entry.update(status="ready", bytes_done=entry["bytes_total"], finished_at=time.time())
        except Exception as e:  # noqa: BLE001 - any failure is the download's state, shown to users
            done.set()
            shutil.rmtree(partial, ignore_errors=True)
            entry.update(status="failed", error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                         finished_at=time.time())
        self._write(entry)
        on_progress(dict(entry))
        return entry

    def recover(self) -> None:
        """After a restart no download is running: mark interrupted ones as failed."""
        for entry in self.list():
            if entry["status"] == "downloading":
                entry.update(status="failed", error="interrupted (the scheduler restarted); pull it again")
                self._write(entry)

    def _watch(self, entry: dict[str, Any], partial: Path, done: threading.Event,
               on_progress: Callable[[dict[str, Any]], None]) -> None:
        while not done.wait(self.poll_s):
            size = sum(f.stat().st_size for f in partial.rglob("*") if f.is_file()) if partial.exists() else 0
            # .cache holds in-flight ".incomplete" files; the total may briefly overshoot by metadata.
            entry["bytes_done"] = min(size, entry["bytes_total"] or size)
            self._write(entry)
            on_progress(dict(entry))

    def _write(self, entry: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._meta(entry["model_id"])
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, path)
