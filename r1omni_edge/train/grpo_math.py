"""GRPO as pure tensor functions, each testable without a model."""

from __future__ import annotations

import torch

from .config import ADVANTAGE_SCALES, AGGREGATIONS, IMPORTANCE_LEVELS, OBJECTIVES


def advantages(rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4,
               batch_std: float | None = None) -> tuple[torch.Tensor, float]:
    """rewards (B * G,) in groups of G -> (advantages (B * G,), share of groups whose rewards are all equal).

    A = r - mean_group(r), divided by (std + eps) with std the unbiased standard deviation of the group ("group",
    R1-Omni / DeepSeekMath), of the whole batch ("batch"; over several ranks pass ``batch_std``, the std of every
    rank's rewards: see ``batch_reward_std``), or not at all ("none", Dr. GRPO). A NaN reward (no reward function
    applied to that completion) is left out of its group's mean and std, and its advantage is 0 (as TRL does)."""
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"advantage scale {scale!r} is not one of {ADVANTAGE_SCALES}")
    grouped = rewards.view(-1, group_size)
    valid = ~torch.isnan(grouped)
    count = valid.sum(dim=1, keepdim=True)
    mean = torch.where(valid, grouped, 0.0).sum(dim=1, keepdim=True) / count.clamp(min=1)
    centred = torch.where(valid, grouped - mean, 0.0)
    std = ((centred ** 2).sum(dim=1, keepdim=True) / (count - 1).clamp(min=1)).sqrt()
    std = torch.where(count > 1, std, torch.zeros_like(std))
    zero_share = float((std.squeeze(1) == 0).float().mean())
    if scale == "group":
        centred = centred / (std + eps)
    elif scale == "batch":
        if batch_std is None:
            batch_std = batch_reward_std(*reward_moments(rewards))
        centred = centred / (batch_std + eps)
    return centred.reshape(-1), zero_share


def reward_moments(rewards: torch.Tensor) -> tuple[float, float, float]:
    """(count, sum, sum of squares) of the non-NaN rewards: what ranks add up for the batch's std."""
    valid = rewards[~torch.isnan(rewards)].double()
    return float(valid.numel()), float(valid.sum()), float((valid ** 2).sum())


def batch_reward_std(count: float, total: float, squares: float) -> float:
    """The unbiased std of rewards from their summed moments (over every rank)."""
    if count < 2:
        return 0.0
    return max((squares - total * total / count) / (count - 1), 0.0) ** 0.5


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL estimate exp(ref - logp) - (ref - logp) - 1, always >= 0."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def importance_log_ratio(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor | None = None,
                         level: str = "token") -> torch.Tensor:
    """log pi / pi_old per token (PPO, GRPO), or per sequence (GSPO, Zheng et al. 2025, arXiv 2507.18071: the mean
    token log-ratio over the completion, the length-normalised sequence likelihood ratio), broadcast to its tokens."""
    log_ratio = logp - old_logp
    if level == "token":
        return log_ratio
    if level != "sequence":
        raise ValueError(f"importance sampling level {level!r} is not one of {IMPORTANCE_LEVELS}")
    mask = torch.ones_like(log_ratio) if mask is None else mask.to(log_ratio.dtype)
    sequence = (log_ratio * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)
    return sequence.expand_as(log_ratio)


def token_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantage: torch.Tensor, eps_low: float = 0.2,
               eps_high: float = 0.2, beta: float = 0.0, ref_logp: torch.Tensor | None = None, *,
               mask: torch.Tensor | None = None, level: str = "token", objective: str = "clip",
               delta: float | None = None, kl_correction: bool = False, entropy: torch.Tensor | None = None,
               entropy_coef: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss per token and the mask of tokens whose ratio was clipped. logp/old_logp/ref_logp/entropy (N, L);
    advantage (N,); ``mask`` (N, L) is needed for the sequence level only.

    - ``objective="clip"``: PPO's clipped surrogate -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A) (GRPO,
      DeepSeekMath arXiv 2402.03300; separate bounds: DAPO arXiv 2503.14476). ``delta`` caps the unclipped ratio,
      so a token with a negative advantage cannot take an unbounded step (INTELLECT-2, arXiv 2505.07291).
    - ``objective="cispo"``: CISPO (MiniMax-M1, arXiv 2506.13585): -sg(min(r, 1 + eps_high)) A log pi. The
      importance weight is clipped and detached, so every token keeps its gradient (no lower bound, as the paper).
    - ``beta`` adds beta * k3 KL to the reference; ``kl_correction`` multiplies that estimate by the importance
      ratio, which makes it unbiased for samples drawn from pi_old (DeepSeek-V3.2's technical report).
    - ``entropy_coef`` subtracts entropy_coef * the token's entropy (an entropy bonus)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r} is not one of {OBJECTIVES}")
    ratio = torch.exp(importance_log_ratio(logp, old_logp, mask, level))
    adv = advantage[:, None]
    if objective == "cispo":
        weight = torch.clamp(ratio, max=1 + eps_high).detach()
        loss = -weight * adv * logp
        was_clipped = (ratio > 1 + eps_high).float()
    else:
        unclipped = (ratio if delta is None else torch.clamp(ratio, max=delta)) * adv
        clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv
        loss = -torch.min(unclipped, clipped)
        was_clipped = (clipped < unclipped).float()
    if beta:
        if ref_logp is None:
            raise ValueError("beta > 0 needs the reference model's log-probabilities")
        kl = k3_kl(logp, ref_logp)
        loss = loss + beta * (kl * ratio if kl_correction else kl)
    if entropy_coef:
        if entropy is None:
            raise ValueError("entropy_coef > 0 needs the tokens' entropies")
        loss = loss - entropy_coef * entropy
    return loss, was_clipped


def aggregate(loss: torch.Tensor, mask: torch.Tensor, how: str = "grpo", max_length: int | None = None,
              global_tokens: float | None = None, sequences: float | None = None, tokens: float | None = None
              ) -> torch.Tensor:
    """Token losses (N, L) and completion mask (N, L) -> scalar, by the chosen aggregation. For a micro-batch of a
    larger batch, pass the batch's ``sequences`` and active ``tokens`` (and dapo's ``global_tokens``): the
    micro-batches' results then add up to the batch's (defaults: this call's own)."""
    mask = mask.to(loss.dtype)
    sequences = sequences or mask.shape[0]
    if how == "grpo":  # per-sequence mean, then mean over sequences (R1-Omni)
        return ((loss * mask).sum(1) / mask.sum(1).clamp(min=1)).sum() / sequences
    if how == "bnpo":  # over all tokens of the batch
        return (loss * mask).sum() / max(tokens or float(mask.sum()), 1.0)
    if how == "dapo":  # over the active tokens of the global batch: pass global_tokens = all ranks' tokens / ranks, so
        # that after DDP / FSDP average the gradients every token of the global batch weighs the same (as TRL does)
        return (loss * mask).sum() / max(global_tokens or float(mask.sum()), 1.0)
    if how == "dr_grpo":  # sequences x max completion length: no length normalisation bias
        return (loss * mask).sum() / (sequences * (max_length or mask.shape[1]))
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
