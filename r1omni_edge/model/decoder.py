"""Qwen2's forward written out over transformers' own modules, with the KV cache as flat tensors.

One implementation serves the ONNX decoder (batch 1, last position) and training (batches, all positions, gradients
through a shared prompt prefix whose cache is expanded to G completions). Tested equal to transformers' forward.
Layout of the cache: [key_0, value_0, key_1, value_1, ...], each (batch, kv_heads, length, head_dim).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_inverse_frequencies(llm) -> torch.Tensor:
    config = llm.config
    head_dim = config.hidden_size // config.num_attention_heads
    theta = config.rope_parameters["rope_theta"]
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


def rotary(position_ids: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE (cos, sin) for positions (B, S): each (B, 1, S, head_dim), broadcast over the heads."""
    freqs = position_ids.to(torch.float32)[..., None] * inv_freq  # (B, S, D/2)
    angles = torch.cat((freqs, freqs), dim=-1)[:, None]  # (B, 1, S, D)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + _rotate_half(x) * sin


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Grouped-query attention without repeating K/V: q (B, heads, S, D) against k, v (B, kv_heads, T, D), an
    additive float32 ``mask`` broadcast to (S, T); softmax in float32. -> (B, S, heads * D)."""
    batch, heads, length, head_dim = q.shape
    kv_heads = k.shape[1]
    qg = q.reshape(batch, kv_heads, heads // kv_heads, length, head_dim)  # (B, kv, groups, S, D)
    scores = torch.matmul(qg, k.unsqueeze(2).transpose(-1, -2)) * (head_dim ** -0.5)
    probs = torch.softmax(scores.float() + mask, dim=-1).to(v.dtype)
    out = torch.matmul(probs, v.unsqueeze(2)).reshape(batch, heads, length, head_dim)
    return out.transpose(1, 2).reshape(batch, length, heads * head_dim)


# (layer index, q, k, v as projected: (B, S, heads * D) and (B, S, kv_heads * D)) -> (attention output
# (B, S, heads * D), present key, present value): the attention of one layer, rotary embedding included.
Attend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def qwen2_forward(llm, inputs_embeds: torch.Tensor, position_ids: torch.Tensor,
                  past: Sequence[torch.Tensor] | None = None,
                  inv_freq: torch.Tensor | None = None,
                  mask: torch.Tensor | None = None,
                  attend: Attend | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(B, S, hidden) embeddings at ``position_ids`` (B or 1, S) after ``past`` -> (final-norm hidden states
    (B, S, hidden), present cache). Rows are right-padded at most: the causal mask needs no padding mask then.
    ``mask`` (S, P + S, additive, float32) replaces the causal mask (label mode's tree attention). ``attend``
    replaces the attention itself (the export's fused onnxruntime attention, which holds its own cache and rotary);
    ``past``, ``mask`` and ``inv_freq`` are then unused."""
    layers = llm.model.layers
    if attend is None:
        attend = _cached_attention(llm, inputs_embeds, position_ids, past, inv_freq, mask)
    hidden = inputs_embeds
    presents: list[torch.Tensor] = []
    for index, layer in enumerate(layers):
        attention = layer.self_attn
        x = layer.input_layernorm(hidden)
        out, key, value = attend(index, attention.q_proj(x), attention.k_proj(x), attention.v_proj(x))
        presents += [key, value]
        hidden = hidden + attention.o_proj(out)
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    return llm.model.norm(hidden), presents


def _cached_attention(llm, inputs_embeds: torch.Tensor, position_ids: torch.Tensor,
                      past: Sequence[torch.Tensor] | None, inv_freq: torch.Tensor | None,
                      mask: torch.Tensor | None) -> Attend:
    """Qwen2's attention over a cache of flat tensors that grows by concatenation (never changed in place)."""
    config = llm.config
    batch, length = inputs_embeds.shape[0], inputs_embeds.shape[1]
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = config.hidden_size // heads
    if past is None:
        empty = inputs_embeds.new_zeros(batch, kv_heads, 0, head_dim)
        past = [empty] * (2 * config.num_hidden_layers)
    past_length = past[0].shape[2]
    if inv_freq is None:
        inv_freq = rope_inverse_frequencies(llm).to(inputs_embeds.device)
    cos, sin = rotary(position_ids, inv_freq, inputs_embeds.dtype)
    if mask is None:
        rows = torch.arange(length, device=inputs_embeds.device)[:, None] + past_length
        cols = torch.arange(past_length + length, device=inputs_embeds.device)[None, :]
        mask = torch.where(cols <= rows, 0.0, torch.finfo(torch.float32).min)  # (S, P + S): causal over the cache

    def attend(index: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        q = q.view(batch, length, heads, head_dim).transpose(1, 2)
        k = k.view(batch, length, kv_heads, head_dim).transpose(1, 2)
        v = v.view(batch, length, kv_heads, head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        k = torch.cat((past[2 * index], k), dim=2)
        v = torch.cat((past[2 * index + 1], v), dim=2)
        return grouped_attention(q, k, v, mask), k, v

    return attend
