"""Evaluation: greedy answers on held-out clips, scored as the papers score (WAR, UAR), with the format rate and a
confusion matrix. Used during training and by ``r1omni-edge eval``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..labels import confusion_matrix, normalize_label, uar, war
from ..prompt import parse_answer


@dataclass
class Evaluation:
    war: float
    uar: float
    format_rate: float
    answered_rate: float  # answers that name a label of the set
    confusion: tuple[list[str], list[list[int]]]
    predictions: list[str | None]

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


@torch.no_grad()
def evaluate(policy, prompts, labels: tuple[str, ...], max_tokens: int = 512, exact: bool = True,
             blank: bool = False) -> Evaluation:
    truths, predictions, formats = [], [], []
    was_training = policy.training
    policy.eval()
    for prompt in prompts:
        ids = policy("rollout", prompt=prompt, groups=1, max_tokens=max_tokens, greedy=True, blank=blank)
        text = policy.decode(ids)[0]
        parsed = parse_answer(text)
        truths.append(prompt.sample.label)
        predictions.append(normalize_label(parsed.answer, labels, exact=exact))
        formats.append(parsed.well_formed)
    policy.train(was_training)
    present = [label for label in labels if label in truths]
    return Evaluation(war(truths, predictions), uar(truths, predictions), sum(formats) / len(formats),
                      sum(p is not None for p in predictions) / len(predictions),
                      confusion_matrix(truths, predictions, present), predictions)
