"""Export the real-size R1-Omni-0.5B (random weights, nothing downloaded) to a bundle: time, part sizes, peak memory.

    .venv/bin/python benchmarks/real_size_export.py --precision fp32 --out out/real-fp32
    .venv/bin/python benchmarks/real_size_export.py --precision int8 --out out/real-int8
    .venv/bin/python benchmarks/real_size_export.py --precision int8 --int8-weights s8 --out out/real-int8-s8

Run one precision per process, so the peak memory printed is that export's own.
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
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8", "int4"))
    parser.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    parser.add_argument("--int8-weights", default="s7", choices=("s7", "u8", "s8"),
                        help="int8 weight format (bundle.INT8_WEIGHTS; s7 is what export writes)")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    from r1omni_edge.export.exporter import ExportOptions, export_bundle

    info = machine_info()
    print_header(f"export of the real-size model, {args.precision}", info)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        recognizer = build_real_recognizer(Path(tmp))
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        manifest = export_bundle(recognizer, args.out, ExportOptions(precision=args.precision,
                                                                         int8_weights=args.int8_weights),
                                 progress=lambda message: print(message, flush=True))
        export_s = time.perf_counter() - start
    sizes = {name: round(entry["bytes"] / 1e6, 1) for name, entry in manifest.files.items()}
    report = {"benchmark": "real_size_export", "machine": info, "precision": args.precision,
              "int8_weights": args.int8_weights if args.precision in ("int8", "int4") else None,
              "build_seconds": round(build_s, 1), "export_seconds": round(export_s, 1), "files_mb": sizes,
              "total_mb": round(sum(sizes.values()), 1), "peak_rss_mb": round(peak_rss_mb())}
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=2))
    args.results.mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.int8_weights}" if args.precision in ("int8", "int4") and args.int8_weights != "s7" else ""
    (args.results / f"real_size_export_{args.precision}{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
