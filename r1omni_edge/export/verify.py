"""Parity of a bundle with the PyTorch model it came from: each part on the same inputs (max abs difference,
cosine), then whole clips (identical greedy tokens, matching prefix, label agreement). Thresholds per precision;
any failure makes ``verify`` exit non-zero."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..media import decode_clip, frames_to_pixels, log_mel, silence
from ..model.recognizer import TorchRecognizer
from ..runtime.recognizer import Recognizer

# Minimum cosine per part, minimum share of clips with identical greedy tokens, minimum label agreement.
THRESHOLDS = {
    "fp32": {"cosine": 0.99999, "tokens": 1.0, "labels": 1.0},
    "fp16": {"cosine": 0.999, "tokens": 0.0, "labels": 0.99},
    "int8": {"cosine": 0.99, "tokens": 0.0, "labels": 0.99},
    "int4": {"cosine": 0.98, "tokens": 0.0, "labels": 0.95},
}


@dataclass
class PartCheck:
    part: str
    max_abs: float
    cosine: float
    threshold: float

    @property
    def ok(self) -> bool:
        return self.cosine >= self.threshold


@dataclass
class ClipCheck:
    clip: str
    identical: bool
    matching_prefix: float  # share of the reference tokens matched before the first difference
    torch_label: str | None
    bundle_label: str | None
    torch_tokens: int
    bundle_tokens: int


@dataclass
class VerifyReport:
    bundle: str
    precision: str
    audio_seconds: int
    parts: list[PartCheck] = field(default_factory=list)
    clips: list[ClipCheck] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def token_agreement(self) -> float:
        return sum(c.identical for c in self.clips) / len(self.clips) if self.clips else 1.0

    @property
    def label_agreement(self) -> float:
        return sum(c.torch_label == c.bundle_label for c in self.clips) / len(self.clips) if self.clips else 1.0

    @property
    def failures(self) -> list[str]:
        failed = [f"{p.part} cosine {p.cosine:.6f} < {p.threshold}" for p in self.parts if not p.ok]
        if self.token_agreement < self.thresholds["tokens"]:
            failed.append(f"identical greedy tokens on {self.token_agreement:.0%} of clips < {self.thresholds['tokens']:.0%}")
        if self.label_agreement < self.thresholds["labels"]:
            failed.append(f"label agreement {self.label_agreement:.0%} < {self.thresholds['labels']:.0%}")
        return failed

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(token_agreement=self.token_agreement, label_agreement=self.label_agreement, failures=self.failures)
        return out

    def table(self) -> str:
        lines = [f"bundle {self.bundle}  precision {self.precision}  audio window {self.audio_seconds} s",
                 "| part | max abs diff | cosine | needs | ok |", "|---|---|---|---|---|"]
        lines += [f"| {p.part} | {p.max_abs:.3g} | {p.cosine:.6f} | >= {p.threshold} | {'ok' if p.ok else 'FAIL'} |"
                  for p in self.parts]
        if self.clips:
            lines += ["", "| clip | identical tokens | matching prefix | PyTorch label | bundle label |",
                      "|---|---|---|---|---|"]
            lines += [f"| {Path(c.clip).name} | {'yes' if c.identical else 'no'} | {c.matching_prefix:.0%} | "
                      f"{c.torch_label} | {c.bundle_label} |" for c in self.clips]
            lines.append(f"identical greedy tokens: {self.token_agreement:.0%} of {len(self.clips)} clips "
                         f"(needs {self.thresholds['tokens']:.0%}); label agreement {self.label_agreement:.0%} "
                         f"(needs {self.thresholds['labels']:.0%})")
        lines.append("PASS" if not self.failures else "FAIL: " + "; ".join(self.failures))
        return "\n".join(lines)


def _compare(part: str, reference: np.ndarray, candidate: np.ndarray, threshold: float) -> PartCheck:
    a = np.asarray(reference, np.float64).ravel()
    b = np.asarray(candidate, np.float64).ravel()
    if a.shape != b.shape:
        return PartCheck(part, float("inf"), 0.0, threshold)
    cosine = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))
    return PartCheck(part, float(np.max(np.abs(a - b))), cosine, threshold)


def synthetic_clips(directory: Path, count: int) -> list[Path]:
    """Varied clips (colours, motion, tones, one without audio) for when the user brings none."""
    from ..synthetic.clips import write_clip

    colours = [(220, 180, 40), (30, 90, 200), (200, 40, 60), (40, 200, 120), (240, 240, 240), (90, 60, 30)]
    return [write_clip(directory / f"verify_{i}.mp4", seconds=2.0, seed=i, color=colours[i % len(colours)],
                       tone_hz=180.0 + 110.0 * i, audio=(i % 4 != 3)) for i in range(count)]


@torch.inference_mode()
def _part_checks(reference: TorchRecognizer, bundle: Recognizer, clip: Path, cosine: float) -> list[PartCheck]:
    manifest = bundle.manifest
    model = reference.model
    decoded = decode_clip(clip, manifest.preprocess["num_frames"])
    pixels = frames_to_pixels(decoded.frames, manifest.preprocess["resize_mode"], manifest.preprocess["num_frames"])
    gate = reference.gate(manifest.instruction)
    checks = [_compare("gate", gate.numpy(), np.asarray(manifest.gate), cosine)]
    video_ref = model.encode_video(torch.from_numpy(pixels), gate)
    checks.append(_compare("vision", video_ref.numpy(), bundle.backend.vision(pixels), cosine))
    waveform = decoded.audio if decoded.audio is not None else silence()
    mel = log_mel(waveform, seconds=manifest.preprocess["audio_seconds"])
    audio_ref = model.encode_audio(torch.from_numpy(mel))
    checks.append(_compare("audio", audio_ref.numpy(), bundle.backend.audio(mel[None]), cosine))
    ids = manifest.prompt["video_audio"]["ids"]
    embeds = model.embed(ids, video_ref, audio_ref)
    logits_ref = model.llm(inputs_embeds=embeds, logits_to_keep=1).logits[0, -1]
    positions = np.arange(embeds.shape[1], dtype=np.int64)[None]
    logits, _ = bundle.backend.decoder(embeds.numpy(), positions, bundle.backend.empty_cache())
    checks.append(_compare("decoder (prefill logits)", logits_ref.numpy(), logits[0], cosine))
    return checks


def verify_bundle(reference: TorchRecognizer, bundle_dir: str | Path, clips: list[Path] | None = None,
                  synthetic: int = 4, max_new_tokens: int = 64, backend: str = "cpu",
                  thresholds: dict[str, float] | None = None, progress=lambda message: None) -> VerifyReport:
    """Compare the bundle (loaded through the runtime, so changed files are refused) with the PyTorch model."""
    bundle = Recognizer.from_bundle(bundle_dir, backend=backend)
    manifest = bundle.manifest
    limits = dict(THRESHOLDS[manifest.precision], **(thresholds or {}))
    report = VerifyReport(str(bundle_dir), manifest.precision, manifest.preprocess["audio_seconds"],
                          thresholds=limits)
    reference.instruction = manifest.instruction
    reference.resize_mode = manifest.preprocess["resize_mode"]
    with tempfile.TemporaryDirectory() as tmp:
        paths = list(clips or []) + synthetic_clips(Path(tmp), synthetic)
        progress("per-part parity")
        report.parts = _part_checks(reference, bundle, (paths or synthetic_clips(Path(tmp), 1))[0], limits["cosine"])
        for index, path in enumerate(paths):
            progress(f"clip {index + 1}/{len(paths)}: {Path(path).name}")
            expected = reference.recognize_file(path, max_new_tokens=max_new_tokens)
            got = bundle.recognize_file(path, max_new_tokens=max_new_tokens, constrain=False)  # plain greedy, as the reference
            prefix = next((i for i, (a, b) in enumerate(zip(expected.token_ids, got.token_ids)) if a != b),
                          min(len(expected.token_ids), len(got.token_ids)))
            report.clips.append(ClipCheck(str(path), expected.token_ids == got.token_ids,
                                          prefix / max(len(expected.token_ids), 1), expected.label, got.label,
                                          len(expected.token_ids), len(got.token_ids)))
    return report
