"""One function per CLI command: ``cmd_<name>(client, args) -> exit code``.

Each talks to the HTTP API through ``scheduler.http.HttpClient``; errors propagate as trainq's typed
errors and ``main`` turns them into exit codes. A new command is a function here, a parser entry
in ``__init__.py`` and a line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import InvalidSpec, TrainqError
from ..http import STOPPED, HttpClient
from ..jobs import iso, step_of
from . import render


class UsageError(TrainqError):
    """The command line itself is wrong (exit code 2)."""

    code = "usage"


def _print(args: argparse.Namespace, data: Any, human: Any) -> None:
    out = render.console()
    if args.json:
        print(json.dumps(data, indent=2))
    elif isinstance(human, str):
        out.print(human, markup=False, highlight=False)
    else:
        out.print(human)


def cmd_submit(api: HttpClient, args: argparse.Namespace) -> int:
    spec: dict[str, Any] = {}
    if args.file:
        spec = load_spec(args.file)
    for key in ("name", "entrypoint", "workload", "num_workers", "priority", "max_failures", "max_retries",
                "min_runtime_s", "time_limit_s", "storage_path", "backend"):
        value = getattr(args, key)
        if value is not None:
            spec[key] = value
    if args.gpu:
        spec["use_gpu"] = True
    if args.no_preempt:
        spec["preemptible"] = False
    if args.config:
        spec["config"] = {**spec.get("config", {}), **json_arg(args.config, "--config")}
    for item in args.set or []:
        key, sep, raw = item.partition("=")
        if not key or not sep:
            raise UsageError(f"--set expects key=value, got {item!r}")
        spec.setdefault("config", {})[key] = scalar(raw)
    runtime_env = spec.setdefault("runtime_env", {})
    if args.working_dir:
        folder = args.working_dir
        runtime_env["working_dir"] = folder if "://" in folder else os.path.abspath(folder)
    for folder in args.py_module or []:
        runtime_env.setdefault("py_modules", []).append(folder if "://" in folder else os.path.abspath(folder))
    for item in args.env or []:
        key, _, value = item.partition("=")
        runtime_env.setdefault("env_vars", {})[key] = value
    if not runtime_env:
        spec.pop("runtime_env")
    for item in args.depends_on or []:
        job_id, _, on = item.partition(":")
        spec.setdefault("depends_on", []).append({"job_id": job_id, "on": on or "completed"})
    if args.dry_run:
        answer = api.submit(spec, dry_run=True)
        _print(args, answer, render.dry_run(answer))
        return 0
    job = api.submit(spec, idempotency_key=args.idempotency_key)
    sweep_id = job["spec"].get("sweep_id")
    _print(args, job, f"submitted {job['job_id']} ({job['status']}"
           + (f", queue position {job['queue_position']})" if job["queue_position"] else ")")
           + (f"; sweep {sweep_id}: `trainq sweep {sweep_id}`" if sweep_id else ""))
    if args.watch:
        return cmd_watch(api, argparse.Namespace(**{**vars(args), "job_id": job["job_id"]}))
    return 0


def cmd_list(api: HttpClient, args: argparse.Namespace) -> int:
    body = api.list(args.status, args.limit, args.offset)
    shown = f"{len(body['jobs'])} of {body['total']} job(s)" if body["total"] > len(body["jobs"]) else ""
    human: Any = render.table(body["jobs"], render.JOB_COLUMNS) if body["jobs"] else "no jobs"
    _print(args, body, human)
    if shown and not args.json:
        print(shown)
    return 0


def cmd_queue(api: HttpClient, args: argparse.Namespace) -> int:
    jobs = api.queue()
    _print(args, jobs, render.table(jobs, render.QUEUE_COLUMNS) if jobs else "the queue is empty")
    return 0


def cmd_usage(api: HttpClient, args: argparse.Namespace) -> int:
    body = api.usage(args.by, args.since)
    _print(args, body, render.usage(body))
    return 0


def cmd_nodes(api: HttpClient, args: argparse.Namespace) -> int:
    nodes = api.nodes()
    _print(args, nodes, render.nodes(nodes))
    return 0


def cmd_drain(api: HttpClient, args: argparse.Namespace) -> int:
    answer = api.drain_node(args.node_id, args.deadline, args.reason)
    until = f" until {render.cell(iso(answer['deadline_at']))}" if answer.get("deadline_at") else ""
    _print(args, answer, f"node {answer['node_id']}: draining ({answer['reason']}){until}; its jobs move at their"
                         " next checkpoint")
    return 0


def cmd_sweep(api: HttpClient, args: argparse.Namespace) -> int:
    if args.action:
        body = api.sweep_action(args.sweep_id, args.action)
        _print(args, body, "\n".join(f"{j['job_id']}: {j['previous_status']} -> {j['status']}"
                                     + (f" ({j['error']})" if j["error"] else "") for j in body["jobs"])
               or f"no member of {args.sweep_id} can {args.action}")
        return 0
    body = api.sweep(args.sweep_id)
    _print(args, body, render.sweep(body))
    return 0


def cmd_status(api: HttpClient, args: argparse.Namespace) -> int:
    job = api.get(args.job_id)
    # an elastic job's size changes between attempts: show each one's
    attempts = api.history(args.job_id)["attempts"] if isinstance(job["spec"].get("num_workers"), dict) else None
    _print(args, job, render.describe_job(job, attempts))
    return 0


def cmd_pause(api: HttpClient, args: argparse.Namespace) -> int:
    body = api.pause(args.job_id, args.deadline, args.no_deadline)
    _print(args, body, f"{body['job_id']}: {body['previous_status']} -> {body['status']}. {body['message']}")
    if args.wait and body["status"] == "pausing":
        return wait_until(api, args.job_id, set(STOPPED), args.timeout)
    return 0


def cmd_resume(api: HttpClient, args: argparse.Namespace) -> int:
    body = api.resume(args.job_id, args.checkpoint)
    _print(args, body, f"{body['job_id']}: {body['previous_status']} -> {body['status']}. {body['message']}")
    return 0


def cmd_cancel(api: HttpClient, args: argparse.Namespace) -> int:
    job = api.cancel(args.job_id)
    _print(args, job, f"{job['job_id']}: {job['status']}")
    return 0


def cmd_checkpoints(api: HttpClient, args: argparse.Namespace) -> int:
    if args.pin or args.unpin:
        ck = api.pin_checkpoint(args.job_id, args.pin or args.unpin, pinned=bool(args.pin))
        _print(args, ck, f"{args.job_id}: {ck['path']} is {ck['state']}")
        return 0
    rows = api.checkpoints(args.job_id)
    shown = [{**r, "size": render.human_bytes(r.get("bytes"))} for r in rows]
    columns = [("at", "recorded"), ("attempt", "attempt"), ("state", "state"), ("size", "size"),
               ("metrics", "metrics"), ("path", "path")]
    _print(args, rows, render.table(shown, columns) if rows else "no checkpoints recorded")
    return 0


def cmd_priority(api: HttpClient, args: argparse.Namespace) -> int:
    job = api.set_priority(args.job_id, args.priority)
    where = f", queue position {job['queue_position']}" if job.get("queue_position") else ""
    _print(args, job, f"{job['job_id']}: priority {job['priority']} ({job['status']}{where})")
    return 0


def cmd_checkpoint(api: HttpClient, args: argparse.Namespace) -> int:
    body = api.checkpoint(args.job_id)
    _print(args, body, f"{body['job_id']}: {body['message']}")
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        job = api.get(args.job_id)
        if job.get("checkpoint_requested_at") is None:
            print(f"{args.job_id}: checkpoint recorded at {job['checkpoint_path']}")
            return 0
        if job["status"] != "running":
            raise TrainqError(f"{args.job_id} is {job['status']}; the checkpoint was not recorded")
        time.sleep(0.5)
    raise TrainqError(f"no checkpoint recorded for {args.job_id} within {args.timeout}s")


def cmd_logs(api: HttpClient, args: argparse.Namespace) -> int:
    body = api.logs(args.job_id, args.attempt, args.tail)
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    if not body["logs"]:
        print(f"no logs for attempt {body['attempt']} (folder {body['folder']})")
    for source, lines in body["logs"].items():
        print(f"==> attempt {body['attempt']} {source} <==")
        print("\n".join(lines))
    return 0


def cmd_watch(api: HttpClient, args: argparse.Namespace) -> int:
    """Follow a job live until it stops; a progress bar with ETA when its total steps are known."""
    out = render.console()
    bar = render.StepProgress(out)
    total: int | None = None
    try:
        for ev in api.events(args.job_id):
            if ev.event == "snapshot":
                total = render.total_steps(ev.data["spec"].get("config") or {})
                bar.description = ev.data["name"]
                bar.note(f"{ev.data['job_id']} {ev.data['name']}: {ev.data['status']}")
                status = ev.data["status"]
            elif ev.event == "status":
                d = ev.data
                bar.note(f"{d['at'][11:19]}  {d['previous_status'] or 'new'} -> {d['status']}  ({d['reason']})")
                status = d["status"]
            elif ev.event == "report":
                metrics = ev.data["metrics"]
                step = step_of(metrics)
                extra = " ".join(f"{k}={render.short(v)}" for k, v in metrics.items()
                                 if k not in ("step", "global_step"))
                if ev.data.get("checkpoint_path"):
                    extra += " [checkpoint]"
                bar.update(None if step is None else (min(step + 1, total) if total else step), total, extra)
                continue
            elif ev.event == "warning":
                bar.note(f"warning: {ev.data['warning']}")
                continue
            else:
                continue
            if status in STOPPED:
                return 0 if status in ("completed", "paused") else 1
    finally:
        bar.close()
    return 1


def cmd_top(api: HttpClient, args: argparse.Namespace) -> int:
    """The queue and the running jobs, redrawn every ``--interval`` seconds (``--once``: one frame)."""
    from rich.live import Live

    def frame() -> Any:
        active = api.list(["pending", "running", "pausing"], 100, 0)["jobs"]
        queue = api.queue()
        cluster = api.cluster()
        if args.json:
            return {"active": active, "queue": queue, "cluster": cluster}
        return render.top_view(queue, active, cluster, api.url)

    out = render.console()
    if args.once or not out.is_terminal:
        _print(args, frame(), "") if args.json else out.print(frame())
        return 0
    with Live(frame(), console=out, screen=False, auto_refresh=False) as live:
        while True:
            time.sleep(args.interval)
            live.update(frame(), refresh=True)


def cmd_models(api: HttpClient, args: argparse.Namespace) -> int:
    if args.models_command == "list":
        rows = api.models_list()
        for r in rows:
            r["size"] = render.human_bytes(r["bytes_total"])
        columns = [("model_id", "model"), ("status", "status"), ("size", "size"), ("revision", "revision"),
                   ("path", "path")]
        _print(args, rows, render.table(rows, columns) if rows else "no cached models")
        return 0
    if args.models_command == "rm":
        entry = api.models_delete(args.model_id)
        _print(args, entry, f"deleted {entry['model_id']}")
        return 0
    entry = api.models_pull(args.model_id, args.revision)
    if args.no_wait:
        _print(args, entry, f"{entry['model_id']}: {entry['status']} (follow with: trainq models list)")
        return 0
    bar = render.StepProgress(render.console(), args.model_id)
    try:
        while entry["status"] == "downloading":
            total = entry["bytes_total"]
            if total:
                bar.update(entry["bytes_done"], total, f"{render.human_bytes(entry['bytes_done'])} of "
                           f"{render.human_bytes(total)} ({100 * entry['bytes_done'] // max(total, 1)}%)")
            time.sleep(0.5)
            entry = api.models_get(args.model_id)
    finally:
        bar.close()
    if entry["status"] != "ready":
        raise TrainqError(f"download of {args.model_id} {entry['status']}: {entry['error']}")
    _print(args, entry, f"{entry['model_id']} ready ({render.human_bytes(entry['bytes_total'])}) at {entry['path']}")
    return 0


def wait_until(api: HttpClient, job_id: str, statuses: set[str], timeout_s: float) -> int:
    """Poll until the job is in one of ``statuses``; print where it stopped."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = api.get(job_id)
        if job["status"] in statuses:
            print(f"{job_id}: {job['status']}" + (f" at {job['checkpoint_path']}" if job["checkpoint_path"] else ""))
            return 0
        time.sleep(0.5)
    raise TrainqError(f"{job_id} did not reach {sorted(statuses)} within {timeout_s}s")


def load_spec(path: str) -> dict[str, Any]:
    """A job spec from a YAML or JSON file."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as e:
        raise UsageError(f"cannot read spec file {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as e:
        raise InvalidSpec(f"spec file {path} is not valid YAML/JSON: {e}") from None
    if not isinstance(data, dict):
        raise InvalidSpec(f"spec file {path} must hold a mapping of job spec fields")
    return data


def json_arg(raw: str, flag: str) -> dict[str, Any]:
    """A JSON object given inline or as ``@file``."""
    text = Path(raw[1:]).read_text() if raw.startswith("@") else raw
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidSpec(f"{flag} must be a JSON object (or @file): {e}") from None
    if not isinstance(value, dict):
        raise InvalidSpec(f"{flag} must be a JSON object")
    return value


def scalar(raw: str) -> Any:
    """``--set`` values: JSON when they parse (numbers, true, lists), else the string."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def workers_arg(raw: str) -> int | dict[str, int]:
    """``--num-workers``: ``4``, or ``2-8`` for an elastic job (``{"min": 2, "max": 8}``); the
    spec's own rules (bounds, min <= max) are checked by the server, which names the field."""
    lo, sep, hi = raw.partition("-")
    try:
        return {"min": int(lo), "max": int(hi)} if sep else int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of workers (4) or a range (2-8), got {raw!r}") from None
