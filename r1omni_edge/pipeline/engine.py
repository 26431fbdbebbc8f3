"""The small interface every engine implements: the exported bundle's backends (onnxruntime, TensorRT) and the
PyTorch model alike. An engine runs parts; the recognition flow around them is written once, in ``recognizer.py``.

Arrays that go in are numpy (what the processor makes); media vectors, token embeddings and the cache that come out
are the engine's own (numpy, or torch tensors on its device) and go back into it unchanged; logits come out as
numpy. A cache is never changed in place, so the constant prompt prefix's cache serves every clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class EngineInfo:
    """What the pipeline needs to know of an engine's model."""

    num_frames: int
    image_size: int
    resize_mode: str
    audio_seconds: int  # the log-mel window the audio part reads
    n_mels: int
    labels: tuple[str, ...]
    stop_ids: frozenset[int]
    max_new_tokens: int
    visual_tokens: int  # what the vision part makes of num_frames frames (config.visual_tokens)
    audio_tokens: int  # what the audio part makes of audio_seconds (config.audio_tokens)
    audio_range: tuple[int, int]  # the shortest and longest window (seconds) the audio part accepts
    kv_capacity: int | None  # positions the decoder's cache holds (a fixed buffer), or None: no bound
    answer_room: int | None = None  # positions an answer takes past its free tokens, where the model records it
    adapted_front_end: dict | None = None  # the audio front end the model was adapted to (`train adapt`): its
    # audio_window and audio_layout; None: the published one
    positions_follow_cache: bool = False  # the decoder reads position ids as cache indices (a fused KV buffer), so
    # they must run on without gaps (no "positions" audio layout)


def capacity_error(needed: int, capacity: int) -> InputError:
    """A cache of fixed size (``EngineInfo.kv_capacity``) that a prompt and its tokens do not fit."""
    return InputError(f"the prompt and its tokens need {needed} positions, but this bundle's KV buffer holds "
                      f"{capacity}; ask for fewer --max-new-tokens, or export the bundle again with a larger "
                      "--kv-capacity")


class Text(Protocol):
    """The tokenizer, as far as the pipeline uses it."""

    def encode_text(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class Engine(Protocol):
    name: str
    info: EngineInfo
    text: Text

    def prompt_ids(self, use_audio: bool) -> list[int]:
        """The prompt's token ids, media as their (negative) placeholder ids."""

    def prompt_prefix(self, use_audio: bool) -> list[int]:
        """The prompt's ids before its first placeholder: the same for every clip, so their KV is computed once."""

    def gate(self) -> Any | None:
        """The instruction's (video, body, face) weights of the projector's branches, or None where the vision part
        holds them as a constant (bundles)."""

    def vision(self, pixel_values: np.ndarray) -> Any:
        """(num_frames, 3, size, size) -> (visual tokens, hidden)."""

    def audio(self, input_features: np.ndarray) -> Any:
        """(1, n_mels, frames) -> (audio tokens, hidden)."""

    def embed(self, ids: list[int]) -> Any:
        """Token ids -> (len(ids), hidden)."""

    def join(self, pieces: list[Any]) -> Any:
        """Pieces of (n_i, hidden) -> the decoder's inputs_embeds (1, sum n_i, hidden)."""

    def empty_cache(self) -> Any: ...

    def decoder(self, inputs_embeds: Any, position_ids: np.ndarray, cache: Any) -> tuple[np.ndarray, Any]:
        """Embeddings at ``position_ids`` (1, n) after ``cache`` -> (last position's logits (1, vocab), new cache)."""


@runtime_checkable
class FusedGreedy(Protocol):
    """An engine that decodes greedily on its own device faster than token-by-token calls (a CUDA graph)."""

    def greedy(self, inputs_embeds: Any, max_new_tokens: int, stop_ids: set[int]) -> tuple[list[int], float, float]:
        """The whole prompt -> (greedy ids up to a stop id or the limit, prefill ms, decode ms)."""


@runtime_checkable
class FusedLabels(Protocol):
    """An engine that gives label mode's logits in one forward (tree attention over the labels' shared prefixes)."""

    def label_logits(self, pixel_values: Any, input_features: Any | None, ids: list[int],
                     sequences: dict[str, list[int]], audio_seconds: int | None = None
                     ) -> tuple[np.ndarray, dict[tuple[int, ...], np.ndarray]]:
        """-> (logits after ``<answer>``, {shared label prefix: logits after it}); ``audio_seconds``: the log-mel
        window of ``input_features``."""
