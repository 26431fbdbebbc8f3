"""GRPO as pure tensor functions, each testable without a model."""

from __future__ import annotations

import torch

from .config import ADVANTAGE_SCALES, AGGREGATIONS


def advantages(rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4
               ) -> tuple[torch.Tensor, float]:
    """rewards (B * G,) in groups of G -> (advantages (B * G,), share of groups whose rewards are all equal).

    A = r - mean_group(r), divided by (std + eps) with std the unbiased standard deviation of the group ("group",
    R1-Omni / DeepSeekMath), of the whole batch ("batch"), or not at all ("none", Dr. GRPO)."""
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"advantage scale {scale!r} is not one of {ADVANTAGE_SCALES}")
    grouped = rewards.view(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(grouped[:, :1])
    zero_share = float((std.squeeze(1) == 0).float().mean())
    if scale == "group":
        centred = centred / (std + eps)
    elif scale == "batch":
        centred = centred / (rewards.std() + eps)
    return centred.reshape(-1), zero_share


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL estimate exp(ref - logp) - (ref - logp) - 1, always >= 0."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def token_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantage: torch.Tensor, eps_low: float = 0.2,
               eps_high: float = 0.2, beta: float = 0.0, ref_logp: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate per token (+ beta * KL). logp/old_logp/ref_logp (N, L); advantage (N,).
    Returns (loss per token, clipped mask)."""
    ratio = torch.exp(logp - old_logp)
    adv = advantage[:, None]
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv
    loss = -torch.min(unclipped, clipped)
    was_clipped = (clipped < unclipped).float()
    if beta:
        if ref_logp is None:
            raise ValueError("beta > 0 needs the reference model's log-probabilities")
        loss = loss + beta * k3_kl(logp, ref_logp)
    return loss, was_clipped


def aggregate(loss: torch.Tensor, mask: torch.Tensor, how: str = "grpo", max_length: int | None = None,
              global_tokens: float | None = None) -> torch.Tensor:
    """Token losses (N, L) and completion mask (N, L) -> scalar, by the chosen aggregation."""
    mask = mask.to(loss.dtype)
    if how == "grpo":  # per-sequence mean, then mean over sequences (R1-Omni)
        return ((loss * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    if how == "bnpo":  # over all tokens of the micro-batch
        return (loss * mask).sum() / mask.sum().clamp(min=1)
    if how == "dapo":  # over the active tokens of the whole accumulated global batch
        return (loss * mask).sum() / max(global_tokens or float(mask.sum()), 1.0)
    if how == "dr_grpo":  # sequences x max completion length: no length normalisation bias
        return (loss * mask).sum() / (mask.shape[0] * (max_length or mask.shape[1]))
    raise ValueError(f"aggregation {how!r} is not one of {AGGREGATIONS}")


def completion_mask(ids: torch.Tensor, stop_ids: set[int]) -> torch.Tensor:
    """(N, L) sampled ids -> mask of the tokens up to and including the first end-of-turn id."""
    is_stop = torch.zeros_like(ids, dtype=torch.bool)
    for stop in stop_ids:
        is_stop |= ids == stop
    after_stop = (torch.cumsum(is_stop.int(), dim=1) - is_stop.int()) > 0
    return (~after_stop).to(torch.float32)


def truncated(ids: torch.Tensor, stop_ids: set[int]) -> torch.Tensor:
    """(N,) True where a completion never reached an end-of-turn id (cut at the length limit)."""
    hit = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for stop in stop_ids:
        hit |= (ids == stop).any(dim=1)
    return ~hit
