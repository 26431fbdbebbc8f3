"""Network cameras: an RTSP (or RTSPS, HTTP MJPEG / HLS, RTMP, SRT ...) stream read with PyAV, its picture and its
microphone from one container, as IP cameras send them.

Low latency by default: TCP for RTSP (UDP loses packets on a busy network; a camera that refuses TCP is retried
over UDP), a small probe, a reader thread that takes every packet as it comes (nothing stale waits in a queue:
the rings keep the newest), and a read timeout, so a stream that goes quiet is lost within seconds
and reconnected with backoff (the ``Source`` loop). Items are stamped on the stream's own timestamps, mapped to the
session clock: a picture and the sound it was taken with keep their distance, whatever the network's jitter. A
stream whose timestamps jump (a camera that restarts) is mapped again.

Credentials: a URL may carry a user and password (``rtsp://user:secret@host/...``) or a secret in its query string.
``mask_url`` is the only form of it that leaves this module: events, logs, the JSONL, the web view and ``doctor``
see ``rtsp://user:***@host/...``; FFmpeg's own error texts, which repeat the URL, pass through ``redact``.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from ..errors import InputError
from ..media import SAMPLE_RATE
from .rings import AudioRing, FrameRing, clock
from .sources import EventSink, Source, mono_16k

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "tcp")
# the protocols FFmpeg may use for a network camera; "file" is not among them, so a playlist cannot read local files
PROTOCOLS = "rtsp,rtsps,rtp,srtp,udp,tcp,tls,http,https,httpproxy,crypto,rtmp,rtmps,srt"
SECRET_KEYS = re.compile(r"pass|pwd|token|secret|key|auth|sig", re.IGNORECASE)
RESYNC_SECONDS = 2.0  # a stream stamp this far from the clock is a jump (a camera restarted): map it again
READ_TIMEOUT = 5.0  # seconds without a packet: the stream is lost
TRUST_AFTER = 2.0  # seconds after which a stream whose time runs 20 % off the clock is stamped on arrival


def is_network_url(spec: object) -> bool:
    return isinstance(spec, str) and urllib.parse.urlsplit(spec).scheme.lower() in NETWORK_SCHEMES


def mask_url(url: str) -> str:
    """The URL with its password (and any secret-looking query value) replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
        query = "&".join(
            f"{key}=***" if SECRET_KEYS.search(key) else (f"{key}={value}" if sep else key)
            for key, sep, value in (pair.partition("=") for pair in parts.query.split("&") if pair))
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # not parseable as a URL: show its scheme only
        return url.split(":", 1)[0] + "://***"


def secrets_of(url: str) -> list[str]:
    """The secret parts of a URL as they may appear in text (raw and percent-decoded), longest first."""
    found: set[str] = set()
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password:
            found.add(parts.password)
        for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
            if SECRET_KEYS.search(key) and value:
                found.add(value)
    except ValueError:
        return [url]
    found |= {urllib.parse.unquote(secret) for secret in found}
    return sorted((secret for secret in found if secret), key=len, reverse=True)


def redact(text: str, url: str) -> str:
    """``text`` (an FFmpeg error, which names the URL) with the URL masked and every secret of it replaced."""
    text = text.replace(url, mask_url(url))
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return text


def open_options(url: str) -> dict[str, str]:
    """FFmpeg's options for a live network input: a small probe (half a second), TCP for RTSP. Not ``fflags
    nobuffer``: it discards the probed packets, and with them the first key frame, so a camera with a long key-frame
    interval shows nothing for seconds; the reader thread keeps up with the stream, so nothing stale piles up."""
    options = {"probesize": "32768", "analyzeduration": "500000", "protocol_whitelist": PROTOCOLS}
    if urllib.parse.urlsplit(url).scheme.lower() in ("rtsp", "rtsps"):
        options["rtsp_transport"] = "tcp"
    return options


def open_stream(url: str, timeout: float, transport: str | None = None):
    """The stream opened with PyAV within ``timeout`` seconds, or a ConnectionError with a masked, one-line reason.
    RTSP goes over TCP first; a server that refuses TCP transport is asked again over UDP."""
    import av

    options = open_options(url)
    if transport is not None and "rtsp_transport" in options:
        options["rtsp_transport"] = transport
    began = clock()
    try:
        return av.open(url, options=options, timeout=(timeout, READ_TIMEOUT), metadata_errors="replace")
    except av.FFmpegError as exc:
        # the timeout interrupts FFmpeg, which then reports whatever it was reading as invalid: say what happened
        why = f"no answer within {timeout:g} s" if clock() - began >= 0.95 * timeout else redact(
            str(exc.strerror or exc), url)
        if options.get("rtsp_transport") == "tcp" and transport is None and "Unsupported transport" in str(exc):
            return open_stream(url, timeout, transport="udp")
        raise ConnectionError(f"cannot open {mask_url(url)}: {why}") from None
    except Exception as exc:  # noqa: BLE001 - PyAV's own errors on odd streams; the URL must not leak
        raise ConnectionError(f"cannot open {mask_url(url)}: {redact(f'{type(exc).__name__}: {exc}', url)}") from None


def describe(container) -> tuple[str, bool]:
    """'h264 640x480 25 fps, audio aac 48000 Hz' (or ', no audio track') and whether there is audio."""
    video = container.streams.video[0]
    rate = video.average_rate or video.guessed_rate
    text = f"{video.codec_context.name if video.codec_context else '?'} {video.width}x{video.height}"
    text += f" {float(rate):.0f} fps" if rate else ""
    if container.streams.audio:
        audio = container.streams.audio[0]
        name = audio.codec_context.name if audio.codec_context else "an audio codec this FFmpeg cannot decode"
        return f"{text}, audio {name} {audio.rate} Hz", audio.codec_context is not None
    return f"{text}, no audio track", False


class NetworkSource(Source):
    """A network camera with its microphone: video and audio from one PyAV container onto the session's rings.
    ``audio=None`` reads the picture only (the session then has another microphone, or none). ``has_audio`` tells
    whether the stream, as last opened, carries sound; the ``connected`` event says it in ``audio``."""

    kind = "camera"

    def __init__(self, url: str, frames: FrameRing, audio: AudioRing | None, on_event: EventSink | None = None,
                 max_fps: float = 15.0, open_timeout: float = 10.0, **kwargs):
        super().__init__(mask_url(url), on_event, **kwargs)
        self._url = url  # never shown: mask_url(url) is the name
        self.frames = frames
        self.audio = audio
        self.min_interval = 1.0 / max_fps if max_fps else 0.0
        self.open_timeout = open_timeout
        self.has_audio = False
        self.description = ""

    def emit(self, status: str, detail: str = "") -> None:
        event = {"type": "source", "time": clock(), "source": self.kind, "name": self.source_name,
                 "status": status, "detail": redact(detail, self._url)}
        if status == "connected":  # what the stream carries: the session goes video-only when it has no sound
            event["audio"] = self.has_audio and self.audio is not None
            event["detail"] = self.description
        self.on_event(event)

    def open(self):
        import av

        container = open_stream(self._url, self.open_timeout)
        if not container.streams.video:
            container.close()
            raise ConnectionError(f"{self.source_name} carries no video stream; R1-Omni needs frames")
        self.description, self.has_audio = describe(container)
        video = container.streams.video[0]
        streams = [video] + ([container.streams.audio[0]] if self.has_audio and self.audio is not None else [])
        self._resampler = av.AudioResampler(format="fltp", rate=SAMPLE_RATE)
        self._packets = container.demux(*streams)
        self._offset: dict[str, float] = {}
        self._anchor: float | None = None
        self._first: dict[str, tuple[float, float]] = {}  # per kind: (clock, stream time) of its first item
        self._arrival = False  # the stream's timestamps do not follow real time: stamp on arrival
        self._last_frame = -1e9
        if self.audio is not None:
            self.audio.reset()  # samples from before a reconnect no longer line up with the clock
        return container

    def _stamp(self, kind: str, at: float) -> float:
        """The session-clock time of stream time ``at``: one mapping for the container, set by its first item and
        lowered whenever an item would land in the future (the first items come out of the probe's buffer late, so
        the mapping settles on the quickest delivery). An item more than RESYNC_SECONDS in the past (a jump: a
        camera that restarted, or audio on a clock of its own) maps its stream again. A stream whose time does not
        follow the clock (20 % off after TRUST_AFTER seconds: no real timestamps) is stamped on arrival."""
        now = clock()
        if self._arrival:
            return now
        began, start = self._first.setdefault(kind, (now, at))
        if now - began > TRUST_AFTER and abs((at - start) - (now - began)) > 0.2 * (now - began):
            # an HTTP MJPEG camera sends no timestamps (FFmpeg makes them up at 25 fps): its items are stamped as
            # they arrive from now on
            self._arrival = True
            return now
        if self._anchor is None:
            self._anchor = now - at
        offset = self._offset.get(kind, self._anchor)
        if not now - RESYNC_SECONDS <= offset + at <= now:
            offset = now - at
        self._offset[kind] = offset
        return offset + at

    def read(self, container) -> bool:
        import av

        try:
            packet = next(self._packets, None)
            if packet is None:
                return False  # the server ended the stream: lost, then reconnect
            for frame in packet.decode():
                if frame.pts is None or frame.time_base is None:
                    continue
                at = float(frame.pts * frame.time_base)
                if packet.stream.type == "video":
                    stamp = self._stamp("video", at)
                    if stamp - self._last_frame >= self.min_interval or stamp < self._last_frame:
                        self.frames.push(stamp, frame.to_ndarray(format="rgb24"))
                        self._last_frame = stamp
                elif self.audio is not None:
                    samples = mono_16k(self._resampler, frame)
                    if samples is not None:
                        self.audio.push(self._stamp("audio", at + len(samples) / SAMPLE_RATE), samples)
        except av.FFmpegError as exc:
            raise ConnectionError(redact(str(exc.strerror or exc), self._url)) from None
        return True

    def close(self, container) -> None:
        try:
            container.close()
        except Exception:  # noqa: BLE001 - a connection already gone may fail to close; nothing more to do
            pass


@dataclass
class Probe:
    """What ``doctor`` reports for a network stream."""

    url: str  # masked
    opened: bool
    detail: str  # codecs, or why it did not open
    first_frame_ms: float | None = None
    has_audio: bool = False


def probe(url: str, timeout: float = 10.0) -> Probe:
    """Open the stream, wait for its first picture: whether it answers, its codecs, whether it has sound."""
    import av

    shown = mask_url(url)
    began = clock()
    try:
        container = open_stream(url, timeout)
    except ConnectionError as exc:
        return Probe(shown, False, str(exc))
    try:
        if not container.streams.video:
            return Probe(shown, False, "opened, but it carries no video stream")
        detail, has_audio = describe(container)
        for frame in container.decode(container.streams.video[0]):
            return Probe(shown, True, detail, round((clock() - began) * 1e3, 1), has_audio)
        return Probe(shown, False, f"{detail}; ended before its first frame")
    except av.FFmpegError as exc:
        return Probe(shown, False, f"no frame: {redact(str(exc.strerror or exc), url)}")
    finally:
        container.close()


def check_url(url: str) -> None:
    """Refuse a network URL that cannot be one before anything opens (a port that is not a number)."""
    try:
        urllib.parse.urlsplit(url).port
    except ValueError:
        raise InputError(f"{mask_url(url)}: the port is not a number; expected e.g. rtsp://host:554/stream") from None
