"""What every backend of a bundle shares: the pipeline's engine interface over the manifest's facts and tensor
names, the bundle's embedding table (looked up in numpy) and its tokenizer. Backends subclass ``BundleEngine`` and
run the parts. numpy only, never torch.

Every name a backend binds (tensors, KV inputs and outputs) is read from the manifest, which the exporter wrote from
``bundle.py``. The KV cache is whatever ``decoder`` returns and takes back on the next call: plain numpy arrays on
the CPU, OrtValues on a device, or, for a fused decoder (int8, int4), a view of one preallocated buffer that the
decoder writes in place (``kv_buffer.py``). A cache never changes once handed out, so the prompt prefix's cache
serves every clip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import EMBEDDINGS_FILE, FUSED_DECODER, TOKENIZER_DIR, Manifest
from ..pipeline.engine import EngineInfo


class BundleText:
    """The bundle's tokenizer, as the pipeline uses it."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(path))

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


class BundleEngine:
    """What every backend of a bundle shares: the manifest's facts and names, the embedding table (looked up in
    numpy) and the tokenizer. Subclasses run the parts."""

    name = "bundle"

    def __init__(self, directory: Path, manifest: Manifest):
        self.directory = Path(directory)
        self.manifest = manifest
        self.embeddings = np.load(self.directory / EMBEDDINGS_FILE, mmap_mode="r")
        self.text = BundleText(self.directory / TOKENIZER_DIR / "tokenizer.json")
        model, preprocess = manifest.model, manifest.preprocess
        self.info = EngineInfo(num_frames=preprocess.num_frames, image_size=preprocess.image_size,
                               resize_mode=preprocess.resize_mode, audio_seconds=preprocess.audio_seconds,
                               n_mels=model.n_mels, labels=tuple(manifest.labels),
                               stop_ids=frozenset(manifest.tokens.stop_ids),
                               max_new_tokens=manifest.generation.max_new_tokens, visual_tokens=model.visual_tokens,
                               audio_tokens=model.audio_tokens, audio_range=preprocess.audio_range,
                               kv_capacity=manifest.kv_capacity, answer_room=manifest.generation.answer_room,
                               adapted_front_end=preprocess.adapted_front_end,
                               positions_follow_cache=manifest.parts["decoder"].attention == FUSED_DECODER)
        (self.vision_input,), (self.vision_output,) = (manifest.parts["vision"].input_names,
                                                       manifest.parts["vision"].output_names)
        (self.audio_input,), (self.audio_output,) = (manifest.parts["audio"].input_names,
                                                     manifest.parts["audio"].output_names)
        self.embeds_name, self.positions_name, *self.past_names = manifest.parts["decoder"].input_names
        self.logits_name, *self.present_names = manifest.parts["decoder"].output_names
        self.kv_shape = (1, model.num_kv_heads, manifest.kv_capacity or 0, model.head_dim)

    def prompt_ids(self, use_audio: bool) -> list[int]:
        return list(self.manifest.prompt["video_audio" if use_audio else "video_only"].ids)

    def prompt_prefix(self, use_audio: bool) -> list[int]:
        return list(self.manifest.prompt["video_audio" if use_audio else "video_only"].prefix_ids)  # from export

    def gate(self) -> None:
        return None  # folded into the vision part at export (manifest.gate records it)

    def embed(self, ids: list[int]) -> np.ndarray:
        return np.asarray(self.embeddings[ids], dtype=np.float32)

    def join(self, pieces: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(pieces)[None].astype(np.float32, copy=False)
