"""A PyTorch checkpoint behind the recognition pipeline: the reference engine (``engine.py``) on a CPU, the
accelerated one (``accelerated.py``) on a GPU. Its answers are plain greedy by default, as the published model
decodes."""

from __future__ import annotations

from pathlib import Path

import torch

from ..labels import DEFAULT_LABEL_SET, label_set
from ..pipeline.recognizer import Recognizer
from ..prompt import INSTRUCTION, PromptTokenizer
from .accelerated import AcceleratedEngine
from .checkpoint import LoadReport, load_model
from .engine import TorchEngine
from .omni import OmniModel
from .towers import load_bert_tokenizer

__all__ = ["TorchRecognizer"]


class TorchRecognizer(Recognizer):
    """R1-Omni in PyTorch. ``accelerated`` (default: on CUDA devices) picks the engine with the GPU speed-ups."""

    instruction_settable = True

    def __init__(self, model: OmniModel, tokenizer: PromptTokenizer, bert_tokenizer, labels=DEFAULT_LABEL_SET,
                 instruction: str = INSTRUCTION, resize_mode: str = "stretch", report: LoadReport | None = None,
                 compile: bool = False, accelerated: bool | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.bert_tokenizer = bert_tokenizer
        self.report = report
        if accelerated is None:
            accelerated = model.device.type == "cuda"
        arguments = (model, tokenizer, bert_tokenizer, label_set(labels), instruction, resize_mode)
        engine = AcceleratedEngine(*arguments, compile=compile) if accelerated else TorchEngine(*arguments)
        super().__init__(engine, constrain=False)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, siglip=None, whisper=None, bert=None, models_dir=None,
                        dtype="fp32", device="cpu", allow_pickle=False, **kwargs) -> "TorchRecognizer":
        model, report = load_model(checkpoint, siglip, whisper, bert, models_dir, dtype, device, allow_pickle)
        return cls(model, PromptTokenizer(checkpoint), load_bert_tokenizer(Path(report.towers["bert"])),
                   report=report, **kwargs)

    @property
    def instruction(self) -> str:
        return self.engine.instruction

    @instruction.setter
    def instruction(self, text: str) -> None:
        self.engine.instruction = text  # the prompt and the gate follow; a new prefix gets its own cache

    @property
    def resize_mode(self) -> str:
        return self.processor.resize_mode

    @resize_mode.setter
    def resize_mode(self, mode: str) -> None:
        self.processor.resize_mode = mode

    def gate(self, instruction: str) -> torch.Tensor:
        return self.engine.gate_for(instruction)
