"""The one processor: a clip or a live window -> what the model's parts read. Frames become pixel values, audio a
log-mel, and the audio state says what was fed: ``present``, ``missing`` (no track: 10 s of silence go through the
audio path, as the reference does) or ``not used`` (a video-only prompt). Every engine and every job prepares its
inputs here (an engine may compute the same two arrays on its own device: ``model/tensor_media.py``). No torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .audio import CHUNK_SECONDS, N_MELS, SAMPLE_RATE, log_mel, resample, silence
from .decode import Clip, decode_clip
from .frames import IMAGE_SIZE, NUM_FRAMES, check_resize_mode, frames_to_pixels

AUDIO_STATES = ("present", "missing", "not used")


@dataclass
class ModelInputs:
    """One window, ready for the engine's vision and audio parts."""

    pixel_values: Any  # (num_frames, 3, size, size) float32 in [-1, 1]
    input_features: Any | None  # (1, n_mels, 100 * seconds) log-mel; None when the prompt has no audio
    audio: str  # one of AUDIO_STATES
    waveform: np.ndarray | None = None  # the 16 kHz mono samples the log-mel was made from (silence when missing)
    notes: list[str] = field(default_factory=list)  # what the user should know about this input


@dataclass
class Processor:
    num_frames: int = NUM_FRAMES
    image_size: int = IMAGE_SIZE
    resize_mode: str = "stretch"
    audio_seconds: int = CHUNK_SECONDS
    n_mels: int = N_MELS

    def __post_init__(self) -> None:
        check_resize_mode(self.resize_mode)

    def pixels(self, frames) -> Any:
        return frames_to_pixels(frames, self.resize_mode, self.num_frames, self.image_size)

    def features(self, waveform: np.ndarray) -> Any:
        return log_mel(waveform, self.n_mels, self.audio_seconds)[None]

    def __call__(self, frames, audio: np.ndarray | None, sample_rate: int = SAMPLE_RATE,
                 use_audio: bool = True) -> ModelInputs:
        """RGB frames (any count) and mono audio (None: the input has no audio track) -> ModelInputs."""
        if not use_audio:
            return ModelInputs(self.pixels(frames), None, "not used")
        waveform = silence() if audio is None else resample(np.asarray(audio, np.float32), sample_rate)
        return ModelInputs(self.pixels(frames), self.features(waveform), "present" if audio is not None else "missing",
                           waveform)

    def decode(self, path: str | Path, use_audio: bool = True) -> Clip:
        """The clip's sampled frames (and audio track), decoded once."""
        return decode_clip(path, self.num_frames, with_audio=use_audio)
