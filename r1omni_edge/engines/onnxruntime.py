"""The onnxruntime backend of a bundle: the CPU, CUDA or TensorRT execution provider. numpy + onnxruntime only."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..bundle import FUSED_DECODER, MANIFEST, BundleError, Manifest
from ..errors import InputError
from ..pipeline.engine import capacity_error
from .base import BundleEngine
from .kv_buffer import KVBuffer

ORT_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def resolve_backend(name: str) -> str:
    """'auto' -> the best onnxruntime provider present: TensorRT, then CUDA, then the CPU."""
    import onnxruntime as ort

    if name != "auto" and name not in ORT_PROVIDERS:
        raise InputError(f"unknown onnxruntime backend {name!r}; choose one of {', '.join(ORT_PROVIDERS)}, auto")
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


def check_part_names(source: Path, part: str, manifest: Manifest, inputs: list[str], outputs: list[str]) -> None:
    """The tensors a part really has must be the ones its manifest names (every name a backend binds comes from the
    manifest): a manifest rewritten by hand, with its checksum made to match, is refused here, not at the first run."""
    spec = manifest.parts[part]
    for kind, named, actual in (("inputs", spec.input_names, inputs), ("outputs", spec.output_names, outputs)):
        if sorted(named) != sorted(actual):
            missing = sorted(set(named) - set(actual)) or sorted(set(actual) - set(named))
            raise BundleError(f"{source}: parts.{part}.{kind} name {', '.join(map(repr, missing[:3]))[:200]}, but "
                              f"{spec.file} has {', '.join(actual[:4])}{' ...' if len(actual) > 4 else ''}; the "
                              "manifest does not match its part, export the bundle again")


class OnnxRuntimeBackend(BundleEngine):
    """onnxruntime with the CPU, CUDA or TensorRT execution provider.

    With ``io_binding`` (the default on GPUs) the decoder's KV cache stays on the device between steps as OrtValues:
    only the new token's embedding goes up and the last position's logits come down. A fused decoder (int8, int4
    bundles) binds its KV buffer once and is written in place (the default everywhere); without ``io_binding`` it
    is run with copies in and out, the reference the shared buffer is tested against. Calls of more than one
    position go to the bundle's prefill part where it has one.
    """

    def __init__(self, directory: Path, manifest: Manifest, provider: str = "cpu", threads: int | None = None,
                 io_binding: bool | None = None):
        import onnxruntime as ort

        super().__init__(directory, manifest)
        self.name = f"onnxruntime-{provider}"
        options = session_options(threads)
        providers = ORT_PROVIDERS[provider]
        self.sessions = {}
        for part in manifest.parts:
            path = manifest.part_path(directory, part)
            try:
                self.sessions[part] = ort.InferenceSession(str(path), options, providers=providers)
            except Exception as exc:  # onnxruntime raises its own exception types for unusable graphs
                raise InputError(f"{path}: onnxruntime cannot load this part ({exc})") from exc
            check_part_names(directory / MANIFEST, part, manifest, [i.name for i in self.sessions[part].get_inputs()],
                             [o.name for o in self.sessions[part].get_outputs()])
        self.fused = manifest.parts["decoder"].attention == FUSED_DECODER
        self.io_binding = (self.fused or provider != "cpu") if io_binding is None else io_binding
        self.device = "cuda" if provider != "cpu" else "cpu"
        self.kv = None
        if self.fused and self.io_binding:  # the buffer lives in host memory: the CPU kernels write it
            self.kv = KVBuffer({p: self.sessions[p] for p in ("decoder", "prefill") if p in self.sessions},
                               self.past_names, self.present_names, self.logits_name, self.kv_shape,
                               manifest.model.vocab_size)
            self.name += "-kvbuffer"
        elif self.io_binding:
            self.name += "-iobinding"

    def vision(self, pixel_values: np.ndarray) -> np.ndarray:
        feed = {self.vision_input: pixel_values.astype(np.float32, copy=False)}
        return self.sessions["vision"].run([self.vision_output], feed)[0]

    def audio(self, input_features: np.ndarray) -> np.ndarray:
        feed = {self.audio_input: input_features.astype(np.float32, copy=False)}
        return self.sessions["audio"].run([self.audio_output], feed)[0]

    def empty_cache(self) -> list:
        if self.kv is not None:
            return self.kv.empty()
        empty = np.zeros(self.kv_shape, np.float32)
        if self.fused:  # copies in and out: the arrays and the length of them that is valid
            return [empty for _ in self.past_names], 0
        if self.io_binding:
            import onnxruntime as ort

            return [ort.OrtValue.ortvalue_from_numpy(empty, self.device, 0) for _ in self.past_names]
        return [empty for _ in self.past_names]

    def decoder(self, inputs_embeds: np.ndarray, position_ids: np.ndarray, cache: list) -> tuple[np.ndarray, list]:
        inputs_embeds = np.ascontiguousarray(inputs_embeds, dtype=np.float32)
        if self.fused:
            return self._fused_decoder(inputs_embeds, np.ascontiguousarray(position_ids, dtype=np.int64), cache)
        if not self.io_binding:
            feed = {self.embeds_name: inputs_embeds, self.positions_name: position_ids}
            feed.update(zip(self.past_names, cache))
            outputs = self.sessions["decoder"].run([self.logits_name, *self.present_names], feed)
            return outputs[0], outputs[1:]
        session = self.sessions["decoder"]
        binding = session.io_binding()
        binding.bind_cpu_input(self.embeds_name, inputs_embeds)
        binding.bind_cpu_input(self.positions_name, np.ascontiguousarray(position_ids, dtype=np.int64))
        for name, value in zip(self.past_names, cache):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(self.logits_name, "cpu")
        for name in self.present_names:
            binding.bind_output(name, self.device, 0)
        session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        return outputs[0].numpy(), list(outputs[1:])

    def _fused_decoder(self, inputs_embeds: np.ndarray, position_ids: np.ndarray, cache):
        """The fused decoder reads the cache up to the last position id, so the positions must be the ones right
        after the cache's valid length (as the generation loop's always are)."""
        count = inputs_embeds.shape[1]
        length = cache.length if self.kv is not None else cache[1]
        if position_ids.shape != (1, count) or not np.array_equal(position_ids[0], np.arange(length, length + count)):
            raise ValueError(f"the fused decoder continues its cache at position {length}: position_ids must be "
                             f"{length} .. {length + count - 1}")
        part = "prefill" if count > 1 and "prefill" in self.sessions else "decoder"
        inputs = {self.embeds_name: inputs_embeds, self.positions_name: position_ids}
        if self.kv is not None:
            return self.kv.run(part, inputs, cache, count)
        arrays, length = cache
        if length + count > self.kv_shape[2]:
            raise capacity_error(length + count, self.kv_shape[2])
        inputs.update(zip(self.past_names, arrays))
        outputs = self.sessions[part].run([self.logits_name, *self.present_names], inputs)
        return outputs[0], (outputs[1:], length + count)
