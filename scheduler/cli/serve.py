"""``trainq serve``: connect to (or start) Ray, ensure the scheduler actor, serve the API and the page."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .commands import UsageError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def train_state_env() -> None:
    """Turn on Ray Train's state tracking in this process, so a Ray started here inherits it.

    The runners also set it for their own runs (``RayLauncher.launch``); setting it here too
    makes the dashboard's Train state actor exist from the first run on a local Ray.
    """
    import os

    os.environ.setdefault("RAY_TRAIN_ENABLE_STATE_TRACKING", "1")


def cmd_serve(args: argparse.Namespace) -> int:
    """Connect to (or start) Ray, ensure the scheduler actor, serve the API with uvicorn."""
    import ray
    import uvicorn

    from api.app import create_app
    from api.auth import configured_token
    from api.backend import ActorBackend

    from ..actor import ensure_scheduler
    from ..config import NAMESPACE, Settings

    token = configured_token()
    if args.host not in LOCAL_HOSTS and token is None and not args.insecure_no_token:
        raise UsageError(f"refusing to serve on {args.host} without an API token: set TRAINQ_API_TOKEN "
                         "(or TRAINQ_API_TOKEN_FILE), or pass --insecure-no-token if you mean it")
    train_state_env()
    init: dict[str, Any] = {"address": args.address, "namespace": NAMESPACE}
    if args.address is None and args.num_cpus is not None:
        init["num_cpus"] = args.num_cpus
    context = ray.init(**init)
    settings = Settings().with_overrides(storage_root=args.storage, db_path=args.db)
    handle = ensure_scheduler(settings)
    health = ray.get(handle.health.remote())
    print(f"trainq: scheduler ready (storage {health['storage_root']}, registry {health['db_path']}, "
          f"cluster {json.dumps(health['capacity'])})")
    if args.demo:
        from ..demo import demo_spec

        job = ray.get(handle.submit.remote(demo_spec(args.demo_steps)))
        print(f"trainq: demo job {job['job_id']} submitted ({job['status']}): a tiny GPT-2 fine-tune")
    dashboard = getattr(context, "dashboard_url", None)
    base = f"http://{args.host}:{args.port}"
    print(f"trainq: page {base}/  API {base}/api  (docs {base}/docs)"
          + (f", Ray dashboard http://{dashboard}" if dashboard else ""), flush=True)
    if token:
        print("trainq: API token required (Authorization: Bearer ...; the page asks for it)")
    app = create_app(ActorBackend(handle), token, ray_dashboard_url=f"http://{dashboard}" if dashboard else None)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
