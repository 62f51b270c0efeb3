"""Config of the built-in ``hf-causal-lm`` workload, validated at submit (no torch import here)."""

from __future__ import annotations

import os
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import InvalidSpec, MissingOnServer
from ..validation import JsonInt, WholeNumber, describe_errors


def _choices_schema(schema: dict[str, Any]) -> None:
    """The validator's "exactly one of" rules, in the JSON schema too (see ``spec._one_program_schema``)."""
    schema["allOf"] = [
        {"oneOf": [{"required": ["model"], "properties": {
                        "model": {"type": "string"}, "model_config": {"type": "null"}}},
                   {"required": ["model_config"], "properties": {
                       "model_config": {"type": "object", "required": ["model_type"]}, "model": {"type": "null"}}}]},
        {"oneOf": [{"required": ["max_steps"], "properties": {
                        "max_steps": {"type": "integer"}, "num_train_epochs": {"type": "null"}}},
                   {"required": ["num_train_epochs"], "properties": {
                       "num_train_epochs": {"type": "number"}, "max_steps": {"type": "null"}}}]},
        # with global_batch_size the accumulation follows the worker count: none may be given
        {"anyOf": [{"not": {"required": ["global_batch_size"]}},
                   {"properties": {"global_batch_size": {"type": "null"}}},
                   {"properties": {"gradient_accumulation_steps": {"const": 1}}}]},
    ]


#: config keys a sweep may vary: those no rule ties to another key (model or model_config, max_steps
#: or num_train_epochs, global_batch_size or gradient_accumulation_steps are chosen once per job)
SWEEPABLE = ("cache_dir", "train_files", "text_field", "block_size", "per_device_train_batch_size",
             "learning_rate", "weight_decay", "warmup_steps", "save_steps", "logging_steps", "seed")


class CausalLMConfig(BaseModel):
    """Fine-tune (or train from scratch) a causal language model with transformers' Trainer."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), strict=True, json_schema_extra=_choices_schema)

    model: str | None = Field(default=None, description="a local folder, or a model id in trainq's model cache")
    model_config_: dict[str, Any] | None = Field(
        default=None, alias="model_config",
        description='build a fresh model from a config, e.g. {"model_type": "gpt2", "n_layer": 2, "n_embd": 64}')
    cache_dir: str | None = Field(default=None, description="the model cache (default <storage root>/models)")
    train_files: list[str] = Field(min_length=1, description="text (.txt) or JSONL (.jsonl, a 'text' field) files")
    text_field: str = "text"
    block_size: JsonInt = Field(default=64, ge=8, le=8192)
    max_steps: Annotated[int, Field(ge=1), WholeNumber] | None = None
    num_train_epochs: float | None = Field(default=None, gt=0)
    per_device_train_batch_size: JsonInt = Field(default=8, ge=1)
    gradient_accumulation_steps: JsonInt = Field(default=1, ge=1)
    global_batch_size: Annotated[int, Field(ge=1), WholeNumber] | None = Field(
        default=None,
        description="samples per optimizer step at any worker count (for elastic jobs): each attempt takes "
                    "per_device_train_batch_size (or the largest divisor of its share below it) and the "
                    "gradient accumulation steps that make global = per device × workers × accumulation")
    learning_rate: float = Field(default=5e-4, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_steps: JsonInt = Field(default=0, ge=0)
    save_steps: JsonInt = Field(default=50, ge=1, description="checkpoint every this many steps")
    logging_steps: JsonInt = Field(default=1, ge=1, description="report metrics every this many steps")
    seed: JsonInt = 42

    @model_validator(mode="after")
    def _choices(self) -> CausalLMConfig:
        if (self.model is None) == (self.model_config_ is None):
            raise ValueError("give exactly one of model (a folder or cached model id) or model_config")
        if (self.max_steps is None) == (self.num_train_epochs is None):
            raise ValueError("give exactly one of max_steps or num_train_epochs")
        if self.global_batch_size is not None and self.gradient_accumulation_steps != 1:
            raise ValueError("give global_batch_size or gradient_accumulation_steps, not both "
                             "(with global_batch_size the accumulation follows the worker count)")
        if self.model_config_ is not None and "model_type" not in self.model_config_:
            raise ValueError('model_config needs a "model_type", e.g. "gpt2"')
        return self


def validate(config: dict[str, Any], storage_root: str | None = None) -> dict[str, Any]:
    """Check the config at submit, including that its files exist where the scheduler runs.

    A ``model`` that is not a folder must be ready in the model cache (``<storage root>/models``
    unless ``cache_dir`` says otherwise); the cache folder is written into the config so the
    workers find it.
    """
    try:
        parsed = CausalLMConfig.model_validate(config)
    except ValidationError as e:
        loc, problems = describe_errors(e.errors()[:1], default_loc="config")
        raise InvalidSpec(f"invalid hf-causal-lm config: {problems[0]}", field=f"config.{loc}".rstrip(".")) from None
    for i, path in enumerate(parsed.train_files):
        if "://" not in path and not os.path.isfile(path):
            raise MissingOnServer(f"config.train_files[{i}] {path!r} is not a file on the scheduler's machine"
                              " (on a cluster, put data on shared storage)", field=f"config.train_files.{i}")
    if parsed.model is not None and not os.path.isdir(parsed.model):
        if parsed.model.startswith(("/", ".")):
            raise MissingOnServer(f"config.model {parsed.model!r} is not a folder", field="config.model")
        from ..model_cache import ModelCache

        cache_dir = parsed.cache_dir or (
            os.path.join(storage_root, "models") if storage_root else ModelCache.default_root())
        ModelCache(cache_dir).path_of(parsed.model)  # raises with a clear message unless ready
        parsed = parsed.model_copy(update={"cache_dir": cache_dir})
    return parsed.model_dump(by_alias=True, exclude_none=True)


def batch_plan(global_batch_size: int, per_device: int, world_size: int) -> tuple[int, int]:
    """``(per-device batch, accumulation steps)`` that keep ``global_batch_size`` samples per optimizer
    step on ``world_size`` workers: the per-device batch is the largest divisor of each worker's share
    not above ``per_device`` (so no sample is dropped or repeated), the rest is accumulation."""
    if global_batch_size % world_size:
        raise ValueError(f"global_batch_size {global_batch_size} does not divide among {world_size} workers;"
                         " choose one that every worker count of the job divides")
    share = global_batch_size // world_size
    device = max(d for d in range(1, min(per_device, share) + 1) if share % d == 0)
    return device, share // device
