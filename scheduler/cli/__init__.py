"""``trainq``: the command line. ``serve`` runs the service; every other command talks to its HTTP API
through ``scheduler.http.HttpClient``.

Exit codes (for scripts): 0 ok, 1 error (or, for ``watch``, the job failed or was cancelled),
2 bad usage, 3 unknown job, 4 the job's state does not allow it, 5 invalid input,
6 missing or wrong token, 7 the server cannot be reached.

Layout: ``commands.py`` (one function per command), ``render.py`` (tables and progress with rich),
``serve.py`` (``trainq serve``), and here the argument tree and ``main``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import get_args

from ..errors import TrainqError
from ..http import DEFAULT_URL, HttpClient
from ..verbs import SweepVerb
from . import commands
from .commands import UsageError, workers_arg
from .db import add_parser as add_db_parser

EXIT = {"ok": 0, "error": 1, "usage": 2, "not_found": 3, "conflict": 4, "invalid": 5,
        "unauthorized": 6, "unreachable": 7, "too_large": 5,
        "forbidden": 8}


def exit_code(error: TrainqError) -> int:
    """The exit code for a typed error (1 for any code without its own)."""
    return EXIT.get(error.code, 1)


def _token(args: argparse.Namespace) -> str | None:
    if args.token:
        return args.token
    from api.auth import configured_token

    return configured_token()


# -- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainq", description="Queue, pause and resume Ray Train jobs.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 unknown job, 4 state conflict, 5 invalid input, "
               "6 unauthorized, 7 server unreachable, 8 forbidden (another user's job).")
    parser.add_argument("--url", default=os.environ.get("TRAINQ_URL", DEFAULT_URL),
                        help=f"trainq API (default $TRAINQ_URL or {DEFAULT_URL})")
    parser.add_argument("--token", default=None,
                        help="API token (default $TRAINQ_API_TOKEN, or the file $TRAINQ_API_TOKEN_FILE)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the scheduler, the HTTP API and the page", description=(
        "Run the scheduler, the HTTP API and the page. With a Ray started by this process (embedded; "
        "`--address local`, or no cluster running), Ctrl-C or SIGTERM drains: every running job "
        "checkpoints and pauses, and resumes by itself at the next start; a second Ctrl-C stops at once "
        "(the jobs then resume from their last checkpoint). With a cluster started separately "
        "(`ray start`, `--address`), stopping this process stops no job: it only stops the API."))
    p.add_argument("--shutdown-grace", type=float, default=None, help="with an embedded Ray: how long a "
                   "stop waits for running jobs to checkpoint (default $TRAINQ_SHUTDOWN_GRACE_S or 60)")
    p.add_argument("--address", default=None, help="Ray address ('auto', 'ray://...', 'local' for an embedded "
                   "Ray); default: the cluster started with `ray start` if one runs, else start one here")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--storage", default=None, help="storage root for checkpoints (default $TRAINQ_STORAGE "
                   "or ~/.trainq/storage; shared storage on a cluster)")
    p.add_argument("--db", default=None, help="job registry: an SQLite file (or sqlite:///PATH) or a "
                   "postgresql://USER:PASSWORD@HOST:PORT/DB URL (default $TRAINQ_DB or ~/.trainq/trainq.db)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray started by serve")
    p.add_argument("--demo", action="store_true", help="submit a small demo job at start")
    p.add_argument("--demo-steps", type=int, default=60, help="steps of the demo job (default 60)")
    p.add_argument("--users-file", default=None, metavar="FILE",
                   help="users, tokens, roles and quotas (YAML; default $TRAINQ_USERS_FILE): every API call then"
                        " acts as its token's user; a malformed file stops serve, naming the line")
    p.add_argument("--insecure-no-token", action="store_true",
                   help="allow a non-local --host without a token (set the token with $TRAINQ_API_TOKEN or the"
                        " file $TRAINQ_API_TOKEN_FILE; with a users file, each user's token is in it)")
    p.epilog = ("Security settings (environment): TRAINQ_API_TOKEN, or TRAINQ_API_TOKEN_FILE naming a file that"
                " holds it: the token every API call must carry (required to serve on a non-local --host"
                " without a users file); TRAINQ_USERS_FILE: users with their own tokens, roles and quotas;"
                " TRAINQ_ALLOWED_DIRS: folders on this machine a job may name as "
                "working_dir/py_modules (unset: any; empty: none, clients upload their own); TRAINQ_STORAGE_ROOTS: "
                "where a job's storage_path may point (besides the storage root); TRAINQ_SECRET_ENV: variables of "
                "this environment handed to every job's workers, never shown (default HF_TOKEN); "
                "TRAINQ_MAX_PACKAGE_MB: largest upload (default 100). See the README's Security model.")

    p = sub.add_parser("submit", help="submit a job from a YAML/JSON spec file and/or flags")
    p.add_argument("file", nargs="?", help="spec file (YAML or JSON); flags override its fields")
    p.add_argument("--name")
    p.add_argument("--entrypoint", help='"package.module:function" train-loop function')
    p.add_argument("--workload", help="a built-in workload instead of --entrypoint")
    p.add_argument("--config", help="train_loop_config as JSON, or @file.json")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="one config value (repeatable)")
    p.add_argument("--num-workers", type=workers_arg, metavar="N|MIN-MAX",
                   help="workers in the gang, or a range such as 2-8 for an elastic job: it starts with as many"
                   " as fit and grows or shrinks at its checkpoints")
    p.add_argument("--gpu", action="store_true", help="use_gpu: one GPU per worker")
    p.add_argument("--backend", choices=["torch", "none"], help='"torch" (default): a torch.distributed process'
                   ' group across the workers; "none": none, and no torch import (a loop with no collectives)')
    p.add_argument("--priority", type=int)
    p.add_argument("--max-failures", type=int, help="worker-group retries inside an attempt (Ray Train)")
    p.add_argument("--max-retries", type=int, help="requeues after an infrastructure failure (default 3; -1 always)")
    p.add_argument("--no-preempt", action="store_true", help="never pause this job to make room for another")
    p.add_argument("--time-limit", dest="time_limit_s", type=float, metavar="SECONDS",
                   help="stop each attempt after this long (the job fails with a time-limit error); lets"
                        " backfill start it early around a waiting job")
    p.add_argument("--min-runtime", dest="min_runtime_s", type=float,
                   help="not preempted before its attempt has run this many seconds since its workers"
                        " started (default $TRAINQ_MIN_RUNTIME_S)")
    p.add_argument("--working-dir", help="runtime_env working_dir: a folder here (uploaded to trainq, as `ray job "
                   "submit` does), or a URI (s3://, gs://, gcs://, https://)")
    p.add_argument("--py-module", action="append", metavar="FOLDER",
                   help="runtime_env py_modules entry: a package folder here (uploaded), or a URI (repeatable)")
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="runtime_env env var (repeatable)")
    p.add_argument("--storage-path", help="storage root for this job: under the storage root or one of the "
                   "server's TRAINQ_STORAGE_ROOTS")
    p.add_argument("--idempotency-key", metavar="KEY",
                   help="submitting again with the same key returns the job the first submit created")
    p.add_argument("--depends-on", action="append", metavar="JOB[:ON]",
                   help="wait for this job: ON is completed (default), failed or finished (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="create nothing: say whether it would start now, why"
                   " not, its ETA and whom it would preempt")
    p.add_argument("--watch", action="store_true", help="then follow it live")

    p = sub.add_parser("list", help="list jobs, newest first")
    p.add_argument("--status", action="append", help="filter (repeatable): queued, running, paused, ...")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    sub.add_parser("queue", help="the queue, in the order jobs will start, with why each waits and its ETA")
    p = sub.add_parser("sweep", help="a sweep's members, best first by its metric; or pause/resume/cancel them all")
    p.add_argument("sweep_id")
    p.add_argument("action", nargs="?", choices=get_args(SweepVerb), help="act on every member that can")
    p = sub.add_parser("usage", help="GPU-hours, CPU-hours, lost work, preemptions and attempts per user or job")
    p.add_argument("--by", choices=("user", "job"), default="user", help="one row per user (default) or per job")
    p.add_argument("--since", metavar="TIME", help="ISO 8601 time, e.g. 2026-11-01 (default: all time)")
    sub.add_parser("nodes", help="live nodes: resources, free room, the jobs on each, and drains")
    p = sub.add_parser("drain", help="drain a node (as for a spot reclaim or maintenance): its jobs checkpoint and"
                       " move to other nodes, and nothing new starts there (an admin's, with a users file)")
    p.add_argument("node_id", help="a Ray node id, as `trainq nodes` lists it")
    p.add_argument("--deadline", type=float, metavar="SECONDS",
                   help="the node goes in this many seconds: jobs still waiting for a checkpoint stop at their last"
                        " one just before (default: none; each job pauses at its next checkpoint)")
    p.add_argument("--reason", choices=("preemption", "idle"), default="preemption",
                   help="Ray's drain reason (idle: refused for a node a trainq job is on, as Ray refuses one"
                        " for any busy node; preemption moves its jobs)")
    p = sub.add_parser("top", help="the queue and the running jobs, live (Ctrl-C to leave)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between redraws (default 1)")
    p.add_argument("--once", action="store_true", help="draw once and exit")

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

    add_db_parser(sub)
    p = sub.add_parser("logs", help="the runner's and every worker's output")
    p.add_argument("job_id")
    p.add_argument("--attempt", type=int, help="default: the latest")
    p.add_argument("--tail", type=int, default=200)
    return parser


COMMANDS: dict[str, Callable[[HttpClient, argparse.Namespace], int]] = {
    "nodes": commands.cmd_nodes, "drain": commands.cmd_drain, "sweep": commands.cmd_sweep,
    "submit": commands.cmd_submit, "list": commands.cmd_list, "queue": commands.cmd_queue,
    "status": commands.cmd_status, "pause": commands.cmd_pause, "resume": commands.cmd_resume,
    "cancel": commands.cmd_cancel, "checkpoints": commands.cmd_checkpoints, "logs": commands.cmd_logs,
    "watch": commands.cmd_watch, "top": commands.cmd_top, "models": commands.cmd_models,
    "priority": commands.cmd_priority, "checkpoint": commands.cmd_checkpoint, "usage": commands.cmd_usage,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trainq`` command."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            from .serve import cmd_serve

            return cmd_serve(args)
        if args.command == "db":
            from .db import cmd_db

            return cmd_db(args)
        with HttpClient(args.url, _token(args)) as api:
            return COMMANDS[args.command](api, args)
    except TrainqError as e:
        print(f"trainq: {e}", file=sys.stderr)
        return exit_code(e)
    except KeyboardInterrupt:
        return 130


__all__ = ["COMMANDS", "EXIT", "UsageError", "build_parser", "exit_code", "main"]
