"""Who is calling: bearer-token auth, for every route but /health.

Three modes: with a users file (``TRAINQ_USERS_FILE``) every token names a user and the routes act
as that user (a job's owner or an admin may change it; everyone sees every job); without one, a
single configured token (``TRAINQ_API_TOKEN``) or no token at all, both as one anonymous user.
Tokens are compared by hash in constant time and never logged or returned.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request

from scheduler.errors import Unauthorized
from scheduler.users import Users

_MISSING = "missing or wrong API token: send 'Authorization: Bearer <token>'"


def configured_token() -> str | None:
    """``$TRAINQ_API_TOKEN``, else the contents of ``$TRAINQ_API_TOKEN_FILE``, else None."""
    token = os.environ.get("TRAINQ_API_TOKEN")
    if token:
        return token.strip()
    path = os.environ.get("TRAINQ_API_TOKEN_FILE")
    if path:
        text = Path(path).expanduser().read_text().strip()
        if not text:
            raise ValueError(f"TRAINQ_API_TOKEN_FILE {path} is empty")
        return text
    return None


def token_matches(expected: str | None, given: str | None) -> bool:
    """Whether ``given`` is the configured token (always true when none is configured)."""
    if expected is None:
        return True
    return given is not None and secrets.compare_digest(given.strip().encode(), expected.encode())


def user_for_token(users: Users | None, expected: str | None, given: str | None) -> str | None:
    """The caller's user name (users file), or None for the one anonymous user; raises
    ``Unauthorized`` when the token is missing or wrong."""
    if users is not None:
        user = users.by_token(given.strip() if given else None)
        if user is None:
            raise Unauthorized(_MISSING)
        return user.name
    if not token_matches(expected, given):
        raise Unauthorized(_MISSING)
    return None


# The dependencies are ``async def`` although nothing in them waits: FastAPI runs a plain ``def``
# dependency in a worker thread, a hop that cost the hot reads about a fifth of their time.
async def current_user(request: Request) -> str | None:
    """Dependency: the calling user's name (None without a users file); 401 without a valid token."""
    return caller_of(request.app.state, request.headers.get("authorization", ""))


def caller_of(state: Any, authorization: str) -> str | None:
    """The calling user's name (None without a users file) from the app's ``state`` and the
    request's ``Authorization`` header; raises ``Unauthorized`` without a valid token."""
    users: Users | None = getattr(state, "users", None)
    expected: str | None = state.token
    if users is None and expected is None:
        return None
    scheme, _, given = authorization.partition(" ")
    return user_for_token(users, expected, given if scheme.lower() == "bearer" else None)


#: Dependency: 401 unless the request carries a valid token (when tokens are configured). The same
#: callable as ``Caller``'s, so a route that names its caller checks the token once (FastAPI caches a
#: dependency's answer for the request).
require_token = current_user


Authorized = Annotated[None, Depends(require_token)]
#: The caller's user name, or None (no users file): what routes pass as ``owner`` / ``as_user``.
Caller = Annotated[str | None, Depends(current_user)]
