"""The scheduler's public API over a core and an event log, with no Ray in it.

``SchedulerActor`` (``scheduler.actor``) is this plus Ray; tests and the API's TestClient use it
directly. Its methods take and return plain data, so any Ray driver can call them through
``ray.get_actor("scheduler", namespace="trainq")``.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import security
from .config import Settings, packages_root
from .core import RunnerEvent, Scheduler
from .errors import Forbidden, InvalidSpec, NodeNotFound, NotReady, TrainqError
from .events import EventLog
from .eventstore import events_path
from .verbs import CheckpointRequested, JobView, PauseResult, ResumeResult, SweepVerb

#: One submit: (spec, idempotency key, owner).
SubmitItem = tuple[Any, str | None, str | None]


class SchedulerService:
    """The scheduler's public API over a core and an event log, with no Ray in it.

    ``SchedulerActor`` is this plus Ray; tests and the API's TestClient use it directly.
    """

    def __init__(self, core: Scheduler | None, settings: Settings, events: Any = None) -> None:
        """``core``: None for a standby (``scheduler.leadership``) until it ``attach``es one;
        ``events``: the registry's event store (default: the file beside an SQLite registry)."""
        self.settings = settings
        self.log = EventLog(store=events) if events is not None else EventLog(path=events_path(settings.db_path))
        self._core: Scheduler | None = None
        if core is not None:
            self.attach(core)
        self.started_at = time.time()
        self._downloads: dict[str, asyncio.Task[Any]] = {}
        if "://" not in settings.storage_root:
            self.models.recover()

    def attach(self, core: Scheduler) -> None:
        """Serve ``core`` (this scheduler leads its registry now)."""
        core.listeners.append(self.log.append)
        self._core = core

    def detach(self) -> Scheduler | None:
        """Serve no core any more (this scheduler lost its registry's lease); returns the old one."""
        core, self._core = self._core, None
        return core

    @property
    def core(self) -> Scheduler:
        """The core this service answers from; ``NotReady`` (503) on a standby."""
        if self._core is None:
            raise NotReady(self.standby_message())
        return self._core

    def standby_message(self) -> str:
        """Why there is no core to answer from (the actor says who leads)."""
        return "this scheduler does not lead its registry"

    # -- public API: plain dicts in and out ---------------------------------------------------------
    # A caller through Ray is trusted (Ray access is cluster access): it may name any ``owner``
    # and act on any job. The HTTP layer passes the token's user as ``owner`` / ``as_user``.
    async def submit(self, spec: dict[str, Any], idempotency_key: str | None = None,
                     owner: str | None = None) -> dict[str, Any]:
        """Submit a job; the same ``idempotency_key`` (and spec) returns the same job again."""
        return self.core.submit(spec, idempotency_key, owner)

    async def get(self, job_id: str) -> dict[str, Any]:
        return self.core.get(job_id)

    async def list(self, status: Any = None, limit: int | None = None, offset: int = 0) -> builtins.list[JobView]:
        return self.core.list(status, limit, offset)

    # The HTTP API's hot reads, as JSON bytes: nothing to decode and encode again in between.
    async def get_json(self, job_id: str) -> bytes:
        """``get`` as JSON bytes."""
        return self.core.get_json(job_id)

    async def page_json(self, status: Any = None, limit: int = 100, offset: int = 0) -> bytes:
        """One page of ``list`` with its ``count``, ``limit`` and ``offset``, in one call, as JSON bytes."""
        return self.core.page_json(status, limit, offset)

    async def queue_json(self, limit: int | None = None, offset: int = 0) -> bytes:
        """``queue`` as JSON bytes."""
        return self.core.queue_json(limit, offset)

    async def reads(self, calls: builtins.list[tuple[str, tuple[Any, ...]]]) -> builtins.list[bytes | TrainqError]:
        """Several hot reads in one call, for the HTTP API's coalescing (``api.coalesce``): one
        answer per ``(method, args)``, its JSON bytes or the typed error it raised."""
        core = self.core
        # The coalescible reads, named once (``wire.HOT_READS``) and dispatched by a fixed table.
        table: dict[str, Callable[..., bytes]] = {"get_json": core.get_json, "page_json": core.page_json,
                                                 "queue_json": core.queue_json}
        if unknown := {method for method, _ in calls} - set(table):
            raise ValueError(f"not a read: {sorted(unknown)} (reads: {sorted(table)})")
        out: builtins.list[bytes | TrainqError] = []
        for method, args in calls:
            try:
                out.append(table[method](*args))
            except TrainqError as e:
                out.append(e)
        return out

    async def submit_json(self, items: builtins.list[SubmitItem]) -> builtins.list[bytes | TrainqError]:
        """Several submits, ``(spec, idempotency_key, owner)`` each, stored with one commit: the HTTP
        API's group commit (``api.coalesce``). One answer per item: its job as JSON bytes, or the
        typed error that refused it; each is sent only once the commit is on disk."""
        with self.log.batch():  # the batch's "submitted" events: one write to the event file
            return self.core.submit_json([tuple(item) for item in items])

    async def count(self, status: Any = None) -> int:
        return self.core.count(status)

    async def queue(self, limit: int | None = None, offset: int = 0) -> builtins.list[dict[str, Any]]:
        return self.core.queue(limit, offset)

    async def pause(self, job_id: str, deadline_s: float | None = None, no_deadline: bool = False,
                    idempotency_key: str | None = None, as_user: str | None = None) -> PauseResult:
        return self.core.pause(job_id, deadline_s, no_deadline, idempotency_key, as_user)

    async def resume(self, job_id: str, checkpoint_path: str | None = None,
                     idempotency_key: str | None = None, as_user: str | None = None) -> ResumeResult:
        return self.core.resume(job_id, checkpoint_path, idempotency_key, as_user)

    async def cancel(self, job_id: str, idempotency_key: str | None = None,
                     as_user: str | None = None) -> dict[str, Any]:
        return self.core.cancel(job_id, idempotency_key, as_user)

    async def set_priority(self, job_id: str, priority: int, as_user: str | None = None) -> dict[str, Any]:
        return self.core.set_priority(job_id, priority, as_user)

    async def checkpoint(self, job_id: str, as_user: str | None = None) -> CheckpointRequested:
        return self.core.checkpoint(job_id, as_user)

    async def reload_users(self, path: str | None = None) -> dict[str, Any]:
        """Read the users file again (``path``, default the setting ``TRAINQ_USERS_FILE``) so edits
        to users, roles and quotas apply without a restart; an empty ``path`` ("") turns users off.
        A malformed file changes nothing and raises ``UsersFileError`` naming the line. Only for
        callers through Ray (trusted: Ray access is cluster access); no route exposes it."""
        from .users import load_users

        target = self.settings.users_file if path is None else path
        users = load_users(target) if target else None
        self.core.set_users(users)
        return {"users": [u.public() for u in users.users] if users else None}

    async def set_time_slice(self, seconds: float) -> dict[str, Any]:
        """Time slicing on (a slice of ``seconds``) or off (0) without a restart, e.g. for the busy
        hours only; a restart goes back to ``TRAINQ_TIME_SLICE_S``. Only for callers through Ray."""
        self.core.set_time_slice(seconds)
        return {"time_slice_s": self.core.settings.time_slice_s}

    async def usage(self, by: str = "user", since: float | str | None = None) -> dict[str, Any]:
        """Resource-seconds (GPU-hours, CPU-hours), lost work, preemptions and attempts per user or
        job since ``since`` (epoch seconds or an ISO time; None: all time)."""
        return self.core.usage(by, _since(since))

    async def drain(self, grace_s: float) -> dict[str, Any]:
        """A shutdown: pause every active job to resume at the next start; see ``draining``."""
        self.core.drain(grace_s)
        return await self.draining()

    async def draining(self) -> dict[str, Any]:
        """What a shutdown still waits for: every job whose run has not stopped yet."""
        return {"draining": self.core.draining, "waiting": self.core.holding()}

    async def checkpoints(self, job_id: str) -> builtins.list[dict[str, Any]]:
        return self.core.checkpoints(job_id)

    async def pin_checkpoint(self, job_id: str, path: str, pinned: bool = True,
                             as_user: str | None = None) -> dict[str, Any]:
        """Pin (or unpin) a recorded checkpoint: pinned ones survive the retention rule."""
        return self.core.pin_checkpoint(job_id, path, pinned, as_user)

    async def reports(self, job_id: str, after_id: int = 0, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        return self.core.reports(job_id, after_id, limit)

    async def history(self, job_id: str) -> dict[str, Any]:
        return self.core.history(job_id)

    async def logs(self, job_id: str, attempt: int | None = None, tail: int = 200) -> dict[str, Any]:
        """The last lines of each log (runner, every worker rank) of one attempt (default: latest)."""
        from .logs import read_logs

        job = self.core.job(job_id)
        number = attempt or job.attempt
        record = self.core.attempt(job_id, number) if number else None
        # In a thread: on object storage a read takes a round trip or more (seconds when S3 is
        # unreachable), and the scheduler's event loop must keep answering meanwhile.
        out = await asyncio.to_thread(read_logs, self.core.job_root(job), number, tail,
                                      record.run_name if record else None)
        # A library that prints its token (or a loop that prints the environment) must not hand the
        # scheduler's secrets to everyone who may read this job's logs.
        secrets = security.secret_values(self.settings.secret_names(), os.environ).values()
        out["logs"] = {source: [security.redact(line, secrets) for line in lines]
                       for source, lines in out["logs"].items()}
        return out

    async def events(self, after: int = 0, job_id: str | None = None, timeout_s: float = 15.0) -> dict[str, Any]:
        """Events numbered above ``after``, waiting up to ``timeout_s`` for one (long poll)."""
        return await self.log.wait(after, job_id, min(timeout_s, 60.0))

    async def cluster(self) -> dict[str, Any]:
        """Capacity used and free per resource, running and queued counts, and usage per owner.

        ``used`` is what trainq handed out: active jobs (pending, running, pausing) and attempts
        still releasing it.
        """
        return self.core.cluster_use()

    # -- the cluster's nodes (the actor answers from Ray; a service without Ray has none) ---------
    async def nodes(self) -> builtins.list[dict[str, Any]]:
        """The live nodes: resources, free room, the jobs on each, and drains (``scheduler.nodes``).
        Without Ray there are none (an empty list, not an error: the answer is true)."""
        return []

    async def drain_node(self, node_id: str, deadline_s: float | None = None, reason: str = "preemption",
                         message: str = "", as_user: str | None = None) -> dict[str, Any]:
        """Ask Ray to drain ``node_id``: its jobs move at a checkpoint (``core.drains``). An admin's
        verb with a users file."""
        self.authorize_admin(as_user, "drain nodes")
        raise NodeNotFound(f"no live node {node_id!r}: this scheduler runs without Ray, so it has no nodes"
                           " (trainq nodes lists them)")

    def authorize_admin(self, as_user: str | None, action: str) -> None:
        """``Forbidden`` unless ``as_user`` is an admin (None: a trusted caller, or no users file)."""
        users = self.core.users
        if as_user is None or users is None:
            return
        user = users.get(as_user)
        if user is None or not user.is_admin:
            raise Forbidden(f"user {as_user!r} may not {action}: only an admin may", user=as_user, action=action)

    async def health(self) -> dict[str, Any]:
        """Liveness, and what this scheduler serves; on a standby no queue figures (it has no core).

        The leader asks its registry for one round trip first: a scheduler whose registry cannot
        be reached can change nothing, so it is not healthy (``RegistryUnavailable``, a 503 naming
        host:port, as every other call answers then).
        """
        from .store.url import redacted

        out: dict[str, Any] = {"ok": True, "epoch": self.log.epoch, "started_at": self.started_at,
                               "storage_root": self.settings.storage_root, "db_path": redacted(self.settings.db_path)}
        core = self._core
        if core is not None:
            await asyncio.to_thread(core.store.ping)
            out.update(queued=core.count("queued"), active=len(core.held), capacity=core.cluster.capacity())
        return out

    # -- uploaded packages ---------------------------------------------------------------------------
    async def store_package(self, name: str, data: bytes) -> dict[str, Any]:
        """Store an uploaded folder (a zip) where jobs may use it; see ``scheduler.packages``."""
        from . import packages

        limit = int(self.settings.max_package_mb * 2**20)
        return await asyncio.to_thread(packages.store, data, name, packages_root(self.core.storage_root), limit)

    # -- the model cache ----------------------------------------------------------------------------
    @property
    def models(self) -> Any:
        from .model_cache import ModelCache

        return ModelCache(str(Path(self.settings.storage_root) / "models") if "://" not in self.settings.storage_root
                          else ModelCache.default_root(), endpoint=self.settings.hf_endpoint or None)

    async def models_pull(self, model_id: str, revision: str | None = None) -> dict[str, Any]:
        """Start downloading a model in the background (idempotent while it downloads)."""
        cache = self.models
        entry = cache.start(model_id, revision)
        if model_id not in self._downloads:
            loop = asyncio.get_running_loop()

            def progress(e: dict[str, Any]) -> None:
                loop.call_soon_threadsafe(self.log.append, {"type": "model", **e})

            task = loop.create_task(asyncio.to_thread(cache.download, model_id, revision, progress))
            self._downloads[model_id] = task
            task.add_done_callback(lambda _: self._downloads.pop(model_id, None))
        return entry

    async def models_list(self) -> builtins.list[dict[str, Any]]:
        return self.models.list()

    async def models_get(self, model_id: str) -> dict[str, Any]:
        return self.models.entry(model_id)

    async def models_delete(self, model_id: str) -> dict[str, Any]:
        return self.models.delete(model_id)

    async def dry_run(self, spec: dict[str, Any], owner: str | None = None) -> dict[str, Any]:
        """What a submit would do now, changing nothing (``core.dryrun``)."""
        return self.core.dry.ask(spec, owner)

    async def sweep(self, sweep_id: str) -> dict[str, Any]:
        """A sweep's members with their states and latest metrics, best first by its metric."""
        return self.core.sweeps.view(sweep_id)

    async def sweep_action(self, sweep_id: str, action: SweepVerb, as_user: str | None = None) -> dict[str, Any]:
        """Pause, resume or cancel every member of a sweep that can take it (``core.sweeps``)."""
        return self.core.sweeps.act(sweep_id, action, as_user)

    async def runner_event(self, event: RunnerEvent | dict[str, Any]) -> None:
        """Runners deliver their events here (``core.runner_events``; idempotent)."""
        self.core.on_runner_event(event)



def _since(since: float | str | None) -> float | None:
    """Epoch seconds from a number or an ISO 8601 time (``2026-11-29``, ``...T10:00:00Z``)."""
    if since is None or isinstance(since, (int, float)) and not isinstance(since, bool):
        return None if since is None else float(since)
    if isinstance(since, str):
        from datetime import datetime, timezone

        try:
            when = datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidSpec(f"since must be an ISO 8601 time such as 2026-11-29T10:00:00Z, got {since!r}",
                              field="since") from None
        return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
    raise InvalidSpec(f"since must be an ISO 8601 time or epoch seconds, got {since!r}", field="since")
