"""Scoring as the papers score (WAR, UAR, a confusion matrix, the format rate), and ``r1omni-edge eval``: a
labelled dataset through the same recognizer and decoding as ``predict``, for a bundle and a checkpoint alike.
Torch-free."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .labels import confusion_matrix, normalize_label, uar, war
from .prompt import instruction_of, parse_answer

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    war: float
    uar: float
    format_rate: float
    answered_rate: float  # answers that name a label of the set
    confusion: tuple[list[str], list[list[int]]]
    predictions: list[str | None]
    token_ids: list[list[int]] = field(default_factory=list)  # what was generated, per sample

    def metrics(self) -> dict[str, float]:
        return {"war": self.war, "uar": self.uar, "format": self.format_rate, "answered": self.answered_rate}

    def table(self) -> str:
        names, matrix = self.confusion
        width = max(len(n) for n in names) + 1
        lines = [f"WAR {100 * self.war:.2f}  UAR {100 * self.uar:.2f}  format {100 * self.format_rate:.1f}%  "
                 f"answered {100 * self.answered_rate:.1f}%",
                 "confusion (rows: truth, columns: prediction)",
                 " " * width + " ".join(f"{n[:7]:>7s}" for n in names)]
        for name, row in zip(names, matrix):
            lines.append(f"{name:<{width}}" + " ".join(f"{v:7d}" for v in row))
        return "\n".join(lines)


def score(truths: Sequence[str], texts: Sequence[str], labels: Sequence[str], exact: bool = True) -> Evaluation:
    """Generated texts against the true labels: the ``<answer>`` mapped onto the label set (exactly, as published,
    or with synonyms), a prediction outside the set counting as wrong."""
    parsed = [parse_answer(text) for text in texts]
    predictions = [normalize_label(p.answer, labels, exact=exact) for p in parsed]
    present = [label for label in labels if label in truths]
    return Evaluation(war(truths, predictions), uar(truths, predictions), sum(p.well_formed for p in parsed) / len(parsed),
                      sum(p is not None for p in predictions) / len(predictions),
                      confusion_matrix(truths, predictions, present), predictions)


def evaluate_recognizer(recognizer, samples, max_new_tokens: int = 512, exact: bool = True,
                        progress: Callable[[int, int], None] | None = None, **decoding) -> Evaluation:
    """Each sample's clip through ``recognizer.recognize_file`` (its default decoding: plain greedy for a checkpoint,
    the constrained answer for a bundle; ``decoding`` overrides it, e.g. ``constrain=False``). A checkpoint answers
    each row's own instruction; a bundle answers the one it was exported with; rows that ask another are counted."""
    texts, truths, tokens, other = [], [], [], 0
    for index, sample in enumerate(samples):
        instruction = instruction_of(sample.prompt)
        if recognizer.instruction_settable:
            recognizer.instruction = instruction
        elif instruction != recognizer.instruction:
            other += 1
        result = recognizer.recognize_file(sample.video, use_audio=sample.uses_audio, max_new_tokens=max_new_tokens,
                                           **decoding)
        texts.append(result.text)
        tokens.append(result.token_ids)
        truths.append(sample.label)
        if progress is not None:
            progress(index + 1, len(samples))
    if other:
        log.warning("%d of %d rows ask another instruction; the bundle answers the one it was exported with",
                    other, len(samples))
    evaluation = score(truths, texts, recognizer.labels, exact)
    evaluation.token_ids = tokens
    return evaluation


def matching_prefix(reference: list[int], candidate: list[int]) -> float:
    """The share of ``reference``'s tokens that ``candidate`` matches before the first difference."""
    shared = next((i for i, (a, b) in enumerate(zip(reference, candidate)) if a != b), min(len(reference),
                                                                                            len(candidate)))
    return shared / max(len(reference), 1)


def answer_agreement(labels: list, published_labels: list, tokens: list[list[int]],
                     published_tokens: list[list[int]]) -> dict[str, float]:
    """How often a faster policy answered as the published one did on the same inputs: the same label, identical
    tokens, and the mean share of the published tokens matched before the first difference."""
    count = max(len(tokens), 1)
    return {"samples": len(tokens),
            "label": round(sum(a == b for a, b in zip(labels, published_labels)) / count, 4),
            "identical_tokens": round(sum(a == b for a, b in zip(tokens, published_tokens)) / count, 4),
            "token_prefix": round(sum(matching_prefix(b, a) for a, b in zip(tokens, published_tokens)) / count, 4)}


def agreement(policy: Evaluation, published: Evaluation) -> dict[str, float]:
    return answer_agreement(policy.predictions, published.predictions, policy.token_ids, published.token_ids)
