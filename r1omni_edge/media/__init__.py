"""Media in, model inputs out: decoding (PyAV), frame sampling and preprocessing (Pillow), Whisper log-mel (numpy).

Shared by the PyTorch model and the torch-free runtime, so both see identical inputs. Never imports torch.
"""

from .audio import SAMPLE_RATE, log_mel, resample, silence, to_mono
from .decode import Clip, decode_audio, decode_clip
from .frames import NUM_FRAMES, frames_to_pixels, preprocess_frame, sample_indices

__all__ = [
    "SAMPLE_RATE",
    "NUM_FRAMES",
    "Clip",
    "decode_audio",
    "decode_clip",
    "frames_to_pixels",
    "preprocess_frame",
    "sample_indices",
    "log_mel",
    "resample",
    "silence",
    "to_mono",
]
