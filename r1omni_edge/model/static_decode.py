"""Greedy decoding with a static KV cache, replayed as a CUDA graph on GPUs (``predict --device cuda``).

Decode of a 0.5B model on a GPU is launch-bound: ~24 layers x a few dozen kernels per token. Here the cache is
preallocated to ``max_length``; each step reads its token from a device tensor, writes its K/V in place at a position
held in a device tensor, attends over the whole buffer with a mask, and leaves the greedy next token (and a copy in a
history buffer) on the device. Every step therefore has the same shapes and addresses: it is captured once as a CUDA
graph and replayed per token, and the host reads the tokens back only every ``chunk`` steps to look for a stop
(a few steps past a stop are computed and dropped). Each layer's q/k/v and gate/up projections are concatenated
into one matrix each (a snapshot of the weights taken at construction), so a token costs four matrix-vector
products per layer instead of seven. ``compile=True`` also runs the step through ``torch.compile``
first, fusing the norms, rotary embedding and softmax into a few kernels per layer. On the CPU the same static step
runs eagerly (tested equal to the dynamic path there); the capture itself needs CUDA.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .decoder import apply_rotary, grouped_attention, qwen2_forward, rope_inverse_frequencies, rotary
from .generate import GreedyRun


class StaticDecoder:
    def __init__(self, llm, max_length: int, compile: bool = False):
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
        self.table = llm.get_input_embeddings().weight
        with torch.no_grad():  # fused projections: one launch where there were three (q, k, v) and two (gate, up)
            self.qkv = [(torch.cat([l.self_attn.q_proj.weight, l.self_attn.k_proj.weight, l.self_attn.v_proj.weight]),
                         torch.cat([l.self_attn.q_proj.bias, l.self_attn.k_proj.bias, l.self_attn.v_proj.bias]))
                        for l in llm.model.layers]
            self.gate_up = [torch.cat([l.mlp.gate_proj.weight, l.mlp.up_proj.weight]) for l in llm.model.layers]
        # the step's state lives at fixed addresses (what a CUDA graph replays)
        self.token = torch.zeros(1, dtype=torch.long, device=self.device)
        self.position = torch.zeros(1, dtype=torch.long, device=self.device)
        self.count = torch.zeros(1, dtype=torch.long, device=self.device)
        self.history = torch.zeros(max_length, dtype=torch.long, device=self.device)
        self.logits = torch.zeros(1, config.vocab_size, device=self.device, dtype=torch.float32)
        self.run_step = torch.compile(self._step, fullgraph=True, dynamic=False) if compile else self._step
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
        """``self.token`` at ``self.position`` -> logits, the greedy next token into ``self.token`` and the history;
        static shapes and in-place writes only."""
        batch = 1
        cos, sin = rotary(self.position[None], self.inv_freq, self.dtype)  # (1, 1, 1, D)
        mask = torch.where(self.columns <= self.position, 0.0, torch.finfo(torch.float32).min)  # (T,)
        hidden = self.table[self.token].view(1, 1, -1)
        for index, layer in enumerate(self.llm.model.layers):
            attention, mlp = layer.self_attn, layer.mlp
            x = layer.input_layernorm(hidden)
            q, k, v = F.linear(x, *self.qkv[index]).split(
                [self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim], dim=-1)
            q = q.reshape(batch, 1, self.heads, self.head_dim).transpose(1, 2)
            k = k.reshape(batch, 1, self.kv_heads, self.head_dim).transpose(1, 2)
            v = v.reshape(batch, 1, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
            self.keys[index].index_copy_(2, self.position, k)
            self.values[index].index_copy_(2, self.position, v)
            hidden = hidden + attention.o_proj(grouped_attention(q, self.keys[index], self.values[index], mask))
            gate, up = F.linear(layer.post_attention_layernorm(hidden), self.gate_up[index]).chunk(2, dim=-1)
            hidden = hidden + mlp.down_proj(mlp.act_fn(gate) * up)
        self.logits.copy_(self.llm.lm_head(self.llm.model.norm(hidden)[:, -1]).float())
        self.token.copy_(self.logits.argmax(-1))
        self.history.index_copy_(0, self.count, self.token)
        self.position.add_(1)
        self.count.add_(1)

    def capture(self) -> None:
        """Record the step once as a CUDA graph (after warm-ups on a side stream, as PyTorch requires; they also
        compile the step when asked)."""
        if self.device.type != "cuda":
            return
        saved = [t.clone() for t in (self.token, self.position, self.count)]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self.run_step()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.run_step()
        for tensor, value in zip((self.token, self.position, self.count), saved):
            tensor.copy_(value)  # the warm-ups wrote K/V past the prompt; the real steps rewrite those positions

    def decode(self, first: int, max_new_tokens: int, stop_ids: set[int], chunk: int = 8) -> list[int]:
        """Greedy tokens after ``first`` (included) up to a stop id or ``max_new_tokens``."""
        ids = [first]
        self.token.fill_(first)
        self.count.zero_()
        while ids[-1] not in stop_ids and len(ids) < max_new_tokens:
            steps = min(chunk if self.graph is not None else 1, max_new_tokens - len(ids))
            start = len(ids) - 1
            for _ in range(steps):
                if self.graph is not None:
                    self.graph.replay()
                else:
                    self.run_step()
            for token in self.history[start:start + steps].tolist():  # one device-to-host read per chunk
                ids.append(token)
                if token in stop_ids:
                    break
        return ids


def fitting_decoder(llm, decoder: StaticDecoder | None, prompt_length: int, max_new_tokens: int,
                    compile: bool = False) -> StaticDecoder:
    """``decoder`` if it holds the prompt, the new tokens and the capture's warm-up steps; else a new one, rounded up
    to 256 positions so that the next clips (and its CUDA graph) reuse it."""
    needed = prompt_length + max_new_tokens + 8
    if decoder is not None and decoder.max_length >= needed:
        return decoder
    return StaticDecoder(llm, -(-needed // 256) * 256, compile=compile)


@torch.inference_mode()
def static_greedy_generate(llm, inputs_embeds: torch.Tensor, stop_ids: set[int], max_new_tokens: int,
                           use_graph: bool | None = None, compile: bool = False,
                           decoder: StaticDecoder | None = None) -> GreedyRun:
    """Greedy decoding like ``greedy_generate``, through a static cache (and a CUDA graph on GPUs). A ``decoder``
    long enough for the prompt and the new tokens is reused, its graph captured (and step compiled) only once."""
    device = inputs_embeds.device
    decoder = fitting_decoder(llm, decoder, inputs_embeds.shape[1], max_new_tokens, compile)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    token = int(decoder.prefill(inputs_embeds)[0].argmax())
    sync()
    prefill_ms = (time.perf_counter() - start) * 1e3
    if decoder.graph is None and (use_graph if use_graph is not None else device.type == "cuda"):
        decoder.capture()
    start = time.perf_counter()
    ids = decoder.decode(token, max_new_tokens, stop_ids)
    sync()
    decode_ms = (time.perf_counter() - start) * 1e3
    return GreedyRun(ids, prefill_ms, decode_ms, inputs_embeds.shape[1], stopped=ids[-1] in stop_ids)
