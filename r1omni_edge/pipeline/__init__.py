"""The recognition pipeline, written once and run by any engine: the exported bundle's backends (onnxruntime,
TensorRT) or the PyTorch model. Torch-free: ``open_recognizer`` imports the PyTorch side only for checkpoints."""

from .engine import Engine, EngineInfo, FusedGreedy, FusedLabels
from .open import open_recognizer
from .recognizer import Recognizer

__all__ = ["Engine", "EngineInfo", "FusedGreedy", "FusedLabels", "Recognizer", "open_recognizer"]
