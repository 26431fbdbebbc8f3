"""Emotion label sets, synonyms and the two metrics the papers report (WAR and UAR). Pure Python."""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

DFEW = ("happy", "surprise", "neutral", "angry", "disgust", "sad", "fear")
MAFW = DFEW + ("contemptuous", "disappointed", "helpless", "anxious")
RAVDESS = ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise")
LABEL_SETS: dict[str, tuple[str, ...]] = {"mafw": MAFW, "dfew": DFEW, "ravdess": RAVDESS}
DEFAULT_LABEL_SET = "mafw"  # the 11 words the published model was trained to answer with

# Other words for the canonical labels (dataset spellings, nouns, adjectives). Lower-case keys.
SYNONYMS: dict[str, str] = {
    "happiness": "happy", "joy": "happy", "joyful": "happy",
    "surprised": "surprise", "amazed": "surprise",
    "anger": "angry", "mad": "angry",
    "disgusted": "disgust",
    "sadness": "sad", "unhappy": "sad",
    "fearful": "fear", "afraid": "fear", "scared": "fear",
    "contempt": "contemptuous",
    "disappointment": "disappointed",
    "helplessness": "helpless",
    "anxiety": "anxious",
    "calmness": "calm",
    "neutrality": "neutral",
}


def label_set(name_or_labels: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(name_or_labels, str):
        try:
            return LABEL_SETS[name_or_labels.lower()]
        except KeyError:
            raise ValueError(f"unknown label set {name_or_labels!r}; choose one of {sorted(LABEL_SETS)}") from None
    return tuple(name_or_labels)


def normalize_label(answer: str | None, labels: Sequence[str], exact: bool = False) -> str | None:
    """The label an answer names, or None. ``exact`` is the published scoring: case-sensitive equality."""
    if answer is None:
        return None
    answer = answer.strip()
    if exact:
        return answer if answer in labels else None
    word = answer.lower().strip(" .!\"'")
    word = SYNONYMS.get(word, word)
    return word if word in labels else None


def _check_pairs(truth: Sequence[str], predicted: Sequence[str | None]) -> None:
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} ground-truth labels but {len(predicted)} predictions")
    if not truth:
        raise ValueError("no samples to score")


def war(truth: Sequence[str], predicted: Sequence[str | None]) -> float:
    """Weighted average recall = overall accuracy. Predictions outside the label set (None) count as wrong."""
    _check_pairs(truth, predicted)
    return sum(t == p for t, p in zip(truth, predicted)) / len(truth)


def uar(truth: Sequence[str], predicted: Sequence[str | None]) -> float:
    """Unweighted average recall: the mean per-class recall over the classes present in the ground truth."""
    _check_pairs(truth, predicted)
    totals = Counter(truth)
    hits = Counter(t for t, p in zip(truth, predicted) if t == p)
    return sum(hits[c] / n for c, n in totals.items()) / len(totals)


def confusion_matrix(
    truth: Sequence[str], predicted: Sequence[str | None], labels: Iterable[str]
) -> tuple[list[str], list[list[int]]]:
    """Rows are true labels, columns predicted ones; a last column "other" counts answers outside the set."""
    names = list(labels)
    index = {name: i for i, name in enumerate(names)}
    matrix = [[0] * (len(names) + 1) for _ in names]
    for t, p in zip(truth, predicted):
        matrix[index[t]][index.get(p, len(names)) if p is not None else len(names)] += 1
    return names + ["other"], matrix
