"""The x86 / aarch64 comparison of tools/aarch64_run.sh: ``run`` recognises the same clips with the same bundles in
whatever Python runs it (the x86 venv, or an aarch64 Python under qemu-user) and writes what it got; ``compare``
holds the aarch64 run to the x86 run and prints the table. ``run`` and ``compare`` import only the runtime (no
torch); ``prepare`` exports the bundles on x86.

    python tools/aarch64_cases.py prepare DIR     (x86, with the export tools: the toy's bundles and the clips)
    python tools/aarch64_cases.py run --bundles DIR --clips DIR --out FILE.json   (arrays beside it: FILE.npz)
    python tools/aarch64_cases.py compare X86.json AARCH64.json [--write RESULT.json]

The cases: the toy's fp32 and int8 bundles in full mode (the reasoning, then the answer, as published) and in label
mode, and the fast profile (label mode, the audio window fitted, the energy gate) on the toy adapted to it, fp32 and
int8; and the live session on the demo's clip (fast profile, int8). Besides each answer, the run keeps the arrays each stage made (the sampled frames' pixels, the log-mel
features, the vision and audio parts' outputs), so that a difference is found where it starts.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from common import machine_info  # noqa: E402  (benchmarks/common.py: standard library only)

# case -> (bundle directory name under --bundles, mode or "fast"); the bundles are tools/aarch64_run.sh's
CASES = {
    "fp32 full": ("bundle-fp32", "full"),
    "fp32 label": ("bundle-fp32", "label"),
    "int8 full": ("bundle-int8", "full"),
    "int8 label": ("bundle-int8", "label"),
    "fast fp32": ("bundle-fit-fp32", "fast"),
    "fast int8": ("bundle-fit-int8", "fast"),
}
# and the live pipeline (the clip played as a camera and a microphone, every 2 s window at a 1 s stride, the fast
# profile): the demo's clip of the four scenes, through the same bundle
LIVE = {"live fast int8": "bundle-fit-int8"}
SCENES = "demo_scenes.mp4"
STAGES = ("pixel_values", "input_features", "vision", "audio")
# What the aarch64 run must show: fp32 the x86 run's tokens exactly; int8 (whose kernels differ by CPU: NEON dot
# products there, AVX2 here) the same labels and probabilities within PROBABILITY_TOLERANCE.
PROBABILITY_TOLERANCE = 0.05
PIXEL_LEVELS = 255 / 2  # a pixel value is (level / 255 - 0.5) / 0.5: one level is 2 / 255


# Held-out clips of the toy task (sizes, frame rates, volumes and noise that no training used): two sets of one clip
# per class, so that the first four (run --limit 4) have every class too.
CLIP_SETS = {"aarch64_a": 20261206, "aarch64_b": 20261207}


def prepare(directory: Path) -> None:
    """The toy's bundles (fp32 and int8; the toy adapted to the fast profile's window, fp32 and int8) and the clips,
    in ``directory``; what is there already is reused."""
    from r1omni_edge.cli.demo import TOY, TOY_ADAPTED, prepare as demo_bundle
    from r1omni_edge.synthetic.task import HELD_OUT_SETTINGS, write_clip_set

    for model in (TOY, TOY_ADAPTED):
        for precision in ("fp32", "int8"):
            bundle, _, _ = demo_bundle(directory, precision, model)
            print(f"bundle: {bundle}", flush=True)
    for name, seed in CLIP_SETS.items():
        write_clip_set(directory, 4, seed=seed, settings=HELD_OUT_SETTINGS, name=name)
    print(f"clips: {directory / 'clips'}")


def versions() -> dict[str, str]:
    import av
    import onnxruntime
    import tokenizers

    return {"python": platform.python_version(), "machine": platform.machine(), "numpy": np.__version__,
            "onnxruntime": onnxruntime.__version__, "av": av.__version__,
            "ffmpeg (libavformat)": ".".join(map(str, av.library_versions["libavformat"])),
            "tokenizers": tokenizers.__version__}


def run(bundles: Path, clips: Path, out: Path, limit: int | None = None, reference: Path | None = None) -> None:
    """Each bundle once: every clip decoded, its cases recognised, and the stages' arrays kept. With ``reference``
    (the x86 run's arrays) the vision and audio parts also run on the x86 run's own inputs: what the kernels alone
    change, apart from decoding."""
    from r1omni_edge.open import open_recognizer
    from r1omni_edge.recognition import FAST_PROFILE, RecognitionOptions

    paths = sorted(clips.glob("*.mp4"))[:limit]
    if not paths:
        sys.exit(f"{clips}: no .mp4 clips to recognise")
    given = np.load(reference) if reference else None
    answers: dict[str, dict] = {case: {} for case in CASES}
    arrays: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    recognizers = {}
    for bundle in dict.fromkeys(bundle for bundle, _ in CASES.values()):
        started = time.perf_counter()
        recognizer = recognizers[bundle] = open_recognizer(bundles / bundle, expect="bundle", backend="cpu")
        cases = {case: recognizer.check(FAST_PROFILE if mode == "fast" else replace(RecognitionOptions(), mode=mode))
                 for case, (name, mode) in CASES.items() if name == bundle}
        for path in paths:
            clip = recognizer.processor.decode(path, True)
            for case, options in cases.items():
                result = recognizer.recognize(clip.frames, clip.audio, clip.sample_rate, options=options)
                answers[case][path.name] = {"label": result.label, "tokens": result.token_ids, "text": result.text,
                                            "probabilities": result.probabilities, "audio_gated": result.audio_gated}
            window = next(iter(cases.values())).audio_window  # one per bundle (the fit bundle's cases: fast only)
            inputs = recognizer.prepare(clip.frames, clip.audio, clip.sample_rate, audio_window=window)
            if inputs.input_features is None:
                sys.exit(f"{path}: has no audio track; the comparison's clips all have sound")
            made = {"pixel_values": inputs.pixel_values, "input_features": inputs.input_features,
                    "vision": recognizer.engine.vision(inputs.pixel_values),
                    "audio": recognizer.engine.audio(inputs.input_features)}
            if given is not None:
                key = f"{bundle}|{path.name}|"
                made["vision on x86 inputs"] = recognizer.engine.vision(given[key + "pixel_values"])
                made["audio on x86 inputs"] = recognizer.engine.audio(given[key + "input_features"])
            for stage, value in made.items():
                arrays[f"{bundle}|{path.name}|{stage}"] = np.asarray(value, dtype=np.float32)
        seconds[bundle] = round(time.perf_counter() - started, 2)
        print(f"{bundle} ({', '.join(cases)}): {len(paths)} clips in {seconds[bundle]} s", flush=True)
    for case, bundle in LIVE.items():
        started = time.perf_counter()
        answers[case] = live_windows(recognizers[bundle], bundles / SCENES)
        seconds[case] = round(time.perf_counter() - started, 2)
        print(f"{case}: {len(answers[case])} windows of {SCENES} in {seconds[case]} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out.with_suffix(".npz"), **arrays)
    out.write_text(json.dumps({"versions": versions(), "clips": [p.name for p in paths], "seconds": seconds,
                               "answers": answers}, indent=1) + "\n")


def live_windows(recognizer, clip: Path) -> dict[str, dict]:
    """The clip through the live session (its decoding thread, rings and scheduler) as fast as it goes, every
    window: -> {"start-end": {label, probabilities}}."""
    from r1omni_edge.live.run import run_stream
    from r1omni_edge.live.session import LiveConfig
    from r1omni_edge.recognition import FAST_PROFILE

    windows: dict[str, dict] = {}

    def collect(event: dict) -> None:
        if event["type"] == "result":
            start, end = event["window"]
            windows[f"{start:.2f}-{end:.2f}"] = {"label": event["label"], "probabilities": event["probabilities"]}
        elif event["type"] == "error":
            sys.exit(f"{clip}: the live session failed: {event}")

    config = LiveConfig(window=2.0, stride=1.0, recognition=recognizer.check(FAST_PROFILE))
    run_stream(recognizer, clip, config, realtime=False, on_event=collect, view=False)
    return windows


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm else float(np.array_equal(a, b))


def probability_gap(mine: dict, theirs: dict, keys: list[str]) -> tuple[float | None, float | None]:
    """Over the answers named ``keys``: the largest difference of a label probability, and the smallest cosine of
    the probability vectors (None, None without answers)."""
    pairs = [(np.array(list(mine[key]["probabilities"].values())),
              np.array([theirs[key]["probabilities"][label] for label in mine[key]["probabilities"]])) for key in keys]
    if not pairs:
        return None, None
    return float(max(np.abs(a - b).max() for a, b in pairs)), min(cosine(a, b) for a, b in pairs)


def compare(reference: Path, other: Path) -> dict:
    """-> per case: clips, identical token sequences, equal labels, the largest probability difference, the
    smallest cosine of each stage's output and of the label probabilities, and whether the case passed."""
    runs = [json.loads(path.read_text()) for path in (reference, other)]
    arrays = [np.load(path.with_suffix(".npz")) for path in (reference, other)]
    clips = runs[1]["clips"]
    if not set(clips) <= set(runs[0]["clips"]):
        sys.exit(f"{other} recognised clips that {reference} did not")
    rows = {}
    for case, (bundle, mode) in CASES.items():
        mine, theirs = runs[0]["answers"][case], runs[1]["answers"][case]
        tokens = sum(mine[c]["tokens"] == theirs[c]["tokens"] for c in clips)
        labels = sum(mine[c]["label"] == theirs[c]["label"] for c in clips)
        row = {"clips": len(clips), "tokens identical": tokens, "labels equal": labels}
        if mine[clips[0]]["probabilities"] is not None:
            row["max |dp|"], row["min cos(p)"] = probability_gap(mine, theirs, clips)
        for stage in STAGES:
            row[f"min cos({stage})"] = min(cosine(arrays[0][f"{bundle}|{c}|{stage}"],
                                                  arrays[1][f"{bundle}|{c}|{stage}"]) for c in clips)
            if stage in ("vision", "audio") and f"{bundle}|{clips[0]}|{stage} on x86 inputs" in arrays[1]:
                row[f"min cos({stage} on x86 inputs)"] = min(
                    cosine(arrays[0][f"{bundle}|{c}|{stage}"], arrays[1][f"{bundle}|{c}|{stage} on x86 inputs"])
                    for c in clips)
        row["max |d pixel| (of 255)"] = round(max(
            float(np.abs(arrays[0][f"{bundle}|{c}|pixel_values"] - arrays[1][f"{bundle}|{c}|pixel_values"]).max())
            for c in clips) * PIXEL_LEVELS, 2)
        exact = bundle.endswith("fp32")
        row["passed"] = bool(tokens == len(clips) if exact else
                             labels == len(clips) and row.get("max |dp|", 0.0) <= PROBABILITY_TOLERANCE)
        row["rule"] = "tokens identical" if exact else f"labels equal, max |dp| <= {PROBABILITY_TOLERANCE}"
        rows[case] = row
    for case in LIVE:
        mine, theirs = runs[0]["answers"][case], runs[1]["answers"][case]
        shared = [w for w in mine if w in theirs]
        labels = sum(mine[w]["label"] == theirs[w]["label"] for w in shared)
        row = {"windows": len(mine), "windows in both": len(shared), "labels equal": labels}
        row["max |dp|"], row["min cos(p)"] = probability_gap(mine, theirs, shared)
        row["passed"] = bool(shared and len(shared) == len(mine) == len(theirs) and labels == len(shared)
                             and row["max |dp|"] <= PROBABILITY_TOLERANCE)
        row["rule"] = f"the same windows, labels equal, max |dp| <= {PROBABILITY_TOLERANCE}"
        rows[case] = row
    return {"reference": runs[0]["versions"], "other": runs[1]["versions"],
            "seconds": {"reference": runs[0]["seconds"], "other": runs[1]["seconds"]}, "cases": rows}


def commit() -> str:
    import subprocess

    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def table(report: dict) -> str:
    numbers = {"max |dp|": "{:.1e}", "min cos(p)": "{:.6f}", "max |d pixel| (of 255)": "{:.0f}",
               "min cos(vision)": "{:.6f}", "min cos(audio)": "{:.6f}", "min cos(vision on x86 inputs)": "{:.7f}",
               "min cos(audio on x86 inputs)": "{:.7f}"}

    def line(cells: list[str]) -> str:  # a cell's own bars escaped for Markdown
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    lines = [line(["case", "rule", "tokens identical", "labels equal", *numbers, "passed"]),
             "|" + "---|" * (len(numbers) + 5)]
    for case, row in report["cases"].items():
        if "windows" in row:  # the live session: its windows, no tokens or stages
            counts = ["-", f"{row['labels equal']}/{row['windows']} windows"]
        else:
            counts = [f"{row['tokens identical']}/{row['clips']}", f"{row['labels equal']}/{row['clips']}"]
        cells = [form.format(row[name]) if row.get(name) is not None else "-" for name, form in numbers.items()]
        lines.append(line([case, row["rule"], *counts, *cells, "yes" if row["passed"] else "NO"]))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    preparing = sub.add_parser("prepare")
    preparing.add_argument("directory", type=Path)
    running = sub.add_parser("run")
    running.add_argument("--bundles", type=Path, required=True)
    running.add_argument("--clips", type=Path, required=True)
    running.add_argument("--out", type=Path, required=True)
    running.add_argument("--limit", type=int, help="the first N clips only")
    running.add_argument("--reference", type=Path, help="the x86 run's arrays (.npz): also run the parts on them")
    comparing = sub.add_parser("compare")
    comparing.add_argument("reference", type=Path)
    comparing.add_argument("other", type=Path)
    comparing.add_argument("--write", type=Path, help="also write the report here (JSON)")
    comparing.add_argument("--emulator", default="", help="how the other side ran (recorded in the report)")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.directory)
        return 0
    if args.command == "run":
        run(args.bundles, args.clips, args.out, args.limit, args.reference)
        return 0
    report = compare(args.reference, args.other)
    report["machine"] = {"host CPU": machine_info(with_torch=False)["processor"], "emulator": args.emulator, "date": time.strftime("%Y-%m-%d"),
                         "commit": commit()}
    print(table(report))
    for side in ("reference", "other"):
        print(f"{side}: " + ", ".join(f"{k} {v}" for k, v in report[side].items()))
    print(", ".join(f"{k}: {v}" for k, v in report["machine"].items()))
    if args.write:
        args.write.write_text(json.dumps(report, indent=1) + "\n")
    failed = [case for case, row in report["cases"].items() if not row["passed"]]
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
