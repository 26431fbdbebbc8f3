"""``r1omni-edge export``, ``verify`` and ``build-engines``: a checkpoint to a bundle, the bundle checked against the
checkpoint, and TensorRT engines built from it."""

from __future__ import annotations

import argparse
import json

from ..bundle import PRECISIONS
from ..engines import BACKENDS
from ..labels import DEFAULT_LABEL_SET
from ..media.frames import RESIZE_MODES
from .common import open_checkpoint, progress
from .options import COUNT, LABEL_SET_NAMES, MAX_NEW_TOKENS_HELP, POSITIVE_INT, add_model_args, bounded


def register(sub) -> None:
    export = sub.add_parser("export", help="write an edge bundle (ONNX parts, KV-cache decoder, manifest)")
    add_model_args(export)
    export.add_argument("--out", required=True, metavar="BUNDLE",
                        help="bundle directory to write: new or empty, or an earlier bundle with --overwrite")
    export.add_argument("--overwrite", action="store_true", help="replace the earlier bundle in --out")
    export.add_argument("--precision", default="fp32", choices=PRECISIONS)
    export.add_argument("--instruction", help="the instruction the bundle answers (its gate is folded in)")
    export.add_argument("--audio-seconds", type=bounded(int, minimum=1, maximum=30), default=30,
                        help="audio window; below 30 is an edge opt-in whose effect `verify` measures")
    export.add_argument("--labels", default=DEFAULT_LABEL_SET, choices=LABEL_SET_NAMES, help="label set of the answers")
    export.add_argument("--resize", choices=RESIZE_MODES, default=RESIZE_MODES[0])
    export.add_argument("--kv-capacity", type=POSITIVE_INT, metavar="POSITIONS",
                        help="int8 / int4: positions of the decoder's preallocated KV buffer (prompt and tokens "
                             "together; default: the longest prompt + 2,048 tokens)")
    export.set_defaults(func=cmd_export)

    verify = sub.add_parser("verify", help="compare a bundle with the PyTorch model, part by part and clip by clip")
    verify.add_argument("bundle", help="bundle directory")
    add_model_args(verify)
    verify.add_argument("--clips", type=COUNT, default=4, help="synthetic clips to compare on (default 4)")
    verify.add_argument("--clip", action="append", default=[], metavar="FILE", help="a clip of yours (repeatable)")
    verify.add_argument("--max-new-tokens", type=POSITIVE_INT, default=64, help=MAX_NEW_TOKENS_HELP)
    verify.add_argument("--backend", default="cpu", choices=BACKENDS,
                        help="runtime backend for the bundle")
    verify.add_argument("--min-cosine", type=bounded(float, minimum=-1, maximum=1),
                        help="override the precision's per-part cosine threshold")
    verify.add_argument("--min-label-agreement", type=bounded(float, minimum=0, maximum=1),
                        help="override the label agreement threshold")
    verify.add_argument("--original", metavar="DIR",
                        help="the checkpoint before window adaptation (train adapt): the bundle's answers under the "
                             "published front end are measured against its (towers as for --model)")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_verify)

    engines = sub.add_parser("build-engines", help="build TensorRT engines from a bundle's ONNX parts (on the GPU)")
    engines.add_argument("bundle", help="bundle directory")
    engines.add_argument("--fp16", action="store_true", help="allow fp16 kernels for an fp32 bundle")
    engines.add_argument("--int8", action="store_true", help="allow int8 kernels where the graph has Q/DQ scales")
    engines.add_argument("--max-positions", type=bounded(int, minimum=2), default=2048,
                         help="the longest prompt plus answer the decoder engine accepts")
    engines.set_defaults(func=cmd_build_engines)


def _load_reference(args: argparse.Namespace):
    """The checkpoint in fp32 on the CPU: what a bundle is exported from and verified against."""
    return open_checkpoint(args, dtype="fp32", device="cpu")


def cmd_export(args: argparse.Namespace) -> int:
    import time

    from ..export.exporter import ExportOptions, export_bundle, previous_bundle
    from ..files import check_output_dir
    from ..prompt import INSTRUCTION

    start = time.perf_counter()
    inputs = {f"--{name.replace('_', '-')}": getattr(args, name)
              for name in ("model", "models_dir", "siglip", "whisper", "bert")}
    check_output_dir(args.out, inputs, args.overwrite, previous_bundle)  # before the (slow) model load
    progress(f"loading {args.model}")
    reference = _load_reference(args)
    options = ExportOptions(precision=args.precision, instruction=args.instruction or INSTRUCTION,
                            audio_seconds=args.audio_seconds, labels=args.labels, resize_mode=args.resize,
                            kv_capacity=args.kv_capacity)
    manifest = export_bundle(reference, args.out, options, progress=progress, overwrite=args.overwrite)
    total = sum(info["bytes"] for info in manifest.files.values())
    print(f"wrote {args.out}: {args.precision}, {len(manifest.files)} files, {total / 1e6:.1f} MB, "
          f"in {time.perf_counter() - start:.1f} s")
    for name, info in manifest.files.items():
        print(f"  {name:32s} {info['bytes'] / 1e6:10.2f} MB")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..bundle import read_manifest
    from ..export.verify import verify_bundle
    from ..media.decode import check_clip_file

    read_manifest(args.bundle)  # a missing or foreign bundle fails before the model load
    for clip in args.clip:
        check_clip_file(Path(clip))
    overrides = {}
    if args.min_cosine is not None:
        overrides["cosine"] = args.min_cosine
    if args.min_label_agreement is not None:
        overrides["labels"] = args.min_label_agreement
    reference = _load_reference(args)
    original = None
    if args.original is not None:
        original = open_checkpoint(argparse.Namespace(**{**vars(args), "model": args.original}), dtype="fp32",
                                   device="cpu")
    report = verify_bundle(reference, args.bundle, [Path(c) for c in args.clip], synthetic=args.clips,
                           max_new_tokens=args.max_new_tokens, backend=args.backend, thresholds=overrides,
                           progress=progress, original=original)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    return 0 if not report.failures else 1


def cmd_build_engines(args: argparse.Namespace) -> int:
    from ..export.tensorrt import build_engines

    manifest = build_engines(args.bundle, fp16=args.fp16, int8=args.int8, max_positions=args.max_positions,
                             progress=progress)
    print(f"engines built with TensorRT {manifest.engines['tensorrt_version']} for {manifest.engines['device']}")
    return 0
