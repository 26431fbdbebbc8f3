"""The generation loop around user embeddings: prefill from a cached prompt prefix, then greedy decode, one token at
a time, each new token's embedding looked up by the engine. The same loop for every engine; numpy only.

Three ways to end, all giving a label from the label set when ``constrain`` is on:
- the model writes ``<answer>``: the constrained step (``label_choice.py``) picks the label;
- the reasoning reaches ``max_think_tokens``, the model stops early, or ``max_new_tokens`` runs out: the loop feeds
  ``</think>\\n<answer>`` (or the part still missing) itself, then takes the constrained step;
- ``label_only``: the prompt already ends in ``<think>\\n</think>\\n<answer>``, so the constrained step comes
  straight after prefill.
With ``constrain`` off the loop is plain greedy, as the PyTorch reference: it stops at an end-of-turn id (which it
keeps) or at ``max_new_tokens``; text after ``</answer>`` is generated as the reference generates it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..label_choice import choose_label
from ..prompt import LABEL_ONLY_SUFFIX

Decoder = Callable[[np.ndarray, np.ndarray, Any], tuple[np.ndarray, Any]]


def answer_room(encode: Callable[[str], list[int]], label_sequences: dict[str, list[int]]) -> int:
    """The most positions an answer takes beyond its free tokens: the forced ``</think>\n<answer>`` and the longest
    label (what a fixed-size KV buffer must leave free past max_new_tokens). Computed at export into the manifest."""
    return len(encode("</think>\n<answer>")) + max(map(len, label_sequences.values()))


@dataclass
class TokenizerView:
    """What the loop needs of the tokenizer."""

    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]
    stop_ids: set[int]
    label_sequences: dict[str, list[int]]


@dataclass
class DecodedAnswer:
    token_ids: list[int]  # everything after the prompt: generated, forced and the chosen label's tokens
    text: str
    prefill_ms: float
    decode_ms: float
    prompt_length: int
    generated_tokens: int  # tokens the model chose freely (forced and label tokens excluded)
    label: str | None = None
    probabilities: dict[str, float] | None = None
    forced: str = ""  # text the loop inserted ("" when the model wrote its own <answer>)
    timings: dict[str, float] = field(default_factory=dict)


def _forced_text(text: str) -> str:
    """What must follow ``text`` for the answer to begin."""
    if text.rstrip().endswith("<answer>"):
        return ""
    if "</think>" in text:
        return "\n<answer>"
    if "<think>" in text:
        return "</think>\n<answer>"
    return LABEL_ONLY_SUFFIX


def generate(decoder: Decoder, embed: Callable[[list[int]], np.ndarray], inputs_embeds: np.ndarray, cache: Any,
             past_length: int, vocab: TokenizerView, max_new_tokens: int, max_think_tokens: int | None = None,
             constrain: bool = True, label_only: bool = False, positions: np.ndarray | None = None) -> DecodedAnswer:
    """``inputs_embeds`` (1, S, hidden) continue a prompt whose first ``past_length`` positions are in ``cache``;
    ``positions``: their position ids (default: on from ``past_length``), the answer's follow the last."""
    prompt_length = past_length + inputs_embeds.shape[1]
    if positions is None:
        positions = np.arange(past_length, prompt_length, dtype=np.int64)
    start = time.perf_counter()
    out, cache = decoder(inputs_embeds, np.asarray(positions, np.int64)[None], cache)
    logits = out[0]
    prefill_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    position = int(positions[-1]) + 1

    def step(ids: list[int], cache: Any, at: int) -> tuple[np.ndarray, Any]:
        out_logits, out_cache = decoder(embed(ids), np.arange(at, at + len(ids), dtype=np.int64)[None], cache)
        return out_logits[0], out_cache

    def finished(ids: list[int]) -> DecodedAnswer:
        return DecodedAnswer(ids, vocab.decode(ids), prefill_ms, (time.perf_counter() - start) * 1e3, prompt_length,
                             len(ids))

    ids: list[int] = []
    pending: list[int] = []  # chosen but not yet in the cache
    while not label_only:
        token = int(np.argmax(logits))
        if token in vocab.stop_ids:
            if not constrain:
                return finished(ids + [token])
            break  # stopping without an answer: the answer is forced below
        ids.append(token)
        pending = [token]
        text = vocab.decode(ids)
        if not constrain and len(ids) >= max_new_tokens:  # plain greedy ends as the reference does: at an
            return finished(ids)  # end-of-turn id (kept, above) or at the token limit, never at </answer>
        if constrain and (text.rstrip().endswith("<answer>") or len(ids) >= max_new_tokens
                          or (max_think_tokens is not None and "</think>" not in text
                              and len(ids) >= max_think_tokens)):
            break
        logits, cache = step(pending, cache, position)
        position += 1
        pending = []
    free_tokens = len(ids)
    forced = "" if label_only else _forced_text(vocab.decode(ids))
    forced_ids = vocab.encode(forced) if forced else []
    if pending or forced_ids:
        logits, cache = step(pending + forced_ids, cache, position)
        position += len(pending) + len(forced_ids)
    ids += forced_ids
    choice = choose_label(step, logits, cache, position, vocab.label_sequences)
    return DecodedAnswer(
        token_ids=ids + vocab.encode(choice.label) + vocab.encode("</answer>"),
        text=vocab.decode(ids) + choice.label + "</answer>",
        prefill_ms=prefill_ms,
        decode_ms=(time.perf_counter() - start) * 1e3,
        prompt_length=prompt_length,
        generated_tokens=free_tokens,
        label=choice.label,
        probabilities=choice.probabilities,
        forced=forced,
    )
