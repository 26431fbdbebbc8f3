"""Whether TensorRT (and cuda-python) can be used here, shared by ``export/`` (which builds engines) and the
TensorRT backend (which runs them). Torch-free."""

from __future__ import annotations

import importlib.util

from ..errors import InputError


class TensorRTMissing(InputError):
    """TensorRT is not importable here."""


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTMissing(
            "TensorRT is not installed here: build and run engines on the GPU or Jetson that uses them "
            "(JetPack ships TensorRT; on x86 use NVIDIA's TensorRT container or wheels from NVIDIA's index)"
        ) from None
    return trt


def engines_available() -> bool:
    """TensorRT and cuda-python are importable (checked without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("tensorrt", "cuda"))
