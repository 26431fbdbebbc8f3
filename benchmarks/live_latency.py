"""Per-window latency of the live pipeline (a clip streamed as camera + microphone, every window recognised) in full
and label mode, and how often label mode agrees with full mode.

    .venv/bin/python benchmarks/live_latency.py --tiny                       # the tiny demo model, fp32 bundle
    .venv/bin/python benchmarks/live_latency.py --bundle out/real-int8       # e.g. the real-size int8 export
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, peak_rss_mb, print_header  # noqa: E402


def run_mode(recognizer, clip: Path, mode: str, args) -> list[dict]:
    from r1omni_edge.runtime.app import run_stream
    from r1omni_edge.runtime.live import LiveConfig

    events: list[dict] = []
    config = LiveConfig(window=args.window, stride=args.stride, mode=mode, max_new_tokens=args.max_new_tokens,
                        max_think_tokens=args.max_think_tokens)
    run_stream(recognizer, clip, config, realtime=False, on_event=events.append, view=False)
    return [e for e in events if e["type"] == "result"]


def summary(results: list[dict]) -> dict:
    totals = [r["latency_ms"]["total"] for r in results]
    stages = {k: round(statistics.median(r["latency_ms"].get(k, 0.0) for r in results), 1)
              for k in ("preprocess", "vision", "audio", "prefill", "decode")}
    return {"windows": len(results), "median_ms": round(statistics.median(totals), 1),
            "max_ms": round(max(totals), 1), "median_stages_ms": stages,
            "median_generated_tokens": statistics.median(r["generated_tokens"] or 0 for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="bundle to run (default: --tiny)")
    parser.add_argument("--tiny", action="store_true", help="export the demo's toy model first (the default)")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of the generated clip")
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--stride", type=float, default=2.0)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--max-think-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path, help="results JSON (default: benchmarks/results/live_latency_NAME.json)")
    args = parser.parse_args()

    from r1omni_edge.runtime import Recognizer
    from r1omni_edge.synthetic.clips import write_clip

    info = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = args.bundle
        if bundle is None:
            from r1omni_edge.demo import prepare

            bundle, _, _ = prepare(tmp / "demo")
        print_header(f"live pipeline latency, bundle {bundle}", info)
        clip = write_clip(tmp / "clip.mp4", seconds=args.seconds, fps=25, size=(640, 360), audio=True)
        recognizer = Recognizer.from_bundle(bundle, backend="cpu", threads=args.threads)
        full = run_mode(recognizer, clip, "full", args)
        label = run_mode(recognizer, clip, "label", args)
    agreement = sum(a["label"] == b["label"] for a, b in zip(full, label)) / max(len(full), 1)
    report = {"benchmark": "live_latency", "machine": info, "bundle": str(bundle),
              "precision": recognizer.manifest.precision, "backend": recognizer.backend_name,
              "window_s": args.window, "stride_s": args.stride, "max_new_tokens": args.max_new_tokens,
              "max_think_tokens": args.max_think_tokens, "full": summary(full), "label": summary(label),
              "label_mode_agreement": round(agreement, 3), "peak_rss_mb": round(peak_rss_mb())}
    print("| mode | windows | median ms/window | max ms | vision | audio | prefill | decode | tokens |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode in ("full", "label"):
        s = report[mode]
        st = s["median_stages_ms"]
        print(f"| {mode} | {s['windows']} | {s['median_ms']} | {s['max_ms']} | {st['vision']} | {st['audio']} | "
              f"{st['prefill']} | {st['decode']} | {s['median_generated_tokens']} |")
    print(f"label mode agrees with full mode on {agreement:.0%} of {len(full)} windows; peak RSS "
          f"{report['peak_rss_mb']} MB")
    name = "tiny" if args.bundle is None else Path(args.bundle).name
    out = args.out or Path(__file__).parent / "results" / f"live_latency_{name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
