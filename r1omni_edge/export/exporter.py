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
from ..bundle import (AUDIO_INPUT, AUDIO_OUTPUT, AUDIO_POSITIONS, DECODER_EMBEDS, DECODER_LOGITS, DECODER_POSITIONS,
                      EMBEDDINGS_FILE, FUSED, FUSED_DECODER, INT8_WEIGHTS, INT8_WEIGHTS_DEFAULT, MANIFEST, MEL_FRAMES,
                      PART_FILES, PAST_SEQUENCE, PRECISION_TABLE, PRECISIONS, SEQUENCE, TOKENIZER_DIR, TOKENIZER_FILES, TOTAL_SEQUENCE, VISION_INPUT,
                      VISION_OUTPUT, BundleError, GenerationSpec, Manifest, ModelSpec, PartSpec, PreprocessSpec,
                      PromptSpec, TensorSpec, TokenSpec, describe_files, past_names, present_names, read_manifest,
                      write_manifest)
from ..config import MEL_FRAMES_PER_SECOND, adapted_front_end, audio_tokens, visual_tokens
from ..errors import InputError
from ..files import atomic_directory, check_output_dir
from ..labels import DEFAULT_LABEL_SET, label_set
from ..media.audio import CHUNK_SECONDS, N_MELS, SAMPLE_RATE
from ..media.frames import IMAGE_SIZE
from ..model.recognizer import TorchRecognizer
from ..label_choice import label_sequences
from ..pipeline.generation import answer_room
from ..prompt import AUDIO_TOKEN_INDEX, IMAGE_TOKEN_INDEX, VIDEO_TOKEN_INDEX, constant_prefix, prompt_positions
from .onnx_io import export_module, save_model
from .parts import (FUSED_ATTENTION_OPSET, AudioPart, DecoderPart, FusedDecoderPart, VisionPart,
                    fused_encoder_attention)
from .quantize import CONVERTERS

log = logging.getLogger(__name__)
ENCODER_IO = {"vision": (VISION_INPUT, VISION_OUTPUT), "audio": (AUDIO_INPUT, AUDIO_OUTPUT)}
KV_CAPACITY_STEP = 256  # the automatic KV buffer size is rounded up to a multiple of this

@dataclass
class ExportOptions:
    precision: str = "fp32"
    instruction: str | None = None
    audio_seconds: int = CHUNK_SECONDS
    labels: str = DEFAULT_LABEL_SET
    resize_mode: str = "stretch"
    max_new_tokens: int = 2048
    kv_capacity: int | None = None  # positions of the fused decoder's KV buffer; None: the longest prompt + tokens
    int8_weights: str = INT8_WEIGHTS_DEFAULT  # bundle.INT8_WEIGHTS; the others are for measuring (int8_formats.py)


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
        pieces[name] = PromptSpec(ids=ids, prefix_ids=constant_prefix(ids))
    return pieces


def kv_capacity(pieces: dict[str, PromptSpec], visual: int, audio: int, max_new_tokens: int, room: int) -> int:
    """What the longest prompt (media placeholders as their vectors, audio at its longest window), the reasoning
    and the answer can take, rounded up to ``KV_CAPACITY_STEP``."""
    longest = max(prompt_positions(piece.ids, visual, audio) for piece in pieces.values())
    need = longest + max_new_tokens + room
    return -(-need // KV_CAPACITY_STEP) * KV_CAPACITY_STEP


def _check_options(options: ExportOptions) -> None:
    if options.precision not in PRECISIONS:
        raise InputError(f"--precision {options.precision!r} is not one of {', '.join(PRECISIONS)}")
    if options.kv_capacity is not None and options.kv_capacity < 1:
        raise InputError(f"--kv-capacity must be a positive number of positions, got {options.kv_capacity}")
    if options.kv_capacity is not None and PRECISION_TABLE[options.precision].parts["decoder"].attention != \
            FUSED_DECODER:
        raise InputError(f"--kv-capacity sizes the fused decoder's KV buffer of int8 and int4 bundles; a "
                         f"{options.precision} decoder's cache grows as it needs, so leave --kv-capacity out")
    if options.int8_weights not in INT8_WEIGHTS:
        raise InputError(f"int8 weights {options.int8_weights!r}: use one of {', '.join(INT8_WEIGHTS)}")
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
    plan = PRECISION_TABLE[options.precision]
    files: list[str] = []
    steps = 5 + sum(part.quantizer != "none" for part in plan.parts.values()) + ("prefill" in plan.parts)
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
        visual = visual_tokens(frames, IMAGE_SIZE, model.tower_configs.siglip.patch_size)
        mel_frames = options.audio_seconds * MEL_FRAMES_PER_SECOND
        audio = audio_tokens(options.audio_seconds)
        layers, kv_heads, head_dim = config.num_hidden_layers, config.num_key_value_heads, config.head_dim

        # The published 30 s window exports a time axis from 1 s up to 30 s (the Whisper positions are cut to the
        # input inside the graph), so one bundle serves --audio-window full, fit and shorter windows; a shorter
        # --audio-seconds fixes the part to that window.
        dynamic_audio = options.audio_seconds == CHUNK_SECONDS
        window_range = [1, CHUNK_SECONDS] if dynamic_audio else [options.audio_seconds, options.audio_seconds]

        def encoder(part: str, module, example: torch.Tensor, tower, what: str,
                    dynamic: dict[str, dict[int, str]] | None = None) -> None:
            nonlocal files
            fused = plan.parts[part].attention == FUSED
            start = report(f"{PART_FILES[part]} ({what})")
            with fused_encoder_attention(*((tower,) if fused else ())):
                files += export_module(module.eval(), (example,), staging / PART_FILES[part],
                                       [ENCODER_IO[part][0]], [ENCODER_IO[part][1]], dynamic or {},
                                       FUSED_ATTENTION_OPSET if fused else None)
            log.info("%s exported in %.1f s", part, time.perf_counter() - start)

        encoder("vision", VisionPart(model, gate), torch.zeros(frames, 3, IMAGE_SIZE, IMAGE_SIZE), model.vision_tower,
                "SigLIP to layer -2, projector, gate folded in")
        encoder("audio", AudioPart(model), torch.zeros(1, N_MELS, mel_frames), model.audio_tower,
                f"Whisper encoder on {'1 to ' if dynamic_audio else ''}{options.audio_seconds} s, pool, projector",
                {AUDIO_INPUT: {2: MEL_FRAMES}, AUDIO_OUTPUT: {0: AUDIO_POSITIONS}} if dynamic_audio else None)

        pieces = _prompt_pieces(recognizer, instruction)
        encode = recognizer.engine.text.encode_text
        room = answer_room(encode, label_sequences(encode, label_set(options.labels)))
        fused_decoder = plan.parts["decoder"].attention == FUSED_DECODER
        capacity = None
        if fused_decoder:
            capacity = options.kv_capacity or kv_capacity(pieces, visual, audio_tokens(window_range[1]),
                                                          options.max_new_tokens, room)
            if capacity > config.max_position_embeddings:
                raise InputError(f"--kv-capacity {capacity} is more than the model's {config.max_position_embeddings} "
                                 "positions; lower --kv-capacity or --max-new-tokens")
        start = report(f"{PART_FILES['decoder']} (Qwen2, {layers} layers, "
                       + (f"fused attention, KV buffer of {capacity} positions)" if fused_decoder
                          else "KV cache in and out)"))
        pasts, presents = past_names(layers), present_names(layers)
        dynamic = {DECODER_EMBEDS: {1: SEQUENCE}, DECODER_POSITIONS: {1: SEQUENCE}}
        if not fused_decoder:
            dynamic.update({n: {2: PAST_SEQUENCE} for n in pasts})
            dynamic.update({n: {2: TOTAL_SEQUENCE} for n in presents})
        example = (torch.zeros(1, 3, hidden), torch.arange(3)[None],
                   *[torch.zeros(1, kv_heads, capacity or 0, head_dim) for _ in pasts])
        part = FusedDecoderPart(model.llm, capacity) if fused_decoder else DecoderPart(model.llm)
        files += export_module(part.eval(), example, staging / PART_FILES["decoder"],
                               [DECODER_EMBEDS, DECODER_POSITIONS, *pasts], [DECODER_LOGITS, *presents], dynamic,
                               FUSED_ATTENTION_OPSET if fused_decoder else None)
        log.info("decoder exported in %.1f s", time.perf_counter() - start)
        if "prefill" in plan.parts:  # the same graph, converted below to the prefill part's own precision
            report(f"{PART_FILES['prefill']} (the decoder for calls of more than one position)")
            import onnx

            files += save_model(onnx.load(str(staging / PART_FILES["decoder"])), staging / PART_FILES["prefill"])

        for part, part_plan in plan.parts.items():
            if part_plan.quantizer == "none":
                continue
            start = report(f"{PART_FILES[part]} -> {part_plan.precision}")
            extra = {"weights": options.int8_weights} if part_plan.quantizer == "dynamic-int8" else {}
            written = CONVERTERS[part_plan.quantizer](staging / PART_FILES[part], **extra)
            files = [f for f in files if not f.startswith(PART_FILES[part])] + written
            log.info("%s converted to %s in %.1f s", part, part_plan.precision, time.perf_counter() - start)

        report("embedding table and tokenizer")
        table = model.llm.get_input_embeddings().weight.detach().float().numpy()
        np.save(staging / EMBEDDINGS_FILE, table.astype(plan.embeddings))
        files.append(EMBEDDINGS_FILE)
        (staging / TOKENIZER_DIR).mkdir()
        for name in TOKENIZER_FILES:
            shutil.copy2(recognizer.tokenizer.directory / name, staging / TOKENIZER_DIR / name)
            files.append(f"{TOKENIZER_DIR}/{name}")

        report("manifest (sha256 of every file)")
        kv_spec = lambda name, length: TensorSpec(name, [1, kv_heads, length, head_dim], "float32")  # noqa: E731

        def spec(part: str, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> PartSpec:
            part_plan = plan.parts[part]
            return PartSpec(PART_FILES[part], inputs, outputs, part_plan.precision, part_plan.attention,
                            options.int8_weights if part_plan.quantizer == "dynamic-int8" else None)

        def decoder_spec(part: str) -> PartSpec:
            return spec(part, [TensorSpec(DECODER_EMBEDS, [1, SEQUENCE, hidden], "float32"),
                               TensorSpec(DECODER_POSITIONS, [1, SEQUENCE], "int64"),
                               *[kv_spec(n, capacity or PAST_SEQUENCE) for n in pasts]],
                        [TensorSpec(DECODER_LOGITS, [1, config.vocab_size], "float32"),
                         *[kv_spec(n, capacity or TOTAL_SEQUENCE) for n in presents]])

        parts = {
            "vision": spec("vision", [TensorSpec(VISION_INPUT, [frames, 3, IMAGE_SIZE, IMAGE_SIZE], "float32")],
                           [TensorSpec(VISION_OUTPUT, [visual, hidden], "float32")]),
            "audio": spec("audio", [TensorSpec(AUDIO_INPUT, [1, N_MELS, MEL_FRAMES if dynamic_audio else mel_frames],
                                               "float32")],
                          [TensorSpec(AUDIO_OUTPUT, [AUDIO_POSITIONS if dynamic_audio else audio, hidden], "float32")]),
            **{part: decoder_spec(part) for part in ("decoder", "prefill") if part in plan.parts},
        }
        tokenizer = recognizer.tokenizer
        manifest = Manifest(
            precision=options.precision,
            model=ModelSpec(hidden_size=hidden, num_layers=layers, num_heads=config.num_attention_heads,
                            num_kv_heads=kv_heads, head_dim=head_dim, vocab_size=config.vocab_size,
                            num_frames=frames, image_size=IMAGE_SIZE, visual_tokens=visual,
                            audio_tokens=audio, audio_seconds=options.audio_seconds, n_mels=N_MELS,
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
            prompt=pieces,
            labels=list(label_set(options.labels)),
            label_set=options.labels,
            generation=GenerationSpec(max_new_tokens=options.max_new_tokens, greedy=True, answer_room=room),
            preprocess=PreprocessSpec(resize_mode=options.resize_mode, num_frames=frames, image_size=IMAGE_SIZE,
                                      sample_rate=SAMPLE_RATE, audio_seconds=options.audio_seconds,
                                      missing_audio="silence", audio_window_range=window_range,
                                      adapted_front_end=adapted_front_end(model.config)),
            tools=_versions(),
        )
        write_manifest(staging, manifest)
    return manifest
