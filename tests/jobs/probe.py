"""A job that records every process that imports it (tests/e2e/test_security_e2e.py).

At import it appends one JSON line (pid, the process title from /proc/self/cmdline, Ray's actor
id) to the file named in ``imports.path`` next to this module, if that file is there: the test
copies this module into a folder of its own with that file, and the folder travels (uploaded)
with the module, so any process that imports it, wherever and however, leaves a line.

Its train function reports whether the secret variable named in the config is set, and a hash
of it (never the value), and prints the value, so the test can check the logs API hides it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def _record_import() -> None:
    where = Path(__file__).with_name("imports.path")
    if not where.exists():
        return
    try:
        title = Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        title = ""
    actor_id = None
    try:
        import ray

        if ray.is_initialized():
            actor_id = ray.get_runtime_context().get_actor_id()
    except Exception:  # noqa: BLE001, S110 - the record must be written whatever Ray says
        pass
    with open(where.read_text().strip(), "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "title": title, "actor_id": actor_id}) + "\n")


_record_import()


def train(config: dict) -> None:
    import ray.train

    value = os.environ.get(config["secret_var"], "")
    print(f"the secret is {value}", flush=True)  # the logs API must redact it
    ray.train.report({"step": 0, "secret_set": bool(value),
                      "secret_sha256": hashlib.sha256(value.encode()).hexdigest()})
