"""Greedy generation around user-supplied embeddings, with transformers' KV cache: prefill once, then one token
at a time until an end-of-turn id."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch


@dataclass
class GreedyRun:
    token_ids: list[int]
    prefill_ms: float
    decode_ms: float
    prompt_length: int
    stopped: bool  # True when an end id was produced (not cut by max_new_tokens)
    timings: dict[str, float] = field(default_factory=dict)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def greedy_generate(llm, inputs_embeds: torch.Tensor, stop_ids: set[int], max_new_tokens: int) -> GreedyRun:
    """``llm`` is a transformers causal LM; ``inputs_embeds`` (1, L, hidden) is the whole multimodal prompt."""
    from transformers import DynamicCache

    device = inputs_embeds.device
    cache = DynamicCache()
    start = time.perf_counter()
    out = llm(inputs_embeds=inputs_embeds, cache=cache, use_cache=True, logits_to_keep=1)
    token = int(out.logits[0, -1].argmax())
    _sync(device)
    prefill_ms = (time.perf_counter() - start) * 1e3
    ids = [token]
    start = time.perf_counter()
    while token not in stop_ids and len(ids) < max_new_tokens:
        out = llm(input_ids=torch.tensor([[token]], device=device), cache=cache, use_cache=True, logits_to_keep=1)
        token = int(out.logits[0, -1].argmax())
        ids.append(token)
    _sync(device)
    decode_ms = (time.perf_counter() - start) * 1e3
    return GreedyRun(ids, prefill_ms, decode_ms, inputs_embeds.shape[1], stopped=token in stop_ids)
