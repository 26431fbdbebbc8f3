"""The torch-free recognizer: a bundle in, ``Result`` out, for clips or for frames + audio from live sources.

The KV cache of the constant prompt prefix (everything before the first media placeholder) is computed once at load
and reused for every clip. Modes: ``full`` (reasoning, then a constrained answer) and ``label`` (no reasoning: the
prompt ends in an empty think block and ``<answer>``, so one prefill gives the label: the lowest latency).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..bundle import EMBEDDINGS_FILE, TOKENIZER_DIR, Manifest, load_bundle
from ..label_choice import label_sequences
from ..labels import normalize_label
from ..media import SAMPLE_RATE, decode_clip, frames_to_pixels, log_mel, resample, silence
from ..prompt import LABEL_ONLY_SUFFIX, parse_answer
from ..result import Result
from .backends import Backend, make_backend
from .generation import Vocabulary, generate

MODES = ("full", "label")


class Recognizer:
    def __init__(self, directory: Path, manifest: Manifest, backend: Backend):
        from tokenizers import Tokenizer

        self.directory = Path(directory)
        self.manifest = manifest
        self.backend = backend
        self.backend_name = backend.name
        self.embeddings = np.load(self.directory / EMBEDDINGS_FILE, mmap_mode="r")
        self.tokenizer = Tokenizer.from_file(str(self.directory / TOKENIZER_DIR / "tokenizer.json"))
        self.labels = tuple(manifest.labels)
        self.stop_ids = set(manifest.tokens["stop_ids"])
        self.placeholders = manifest.tokens["placeholders"]
        encode = self.encode_text
        self.vocab = Vocabulary(encode, self.decode, self.stop_ids, label_sequences(encode, self.labels))
        self.label_suffix_ids = encode(LABEL_ONLY_SUFFIX)
        start = time.perf_counter()
        self._prefix: dict[tuple[int, ...], object] = {}
        for piece in manifest.prompt.values():
            key = tuple(piece["prefix_ids"])
            if key not in self._prefix:
                self._prefix[key] = self._run_prefix(list(key))
        self.load_ms = {"prefix_kv": round((time.perf_counter() - start) * 1e3, 3)}

    @classmethod
    def from_bundle(cls, path: str | Path, backend: str = "auto", threads: int | None = None,
                    check_hashes: bool = True) -> "Recognizer":
        manifest = load_bundle(path, hashes=check_hashes)
        return cls(Path(path), manifest, make_backend(Path(path), manifest, backend, threads))

    # ---- pieces -----------------------------------------------------------------------------------------------
    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def embed(self, ids: list[int]) -> np.ndarray:
        return np.asarray(self.embeddings[ids], dtype=np.float32)[None]

    def _run_prefix(self, ids: list[int]):
        cache = self.backend.empty_cache()
        if not ids:
            return cache
        _, cache = self.backend.decoder(self.embed(ids), np.arange(len(ids), dtype=np.int64)[None], cache)
        return cache

    def pixels(self, frames) -> np.ndarray:
        preprocess = self.manifest.preprocess
        return frames_to_pixels(frames, preprocess["resize_mode"], preprocess["num_frames"], preprocess["image_size"])

    def features(self, audio: np.ndarray | None, sample_rate: int) -> np.ndarray:
        waveform = silence() if audio is None else resample(np.asarray(audio, np.float32), sample_rate)
        return log_mel(waveform, self.manifest.model["n_mels"], self.manifest.preprocess["audio_seconds"])[None]

    def _sequence(self, ids: list[int], video: np.ndarray, audio: np.ndarray | None) -> np.ndarray:
        media = {self.placeholders["video"]: video, self.placeholders["image"]: video, self.placeholders["audio"]: audio}
        pieces, run = [], []
        for token in ids + [None]:
            if token is not None and token >= 0:
                run.append(token)
                continue
            if run:
                pieces.append(self.embed(run)[0])
                run = []
            if token is not None:
                pieces.append(media[token])
        return np.concatenate(pieces)[None].astype(np.float32, copy=False)

    # ---- the whole pipeline -------------------------------------------------------------------------------------
    def recognize(self, frames, audio: np.ndarray | None, sample_rate: int = SAMPLE_RATE, *, use_audio: bool = True,
                  mode: str = "full", max_new_tokens: int | None = None, max_think_tokens: int | None = None,
                  constrain: bool = True, timings: dict[str, float] | None = None) -> Result:
        """RGB frames (any count) and mono audio (None: no track, silence is fed) -> Result.

        ``constrain=False`` is plain greedy decoding, token for token the PyTorch reference's.
        """
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {MODES}")
        timings = dict(timings or {})
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = round((now - clock) * 1e3, 3)
            clock = now

        pixels = self.pixels(frames)
        features = self.features(audio, sample_rate) if use_audio else None
        lap("preprocess")
        video = self.backend.vision(pixels)
        lap("vision")
        audio_embeds = None
        if features is not None:
            audio_embeds = self.backend.audio(features)
            lap("audio")
        piece = self.manifest.prompt["video_audio" if use_audio else "video_only"]
        prefix = piece["prefix_ids"]
        rest = piece["ids"][len(prefix):] + (self.label_suffix_ids if mode == "label" else [])
        sequence = self._sequence(rest, video, audio_embeds)
        lap("embed")
        generated = generate(self.backend.decoder, self.embed, sequence, self._prefix[tuple(prefix)], len(prefix),
                             self.vocab, max_new_tokens or self.manifest.generation["max_new_tokens"],
                             max_think_tokens, constrain=constrain or mode == "label", label_only=mode == "label")
        timings["prefill"] = round(generated.prefill_ms, 3)
        timings["decode"] = round(generated.decode_ms, 3)
        timings["decode_per_token"] = round(generated.decode_ms / max(generated.generated_tokens, 1), 3)
        timings["prompt_tokens"] = generated.prompt_length
        timings["generated_tokens"] = generated.generated_tokens
        parsed = parse_answer((LABEL_ONLY_SUFFIX if mode == "label" else "") + generated.text)  # the suffix was prompt
        label = generated.label if generated.label is not None else normalize_label(parsed.answer, self.labels)
        return Result(
            label=label,
            answer=parsed.answer,
            reasoning=parsed.reasoning,
            text=generated.text,
            token_ids=generated.token_ids,
            audio="not used" if not use_audio else ("present" if audio is not None else "missing"),
            timings_ms=timings,
            probabilities=generated.probabilities,
        )

    def recognize_file(self, path: str | Path, use_audio: bool = True, **kwargs) -> Result:
        start = time.perf_counter()
        clip = decode_clip(path, self.manifest.preprocess["num_frames"], with_audio=use_audio)
        decode_ms = round((time.perf_counter() - start) * 1e3, 3)
        result = self.recognize(clip.frames, clip.audio, clip.sample_rate, use_audio=use_audio,
                                timings={"decode_media": decode_ms}, **kwargs)
        result.timings_ms["total"] = round((time.perf_counter() - start) * 1e3, 3)
        result.notes += clip.notes(self.manifest.preprocess.num_frames)
        return result
