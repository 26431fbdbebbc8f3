"""Scoring as the papers score (WAR, UAR, a confusion matrix, the format rate), and ``r1omni-edge eval``'s: a
labelled dataset's rows from the batch job (the same recognizer and decoding as ``predict``, for a bundle and a
checkpoint alike), scored from their generated text. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .labels import confusion_matrix, normalize_label, uar, war
from .prompt import parse_answer


@dataclass
class Evaluation:
    war: float
    uar: float
    format_rate: float
    answered_rate: float  # answers that name a label of the set
    confusion: tuple[list[str], list[list[int]]]
    predictions: list[str | None]
    token_ids: list[list[int]] = field(default_factory=list)  # what was generated, per sample
    errors: dict[str, str] = field(default_factory=dict)  # clip path -> why it has no answer

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


def score_labels(truths: Sequence[str], predictions: Sequence[str | None], labels: Sequence[str],
                 rows: Sequence[str] | None = None) -> dict:
    """The one scorer: WAR, UAR and the confusion matrix of predicted labels (None: no label, counted as wrong)
    against the true ones. ``rows``: the confusion matrix's rows (default: the labels that occur as truths)."""
    names, matrix = confusion_matrix(truths, predictions, [l for l in labels if l in truths] if rows is None else rows)
    return {"war": war(truths, predictions), "uar": uar(truths, predictions), "labels": names, "confusion": matrix}


def score(truths: Sequence[str], texts: Sequence[str], labels: Sequence[str], exact: bool = True) -> Evaluation:
    """Generated texts against the true labels: the ``<answer>`` mapped onto the label set (exactly, as published,
    or with synonyms), a prediction outside the set counting as wrong."""
    parsed = [parse_answer(text) for text in texts]
    predictions = [normalize_label(p.answer, labels, exact=exact) for p in parsed]
    scores = score_labels(truths, predictions, labels)
    return Evaluation(scores["war"], scores["uar"], sum(p.well_formed for p in parsed) / len(parsed),
                      sum(p is not None for p in predictions) / len(predictions),
                      (scores["labels"], scores["confusion"]), predictions)


def evaluate_rows(clips, rows: Sequence[dict], labels: Sequence[str], exact: bool = True) -> Evaluation:
    """A labelled set's clips scored from the batch job's rows (joined by path, in the set's order): each row's
    generated text, as ``predict`` decoded it. A clip whose row holds an error counts as unanswered and wrong."""
    by_path = {row["path"]: row for row in rows}
    missing = [clip.path for clip in clips if clip.path not in by_path]
    if missing:
        raise ValueError(f"{len(missing)} clips have no row, e.g. {missing[0]}")
    chosen = [by_path[clip.path] for clip in clips]
    evaluation = score([clip.truth for clip in clips], [row.get("text") or "" for row in chosen], labels, exact)
    evaluation.token_ids = [list(row.get("token_ids") or []) for row in chosen]
    evaluation.errors = {clip.path: row["error"] for clip, row in zip(clips, chosen) if row.get("error")}
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
