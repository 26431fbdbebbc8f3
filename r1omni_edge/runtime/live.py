"""The live session: every ``stride`` seconds, the last ``window`` seconds of frames and audio go to the recognizer
in a worker thread. While the worker is busy a window is skipped and counted, never queued, so the latency of what
comes out stays bounded by one recognition. Every event (results, sources lost and found, notices) goes to each
sink: a callback, a JSONL file (flushed per line, so nothing is lost on Ctrl-C) and a terminal view.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from .sources import AudioRing, FrameRing, clock

log = logging.getLogger(__name__)
Sink = Callable[[dict[str, Any]], None]


@dataclass
class LiveConfig:
    window: float = 4.0  # seconds of frames and audio per recognition
    stride: float = 2.0  # seconds between windows
    mode: str = "full"  # "full" (reasoning) or "label" (lowest latency)
    max_new_tokens: int = 256
    max_think_tokens: int | None = 128
    min_frames: int = 2  # fewer frames in a window: skip it with a notice

    def check(self) -> None:
        from ..errors import InputError

        if self.window <= 0 or self.stride <= 0:
            raise InputError(f"--window and --stride must be positive (got {self.window} and {self.stride})")
        if self.mode not in ("full", "label"):
            raise InputError(f"--mode must be full or label, got {self.mode!r}")


class JsonlSink:
    """One JSON object per line, flushed at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.write(json.dumps(event, ensure_ascii=False) + "\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class TerminalView:
    """A line per event on stderr (the results stay on stdout / in the JSONL)."""

    def __init__(self, stream: TextIO = sys.stderr, origin: float | None = None):
        self.stream = stream
        self.origin = clock() if origin is None else origin

    def __call__(self, event: dict[str, Any]) -> None:
        at = f"[{event.get('time', clock()) - self.origin:7.1f}s]"
        kind = event["type"]
        if kind == "result":
            p = (event.get("probabilities") or {}).get(event.get("label"), None)
            share = f" p={p:.2f}" if p is not None else ""
            latency = event["latency_ms"]
            line = (f"{at} {event.get('label') or '?':12s}{share}  total {latency['total']:.0f} ms "
                    f"(vision {latency.get('vision', 0):.0f}, audio {latency.get('audio', 0):.0f}, "
                    f"prefill {latency.get('prefill', 0):.0f}, decode {latency.get('decode', 0):.0f})  "
                    f"dropped {event['dropped_windows']}  audio {event['audio']}")
            reasoning = (event.get("reasoning") or "").replace("\n", " ")
            if reasoning:
                line += f"\n{' ' * len(at)} {reasoning[:160]}"
        elif kind == "started":
            line = (f"{at} started: window {event['window']} s, stride {event['stride']} s, mode {event['mode']}, "
                    f"backend {event.get('backend')}")
        elif kind == "stopped":
            line = (f"{at} stopped ({event['reason']}): {event['windows']} windows, {event['results']} results, "
                    f"{event['dropped_windows']} dropped")
        elif kind == "source":
            line = f"{at} {event['source']} {event['name']}: {event['status']} {event.get('detail', '')}".rstrip()
        else:
            line = f"{at} {kind}: {event.get('message', '')}"
        print(line, file=self.stream, flush=True)


class LiveSession:
    def __init__(self, recognizer, frames: FrameRing, audio: AudioRing | None, config: LiveConfig | None = None,
                 sinks: list[Sink] | None = None, now: Callable[[], float] = clock):
        self.recognizer = recognizer
        self.frames = frames
        self.audio = audio
        self.config = config or LiveConfig()
        self.config.check()
        self.sinks = list(sinks or [])
        self.now = now
        self.dropped = 0
        self.windows = 0
        self.results = 0
        self.audio_available = audio is not None
        self.realtime = True  # window times are on the session clock (False: media time, see run_offline)
        self.media_origin = 0.0  # for a clip: its time 0 on the session clock
        self._busy = threading.Lock()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._emit_lock = threading.Lock()

    # ---- events -------------------------------------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        with self._emit_lock:
            for sink in self.sinks:
                try:
                    sink(event)
                except Exception:  # one broken sink must not stop the session or the others
                    log.exception("an event sink failed")

    def notice(self, message: str) -> None:
        self.emit({"type": "notice", "time": self.now(), "message": message})

    def on_source_event(self, event: dict[str, Any]) -> None:
        if event["source"] == "microphone" and event["status"] in ("unavailable", "lost", "gave up"):
            if self.audio_available:
                self.audio_available = False
                self.emit(event)
                self.notice("no microphone: recognising from video only until it comes back")
                return
        if event["source"] == "microphone" and event["status"] == "connected" and self.audio is not None:
            self.audio_available = True
        self.emit(event)

    # ---- one window -----------------------------------------------------------------------------------------------
    def _recognise(self, start: float, end: float, frames: list[np.ndarray], audio: np.ndarray | None) -> None:
        try:
            began = self.now()
            result = self.recognizer.recognize(frames, audio, use_audio=audio is not None, mode=self.config.mode,
                                               max_new_tokens=self.config.max_new_tokens,
                                               max_think_tokens=self.config.max_think_tokens)
            done = self.now()
            latency = {k: v for k, v in result.timings_ms.items() if not k.endswith("tokens")}
            latency["total"] = round((done - began) * 1e3, 3)
            if self.realtime:
                latency["since_window_end"] = round((done - end) * 1e3, 3)
            self.results += 1
            self.emit({"type": "result", "time": done, "window": [round(start, 3), round(end, 3)],
                       "label": result.label, "probabilities": result.probabilities, "reasoning": result.reasoning,
                       "answer": result.answer, "audio": result.audio, "frames": len(frames),
                       "latency_ms": latency, "generated_tokens": result.timings_ms.get("generated_tokens"),
                       "dropped_windows": self.dropped})
        except Exception as exc:  # a failed window is reported; the session goes on
            log.exception("recognition failed")
            self.emit({"type": "error", "time": self.now(), "message": f"recognition failed: {exc}"})
        finally:
            self._busy.release()

    def tick(self, end: float) -> bool:
        """Take the window ending at ``end``; hand it to the worker, or skip it when the worker is busy."""
        self.windows += 1
        start = end - self.config.window
        if not self._busy.acquire(blocking=False):
            self.dropped += 1
            return False
        frames = self.frames.window(start, end)
        if len(frames) < self.config.min_frames:
            self._busy.release()
            self.notice(f"only {len(frames)} frame(s) in the window ending at {end:.1f}; skipped")
            return False
        audio = self.audio.window(start, end) if (self.audio is not None and self.audio_available) else None
        self._worker = threading.Thread(target=self._recognise, args=(start, end, frames, audio), daemon=True,
                                        name="r1omni-recognizer")
        self._worker.start()
        return True

    # ---- the loop ----------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping.set()

    def run(self, duration: float | None = None, until: Callable[[], bool] = lambda: False,
            on_idle: Callable[[], None] | None = None, wait_for_last: float = 30.0) -> None:
        """Tick every stride until ``stop()``, ``duration`` seconds, ``until()`` or Ctrl-C; ``on_idle`` runs between
        ticks (the display). The window in flight is given ``wait_for_last`` seconds to finish."""
        began = self.now()
        next_tick = began + self.config.window
        self.emit({"type": "started", "time": began, "window": self.config.window, "stride": self.config.stride,
                   "mode": self.config.mode, "backend": getattr(self.recognizer, "backend_name", None)})
        reason = "stopped"
        try:
            while not self._stopping.is_set():
                now = self.now()
                if duration is not None and now - began >= duration:
                    reason = "duration reached"
                    break
                if until():
                    reason = "input ended"
                    break
                if now >= next_tick:
                    self.tick(next_tick)
                    next_tick += self.config.stride
                    while next_tick <= now:  # fell behind (slow machine): those windows are skipped too
                        self.windows += 1
                        self.dropped += 1
                        next_tick += self.config.stride
                if on_idle is not None:
                    on_idle()
                time.sleep(min(0.02, max(0.0, next_tick - self.now())))
        except KeyboardInterrupt:
            reason = "interrupted"
        finally:
            worker = self._worker
            if worker is not None and worker.is_alive():
                worker.join(wait_for_last)
            self.emit({"type": "stopped", "time": self.now(), "reason": reason, "windows": self.windows,
                       "results": self.results, "dropped_windows": self.dropped})

    def run_offline(self, media_time: Callable[[], float], ended: Callable[[], bool]) -> None:
        """As fast as possible for a file: windows in media time, each recognised in turn (nothing is dropped)."""
        self.realtime = False
        self.emit({"type": "started", "time": self.now(), "window": self.config.window, "stride": self.config.stride,
                   "mode": self.config.mode, "backend": getattr(self.recognizer, "backend_name", None)})
        end, reason = self.config.window, "input ended"
        try:
            while not self._stopping.is_set():
                while media_time() < end and not ended():
                    time.sleep(0.005)
                if media_time() < end - self.config.stride and ended():
                    break
                if self.tick(end):
                    self._worker.join()
                end += self.config.stride
        except KeyboardInterrupt:
            reason = "interrupted"
        finally:
            if self._worker is not None:
                self._worker.join(30.0)
            self.emit({"type": "stopped", "time": self.now(), "reason": reason, "windows": self.windows,
                       "results": self.results, "dropped_windows": self.dropped})
