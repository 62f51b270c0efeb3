"""Built-in workloads, selected by a job spec's ``workload`` field instead of an ``entrypoint``.

Each workload names its train-loop function and a light config validator; validation runs at
submit in the scheduler, so it must not import torch or transformers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..errors import InvalidSpec

#: workload name -> (train-loop entrypoint, validator "module:function", config model "module:class")
WORKLOADS: dict[str, tuple[str, str, str]] = {
    "hf-causal-lm": ("scheduler.workloads.hf:train_causal_lm", "scheduler.workloads.hf_config:validate",
                     "scheduler.workloads.hf_config:CausalLMConfig"),
}


def sweepable(workload: str) -> dict[str, dict[str, Any]]:
    """The config keys of a workload a sweep may vary, each with its JSON schema (the module's
    ``SWEEPABLE``: keys no rule ties to another one, so any schema-valid value makes a valid config)."""
    module = WORKLOADS[workload][2].split(":")[0]
    keys = getattr(importlib.import_module(module), "SWEEPABLE", ())
    properties = config_schema(workload)["properties"]
    return {key: properties[key] for key in keys}


def names() -> list[str]:
    """The built-in workload names."""
    return sorted(WORKLOADS)


def entrypoint_of(workload: str) -> str:
    """The ``module:function`` train loop of a built-in workload."""
    try:
        return WORKLOADS[workload][0]
    except KeyError:
        raise InvalidSpec(
            f"unknown workload {workload!r}; built-in workloads: {names() or 'none'}", field="workload"
        ) from None


def config_schema(workload: str) -> dict[str, Any]:
    """The JSON schema of a workload's ``config`` (inlined: the OpenAPI document shows it in the spec)."""
    module, cls = WORKLOADS[workload][2].split(":")
    schema: dict[str, Any] = getattr(importlib.import_module(module), cls).model_json_schema()
    schema.pop("title", None)
    return schema


def validate(workload: str, config: dict[str, Any], storage_root: str | None = None) -> dict[str, Any]:
    """Check a workload's config at submit; returns it normalised, or raises InvalidSpec."""
    entrypoint_of(workload)
    module, func = WORKLOADS[workload][1].split(":")
    validator: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), func)
    return validator(config, storage_root)
