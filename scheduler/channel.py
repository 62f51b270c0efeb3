"""The local channel: the HTTP API's batched calls to the scheduler actor over a Unix socket.

A Ray actor call costs about 1.7 ms from an asyncio caller on 2 cores, and about 0.4 ms of the
caller's CPU; a round trip on a Unix socket costs about 0.1 ms. The HTTP API makes one call per
batch of hot reads or submits (``api.coalesce``), so that round trip bounds how many requests a
second it can answer. When the API process runs on the scheduler actor's node (``trainq serve``
on the head), it reaches the actor here instead; anywhere else, or whenever the channel is gone
(the actor restarted), it uses Ray calls as before. The channel serves only the batched methods
(``METHODS``); the actor still runs them in its own event loop, one at a time, as Ray would.

Who may connect: the socket lives in a folder that only the actor's user can enter, and the
first frame a client sends must be the actor's secret, which it hands out only through a Ray
call (``SchedulerActor.channel``). So the channel is exactly as open as the actor itself.

Frames are a 4-byte big-endian length and a msgpack body: the secret, then requests
``[number, method, args]``, each answered (in any order) by ``[number, True, items]`` or
``[number, False, message]``. Calls on one connection run concurrently in the actor's event
loop, so a submit waiting for its fsync holds up no read. An item is
bytes (JSON the scheduler encoded) or an error ``[class name, message, fields]``. The method in a
request is one of two tags (``reads``, ``submit_json``), each mapped to the service's own method
when the server is made; nothing else is callable.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgpack

from .errors import TrainqError, error_from_parts, error_parts

logger = logging.getLogger("trainq.channel")

#: What the channel serves: the service's batched methods, each a list of items in, one answer each out.
METHODS = frozenset({"reads", "submit_json"})
#: One answer per item: JSON bytes, or the typed error that refused the item.
Answers = list[Any]


class BatchedService(Protocol):
    """What the channel serves (``SchedulerService``'s batched calls)."""

    async def reads(self, calls: list[Any]) -> Answers:
        """Hot reads, ``(method, args)`` each."""

    async def submit_json(self, items: list[Any]) -> Answers:
        """Submits, ``(spec, idempotency_key, owner)`` each, stored with one commit."""
#: Larger frames close the connection (a queue page of 10,000 jobs is about 10 MB).
MAX_FRAME = 256 * 2**20
_HANDSHAKE_S = 5.0
_LENGTH = 4


class ChannelClosed(ConnectionError):
    """The connection ended before this call's answer came (it may or may not have run)."""


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(_LENGTH, "big") + body


async def _read_frame(reader: asyncio.StreamReader, limit: int) -> bytes:
    length = int.from_bytes(await reader.readexactly(_LENGTH), "big")
    if length > limit:
        raise ValueError(f"a frame of {length} bytes is larger than the {limit} allowed")
    return await reader.readexactly(length)


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, default=str, use_bin_type=True)


def _encode(answer: Any) -> Any:
    return list(error_parts(answer)) if isinstance(answer, TrainqError) else answer


def _decode(item: Any) -> Any:
    return error_from_parts(*item) if isinstance(item, list) else item


class ChannelServer:
    """Serves ``service``'s ``METHODS`` on a Unix socket in a private folder (call ``start``)."""

    def __init__(self, service: BatchedService) -> None:
        self.service = service
        self._methods: dict[str, Callable[[list[Any]], Awaitable[Answers]]] = {
            "reads": service.reads, "submit_json": service.submit_json}
        self.secret = secrets.token_bytes(32)
        self._folder: str | None = None
        self._server: asyncio.AbstractServer | None = None
        self._started: asyncio.Future[str] | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        """Listen (once; later calls wait for the first) and return the socket's path."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                # mkdtemp makes the folder 0700: no other user can reach the socket inside it.
                self._folder = tempfile.mkdtemp(prefix="trainq-")
                path = os.path.join(self._folder, "scheduler.sock")
                self._server = await asyncio.start_unix_server(self._serve, path, limit=2**20)
                self._started.set_result(path)
            except BaseException as e:
                self._started.set_exception(e)
                self._started = None
                raise
        return await asyncio.shield(self._started)

    @property
    def connections(self) -> int:
        """How many clients are connected now."""
        return len(self._writers)

    def close(self) -> None:
        """Stop listening, end every connection (their calls raise ``ChannelClosed``), remove the folder."""
        try:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
        except RuntimeError:  # at the process's exit its event loop may be closed already
            pass
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            given = await asyncio.wait_for(_read_frame(reader, 1024), _HANDSHAKE_S)
            if not hmac.compare_digest(given, self.secret):
                logger.warning("a local channel connection without the scheduler's secret was refused")
                return
            writer.write(_frame(b"ok"))
            self._writers.add(writer)
            calls: set[asyncio.Task[None]] = set()
            while True:
                number, method, args = msgpack.unpackb(await _read_frame(reader, MAX_FRAME), raw=False)
                # Each call in a task of its own: one that waits (a submit's fsync) holds up no other.
                call = asyncio.get_running_loop().create_task(self._answer(writer, number, method, args))
                calls.add(call)
                call.add_done_callback(calls.discard)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError):
            pass  # the client went away (or never said who it is)
        except (ValueError, TypeError, msgpack.UnpackException) as e:  # not our protocol
            logger.warning("local channel connection dropped: %s", e)
        except Exception:
            logger.exception("local channel connection failed")
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, number: int, method: str, args: list[Any]) -> None:
        try:
            call = self._methods.get(method)
            if call is None or len(args) != 1:
                raise ValueError(f"{method!r} is not served on the local channel (only {sorted(METHODS)})")
            answers = await call(args[0])
            reply = [number, True, [_encode(a) for a in answers]]
        except Exception as e:  # the call as a whole failed: the caller raises it, as a Ray call would
            logger.exception("local channel call %s failed", method)
            reply = [number, False, f"{type(e).__name__}: {e}"]
        if not writer.is_closing():
            writer.write(_frame(_pack(reply)))  # one write per frame: replies never interleave


class ChannelClient:
    """One connection to a ``ChannelServer``; calls may overlap, each answer finds its call by number."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._waiting: dict[int, asyncio.Future[tuple[bool, Any]]] = {}
        self._numbers = itertools.count()
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._replies())

    @classmethod
    async def connect(cls, path: str, secret: bytes, timeout_s: float = _HANDSHAKE_S) -> ChannelClient:
        """Connect and say who we are; raises ``ConnectionError`` when the scheduler refuses."""
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path, limit=2**20), timeout_s)
        try:
            writer.write(_frame(secret))
            if await asyncio.wait_for(_read_frame(reader, 16), timeout_s) != b"ok":
                raise ConnectionError("the scheduler's local channel refused the connection")
        except asyncio.IncompleteReadError:
            writer.close()
            raise ConnectionError("the scheduler's local channel refused the connection") from None
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer)

    @property
    def closed(self) -> bool:
        return self._closed

    async def reads(self, calls: list[Any]) -> Answers:
        """``SchedulerService.reads(calls)`` in the actor; see ``_call``."""
        return await self._call("reads", calls)

    async def submit_json(self, items: list[Any]) -> Answers:
        """``SchedulerService.submit_json(items)`` in the actor; see ``_call``."""
        return await self._call("submit_json", items)

    async def _call(self, method: str, *args: Any) -> Answers:
        """``method(*args)`` on the scheduler: one answer per item, errors as their typed exceptions.

        Raises ``ChannelClosed`` if the connection is (or goes) away first, and ``RuntimeError``
        if the call as a whole failed in the scheduler.
        """
        if self._closed:
            raise ChannelClosed("the local channel is closed")
        number = next(self._numbers)
        future: asyncio.Future[tuple[bool, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        try:
            self._writer.write(_frame(_pack([number, method, list(args)])))
            ok, value = await future
        finally:
            self._waiting.pop(number, None)
        if not ok:
            raise RuntimeError(f"the scheduler failed {method}: {value}")
        return [_decode(item) for item in value]

    def close(self) -> None:
        """Close the connection; calls still waiting raise ``ChannelClosed``."""
        self._task.cancel()
        self._fail(ChannelClosed("the local channel was closed"))

    async def _replies(self) -> None:
        try:
            while True:
                number, ok, value = msgpack.unpackb(await _read_frame(self._reader, MAX_FRAME), raw=False)
                future = self._waiting.get(number)
                if future is not None and not future.done():  # else its caller was cancelled
                    future.set_result((ok, value))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            self._fail(ChannelClosed("the scheduler's local channel closed (the actor restarted or stopped)"))
        except Exception as e:  # a frame we cannot read: this connection is of no more use
            logger.exception("local channel reply unreadable")
            self._fail(ChannelClosed(f"the local channel failed: {e}"))

    def _fail(self, error: ChannelClosed) -> None:
        self._closed = True
        self._writer.close()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error)
