"""The PyTorch reference pipeline: a clip (or frames + audio) in, a ``Result`` out, timed per stage."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..label_choice import choose_label, label_sequences
from ..labels import DEFAULT_LABEL_SET, label_set, normalize_label
from ..media import SAMPLE_RATE, decode_clip, frames_to_pixels, log_mel, resample, silence
from ..prompt import INSTRUCTION, LABEL_ONLY_SUFFIX, PromptTokenizer, parse_answer
from ..result import Result
from .checkpoint import LoadReport, load_model
from .generate import greedy_generate
from .label_graph import LabelForward
from .omni import OmniModel
from .static_decode import StaticDecoder, fitting_decoder, static_greedy_generate
from .tensor_media import frames_to_pixels_tensor, log_mel_tensor
from .towers import load_bert_tokenizer

MODES = ("full", "label")


class TorchRecognizer:
    """R1-Omni in PyTorch. The gate depends only on the instruction, so it is computed once per instruction.

    On a GPU the inputs are prepared there too (``tensor_media``) and decoding replays a CUDA graph; on the CPU the
    numpy media path is the one the runtime uses, so both see identical inputs.
    """

    def __init__(self, model: OmniModel, tokenizer: PromptTokenizer, bert_tokenizer, labels=DEFAULT_LABEL_SET,
                 instruction: str = INSTRUCTION, resize_mode: str = "stretch", report: LoadReport | None = None,
                 compile: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.bert_tokenizer = bert_tokenizer
        self.labels = label_set(labels)
        self.instruction = instruction
        self.resize_mode = resize_mode
        self.report = report
        self.stop_ids = {tokenizer.eos_id, tokenizer.pad_id}
        self._gates: dict[str, torch.Tensor] = {}
        self.label_sequences = label_sequences(tokenizer.encode_text, self.labels)
        self.label_suffix_ids = tokenizer.encode_text(LABEL_ONLY_SUFFIX)
        self._label_forwards: dict[tuple[str, bool], LabelForward] = {}
        self.compile = compile  # GPUs: torch.compile the decode step before capturing it (a minute, once)
        self._decoder: StaticDecoder | None = None  # GPUs: reused, so its CUDA graph is captured once

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, siglip=None, whisper=None, bert=None, models_dir=None,
                        dtype="fp32", device="cpu", allow_pickle=False, **kwargs) -> "TorchRecognizer":
        model, report = load_model(checkpoint, siglip, whisper, bert, models_dir, dtype, device, allow_pickle)
        return cls(model, PromptTokenizer(checkpoint), load_bert_tokenizer(Path(report.towers["bert"])),
                   report=report, **kwargs)

    @torch.inference_mode()
    def gate(self, instruction: str) -> torch.Tensor:
        if instruction not in self._gates:
            self._gates[instruction] = self.model.gate_weights(self.bert_tokenizer.encode(instruction).ids)
        return self._gates[instruction]

    def _inputs(self, frames, audio: np.ndarray | None, sample_rate: int, use_audio: bool):
        """-> (pixels, log-mel or None, audio state) on the model's device."""
        device, frames_count = self.model.device, self.model.config.num_frames
        waveform = None
        audio_state = "not used"
        if use_audio:
            audio_state = "present" if audio is not None else "missing"
            waveform = silence() if audio is None else resample(np.asarray(audio, np.float32), sample_rate)
        if device.type == "cuda":
            pixels = frames_to_pixels_tensor(frames, device, self.resize_mode, frames_count)
            mel = log_mel_tensor(waveform, device) if waveform is not None else None
        else:
            pixels = torch.from_numpy(frames_to_pixels(frames, self.resize_mode, frames_count))
            mel = torch.from_numpy(log_mel(waveform)) if waveform is not None else None
        return pixels, mel, audio_state

    def label_forward(self, instruction: str, use_audio: bool) -> LabelForward:
        """Label mode's single forward for this prompt (a CUDA graph on GPUs, captured at its first clip)."""
        key = (instruction, use_audio)
        if key not in self._label_forwards:
            ids = self.tokenizer.encode_prompt(instruction, video=True, audio=use_audio) + self.label_suffix_ids
            self._label_forwards[key] = LabelForward(self.model, ids, self.label_sequences, self.gate(instruction))
        return self._label_forwards[key]

    @torch.inference_mode()
    def recognize(self, frames, audio: np.ndarray | None, sample_rate: int = SAMPLE_RATE, *,
                  use_audio: bool = True, mode: str = "full", max_new_tokens: int = 2048,
                  instruction: str | None = None, timings: dict[str, float] | None = None) -> Result:
        """Frames (RGB uint8, any count) and mono audio (None: no audio track) -> Result.

        ``use_audio=False`` is the explicit video-only prompt; a missing track with ``use_audio`` feeds 10 s of
        silence through the audio path, as the reference does, and reports the audio as missing. ``mode="label"``
        skips the reasoning: the prompt ends in an empty ``<think>`` block and the label is chosen from the label set
        right after prefill, with a probability for each label.
        """
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {MODES}")
        timings = dict(timings or {})
        instruction = instruction or self.instruction
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            if self.model.device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            timings[name] = round((now - clock) * 1e3, 3)
            clock = now

        pixels, mel, audio_state = self._inputs(frames, audio, sample_rate, use_audio)
        lap("preprocess")
        if mode == "label":
            return self._label_result(self.label_forward(instruction, use_audio), pixels, mel, audio_state, timings,
                                      lap)
        gate = self.gate(instruction)
        lap("gate")
        video_embeds = self.model.encode_video(pixels, gate)
        lap("vision")
        audio_embeds = self.model.encode_audio(mel) if mel is not None else None
        if mel is not None:
            lap("audio")
        ids = self.tokenizer.encode_prompt(instruction, video=True, audio=use_audio)
        embeds = self.model.embed(ids, video_embeds, audio_embeds)
        lap("embed")
        if self.model.device.type == "cuda":  # launch-bound on GPUs: static KV cache + one CUDA graph per token
            self._decoder = fitting_decoder(self.model.llm, self._decoder, embeds.shape[1], max_new_tokens,
                                            self.compile)
            generation = static_greedy_generate(self.model.llm, embeds, self.stop_ids, max_new_tokens,
                                                decoder=self._decoder)
        else:
            generation = greedy_generate(self.model.llm, embeds, self.stop_ids, max_new_tokens)
        timings["prefill"] = round(generation.prefill_ms, 3)
        timings["decode"] = round(generation.decode_ms, 3)
        steps = max(len(generation.token_ids) - 1, 1)
        timings["decode_per_token"] = round(generation.decode_ms / steps, 3)
        text = self.tokenizer.decode(generation.token_ids)
        parsed = parse_answer(text)
        timings["prompt_tokens"] = generation.prompt_length
        timings["generated_tokens"] = len(generation.token_ids)
        return Result(
            label=normalize_label(parsed.answer, self.labels),
            answer=parsed.answer,
            reasoning=parsed.reasoning,
            text=text,
            token_ids=generation.token_ids,
            audio=audio_state,
            timings_ms=timings,
        )

    def _label_result(self, forward: LabelForward, pixels, mel, audio_state: str, timings: dict, lap) -> Result:
        root, nodes = forward(pixels, mel)
        lap("forward")  # encoders + prefill with the label trie, one CUDA graph on GPUs

        def step(ids: list[int], path: tuple[int, ...], position: int):  # the trie's logits, already computed
            path = path + tuple(ids)
            return nodes[path], path

        choice = choose_label(step, root, (), 0, self.label_sequences)
        lap("label")
        timings["prompt_tokens"] = forward.prompt_length
        timings["generated_tokens"] = 0
        text = f"{choice.label}</answer>"  # as the runtime: the empty reasoning and <answer> were prompt
        return Result(
            label=choice.label,
            answer=parse_answer(LABEL_ONLY_SUFFIX + text).answer,
            reasoning="",
            text=text,
            token_ids=self.tokenizer.encode_text(text),
            audio=audio_state,
            timings_ms=timings,
            probabilities=choice.probabilities,
        )

    def recognize_file(self, path: str | Path, use_audio: bool = True, **kwargs) -> Result:
        start = time.perf_counter()
        clip = decode_clip(path, self.model.config.num_frames, with_audio=use_audio)
        decode_ms = round((time.perf_counter() - start) * 1e3, 3)
        result = self.recognize(clip.frames, clip.audio, clip.sample_rate, use_audio=use_audio,
                                timings={"decode_media": decode_ms}, **kwargs)
        result.timings_ms["total"] = round((time.perf_counter() - start) * 1e3, 3)
        result.notes += clip.notes(self.model.config.num_frames)
        return result
