"""The Python HTTP client: ``scheduler.http.HttpClient(url, token)``, the same verbs as the Ray client.

No Ray here: it only needs ``httpx`` (and ``httpx-sse`` for live streams), so it works from any
machine that can reach ``trainq serve``. Errors come back as trainq's own types, rebuilt from
the JSON ``error`` code that ``api/errors.py`` writes: ``not_found`` -> ``JobNotFound``,
``conflict`` -> ``IllegalTransition``, ``invalid`` -> ``InvalidSpec``, ``unauthorized`` ->
``Unauthorized``, ``forbidden`` -> ``Forbidden``, ``unavailable`` -> ``NotReady``, ``too_large`` ->
``TooLarge``; a server that cannot be reached raises ``Unreachable``. Each keeps the body's fields in ``.fields``.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from typing_extensions import Self

from . import states
from .errors import (
    Forbidden,
    IllegalTransition,
    InvalidSpec,
    JobNotFound,
    NotReady,
    TooLarge,
    TrainqError,
    Unauthorized,
)
from .verbs import CheckpointRequested, PauseResult, ResumeResult, SweepVerb, Verbs

DEFAULT_URL = "http://127.0.0.1:8000"
#: states in which a job stays until someone acts on it
STOPPED = frozenset(s.value for s in states.STOPPED)  # as the API spells them


class Unreachable(TrainqError):
    """The server cannot be reached (not running, wrong URL, network down)."""

    code = "unreachable"


class ApiError(TrainqError):
    """An error response whose code trainq's client does not know (e.g. a 500)."""


_BY_CODE: dict[str, type[TrainqError]] = {
    "not_found": JobNotFound, "conflict": IllegalTransition, "invalid": InvalidSpec,
    "unauthorized": Unauthorized, "forbidden": Forbidden, "unavailable": NotReady, "too_large": TooLarge,
}


def error_from_body(body: dict[str, Any], status_code: int) -> TrainqError:
    """The typed error for an error body ``{"error", "message", ...fields}``."""
    code = str(body.get("error") or "error")
    cls = _BY_CODE.get(code, ApiError)
    fields = {k: v for k, v in body.items() if k not in ("error", "message")}
    # Built without the subclass's __init__ (whose arguments differ per type), as unpickling does.
    err = cls.__new__(cls)
    TrainqError.__init__(err, str(body.get("message") or f"HTTP {status_code}"), **fields)
    if cls is ApiError:
        err.code = code
    err.status_code = status_code  # type: ignore[attr-defined]
    return err


@dataclass(frozen=True)
class Event:
    """One event of a live stream: ``snapshot``, ``status``, ``report``, ``warning``, ``model``."""

    event: str
    data: Any
    id: int | None = None


class HttpClient:
    """trainq's HTTP API with typed errors. Use as a context manager, or call ``close()``."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout_s: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    # -- plumbing ----------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; the JSON body, or a typed error."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise Unreachable(f"cannot reach trainq at {self.url}: {e}. Is `trainq serve` running? "
                              "(set --url or TRAINQ_URL)", url=self.url) from None
        if response.status_code >= 400:
            raise error_from_body(_body(response), response.status_code)
        return response.json()

    def stream(self, path: str, last_event_id: int | None = None) -> Iterator[Event]:
        """Server-Sent Events from ``path`` (read with httpx-sse), until the server closes."""
        from httpx_sse import SSEError, connect_sse

        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
        try:
            with connect_sse(self.http, "GET", path, headers=headers,
                             timeout=httpx.Timeout(30.0, read=None)) as source:
                if source.response.status_code >= 400:
                    source.response.read()
                    raise error_from_body(_body(source.response), source.response.status_code)
                for sse in source.iter_sse():
                    yield Event(sse.event, sse.json(), int(sse.id) if sse.id and sse.id.isdigit() else None)
        except (httpx.HTTPError, SSEError) as e:
            raise Unreachable(f"stream from {self.url} broke: {e}", url=self.url) from None

    # -- the verbs ---------------------------------------------------------------------------------
    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        """Queue a job; returns it (``queued``, or ``pending`` when it started at once). ``dry_run``:
        create (and upload) nothing, answer whether it would start now, why not, when, and whom it
        would preempt (``POST /api/training/jobs?dry_run=true``).

        A ``runtime_env`` working_dir or py_modules entry that is a folder on this machine is
        uploaded first (``upload``) and the spec names trainq's stored copy, as ``ray job submit``
        does: the server never needs to see the caller's filesystem. Sent with an
        ``Idempotency-Key`` (a fresh one unless given), so resending after a broken connection
        returns the job the first request created instead of a second one.
        """
        from .client import new_key

        if dry_run:
            return self.request("POST", "/api/training/jobs", json=spec, params={"dry_run": "true"})
        return self.request("POST", "/api/training/jobs", json=self.upload_local_dirs(spec),
                            headers={"Idempotency-Key": idempotency_key or new_key()})

    def upload(self, folder: str, max_bytes: int | None = None) -> dict[str, Any]:
        """Zip a local folder and store it on the server: ``{"name", "path", "digest", "bytes"}``;
        ``path`` is what a spec's working_dir or py_modules may name."""
        from .packages import pack

        folder = os.path.abspath(folder)
        data = pack(folder, max_bytes)
        return self.request("POST", "/api/training/packages", params={"name": os.path.basename(folder)},
                            content=data, headers={"Content-Type": "application/zip"})

    def upload_local_dirs(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The spec with each local folder of its runtime_env uploaded and replaced by the stored
        copy's path (the caller's dict is not changed). Paths that are not folders here, and URIs,
        are left for the server to judge."""
        from .client import absolute_local_dirs
        from .packages import upload_local_dirs

        return upload_local_dirs(absolute_local_dirs(spec), lambda folder: self.upload(folder)["path"])

    def get(self, job_id: str) -> dict[str, Any]:
        """One job."""
        return self.request("GET", f"/api/training/jobs/{job_id}")

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        """A sweep's members with their states and latest metrics, best first by its metric."""
        return self.request("GET", f"/api/training/sweeps/{sweep_id}")

    def sweep_action(self, sweep_id: str, action: SweepVerb) -> dict[str, Any]:
        """``pause``, ``resume`` or ``cancel`` every member of a sweep that can take it."""
        return self.request("POST", f"/api/training/sweeps/{sweep_id}/{action}")

    def list(self, status: str | builtins.list[str] | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """``{"jobs", "total", "limit", "offset"}``, newest first, optionally filtered by status."""
        statuses = [status] if isinstance(status, str) else status or []
        params: builtins.list[tuple[str, Any]] = [("limit", limit), ("offset", offset)]
        return self.request("GET", "/api/training/jobs", params=params + [("status", s) for s in statuses])

    def queue(self) -> builtins.list[dict[str, Any]]:
        """The queued jobs in the order they will start."""
        return self.request("GET", "/api/training/queue")

    def pause(self, job_id: str, deadline_s: float | None = None, no_deadline: bool = False) -> PauseResult:
        """Pause a job; a running one stops right after its next checkpoint report.

        Without ``deadline_s`` the deadline comes from the job's checkpoint cadence;
        ``no_deadline=True`` waits for the checkpoint however long it takes.
        """
        params: dict[str, Any] = {"deadline_s": deadline_s} if deadline_s else {}
        if no_deadline:
            params["no_deadline"] = "true"
        return self.request("POST", f"/api/training/pause/{job_id}", params=params or None)

    def set_priority(self, job_id: str, priority: int) -> dict[str, Any]:
        """Change a job's priority (queued, paused or running); a raise may preempt others."""
        return self.request("PATCH", f"/api/training/jobs/{job_id}", json={"priority": priority})

    def checkpoint(self, job_id: str) -> CheckpointRequested:
        """Ask a running job (one that uses the hook) to save a checkpoint now and go on."""
        return self.request("POST", f"/api/training/checkpoint/{job_id}")

    def pin_checkpoint(self, job_id: str, path: str, pinned: bool = True) -> dict[str, Any]:
        """Pin (keep whatever the retention rule says) or unpin a recorded checkpoint."""
        verb = "pin" if pinned else "unpin"
        return self.request("POST", f"/api/training/jobs/{job_id}/checkpoints/{verb}", params={"path": path})

    def resume(self, job_id: str, checkpoint_path: str | None = None) -> ResumeResult:
        """Queue a paused, failed or cancelled job again from a recorded checkpoint."""
        params = {"checkpoint_path": checkpoint_path} if checkpoint_path else None
        return self.request("POST", f"/api/training/resume/{job_id}", params=params)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job, stopping it if it runs."""
        return self.request("POST", f"/api/training/cancel/{job_id}")

    def checkpoints(self, job_id: str) -> builtins.list[dict[str, Any]]:
        """Every checkpoint the job recorded, newest first."""
        return self.request("GET", f"/api/training/jobs/{job_id}/checkpoints")

    def reports(self, job_id: str, after_id: int = 0) -> builtins.list[dict[str, Any]]:
        """Every metrics report of the job, oldest first."""
        return self.request("GET", f"/api/training/jobs/{job_id}/metrics", params={"after_id": after_id})

    def history(self, job_id: str) -> dict[str, Any]:
        """The job's transitions and attempts."""
        return self.request("GET", f"/api/training/jobs/{job_id}/history")

    def logs(self, job_id: str, attempt: int | None = None, tail: int = 200) -> dict[str, Any]:
        """The last lines of the runner's and every worker's output of one attempt."""
        params = {"tail": tail, **({"attempt": attempt} if attempt else {})}
        return self.request("GET", f"/api/training/jobs/{job_id}/logs", params=params)

    def cluster(self) -> dict[str, Any]:
        """Capacity used and free per resource, running and queued counts, usage per user."""
        return self.request("GET", "/api/training/cluster")

    def nodes(self) -> builtins.list[dict[str, Any]]:
        """Live nodes: resources, free room, the jobs on each, and drains."""
        return self.request("GET", "/api/cluster/nodes")  # type: ignore[no-any-return]

    def drain_node(self, node_id: str, deadline_s: float | None = None, reason: str = "preemption",
                   message: str = "") -> dict[str, Any]:
        """Ask Ray to drain a node; its jobs move at a checkpoint (an admin's, with a users file)."""
        body = {"deadline_s": deadline_s, "reason": reason, "message": message}
        return self.request("POST", f"/api/cluster/nodes/{node_id}/drain", json=body)  # type: ignore[no-any-return]

    def usage(self, by: str = "user", since: str | None = None) -> dict[str, Any]:
        """GPU-hours, CPU-hours, resource-seconds, lost work, preemptions and attempts per ``user``
        or per ``job`` since ``since`` (an ISO 8601 time; None: all time)."""
        return self.request("GET", "/api/usage", params={"by": by, **({"since": since} if since else {})})

    def health(self) -> dict[str, Any]:
        """Liveness (needs no token)."""
        return self.request("GET", "/health")

    def events(self, job_id: str | None = None, last_event_id: int | None = None) -> Iterator[Event]:
        """The live stream of one job (or every job): a ``snapshot``, then each event as it happens.

        With ``last_event_id``, the server replays what came after it instead of a snapshot.
        """
        path = f"/api/training/jobs/{job_id}/events" if job_id else "/api/training/events"
        return self.stream(path, last_event_id)

    def wait(self, job_id: str, status: str | set[str] | None = None, timeout_s: float = 300.0,
             poll_s: float = 0.5) -> dict[str, Any]:
        """Block until the job reaches ``status`` (default: any stopped state); returns it."""
        from .client import wait_for

        return wait_for(self.get, job_id, status, timeout_s, poll_s)

    # -- the model cache ---------------------------------------------------------------------------
    def models_pull(self, model_id: str, revision: str | None = None) -> dict[str, Any]:
        """Start downloading a model into the cache (returns at once; poll ``models_get``)."""
        return self.request("POST", "/api/models", json={"model_id": model_id, "revision": revision})

    def models_list(self) -> builtins.list[dict[str, Any]]:
        """Cached models."""
        return self.request("GET", "/api/models")

    def models_get(self, model_id: str) -> dict[str, Any]:
        """One cached model, with download progress."""
        return self.request("GET", f"/api/models/{model_id}")

    def models_delete(self, model_id: str) -> dict[str, Any]:
        """Delete a cached model."""
        return self.request("DELETE", f"/api/models/{model_id}")


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"error": "error", "message": response.text or f"HTTP {response.status_code}"}
    if not isinstance(body, dict):
        return {"error": "error", "message": str(body)}
    if "error" not in body and "detail" in body:  # a framework error (e.g. 405), not one of ours
        return {"error": "error", "message": str(body["detail"])}
    return body


__all__ = ["ApiError", "Client", "Event", "Unreachable", "error_from_body"]


#: The HTTP client's first name, kept for code that imports ``scheduler.http.Client``.
Client = HttpClient

if TYPE_CHECKING:
    def _answers_the_verbs(client: HttpClient) -> Verbs:
        return client  # mypy checks the client against the one protocol of the verbs
