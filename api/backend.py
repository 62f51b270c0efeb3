"""How the API reaches the scheduler: one protocol of its verbs, over the actor or a service in this process.

``Backend`` lists every verb the routes, the streams and the page use, with the scheduler's own
names and arguments (``SchedulerService``), so a pause can be followed from its route to the core
by name, and a type checker follows it too. Two implementations:

- ``ActorBackend``: the scheduler actor through Ray (``trainq serve``). The hot reads and submits
  are batched (``api.coalesce``) and, on the actor's machine, go over its local channel
  (``scheduler.channel``); every other verb is one Ray call.
- ``ServiceBackend``: a ``SchedulerService`` in this process (tests, benchmarks, embedded use).
"""

from __future__ import annotations

import builtins
import logging
from typing import TYPE_CHECKING, Any, Protocol

from scheduler.channel import ChannelClient, ChannelClosed
from scheduler.config import env_switch
from scheduler.errors import NotReady, TrainqError
from scheduler.verbs import CheckpointRequested, CheckpointView, JobView, PauseResult, ResumeResult, SweepVerb

from .coalesce import Batcher, Coalescer
from .local_channel import LocalChannel

logger = logging.getLogger("trainq.api")

#: JSON the scheduler encoded already: sent as the body as it is.
JSONBytes = bytes
#: Another of the scheduler's answers (history, logs, usage, health ...), as its public dict.
Record = dict[str, Any]


class Backend(Protocol):
    """The scheduler's verbs as the API calls them (see ``SchedulerService`` for each one's meaning).

    ``as_user`` / ``owner`` is the caller's user name from the token (None: the one anonymous user).
    Typed errors (``scheduler.errors``) are raised as themselves; ``api.errors`` maps them to statuses.
    """

    # -- the hot routes: answers as the scheduler encoded them -----------------------------------
    async def submit(self, spec: dict[str, Any], idempotency_key: str, owner: str | None) -> JSONBytes: ...
    async def get_json(self, job_id: str) -> JSONBytes: ...
    async def page_json(self, status: builtins.list[str] | None, limit: int, offset: int) -> JSONBytes: ...
    async def queue_json(self, limit: int | None, offset: int) -> JSONBytes: ...

    # -- the other verbs: plain records ------------------------------------------------------------
    async def get(self, job_id: str) -> JobView: ...
    async def list(self, status: builtins.list[str] | None, limit: int | None,
                   offset: int) -> builtins.list[JobView]: ...
    async def pause(self, job_id: str, deadline_s: float | None, no_deadline: bool, idempotency_key: str,
                    as_user: str | None) -> PauseResult: ...
    async def resume(self, job_id: str, checkpoint_path: str | None, idempotency_key: str,
                     as_user: str | None) -> ResumeResult: ...
    async def cancel(self, job_id: str, idempotency_key: str, as_user: str | None) -> JobView: ...
    async def set_priority(self, job_id: str, priority: int, as_user: str | None) -> JobView: ...
    async def checkpoint(self, job_id: str, as_user: str | None) -> CheckpointRequested: ...
    async def checkpoints(self, job_id: str) -> builtins.list[CheckpointView]: ...
    async def pin_checkpoint(self, job_id: str, path: str, pinned: bool, as_user: str | None) -> CheckpointView: ...
    async def reports(self, job_id: str, after_id: int, limit: int | None) -> builtins.list[Record]: ...
    async def history(self, job_id: str) -> Record: ...
    async def logs(self, job_id: str, attempt: int | None, tail: int) -> Record: ...
    async def events(self, after: int, job_id: str | None, timeout_s: float) -> Record: ...
    async def usage(self, by: str, since: float | None) -> Record: ...
    async def cluster(self) -> Record: ...
    async def nodes(self) -> builtins.list[Record]: ...
    async def drain_node(self, node_id: str, deadline_s: float | None, reason: str, message: str,
                         as_user: str | None) -> Record: ...
    async def health(self) -> Record: ...
    async def store_package(self, name: str, data: bytes) -> Record: ...
    async def models_pull(self, model_id: str, revision: str | None) -> Record: ...
    async def models_list(self) -> builtins.list[Record]: ...
    async def models_get(self, model_id: str) -> Record: ...
    async def models_delete(self, model_id: str) -> Record: ...
    async def dry_run(self, spec: dict[str, Any], owner: str | None) -> Record: ...
    async def sweep(self, sweep_id: str) -> Record: ...
    async def sweep_action(self, sweep_id: str, action: SweepVerb, as_user: str | None) -> Record: ...


class ActorBackend:
    """The scheduler actor's verbs; its typed errors come back as themselves.

    The hot reads and submits are batched (``api.coalesce``). A batch goes over the actor's local
    channel (``scheduler.channel``) when this process runs on the actor's node, and as a Ray call
    otherwise (or with ``local_channel`` off, setting ``TRAINQ_LOCAL_CHANNEL=0``). Every other verb
    is one Ray call per request.
    """

    def __init__(self, handle: Any, local_channel: bool | None = None) -> None:
        self.handle = handle
        if local_channel is None:
            local_channel = env_switch("TRAINQ_LOCAL_CHANNEL", True)
        self.local = LocalChannel(handle) if local_channel else None
        self._reads: Coalescer | None = None  # made in the server's event loop, on first use
        self._submits: Batcher | None = None

    # -- batched ------------------------------------------------------------------------------------
    async def submit(self, spec: dict[str, Any], idempotency_key: str, owner: str | None) -> JSONBytes:
        if self._submits is None:
            self._submits = Batcher(self._submit_batch)
        answer: JSONBytes = await self._submits.add((spec, idempotency_key, owner))
        return answer

    async def get_json(self, job_id: str) -> JSONBytes:
        return await self._read("get_json", job_id)

    async def page_json(self, status: builtins.list[str] | None, limit: int, offset: int) -> JSONBytes:
        return await self._read("page_json", status, limit, offset)

    async def queue_json(self, limit: int | None, offset: int) -> JSONBytes:
        return await self._read("queue_json", limit, offset)

    async def _read(self, name: str, *args: Any) -> JSONBytes:
        # ``name`` is the read's name in the actor's batch call (``SchedulerService.reads``).
        if self._reads is None:
            self._reads = Coalescer(self._read_batch)
        answer: JSONBytes = await self._reads.read(name, *args)
        return answer

    async def _read_batch(self, calls: list[Any]) -> list[Any]:
        client = await self._channel()
        if client is not None:
            try:
                return await client.reads(calls)
            except ChannelClosed:
                pass  # the actor restarted or stopped: through Ray instead, which waits for it
        return await self._ray(self.handle.reads, calls)

    async def _submit_batch(self, items: list[Any]) -> list[Any]:
        client = await self._channel()
        if client is not None:
            try:
                return await client.submit_json(items)
            except ChannelClosed:
                # Through Ray instead; a submit that went through before the connection dropped is
                # not made twice, since every one carries an idempotency key (the route gives each one).
                pass
        return await self._ray(self.handle.submit_json, items)

    async def _channel(self) -> ChannelClient | None:
        return await self.local.client() if self.local is not None else None

    # -- one Ray call each ----------------------------------------------------------------------
    async def get(self, job_id: str) -> JobView:
        return await self._ray(self.handle.get, job_id)

    async def list(self, status: builtins.list[str] | None, limit: int | None, offset: int) -> builtins.list[JobView]:
        return await self._ray(self.handle.list, status, limit=limit, offset=offset)

    async def pause(self, job_id: str, deadline_s: float | None, no_deadline: bool, idempotency_key: str,
                    as_user: str | None) -> PauseResult:
        return await self._ray(self.handle.pause, job_id, deadline_s=deadline_s, no_deadline=no_deadline,
                               idempotency_key=idempotency_key, as_user=as_user)

    async def resume(self, job_id: str, checkpoint_path: str | None, idempotency_key: str,
                     as_user: str | None) -> ResumeResult:
        return await self._ray(self.handle.resume, job_id, checkpoint_path=checkpoint_path,
                               idempotency_key=idempotency_key, as_user=as_user)

    async def cancel(self, job_id: str, idempotency_key: str, as_user: str | None) -> JobView:
        return await self._ray(self.handle.cancel, job_id, idempotency_key=idempotency_key, as_user=as_user)

    async def set_priority(self, job_id: str, priority: int, as_user: str | None) -> JobView:
        return await self._ray(self.handle.set_priority, job_id, priority, as_user=as_user)

    async def checkpoint(self, job_id: str, as_user: str | None) -> CheckpointRequested:
        return await self._ray(self.handle.checkpoint, job_id, as_user=as_user)

    async def checkpoints(self, job_id: str) -> builtins.list[CheckpointView]:
        return await self._ray(self.handle.checkpoints, job_id)

    async def pin_checkpoint(self, job_id: str, path: str, pinned: bool, as_user: str | None) -> CheckpointView:
        return await self._ray(self.handle.pin_checkpoint, job_id, path, pinned=pinned, as_user=as_user)

    async def reports(self, job_id: str, after_id: int, limit: int | None) -> builtins.list[Record]:
        return await self._ray(self.handle.reports, job_id, after_id=after_id, limit=limit)

    async def history(self, job_id: str) -> Record:
        return await self._ray(self.handle.history, job_id)

    async def logs(self, job_id: str, attempt: int | None, tail: int) -> Record:
        return await self._ray(self.handle.logs, job_id, attempt=attempt, tail=tail)

    async def events(self, after: int, job_id: str | None, timeout_s: float) -> Record:
        return await self._ray(self.handle.events, after, job_id=job_id, timeout_s=timeout_s)

    async def usage(self, by: str, since: float | None) -> Record:
        return await self._ray(self.handle.usage, by, since=since)

    async def cluster(self) -> Record:
        return await self._ray(self.handle.cluster)

    async def nodes(self) -> builtins.list[Record]:
        return await self._ray(self.handle.nodes)

    async def drain_node(self, node_id: str, deadline_s: float | None, reason: str, message: str,
                         as_user: str | None) -> Record:
        return await self._ray(self.handle.drain_node, node_id, deadline_s=deadline_s, reason=reason,
                               message=message, as_user=as_user)

    async def health(self) -> Record:
        return await self._ray(self.handle.health)

    async def store_package(self, name: str, data: bytes) -> Record:
        return await self._ray(self.handle.store_package, name, data)

    async def models_pull(self, model_id: str, revision: str | None) -> Record:
        return await self._ray(self.handle.models_pull, model_id, revision=revision)

    async def models_list(self) -> builtins.list[Record]:
        return await self._ray(self.handle.models_list)

    async def models_get(self, model_id: str) -> Record:
        return await self._ray(self.handle.models_get, model_id)

    async def models_delete(self, model_id: str) -> Record:
        return await self._ray(self.handle.models_delete, model_id)

    async def dry_run(self, spec: dict[str, Any], owner: str | None) -> Record:
        return await self._ray(self.handle.dry_run, spec, owner=owner)

    async def sweep(self, sweep_id: str) -> Record:
        return await self._ray(self.handle.sweep, sweep_id)

    async def sweep_action(self, sweep_id: str, action: SweepVerb, as_user: str | None) -> Record:
        return await self._ray(self.handle.sweep_action, sweep_id, action, as_user=as_user)

    @staticmethod
    async def _ray(method: Any, *args: Any, **kwargs: Any) -> Any:
        """``method.remote(*args, **kwargs)`` awaited: the actor's typed error raised as itself, an
        actor that is gone (restarting) as ``NotReady`` (503)."""
        import ray

        try:
            return await method.remote(*args, **kwargs)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, TrainqError):
                raise e.cause from None
            raise
        except ray.exceptions.RayActorError as e:
            raise NotReady(f"the scheduler actor is unavailable ({type(e).__name__}); try again shortly") from None


class ServiceBackend:
    """A ``SchedulerService`` in this process (tests, benchmarks, embedded use): each verb is the
    service's own, awaited; submits go through the same ``submit_json`` as the actor's batches."""

    def __init__(self, service: Any) -> None:
        self.service = service

    async def submit(self, spec: dict[str, Any], idempotency_key: str, owner: str | None) -> JSONBytes:
        (answer,) = await self.service.submit_json([(spec, idempotency_key, owner)])
        if isinstance(answer, TrainqError):
            raise answer
        return answer

    async def get_json(self, job_id: str) -> JSONBytes:
        return await self.service.get_json(job_id)

    async def page_json(self, status: builtins.list[str] | None, limit: int, offset: int) -> JSONBytes:
        return await self.service.page_json(status, limit, offset)

    async def queue_json(self, limit: int | None, offset: int) -> JSONBytes:
        return await self.service.queue_json(limit, offset)

    async def get(self, job_id: str) -> JobView:
        return await self.service.get(job_id)

    async def list(self, status: builtins.list[str] | None, limit: int | None, offset: int) -> builtins.list[JobView]:
        return await self.service.list(status, limit=limit, offset=offset)

    async def pause(self, job_id: str, deadline_s: float | None, no_deadline: bool, idempotency_key: str,
                    as_user: str | None) -> PauseResult:
        return await self.service.pause(job_id, deadline_s=deadline_s, no_deadline=no_deadline,
                                        idempotency_key=idempotency_key, as_user=as_user)

    async def resume(self, job_id: str, checkpoint_path: str | None, idempotency_key: str,
                     as_user: str | None) -> ResumeResult:
        return await self.service.resume(job_id, checkpoint_path=checkpoint_path,
                                         idempotency_key=idempotency_key, as_user=as_user)

    async def cancel(self, job_id: str, idempotency_key: str, as_user: str | None) -> JobView:
        return await self.service.cancel(job_id, idempotency_key=idempotency_key, as_user=as_user)

    async def set_priority(self, job_id: str, priority: int, as_user: str | None) -> JobView:
        return await self.service.set_priority(job_id, priority, as_user=as_user)

    async def checkpoint(self, job_id: str, as_user: str | None) -> CheckpointRequested:
        return await self.service.checkpoint(job_id, as_user=as_user)

    async def checkpoints(self, job_id: str) -> builtins.list[CheckpointView]:
        return await self.service.checkpoints(job_id)

    async def pin_checkpoint(self, job_id: str, path: str, pinned: bool, as_user: str | None) -> CheckpointView:
        return await self.service.pin_checkpoint(job_id, path, pinned=pinned, as_user=as_user)

    async def reports(self, job_id: str, after_id: int, limit: int | None) -> builtins.list[Record]:
        return await self.service.reports(job_id, after_id=after_id, limit=limit)

    async def history(self, job_id: str) -> Record:
        return await self.service.history(job_id)

    async def logs(self, job_id: str, attempt: int | None, tail: int) -> Record:
        return await self.service.logs(job_id, attempt=attempt, tail=tail)

    async def events(self, after: int, job_id: str | None, timeout_s: float) -> Record:
        return await self.service.events(after, job_id=job_id, timeout_s=timeout_s)

    async def usage(self, by: str, since: float | None) -> Record:
        return await self.service.usage(by, since=since)

    async def cluster(self) -> Record:
        return await self.service.cluster()

    async def nodes(self) -> builtins.list[Record]:
        return await self.service.nodes()

    async def drain_node(self, node_id: str, deadline_s: float | None, reason: str, message: str,
                         as_user: str | None) -> Record:
        return await self.service.drain_node(node_id, deadline_s=deadline_s, reason=reason, message=message,
                                             as_user=as_user)

    async def health(self) -> Record:
        return await self.service.health()

    async def store_package(self, name: str, data: bytes) -> Record:
        return await self.service.store_package(name, data)

    async def models_pull(self, model_id: str, revision: str | None) -> Record:
        return await self.service.models_pull(model_id, revision=revision)

    async def models_list(self) -> builtins.list[Record]:
        return await self.service.models_list()

    async def models_get(self, model_id: str) -> Record:
        return await self.service.models_get(model_id)

    async def models_delete(self, model_id: str) -> Record:
        return await self.service.models_delete(model_id)

    async def dry_run(self, spec: dict[str, Any], owner: str | None) -> Record:
        return await self.service.dry_run(spec, owner=owner)

    async def sweep(self, sweep_id: str) -> Record:
        return await self.service.sweep(sweep_id)

    async def sweep_action(self, sweep_id: str, action: SweepVerb, as_user: str | None) -> Record:
        return await self.service.sweep_action(sweep_id, action, as_user=as_user)


if TYPE_CHECKING:
    def _answer_the_verbs(actor: ActorBackend, service: ServiceBackend) -> tuple[Backend, Backend]:
        return actor, service  # mypy checks both against the one protocol of the API's verbs


__all__ = ["ActorBackend", "Backend", "JSONBytes", "LocalChannel", "Record", "ServiceBackend"]
