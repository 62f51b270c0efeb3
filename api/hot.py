"""The hot routes, answered without FastAPI's per-request machinery.

``GET /api/training/jobs/{job_id}``, ``GET /api/training/jobs``, ``GET /api/training/queue`` and
``POST /api/training/jobs`` are what pages poll and scripts hammer. FastAPI's routing, dependency
solving and parameter handling cost about 0.1 ms a request here, as much as a one-route app's
whole request and more than the scheduler's own answer (``api.coalesce`` batches those). So this
ASGI middleware answers those four routes itself when a request is plainly valid, with the same
token check (``auth.caller_of``), the same calls and the same answers and error bodies
(``routes.json_response``, ``errors.error_response``), and hands every other request to the
FastAPI app untouched: another route, a query value or body the routes would refuse (their 422
says why), anything unusual. The routes stay the contract (OpenAPI, validation, messages); the
tests send the same requests both ways and compare the answers.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import Headers, QueryParams, State
from starlette.responses import Response

from scheduler.errors import TrainqError
from scheduler.spec import JobSpec
from scheduler.states import JobStatus

from . import routes
from .auth import caller_of
from .errors import error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JOBS = "/api/training/jobs"
_ONE_JOB = _JOBS + "/"
_QUEUE = "/api/training/queue"
_STATUSES = frozenset(s.value for s in JobStatus)
_JSON = ("application/json", "application/json; charset=utf-8")
_KEY_CHARS = frozenset(range(0x20, 0x7F))  # the Idempotency-Key header's pattern: printable ASCII


class HotRoutes:
    """ASGI middleware: the four hot routes served directly, everything else passed on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            if scope["method"] == "GET":
                call = _read(scope["path"], scope["query_string"])
                if call is not None:
                    return await _respond(scope, receive, send, _read_answer(scope, call))
            elif scope["method"] == "POST" and scope["path"] == _JOBS and not scope["query_string"]:
                return await self._submit(scope, receive, send)
        await self.app(scope, receive, send)

    async def _submit(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, replay = await _body(receive)
        headers = Headers(scope=scope)
        # In FastAPI's order: a body that is not JSON (422), then the token (401), then the spec (422).
        key = headers.get("idempotency-key")
        data: Any = None
        if headers.get("content-type", "").lower() in _JSON and _key_ok(key):
            try:
                data = json.loads(body)
            except ValueError:
                pass
        if not isinstance(data, dict):
            return await self.app(scope, replay, send)
        state: State = scope["app"].state
        try:
            caller = caller_of(state, headers.get("authorization", ""))
        except TrainqError as e:
            return await error_response(e)(scope, receive, send)
        try:
            spec = JobSpec.model_validate(data)
        except ValidationError:
            return await self.app(scope, replay, send)  # the route's 422 names the fields
        await _respond(scope, receive, send, routes.submit_job(state.backend, spec, key, caller))


async def _read_answer(scope: Scope, call: tuple[Any, ...]) -> Response:
    """A hot read as its route answers it, once the token is checked (as the router's dependency does)."""
    state: State = scope["app"].state
    caller_of(state, Headers(scope=scope).get("authorization", ""))
    return routes.json_response(await state.backend.call(*call))


async def _respond(scope: Scope, receive: Receive, send: Send, answer: Awaitable[Response]) -> None:
    """Send ``answer``, or the error it raised as every route answers it."""
    try:
        response = await answer
    except TrainqError as e:
        response = error_response(e)
    await response(scope, receive, send)


def _read(path: str, query: bytes) -> tuple[Any, ...] | None:
    """The scheduler read a GET asks for, ``(method, *args)``, or None: not one of ours, or not plainly valid."""
    if path.startswith(_ONE_JOB):
        job_id = path[len(_ONE_JOB):]
        return ("get_json", job_id) if job_id and "/" not in job_id and not query else None
    if path == _JOBS:
        params = _params(query, ("limit", "offset"))
        if params is None:
            return None
        statuses = params.getlist("status") or None
        if statuses is not None and not _STATUSES.issuperset(statuses):
            return None
        limit, offset = _int(params, "limit", 100, routes.MAX_LIST, 1), _int(params, "offset", 0, routes.MAX_OFFSET)
        return None if limit is None or offset is None else ("page_json", statuses, limit, offset)
    if path == _QUEUE:
        params = _params(query, ("limit", "offset"))
        if params is None:
            return None
        limit = _int(params, "limit", None, routes.MAX_PAGE, 1)
        offset = _int(params, "offset", 0, routes.MAX_OFFSET)
        if offset is None or (limit is None and "limit" in params):
            return None
        return "queue_json", limit, offset
    return None


def _params(query: bytes, scalars: tuple[str, ...]) -> QueryParams | None:
    """The query as the routes read it (others are ignored, as they ignore them), or None when a
    parameter that is not a list comes twice."""
    params = QueryParams(query)
    return None if any(len(params.getlist(name)) > 1 for name in scalars) else params


def _int(params: QueryParams, name: str, default: int | None, most: int, least: int = 0) -> int | None:
    """A plain decimal within ``least..most``, the default when absent, None otherwise."""
    text = params.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        return None
    value = int(text)
    return value if least <= value <= most else None


def _key_ok(key: str | None) -> bool:
    """An Idempotency-Key the route accepts (absent, or 1-200 printable ASCII characters)."""
    return key is None or (0 < len(key) <= 200 and _KEY_CHARS.issuperset(key.encode("latin-1")))


async def _body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a ``receive`` that gives it again (for the app, if it is passed on)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the app see that
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay
