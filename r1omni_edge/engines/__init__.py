"""The torch-free bundle engines: numpy + onnxruntime (or TensorRT), tokenizers. Never imports torch.

``base.py`` holds what every backend shares, ``onnxruntime.py`` and ``tensorrt.py`` run the parts, ``kv_buffer.py``
is the fused decoder's in-place KV cache, and ``recognizer.py`` opens a bundle with the backend the factory picks."""

from .recognizer import BACKENDS, BundleRecognizer, make_backend

__all__ = ["BACKENDS", "BundleRecognizer", "make_backend"]
