"""An API server in its own process (so the load client does not share its GIL).

``serve ADDRESS ACTOR PORT``: trainq's app over the named scheduler actor.
``serve --baseline JOB_JSON PORT``: the same uvicorn stack answering the same routes with a fixed
body and no scheduler behind it, the ceiling this machine and client reach.
``serve --instant JOB_JSON PORT``: trainq's own app over a backend that answers the hot reads at
once from fixed bytes (no actor): what trainq's routes, token check and dependencies cost alone.
``serve --bare JOB_JSON PORT``: the same fixed answers from a bare ASGI function on uvicorn, no
framework at all: the floor of this server stack.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import uvicorn


def fixed_answers(job: dict) -> dict[str, Any]:
    """What both stand-ins answer, by the scheduler read it stands for: the job, a page of 100."""
    page = {"jobs": [job] * 100, "total": 1000, "limit": 100, "offset": 0}
    return {"get_json": job, "page_json": page, "queue_json": page["jobs"]}


def baseline_app(job: dict) -> object:
    from fastapi import FastAPI

    app = FastAPI()
    answers = fixed_answers(job)
    page, queued = answers["page_json"], answers["queue_json"]

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}

    @app.get("/api/training/jobs/{job_id}")
    async def get(job_id: str) -> dict:
        return job

    @app.get("/api/training/jobs")
    async def list_jobs() -> dict:
        return page

    @app.get("/api/training/queue")
    async def queue() -> list:
        return queued

    @app.post("/api/training/jobs", status_code=201)
    async def submit(spec: dict) -> dict:
        return job

    return app


def bare_app(job: dict) -> object:
    """An ASGI function answering the four routes with fixed bytes (a POST's body is read first)."""
    answers = {method: json.dumps(body).encode() for method, body in fixed_answers(job).items()}
    by_path = {"/api/training/jobs": answers["page_json"], "/api/training/queue": answers["queue_json"],
               "/health": b'{"ok":true}'}

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        status, body = 200, by_path.get(scope["path"], answers["get_json"])
        if scope["method"] == "POST":
            while (await receive()).get("more_body"):
                pass
            status, body = 201, answers["get_json"]
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


class InstantBackend:
    """The scheduler's hot verbs (``api.backend.Backend``'s) answered at once with fixed bytes (``--instant``)."""

    def __init__(self, job: dict) -> None:
        self.answers = {method: json.dumps(body).encode() for method, body in fixed_answers(job).items()}

    async def get_json(self, job_id: str) -> bytes:
        return self.answers["get_json"]

    async def page_json(self, status: list[str] | None, limit: int, offset: int) -> bytes:
        return self.answers["page_json"]

    async def queue_json(self, limit: int | None, offset: int) -> bytes:
        return self.answers["queue_json"]

    async def submit(self, spec: dict, idempotency_key: str, owner: str | None) -> bytes:
        return self.answers["get_json"]

    async def health(self) -> dict:
        return {"ok": True}


if __name__ == "__main__":
    if sys.argv[1] == "--baseline":
        app, port = baseline_app(json.loads(sys.argv[2])), int(sys.argv[3])
    elif sys.argv[1] == "--bare":
        app, port = bare_app(json.loads(sys.argv[2])), int(sys.argv[3])
    elif sys.argv[1] == "--instant":
        from api.app import create_app

        app, port = create_app(InstantBackend(json.loads(sys.argv[2])), token=None), int(sys.argv[3])
    else:
        import ray

        from api.app import create_app
        from api.backend import ActorBackend
        from scheduler.config import NAMESPACE

        address, name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
        app = create_app(ActorBackend(ray.get_actor(name, namespace=NAMESPACE)), token=None)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
