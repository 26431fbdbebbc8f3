"""The ``r1omni-edge`` command: thin, one subcommand per job, heavy imports only inside the job that needs them."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .errors import InputError, R1OmniError

log = logging.getLogger("r1omni_edge")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("checkpoint and towers")
    group.add_argument("--model", required=True, metavar="DIR", help="R1-Omni / HumanOmni checkpoint directory")
    group.add_argument("--siglip", metavar="DIR", help="siglip-base-patch16-224 directory")
    group.add_argument("--whisper", metavar="DIR", help="whisper-large-v3 directory")
    group.add_argument("--bert", metavar="DIR", help="bert-base-uncased directory")
    group.add_argument("--models-dir", metavar="DIR",
                       help="one directory holding the towers under their published names (default: beside --model)")
    group.add_argument("--allow-pickle", action="store_true", help="accept pickled .bin weights (they can run code)")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="r1omni-edge", description="R1-Omni emotion recognition, from training "
                                     "to the edge.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = sub.add_parser("predict", help="recognise the emotion in one clip with the PyTorch model")
    predict.add_argument("clip", help="a video file (any format ffmpeg reads)")
    _add_model_args(predict)
    predict.add_argument("--instruction", help="replace the official instruction")
    predict.add_argument("--max-new-tokens", type=int, default=2048)
    predict.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    predict.add_argument("--dtype", choices=("fp32", "bf16", "fp16"),
                         help="weights and activations (default fp32 on cpu, bf16 on cuda)")
    predict.add_argument("--video-only", action="store_true", help="a prompt without <audio>: the audio path is skipped")
    predict.add_argument("--resize", choices=("stretch", "pad"), default="stretch",
                         help="stretch (the released inference) or pad to a grey square (training)")
    predict.add_argument("--labels", default="mafw", help="label set the answer is mapped to: mafw, dfew, ravdess")
    predict.add_argument("--json", action="store_true", help="print one JSON object")
    predict.set_defaults(func=cmd_predict)

    inspect = sub.add_parser("inspect", help="report what a checkpoint directory holds, without loading it")
    inspect.add_argument("dir", help="checkpoint directory")
    inspect.add_argument("--allow-pickle", action="store_true")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(func=cmd_inspect)
    return parser


def cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .labels import label_set

    if args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    try:
        label_set(args.labels)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    clip = Path(args.clip)
    if not clip.is_file():  # fail before the (slow) model load
        from .media.decode import _check_file

        _check_file(clip)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: PyTorch sees no CUDA device here; use --device cpu")
    from .model import TorchRecognizer
    from .prompt import INSTRUCTION

    recognizer = TorchRecognizer.from_checkpoint(
        args.model, args.siglip, args.whisper, args.bert, args.models_dir,
        dtype=args.dtype or ("bf16" if args.device == "cuda" else "fp32"), device=args.device,
        allow_pickle=args.allow_pickle, labels=args.labels, instruction=args.instruction or INSTRUCTION,
        resize_mode=args.resize,
    )
    result = recognizer.recognize_file(clip, use_audio=not args.video_only, max_new_tokens=args.max_new_tokens)
    if args.json:
        print(result.to_json())
    else:
        print(f"label:     {result.label}  (answer: {result.answer!r})")
        print(f"reasoning: {result.reasoning or '(none)'}")
        print(f"audio:     {result.audio}")
        stages = ", ".join(f"{k} {v:.0f}" for k, v in result.timings_ms.items() if not k.endswith("tokens"))
        print(f"timings (ms): {stages}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .model.inspection import format_report, inspect_checkpoint

    report = inspect_checkpoint(args.dir, args.allow_pickle)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not args.verbose:
        import os

        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        return args.func(args)
    except R1OmniError as exc:
        print(f"r1omni-edge {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"r1omni-edge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
