"""Datasets in the published JSON format: a list of rows with ``video`` (relative to a data root) and
``conversations`` (``from`` human / gpt, ``value``). The ground-truth label is the gpt turn's ``<answer>``, or a
row's own ``label`` field. Validation reports every bad row at once, before any training starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, first_of
from .files import read_json
from .prompt import INSTRUCTION, PLACEHOLDERS, parse_answer, user_content

KNOWN_TAGS = set(PLACEHOLDERS)


class DatasetError(InputError):
    """One or more rows of a dataset cannot be used; the message lists them all."""


@dataclass
class Sample:
    index: int
    video: Path
    prompt: str  # the human turn, with its <video> / <audio> tags
    target: str  # the gpt turn (may be empty for GRPO data that holds only labels)
    label: str

    @property
    def uses_audio(self) -> bool:
        return "<audio>" in self.prompt


def _row_problems(row, index: int, root: Path, labels: tuple[str, ...] | None,
                  require_label: bool = True) -> tuple[Sample | None, list[str]]:
    problems: list[str] = []
    if not isinstance(row, dict):
        return None, [f"row {index}: not an object"]
    video = row.get("video")
    path = None
    if not isinstance(video, str) or not video:
        problems.append(f"row {index}: no 'video' path")
    else:
        path = (root / video) if not Path(video).is_absolute() else Path(video)
        try:
            found = path.is_file()
        except (OSError, ValueError) as exc:  # a name too long, a NUL byte
            problems.append(f"row {index}: video path {video[:80]!r} cannot be used ({exc.__class__.__name__}: "
                            f"{getattr(exc, 'strerror', None) or exc})")
        else:
            if not found:
                problems.append(f"row {index}: video file {path} does not exist")
    turns = row.get("conversations")
    human = gpt = None
    if not isinstance(turns, list) or not turns:
        problems.append(f"row {index}: no 'conversations' list")
    else:
        human = next((t.get("value") for t in turns if isinstance(t, dict) and t.get("from") == "human"), None)
        gpt = next((t.get("value") for t in turns if isinstance(t, dict) and t.get("from") == "gpt"), None)
        if not isinstance(human, str):
            problems.append(f"row {index}: no human turn")
        else:
            import re

            for tag in re.findall(r"<(?:image|video|audio|[a-z]+_?[a-z]*)>", human):
                if tag not in KNOWN_TAGS and tag not in ("<think>", "<answer>"):
                    problems.append(f"row {index}: unknown placeholder {tag} in the human turn")
            if "<video>" not in human and "<image>" not in human:
                problems.append(f"row {index}: the human turn has no <video> placeholder")
    label = row.get("label")
    if label is None and isinstance(gpt, str):
        label = parse_answer(gpt).answer
    if not label and require_label:
        problems.append(f"row {index}: no answer (neither a 'label' field nor <answer>..</answer> in the gpt turn)")
    elif label and labels is not None and label not in labels:
        problems.append(f"row {index}: label {str(label)[:80]!r} is not in the label set {list(labels)}")
    if problems:
        return None, problems
    return Sample(index, path, human, gpt or "", label or ""), []


def load_dataset(path: str | Path, data_root: str | Path | None = None,
                 labels: tuple[str, ...] | None = None, require_label: bool = True) -> list[Sample]:
    """Read and validate a dataset; every problem of every row is reported in one DatasetError. Without
    ``require_label`` a row may have no answer (its label is then "")."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such dataset file")
    rows = read_json(path, DatasetError)
    if not isinstance(rows, list) or not rows:
        raise DatasetError(f"{path}: expected a non-empty JSON list of rows")
    root = Path(data_root) if data_root is not None else path.parent
    samples, problems = [], []
    for index, row in enumerate(rows):
        sample, row_problems = _row_problems(row, index, root, labels, require_label)
        problems += row_problems
        if sample is not None:
            samples.append(sample)
    if problems:
        shown = first_of(problems, 50, "\n  ")
        raise DatasetError(f"{path}: {len(problems)} problem(s) in {len(rows)} rows; fix them and run again:\n  {shown}")
    return samples


CLIP_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


def unlabelled_clips(path: str | Path, data_root: str | Path | None = None) -> list[Sample]:
    """Clips that need no labels (window adaptation): a folder (its video files, sorted), a dataset JSON in the
    published format (answers optional), or a text file with one clip path per line (relative to ``data_root``,
    default the file's folder). Each asks the published instruction unless its row says otherwise."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in CLIP_SUFFIXES and p.is_file())
        if not files:
            raise DatasetError(f"{path}: no video files ({', '.join(CLIP_SUFFIXES)}) in this folder")
    elif path.suffix == ".json":
        return load_dataset(path, data_root, require_label=False)
    elif path.is_file():
        root = Path(data_root) if data_root is not None else path.parent
        try:
            lines = path.read_text().splitlines()
        except (UnicodeDecodeError, OSError) as exc:
            raise DatasetError(f"{path}: not a text list of clip paths ({exc})") from None
        files = [p if p.is_absolute() else root / p for p in (Path(line.strip()) for line in lines if line.strip())]
        missing = [str(p) for p in files if not p.is_file()]
        if not files or missing:
            raise DatasetError(f"{path}: " + (f"{len(missing)} listed clip(s) do not exist: {first_of(missing, 5, ', ')}"
                                              if files else "lists no clips"))
    else:
        raise DatasetError(f"{path}: no such folder or clip list")
    return [Sample(index, file, user_content(INSTRUCTION), "", "") for index, file in enumerate(files)]
