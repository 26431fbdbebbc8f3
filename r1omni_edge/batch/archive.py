"""The clips of an archive: a directory (searched recursively for video files; with a label set, a clip's folder
name is its label where it names one), a CSV / JSONL list with a ``path`` column and an optional ``label``, or a
dataset in the published JSON format (each row's clip, label, and the question its human turn asks)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..files import parse_json
from ..labels import normalize_label

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv", ".3gp"})


@dataclass(frozen=True)
class ArchiveClip:
    path: str  # absolute
    truth: str | None  # the ground-truth label, where the archive gives one
    instruction: str | None = None  # the question a published dataset's row asks (a checkpoint answers each its own)
    use_audio: bool = True  # False where that row's prompt has no <audio>: the video-only prompt


def list_archive(source: str | Path, labels: tuple[str, ...] | None = None,
                 data_root: str | Path | None = None) -> list[ArchiveClip]:
    """Every clip of ``source``, in a stable order; paths of a list are relative to ``data_root``, by default the
    list's own folder."""
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        return [ArchiveClip(str(p.resolve()), _folder_label(p, source, labels)) for p in files]
    if not source.is_file():
        raise InputError(f"{source}: no such file or directory; --input takes a folder of clips, a .csv or a .jsonl")
    suffix = source.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(source)
    elif suffix == ".json" and _is_json_list(source):
        return _dataset_clips(source, labels, data_root)
    elif suffix in (".jsonl", ".json"):
        rows = _jsonl_rows(source)
    else:
        raise InputError(f"{source}: --input takes a folder of clips, a .csv or a .jsonl list, not a {suffix or 'file'}")
    clips = []
    for line, row in rows:
        path = row.get("path")
        if not isinstance(path, str) or not path.strip():
            raise InputError(f"{source}:{line}: no 'path' (each row names its clip in a 'path' column)")
        truth = row.get("label")
        if truth is not None and labels is not None:
            named = normalize_label(str(truth), labels)
            if named is None:
                raise InputError(f"{source}:{line}: label {truth!r} is not one of {', '.join(labels)}")
            truth = named
        root = Path(data_root) if data_root is not None else source.parent
        try:
            full = Path(path).expanduser()
            resolved = (full if full.is_absolute() else root / full).resolve()
        except (ValueError, RuntimeError, OSError) as exc:  # a NUL byte, ~user that does not exist, a loop
            raise InputError(f"{source}:{line}: the path {path[:200]!r} cannot be used ({exc})") from None
        clips.append(ArchiveClip(str(resolved), str(truth) if truth not in (None, "") else None))
    return clips


def _is_json_list(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4096).lstrip()[:1] == b"["


def _dataset_clips(path: Path, labels: tuple[str, ...] | None, data_root: str | Path | None) -> list[ArchiveClip]:
    """A dataset in the published format, validated whole first (``datasets``' rules: every bad row at once)."""
    from ..prompt import instruction_of
    from ..datasets import load_dataset

    return [ArchiveClip(str(Path(sample.video).resolve()), sample.label, instruction_of(sample.prompt),
                        sample.uses_audio) for sample in load_dataset(path, data_root, labels)]


def _folder_label(path: Path, root: Path, labels: tuple[str, ...] | None) -> str | None:
    if labels is None or path.parent == root:
        return None
    return normalize_label(path.parent.name, labels)


def _csv_rows(path: Path) -> list[tuple[int, dict]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "path" not in reader.fieldnames:
                raise InputError(f"{path}: the CSV has no 'path' column (found {reader.fieldnames or 'no header'})")
            return [(index + 2, row) for index, row in enumerate(reader)]
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:  # a field over csv's limit, a NUL byte, a quote left open
        raise InputError(f"{path}: not a CSV list of clips ({exc})") from None


def _jsonl_rows(path: Path) -> list[tuple[int, dict]]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    for index, text in enumerate(lines, 1):
        if not text.strip():
            continue
        row = parse_json(text, f"{path}:{index}")
        if not isinstance(row, dict):
            raise InputError(f"{path}:{index}: each line must be a JSON object with a 'path'")
        rows.append((index, row))
    return rows
