"""``trainq``: the command line. ``serve`` runs the service; every other command talks to its HTTP API.

Exit codes (for scripts): 0 ok, 1 error (or, for ``watch``, the job failed or was cancelled),
2 bad usage, 3 unknown job, 4 the job's state does not allow it, 5 invalid input,
6 missing or wrong token, 7 the server cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .jobs import step_of

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT = {"ok": 0, "error": 1, "usage": 2, "not_found": 3, "conflict": 4, "invalid": 5,
        "unauthorized": 6, "unreachable": 7}
STOPPED = {"completed", "failed", "cancelled", "paused"}
#: config keys read as "how many steps in total" for watch's progress bar
TOTAL_KEYS = ("max_steps", "total_steps", "total", "steps", "num_steps")


class CliError(Exception):
    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(message)
        self.exit_code = EXIT.get(code, 1)


# -- HTTP ----------------------------------------------------------------------------------------
class Api:
    """A small client for trainq's HTTP API."""

    def __init__(self, url: str, token: str | None, timeout_s: float = 30.0) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise CliError(f"cannot reach trainq at {self.url}: {e}. Is `trainq serve` running? "
                           "(set --url or TRAINQ_URL)", "unreachable") from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"error": "error", "message": response.text}
            raise CliError(body.get("message", response.text), body.get("error", "error"))
        return response.json()

    def stream(self, path: str) -> Iterator[tuple[str, Any]]:
        """Server-Sent Events as (event, data) pairs."""
        import httpx

        try:
            with self.http.stream("GET", path, timeout=httpx.Timeout(30.0, read=None)) as response:
                if response.status_code >= 400:
                    response.read()
                    body = response.json()
                    raise CliError(body.get("message", "stream failed"), body.get("error", "error"))
                event, data = "message", []
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        yield event, json.loads("\n".join(data))
                        event, data = "message", []
        except httpx.HTTPError as e:
            raise CliError(f"stream from {self.url} broke: {e}", "unreachable") from None


def _token(args: argparse.Namespace) -> str | None:
    if args.token:
        return args.token
    from api.auth import configured_token

    return configured_token()


# -- output --------------------------------------------------------------------------------------
def _table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max([len(title)] + [len(c[i]) for c in cells]) for i, (_, title) in enumerate(columns)]
    lines = ["  ".join(t.upper().ljust(w) for (_, t), w in zip(columns, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str) and len(value) >= 19 and value[10] == "T":
        return value[:19].replace("T", " ")  # timestamps: to the second
    if isinstance(value, dict):
        return " ".join(f"{k}={_short(v)}" for k, v in list(value.items())[:4])
    return str(value)


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


JOB_COLUMNS = [("job_id", "job"), ("name", "name"), ("status", "status"), ("priority", "prio"),
               ("queue_position", "queue"), ("attempt", "attempt"), ("created_at", "created"),
               ("metrics", "latest metrics")]


def _print(args: argparse.Namespace, data: Any, human: str) -> None:
    print(json.dumps(data, indent=2) if args.json else human)


def _describe_job(job: dict[str, Any]) -> str:
    lines = [f"{job['job_id']}  {job['name']}  {job['status'].upper()}"]
    for key in ("queue_position", "attempt", "priority", "created_at", "started_at", "paused_at",
                "finished_at", "checkpoint_path", "resume_from", "metrics", "lost_work", "error", "warning",
                "pause_reason", "preempted_by", "expected_paused_by", "pause_deadline_at", "not_before",
                "checkpoint_requested_at", "checkpoint_bytes"):
        if job.get(key) not in (None, {}, ""):
            lines.append(f"  {key:16} {_cell(job[key]) if key != 'metrics' else json.dumps(job[key])}")
    for key in ("preemptions", "retries"):
        if job.get(key):
            lines.append(f"  {key:16} {job[key]}")
    if job.get("resumable") is not None:
        lines.append(f"  {'resumable':16} {'yes' if job['resumable'] else 'no: its function never reads its checkpoint'}")
    spec = job["spec"]
    program = spec.get("entrypoint") or f"workload {spec.get('workload')}"
    lines.append(f"  {'runs':16} {program} on {spec['num_workers']} worker(s)"
                 f"{' with GPUs' if spec.get('use_gpu') else ''}")
    return "\n".join(lines)


# -- commands ------------------------------------------------------------------------------------
def cmd_submit(api: Api, args: argparse.Namespace) -> int:
    spec: dict[str, Any] = {}
    if args.file:
        spec = _load_spec(args.file)
    for key in ("name", "entrypoint", "workload", "num_workers", "priority", "max_failures", "max_retries",
                "min_runtime_s", "storage_path"):
        value = getattr(args, key)
        if value is not None:
            spec[key] = value
    if args.gpu:
        spec["use_gpu"] = True
    if args.no_preempt:
        spec["preemptible"] = False
    if args.config:
        spec["config"] = {**spec.get("config", {}), **_json_arg(args.config, "--config")}
    for item in args.set or []:
        key, _, raw = item.partition("=")
        if not key or not _:
            raise CliError(f"--set expects key=value, got {item!r}", "usage")
        spec.setdefault("config", {})[key] = _scalar(raw)
    runtime_env = spec.setdefault("runtime_env", {})
    if args.working_dir:
        runtime_env["working_dir"] = args.working_dir if "://" in args.working_dir else os.path.abspath(args.working_dir)
    for item in args.env or []:
        key, _, value = item.partition("=")
        runtime_env.setdefault("env_vars", {})[key] = value
    if not runtime_env:
        spec.pop("runtime_env")
    job = api.request("POST", "/api/training/jobs", json=spec)
    _print(args, job, f"submitted {job['job_id']} ({job['status']}"
           + (f", queue position {job['queue_position']})" if job["queue_position"] else ")"))
    if args.watch:
        return cmd_watch(api, argparse.Namespace(**{**vars(args), "job_id": job["job_id"]}))
    return 0


def cmd_list(api: Api, args: argparse.Namespace) -> int:
    params: list[tuple[str, Any]] = [("limit", args.limit), ("offset", args.offset)]
    params += [("status", s) for s in args.status or []]
    body = api.request("GET", "/api/training/jobs", params=params)
    shown = f"\n{len(body['jobs'])} of {body['total']} job(s)" if body["total"] > len(body["jobs"]) else ""
    _print(args, body, (_table(body["jobs"], JOB_COLUMNS) if body["jobs"] else "no jobs") + shown)
    return 0


def cmd_queue(api: Api, args: argparse.Namespace) -> int:
    jobs = api.request("GET", "/api/training/queue")
    _print(args, jobs, _table(jobs, JOB_COLUMNS) if jobs else "the queue is empty")
    return 0


def cmd_status(api: Api, args: argparse.Namespace) -> int:
    job = api.request("GET", f"/api/training/jobs/{args.job_id}")
    _print(args, job, _describe_job(job))
    return 0


def cmd_pause(api: Api, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"deadline_s": args.deadline} if args.deadline else {}
    if args.no_deadline:
        params["no_deadline"] = "true"
    body = api.request("POST", f"/api/training/pause/{args.job_id}", params=params or None)
    _print(args, body, f"{body['job_id']}: {body['previous_status']} -> {body['status']}. {body['message']}")
    if args.wait and body["status"] == "pausing":
        return _wait_until(api, args.job_id, STOPPED, args)
    return 0


def cmd_resume(api: Api, args: argparse.Namespace) -> int:
    params = {"checkpoint_path": args.checkpoint} if args.checkpoint else None
    body = api.request("POST", f"/api/training/resume/{args.job_id}", params=params)
    _print(args, body, f"{body['job_id']}: {body['previous_status']} -> {body['status']}. {body['message']}")
    return 0


def cmd_priority(api: Api, args: argparse.Namespace) -> int:
    job = api.request("PATCH", f"/api/training/jobs/{args.job_id}", json={"priority": args.priority})
    where = f", queue position {job['queue_position']}" if job.get("queue_position") else ""
    _print(args, job, f"{job['job_id']}: priority {job['priority']} ({job['status']}{where})")
    return 0


def cmd_checkpoint(api: Api, args: argparse.Namespace) -> int:
    body = api.request("POST", f"/api/training/checkpoint/{args.job_id}")
    _print(args, body, f"{body['job_id']}: {body['message']}")
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        job = api.request("GET", f"/api/training/jobs/{args.job_id}")
        if job.get("checkpoint_requested_at") is None:
            print(f"{args.job_id}: checkpoint recorded at {job['checkpoint_path']}")
            return 0
        if job["status"] != "running":
            raise CliError(f"{args.job_id} is {job['status']}; the checkpoint was not recorded", "conflict")
        time.sleep(0.5)
    raise CliError(f"no checkpoint recorded for {args.job_id} within {args.timeout}s")


def cmd_cancel(api: Api, args: argparse.Namespace) -> int:
    job = api.request("POST", f"/api/training/cancel/{args.job_id}")
    _print(args, job, f"{job['job_id']}: {job['status']}")
    return 0


def cmd_checkpoints(api: Api, args: argparse.Namespace) -> int:
    if args.pin or args.unpin:
        verb, path = ("pin", args.pin) if args.pin else ("unpin", args.unpin)
        ck = api.request("POST", f"/api/training/jobs/{args.job_id}/checkpoints/{verb}", params={"path": path})
        _print(args, ck, f"{args.job_id}: {ck['path']} is {ck['state']}")
        return 0
    rows = api.request("GET", f"/api/training/jobs/{args.job_id}/checkpoints")
    shown = [{**r, "size": _bytes(r.get("bytes"))} for r in rows]
    _print(args, rows, _table(shown, [("at", "recorded"), ("attempt", "attempt"), ("state", "state"),
                                      ("size", "size"), ("metrics", "metrics"), ("path", "path")])
           if rows else "no checkpoints recorded")
    return 0


def cmd_logs(api: Api, args: argparse.Namespace) -> int:
    params = {"tail": args.tail, **({"attempt": args.attempt} if args.attempt else {})}
    body = api.request("GET", f"/api/training/jobs/{args.job_id}/logs", params=params)
    if args.json:
        _print(args, body, "")
        return 0
    if not body["logs"]:
        print(f"no logs for attempt {body['attempt']} (folder {body['folder']})")
    for source, lines in body["logs"].items():
        print(f"==> attempt {body['attempt']} {source} <==")
        print("\n".join(lines))
    return 0


def cmd_watch(api: Api, args: argparse.Namespace) -> int:
    """Follow a job live until it stops; a progress bar when its total steps are known."""
    total = None
    bar = _Progress(sys.stdout)
    for event, data in api.stream(f"/api/training/jobs/{args.job_id}/events"):
        if event == "snapshot":
            total = _total_steps(data["spec"].get("config") or {})
            print(f"{data['job_id']} {data['name']}: {data['status']}")
            status = data["status"]
        elif event == "status":
            bar.clear()
            print(f"{data['at'][11:19]}  {data['previous_status'] or 'new'} -> {data['status']}  ({data['reason']})")
            status = data["status"]
        elif event == "report":
            step = step_of(data["metrics"])
            extra = " ".join(f"{k}={_short(v)}" for k, v in data["metrics"].items() if k not in ("step", "global_step"))
            ck = " [checkpoint]" if data.get("checkpoint_path") else ""
            bar.show(step, total, f"{extra}{ck}")
            continue
        elif event == "warning":
            bar.clear()
            print(f"warning: {data['warning']}")
            continue
        else:
            continue
        if status in STOPPED:
            bar.clear()
            return 0 if status in ("completed", "paused") else 1
    return 1


def cmd_models(api: Api, args: argparse.Namespace) -> int:
    if args.models_command == "list":
        rows = api.request("GET", "/api/models")
        for r in rows:
            r["size"] = _bytes(r["bytes_total"])
        _print(args, rows, _table(rows, [("model_id", "model"), ("status", "status"), ("size", "size"),
                                         ("revision", "revision"), ("path", "path")]) if rows else "no cached models")
        return 0
    if args.models_command == "rm":
        entry = api.request("DELETE", f"/api/models/{args.model_id}")
        _print(args, entry, f"deleted {entry['model_id']}")
        return 0
    entry = api.request("POST", "/api/models", json={"model_id": args.model_id, "revision": args.revision})
    if args.no_wait:
        _print(args, entry, f"{entry['model_id']}: {entry['status']} (follow with: trainq models list)")
        return 0
    bar = _Progress(sys.stdout)
    while entry["status"] == "downloading":
        total = entry["bytes_total"]
        if total:
            bar.show(None, None, f"{args.model_id}: {_bytes(entry['bytes_done'])} of {_bytes(total)}"
                     f" ({100 * entry['bytes_done'] // max(total, 1)}%)")
        time.sleep(0.5)
        entry = api.request("GET", f"/api/models/{args.model_id}")
    bar.clear()
    if entry["status"] != "ready":
        raise CliError(f"download of {args.model_id} {entry['status']}: {entry['error']}")
    _print(args, entry, f"{entry['model_id']} ready ({_bytes(entry['bytes_total'])}) at {entry['path']}")
    return 0


def _bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _wait_until(api: Api, job_id: str, statuses: set[str], args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        job = api.request("GET", f"/api/training/jobs/{job_id}")
        if job["status"] in statuses:
            print(f"{job_id}: {job['status']}" + (f" at {job['checkpoint_path']}" if job["checkpoint_path"] else ""))
            return 0
        time.sleep(0.5)
    raise CliError(f"{job_id} did not reach {sorted(statuses)} within {args.timeout}s")


class _Progress:
    """One self-rewriting line on a terminal; plain lines otherwise."""

    def __init__(self, out: Any) -> None:
        self.out, self.tty, self.shown = out, out.isatty(), False

    def show(self, step: int | None, total: int | None, extra: str) -> None:
        if step is None and total is None:
            line = extra.strip()
        elif step is not None and total:
            done = min(step + 1, total)
            filled = int(30 * done / total)
            line = f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {extra}"
        else:
            line = f"step {step if step is not None else '?'} {extra}"
        if self.tty:
            self.out.write("\r\033[K" + line)
            self.shown = True
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def clear(self) -> None:
        if self.shown:
            self.out.write("\r\033[K")
            self.shown = False


def _total_steps(config: dict[str, Any]) -> int | None:
    for key in TOTAL_KEYS:
        if isinstance(config.get(key), int) and config[key] > 0:
            return int(config[key])
    return None


def _load_spec(path: str) -> dict[str, Any]:
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as e:
        raise CliError(f"cannot read spec file {path}: {e.strerror}", "usage") from None
    try:
        data = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as e:
        raise CliError(f"spec file {path} is not valid YAML/JSON: {e}", "invalid") from None
    if not isinstance(data, dict):
        raise CliError(f"spec file {path} must hold a mapping of job spec fields", "invalid")
    return data


def _json_arg(raw: str, flag: str) -> dict[str, Any]:
    text = Path(raw[1:]).read_text() if raw.startswith("@") else raw
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise CliError(f"{flag} must be a JSON object (or @file): {e}", "invalid") from None
    if not isinstance(value, dict):
        raise CliError(f"{flag} must be a JSON object", "invalid")
    return value


def _scalar(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


# -- serve ---------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    """Connect to (or start) Ray, ensure the scheduler actor, serve the API with uvicorn.

    With an embedded Ray (started here), the first Ctrl-C or SIGTERM drains: every running job
    checkpoints and pauses, to resume by itself at the next start; a second one stops at once.
    With a cluster started separately, stopping the API stops nothing.
    """
    import ray
    import uvicorn

    from api.app import create_app
    from api.auth import configured_token
    from api.backend import ActorBackend

    from . import raycompat
    from .actor import ensure_scheduler
    from .config import NAMESPACE, Settings, _env_float

    token = configured_token()
    if args.host not in ("127.0.0.1", "localhost", "::1") and token is None and not args.insecure_no_token:
        raise CliError(f"refusing to serve on {args.host} without an API token: set TRAINQ_API_TOKEN "
                       "(or TRAINQ_API_TOKEN_FILE), or pass --insecure-no-token if you mean it", "usage")
    grace_s = args.shutdown_grace if args.shutdown_grace is not None else _env_float("TRAINQ_SHUTDOWN_GRACE_S", 60)
    embedded = raycompat.starts_local_ray(args.address)
    init: dict[str, Any] = {"address": args.address, "namespace": NAMESPACE}
    if embedded and args.num_cpus is not None:
        init["num_cpus"] = args.num_cpus
    context = ray.init(**init)
    settings = Settings().with_overrides(storage_root=args.storage, db_path=args.db)
    handle = ensure_scheduler(settings)
    health = ray.get(handle.health.remote())
    print(f"trainq: scheduler ready (storage {health['storage_root']}, registry {health['db_path']}, "
          f"cluster {json.dumps(health['capacity'])})", flush=True)
    if args.demo:
        from .demo import demo_spec

        job = ray.get(handle.submit.remote(demo_spec(args.demo_steps)))
        print(f"trainq: demo job {job['job_id']} submitted ({job['status']}): a tiny GPT-2 fine-tune", flush=True)
    dashboard = getattr(context, "dashboard_url", None)
    base = f"http://{args.host}:{args.port}"
    print(f"trainq: API on {base}  (docs {base}/docs)" + (f", Ray dashboard http://{dashboard}" if dashboard else ""))
    if token:
        print("trainq: API token required (Authorization: Bearer ...)")
    server = uvicorn.Server(uvicorn.Config(create_app(ActorBackend(handle), token), host=args.host,
                                           port=args.port, log_level="warning"))
    if not embedded:
        print("trainq: Ray runs separately: stopping this API process stops no job", flush=True)
        server.run()
        return 0
    print(f"trainq: Ray runs inside this process: Ctrl-C pauses every running job at a checkpoint "
          f"(at most {grace_s:g} s) and resumes them at the next start", flush=True)
    return _serve_until_signal(server, handle, grace_s)


def _serve_until_signal(server: Any, handle: Any, grace_s: float) -> int:
    """Run the API in a thread; on the first signal drain the jobs, on a second stop at once."""
    import signal
    import threading

    import ray

    signals: list[int] = []
    wake = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        signals.append(signum)
        wake.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    thread = threading.Thread(target=server.run, name="trainq-api", daemon=True)
    thread.start()
    while not wake.wait(0.5):
        if not thread.is_alive():
            return 1  # the server could not start (e.g. the port is taken); uvicorn said why
    wake.clear()
    state = ray.get(handle.drain.remote(grace_s))
    deadline = time.monotonic() + grace_s + 10  # the jobs' own deadlines end within grace_s
    last = ""
    while state["waiting"] and not wake.is_set() and time.monotonic() < deadline:
        line = _drain_line(state["waiting"])
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
    server.should_exit = True
    thread.join(10)
    ray.shutdown()
    return 0


def _drain_line(waiting: list[dict[str, Any]]) -> str:
    jobs = ", ".join(f"{w['job_id']} ({w['name']}) {w['status']}" + (f" at step {w['step']}" if w["step"] is not None
                                                                   else "") for w in waiting[:5])
    more = f" and {len(waiting) - 5} more" if len(waiting) > 5 else ""
    return f"waiting for {len(waiting)} job(s) to checkpoint: {jobs}{more}"


# -- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainq", description="Queue, pause and resume Ray Train jobs.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 unknown job, 4 state conflict, 5 invalid input, "
               "6 unauthorized, 7 server unreachable.")
    parser.add_argument("--url", default=os.environ.get("TRAINQ_URL", DEFAULT_URL),
                        help=f"trainq API (default $TRAINQ_URL or {DEFAULT_URL})")
    parser.add_argument("--token", default=None,
                        help="API token (default $TRAINQ_API_TOKEN, or the file $TRAINQ_API_TOKEN_FILE)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the scheduler and the HTTP API", description=(
        "Run the scheduler and the HTTP API. With a Ray started by this process (embedded; `--address local`, "
        "or no cluster running), Ctrl-C or SIGTERM drains: every running job checkpoints and pauses, "
        "and resumes by itself at the next start; a second Ctrl-C stops at once (the jobs then resume "
        "from their last checkpoint). With a cluster started separately (`ray start`, `--address`), "
        "stopping this process stops no job: it only stops the API."))
    p.add_argument("--address", default=None, help="Ray address ('auto', 'ray://...', 'local' for an embedded "
                   "Ray); default: the cluster started with `ray start` if one runs, else start one here")
    p.add_argument("--shutdown-grace", type=float, default=None, help="with an embedded Ray: how long a "
                   "stop waits for running jobs to checkpoint (default $TRAINQ_SHUTDOWN_GRACE_S or 60)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--storage", default=None, help="storage root for checkpoints (default $TRAINQ_STORAGE "
                   "or ~/.trainq/storage; shared storage on a cluster)")
    p.add_argument("--db", default=None, help="job registry SQLite file (default $TRAINQ_DB or ~/.trainq/trainq.db)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray started by serve")
    p.add_argument("--demo", action="store_true", help="submit a small demo job at start")
    p.add_argument("--demo-steps", type=int, default=60, help="steps of the demo job (default 60)")
    p.add_argument("--insecure-no-token", action="store_true",
                   help="allow a non-local --host without a token")

    p = sub.add_parser("submit", help="submit a job from a YAML/JSON spec file and/or flags")
    p.add_argument("file", nargs="?", help="spec file (YAML or JSON); flags override its fields")
    p.add_argument("--name")
    p.add_argument("--entrypoint", help='"package.module:function" train-loop function')
    p.add_argument("--workload", help="a built-in workload instead of --entrypoint")
    p.add_argument("--config", help="train_loop_config as JSON, or @file.json")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="one config value (repeatable)")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--gpu", action="store_true", help="use_gpu: one GPU per worker")
    p.add_argument("--priority", type=int)
    p.add_argument("--max-failures", type=int, help="worker-group retries inside an attempt (Ray Train)")
    p.add_argument("--max-retries", type=int, help="requeues after an infrastructure failure (default 3; -1 always)")
    p.add_argument("--no-preempt", action="store_true", help="never pause this job to make room for another")
    p.add_argument("--min-runtime", dest="min_runtime_s", type=float,
                   help="not preempted before its attempt has run this many seconds (default $TRAINQ_MIN_RUNTIME_S)")
    p.add_argument("--working-dir", help="runtime_env working_dir: a folder on the scheduler's machine, or a URI")
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="runtime_env env var (repeatable)")
    p.add_argument("--storage-path", help="storage root for this job")
    p.add_argument("--watch", action="store_true", help="then follow it live")

    p = sub.add_parser("list", help="list jobs, newest first")
    p.add_argument("--status", action="append", help="filter (repeatable): queued, running, paused, ...")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    sub.add_parser("queue", help="the queue, in the order jobs will start")

    p = sub.add_parser("checkpoints", help="checkpoints a job recorded, newest first, with state and size;"
                       " or pin/unpin one")
    p.add_argument("job_id")
    pin = p.add_mutually_exclusive_group()
    pin.add_argument("--pin", metavar="PATH", help="keep this checkpoint whatever keep_checkpoints says")
    pin.add_argument("--unpin", metavar="PATH", help="let the retention rule apply to it again (it may be deleted)")
    for name, text in (("status", "one job in detail"), ("cancel", "cancel a job"),
                       ("watch", "follow a job live until it stops (exit 0 completed/paused, 1 otherwise)")):
        sub.add_parser(name, help=text).add_argument("job_id")
    p = sub.add_parser("pause", help="pause a job (running: right after its next checkpoint)")
    p.add_argument("job_id")
    p.add_argument("--deadline", type=float, help="stop anyway after this many seconds (default: from the "
                   "job's checkpoint cadence, 1.5x its interval, at least 30 s; 30 s before its first checkpoint)")
    p.add_argument("--no-deadline", action="store_true",
                   help="wait for the next checkpoint however long it takes")
    p.add_argument("--wait", action="store_true", help="wait until it is paused")
    p.add_argument("--timeout", type=float, default=600, help="with --wait: give up after this long")
    p = sub.add_parser("resume", help="resume a paused, failed or cancelled job")
    p.add_argument("job_id")
    p.add_argument("--checkpoint", help="a checkpoint path this job recorded (default: the latest)")
    p = sub.add_parser("priority", help="change a job's priority (queued, paused or running); "
                       "a raise may preempt lower-priority jobs")
    p.add_argument("job_id")
    p.add_argument("priority", type=int, help="higher starts first")
    p = sub.add_parser("checkpoint", help="have a running job save a checkpoint now and keep running "
                       "(its loop must call scheduler.train.should_checkpoint())")
    p.add_argument("job_id")
    p.add_argument("--wait", action="store_true", help="wait until the checkpoint is recorded")
    p.add_argument("--timeout", type=float, default=600, help="with --wait: give up after this long")
    p = sub.add_parser("models", help="the model cache: pull, list, rm")
    models = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    pull = models.add_parser("pull", help="download a model from the HuggingFace hub (shows progress)")
    pull.add_argument("model_id", help="hub model id, e.g. gpt2 or org/name")
    pull.add_argument("--revision", help="branch, tag or commit (default: main)")
    pull.add_argument("--no-wait", action="store_true", help="start the download and return")
    models.add_parser("list", help="cached models")
    rm = models.add_parser("rm", help="delete a cached model")
    rm.add_argument("model_id")

    p = sub.add_parser("logs", help="the runner's and every worker's output")
    p.add_argument("job_id")
    p.add_argument("--attempt", type=int, help="default: the latest")
    p.add_argument("--tail", type=int, default=200)
    return parser


COMMANDS = {"submit": cmd_submit, "list": cmd_list, "queue": cmd_queue, "status": cmd_status,
            "pause": cmd_pause, "resume": cmd_resume, "cancel": cmd_cancel, "checkpoints": cmd_checkpoints,
            "logs": cmd_logs, "watch": cmd_watch, "models": cmd_models, "priority": cmd_priority,
            "checkpoint": cmd_checkpoint}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trainq`` command."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return cmd_serve(args)
        return COMMANDS[args.command](Api(args.url, _token(args)), args)
    except CliError as e:
        print(f"trainq: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
