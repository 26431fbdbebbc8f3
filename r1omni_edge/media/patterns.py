"""Test patterns: moving coloured discs on a noisy background and a tone, deterministic for a seed. ``verify`` feeds
them to both engines when the user brings no clips of their own, and the synthetic clips are written from them.
numpy only."""

from __future__ import annotations

import numpy as np


def make_frames(seconds: float = 2.0, fps: int = 10, size: tuple[int, int] = (160, 120), seed: int = 0,
                color: tuple[int, int, int] = (220, 180, 40), background: tuple[int, int, int] | None = None
                ) -> list[np.ndarray]:
    """RGB uint8 frames: a disc that moves across a noisy background (dark, or tinted with ``background``)."""
    rng = np.random.default_rng(seed)
    tint = np.asarray(background if background is not None else (0, 0, 0), np.int16)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    count = max(1, int(round(seconds * fps)))
    for i in range(count):
        frame = np.clip(rng.integers(0, 40, size=(height, width, 3)) + tint, 0, 255).astype(np.uint8)
        cx = width * (0.2 + 0.6 * i / max(count - 1, 1))
        disc = (xx - cx) ** 2 + (yy - height / 2) ** 2 < (min(width, height) / 4) ** 2
        frame[disc] = color
        frames.append(frame)
    return frames


def make_tone(seconds: float = 2.0, sample_rate: int = 44100, hz: float = 440.0, channels: int = 2,
              volume: float = 0.3, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """(channels, samples) float32 sine of amplitude ``volume``, each channel at a slightly different level, plus
    white noise of standard deviation ``noise``."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = volume * np.sin(2 * np.pi * hz * t)
    tone = np.stack([wave * (1.0 - 0.2 * c) for c in range(channels)])
    if noise:
        tone = tone + np.random.default_rng(seed).normal(0.0, noise, tone.shape)
    return np.clip(tone, -1.0, 1.0).astype(np.float32)
