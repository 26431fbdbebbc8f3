"""The scores of a labelled run, from the rows: WAR, UAR and the confusion matrix (``evaluation.py``'s one scorer)
of the label each row's recognizer gave, printed, and written beside the output as JSON and a PNG. ``eval`` scores
the rows' generated text instead, exactly as published (``--synonyms`` maps synonyms as this does)."""

from __future__ import annotations

import json
from pathlib import Path

from ..evaluation import score_labels


def score_rows(rows: list[dict], labels: tuple[str, ...]) -> dict | None:
    """Over the rows with a ground truth; a clip that failed counts as wrong (its prediction is None)."""
    scored = [row for row in rows if row.get("truth")]
    if not scored:
        return None
    truth = [row["truth"] for row in scored]
    predicted = [row.get("label") if not row.get("error") else None for row in scored]
    scores = score_labels(truth, predicted, labels, rows=labels)
    return {"clips": len(scored), "errors": sum(bool(row.get("error")) for row in scored), **scores}


def write_report(report: dict, output: Path) -> list[Path]:
    """``OUT.metrics.json`` and, where matplotlib is installed, ``OUT.confusion.png``."""
    stem = output.with_suffix("")
    written = [stem.with_name(stem.name + ".metrics.json")]
    written[0].write_text(json.dumps(report, indent=2) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    names, matrix = report["labels"], report["confusion"]
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(names), 1 + 0.5 * len(matrix)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(matrix)), names[: len(matrix)])
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"WAR {report['war']:.3f}  UAR {report['uar']:.3f}  ({report['clips']} clips)")
    fig.tight_layout()
    png = stem.with_name(stem.name + ".confusion.png")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return written + [png]


def summary_line(report: dict) -> str:
    return (f"{report['clips']} labelled clips ({report['errors']} failed): WAR {report['war']:.4f}, "
            f"UAR {report['uar']:.4f}")
