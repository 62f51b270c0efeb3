"""Bearer-token auth: on when a token is configured, for every route but /health."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from scheduler.errors import Unauthorized


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


def require_token(request: Request) -> None:
    """Dependency: 401 unless the request carries the configured token."""
    expected: str | None = request.app.state.token
    if expected is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not token_matches(expected, given):
        raise Unauthorized("missing or wrong API token: send 'Authorization: Bearer <token>'")


Authorized = Annotated[None, Depends(require_token)]
