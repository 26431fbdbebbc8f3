"""Decode a clip with PyAV: the sampled RGB frames and the audio track as mono 16 kHz. No torch.

Only the frames the model will see are converted to RGB, so long clips cost decode time, not memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MediaError
from .audio import SAMPLE_RATE, to_mono
from .frames import NUM_FRAMES, sample_indices


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
    if not path.exists():
        raise MediaError(f"{path}: no such file; check the path to the clip")
    if path.is_dir():
        raise MediaError(f"{path}: is a directory, not a clip; pass a video file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: the file is empty (0 bytes); the copy or the recording did not finish")


def open_media(path: Path):
    import av

    try:
        return av.open(str(path))
    except av.FFmpegError as exc:
        raise MediaError(
            f"{path}: ffmpeg cannot read this file as a video ({exc.strerror or exc}); is it really a video?"
        ) from exc


class _Mono16k:
    """Audio frames of any rate and layout -> mono float32 at 16 kHz: libswresample resamples at the native layout,
    then the channels are averaged (``to_mono``)."""

    def __init__(self):
        import av

        self._resampler = av.AudioResampler(format="fltp", rate=SAMPLE_RATE)  # keep the channels; averaged below
        self.chunks: list[np.ndarray] = []

    def add(self, frame) -> None:
        """One decoded frame; None flushes what the resampler still holds."""
        self.chunks += [to_mono(f.to_ndarray()) for f in self._resampler.resample(frame)]

    def finish(self) -> np.ndarray:
        self.add(None)
        return np.concatenate(self.chunks).astype(np.float32) if self.chunks else np.zeros(0, np.float32)


def _count_video_packets(path: Path) -> int:
    """For containers whose header gives no frame count (mkv, webm, some streams): a demux pass, no decoding."""
    import av

    with open_media(path) as container:
        stream = container.streams.video[0]
        try:
            return sum(1 for packet in container.demux(stream) if packet.size)
        except av.FFmpegError as exc:
            raise MediaError(f"{path}: the video stream is damaged ({exc}); re-encode or re-record the clip") from exc


def _decode(container, path: Path, wanted: set[int], with_audio: bool
            ) -> tuple[dict[int, np.ndarray], int, np.ndarray | None]:
    """One pass over the packets: the wanted frames as RGB (only those are converted), the frame count, and the
    first audio track as mono 16 kHz (None when there is none or it is not wanted)."""
    import av

    video = container.streams.video[0]
    video.thread_type = "AUTO"
    audio = container.streams.audio[0] if with_audio and container.streams.audio else None
    mono = _Mono16k() if audio is not None else None
    kept: dict[int, np.ndarray] = {}
    samples = None
    count = 0
    try:
        for packet in container.demux(*([video] + ([audio] if audio is not None else []))):
            for frame in packet.decode():
                if packet.stream.type == "video":
                    if count in wanted:
                        kept[count] = frame.to_ndarray(format="rgb24")
                    count += 1
                else:
                    mono.add(frame)
        if mono is not None:
            samples = mono.finish()
    except av.FFmpegError as exc:
        part = "video" if count == 0 or mono is None or not mono.chunks else "media"
        raise MediaError(f"{path}: the {part} stream is damaged ({exc}); re-encode or re-record the clip") from exc
    return kept, count, samples


def decode_audio(path: str | Path) -> np.ndarray | None:
    """The first audio stream as mono float32 at 16 kHz, or None when the file has none."""
    import av

    path = Path(path)
    check_clip_file(path)
    with open_media(path) as container:
        if not container.streams.audio:
            return None
        mono = _Mono16k()
        try:
            for frame in container.decode(container.streams.audio[0]):
                mono.add(frame)
            return mono.finish()
        except av.FFmpegError as exc:
            raise MediaError(f"{path}: the audio stream is damaged ({exc}); re-encode the clip") from exc


def decode_clip(path: str | Path, num_frames: int = NUM_FRAMES, with_audio: bool = True) -> Clip:
    """Decode the frames the model samples (and the audio track) from any file ffmpeg reads: opened and read
    once where the container states its frame count (MP4, MOV), twice where it does not."""
    path = Path(path)
    check_clip_file(path)
    with open_media(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: has no video stream; R1-Omni needs frames (audio-only was never trained)")
        stream = container.streams.video[0]
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
