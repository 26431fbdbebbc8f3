"""A bundle behind the recognition pipeline: ``BundleRecognizer.from_bundle`` checks the bundle, picks a backend
(``make_backend``) and returns the pipeline's recognizer, whose answers are constrained to the bundle's labels by
default. Torch-free."""

from __future__ import annotations

import logging
from pathlib import Path

from ..bundle import Manifest, load_bundle
from .. import cpu
from ..errors import InputError
from ..pipeline.recognizer import Recognizer
from .base import BundleEngine
from .onnxruntime import ORT_PROVIDERS, OnnxRuntimeBackend, resolve_backend

__all__ = ["BACKENDS", "BundleRecognizer", "make_backend"]
log = logging.getLogger(__name__)
backend_log = logging.getLogger("r1omni_edge.engines.backend")  # which backend the factory chose
# The ways a bundle can run (make_backend makes them): auto picks the fastest present; an onnxruntime execution
# provider; engine, the native TensorRT engines that build-engines wrote.
BACKENDS = ("auto", *ORT_PROVIDERS, "engine")


class BundleRecognizer(Recognizer):
    def __init__(self, directory: Path, manifest: Manifest, backend: BundleEngine):
        self.directory = Path(directory)
        self.manifest = manifest
        self.backend = backend
        super().__init__(backend, constrain=True)

    @classmethod
    def from_bundle(cls, path: str | Path, backend: str = "auto", threads: int | None = None,
                    check_hashes: bool = True) -> "BundleRecognizer":
        manifest = load_bundle(path, hashes=check_hashes)
        recognizer = cls(Path(path), manifest, make_backend(Path(path), manifest, backend, threads))
        warning = saturation_warning(path, manifest)
        if warning and recognizer.backend_name.startswith("onnxruntime"):  # its int8 ops run on the CPU
            log.warning(warning)
        return recognizer

    @property
    def instruction(self) -> str:
        """The instruction the bundle answers: fixed at export (its gate is folded into the vision part)."""
        return self.manifest.instruction


def saturation_warning(path: str | Path, manifest: Manifest) -> str | None:
    """What to tell the user where the bundle's full-range int8 weights saturate on this CPU, else None."""
    parts = cpu.saturating_parts(manifest.int8_weights())
    if not parts:
        return None
    return (f"{path}: the int8 parts {', '.join(parts)} hold full-range int8 weights, which saturate on this CPU "
            f"({cpu.int8_support().instructions}): answers drift from the model's. Export the bundle again with this "
            "version of r1omni-edge (7-bit int8 weights, right on every CPU)")


def make_backend(directory: Path, manifest: Manifest, backend: str = "auto",
                 threads: int | None = None) -> BundleEngine:
    """'auto': the bundle's TensorRT engines when it has them and TensorRT is here, else the best onnxruntime
    provider (TensorRT EP, CUDA, CPU)."""
    from .tensorrt import TensorRTBackend
    from .tensorrt_support import engines_available

    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "engine" or (backend == "auto" and manifest.engines and engines_available()):
        backend_log.info("backend: native TensorRT engines")
        return TensorRTBackend(directory, manifest)
    if backend == "auto" and manifest.engines:
        backend_log.info("the bundle has TensorRT engines, but TensorRT / cuda-python are not importable here")
    provider = resolve_backend(backend)
    backend_log.info("backend: onnxruntime with %s", ORT_PROVIDERS[provider][0])
    return OnnxRuntimeBackend(directory, manifest, provider, threads)
