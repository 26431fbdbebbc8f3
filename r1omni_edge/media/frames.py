"""Frame sampling and SigLIP preprocessing, as the published model saw its frames. numpy + Pillow only."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import MediaError

NUM_FRAMES = 8
IMAGE_SIZE = 224
IMAGE_MEAN = 0.5  # SigLIP normalizes every channel with mean 0.5, std 0.5: pixels land in [-1, 1]
IMAGE_STD = 0.5
PAD_COLOR = (127, 127, 127)  # int(mean * 255): the grey that training padded frames with
RESIZE_MODES = ("stretch", "pad")


def sample_indices(num_decoded: int, num_frames: int = NUM_FRAMES) -> list[int]:
    """Indices of the frames the model sees: round((i + 0.5) * (n - 1) / T), halves rounding up.

    With fewer decoded frames than ``num_frames`` every frame is kept (black frames are appended later).
    """
    if num_decoded <= 0:
        return []
    if num_decoded < num_frames:
        return list(range(num_decoded))
    step = (num_decoded - 1) / num_frames
    return [int(np.floor((i + 0.5) * step + 0.5)) for i in range(num_frames)]


def _pad_to_square(image: Image.Image) -> Image.Image:
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), PAD_COLOR)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def check_resize_mode(mode: str) -> None:
    if mode not in RESIZE_MODES:
        raise MediaError(f"resize mode {mode!r} is not one of {RESIZE_MODES}")


def rgb_frame(frame) -> np.ndarray:
    """A frame as a contiguous (H, W, 3) uint8 array, or a MediaError saying what it is instead."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise MediaError(f"a frame must be an RGB array of shape (H, W, 3), got shape {tuple(frame.shape)}")
    return np.ascontiguousarray(frame, dtype=np.uint8)


def model_frames(frames, num_frames: int = NUM_FRAMES) -> list:
    """The frames the model sees: at least one, and more than ``num_frames`` sampled down with the published rule."""
    frames = list(frames)
    if not frames:
        raise MediaError("no frames: the clip or camera gave no picture, so there is nothing to recognise")
    if len(frames) > num_frames:
        frames = [frames[i] for i in sample_indices(len(frames), num_frames)]
    return frames


def preprocess_frame(frame: np.ndarray, mode: str = "stretch", size: int = IMAGE_SIZE) -> np.ndarray:
    """One RGB uint8 frame (H, W, 3) -> float32 (3, size, size) in [-1, 1], resized as Pillow's BICUBIC does."""
    check_resize_mode(mode)
    image = Image.fromarray(rgb_frame(frame), "RGB")
    if mode == "pad":
        image = _pad_to_square(image)
    image = image.resize((size, size), Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.float32) * np.float32(1 / 255)
    pixels = (pixels - np.float32(IMAGE_MEAN)) / np.float32(IMAGE_STD)
    return pixels.transpose(2, 0, 1)


def frames_to_pixels(
    frames: Sequence[np.ndarray] | np.ndarray,
    mode: str = "stretch",
    num_frames: int = NUM_FRAMES,
    size: int = IMAGE_SIZE,
) -> np.ndarray:
    """Already-sampled RGB frames -> (num_frames, 3, size, size) float32, padded with black frames.

    More frames than ``num_frames`` are sampled down with the published rule first.
    """
    pixels = [preprocess_frame(f, mode, size) for f in model_frames(frames, num_frames)]
    black = preprocess_frame(np.zeros((size, size, 3), np.uint8), "stretch", size)
    pixels += [black] * (num_frames - len(pixels))
    return np.stack(pixels)
