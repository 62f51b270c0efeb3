"""Schemathesis hooks for the fuzz test (loaded through ``SCHEMATHESIS_HOOKS``): how to send a zip,
and the one rule of the job spec a JSON schema cannot state.

The upload route takes ``application/zip``, which schemathesis has no serializer for. The schema
can only say "bytes", so a schema-valid body (bytes or text) goes as a zip holding those bytes as
one file, which the server must accept; anything else (a negative case: a number, an object) goes
as its JSON text, which is not a zip, and which the server must refuse.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import schemathesis


@schemathesis.serializer("application/zip")
def zip_body(ctx: Any, value: Any) -> bytes:
    """The request body for ``application/zip``: see the module's docstring."""
    if isinstance(value, str | bytes):  # schemathesis's Binary is a str holding the bytes in .data
        data = value if isinstance(value, bytes) else getattr(value, "data", value.encode("utf-8", "replace"))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr("data.bin", data)
        return out.getvalue()
    return json.dumps(value, default=repr).encode()


@schemathesis.hook
def before_load_schema(ctx: Any, raw_schema: dict[str, Any]) -> None:
    """Draw only ordered elastic ranges: ``min`` up to 2048, ``max`` from 2048 (both still over
    most of their bounds). JSON Schema cannot compare two fields, so the document cannot say
    ``min <= max``; the server refuses the other order with a 422 naming ``num_workers``, which the
    fuzzer would count as a schema-valid body refused (its coverage phase applies no body filter)."""
    workers = raw_schema.get("components", {}).get("schemas", {}).get("WorkerRange", {}).get("properties", {})
    if "min" in workers and "max" in workers:
        workers["min"]["maximum"] = 2048
        workers["max"]["minimum"] = 2048
