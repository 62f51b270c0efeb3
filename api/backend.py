"""How the API reaches the scheduler: the actor's own methods, awaited without blocking."""

from __future__ import annotations

from typing import Any, Protocol

from scheduler.errors import NotReady, TrainqError

from .coalesce import READS, Coalescer


class Backend(Protocol):
    """The scheduler actor's public methods, as awaitables returning plain dicts."""

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any: ...


class ActorBackend:
    """Calls the scheduler actor; its typed errors come back as themselves.

    The hot reads (``coalesce.READS``) that arrive while one is in flight share the next actor
    call (``api.coalesce``); every other method is one actor call per request.
    """

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self._reads: Coalescer | None = None  # made in the server's event loop, on the first read

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method in READS and not kwargs:
            if self._reads is None:
                self._reads = Coalescer(lambda calls: self._call("reads", calls))
            return await self._reads.read(method, *args)
        return await self._call(method, *args, **kwargs)

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


class ServiceBackend:
    """Calls a ``SchedulerService`` in this process (tests, benchmarks, embedded use)."""

    def __init__(self, service: Any) -> None:
        self.service = service

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await getattr(self.service, method)(*args, **kwargs)
