"""Shared fixtures: one tiny checkpoint in the published layout and a few clips, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    from r1omni_edge.synthetic.checkpoint import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("models"), seed=0)


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    from r1omni_edge.synthetic.clips import write_clip

    root = tmp_path_factory.mktemp("clips")
    return {
        "av": write_clip(root / "with_audio.mp4", seconds=2.0, audio=True),
        "video_only": write_clip(root / "no_audio.mp4", seconds=2.0, audio=False),
        "short": write_clip(root / "short.mp4", seconds=0.5, fps=10, audio=True),
    }


@pytest.fixture(scope="session")
def recognizer(tiny):
    from r1omni_edge.model import TorchRecognizer

    return TorchRecognizer.from_checkpoint(tiny.checkpoint, models_dir=tiny.root)


@pytest.fixture(scope="session")
def bundles(recognizer, tmp_path_factory):
    """fp32, int8 and int4 bundles of the tiny model, exported once: precision -> (manifest, path)."""
    from r1omni_edge.export.exporter import ExportOptions, export_bundle

    root = tmp_path_factory.mktemp("bundles")
    return {p: (export_bundle(recognizer, root / p, ExportOptions(precision=p)), root / p)
            for p in ("fp32", "int8", "int4")}
