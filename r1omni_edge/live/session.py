"""The live session of one stream: every ``stride`` seconds, the last ``window`` seconds of frames and audio go to
the recognizer's worker thread (``scheduler.py``, shared by every stream of a run). While the worker is busy with
this stream a window is dropped and counted, never queued, so the latency of what comes out stays bounded by one
recognition (with several streams, by one recognition of each other stream). Every event (results, sources lost and found, notices) goes to each
sink: a callback, a JSONL file (flushed per line, so nothing is lost on Ctrl-C) and a terminal view.

Times: every event's ``time`` is seconds since the session began. A result's ``window`` is in the input's own time:
seconds since the session began for a camera, the clip's media time for a clip (real time or as fast as possible
alike, so both give the same windows). Every window is counted once: ``windows = results + dropped + skipped +
failed``. Every event names its stream (``stream``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import InputError, OutputError
from ..recognition import RecognitionOptions
from .rings import AudioRing, FrameRing, clock
from .scheduler import BUSY, QUEUED, Scheduler
from .streams import DEFAULT_STREAM

log = logging.getLogger(__name__)
Sink = Callable[[dict[str, Any]], None]
END_TOLERANCE = 0.05  # seconds: a window may end this far past the input's last sample and still count as inside
MAX_WINDOW = 30.0  # seconds: the model reads at most 30 s of audio, and the rings are sized for it


class Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager stopping us): ends the session like Ctrl-C, with its own reason and exit code."""


LIVE_RECOGNITION = RecognitionOptions(max_new_tokens=256, max_think_tokens=128)  # a window's answer stays short


@dataclass
class LiveConfig:
    window: float = 4.0  # seconds of frames and audio per recognition
    stride: float = 2.0  # seconds between windows
    recognition: RecognitionOptions = LIVE_RECOGNITION  # what each window's recognition does, as given
    min_frames: int = 2  # fewer frames in a window: skip it with a notice

    def check(self) -> None:
        if not (0 < self.window <= MAX_WINDOW) or self.stride <= 0:
            raise InputError(f"--window must be in (0, {MAX_WINDOW:g}] s and --stride positive (got {self.window} "
                             f"and {self.stride})")


class LiveSession:
    def __init__(self, recognizer, frames: FrameRing, audio: AudioRing | None, config: LiveConfig | None = None,
                 sinks: list[Sink] | None = None, now: Callable[[], float] = clock, name: str = DEFAULT_STREAM,
                 scheduler: Scheduler | None = None, emit_lock: threading.Lock | None = None):
        self.recognizer = recognizer
        self.name = name
        self.scheduler = scheduler or Scheduler()
        self._owns_scheduler = scheduler is None
        self.frames = frames
        self.audio = audio
        self.config = config or LiveConfig()
        self.config.check()
        self.sinks = list(sinks or [])
        self.now = now
        self.origin = now()  # the session's time 0
        self.window_origin = self.origin  # the ring stamp that is window time 0 (a clip's start, for clips)
        self.windows = 0
        self.results = 0
        self.dropped = 0  # the worker was busy with this stream, or a newer window replaced it while it waited
        self.skipped = 0  # too few frames in the window
        self.failed = 0  # the recognizer raised
        self.stop_reason: str | None = None
        self.failure: OutputError | None = None  # an output that could not be written: the session stopped for it
        self.audio_available = audio is not None
        # an input that has no audio at all (a clip without a track): silence goes through the audio path, as the
        # published model and `predict` do, instead of a prompt without audio
        self.silence_for_missing_audio = False
        self.audio_from_camera = False  # a network camera carries the sound: its `connected` event says whether
        self.realtime = True  # False in run_offline: windows in media time, recognised one after another
        self._stopping = threading.Event()
        self._emit_lock = emit_lock or threading.Lock()  # shared by the streams of a run: one event at a time
        self.extra_counts: list[Callable[[str], dict[str, int]]] = []  # what outputs add to `stopped` (MQTT drops)
        self._next_tick = 0.0

    # ---- events -------------------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return round(self.now() - self.origin, 3)

    def emit(self, event: dict[str, Any]) -> None:
        event = {"type": event["type"], "stream": self.name, **event}
        with self._emit_lock:
            for sink in list(self.sinks):
                try:
                    sink(event)
                except OutputError as exc:  # an output we cannot write: stop, and say so at the end
                    self.sinks.remove(sink)
                    if self.failure is None:
                        self.failure = exc
                    self._stopping.set()
                except Exception:  # one broken callback must not stop the session or the others
                    log.exception("an event sink failed")

    def notice(self, message: str) -> None:
        self.emit({"type": "notice", "time": self.elapsed(), "message": message})

    def on_source_event(self, event: dict[str, Any]) -> None:
        event = dict(event, time=round(event["time"] - self.origin, 3))
        if event["source"] == "microphone" and event["status"] in ("unavailable", "lost", "gave up"):
            if self.audio_available:
                self.audio_available = False
                self.emit(event)
                self.notice("no microphone: recognising from video only until it comes back")
                return
        if event["source"] == "microphone" and event["status"] == "connected" and self.audio is not None:
            self.audio_available = True
        if event["source"] == "camera" and "audio" in event and self.audio_from_camera:
            had, self.audio_available = self.audio_available, bool(event["audio"])
            self.emit(event)
            if had and not event["audio"]:
                self.notice(f"{event['name']} carries no audio track: recognising from video only")
            return
        self.emit(event)

    def _counts(self) -> dict[str, int]:
        return {"windows": self.windows, "results": self.results, "dropped_windows": self.dropped,
                "skipped_windows": self.skipped, "failed_windows": self.failed}

    def _started(self) -> None:
        self.emit({"type": "started", "time": self.elapsed(), "window": self.config.window,
                   "stride": self.config.stride, "mode": self.config.recognition.mode,
                   "audio_window": self.config.recognition.audio_window,
                   "audio_gate": self.config.recognition.audio_gate,
                   "audio_layout": self.config.recognition.audio_layout,
                   "backend": getattr(self.recognizer, "backend_name", None)})

    def _stopped(self, reason: str) -> None:
        self.stop_reason = reason
        extra = {key: value for counts in self.extra_counts for key, value in counts(self.name).items()}
        self.emit({"type": "stopped", "time": self.elapsed(), "reason": reason, **self._counts(), **extra})

    # ---- one window -----------------------------------------------------------------------------------------------
    def _window(self, start: float, end: float) -> list[float]:
        return [round(max(start - self.window_origin, 0.0), 3), round(end - self.window_origin, 3)]

    def _recognise(self, start: float, end: float, frames: list[np.ndarray], audio: np.ndarray | None,
                   use_audio: bool, offered: float) -> None:
        try:
            began = self.now()
            result = self.recognizer.recognize(frames, audio, use_audio=use_audio, options=self.config.recognition)
            done = self.now()
            latency = dict(result.timings_ms)
            latency["total"] = round((done - began) * 1e3, 3)
            latency["queued"] = round((began - offered) * 1e3, 3)  # waited for the other streams' windows
            if self.realtime:  # how long after the window closed the answer came
                latency["since_window_end"] = round((done - end) * 1e3, 3)
            self.results += 1
            self.emit({"type": "result", "time": self.elapsed(), "window": self._window(start, end),
                       "label": result.label, "probabilities": result.probabilities, "reasoning": result.reasoning,
                       "answer": result.answer, "audio": result.audio, "audio_window": result.audio_window,
                       "audio_layout": result.audio_layout, "audio_gated": result.audio_gated, "frames": len(frames), "latency_ms": latency,
                       "kept_up": latency["total"] <= self.config.stride * 1e3,  # done within one stride
                       "generated_tokens": result.generated_tokens,
                       "dropped_windows": self.dropped})
        except Exception as exc:  # a failed window is reported; the session goes on
            self.failed += 1
            log.exception("recognition failed")
            self.emit({"type": "error", "time": self.elapsed(), "window": self._window(start, end),
                       "message": f"recognition failed: {exc}"})

    def tick(self, end: float, wait: bool = False) -> bool:
        """Take the window ending at ``end`` (ring clock); hand it to the worker, or drop it when the worker is busy
        with this stream (``wait``: wait for the worker instead, for windows that no later input can replace)."""
        self.windows += 1
        start = end - self.config.window
        if not wait and self.scheduler.busy(self.name):
            self.dropped += 1
            return False
        frames = self.frames.window(start, end)
        if len(frames) < self.config.min_frames:
            self.skipped += 1
            self.notice(f"only {len(frames)} frame(s) in the window ending at {self._window(start, end)[1]:.1f} s; "
                        "skipped")
            return False
        audio = self.audio.window(start, end) if (self.audio is not None and self.audio_available) else None
        use_audio = audio is not None or self.silence_for_missing_audio
        offered = self.now()
        outcome = self.scheduler.offer(self.name, lambda: self._recognise(start, end, frames, audio, use_audio, offered),
                                       wait=wait)
        if outcome != QUEUED:  # BUSY: this window is dropped; REPLACED: the stale one it replaced is
            self.dropped += 1
        return outcome != BUSY

    def _last_windows(self, next_end: float, input_end: float) -> None:
        """The input has ended at ``input_end``: the windows that still end inside it, or, when none fits at all
        (a clip shorter than the window), one window over all of it."""
        if self.windows == 0 and self.window_origin < input_end < next_end - END_TOLERANCE:
            self.notice(f"the input ended after {input_end - self.window_origin:.1f} s, shorter than the "
                        f"{self.config.window:g} s window: one window over all of it")
            self.tick(input_end, wait=True)
            return
        while next_end <= input_end + END_TOLERANCE and not self._stopping.is_set():
            self.tick(next_end, wait=True)
            next_end += self.config.stride

    def _join_worker(self, timeout: float | None) -> None:
        self.scheduler.idle(self.name, timeout)

    # ---- the loops ---------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """``stop()`` was called, or an output failed."""
        return self._stopping.is_set()

    def run(self, duration: float | None = None, until: Callable[[], bool] = lambda: False,
            on_idle: Callable[[], None] | None = None, wait_for_last: float = 30.0,
            input_end: Callable[[], float | None] = lambda: None,
            after_input: Callable[[], None] | None = None) -> None:
        """Tick every stride until ``stop()``, ``duration`` seconds, ``until()`` or Ctrl-C; ``on_idle`` runs between
        ticks (the display). When ``until()`` says the input ended, ``input_end()`` (its end on the ring clock) lets
        the windows that end inside it run, then ``after_input`` runs (a page kept up for its viewers) before the
        session stops: Ctrl-C or SIGTERM during it are the session's reason to stop. The window in flight is given
        ``wait_for_last`` seconds to finish."""
        began = self.begin()
        reason = "stopped"
        try:
            while not self._stopping.is_set():
                now = self.now()
                if duration is not None and now - began >= duration:
                    reason = "duration reached"
                    break
                if until():
                    reason = "input ended"
                    end = input_end()
                    if end is not None:
                        self._last_windows(self._next_tick, end)
                    self._after_input(after_input)
                    break
                self.poll(now)
                if on_idle is not None:
                    on_idle()
                time.sleep(min(0.02, max(0.0, self._next_tick - self.now())))
        except KeyboardInterrupt as exc:
            reason = "terminated" if isinstance(exc, Terminated) else "interrupted"
        finally:
            self.finish(reason, wait_for_last)

    def begin(self, phase: float = 0.0) -> float:
        """The session starts ticking now: its first window ends one window (and ``phase`` seconds) after
        ``window_origin``."""
        self._next_tick = self.window_origin + self.config.window + phase
        self._started()
        return self.now()

    @property
    def next_tick(self) -> float:
        return self._next_tick

    def poll(self, now: float) -> None:
        """The window that ``now`` completes, if any; windows a slow machine fell behind on are dropped."""
        if now >= self._next_tick:
            self.tick(self._next_tick)
            self._next_tick += self.config.stride
            while self._next_tick <= now:  # fell behind (slow machine): those windows are dropped too
                self.windows += 1
                self.dropped += 1
                self._next_tick += self.config.stride

    def finish(self, reason: str, wait_for_last: float | None = 30.0) -> None:
        """The window in flight gets ``wait_for_last`` seconds; then the ``stopped`` event with this stream's
        counts."""
        self._join_worker(wait_for_last)
        if self._owns_scheduler:
            self.scheduler.close()
        self._stopped("output failed" if self.failure is not None else reason)

    def _after_input(self, after_input: Callable[[], None] | None) -> None:
        if after_input is not None:
            self._join_worker(None)  # the last window's result comes before whatever follows the input's end
            after_input()

    def run_offline(self, source, after_input: Callable[[], None] | None = None) -> None:
        """As fast as possible for a clip (a FileSource reading in media time): each window is recognised in turn
        (nothing is dropped), and the source reads on only as far as the next window needs. ``after_input`` as in
        ``run``."""
        self.realtime, self.window_origin = False, 0.0
        self._started()
        end, reason = self.config.window, "input ended"
        try:
            while not self._stopping.is_set():
                source.allow(end)
                while not source.has_read(end) and not self._stopping.is_set():
                    source.finished.wait(0.005)
                if self._stopping.is_set():
                    break
                if source.finished.is_set() and source.media_end < end + END_TOLERANCE:
                    self._last_windows(end, source.media_end)
                    self._after_input(after_input)
                    break
                if self.tick(end, wait=True):
                    self._join_worker(None)
                end += self.config.stride
        except KeyboardInterrupt as exc:
            reason = "terminated" if isinstance(exc, Terminated) else "interrupted"
        finally:
            self.finish(reason)


def run_sessions(sessions: list[LiveSession], duration: float | None = None,
                 ended: Callable[[LiveSession], bool] = lambda session: False,
                 on_idle: Callable[[], None] | None = None, wait_for_last: float = 30.0) -> None:
    """Several streams' sessions on one clock and one scheduler: each ticks on its own window and stride. The
    streams' ticks are spread over the shortest stride, so that their windows do not all reach the recognizer at the
    same moment; each stream then runs ``duration`` seconds from its own start, so that every stream gets as many
    windows. A stream whose input ended (``ended``: a video file played once) stops once its last window is
    answered; one whose duration is over drops its window that has not begun (as one stream's would have been
    dropped) and stops once the one being recognised is answered (a recognition always ends: its tokens are
    bounded); all stop on Ctrl-C or SIGTERM,
    or when an output fails, and then the windows in flight get ``wait_for_last`` seconds. Each stream's
    ``stopped`` event carries its own counts."""
    began = clock()
    spread = min(session.config.stride for session in sessions) / len(sessions)
    until: dict[LiveSession, float] = {}
    for index, session in enumerate(sessions):
        session.begin(index * spread)
        until[session] = float("inf") if duration is None else began + duration + index * spread
    active, reason = list(sessions), "stopped"
    try:
        while active:
            if any(session.stopping for session in sessions):
                break
            now = clock()
            for session in list(active):
                why = "input ended" if ended(session) else "duration reached" if now >= until[session] else None
                if why is None:
                    session.poll(now)
                    continue
                if why == "duration reached" and session.scheduler.withdraw(session.name):
                    session.dropped += 1  # not begun when its time was up: dropped, as a single stream's would be
                if session.scheduler.idle(session.name, 0):  # its last window is answered
                    session.finish(why, 0)
                    active.remove(session)
            if on_idle is not None:
                on_idle()
            if active:
                time.sleep(min(0.02, max(0.0, min(session.next_tick for session in active) - clock())))
    except KeyboardInterrupt as exc:
        reason = "terminated" if isinstance(exc, Terminated) else "interrupted"
    finally:
        deadline = clock() + wait_for_last
        for session in active:
            session.finish(reason, max(0.0, deadline - clock()))
