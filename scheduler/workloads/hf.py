"""The built-in ``hf-causal-lm`` workload: transformers' Trainer under Ray Train, paused exactly.

Data-parallel over the job's workers (NCCL on GPUs, gloo on CPUs, set up by Ray Train). Every
step it asks ``should_checkpoint()``: on a checkpoint-now it saves at once and goes on; on a
pause it saves at once and stops, so nothing is trained twice. A resume hands the HF ``checkpoint-N`` folder to
``trainer.train(resume_from_checkpoint=...)``, which restores model, optimizer, scheduler,
RNG and data position, so ``global_step`` continues where it stopped. On completion the final
model and tokenizer are reported as the last checkpoint, loadable with ``from_pretrained``.

Elastic (issue 31): an attempt may run on another worker count than the one before. The world size
comes from Ray Train's context; transformers' Trainer (through accelerate) shards each global batch
by rank; with ``global_batch_size`` each attempt derives its per-device batch and gradient
accumulation from the world size (``hf_config.batch_plan``), so an optimizer step sees the same
samples at any size, the learning-rate schedule keeps its meaning, and the data position restored on
resume (steps × global batch) is the same. Every report says the ``world_size`` and ``global_batch_size``.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from .hf_config import CausalLMConfig, batch_plan

CHECKPOINT_DIR = "checkpoint"  # what RayTrainReportCallback names the HF folder


def byte_tokenizer() -> Any:
    """A byte-level tokenizer (256 byte tokens + end-of-text) that needs no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def load_model_and_tokenizer(cfg: CausalLMConfig) -> tuple[Any, Any]:
    """The model and tokenizer the config names (a folder, a cached model, or a fresh config)."""
    import transformers

    if cfg.model_config_ is not None:
        tokenizer = byte_tokenizer()
        arch = dict(cfg.model_config_)
        model_type = arch.pop("model_type")
        config = transformers.AutoConfig.for_model(model_type, vocab_size=len(tokenizer),
                                                   bos_token_id=tokenizer.eos_token_id,
                                                   eos_token_id=tokenizer.eos_token_id, **arch)
        transformers.set_seed(cfg.seed)
        return transformers.AutoModelForCausalLM.from_config(config), tokenizer
    path = resolve_model(cfg.model or "", cfg.cache_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return transformers.AutoModelForCausalLM.from_pretrained(path), tokenizer


def resolve_model(model: str, cache_dir: str | None) -> str:
    """A local folder as is; otherwise the model's folder in trainq's model cache."""
    if os.path.isdir(model):
        return model
    from ..model_cache import ModelCache

    return ModelCache(cache_dir or ModelCache.default_root()).path_of(model)


def read_texts(files: list[str], text_field: str) -> list[str]:
    """The documents of plain-text and JSONL files."""
    texts = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            if path.endswith((".jsonl", ".json")):
                texts += [json.loads(line)[text_field] for line in f if line.strip()]
            else:
                texts.append(f.read())
    return texts


def block_dataset(texts: list[str], tokenizer: Any, block_size: int) -> Any:
    """Concatenate, tokenize and cut into equal blocks (labels = inputs; the model shifts)."""
    import torch

    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
    n = len(ids) // block_size
    if n == 0:
        raise ValueError(f"the training data has {len(ids)} tokens, fewer than one block of {block_size}")
    blocks = torch.tensor(ids[: n * block_size]).view(n, block_size)

    class Blocks(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int) -> dict[str, Any]:
            mask = torch.ones(block_size, dtype=torch.long)
            return {"input_ids": blocks[i], "labels": blocks[i], "attention_mask": mask}

    return Blocks()


def train_causal_lm(config: dict[str, Any]) -> None:
    """The train-loop function (runs on every worker)."""
    import ray.train
    import transformers
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer

    from .. import train as trainq

    cfg = CausalLMConfig.model_validate(config)
    model, tokenizer = load_model_and_tokenizer(cfg)
    dataset = block_dataset(read_texts(cfg.train_files, cfg.text_field), tokenizer, cfg.block_size)
    context = ray.train.get_context()
    output_dir = tempfile.mkdtemp(prefix=f"trainq-hf-rank{context.get_world_rank()}-")
    world = context.get_world_size()
    per_device, accumulation = (cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps) \
        if cfg.global_batch_size is None else batch_plan(cfg.global_batch_size, cfg.per_device_train_batch_size, world)
    sizes = {"world_size": world, "global_batch_size": per_device * world * accumulation}

    class ReportAndPause(RayTrainReportCallback):
        """Reports each log and checkpoint with ``global_step``; saves and stops on a pause."""

        paused = False

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            metrics = {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))}
            ray.train.report({**metrics, "global_step": state.global_step, **sizes})

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            state.log_history.append({"global_step": state.global_step})  # the step of this checkpoint
            super().on_save(args, state, control, **kwargs)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if trainq.should_checkpoint():  # collective: every rank asks once per step
                control.should_save = True
                if trainq.pause_requested():  # only on the steps that save
                    ReportAndPause.paused = True
                    control.should_training_stop = True

    args = transformers.TrainingArguments(
        output_dir=output_dir,
        max_steps=cfg.max_steps or -1,
        num_train_epochs=cfg.num_train_epochs or 1.0,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        logging_steps=cfg.logging_steps,
        seed=cfg.seed,
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=not _has_cuda(),
        save_only_model=False,
        # output_dir is only each worker's staging folder: RayTrainReportCallback copies the newest
        # checkpoint-N into the reported Ray checkpoint, so older local copies only fill the disk.
        # What stays on shared storage is trainq's retention (keep_checkpoints), across attempts.
        save_total_limit=1,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.add_callback(ReportAndPause())
    trainer = prepare_trainer(trainer)

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        trainer.train()
    else:
        with checkpoint.as_directory() as d:
            trainer.train(resume_from_checkpoint=os.path.join(d, CHECKPOINT_DIR))
    if ReportAndPause.paused:
        return  # paused: the pause checkpoint is the one to resume from

    final = tempfile.mkdtemp(prefix="trainq-hf-final-")
    if context.get_world_rank() == 0:
        trainer.save_model(final)
        tokenizer.save_pretrained(final)
    ray.train.report({"global_step": trainer.state.global_step, "final": 1},
                     checkpoint=ray.train.Checkpoint.from_directory(final) if context.get_world_rank() == 0 else None)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
