"""One clip through the real-size R1-Omni-0.5B in PyTorch (random weights, nothing downloaded): per-stage times and
peak memory on this machine.

    .venv/bin/python benchmarks/real_size_clip.py [--tokens 16] [--dtype fp32]

The shapes are the published ones (SigLIP-base, Whisper-large-v3 encoder, BERT-base, Qwen2 0.5B, the projectors);
the tokenizer is the tiny synthetic one, so the prompt is a few dozen positions longer than the real tokenizer's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import build_real_recognizer, machine_info, peak_rss_mb, print_header  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16, help="tokens to generate (the random model never stops)")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "real_size_torch_cpu.json")
    args = parser.parse_args()

    from r1omni_edge.synthetic.clips import write_clip

    info = machine_info()
    print_header("R1-Omni-0.5B real shapes, random weights, PyTorch eager", info)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        recognizer = build_real_recognizer(tmp, args.dtype)
        build_s = time.perf_counter() - start
        model = recognizer.model
        parameters = {name: sum(p.numel() for p in getattr(model, name).parameters())
                      for name in ("llm", "vision_tower", "audio_tower", "bert_model", "mm_projector", "bert_gate",
                                   "audio_projector")}
        clip = write_clip(tmp / "clip.mp4", seconds=3.0, fps=25, size=(320, 240), audio=True)
        recognizer.stop_ids = set()  # generate exactly --tokens tokens
        result = recognizer.recognize_file(clip, max_new_tokens=args.tokens)
    timings = result.timings_ms
    report = {
        "benchmark": "real_size_clip",
        "machine": info,
        "dtype": args.dtype,
        "build_seconds": round(build_s, 2),
        "parameters_millions": {k: round(v / 1e6, 2) for k, v in parameters.items()},
        "total_parameters_millions": round(sum(parameters.values()) / 1e6, 1),
        "timings_ms": timings,
        "peak_rss_mb": round(peak_rss_mb()),
    }
    print(f"parameters: {report['total_parameters_millions']} M  ({report['parameters_millions']})")
    print(f"built in {build_s:.1f} s; peak RSS {report['peak_rss_mb']} MB")
    print("| stage | ms |\n|---|---|")
    for stage, value in timings.items():
        print(f"| {stage} | {value} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
