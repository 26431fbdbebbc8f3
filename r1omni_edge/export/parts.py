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

Those bundles' decoder (``FusedDecoderPart``) runs onnxruntime's ``com.microsoft.GroupQueryAttention`` with the
rotary embedding inside and a KV buffer of fixed capacity that is both the past and the present: bound to the same
memory, onnxruntime writes the new positions in place and reads only up to the valid length, which the graph takes
from the last position id (positions are the cache's own indices). A decode step then moves one embedding in and one
row of logits out instead of copying the whole cache twice.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ..model.decoder import apply_rotary, grouped_attention, qwen2_forward, rope_inverse_frequencies
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


class _GroupQueryAttention(torch.autograd.Function):
    """One Qwen2 layer's attention over a shared KV buffer: rotary on q and k at positions
    ``total - S .. total - 1``, k and v written there, causal attention over the first ``total`` positions. The
    torch forward computes exactly that (tests and tracing); the traced graph holds onnxruntime's
    GroupQueryAttention, which does it in one kernel and in place when past and present share memory."""

    @staticmethod
    def forward(ctx, q, k, v, past_key, past_value, seqlens_k, total_length, cos_cache, sin_cache, num_heads: int,
                kv_heads: int):
        batch, length, width = q.shape
        head_dim = width // num_heads
        total = int(total_length)
        positions = torch.arange(total - length, total)
        cos = torch.cat((cos_cache[positions], cos_cache[positions]), dim=-1)[None, None]
        sin = torch.cat((sin_cache[positions], sin_cache[positions]), dim=-1)[None, None]

        def heads(x, count):
            return x.view(batch, length, count, head_dim).transpose(1, 2)

        q, key = apply_rotary(heads(q, num_heads), cos, sin), apply_rotary(heads(k, kv_heads), cos, sin)
        present_key, present_value = past_key.clone(), past_value.clone()
        present_key[:, :, total - length:total] = key
        present_value[:, :, total - length:total] = heads(v, kv_heads)
        rows = positions[:, None]
        mask = torch.where(torch.arange(total)[None] <= rows, 0.0, torch.finfo(torch.float32).min)
        out = grouped_attention(q, present_key[:, :, :total], present_value[:, :, :total], mask)
        return out, present_key, present_value

    @staticmethod
    def symbolic(g, q, k, v, past_key, past_value, seqlens_k, total_length, cos_cache, sin_cache, num_heads,
                 kv_heads):
        out, present_key, present_value = g.op(
            "com.microsoft::GroupQueryAttention", q, k, v, past_key, past_value, seqlens_k, total_length, cos_cache,
            sin_cache, num_heads_i=num_heads, kv_num_heads_i=kv_heads, do_rotary_i=1, rotary_interleaved_i=0,
            outputs=3)
        out.setType(q.type())
        present_key.setType(past_key.type())
        present_value.setType(past_value.type())
        return out, present_key, present_value


class FusedDecoderPart(DecoderPart):
    """``DecoderPart`` over a KV buffer of ``capacity`` positions, attention fused (``_GroupQueryAttention``).
    Same inputs and outputs; each past/present is (1, kv_heads, capacity, head_dim), valid up to the last position
    id + 1."""

    def __init__(self, llm, capacity: int):
        super().__init__(llm)
        angles = torch.arange(capacity, dtype=torch.float32)[:, None] * self.inv_freq[None]  # (capacity, D / 2)
        self.register_buffer("cos_cache", angles.cos(), persistent=False)
        self.register_buffer("sin_cache", angles.sin(), persistent=False)
        self.heads, self.kv_heads = llm.config.num_attention_heads, llm.config.num_key_value_heads

    def forward(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor, *past: torch.Tensor):
        last = position_ids[0, -1]
        total = (last + 1).to(torch.int32)  # scalar: the valid length after this call
        seqlens_k = last.to(torch.int32).reshape(1)  # per row: valid length - 1, as onnxruntime counts

        def attend(index: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
            return _GroupQueryAttention.apply(q, k, v, past[2 * index], past[2 * index + 1], seqlens_k, total,
                                              self.cos_cache, self.sin_cache, self.heads, self.kv_heads)

        hidden, presents = qwen2_forward(self.llm, inputs_embeds, position_ids, attend=attend)
        logits = torch.matmul(hidden[:, -1], self.lm_head_t)
        return (logits, *presents)
