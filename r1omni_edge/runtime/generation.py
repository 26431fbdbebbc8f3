"""The generation loop around user embeddings: prefill from a cached prompt prefix, then greedy decode, one token
at a time, looking each new token's embedding up in the bundle's table. numpy only."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass
class Generated:
    token_ids: list[int]
    prefill_ms: float
    decode_ms: float
    prompt_length: int
    stopped: bool


def greedy(decoder: Callable[[np.ndarray, np.ndarray, Any], tuple[np.ndarray, Any]], embed: Callable[[list[int]], np.ndarray],
           inputs_embeds: np.ndarray, cache: Any, past_length: int, stop_ids: set[int], max_new_tokens: int
           ) -> Generated:
    """``inputs_embeds`` (1, S, hidden) continue a prompt whose first ``past_length`` positions are in ``cache``."""
    length = inputs_embeds.shape[1]
    start = time.perf_counter()
    positions = np.arange(past_length, past_length + length, dtype=np.int64)[None]
    logits, cache = decoder(inputs_embeds, positions, cache)
    token = int(np.argmax(logits[0]))
    prefill_ms = (time.perf_counter() - start) * 1e3
    ids = [token]
    position = past_length + length
    start = time.perf_counter()
    while token not in stop_ids and len(ids) < max_new_tokens:
        logits, cache = decoder(embed([token]), np.array([[position]], dtype=np.int64), cache)
        token = int(np.argmax(logits[0]))
        ids.append(token)
        position += 1
    decode_ms = (time.perf_counter() - start) * 1e3
    return Generated(ids, prefill_ms, decode_ms, past_length + length, token in stop_ids)
