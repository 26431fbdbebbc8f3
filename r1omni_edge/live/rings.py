"""Bounded ring buffers that keep only the newest frames and audio, every item stamped on one clock
(``time.monotonic``): the sources write them, the session and the web view read them."""

from __future__ import annotations

import collections
import threading
import time

import numpy as np

from ..media import SAMPLE_RATE

clock = time.monotonic


class FrameRing:
    """The newest RGB frames with their capture times; older ones fall off."""

    def __init__(self, max_frames: int = 128):
        self._frames: collections.deque[tuple[float, np.ndarray]] = collections.deque(maxlen=max_frames)
        self._lock = threading.Lock()

    def push(self, stamp: float, frame: np.ndarray) -> None:
        with self._lock:
            self._frames.append((stamp, frame))

    def window(self, start: float, end: float) -> list[np.ndarray]:
        with self._lock:
            return [frame for stamp, frame in self._frames if start <= stamp <= end]

    def latest(self) -> tuple[float, np.ndarray] | None:
        with self._lock:
            return self._frames[-1] if self._frames else None

    def __len__(self) -> int:
        return len(self._frames)


class AudioRing:
    """The newest ``seconds`` of mono 16 kHz audio; each push is stamped with the time of its last sample."""

    def __init__(self, seconds: float = 35.0, rate: int = SAMPLE_RATE):
        self.rate = rate
        self._buffer = np.zeros(int(seconds * rate), np.float32)
        self._total = 0  # samples written since the last reset
        self._last_stamp: float | None = None
        self._lock = threading.Lock()

    def push(self, stamp: float, samples: np.ndarray) -> None:
        samples = np.asarray(samples, np.float32).ravel()[-len(self._buffer):]
        with self._lock:
            start = self._total % len(self._buffer)
            first = min(len(samples), len(self._buffer) - start)
            self._buffer[start:start + first] = samples[:first]
            self._buffer[: len(samples) - first] = samples[first:]
            self._total += len(samples)
            self._last_stamp = stamp

    def reset(self) -> None:
        """Forget everything (after a gap, old samples no longer line up with the clock)."""
        with self._lock:
            self._total, self._last_stamp = 0, None

    def newest(self, seconds: float) -> np.ndarray | None:
        """The newest ``seconds`` of samples (fewer if fewer are held), or None before the first push."""
        with self._lock:
            if self._last_stamp is None:
                return None
            count = min(int(seconds * self.rate), self._total, len(self._buffer))
            indices = (self._total - count + np.arange(count)) % len(self._buffer)
            return self._buffer[indices].copy()

    def window(self, start: float, end: float, min_coverage: float = 0.5) -> np.ndarray | None:
        """Samples stamped in [start, end], or None when less than ``min_coverage`` of the window is there."""
        with self._lock:
            if self._last_stamp is None:
                return None
            held = min(self._total, len(self._buffer))
            first_stamp = self._last_stamp - (held - 1) / self.rate
            # a small tolerance: stamps are sums of floats, and a boundary sample must not be lost to rounding
            lo = max(0, int(np.ceil((start - first_stamp) * self.rate - 1e-6)))
            hi = min(held, int(np.floor((end - first_stamp) * self.rate + 1e-6)) + 1)
            if hi - lo < min_coverage * (end - start) * self.rate:
                return None
            oldest = self._total - held
            indices = (oldest + np.arange(lo, hi)) % len(self._buffer)
            return self._buffer[indices].copy()
