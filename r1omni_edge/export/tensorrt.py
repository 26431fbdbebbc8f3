"""TensorRT engines from a bundle's ONNX parts, with the TensorRT Python API (TensorRT 10).

Engines are not portable across TensorRT versions or GPUs: build them on the device that runs them (a Jetson
builds its own), and the manifest records the TensorRT version and the device they were built for.
The optimisation profiles, the build flags and the manifest update are plain functions, testable anywhere.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..bundle import (PARTS, PRECISION_TABLE, TIMING_CACHE_FILE, EnginePartSpec, EnginesSpec, Manifest, describe_files,
                      engine_file, load_bundle, write_manifest)
from ..config import MEL_FRAMES_PER_SECOND
from ..errors import InputError
from ..engines.tensorrt_support import import_tensorrt

log = logging.getLogger(__name__)

MAX_POSITIONS = 2048  # the training context: prefill up to 2048 positions, decode with up to 2048 past


Shape = tuple[int, ...]


def part_profiles(manifest: Manifest, part: str, max_positions: int = MAX_POSITIONS) -> list[dict[str, tuple[Shape, Shape, Shape]]]:
    """Per part, a list of optimisation profiles: input name -> (min, opt, max) shape.

    The decoder gets two: prefill (1..max_positions new positions over 0..max_positions cached ones) and
    single-token decode (one position over 0..max_positions - 1 cached ones).
    """
    model = manifest.model
    if part == "vision":
        spec = manifest.parts[part].inputs[0]
        shape = tuple(int(d) for d in spec.shape)
        return [{spec.name: (shape, shape, shape)}]
    if part == "audio":  # the windows the part accepts, tuned for the default one
        spec = manifest.parts[part].inputs[0]
        low, high = manifest.preprocess.audio_range
        frames = [seconds * MEL_FRAMES_PER_SECOND for seconds in (low, manifest.preprocess.audio_seconds, high)]
        return [{spec.name: tuple((1, model.n_mels, f) for f in frames)}]  # type: ignore[dict-item]
    if part != "decoder":
        raise ValueError(f"unknown part {part!r}")
    hidden, kv, head = model.hidden_size, model.num_kv_heads, model.head_dim
    embeds, positions, *pasts = manifest.parts["decoder"].input_names  # the names the manifest declares

    def profile(new: tuple[int, int, int], past: tuple[int, int, int]) -> dict[str, tuple[Shape, Shape, Shape]]:
        shapes = {
            embeds: tuple((1, n, hidden) for n in new),
            positions: tuple((1, n) for n in new),
        }
        shapes.update({name: tuple((1, kv, p, head) for p in past) for name in pasts})
        return shapes  # type: ignore[return-value]

    prefill = profile((1, min(1024, max_positions), max_positions), (0, 32, max_positions))
    decode = profile((1, 1, 1), (0, min(1024, max_positions - 1), max_positions - 1))
    return [prefill, decode]


def build_flags(precision: str, fp16: bool, int8: bool) -> dict[str, Any]:
    """How each engine is built. fp16 bundles are built strongly typed (the ONNX types decide, so norms and softmax
    stay fp32 as exported); fp32 bundles with --fp16 let TensorRT choose fp16 kernels, with a parity check after."""
    if not PRECISION_TABLE[precision].tensorrt:
        raise InputError(
            f"this bundle is {precision}: its weights use onnxruntime's dynamic-quantization / MatMulNBits ops, which "
            "TensorRT does not parse; export an fp16 (or fp32) bundle for TensorRT"
        )
    return {"strongly_typed": precision == "fp16", "fp16": fp16 and precision == "fp32", "int8": int8}


def build_engine(trt, onnx_path: Path, engine_path: Path, profiles, flags: dict[str, Any], timing_cache: Path,
                 workspace_gb: float = 4.0) -> None:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network_flags = 0
    if flags["strongly_typed"]:
        network_flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(network_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError(f"{onnx_path}: TensorRT cannot parse this part: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if flags["fp16"]:
        config.set_flag(trt.BuilderFlag.FP16)
    if flags["int8"]:
        config.set_flag(trt.BuilderFlag.INT8)  # takes effect where the graph carries Q/DQ scales
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    for shapes in profiles:
        profile = builder.create_optimization_profile()
        for name, (low, opt, high) in shapes.items():
            profile.set_shape(name, low, opt, high)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise InputError(f"{onnx_path}: TensorRT failed to build an engine (see the TensorRT log above)")
    engine_path.write_bytes(bytes(serialized))
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))


def engines_entry(trt_version: str, device: str, flags: dict[str, Any], profiles: dict[str, Any]) -> EnginesSpec:
    return EnginesSpec(
        tensorrt_version=trt_version,
        device=device,
        flags=flags,
        parts={part: EnginePartSpec(file=engine_file(part), profiles=[
            {name: [list(s) for s in shapes] for name, shapes in p.items()} for p in plist])
            for part, plist in profiles.items()},
    )


def build_engines(bundle_dir: str | Path, fp16: bool = False, int8: bool = False,
                  max_positions: int = MAX_POSITIONS, progress=lambda message: None) -> Manifest:
    """Build an engine per part into BUNDLE/engines/ and record them (with their sha256) in the manifest."""
    bundle_dir = Path(bundle_dir)
    manifest = load_bundle(bundle_dir)
    flags = build_flags(manifest.precision, fp16, int8)
    trt = import_tensorrt()
    import torch  # only for the device name; export/ may use torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "unknown"
    profiles = {part: part_profiles(manifest, part, max_positions) for part in PARTS}
    for index, (part, part_profile) in enumerate(profiles.items(), 1):
        progress(f"[{index}/{len(profiles)}] {engine_file(part)}")
        target = bundle_dir / engine_file(part)
        target.parent.mkdir(exist_ok=True)
        build_engine(trt, manifest.part_path(bundle_dir, part), target, part_profile, flags,
                     bundle_dir / TIMING_CACHE_FILE)
    manifest.engines = engines_entry(trt.__version__, device, flags, profiles)
    new_files = [engine_file(part) for part in profiles] + [TIMING_CACHE_FILE]
    manifest.files.update(describe_files(bundle_dir, new_files))
    write_manifest(bundle_dir, manifest)
    return manifest
