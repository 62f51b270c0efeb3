"""The job spec: one validated model shared by HTTP, Python and the CLI (DESIGN.md, "Job spec")."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InvalidSpec
from .security import RESERVED_ENV_PREFIXES, reserved_env_vars

ENTRYPOINT_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
RUNTIME_ENV_KEYS = frozenset(
    {"working_dir", "py_modules", "env_vars", "pip", "uv", "conda", "excludes", "config"}
)


class JobSpec(BaseModel):
    """What a user asks trainq to run. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    entrypoint: str | None = Field(
        default=None, description='"package.module:function", a Ray Train train-loop function'
    )
    workload: str | None = Field(default=None, description="a built-in workload instead of an entrypoint")
    config: dict[str, Any] = Field(default_factory=dict, description="passed as train_loop_config")
    num_workers: int = Field(default=1, ge=1, le=4096)
    use_gpu: bool = False
    resources_per_worker: dict[str, float] | None = None
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000, description="higher starts first")
    max_failures: int = Field(default=0, ge=-1, description="worker-group retries (Ray Train FailureConfig); -1 = forever")
    max_retries: int = Field(default=3, ge=-1, le=1000, description="requeues after an infrastructure failure"
                             " (a node, a worker process or the runner lost); -1 = always")
    preemptible: bool = Field(default=True, description="may be paused at a checkpoint to make room for a"
                              " higher-priority job, then requeued by itself")
    min_runtime_s: float | None = Field(default=None, ge=0, le=365 * 86400, description="not preempted before its"
                                        " attempt has run this long (default: the setting TRAINQ_MIN_RUNTIME_S)")
    keep_checkpoints: int | None = Field(default=None, ge=1, le=1_000_000, description="keep this many of the"
                                         " job's newest checkpoints (across its attempts) and delete older ones,"
                                         " except pinned ones and what the job resumes from; null keeps all"
                                         " (left out: the setting TRAINQ_KEEP_CHECKPOINTS, by default 3)")
    time_limit_s: float | None = Field(default=None, gt=0, le=365 * 86400, description="each attempt is stopped"
                                       " after running this long and the job fails with a time-limit error;"
                                       " lets backfill start it early around a waiting job")
    runtime_env: dict[str, Any] = Field(default_factory=dict)
    storage_path: str | None = Field(default=None, description="overrides the storage root for this job")

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint_form(cls, v: str | None) -> str | None:
        if v is not None and not ENTRYPOINT_RE.match(v):
            raise ValueError('must look like "package.module:function"')
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
            if not math.isfinite(amount) or amount < 0:
                raise ValueError(f"{key} must be a finite number >= 0, got {amount}")
        return v

    @field_validator("runtime_env")
    @classmethod
    def _runtime_env_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - RUNTIME_ENV_KEYS)
        if unknown:
            raise ValueError(f"unsupported keys {unknown}; allowed: {sorted(RUNTIME_ENV_KEYS)}")
        env_vars = v.get("env_vars", {})
        if not isinstance(env_vars, dict) or not all(
            isinstance(k, str) and isinstance(x, str) for k, x in env_vars.items()
        ):
            raise ValueError("env_vars must map strings to strings")
        reserved = reserved_env_vars(env_vars)
        if reserved:
            # trainq's and Ray's own switches (e.g. RAY_TRAIN_*, TRAINQ_RUNNER) belong to the admin.
            raise ValueError(f"env_vars may not set {', '.join(reserved)}: names starting with "
                             f"{' or '.join(RESERVED_ENV_PREFIXES)} are reserved for trainq and Ray")
        return v

    @field_validator("storage_path")
    @classmethod
    def _storage_absolute(cls, v: str | None) -> str | None:
        if v is not None and not (v.startswith("/") or "://" in v):
            raise ValueError("must be an absolute path or a URI such as s3://bucket/prefix")
        return v

    @model_validator(mode="after")
    def _one_program(self) -> "JobSpec":
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

    def worker_resources(self) -> dict[str, float]:
        """Resources of one worker, with Ray Train's defaults (1 CPU, or 1 GPU with use_gpu)."""
        if self.resources_per_worker is None:
            res = {"GPU": 1.0} if self.use_gpu else {"CPU": 1.0}
        else:
            res = {k: float(x) for k, x in self.resources_per_worker.items() if x}
        if self.use_gpu:
            res.setdefault("GPU", 1.0)
        return res

    def demand(self) -> dict[str, float]:
        """Everything the job's workers hold at once (gang admission)."""
        return {k: x * self.num_workers for k, x in self.worker_resources().items()}


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


def describe_errors(errors: list[Any], default_loc: str = "spec") -> tuple[str | None, list[str]]:
    """Pydantic's errors as ``(first field, ["field: problem", ...])`` in words people read."""
    problems = []
    first_field = None
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"]) or default_loc
        first_field = first_field or loc
        msg = "unknown field" if err["type"] == "extra_forbidden" else str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{loc}: {msg}")
    return first_field, problems


def invalid_from_pydantic(e: ValidationError) -> InvalidSpec:
    """Turn pydantic's report into one InvalidSpec whose message names every bad field."""
    first_field, problems = describe_errors(e.errors())
    return InvalidSpec("invalid job spec: " + "; ".join(problems), field=first_field, problems=problems)
