"""Wiring for the live commands: sources + rings + recognizer + session + sinks. Apps that embed the runtime can
call these, or assemble the same pieces themselves.

A source that never opens is an error after ``open_timeout`` seconds (a wrong camera index must not look like a
quiet room); one that is lost mid-run reconnects. A clip that cannot be decoded further ends the stream with its
error, after the windows it could answer. With ``serve`` the session is also a web page (``web.py``)."""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from .overlay import Overlay
from .rings import AudioRing, FrameRing
from .network import READ_TIMEOUT, NetworkSource, is_network_url
from .scheduler import Scheduler
from .session import MAX_WINDOW, LiveConfig, LiveSession, run_sessions
from .sinks import JsonlSink, TerminalView
from .sources import CameraSource, FileSource, MicrophoneSource, Source
from .streams import DEFAULT_STREAM, StreamSpec, check_streams
from .web import ServeAddress

log = logging.getLogger(__name__)
MAX_FPS = 15.0  # frames kept per second of input: far more than the 8 a window samples
JOIN_SECONDS = READ_TIMEOUT + 2.0  # what a reader thread gets to notice it was stopped (a network read times out)


class SourceError(InputError):
    """A camera, microphone or clip could not be opened, or a clip could not be read to its end."""


def _sinks(jsonl: str | Path | JsonlSink | None, on_event: Callable[[dict[str, Any]], None] | None, view: bool,
           show_stream: bool = False):
    sinks: list = []
    closers: list = []
    if jsonl is not None:  # opened first: an unwritable path fails before any source starts
        sink = jsonl if isinstance(jsonl, JsonlSink) else JsonlSink(jsonl)
        sinks.append(sink)
        closers.append(sink.close)
    if view:
        sinks.insert(0, TerminalView(show_stream=show_stream))
    if on_event is not None:
        sinks.append(on_event)
    return sinks, closers


def start_web(serve: tuple[ServeAddress, str | None] | None, streams: dict[str, tuple[FrameRing, AudioRing | None]],
              sessions: list[LiveSession], on_serving: Callable[[str], None] | None):
    """The web view of the sessions (an address and its token, see ``web.choose_token``), or None without one."""
    if serve is None:
        return None
    from .web import WebHub, WebServer

    hub = WebHub(streams=streams)
    server = WebServer(hub, *serve).start()
    for session in sessions:
        session.sinks.append(hub)
    if on_serving is not None:
        on_serving(server.url)
    return server


def start_mqtt(target, sessions: list[LiveSession], closers: list[Callable[[], None]], timeout: float):
    """Every session's events published to ``target`` (an ``mqtt.MqttTarget``), or nothing without one. Its drops
    go into each stream's ``stopped`` event; it closes (sending what waits) after the sessions stop."""
    if target is None:
        return None
    from .mqtt import MqttSink

    sink = MqttSink(target, [session.name for session in sessions], notice=sessions[0].notice).start(timeout)
    for session in sessions:
        session.sinks.append(sink)
        session.extra_counts.append(sink.counts)
    closers.insert(0, sink.close)
    return sink


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


@dataclass
class Stream:
    """One stream of a run: its session (which holds its rings) and its inputs, the camera first."""

    spec: StreamSpec
    session: LiveSession
    sources: list[Source]


def _inputs(spec: StreamSpec, session: LiveSession, default_microphone: bool, stream_factory: Callable | None,
            open_timeout: float, loop: bool, advice: dict[Source, str]) -> list[Source]:
    """The stream's camera and, where it has one, its microphone. A network camera brings its own sound unless a
    microphone is named; a local camera has the named microphone, or with ``default_microphone`` the system's."""
    on_event, frames, audio = session.on_source_event, session.frames, session.audio
    if is_network_url(spec.camera):
        own_sound = audio is not None and spec.microphone is None
        camera: Source = NetworkSource(spec.camera, frames, audio if own_sound else None, on_event,
                                       max_fps=MAX_FPS, open_timeout=open_timeout)
        session.audio_from_camera = own_sound
        advice[camera] = "check the URL, the user and password, and that the camera answers from here"
    else:
        camera = CameraSource(spec.camera, frames, on_event, max_fps=MAX_FPS, loop=loop)
        own_sound = False
        advice[camera] = "check the device index (ls /dev/video*), the file, the URL or the pipeline"
    sources = [camera]
    if audio is None:
        session.notice("microphone off (--no-mic): recognising from video only")
    elif spec.microphone is not None or (default_microphone and not own_sound):
        mic = MicrophoneSource(spec.microphone, audio, on_event, stream_factory=stream_factory)
        sources.append(mic)
        advice[mic] = "pass --mic with a name or index that `python -m sounddevice` lists, or --no-mic"
    elif not own_sound:
        session.audio_available = False
        session.notice(f"no microphone named for the camera {spec.shown}: recognising from video only (a streams "
                       "file can name one per stream)")
    return sources


def run_streams(recognizer, streams: list[StreamSpec], config: LiveConfig | None = None, use_microphone: bool = True,
                jsonl: str | Path | JsonlSink | None = None, show: bool = False, duration: float | None = None,
                on_event: Callable[[dict[str, Any]], None] | None = None, view: bool = True,
                stream_factory: Callable | None = None, open_timeout: float = 10.0, loop: bool = False,
                serve: tuple[ServeAddress, str | None] | None = None,
                on_serving: Callable[[str], None] | None = None,
                default_microphone: bool = False, mqtt=None) -> list[LiveSession]:
    """Several cameras (and their sound) on one recognizer until Ctrl-C (or ``duration``); every stream's events
    carry its name. Returns the finished sessions (their counters), in the order of ``streams``. A stream's window
    and stride default to ``config``'s. ``serve`` (an address and its token) also shows them on a web page, one
    tile per stream; ``on_serving`` gets its URL. ``default_microphone``: a local camera without a named microphone
    gets the system's default one (one stream, as ``live --camera`` has). ``mqtt`` (an ``mqtt.MqttTarget``)
    publishes every event there too."""
    config = config or LiveConfig()
    check_streams(streams)
    if show and len(streams) > 1:
        raise InputError("--show shows one stream; with several, watch them with --serve")
    sinks, closers = _sinks(jsonl, on_event, view, show_stream=len(streams) > 1)
    scheduler, emit_lock = Scheduler(), threading.Lock()
    runs: list[Stream] = []
    advice: dict[Source, str] = {}
    for spec in streams:
        stream_config = replace(config, window=spec.window or config.window, stride=spec.stride or config.stride)
        stream_config.check()
        frames = frame_ring(stream_config.window)
        audio = AudioRing() if use_microphone else None
        session = LiveSession(recognizer, frames, audio, stream_config, sinks, name=spec.name, scheduler=scheduler,
                              emit_lock=emit_lock)
        runs.append(Stream(spec, session, _inputs(spec, session, default_microphone, stream_factory, open_timeout,
                                                  loop, advice)))
    sessions = [run.session for run in runs]
    sources = [source for run in runs for source in run.sources]
    overlay = Overlay(sessions[0].frames, sessions[0].notice) if show else None
    if overlay is not None:
        sessions[0].sinks.append(overlay.on_event)
    web = None
    cameras = {run.session: run.sources[0] for run in runs}
    try:
        start_mqtt(mqtt, sessions, closers, open_timeout)
        web = start_web(serve, {session.name: (session.frames, session.audio) for session in sessions}, sessions,
                        on_serving)
        for source in sources:
            source.start()
        wait_until_open(sources, open_timeout, advice)
        run_sessions(sessions, duration=duration, ended=lambda session: cameras[session].finished.is_set(),
                     on_idle=overlay.update if overlay else None)
    finally:
        scheduler.close()
        _teardown(sources, overlay, web, closers)
    return sessions


def run_live(recognizer, camera: str | int = 0, microphone: str | int | None = None, use_microphone: bool = True,
             config: LiveConfig | None = None, jsonl: str | Path | JsonlSink | None = None, show: bool = False,
             duration: float | None = None, on_event: Callable[[dict[str, Any]], None] | None = None,
             view: bool = True, stream_factory: Callable | None = None, open_timeout: float = 10.0,
             loop: bool = False, serve: tuple[ServeAddress, str | None] | None = None,
             on_serving: Callable[[str], None] | None = None, mqtt=None) -> LiveSession:
    """One camera + its sound until Ctrl-C (or ``duration``): a network camera's own audio, else the microphone
    (``microphone``, or the system's default). Returns the finished session (its counters). ``serve`` (an address
    and its token) also shows the session on a web page; ``on_serving`` gets its URL."""
    spec = StreamSpec(DEFAULT_STREAM, camera, microphone)
    return run_streams(recognizer, [spec], config, use_microphone, jsonl, show, duration, on_event, view,
                       stream_factory, open_timeout, loop, serve, on_serving, default_microphone=True, mqtt=mqtt)[0]


def run_stream(recognizer, clip: str | Path, config: LiveConfig | None = None, realtime: bool = True,
               jsonl: str | Path | JsonlSink | None = None, on_event: Callable[[dict[str, Any]], None] | None = None,
               view: bool = True, use_audio: bool = True, serve: tuple[ServeAddress, str | None] | None = None,
               on_serving: Callable[[str], None] | None = None, mqtt=None) -> LiveSession:
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
        start_mqtt(mqtt, [session], closers, 10.0)
        web = start_web(serve, {DEFAULT_STREAM: (frames, audio)}, [session], on_serving)
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
    """Stop what a run started, inputs first (so no new data arrives), then the views, then the files. The reader
    threads are waited for: a thread still inside OpenCV's or FFmpeg's reader when the interpreter exits aborts
    the process (exit 134)."""
    for source in sources:
        source.stop()
    deadline = time.monotonic() + JOIN_SECONDS
    for source in sources:
        if source.is_alive():
            source.join(max(0.0, deadline - time.monotonic()))
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
