"""Several cameras on one device: N streams on one model (one process, the fair scheduler) against the same N
streams as N processes, each with its own model. Per stream: windows answered per second and the p90 latency from
a window's end to its answer (queueing included); per setup: peak memory (the sum of the processes' peak RSS) and
the windows answered in total. Side by side in one run, for 1, 2 and 4 streams, in the live fast profile.

    .venv/bin/python benchmarks/streams.py                          # the toy adapted to the fast profile
    .venv/bin/python benchmarks/streams.py --bundle out/real-int8   # the real-size int8 export

Each stream is the toy's scene clip played in a loop as a camera, with its sound played in real time as the
microphone (``PacedAudioStream``), so every stream has the same load. Every setup runs in fresh processes (``--worker``),
so that one setup's memory or warm caches do not count for another; a process's clock starts when its session
does (loading the model is not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, print_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def worker(args) -> None:
    """One process: ``--count`` streams on one model for ``--seconds``; prints one JSON line per stream."""
    from dataclasses import replace

    from r1omni_edge.live.run import run_streams
    from r1omni_edge.live.session import LiveConfig
    from r1omni_edge.live.sources import PacedAudioStream
    from r1omni_edge.live.streams import StreamSpec
    from r1omni_edge.media.decode import decode_audio
    from r1omni_edge.open import open_recognizer
    from r1omni_edge.recognition import FAST_PROFILE

    recognizer = open_recognizer(args.bundle)
    recognition = replace(FAST_PROFILE, max_new_tokens=args.max_new_tokens)
    recognizer.check(recognition)
    waveform = decode_audio(args.clip)
    events: list[dict] = []
    specs = [StreamSpec(f"{args.prefix}{index}", str(args.clip), "clip") for index in range(args.count)]
    sessions = run_streams(recognizer, specs, LiveConfig(window=args.window, stride=args.stride,
                                                         recognition=recognition),
                           duration=args.seconds, on_event=events.append, view=False, loop=True,
                           stream_factory=lambda callback: PacedAudioStream(waveform, callback))
    for session in sessions:
        latencies = [e["latency_ms"]["since_window_end"] for e in events
                     if e["type"] == "result" and e["stream"] == session.name]
        print(json.dumps({"stream": session.name, "windows": session.windows, "results": session.results,
                          "dropped": session.dropped, "skipped": session.skipped, "failed": session.failed,
                          "latencies_ms": latencies}), flush=True)


def spawn(args, count: int, prefix: str) -> subprocess.Popen:
    command = [sys.executable, __file__, "--worker", "--bundle", str(args.bundle), "--clip", str(args.clip),
               "--count", str(count), "--seconds", str(args.seconds), "--window", str(args.window), "--stride",
               str(args.stride), "--max-new-tokens", str(args.max_new_tokens), "--prefix", prefix]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def collect(processes: list[subprocess.Popen]) -> tuple[list[dict], float]:
    """The streams' reports and the sum of the processes' peak RSS (MB, from wait4)."""
    streams, rss = [], 0.0
    for process in processes:
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise SystemExit(f"a worker failed (exit {process.returncode})")
        rss += usage.ru_maxrss / 1024
        streams += [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return streams, rss


def summarise(streams: list[dict], rss: float, seconds: float) -> dict:
    rows = []
    for stream in streams:
        latencies = stream.pop("latencies_ms")
        stream["windows_per_s"] = round(stream["results"] / seconds, 3)
        stream["p90_latency_ms"] = round(statistics.quantiles(latencies, n=10)[-1], 1) if len(latencies) > 1 else (
            latencies[0] if latencies else None)
        rows.append(stream)
    return {"streams": rows, "answered": sum(s["results"] for s in rows), "peak_rss_mb": round(rss, 1),
            "answered_per_s": round(sum(s["results"] for s in rows) / seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="default: the toy adapted to the fast profile (exported here)")
    parser.add_argument("--counts", default="1,2,4", help="numbers of streams")
    parser.add_argument("--seconds", type=float, help="per setup (default: 20 for the toy, 60 otherwise)")
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--stride", type=float, default=2.0)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--clip", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="s", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    work = Path(tempfile.mkdtemp(prefix="r1omni-streams-"))
    if args.bundle is None:
        from r1omni_edge.cli.demo import TOY_ADAPTED, prepare

        args.bundle, args.clip, _ = prepare(work, model=TOY_ADAPTED)
    else:
        from r1omni_edge.synthetic.task import write_scene_clip

        args.clip, _ = write_scene_clip(work / "scenes.mp4")
    name = "toy" if args.bundle.parent == work else args.bundle.name
    args.seconds = args.seconds or (20.0 if name == "toy" else 60.0)
    info = machine_info(with_torch=False)
    print_header(f"streams: N streams on one model against N processes, {args.bundle}, fast profile, "
                 f"{args.seconds:g} s per setup", info)
    report = {"bundle": str(args.bundle), "seconds": args.seconds, "window": args.window, "stride": args.stride,
              "profile": "fast (label mode, audio window fit, energy gate, audio layout auto)", "machine": info,
              "date": time.strftime("%Y-%m-%d"), "setups": []}
    print(f"{'streams':>7} {'setup':>14} {'answered/s':>10} {'per stream/s':>22} {'p90 ms per stream':>28} "
          f"{'peak MB':>8}")
    for count in (int(c) for c in args.counts.split(",")):
        one, rss_one = collect([spawn(args, count, "s")])
        many, rss_many = collect([spawn(args, 1, f"p{index}-") for index in range(count)])
        for setup, streams, rss in (("one model", one, rss_one), (f"{count} process" + "es" * (count > 1), many,
                                                                   rss_many)):
            summary = summarise(streams, rss, args.seconds)
            report["setups"].append({"count": count, "setup": setup, **summary})
            rates = " ".join(f"{s['windows_per_s']:.2f}" for s in summary["streams"])
            p90 = " ".join(f"{s['p90_latency_ms']:.0f}" if s["p90_latency_ms"] is not None else "-"
                           for s in summary["streams"])
            print(f"{count:>7} {setup:>14} {summary['answered_per_s']:>10.2f} {rates:>22} {p90:>28} "
                  f"{summary['peak_rss_mb']:>8.0f}", flush=True)
    out = args.out or RESULTS / f"streams_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
