"""Native TensorRT engines (from ``r1omni-edge build-engines``) as a runtime backend: TensorRT 10's Python API for
the engines, cuda-python for device memory. No torch, no onnxruntime.

The decoder has two execution contexts, one per optimisation profile (prefill, single-token decode), so decode never
switches profiles. KV tensors stay on the device between steps; each is freed when nothing references it any more,
which keeps the cached prompt prefix alive for as long as the recognizer holds it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..bundle import PARTS, Manifest, engine_file
from ..errors import InputError
from .base import BundleEngine
from .tensorrt_support import import_tensorrt

PREFILL_PROFILE, DECODE_PROFILE = 0, 1


def _import_cuda():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise InputError("the TensorRT engine backend needs cuda-python (pip install cuda-python); "
                             "or use --backend cuda (onnxruntime-gpu)") from None
    return cudart


def _check(result):
    """cuda-python returns (error, value...) tuples; raise on any error."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise RuntimeError(f"CUDA call failed with error {error}")
    return values[0] if len(values) == 1 else values


class DeviceTensor:
    """A device allocation with its shape and dtype, freed when garbage-collected."""

    def __init__(self, cudart, shape: tuple[int, ...], dtype: np.dtype):
        self.cudart = cudart
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.nbytes = math.prod(self.shape) * self.dtype.itemsize
        self.ptr = _check(cudart.cudaMalloc(max(self.nbytes, 1)))  # 0-byte tensors (an empty cache) still get an address

    def __del__(self):
        if getattr(self, "ptr", None):
            self.cudart.cudaFree(self.ptr)
            self.ptr = None


class TensorRTBackend(BundleEngine):
    def __init__(self, directory: Path, manifest: Manifest):
        trt = import_tensorrt()
        self.trt = trt
        self.cudart = _import_cuda()
        if not manifest.engines:
            raise InputError(f"{directory}: the bundle has no TensorRT engines; run `r1omni-edge build-engines` first")
        super().__init__(directory, manifest)
        self.name = f"tensorrt-{trt.__version__}"
        self.stream = _check(self.cudart.cudaStreamCreate())
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engines = {}
        for part in PARTS:
            path = Path(directory) / engine_file(part)
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise InputError(
                    f"{path}: this TensorRT ({trt.__version__}) cannot load the engine, built with TensorRT "
                    f"{manifest.engines.get('tensorrt_version')} for {manifest.engines.get('device')}; rebuild it here"
                )
            self.engines[part] = engine
        self.contexts = {"vision": self.engines["vision"].create_execution_context(),
                         "audio": self.engines["audio"].create_execution_context()}
        for name, profile in (("prefill", PREFILL_PROFILE), ("decode", DECODE_PROFILE)):
            context = self.engines["decoder"].create_execution_context()
            context.set_optimization_profile_async(profile, self.stream)
            self.contexts[name] = context

    # ---- memory ------------------------------------------------------------------------------------------------
    def _upload(self, array: np.ndarray) -> DeviceTensor:
        array = np.ascontiguousarray(array)
        tensor = DeviceTensor(self.cudart, array.shape, array.dtype)
        if tensor.nbytes:
            _check(self.cudart.cudaMemcpyAsync(tensor.ptr, array.ctypes.data, tensor.nbytes,
                                               self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        return tensor

    def _download(self, tensor: DeviceTensor) -> np.ndarray:
        out = np.empty(tensor.shape, tensor.dtype)
        _check(self.cudart.cudaMemcpyAsync(out.ctypes.data, tensor.ptr, tensor.nbytes,
                                           self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
        _check(self.cudart.cudaStreamSynchronize(self.stream))
        return out

    def _execute(self, context_name: str, part: str, inputs: dict[str, DeviceTensor], outputs: list[str]
                 ) -> dict[str, DeviceTensor]:
        context = self.contexts[context_name]
        engine = self.engines[part]
        for name, tensor in inputs.items():
            context.set_input_shape(name, tensor.shape)
            context.set_tensor_address(name, tensor.ptr)
        results = {}
        for name in outputs:
            tensor = DeviceTensor(self.cudart, tuple(context.get_tensor_shape(name)),
                                  self.trt.nptype(engine.get_tensor_dtype(name)))
            context.set_tensor_address(name, tensor.ptr)
            results[name] = tensor
        if not context.execute_async_v3(self.stream):
            raise RuntimeError(f"TensorRT failed to run the {part} engine")
        return results

    # ---- the backend interface ------------------------------------------------------------------------------
    def vision(self, pixel_values: np.ndarray) -> np.ndarray:
        out = self._execute("vision", "vision", {self.vision_input: self._upload(pixel_values.astype(np.float32))},
                            [self.vision_output])
        return self._download(out[self.vision_output])

    def audio(self, input_features: np.ndarray) -> np.ndarray:
        out = self._execute("audio", "audio", {self.audio_input: self._upload(input_features.astype(np.float32))},
                            [self.audio_output])
        return self._download(out[self.audio_output])

    def empty_cache(self) -> list[DeviceTensor]:
        return [DeviceTensor(self.cudart, self.kv_shape, np.float32) for _ in self.past_names]

    def decoder(self, inputs_embeds: np.ndarray, position_ids: np.ndarray, cache: list[DeviceTensor]
                ) -> tuple[np.ndarray, list[DeviceTensor]]:
        inputs = {self.embeds_name: self._upload(inputs_embeds.astype(np.float32)),
                  self.positions_name: self._upload(position_ids.astype(np.int64))}
        inputs.update(zip(self.past_names, cache))
        context = "decode" if inputs_embeds.shape[1] == 1 else "prefill"
        out = self._execute(context, "decoder", inputs, [self.logits_name, *self.present_names])
        logits = self._download(out[self.logits_name])  # synchronises the stream: inputs may be freed after this
        return logits, [out[name] for name in self.present_names]
