"""The PyTorch reference engine: R1-Omni's own modules behind the pipeline's engine interface, read top to bottom.
The decoder step is ``decoder.qwen2_forward`` (the written-out Qwen2 forward the ONNX decoder is traced from, tested
equal to transformers'), so a cache is a list of tensors that no step changes in place. The GPU speed-ups live apart,
in ``accelerated.py``."""

from __future__ import annotations

import numpy as np
import torch

from ..config import adapted_front_end, audio_tokens, visual_tokens
from ..media.audio import CHUNK_SECONDS, N_MELS
from ..media.frames import IMAGE_SIZE
from ..pipeline.engine import EngineInfo
from ..prompt import PromptTokenizer, constant_prefix
from .decoder import qwen2_forward, rope_inverse_frequencies
from .omni import OmniModel

MAX_NEW_TOKENS = 2048  # the published generation limit


class TorchEngine:
    name = "pytorch"

    def __init__(self, model: OmniModel, tokenizer: PromptTokenizer, bert_tokenizer, labels: tuple[str, ...],
                 instruction: str, resize_mode: str = "stretch"):
        self.model = model
        self.text = tokenizer
        self.bert_tokenizer = bert_tokenizer
        self.instruction = instruction  # the gate and the prompt follow it
        config = model.config
        self.info = EngineInfo(num_frames=config.num_frames, image_size=IMAGE_SIZE, resize_mode=resize_mode,
                               audio_seconds=CHUNK_SECONDS, n_mels=N_MELS, labels=tuple(labels),
                               stop_ids=frozenset({tokenizer.eos_id, tokenizer.pad_id}), max_new_tokens=MAX_NEW_TOKENS,
                               visual_tokens=visual_tokens(config.num_frames, IMAGE_SIZE,
                                                           model.tower_configs.siglip.patch_size),
                               audio_tokens=audio_tokens(CHUNK_SECONDS), audio_range=(1, CHUNK_SECONDS),
                               kv_capacity=None, adapted_front_end=adapted_front_end(config))
        self.inv_freq = rope_inverse_frequencies(model.llm).to(model.device)
        self._gates: dict[str, torch.Tensor] = {}
        self._prompts: dict[tuple[str, bool], list[int]] = {}  # (instruction, use_audio) -> the prompt's ids

    def prompt_ids(self, use_audio: bool) -> list[int]:
        """Encoded once per instruction and prompt kind (the template and the tokenizer run once, not per clip)."""
        key = (self.instruction, use_audio)
        if key not in self._prompts:
            self._prompts[key] = self.text.encode_prompt(self.instruction, video=True, audio=use_audio)
        return list(self._prompts[key])

    def prompt_prefix(self, use_audio: bool) -> list[int]:
        return constant_prefix(self.prompt_ids(use_audio))

    @torch.inference_mode()
    def gate_for(self, instruction: str) -> torch.Tensor:
        """The gate depends on the instruction alone: computed once per instruction."""
        if instruction not in self._gates:
            self._gates[instruction] = self.model.gate_weights(self.bert_tokenizer.encode(instruction).ids)
        return self._gates[instruction]

    def gate(self) -> torch.Tensor:
        return self.gate_for(self.instruction)

    @torch.inference_mode()
    def vision(self, pixel_values) -> torch.Tensor:
        return self.model.encode_video(torch.as_tensor(pixel_values), self.gate())

    @torch.inference_mode()
    def audio(self, input_features) -> torch.Tensor:
        return self.model.encode_audio(torch.as_tensor(input_features)[0])

    @torch.inference_mode()
    def embed(self, ids: list[int]) -> torch.Tensor:
        return self.model.llm.get_input_embeddings()(torch.tensor(ids, device=self.model.device))

    def join(self, pieces: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([piece.to(self.model.dtype) for piece in pieces]).unsqueeze(0)

    def empty_cache(self) -> None:
        return None  # qwen2_forward starts an empty cache itself

    @torch.inference_mode()
    def decoder(self, inputs_embeds: torch.Tensor, position_ids: np.ndarray, cache: list[torch.Tensor] | None
                ) -> tuple[np.ndarray, list[torch.Tensor]]:
        llm = self.model.llm
        positions = torch.as_tensor(position_ids, device=inputs_embeds.device)
        hidden, presents = qwen2_forward(llm, inputs_embeds, positions, cache, self.inv_freq)
        return llm.lm_head(hidden[:, -1]).float().cpu().numpy(), presents
