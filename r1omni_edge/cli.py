"""The ``r1omni-edge`` command: thin, one subcommand per job, heavy imports only inside the job that needs them."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .errors import InputError, R1OmniError

log = logging.getLogger("r1omni_edge")


def _add_model_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_argument_group("checkpoint and towers")
    group.add_argument("--model", required=required, metavar="DIR", help="R1-Omni / HumanOmni checkpoint directory")
    group.add_argument("--siglip", metavar="DIR", help="siglip-base-patch16-224 directory")
    group.add_argument("--whisper", metavar="DIR", help="whisper-large-v3 directory")
    group.add_argument("--bert", metavar="DIR", help="bert-base-uncased directory")
    group.add_argument("--models-dir", metavar="DIR",
                       help="one directory holding the towers under their published names (default: beside --model)")
    group.add_argument("--allow-pickle", action="store_true", help="accept pickled .bin weights (they can run code)")


def _add_runtime_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runtime (with --bundle)")
    group.add_argument("--backend", default="auto", choices=("auto", "cpu", "cuda", "tensorrt", "engine"),
                       help="auto: TensorRT engines, else onnxruntime TensorRT/CUDA/CPU")
    group.add_argument("--threads", type=int, help="CPU threads for onnxruntime (default: all cores)")
    group.add_argument("--mode", default="full", choices=("full", "label"),
                       help="full: reasoning then a label; label: no reasoning, lowest latency (--model too)")
    group.add_argument("--max-think-tokens", type=int, help="bound the reasoning, then close it and answer")
    group.add_argument("--free-answer", action="store_true",
                       help="plain greedy decoding, token for token the PyTorch reference (label may be none)")


def _add_live_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window", type=float, default=4.0, help="seconds of video and audio per recognition")
    parser.add_argument("--stride", type=float, default=2.0, help="seconds between recognitions")
    parser.add_argument("--jsonl", metavar="FILE", help="append every event to this JSONL file")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--quiet", action="store_true", help="no terminal view")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="r1omni-edge", description="R1-Omni emotion recognition, from training "
                                     "to the edge.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = sub.add_parser("predict", help="recognise the emotion in one clip (PyTorch --model or runtime --bundle)")
    predict.add_argument("clip", help="a video file (any format ffmpeg reads)")
    _add_model_args(predict, required=False)
    predict.add_argument("--bundle", metavar="DIR", help="run an exported bundle with the torch-free runtime instead")
    _add_runtime_args(predict)
    predict.add_argument("--instruction", help="replace the official instruction")
    predict.add_argument("--max-new-tokens", type=int, default=2048)
    predict.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    predict.add_argument("--dtype", choices=("fp32", "bf16", "fp16"),
                         help="weights and activations (default fp32 on cpu, bf16 on cuda)")
    predict.add_argument("--compile", action="store_true",
                         help="with --device cuda: torch.compile the decode step before its CUDA graph is captured "
                         "(about a minute once; faster reasoning)")
    predict.add_argument("--video-only", action="store_true", help="a prompt without <audio>: the audio path is skipped")
    predict.add_argument("--resize", choices=("stretch", "pad"), default="stretch",
                         help="stretch (the released inference) or pad to a grey square (training)")
    predict.add_argument("--labels", default="mafw", help="label set the answer is mapped to: mafw, dfew, ravdess")
    predict.add_argument("--json", action="store_true", help="print one JSON object")
    predict.set_defaults(func=cmd_predict)

    export = sub.add_parser("export", help="write an edge bundle (ONNX parts, KV-cache decoder, manifest)")
    _add_model_args(export)
    export.add_argument("--out", required=True, metavar="BUNDLE", help="bundle directory to write (replaced)")
    export.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8", "int4"))
    export.add_argument("--instruction", help="the instruction the bundle answers (its gate is folded in)")
    export.add_argument("--audio-seconds", type=int, default=30,
                        help="audio window; below 30 is an edge opt-in whose effect `verify` measures")
    export.add_argument("--labels", default="mafw", help="label set of the answers: mafw, dfew, ravdess")
    export.add_argument("--resize", choices=("stretch", "pad"), default="stretch")
    export.set_defaults(func=cmd_export)

    verify = sub.add_parser("verify", help="compare a bundle with the PyTorch model, part by part and clip by clip")
    verify.add_argument("bundle", help="bundle directory")
    _add_model_args(verify)
    verify.add_argument("--clips", type=int, default=4, help="synthetic clips to compare on (default 4)")
    verify.add_argument("--clip", action="append", default=[], metavar="FILE", help="a clip of yours (repeatable)")
    verify.add_argument("--max-new-tokens", type=int, default=64)
    verify.add_argument("--backend", default="cpu", help="runtime backend for the bundle: cpu, cuda, tensorrt, auto")
    verify.add_argument("--min-cosine", type=float, help="override the precision's per-part cosine threshold")
    verify.add_argument("--min-label-agreement", type=float, help="override the label agreement threshold")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_verify)

    engines = sub.add_parser("build-engines", help="build TensorRT engines from a bundle's ONNX parts (on the GPU)")
    engines.add_argument("bundle", help="bundle directory")
    engines.add_argument("--fp16", action="store_true", help="allow fp16 kernels for an fp32 bundle")
    engines.add_argument("--int8", action="store_true", help="allow int8 kernels where the graph has Q/DQ scales")
    engines.add_argument("--max-positions", type=int, default=2048)
    engines.set_defaults(func=cmd_build_engines)

    live = sub.add_parser("live", help="recognise live from a camera and a microphone")
    live.add_argument("--bundle", required=True, metavar="DIR")
    live.add_argument("--camera", default="0", help="device index, video file, RTSP URL or GStreamer pipeline")
    live.add_argument("--mic", help="microphone name or index (default: the system default)")
    live.add_argument("--no-mic", action="store_true", help="video only")
    live.add_argument("--show", action="store_true", help="show the camera with the label where a display exists")
    live.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    _add_live_args(live)
    _add_runtime_args(live)
    live.set_defaults(func=cmd_live)

    stream = sub.add_parser("stream", help="the live pipeline on a clip, as if it were a camera and a microphone")
    stream.add_argument("clip")
    stream.add_argument("--bundle", required=True, metavar="DIR")
    stream.add_argument("--fast", action="store_true", help="as fast as possible, every window (default: real time)")
    _add_live_args(stream)
    _add_runtime_args(stream)
    stream.set_defaults(func=cmd_stream)

    demo = sub.add_parser("demo", help="build a small model, export it and run the live pipeline on a generated clip")
    demo.add_argument("--dir", default="out/demo", help="where the demo model, bundle and clip go (reused)")
    demo.add_argument("--precision", default="fp32", choices=("fp32", "int8", "int4"))
    demo.add_argument("--fast", action="store_true", help="process the clip as fast as possible")
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser("train", help="fine-tune: cold-start SFT or GRPO (config file: YAML or JSON)")
    train.add_argument("stage", choices=("sft", "grpo"))
    train.add_argument("--config", required=True, metavar="FILE")
    train.add_argument("--output-dir", help="override the config's output_dir")
    train.add_argument("--max-steps", type=int, help="override the config's max_steps")
    train.add_argument("--resume", metavar="DIR|latest", help="resume from a checkpoint (or the latest one)")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("eval", help="WAR / UAR and a confusion matrix of a checkpoint on a dataset")
    _add_model_args(evaluate)
    evaluate.add_argument("--data", required=True, metavar="FILE", help="dataset JSON (published format)")
    evaluate.add_argument("--data-root", help="directory the dataset's video paths are relative to")
    evaluate.add_argument("--labels", default="mafw")
    evaluate.add_argument("--max-new-tokens", type=int, default=512)
    evaluate.add_argument("--synonyms", action="store_true", help="score synonyms as their label (default: exact)")
    evaluate.add_argument("--resize", choices=("stretch", "pad"), default="stretch")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(func=cmd_eval)

    inspect = sub.add_parser("inspect", help="report what a checkpoint directory holds, without loading it")
    inspect.add_argument("dir", help="checkpoint directory")
    inspect.add_argument("--allow-pickle", action="store_true")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(func=cmd_inspect)
    return parser


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
    stages = ", ".join(f"{k} {v:.0f}" for k, v in result.timings_ms.items() if not k.endswith("tokens"))
    print(f"timings (ms): {stages}")


def _open_bundle(args: argparse.Namespace):
    from .runtime import Recognizer

    return Recognizer.from_bundle(args.bundle, backend=args.backend, threads=args.threads)


def cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .labels import label_set
    from .media.decode import check_clip_file

    if (args.model is None) == (args.bundle is None):
        raise InputError("give either --model DIR (PyTorch) or --bundle DIR (runtime), not both or neither")
    if args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    try:
        label_set(args.labels)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    clip = Path(args.clip)
    check_clip_file(clip)  # fail before the (slow) model load
    if args.bundle is not None:
        recognizer = _open_bundle(args)
        result = recognizer.recognize_file(clip, use_audio=not args.video_only, mode=args.mode,
                                           max_new_tokens=args.max_new_tokens, max_think_tokens=args.max_think_tokens,
                                           constrain=not args.free_answer)
        _print_result(result, args.json)
        return 0
    runtime_only = [name for name, given in (("--backend", args.backend != "auto"), ("--threads", args.threads),
                                             ("--max-think-tokens", args.max_think_tokens is not None),
                                             ("--free-answer", args.free_answer)) if given]
    if runtime_only:
        raise InputError(f"{', '.join(runtime_only)} apply to --bundle (the runtime), not to --model; drop them or "
                         "export a bundle")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: PyTorch sees no CUDA device here; use --device cpu")
    if args.compile and args.device != "cuda":
        raise InputError("--compile applies to --device cuda (the CPU path decodes with the dynamic cache)")
    from .model import TorchRecognizer
    from .prompt import INSTRUCTION

    recognizer = TorchRecognizer.from_checkpoint(
        args.model, args.siglip, args.whisper, args.bert, args.models_dir,
        dtype=args.dtype or ("bf16" if args.device == "cuda" else "fp32"), device=args.device,
        allow_pickle=args.allow_pickle, labels=args.labels, instruction=args.instruction or INSTRUCTION,
        resize_mode=args.resize, compile=args.compile,
    )
    result = recognizer.recognize_file(clip, use_audio=not args.video_only, mode=args.mode,
                                       max_new_tokens=args.max_new_tokens)
    _print_result(result, args.json)
    return 0


def _live_config(args: argparse.Namespace):
    from .runtime.live import LiveConfig

    think = args.max_think_tokens if args.max_think_tokens is not None else LiveConfig.max_think_tokens
    config = LiveConfig(window=args.window, stride=args.stride, mode=args.mode, max_new_tokens=args.max_new_tokens,
                        max_think_tokens=think)
    config.check()
    return config


def _summary(session) -> None:
    print(f"windows {session.windows}, results {session.results}, dropped {session.dropped}", file=sys.stderr)


def cmd_live(args: argparse.Namespace) -> int:
    from .runtime.app import run_live

    config = _live_config(args)
    recognizer = _open_bundle(args)
    camera = int(args.camera) if args.camera.isdigit() else args.camera
    session = run_live(recognizer, camera, args.mic, use_microphone=not args.no_mic, config=config,
                       jsonl=args.jsonl, show=args.show, duration=args.duration, view=not args.quiet)
    _summary(session)
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .media.decode import check_clip_file
    from .runtime.app import run_stream

    check_clip_file(Path(args.clip))
    config = _live_config(args)
    recognizer = _open_bundle(args)
    session = run_stream(recognizer, args.clip, config, realtime=not args.fast, jsonl=args.jsonl,
                         view=not args.quiet)
    _summary(session)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.dir, precision=args.precision, realtime=not args.fast)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load_reference(args: argparse.Namespace):
    from .model import TorchRecognizer

    return TorchRecognizer.from_checkpoint(args.model, args.siglip, args.whisper, args.bert, args.models_dir,
                                           dtype="fp32", device="cpu", allow_pickle=args.allow_pickle)


def cmd_export(args: argparse.Namespace) -> int:
    import time

    from .export.exporter import ExportOptions, export_bundle
    from .prompt import INSTRUCTION

    start = time.perf_counter()
    _progress(f"loading {args.model}")
    reference = _load_reference(args)
    options = ExportOptions(precision=args.precision, instruction=args.instruction or INSTRUCTION,
                            audio_seconds=args.audio_seconds, labels=args.labels, resize_mode=args.resize)
    manifest = export_bundle(reference, args.out, options, progress=_progress)
    total = sum(info["bytes"] for info in manifest.files.values())
    print(f"wrote {args.out}: {args.precision}, {len(manifest.files)} files, {total / 1e6:.1f} MB, "
          f"in {time.perf_counter() - start:.1f} s")
    for name, info in manifest.files.items():
        print(f"  {name:32s} {info['bytes'] / 1e6:10.2f} MB")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bundle import read_manifest
    from .export.verify import verify_bundle
    from .media.decode import check_clip_file

    read_manifest(args.bundle)  # a missing or foreign bundle fails before the model load
    for clip in args.clip:
        check_clip_file(Path(clip))
    overrides = {}
    if args.min_cosine is not None:
        overrides["cosine"] = args.min_cosine
    if args.min_label_agreement is not None:
        overrides["labels"] = args.min_label_agreement
    reference = _load_reference(args)
    report = verify_bundle(reference, args.bundle, [Path(c) for c in args.clip], synthetic=args.clips,
                           max_new_tokens=args.max_new_tokens, backend=args.backend, thresholds=overrides,
                           progress=_progress)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    return 0 if not report.failures else 1


def cmd_build_engines(args: argparse.Namespace) -> int:
    from .export.tensorrt import build_engines

    manifest = build_engines(args.bundle, fp16=args.fp16, int8=args.int8, max_positions=args.max_positions,
                             progress=_progress)
    print(f"engines built with TensorRT {manifest.engines['tensorrt_version']} for {manifest.engines['device']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import logging as _logging

    _logging.getLogger("r1omni_edge").setLevel(_logging.INFO)
    if args.stage == "sft":
        from .train.sft import SFTConfig as Config
        from .train.sft import train_sft as run
    else:
        from .train.grpo import GRPOConfig as Config
        from .train.grpo import train_grpo as run
    config = Config.from_file(args.config, output_dir=args.output_dir, max_steps=args.max_steps,
                              resume_from=args.resume)
    result = run(config)
    if "checkpoint" in result:
        print(f"checkpoint: {result['checkpoint']}")
    if "confusion" in result:
        print(result["confusion"])
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .labels import label_set
    from .train.common import TrainConfig, build_policy
    from .train.data import load_dataset
    from .train.evaluate import evaluate
    from .train.features import FeatureCache
    import tempfile

    labels = label_set(args.labels)
    samples = load_dataset(args.data, args.data_root, labels)
    config = TrainConfig(model=args.model, models_dir=args.models_dir, siglip=args.siglip, whisper=args.whisper,
                         bert=args.bert, train_data=args.data)
    policy, _ = build_policy(config)
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(tmp, policy.model, args.resize)
        prompts = [policy.prompt(s, cache.get(s.video)) for s in samples]
        result = evaluate(policy, prompts, labels, args.max_new_tokens, exact=not args.synonyms)
    if args.json:
        print(json.dumps({**result.metrics(), "confusion": result.confusion, "predictions": result.predictions}))
    else:
        print(result.table())
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
