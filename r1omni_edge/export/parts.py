"""The three exportable parts of R1-Omni as plain torch modules with flat tensor inputs and outputs.

Vision and audio call the PyTorch model's own methods, so the export cannot drift from the reference. The decoder
is ``model/decoder.py``'s Qwen2 forward (written out over transformers' own modules): flat past/present KV in the
grouped-query layout (1, kv_heads, length, head_dim), positions as an input, logits of the last position only, and
an lm_head stored as its own pre-transposed weight (untied), so quantizers never touch the embedding table.
One graph serves prefill (past length 0) and single-token decode.
"""

from __future__ import annotations

import torch
from torch import nn

from ..model.decoder import qwen2_forward, rope_inverse_frequencies
from ..model.omni import OmniModel


class VisionPart(nn.Module):
    """(T, 3, 224, 224) pixels -> (T * 49, hidden); the gate of the bundle's instruction is a constant."""

    def __init__(self, model: OmniModel, gate: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("gate", gate.detach().float().clone())

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.encode_video(pixel_values, self.gate)


class AudioPart(nn.Module):
    """(1, 128, F) log-mel -> (F / 6, hidden): Whisper encoder, pool by 3, audio projector."""

    def __init__(self, model: OmniModel):
        super().__init__()
        self.model = model

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.model.encode_audio(mel[0])


class DecoderPart(nn.Module):
    """Qwen2 with a KV cache: (inputs_embeds, position_ids, past K/V per layer) -> (last logits, present K/V)."""

    def __init__(self, llm):
        super().__init__()
        self.llm = llm
        self.register_buffer("inv_freq", rope_inverse_frequencies(llm), persistent=False)
        self.lm_head_t = nn.Parameter(llm.lm_head.weight.detach().t().contiguous().clone(), requires_grad=False)

    def forward(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor, *past: torch.Tensor):
        hidden, presents = qwen2_forward(self.llm, inputs_embeds, position_ids, past, self.inv_freq)
        logits = torch.matmul(hidden[:, -1], self.lm_head_t)
        return (logits, *presents)
