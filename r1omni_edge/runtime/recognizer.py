"""A bundle behind the recognition pipeline: ``Recognizer.from_bundle`` checks the bundle, picks a backend and
returns the pipeline's recognizer, whose answers are constrained to the bundle's labels by default. Torch-free."""

from __future__ import annotations

from pathlib import Path

from ..bundle import Manifest, load_bundle
from ..pipeline.recognizer import MODES, Recognizer as PipelineRecognizer
from .backends import BundleEngine, make_backend

__all__ = ["MODES", "Recognizer"]


class Recognizer(PipelineRecognizer):
    def __init__(self, directory: Path, manifest: Manifest, backend: BundleEngine):
        self.directory = Path(directory)
        self.manifest = manifest
        self.backend = backend
        super().__init__(backend, constrain=True)

    @classmethod
    def from_bundle(cls, path: str | Path, backend: str = "auto", threads: int | None = None,
                    check_hashes: bool = True) -> "Recognizer":
        manifest = load_bundle(path, hashes=check_hashes)
        return cls(Path(path), manifest, make_backend(Path(path), manifest, backend, threads))

    @property
    def instruction(self) -> str:
        """The instruction the bundle answers: fixed at export (its gate is folded into the vision part)."""
        return self.manifest.instruction
