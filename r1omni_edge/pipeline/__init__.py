"""The recognition pipeline, written once and run by any engine: the exported bundle's backends (onnxruntime,
TensorRT) or the PyTorch model. Torch-free, and knows no engine: ``r1omni_edge.open`` opens one behind it."""

from .engine import Engine, EngineInfo, FusedGreedy, FusedLabels
from .recognizer import Recognizer

__all__ = ["Engine", "EngineInfo", "FusedGreedy", "FusedLabels", "Recognizer"]
