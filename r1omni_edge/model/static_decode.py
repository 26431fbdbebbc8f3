"""Greedy decoding with a static KV cache, replayed as a CUDA graph on GPUs (``predict --device cuda``).

Decode of a 0.5B model on a GPU is launch-bound: ~24 layers x a dozen kernels per token. Here the cache is
preallocated to ``max_length``; each step writes its K/V in place at a position held in a device tensor and attends
over the whole buffer with a mask, so every step has the same shapes and addresses and the step can be captured once
as a CUDA graph and replayed per token. On the CPU the same static step runs eagerly (and is tested equal to the
dynamic path there); the capture itself needs CUDA.
"""

from __future__ import annotations

import time

import torch

from .decoder import _rotate_half, qwen2_forward, rope_inverse_frequencies
from .generate import Generation


class StaticDecoder:
    def __init__(self, llm, max_length: int):
        config = llm.config
        self.llm = llm
        self.max_length = max_length
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.hidden_size // self.heads
        weight = llm.lm_head.weight
        self.device, self.dtype = weight.device, weight.dtype
        shape = (1, self.kv_heads, max_length, self.head_dim)
        self.keys = [torch.zeros(shape, device=self.device, dtype=self.dtype) for _ in llm.model.layers]
        self.values = [torch.zeros(shape, device=self.device, dtype=self.dtype) for _ in llm.model.layers]
        self.inv_freq = rope_inverse_frequencies(llm).to(self.device)
        self.columns = torch.arange(max_length, device=self.device)
        # the step's inputs and output live at fixed addresses (what a CUDA graph replays)
        self.token_embed = torch.zeros(1, 1, config.hidden_size, device=self.device, dtype=self.dtype)
        self.position = torch.zeros(1, dtype=torch.long, device=self.device)
        self.logits = torch.zeros(1, config.vocab_size, device=self.device, dtype=torch.float32)
        self.graph = None

    def prefill(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """Run the prompt (dynamic shapes), copy its K/V into the static buffers; returns the last logits."""
        length = inputs_embeds.shape[1]
        if length >= self.max_length:
            raise ValueError(f"prompt of {length} positions does not fit a static cache of {self.max_length}")
        hidden, presents = qwen2_forward(self.llm, inputs_embeds, torch.arange(length, device=self.device)[None],
                                         inv_freq=self.inv_freq)
        for index in range(len(self.keys)):
            self.keys[index][:, :, :length] = presents[2 * index]
            self.values[index][:, :, :length] = presents[2 * index + 1]
        self.position.fill_(length)
        return self.llm.lm_head(hidden[:, -1]).float()

    def _step(self) -> None:
        """One token at ``self.position`` from ``self.token_embed`` into ``self.logits``; static shapes only."""
        batch, groups = 1, self.heads // self.kv_heads
        freqs = self.position.to(torch.float32)[:, None] * self.inv_freq  # (1, D/2)
        angles = torch.cat((freqs, freqs), dim=-1)[None, None]  # (1, 1, 1, D)
        cos, sin = angles.cos().to(self.dtype), angles.sin().to(self.dtype)
        mask = torch.where(self.columns <= self.position, 0.0, torch.finfo(torch.float32).min)  # (T,)
        hidden = self.token_embed
        for index, layer in enumerate(self.llm.model.layers):
            attention = layer.self_attn
            x = layer.input_layernorm(hidden)
            q = attention.q_proj(x).view(batch, 1, self.heads, self.head_dim).transpose(1, 2)
            k = attention.k_proj(x).view(batch, 1, self.kv_heads, self.head_dim).transpose(1, 2)
            v = attention.v_proj(x).view(batch, 1, self.kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            self.keys[index].index_copy_(2, self.position, k)
            self.values[index].index_copy_(2, self.position, v)
            qg = q.reshape(batch, self.kv_heads, groups, 1, self.head_dim)
            scores = torch.matmul(qg, self.keys[index].unsqueeze(2).transpose(-1, -2)) * (self.head_dim ** -0.5)
            probs = torch.softmax(scores.float() + mask, dim=-1).to(self.dtype)
            out = torch.matmul(probs, self.values[index].unsqueeze(2)).reshape(batch, self.heads, 1, self.head_dim)
            hidden = hidden + attention.o_proj(out.transpose(1, 2).reshape(batch, 1, -1))
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        self.logits.copy_(self.llm.lm_head(self.llm.model.norm(hidden)[:, -1]).float())

    def capture(self) -> None:
        """Record the step once as a CUDA graph (after a warm-up on a side stream, as PyTorch requires)."""
        if self.device.type != "cuda":
            return
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        saved = self.position.clone()
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._step()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step()
        self.position.copy_(saved)  # the warm-up and capture wrote K/V at this position; the real step rewrites it

    def step(self, token: int) -> torch.Tensor:
        table = self.llm.get_input_embeddings().weight
        self.token_embed.copy_(table[token].view(1, 1, -1))
        if self.graph is not None:
            self.graph.replay()
        else:
            self._step()
        self.position += 1
        return self.logits


@torch.inference_mode()
def static_greedy_generate(llm, inputs_embeds: torch.Tensor, stop_ids: set[int], max_new_tokens: int,
                           use_graph: bool | None = None) -> Generation:
    """Greedy decoding like ``greedy_generate``, through a static cache (and a CUDA graph on GPUs)."""
    device = inputs_embeds.device
    decoder = StaticDecoder(llm, inputs_embeds.shape[1] + max_new_tokens + 1)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    token = int(decoder.prefill(inputs_embeds)[0].argmax())
    sync()
    prefill_ms = (time.perf_counter() - start) * 1e3
    if use_graph if use_graph is not None else device.type == "cuda":
        decoder.capture()
    ids = [token]
    start = time.perf_counter()
    while token not in stop_ids and len(ids) < max_new_tokens:
        token = int(decoder.step(token)[0].argmax())
        ids.append(token)
    sync()
    decode_ms = (time.perf_counter() - start) * 1e3
    return Generation(ids, prefill_ms, decode_ms, inputs_embeds.shape[1], stopped=token in stop_ids)
