"""Synthetic clips written with PyAV (H.264 + AAC in MP4): moving coloured shapes and a tone, with or without an
audio track. Deterministic for a given seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..media.patterns import make_frames, make_tone


def write_clip(path: str | Path, seconds: float = 2.0, fps: int = 10, size: tuple[int, int] = (160, 120),
               audio: bool = True, tone_hz: float = 440.0, sample_rate: int = 44100, seed: int = 0,
               color: tuple[int, int, int] = (220, 180, 40), background: tuple[int, int, int] | None = None,
               segments: list[dict] | None = None, volume: float = 0.3, noise: float = 0.0) -> Path:
    """Write an MP4 (H.264, and AAC stereo when ``audio``) that any ffmpeg-based reader opens.

    ``segments`` (dicts with seconds, color, background, tone_hz and optionally volume, noise) play one after
    another instead of one scene."""
    import av

    scenes = segments or [dict(seconds=seconds, color=color, background=background, tone_hz=tone_hz, volume=volume,
                               noise=noise)]
    frames: list[np.ndarray] = []
    tones: list[np.ndarray] = []
    for index, scene in enumerate(scenes):
        frames += make_frames(scene["seconds"], fps, size, seed + index, scene["color"], scene.get("background"))
        tones.append(make_tone(scene["seconds"], sample_rate, scene["tone_hz"], volume=scene.get("volume", 0.3),
                               noise=scene.get("noise", 0.0), seed=seed + index))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.options = {"preset": "ultrafast"}
        audio_stream = None
        if audio:
            audio_stream = container.add_stream("aac", rate=sample_rate)
            audio_stream.layout = "stereo"
        for frame in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if audio_stream is not None:
            tone = np.concatenate(tones, axis=1)
            chunk = 1024
            for start in range(0, tone.shape[1], chunk):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start:start + chunk]), format="fltp",
                                                   layout="stereo")
                frame.sample_rate = sample_rate
                frame.pts = start
                for packet in audio_stream.encode(frame):
                    container.mux(packet)
            for packet in audio_stream.encode(None):
                container.mux(packet)
    return path
