"""Soak: the live session on a real-time, file-backed camera and microphone for N minutes, with the process's
resident memory, open file descriptors and threads recorded at the same point of every window (as its result is
handed out, after the recognition and before the next window starts), so that no sample falls in the middle of one
recognition and another between two. It fails (exit 1) when, after the warm-up, memory grows by more than 1 MB per
10 minutes or descriptors or threads grow.

    .venv/bin/python benchmarks/soak.py --minutes 60                          # the shipped toy model (exported first)
    .venv/bin/python benchmarks/soak.py --minutes 60 --bundle out/real-int8 --fast-profile   # real size, real time

The camera is OpenCV reading a clip at its frame rate, rewound at its end; the microphone is the clip's audio played
in real time through the same callback sounddevice uses. This process never imports torch (the toy bundle is
exported in a subprocess), so what it measures is the edge runtime. Results: benchmarks/results/soak_NAME.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, print_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RSS_LIMIT_MB_PER_10_MIN = 1.0


def process_status() -> dict[str, float]:
    """Resident memory (MB), open descriptors and OS threads of this process, from /proc."""
    fields = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "fds": len(os.listdir("/proc/self/fd")),
            "threads": int(fields["Threads"])}


class Sampler:
    """A sample per recognised window, taken in the result's event (the same point of every window)."""

    def __init__(self):
        self.samples, self.started = [], time.monotonic()

    def take(self) -> None:
        self.samples.append({"t": round(time.monotonic() - self.started, 1), **process_status()})


def slope_per_10_min(samples: list[dict], key: str) -> float:
    """Least-squares slope of ``key`` against time, per 10 minutes."""
    ts = [s["t"] for s in samples]
    ys = [s[key] for s in samples]
    mean_t, mean_y = statistics.fmean(ts), statistics.fmean(ys)
    var = sum((t - mean_t) ** 2 for t in ts)
    return 600.0 * sum((t - mean_t) * (y - mean_y) for t, y in zip(ts, ys)) / var if var else 0.0


def verdict(samples: list[dict], warmup: float) -> dict:
    """After the warm-up: the RSS slope, and whether descriptors or threads grew (the second half's maximum above
    the first half's: a worker thread coming and going is not growth, a leak is)."""
    after = [s for s in samples if s["t"] >= warmup]
    if len(after) < 4:
        raise SystemExit(f"only {len(after)} samples after the {warmup:.0f} s warm-up; run longer")
    half = len(after) // 2
    out = {"warmup_s": warmup, "samples_after_warmup": len(after),
           "rss_mb_per_10_min": round(slope_per_10_min(after, "rss_mb"), 3),
           "rss_after_warmup_mb": round(after[0]["rss_mb"], 1), "rss_end_mb": round(after[-1]["rss_mb"], 1)}
    failures = []
    if out["rss_mb_per_10_min"] > RSS_LIMIT_MB_PER_10_MIN:
        failures.append(f"RSS grows {out['rss_mb_per_10_min']:.2f} MB per 10 min (limit {RSS_LIMIT_MB_PER_10_MIN})")
    for key in ("fds", "threads"):
        first, second = max(s[key] for s in after[:half]), max(s[key] for s in after[half:])
        out[f"{key}_first_half_max"], out[f"{key}_second_half_max"] = first, second
        if second > first:
            failures.append(f"{key} grew: {first} -> {second}")
    out["failures"] = failures
    return out


def toy_bundle(directory: Path) -> Path:
    """The shipped toy model exported (fp32) in a subprocess, so this process stays torch-free."""
    from r1omni_edge.synthetic import TOY_DIR

    bundle = directory / "toy-fp32"
    if not (bundle / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "r1omni_edge.cli", "export", "--model", str(TOY_DIR / "R1-Omni-toy"),
                        "--models-dir", str(TOY_DIR), "--out", str(bundle), "--labels", "dfew", "--resize", "pad"],
                       check=True, stdout=subprocess.DEVNULL)
    return bundle


def plot(samples: list[dict], warmup: float, title: str, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot")
        return
    minutes = [s["t"] / 60 for s in samples]
    figure, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    for axis, key, label in zip(axes, ("rss_mb", "fds", "threads"), ("RSS (MB)", "open descriptors", "threads")):
        axis.plot(minutes, [s[key] for s in samples], lw=1)
        axis.axvline(warmup / 60, color="grey", ls="--", lw=0.8)
        axis.set_ylabel(label)
    axes[-1].set_xlabel("minutes (dashed: end of warm-up)")
    axes[0].set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--bundle", type=Path, help="bundle to run (default: the shipped toy model, exported first)")
    parser.add_argument("--work", type=Path, default=Path("out/soak"), help="where the clip and the toy bundle go")
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--stride", type=float, default=2.0)
    parser.add_argument("--mode", default="full", choices=("full", "label"))
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--max-think-tokens", type=int, default=64)
    parser.add_argument("--warmup", type=float, help="seconds not judged (default: 2 minutes, or 20%% if shorter)")
    parser.add_argument("--fast-profile", action="store_true",
                        help="live --fast-profile: label mode, the fitted audio window, the energy gate")
    parser.add_argument("--threads", type=int, help="onnxruntime threads (default: all cores)")
    parser.add_argument("--out", type=Path, help="results JSON (default: benchmarks/results/soak_NAME.json)")
    args = parser.parse_args()

    from dataclasses import replace

    from r1omni_edge.engines import BundleRecognizer
    from r1omni_edge.live.run import run_live
    from r1omni_edge.live.session import LiveConfig
    from r1omni_edge.live.sources import PacedAudioStream
    from r1omni_edge.media.decode import decode_audio
    from r1omni_edge.recognition import RecognitionOptions
    from r1omni_edge.synthetic.task import write_scene_clip

    args.work.mkdir(parents=True, exist_ok=True)
    bundle = args.bundle or toy_bundle(args.work)
    name = "toy" if args.bundle is None else bundle.name
    clip, _ = write_scene_clip(args.work / "scenes.mp4")
    waveform = decode_audio(clip)
    info = machine_info(with_torch=False)
    print_header(f"soak: {args.minutes:g} min of live recognition on {bundle}", info)
    recognizer = BundleRecognizer.from_bundle(bundle, backend="cpu", threads=args.threads)
    recognition = RecognitionOptions(mode=args.mode, max_new_tokens=args.max_new_tokens,
                                     max_think_tokens=args.max_think_tokens)
    if args.fast_profile:
        from r1omni_edge.recognition import FAST_PROFILE

        recognition = replace(FAST_PROFILE, max_new_tokens=args.max_new_tokens)
        name += "_fast"
    warmup = args.warmup if args.warmup is not None else min(120.0, 0.2 * args.minutes * 60)
    counts = {"result": 0, "error": 0, "notice": 0, "source": 0}
    latencies: list[float] = []

    sampler = Sampler()

    def on_event(event: dict) -> None:
        counts[event["type"]] = counts.get(event["type"], 0) + 1
        if event["type"] == "result":
            latencies.append(event["latency_ms"]["total"])
            sampler.take()

    config = LiveConfig(window=args.window, stride=args.stride, recognition=recognition)
    session = run_live(recognizer, str(clip), loop=True, config=config, duration=args.minutes * 60, view=False,
                       on_event=on_event, stream_factory=lambda callback: PacedAudioStream(waveform, callback))
    judged = verdict(sampler.samples, warmup)
    report = {
        "bundle": str(bundle), "precision": recognizer.manifest.precision, "minutes": args.minutes,
        "config": vars(config), "audio_window": recognizer.audio_window, "audio_gate": recognizer.audio_gate,
        "sampled": "at each window's result", "machine": info,
        "session": {"windows": session.windows, "results": session.results, "dropped": session.dropped,
                    "skipped": session.skipped, "failed": session.failed, "events": counts,
                    "median_latency_ms": round(statistics.median(latencies), 1) if latencies else None,
                    "p90_latency_ms": round(statistics.quantiles(latencies, n=10)[-1], 1) if len(latencies) > 1
                    else None},
        "verdict": judged, "samples": sampler.samples,
    }
    out = args.out or RESULTS / f"soak_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    plot(sampler.samples, warmup, f"soak, {name} ({recognizer.manifest.precision}), {args.minutes:g} min",
         out.with_suffix(".png"))
    print(f"windows {session.windows}, results {session.results}, dropped {session.dropped}, skipped "
          f"{session.skipped}, failed {session.failed}; median latency {report['session']['median_latency_ms']} ms")
    print(f"after the {warmup:.0f} s warm-up: RSS {judged['rss_after_warmup_mb']} -> {judged['rss_end_mb']} MB "
          f"({judged['rss_mb_per_10_min']:+.3f} MB per 10 min), fds max {judged['fds_first_half_max']} -> "
          f"{judged['fds_second_half_max']}, threads max {judged['threads_first_half_max']} -> "
          f"{judged['threads_second_half_max']}")
    print(f"wrote {out}")
    if judged["failures"] or session.results == 0:
        print("FAIL: " + "; ".join(judged["failures"] or ["no window was recognised"]))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
