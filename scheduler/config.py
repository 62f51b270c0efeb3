"""Names and settings shared by the actor, the runners and the clients."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NAMESPACE = "trainq"
SCHEDULER_NAME = "scheduler"
RUNNER_PREFIX = "runner"
#: The detached actors that carry the attempts' runners (``scheduler.runner_host.RunnerHost``):
#: the first is named this, the next ones ``runner-host-1``, ``runner-host-2`` ... (``runner_host_name``).
RUNNER_HOST_NAME = "runner-host"
#: Ray's own head-node marker resource; a sliver of it pins an actor to the head node.
HEAD_RESOURCE = "node:__internal_head__"


def runner_host_name(slot: int) -> str:
    """The actor name of the runner host in ``slot`` (0: ``runner-host``, as before there were several)."""
    return RUNNER_HOST_NAME if slot == 0 else f"{RUNNER_HOST_NAME}-{slot}"


def parse_runner_host_name(name: str) -> int | None:
    """The slot of a runner host's actor name, or None for other actors."""
    if name == RUNNER_HOST_NAME:
        return 0
    head, _, slot = name.rpartition("-")
    return int(slot) if head == RUNNER_HOST_NAME and slot.isdigit() and slot[0] != "0" else None


def runner_name(job_id: str, attempt: int) -> str:
    """The named-actor name of one attempt's runner (found again by name after a restart)."""
    return f"{RUNNER_PREFIX}:{job_id}:{attempt}"


def parse_runner_name(name: str) -> tuple[str, int] | None:
    """The (job_id, attempt) of a runner's actor name, or None for other actors."""
    parts = name.split(":")
    if len(parts) != 3 or parts[0] != RUNNER_PREFIX or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def train_run_name(job_name: str, job_id: str, attempt: int) -> str:
    """A Ray Train run name a person can read in the Ray dashboard: whose job, which attempt.

    ``finetune-job_ab12cd-attempt-2``; the job name is cut to 40 characters of ``[A-Za-z0-9_.-]``
    because the run name is also a folder name under the job's storage.
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", job_name).strip("-.")[:40].strip("-.") or "job"
    return f"{safe}-{job_id}-attempt-{attempt}"


def join_path(root: str, name: str) -> str:
    """``root/name`` for a local folder (made absolute) or a URI such as ``s3://bucket/prefix``."""
    return f"{root.rstrip('/')}/{name}" if "://" in root else os.path.join(os.path.abspath(root), name)


def env_float(name: str, default: float) -> float:
    """A non-negative number of seconds from the environment, with an error naming the variable."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise ValueError(f"{name}={raw!r} must not be negative")
    return value


def env_int(name: str, default: int, minimum: int = 0) -> int:
    """A whole number from the environment, at least ``minimum``, with an error naming the variable."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r} must be at least {minimum}")
    return value


def env_switch(name: str, default: bool) -> bool:
    """An on/off setting from the environment (1/0, true/false, on/off, yes/no), with an error naming it."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "on", "yes"):
        return True
    if value in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"{name}={raw!r} must be 1 or 0 (on or off)")


def _env_positive(name: str, default: float) -> float:
    """A number of seconds > 0 from the environment, with an error naming the variable."""
    value = env_float(name, default)
    if value <= 0:
        raise ValueError(f"{name}={os.environ.get(name)!r} must be a number of seconds > 0")
    return value


def _env_keep(name: str, default: int | None) -> int | None:
    """A count of checkpoints to keep: a positive integer, or ``all`` (keep every one)."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.strip().lower() == "all":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number of checkpoints (or 'all')") from None
    if value < 1:
        raise ValueError(f"{name}={raw!r} must be at least 1 (or 'all' to keep every checkpoint)")
    return value


def trainq_home() -> Path:
    """``$TRAINQ_HOME``, by default ``~/.trainq``."""
    return Path(os.environ.get("TRAINQ_HOME") or Path.home() / ".trainq")


def packages_root(storage_root: str) -> str:
    """The folder trainq stores uploaded packages in (under a local storage root, else
    ``$TRAINQ_HOME/packages``): jobs may always use what trainq put there."""
    if "://" in storage_root:
        return str(trainq_home() / "packages")
    return os.path.join(os.path.abspath(storage_root), "packages")


@dataclass(frozen=True)
class Settings:
    """What the scheduler actor is created with (and re-created with when Ray restarts it)."""

    storage_root: str = field(
        default_factory=lambda: os.environ.get("TRAINQ_STORAGE") or str(trainq_home() / "storage"))
    # The registry: a file path or sqlite:///PATH, or postgresql://USER:PASSWORD@HOST:PORT/DB
    # (scheduler.store.url; settings_doc.FIELD_NOTES words it for docs/settings.md). Left out of the
    # repr: a URL may carry a password (scheduler.store.redacted shows one).
    db_path: str = field(default_factory=lambda: os.environ.get("TRAINQ_DB") or str(trainq_home() / "trainq.db"),
                         repr=False)
    #: How often Ray Train's controller polls workers for reports (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S);
    #: lower means faster pauses and quicker notice of a finished run (each report waits for a poll).
    #: Ray's default is 2.0 s; 0.2 s costs about 8% more CPU per running job than 0.5 s (benchmarks).
    report_poll_s: float = field(default_factory=lambda: float(os.environ.get("TRAINQ_REPORT_POLL_S", "0.2")))
    #: How long the registry's lease lasts without renewal (the leader renews it every third of
    #: that): a standby scheduler takes over this long after the leader stopped at the latest.
    lease_ttl_s: float = field(default_factory=lambda: _env_positive("TRAINQ_LEASE_TTL_S", 15.0))
    #: At most this many runs share one runner host process, so that a crash of one (out of
    #: memory, a bug) requeues at most this many. A host costs ~250 MB and each run ~2 MB more,
    #: beside ~240 MB for the run's own Ray Train controller (docs/benchmarks.md, footprint): at 16
    #: the hosts add ~18 MB per run, under a tenth of what the run costs anyway.
    runs_per_host: int = field(default_factory=lambda: env_int("TRAINQ_RUNS_PER_HOST", 16, minimum=1))
    #: Seconds between the scheduler's housekeeping ticks (deadlines, admission, autoscaler hints).
    tick_s: float = field(default_factory=lambda: float(os.environ.get("TRAINQ_TICK_S", "1.0")))
    #: Seconds between reconciliations: live runners compared with the store, drift settled.
    reconcile_s: float = field(default_factory=lambda: env_float("TRAINQ_RECONCILE_S", 5))
    #: JSON of the most resources the cluster can grow to, for autoscaling clusters (e.g.
    #: '{"CPU": 64, "GPU": 16}'); empty means "what the cluster has now".
    max_resources: str = field(default_factory=lambda: os.environ.get("TRAINQ_MAX_RESOURCES", ""))
    #: A running job is not preempted before its attempt has run this long, counted from when its workers
    #: started (a job's min_runtime_s wins).
    min_runtime_s: float = field(default_factory=lambda: env_float("TRAINQ_MIN_RUNTIME_S", 600))
    #: A preempted job that reports no checkpoint within this long is stopped at its last one.
    preempt_grace_s: float = field(default_factory=lambda: env_float("TRAINQ_PREEMPT_GRACE_S", 300))
    #: A pending job whose workers cannot be placed within this long goes back to the queue.
    start_timeout_s: float = field(default_factory=lambda: env_float("TRAINQ_START_TIMEOUT_S", 300))
    #: A pause without a deadline, of a job with no checkpoint yet in its attempt, waits this long.
    pause_default_deadline_s: float = field(
        default_factory=lambda: env_float("TRAINQ_PAUSE_DEFAULT_DEADLINE_S", 30))
    #: The most a pause without an explicit deadline waits for a checkpoint (from the cadence).
    pause_max_wait_s: float = field(default_factory=lambda: env_float("TRAINQ_PAUSE_MAX_WAIT_S", 1800))
    #: Idempotency keys older than this are forgotten (a client resends within seconds; a key kept
    #: for a day outlives any retry), so the registry does not grow with every verb.
    request_keys_ttl_s: float = field(default_factory=lambda: env_float("TRAINQ_REQUEST_KEYS_TTL_S", 86_400))
    #: First backoff of a requeue after an infrastructure failure (doubles per retry, at most 60 s).
    retry_backoff_s: float = field(default_factory=lambda: env_float("TRAINQ_RETRY_BACKOFF_S", 5))
    #: How many of a job's newest checkpoints (across its attempts) are kept when its spec does not
    #: say (``keep_checkpoints``); older ones are deleted unless pinned or needed. None keeps all.
    keep_checkpoints: int | None = field(default_factory=lambda: _env_keep("TRAINQ_KEEP_CHECKPOINTS", 3))
    #: The HuggingFace hub the model cache downloads from (default: huggingface_hub's own).
    hf_endpoint: str = field(default_factory=lambda: os.environ.get("HF_ENDPOINT", ""))
    #: Head-node folders a job may name as a local ``runtime_env`` working_dir/py_modules
    #: (os.pathsep- or comma-separated). Unset: any folder without a users file (one user, a
    #: laptop), none with one; empty: none. Where none is allowed, users upload their folder (the
    #: CLI and the HTTP client do) or give a URI.
    allowed_dirs: str | None = field(default_factory=lambda: os.environ.get("TRAINQ_ALLOWED_DIRS"))
    #: Where a job's ``storage_path`` may point (os.pathsep- or comma-separated folders or URIs).
    #: Unset or empty: only the storage root.
    storage_roots: str = field(default_factory=lambda: os.environ.get("TRAINQ_STORAGE_ROOTS", ""))
    #: Names of the scheduler's environment variables handed to every job's training workers
    #: (comma-separated); their values never enter a job spec, the API, the events or the logs.
    secret_env: str = field(default_factory=lambda: os.environ.get("TRAINQ_SECRET_ENV", "HF_TOKEN"))
    #: The largest folder (zipped) a client may upload as a job's working_dir or py_modules.
    max_package_mb: float = field(default_factory=lambda: env_float("TRAINQ_MAX_PACKAGE_MB", 100))

    #: The users file (YAML: users, tokens, roles, quotas, fair-share weights); unset: one user, as before.
    users_file: str | None = field(default_factory=lambda: os.environ.get("TRAINQ_USERS_FILE") or None)
    #: Fair share forgets usage with this half-life (seconds; default 7 days).
    fairshare_half_life_s: float = field(default_factory=lambda: _env_positive("TRAINQ_FAIRSHARE_HALF_LIFE_S",
                                                                               7 * 86400.0))
    #: Time slicing: equal-priority jobs take turns every this many seconds of running (a start does not
    #: count); 0 (default) turns it off.
    time_slice_s: float = field(default_factory=lambda: env_float("TRAINQ_TIME_SLICE_S", 0))
    #: Elastic jobs: no resize of a job within this many seconds of its last start (the churn bound;
    #: counted from when its workers started, not from its admission); workers a job grew into are
    #: taken back for a waiting job of its priority only after it.
    resize_min_interval_s: float = field(default_factory=lambda: env_float("TRAINQ_RESIZE_MIN_INTERVAL_S", 300))
    #: Backfill: jobs behind a blocked head may start when that cannot delay it (default on);
    #: off, the queue starts strictly in order (the packing benchmark's baseline).
    backfill: bool = field(default_factory=lambda: env_switch("TRAINQ_BACKFILL", True))

    def secret_names(self) -> list[str]:
        """The names in ``secret_env``."""
        return [n.strip() for n in self.secret_env.split(",") if n.strip()]

    def packages_root(self) -> str:
        """See ``packages_root``."""
        return packages_root(self.storage_root)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the non-None overrides applied; local paths are made absolute."""
        values = {**self.to_dict(), **{k: v for k, v in overrides.items() if v is not None}}
        for key in ("storage_root", "db_path"):
            if "://" not in values[key] and values[key] != ":memory:":
                values[key] = os.path.abspath(os.path.expanduser(values[key]))
        return Settings(**values)

    def __post_init__(self) -> None:
        # A registry URL of an unsupported scheme is refused here, before anything starts, rather
        # than opened as a relative file path (``UnsupportedRegistry``, the password masked).
        from .store.url import parse_db_url

        parse_db_url(self.db_path)
