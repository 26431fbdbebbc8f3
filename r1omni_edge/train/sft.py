"""Cold-start SFT: teach the <think>..</think><answer>..</answer> format on reasoning-annotated clips. Loss on the
assistant tokens only; projectors, gate and LLM train (each can be frozen, LoRA optional); towers and BERT frozen and
encoded once."""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..labels import label_set
from .common import (Logger, TrainConfig, build_policy, find_resume, load_state, log, make_optimizer,
                     save_checkpoint, seed_everything, setup_distributed, shard, wrap_distributed)
from .data import load_dataset
from .evaluate import evaluate
from .features import FeatureCache


@dataclass
class SFTConfig(TrainConfig):
    batch_size: int = 16  # prompts per optimizer step, over all ranks
    micro_batch: int = 4  # prompts per forward on one rank
    eval_max_tokens: int = 256

    @classmethod
    def preset(cls, name: str):
        if name == "emer-sft":  # the published cold start: 5 epochs, AdamW 2e-5 cosine, warmup 3%, batch 16
            return cls(learning_rate=2e-5, schedule="cosine", warmup_ratio=0.03, weight_decay=0.0, epochs=5,
                       batch_size=16)
        return super().preset(name)


def epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    order = list(range(count))
    random.Random(seed * 1000003 + epoch).shuffle(order)
    return order


def train_sft(config: SFTConfig) -> dict:
    dist = setup_distributed(config.device)
    seed_everything(config.seed)
    policy, _ = build_policy(config)
    labels = label_set(config.labels)
    samples = load_dataset(config.train_data, config.data_root, labels)
    eval_samples = load_dataset(config.eval_data, config.data_root, labels) if config.eval_data else []
    cache = FeatureCache(config.cache_dir or Path(config.output_dir) / "feature-cache", policy.model,
                         config.resize_mode)
    started = time.perf_counter()
    cache.warm(samples + eval_samples)
    encode_s = time.perf_counter() - started
    prompts = [policy.prompt(s, cache.get(s.video)) for s in samples]
    targets = [policy.target_ids(s) for s in samples]
    eval_prompts = [policy.prompt(s, cache.get(s.video)) for s in eval_samples]
    steps_per_epoch = math.ceil(len(samples) / config.batch_size)
    total = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
    module = wrap_distributed(policy, dist, config.device)
    optimizer, scheduler = make_optimizer(policy, config, total)
    logger = Logger(config.output_dir, dist.main, config.tensorboard)
    start_step = 0
    resume = find_resume(config)
    if resume is not None:
        start_step = load_state(policy, resume, optimizer, scheduler)["step"]
        log.info("resumed from %s at step %d", resume, start_step)
    policy.train()
    for step in range(start_step, total):
        began = time.perf_counter()
        order = epoch_order(len(samples), config.seed, step // steps_per_epoch)
        within = (step % steps_per_epoch) * config.batch_size
        batch = shard(order[within:within + config.batch_size], dist)
        micro = [batch[i:i + config.micro_batch] for i in range(0, len(batch), config.micro_batch)]
        loss_sum = 0.0
        for chunk in micro:
            loss = module("sft", prompts=[prompts[i] for i in chunk], targets=[targets[i] for i in chunk],
                          blank=config.blank_inputs)
            (loss * len(chunk) / max(len(batch), 1) / config.grad_accum).backward()
            loss_sum += float(loss.detach()) * len(chunk)
        if (step + 1) % config.grad_accum == 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_([p for p in policy.parameters() if p.requires_grad],
                                                             config.max_grad_norm))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            grad_norm = float("nan")
        scheduler.step()
        metrics = {"loss": loss_sum / max(len(batch), 1), "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                   "step_seconds": time.perf_counter() - began}
        if step % config.log_every == 0:
            logger.log(step + 1, metrics)
        if config.eval_every and eval_prompts and (step + 1) % config.eval_every == 0 and dist.main:
            logger.log(step + 1, evaluate(policy, eval_prompts, labels, config.eval_max_tokens,
                                          blank=config.blank_inputs).metrics(), "eval")
        if config.save_every and (step + 1) % config.save_every == 0 and dist.main:
            save_checkpoint(policy, Path(config.output_dir) / f"checkpoint-{step + 1}", config, optimizer, scheduler,
                            step + 1)
    result = {"steps": total, "encode_seconds": encode_s, "cache": cache.describe()}
    if dist.main:
        final = save_checkpoint(policy, Path(config.output_dir) / f"checkpoint-{total}", config, optimizer,
                                scheduler, total)
        result["checkpoint"] = str(final)
        if eval_prompts:
            evaluation = evaluate(policy, eval_prompts, labels, config.eval_max_tokens, blank=config.blank_inputs)
            logger.log(total, evaluation.metrics(), "eval")
            result["eval"] = evaluation.metrics()
            result["confusion"] = evaluation.table()
    logger.close(config.output_dir)
    result["config"] = dataclasses.asdict(config)
    return result
