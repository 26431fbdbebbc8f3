"""Decode a clip with PyAV: the sampled RGB frames and the audio track as mono 16 kHz. No torch.

Only the frames the model will see are converted to RGB, and only the audio the model reads (the first 30 s) is
kept, so long clips cost decode time, not memory. A file is opened only as one of the media containers in
ACCEPTED_FORMATS, read through the file protocol alone: a playlist or a concat script named .mp4 would otherwise make
ffmpeg open the files or URLs it lists. A picture larger than MAX_SIDE x MAX_SIDE or MAX_PIXELS is refused before a
frame is decoded. Whatever PyAV raises on a malformed file becomes a MediaError naming the file.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import MediaError
from .audio import CHUNK_SECONDS, SAMPLE_RATE, to_mono
from .frames import NUM_FRAMES, sample_indices

# ffmpeg's demuxer names: video containers, still images, and the audio files decode_audio reads. Not accepted:
# playlists (hls, dash), concat scripts, image sequences by pattern, devices, raw streams.
ACCEPTED_FORMATS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "flv", "mpegts", "mpeg", "asf", "ogg", "gif",
                    "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "wav", "mp3", "aac", "flac")
MAX_SIDE = 8192  # pixels: 8K frames (7680 x 4320) pass
MAX_PIXELS = 8192 * 4608


@dataclass
class Clip:
    """What a clip gives the model: sampled RGB frames and, when the file has an audio track, 16 kHz mono audio."""

    path: str
    frames: list[np.ndarray]  # sampled RGB uint8 frames (H, W, 3), at most num_frames
    num_decoded_frames: int
    fps: float
    audio: np.ndarray | None  # mono float32 at SAMPLE_RATE, or None when the file has no audio stream
    sample_rate: int = SAMPLE_RATE

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    def notes(self, num_frames: int = NUM_FRAMES) -> list[str]:
        """What the user should know: a clip with fewer frames than the model samples is padded with black frames
        (the published rule), which a still image or a very short clip makes the main part of what it sees."""
        if self.num_decoded_frames >= num_frames:
            return []
        what = "a still image, not a video" if self.num_decoded_frames == 1 else "fewer than the model samples"
        return [f"{self.path}: {self.num_decoded_frames} frame(s) decoded ({what}); the model sees "
                f"{'it' if self.num_decoded_frames == 1 else 'them'} and {num_frames - self.num_decoded_frames} black "
                "frame(s), as the published preprocessing pads short clips, and it was trained on video"]


def check_clip_file(path: Path) -> None:
    try:
        if not path.exists():
            raise MediaError(f"{path}: no such file; check the path to the clip")
        if path.is_dir():
            raise MediaError(f"{path}: is a directory, not a clip; pass a video file")
        empty = path.stat().st_size == 0
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, no permission to look
        raise MediaError(f"{str(path)[:200]}: cannot be used as a clip path ({getattr(exc, 'strerror', None) or exc})"
                         ) from None
    if empty:
        raise MediaError(f"{path}: the file is empty (0 bytes); the copy or the recording did not finish")


def open_media(path: Path):
    """The file opened as one of ACCEPTED_FORMATS, its first video stream's picture size checked."""
    import av

    try:
        container = av.open(str(path), metadata_errors="replace",
                            container_options={"format_whitelist": ",".join(ACCEPTED_FORMATS),
                                               "protocol_whitelist": "file"})
    except av.FFmpegError as exc:
        raise MediaError(
            f"{path}: ffmpeg cannot read this file as a video ({exc.strerror or exc}); is it really a video? (read: "
            "MP4/MOV, MKV/WebM, AVI, FLV, MPEG-TS/PS, ASF/WMV, Ogg, GIF, PNG/JPEG/WebP/BMP/TIFF images, WAV/MP3/AAC/"
            "FLAC audio)"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - PyAV's own errors on malformed headers (e.g. metadata it cannot decode)
        raise MediaError(f"{path}: ffmpeg cannot read this file's header ({type(exc).__name__}: {exc}); the file is "
                         "damaged or not a video") from exc
    if container.streams.video:
        try:
            check_picture_size(container.streams.video[0], path)
        except BaseException:
            container.close()
            raise
    return container


def check_picture_size(stream, path: Path) -> None:
    """Refuse a picture over MAX_SIDE / MAX_PIXELS before any frame is decoded, and make the decoder refuse a
    larger one later in the stream (a size that changes mid-stream)."""
    if stream.codec_context is None:  # FFmpeg knows no decoder for the codec the file names
        raise MediaError(f"{path}: the video stream's codec is one this FFmpeg cannot decode (or the file names a "
                         "codec that does not exist); re-encode the clip, e.g. to H.264")
    width, height = stream.codec_context.width, stream.codec_context.height
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise MediaError(f"{path}: the video says its pictures are {width} x {height} pixels, over the {MAX_SIDE} x "
                         f"{MAX_SIDE} (and {MAX_PIXELS / 1e6:.1f} megapixel) this reader accepts; scale it down "
                         "(ffmpeg -vf scale=1920:-2)")
    stream.codec_context.options = {"max_pixels": str(MAX_PIXELS)}


def first_audio(container, path: Path):
    """The first audio stream, or None when there is none; one whose codec FFmpeg cannot decode is an error (not
    silence: the user should know the clip's sound was not heard)."""
    if not container.streams.audio:
        return None
    stream = container.streams.audio[0]
    if stream.codec_context is None:
        raise MediaError(f"{path}: the audio stream's codec is one this FFmpeg cannot decode; re-encode the audio "
                         "(e.g. to AAC), or recognise without it (--video-only)")
    return stream


@contextlib.contextmanager
def reading(path: Path, what: str = "video") -> Iterator[None]:
    """Decoding inside: any error from PyAV or FFmpeg becomes one MediaError naming the file (``what``: the part
    being read), never a traceback from inside the library."""
    import av

    try:
        yield
    except MediaError:
        raise
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: the {what} stream is damaged ({exc.strerror or exc}); re-encode or re-record the "
                         "clip") from exc
    except (ValueError, TypeError, OverflowError, UnicodeError, IndexError, MemoryError) as exc:
        raise MediaError(f"{path}: the {what} stream cannot be decoded ({type(exc).__name__}: {exc}); re-encode "
                         "the clip") from exc


class _Mono16k:
    """Audio frames of any rate and layout -> mono float32 at 16 kHz: libswresample resamples at the native layout,
    then the channels are averaged (``to_mono``). With ``max_seconds`` only that much is kept (``full`` says so)."""

    def __init__(self, max_seconds: float | None = None):
        import av

        self._resampler = av.AudioResampler(format="fltp", rate=SAMPLE_RATE)  # keep the channels; averaged below
        self.chunks: list[np.ndarray] = []
        self.samples = 0
        self.limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)

    @property
    def full(self) -> bool:
        return self.limit is not None and self.samples >= self.limit

    def add(self, frame) -> None:
        """One decoded frame; None flushes what the resampler still holds."""
        for chunk in self._resampler.resample(frame):
            if not self.full:
                mono = to_mono(chunk.to_ndarray())
                self.chunks.append(mono)
                self.samples += len(mono)

    def finish(self) -> np.ndarray:
        self.add(None)
        audio = np.concatenate(self.chunks).astype(np.float32) if self.chunks else np.zeros(0, np.float32)
        return audio if self.limit is None else audio[: self.limit]


def _count_video_packets(path: Path) -> int:
    """For containers whose header gives no frame count (mkv, webm, some streams): a demux pass, no decoding."""
    with open_media(path) as container, reading(path):
        return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)


def _decode(container, path: Path, wanted: set[int], with_audio: bool
            ) -> tuple[dict[int, np.ndarray], int, np.ndarray | None]:
    """One pass over the packets: the wanted frames as RGB (only those are converted), the frame count, and the
    first 30 s of the first audio track as mono 16 kHz (None when there is none or it is not wanted; the model reads
    no more, and an hour-long track must not fill the memory)."""
    video = container.streams.video[0]
    video.thread_type = "AUTO"
    audio = first_audio(container, path) if with_audio else None
    mono = _Mono16k(CHUNK_SECONDS) if audio is not None else None
    kept: dict[int, np.ndarray] = {}
    samples = None
    count = 0
    with reading(path, "media" if audio is not None else "video"):
        for packet in container.demux(*([video] + ([audio] if audio is not None else []))):
            if packet.stream.type != "video" and mono.full:
                continue
            for frame in packet.decode():
                if packet.stream.type == "video":
                    if count in wanted:
                        kept[count] = frame.to_ndarray(format="rgb24")
                    count += 1
                else:
                    mono.add(frame)
        if mono is not None:
            samples = mono.finish()
    return kept, count, samples


def decode_audio(path: str | Path) -> np.ndarray | None:
    """The first audio stream as mono float32 at 16 kHz, or None when the file has none."""
    path = Path(path)
    check_clip_file(path)
    with open_media(path) as container:
        stream = first_audio(container, path)
        if stream is None:
            return None
        mono = _Mono16k()
        with reading(path, "audio"):
            for frame in container.decode(stream):
                mono.add(frame)
            return mono.finish()


def decode_clip(path: str | Path, num_frames: int = NUM_FRAMES, with_audio: bool = True) -> Clip:
    """Decode the frames the model samples (and the audio track) from any file ffmpeg reads: opened and read
    once where the container states its frame count (MP4, MOV), twice where it does not."""
    path = Path(path)
    check_clip_file(path)
    with open_media(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: has no video stream; R1-Omni needs frames (audio-only was never trained)")
        stream = container.streams.video[0]
        with reading(path):
            fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        expected = stream.frames if stream.frames > 0 else _count_video_packets(path)
        kept, decoded, audio = _decode(container, path, set(sample_indices(expected, num_frames)), with_audio)
    if decoded != expected and decoded > 0:  # the stated count was not the frame count: sample by the real one
        with open_media(path) as container:
            kept, decoded, _ = _decode(container, path, set(sample_indices(decoded, num_frames)), False)
    if decoded == 0:
        raise MediaError(f"{path}: the video stream holds no decodable frame")
    frames = [kept[i] for i in sample_indices(decoded, num_frames)]
    return Clip(str(path), frames, decoded, fps, audio)
