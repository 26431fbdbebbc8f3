"""Backends that run a bundle's three parts. One interface (``vision``, ``audio``, ``decoder``); the generation loop
and the recognizer never know which one runs. numpy + onnxruntime only, never torch.

The KV cache is whatever the backend returns from ``decoder`` and takes back on the next call: plain numpy arrays
on the CPU. A cache is never modified in place, so the prompt prefix's cache can be reused for every clip.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..bundle import Manifest, past_key_name, past_value_name, present_key_name, present_value_name
from ..errors import InputError

log = logging.getLogger(__name__)

ORT_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
BACKENDS = ("auto", "cpu", "cuda", "tensorrt", "engine")  # engine: native TensorRT engines from build-engines


class Backend(Protocol):
    name: str

    def vision(self, pixel_values: np.ndarray) -> np.ndarray: ...

    def audio(self, input_features: np.ndarray) -> np.ndarray: ...

    def empty_cache(self) -> Any: ...

    def decoder(self, inputs_embeds: np.ndarray, position_ids: np.ndarray, cache: Any) -> tuple[np.ndarray, Any]: ...


def resolve_backend(name: str) -> str:
    """'auto' -> the best onnxruntime provider present: TensorRT, then CUDA, then the CPU."""
    import onnxruntime as ort

    if name not in BACKENDS or name == "engine":
        raise InputError(f"unknown onnxruntime backend {name!r}; choose one of cpu, cuda, tensorrt, auto")
    available = set(ort.get_available_providers())
    if name == "auto":
        for candidate in ("tensorrt", "cuda"):
            if ORT_PROVIDERS[candidate][0] in available:
                return candidate
        return "cpu"
    if ORT_PROVIDERS[name][0] not in available:
        raise InputError(
            f"backend {name!r} needs onnxruntime's {ORT_PROVIDERS[name][0]}, which this onnxruntime lacks "
            f"(it has {', '.join(sorted(available))}); install onnxruntime-gpu or use --backend cpu"
        )
    return name


def session_options(threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Always set the intra-op threads: onnxruntime's default can oversubscribe small machines.
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


class OnnxRuntimeBackend:
    """onnxruntime with the CPU, CUDA or TensorRT execution provider.

    With ``io_binding`` (the default on GPUs) the decoder's KV cache stays on the device between steps as OrtValues:
    only the new token's embedding goes up and the last position's logits come down.
    """

    def __init__(self, directory: Path, manifest: Manifest, provider: str = "cpu", threads: int | None = None,
                 io_binding: bool | None = None):
        import onnxruntime as ort

        self.name = f"onnxruntime-{provider}"
        self.manifest = manifest
        options = session_options(threads)
        providers = ORT_PROVIDERS[provider]
        self.sessions = {}
        for part in ("vision", "audio", "decoder"):
            path = manifest.part_path(directory, part)
            try:
                self.sessions[part] = ort.InferenceSession(str(path), options, providers=providers)
            except Exception as exc:  # onnxruntime raises its own exception types for unusable graphs
                raise InputError(f"{path}: onnxruntime cannot load this part ({exc})") from exc
        layers = manifest.num_layers
        self.past_names = [n for i in range(layers) for n in (past_key_name(i), past_value_name(i))]
        self.present_names = [n for i in range(layers) for n in (present_key_name(i), present_value_name(i))]
        self.kv_shape = (1, manifest.model["num_kv_heads"], 0, manifest.model["head_dim"])
        self.io_binding = provider != "cpu" if io_binding is None else io_binding
        self.device = "cuda" if provider != "cpu" else "cpu"
        if self.io_binding:
            self.name += "-iobinding"

    def vision(self, pixel_values: np.ndarray) -> np.ndarray:
        return self.sessions["vision"].run(None, {"pixel_values": pixel_values.astype(np.float32, copy=False)})[0]

    def audio(self, input_features: np.ndarray) -> np.ndarray:
        feed = {"input_features": input_features.astype(np.float32, copy=False)}
        return self.sessions["audio"].run(None, feed)[0]

    def empty_cache(self) -> list:
        empty = np.zeros(self.kv_shape, np.float32)
        if self.io_binding:
            import onnxruntime as ort

            return [ort.OrtValue.ortvalue_from_numpy(empty, self.device, 0) for _ in self.past_names]
        return [empty for _ in self.past_names]

    def decoder(self, inputs_embeds: np.ndarray, position_ids: np.ndarray, cache: list) -> tuple[np.ndarray, list]:
        inputs_embeds = np.ascontiguousarray(inputs_embeds, dtype=np.float32)
        if not self.io_binding:
            feed = {"inputs_embeds": inputs_embeds, "position_ids": position_ids}
            feed.update(zip(self.past_names, cache))
            outputs = self.sessions["decoder"].run(None, feed)
            return outputs[0], outputs[1:]
        session = self.sessions["decoder"]
        binding = session.io_binding()
        binding.bind_cpu_input("inputs_embeds", inputs_embeds)
        binding.bind_cpu_input("position_ids", np.ascontiguousarray(position_ids, dtype=np.int64))
        for name, value in zip(self.past_names, cache):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output("logits", "cpu")
        for name in self.present_names:
            binding.bind_output(name, self.device, 0)
        session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        return outputs[0].numpy(), list(outputs[1:])


def make_backend(directory: Path, manifest: Manifest, backend: str = "auto", threads: int | None = None) -> Backend:
    """'auto': the bundle's TensorRT engines when it has them and TensorRT is here, else the best onnxruntime
    provider (TensorRT EP, CUDA, CPU)."""
    from .tensorrt_backend import TensorRTBackend, engines_available

    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "engine" or (backend == "auto" and manifest.engines and engines_available()):
        log.info("backend: native TensorRT engines")
        return TensorRTBackend(directory, manifest)
    if backend == "auto" and manifest.engines:
        log.info("the bundle has TensorRT engines, but TensorRT / cuda-python are not importable here")
    provider = resolve_backend(backend)
    log.info("backend: onnxruntime with %s", ORT_PROVIDERS[provider][0])
    return OnnxRuntimeBackend(directory, manifest, provider, threads)
