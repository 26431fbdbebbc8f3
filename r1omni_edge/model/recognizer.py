"""The PyTorch reference pipeline: a clip (or frames + audio) in, a ``Result`` out, timed per stage."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..labels import DEFAULT_LABEL_SET, label_set, normalize_label
from ..media import SAMPLE_RATE, decode_clip, frames_to_pixels, log_mel, resample, silence
from ..prompt import INSTRUCTION, PromptTokenizer, parse_answer
from ..result import Result
from .checkpoint import LoadReport, load_model
from .generate import greedy_generate
from .static_decode import static_greedy_generate
from .omni import OmniModel
from .towers import load_bert_tokenizer


class TorchRecognizer:
    """R1-Omni in PyTorch. The gate depends only on the instruction, so it is computed once per instruction."""

    def __init__(self, model: OmniModel, tokenizer: PromptTokenizer, bert_tokenizer, labels=DEFAULT_LABEL_SET,
                 instruction: str = INSTRUCTION, resize_mode: str = "stretch", report: LoadReport | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.bert_tokenizer = bert_tokenizer
        self.labels = label_set(labels)
        self.instruction = instruction
        self.resize_mode = resize_mode
        self.report = report
        self.stop_ids = {tokenizer.eos_id, tokenizer.pad_id}
        self._gates: dict[str, torch.Tensor] = {}

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

    @torch.inference_mode()
    def recognize(self, frames, audio: np.ndarray | None, sample_rate: int = SAMPLE_RATE, *,
                  use_audio: bool = True, max_new_tokens: int = 2048, instruction: str | None = None,
                  timings: dict[str, float] | None = None) -> Result:
        """Frames (RGB uint8, any count) and mono audio (None: no audio track) -> Result.

        ``use_audio=False`` is the explicit video-only prompt; a missing track with ``use_audio`` feeds 10 s of
        silence through the audio path, as the reference does, and reports the audio as missing.
        """
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

        pixels = torch.from_numpy(frames_to_pixels(frames, self.resize_mode, self.model.config.num_frames))
        audio_state = "not used"
        mel = None
        if use_audio:
            audio_state = "present" if audio is not None else "missing"
            waveform = silence() if audio is None else resample(np.asarray(audio, np.float32), sample_rate)
            mel = torch.from_numpy(log_mel(waveform))
        lap("preprocess")
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
            generation = static_greedy_generate(self.model.llm, embeds, self.stop_ids, max_new_tokens)
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

    def recognize_file(self, path: str | Path, use_audio: bool = True, **kwargs) -> Result:
        start = time.perf_counter()
        clip = decode_clip(path, self.model.config.num_frames, with_audio=use_audio)
        decode_ms = round((time.perf_counter() - start) * 1e3, 3)
        result = self.recognize(clip.frames, clip.audio, clip.sample_rate, use_audio=use_audio,
                                timings={"decode_media": decode_ms}, **kwargs)
        result.timings_ms["total"] = round((time.perf_counter() - start) * 1e3, 3)
        return result
