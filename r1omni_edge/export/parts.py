"""The three exportable parts of R1-Omni as plain torch modules with flat tensor inputs and outputs.

Vision and audio call the PyTorch model's own methods, so the export cannot drift from the reference. The decoder
is ``model/decoder.py``'s Qwen2 forward (written out over transformers' own modules): flat past/present KV in the
grouped-query layout (1, kv_heads, length, head_dim), positions as an input, logits of the last position only, and
an lm_head stored as its own pre-transposed weight (untied), so quantizers never touch the embedding table.
One graph serves prefill (past length 0) and single-token decode.

For bundles that need onnxruntime anyway (int8, int4), ``fused_encoder_attention`` traces the SigLIP and Whisper
self-attention as onnxruntime's ``com.microsoft.MultiHeadAttention``, one fused kernel instead of reshapes,
transposes, two MatMuls and a softmax over (heads, S, S): on 2 CPU cores one 1,500-position Whisper layer's
attention takes 42 ms instead of 63 ms. fp32 and fp16 bundles keep plain ONNX, which TensorRT and any runtime read.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ..model.decoder import qwen2_forward, rope_inverse_frequencies
from ..model.omni import OmniModel


class _MultiHeadAttention(torch.autograd.Function):
    """Scaled dot-product attention over (B, S, heads * head_dim) q, k, v: SDPA in torch, onnxruntime's
    MultiHeadAttention (default scale 1 / sqrt(head_dim), as SigLIP and Whisper use) in the traced graph."""

    @staticmethod
    def forward(ctx, q, k, v, num_heads: int):
        batch, length, width = q.shape

        def split(x):
            return x.view(batch, -1, num_heads, width // num_heads).transpose(1, 2)

        return F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).reshape(batch, length,
                                                                                                     width)

    @staticmethod
    def symbolic(g, q, k, v, num_heads):
        out = g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=num_heads)
        out.setType(q.type())
        return out


FUSED_ATTENTION_OPSET = {"com.microsoft": 1}


@contextmanager
def fused_encoder_attention(*towers: nn.Module):
    """While tracing, route every self-attention module of ``towers`` (q/k/v/out projections, no mask) through
    ``_MultiHeadAttention``."""
    patched = []
    for tower in towers:
        for module in tower.modules():
            if not all(hasattr(module, name) for name in ("q_proj", "k_proj", "v_proj", "out_proj", "num_heads")):
                continue

            def forward(hidden_states, attention_mask=None, *args, _module=module, **kwargs):
                if attention_mask is not None:
                    raise ValueError("fused attention is traced for unmasked encoder self-attention only")
                out = _MultiHeadAttention.apply(_module.q_proj(hidden_states), _module.k_proj(hidden_states),
                                                _module.v_proj(hidden_states), _module.num_heads)
                return _module.out_proj(out), None

            module.forward = forward
            patched.append(module)
    try:
        yield len(patched)
    finally:
        for module in patched:
            del module.forward


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
