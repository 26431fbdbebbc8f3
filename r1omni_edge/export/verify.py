"""Parity of a bundle with the PyTorch model it came from, both run as engines of the one pipeline: each part on
the same inputs (max abs difference, cosine), then whole clips (identical greedy tokens, matching prefix, label
agreement). Thresholds per precision (bundle.py's precision table); any failure makes ``verify`` exit non-zero."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..bundle import PRECISION_TABLE
from .. import cpu
from ..errors import InputError
from ..evaluation import answer_agreement, matching_prefix
from ..media import decode_clip, to_mono
from ..media.patterns import make_frames, make_tone
from ..model.recognizer import TorchRecognizer
from ..pipeline.recognizer import splice
from ..engines import BundleRecognizer
from ..recognition import RecognitionOptions


def thresholds_for(precision: str) -> dict[str, float]:
    """Minimum cosine per part, share of clips with identical greedy tokens, and label agreement."""
    plan = PRECISION_TABLE[precision]
    return {"cosine": plan.min_cosine, "tokens": plan.min_token_agreement, "labels": plan.min_label_agreement}


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
class FrontEndCheck:
    """A faster audio front end on the bundle against the published one (window full, no gate), same clips."""

    audio_window: str | int
    audio_gate: str
    agreement: dict[str, float]  # evaluation.answer_agreement
    audio_layout: str = "auto"  # as asked; resolved_layout: what ran
    resolved_layout: str = ""


# The fast front ends verify measures when the bundle's audio part takes more than one window: (window, gate, layout).
# "auto" is the bundle's own choice: the layout it was adapted to, else "tail".
FRONT_ENDS = (("fit", "off", "compact"), ("fit", "off", "tail"), ("fit", "off", "auto"), ("fit", "energy", "auto"),
              ("fit", "vad", "auto"))


@dataclass
class VerifyReport:
    bundle: str
    precision: str
    audio_seconds: int
    parts: list[PartCheck] = field(default_factory=list)
    clips: list[ClipCheck] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    front_ends: list[FrontEndCheck] = field(default_factory=list)  # measured, never a failure
    # the bundle under the published front end against the model before window adaptation (--original): measured,
    # never a failure
    original: dict[str, float] | None = None
    adapted_front_end: dict | None = None
    cpu_int8: str = ""  # the int8 instructions onnxruntime's kernels use on this CPU (cpu.py)
    int8_weights: dict[str, str] = field(default_factory=dict)  # int8 part -> its weight format (bundle.INT8_WEIGHTS)

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
        lines = [f"bundle {self.bundle}  precision {self.precision}  audio window {self.audio_seconds} s"]
        if self.int8_weights:
            formats = ", ".join(f"{part} {weights}" for part, weights in self.int8_weights.items())
            lines.append(f"int8 weights: {formats}; this CPU's int8 instructions: {self.cpu_int8}")
        lines += ["| part | max abs diff | cosine | needs | ok |", "|---|---|---|---|---|"]
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
        if self.front_ends:
            lines += ["", "faster audio front ends on the bundle, against its published one (plain greedy, same clips):",
                      "| audio window | gate | layout | label agreement | identical tokens | token prefix |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {f.audio_window} | {f.audio_gate} | {f.audio_layout}"
                      + (f" ({f.resolved_layout})" if f.audio_layout == "auto" else "")
                      + f" | {f.agreement['label']:.0%} | {f.agreement['identical_tokens']:.0%} | "
                      f"{f.agreement['token_prefix']:.0%} |" for f in self.front_ends]
        if self.adapted_front_end:
            lines.append(f"this bundle's model was adapted to --audio-window {self.adapted_front_end['audio_window']} "
                         f"--audio-layout {self.adapted_front_end['audio_layout']}")
        if self.original is not None:
            lines.append(f"under the published front end against the original model (--original): label agreement "
                         f"{self.original['label']:.0%}, identical tokens {self.original['identical_tokens']:.0%}")
        lines.append("PASS" if not self.failures else "FAIL: " + "; ".join(self.failures))
        return "\n".join(lines)


def _compare(part: str, reference: np.ndarray, candidate: np.ndarray, threshold: float) -> PartCheck:
    a = np.asarray(reference, np.float64).ravel()
    b = np.asarray(candidate, np.float64).ravel()
    if a.shape != b.shape:
        return PartCheck(part, float("inf"), 0.0, threshold)
    cosine = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))
    return PartCheck(part, float(np.max(np.abs(a - b))), cosine, threshold)


@dataclass
class Window:
    """What both engines recognise: a clip of the user's, or a test pattern."""

    name: str
    frames: list
    audio: np.ndarray | None
    sample_rate: int


SYNTHETIC_RATE = 44100


def synthetic_windows(count: int) -> list[Window]:
    """Varied test patterns (colours, motion, tones, one without audio) for when the user brings no clips."""
    colours = [(220, 180, 40), (30, 90, 200), (200, 40, 60), (40, 200, 120), (240, 240, 240), (90, 60, 30)]
    windows = []
    for i in range(count):
        frames = make_frames(2.0, 10, (160, 120), i, colours[i % len(colours)])
        audio = to_mono(make_tone(2.0, SYNTHETIC_RATE, 180.0 + 110.0 * i)) if i % 4 != 3 else None
        windows.append(Window(f"synthetic-{i}", frames, audio, SYNTHETIC_RATE))
    return windows


def clip_window(path: Path, num_frames: int) -> Window:
    clip = decode_clip(path, num_frames)
    return Window(str(path), clip.frames, clip.audio, clip.sample_rate)


@torch.inference_mode()
def _part_checks(reference: TorchRecognizer, bundle: BundleRecognizer, window: Window, cosine: float) -> list[PartCheck]:
    """Each part of both engines on the same inputs (the bundle's processor makes them); the decoder on the
    reference's prompt embeddings, so that it is compared alone."""
    manifest = bundle.manifest
    ours, theirs = reference.engine, bundle.engine
    inputs = bundle.processor(window.frames, window.audio, window.sample_rate)
    checks = [_compare("gate", reference.gate(manifest.instruction).numpy(), np.asarray(manifest.gate), cosine)]
    video = ours.vision(inputs.pixel_values)
    checks.append(_compare("vision", video.numpy(), theirs.vision(inputs.pixel_values), cosine))
    audio = ours.audio(inputs.input_features)
    checks.append(_compare("audio", audio.numpy(), theirs.audio(inputs.input_features), cosine))
    embeds = splice(ours, theirs.prompt_ids(use_audio=True), video, audio)
    positions = np.arange(embeds.shape[1], dtype=np.int64)[None]
    expected, expected_cache = ours.decoder(embeds, positions, ours.empty_cache())
    got, got_cache = theirs.decoder(embeds.float().numpy(), positions, theirs.empty_cache())
    checks.append(_compare("decoder (prefill logits)", expected[0], got[0], cosine))
    # One decode step after the same prompt: the part that decodes token by token (int4 bundles prefill with int8).
    token, at = [int(np.argmax(expected[0]))], positions[:, -1:] + 1
    expected, _ = ours.decoder(ours.embed(token)[None], at, expected_cache)
    got, _ = theirs.decoder(theirs.embed(token)[None], at, got_cache)
    checks.append(_compare("decoder (step logits)", expected[0], got[0], cosine))
    return checks


def verify_bundle(reference: TorchRecognizer, bundle_dir: str | Path, clips: list[Path] | None = None,
                  synthetic: int = 4, max_new_tokens: int = 64, backend: str = "cpu",
                  thresholds: dict[str, float] | None = None, progress=lambda message: None,
                  original: TorchRecognizer | None = None) -> VerifyReport:
    """Compare the bundle (loaded through the runtime, so changed files are refused) with the PyTorch model.
    ``original``: the model before window adaptation, whose published answers the bundle's are measured against."""
    bundle = BundleRecognizer.from_bundle(bundle_dir, backend=backend)
    manifest = bundle.manifest
    limits = dict(thresholds_for(manifest.precision), **(thresholds or {}))
    report = VerifyReport(str(bundle_dir), manifest.precision, manifest.preprocess.audio_seconds, thresholds=limits,
                          cpu_int8=cpu.int8_support().describe(), int8_weights=manifest.int8_weights(),
                          adapted_front_end=manifest.preprocess.adapted_front_end)
    reference.instruction = manifest.instruction
    reference.resize_mode = manifest.preprocess.resize_mode
    windows = [clip_window(Path(c), manifest.preprocess.num_frames) for c in clips or []]
    windows += synthetic_windows(synthetic)
    progress("per-part parity")
    report.parts = _part_checks(reference, bundle, (windows or synthetic_windows(1))[0], limits["cosine"])
    options = dict(max_new_tokens=max_new_tokens, constrain=False)  # plain greedy on both sides
    published = []
    for index, window in enumerate(windows):
        progress(f"clip {index + 1}/{len(windows)}: {Path(window.name).name}")
        expected = reference.recognize(window.frames, window.audio, window.sample_rate, **options)
        got = bundle.recognize(window.frames, window.audio, window.sample_rate, **options)
        published.append(got)
        report.clips.append(ClipCheck(window.name, expected.token_ids == got.token_ids,
                                      matching_prefix(expected.token_ids, got.token_ids), expected.label, got.label,
                                      len(expected.token_ids), len(got.token_ids)))
    low, high = manifest.preprocess.audio_range
    for audio_window, gate, layout in FRONT_ENDS if windows and low < high else ():
        front_end = RecognitionOptions(audio_window=audio_window, audio_gate=gate, audio_layout=layout, **options)
        try:
            bundle.check(front_end)
        except InputError as exc:  # the vad gate without its package: said, not measured
            progress(f"audio front end {audio_window}/{gate}/{layout} not measured: {exc}")
            continue
        progress(f"audio front end {audio_window}/{gate}/{layout}")
        fast = [bundle.recognize(w.frames, w.audio, w.sample_rate, options=front_end) for w in windows]
        report.front_ends.append(FrontEndCheck(audio_window, gate, answer_agreement(
            [r.label for r in fast], [r.label for r in published], [r.token_ids for r in fast],
            [r.token_ids for r in published]), layout, bundle.audio_layout_for(front_end)))
    if original is not None and windows:
        progress("the original model under the published front end")
        original.instruction, original.resize_mode = manifest.instruction, manifest.preprocess.resize_mode
        before = [original.recognize(w.frames, w.audio, w.sample_rate, **options) for w in windows]
        report.original = answer_agreement([r.label for r in published], [r.label for r in before],
                                           [r.token_ids for r in published], [r.token_ids for r in before])
    return report
