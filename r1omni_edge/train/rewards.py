"""Verifiable rewards. A reward function takes the completions' texts and the ground-truth labels (and, if it
takes a third argument, each completion's clip metadata) and returns one float per completion, or None where it
does not apply; a wrong-length return is an error, never broadcast.

Besides the registered names, a config may name a function of the user's by import path, ``"package.module:name"``
(``rewards: {"mypkg.rewards:consistency": 0.5}``); it is imported and its signature checked when the config is."""

from __future__ import annotations

import importlib
import inspect
from typing import Callable, Sequence

from ..errors import InputError

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


def resolve_reward(name: str) -> tuple[RewardFunction, bool]:
    """A reward by registered name or import path -> (the function, whether it takes the clip metadata). Any problem
    (no such module or attribute, not callable, a signature that cannot take (completions, labels[, metadata]))
    is an InputError naming the reward."""
    if name in REWARDS:
        return REWARDS[name], False
    if ":" not in name:
        raise InputError(f"rewards: unknown reward {name!r}; registered: {', '.join(sorted(REWARDS))}, or a function "
                         "of yours as 'package.module:function'")
    module_name, _, attribute = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module may raise anything while importing
        raise InputError(f"rewards: {name!r}: cannot import {module_name} ({type(exc).__name__}: {exc}); is it "
                         "installed, or on PYTHONPATH?") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise InputError(f"rewards: {name!r}: {module_name} has no function {attribute!r}")
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return function, False
    for arguments, takes_metadata in ((3, True), (2, False)):
        try:
            signature.bind(*range(arguments))
        except TypeError:
            continue
        return function, takes_metadata
    raise InputError(f"rewards: {name!r}{signature} must take (completions, labels) or (completions, labels, "
                     "metadata) and return one float or None per completion")


def compute_rewards(names_and_weights: dict[str, float], completions: Sequence[str], labels: Sequence[str],
                    metadata: Sequence[dict] | None = None) -> tuple[list[float], dict[str, list[float | None]]]:
    """Weighted sum per completion over the functions that apply to it, and each function's own values. A completion
    no function applies to (all None) gets NaN: the advantages leave it out of its group's mean and std."""
    if len(completions) != len(labels):
        raise ValueError(f"{len(completions)} completions but {len(labels)} labels")
    per_function: dict[str, list[float | None]] = {}
    total: list[float | None] = [None] * len(completions)
    for name, weight in names_and_weights.items():
        if name not in REWARDS and ":" not in name:
            raise ValueError(f"unknown reward {name!r}; registered: {sorted(REWARDS)}")
        function, takes_metadata = resolve_reward(name)
        if takes_metadata:
            values = function(list(completions), list(labels), list(metadata or [{} for _ in completions]))
        else:
            values = function(completions, labels)
        values = list(values)
        if len(values) != len(completions):
            raise ValueError(f"reward {name!r} returned {len(values)} values for {len(completions)} completions")
        per_function[name] = values
        total = [t if v is None else (t or 0.0) + weight * v for t, v in zip(total, values)]
    return [float("nan") if t is None else t for t in total], per_function
