"""What the CLI prints, drawn with ``rich``: tables, one job in detail, a progress bar, ``top``.

On a terminal, ``watch`` draws a live bar with ETA; piped into a file it prints one plain line
per report instead (so logs and tests read the same facts without escape codes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console, Group
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ..jobs import iso

#: config keys read as "how many steps in total" for progress bars
TOTAL_KEYS = ("max_steps", "total_steps", "total", "steps", "num_steps")
JOB_COLUMNS = [("job_id", "job"), ("name", "name"), ("status", "status"), ("priority", "prio"),
               ("queue_position", "queue"), ("attempt", "attempt"), ("created_at", "created"),
               ("metrics", "latest metrics")]
#: ``trainq queue``: the queue in start order, why each job waits and when it should start
QUEUE_COLUMNS = [("queue_position", "pos"), ("job_id", "job"), ("name", "name"), ("owner", "owner"),
                 ("priority", "prio"), ("pending_reason", "waiting for"), ("eta", "eta"), ("created_at", "submitted")]
USAGE_COLUMNS = {
    "user": [("user", "user"), ("jobs", "jobs"), ("attempts", "attempts"), ("gpu_hours", "gpu-h"),
             ("cpu_hours", "cpu-h"), ("lost_work_s", "lost work s"), ("preemptions", "preempted"),
             ("fair_share_usage", "fair-share usage"), ("checkpoint_size", "checkpoints")],
    "job": [("job_id", "job"), ("name", "name"), ("user", "user"), ("attempts", "attempts"), ("gpu_hours", "gpu-h"),
            ("cpu_hours", "cpu-h"), ("lost_work_s", "lost work s"), ("preemptions", "preempted"),
            ("checkpoint_size", "checkpoints")],
}
#: job fields that appear as the scheduler grows (treat absent as unknown)
OPTIONAL_FIELDS = ("owner", "pending_reason", "eta", "eta_basis", "borrowing", "backfill", "preemptions", "retries",
                   "resumable", "pause_reason",
                   "preempted_by", "expected_paused_by", "pause_deadline_at", "not_before",
                   "checkpoint_requested_at", "checkpoint_bytes")
STATUS_STYLE = {"queued": "yellow", "pending": "cyan", "running": "green", "pausing": "magenta",
                "paused": "blue", "completed": "bold green", "failed": "bold red", "cancelled": "dim"}


def console(stderr: bool = False) -> Console:
    """A console; off a terminal it is wide, so ids and paths are never cut or wrapped."""
    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return probe
    return Console(stderr=stderr, width=240, no_color=True, highlight=False, soft_wrap=True)


def cell(value: Any) -> str:
    """A value as one table cell: timestamps to the second, numbers to four digits, dicts as ``k=v``."""
    if value is None or value == "":  # e.g. no owner without a users file
        return "-"
    if isinstance(value, float):
        return short(value)
    if isinstance(value, str) and len(value) >= 19 and value[10] == "T":
        return value[:19].replace("T", " ")
    if isinstance(value, dict) and set(value) == {"code", "message"}:  # a pending_reason
        return f"{value['code']}: {value['message']}"
    if isinstance(value, dict):
        return " ".join(f"{k}={short(v)}" for k, v in list(value.items())[:4])
    return str(value)


def short(v: Any) -> str:
    """A number to four significant digits; anything else as is."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], title: str | None = None) -> Table:
    """A borderless table with upper-case headers, one row per dict."""
    t = Table(box=None, header_style="bold", title=title, title_justify="left", pad_edge=False)
    for key, heading in columns:
        t.add_column(heading.upper(), no_wrap=key in ("job_id", "status", "path"))
    for row in rows:
        t.add_row(*[_styled(key, row.get(key)) for key, _ in columns])
    return t


def usage(body: dict[str, Any]) -> Table | str:
    """``trainq usage``: one row per user or job, checkpoint bytes on storage in human units, and
    in the title the period and the total those rows hold on storage."""
    held = human_bytes(body.get("checkpoint_bytes", 0))
    title = (f"usage by {body['by']} since {body['since'] or 'the start'} until {body['until']};"
             f" checkpoints on storage: {held}")
    if not body["rows"]:
        return f"{title}; nothing ran"
    rows = [{**r, "checkpoint_size": human_bytes(r.get("checkpoint_bytes", 0))} for r in body["rows"]]
    return table(rows, USAGE_COLUMNS[body["by"]], title=title)


def nodes(rows: Sequence[dict[str, Any]]) -> Table | str:
    """``trainq nodes``: one row per live node, real resources only, the jobs on it, and its drain."""
    if not rows:
        return "no live nodes"
    shown = [{"node_id": r["node_id"][:12] + (" (head)" if r["is_head"] else ""),
              "resources": " ".join(f"{k}={short(v)}" for k, v in sorted(r["resources"].items())
                                    if k in ("CPU", "GPU") or k.startswith("accelerator_type")) or "-",
              "free": " ".join(f"{k}={short(v)}" for k, v in sorted(r["free"].items()) if k in ("CPU", "GPU")) or "-",
              "jobs": ", ".join(r["jobs"]) or "-",
              "draining": (f"{r['drain_reason']}, until {cell(iso(r['drain_deadline_at']))}" if r["drain_deadline_at"]
                           else r["drain_reason"]) if r["draining"] else "no"}
             for r in rows]
    return table(shown, [("node_id", "node"), ("resources", "resources"), ("free", "free"), ("jobs", "jobs"),
                         ("draining", "draining")])


def _styled(key: str, value: Any) -> Text:
    text = cell(value)
    return Text(text, style=STATUS_STYLE.get(text, "")) if key == "status" else Text(text)


def describe_job(job: dict[str, Any], attempts: list[dict[str, Any]] | None = None) -> str:
    """One job in detail, as plain text lines; with ``attempts`` (its history's), each one's size."""
    lines = [f"{job['job_id']}  {job['name']}  {job['status'].upper()}"]
    for key in ("queue_position", *OPTIONAL_FIELDS, "attempt", "priority", "created_at", "started_at",
                "paused_at", "finished_at", "checkpoint_path", "resume_from", "metrics", "lost_work",
                "error", "warning"):
        if job.get(key) not in (None, {}, ""):
            lines.append(f"  {key:18} {cell(job[key]) if key != 'metrics' else json.dumps(job[key])}")
    spec = job["spec"]
    program = spec.get("entrypoint") or f"workload {spec.get('workload')}"
    n = spec["num_workers"]
    size = f"{n['min']}-{n['max']} workers (elastic)" if isinstance(n, dict) else _workers(n)
    lines.append(f"  {'runs':18} {program} on {size}{' with GPUs' if spec.get('use_gpu') else ''}")
    if attempts:
        sizes = "; ".join(f"{a['attempt']}: {_workers(a.get('workers') or '?')}"
                          + (f", {a['outcome']}" if a.get("outcome") else "") for a in attempts)
        lines.append(f"  {'attempts':18} {sizes}")
    if spec.get("depends_on"):
        lines.append(f"  {'depends_on':18} " + ", ".join(f"{d['job_id']} {d['on']}" for d in spec["depends_on"]))
    if spec.get("sweep_id"):
        lines.append(f"  {'sweep':18} {spec['sweep_id']}")
    return "\n".join(lines)


#: ``trainq sweep``: the members best first by the sweep's metric
SWEEP_COLUMNS = [("job_id", "job"), ("name", "name"), ("status", "status"), ("pending_reason", "waiting for"),
                 ("metrics", "latest metrics")]


def sweep(body: dict[str, Any]) -> Table:
    """A sweep's members, best first by its metric, titled with its limit and counts."""
    metric = f", best first by {body['metric']} ({body['mode']})" if body.get("metric") else ""
    limit = f"at most {body['max_running']} at once" if body.get("max_running") else "no limit"
    counts = ", ".join(f"{n} {status}" for status, n in sorted(body["counts"].items()))
    return table(body["jobs"], SWEEP_COLUMNS, title=f"sweep {body['sweep_id']}: {counts}; {limit}{metric}")


def dry_run(body: dict[str, Any]) -> str:
    """A dry run's answer, as plain text."""
    if body["would_start"]:
        return "would start now"
    reason = body.get("pending_reason") or {}
    lines = [f"would wait: {reason.get('code')}: {reason.get('message')}",
             f"  queue position {body.get('queue_position')}, eta {body.get('eta') or 'unknown'}"
             + (f" ({body['eta_basis']})" if body.get("eta_basis") else "")]
    if body.get("preempts"):
        lines.append("  would preempt " + ", ".join(body["preempts"]))
    return "\n".join(lines)


def total_steps(config: dict[str, Any]) -> int | None:
    """The run's known total of steps, from its config, if it names one."""
    for key in TOTAL_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def human_bytes(n: float | None) -> str:
    """1536 -> '1.5 KB'."""
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class StepProgress:
    """Progress toward a known total: a rich bar with ETA on a terminal, plain lines otherwise."""

    def __init__(self, out: Console, description: str = "") -> None:
        self.out = out
        self.description = description
        self._progress: Progress | None = None
        self._task: Any = None

    def update(self, done: int | None, total: int | None, extra: str = "") -> None:
        """Show ``done`` of ``total`` (either may be unknown) with a short note."""
        if not self.out.is_terminal:
            if done is not None and total:
                self.out.print(f"[{done}/{total}] {extra}".rstrip(), markup=False)
            else:
                self.out.print(f"{'step ' + str(done) if done is not None else ''} {extra}".strip(), markup=False)
            return
        if self._progress is None:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("eta"), TimeRemainingColumn(), TimeElapsedColumn(),
                                      TextColumn("{task.fields[extra]}"), console=self.out, transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=total, extra=extra)
        self._progress.update(self._task, completed=done or 0, total=total, extra=extra)

    def note(self, line: str) -> None:
        """Print a line above the bar (the bar stays at the bottom)."""
        (self._progress.console if self._progress else self.out).print(line, markup=False, highlight=False)

    def close(self) -> None:
        """Remove the bar."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def top_view(queue: list[dict[str, Any]], active: list[dict[str, Any]], cluster: dict[str, Any] | None,
             url: str) -> Group:
    """The screen of ``trainq top``: the cluster, what runs, and the queue in start order."""
    head = Text(f"trainq {url}  {time.strftime('%H:%M:%S')}", style="bold")
    parts: list[Any] = [head]
    if cluster:
        used = " ".join(f"{k} {short(v['used'])}/{short(v['total'])}"
                        for k, v in sorted(cluster.get("resources", {}).items()))
        parts.append(Text(f"running {cluster.get('running', 0)}  queued {cluster.get('queued', 0)}  used {used}"))
    running_cols = [("job_id", "job"), ("name", "name"), ("status", "status"), ("attempt", "attempt"),
                    ("progress", "progress"), ("metrics", "latest metrics")]
    for job in active:
        total = total_steps((job.get("spec") or {}).get("config") or {})
        step = _step(job.get("metrics"))
        job["progress"] = f"{min(step + 1, total)}/{total}" if step is not None and total else "-"
    parts.append(table(active, running_cols, title="active") if active else Text("nothing runs"))
    queue_cols = [("queue_position", "pos"), ("job_id", "job"), ("name", "name"), ("priority", "prio"),
                  ("pending_reason", "waiting for"), ("created_at", "submitted")]
    parts.append(table(queue, queue_cols, title="queue") if queue else Text("the queue is empty"))
    return Group(*parts)


def _step(metrics: dict[str, Any] | None) -> int | None:
    from ..jobs import step_of

    return step_of(metrics)


def _workers(n: object) -> str:
    return f"{n} worker" if n == 1 else f"{n} workers"
