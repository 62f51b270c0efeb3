"""scheduler.channel: the HTTP API's batched calls to the scheduler over a private Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator
from typing import Any

import pytest

from scheduler.channel import ChannelClient, ChannelClosed, ChannelServer
from scheduler.errors import DoesNotFit, JobNotFound


class FakeService:
    """``reads`` and ``submit_json`` as the scheduler answers them: bytes or typed errors per item."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.release = asyncio.Event()

    async def reads(self, calls: list[list[Any]]) -> list[Any]:
        self.calls.append(("reads", calls))
        out: list[Any] = []
        for method, args in calls:
            if method == "slow":  # waits until told, as a submit waits for its commit
                await self.release.wait()
                out.append(b"slow")
            elif args and args[0] == "slow-one":
                await self.release.wait()
                out.append(f"{method}{args}".encode())
            elif args and args[0] == "nope":
                out.append(JobNotFound("nope"))
            else:
                out.append(f"{method}{args}".encode())
        return out

    async def submit_json(self, items: list[list[Any]]) -> list[Any]:
        self.calls.append(("submit_json", items))
        if any(item[0] == "boom" for item in items):
            raise RuntimeError("the store is gone")
        return [DoesNotFit({"GPU": 9.0}, {"GPU": 8.0}) if item[0] == "huge" else b'{"job_id":"job_1"}'
                for item in items]


async def _pair() -> tuple[ChannelServer, ChannelClient, FakeService]:
    service = FakeService()
    server = ChannelServer(service)
    path = await server.start()
    return server, await ChannelClient.connect(path, server.secret), service


@contextlib.asynccontextmanager
async def _connected() -> AsyncIterator[tuple[ChannelServer, ChannelClient, FakeService]]:
    """A server over a fake service and a client connected to it, both closed at the end."""
    server, client, service = await _pair()
    try:
        yield server, client, service
    finally:
        client.close()
        server.close()


def test_answers_come_back_as_bytes_and_errors_as_their_own_types() -> None:
    async def main() -> None:
        async with _connected() as (_, client, service):
            got = await client.reads([("get_json", ("job_a",)), ("get_json", ("nope",)),
                                              ("page_json", (["queued"], 10, 0))])
            assert got[0] == b"get_json['job_a']" and got[2] == b"page_json[['queued'], 10, 0]"
            assert isinstance(got[1], JobNotFound) and got[1].fields == {"job_id": "nope"}
            assert got[1].to_dict() == JobNotFound("nope").to_dict()
            (ok, refused) = await client.submit_json([({"num_workers": 1}, "k1", None),
                                                              ("huge", "k2", "ann")])
            assert ok == b'{"job_id":"job_1"}'
            assert isinstance(refused, DoesNotFit) and refused.depends_on_server  # a 409 over HTTP, as through Ray
            assert refused.fields["requested"] == {"GPU": 9.0}
            assert service.calls[1] == ("submit_json", [[{"num_workers": 1}, "k1", None], ["huge", "k2", "ann"]])

    asyncio.run(main())


def test_a_call_that_fails_as_a_whole_raises_and_the_connection_goes_on() -> None:
    async def main() -> None:
        async with _connected() as (_, client, _):
            with pytest.raises(RuntimeError, match="the scheduler failed submit_json: RuntimeError: the store is gone"):
                await client.submit_json([("boom", None, None)])
            # Only the two batched calls are served, whatever a client sends: no other method is reachable.
            with pytest.raises(RuntimeError, match="'pause' is not served on the local channel"):
                await client._call("pause", "job_a")
            with pytest.raises(RuntimeError, match="'__init__' is not served on the local channel"):
                await client._call("__init__", [])
            assert await client.reads([("get_json", ("job_a",))]) == [b"get_json['job_a']"]

    asyncio.run(main())


def test_a_slow_call_holds_up_no_other_on_the_same_connection() -> None:
    async def main() -> None:
        async with _connected() as (_, client, service):
            slow = asyncio.ensure_future(client.reads([("slow", ())]))
            await asyncio.sleep(0.05)
            assert await asyncio.wait_for(client.reads([("get_json", ("b",))]), 2) == [b"get_json['b']"]
            assert not slow.done()
            service.release.set()
            assert await slow == [b"slow"]

    asyncio.run(main())


def test_only_a_client_with_the_secret_gets_in_and_the_socket_is_private() -> None:
    async def main() -> None:
        async with _connected() as (server, client, _):
            path = await server.start()  # started once: the same socket
            mode = os.stat(os.path.dirname(path)).st_mode
            assert stat.S_IMODE(mode) == 0o700  # no other user can even reach the socket
            with pytest.raises(ConnectionError, match="refused"):
                await ChannelClient.connect(path, b"x" * 32)
            # Not a frame at all: the server drops that connection and serves the others.
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"\xff\xff\xff\xffgarbage")
            assert await reader.read() == b""
            writer.close()
            assert await client.reads([("get_json", ("a",))]) == [b"get_json['a']"]
        assert not os.path.exists(path)  # close removes the folder

    asyncio.run(main())


def test_calls_waiting_when_the_scheduler_goes_away_raise_channel_closed() -> None:
    async def main() -> None:
        server, client, _ = await _pair()
        waiting = asyncio.ensure_future(client.reads([("slow", ())]))
        await asyncio.sleep(0.05)
        assert server.connections == 1
        server.close()  # as the actor's process ending closes every connection
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(waiting, 5)
        assert client.closed
        with pytest.raises(ChannelClosed):
            await client.reads([("get_json", ("a",))])

    asyncio.run(main())


class FakeHandle:
    """The actor's handle as ``ActorBackend`` uses it (``handle.<method>.remote(...)``, awaited):
    the calls that came through "Ray", and the channel of the actor as it is now."""

    def __init__(self, service: FakeService, server: ChannelServer) -> None:
        self.service, self.server, self.ray_calls = service, server, []

    def __getattr__(self, method: str) -> Any:
        handle = self

        class Method:
            @staticmethod
            async def remote(*args: Any) -> Any:
                handle.ray_calls.append(method)
                if method == "channel":
                    return {"path": await handle.server.start(), "secret": handle.server.secret}
                return await getattr(handle.service, method)(*args)

        return Method


def test_the_backend_uses_the_channel_falls_back_to_ray_when_it_closes_and_finds_it_again() -> None:
    from api.backend import ActorBackend

    async def main() -> None:
        service = FakeService()
        handle = FakeHandle(service, ChannelServer(service))
        backend = ActorBackend(handle, local_channel=True)
        assert await backend.get_json("a") == b"get_json['a']"
        assert await backend.submit({"num_workers": 1}, "k1", "ann") == b'{"job_id":"job_1"}'
        assert handle.ray_calls == ["channel"] and backend.local.connected  # both over the channel
        assert service.calls[-1] == ("submit_json", [[{"num_workers": 1}, "k1", "ann"]])

        # The actor restarts while a call is on the way: the call is made again through Ray.
        waiting = asyncio.ensure_future(backend.get_json("slow-one"))
        await asyncio.sleep(0.05)
        handle.server.close()
        handle.server = ChannelServer(service)  # the restarted actor's channel: a new socket, a new secret
        service.release.set()
        # answered through Ray (the fake echoes the arguments as Ray passes them: a tuple, not a list)
        assert await asyncio.wait_for(waiting, 5) == b"get_json('slow-one',)"
        assert handle.ray_calls == ["channel", "reads"] and not backend.local.connected
        # The next call finds the new channel and goes over it again.
        with pytest.raises(JobNotFound):
            await backend.get_json("nope")
        assert handle.ray_calls == ["channel", "reads", "channel"] and backend.local.connected
        handle.server.close()

    asyncio.run(main())

