"""The option groups several commands share, and the parser's one-line errors. Choices come from the package's
own constants."""

from __future__ import annotations

import argparse
import re
from dataclasses import fields, replace

from ..engines import BACKENDS
from ..errors import InputError
from ..labels import LABEL_SETS
from ..prompt import MODES
from ..recognition import RecognitionOptions


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
LABEL_SET_NAMES = tuple(LABEL_SETS)
MAX_NEW_TOKENS_HELP = "stop generating after this many tokens (the reasoning and the answer together)"


def audio_window_arg(text: str):
    from ..media.processor import parse_audio_window

    try:
        return parse_audio_window(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_audio_front_end(parser: argparse.ArgumentParser) -> None:
    from ..media.audio_gate import AUDIO_GATES
    from ..media.processor import AUDIO_LAYOUTS, FIT_BUCKETS

    buckets = ", ".join(map(str, FIT_BUCKETS[:-1])) + f" or {FIT_BUCKETS[-1]}"
    parser.add_argument("--audio-window", type=audio_window_arg, default="full", metavar="full|fit|SECONDS",
                        help="log-mel window of the audio encoder: full (30 s, the published model, default), fit "
                             f"(the audio's own length rounded up to {buckets} s: faster, answers may differ) or a "
                             "number of seconds")
    parser.add_argument("--audio-gate", choices=AUDIO_GATES, default="off",
                        help="skip the audio encoder for a silent window (its output for silence is reused): "
                             "energy (RMS below -50 dBFS) or vad (silero-vad: no speech; may drop laughter, crying, "
                             "music); default off, the published path")
    parser.add_argument("--audio-layout", choices=AUDIO_LAYOUTS,
                        help="how a window shorter than 30 s sits in the prompt: compact (its own vectors, the "
                             "shortest prefill; default), positions (the text after it keeps the published position "
                             "ids; not on int8 / int4 bundles) or tail (the encoder's output for silence fills the "
                             "missing positions: the published prompt length)")


def add_job_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the job on Ray (batch and eval)")
    group.add_argument("--workers", type=POSITIVE_INT, default=1, help="model copies (Ray actors), each loaded once")
    group.add_argument("--batch-size", type=POSITIVE_INT, default=4, help="clips per actor call and per write")
    group.add_argument("--ray-address", metavar="ADDR",
                       help="join a Ray cluster (auto, ray://host:port; default $RAY_ADDRESS); without either, a new "
                            "Ray instance runs on this machine")


def add_model_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_argument_group("checkpoint and towers")
    group.add_argument("--model", required=required, metavar="DIR", help="R1-Omni / HumanOmni checkpoint directory")
    group.add_argument("--siglip", metavar="DIR", help="siglip-base-patch16-224 directory")
    group.add_argument("--whisper", metavar="DIR", help="whisper-large-v3 directory")
    group.add_argument("--bert", metavar="DIR", help="bert-base-uncased directory")
    group.add_argument("--models-dir", metavar="DIR",
                       help="one directory holding the towers under their published names (default: beside --model)")
    group.add_argument("--allow-pickle", action="store_true", help="accept pickled .bin weights (they can run code)")


def add_backend_args(group, threads_help: str = "CPU threads for onnxruntime (default: all cores)") -> None:
    group.add_argument("--backend", default="auto", choices=BACKENDS,
                       help="auto: TensorRT engines, else onnxruntime TensorRT/CUDA/CPU")
    group.add_argument("--threads", type=POSITIVE_INT, help=threads_help)


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runtime (with --bundle)")
    add_backend_args(group)
    group.add_argument("--mode", default="full", choices=MODES,
                       help="full: reasoning then a label; label: no reasoning, lowest latency (--model too)")
    group.add_argument("--max-think-tokens", type=COUNT, help="bound the reasoning, then close it and answer")
    group.add_argument("--free-answer", action="store_true",
                       help="plain greedy decoding, token for token the PyTorch reference (label may be none)")


def add_live_args(parser: argparse.ArgumentParser) -> None:
    from ..live.session import MAX_WINDOW

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
    add_audio_front_end(parser)
    web = parser.add_argument_group("web view")
    web.add_argument("--serve", metavar="[HOST:]PORT",
                     help="show the session on a web page (preview, labels, reasoning, latency, sources); HOST "
                          "defaults to 127.0.0.1")
    web.add_argument("--token", help="the page's access token (default: $R1OMNI_EDGE_TOKEN, else one generated and "
                                     "printed for any HOST but loopback)")
    web.add_argument("--no-token", action="store_true", help="no token (refused for any HOST but loopback)")
    mqtt = parser.add_argument_group("MQTT")
    mqtt.add_argument("--mqtt", metavar="URL", help="publish every event: mqtt[s]://[user[:password]@]host[:port]"
                                                    "[/prefix] (topics PREFIX/STREAM/result, label, source, session)")
    mqtt.add_argument("--mqtt-client-id", metavar="ID", help="the MQTT client id (default: one the broker assigns)")
    mqtt.add_argument("--mqtt-qos", type=int, choices=(0, 1, 2), default=1,
                      help="QoS of results and events (default 1: re-sent after a reconnect)")
    mqtt.add_argument("--mqtt-ca", metavar="FILE", help="TLS: the CA certificate that signs the broker's")
    mqtt.add_argument("--mqtt-cert", metavar="FILE", help="TLS: this client's certificate")
    mqtt.add_argument("--mqtt-key", metavar="FILE", help="TLS: this client's private key")
    mqtt.add_argument("--mqtt-queue", type=POSITIVE_INT, default=1000, metavar="N",
                      help="messages held while the broker is away; the oldest are dropped and counted (default 1000)")
    mqtt.add_argument("--mqtt-discovery", action="store_true",
                      help="announce a sensor per stream to Home Assistant (MQTT discovery)")
    mqtt.add_argument("--mqtt-discovery-prefix", default="homeassistant", metavar="PREFIX",
                      help="Home Assistant's discovery prefix (default homeassistant)")
    mqtt.add_argument("--mqtt-required", action="store_true",
                      help="exit (2) when the broker does not answer at start (default: a notice, and reconnects)")


def recognition_options(args: argparse.Namespace, base: RecognitionOptions = RecognitionOptions(),
                        profile: RecognitionOptions | None = None) -> RecognitionOptions:
    """The recognition the flags ask for: each field from its flag where the command has it and it was given, else
    from ``profile`` where that differs from the defaults, else from ``base``."""
    default, values = RecognitionOptions(), {}
    for field in fields(RecognitionOptions):
        if field.name == "constrain":  # --free-answer: plain greedy; otherwise the model's own decoding
            given = False if getattr(args, "free_answer", False) else None
        else:
            given = getattr(args, field.name, None)
        if given is not None:
            values[field.name] = given
        elif profile is not None and getattr(profile, field.name) != getattr(default, field.name):
            values[field.name] = getattr(profile, field.name)
    return replace(base, **values)
