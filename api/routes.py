"""The HTTP routes: thin, one per verb; the scheduler decides, errors map in api/errors.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BeforeValidator

from scheduler import wire
from scheduler.client import new_key
from scheduler.errors import TooLarge
from scheduler.model_cache import MODEL_ID_MAX, MODEL_ID_PATTERN
from scheduler.spec import JobSpec
from scheduler.states import JobStatus
from scheduler.verbs import SweepVerb

from . import schemas, stream
from .auth import Authorized, Caller, require_token
from .backend import Backend, JSONBytes
from .errors import answers

#: Every route behind the token can answer these; each route adds the error statuses of its own
#: (``errors.answers``; what each means is written once, in ``errors.MEANING``). A route with a path
#: parameter names 422 even where no value can fail: FastAPI documents one there anyway, and naming it
#: gives it the body trainq sends.
_EVERY = answers(401, 503)
#: bounds on counts and offsets: far above any real use, well inside SQLite's 64-bit integers
MAX_OFFSET = 1_000_000_000
MAX_PAGE = 10_000
#: the largest page of ``GET /jobs``
MAX_LIST = 1000
MAX_EVENT_ID = 2**62
MAX_ATTEMPT = 1_000_000
#: a pause deadline: one year (a timestamp past year 9999 would not print)
MAX_DEADLINE_S = 365 * 86400.0
_ZIP_BODY = {"requestBody": {"required": True, "content": {"application/zip": {
    "schema": {"type": "string", "format": "binary"}}}}}
router = APIRouter(prefix="/api/training", dependencies=[Depends(require_token)], tags=["training"],
                   responses=_EVERY)
health_router = APIRouter(tags=["health"], responses=answers(503))


class WireJSON(JSONResponse):
    """JSON as trainq sends it everywhere (``scheduler.wire``): a NaN metric is a string, not a 500."""

    def render(self, content: Any) -> bytes:
        return wire.dumps_bytes(content)


def json_response(body: JSONBytes, status_code: int = 200) -> Response:
    """JSON the scheduler encoded, sent as it is. A route that returns a ``Response`` skips FastAPI's
    re-validation and re-encoding against its ``response_model`` (which still documents it in the
    OpenAPI schema, and which the fuzz test checks every answer against): the hot routes' way."""
    return Response(body, status_code=status_code, media_type="application/json")


def backend_of(request: Request) -> Backend:
    """The app's backend: read from the app's state, no dependency to solve per request (the hot routes)."""
    backend: Backend = request.app.state.backend
    return backend


async def _backend(request: Request) -> Backend:  # async: no worker-thread hop (api/auth.py)
    return backend_of(request)


BackendDep = Annotated[Backend, Depends(_backend)]
JobId = Annotated[str, "job id"]
RecordedPath = Annotated[str, Query(min_length=1, description="a checkpoint this job recorded")]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[\x20-\x7e]+$",
    description="the same key again returns the first answer instead of acting twice (safe retries)")]


#: The four hot routes, ``(method, path, endpoint, route options)``: see ``add_hot_routes``.
HOT: list[tuple[str, str, Callable[..., Any], dict[str, Any]]] = []


def _hot(method: str, path: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a hot route (as ``router.get``/``router.post`` would, with the router's settings)."""
    def declare(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        HOT.append((method, path, endpoint, options))
        return endpoint
    return declare


def add_hot_routes(app: FastAPI) -> None:
    """The four hot routes (submit, list, one job, the queue: what pages poll and scripts hammer) on
    the app itself, ahead of every other route, with ``router``'s prefix, tags and errors.

    FastAPI matches the routes of an included router through a layer of its own on every request
    (about a third of the framework's time per request here); the app's own routes are matched
    directly, in order. Solving a dependency costs as much again, so each hot route has exactly one,
    the token check it names in its signature (``Authorized``, or ``Caller`` where it needs the
    user), instead of the router's check beside its own; it takes the backend from the app's state
    and returns the scheduler's JSON bytes as a ``Response`` (nothing re-validated or re-encoded).
    Their parameters, bodies and the token are checked by FastAPI as on every route, in the same
    order (the token before the parameters): each rule is written once.
    """
    for method, path, endpoint, options in HOT:
        own = options.get("responses", {})
        app.add_api_route(router.prefix + path, endpoint, methods=[method], tags=router.tags,
                          **{**options, "responses": {**router.responses, **own}})


@_hot("POST", "/jobs", response_model=schemas.JobPublic, status_code=201, summary="Submit a job",
      responses={**answers(403, 409, 422), 200: {"model": schemas.DryRunResponse,
                                                 "description": "dry_run: what a submit would do now"}})
async def submit(request: Request, spec: Annotated[JobSpec, Body()], caller: Caller,
                 idempotency_key: IdempotencyKey = None,
                 dry_run: Annotated[bool, Query(description="validate and answer whether it would start now, why"
                                                " not, when, and whom it would preempt; nothing is created")] = False
                 ) -> Response:
    # Only what the body set: a keep_checkpoints left out takes the setting, an explicit null keeps all.
    body = spec.model_dump(mode="json", exclude_unset=True)
    if dry_run:
        return WireJSON(await backend_of(request).dry_run(body, caller))
    # Without a key the call gets one anyway, so Ray re-running it after a restart acts once.
    job = await backend_of(request).submit(body, idempotency_key or new_key(), caller)
    return json_response(job, 201)


@router.post("/packages", response_model=schemas.PackagePublic, status_code=201, openapi_extra=_ZIP_BODY,
             responses=answers(413, 422),
             summary="Upload a folder (a zip) for a job's runtime_env working_dir or py_modules")
async def upload_package(request: Request, backend: BackendDep,
                         name: Annotated[str, Query(
                             min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                             description="the folder's name (for py_modules: the module's)")]) -> Any:
    limit = int(request.app.state.max_package_mb * 2**20)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the package is {declared} bytes, more than the {limit} bytes allowed"
                       " (setting TRAINQ_MAX_PACKAGE_MB)", limit_bytes=limit)
    body = bytearray()
    async for chunk in request.stream():  # counted as it arrives: a missing or false length stops here too
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"the package is more than the {limit} bytes allowed (setting TRAINQ_MAX_PACKAGE_MB)",
                           limit_bytes=limit)
    return await backend.store_package(name, bytes(body))


@_hot("GET", "/jobs", response_model=schemas.JobList, summary="List jobs, newest first", responses=answers(422))
async def list_jobs(
    request: Request,
    _: Authorized,
    status: Annotated[list[JobStatus] | None, Query(description="repeat to filter by several")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Response:
    statuses = [s.value for s in status] if status else None
    return json_response(await backend_of(request).page_json(statuses, limit, offset))  # jobs and total at once


@_hot("GET", "/jobs/{job_id}", response_model=schemas.JobPublic, summary="One job",
      responses=answers(404, 422))
async def get_job(request: Request, _: Authorized, job_id: JobId) -> Response:
    return json_response(await backend_of(request).get_json(job_id))


@_hot("GET", "/queue", response_model=list[schemas.JobPublic], summary="The queue, in start order",
      responses=answers(422))
async def queue(request: Request, _: Authorized, limit: Annotated[int | None, Query(ge=1, le=MAX_PAGE)] = None,
                offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> Response:
    return json_response(await backend_of(request).queue_json(limit, offset))


@router.patch("/jobs/{job_id}", response_model=schemas.JobPublic, summary="Change a job's priority",
              responses=answers(403, 404, 409, 422))
async def patch_job(job_id: JobId, body: schemas.JobPatch, backend: BackendDep, caller: Caller) -> Any:
    return await backend.set_priority(job_id, body.priority, as_user=caller)


@router.post("/pause/{job_id}", response_model=schemas.PauseResponse, summary="Pause a job",
             responses=answers(403, 404, 409, 422))
async def pause(job_id: JobId, backend: BackendDep, caller: Caller,
                deadline_s: Annotated[float | None, Query(
                    gt=0, le=MAX_DEADLINE_S,
                    description="stop anyway after this long (default: from the job's checkpoint cadence)")] = None,
                no_deadline: Annotated[bool, Query(description="no default deadline: wait for the checkpoint however"
                                                   " long (a deadline_s given as well still applies)")] = False,
                idempotency_key: IdempotencyKey = None) -> Any:
    return await backend.pause(job_id, deadline_s, no_deadline, idempotency_key or new_key(), as_user=caller)


@router.post("/checkpoint/{job_id}", response_model=schemas.CheckpointResponse, responses=answers(403, 404, 409, 422),
             summary="Save a checkpoint now and keep running (jobs that use the cooperative hook)")
async def checkpoint(job_id: JobId, backend: BackendDep, caller: Caller) -> Any:
    return await backend.checkpoint(job_id, as_user=caller)


@router.post("/resume/{job_id}", response_model=schemas.ResumeResponse, summary="Resume a job",
             responses=answers(403, 404, 409, 422))
async def resume(job_id: JobId, backend: BackendDep, caller: Caller,
                 checkpoint_path: Annotated[str | None, Query(description="a checkpoint this job recorded")] = None,
                 idempotency_key: IdempotencyKey = None) -> Any:
    return await backend.resume(job_id, checkpoint_path, idempotency_key or new_key(), as_user=caller)


@router.post("/cancel/{job_id}", response_model=schemas.JobPublic, summary="Cancel a job",
             responses=answers(403, 404, 409, 422))
async def cancel(job_id: JobId, backend: BackendDep, caller: Caller, idempotency_key: IdempotencyKey = None) -> Any:
    return await backend.cancel(job_id, idempotency_key or new_key(), as_user=caller)


SweepId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", max_length=128, description="a sweep's id")]


@router.get("/sweeps/{sweep_id}", response_model=schemas.SweepPublic, responses=answers(404, 422),
            summary="A sweep's members with their states and latest metrics, best first by its metric")
async def sweep(sweep_id: SweepId, backend: BackendDep) -> Any:
    return await backend.sweep(sweep_id)


@router.post("/sweeps/{sweep_id}/{action}", response_model=schemas.SweepActionResponse,
             responses=answers(403, 404, 422), summary="Pause, resume or cancel every member of a sweep that can")
async def sweep_action(sweep_id: SweepId, action: SweepVerb, backend: BackendDep,
                       caller: Caller) -> Any:
    return await backend.sweep_action(sweep_id, action, as_user=caller)


@router.get("/jobs/{job_id}/checkpoints", response_model=list[schemas.CheckpointPublic], responses=answers(404, 422),
            summary="Every checkpoint the job recorded, newest first")
async def checkpoints(job_id: JobId, backend: BackendDep) -> Any:
    return await backend.checkpoints(job_id)


@router.post("/jobs/{job_id}/checkpoints/pin", response_model=schemas.CheckpointPublic,
             responses=answers(403, 404, 409, 422),
             summary="Pin a recorded checkpoint: kept whatever keep_checkpoints says")
async def pin_checkpoint(job_id: JobId, backend: BackendDep,
                         caller: Caller,
                         path: RecordedPath) -> Any:
    return await backend.pin_checkpoint(job_id, path, True, as_user=caller)


@router.post("/jobs/{job_id}/checkpoints/unpin", response_model=schemas.CheckpointPublic,
             responses=answers(403, 404, 409, 422),
             summary="Unpin a checkpoint; the retention rule applies to it again (it may be deleted at once)")
async def unpin_checkpoint(job_id: JobId, backend: BackendDep,
                           caller: Caller,
                           path: RecordedPath) -> Any:
    return await backend.pin_checkpoint(job_id, path, False, as_user=caller)


@router.get("/jobs/{job_id}/metrics", response_model=list[schemas.ReportPublic], responses=answers(404, 422),
            summary="Metrics history: every report, oldest first")
async def metrics(job_id: JobId, backend: BackendDep, after_id: Annotated[int, Query(ge=0, le=MAX_EVENT_ID)] = 0,
                  limit: Annotated[int | None, Query(ge=1, le=MAX_PAGE)] = None) -> Any:
    return await backend.reports(job_id, after_id, limit)


@router.get("/jobs/{job_id}/history", response_model=schemas.History, responses=answers(404, 422),
            summary="State transitions and attempts")
async def history(job_id: JobId, backend: BackendDep) -> Any:
    return await backend.history(job_id)


@router.get("/jobs/{job_id}/logs", response_model=schemas.Logs, responses=answers(404, 422),
            summary="The last lines of the runner's and every worker's output")
async def logs(job_id: JobId, backend: BackendDep, attempt: Annotated[int | None, Query(ge=1, le=MAX_ATTEMPT)] = None,
               tail: Annotated[int, Query(ge=1, le=10_000)] = 200) -> Any:
    return await backend.logs(job_id, attempt, tail)


LastEventId = Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=MAX_EVENT_ID,
                                           description="resume after this event id (instead of a snapshot)")]


@router.get("/jobs/{job_id}/events", summary="Live stream (SSE) of one job's state changes and reports",
            responses=answers(404, 422))
async def job_events(job_id: JobId, backend: BackendDep, last_event_id: LastEventId = None) -> StreamingResponse:
    await backend.get(job_id)  # 404 before the stream starts
    return StreamingResponse(stream.follow(backend, job_id, last_event_id=last_event_id),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/events", summary="Live stream (SSE) of every job's state changes and reports",
            responses=answers(422))
async def all_events(backend: BackendDep, last_event_id: LastEventId = None) -> StreamingResponse:
    return StreamingResponse(stream.follow(backend, None, last_event_id=last_event_id),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _iso_time_only(value: Any) -> Any:
    """Refuse epoch numbers, which pydantic would read as times but the schema's date-time does not allow."""
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", value):
        raise ValueError("must be an ISO 8601 time such as 2026-11-29T10:00:00Z")
    return value


usage_router = APIRouter(prefix="/api", dependencies=[Depends(require_token)], tags=["usage"], responses=_EVERY)


@usage_router.get("/usage", response_model=schemas.Usage, responses=answers(422),
                  summary="Resource use per user or per job: GPU-hours, CPU-hours, lost work, preemptions, attempts")
async def usage(backend: BackendDep,
                by: Annotated[str, Query(pattern="^(user|job)$", description="user or job")] = "user",
                since: Annotated[datetime | None, BeforeValidator(_iso_time_only),
                                 Query(description="ISO 8601 time; without a zone, UTC (default: all time)")] = None
                ) -> Any:
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    return await backend.usage(by, None if since is None else since.timestamp())


ModelId = Annotated[str, Path(pattern=MODEL_ID_PATTERN, max_length=MODEL_ID_MAX,
                               description='a hub model id, "org/name" or "name"')]
models_router = APIRouter(prefix="/api/models", dependencies=[Depends(require_token)], tags=["models"],
                          responses=_EVERY)


@models_router.post("", response_model=schemas.ModelEntry, status_code=202, responses=answers(422),
                    summary="Download a model from the HuggingFace hub into the cache (in the background)")
async def pull_model(body: schemas.ModelPull, backend: BackendDep) -> Any:
    return await backend.models_pull(body.model_id, body.revision)


@models_router.get("", response_model=list[schemas.ModelEntry], summary="Cached models")
async def list_models(backend: BackendDep) -> Any:
    return await backend.models_list()


@models_router.get("/{model_id:path}", response_model=schemas.ModelEntry, summary="One cached model",
                   responses=answers(404, 422))
async def get_model(model_id: ModelId, backend: BackendDep) -> Any:
    return await backend.models_get(model_id)


@models_router.delete("/{model_id:path}", response_model=schemas.ModelEntry, summary="Delete a cached model",
                      responses=answers(404, 409, 422))
async def delete_model(model_id: ModelId, backend: BackendDep) -> Any:
    return await backend.models_delete(model_id)


@health_router.get("/health", response_model=schemas.Health, summary="Liveness, no token needed",
                   description="200 while this scheduler serves; 503 with trainq's error body while its registry's"
                   " database cannot be reached (naming host:port), as every other call answers then")
async def health(backend: BackendDep) -> Any:
    return await backend.health()
