"""JSON as trainq sends it over HTTP, SSE and WebSocket: compact, UTF-8, and always valid.

JSON has no NaN or infinity, and a browser's ``JSON.parse`` refuses Python's ``NaN`` token. A
metric that is one (a diverged loss is common) is sent as the string ``"NaN"``, ``"Infinity"`` or
``"-Infinity"`` instead of failing the request (a 500) or breaking a page's stream. The store and
the Python API keep the float itself.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: The hot reads the scheduler answers as JSON bytes (the same names on the core and the actor):
#: read-only and the same for every caller, so the HTTP API may batch them (``api.coalesce``,
#: ``SchedulerService.reads``).
HOT_READS = frozenset({"get_json", "page_json", "queue_json"})

_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str).encode


def dumps(value: Any) -> str:
    """``value`` as compact JSON text; non-finite floats as strings, anything unknown as ``str()``."""
    try:
        return _encode(value)
    except ValueError:  # a NaN or an infinity somewhere: rare, so only then is the value walked
        return _encode(_finite(value))


def dumps_bytes(value: Any) -> bytes:
    """``dumps`` encoded as UTF-8, as an HTTP body."""
    return dumps(value).encode()


def merge(obj: bytes, extra: bytes) -> bytes:
    """Two encoded JSON objects with distinct keys as one (``{**a, **b}`` without decoding ``a``)."""
    if extra == b"{}":
        return obj
    if obj == b"{}":
        return extra
    return obj[:-1] + b"," + extra[1:]


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
