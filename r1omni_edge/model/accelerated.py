"""The accelerated PyTorch engine: the reference engine with the GPU speed-ups, behind the same interface and held
equal to it by the tests. On a GPU the inputs are prepared on the device (``tensor_media``); plain greedy decoding runs through a
static KV cache replayed as one CUDA graph per token (``static_decode``); label mode runs the encoders, the prefill
and the label trie as one forward, one CUDA graph per prompt (``label_graph``). On a CPU the same code runs eagerly.
"""

from __future__ import annotations

import numpy as np
import torch

from ..media.processor import Processor
from ..pipeline.recognizer import prompt_length
from .engine import TorchEngine
from .label_graph import LabelForward
from .static_decode import StaticDecoder, fitting_decoder, static_greedy_generate
from .tensor_media import frames_to_pixels_tensor, log_mel_tensor


class TensorProcessor(Processor):
    """The processor with its two arrays computed by torch on ``device`` (within one grey level and 1e-4 of the
    numpy path)."""

    def __init__(self, device: torch.device, **settings):
        super().__init__(**settings)
        self.device = device

    def pixels(self, frames) -> torch.Tensor:
        return frames_to_pixels_tensor(frames, self.device, self.resize_mode, self.num_frames, self.image_size)

    def features(self, waveform: np.ndarray, seconds: int | None = None) -> torch.Tensor:
        return log_mel_tensor(waveform, self.device, self.n_mels, seconds or self.audio_seconds)[None]


class AcceleratedEngine(TorchEngine):
    name = "pytorch-accelerated"

    def __init__(self, *args, compile: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        info = self.info
        if self.model.device.type == "cuda":  # on a CPU the numpy processor is the reference, and no slower
            self.processor = TensorProcessor(self.model.device, num_frames=info.num_frames,
                                             image_size=info.image_size, resize_mode=info.resize_mode,
                                             audio_seconds=info.audio_seconds, n_mels=info.n_mels,
                                             audio_range=info.audio_range)
        self.compile = compile  # torch.compile the decode step before its CUDA graph is captured (a minute, once)
        self._decoder: StaticDecoder | None = None  # reused, so its CUDA graph is captured once
        self._label_forwards: dict[tuple[int, ...], LabelForward] = {}

    def synchronize(self) -> None:
        if self.model.device.type == "cuda":
            torch.cuda.synchronize()

    def greedy(self, inputs_embeds: torch.Tensor, max_new_tokens: int, stop_ids: set[int]
               ) -> tuple[list[int], float, float]:
        self._decoder = fitting_decoder(self.model.llm, self._decoder, inputs_embeds.shape[1], max_new_tokens,
                                        self.compile)
        generation = static_greedy_generate(self.model.llm, inputs_embeds, stop_ids, max_new_tokens,
                                            decoder=self._decoder)
        return generation.token_ids, generation.prefill_ms, generation.decode_ms

    def label_forward(self, ids: list[int], sequences: dict[str, list[int]],
                      audio_seconds: int | None = None) -> LabelForward:
        """Label mode's single forward for this prompt and audio window (a CUDA graph on GPUs, captured at its
        first clip)."""
        key = (tuple(ids), audio_seconds)
        if key not in self._label_forwards:
            self._label_forwards[key] = LabelForward(self.model, ids, sequences, self.gate(),
                                                     prompt_length(ids, self.info, audio_seconds))
        return self._label_forwards[key]

    def label_logits(self, pixel_values, input_features, ids: list[int], sequences: dict[str, list[int]],
                     audio_seconds: int | None = None):
        features = torch.as_tensor(input_features)[0] if input_features is not None else None
        return self.label_forward(ids, sequences, audio_seconds)(torch.as_tensor(pixel_values), features)
