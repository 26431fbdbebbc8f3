"""Clips per second over an archive: `r1omni-edge batch` on Ray (embedded, 1 and 2 workers) against the same clips
run one after another with `predict`'s recognizer in one process, side by side in one run. Each configuration in
its own process; end to end as a user waits for it (model loading and Ray's start included), and the steady rate
after loading (for the batch: from the first written batch to the last).

    .venv/bin/python benchmarks/batch_throughput.py                                  # the tiny bundle
    .venv/bin/python benchmarks/batch_throughput.py --real-bundle out/real-int8      # also the real-size int8, 1 worker
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import machine_info, print_header  # noqa: E402

BATCH_SIZE = 2  # clips per actor call


def make_archive(root: Path, count: int) -> Path:
    from r1omni_edge.synthetic.clips import write_clip

    archive = root / "archive"
    archive.mkdir()
    for index in range(count):
        write_clip(archive / f"clip{index:03d}.mp4", seconds=3.0, fps=25, size=(640, 360), audio=index % 4 != 3,
                   seed=index)
    return archive


def make_tiny_bundle(root: Path) -> Path:
    from r1omni_edge.export.exporter import ExportOptions, export_bundle
    from r1omni_edge.model import TorchRecognizer
    from r1omni_edge.synthetic.checkpoint import write_tiny_checkpoint

    tiny = write_tiny_checkpoint(root / "models", seed=0)
    export_bundle(TorchRecognizer.from_checkpoint(tiny.checkpoint, models_dir=tiny.root), root / "tiny-fp32",
                  ExportOptions(precision="fp32"))
    return root / "tiny-fp32"


def sequential(bundle: str, archive: str, mode: str) -> dict:
    from r1omni_edge.engines import BundleRecognizer

    start = time.perf_counter()
    recognizer = BundleRecognizer.from_bundle(bundle, backend="cpu", check_hashes=False)
    clips = sorted(Path(archive).glob("*.mp4"))
    marks = []
    for clip in clips:
        recognizer.recognize_file(clip, mode=mode)
        marks.append(time.perf_counter())
    first = BATCH_SIZE - 1  # as for the batch: from the first BATCH_SIZE clips done to the last clip
    return {"clips": len(clips), "seconds": marks[-1] - start,
            "steady_clips_per_second": (len(marks) - 1 - first) / (marks[-1] - marks[first])}


def batch(bundle: str, archive: str, mode: str, workers: int, out: str) -> dict:
    from r1omni_edge.batch.job import BatchOptions, run_batch
    from r1omni_edge.recognition import RecognitionOptions

    start = time.perf_counter()
    marks = []  # (time, rows written): the steady rate runs from the first written batch to the last

    def progress(done: int, errors: int, total: int) -> None:
        if done:
            marks.append((time.perf_counter(), done))

    summary = run_batch(bundle, archive, out, BatchOptions(RecognitionOptions(mode=mode), workers=workers, batch_size=BATCH_SIZE),
                        progress)
    steady = (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0]) if len(marks) > 1 else None
    return {"clips": summary.written, "seconds": time.perf_counter() - start, "errors": summary.errors,
            "steady_clips_per_second": steady}


def in_process(args: list[str]) -> dict:
    run = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    line = next((l for l in run.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{args} failed:\n{run.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24, help="clips of the tiny-bundle archive")
    parser.add_argument("--real-bundle", help="a real-size bundle (benchmarks/real_size_export.py), run on 1 worker")
    parser.add_argument("--real-clips", type=int, default=6)
    parser.add_argument("--mode", choices=("full", "label"), default="label")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        kind, bundle, archive, mode, *rest = args.child
        result = sequential(bundle, archive, mode) if kind == "sequential" else batch(bundle, archive, mode,
                                                                                      int(rest[0]), rest[1])
        print("RESULT " + json.dumps(result))
        return
    info = machine_info()
    print_header("batch throughput", info)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tiny, archive = make_tiny_bundle(root), make_archive(root, args.clips)
        plan = [("tiny fp32, predict one after another", ["sequential", str(tiny), str(archive), args.mode]),
                ("tiny fp32, batch, 1 worker", ["batch", str(tiny), str(archive), args.mode, "1", str(root / "a.jsonl")]),
                ("tiny fp32, batch, 2 workers", ["batch", str(tiny), str(archive), args.mode, "2",
                                                 str(root / "b.jsonl")])]
        if args.real_bundle:
            real = root / "real"
            real.mkdir()
            real_archive = make_archive(real, args.real_clips)
            plan += [("real-size int8, predict one after another",
                      ["sequential", args.real_bundle, str(real_archive), args.mode]),
                     ("real-size int8, batch, 1 worker",
                      ["batch", args.real_bundle, str(real_archive), args.mode, "1", str(root / "c.jsonl")])]
        for name, child in plan:
            print(f"running {name} ...", flush=True)
            result = in_process(child)
            result["clips_per_second"] = round(result["clips"] / result["seconds"], 3)
            result["seconds"] = round(result["seconds"], 2)
            rows[name] = result
    lines = [f"| configuration ({args.mode} mode) | clips | seconds, end to end | clips/s, end to end | clips/s, "
             "steady (after loading) |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {r['clips']} | {r['seconds']} | {r['clips_per_second']} | "
              f"{round(r['steady_clips_per_second'], 3) if r['steady_clips_per_second'] else '-'} |"
              for name, r in rows.items()]
    (args.out / "batch_throughput.md").parent.mkdir(parents=True, exist_ok=True)
    (args.out / "batch_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batch_throughput.json").write_text(json.dumps({"benchmark": "batch_throughput", "machine": info,
                                                                "mode": args.mode, "configs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
