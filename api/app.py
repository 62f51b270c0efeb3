"""The app factory: ``create_app(backend)``; ``trainq serve`` feeds it the scheduler actor."""

from __future__ import annotations

from fastapi import FastAPI

from scheduler.config import Settings
from scheduler.users import Users, users_from_env

from . import errors, page, routes, ws
from .auth import configured_token
from .backend import Backend

_UNSET = object()


def create_app(backend: Backend, token: str | None | object = _UNSET, *,
               ray_dashboard_url: str | None = None, max_package_mb: float | None = None,
               users: Users | None | object = _UNSET) -> FastAPI:
    """The FastAPI app over ``backend``; ``token`` defaults to the configured one (or none).

    ``users`` (default: the users file ``TRAINQ_USERS_FILE``, if set; a malformed file raises
    ``UsersFileError`` naming the line) turns on per-user tokens: each call acts as its token's user.

    ``ray_dashboard_url`` lets the page link a job's runs to the Ray dashboard;
    ``max_package_mb`` caps an upload (default: the setting TRAINQ_MAX_PACKAGE_MB).
    """
    app = FastAPI(
        title="trainq",
        version="0.1.0",
        description="Queue, pause and resume Ray Train jobs. Errors: 404 unknown job, 409 illegal "
                    "transition, 422 invalid input, 401 missing token, 403 another user's job or an input "
                    "this server's admin does not allow; each route lists the ones it can answer.",
        default_response_class=routes.WireJSON,  # a NaN metric is sent as "NaN", not refused with a 500
    )
    app.state.backend = backend
    app.state.token = configured_token() if token is _UNSET else token
    app.state.users = users_from_env() if users is _UNSET else users
    app.state.ray_dashboard_url = ray_dashboard_url
    app.state.max_package_mb = Settings().max_package_mb if max_package_mb is None else max_package_mb
    errors.install(app)
    routes.add_hot_routes(app)  # first, and on the app itself: matched before anything else
    app.include_router(routes.health_router)
    app.include_router(routes.router)
    app.include_router(routes.models_router)
    app.include_router(routes.usage_router)
    app.include_router(page.cluster_router)
    app.include_router(page.nodes_router)
    app.include_router(page.ui_router)
    app.include_router(ws.router)
    app.include_router(page.page_router)
    app.mount("/static", page.static_files(), name="static")
    return app
