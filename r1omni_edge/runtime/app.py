"""Wiring for the live commands: sources + rings + recognizer + session + sinks. Apps that embed the runtime can
call these, or assemble the same pieces themselves."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from .display import Overlay
from .live import JsonlSink, LiveConfig, LiveSession, TerminalView
from .sources import AudioRing, CameraSource, FileSource, FrameRing, MicrophoneSource

log = logging.getLogger(__name__)


def _sinks(jsonl: str | Path | None, on_event: Callable[[dict[str, Any]], None] | None, view: bool):
    sinks: list = []
    closers: list = []
    if view:
        sinks.append(TerminalView())
    if jsonl is not None:
        sink = JsonlSink(jsonl)
        sinks.append(sink)
        closers.append(sink.close)
    if on_event is not None:
        sinks.append(on_event)
    return sinks, closers


def run_live(recognizer, camera: str | int = 0, microphone: str | int | None = None, use_microphone: bool = True,
             config: LiveConfig | None = None, jsonl: str | Path | None = None, show: bool = False,
             duration: float | None = None, on_event: Callable[[dict[str, Any]], None] | None = None,
             view: bool = True, stream_factory: Callable | None = None) -> LiveSession:
    """Camera + microphone until Ctrl-C (or ``duration``). Returns the finished session (its counters)."""
    config = config or LiveConfig()
    frames = FrameRing()
    audio = AudioRing() if use_microphone else None
    sinks, closers = _sinks(jsonl, on_event, view)
    session = LiveSession(recognizer, frames, audio, config, sinks)
    camera_source = CameraSource(camera, frames, session.on_source_event)
    sources = [camera_source]
    if audio is not None:
        sources.append(MicrophoneSource(microphone, audio, session.on_source_event, stream_factory=stream_factory))
    else:
        session.notice("microphone off (--no-mic): recognising from video only")
    overlay = Overlay(frames, session.notice) if show else None
    if overlay is not None:
        session.sinks.append(overlay.on_event)
    for source in sources:
        source.start()
    try:
        session.run(duration=duration, until=lambda: camera_source.finished.is_set(),
                    on_idle=overlay.update if overlay else None)
    finally:
        for source in sources:
            source.stop()
        if overlay is not None:
            overlay.close()
        for close in closers:
            close()
    return session


def run_stream(recognizer, clip: str | Path, config: LiveConfig | None = None, realtime: bool = True,
               jsonl: str | Path | None = None, on_event: Callable[[dict[str, Any]], None] | None = None,
               view: bool = True, use_audio: bool = True) -> LiveSession:
    """A clip through the live pipeline as if it were a camera and a microphone."""
    config = config or LiveConfig()
    frames = FrameRing(max_frames=512)
    audio = AudioRing() if use_audio else None
    sinks, closers = _sinks(jsonl, on_event, view)
    session = LiveSession(recognizer, frames, audio, config, sinks)
    source = FileSource(clip, frames, audio, session.on_source_event, realtime=realtime)
    source.start()
    try:
        source.connected.wait(10.0) or source.finished.wait(10.0)
        session.media_origin = source.start_stamp  # the clip's time 0 on the session clock (0 when --fast)
        if audio is not None and not source.has_audio:
            session.audio_available = False
            session.notice(f"{clip} has no audio track: recognising from video only")
        if realtime:
            session.run(until=lambda: source.finished.is_set())
        else:
            session.run_offline(media_time=lambda: source.media_time, ended=lambda: source.finished.is_set())
    finally:
        source.stop()
        for close in closers:
            close()
    return session
