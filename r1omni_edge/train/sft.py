"""Cold-start SFT: teach the <think>..</think><answer>..</answer> format on reasoning-annotated clips. Loss on the
assistant tokens only; projectors, gate and LLM train (each can be frozen, LoRA optional); towers and BERT frozen and
encoded once."""

from __future__ import annotations

import math
import random
import time

from .config import SFTConfig
from .distributed import shard
from .run import prepare_run

__all__ = ["SFTConfig", "train_sft"]


def epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    order = list(range(count))
    random.Random(seed * 1000003 + epoch).shuffle(order)
    return order


def step_micro_batches(count: int, step: int, config, dist) -> tuple[list[list[int]], list[float], int]:
    """One optimizer step's sample indices on this rank: its micro-batches, each one's weight, and the rank's batch
    size. Every rank runs as many backward passes as the busiest (DDP / FSDP reduce in each): the others are padded
    with weight 0."""
    steps_per_epoch = math.ceil(count / config.batch_size)
    order = epoch_order(count, config.seed, step // steps_per_epoch)
    within = (step % steps_per_epoch) * config.batch_size
    whole = order[within:within + config.batch_size]
    batch = shard(whole, dist)
    micro = [batch[i:i + config.micro_batch] for i in range(0, len(batch), config.micro_batch)]
    busiest = math.ceil(math.ceil(len(whole) / dist.world) / config.micro_batch)
    weights = [1.0] * len(micro) + [0.0] * (busiest - len(micro))
    micro += [[whole[0]]] * (busiest - len(micro))
    return micro, weights, len(batch)


def train_sft(config: SFTConfig) -> dict:
    run = prepare_run(config)
    policy, samples, prompts = run.policy, run.samples, run.prompts
    targets = [policy.target_ids(s) for s in samples]
    steps_per_epoch = math.ceil(len(samples) / config.batch_size)
    total = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
    run.start(total)
    policy.train()
    for step in run.steps(total):
        began = time.perf_counter()
        micro, weights, size = step_micro_batches(len(samples), step, config, run.dist)
        loss_sum = 0.0
        for chunk, weight in zip(micro, weights):
            loss = run.module("sft", prompts=[prompts[i] for i in chunk], targets=[targets[i] for i in chunk])
            (weight * loss * len(chunk) / max(size, 1) / config.grad_accum).backward()
            loss_sum += weight * float(loss.detach()) * len(chunk)
        grad_norm = run.optimizer_step(step)
        metrics = {"loss": loss_sum / max(size, 1), "lr": run.scheduler.get_last_lr()[0],
                   "grad_norm": grad_norm, "step_seconds": time.perf_counter() - began}
        if step % config.log_every == 0:
            run.logger.log(step + 1, metrics)
        run.periodic(step + 1, config.eval_max_tokens)
    return run.finish(total, config.eval_max_tokens, {})
