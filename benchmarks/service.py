"""The integrations' costs, side by side in one run:

1. The HTTP service (`serve`) against `predict` in a loop, on the same clips and options: clips per second and p50 /
   p90 latency per clip for `predict` run once per clip (what a shell loop does: the bundle loads every time), the
   recognizer called in a loop in one process (the floor), and the service with one client and with four at once.
2. MQTT: the time from a result handed to the MQTT sink to its arrival at a subscriber, through Debian's mosquitto
   on 127.0.0.1 (skipped with a reason where mosquitto is not installed).

    .venv/bin/python benchmarks/service.py                            # the toy (fp32 bundle exported here)
    .venv/bin/python benchmarks/service.py --bundle out/real-int8     # the real-size int8 export
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, print_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def stats(latencies: list[float], seconds: float) -> dict:
    ordered = sorted(latencies)
    return {"clips": len(ordered), "clips_per_s": round(len(ordered) / seconds, 3),
            "p50_ms": round(statistics.median(ordered), 1),
            "p90_ms": round(statistics.quantiles(ordered, n=10)[-1], 1) if len(ordered) > 1 else ordered[0]}


def timed(calls) -> tuple[list[float], float]:
    latencies, began = [], time.perf_counter()
    for call in calls:
        start = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - start) * 1e3)
    return latencies, time.perf_counter() - began


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_rows(args, clips: list[Path], query: str) -> dict:
    import requests

    env = dict(os.environ, TMPDIR=tempfile.mkdtemp())
    process = subprocess.Popen([sys.executable, "-m", "r1omni_edge.cli", "serve", "--bundle", str(args.bundle),
                                "--port", "0", "--queue", "16", "--max-new-tokens", str(args.max_new_tokens)],
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stderr.readline()
        url = line.split(" at ")[1].strip().split("/docs")[0] + "/v1/recognize" + query
        bodies = [clip.read_bytes() for clip in clips]
        requests.post(url, data=bodies[0], timeout=600)  # warm: the first call's one-time work is not timed
        one, seconds = timed([lambda body=body: requests.post(url, data=body, timeout=600).raise_for_status()
                              for body in bodies * args.rounds])
        rows = {"service, 1 client": stats(one, seconds)}
        latencies: list[float] = []

        def post(body: bytes) -> None:
            start = time.perf_counter()
            requests.post(url, data=body, timeout=600).raise_for_status()
            latencies.append((time.perf_counter() - start) * 1e3)

        began = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(post, bodies * args.rounds))
        rows["service, 4 clients at once"] = stats(latencies, time.perf_counter() - began)
        return rows
    finally:
        process.terminate()
        process.wait(timeout=30)


def mqtt_row(count: int = 200) -> dict:
    mosquitto = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if mosquitto is None:
        return {"skipped": "mosquitto is not installed (apt-get install mosquitto)"}
    import paho.mqtt.client as mqtt

    from r1omni_edge.live.mqtt import MqttSink, parse_mqtt

    port = free_port()
    config = Path(tempfile.mkdtemp()) / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen([mosquitto, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        arrived: dict[int, float] = {}
        done = threading.Event()

        def on_message(client, userdata, message):
            arrived[json.loads(message.payload)["index"]] = time.perf_counter()
            if len(arrived) == count:
                done.set()

        subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        subscriber.on_connect = lambda client, *a: client.subscribe("bench/+/result", qos=1)
        subscriber.on_message = on_message
        subscriber.connect("127.0.0.1", port)
        subscriber.loop_start()
        sink = MqttSink(parse_mqtt(f"mqtt://127.0.0.1:{port}/bench", required=True), ["main"]).start(10)
        time.sleep(0.5)
        sent: dict[int, float] = {}
        for index in range(count):  # one result every 20 ms: a busy device's rate
            sent[index] = time.perf_counter()
            sink({"type": "result", "stream": "main", "index": index, "label": "happy",
                  "probabilities": {"happy": 0.9, "sad": 0.1}, "reasoning": "x" * 200})
            time.sleep(0.02)
        done.wait(30)
        sink.close()
        subscriber.disconnect()
        subscriber.loop_stop()
        latencies = [(arrived[i] - sent[i]) * 1e3 for i in sent if i in arrived]
        return {"published": count, "arrived": len(latencies), "p50_ms": round(statistics.median(latencies), 2),
                "p90_ms": round(statistics.quantiles(latencies, n=10)[-1], 2), "qos": 1}
    finally:
        broker.terminate()
        broker.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="default: the trained toy's fp32 bundle (exported here)")
    parser.add_argument("--clips", type=int, default=4, help="distinct clips (3 s each)")
    parser.add_argument("--rounds", type=int, default=3, help="each clip this many times per row")
    parser.add_argument("--mode", default="label")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from r1omni_edge.open import open_recognizer
    from r1omni_edge.synthetic.clips import write_clip
    from r1omni_edge.synthetic.task import CLASSES, COLOURS, TONES

    work = Path(tempfile.mkdtemp(prefix="r1omni-service-"))
    if args.bundle is None:
        from r1omni_edge.cli.demo import prepare

        args.bundle, _, _ = prepare(work)
        name = "toy"
    else:
        name = args.bundle.name
    clips = [write_clip(work / f"{label}.mp4", seconds=3, fps=10, size=(64, 64), color=COLOURS[label],
                        background=tuple(c // 2 for c in COLOURS[label]), tone_hz=TONES[label])
             for label in (CLASSES * 2)[: args.clips]]
    info = machine_info(with_torch=False)
    print_header(f"service: serve against predict in a loop, {args.bundle}, mode {args.mode}", info)
    report = {"bundle": str(args.bundle), "mode": args.mode, "clips": len(clips), "rounds": args.rounds,
              "machine": info, "date": time.strftime("%Y-%m-%d"), "rows": {}}
    common = ["--mode", args.mode, "--max-new-tokens", str(args.max_new_tokens)]
    cli = [sys.executable, "-m", "r1omni_edge.cli", "predict", "--bundle", str(args.bundle), "--json", *common]
    latencies, seconds = timed([lambda clip=clip: subprocess.run([*cli[:4], str(clip), *cli[4:]], check=True,
                                                                 capture_output=True) for clip in clips])
    report["rows"]["predict, one process per clip"] = stats(latencies, seconds)
    from r1omni_edge.recognition import RecognitionOptions

    recognizer = open_recognizer(args.bundle)
    options = recognizer.check(RecognitionOptions(mode=args.mode, max_new_tokens=args.max_new_tokens))
    recognizer.recognize_file(clips[0], options=options)
    latencies, seconds = timed([lambda clip=clip: recognizer.recognize_file(clip, options=options)
                                for clip in clips * args.rounds])
    report["rows"]["recognize_file in a loop, one process"] = stats(latencies, seconds)
    report["rows"].update(service_rows(args, clips, f"?mode={args.mode}"))
    report["mqtt"] = mqtt_row()
    print(f"{'':40} {'clips':>6} {'clips/s':>8} {'p50 ms':>9} {'p90 ms':>9}")
    for row, values in report["rows"].items():
        print(f"{row:40} {values['clips']:>6} {values['clips_per_s']:>8.2f} {values['p50_ms']:>9.1f} "
              f"{values['p90_ms']:>9.1f}")
    mqtt = report["mqtt"]
    print("MQTT, sink to subscriber on loopback: " + (mqtt["skipped"] if "skipped" in mqtt else
          f"{mqtt['arrived']} of {mqtt['published']}, p50 {mqtt['p50_ms']} ms, p90 {mqtt['p90_ms']} ms"))
    out = args.out or RESULTS / f"service_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
