"""``r1omni-edge predict``: one clip through a checkpoint (PyTorch) or a bundle (the runtime)."""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError
from ..media.frames import RESIZE_MODES
from ..open import misplaced
from .common import flags, open_bundle, open_checkpoint, refuse
from .options import (LABEL_SET_NAMES, MAX_NEW_TOKENS_HELP, POSITIVE_INT, add_audio_front_end, add_model_args,
                      add_runtime_args, recognition_options)


def register(sub) -> None:
    predict = sub.add_parser("predict", help="recognise the emotion in one clip (PyTorch --model or runtime --bundle)")
    predict.add_argument("clip", help="a video file (any format ffmpeg reads)")
    add_model_args(predict, required=False)
    predict.add_argument("--bundle", metavar="DIR", help="run an exported bundle with the torch-free runtime instead")
    add_runtime_args(predict)
    torch_only = predict.add_argument_group("PyTorch (with --model; a bundle fixed these at export)")
    torch_only.add_argument("--instruction", help="replace the official instruction")
    torch_only.add_argument("--device", choices=("cpu", "cuda"), help="default cpu")
    torch_only.add_argument("--dtype", choices=("fp32", "bf16", "fp16"),
                            help="weights and activations (default fp32 on cpu, bf16 on cuda)")
    torch_only.add_argument("--compile", action="store_true",
                            help="with --device cuda: torch.compile the decode step before its CUDA graph is "
                            "captured (about a minute once; faster reasoning)")
    torch_only.add_argument("--resize", choices=RESIZE_MODES,
                            help="stretch (the released inference, default) or pad to a grey square (training)")
    torch_only.add_argument("--labels", choices=LABEL_SET_NAMES, help="label set the answer is mapped to (default mafw)")
    predict.add_argument("--max-new-tokens", type=POSITIVE_INT, default=2048, help=MAX_NEW_TOKENS_HELP)
    predict.add_argument("--video-only", action="store_true", help="a prompt without <audio>: the audio path is skipped")
    add_audio_front_end(predict)
    predict.add_argument("--json", action="store_true", help="print one JSON object")
    predict.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..media.decode import check_clip_file

    if (args.model is None) == (args.bundle is None):
        raise InputError("give either --model DIR (PyTorch) or --bundle DIR (runtime), not both or neither")
    clip = Path(args.clip)
    check_clip_file(clip)  # fail before the (slow) model load
    recognizer = _open_bundle(args) if args.bundle is not None else _open_checkpoint(args)
    options = recognizer.check(recognition_options(args))
    result = recognizer.recognize_file(clip, use_audio=not args.video_only, options=options)
    _notes(recognizer, result)
    _print_result(result, args.json)
    return 0


def _open_bundle(args: argparse.Namespace):
    """--bundle, after refusing the flags that belong to a checkpoint."""
    values = vars(args)
    torch_only = misplaced(values, "bundle")
    device_flags = flags([option for option in torch_only if option.role == "device"], values)
    exported = flags([option for option in torch_only if option.role != "device"], values)
    refuse(flags(torch_only, values), "to --model (PyTorch), not to a bundle"
           + ("; a bundle picks its device with --backend (cuda, tensorrt, engine)" if device_flags else "")
           + (f"; a bundle fixed the model's settings at export (see its manifest): export it again with "
              f"{', '.join(exported)}" if exported else ""))
    return open_bundle(args)


def _open_checkpoint(args: argparse.Namespace):
    """--model on its device, after refusing the flags that belong to a bundle."""
    runtime_only = [option.flag for option in misplaced(vars(args), "checkpoint")]
    runtime_only += [flag for flag, given in (("--max-think-tokens", args.max_think_tokens is not None),
                                              ("--free-answer", args.free_answer)) if given]
    refuse(runtime_only, "to --bundle (the runtime), not to --model; drop them or export a bundle")
    import torch

    device = args.device or "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: PyTorch sees no CUDA device here; use --device cpu")
    if args.compile and device != "cuda":
        raise InputError("--compile applies to --device cuda (the CPU path decodes with the dynamic cache)")
    return open_checkpoint(args, device=device, dtype=args.dtype, labels=args.labels, instruction=args.instruction,
                           resize_mode=args.resize, compile=args.compile)


def _notes(recognizer, result) -> None:
    """What the user should know about the input, on stderr (the result stays clean on stdout)."""
    for note in getattr(result, "notes", ()):
        print(f"r1omni-edge: note: {note}", file=sys.stderr)


def _print_result(result, as_json: bool) -> None:
    if as_json:
        print(result.to_json())
        return
    print(f"label:     {result.label}  (answer: {result.answer!r})")
    if result.probabilities:
        top = sorted(result.probabilities.items(), key=lambda kv: -kv[1])[:3]
        print("top:       " + ", ".join(f"{k} {v:.2f}" for k, v in top))
    print(f"reasoning: {result.reasoning or '(none)'}")
    print(f"audio:     {result.audio}")
    stages = ", ".join(f"{k} {v:.0f}" for k, v in result.timings_ms.items())
    print(f"timings (ms): {stages}")
