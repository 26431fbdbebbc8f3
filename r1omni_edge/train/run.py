"""One training run's set-up and finish, shared by SFT and GRPO: seeds, the policy with its frozen parts (and the
frozen reference), the validated datasets and their features (encoded once), distributed wrapping, the optimizer
and schedule, resume, periodic evaluation and checkpoints, and logs to the console and TensorBoard."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .checkpoints import find_resume, load_state, save_checkpoint
from .config import TRAINABLE_PARTS, TrainConfig
from .distributed import Dist, clip_gradients, setup_distributed, wrap_distributed

log = logging.getLogger("r1omni_edge.train")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)



def build_policy(config: TrainConfig):
    from ..model.checkpoint import load_model
    from ..model.towers import load_bert_tokenizer
    from ..prompt import PromptTokenizer
    from .policy import Policy

    device = config.device
    model, report = load_model(config.model, config.siglip, config.whisper, config.bert, config.models_dir,
                               dtype=config.dtype, device=device)
    for part in ("vision_tower", "audio_tower", "bert_model"):  # frozen: their outputs are cached
        getattr(model, part).requires_grad_(False)
    for part in TRAINABLE_PARTS:
        getattr(model, part).requires_grad_(part in config.train_parts)
    if config.lora:
        model.llm = apply_lora(model.llm, config.lora)
    if config.gradient_checkpointing:  # non-reentrant: works with frozen inputs and under FSDP
        model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    policy = Policy(model, PromptTokenizer(config.model), load_bert_tokenizer(Path(report.towers["bert"])))
    return policy, report


def apply_lora(llm, options: dict[str, Any]):
    """LoRA adapters on the LLM through peft; the frozen reference is then the base with adapters disabled."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise InputError("lora needs peft: pip install peft") from None
    lora = LoraConfig(r=options.get("r", 16), lora_alpha=options.get("alpha", 32),
                      lora_dropout=options.get("dropout", 0.0),
                      target_modules=options.get("targets", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                             "up_proj", "down_proj"]))
    return get_peft_model(llm, lora)


def make_optimizer(module: torch.nn.Module, config: TrainConfig, total_steps: int):
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise InputError("nothing to train: every part is frozen (check train_parts)")
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = int(round(config.warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        progress = (step - warmup) / max(total_steps - warmup, 1)
        if config.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if config.schedule == "linear":
            return max(0.0, 1 - progress)
        return 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Logger:
    """Console lines and, where installed, TensorBoard scalars under OUTPUT/tensorboard."""

    def __init__(self, output_dir: str | Path, enabled: bool, tensorboard: bool = True):
        self.enabled = enabled
        self.writer = None
        self.history: list[dict[str, Any]] = []
        self.started = time.perf_counter()
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(output_dir) / "tensorboard"))
            except ImportError:
                log.warning("tensorboard is not installed: logging to the console only (pip install tensorboard)")

    def log(self, step: int, metrics: dict[str, float], prefix: str = "train") -> None:
        if not self.enabled:
            return
        self.history.append({"step": step, **{f"{prefix}/{k}": v for k, v in metrics.items()}})
        shown = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        log.info("[%s %d] %s", prefix, step, shown)
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self, output_dir: str | Path) -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            self.writer.close()
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in self.history))


@dataclass
class Run:
    config: TrainConfig
    dist: Dist
    policy: Any
    module: torch.nn.Module  # the policy, wrapped for DDP when distributed (FSDP shards the policy itself)
    labels: tuple[str, ...]
    samples: list
    prompts: list
    eval_prompts: list
    cache: Any
    encode_seconds: float
    logger: Logger
    reference: Any = None  # the frozen reference policy for the KL term (GRPO with beta > 0, without LoRA)
    optimizer: Any = None
    scheduler: Any = None
    start_step: int = 0
    resume: Path | None = None  # the checkpoint to resume from, found before anything loaded

    def start(self, total_steps: int) -> None:
        """Optimizer and schedule for ``total_steps`` optimizer steps, then resume if asked."""
        self.optimizer, self.scheduler = make_optimizer(self.policy, self.config, total_steps)
        if self.resume is not None:
            self.start_step = load_state(self.policy, self.resume, self.optimizer, self.scheduler)["step"]
            log.info("resumed from %s at step %d", self.resume, self.start_step)

    def optimizer_step(self, step: int) -> float:
        """After the backward passes of ``step``: every ``grad_accum`` steps the gradients are clipped and applied
        (-> their norm before clipping), otherwise kept (-> nan); the schedule moves on either way."""
        grad_norm = float("nan")
        if (step + 1) % self.config.grad_accum == 0:
            grad_norm = clip_gradients(self.policy, self.config.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return grad_norm

    def steps(self, total: int, unit: str = "step"):
        """The step range with a progress bar on the main rank (quiet when not on a terminal)."""
        import sys

        from tqdm.auto import tqdm

        return tqdm(range(self.start_step, total), initial=self.start_step, total=total, unit=unit,
                    disable=not (self.dist.main and sys.stderr.isatty()), dynamic_ncols=True)

    @property
    def evaluates(self) -> bool:
        """Rank 0 evaluates; under FSDP every rank must run the (gathering) forwards with it."""
        return bool(self.eval_prompts) and (self.dist.main or self.config.fsdp)

    def periodic(self, step: int, eval_max_tokens: int) -> None:
        """Evaluation and checkpoints every eval_every / save_every steps (written by rank 0)."""
        config = self.config
        if config.eval_every and step % config.eval_every == 0 and self.evaluates:
            self.logger.log(step, self.evaluate(eval_max_tokens).metrics(), "eval")
        if config.save_every and step % config.save_every == 0:
            self.save(step)

    def evaluate(self, max_tokens: int):
        from .evaluate import evaluate

        return evaluate(self.policy, self.eval_prompts, self.labels, max_tokens)

    def sampled_accuracy(self, max_tokens: int) -> float:
        from .evaluate import sampled_accuracy

        return round(sampled_accuracy(self.policy, self.eval_prompts, self.labels, max_tokens=max_tokens,
                                      seed=self.config.seed), 4)

    def save(self, step: int) -> Path:
        """Called on every rank (FSDP gathers collectively); rank 0 writes."""
        return save_checkpoint(self.policy, Path(self.config.output_dir) / f"checkpoint-{step}", self.config,
                               self.optimizer, self.scheduler, step, main=self.dist.main)

    def finish(self, total: int, eval_max_tokens: int, result: dict[str, Any]) -> dict[str, Any]:
        result.update({"steps": total, "encode_seconds": self.encode_seconds, "cache": self.cache.describe()})
        checkpoint = self.save(total)
        if self.dist.main:
            result["checkpoint"] = str(checkpoint)
        if self.evaluates:
            evaluation = self.evaluate(eval_max_tokens)
            self.logger.log(total, evaluation.metrics(), "eval")
            result["eval"] = evaluation.metrics()
            result["eval"]["sampled_war"] = self.sampled_accuracy(eval_max_tokens)
            result["confusion"] = evaluation.table()
        self.logger.close(self.config.output_dir)
        result["config"] = dataclasses.asdict(self.config)
        return result


def check_output_dir_is_writable(config: TrainConfig) -> None:
    """output_dir gets checkpoints and logs: it must be writable and not inside the model or a tower directory."""
    from ..files import refuse_inputs, writable_directory

    inputs = {"the model": config.model, "models_dir": config.models_dir, "siglip": config.siglip,
              "whisper": config.whisper, "bert": config.bert}
    refuse_inputs(config.output_dir, inputs, "output_dir")
    writable_directory(config.output_dir, "output_dir")


def prepare_run(config: TrainConfig, with_reference: bool = False, unlabelled: bool = False) -> Run:
    """Distributed set-up, seeds, the policy (and a frozen copy as the reference), the validated datasets and their
    features (encoded once), then the DDP / FSDP wrapping. ``unlabelled``: the training clips need no answers (a
    folder, a clip list or a dataset: ``datasets.unlabelled_clips``)."""
    from ..labels import label_set
    from ..datasets import load_dataset, unlabelled_clips
    from .features import FeatureCache
    from .policy import Policy

    config.check()
    resume = find_resume(config)  # a wrong --resume fails before the model loads
    check_output_dir_is_writable(config)
    dist_info = setup_distributed(config.device, config.fsdp)
    seed_everything(config.seed)
    policy, _ = build_policy(config)
    labels = label_set(config.labels)
    samples = (unlabelled_clips(config.train_data, config.data_root) if unlabelled
               else load_dataset(config.train_data, config.data_root, labels))
    eval_samples = load_dataset(config.eval_data, config.data_root, labels) if config.eval_data else []
    cache = FeatureCache(config.cache_dir or Path(config.output_dir) / "feature-cache", policy.model,
                         config.resize_mode)
    started = time.perf_counter()
    cache.warm(samples + eval_samples)
    encode_seconds = time.perf_counter() - started
    prompts = [policy.prompt(s, cache.get(s.video)) for s in samples]
    eval_prompts = [policy.prompt(s, cache.get(s.video)) for s in eval_samples]
    if config.blank_inputs:  # the control: every clip shows one clip's features (see TrainConfig.blank_inputs)
        same = prompts[0].features
        prompts = [dataclasses.replace(p, features=same) for p in prompts]
        eval_prompts = [dataclasses.replace(p, features=same) for p in eval_prompts]
    reference = None
    if with_reference:  # copied before any sharding; frozen, so each rank keeps a whole bf16 copy (no collectives)
        reference = Policy(copy.deepcopy(policy.model).eval().requires_grad_(False), policy.tokenizer,
                           policy.bert_tokenizer)
    module = wrap_distributed(policy, dist_info, config)
    return Run(config, dist_info, policy, module, labels, samples, prompts, eval_prompts, cache, encode_seconds,
               Logger(config.output_dir, dist_info.main, config.tensorboard), reference, resume=resume)
