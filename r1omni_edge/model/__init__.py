"""PyTorch R1-Omni: the reference model and the training model. Knows nothing of export, runtime or training."""

from .checkpoint import load_model, save_model
from .omni import OmniModel
from .recognizer import TorchRecognizer
from .towers import TowerConfigs

__all__ = ["OmniModel", "TorchRecognizer", "TowerConfigs", "load_model", "save_model"]
