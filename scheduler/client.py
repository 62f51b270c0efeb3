"""The Python client over Ray: ``client = scheduler.connect()``, then the same verbs as everywhere.

``RayClient`` calls the scheduler actor's methods directly (its handle); ``scheduler.http.HttpClient``
answers the same verbs (``scheduler.verbs.Verbs``) over HTTP. ``Client`` is the name this one had
first, kept for code that imports it.
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import runtime_env
from .config import NAMESPACE, Settings
from .errors import TrainqError
from .jobs import ordered_id
from .states import STOPPED, JobStatus
from .verbs import CheckpointRequested, CheckpointView, JobView, PauseResult, ResumeResult, SweepVerb, Verbs


def connect(address: str | None = None, *, storage_root: str | None = None, db_path: str | None = None,
            **ray_init_kwargs: Any) -> RayClient:
    """Connect to Ray (or start a local Ray when no cluster runs) and ensure the scheduler actor.

    ``address`` is passed to ``ray.init`` ("auto", "ray://...", or None: an existing local
    cluster if there is one, else a new one inside this process). ``storage_root`` and
    ``db_path`` only matter when this call creates the scheduler actor.
    """
    import ray

    from .actor import ensure_scheduler

    if not ray.is_initialized():
        ray.init(address=address, namespace=NAMESPACE, **ray_init_kwargs)
    settings = Settings().with_overrides(storage_root=storage_root, db_path=db_path)
    return RayClient(ensure_scheduler(settings))


def absolute_local_dirs(spec: dict[str, Any]) -> dict[str, Any]:
    """Make a relative local ``working_dir``/``py_modules`` absolute, as the caller meant it.

    The scheduler resolves paths from its own working directory, not the caller's.
    """
    return runtime_env.map_spec(spec, lambda path: os.path.abspath(path) if runtime_env.is_local(path) else path)


class RayClient:
    """The scheduler actor's verbs through its Ray handle; errors come back as trainq's own types."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    @staticmethod
    def _result(ref: Any) -> Any:
        """Wait for a call's answer; a trainq error raised in the actor is raised here as itself."""
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, TrainqError):
                raise e.cause from None
            raise

    def submit(self, spec: dict[str, Any] | Any, idempotency_key: str | None = None,
               owner: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        """Queue a job; returns it (``status`` queued, or pending if it started at once).

        The same ``idempotency_key`` (and spec) returns the job the first call created; without
        one a fresh key is used, so Ray re-running the call after a scheduler restart never
        creates the job twice. ``owner`` names the user it belongs to (a users file's user): a
        caller through Ray is trusted, as Ray access is cluster access. ``dry_run``: create
        nothing (and upload nothing); answer ``{"dry_run", "would_start", "pending_reason", "eta",
        "eta_basis", "preempts", "queue_position"}`` as a submit now would decide it.
        """
        if hasattr(spec, "model_dump"):
            spec = spec.model_dump(exclude_unset=True)  # an explicit keep_checkpoints=None means "keep all"
        if dry_run:
            return self._result(self.handle.dry_run.remote(absolute_local_dirs(spec), owner=owner))
        spec = self.upload_local_dirs(absolute_local_dirs(spec))
        return self._result(self.handle.submit.remote(spec, idempotency_key or new_key(), owner))

    def upload(self, folder: str) -> dict[str, Any]:
        """Store a local folder with the scheduler, as the HTTP client does: ``{"name", "path", ...}``."""
        from .packages import pack

        folder = os.path.abspath(folder)
        return self._result(self.handle.store_package.remote(os.path.basename(folder), pack(folder)))

    def upload_local_dirs(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The spec with each folder of its runtime_env on this machine uploaded (see ``upload``),
        so a job never needs the head node's filesystem whoever submits it."""
        from .packages import upload_local_dirs

        return upload_local_dirs(spec, lambda folder: self.upload(folder)["path"])

    def get(self, job_id: str) -> JobView:
        """One job."""
        return self._result(self.handle.get.remote(job_id))

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        """A sweep's members with their states and latest metrics, best first by its metric."""
        return self._result(self.handle.sweep.remote(sweep_id))

    def sweep_action(self, sweep_id: str, action: SweepVerb) -> dict[str, Any]:
        """``pause``, ``resume`` or ``cancel`` every member of a sweep that can take it."""
        return self._result(self.handle.sweep_action.remote(sweep_id, action))

    def list(self, status: str | builtins.list[str] | None = None, limit: int | None = None,
             offset: int = 0) -> builtins.list[JobView]:
        """Jobs newest first, optionally filtered by status."""
        return self._result(self.handle.list.remote(status, limit, offset))

    def queue(self) -> builtins.list[JobView]:
        """The queued jobs in the order they will start."""
        return self._result(self.handle.queue.remote())

    def pause(self, job_id: str, deadline_s: float | None = None, no_deadline: bool = False) -> PauseResult:
        """Pause a job; a running one stops right after its next checkpoint report.

        Without ``deadline_s`` the deadline comes from the job's checkpoint cadence;
        ``no_deadline=True`` waits for the checkpoint however long it takes.
        """
        return self._result(self.handle.pause.remote(job_id, deadline_s, no_deadline, new_key()))

    def set_priority(self, job_id: str, priority: int) -> JobView:
        """Change a job's priority (queued, paused or running); a raise may preempt others."""
        return self._result(self.handle.set_priority.remote(job_id, priority))

    def checkpoint(self, job_id: str) -> CheckpointRequested:
        """Ask a running job (one that uses the hook) to save a checkpoint now and go on."""
        return self._result(self.handle.checkpoint.remote(job_id))

    def resume(self, job_id: str, checkpoint_path: str | None = None) -> ResumeResult:
        """Queue a paused, failed or cancelled job again from a recorded checkpoint."""
        return self._result(self.handle.resume.remote(job_id, checkpoint_path, new_key()))

    def cancel(self, job_id: str) -> JobView:
        """Cancel a job, stopping it if it runs."""
        return self._result(self.handle.cancel.remote(job_id, new_key()))

    def checkpoints(self, job_id: str) -> builtins.list[CheckpointView]:
        """Every checkpoint the job recorded, newest first."""
        return self._result(self.handle.checkpoints.remote(job_id))

    def pin_checkpoint(self, job_id: str, path: str, pinned: bool = True) -> CheckpointView:
        """Pin a recorded checkpoint (kept whatever ``keep_checkpoints`` says); ``pinned=False`` unpins."""
        return self._result(self.handle.pin_checkpoint.remote(job_id, path, pinned))

    def reports(self, job_id: str) -> builtins.list[dict[str, Any]]:
        """Every metrics report of the job, oldest first."""
        return self._result(self.handle.reports.remote(job_id))

    def history(self, job_id: str) -> dict[str, Any]:
        """The job's transitions and attempts."""
        return self._result(self.handle.history.remote(job_id))

    def usage(self, by: str = "user", since: float | str | None = None) -> dict[str, Any]:
        """GPU-hours, CPU-hours, resource-seconds, lost work, preemptions and attempts per ``user``
        or per ``job`` since ``since`` (an ISO 8601 time or epoch seconds; None: all time)."""
        return self._result(self.handle.usage.remote(by, since))

    def health(self) -> dict[str, Any]:
        """The scheduler's state: queued and active counts, capacity, storage root, registry."""
        return self._result(self.handle.health.remote())

    def wait(self, job_id: str, status: str | set[str] | None = None, timeout_s: float = 300.0,
             poll_s: float = 0.2) -> dict[str, Any]:
        """Block until the job reaches ``status`` (default: any stopped state); returns it."""
        return wait_for(self.get, job_id, status, timeout_s, poll_s)


def new_key() -> str:
    """A fresh idempotency key: Ray re-runs a call that was in flight when the scheduler restarted,
    and the key lets the scheduler answer the re-run as it answered the first run."""
    return f"tq-{ordered_id()}"  # time-ordered: the requests table's key index grows at its end


def wait_for(get: Callable[[str], dict[str, Any]], job_id: str, status: str | set[str] | None = None,
             timeout_s: float = 300.0, poll_s: float = 0.2) -> dict[str, Any]:
    """Poll ``get(job_id)`` until the job reaches ``status`` (default: any stopped state).

    Shared by the Ray client and the HTTP client (``scheduler.http``), so both wait alike.
    """
    wanted = {status} if isinstance(status, str) else set(status or {s.value for s in STOPPED})
    deadline = time.monotonic() + timeout_s
    while True:
        job = get(job_id)
        if job["status"] in wanted:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} is {job['status']} after {timeout_s}s, not {sorted(wanted)}")
        time.sleep(poll_s)


#: The Ray client's first name, kept for code that imports ``scheduler.Client``.
Client = RayClient

if TYPE_CHECKING:
    def _answers_the_verbs(client: RayClient) -> Verbs:
        return client  # mypy checks the client against the one protocol of the verbs

__all__ = ["Client", "JobStatus", "RayClient", "connect"]
