"""Checkpoint -> bundle: the three ONNX parts at the chosen precision, the embedding table, the tokenizer and the
manifest that ties them together (see ``bundle.py`` for the layout)."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import __version__
from ..bundle import (EMBEDDINGS_FILE, MANIFEST, PART_FILES, PRECISIONS, TOKENIZER_DIR, BundleError, GenerationSpec,
                      Manifest, ModelSpec, PartSpec, PreprocessSpec, PromptSpec, TensorSpec, TokenSpec, describe_files,
                      past_key_name, past_value_name, present_key_name, present_value_name, read_manifest,
                      write_manifest)
from ..errors import InputError
from ..files import atomic_directory, check_output_dir
from ..labels import label_set
from ..media.audio import CHUNK_SECONDS, N_MELS, SAMPLE_RATE
from ..media.frames import IMAGE_SIZE
from ..model.recognizer import TorchRecognizer
from ..prompt import AUDIO_TOKEN_INDEX, IMAGE_TOKEN_INDEX, VIDEO_TOKEN_INDEX
from .onnx_io import export_module
from .parts import FUSED_ATTENTION_OPSET, AudioPart, DecoderPart, VisionPart, fused_encoder_attention
from .quantize import CONVERTERS

log = logging.getLogger(__name__)

# Which conversion each part gets at each bundle precision. The int4 bundle's 4 bits go where they pay: the decoder,
# whose token-by-token decode reads every weight per token (memory-bound). The encoders run long sequences through
# their matrices (compute-bound), where onnxruntime's 4-bit MatMulNBits was 3.7x slower than dynamic int8 on the
# Whisper encoder (8.9 s against 2.4 s on 2 cores, benchmarks/results/latency.json of 2026-11-26), so they stay int8.
PART_PRECISION = {
    "fp32": {"vision": "fp32", "audio": "fp32", "decoder": "fp32"},
    "fp16": {"vision": "fp16", "audio": "fp16", "decoder": "fp16"},
    "int8": {"vision": "int8", "audio": "int8", "decoder": "int8"},
    "int4": {"vision": "int8", "audio": "int8", "decoder": "int4"},
}
# Bundles that need onnxruntime's own ops anyway also get its fused attention in the encoders (see parts.py).
FUSED_ATTENTION_PRECISIONS = ("int8", "int4")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass
class ExportOptions:
    precision: str = "fp32"
    instruction: str | None = None
    audio_seconds: int = CHUNK_SECONDS
    labels: str = "mafw"
    resize_mode: str = "stretch"
    max_new_tokens: int = 2048


def _versions() -> dict[str, str]:
    out = {"r1omni_edge": __version__}
    for package in ("torch", "transformers", "timm", "onnx", "onnxruntime"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return out


def _prompt_pieces(recognizer: TorchRecognizer, instruction: str) -> dict[str, PromptSpec]:
    pieces = {}
    for name, audio in (("video_audio", True), ("video_only", False)):
        ids = recognizer.tokenizer.encode_prompt(instruction, video=True, audio=audio)
        first = next(i for i, t in enumerate(ids) if t < 0)
        pieces[name] = PromptSpec(ids=ids, prefix_ids=ids[:first])
    return pieces


def _check_options(options: ExportOptions) -> None:
    if options.precision not in PRECISIONS:
        raise InputError(f"--precision {options.precision!r} is not one of {', '.join(PRECISIONS)}")
    if not 1 <= options.audio_seconds <= CHUNK_SECONDS:
        raise InputError(f"--audio-seconds must be between 1 and {CHUNK_SECONDS}, got {options.audio_seconds}")
    try:
        label_set(options.labels)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def previous_bundle(directory: Path) -> set[str] | None:
    """The files an earlier export wrote into ``directory`` (its manifest's list), or None when it holds no bundle."""
    try:
        manifest = read_manifest(directory)
    except BundleError:
        return None
    return set(manifest.files) | {MANIFEST}


def export_bundle(recognizer: TorchRecognizer, out: str | Path, options: ExportOptions,
                  progress: Callable[[str], None] = lambda message: None, overwrite: bool = False) -> Manifest:
    """Write the bundle into ``out``: a new or empty directory, or (with ``overwrite``) an earlier bundle, which is
    then replaced atomically. Never a directory that holds anything else, and never one of the model's inputs."""
    _check_options(options)
    report = recognizer.report
    inputs = {"--model": report.checkpoint if report else None}
    if report:
        inputs.update({f"the {name} tower": path for name, path in report.towers.items()})
    check_output_dir(out, inputs, overwrite, previous_bundle)
    model = recognizer.model.float().eval()
    config = model.config
    instruction = options.instruction or recognizer.instruction
    precisions = PART_PRECISION[options.precision]
    files: list[str] = []
    steps = 5 + sum(p != "fp32" for p in precisions.values())
    step = 0

    def report(message: str) -> float:
        nonlocal step
        step += 1
        progress(f"[{step}/{steps}] {message}")
        return time.perf_counter()

    with atomic_directory(out) as staging:
        with torch.no_grad():
            gate = recognizer.gate(instruction)
        frames, hidden = config.num_frames, config.hidden_size
        visual_tokens = frames * (IMAGE_SIZE // model.tower_configs.siglip.patch_size // 2) ** 2
        mel_frames = options.audio_seconds * 100
        audio_tokens = mel_frames // 2 // 3
        layers, kv_heads, head_dim = config.num_hidden_layers, config.num_key_value_heads, config.head_dim

        fused = options.precision in FUSED_ATTENTION_PRECISIONS
        attention = "com.microsoft.MultiHeadAttention" if fused else "onnx"
        with fused_encoder_attention(*((model.vision_tower, model.audio_tower) if fused else ())):
            start = report("vision.onnx (SigLIP to layer -2, projector, gate folded in)")
            files += export_module(VisionPart(model, gate).eval(), (torch.zeros(frames, 3, IMAGE_SIZE, IMAGE_SIZE),),
                                   staging / PART_FILES["vision"], ["pixel_values"], ["video_embeds"], {},
                                   FUSED_ATTENTION_OPSET if fused else None)
            log.info("vision exported in %.1f s", time.perf_counter() - start)

            start = report(f"audio.onnx (Whisper encoder on {options.audio_seconds} s, pool, projector)")
            files += export_module(AudioPart(model).eval(), (torch.zeros(1, N_MELS, mel_frames),),
                                   staging / PART_FILES["audio"], ["input_features"], ["audio_embeds"], {},
                                   FUSED_ATTENTION_OPSET if fused else None)
            log.info("audio exported in %.1f s", time.perf_counter() - start)

        start = report(f"decoder.onnx (Qwen2, {layers} layers, KV cache in and out)")
        past_names = [n for i in range(layers) for n in (past_key_name(i), past_value_name(i))]
        present_names = [n for i in range(layers) for n in (present_key_name(i), present_value_name(i))]
        dynamic = {"inputs_embeds": {1: "sequence"}, "position_ids": {1: "sequence"}}
        dynamic.update({n: {2: "past_sequence"} for n in past_names})
        dynamic.update({n: {2: "total_sequence"} for n in present_names})
        example = (torch.zeros(1, 3, hidden), torch.arange(3)[None],
                   *[torch.zeros(1, kv_heads, 0, head_dim) for _ in past_names])
        files += export_module(DecoderPart(model.llm).eval(), example, staging / PART_FILES["decoder"],
                               ["inputs_embeds", "position_ids", *past_names], ["logits", *present_names], dynamic)
        log.info("decoder exported in %.1f s", time.perf_counter() - start)

        for part, precision in precisions.items():
            if precision == "fp32":
                continue
            start = report(f"{PART_FILES[part]} -> {precision}")
            written = CONVERTERS[precision](staging / PART_FILES[part])
            files = [f for f in files if not f.startswith(PART_FILES[part])] + written
            log.info("%s converted to %s in %.1f s", part, precision, time.perf_counter() - start)

        report("embedding table and tokenizer")
        table = model.llm.get_input_embeddings().weight.detach().float().numpy()
        table_dtype = np.float32 if options.precision == "fp32" else np.float16
        np.save(staging / EMBEDDINGS_FILE, table.astype(table_dtype))
        files.append(EMBEDDINGS_FILE)
        (staging / TOKENIZER_DIR).mkdir()
        for name in TOKENIZER_FILES:
            shutil.copy2(recognizer.tokenizer.directory / name, staging / TOKENIZER_DIR / name)
            files.append(f"{TOKENIZER_DIR}/{name}")

        report("manifest (sha256 of every file)")
        kv_spec = lambda name, length: TensorSpec(name, [1, kv_heads, length, head_dim], "float32")  # noqa: E731
        parts = {
            "vision": PartSpec(PART_FILES["vision"], [TensorSpec("pixel_values", [frames, 3, IMAGE_SIZE, IMAGE_SIZE],
                                                                 "float32")],
                               [TensorSpec("video_embeds", [visual_tokens, hidden], "float32")], precisions["vision"],
                               attention),
            "audio": PartSpec(PART_FILES["audio"], [TensorSpec("input_features", [1, N_MELS, mel_frames], "float32")],
                              [TensorSpec("audio_embeds", [audio_tokens, hidden], "float32")], precisions["audio"],
                              attention),
            "decoder": PartSpec(
                PART_FILES["decoder"],
                [TensorSpec("inputs_embeds", [1, "sequence", hidden], "float32"),
                 TensorSpec("position_ids", [1, "sequence"], "int64"),
                 *[kv_spec(n, "past_sequence") for n in past_names]],
                [TensorSpec("logits", [1, config.vocab_size], "float32"),
                 *[kv_spec(n, "total_sequence") for n in present_names]],
                precisions["decoder"]),
        }
        tokenizer = recognizer.tokenizer
        manifest = Manifest(
            precision=options.precision,
            model=ModelSpec(hidden_size=hidden, num_layers=layers, num_heads=config.num_attention_heads,
                            num_kv_heads=kv_heads, head_dim=head_dim, vocab_size=config.vocab_size,
                            num_frames=frames, image_size=IMAGE_SIZE, visual_tokens=visual_tokens,
                            audio_tokens=audio_tokens, audio_seconds=options.audio_seconds, n_mels=N_MELS,
                            max_positions=config.max_position_embeddings,
                            source_checkpoint=Path(recognizer.report.checkpoint).name if recognizer.report else None),
            parts=parts,
            files=describe_files(staging, files),
            tokens=TokenSpec(eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id,
                             stop_ids=sorted({tokenizer.eos_id, tokenizer.pad_id}),
                             placeholders={"video": VIDEO_TOKEN_INDEX, "audio": AUDIO_TOKEN_INDEX,
                                           "image": IMAGE_TOKEN_INDEX}),
            instruction=instruction,
            gate=[round(float(g), 8) for g in gate],
            prompt=_prompt_pieces(recognizer, instruction),
            labels=list(label_set(options.labels)),
            label_set=options.labels,
            generation=GenerationSpec(max_new_tokens=options.max_new_tokens, greedy=True),
            preprocess=PreprocessSpec(resize_mode=options.resize_mode, num_frames=frames, image_size=IMAGE_SIZE,
                                      sample_rate=SAMPLE_RATE, audio_seconds=options.audio_seconds,
                                      missing_audio="silence"),
            tools=_versions(),
        )
        write_manifest(staging, manifest)
    return manifest
