"""WebSocket streams next to the SSE ones: ``/api/training/ws`` and ``/api/training/jobs/{id}/ws``.

They carry the same events as the SSE streams (``api.stream.events``), one JSON message each:
``{"event": "snapshot"|"status"|"report"|..., "id": <event id or null>, "data": {...}}``, and
``{"event": "heartbeat"}`` when nothing happened for a while. Browsers cannot set headers on a
WebSocket, so the token comes as ``?token=`` or as the first message ``{"token": "..."}``
(which may also carry ``"last_event_id"``). ``?last_event_id=N`` resumes after event N.
On an error the server sends ``{"event": "error", "data": {"error", "message"}}`` and closes
with code 4401 (token), 4404 (unknown job) or 1011.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from scheduler import wire
from scheduler.errors import TrainqError

from .auth import token_matches
from .backend import Backend
from .stream import events

router = APIRouter(prefix="/api/training", tags=["training"])
#: how long a client without ``?token=`` has to send its token message
TOKEN_WAIT_S = 10.0
CLOSE_CODES = {"unauthorized": 4401, "not_found": 4404}


@router.websocket("/ws")
async def all_events_ws(websocket: WebSocket) -> None:
    """Every job's events over a WebSocket."""
    await _serve(websocket, None)


@router.websocket("/jobs/{job_id}/ws")
async def job_events_ws(websocket: WebSocket, job_id: str) -> None:
    """One job's events over a WebSocket."""
    await _serve(websocket, job_id)


async def _serve(websocket: WebSocket, job_id: str | None) -> None:
    await websocket.accept()
    backend: Backend = websocket.app.state.backend
    try:
        last_event_id = _int(websocket.query_params.get("last_event_id"))
        token = websocket.query_params.get("token")
        expected = websocket.app.state.token
        users = getattr(websocket.app.state, "users", None)
        if (expected is not None or users is not None) and token is None:
            first = await _first_message(websocket)
            token = first.get("token")
            if first.get("last_event_id") is not None:
                last_event_id = _int(first.get("last_event_id"))
        if not (users.by_token(token) is not None if users is not None else token_matches(expected, token)):
            await _fail(websocket, "unauthorized", "missing or wrong API token: pass ?token=<token> or "
                        'send {"token": "<token>"} as the first message')
            return
        if job_id is not None:
            await backend.get(job_id)  # unknown job: an error now, not an empty stream
        await _pump(websocket, backend, job_id, last_event_id)
    except WebSocketDisconnect:
        return
    except TrainqError as e:
        await _fail(websocket, e.code, e.message, **e.fields)
    except ValueError as e:
        await _fail(websocket, "invalid", str(e))


async def _pump(websocket: WebSocket, backend: Backend, job_id: str | None, last_event_id: int | None) -> None:
    """Send events until the client leaves (noticed at once by a concurrent receive)."""
    heartbeat_s = float(getattr(websocket.app.state, "heartbeat_s", 15.0))

    async def send() -> None:
        async for ev in events(backend, job_id, heartbeat_s, last_event_id):
            if ev.type is None:
                await websocket.send_text('{"event": "heartbeat"}')
            else:
                await websocket.send_text(wire.dumps({"event": ev.type, "id": ev.id, "data": ev.data}))

    async def receive() -> None:
        while True:  # messages after the first are ignored; this notices the close
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return

    sender, receiver = asyncio.create_task(send()), asyncio.create_task(receive())
    done, pending = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    for task in done:
        error = task.exception()
        if error is not None and not isinstance(error, WebSocketDisconnect):
            raise error


async def _first_message(websocket: WebSocket) -> dict[str, Any]:
    try:
        text = await asyncio.wait_for(websocket.receive_text(), TOKEN_WAIT_S)
    except asyncio.TimeoutError:
        return {}
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return {"token": text}  # a bare token is fine too
    return body if isinstance(body, dict) else {}


async def _fail(websocket: WebSocket, code: str, message: str, **fields: Any) -> None:
    try:
        await websocket.send_text(wire.dumps({"event": "error", "data": {"error": code, "message": message,
                                                                          **fields}}))
        await websocket.close(code=CLOSE_CODES.get(code, 1011), reason=message[:120])
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client is already gone


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"last_event_id must be an event id (an integer), got {value!r}") from None


__all__ = ["router"]
