"""Per-window latency of the live pipeline (a clip streamed as camera + microphone, every window recognised) for the
published policy and the fast audio front ends, in full and label mode, side by side in one run, with each fast
profile's agreement with the published policy in the same mode.

    .venv/bin/python benchmarks/live_latency.py                              # the toy model, fp32 bundle
    .venv/bin/python benchmarks/live_latency.py --bundle out/real-int8       # e.g. the real-size int8 export

The clip shows the toy's four classes in turn (colour and tone), so on the toy the labels mean something; on a
real-size bundle with random weights only the latency does.
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

# name -> (mode, audio window, audio gate, audio layout). "published" is the reference each fast profile is compared
# with; the layouts are those of a window shorter than 30 s (docs/audio-front-end.md): compact (the shortest prefill),
# positions (the text after the audio at its published position ids; not on a fused KV buffer: int8 / int4 bundles)
# and tail (the encoder's output for silence fills the missing positions: the published prompt's length).
PROFILES = {
    "published-full": ("full", "full", "off", "compact"),
    "published-label": ("label", "full", "off", "compact"),
    "fit-full": ("full", "fit", "off", "compact"),
    "fit-label": ("label", "fit", "off", "compact"),
    "fit-positions-full": ("full", "fit", "off", "positions"),
    "fit-positions-label": ("label", "fit", "off", "positions"),
    "fit-tail-full": ("full", "fit", "off", "tail"),
    "fit-tail-label": ("label", "fit", "off", "tail"),
    "fit-energy-label": ("label", "fit", "energy", "compact"),
    "fit-tail-energy-label": ("label", "fit", "energy", "tail"),
    "fit-vad-label": ("label", "fit", "vad", "compact"),
}


def run_profile(recognizer, clip: Path, mode: str, window: str, gate: str, layout: str, args) -> list[dict]:
    from r1omni_edge.errors import InputError
    from r1omni_edge.live.run import run_stream
    from r1omni_edge.live.session import LiveConfig

    from r1omni_edge.recognition import RecognitionOptions

    events: list[dict] = []
    recognition = RecognitionOptions(mode=mode, max_new_tokens=args.max_new_tokens,
                                     max_think_tokens=args.max_think_tokens, audio_window=window, audio_gate=gate,
                                     audio_layout=layout)
    try:
        checked = recognizer.check(recognition)
    except InputError as exc:  # a layout this bundle cannot run (positions on a fused KV buffer): reported, not run
        return [{"skipped": str(exc)}]
    config = LiveConfig(window=args.window, stride=args.stride, recognition=checked)
    run_stream(recognizer, clip, config, realtime=False, on_event=events.append, view=False)
    return [e for e in events if e["type"] == "result"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(results: list[dict], stride: float) -> dict:
    totals = [r["latency_ms"]["total"] for r in results]
    stages = {k: round(statistics.median(r["latency_ms"].get(k, 0.0) for r in results), 1)
              for k in ("preprocess", "vision", "audio_gate", "audio", "prefill", "decode", "forward")}
    return {"windows": len(results), "stride_ms": stride * 1e3, "p50_ms": round(statistics.median(totals), 1),
            "p90_ms": round(percentile(totals, 0.9), 1), "kept_up": sum(r["kept_up"] for r in results),
            "gated": sum(bool(r.get("audio_gated")) for r in results), "median_stages_ms": stages,
            "audio_windows_s": sorted({r["audio_window"] for r in results if r["audio_window"]}),
            "median_generated_tokens": statistics.median(r["generated_tokens"] or 0 for r in results)}


def agreement(results: list[dict], reference: list[dict]) -> dict:
    pairs = list(zip(results, reference))
    same = {"windows": len(pairs), "label": round(sum(a["label"] == b["label"] for a, b in pairs) / len(pairs), 3)}
    if any(b["reasoning"] for _, b in pairs):  # full mode: how much of the reasoning is the same
        same["identical_reasoning"] = round(sum(a["reasoning"] == b["reasoning"] for a, b in pairs) / len(pairs), 3)
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="bundle to run (default: the toy model, exported first)")
    parser.add_argument("--adapted", action="store_true",
                        help="without --bundle: the toy adapted to --audio-window fit (train adapt), exported first")
    parser.add_argument("--seconds-each", type=float, default=4.0, help="seconds per class in the clip (4 classes)")
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--stride", type=float, default=2.0)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--max-think-tokens", type=int, default=48)
    parser.add_argument("--profiles", nargs="+", choices=list(PROFILES), default=list(PROFILES))
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path, help="results JSON (default: benchmarks/results/live_latency_NAME.json)")
    args = parser.parse_args()

    from r1omni_edge.engines import BundleRecognizer
    from r1omni_edge.synthetic.task import write_scene_clip

    info = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = args.bundle
        if bundle is None:
            from r1omni_edge.cli.demo import TOY, TOY_ADAPTED, prepare

            bundle, _, _ = prepare(tmp / "demo", model=TOY_ADAPTED if args.adapted else TOY)
        print_header(f"live pipeline latency by audio front end, bundle {bundle}", info)
        clip, _ = write_scene_clip(tmp / "scenes.mp4", seconds_each=args.seconds_each)
        recognizer = BundleRecognizer.from_bundle(bundle, backend="cpu", threads=args.threads)
        runs = {name: run_profile(recognizer, clip, *PROFILES[name], args) for name in args.profiles}
        reasoning = {name: [r["reasoning"] for r in results[:2]] for name, results in runs.items()
                     if results and "reasoning" in results[0] and PROFILES[name][0] == "full"}
    profiles = {}
    for name, results in runs.items():
        mode, window, gate, layout = PROFILES[name]
        entry = {"mode": mode, "audio_window": window, "audio_gate": gate, "audio_layout": layout}
        if results and "skipped" in results[0]:
            profiles[name] = {**entry, "skipped": results[0]["skipped"]}
            continue
        entry.update(summary(results, args.stride))
        reference = runs.get(f"published-{mode}")
        if reference is not None and not name.startswith("published"):
            entry["agreement_with_published"] = agreement(results, reference)
        profiles[name] = entry
    report = {"benchmark": "live_latency", "machine": info, "bundle": str(bundle),
              "precision": recognizer.manifest.precision, "backend": recognizer.backend_name,
              "window_s": args.window, "stride_s": args.stride, "max_new_tokens": args.max_new_tokens,
              "max_think_tokens": args.max_think_tokens, "clip_s": 4 * args.seconds_each, "profiles": profiles,
              "peak_rss_mb": round(peak_rss_mb())}
    print("| profile | mode | audio window | gate | windows | p50 ms | p90 ms | kept up | vision | audio | prefill | "
          "decode | label agreement |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, p in profiles.items():
        if "skipped" in p:
            print(f"| {name} | {p['mode']} | {p['audio_window']} | {p['audio_gate']} | not run: "
                  f"{p['skipped'][:60]}... |")
            continue
        st = p["median_stages_ms"]
        same = p.get("agreement_with_published", {})
        print(f"| {name} | {p['mode']} | {p['audio_window']} {p['audio_windows_s']} | {p['audio_gate']} | "
              f"{p['windows']} | {p['p50_ms']} | {p['p90_ms']} | {p['kept_up']}/{p['windows']} | {st['vision']} | "
              f"{st['audio']} | {st['prefill'] or st['forward']} | {st['decode']} | "
              f"{same.get('label', '-')} |")
    print(f"peak RSS {report['peak_rss_mb']} MB")
    for name, texts in reasoning.items():  # what full mode said, so that a reader sees the model's own words
        print(f"{name} reasoning: {texts}")
    name = ("toy-fit" if args.adapted else "toy") if args.bundle is None else Path(args.bundle).name
    out = args.out or Path(__file__).parent / "results" / f"live_latency_{name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
