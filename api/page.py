"""The built-in page (``/``, assets under ``/static``), what it needs to start, and the cluster view.

The page is plain HTML, CSS and JavaScript in ``api/static/`` (no build step, nothing fetched
from elsewhere), installed with the package. The HTML and assets need no token: they hold no
data. Every call the page makes goes through the same API, with the token the person typed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from scheduler.states import RESUMABLE, TRANSITIONS, JobStatus

from .auth import Caller, require_token
from .backend import Backend
from .errors import answers

STATIC = Path(__file__).parent / "static"
S = JobStatus

page_router = APIRouter(include_in_schema=False)
ui_router = APIRouter(prefix="/api/ui", tags=["page"])
cluster_router = APIRouter(prefix="/api/training", dependencies=[Depends(require_token)], tags=["training"],
                           responses=answers(401, 503))
nodes_router = APIRouter(prefix="/api/cluster", dependencies=[Depends(require_token)], tags=["cluster"],
                         responses=answers(401, 503))


class UiConfig(BaseModel):
    """What the page needs before it can call anything: whether to ask for a token, links, and the
    verbs each job state allows (so the page offers no Pause on a completed job)."""

    token_required: bool
    ray_dashboard_url: str | None
    actions: dict[str, list[str]]


def actions_by_status() -> dict[str, list[str]]:
    """The verbs a user may ask of a job in each state, read off the transition table
    (``scheduler.states``): ``pause`` where it leads to paused or pausing, ``cancel`` where it leads
    to cancelled, ``resume`` from the states a job is resumed from. ``checkpoint`` asks for no
    transition: it is for a running job (one whose train function uses the hook, ``cooperative``)."""
    out: dict[str, list[str]] = {}
    for status, targets in TRANSITIONS.items():
        verbs = [verb for verb, wanted in (("pause", {S.PAUSED, S.PAUSING}), ("cancel", {S.CANCELLED}))
                 if targets & wanted]
        verbs += ["resume"] if status in RESUMABLE else []
        verbs += ["checkpoint"] if status is S.RUNNING else []
        out[status.value] = verbs
    return out


class ResourceUse(BaseModel):
    total: float
    used: float
    free: float


class ClusterView(BaseModel):
    """Capacity used (handed out by trainq) and free per resource; counts; usage per owner."""

    model_config = ConfigDict(extra="ignore")
    resources: dict[str, ResourceUse]
    running: int
    starting: int
    queued: int
    paused: int
    by_user: dict[str, dict[str, float]]
    max_capacity: dict[str, float]


class NodeView(BaseModel):
    """One live Ray node: its real resources (no placement-group bookkeeping), free room, the jobs with
    a worker on it, and whether Ray is draining it, why and until when (epoch seconds)."""

    node_id: str
    address: str
    is_head: bool
    resources: dict[str, float]
    free: dict[str, float]
    jobs: list[str]
    draining: bool
    drain_reason: str | None
    drain_deadline_at: float | None


class DrainRequest(BaseModel):
    """How to drain a node: Ray's reason (``preemption``: always accepted; ``idle``: Ray refuses a busy
    node) and a deadline in seconds (its jobs are stopped at their last checkpoint before it)."""

    model_config = ConfigDict(extra="forbid")
    deadline_s: float | None = Field(None, gt=0, le=86400)
    reason: Literal["preemption", "idle"] = "preemption"
    message: str = Field("", max_length=500)


class DrainAccepted(BaseModel):
    node_id: str
    accepted: bool
    reason: str
    deadline_at: float | None


async def _backend(request: Request) -> Backend:  # async: no worker-thread hop (api/auth.py)
    return request.app.state.backend


ACTIONS = actions_by_status()


@page_router.get("/")
async def index() -> FileResponse:
    """The page."""
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@ui_router.get("/config", response_model=UiConfig, summary="What the page needs at start (no token needed)")
async def ui_config(request: Request) -> Any:
    return {"token_required": request.app.state.token is not None or request.app.state.users is not None,
            "ray_dashboard_url": getattr(request.app.state, "ray_dashboard_url", None),
            "actions": ACTIONS}


@cluster_router.get("/cluster", response_model=ClusterView,
                    summary="Capacity used and free per resource, running and queued counts, usage per user")
async def cluster(backend: Annotated[Backend, Depends(_backend)]) -> Any:
    return await backend.cluster()


@nodes_router.get("/nodes", response_model=list[NodeView],
                  summary="Live nodes: resources, free room, jobs on each, and drains")
async def nodes(backend: Annotated[Backend, Depends(_backend)]) -> Any:
    return await backend.nodes()


@nodes_router.post("/nodes/{node_id}/drain", response_model=DrainAccepted, responses=answers(403, 404, 409, 422),
                   summary="Drain a node: its jobs move at a checkpoint (an admin's, with a users file)")
async def drain_node(backend: Annotated[Backend, Depends(_backend)], caller: Caller,
                     node_id: Annotated[str, PathParam(pattern=r"^[0-9a-f]{56}$", description="a Ray node id (hex)")],
                     body: Annotated[DrainRequest | None, Body()] = None) -> Any:
    body = body or DrainRequest(deadline_s=None, message="")
    return await backend.drain_node(node_id, body.deadline_s, body.reason, body.message, as_user=caller)


def static_files() -> StaticFiles:
    """The page's assets, served at ``/static``."""
    return StaticFiles(directory=STATIC)


__all__ = ["cluster_router", "nodes_router", "page_router", "static_files", "ui_router"]
