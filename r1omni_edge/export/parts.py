"""The three exportable parts of R1-Omni as plain torch modules with flat tensor inputs and outputs.

Vision and audio call the PyTorch model's own methods, so the export cannot drift from the reference. The decoder
is Qwen2's forward written out over transformers' own modules (norms, projections, MLP): flat past/present KV in
the grouped-query layout (1, kv_heads, length, head_dim), positions as an input, logits of the last position only,
and an lm_head stored as its own pre-transposed weight (untied), so quantizers never touch the embedding table.
One graph serves prefill (past length 0) and single-token decode.
"""

from __future__ import annotations

import torch
from torch import nn

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


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class DecoderPart(nn.Module):
    """Qwen2 with a KV cache: (inputs_embeds, position_ids, past K/V per layer) -> (last logits, present K/V)."""

    def __init__(self, llm):
        super().__init__()
        config = llm.config
        self.layers = llm.model.layers
        self.norm = llm.model.norm
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        theta = config.rope_parameters["rope_theta"]
        inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.lm_head_t = nn.Parameter(llm.lm_head.weight.detach().t().contiguous().clone(), requires_grad=False)

    def forward(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor, *past: torch.Tensor):
        hidden = inputs_embeds
        length = hidden.shape[1]
        past_length = past[0].shape[2]
        freqs = position_ids.to(torch.float32)[..., None] * self.inv_freq  # (1, S, D/2)
        angles = torch.cat((freqs, freqs), dim=-1)[:, None]  # (1, 1, S, D)
        cos, sin = angles.cos().to(hidden.dtype), angles.sin().to(hidden.dtype)
        rows = torch.arange(length, device=hidden.device)[:, None] + past_length
        cols = torch.arange(past_length + length, device=hidden.device)[None, :]
        mask = torch.where(cols <= rows, 0.0, torch.finfo(torch.float32).min)  # (S, P + S) causal over the cache
        groups = self.num_heads // self.num_kv_heads
        presents = []
        for index, layer in enumerate(self.layers):
            attention = layer.self_attn
            x = layer.input_layernorm(hidden)
            q = attention.q_proj(x).view(1, length, self.num_heads, self.head_dim).transpose(1, 2)
            k = attention.k_proj(x).view(1, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
            v = attention.v_proj(x).view(1, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            k = torch.cat((past[2 * index], k), dim=2)
            v = torch.cat((past[2 * index + 1], v), dim=2)
            presents += [k, v]
            # grouped-query attention without repeating K/V: (1, kv, groups, S, D) against (1, kv, 1, T, D)
            qg = q.reshape(1, self.num_kv_heads, groups, length, self.head_dim)
            scores = torch.matmul(qg, k.unsqueeze(2).transpose(-1, -2)) * (self.head_dim ** -0.5)
            probs = torch.softmax(scores.float() + mask, dim=-1).to(v.dtype)
            out = torch.matmul(probs, v.unsqueeze(2)).reshape(1, self.num_heads, length, self.head_dim)
            hidden = hidden + attention.o_proj(out.transpose(1, 2).reshape(1, length, -1))
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        last = self.norm(hidden[:, -1])
        logits = torch.matmul(last, self.lm_head_t)
        return (logits, *presents)
