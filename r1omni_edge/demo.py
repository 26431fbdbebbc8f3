"""``r1omni-edge demo``: the whole path on a fresh machine with no downloads and no camera. A small model of the
R1-Omni architecture is built (or reused), exported to a bundle, and a generated clip goes through the live pipeline
as if it were a camera and a microphone. The demo model is not the real checkpoint, and the demo says so."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from .bundle import MANIFEST

NOT_REAL = (
    "NOTE: this demo model is a tiny R1-Omni of the same architecture with random weights, not the published "
    "checkpoint: its labels and reasoning are noise. With the real R1-Omni-0.5B and its towers in models/:\n"
    "  r1omni-edge export --model models/R1-Omni-0.5B --models-dir models --out bundles/r1omni-int8 --precision int8\n"
    "  r1omni-edge live --bundle bundles/r1omni-int8 --camera 0 --show"
)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare(directory: Path, precision: str = "fp32") -> tuple[Path, Path]:
    """The demo bundle and clip, built on first use and reused afterwards."""
    from .synthetic.checkpoint import CHECKPOINT_NAME, write_tiny_checkpoint
    from .synthetic.clips import write_clip

    checkpoint = directory / CHECKPOINT_NAME
    if not (checkpoint / "config.json").is_file():
        _say(f"building a tiny model in {directory}")
        write_tiny_checkpoint(directory)
    bundle = directory / f"bundle-{precision}"
    if not (bundle / MANIFEST).is_file():
        from .export.exporter import ExportOptions, export_bundle
        from .model import TorchRecognizer

        _say(f"exporting it to {bundle} ({precision})")
        reference = TorchRecognizer.from_checkpoint(checkpoint, models_dir=directory)
        export_bundle(reference, bundle, ExportOptions(precision=precision), progress=_say)
    clip = directory / "demo_clip.mp4"
    if not clip.is_file():
        write_clip(clip, seconds=8.0, fps=15, size=(320, 240), audio=True, tone_hz=330.0)
    return bundle, clip


def run_demo(directory: str | Path = "out/demo", precision: str = "fp32", realtime: bool = True) -> int:
    from .runtime import Recognizer
    from .runtime.app import run_stream
    from .runtime.live import LiveConfig

    directory = Path(directory)
    _say(NOT_REAL.splitlines()[0])
    started = time.perf_counter()
    bundle, clip = prepare(directory, precision)
    recognizer = Recognizer.from_bundle(bundle, backend="auto")
    _say(f"bundle ready in {time.perf_counter() - started:.1f} s; backend {recognizer.backend_name}; "
         f"streaming {clip.name} as a camera and a microphone (window 2 s, stride 1 s)")
    latencies: list[float] = []

    def collect(event: dict) -> None:
        if event["type"] == "result":
            latencies.append(event["latency_ms"]["total"])

    config = LiveConfig(window=2.0, stride=1.0, mode="full", max_new_tokens=48, max_think_tokens=32)
    session = run_stream(recognizer, clip, config, realtime=realtime, on_event=collect)
    if latencies:
        _say(f"{session.results} windows recognised, {session.dropped} dropped; per-window latency median "
             f"{statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms")
    _say(NOT_REAL)
    return 0 if session.results else 1
