"""The torch-free runtime: numpy + onnxruntime (or TensorRT), tokenizers, PyAV. Never imports torch."""

from .recognizer import Recognizer

__all__ = ["Recognizer"]
