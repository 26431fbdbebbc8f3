"""The one processor: a clip or a live window -> what the model's parts read. Frames become pixel values, audio a
log-mel, and the audio state says what was fed: ``present``, ``missing`` (no track: 10 s of silence go through the
audio path, as the reference does) or ``not used`` (a video-only prompt). Every engine and every job prepares its
inputs here (an engine may compute the same two arrays on its own device: ``model/tensor_media.py``). No torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .audio import CHUNK_SECONDS, N_MELS, SAMPLE_RATE, log_mel, resample, silence
from .decode import Clip, decode_clip
from .frames import IMAGE_SIZE, NUM_FRAMES, check_resize_mode, frames_to_pixels

AUDIO_STATES = ("present", "missing", "not used")
# The audio-window policies: "full" pads every window to the published 30 s of log-mel; "fit" takes the audio's own
# length rounded up to one of FIT_BUCKETS (few shapes, so engines and caches see few); a number is that many seconds.
AUDIO_WINDOWS = ("full", "fit")
FIT_BUCKETS = (1, 2, 4, 8, 15, 30)
# How a window shorter than the full one sits in the prompt (docs/audio-front-end.md): "compact", its own vectors and
# the text after them moved up (the shortest prefill); "positions", its own vectors with the text after them at the
# position ids of the published 30 s layout (rotary embeddings: the same prefill, the text where training saw it);
# "tail", its own vectors followed by the audio part's output for 30 s of silence at the missing positions, so the
# prompt keeps the published length and layout; "auto", the layout the model was adapted to for this window
# (`train adapt`), else "tail" (the one that keeps a model's answers).
AUDIO_LAYOUTS = ("auto", "compact", "positions", "tail")
# fit cuts up to this much rather than take the next bucket: decoders give a clip a few ms more audio than its length
# (AAC's priming and padding), and a 2.02 s track should run as 2 s, not 4 s.
FIT_SLACK_SECONDS = 0.1


def parse_audio_window(value: str | int) -> str | int:
    """``full``, ``fit`` or a whole number of seconds from 1 to 30, or an InputError saying so."""
    if isinstance(value, str) and value in AUDIO_WINDOWS:
        return value
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        seconds = None
    if seconds is None or str(value).strip() not in (str(seconds), f"{seconds}.0") or not 1 <= seconds <= CHUNK_SECONDS:
        raise InputError(f"audio window {value!r}: use full, fit or a whole number of seconds from 1 to "
                         f"{CHUNK_SECONDS}")
    return seconds


def fit_seconds(samples: int, sample_rate: int = SAMPLE_RATE) -> int:
    """The smallest bucket that holds ``samples`` but for FIT_SLACK_SECONDS (the longest when none does: the rest
    is cut, as at 30 s)."""
    needed = math.ceil(samples / sample_rate - FIT_SLACK_SECONDS)
    return next((bucket for bucket in FIT_BUCKETS if bucket >= needed), FIT_BUCKETS[-1])


@dataclass
class ModelInputs:
    """One window, ready for the engine's vision and audio parts."""

    pixel_values: Any  # (num_frames, 3, size, size) float32 in [-1, 1]
    input_features: Any | None  # (1, n_mels, 100 * seconds) log-mel; None when the prompt has no audio
    audio: str  # one of AUDIO_STATES
    audio_seconds: int | None = None  # the log-mel window that ran; None when the prompt has no audio
    waveform: np.ndarray | None = None  # the 16 kHz mono samples the log-mel was made from (silence when missing)
    notes: list[str] = field(default_factory=list)  # what the user should know about this input


@dataclass
class Processor:
    num_frames: int = NUM_FRAMES
    image_size: int = IMAGE_SIZE
    resize_mode: str = "stretch"
    audio_seconds: int = CHUNK_SECONDS  # the window "full" means: the published 30 s, or what a bundle fixed
    n_mels: int = N_MELS
    audio_window: str | int = "full"
    audio_range: tuple[int, int] = (1, CHUNK_SECONDS)  # the windows the engine's audio part accepts

    def __post_init__(self) -> None:
        check_resize_mode(self.resize_mode)
        self.audio_window = self.check_audio_window(self.audio_window)

    def check_audio_window(self, policy: str | int) -> str | int:
        """``policy`` parsed and checked against what the audio part accepts."""
        policy = parse_audio_window(policy)
        low, high = self.audio_range
        if low == high and policy != "full" and policy != low:
            raise InputError(f"audio window {policy}: this engine's audio part takes only {low} s windows (a bundle "
                             "exported with --audio-seconds); export without it to choose the window at run time")
        if isinstance(policy, int) and not low <= policy <= high:
            raise InputError(f"audio window {policy} s: this engine's audio part takes {low} to {high} s")
        return policy

    def window_seconds(self, samples: int, policy: str | int | None = None) -> int:
        """The log-mel window for ``samples`` of 16 kHz audio under ``policy`` (default: the processor's own)."""
        policy = self.audio_window if policy is None else policy
        if policy == "full":
            return self.audio_seconds
        if policy == "fit":
            low, high = self.audio_range
            return min(max(fit_seconds(samples), low), high)
        return int(policy)

    def pixels(self, frames) -> Any:
        return frames_to_pixels(frames, self.resize_mode, self.num_frames, self.image_size)

    def features(self, waveform: np.ndarray, seconds: int | None = None) -> Any:
        """The log-mel of a ``seconds`` window (default: the full one)."""
        return log_mel(waveform, self.n_mels, seconds or self.audio_seconds)[None]

    def __call__(self, frames, audio: np.ndarray | None, sample_rate: int = SAMPLE_RATE, use_audio: bool = True,
                 audio_window: str | int | None = None) -> ModelInputs:
        """RGB frames (any count) and mono audio (None: the input has no audio track) -> ModelInputs, the audio
        under the ``audio_window`` policy (checked; default: the processor's own)."""
        if not use_audio:
            return ModelInputs(self.pixels(frames), None, "not used")
        policy = self.audio_window if audio_window is None else self.check_audio_window(audio_window)
        waveform = silence() if audio is None else resample(np.asarray(audio, np.float32), sample_rate)
        seconds = self.window_seconds(len(waveform), policy)
        return ModelInputs(self.pixels(frames), self.features(waveform, seconds),
                           "present" if audio is not None else "missing", seconds, waveform)

    def decode(self, path: str | Path, use_audio: bool = True) -> Clip:
        """The clip's sampled frames (and audio track), decoded once."""
        return decode_clip(path, self.num_frames, with_audio=use_audio)
