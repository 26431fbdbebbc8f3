"""Wiring for the live commands: sources + rings + recognizer + session + sinks. Apps that embed the runtime can
call these, or assemble the same pieces themselves.

A source that never opens is an error after ``open_timeout`` seconds (a wrong camera index must not look like a
quiet room); one that is lost mid-run reconnects. A clip that cannot be decoded further ends the stream with its
error, after the windows it could answer. With ``serve`` the session is also a web page (``web.py``)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from .overlay import Overlay
from .rings import AudioRing, FrameRing
from .session import MAX_WINDOW, LiveConfig, LiveSession
from .sinks import JsonlSink, TerminalView
from .sources import CameraSource, FileSource, MicrophoneSource, Source
from .web import ServeAddress

log = logging.getLogger(__name__)
MAX_FPS = 15.0  # frames kept per second of input: far more than the 8 a window samples


class SourceError(InputError):
    """A camera, microphone or clip could not be opened, or a clip could not be read to its end."""


def _sinks(jsonl: str | Path | JsonlSink | None, on_event: Callable[[dict[str, Any]], None] | None, view: bool):
    sinks: list = []
    closers: list = []
    if jsonl is not None:  # opened first: an unwritable path fails before any source starts
        sink = jsonl if isinstance(jsonl, JsonlSink) else JsonlSink(jsonl)
        sinks.append(sink)
        closers.append(sink.close)
    if view:
        sinks.insert(0, TerminalView())
    if on_event is not None:
        sinks.append(on_event)
    return sinks, closers


def start_web(serve: tuple[ServeAddress, str | None] | None, frames: FrameRing, audio: AudioRing | None,
              session: LiveSession, on_serving: Callable[[str], None] | None):
    """The web view of ``session`` (an address and its token, see ``web.choose_token``), or None without one."""
    if serve is None:
        return None
    from .web import WebHub, WebServer

    hub = WebHub(frames, audio)
    server = WebServer(hub, *serve).start()
    session.sinks.append(hub)
    if on_serving is not None:
        on_serving(server.url)
    return server


def frame_ring(window: float, read_ahead: float = 0.0) -> FrameRing:
    """Room for a whole window (and what a clip reader may read ahead) at the frame rate sources keep."""
    return FrameRing(max_frames=math.ceil((min(window, MAX_WINDOW) + read_ahead + 1.0) * MAX_FPS))


def wait_until_open(sources: list[Source], timeout: float, what: dict[Source, str]) -> None:
    """Every source connected within ``timeout`` seconds, or a SourceError naming the first that did not."""
    deadline = time.monotonic() + timeout
    for source in sources:
        while not source.has_connected.is_set() and not source.finished.is_set() and time.monotonic() < deadline:
            source.has_connected.wait(0.05)
        if not source.has_connected.is_set():
            why = source.last_error or "no answer"
            raise SourceError(f"{source.kind} {source.source_name!r}: did not open within {timeout:g} s ({why}); "
                              f"{what[source]}")


def run_live(recognizer, camera: str | int = 0, microphone: str | int | None = None, use_microphone: bool = True,
             config: LiveConfig | None = None, jsonl: str | Path | JsonlSink | None = None, show: bool = False,
             duration: float | None = None, on_event: Callable[[dict[str, Any]], None] | None = None,
             view: bool = True, stream_factory: Callable | None = None, open_timeout: float = 10.0,
             loop: bool = False, serve: tuple[ServeAddress, str | None] | None = None,
             on_serving: Callable[[str], None] | None = None) -> LiveSession:
    """Camera + microphone until Ctrl-C (or ``duration``). Returns the finished session (its counters). ``serve``
    (an address and its token) also shows the session on a web page; ``on_serving`` gets its URL."""
    config = config or LiveConfig()
    frames = frame_ring(config.window)
    audio = AudioRing() if use_microphone else None
    sinks, closers = _sinks(jsonl, on_event, view)
    session = LiveSession(recognizer, frames, audio, config, sinks)
    camera_source = CameraSource(camera, frames, session.on_source_event, max_fps=MAX_FPS, loop=loop)
    sources: list[Source] = [camera_source]
    advice = {camera_source: "check the device index (ls /dev/video*), the file, the URL or the pipeline"}
    if audio is not None:
        mic = MicrophoneSource(microphone, audio, session.on_source_event, stream_factory=stream_factory)
        sources.append(mic)
        advice[mic] = "pass --mic with a name or index that `python -m sounddevice` lists, or --no-mic"
    else:
        session.notice("microphone off (--no-mic): recognising from video only")
    overlay = Overlay(frames, session.notice) if show else None
    if overlay is not None:
        session.sinks.append(overlay.on_event)
    web = None
    try:
        web = start_web(serve, frames, audio, session, on_serving)
        for source in sources:
            source.start()
        wait_until_open(sources, open_timeout, advice)
        session.run(duration=duration, until=lambda: camera_source.finished.is_set(),
                    on_idle=overlay.update if overlay else None)
    finally:
        _teardown(sources, overlay, web, closers)
    return session


def run_stream(recognizer, clip: str | Path, config: LiveConfig | None = None, realtime: bool = True,
               jsonl: str | Path | JsonlSink | None = None, on_event: Callable[[dict[str, Any]], None] | None = None,
               view: bool = True, use_audio: bool = True, serve: tuple[ServeAddress, str | None] | None = None,
               on_serving: Callable[[str], None] | None = None) -> LiveSession:
    """A clip through the live pipeline as if it were a camera and a microphone. Windows are in the clip's time,
    in real time and as fast as possible alike; a clip that breaks off raises SourceError after its windows. A clip
    without an audio track gets silence through the audio path, as ``predict`` does; ``use_audio=False`` is the
    prompt without audio.
    With ``serve`` the clip starts when the first viewer opens the page (a clip is over in seconds with
    ``realtime=False``), and the page stays up after the clip until Ctrl-C."""
    config = config or LiveConfig()
    source_kwargs = dict(realtime=realtime, max_fps=MAX_FPS)
    frames = frame_ring(config.window, read_ahead=0.0 if realtime else 2.0)
    audio = AudioRing() if use_audio else None
    sinks, closers = _sinks(jsonl, on_event, view)
    session = LiveSession(recognizer, frames, audio, config, sinks)
    source = FileSource(clip, frames, audio, session.on_source_event, **source_kwargs)
    web = None
    try:
        web = start_web(serve, frames, audio, session, on_serving)
        if web is not None:
            web.hub.first_viewer.wait()
        source.start()
        while not source.has_connected.is_set() and not source.finished.is_set():
            source.has_connected.wait(0.05)
        if not source.has_connected.is_set():  # it never opened: a clip ffmpeg cannot read
            raise SourceError(str(source.error))
        session.window_origin = source.start_stamp  # the clip's time 0 on the ring clock (0 when not real time)
        if audio is not None and not source.has_audio:  # as `predict` and the published model: silence is fed
            session.audio_available, session.silence_for_missing_audio = False, True
            session.notice(f"{clip} has no audio track: 10 s of silence go through the audio path, as predict and "
                           "the published model do (--video-only: a prompt without audio)")
        linger = (lambda: _linger(session)) if web is not None else None
        if realtime:
            session.run(until=lambda: source.finished.is_set(),
                        input_end=lambda: source.start_stamp + source.media_end, after_input=linger)
        else:
            session.run_offline(source, after_input=linger)
    finally:
        _teardown([source], None, web, closers)
    if source.error is not None and session.failure is None and session.stop_reason == "input ended":
        raise SourceError(f"{source.error}; {session.results} window(s) were answered before it")
    return session


def _teardown(sources: list[Source], overlay: Overlay | None, web, closers: list[Callable[[], None]]) -> None:
    """Stop what a run started, inputs first (so no new data arrives), then the views, then the files."""
    for source in sources:
        source.stop()
    if overlay is not None:
        overlay.close()
    if web is not None:
        web.stop()
    for close in closers:
        close()


def _linger(session: LiveSession) -> None:
    """Keep the page up after the clip, for its viewers, until Ctrl-C or SIGTERM (the session then stops with that
    reason, and the process exits 130 or 143)."""
    session.notice("the clip is over; the page stays up until Ctrl-C")
    while not session.stopping:
        time.sleep(0.2)
