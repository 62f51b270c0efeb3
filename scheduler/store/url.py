"""Where the registry lives: ``TRAINQ_DB`` / ``--db`` parsed into a backend and its address.

Accepted forms (anything else is refused with ``UnsupportedRegistry``, never guessed at: an
unknown URL taken as a file path once made a folder named ``postgresql:`` and an empty registry):

- a file path, or ``:memory:``: the embedded SQLite registry;
- ``sqlite:///PATH`` (SQLAlchemy's spelling: ``sqlite:///rel.db``, ``sqlite:////abs/path.db``);
- ``postgresql://USER:PASSWORD@HOST:PORT/DATABASE`` (also ``postgres://`` and
  ``postgresql+psycopg://``, the driver trainq uses).

A URL's password is a secret: ``redacted`` is what any message, log line or answer shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import UnsupportedRegistry

#: A URL is ``scheme://...``; a string without it is a file path.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
#: What ``redacted`` shows in place of a password.
MASK = "***"


@dataclass(frozen=True)
class RegistryURL:
    """A parsed registry location. ``url`` (which may hold a password) is left out of the repr."""

    kind: str  # "sqlite" or "postgresql"
    #: SQLite: the file path (or ``:memory:``); Postgres: the SQLAlchemy URL for psycopg 3.
    target: str = field(repr=False)
    #: What messages show: the path, or the URL with its password masked.
    shown: str = ""
    #: ``host:port`` of a server (what an "unreachable" message names); empty for SQLite.
    where: str = ""


def is_url(value: str) -> bool:
    """True when ``value`` is ``scheme://...`` rather than a file path."""
    return _SCHEME.match(value) is not None


def parse_db_url(value: str) -> RegistryURL:
    """Parse ``TRAINQ_DB`` / ``--db``; raises ``UnsupportedRegistry`` for any other form."""
    if not value or not value.strip():
        raise UnsupportedRegistry(value, "it is empty")
    match = _SCHEME.match(value)
    if match is None:
        return RegistryURL("sqlite", value, value)
    scheme = match.group(1).lower()
    if scheme == "sqlite":
        rest = value[match.end():]
        if not rest.startswith("/") or len(rest) < 2:
            raise UnsupportedRegistry(redacted(value), "an SQLite URL is sqlite:///PATH (three slashes, no host)")
        return RegistryURL("sqlite", rest[1:], value)
    if scheme not in POSTGRES_SCHEMES:
        raise UnsupportedRegistry(redacted(value), f"the scheme {scheme!r} is not supported")
    parts = urlsplit(value)
    try:
        port = parts.port or 5432
    except ValueError:
        raise UnsupportedRegistry(redacted(value), "its port is not a number") from None
    if not parts.path.strip("/"):
        raise UnsupportedRegistry(redacted(value), "it names no database (postgresql://HOST:PORT/DATABASE)")
    host = parts.hostname or "localhost"
    target = urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, parts.query, ""))
    return RegistryURL("postgresql", target, redacted(value), f"{host}:{port}")


def redacted(value: str) -> str:
    """``value`` with any password masked (``postgresql://u:***@h/db``); a path is returned as is.

    Never raises: it is called while building error messages about malformed input.
    """
    if not is_url(value):
        return value
    try:
        parts = urlsplit(value)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostinfo = netloc.rpartition("@")
            netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hostinfo}"
        query = parts.query
        if query:
            # libpq also takes the password as a query parameter (``?password=...``).
            pairs = [(k, MASK if k.lower() == "password" else v) for k, v in parse_qsl(query, keep_blank_values=True)]
            query = urlencode(pairs, safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        # Unparseable: mask everything between the scheme and the last '@' (where a password sits).
        return re.sub(r"://[^/]*@", f"://{MASK}@", value)
