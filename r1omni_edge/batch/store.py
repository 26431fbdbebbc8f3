"""The job's output: one row per clip, appended as results arrive and flushed, so that a run killed midway leaves a
readable output and a rerun skips the clips it holds (by path; delete a row, or write elsewhere, to redo a clip).

``OUT.jsonl``: a JSON object per line; a line cut short by a kill is dropped when the output is next opened.
``OUT.parquet``: a directory of parquet parts, each written whole under a temporary name, then renamed; pandas and
pyarrow read the directory as one table. There ``probabilities`` and ``timings_ms`` are JSON text.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import InputError
from ..files import output_error, writable_directory

FORMATS = (".jsonl", ".parquet")
JSON_COLUMNS = ("probabilities", "timings_ms")  # nested: JSON text in parquet, objects in JSONL


class ResultStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.format = self.path.suffix.lower()
        if self.format not in FORMATS:
            raise InputError(f"{self.path}: --output must end in .jsonl or .parquet")
        self.parts = 0
        self.done: set[str] = {row["path"] for row in self.read()}
        self._check_writable()

    def _check_writable(self) -> None:
        """Fail now, in one line, where rows could not be written later (before any clip is recognised)."""
        writable_directory(self.path if self.format == ".parquet" else self.path.parent, "--output")
        if self.format == ".jsonl" and self.path.exists():  # nothing is created before the first row
            try:
                with self.path.open("a", encoding="utf-8"):
                    pass
            except OSError as exc:
                raise output_error(self.path, exc, "--output: cannot append to it") from None

    def read(self) -> list[dict]:
        """Every row written so far (repairing a JSONL line cut short by a kill)."""
        if self.format == ".jsonl":
            return self._read_jsonl()
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"{self.path}: a parquet output is a directory of parts, and this is a file")
        rows = []
        if self.path.is_dir():
            import pandas as pd

            for stray in self.path.glob(".*.tmp"):  # a part a kill interrupted: never renamed, never counted
                stray.unlink()
            parts = sorted(self.path.glob("part-*.parquet"))
            self.parts = len(parts)
            for part in parts:
                for row in pd.read_parquet(part).to_dict("records"):
                    row = {k: plain_value(v) for k, v in row.items()}
                    rows.append({k: (json.loads(v) if k in JSON_COLUMNS and isinstance(v, str) else v)
                                 for k, v in row.items()})
        return rows

    def _read_jsonl(self) -> list[dict]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # the last row was being written when the run stopped
            with self.path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)
            data = data[: data.rfind(b"\n") + 1]
        rows = []
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputError(f"{self.path}:{number}: not a row of this job ({exc.msg}); write to a new --output") \
                    from None
        if rows and not all(isinstance(r, dict) and "path" in r for r in rows):
            raise InputError(f"{self.path}: holds lines that are not rows of this job; write to a new --output")
        return rows

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        try:
            if self.format == ".jsonl":
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.writelines(json.dumps(row, ensure_ascii=False, default=_plain) + "\n" for row in rows)
                    handle.flush()
                    os.fsync(handle.fileno())
            else:
                self._append_part(rows)
        except OSError as exc:
            raise output_error(self.path, exc) from None
        self.done.update(row["path"] for row in rows)

    def _append_part(self, rows: list[dict]) -> None:
        import pandas as pd

        self.path.mkdir(parents=True, exist_ok=True)
        table = pd.DataFrame([{k: (json.dumps(v, default=_plain) if k in JSON_COLUMNS else v) for k, v in row.items()}
                              for row in rows])
        self.parts += 1
        final = self.path / f"part-{self.parts:06d}.parquet"
        staging = self.path / f".part-{self.parts:06d}.tmp"
        table.to_parquet(staging, index=False)
        os.replace(staging, final)


def plain_value(value):
    """A value of a pandas / numpy batch (what Ray and parquet give back) as plain Python: numpy scalars and
    arrays as numbers and lists, a missing value (NaN, None) as None."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and value != value:
        return None
    return value


def _plain(value):
    """For json.dumps: what plain_value makes plain."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
