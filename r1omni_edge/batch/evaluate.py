"""The evaluation job (``r1omni-edge eval``): a labelled set through the batch job, decoded as ``predict`` decodes,
scored from each row's generated text as the papers score. With a faster audio front end than the published one,
the published front end runs too, side by side, and the report gives the agreement between the two."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InputError
from ..evaluation import Evaluation, agreement, evaluate_rows
from .archive import ArchiveClip, list_archive
from .job import BatchOptions, run_batch
from .report import write_report
from .store import ResultStore

log = logging.getLogger(__name__)
PUBLISHED_FRONT_END = ("full", "off")  # the audio window and gate the published model was trained with
Progress = Callable[[str], tuple[Callable[[int, int, int], None], Callable[[], None]]]


@dataclass
class EvalReport:
    result: Evaluation  # under the options' audio front end
    published: Evaluation | None = None  # under the published front end, when the options' was another
    agreement: dict | None = None  # of the two, clip by clip
    # the model under the published front end against the model before window adaptation (``original``)
    original: Evaluation | None = None
    original_agreement: dict | None = None
    files: list[str] = field(default_factory=list)  # the scores written beside the rows

    def to_dict(self, front_end: tuple) -> dict:
        report = {**self.result.metrics(), "confusion": self.result.confusion, "predictions": self.result.predictions,
                  "errors": self.result.errors}
        if self.published is not None:
            report.update(audio_window=front_end[0], audio_gate=front_end[1], published=self.published.metrics(),
                          agreement_with_published=self.agreement)
        if self.original is not None:
            report.update(original=self.original.metrics(), agreement_with_original=self.original_agreement)
        if self.files:
            report["files"] = self.files
        return report


def labelled_clips(data: str | Path, labels: tuple[str, ...], data_root: str | None = None,
                   instruction: str | None = None) -> list[ArchiveClip]:
    """The set's clips, each with its label, or an InputError; ``instruction``: the one a bundle answers (rows that
    ask another are counted in a warning)."""
    clips = list_archive(data, labels, data_root)
    unlabelled = [clip.path for clip in clips if clip.truth is None]
    if not clips or unlabelled:
        raise InputError(f"{data}: " + (f"{len(unlabelled)} of {len(clips)} clips have no label (e.g. "
                                        f"{unlabelled[0]})" if clips else "no clips")
                         + "; eval needs a label for each: the published format's answer, a 'label' column, or "
                           "folders named by label")
    if instruction is not None:
        other = sum(clip.instruction is not None and clip.instruction != instruction for clip in clips)
        if other:
            log.warning("%d of %d rows ask another instruction; the bundle answers the one it was exported with",
                        other, len(clips))
    return clips


def run_eval(model: str | Path, clips: list[ArchiveClip], labels: tuple[str, ...], options: BatchOptions,
             output: str | Path | None = None, exact: bool = True, progress: Progress | None = None,
             original: str | Path | None = None) -> EvalReport:
    """Score ``model`` on ``clips``. ``output``: keep the rows there (a rerun resumes) and write the scores beside
    them; without it the rows go to a temporary folder. ``exact``: the published scoring (False: synonyms count).
    ``progress(what)`` -> (a progress callback for run_batch, its close). ``original``: the model before window
    adaptation (same kind as ``model``), run under the published front end, the two compared clip by clip."""

    def evaluate(rows: Path, opts: BatchOptions, what: str, which: str | Path = model) -> Evaluation:
        step, close = progress(what) if progress is not None else (lambda done, errors, total: None, lambda: None)
        try:
            run_batch(which, clips, rows, opts, step, report=False)
        finally:
            close()
        return evaluate_rows(clips, ResultStore(rows).read(), labels, exact)

    recognition = options.recognition
    front_end = (recognition.audio_window, recognition.audio_gate)
    published = before = None
    reference = dataclasses.replace(options, recognition=dataclasses.replace(
        recognition, audio_window=PUBLISHED_FRONT_END[0], audio_gate=PUBLISHED_FRONT_END[1]))
    with tempfile.TemporaryDirectory(prefix="r1omni-eval-") as scratch:
        rows = Path(output) if output else Path(scratch) / "rows.jsonl"
        if front_end != PUBLISHED_FRONT_END:  # a faster front end: measured against the published one, side by side
            published = evaluate(rows.with_name(f"{rows.stem}.published{rows.suffix}"), reference, "published")
        result = evaluate(rows, options, "eval")
        if original is not None:
            before = evaluate(rows.with_name(f"{rows.stem}.original{rows.suffix}"), reference, "original", original)
    report = EvalReport(result, published, agreement(result, published) if published is not None else None)
    if before is not None:
        report.original = before
        report.original_agreement = agreement(published if published is not None else result, before)
    if output:
        names, matrix = result.confusion
        scores = {"clips": len(clips), "errors": len(result.errors), **result.metrics(), "labels": names,
                  "confusion": matrix}
        if published is not None:
            scores.update(published=published.metrics(), agreement_with_published=report.agreement)
        if before is not None:
            scores.update(original=before.metrics(), agreement_with_original=report.original_agreement)
        report.files = [str(path) for path in write_report(scores, Path(output))]
    return report
