"""The recognition flow, written once for every engine and every job:

    clip or live window -> processor (pixel values, log-mel, audio state) -> stages -> the engine's vision and
    audio parts -> spliced into the prompt's embeddings -> prefill after the cached constant prefix -> the
    generation loop (full, label, constrained, free) -> parsed -> Result, timed per stage

``stages`` (callables ModelInputs -> ModelInputs) run between the processor and the engine: where an audio front
end (a window fitted to the input, a silence or voice gate) plugs in, once, for all engines. Engines that can do a
step faster on their own device say so (``FusedGreedy``, ``FusedLabels``) and the flow uses it. Torch-free.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import audio_tokens
from ..label_choice import choose_label, label_sequences
from ..labels import normalize_label
from ..media import SAMPLE_RATE
from ..media.audio_gate import make_audio_gate
from ..media.processor import ModelInputs, Processor
from ..prompt import (AUDIO_TOKEN_INDEX, LABEL_ONLY_SUFFIX, parse_answer, placeholder_media, prompt_positions,
                      split_at_placeholders)
from ..recognition import RecognitionOptionError, RecognitionOptions
from ..result import Result
from .engine import Engine, EngineInfo, FusedGreedy, FusedLabels, capacity_error
from .generation import DecodedAnswer, TokenizerView, answer_room, generate

Stage = Callable[[ModelInputs], ModelInputs]
log = logging.getLogger(__name__)


def prompt_length(ids: list[int], info: EngineInfo, audio_seconds: int | None = None) -> int:
    """Positions the prompt takes once its placeholders are media vectors (audio: of an ``audio_seconds`` window,
    by default the engine's own)."""
    audio = audio_tokens(audio_seconds) if audio_seconds else info.audio_tokens
    return prompt_positions(ids, info.visual_tokens, audio)


def spliced_positions(ids: list[int], start: int, info: EngineInfo, audio_seconds: int | None,
                      audio_positions: int | None = None) -> np.ndarray:
    """The position ids of ``ids`` spliced with their media, from ``start``: one per vector, except that the audio
    placeholder moves the text after it on by ``audio_positions`` (the "positions" layout: those of the full
    window) rather than by the vectors it holds."""
    media = placeholder_media(info.visual_tokens, audio_tokens(audio_seconds) if audio_seconds else info.audio_tokens)
    positions, at = [], start
    for piece in split_at_placeholders(ids):
        count = len(piece) if isinstance(piece, list) else media[piece]
        positions.append(np.arange(at, at + count, dtype=np.int64))
        at += audio_positions if piece == AUDIO_TOKEN_INDEX and audio_positions is not None else count
    return np.concatenate(positions) if positions else np.zeros(0, np.int64)


def splice(engine: Engine, ids: list[int], video: Any, audio: Any | None) -> Any:
    """Token ids with placeholders -> the decoder's inputs_embeds: runs of text as their embeddings, each
    placeholder as its media vectors."""
    media = placeholder_media(video, audio)
    pieces = []
    for piece in split_at_placeholders(ids):
        if isinstance(piece, list):
            pieces.append(engine.embed(piece))
        elif media.get(piece) is None:
            raise ValueError(f"the prompt holds placeholder {piece} but no media was given for it")
        else:
            pieces.append(media[piece])
    return engine.join(pieces)


class Recognizer:
    """One engine behind the recognition flow. ``constrain`` is the default decoding: True, the answer chosen among
    the labels with their probabilities (bundles); False, plain greedy as the published model decodes
    (checkpoints)."""

    instruction_settable = False  # a checkpoint answers any instruction; a bundle's is fixed at export

    def __init__(self, engine: Engine, constrain: bool = True, processor: Processor | None = None):
        self.engine = engine
        self.info = engine.info
        self.constrain = constrain
        info = self.info
        self.processor = processor or getattr(engine, "processor", None) or Processor(
            info.num_frames, info.image_size, info.resize_mode, info.audio_seconds, info.n_mels,
            audio_range=info.audio_range)
        self.stages: list[Stage] = []
        encode = engine.text.encode_text
        self.labels = tuple(info.labels)
        self.vocab = TokenizerView(encode, engine.text.decode, set(info.stop_ids), label_sequences(encode, self.labels))
        self.label_suffix_ids = encode(LABEL_ONLY_SUFFIX)
        self._answer_room = info.answer_room or answer_room(encode, self.vocab.label_sequences)  # the export's
        self._prefix: dict[tuple[int, ...], Any] = {}
        self.options = RecognitionOptions()  # what a recognize() call that brings none is asked to do
        self._audio_gates: dict[str, Any] = {}  # name -> the audio gate (media/audio_gate.py), made once
        self._silence: dict[int, Any] = {}  # window seconds -> the audio part's output for silence
        start = time.perf_counter()
        for use_audio in (True, False):
            self._prefix_cache(engine.prompt_prefix(use_audio))
        self.load_ms = {"prefix_kv": round((time.perf_counter() - start) * 1e3, 3)}

    @property
    def audio_window(self) -> str | int:
        """The default options' audio-window policy: ``full`` (the published 30 s), ``fit`` (the audio's length,
        bucketed) or seconds; checked against what the engine's audio part accepts when set."""
        return self.options.audio_window

    @audio_window.setter
    def audio_window(self, policy: str | int) -> None:
        self.options = replace(self.options, audio_window=self.processor.check_audio_window(policy))

    @property
    def audio_gate(self) -> str:
        """The default options' audio gate: ``off`` (the published path), ``energy`` or ``vad``: a window the gate
        calls silent gets the audio part's output for silence of its window length (computed once) instead of
        running the encoder."""
        return self.options.audio_gate

    @audio_gate.setter
    def audio_gate(self, name: str) -> None:
        self._gate(name)  # made now: a gate that cannot be made here (vad without its package) fails when chosen
        self.options = replace(self.options, audio_gate=name)

    def check(self, options: RecognitionOptions) -> RecognitionOptions:
        """``options`` checked against this engine now (its audio window; its audio gate made; the tail layout's
        silence computed), so that a job fails before its first clip or window, not at it, and its first window is
        as quick as the others."""
        self.processor.check_audio_window(options.audio_window)
        self._gate(options.audio_gate)
        if options.audio_window != "full":
            layout = self.audio_layout_for(options)
            self._check_layout(layout)
            if layout == "tail":  # the silence it needs, computed now: not in the first window's latency
                self.silence_embeds(self.info.audio_seconds)
        warning = self.front_end_warning(options)
        if warning:
            log.warning("%s", warning)
        return options

    def audio_layout_for(self, options: RecognitionOptions) -> str:
        """The layout a window shorter than the full one takes under ``options``: the one asked for, or for "auto"
        the one the model was adapted to under this window policy, else "tail" (the published prompt's layout)."""
        if options.audio_layout != "auto":
            return options.audio_layout
        adapted = self.info.adapted_front_end
        if adapted and adapted.get("audio_window") == options.audio_window:
            return adapted["audio_layout"]
        return "tail"

    def front_end_warning(self, options: RecognitionOptions) -> str | None:
        """What to tell a user who runs a model adapted to one audio front end with another, or None."""
        adapted = self.info.adapted_front_end
        if not adapted:
            return None
        asked = {"audio_window": options.audio_window, "audio_layout": self.audio_layout_for(options)}
        if asked == adapted:
            return None
        return (f"this model was adapted to the audio front end --audio-window {adapted['audio_window']} "
                f"--audio-layout {adapted['audio_layout']} (r1omni-edge train adapt) and runs here with --audio-window "
                f"{asked['audio_window']}" + (f" --audio-layout {asked['audio_layout']}"
                                              if options.audio_window != "full" else "")
                + ": it was trained to answer under its own front end; pass those options (or --fast-profile)")

    def _check_layout(self, layout: str) -> None:
        if layout == "positions" and self.info.positions_follow_cache:
            raise RecognitionOptionError(
                "audio layout 'positions': this bundle's decoder keeps its cache in a fused buffer indexed by position "
                "id (int8 and int4 bundles), so the position ids cannot skip the missing audio; use --audio-layout "
                "tail or compact here, or an fp32 / fp16 bundle")

    def _gate(self, name: str):
        """The audio gate called ``name`` (None for off), made once."""
        if name not in self._audio_gates:
            self._audio_gates[name] = make_audio_gate(name)
        return self._audio_gates[name]

    def silence_embeds(self, seconds: int) -> Any:
        """What the audio part makes of a silent ``seconds`` window: exactly what it computes for a silent track."""
        if seconds not in self._silence:
            self._silence[seconds] = self.engine.audio(self.processor.features(np.zeros(0, np.float32), seconds))
        return self._silence[seconds]

    def silence_tail(self, audio_embeds: Any, seconds: int) -> Any:
        """The "tail" layout: a ``seconds`` window's vectors, then the audio part's output for the full window of
        silence at the positions the short window lacks (computed once), so the prompt keeps the full length."""
        full = self.silence_embeds(self.info.audio_seconds)
        return self.engine.join([audio_embeds, full[audio_tokens(seconds):]])[0]

    @property
    def backend_name(self) -> str:
        return self.engine.name

    @property
    def label_sequences(self) -> dict[str, list[int]]:
        return self.vocab.label_sequences

    # ---- pieces -----------------------------------------------------------------------------------------------
    def _prefix_cache(self, prefix: list[int]) -> Any:
        """The KV cache of the constant prompt prefix, computed once per distinct prefix."""
        key = tuple(prefix)
        if key not in self._prefix:
            cache = self.engine.empty_cache()
            if prefix:
                _, cache = self.engine.decoder(self._embed(prefix), np.arange(len(prefix), dtype=np.int64)[None],
                                               cache)
            self._prefix[key] = cache
        return self._prefix[key]

    def _embed(self, ids: list[int]) -> Any:
        return self.engine.join([self.engine.embed(ids)])

    def prepare(self, frames, audio: np.ndarray | None, sample_rate: int = SAMPLE_RATE,
                use_audio: bool = True, audio_window: str | int | None = None) -> ModelInputs:
        """The processor (under ``audio_window``, default the default options'), then every stage."""
        policy = self.options.audio_window if audio_window is None else audio_window
        inputs = self.processor(frames, audio, sample_rate, use_audio, policy)
        for stage in self.stages:
            inputs = stage(inputs)
        return inputs

    # ---- the whole flow -------------------------------------------------------------------------------------------
    def recognize(self, frames, audio: np.ndarray | None, sample_rate: int = SAMPLE_RATE, *, use_audio: bool = True,
                  options: RecognitionOptions | None = None, timings: dict[str, float] | None = None,
                  **changes: Any) -> Result:
        """RGB frames (any count) and mono audio (None: no track, silence is fed) -> Result.

        ``options`` says what to do (default: ``self.options``); keyword ``changes`` (``mode="label"``, ...) are
        a shorthand for a copy of it with those fields changed. ``use_audio=False`` is the explicit video-only
        prompt. Label mode skips the reasoning: the prompt ends in an empty think block and ``<answer>``, and the
        label comes from the label set right after prefill, with a probability for each label. ``constrain=False``
        is plain greedy decoding, the published model's.
        """
        options = replace(options or self.options, **changes)
        mode, max_new_tokens, max_think_tokens = options.mode, options.max_new_tokens, options.max_think_tokens
        constrain = self.constrain if options.constrain is None else options.constrain
        audio_gate = self._gate(options.audio_gate)
        engine = self.engine
        sync = getattr(engine, "synchronize", None)
        timings = dict(timings or {})
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            if sync is not None:  # a device that runs asynchronously: stage times must not drift into the next
                sync()
            now = time.perf_counter()
            timings[name] = round((now - clock) * 1e3, 3)
            clock = now

        inputs = self.prepare(frames, audio, sample_rate, use_audio, options.audio_window)
        lap("preprocess")
        if engine.gate() is not None:  # computed at run time (once per instruction), not folded into the vision part
            lap("gate")
        ids = engine.prompt_ids(use_audio) + (self.label_suffix_ids if mode == "label" else [])
        gated = False
        full = self.info.audio_seconds
        shorter = inputs.audio_seconds is not None and inputs.audio_seconds < full
        layout = self.audio_layout_for(options) if shorter else "compact"
        self._check_layout(layout)
        if mode == "label" and isinstance(engine, FusedLabels) and layout == "compact":
            generated = self._fused_label(inputs, ids, lap)
        else:
            video = engine.vision(inputs.pixel_values)
            lap("vision")
            audio_embeds, audio_seconds = None, inputs.audio_seconds
            if inputs.input_features is not None:
                if audio_gate is not None:
                    gated = bool(audio_gate.is_silent(inputs.waveform))
                    lap("audio_gate")
                # a gated window: exactly what the encoder computes for silence of its length (then the tail)
                audio_embeds = (self.silence_embeds(audio_seconds) if gated
                                else engine.audio(inputs.input_features))
                if layout == "tail":
                    audio_embeds, audio_seconds = self.silence_tail(audio_embeds, audio_seconds), full
                lap("audio")
            generated = self._generate(ids, engine.prompt_prefix(use_audio), video, audio_embeds, mode, constrain,
                                       lap, max_new_tokens or self.info.max_new_tokens, max_think_tokens,
                                       audio_seconds, self.info.audio_tokens if layout == "positions" else None)
            timings["prefill"] = round(generated.prefill_ms, 3)
            timings["decode"] = round(generated.decode_ms, 3)
            timings["decode_per_token"] = round(generated.decode_ms / max(generated.generated_tokens, 1), 3)
        parsed = parse_answer((LABEL_ONLY_SUFFIX if mode == "label" else "") + generated.text)  # the suffix was prompt
        label = generated.label if generated.label is not None else normalize_label(parsed.answer, self.labels)
        return Result(label=label, answer=parsed.answer, reasoning=parsed.reasoning, text=generated.text,
                      token_ids=generated.token_ids, audio=inputs.audio, timings_ms=timings,
                      probabilities=generated.probabilities, notes=list(inputs.notes),
                      audio_window=inputs.audio_seconds, audio_layout=layout if shorter else None,
                      audio_gated=gated, prompt_tokens=generated.prompt_length,
                      generated_tokens=generated.generated_tokens)

    def _generate(self, ids: list[int], prefix: list[int], video: Any, audio: Any | None, mode: str, constrain: bool,
                  lap, max_new_tokens: int, max_think_tokens: int | None, audio_seconds: int | None = None,
                  audio_positions: int | None = None) -> DecodedAnswer:
        """``audio_positions``: the positions the audio takes in the position ids ("positions" layout), None: as
        many as its vectors."""
        engine = self.engine
        if mode == "full" and not constrain and isinstance(engine, FusedGreedy) and audio_positions is None:
            embeds = splice(engine, ids, video, audio)
            lap("embed")
            token_ids, prefill_ms, decode_ms = engine.greedy(embeds, max_new_tokens, self.vocab.stop_ids)
            return DecodedAnswer(token_ids, self.vocab.decode(token_ids), prefill_ms, decode_ms,
                                 prompt_length(ids, self.info, audio_seconds), len(token_ids))
        capacity = self.info.kv_capacity
        if capacity is not None:  # refuse before decoding, never with half an answer
            needed = prompt_length(ids, self.info, audio_seconds) + self._answer_room + (
                0 if mode == "label" else max_new_tokens)
            if needed > capacity:
                raise capacity_error(needed, capacity)
        sequence = splice(engine, ids[len(prefix):], video, audio)  # the prefix's KV is cached
        positions = spliced_positions(ids[len(prefix):], len(prefix), self.info, audio_seconds, audio_positions)
        lap("embed")
        return generate(engine.decoder, self._embed, sequence, self._prefix_cache(prefix), len(prefix), self.vocab,
                        max_new_tokens, max_think_tokens, constrain=constrain or mode == "label",
                        label_only=mode == "label", positions=positions)

    def _fused_label(self, inputs: ModelInputs, ids: list[int], lap) -> DecodedAnswer:
        root, nodes = self.engine.label_logits(inputs.pixel_values, inputs.input_features, ids, self.label_sequences,
                                               inputs.audio_seconds)
        lap("forward")  # encoders + prefill with the label trie in one forward

        def step(tokens: list[int], path: tuple[int, ...], position: int):  # the trie's logits, already computed
            path = path + tuple(tokens)
            return nodes[path], path

        choice = choose_label(step, root, (), 0, self.label_sequences)
        lap("label")
        encode = self.vocab.encode
        return DecodedAnswer(token_ids=encode(choice.label) + encode("</answer>"), text=f"{choice.label}</answer>",
                             prefill_ms=0.0, decode_ms=0.0,
                             prompt_length=prompt_length(ids, self.info, inputs.audio_seconds),
                             generated_tokens=0, label=choice.label, probabilities=choice.probabilities)

    def recognize_file(self, path: str | Path, use_audio: bool = True, **kwargs) -> Result:
        """A clip, decoded once: its sampled frames and audio track through ``recognize``."""
        start = time.perf_counter()
        clip = self.processor.decode(path, use_audio)
        return self.recognize_decoded(clip, round((time.perf_counter() - start) * 1e3, 3), use_audio=use_audio,
                                      **kwargs)

    def recognize_decoded(self, clip, decode_ms: float, use_audio: bool = True, **kwargs) -> Result:
        """A clip already decoded (``processor.decode``, e.g. ahead on another thread) in ``decode_ms``: the same
        Result as ``recognize_file``, its total counting the decoding, its notes the clip's."""
        start = time.perf_counter()
        result = self.recognize(clip.frames, clip.audio, clip.sample_rate, use_audio=use_audio,
                                timings={"decode_media": decode_ms}, **kwargs)
        result.timings_ms["total"] = round(decode_ms + (time.perf_counter() - start) * 1e3, 3)
        result.notes += clip.notes(self.info.num_frames)
        return result
