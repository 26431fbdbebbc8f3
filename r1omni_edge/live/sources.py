"""Live inputs: one thread per source writing into a bounded ring buffer (``rings.py``). A source that fails
reports it and reconnects with backoff; a file that ends reports that and stops.

Sources: a camera (OpenCV: device index, video file or GStreamer pipeline for Jetson cameras; network cameras
with their sound are ``network.py``'s), a microphone (sounddevice, 16 kHz mono; the stream is built by a factory,
the seam tests fill with a paced fake), and a clip (PyAV: video and audio, paced in real time or as fast as
possible).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import MediaError
from ..media import SAMPLE_RATE, to_mono
from .rings import AudioRing, FrameRing, clock

log = logging.getLogger(__name__)
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # OpenCV's own warnings would break the one-line errors
EventSink = Callable[[dict[str, Any]], None]


class Source(threading.Thread):
    """A reader thread: ``open`` a handle, ``read`` from it until it ends or fails, reconnect with backoff."""

    kind = "source"
    ends = False  # True for finite inputs (files): their end is final, not a failure

    def __init__(self, name: str, on_event: EventSink | None = None, backoff: tuple[float, float] = (0.5, 8.0),
                 max_attempts: int | None = None):
        super().__init__(name=f"r1omni-{self.kind}", daemon=True)
        self.source_name = name
        self.on_event = on_event or (lambda event: None)
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.connected = threading.Event()
        self.has_connected = threading.Event()  # connected at least once (a clip that has already ended stays opened)
        self.finished = threading.Event()
        self.last_error = ""  # why the last open or read failed
        self.error: Exception | None = None  # why a source that will not come back ended (gave up, or a file failed)
        self._stop_requested = threading.Event()

    def emit(self, status: str, detail: str = "") -> None:
        self.on_event({"type": "source", "time": clock(), "source": self.kind, "name": self.source_name,
                       "status": status, "detail": detail})

    def stop(self) -> None:
        self._stop_requested.set()

    def open(self) -> Any:
        raise NotImplementedError

    def read(self, handle: Any) -> bool:
        """Read and push one item; False when a finite input has ended."""
        raise NotImplementedError

    def close(self, handle: Any) -> None:
        pass

    def run(self) -> None:
        delay, attempts = self.backoff[0], 0
        try:
            while not self._stop_requested.is_set():
                attempts += 1
                try:
                    handle = self.open()
                except Exception as exc:  # any failure to open is reported and retried
                    self.last_error = str(exc)
                    self.emit("unavailable", str(exc))
                    if self.max_attempts is not None and attempts >= self.max_attempts:
                        self.error = exc
                        self.emit("gave up", f"after {attempts} attempts")
                        return
                    self._stop_requested.wait(delay)
                    delay = min(delay * 2, self.backoff[1])
                    continue
                self.connected.set()
                self.has_connected.set()
                self.emit("connected")
                delay, attempts = self.backoff[0], 0
                ended = False
                try:
                    while not self._stop_requested.is_set():
                        if not self.read(handle):
                            ended = True
                            break
                except Exception as exc:  # a device that vanishes mid-read, or a file that cannot be decoded further
                    self.connected.clear()
                    self.last_error = str(exc)
                    if self.ends:  # a file is not a camera: reading it again would fail at the same place
                        self.error = exc
                        self.emit("failed", str(exc))
                        return
                    self.emit("lost", str(exc))
                finally:
                    self.close(handle)
                if ended and self.ends:
                    self.emit("ended")
                    return
                if ended:
                    self.connected.clear()
                    self.emit("lost", "the input stopped delivering")
                if not self._stop_requested.is_set():
                    self.emit("reconnecting", f"in {delay:.1f} s")
                    self._stop_requested.wait(delay)
                    delay = min(delay * 2, self.backoff[1])
        finally:
            self.connected.clear()
            self.finished.set()


class CameraSource(Source):
    """OpenCV capture: a device index ("0"), a video file, an RTSP/HTTP URL, or a GStreamer pipeline (with '!').

    A video file plays at its own frame rate; ``loop`` rewinds it at its end (a camera that never stops, for soak
    runs and demos)."""

    kind = "camera"

    def __init__(self, spec: str | int, frames: FrameRing, on_event: EventSink | None = None, max_fps: float = 15.0,
                 loop: bool = False, **kwargs):
        super().__init__(str(spec), on_event, **kwargs)
        self.spec = spec
        self.frames = frames
        self.min_interval = 1.0 / max_fps if max_fps else 0.0
        self._last = 0.0
        self.is_file = isinstance(spec, (str, Path)) and Path(str(spec)).is_file()
        self.loop = loop and self.is_file
        self.ends = self.is_file and not self.loop

    def open(self):
        import cv2

        spec = self.spec
        if isinstance(spec, str) and spec.isdigit():
            capture = cv2.VideoCapture(int(spec))
        elif isinstance(spec, str) and "!" in spec:
            capture = cv2.VideoCapture(spec, cv2.CAP_GSTREAMER)
        else:
            capture = cv2.VideoCapture(str(spec) if not isinstance(spec, int) else spec)
        if not capture.isOpened():
            capture.release()
            raise ConnectionError(f"cannot open camera {spec!r}")
        self._period = 1.0 / (capture.get(cv2.CAP_PROP_FPS) or 25.0) if self.is_file else 0.0
        self._next = clock()
        return capture

    def read(self, capture) -> bool:
        import cv2

        ok, frame = capture.read()
        if not ok and self.loop:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = capture.read()
        if not ok:
            if self.is_file:
                return False
            raise ConnectionError("the camera returned no frame")
        if self._period:  # a file played as a camera: real-time pace, without drift
            self._next += self._period
            self._stop_requested.wait(max(0.0, self._next - clock()))
        now = clock()
        if now - self._last >= self.min_interval:
            self.frames.push(now, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            self._last = now
        return True

    def close(self, capture) -> None:
        capture.release()


def sounddevice_stream(device: str | int | None, callback, rate: int = SAMPLE_RATE, blocksize: int = 1600):
    """The real microphone: a sounddevice InputStream, 16 kHz mono float32."""
    import sounddevice

    return sounddevice.InputStream(samplerate=rate, channels=1, dtype="float32", device=device,
                                   blocksize=blocksize, callback=callback)


class MicrophoneSource(Source):
    """A microphone through ``stream_factory(callback)`` (sounddevice by default)."""

    kind = "microphone"

    def __init__(self, device: str | int | None, audio: AudioRing, on_event: EventSink | None = None,
                 stream_factory: Callable | None = None, stall_seconds: float = 2.0, **kwargs):
        super().__init__(str(device) if device is not None else "default", on_event, **kwargs)
        self.device = device
        self.audio = audio
        self.stream_factory = stream_factory or (lambda callback: sounddevice_stream(device, callback))
        self.stall_seconds = stall_seconds
        self._last_block = 0.0

    def _callback(self, indata, frames, time_info, status) -> None:
        now = clock()
        self._last_block = now
        self.audio.push(now, np.asarray(indata, np.float32).reshape(-1))

    def open(self):
        stream = self.stream_factory(self._callback)
        self.audio.reset()
        stream.start()
        self._last_block = clock()
        return stream

    def read(self, stream) -> bool:
        time.sleep(0.05)
        if not stream.active or clock() - self._last_block > self.stall_seconds:
            raise ConnectionError("the microphone stopped delivering audio")
        return True

    def close(self, stream) -> None:
        try:
            stream.stop()
            stream.close()
        except Exception:  # closing a vanished device may fail too; nothing more to do
            pass


class PacedAudioStream:
    """A microphone that plays a waveform (16 kHz mono, looped) in real time through the same callback as
    sounddevice's InputStream: for soak runs, demos and tests on machines without a sound card."""

    def __init__(self, waveform: np.ndarray, callback, block: int = 1600, rate: int = SAMPLE_RATE):
        self.waveform = np.asarray(waveform, np.float32).ravel()
        if not len(self.waveform):
            raise ValueError("the waveform is empty")
        self.callback, self.block, self.rate = callback, block, rate
        self.active = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.active = True
        self._thread = threading.Thread(target=self._pump, daemon=True, name="r1omni-paced-audio")
        self._thread.start()

    def _pump(self) -> None:
        position, due = 0, clock()
        while self.active:
            indices = (position + np.arange(self.block)) % len(self.waveform)
            position = (position + self.block) % len(self.waveform)
            due += self.block / self.rate
            time.sleep(max(0.0, due - clock()))
            if self.active:
                self.callback(self.waveform[indices][:, None], self.block, None, None)

    def stop(self) -> None:
        self.active = False
        if self._thread is not None:
            self._thread.join(1.0)

    def close(self) -> None:
        self.stop()


def mono_16k(resampler, frame) -> np.ndarray | None:
    """A decoded audio frame as mono float32 at 16 kHz (None while the resampler holds it back)."""
    chunks = [to_mono(chunk.to_ndarray()) for chunk in resampler.resample(frame)]
    return np.concatenate(chunks) if chunks else None


class FileSource(Source):
    """A clip played as a camera and a microphone: frames and audio on the same clock, in real time or as fast as
    possible. As fast as possible, items are stamped by media time, and the reader waits while it is more than
    ``read_ahead`` seconds past ``allowed_until`` (which the session moves forward window by window), so it never
    overwrites frames that a window still needs; ``has_read`` tells when a window's picture and sound are both in.

    A file that cannot be decoded further ends the source with ``error`` set: reading it again would fail at the
    same place."""

    kind = "file"
    ends = True

    def __init__(self, path: str | Path, frames: FrameRing, audio: AudioRing | None, on_event: EventSink | None = None,
                 realtime: bool = True, max_fps: float = 15.0, read_ahead: float = 2.0, **kwargs):
        super().__init__(str(path), on_event, max_attempts=1, **kwargs)
        self.path = Path(path)
        self.frames = frames
        self.audio = audio
        self.realtime = realtime
        self.min_interval = 1.0 / max_fps if max_fps else 0.0
        self.read_ahead = read_ahead
        self.allowed_until = float("inf") if realtime else 0.0
        self.start_stamp = 0.0
        self.read_up_to = float("-inf")  # every item up to this media time + read_ahead has been read
        self.media_end = 0.0  # end of the content read so far (the latest frame's or audio block's end)
        self.has_audio = False
        self._moved = threading.Condition()

    def has_read(self, until: float) -> bool:
        """Both tracks have been read up to media time ``until`` (the reader waits with an item beyond it), or the
        clip is over. Not "the latest item is past ``until``": the container interleaves the tracks, and a window
        cut when the first of them got there would hold more or less of the other by chance."""
        with self._moved:
            return self.read_up_to >= until or self.finished.is_set()

    def allow(self, until: float) -> None:
        """Let the reader (as fast as possible) go on to media time ``until`` + ``read_ahead``."""
        with self._moved:
            self.allowed_until = until
            self._moved.notify_all()

    def stop(self) -> None:
        super().stop()
        with self._moved:
            self._moved.notify_all()

    def open(self):
        import av

        from ..media.decode import check_clip_file, first_audio, open_media

        check_clip_file(self.path)
        container = open_media(self.path)
        if not container.streams.video:
            container.close()
            raise MediaError(f"{self.path}: has no video stream; R1-Omni needs frames")
        try:
            audio = first_audio(container, self.path) if self.audio is not None else None
        except MediaError:
            container.close()
            raise
        streams = [container.streams.video[0]] + ([audio] if audio is not None else [])
        self.has_audio = bool(container.streams.audio)
        self._resampler = av.AudioResampler(format="fltp", rate=SAMPLE_RATE)
        self._packets = container.demux(*streams)
        self._last_frame = -1e9
        self.start_stamp = clock() if self.realtime else 0.0
        return container

    def _wait_for_room(self, at: float) -> None:
        with self._moved:
            while at > self.allowed_until + self.read_ahead and not self._stop_requested.is_set():
                self.read_up_to = self.allowed_until  # everything before ``at`` is in: the demuxer's order
                self._moved.wait(0.1)

    def read(self, container) -> bool:
        from ..media.decode import reading

        try:
            with reading(self.path):
                return self._read_packet()
        except MediaError as exc:
            cause = exc.__cause__ or exc
            raise MediaError(f"{self.path}: cannot be decoded after {self.media_end:.1f} s of media "
                             f"({getattr(cause, 'strerror', None) or cause}); the file is damaged or truncated") from exc

    def _read_packet(self) -> bool:
        packet = next(self._packets, None)
        if packet is None:
            return False
        for frame in packet.decode():
            if frame.pts is None:
                continue
            at = float(frame.pts * frame.time_base)
            if not self.realtime:
                self._wait_for_room(at)
            stamp = self.start_stamp + at
            if self.realtime:
                wait = stamp - clock()
                if wait > 0:
                    self._stop_requested.wait(wait)
            if packet.stream.type == "video":
                rate = packet.stream.average_rate
                self.media_end = max(self.media_end, at + (1.0 / float(rate) if rate else 0.0))
                if at - self._last_frame >= self.min_interval:
                    self.frames.push(stamp, frame.to_ndarray(format="rgb24"))
                    self._last_frame = at
            elif self.audio is not None:
                samples = mono_16k(self._resampler, frame)
                if samples is not None:
                    self.audio.push(stamp + len(samples) / SAMPLE_RATE, samples)
                    self.media_end = max(self.media_end, at + len(samples) / SAMPLE_RATE)
        return True

    def close(self, container) -> None:
        container.close()
