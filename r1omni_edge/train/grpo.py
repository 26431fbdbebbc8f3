"""GRPO with verifiable rewards (accuracy + format), ahead of the anchors where it matters for this model:
the towers run once per clip (feature cache), each prompt's multimodal prefix is prefilled once for its G samples
and once for their log-probabilities (KV cache repeated G times), groups never span ranks, and every rollout's
sampling seed derives from (seed, step, prompt), so runs repeat exactly and resume exactly."""

from __future__ import annotations

import math
import random
import time

import torch

from ..errors import InputError
from .config import GRPOConfig
from .distributed import clip_gradients, max_over_ranks, shard, sum_over_ranks
from .grpo_math import (advantages, aggregate, batch_reward_std, completion_mask, k3_kl, reward_moments, token_loss,
                        truncated)
from .rewards import compute_rewards
from .run import prepare_run

__all__ = ["GRPOConfig", "train_grpo"]


def rollout_generator(seed: int, step: int, prompt_index: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_000_003 + prompt_index)


def step_prompts(count: int, per_step: int, seed: int, step: int) -> list[int]:
    """The prompt indices of a step: epochs of seeded shuffles laid end to end."""
    steps_per_epoch = max(count // per_step, 1)
    epoch = step // steps_per_epoch
    order = list(range(count))
    random.Random(seed * 1000003 + epoch).shuffle(order)
    start = (step % steps_per_epoch) * per_step
    return [order[(start + i) % count] for i in range(per_step)]


def train_grpo(config: GRPOConfig, progress=None) -> dict:
    run = prepare_run(config, with_reference=bool(config.beta and not config.lora))
    policy, prompts, reference = run.policy, run.prompts, run.reference
    if config.prompts_per_step < run.dist.world:
        raise InputError(f"prompts_per_step {config.prompts_per_step} is less than the {run.dist.world} ranks: each "
                         "rank needs at least one prompt (a whole group) per step")
    total = config.max_steps or math.ceil(config.epochs * len(prompts) / config.prompts_per_step)
    run.start(total * config.updates_per_batch)
    curve: list[dict] = []
    for step in run.steps(total):
        metrics = grpo_step(policy, run.module, reference, prompts, config, step, run.optimizer, run.scheduler,
                            run.dist, run.labels)
        curve.append(metrics)
        if step % config.log_every == 0:
            run.logger.log(step + 1, metrics)
        if progress is not None:
            progress(step + 1, total, metrics)
        run.periodic(step + 1, config.eval_max_tokens)
    return run.finish(total, config.eval_max_tokens, {"curve": curve})


def micro_batches(keep: list[int], group_size: int, micro_batch: int | None) -> list[list[tuple[int, int, int]]]:
    """The update's forwards as lists of (group, first, end) completion ranges: every kept group in one forward
    (``micro_batch`` None), or ranges of at most ``micro_batch`` completions of one group each."""
    if micro_batch is None:
        return [[(g, 0, group_size) for g in keep]] if keep else []
    return [[(g, start, min(start + micro_batch, group_size))] for g in keep
            for start in range(0, group_size, micro_batch)]


def _reward_labels(config: GRPOConfig, truths: list[str], labels: tuple[str, ...], step: int) -> list[str]:
    if config.reward_labels == "truth":
        return truths
    rng = random.Random(config.seed * 7919 + step)
    return [rng.choice(labels) for _ in truths]


def grpo_step(policy, module, reference, prompts, config: GRPOConfig, step: int, optimizer, scheduler, dist,
              labels: tuple[str, ...]) -> dict:
    times: dict[str, float] = {}
    clock = time.perf_counter()
    chosen = shard(step_prompts(len(prompts), config.prompts_per_step, config.seed, step), dist)
    groups, texts, truths, metadata = [], [], [], []
    policy.eval()  # no dropout while sampling
    for index in chosen:
        completions = policy("rollout", prompt=prompts[index], groups=config.group_size,
                             max_tokens=config.max_completion, temperature=config.temperature, top_k=config.top_k,
                             generator=rollout_generator(config.seed, step, index))
        groups.append((prompts[index], completions))
        texts += policy.decode(completions)
        truths += [prompts[index].sample.label] * config.group_size
        sample = prompts[index].sample
        metadata += [{"video": str(sample.video), "label": sample.label, "prompt": sample.prompt,
                      "dataset_index": sample.index, "sample": member} for member in range(config.group_size)]
    times["rollout"] = time.perf_counter() - clock
    rewards, per_function = compute_rewards(config.rewards, texts, _reward_labels(config, truths, labels, step),
                                            metadata)
    reward_tensor = torch.tensor(rewards, dtype=torch.float32)
    batch_std = None
    if config.advantage_scale == "batch":  # the std of the global batch: every rank's rewards (a collective)
        batch_std = batch_reward_std(*sum_over_ranks(list(reward_moments(reward_tensor)), dist))
    advantage, zero_share = advantages(reward_tensor, config.group_size, config.advantage_scale, batch_std=batch_std)
    masks = [completion_mask(c, policy.stop_ids) for _, c in groups]
    lengths = torch.cat([m.sum(1) for m in masks])  # what was generated, truncated completions included
    if config.mask_truncated:
        masks = [m * (~truncated(c, policy.stop_ids)).float()[:, None] for m, (_, c) in zip(masks, groups)]
    keep = list(range(len(groups)))
    if config.dynamic_sampling:
        grouped = reward_tensor.view(-1, config.group_size)
        keep = [g for g in keep if float(grouped[g][~torch.isnan(grouped[g])].std()) > 0]
    weight = 1.0
    if config.dynamic_sampling and dist.world > 1:  # a collective: every rank asks, every step
        if max_over_ranks(len(keep), dist) and not keep:
            keep, weight = [0], 0.0  # other ranks update: join their backward passes with a zero-weighted group
    # the update's forwards: every kept group at once, or micro-batches of `micro_batch` completions (gradients
    # accumulated), so that peak memory follows the micro-batch, not G. Every rank runs as many as the busiest one
    # (collectives must match under DDP and FSDP); the extra ones are zero-weighted.
    chunks = micro_batches(keep, config.group_size, config.micro_batch)
    weights = [weight] * len(chunks)
    if dist.world > 1:
        busiest = max_over_ranks(len(chunks), dist)
        filler = chunks[0] if chunks else [(0, 0, min(config.micro_batch or config.group_size, config.group_size))]
        weights += [0.0] * (busiest - len(chunks))
        chunks += [filler] * (busiest - len(chunks))
    pick = lambda chunk: [(groups[g][0], groups[g][1][a:b]) for g, a, b in chunk]  # noqa: E731
    clock = time.perf_counter()
    with torch.no_grad():
        old = [policy("logprobs", groups=pick(chunk), temperature=config.temperature,
                      shared_prefix=config.shared_prefix) for chunk in chunks] \
            if config.updates_per_batch > 1 and chunks else None
        ref = [reference_logprobs(policy, reference, pick(chunk), config) for chunk in chunks] \
            if config.beta and chunks else None
    times["reference"] = time.perf_counter() - clock
    policy.train()
    metrics: dict[str, float] = {}
    # the normalisers of the whole batch, whatever the micro-batches: its sequences and active tokens, and dapo's
    # global active tokens per rank (a collective, every step): the ranks' gradients are averaged, so each rank
    # divides by all tokens / ranks and every token of the global batch weighs the same
    sequences = float(len(keep) * config.group_size) or 1.0
    local_tokens = float(sum(masks[g].sum() for g in keep))
    total_tokens = sum_over_ranks([local_tokens], dist)[0] / dist.world if config.aggregation == "dapo" \
        else local_tokens
    norms = {"global_tokens": total_tokens or 1.0, "sequences": sequences, "tokens": local_tokens or 1.0}
    for update in range(config.updates_per_batch):
        if not chunks:
            break
        sums = {"loss": 0.0, "clipped": 0.0, "tokens": 0.0, "entropy": 0.0, "kl": 0.0}
        for index, (chunk, chunk_weight) in enumerate(zip(chunks, weights)):
            clock = time.perf_counter()
            logps = module("logprobs", groups=pick(chunk), temperature=config.temperature,
                           shared_prefix=config.shared_prefix, with_entropy=bool(config.entropy_coef))
            entropy = None
            if config.entropy_coef:
                logps, entropies = [pair[0] for pair in logps], [pair[1] for pair in logps]
            width = max(l.shape[1] for l in logps)
            pad = lambda rows: torch.cat([torch.nn.functional.pad(r, (0, width - r.shape[1])) for r in rows])  # noqa: E731
            logp = pad(logps)
            if config.entropy_coef:
                entropy = pad(entropies)
            old_logp = pad(old[index]) if old is not None else logp.detach()
            ref_logp = pad(ref[index]) if ref is not None else None
            mask = pad([masks[g][a:b] for g, a, b in chunk])
            adv = torch.cat([advantage.view(-1, config.group_size)[g][a:b] for g, a, b in chunk]).to(logp.device)
            losses, clipped = token_loss(logp, old_logp, adv, config.eps_low, config.eps_high, config.beta, ref_logp,
                                         mask=mask, level=config.importance_sampling_level,
                                         objective=config.objective, delta=config.delta,
                                         kl_correction=config.kl_importance_correction, entropy=entropy,
                                         entropy_coef=config.entropy_coef)
            loss = chunk_weight * aggregate(losses, mask, config.aggregation, config.max_completion, **norms)
            times["policy_forward"] = times.get("policy_forward", 0.0) + time.perf_counter() - clock
            clock = time.perf_counter()
            loss.backward()
            times["policy_backward"] = times.get("policy_backward", 0.0) + time.perf_counter() - clock
            if chunk_weight:
                sums["loss"] += float(loss.detach())
                sums["clipped"] += float((clipped * mask).sum())
                sums["tokens"] += float(mask.sum())
                if entropy is not None:
                    sums["entropy"] += float((entropy.detach() * mask).sum())
                if ref_logp is not None:
                    sums["kl"] += float((k3_kl(logp.detach(), ref_logp) * mask).sum())
        clock = time.perf_counter()
        clip_gradients(policy, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        times["policy_backward"] = times.get("policy_backward", 0.0) + time.perf_counter() - clock
        if update == 0:
            tokens = max(sums["tokens"], 1.0)
            metrics["loss"] = sums["loss"]
            metrics["clip_fraction"] = sums["clipped"] / tokens
            if config.entropy_coef:
                metrics["entropy"] = sums["entropy"] / tokens
            if config.beta:
                metrics["kl"] = sums["kl"] / tokens
    scored = reward_tensor[~torch.isnan(reward_tensor)]
    metrics.update({
        "reward": float(scored.mean()) if len(scored) else 0.0,
        "reward_std": float(scored.std()) if len(scored) > 1 else 0.0,
        "zero_std_groups": zero_share,
        "completion_length": float(lengths.mean()),
        "lr": scheduler.get_last_lr()[0],
        "groups_trained": float(len(keep)),
    })
    for name, values in per_function.items():
        applied = [v for v in values if v is not None]  # the completions this function applies to
        metrics[f"reward_{name}"] = sum(applied) / len(applied) if applied else 0.0
    metrics.update({f"seconds_{k}": v for k, v in times.items()})
    return metrics


@torch.no_grad()
def reference_logprobs(policy, reference, groups, config: GRPOConfig) -> list[torch.Tensor]:
    """The frozen reference's log-probs: a policy around a copy of the starting model, or the base with LoRA adapters
    disabled."""
    options = {"groups": groups, "temperature": config.temperature, "shared_prefix": config.shared_prefix}
    if reference is None:  # LoRA: the base model is the reference
        with policy.model.llm.disable_adapter():
            return policy("logprobs", **options)
    return reference("logprobs", **options)
