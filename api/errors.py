"""The one place errors become HTTP responses. Never a traceback in a body."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from scheduler.errors import InvalidSpec, NotAllowedHere, TrainqError
from scheduler.validation import describe_errors

from .schemas import ErrorBody

logger = logging.getLogger("trainq.api")

STATUS_BY_CODE = {
    "not_found": 404,
    "conflict": 409,
    "invalid": 422,
    "unauthorized": 401,
    "forbidden": 403,
    "too_large": 413,
    "unavailable": 503,
}
#: What each error status means, written once: a route's OpenAPI ``responses`` name the ones it can
#: answer (``answers``), and the fuzz test holds every answer to them.
MEANING = {
    401: "missing or wrong token (when tokens or a users file are configured)",
    403: "not yours to change: another user's job (only its owner or an admin may; draining a node: an admin),"
         " or an input this"
         " server's admin does not allow (a folder outside TRAINQ_ALLOWED_DIRS, storage outside"
         " TRAINQ_STORAGE_ROOTS: `error` is `invalid` and `field` names it)",
    404: "no such job (or cached model, or live node)",
    409: "the job's state does not allow this, or a well-formed input the server cannot satisfy as things"
         " stand (the cluster is too small for the job, a path or cached model is not on the scheduler's"
         " machine, a checkpoint the job did not record, an owner's quota, a drain Ray refused); `field` names"
         " the input",
    413: "larger than TRAINQ_MAX_PACKAGE_MB",
    422: "invalid input (the schema says so); `field` names it",
    503: "the scheduler cannot act now: its actor is restarting, it is a standby (another scheduler leads the"
         " registry), or the registry's database is unreachable (`where` names host:port; nothing of the"
         " request was committed); try again shortly, with the same Idempotency-Key",
}
#: the ``error`` code of the framework's own refusals (no route, wrong method)
CODE_BY_STATUS = {404: "not_found", 405: "method_not_allowed", 422: "invalid"}
_NOT_JSON = {"error": "invalid", "message": "the request body is not valid JSON", "field": "body"}


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error statuses a route can answer: each an ``ErrorBody`` and its ``MEANING``."""
    return {status: {"model": ErrorBody, "description": MEANING[status]} for status in statuses}


def status_of(exc: TrainqError) -> int:
    """The HTTP status of a trainq error: by its code, with two kinds of well-formed input set apart.

    The OpenAPI document is the same for every server, so a request it allows must not be a 422.
    One this server's admin does not allow (a folder outside TRAINQ_ALLOWED_DIRS, storage outside
    TRAINQ_STORAGE_ROOTS) is a permission matter: 403. One it cannot satisfy as things stand (the
    cluster's size, a file it lacks): 409. Both keep the ``invalid`` code and name the ``field``,
    so clients raise the same ``InvalidSpec`` as through Ray.
    """
    if isinstance(exc, NotAllowedHere):
        return 403
    if isinstance(exc, InvalidSpec) and exc.depends_on_server:
        return 409
    return STATUS_BY_CODE.get(exc.code, 500)


def error_response(exc: TrainqError) -> JSONResponse:
    """A trainq error as every route answers it: its status and JSON body."""
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(exc.to_dict(), status_code=status, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path.

    Starlette's 405 names only the methods of the first route that matched the path, but here
    several routes share one (``GET`` and ``POST /api/training/jobs``), and ``Allow`` must list them all.
    """
    scope = {"type": "http", "path": request.url.path, "root_path": "", "method": request.method}
    methods: set[str] = set()
    for route in _flat(request.app.router.routes):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def _flat(routes: list[Any]) -> Iterator[Any]:
    # Recent FastAPI keeps an included router whole (an ``_IncludedRouter``) instead of copying its
    # routes; theirs already carry the router's own prefix, and app.py includes with no other prefix.
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flat(inner.routes)
        else:
            yield route


def install(app: FastAPI) -> None:
    """Register the handlers that map every error to a JSON body and a status code."""

    @app.exception_handler(TrainqError)
    async def _trainq(request: Request, exc: TrainqError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return JSONResponse(_NOT_JSON, status_code=422)
        errors = [dict(e) for e in exc.errors()]
        for e in errors:  # "body.num_workers" reads better as "num_workers", "query.status.0" as "status"
            where = e["loc"][0] if e["loc"] else None
            e["loc"] = tuple(p for p in e["loc"][1:] if not (where == "query" and isinstance(p, int))) \
                if where in ("body", "query", "path") else tuple(e["loc"])
        _, problems = describe_errors(errors, default_loc="body")
        first = ".".join(str(p) for p in errors[0]["loc"]) if errors else None
        return JSONResponse({"error": "invalid", "message": "invalid request: " + "; ".join(problems),
                             "field": first, "problems": problems}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _framework(request: Request, exc: HTTPException) -> JSONResponse:
        # The framework's own refusals in the same body shape as ours. Its 400 is a body it could
        # not parse (not UTF-8): a 422 like any other malformed body, so clients see one status.
        if exc.status_code == 400:
            return JSONResponse(_NOT_JSON, status_code=422)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        body = {"error": CODE_BY_STATUS.get(exc.status_code, "error"), "message": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal", "message": f"internal error: {type(exc).__name__}"},
                            status_code=500)


__all__ = ["MEANING", "STATUS_BY_CODE", "allowed_methods", "answers", "error_response", "install", "status_of"]
