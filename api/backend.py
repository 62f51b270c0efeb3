"""How the API reaches the scheduler: the actor's own methods, awaited without blocking."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from scheduler.channel import ChannelClient, ChannelClosed
from scheduler.config import env_switch
from scheduler.errors import NotReady, TrainqError

from .coalesce import READS, Batcher, Coalescer

logger = logging.getLogger("trainq.api")


class Backend(Protocol):
    """The scheduler actor's public methods, as awaitables returning plain dicts (the hot reads,
    and a submit through ``ActorBackend``, may return the JSON bytes the scheduler encoded)."""

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any: ...


class ActorBackend:
    """Calls the scheduler actor; its typed errors come back as themselves.

    The hot reads (``coalesce.READS``) and submits are batched (``api.coalesce``). A batch goes
    over the actor's local channel (``scheduler.channel``) when this process runs on the actor's
    node, and as a Ray call otherwise (or with ``local_channel`` off, setting
    ``TRAINQ_LOCAL_CHANNEL=0``). Every other method is one Ray call per request.
    """

    def __init__(self, handle: Any, local_channel: bool | None = None) -> None:
        self.handle = handle
        if local_channel is None:
            local_channel = env_switch("TRAINQ_LOCAL_CHANNEL", True)
        self.local = LocalChannel(handle) if local_channel else None
        self._reads: Coalescer | None = None  # made in the server's event loop, on first use
        self._submits: Batcher | None = None

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method in READS and not kwargs:
            if self._reads is None:
                self._reads = Coalescer(lambda calls: self._batch("reads", calls))
            return await self._reads.read(method, *args)
        if method == "submit":
            if self._submits is None:
                self._submits = Batcher(lambda items: self._batch("submit_json", items))
            return await self._submits.add(_submit_item(*args, **kwargs))
        return await self._call(method, *args, **kwargs)

    async def _batch(self, method: str, items: list[Any]) -> list[Any]:
        client = await self.local.client() if self.local is not None else None
        if client is not None:
            try:
                return await client.call(method, items)
            except ChannelClosed:
                # The actor restarted or stopped. Through Ray instead, which waits for it; a submit
                # that went through before the connection dropped is not made twice, since every
                # one carries an idempotency key (the HTTP route gives each request one).
                pass
        return await self._call(method, items)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import ray

        try:
            return await getattr(self.handle, method).remote(*args, **kwargs)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, TrainqError):
                raise e.cause from None
            raise
        except ray.exceptions.RayActorError as e:
            raise NotReady(f"the scheduler actor is unavailable ({type(e).__name__}); try again shortly") from None


def _submit_item(spec: Any, idempotency_key: str | None = None, owner: str | None = None) -> tuple[Any, ...]:
    return spec, idempotency_key, owner


class LocalChannel:
    """The scheduler actor's local channel, found through a Ray call and used while this process
    shares the actor's machine (elsewhere its socket is not there to connect to); after it closes
    (the actor restarted) it is found again."""

    #: How long to wait before trying again after the channel could not be had.
    RETRY_S = 5.0

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self._client: ChannelClient | None = None
        self._connecting = False
        self._next_try = 0.0
        self._said: str | None = None  # what was last logged, so a lasting state is logged once

    @property
    def connected(self) -> bool:
        """Whether calls go over the channel now."""
        return self._client is not None and not self._client.closed

    async def client(self) -> ChannelClient | None:
        """The open connection, or None (calls go through Ray meanwhile)."""
        if self.connected:
            return self._client
        if self._connecting or time.monotonic() < self._next_try:
            return None  # another request is connecting, or it failed a moment ago
        self._connecting = True
        try:
            self._client = await self._connect()
            self._say("calling the scheduler over its local channel")
        except Exception as e:  # noqa: BLE001 - whatever keeps the channel away, Ray calls still work
            self._client = None
            self._next_try = time.monotonic() + self.RETRY_S
            self._say(f"calling the scheduler through Ray: no local channel ({e})")
        finally:
            self._connecting = False
        return self._client

    async def _connect(self) -> ChannelClient:
        where = await self.handle.channel.remote()
        # On another node the socket is not here (FileNotFoundError); only the actor knows the secret.
        return await ChannelClient.connect(where["path"], where["secret"])

    def _say(self, what: str) -> None:
        if what != self._said:
            self._said = what
            logger.info(what)


class ServiceBackend:
    """Calls a ``SchedulerService`` in this process (tests, benchmarks, embedded use)."""

    def __init__(self, service: Any) -> None:
        self.service = service

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await getattr(self.service, method)(*args, **kwargs)
