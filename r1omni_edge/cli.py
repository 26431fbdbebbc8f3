"""The ``r1omni-edge`` command: thin, one subcommand per job, heavy imports only inside the job that needs them."""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys

from .bundle import BACKENDS, PRECISIONS
from .errors import InputError, R1OmniError

log = logging.getLogger("r1omni_edge")


class Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: ``r1omni-edge COMMAND: error: ...`` and exit 2, no usage dump."""

    def error(self, message: str):
        match = re.match(r"argument (\S+?)(?:/\S+)?: (must .*)", message)
        if match:  # our own range checks read "--threads must be at least 1, got -2"
            message = f"{match.group(1)} {match.group(2)}"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def bounded(kind: type, minimum: float | None = None, maximum: float | None = None, above: float | None = None):
    """An argparse type that also checks the range, so bad numbers fail at parse time, before any work."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {'integer' if kind is int else 'number'} value: {text!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if above is not None and value <= above:
            raise argparse.ArgumentTypeError(f"must be greater than {above:g}, got {text}")
        if minimum is not None and maximum is not None and not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be between {minimum:g} and {maximum:g}, got {text}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


POSITIVE_INT = bounded(int, minimum=1)
COUNT = bounded(int, minimum=0)
SECONDS = bounded(float, above=0)
LABEL_SET_NAMES = ("mafw", "dfew", "ravdess")
MAX_NEW_TOKENS_HELP = "stop generating after this many tokens (the reasoning and the answer together)"


def audio_window_arg(text: str):
    from .media.processor import parse_audio_window

    try:
        return parse_audio_window(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_audio_front_end(parser: argparse.ArgumentParser) -> None:
    from .media.gate import AUDIO_GATES
    from .media.processor import FIT_BUCKETS

    buckets = ", ".join(map(str, FIT_BUCKETS[:-1])) + f" or {FIT_BUCKETS[-1]}"
    parser.add_argument("--audio-window", type=audio_window_arg, default="full", metavar="full|fit|SECONDS",
                        help="log-mel window of the audio encoder: full (30 s, the published model, default), fit "
                             f"(the audio's own length rounded up to {buckets} s: faster, answers may differ) or a "
                             "number of seconds")
    parser.add_argument("--audio-gate", choices=AUDIO_GATES, default="off",
                        help="skip the audio encoder for a silent window (its output for silence is reused): "
                             "energy (RMS below -50 dBFS) or vad (silero-vad: no speech; may drop laughter, crying, "
                             "music); default off, the published path")


def _add_job_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the job on Ray (batch and eval)")
    group.add_argument("--workers", type=POSITIVE_INT, default=1, help="model copies (Ray actors), each loaded once")
    group.add_argument("--batch-size", type=POSITIVE_INT, default=4, help="clips per actor call and per write")
    group.add_argument("--ray-address", metavar="ADDR",
                       help="join a Ray cluster (auto, ray://host:port); without it Ray runs on this machine")


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
    group.add_argument("--backend", default="auto", choices=BACKENDS,
                       help="auto: TensorRT engines, else onnxruntime TensorRT/CUDA/CPU")
    group.add_argument("--threads", type=POSITIVE_INT, help="CPU threads for onnxruntime (default: all cores)")
    group.add_argument("--mode", default="full", choices=("full", "label"),
                       help="full: reasoning then a label; label: no reasoning, lowest latency (--model too)")
    group.add_argument("--max-think-tokens", type=COUNT, help="bound the reasoning, then close it and answer")
    group.add_argument("--free-answer", action="store_true",
                       help="plain greedy decoding, token for token the PyTorch reference (label may be none)")


def _add_live_args(parser: argparse.ArgumentParser) -> None:
    from .runtime.live import MAX_WINDOW

    parser.add_argument("--window", type=bounded(float, above=0, maximum=MAX_WINDOW), default=4.0,
                        help=f"seconds of video and audio per recognition (at most {MAX_WINDOW:g})")
    parser.add_argument("--stride", type=SECONDS, default=2.0, help="seconds between recognitions")
    parser.add_argument("--jsonl", metavar="FILE", help="append every event to this JSONL file")
    parser.add_argument("--jsonl-max-mb", type=bounded(float, above=0), metavar="MB",
                        help="rotate the JSONL file at this size (FILE.1 is the newest old part; default: never)")
    parser.add_argument("--jsonl-keep", type=POSITIVE_INT, default=5, metavar="N",
                        help="rotated parts kept with --jsonl-max-mb (default 5)")
    parser.add_argument("--max-new-tokens", type=POSITIVE_INT, default=256, help=MAX_NEW_TOKENS_HELP)
    parser.add_argument("--quiet", action="store_true", help="no terminal view")
    parser.add_argument("--fast-profile", action="store_true",
                        help="real time on a CPU: --mode label --audio-window fit --audio-gate energy "
                             "--max-think-tokens 48, unless given otherwise")
    _add_audio_front_end(parser)
    web = parser.add_argument_group("web view")
    web.add_argument("--serve", metavar="[HOST:]PORT",
                     help="show the session on a web page (preview, labels, reasoning, latency, sources); HOST "
                          "defaults to 127.0.0.1")
    web.add_argument("--token", help="the page's access token (default: $R1OMNI_EDGE_TOKEN, else one generated and "
                                     "printed for any HOST but loopback)")
    web.add_argument("--no-token", action="store_true", help="no token (refused for any HOST but loopback)")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = Parser(prog="r1omni-edge", description="R1-Omni emotion recognition, from training to the edge.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    predict = sub.add_parser("predict", help="recognise the emotion in one clip (PyTorch --model or runtime --bundle)")
    predict.add_argument("clip", help="a video file (any format ffmpeg reads)")
    _add_model_args(predict, required=False)
    predict.add_argument("--bundle", metavar="DIR", help="run an exported bundle with the torch-free runtime instead")
    _add_runtime_args(predict)
    torch_only = predict.add_argument_group("PyTorch (with --model; a bundle fixed these at export)")
    torch_only.add_argument("--instruction", help="replace the official instruction")
    torch_only.add_argument("--device", choices=("cpu", "cuda"), help="default cpu")
    torch_only.add_argument("--dtype", choices=("fp32", "bf16", "fp16"),
                            help="weights and activations (default fp32 on cpu, bf16 on cuda)")
    torch_only.add_argument("--compile", action="store_true",
                            help="with --device cuda: torch.compile the decode step before its CUDA graph is "
                            "captured (about a minute once; faster reasoning)")
    torch_only.add_argument("--resize", choices=("stretch", "pad"),
                            help="stretch (the released inference, default) or pad to a grey square (training)")
    torch_only.add_argument("--labels", choices=LABEL_SET_NAMES, help="label set the answer is mapped to (default mafw)")
    predict.add_argument("--max-new-tokens", type=POSITIVE_INT, default=2048, help=MAX_NEW_TOKENS_HELP)
    predict.add_argument("--video-only", action="store_true", help="a prompt without <audio>: the audio path is skipped")
    _add_audio_front_end(predict)
    predict.add_argument("--json", action="store_true", help="print one JSON object")
    predict.set_defaults(func=cmd_predict)

    export = sub.add_parser("export", help="write an edge bundle (ONNX parts, KV-cache decoder, manifest)")
    _add_model_args(export)
    export.add_argument("--out", required=True, metavar="BUNDLE",
                        help="bundle directory to write: new or empty, or an earlier bundle with --overwrite")
    export.add_argument("--overwrite", action="store_true", help="replace the earlier bundle in --out")
    export.add_argument("--precision", default="fp32", choices=PRECISIONS)
    export.add_argument("--instruction", help="the instruction the bundle answers (its gate is folded in)")
    export.add_argument("--audio-seconds", type=bounded(int, minimum=1, maximum=30), default=30,
                        help="audio window; below 30 is an edge opt-in whose effect `verify` measures")
    export.add_argument("--labels", default="mafw", choices=LABEL_SET_NAMES, help="label set of the answers")
    export.add_argument("--resize", choices=("stretch", "pad"), default="stretch")
    export.add_argument("--kv-capacity", type=POSITIVE_INT, metavar="POSITIONS",
                        help="int8 / int4: positions of the decoder's preallocated KV buffer (prompt and tokens "
                             "together; default: the longest prompt + 2,048 tokens)")
    export.set_defaults(func=cmd_export)

    batch = sub.add_parser("batch", help="recognize a whole archive of clips on Ray (one machine or a cluster), "
                                         "resumable, one row per clip")
    source = batch.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", help="an exported bundle")
    source.add_argument("--model", help="a checkpoint directory (PyTorch, on the CPU)")
    batch.add_argument("--input", required=True, metavar="DIR|FILE.csv|FILE.jsonl|FILE.json",
                       help="a folder of clips (searched recursively), a list with a 'path' and an optional "
                            "'label' column, or a dataset in the published JSON format")
    batch.add_argument("--output", required=True, metavar="OUT.jsonl|OUT.parquet",
                       help="the rows; rerunning the same command skips the clips it already holds")
    batch.add_argument("--labels", choices=LABEL_SET_NAMES,
                       help="score the run: ground truth from the list's 'label' column or the clips' folder names")
    batch.add_argument("--mode", choices=("full", "label"), default="full")
    _add_audio_front_end(batch)
    batch.add_argument("--max-new-tokens", type=POSITIVE_INT, help=MAX_NEW_TOKENS_HELP)
    batch.add_argument("--data-root", metavar="DIR", help="what a list's relative paths are relative to (default: "
                                                          "the list's folder)")
    _add_job_args(batch)
    batch.add_argument("--backend", choices=BACKENDS, default="cpu", help="a bundle's backend on the workers")
    batch.set_defaults(func=cmd_batch)

    verify = sub.add_parser("verify", help="compare a bundle with the PyTorch model, part by part and clip by clip")
    verify.add_argument("bundle", help="bundle directory")
    _add_model_args(verify)
    verify.add_argument("--clips", type=COUNT, default=4, help="synthetic clips to compare on (default 4)")
    verify.add_argument("--clip", action="append", default=[], metavar="FILE", help="a clip of yours (repeatable)")
    verify.add_argument("--max-new-tokens", type=POSITIVE_INT, default=64, help=MAX_NEW_TOKENS_HELP)
    verify.add_argument("--backend", default="cpu", choices=BACKENDS,
                        help="runtime backend for the bundle")
    verify.add_argument("--min-cosine", type=bounded(float, minimum=-1, maximum=1),
                        help="override the precision's per-part cosine threshold")
    verify.add_argument("--min-label-agreement", type=bounded(float, minimum=0, maximum=1),
                        help="override the label agreement threshold")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_verify)

    engines = sub.add_parser("build-engines", help="build TensorRT engines from a bundle's ONNX parts (on the GPU)")
    engines.add_argument("bundle", help="bundle directory")
    engines.add_argument("--fp16", action="store_true", help="allow fp16 kernels for an fp32 bundle")
    engines.add_argument("--int8", action="store_true", help="allow int8 kernels where the graph has Q/DQ scales")
    engines.add_argument("--max-positions", type=bounded(int, minimum=2), default=2048,
                         help="the longest prompt plus answer the decoder engine accepts")
    engines.set_defaults(func=cmd_build_engines)

    live = sub.add_parser("live", help="recognise live from a camera and a microphone")
    live.add_argument("--bundle", required=True, metavar="DIR")
    live.add_argument("--camera", default="0", help="device index, video file, RTSP URL or GStreamer pipeline")
    live.add_argument("--mic", help="microphone name or index (default: the system default)")
    live.add_argument("--no-mic", action="store_true", help="video only")
    live.add_argument("--show", action="store_true", help="show the camera with the label where a display exists")
    live.add_argument("--duration", type=SECONDS, help="stop after this many seconds (default: until Ctrl-C)")
    live.add_argument("--open-timeout", type=SECONDS, default=10.0,
                      help="fail when the camera or microphone has not opened within this many seconds")
    _add_live_args(live)
    _add_runtime_args(live)
    live.set_defaults(func=cmd_live, mode=None, audio_window=None, audio_gate=None)  # None: the profile decides

    doctor = sub.add_parser("doctor", help="what this machine can run: Python, onnxruntime and its providers, "
                                           "TensorRT, GPUs, cameras, microphones, PyAV, and a bundle's backends")
    doctor.add_argument("--bundle", metavar="DIR", help="also check this bundle: its files, every backend, its int8 "
                                                        "weights on this CPU (exit 2: damaged, 1: does not run right "
                                                        "here)")
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(func=cmd_doctor)

    service = sub.add_parser("service", help="run live recognition as a systemd service, at boot")
    actions = service.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=Parser)
    install = actions.add_parser("install", help="write the unit file: service install [options] -- LIVE ARGUMENTS")
    install.add_argument("--name", default="r1omni-edge", help="the unit's name (default r1omni-edge)")
    install.add_argument("--user", help="run as this user (default root); it needs the video and audio groups")
    install.add_argument("--unit-dir", default="/etc/systemd/system", metavar="DIR")
    install.add_argument("--env-dir", default="/etc/r1omni-edge", metavar="DIR",
                         help="where the web view's token is kept (mode 600)")
    install.add_argument("--print", action="store_true", help="print the unit instead of writing it")
    install.add_argument("live_args", nargs=argparse.REMAINDER, metavar="-- LIVE ARGUMENTS",
                         help="what `r1omni-edge live` takes, e.g. -- --bundle B --camera 0 --jsonl F --serve 0.0.0.0:8080")
    install.set_defaults(func=cmd_service)

    stream = sub.add_parser("stream", help="the live pipeline on a clip, as if it were a camera and a microphone")
    stream.add_argument("clip", help="a video file, played as a camera and a microphone")
    stream.add_argument("--bundle", required=True, metavar="DIR", help="the bundle to run")
    stream.add_argument("--fast", action="store_true", help="as fast as possible, every window (default: real time)")
    stream.add_argument("--video-only", action="store_true",
                        help="a prompt without <audio>: the audio path is skipped (a clip without an audio track "
                             "otherwise gets silence through it, as predict does)")
    _add_live_args(stream)
    _add_runtime_args(stream)
    stream.set_defaults(func=cmd_stream, mode=None, audio_window=None, audio_gate=None)  # None: the profile decides

    demo = sub.add_parser("demo", help="build a small model, export it and run the live pipeline on a generated clip")
    demo.add_argument("--dir", default="out/demo", help="where the demo model, bundle and clip go (reused)")
    demo.add_argument("--precision", default="fp32", choices=[p for p in PRECISIONS if p != "fp16"],
                      help="fp16 is left out: it is for GPUs, and the demo runs on the CPU")
    demo.add_argument("--fast", action="store_true", help="process the clip as fast as possible")
    _add_audio_front_end(demo)
    demo.set_defaults(func=cmd_demo)

    toy = sub.add_parser("toy-data", help="write the synthetic training task, a fresh tiny model and configs for it")
    toy.add_argument("--out", required=True, metavar="DIR", help="a new or empty directory")
    toy.add_argument("--train", type=POSITIVE_INT, default=48, help="training clips")
    toy.add_argument("--held-out", type=POSITIVE_INT, default=24, help="held-out clips")
    toy.set_defaults(func=cmd_toy_data)

    train = sub.add_parser("train", help="fine-tune: cold-start SFT or GRPO (config file: YAML or JSON)")
    train.add_argument("stage", choices=("sft", "grpo"))
    train.add_argument("--config", required=True, metavar="FILE")
    train.add_argument("--output-dir", help="override the config's output_dir")
    train.add_argument("--max-steps", type=COUNT, help="override the config's max_steps")
    train.add_argument("--resume", metavar="DIR|latest", help="resume from a checkpoint (or the latest one)")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("eval", help="WAR / UAR and a confusion matrix of a checkpoint or a bundle on a "
                              "labelled set: the batch job, decoded as predict decodes")
    _add_model_args(evaluate, required=False)
    evaluate.add_argument("--bundle", metavar="DIR", help="evaluate an exported bundle with the runtime instead")
    evaluate.add_argument("--backend", default="auto", choices=BACKENDS,
                          help="runtime backend (with --bundle)")
    evaluate.add_argument("--threads", type=POSITIVE_INT, help="CPU threads per worker for onnxruntime (with --bundle)")
    evaluate.add_argument("--free-answer", action="store_true",
                          help="with --bundle: plain greedy, token for token what --model scores (default: the "
                               "answer chosen among the labels, as predict --bundle does)")
    evaluate.add_argument("--data", required=True, metavar="FILE|DIR",
                          help="the labelled set: a dataset JSON (published format), a CSV / JSONL list with 'path' "
                               "and 'label', or a folder of clips in folders named by label")
    evaluate.add_argument("--data-root", help="directory the dataset's video paths are relative to")
    evaluate.add_argument("--labels", choices=LABEL_SET_NAMES,
                          help="label set (default mafw; a bundle's is fixed at export)")
    evaluate.add_argument("--max-new-tokens", type=POSITIVE_INT, default=512, help=MAX_NEW_TOKENS_HELP)
    evaluate.add_argument("--synonyms", action="store_true", help="score synonyms as their label (default: exact)")
    _add_audio_front_end(evaluate)
    evaluate.add_argument("--resize", choices=("stretch", "pad"), help="with --model: default stretch")
    evaluate.add_argument("--output", metavar="OUT.jsonl|OUT.parquet",
                          help="keep the rows (the batch schema) and write the scores beside them; rerunning resumes "
                               "(default: rows in a temporary folder, removed at the end)")
    _add_job_args(evaluate)
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


def _audio_front_end(recognizer, args: argparse.Namespace) -> None:
    recognizer.audio_window = getattr(args, "audio_window", "full")
    recognizer.audio_gate = getattr(args, "audio_gate", "off")


def _open_bundle(args: argparse.Namespace):
    from .pipeline import open_recognizer

    recognizer = open_recognizer(args.bundle, expect="bundle", backend=args.backend, threads=args.threads)
    _audio_front_end(recognizer, args)
    return recognizer


def _open_checkpoint(args: argparse.Namespace, **options):
    from .pipeline import open_recognizer

    recognizer = open_recognizer(args.model, expect="checkpoint", models_dir=args.models_dir, siglip=args.siglip,
                                 whisper=args.whisper, bert=args.bert, allow_pickle=args.allow_pickle, **options)
    _audio_front_end(recognizer, args)
    return recognizer


def _refuse(given: list[str], why: str) -> None:
    if given:
        raise InputError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} {why}")


def cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .media.decode import check_clip_file

    if (args.model is None) == (args.bundle is None):
        raise InputError("give either --model DIR (PyTorch) or --bundle DIR (runtime), not both or neither")
    clip = Path(args.clip)
    check_clip_file(clip)  # fail before the (slow) model load
    if args.bundle is not None:
        torch_only = [f"--{name.replace('_', '-')} {value}" if value is not True else f"--{name.replace('_', '-')}"
                      for name in ("instruction", "device", "dtype", "compile", "resize", "labels", "models_dir",
                                   "siglip", "whisper", "bert", "allow_pickle")
                      if (value := getattr(args, name)) not in (None, False)]
        device_flags = [flag for flag in torch_only if flag.split()[0] in ("--device", "--dtype", "--compile")]
        exported = [flag for flag in torch_only if flag not in device_flags]
        _refuse(torch_only, "to --model (PyTorch), not to a bundle"
                + ("; a bundle picks its device with --backend (cuda, tensorrt, engine)" if device_flags else "")
                + (f"; a bundle fixed the model's settings at export (see its manifest): export it again with "
                   f"{', '.join(exported)}" if exported else ""))
        recognizer = _open_bundle(args)
        result = recognizer.recognize_file(clip, use_audio=not args.video_only, mode=args.mode,
                                           max_new_tokens=args.max_new_tokens, max_think_tokens=args.max_think_tokens,
                                           constrain=not args.free_answer)
        _notes(recognizer, result)
        _print_result(result, args.json)
        return 0
    runtime_only = [name for name, given in (("--backend", args.backend != "auto"), ("--threads", args.threads),
                                             ("--max-think-tokens", args.max_think_tokens is not None),
                                             ("--free-answer", args.free_answer)) if given]
    _refuse(runtime_only, "to --bundle (the runtime), not to --model; drop them or export a bundle")
    import torch

    device = args.device or "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: PyTorch sees no CUDA device here; use --device cpu")
    if args.compile and device != "cuda":
        raise InputError("--compile applies to --device cuda (the CPU path decodes with the dynamic cache)")
    recognizer = _open_checkpoint(args, device=device, dtype=args.dtype, labels=args.labels,
                                  instruction=args.instruction, resize_mode=args.resize, compile=args.compile)
    result = recognizer.recognize_file(clip, use_audio=not args.video_only, mode=args.mode,
                                       max_new_tokens=args.max_new_tokens)
    _notes(recognizer, result)
    _print_result(result, args.json)
    return 0


def _notes(recognizer, result) -> None:
    """What the user should know about the input, on stderr (the result stays clean on stdout)."""
    for note in getattr(result, "notes", ()):
        print(f"r1omni-edge: note: {note}", file=sys.stderr)


def _live_config(args: argparse.Namespace):
    from .runtime.live import FAST_PROFILE, LiveConfig

    profile = FAST_PROFILE if args.fast_profile else {}
    for name, default in (("mode", "full"), ("audio_window", "full"), ("audio_gate", "off")):
        if getattr(args, name) is None:  # not given: the profile's, else the usual default
            setattr(args, name, profile.get(name, default))
    if args.max_think_tokens is None and "max_think_tokens" in profile:
        args.max_think_tokens = profile["max_think_tokens"]

    think = args.max_think_tokens if args.max_think_tokens is not None else LiveConfig.max_think_tokens
    config = LiveConfig(window=args.window, stride=args.stride, mode=args.mode, max_new_tokens=args.max_new_tokens,
                        max_think_tokens=think)
    config.check()
    return config


def _finish(session) -> int:
    """The summary line, then the exit code: an output that failed or an input that broke is an error after the
    results it had; Ctrl-C is 130 and SIGTERM 143, as shells expect."""
    print(f"windows {session.windows}, results {session.results}, dropped {session.dropped}, skipped "
          f"{session.skipped}, failed {session.failed}", file=sys.stderr)
    if session.failure is not None:
        raise session.failure
    return {"interrupted": 130, "terminated": 128 + signal.SIGTERM}.get(session.stop_reason, 0)


def _terminate_gracefully() -> None:
    """SIGTERM ends a live session like Ctrl-C does (its JSONL gets the stopped event), with its own exit code."""
    from .runtime.live import Terminated

    def handler(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)


def _serve(args: argparse.Namespace):
    """--serve's address and token, checked before the model loads; None without --serve."""
    import os

    if args.serve is None:
        _refuse([flag for flag, given in (("--token", args.token), ("--no-token", args.no_token)) if given],
                "to --serve")
        return None
    from .runtime.web import TOKEN_ENV, choose_token, parse_serve

    address = parse_serve(args.serve)
    return address, choose_token(address, args.token or os.environ.get(TOKEN_ENV) or None, args.no_token)


def _jsonl(args: argparse.Namespace):
    """--jsonl as a sink, opened now (an unwritable path fails before the model loads), rotated with --jsonl-max-mb."""
    if args.jsonl is None:
        _refuse(["--jsonl-max-mb"] if args.jsonl_max_mb else [], "to --jsonl")
        return None
    from .runtime.live import JsonlSink

    return JsonlSink(args.jsonl, max_bytes=int((args.jsonl_max_mb or 0) * 1e6), backups=args.jsonl_keep)


def _serving(url: str) -> None:
    print(f"r1omni-edge: the live view is at {url}", file=sys.stderr, flush=True)


def cmd_live(args: argparse.Namespace) -> int:
    from .runtime.app import run_live

    config = _live_config(args)
    serve = _serve(args)
    jsonl = _jsonl(args)
    recognizer = _open_bundle(args)
    camera = int(args.camera) if args.camera.isdigit() else args.camera
    _terminate_gracefully()
    session = run_live(recognizer, camera, args.mic, use_microphone=not args.no_mic, config=config,
                       jsonl=jsonl, show=args.show, duration=args.duration, view=not args.quiet,
                       open_timeout=args.open_timeout, serve=serve, on_serving=_serving)
    return _finish(session)


def cmd_stream(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .media.decode import check_clip_file
    from .runtime.app import run_stream

    check_clip_file(Path(args.clip))
    config = _live_config(args)
    serve = _serve(args)
    jsonl = _jsonl(args)
    recognizer = _open_bundle(args)
    _terminate_gracefully()
    session = run_stream(recognizer, args.clip, config, realtime=not args.fast, jsonl=jsonl,
                         view=not args.quiet, use_audio=not args.video_only, serve=serve, on_serving=_serving)
    return _finish(session)


def cmd_doctor(args: argparse.Namespace) -> int:
    from .runtime.doctor import as_dicts, bundle_exit_code, format_checks, run_checks

    checks = run_checks(args.bundle)
    print(json.dumps(as_dicts(checks), indent=2) if args.json else format_checks(checks))
    return bundle_exit_code(checks)


def cmd_service(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .runtime.service import plan_service, write_service

    live_args = args.live_args[1:] if args.live_args[:1] == ["--"] else args.live_args
    if not live_args:
        raise InputError("give the arguments of `r1omni-edge live` after --, e.g. service install -- --bundle B "
                         "--camera 0 --jsonl /var/log/r1omni-edge/events.jsonl")
    try:
        parsed = _parser().parse_args(["live", *live_args])
    except SystemExit:  # the parser printed which argument is wrong
        raise InputError("the arguments after -- are not what `r1omni-edge live` takes (see above)") from None
    plan = plan_service(live_args, parsed, args.name, args.user, Path(args.unit_dir), Path(args.env_dir))
    if args.print:
        print(plan.unit(), end="")
        return 0
    for path in write_service(plan):
        print(f"wrote {path}")
    print(f"start it now and at every boot:\n  sudo systemctl daemon-reload\n  sudo systemctl enable --now {plan.name}\n"
          f"follow it:\n  journalctl -u {plan.name} -f")
    if plan.env:
        print(f"the web view's token is in {plan.env_path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.dir, precision=args.precision, realtime=not args.fast, audio_window=args.audio_window,
                    audio_gate=args.audio_gate)


def cmd_toy_data(args: argparse.Namespace) -> int:
    from .files import check_output_dir
    from .synthetic.task import write_toy_data

    check_output_dir(args.out, {})
    written = write_toy_data(args.out, args.train, args.held_out)
    print(f"wrote a tiny untrained R1-Omni in {written['models']} and the synthetic task in {written['task']}; "
          "train it with:")
    print(f"  r1omni-edge train sft --config {written['sft']}")
    print(f"  r1omni-edge train grpo --config {written['grpo']}")
    return 0


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load_reference(args: argparse.Namespace):
    """The checkpoint in fp32 on the CPU: what a bundle is exported from and verified against."""
    return _open_checkpoint(args, dtype="fp32", device="cpu")


def cmd_export(args: argparse.Namespace) -> int:
    import time

    from .export.exporter import ExportOptions, export_bundle, previous_bundle
    from .files import check_output_dir
    from .prompt import INSTRUCTION

    start = time.perf_counter()
    inputs = {f"--{name.replace('_', '-')}": getattr(args, name)
              for name in ("model", "models_dir", "siglip", "whisper", "bert")}
    check_output_dir(args.out, inputs, args.overwrite, previous_bundle)  # before the (slow) model load
    _progress(f"loading {args.model}")
    reference = _load_reference(args)
    options = ExportOptions(precision=args.precision, instruction=args.instruction or INSTRUCTION,
                            audio_seconds=args.audio_seconds, labels=args.labels, resize_mode=args.resize,
                            kv_capacity=args.kv_capacity)
    manifest = export_bundle(reference, args.out, options, progress=_progress, overwrite=args.overwrite)
    total = sum(info["bytes"] for info in manifest.files.values())
    print(f"wrote {args.out}: {args.precision}, {len(manifest.files)} files, {total / 1e6:.1f} MB, "
          f"in {time.perf_counter() - start:.1f} s")
    for name, info in manifest.files.items():
        print(f"  {name:32s} {info['bytes'] / 1e6:10.2f} MB")
    return 0


def _job():
    """The batch job's entry points, or a clear line when the batch extra is not installed."""
    try:
        import pandas  # noqa: F401 - the rows travel as pandas batches
        import ray.data  # noqa: F401
        import tqdm  # noqa: F401

        from .batch import job
    except ImportError as exc:
        raise InputError(f"this runs on Ray Data ({exc.name} is missing): pip install 'r1omni-edge[batch]'") from None
    return job


def _job_progress(what: str = ""):
    """A progress bar (clips done, the rate, the errors) for run_batch, and the function that closes it."""
    from tqdm import tqdm

    bar = None

    def progress(done: int, errors: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="clip", file=sys.stderr, dynamic_ncols=True, desc=what or None)
        bar.n = done
        bar.set_postfix(errors=errors, refresh=False)
        bar.refresh()

    return progress, lambda: bar.close() if bar is not None else None


def cmd_batch(args: argparse.Namespace) -> int:
    job = _job()
    from .batch.report import summary_line

    options = job.BatchOptions(mode=args.mode, audio_window=args.audio_window, audio_gate=args.audio_gate,
                               max_new_tokens=args.max_new_tokens, workers=args.workers, ray_address=args.ray_address,
                               batch_size=args.batch_size, backend=args.backend, labels=args.labels,
                               data_root=args.data_root)
    progress, close = _job_progress()
    try:
        summary = job.run_batch(args.bundle or args.model, args.input, args.output, options, progress)
    finally:
        close()
    print(f"{summary.clips} clips: {summary.skipped} already in {args.output}, {summary.written} written "
          f"({summary.errors} failed) in {summary.seconds:.1f} s")
    if summary.report is not None:
        print(summary_line(summary.report))
        for path in summary.report_files:
            print(f"  {path}")
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
    import dataclasses
    import tempfile
    from pathlib import Path

    from .batch.archive import list_archive
    from .batch.report import write_report
    from .batch.store import ResultStore
    from .evaluation import agreement, evaluate_rows
    from .labels import label_set

    job = _job()
    if (args.model is None) == (args.bundle is None):
        raise InputError("give either --model DIR (PyTorch) or --bundle DIR (runtime), not both or neither")
    instruction, model_options = None, {}
    if args.bundle is not None:
        from .bundle import read_manifest

        _refuse([f"--{name.replace('_', '-')}" for name in ("models_dir", "siglip", "whisper", "bert", "resize")
                 if getattr(args, name) is not None], "to --model; a bundle fixed them at export")
        manifest = read_manifest(args.bundle)
        names, instruction = job.bundle_label_set(manifest, args.labels), manifest.instruction
    else:
        _refuse([name for name, given in (("--backend", args.backend != "auto"), ("--threads", args.threads),
                                          ("--free-answer", args.free_answer)) if given],
                "to --bundle (the runtime), not to --model")
        names = args.labels or "mafw"
        model_options = {name: value for name, value in (
            ("models_dir", args.models_dir), ("siglip", args.siglip), ("whisper", args.whisper), ("bert", args.bert),
            ("allow_pickle", args.allow_pickle or None), ("resize_mode", args.resize)) if value is not None}
    labels = label_set(names)
    clips = list_archive(args.data, labels, args.data_root)
    unlabelled = [clip.path for clip in clips if clip.truth is None]
    if not clips or unlabelled:
        raise InputError(f"{args.data}: " + (f"{len(unlabelled)} of {len(clips)} clips have no label (e.g. "
                                             f"{unlabelled[0]})" if clips else "no clips")
                         + "; eval needs a label for each: the published format's answer, a 'label' column, or "
                           "folders named by label")
    if instruction is not None:
        other = sum(clip.instruction is not None and clip.instruction != instruction for clip in clips)
        if other:
            log.warning("%d of %d rows ask another instruction; the bundle answers the one it was exported with",
                        other, len(clips))
    options = job.BatchOptions(mode="full", audio_window=args.audio_window, audio_gate=args.audio_gate,
                               max_new_tokens=args.max_new_tokens, constrain=False if args.free_answer else None,
                               workers=args.workers, ray_address=args.ray_address, batch_size=args.batch_size,
                               backend=args.backend if args.bundle else "cpu", threads=args.threads, labels=names,
                               model_options=model_options)
    model, exact = args.bundle or args.model, not args.synonyms

    def evaluate(output: Path, opts, what: str):
        progress, close = _job_progress(what)
        try:
            job.run_batch(model, clips, output, opts, progress, report=False)
        finally:
            close()
        return evaluate_rows(clips, ResultStore(output).read(), labels, exact)

    with tempfile.TemporaryDirectory(prefix="r1omni-eval-") as scratch:
        output = Path(args.output) if args.output else Path(scratch) / "rows.jsonl"
        policy = (options.audio_window, options.audio_gate)
        published = None
        if policy != ("full", "off"):  # a faster audio front end: measured against the published one, side by side
            reference = dataclasses.replace(options, audio_window="full", audio_gate="off")
            published = evaluate(output.with_name(f"{output.stem}.published{output.suffix}"), reference, "published")
        result = evaluate(output, options, "eval")
    same = agreement(result, published) if published is not None else None
    report = {**result.metrics(), "confusion": result.confusion, "predictions": result.predictions,
              "errors": result.errors}
    if published is not None:
        report.update(audio_window=policy[0], audio_gate=policy[1], published=published.metrics(),
                      agreement_with_published=same)
    if args.output:
        names_seen, matrix = result.confusion
        scores = {"clips": len(clips), "errors": len(result.errors), **result.metrics(), "labels": names_seen,
                  "confusion": matrix, **{k: report[k] for k in ("published", "agreement_with_published")
                                          if k in report}}
        report["files"] = [str(path) for path in write_report(scores, Path(args.output))]
    for path, error in result.errors.items():
        print(f"r1omni-edge eval: {path}: {error} (counted as wrong)", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    elif published is None:
        print(result.table())
    else:
        print(f"published audio front end (window full, gate off):\n{published.table()}\n")
        print(f"audio window {policy[0]}, gate {policy[1]}:\n{result.table()}\n")
        print(f"agreement with the published front end on {same['samples']} clips: label {100 * same['label']:.1f}%, "
              f"identical tokens {100 * same['identical_tokens']:.1f}%, token prefix {100 * same['token_prefix']:.1f}%")
    if args.output and not args.json:
        print("\n".join(f"  {path}" for path in report["files"]))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .model.inspection import format_report, inspect_checkpoint

    report = inspect_checkpoint(args.dir, args.allow_pickle)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # a bad argument (one line already printed), or --help / --version
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not args.verbose:
        import os

        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        return args.func(args)
    except R1OmniError as exc:
        print(f"r1omni-edge {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        from .runtime.live import Terminated

        terminated = isinstance(exc, Terminated)
        print(f"r1omni-edge {args.command}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
