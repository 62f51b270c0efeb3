"""The one place errors become HTTP responses. Never a traceback in a body."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from scheduler.errors import TrainqError
from scheduler.spec import describe_errors

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


def install(app: FastAPI) -> None:
    """Register the handlers that map every error to a JSON body and a status code."""

    @app.exception_handler(TrainqError)
    async def _trainq(request: Request, exc: TrainqError) -> JSONResponse:
        status = STATUS_BY_CODE.get(exc.code, 500)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(exc.to_dict(), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [dict(e) for e in exc.errors()]
        for e in errors:  # "body.num_workers" reads better as "num_workers", "query.status.0" as "status"
            where = e["loc"][0] if e["loc"] else None
            e["loc"] = tuple(p for p in e["loc"][1:] if not (where == "query" and isinstance(p, int))) \
                if where in ("body", "query", "path") else tuple(e["loc"])
        _, problems = describe_errors(errors, default_loc="body")
        first = ".".join(str(p) for p in errors[0]["loc"]) if errors else None
        return JSONResponse({"error": "invalid", "message": "invalid request: " + "; ".join(problems),
                             "field": first, "problems": problems}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal", "message": f"internal error: {type(exc).__name__}"},
                            status_code=500)


__all__ = ["STATUS_BY_CODE", "install"]
