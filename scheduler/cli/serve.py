"""``trainq serve``: connect to (or start) Ray, ensure the scheduler actor, serve the API and the page."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .commands import UsageError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def load_users_for_serve(path: str | None) -> tuple[str | None, Any]:
    """The users file (``--users-file``, else ``TRAINQ_USERS_FILE``) as an absolute path and its
    users, or (None, None). A malformed file stops ``serve`` before anything starts, naming the
    line and the field (``UsersFileError``)."""
    import os

    from ..users import load_users

    path = path or os.environ.get("TRAINQ_USERS_FILE") or None
    if path is None:
        return None, None
    path = os.path.abspath(os.path.expanduser(path))
    return path, load_users(path)


def folders_line(host: str, allowed_dirs: str | None, *, with_users: bool) -> str | None:
    """What ``serve`` says about the head-node folders a job may name as its working_dir (the rule
    is ``security.allowed_dirs``): a warning when any folder is allowed and others can reach the
    API, a note when users must upload theirs; None on a laptop with any folder allowed."""
    from .. import security

    allowed = security.allowed_dirs(allowed_dirs, with_users)
    if allowed is None:
        if host in LOCAL_HOSTS:
            return None
        return ("trainq: warning: TRAINQ_ALLOWED_DIRS is unset and there is no users file, so a job may name"
                " any folder on this machine as its working_dir; set it (empty: none) or use a users file"
                " when others hold the token")
    if not allowed:
        return ("trainq: jobs may name no folder on this machine (TRAINQ_ALLOWED_DIRS "
                + ("unset, with a users file" if allowed_dirs is None else "empty")
                + "): clients upload their folders (trainq submit --working-dir, scheduler.http.Client)")
    return f"trainq: jobs may name folders on this machine only under {', '.join(allowed)} (TRAINQ_ALLOWED_DIRS)"


def registry_settings(storage: str | None, db: str | None, users_file: str | None) -> Any:
    """The settings ``serve`` starts the scheduler with, once its registry (``--db``, else
    ``TRAINQ_DB``) is known to be usable: refused before any Ray or scheduler actor starts.

    A Postgres registry is opened (and migrated) here once: the actor opens the same database, and
    an actor that cannot would fail in ``__init__`` and be restarted by Ray forever, the reason
    buried in its log. An SQLite path is only parsed: with ``--address`` the file lives on the head
    node, which need not be this machine. Raises ``UsageError`` naming the location (``host:port``
    for a server), never with a traceback or the password.
    """
    from ..config import Settings
    from ..errors import RegistryUnavailable, UnsupportedRegistry
    from ..store import open_store
    from ..store.url import parse_db_url

    try:
        settings = Settings().with_overrides(storage_root=storage, db_path=db, users_file=users_file)
        if parse_db_url(settings.db_path).kind == "postgresql":
            open_store(settings.db_path).close()
    except UnsupportedRegistry as e:
        raise UsageError(f"cannot serve: {e.message} (--db or TRAINQ_DB)", field="db") from None
    except RegistryUnavailable as e:
        raise UsageError(f"cannot serve: {e.message}; start the database server or point --db / TRAINQ_DB"
                         " at one this machine can reach", field="db", where=e.fields["where"]) from None
    return settings


def ready_lines(health: dict[str, Any]) -> list[str]:
    """What ``serve`` says once the scheduler actor answers: what it serves and, on a standby (another
    scheduler holds the registry's lease), who leads and when this one takes over."""
    capacity = health.get("capacity")  # a standby has no core, so no view of the cluster yet
    lines = [f"trainq: scheduler ready (storage {health['storage_root']}, registry {health['db_path']}"
             + (f", cluster {json.dumps(capacity)})" if capacity is not None else ")")]
    if health.get("role") != "standby":
        return lines
    leader = health.get("leader")
    if leader is None or leader.get("expires_in_s", 0) <= 0:
        lines.append("trainq: this scheduler is a standby: the registry's lease is free or expired, and it"
                     " takes over at its next housekeeping tick; until then the API answers 503")
    else:
        lines.append(f"trainq: this scheduler is a STANDBY: {leader['holder']} leads the registry (lease epoch"
                     f" {leader['epoch']}); it takes over when that lease expires ({leader['expires_in_s']:g} s"
                     " without renewal, TRAINQ_LEASE_TTL_S). Until then the API answers 503 to all but /health")
    return lines


def train_state_env() -> None:
    """Turn on Ray Train's state tracking in this process, so a Ray started here inherits it.

    The runners also set it for their own runs (``RayLauncher.launch``); setting it here too
    makes the dashboard's Train state actor exist from the first run on a local Ray.
    """
    import os

    os.environ.setdefault("RAY_TRAIN_ENABLE_STATE_TRACKING", "1")


def cmd_serve(args: argparse.Namespace) -> int:
    """Connect to (or start) Ray, ensure the scheduler actor, serve the API and the page.

    With an embedded Ray (started here), the first Ctrl-C or SIGTERM drains: every running job
    checkpoints and pauses, to resume by itself at the next start; a second one stops at once.
    With a cluster started separately, stopping the API stops nothing.
    """
    import ray
    import uvicorn

    from api.app import create_app
    from api.auth import configured_token
    from api.backend import ActorBackend

    from .. import raycompat
    from ..actor import ensure_scheduler
    from ..config import NAMESPACE, env_float

    token = configured_token()
    users_file, users = load_users_for_serve(getattr(args, "users_file", None))
    if args.host not in LOCAL_HOSTS and token is None and users is None and not args.insecure_no_token:
        raise UsageError(f"refusing to serve on {args.host} without an API token: set TRAINQ_API_TOKEN "
                         "(or TRAINQ_API_TOKEN_FILE), or pass --insecure-no-token if you mean it")
    grace_s = args.shutdown_grace if args.shutdown_grace is not None else env_float("TRAINQ_SHUTDOWN_GRACE_S", 60)
    settings = registry_settings(args.storage, args.db, users_file)
    train_state_env()
    embedded = raycompat.starts_local_ray(args.address)
    init: dict[str, Any] = {"address": args.address, "namespace": NAMESPACE}
    if embedded and args.num_cpus is not None:
        init["num_cpus"] = args.num_cpus
    context = ray.init(**init)
    handle = ensure_scheduler(settings)
    health = ray.get(handle.health.remote())
    for line in ready_lines(health):
        print(line, flush=True)
    if args.demo and health.get("role") == "standby":
        print("trainq: no demo job: a standby takes no submits", flush=True)
    elif args.demo:
        from ..demo import demo_spec

        job = ray.get(handle.submit.remote(demo_spec(args.demo_steps)))
        print(f"trainq: demo job {job['job_id']} submitted ({job['status']}): a tiny GPT-2 fine-tune", flush=True)
    dashboard = getattr(context, "dashboard_url", None)
    base = f"http://{args.host}:{args.port}"
    print(f"trainq: page {base}/  API {base}/api  (docs {base}/docs)"
          + (f", Ray dashboard http://{dashboard}" if dashboard else ""), flush=True)
    if users is not None:
        print(f"trainq: {len(users.users)} users from {users_file}: every call acts as its token's user", flush=True)
    elif token:
        print("trainq: API token required (Authorization: Bearer ...; the page asks for it)")
    folders = folders_line(args.host, settings.allowed_dirs, with_users=users is not None)
    if folders:
        print(folders, flush=True)
    app = create_app(ActorBackend(handle), token, ray_dashboard_url=f"http://{dashboard}" if dashboard else None,
                     users=users)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning"))
    if not embedded:
        print("trainq: Ray runs separately: stopping this API process stops no job", flush=True)
        server.run()
        return 0
    print(f"trainq: Ray runs inside this process: Ctrl-C pauses every running job at a checkpoint "
          f"(at most {grace_s:g} s) and resumes them at the next start", flush=True)
    return serve_until_signal(server, handle, grace_s)


def serve_until_signal(server: Any, handle: Any, grace_s: float) -> int:
    """Run the API in a thread; on the first signal drain the jobs, on a second stop at once."""
    import signal
    import threading
    import time

    import ray

    from ..errors import NotReady

    wake = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        wake.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    thread = threading.Thread(target=server.run, name="trainq-api", daemon=True)
    thread.start()
    while not wake.wait(0.5):
        if not thread.is_alive():
            return 1  # the server could not start (e.g. the port is taken); uvicorn said why
    wake.clear()
    try:
        state = ray.get(handle.drain.remote(grace_s))
    except Exception as e:  # Ray wraps the actor's error; its cause says which it was
        if not isinstance(getattr(e, "cause", e), NotReady):
            raise
        # A standby (another scheduler leads the registry) runs no job: nothing to pause.
        print("trainq: this scheduler is a standby and runs no job: stopping", flush=True)
        return _stop(server, thread)
    deadline = time.monotonic() + grace_s + 10  # the jobs' own deadlines end within grace_s
    last = ""
    while state["waiting"] and not wake.is_set() and time.monotonic() < deadline:
        line = drain_line(state["waiting"])
        if line != last:
            print(f"trainq: {line}; Ctrl-C again to stop now", flush=True)
            last = line
        wake.wait(0.5)
        state = ray.get(handle.draining.remote())
    if state["waiting"]:
        print(f"trainq: stopping now; {len(state['waiting'])} job(s) did not reach a checkpoint and resume"
              " from their last one at the next start", flush=True)
    else:
        print("trainq: every job is paused at a checkpoint; they resume at the next start", flush=True)
    return _stop(server, thread)


def _stop(server: Any, thread: Any) -> int:
    """Stop the API and the embedded Ray."""
    import ray

    server.should_exit = True
    thread.join(10)
    ray.shutdown()
    return 0


def drain_line(waiting: list[dict[str, Any]]) -> str:
    """What a shutdown waits for, in one line."""
    jobs = ", ".join(f"{w['job_id']} ({w['name']}) {w['status']}"
                     + (f" at step {w['step']}" if w["step"] is not None else "") for w in waiting[:5])
    more = f" and {len(waiting) - 5} more" if len(waiting) > 5 else ""
    return f"waiting for {len(waiting)} job(s) to checkpoint: {jobs}{more}"
