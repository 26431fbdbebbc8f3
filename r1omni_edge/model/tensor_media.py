"""Frame resizing and the Whisper log-mel as torch ops, so that a GPU prepares the inputs beside the model.

On a GPU the numpy/Pillow path (``media/``) costs more than the encoders themselves (tens of ms per clip against a
few). These functions compute the same thing on any torch device: bicubic resizing with antialiasing (the Pillow
kernel, a = -0.5, in two passes each rounded to whole grey levels as Pillow stores them) and the log-mel with
``torch.stft`` over the same filters. Held to the numpy path in the tests: on camera-like frames (smooth content and
sensor noise) pixels within one grey level, log-mel within 1e-4. On pure per-pixel noise the order of Pillow's two
passes matters and a few pixels can move further; the CPU path stays the reference.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..media.audio import CHUNK_SECONDS, HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE, check_waveform, mel_filters
from ..media.frames import (IMAGE_MEAN, IMAGE_SIZE, IMAGE_STD, NUM_FRAMES, PAD_COLOR, check_resize_mode, model_frames,
                            rgb_frame)


def _pad_to_square(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, S, S) with the training grey around it, centred as Pillow's paste does."""
    _, height, width = image.shape
    if height == width:
        return image
    side = max(height, width)
    canvas = torch.tensor(PAD_COLOR, dtype=image.dtype, device=image.device)[:, None, None].expand(3, side, side)
    canvas = canvas.clone()
    top, left = (side - height) // 2, (side - width) // 2
    canvas[:, top:top + height, left:left + width] = image
    return canvas


def _resize_like_pillow(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, size, size) float of whole grey levels: Pillow's two passes, each rounded and clipped to
    0..255 as Pillow stores its intermediate image. The height goes first when the frame is taller than wide and
    than the target, else the width (the order read off Pillow 13's output)."""
    x = image[None].float()
    height, width = x.shape[-2:]
    passes = [(height, size), (size, size)]
    if height > width and height > size:
        passes = [(size, width), (size, size)]
    for shape in passes:
        if tuple(x.shape[-2:]) != shape:
            x = F.interpolate(x, size=shape, mode="bicubic", antialias=True, align_corners=False)
            x = x.round_().clamp_(0, 255)
    return x[0]


def frames_to_pixels_tensor(frames: Sequence[np.ndarray], device: torch.device | str, mode: str = "stretch",
                            num_frames: int = NUM_FRAMES, size: int = IMAGE_SIZE) -> torch.Tensor:
    """``media.frames_to_pixels`` on ``device``: RGB uint8 frames -> (num_frames, 3, size, size) float32."""
    check_resize_mode(mode)
    resized = []
    for frame in model_frames(frames, num_frames):
        image = torch.from_numpy(rgb_frame(frame)).to(device).permute(2, 0, 1)
        if mode == "pad":
            image = _pad_to_square(image)
        resized.append(_resize_like_pillow(image, size))
    pixels = torch.stack(resized) / 255.0
    pixels = (pixels - IMAGE_MEAN) / IMAGE_STD
    if len(resized) < num_frames:  # black frames after the clip's own, as the numpy path
        black = torch.full((num_frames - len(resized), 3, size, size), (0.0 - IMAGE_MEAN) / IMAGE_STD,
                           device=pixels.device)
        pixels = torch.cat([pixels, black])
    return pixels


_FILTERS: dict[tuple[int, str], torch.Tensor] = {}


def log_mel_tensor(audio: np.ndarray, device: torch.device | str, n_mels: int = N_MELS,
                   seconds: int = CHUNK_SECONDS) -> torch.Tensor:
    """``media.log_mel`` on ``device``: mono 16 kHz audio -> (n_mels, 100 * seconds) float32."""
    audio = check_waveform(audio)
    length = seconds * SAMPLE_RATE
    waveform = torch.zeros(length, dtype=torch.float32, device=device)
    clip = torch.from_numpy(np.ascontiguousarray(audio[:length], dtype=np.float32)).to(device)
    waveform[: clip.shape[0]] = clip
    key = (n_mels, str(waveform.device))
    if key not in _FILTERS:
        _FILTERS[key] = torch.from_numpy(mel_filters(n_mels)).float().to(device)
    window = torch.hann_window(N_FFT, periodic=True, device=device)
    spectrum = torch.stft(waveform, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="reflect",
                          return_complex=True)  # (freqs, frames + 1)
    power = spectrum[:, :-1].abs() ** 2  # the last frame is dropped, as Whisper does
    log_spec = torch.clamp(_FILTERS[key].T @ power, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0
