"""``r1omni-edge demo``: the whole path on a fresh machine with no downloads and no camera. The toy R1-Omni that
ships with the package (the R1-Omni architecture at a tiny size, trained here with SFT then GRPO on a synthetic
audio-visual task: tools/train_toy.py) is exported to a bundle, and a generated clip that shows each of the task's
four classes in turn goes through the live pipeline as if it were a camera and a microphone. The demo counts how many
windows got their scene's label. The toy model is not the real checkpoint, and the demo says so."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from ..bundle import MANIFEST, PRECISIONS
from ..errors import OutputError
from ..files import sha256_file
from ..recognition import RecognitionOptions
from ..synthetic import TOY_DIR
from .options import add_audio_front_end

NOT_REAL_FIRST = ("NOTE: the demo model is a toy R1-Omni of the same architecture (tiny, trained on a synthetic task "
                  "of 4 colours and tones), not the published checkpoint: it knows nothing of faces or voices.")
NOT_REAL = (
    f"{NOT_REAL_FIRST} With the real R1-Omni-0.5B and its towers in models/:\n"
    "  r1omni-edge export --model models/R1-Omni-0.5B --models-dir models --out bundles/r1omni-int8 --precision int8\n"
    "  r1omni-edge live --bundle bundles/r1omni-int8 --camera 0 --show"
)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


TOY, TOY_ADAPTED = "R1-Omni-toy", "R1-Omni-toy-fit"  # the trained toy, and the same adapted to --audio-window fit


def prepare(directory: Path, precision: str = "fp32", model: str = TOY) -> tuple[Path, Path, list]:
    """The demo bundle of the toy ``model`` and the clip, built on first use and reused afterwards."""
    from ..synthetic.checkpoint import CHECKPOINT_NAME, write_tiny_checkpoint
    from ..synthetic.task import write_scene_clip

    clip, timeline = scene_clip(directory, write_scene_clip)  # first: a clip of the user's stops the demo at once
    if (TOY_DIR / model / "config.json").is_file():
        checkpoint, models_dir = TOY_DIR / model, TOY_DIR
        _say(f"the toy model: {checkpoint} (beside its towers, in the published layout)")
    else:  # no trained toy in this install: an untrained tiny model, whose answers are noise
        _say("the trained toy model is not installed (tools/train_toy.py --install): using random weights")
        checkpoint, models_dir = directory / CHECKPOINT_NAME, directory
        if not (checkpoint / "config.json").is_file():
            write_tiny_checkpoint(directory)
    bundle = directory / (f"bundle-{precision}" if model == TOY else f"bundle-{model.removeprefix(TOY + '-')}-{precision}")
    if not (bundle / MANIFEST).is_file():
        from ..export.exporter import ExportOptions, export_bundle
        from ..open import open_recognizer

        _say(f"exporting {checkpoint.name} to {bundle} ({precision})")
        reference = open_recognizer(checkpoint, models_dir=models_dir, resize_mode="pad")
        export_bundle(reference, bundle, ExportOptions(precision=precision, labels="dfew", resize_mode="pad"),
                      progress=_say)
    return bundle, clip, timeline


SCENES, SCENES_STAMP = "demo_scenes.mp4", "demo_scenes.json"


def scene_clip(directory: Path, write) -> tuple[Path, list]:
    """The demo's clip in ``directory``: the one an earlier demo wrote (its stamp names its sha256 and timeline), or
    a new one. A file of that name the demo did not write is the user's: refused, never overwritten."""
    clip, stamp = directory / SCENES, directory / SCENES_STAMP
    if clip.exists():
        try:
            recorded = json.loads(stamp.read_text(encoding="utf-8"))
            if recorded["sha256"] == sha256_file(clip):
                return clip, [tuple(scene) for scene in recorded["timeline"]]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        raise OutputError(f"--dir {directory}: holds a {SCENES} that the demo did not write; move it away or choose "
                          "another --dir (nothing was overwritten)")
    directory.mkdir(parents=True, exist_ok=True)
    clip, timeline = write(clip)
    stamp.write_text(json.dumps({"sha256": sha256_file(clip), "timeline": timeline}) + "\n", encoding="utf-8")
    return clip, timeline


def scored(results: list[dict], timeline: list[tuple[str, float, float]]) -> tuple[int, int]:
    """Windows that lie inside one scene (windows are in the clip's time), and how many got that scene's label."""
    right = inside = 0
    for event in results:
        start, end = event["window"]
        for label, begin, finish in timeline:
            if begin - 1e-6 <= start and end <= finish + 1e-6:
                inside += 1
                right += event["label"] == label
    return right, inside


DEMO_RECOGNITION = RecognitionOptions(mode="full", max_new_tokens=48, max_think_tokens=32)


def run_demo(directory: str | Path = "out/demo", precision: str = "fp32", realtime: bool = True,
             recognition: RecognitionOptions = DEMO_RECOGNITION, model: str = TOY) -> int:
    """``model``: the toy (TOY) or the toy adapted to the fast profile's window (TOY_ADAPTED)."""
    from ..open import open_recognizer
    from ..live.run import run_stream
    from ..live.session import LiveConfig

    directory = Path(directory)
    _say(NOT_REAL_FIRST)
    started = time.perf_counter()
    bundle, clip, timeline = prepare(directory, precision, model)
    recognizer = open_recognizer(bundle, expect="bundle", backend="auto")
    recognition = recognizer.check(recognition)
    _say(f"bundle ready in {time.perf_counter() - started:.1f} s; backend {recognizer.backend_name}; "
         f"streaming {clip.name} as a camera and a microphone (window 2 s, stride 1 s; {recognition.mode} mode, "
         f"audio window {recognition.audio_window}, audio layout {recognizer.audio_layout_for(recognition)}, audio "
         f"gate {recognition.audio_gate})")
    results: list[dict] = []

    def collect(event: dict) -> None:
        if event["type"] == "result":
            results.append(event)

    config = LiveConfig(window=2.0, stride=1.0, recognition=recognition)
    session = run_stream(recognizer, clip, config, realtime=realtime, on_event=collect)
    if results:
        latencies = [r["latency_ms"]["total"] for r in results]
        right, inside = scored(results, timeline)
        _say(f"{session.results} windows recognised, {session.dropped} dropped; per-window latency median "
             f"{statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms")
        _say(f"scenes: {', '.join(label for label, _, _ in timeline)} ({timeline[0][2]:.0f} s each); "
             f"{right} of {inside} windows inside one scene got its label")
    _say(NOT_REAL)
    return 0 if session.results else 1


def register(sub) -> None:
    demo = sub.add_parser("demo", help="build a small model, export it and run the live pipeline on a generated clip")
    demo.add_argument("--dir", default="out/demo", help="where the demo model, bundle and clip go (reused)")
    demo.add_argument("--precision", default="fp32", choices=[p for p in PRECISIONS if p != "fp16"],
                      help="fp16 is left out: it is for GPUs, and the demo runs on the CPU")
    demo.add_argument("--fast", action="store_true", help="process the clip as fast as possible")
    demo.add_argument("--fast-profile", action="store_true",
                      help="the live fast profile (label mode, --audio-window fit, energy gate) on the toy adapted "
                           "to it (train adapt), so that it keeps the toy's published answers")
    add_audio_front_end(demo)
    demo.set_defaults(func=cmd_demo, audio_window=None, audio_gate=None)


def cmd_demo(args: argparse.Namespace) -> int:
    from ..recognition import FAST_PROFILE
    from .options import recognition_options

    recognition = recognition_options(args, DEMO_RECOGNITION, FAST_PROFILE if args.fast_profile else None)
    return run_demo(args.dir, precision=args.precision, realtime=not args.fast, recognition=recognition,
                    model=TOY_ADAPTED if args.fast_profile else TOY)
