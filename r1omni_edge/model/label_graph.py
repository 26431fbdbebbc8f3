"""Label mode in one forward pass, replayed as a CUDA graph on GPUs.

Label mode needs the logits right after ``<answer>`` and, where labels share leading tokens, the logits after each
shared prefix (``label_choice``). Instead of decoding that trie node by node, the last token of every shared prefix
joins the prompt in the same forward: it sits at its depth's position and attends to the prompt and to its own
ancestors only (tree attention), so its logits are the ones a step-by-step decode would give (tested). With the
encoders in front, clip -> logits then has static shapes for a given prompt and label set, and a GPU captures the
whole path (SigLIP, Whisper, projectors, prefill) once as a CUDA graph and replays it per clip: one launch instead of
thousands.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from .decoder import qwen2_forward, rope_inverse_frequencies


def shared_prefixes(sequences: dict[str, list[int]]) -> list[tuple[int, ...]]:
    """The trie nodes below the root that more than one label passes through, shallow first."""
    counts = Counter(tuple(ids[:depth]) for ids in sequences.values() for depth in range(1, len(ids)))
    return sorted((prefix for prefix, count in counts.items() if count > 1), key=lambda p: (len(p), p))


class LabelForward:
    """(pixels, log-mel) -> the label trie's logits, for one prompt (ids ending in label mode's suffix)."""

    def __init__(self, model, ids: list[int], sequences: dict[str, list[int]], gate: torch.Tensor,
                 prompt_length: int, use_graph: bool | None = None):
        """``prompt_length``: the prompt's positions with its media (``pipeline.recognizer.prompt_length``, from the
        configuration's token counts), which fixes the graph's shapes before any clip is seen."""
        self.model = model
        self.device = model.device
        self.segments = model.text_segments(ids)
        self.gate = gate
        self.prefixes = shared_prefixes(sequences)
        table = model.llm.get_input_embeddings()
        tokens = torch.tensor([p[-1] for p in self.prefixes], dtype=torch.long, device=self.device)
        self.tree_embeds = table(tokens)[None] if self.prefixes else None
        self.inv_freq = rope_inverse_frequencies(model.llm).to(self.device)
        self._layout(prompt_length)
        self.use_graph = self.device.type == "cuda" if use_graph is None else use_graph
        self.graph = None
        self.static: dict[str, torch.Tensor] = {}

    def _layout(self, prompt_length: int) -> None:
        """Positions, tree-attention mask and the rows whose logits are read, for a prompt of this length."""
        count = len(self.prefixes)
        total = prompt_length + count
        depth = [len(p) for p in self.prefixes]
        positions = list(range(prompt_length)) + [prompt_length + d - 1 for d in depth]
        allowed = np.tril(np.ones((total, total), dtype=bool))
        allowed[prompt_length:, prompt_length:] = False
        index = {prefix: prompt_length + i for i, prefix in enumerate(self.prefixes)}
        for prefix, row in index.items():
            for length in range(1, len(prefix) + 1):  # its ancestors and itself
                allowed[row, index[prefix[:length]]] = True
        mask = np.where(allowed, 0.0, np.finfo(np.float32).min).astype(np.float32)
        self.prompt_length = prompt_length
        self.positions = torch.tensor([positions], device=self.device)
        self.mask = torch.from_numpy(mask).to(self.device)
        self.rows = torch.tensor([prompt_length - 1] + list(index.values()), device=self.device)

    def _embeds(self, pixels: torch.Tensor, mel: torch.Tensor | None) -> torch.Tensor:
        model = self.model
        video = model.encode_video(pixels, self.gate)
        audio = model.encode_audio(mel) if mel is not None else None
        embeds = model.assemble(self.segments, video, audio)
        if self.tree_embeds is not None:
            embeds = torch.cat([embeds, self.tree_embeds.to(embeds.dtype)], dim=1)
        return embeds

    def _forward(self, pixels: torch.Tensor, mel: torch.Tensor | None) -> torch.Tensor:
        embeds = self._embeds(pixels, mel)
        if embeds.shape[1] != self.prompt_length + len(self.prefixes):
            raise ValueError(f"the prompt with its media has {embeds.shape[1] - len(self.prefixes)} positions, the "
                             f"label forward was laid out for {self.prompt_length}")
        hidden, _ = qwen2_forward(self.model.llm, embeds, self.positions, inv_freq=self.inv_freq, mask=self.mask)
        return self.model.llm.lm_head(hidden[0, self.rows]).float()  # (1 + prefixes, vocab)

    @torch.inference_mode()
    def __call__(self, pixels: torch.Tensor, mel: torch.Tensor | None) -> tuple[np.ndarray, dict]:
        """-> (logits after ``<answer>``, {shared prefix: logits after it}) as numpy."""
        logits = self._replay(pixels, mel) if self.use_graph else self._forward(pixels, mel)
        rows = logits.cpu().numpy()
        return rows[0], {prefix: rows[1 + i] for i, prefix in enumerate(self.prefixes)}

    def _replay(self, pixels: torch.Tensor, mel: torch.Tensor | None) -> torch.Tensor:
        if self.graph is None:
            self.static = {"pixels": pixels.clone(), "mel": mel.clone() if mel is not None else None}
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm-up off the default stream, as capture requires
                self._forward(self.static["pixels"], self.static["mel"])
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static["logits"] = self._forward(self.static["pixels"], self.static["mel"])
        if pixels.shape != self.static["pixels"].shape or (mel is None) != (self.static["mel"] is None) or (
                mel is not None and mel.shape != self.static["mel"].shape):
            raise ValueError("label mode's CUDA graph was captured for other input shapes")
        self.static["pixels"].copy_(pixels)
        if mel is not None:
            self.static["mel"].copy_(mel)
        self.graph.replay()
        return self.static["logits"]
