"""The torch preprocessing that a GPU runs (``model/tensor_media.py``) against the numpy/Pillow reference."""

import numpy as np
import pytest
from PIL import Image

from r1omni_edge.errors import MediaError
from r1omni_edge.media import frames_to_pixels, log_mel
from r1omni_edge.model.tensor_media import frames_to_pixels_tensor, log_mel_tensor

GREY_LEVEL = 2 / 255  # one step of uint8 after the [-1, 1] normalisation


def camera_like(rng, height, width):
    """Smooth content (a coarse image enlarged) plus sensor noise: what a camera gives, unlike pure noise."""
    coarse = rng.integers(0, 255, (max(height // 16, 2), max(width // 16, 2), 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)).astype(int)
    return np.clip(image + rng.integers(-8, 9, image.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("mode", ["stretch", "pad"])
def test_frames_match_pillow_within_one_grey_level(mode):
    rng = np.random.default_rng(0)
    shapes = [(360, 640), (640, 360), (224, 224), (100, 80), (500, 300), (31, 700), (720, 1280)]
    for height, width in shapes:
        frames = [camera_like(rng, height, width) for _ in range(3)]  # fewer than 8: black frames appended
        expected = frames_to_pixels(frames, mode)
        got = frames_to_pixels_tensor(frames, "cpu", mode).numpy()
        assert got.shape == expected.shape == (8, 3, 224, 224)
        assert np.abs(got - expected).max() <= GREY_LEVEL + 1e-5, (height, width)
        assert np.mean(np.abs(got - expected) > 1e-5) < 0.01  # and nearly every value exact
    many = [camera_like(rng, 90, 120) for _ in range(20)]  # more than 8: the published sampling rule
    assert np.abs(frames_to_pixels_tensor(many, "cpu", mode).numpy() - frames_to_pixels(many, mode)).max() \
        <= GREY_LEVEL + 1e-5


def test_log_mel_matches_numpy():
    rng = np.random.default_rng(1)
    for samples in (0, 123, 16000 * 4, 16000 * 40):
        audio = (0.1 * rng.standard_normal(samples)).astype(np.float32)
        assert np.abs(log_mel_tensor(audio, "cpu").numpy() - log_mel(audio)).max() < 1e-4
    tone = np.sin(np.arange(16000 * 3) * 2 * np.pi * 440 / 16000).astype(np.float32)
    assert np.abs(log_mel_tensor(tone, "cpu", seconds=10).numpy() - log_mel(tone, seconds=10)).max() < 1e-4


def test_bad_inputs_are_named():
    with pytest.raises(MediaError, match="no frames"):
        frames_to_pixels_tensor([], "cpu")
    with pytest.raises(MediaError, match="RGB"):
        frames_to_pixels_tensor([np.zeros((10, 10), np.uint8)], "cpu")
    with pytest.raises(MediaError, match="resize mode"):
        frames_to_pixels_tensor([np.zeros((10, 10, 3), np.uint8)], "cpu", mode="crop")
    with pytest.raises(MediaError, match="NaN"):
        log_mel_tensor(np.array([0.0, np.nan], np.float32), "cpu")
    with pytest.raises(MediaError, match="mono"):
        log_mel_tensor(np.zeros((2, 100), np.float32), "cpu")
