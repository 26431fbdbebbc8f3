"""Verifiable rewards. A reward function takes the completions' texts and the ground-truth labels and returns one
float per completion (or None where it does not apply); a wrong-length return is an error, never broadcast."""

from __future__ import annotations

from typing import Callable, Sequence

from ..labels import normalize_label
from ..prompt import FORMAT_PATTERN, parse_answer

RewardFunction = Callable[[Sequence[str], Sequence[str]], list[float | None]]


def accuracy_exact(completions: Sequence[str], labels: Sequence[str]) -> list[float]:
    """The published rule: the <answer> contents, stripped, equal the label exactly (case-sensitive)."""
    return [1.0 if parse_answer(c).answer == label else 0.0 for c, label in zip(completions, labels)]


def accuracy_synonyms(completions: Sequence[str], labels: Sequence[str]) -> list[float]:
    """Like the published rule, but "Happiness" or "fearful" count for happy and fear."""
    return [1.0 if normalize_label(parse_answer(c).answer, [label]) == label else 0.0
            for c, label in zip(completions, labels)]


def format_reward(completions: Sequence[str], labels: Sequence[str]) -> list[float]:
    """Full match of <think>.*?</think>\\s*<answer>.*?</answer> (DOTALL), as published."""
    return [1.0 if FORMAT_PATTERN.fullmatch(c.strip()) else 0.0 for c in completions]


REWARDS: dict[str, RewardFunction] = {
    "accuracy": accuracy_exact,
    "accuracy_synonyms": accuracy_synonyms,
    "format": format_reward,
}


def compute_rewards(names_and_weights: dict[str, float], completions: Sequence[str], labels: Sequence[str]
                    ) -> tuple[list[float], dict[str, list[float | None]]]:
    """Weighted sum per completion over the functions that apply to it, and each function's own values. A completion
    no function applies to (all None) gets NaN: the advantages leave it out of its group's mean and std."""
    if len(completions) != len(labels):
        raise ValueError(f"{len(completions)} completions but {len(labels)} labels")
    per_function: dict[str, list[float | None]] = {}
    total: list[float | None] = [None] * len(completions)
    for name, weight in names_and_weights.items():
        if name not in REWARDS:
            raise ValueError(f"unknown reward {name!r}; registered: {sorted(REWARDS)}")
        values = REWARDS[name](completions, labels)
        if len(values) != len(completions):
            raise ValueError(f"reward {name!r} returned {len(values)} values for {len(completions)} completions")
        per_function[name] = values
        total = [t if v is None else (t or 0.0) + weight * v for t, v in zip(total, values)]
    return [float("nan") if t is None else t for t in total], per_function
