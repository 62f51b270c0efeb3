"""The job spec: one validated model shared by HTTP, Python and the CLI (README, "A job spec")."""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict

from . import workloads  # a light module: names and validators, no torch
from .errors import InvalidSpec
from .security import JOB_FOLDER_IN_PATH, PACKAGE_PATTERN, RESERVED_ENV_PREFIXES, reserved_env_vars
from .validation import JsonInt, WholeNumber, describe_errors, whole_number

# The patterns are ASCII on purpose: they are also the OpenAPI schema's, and a JSON Schema regex
# (ECMA) reads \w as ASCII while Python reads it as Unicode; spelled out, both agree.
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ENTRYPOINT_PATTERN = rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}$"
ENTRYPOINT_RE = re.compile(ENTRYPOINT_PATTERN)
#: an absolute path, or a URI with a scheme (s3://bucket/prefix, gs://..., file:///...)
STORAGE_PATH_PATTERN = r"^(/|[A-Za-z][A-Za-z0-9+.-]*://)[^\x00]*$"
STORAGE_PATH_RE = re.compile(STORAGE_PATH_PATTERN)
#: the names a job may not set in env_vars, as the schema says it (any case, like ``reserved_env_vars``)
RESERVED_ENV_PATTERN = "^(" + "|".join("".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in prefix)
                                       for prefix in RESERVED_ENV_PREFIXES) + ")"
#: an accelerator type as Ray names it (``A100``, ``H100``, ``TPU-V4``): the node resource is ``accelerator_type:<it>``
ACCELERATOR_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
AcceleratorType = Annotated[str, Field(pattern=ACCELERATOR_PATTERN)]
#: a resource amount per worker; far above any machine (Ray's ``memory`` is in bytes), and finite
MAX_RESOURCE = 1e15


@with_config(ConfigDict(extra="forbid"))
class RuntimeEnv(TypedDict, total=False):
    """The part of Ray's ``runtime_env`` a job may set; Ray checks the values when the job starts.

    A TypedDict (not a model) so the spec keeps a plain dict that goes to Ray as it is, while the
    shape is validated here and published in the OpenAPI schema.
    """

    working_dir: Annotated[str, Field(json_schema_extra={"pattern": PACKAGE_PATTERN})]
    py_modules: list[Annotated[str, Field(json_schema_extra={"pattern": PACKAGE_PATTERN})]]
    env_vars: Annotated[dict[str, str], Field(json_schema_extra={"propertyNames": {"not": {
        "pattern": RESERVED_ENV_PATTERN}}})]
    pip: str | list[str] | dict[str, Any]  # str: a requirements file, as Ray takes it
    uv: str | list[str] | dict[str, Any]
    conda: str | dict[str, Any]
    excludes: list[str]
    config: dict[str, Any]


RUNTIME_ENV_KEYS = frozenset(RuntimeEnv.__annotations__)


#: the most workers one job may ask for
MAX_WORKERS = 4096
Workers = Annotated[int, Field(ge=1, le=MAX_WORKERS), WholeNumber]


class WorkerRange(BaseModel):
    """An elastic job's worker count: trainq chooses a size from ``min`` to ``max`` at each start
    and resizes the job at its checkpoints (README, "Elastic jobs")."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    min: Workers = Field(description="the fewest workers it runs with")
    max: Workers = Field(description="the most workers it runs with")

    @model_validator(mode="after")
    def _ordered(self) -> WorkerRange:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be at least min ({self.min})")
        return self


def _one_program_schema(schema: dict[str, Any]) -> None:
    """The spec's "exactly one of entrypoint or workload", in the JSON schema as well (``oneOf``).

    Without it the OpenAPI document calls ``{}`` a valid job, and a client generated from it (or
    a fuzzer) could never tell why a submit is refused.
    """
    schema["oneOf"] = [
        {"title": "entrypoint", "required": ["entrypoint"],
         "properties": {"entrypoint": {"type": "string"}, "workload": {"type": "null"}}},
        *({"title": f"workload {name}", "required": ["workload", "config"],
           "properties": {"workload": {"const": name}, "entrypoint": {"type": "null"},
                          "config": workloads.config_schema(name), "sweep": _workload_sweep_schema(name)}}
          for name in workloads.names()),
    ]


def _workload_sweep_schema(workload: str) -> dict[str, Any]:
    """A workload job's sweep may vary only its sweepable keys, each value valid for its key."""
    keys = workloads.sweepable(workload)
    parameters = {"type": "object", "additionalProperties": False,
                  "properties": {k: {"type": "array", "minItems": 1, "items": v} for k, v in keys.items()}}
    return {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"parameters": parameters}}]}


#: a job id as trainq makes them (``jobs.new_job_id``; a sweep's members: ``<sweep id>-<n>``)
JOB_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
#: a sweep's parameter name: a key of ``config``
PARAM_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
#: most jobs one sweep may make (Slurm's MaxArraySize is 1001 by default)
MAX_SWEEP_JOBS = 1000


class Dependency(BaseModel):
    """A job this one waits for (Slurm's ``--dependency=afterok|afternotok|afterany``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    job_id: str = Field(pattern=JOB_ID_PATTERN, description="a job submitted before this one")
    on: Literal["completed", "failed", "finished"] = Field(
        default="completed", description='"completed": it completed; "failed": it failed; "finished": any end'
        " (completed, failed or cancelled)")


class SweepSpec(BaseModel):
    """A parameter sweep: one job per combination of the values (Slurm's ``--array=...%k``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    parameters: dict[Annotated[str, Field(pattern=PARAM_PATTERN)], Annotated[list[Any], Field(
        min_length=1, max_length=MAX_SWEEP_JOBS)]] = Field(
        min_length=1, max_length=16, description="config key -> the values to try; every combination is a job,"
        " with its values merged into config", json_schema_extra={"propertyNames": {"pattern": PARAM_PATTERN}})
    max_running: Annotated[int, Field(ge=1, le=MAX_SWEEP_JOBS), WholeNumber] | None = Field(
        default=None, description="at most this many members pending, running or pausing at once (null: no limit)")
    metric: str | None = Field(default=None, min_length=1, max_length=200,
                               description="the reported metric that ranks the members (latest value)")
    mode: Literal["min", "max"] = Field(default="min", description="whether a lower or a higher metric is better")

    @field_validator("parameters")
    @classmethod
    def _values_are_json(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"values must be JSON ({e})") from None
        return v  # how many jobs it makes is checked at submit (``errors.SweepTooLarge``)

    def size(self) -> int:
        """How many jobs the sweep makes."""
        return math.prod(len(values) for values in self.parameters.values())


class JobSpec(BaseModel):
    """What a user asks trainq to run. Unknown fields are refused."""

    # strict: a JSON ``true`` is not the integer 1, nor ``"4"`` the number 4 (the schema says so).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, json_schema_extra=_one_program_schema)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    entrypoint: str | None = Field(
        default=None, description='"package.module:function", a Ray Train train-loop function',
        json_schema_extra={"pattern": ENTRYPOINT_PATTERN},
    )
    workload: str | None = Field(default=None, description="a built-in workload instead of an entrypoint")
    config: dict[str, Any] = Field(default_factory=dict, description="passed as train_loop_config")
    num_workers: Workers | WorkerRange = Field(
        default=1, description='how many workers (one gang), or {"min": m, "max": n} for an elastic job that'
        " trainq starts with as many as fit and grows or shrinks at its checkpoints")
    use_gpu: bool = False
    backend: Literal["torch", "none"] = Field(
        default="torch", description='"torch": the workers join a torch.distributed process group (gloo, or'
        ' nccl with GPUs), as TorchTrainer sets up; "none": no process group and no torch import, for loops'
        " that need no collective communication or set up their own (JAX, plain Python)")
    resources_per_worker: dict[str, float] | None = Field(
        default=None, description=f"resources of one worker, each a number from 0 to {MAX_RESOURCE:g}",
        json_schema_extra={"propertyNames": {"minLength": 1},
                           "additionalProperties": {"type": "number", "minimum": 0, "maximum": MAX_RESOURCE}})
    accelerator_type: AcceleratorType | Annotated[list[AcceleratorType], Field(
        min_length=1, max_length=16, json_schema_extra={"uniqueItems": True})] | None = \
        Field(default=None, description='the workers\' accelerator type ("A100"), or several in order of preference'
              ' (["H100", "A100"]): the job runs on the first that fits when it starts, never mixing types in'
              " one gang (a node of type X carries Ray's resource accelerator_type:X)")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        default="PACK", description="the workers' placement group strategy, as Ray's: STRICT_PACK starts only when"
        " one node holds the whole gang, STRICT_SPREAD only on as many nodes as workers")
    priority: JsonInt = Field(default=0, ge=-1_000_000, le=1_000_000, description="higher starts first")
    max_failures: JsonInt = Field(default=0, ge=-1,
                                  description="worker-group retries (Ray Train FailureConfig); -1 = forever")
    max_retries: JsonInt = Field(default=3, ge=-1, le=1000, description="requeues after an infrastructure failure"
                             " (a node, a worker process or the runner lost); -1 = always")
    preemptible: bool = Field(default=True, description="may be paused at a checkpoint to make room for a"
                              " higher-priority job, then requeued by itself")
    min_runtime_s: float | None = Field(default=None, ge=0, le=365 * 86400, description="not preempted before its"
                                        " attempt has run this long, counted from when its workers started"
                                        " (default: the setting TRAINQ_MIN_RUNTIME_S)")
    keep_checkpoints: Annotated[int, Field(ge=1, le=1_000_000), WholeNumber] | None = Field(
        default=None, description="keep this many of the job's newest checkpoints (across its attempts) and delete"
        " older ones, except pinned ones and what the job resumes from; null keeps all (left out: the setting"
        " TRAINQ_KEEP_CHECKPOINTS, by default 3)")
    time_limit_s: float | None = Field(default=None, gt=0, le=365 * 86400, description="each attempt is stopped"
                                       " after running this long and the job fails with a time-limit error;"
                                       " lets backfill start it early around a waiting job")
    runtime_env: RuntimeEnv = Field(default_factory=lambda: RuntimeEnv(),
                                    description="Ray's runtime_env: a local working_dir or py_modules folder"
                                    " must exist on the scheduler's machine")
    storage_path: str | None = Field(default=None, description="overrides the storage root for this job:"
                                     " an absolute path or a URI such as s3://bucket/prefix",
                                     json_schema_extra={"pattern": STORAGE_PATH_PATTERN, "not": {
                                         "type": "string", "pattern": JOB_FOLDER_IN_PATH}})

    depends_on: list[Dependency] = Field(
        default_factory=list, max_length=64, description="jobs this one waits for; it stays queued (pending reason"
        " dependency) until each is met, and is cancelled when one can no longer be met")
    sweep: SweepSpec | None = Field(default=None, description="submit one job per combination of these config"
                                    " values, grouped under one sweep_id (the answer is the first member)")
    sweep_id: str | None = Field(default=None, pattern=JOB_ID_PATTERN, description="set by trainq on a sweep's"
                                 " members; a submit may not set it", json_schema_extra={"readOnly": True})

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint_form(cls, v: str | None) -> str | None:
        if v is not None and not ENTRYPOINT_RE.match(v):
            raise ValueError('must look like "package.module:function"')
        return v

    @field_validator("num_workers", mode="before")
    @classmethod
    def _workers_form(cls, v: Any) -> Any:
        # Checked here in full so a bad value gets one message, not one per member of the union.
        if isinstance(v, dict):
            try:
                return WorkerRange.model_validate(v)
            except ValidationError as e:
                problems = describe_errors(e.errors(), default_loc="")[1]
                raise ValueError("; ".join(p.removeprefix(": ") for p in problems)) from None
        n = whole_number(v)
        if isinstance(v, WorkerRange) or (type(n) is int and 1 <= n <= MAX_WORKERS):
            return n
        raise ValueError(f'must be a whole number from 1 to {MAX_WORKERS}, or {{"min": m, "max": n}} for an'
                         f" elastic job, got {v!r}")

    @field_validator("accelerator_type", mode="before")
    @classmethod
    def _types_form(cls, v: Any) -> Any:
        # Checked here so a bad value gets one message, not one per member of the union.
        names = v if isinstance(v, list) else [v]
        if v is not None and not (0 < len(names) <= 16 and all(
                isinstance(t, str) and re.fullmatch(ACCELERATOR_PATTERN, t) for t in names)):
            raise ValueError('must be an accelerator type as Ray names it ("A100", "TPU-V4": a letter or digit, then'
                             f' up to 63 letters, digits, "_", "." or "-"), or a list of 1 to 16 of them, got {v!r}')
        if len(set(names)) != len(names):
            raise ValueError("each accelerator type may appear once")
        return v

    @field_validator("depends_on", mode="before")
    @classmethod
    def _dependencies_form(cls, v: Any) -> Any:
        # A bare job id is the likely slip (a ValueError: pydantic reports it, not a TypeError).
        for i, d in enumerate(v if isinstance(v, list) else []):
            if not isinstance(d, dict):
                raise ValueError(  # noqa: TRY004
                    f'entry {i} must be {{"job_id": "job_…", "on": "completed", "failed" or "finished"}}'
                    f" (on may be left out), got {d!r}")
        return v

    @field_validator("config")
    @classmethod
    def _config_is_json(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"must be a JSON object ({e})") from None
        return v

    @field_validator("resources_per_worker")
    @classmethod
    def _resources_sane(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is None:
            return v
        for key, amount in v.items():
            if not key:
                raise ValueError("resource names must not be empty")
            if not math.isfinite(amount) or amount < 0 or amount > MAX_RESOURCE:
                raise ValueError(f"{key} must be a finite number >= 0 (at most {MAX_RESOURCE:g}), got {amount}")
        return v

    @field_validator("runtime_env", mode="before")
    @classmethod
    def _runtime_env_keys(cls, v: Any) -> Any:
        # Before the TypedDict's own check, so an unknown key gets a message listing the allowed ones.
        if isinstance(v, dict):
            unknown = sorted(set(v) - RUNTIME_ENV_KEYS)
            if unknown:
                raise ValueError(f"unsupported keys {unknown}; allowed: {sorted(RUNTIME_ENV_KEYS)}")
            env_vars = v.get("env_vars")
            reserved = (reserved_env_vars(k for k in env_vars if isinstance(k, str))
                        if isinstance(env_vars, dict) else [])
            if reserved:
                # trainq's and Ray's own switches (e.g. RAY_TRAIN_*, TRAINQ_RUNNER) belong to the admin.
                raise ValueError(f"env_vars may not set {', '.join(reserved)}: names starting with "
                                 f"{' or '.join(RESERVED_ENV_PREFIXES)} are reserved for trainq and Ray")
        return v

    @field_validator("storage_path")
    @classmethod
    def _storage_absolute(cls, v: str | None) -> str | None:
        if v is not None and not STORAGE_PATH_RE.match(v):
            raise ValueError("must be an absolute path or a URI such as s3://bucket/prefix (and no NUL byte)")
        return v

    @field_validator("sweep")
    @classmethod
    def _sweepable(cls, v: SweepSpec | None, info: ValidationInfo) -> SweepSpec | None:
        workload = info.data.get("workload")
        if v is None or workload not in workloads.names():
            return v
        keys = workloads.sweepable(workload)
        fixed = sorted(set(v.parameters) - set(keys))
        if fixed:
            raise ValueError(f"parameters: {', '.join(fixed)} cannot be varied by a sweep of {workload}"
                             f" (a sweep may vary {', '.join(keys)})")
        return v

    @model_validator(mode="after")
    def _one_program(self) -> JobSpec:
        if (self.entrypoint is None) == (self.workload is None):
            raise ValueError("give exactly one of entrypoint or workload")
        return self

    @property
    def display_name(self) -> str:
        """The name, or one derived from what the job runs."""
        if self.name:
            return self.name
        if self.entrypoint:
            return self.entrypoint.rsplit(":", 1)[1]
        return str(self.workload)

    def accelerator_types(self) -> tuple[str, ...]:
        """The accelerator types in order of preference (empty: any node)."""
        v = self.accelerator_type
        return () if v is None else (v,) if isinstance(v, str) else tuple(v)

    def worker_resources(self) -> dict[str, float]:
        """Resources of one worker, with Ray Train's defaults (1 CPU, or 1 GPU with use_gpu)."""
        if self.resources_per_worker is None:
            res = {"GPU": 1.0} if self.use_gpu else {"CPU": 1.0}
        else:
            res = {k: float(x) for k, x in self.resources_per_worker.items() if x}
        if self.use_gpu:
            res.setdefault("GPU", 1.0)
        return res

    @property
    def min_workers(self) -> int:
        """The fewest workers the job runs with (its fixed count when it is not elastic)."""
        n = self.num_workers
        return n.min if isinstance(n, WorkerRange) else n

    @property
    def max_workers(self) -> int:
        """The most workers the job runs with (its fixed count when it is not elastic)."""
        n = self.num_workers
        return n.max if isinstance(n, WorkerRange) else n

    @property
    def elastic(self) -> bool:
        """Whether trainq chooses the job's size (a range with ``max > min``)."""
        return self.max_workers > self.min_workers

    def demand(self, workers: int | None = None) -> dict[str, float]:
        """Everything the job's workers hold at once (gang admission): ``workers`` of them, by
        default its fewest (an elastic job's attempt holds what it was started with)."""
        n = self.min_workers if workers is None else workers
        return {k: x * n for k, x in self.worker_resources().items()}


def parse_spec(data: Any) -> JobSpec:
    """Validate raw input into a JobSpec, or raise InvalidSpec naming the first bad field."""
    if isinstance(data, JobSpec):
        return data
    if not isinstance(data, dict):
        raise InvalidSpec(f"a job spec must be a JSON object, got {type(data).__name__}", field=None)
    try:
        return JobSpec.model_validate(data)
    except ValidationError as e:
        raise invalid_from_pydantic(e) from None


def invalid_from_pydantic(e: ValidationError) -> InvalidSpec:
    """Turn pydantic's report into one InvalidSpec whose message names every bad field."""
    first_field, problems = describe_errors(e.errors())
    return InvalidSpec("invalid job spec: " + "; ".join(problems), field=first_field, problems=problems)
