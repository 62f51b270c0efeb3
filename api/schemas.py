"""Response models: the public shape of everything the API returns.

The request body of a submit is ``scheduler.spec.JobSpec`` itself, the one spec model that
HTTP, Python and the CLI share.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from scheduler.model_cache import MODEL_ID_MAX, MODEL_ID_PATTERN
from scheduler.spec import JobSpec
from scheduler.validation import JsonInt


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class LostWork(_Out):
    reports: int
    seconds: float
    steps: int | None = None
    since_checkpoint: str | None = None
    note: str | None = None


class PendingReason(_Out):
    """Why a queued job waits: code priority, resources, quota, preempting, reserved or backoff."""

    code: str
    message: str


class UsageRow(_Out):
    """One user's or one job's use of the cluster over the period."""

    user: str | None = None
    job_id: str | None = None
    name: str | None = None
    resource_seconds: dict[str, float]
    gpu_hours: float
    gpu_hours_by_type: dict[str, float] = Field(default_factory=dict, description="GPU-hours per accelerator type")
    cpu_hours: float
    lost_work_s: float
    preemptions: int
    attempts: int
    jobs: int | None = None
    fair_share_usage: float | None = None
    checkpoint_bytes: int = 0


class Usage(_Out):
    by: str
    since: str | None
    until: str
    rows: list[UsageRow]
    checkpoint_bytes: int = 0


class JobPublic(_Out):
    """A job as every route returns it."""

    job_id: str
    name: str
    status: str
    spec: JobSpec
    priority: int
    queue_position: int | None
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None
    paused_at: str | None
    attempt: int
    checkpoint_path: str | None
    resume_from: str | None
    metrics: dict[str, Any] | None
    error: str | None
    warning: str | None
    lost_work: LostWork | None
    pause_requested_at: str | None
    pause_deadline_at: str | None
    expected_paused_by: str | None = None
    pause_reason: str | None = None
    preempted_by: str | None = None
    preemptions: int = 0
    retries: int = 0
    not_before: str | None = None
    resumable: bool | None = None
    cooperative: bool = False
    checkpoint_requested_at: str | None = None
    checkpoint_bytes: int | None = Field(default=None, description="bytes its checkpoints that are not deleted use")
    owner: str | None = Field(default=None, description="the user who submitted it (users file)")
    borrowing: bool = Field(default=False, description="its attempt runs beyond its owner's guarantee, on idle"
                            " capacity: the first to be paused when a guarantee is reclaimed")
    backfill: str | None = Field(default=None, description="started as backfill: ends_before or spare")
    workers: int | None = Field(default=None, description="how many workers its current (or last) attempt runs"
                                " with: an elastic job's size, chosen at each start")
    pending_reason: PendingReason | None = Field(default=None, description="while queued: why it waits")
    eta: str | None = Field(default=None, description="while queued: its estimated start (null: no estimate)")
    eta_basis: str | None = Field(default=None, description="what the eta rests on")


class JobPatch(BaseModel):
    """Fields of a job that may change after submit."""

    model_config = ConfigDict(extra="forbid", strict=True)  # ``true`` is not a priority
    priority: JsonInt = Field(ge=-1_000_000, le=1_000_000, description="higher starts first; a raise may preempt")


class CheckpointResponse(_Out):
    """The answer to a checkpoint-now."""

    success: bool
    job_id: str
    status: str
    requested_at: str | None
    checkpoint_path: str | None
    message: str


class JobList(_Out):
    jobs: list[JobPublic]
    total: int
    limit: int
    offset: int


class DryRunResponse(_Out):
    """What a submit would do now (``?dry_run=true``); nothing was created or changed."""

    dry_run: bool = True
    would_start: bool
    pending_reason: PendingReason | None = None
    eta: str | None = Field(default=None, description="when it would start (ISO 8601), when it can be estimated")
    eta_basis: str | None = None
    preempts: list[str] = Field(default_factory=list, description="the jobs a real submit would pause for it")
    queue_position: int | None = None


class SweepPublic(_Out):
    """A sweep: its parameters and limit, its members' counts by state, and its members best first."""

    sweep_id: str
    parameters: dict[str, list[Any]]
    max_running: int | None = None
    metric: str | None = None
    mode: str
    counts: dict[str, int]
    jobs: list[JobPublic]


class SweepMemberResult(_Out):
    job_id: str
    previous_status: str
    status: str
    error: str | None = None


class SweepActionResponse(_Out):
    """A verb applied to each member of a sweep that could take it."""

    sweep_id: str
    action: str
    jobs: list[SweepMemberResult]


class PauseResponse(_Out):
    """The seed's pause response, plus ``status``."""

    success: bool
    job_id: str
    previous_status: str
    status: str
    paused_at: str | None
    message: str
    expected_paused_by: str | None = None
    deadline_at: str | None = None


class ResumeResponse(_Out):
    """The seed's resume response, plus ``previous_status`` and ``status``."""

    success: bool
    job_id: str
    previous_status: str
    status: str
    checkpoint_path: str | None
    queue_position: int | None
    message: str


class CheckpointPublic(_Out):
    job_id: str
    attempt: int
    path: str
    metrics: dict[str, Any]
    at: str
    state: str = Field(default="kept", description="kept, pinned (kept whatever the rule says) or deleted"
                       " (by the job's keep_checkpoints rule)")
    pinned: bool = False
    bytes: int | None = Field(default=None, description="size on storage when recorded (None: not measured)")
    deleted_at: str | None = None


class ReportPublic(_Out):
    job_id: str
    attempt: int
    seq: int
    at: str
    metrics: dict[str, Any]
    checkpoint_path: str | None


class TransitionPublic(_Out):
    job_id: str
    from_status: str | None
    to_status: str
    at: str
    reason: str
    attempt: int


class AttemptPublic(_Out):
    job_id: str
    attempt: int
    started_at: str
    resumed_from: str | None
    run_name: str
    ended_at: str | None
    outcome: str | None
    lost_work: LostWork | None
    accelerator_type: str | None = Field(default=None, description="the type admission gave this attempt")
    workers: int | None = Field(default=None, description="how many workers this attempt ran with")


class History(_Out):
    transitions: list[TransitionPublic]
    attempts: list[AttemptPublic]


class Logs(_Out):
    attempt: int
    folder: str | None
    logs: dict[str, list[str]]
    error: str | None = Field(default=None, description="why no lines could be read (storage unreachable...)")


class Health(_Out):
    ok: bool
    epoch: str | None = None
    queued: int | None = None
    active: int | None = None
    capacity: dict[str, float] | None = None
    role: str | None = Field(None, description="leader: this scheduler acts on its registry; standby: another "
                             "leads it, and this one takes over when that lease expires (answers 503 meanwhile)")
    leader: dict[str, Any] | None = Field(None, description="on a standby: the registry's leader as its lease says "
                                          "(holder, epoch, expires_in_s)")


class PackagePublic(_Out):
    """A stored package: name ``path`` in a spec's ``runtime_env`` working_dir or py_modules."""

    name: str
    path: str = Field(description="where trainq stored it; a job may always use this folder")
    digest: str = Field(description="content address: the same folder uploads to the same path")
    bytes: int


class ErrorBody(_Out):
    """Every error: a machine-readable ``error``, a human ``message``, and the fields involved."""

    model_config = ConfigDict(extra="allow")
    error: str
    message: str


class ModelPull(BaseModel):
    """A request to download a model from the HuggingFace hub into the cache."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), strict=True)
    model_id: str = Field(pattern=MODEL_ID_PATTERN, max_length=MODEL_ID_MAX,
                          description='a hub model id, "org/name" or "name"')
    revision: str | None = Field(default=None, min_length=1, max_length=200,
                                 description="a branch, tag or commit (default: the main branch)")


class ModelEntry(_Out):
    """A cached model: ``downloading`` (with bytes), ``ready``, ``failed`` or ``deleted``."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())
    model_id: str
    revision: str | None
    status: str
    bytes_done: int
    bytes_total: int | None
    path: str
    error: str | None
    started_at: float
    finished_at: float | None
