"""The constrained answer step: once the model reaches ``<answer>``, only the label set's labels may follow.

Each label is a token sequence (its text, then the first token of ``</answer>``, so that no label is a prefix of
another). A label's probability is the product, along its path in the trie of those sequences, of the softmax
over the children at each branching node, so the probabilities sum to 1 over the label set. The decoder runs only
where labels share a prefix; labels that differ at their first token cost no extra step at all. numpy only: the
torch-free runtime and the PyTorch recognizer share it, each passing its own decoder step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

Step = Callable[[list[int], Any, int], tuple[np.ndarray, Any]]  # (ids, cache, position) -> (logits, cache)


@dataclass
class LabelChoice:
    label: str
    probabilities: dict[str, float]
    extra_steps: int  # decoder calls spent below the root of the trie


def label_sequences(encode: Callable[[str], list[int]], labels: list[str] | tuple[str, ...]) -> dict[str, list[int]]:
    closing = encode("</answer>")
    if not closing:
        raise ValueError("the tokenizer encodes '</answer>' as nothing")
    sequences = {label: encode(label) + [closing[0]] for label in labels}
    seen: dict[tuple[int, ...], str] = {}
    for label, ids in sequences.items():
        if tuple(ids) in seen:
            raise ValueError(f"labels {seen[tuple(ids)]!r} and {label!r} tokenize identically")
        seen[tuple(ids)] = label
    return sequences


def _softmax(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    values = np.exp(values - values.max())
    return values / values.sum()


def choose_label(step: Step, logits: np.ndarray, cache: Any, position: int,
                 sequences: dict[str, list[int]]) -> LabelChoice:
    """``logits`` are the model's next-token logits right after ``<answer>``; ``position`` is that next position."""
    probabilities: dict[str, float] = {}
    steps = 0

    def visit(members: dict[str, list[int]], depth: int, logits: np.ndarray, cache: Any, position: int,
              mass: float) -> None:
        nonlocal steps
        groups: dict[int, dict[str, list[int]]] = {}
        for label, ids in members.items():
            groups.setdefault(ids[depth], {})[label] = ids
        tokens = list(groups)
        shares = _softmax(np.asarray(logits)[tokens]) if len(tokens) > 1 else np.ones(1)
        for token, share in zip(tokens, shares):
            group = groups[token]
            if len(group) == 1:  # the rest of this label's path is forced: probability 1 at each node
                probabilities[next(iter(group))] = mass * float(share)
                continue
            next_logits, next_cache = step([token], cache, position)
            steps += 1
            visit(group, depth + 1, next_logits, next_cache, position + 1, mass * float(share))

    visit(sequences, 0, logits, cache, position, 1.0)
    best = max(probabilities, key=probabilities.get)
    ordered = {label: probabilities[label] for label in sequences}
    return LabelChoice(best, ordered, steps)
