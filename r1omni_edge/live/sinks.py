"""Where a live session's events go besides a callback: a JSONL file (flushed per line, so nothing is lost on
Ctrl-C; rotated by size) and a terminal view. The window overlay (``overlay.py``) and the web view (``web.py``) are
sinks too."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from ..files import output_error


class JsonlSink:
    """One JSON object per line, flushed at once. A path that cannot be opened fails here, before anything runs;
    a write that fails later (a full disk) raises OutputError, which stops the session. With ``max_bytes`` the file
    is rotated by size (``FILE.1`` is the newest old part, ``backups`` are kept), so that a device that runs for
    weeks does not fill its disk: logging's RotatingFileHandler does the rotation."""

    def __init__(self, path: str | Path, max_bytes: int = 0, backups: int = 5):
        self.path = Path(path)
        self.written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handler = _RotatingJsonl(self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        except OSError as exc:
            raise output_error(self.path, exc, "--jsonl: cannot open for appending") from None
        self._lock = threading.Lock()
        self._closed = False

    def __call__(self, event: dict[str, Any]) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._handler.emit(logging.makeLogRecord({"msg": json.dumps(event, ensure_ascii=False)}))
            except OSError as exc:
                raise output_error(self.path, exc, f"--jsonl: cannot write after {self.written} events") from None
            self.written += 1

    def close(self) -> None:
        with self._lock:
            self._closed = True
            try:
                self._handler.close()
            except OSError:  # the failed flush was already reported
                pass


class _RotatingJsonl(logging.handlers.RotatingFileHandler):
    """The handler without logging's habit of printing a failed write and going on: the sink raises it."""

    terminator = "\n"

    def handleError(self, record: logging.LogRecord) -> None:
        raise  # noqa: PLE0704 - called from emit's except block: the OSError goes to the sink


class TerminalView:
    """A line per event on stderr (the results stay on stdout / in the JSONL); with ``show_stream`` (several
    streams) each line names its stream."""

    def __init__(self, stream: TextIO | None = None, show_stream: bool = False):
        self.stream = stream  # None: whatever sys.stderr is when a line is printed
        self.show_stream = show_stream

    def __call__(self, event: dict[str, Any]) -> None:
        at = f"[{event.get('time', 0.0):7.1f}s]" + (f" {event.get('stream')}" if self.show_stream else "")
        kind = event["type"]
        if kind == "result":
            p = (event.get("probabilities") or {}).get(event.get("label"), None)
            share = f" p={p:.2f}" if p is not None else ""
            latency = event["latency_ms"]
            line = (f"{at} {event.get('label') or '?':12s}{share}  total {latency['total']:.0f} ms "
                    f"(vision {latency.get('vision', 0):.0f}, audio {latency.get('audio', 0):.0f}, "
                    f"prefill {latency.get('prefill', 0):.0f}, decode {latency.get('decode', 0):.0f})  "
                    f"{'' if event.get('kept_up', True) else 'behind  '}dropped {event['dropped_windows']}  "
                    f"audio {event['audio']}"
                    + (f" ({event['audio_window']} s window)" if event.get("audio_window") else "")
                    + (" gated as silence" if event.get("audio_gated") else ""))
            reasoning = (event.get("reasoning") or "").replace("\n", " ")
            if reasoning:
                line += f"\n{' ' * len(at)} {reasoning[:160]}"
        elif kind == "started":
            line = (f"{at} started: window {event['window']} s, stride {event['stride']} s, mode {event['mode']}, "
                    f"audio window {event.get('audio_window')}, audio gate {event.get('audio_gate')}, "
                    f"backend {event.get('backend')}")
        elif kind == "stopped":
            line = (f"{at} stopped ({event['reason']}): {event['windows']} windows, {event['results']} results, "
                    f"{event['dropped_windows']} dropped, {event['skipped_windows']} skipped, "
                    f"{event['failed_windows']} failed")
        elif kind == "source":
            line = f"{at} {event['source']} {event['name']}: {event['status']} {event.get('detail', '')}".rstrip()
        else:
            line = f"{at} {kind}: {event.get('message', '')}"
        print(line, file=self.stream or sys.stderr, flush=True)
