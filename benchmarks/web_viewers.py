"""Web view load: the live session with --serve, on a real-time file camera and a paced microphone, with no viewer
and with N viewers that behave like the page (each holds the event stream open: events, audio level and previews),
side by side in one run. What counts is the recognition latency of the windows: viewers must not slow it
(the goal: within 10% of the no-viewer run).

    .venv/bin/python benchmarks/web_viewers.py                                   # the shipped toy model, 30 s each
    .venv/bin/python benchmarks/web_viewers.py --bundle out/real-int8 --fast-profile

The session, the viewers and this driver are three processes; the first results (warm-up) are not judged.
Results: benchmarks/results/web_viewers_NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, print_header  # noqa: E402
from soak import toy_bundle  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_RESULTS = 2


def session_child(args) -> int:
    """The live session with its web view; its results' latencies go to ``args.out``."""
    from r1omni_edge.media.decode import decode_audio
    from r1omni_edge.engines import BundleRecognizer
    from r1omni_edge.live.run import run_live
    from r1omni_edge.live.session import LiveConfig
    from r1omni_edge.recognition import RecognitionOptions
    from r1omni_edge.live.sources import PacedAudioStream
    from r1omni_edge.live.web import ServeAddress

    recognizer = BundleRecognizer.from_bundle(args.bundle, backend="cpu")
    recognition = (RecognitionOptions(mode="label", max_new_tokens=96, max_think_tokens=48, audio_window="fit",
                                      audio_gate="energy") if args.fast_profile
                   else RecognitionOptions(max_new_tokens=96, max_think_tokens=64))
    config = LiveConfig(window=4.0, stride=2.0, recognition=recognition)
    waveform = decode_audio(args.clip)
    results = []

    def on_event(event: dict) -> None:
        if event["type"] == "result":
            results.append({"total": event["latency_ms"]["total"], "kept_up": event["kept_up"]})

    session = run_live(recognizer, str(args.clip), loop=True, config=config, duration=args.seconds, view=False,
                       on_event=on_event, stream_factory=lambda callback: PacedAudioStream(waveform, callback),
                       serve=(ServeAddress("127.0.0.1", args.port), args.token),
                       on_serving=lambda url: print(f"serving {url}", file=sys.stderr, flush=True))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    Path(args.out).write_text(json.dumps({"results": results, "windows": session.windows,
                                          "dropped": session.dropped,
                                          "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}))
    return 0


def viewers_child(args) -> int:
    """``args.viewers`` page-like clients until ``args.seconds`` have passed; their counts go to ``args.out``."""
    stop = time.monotonic() + args.seconds
    counts = {"events": 0, "previews": 0, "preview_bytes": 0, "errors": 0}
    lock = threading.Lock()

    def add(key: str, value: int = 1) -> None:
        with lock:
            counts[key] += value

    def viewer() -> None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
            connection.request("GET", f"/events?token={args.token}")
            response = connection.getresponse()
            while time.monotonic() < stop:
                line = response.readline()
                if line.startswith(b'data: {"type": "preview"'):
                    add("previews")
                    add("preview_bytes", len(line))
                elif line.startswith(b"data: "):
                    add("events")
            connection.close()
        except OSError:
            add("errors")

    threads = [threading.Thread(target=viewer, daemon=True) for _ in range(args.viewers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=args.seconds + 15)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    counts["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    Path(args.out).write_text(json.dumps(counts))
    return 0


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_pair(args, viewers: int, work: Path, tag: str) -> dict:
    port, token = free_port(), secrets.token_urlsafe(24)
    out, seen = work / f"session_{tag}.json", work / f"viewers_{tag}.json"
    common = ["--bundle", str(args.bundle), "--clip", str(args.clip), "--seconds", str(args.seconds), "--port",
              str(port), "--token", token] + (["--fast-profile"] if args.fast_profile else [])
    session = subprocess.Popen([sys.executable, __file__, "--child", "session", "--out", str(out), *common],
                               stderr=subprocess.PIPE, text=True)
    line = session.stderr.readline()
    if "serving" not in line:
        raise SystemExit(f"the session did not start: {line}{session.stderr.read()[-2000:]}")
    client = None
    if viewers:
        client = subprocess.Popen([sys.executable, __file__, "--child", "viewers", "--viewers", str(viewers),
                                   "--out", str(seen), *common])
    session.wait()
    if client is not None:
        client.wait()
    data = json.loads(out.read_text())
    judged = [r["total"] for r in data["results"][WARMUP_RESULTS:]]
    return {"viewers": viewers, "windows": data["windows"], "dropped": data["dropped"], "judged": len(judged),
            "session_cpu_s": data["cpu_s"],
            "median_ms": round(statistics.median(judged), 1), "mean_ms": round(statistics.fmean(judged), 1),
            "p90_ms": round(sorted(judged)[int(0.9 * (len(judged) - 1))], 1),
            "clients": json.loads(seen.read_text()) if viewers else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="default: the shipped toy model, exported first")
    parser.add_argument("--clip", type=Path, help="default: the synthetic scene clip")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1, help="pairs of runs (no viewer, then viewers)")
    parser.add_argument("--fast-profile", action="store_true", help="label mode, audio window fit, energy gate")
    parser.add_argument("--work", type=Path, default=Path("out/web_viewers"))
    parser.add_argument("--child", choices=("session", "viewers"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "session":
        return session_child(args)
    if args.child == "viewers":
        return viewers_child(args)

    from r1omni_edge.synthetic.task import write_scene_clip

    args.work.mkdir(parents=True, exist_ok=True)
    args.bundle = args.bundle or toy_bundle(args.work)
    args.clip = args.clip or write_scene_clip(args.work / "scenes.mp4")[0]
    name = "toy" if args.bundle.parent == args.work else args.bundle.name
    info = machine_info(with_torch=False)
    print_header(f"web view load: {args.viewers} viewers vs none, {args.seconds:g} s each, {args.bundle}", info)
    rows = []
    for round_index in range(args.rounds):
        for viewers in (0, args.viewers):
            row = run_pair(args, viewers, args.work, f"{round_index}_{viewers}")
            row["round"] = round_index
            rows.append(row)
            print(f"round {round_index}, {viewers:2d} viewers: median {row['median_ms']} ms, mean {row['mean_ms']} "
                  f"ms, p90 {row['p90_ms']} ms over {row['judged']} windows, dropped {row['dropped']}"
                  + (f"; clients got {row['clients']['events']} events, {row['clients']['previews']} previews "
                     f"({row['clients']['preview_bytes'] / 1e6:.1f} MB), {row['clients']['errors']} errors"
                     if row["clients"] else ""), flush=True)
    base = [r for r in rows if r["viewers"] == 0]
    loaded = [r for r in rows if r["viewers"]]
    ratio = statistics.fmean(r["median_ms"] for r in loaded) / statistics.fmean(r["median_ms"] for r in base)
    mean_ratio = statistics.fmean(r["mean_ms"] for r in loaded) / statistics.fmean(r["mean_ms"] for r in base)
    report = {"bundle": str(args.bundle), "seconds": args.seconds, "viewers": args.viewers,
              "fast_profile": args.fast_profile, "machine": info, "runs": rows,
              "median_ratio": round(ratio, 3), "mean_ratio": round(mean_ratio, 3), "goal": 1.10}
    out = RESULTS / f"web_viewers_{name}{'_fast' if args.fast_profile else ''}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    table = ["| run | viewers | windows judged | median ms | mean ms | p90 ms | dropped | previews served | session CPU s "
             "| viewers' CPU s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['round']} | {r['viewers']} | {r['judged']} | {r['median_ms']} | {r['mean_ms']} | "
                     f"{r['p90_ms']} | {r['dropped']} | {r['clients']['previews'] if r['clients'] else '-'} | "
                     f"{r['session_cpu_s']} | {r['clients']['cpu_s'] if r['clients'] else '-'} |")
    table.append(f"\nlatency with viewers / without: median {ratio:.3f}, mean {mean_ratio:.3f} (goal <= 1.10)")
    out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    print(f"wrote {out}")
    return 0 if ratio <= 1.10 else 1


if __name__ == "__main__":
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    sys.exit(main())
