"""``r1omni-edge live`` and ``stream``: the live session on a camera and a microphone, and on a clip played as both."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from .common import open_bundle, refuse
from .options import SECONDS, add_live_args, add_runtime_args, recognition_options


def register(sub) -> None:
    live = sub.add_parser("live", help="recognise live from a camera and a microphone")
    live.add_argument("--bundle", required=True, metavar="DIR")
    live.add_argument("--camera", help="device index (default 0), video file, network URL (rtsp://, rtsps://, "
                                        "http(s)://: its picture and its sound) or GStreamer pipeline")
    live.add_argument("--source", action="append", metavar="NAME=CAMERA",
                      help="one of several streams on one model (repeatable): a name and a camera as --camera takes")
    live.add_argument("--streams", metavar="FILE",
                      help="a YAML or TOML file of streams (name, camera, microphone, window, stride per stream)")
    live.add_argument("--mic", help="microphone name or index (default: a network camera's own sound, else the "
                                    "system default)")
    live.add_argument("--no-mic", action="store_true", help="video only (a network camera's sound too)")
    live.add_argument("--show", action="store_true", help="show the camera with the label where a display exists")
    live.add_argument("--duration", type=SECONDS, help="stop after this many seconds (default: until Ctrl-C)")
    live.add_argument("--open-timeout", type=SECONDS, default=10.0,
                      help="fail when a camera or microphone has not opened within this many seconds")
    _add_session_args(live, cmd_live)

    stream = sub.add_parser("stream", help="the live pipeline on a clip, as if it were a camera and a microphone")
    stream.add_argument("clip", help="a video file, played as a camera and a microphone")
    stream.add_argument("--bundle", required=True, metavar="DIR", help="the bundle to run")
    stream.add_argument("--fast", action="store_true", help="as fast as possible, every window (default: real time)")
    stream.add_argument("--video-only", action="store_true",
                        help="a prompt without <audio>: the audio path is skipped (a clip without an audio track "
                             "otherwise gets silence through it, as predict does)")
    _add_session_args(stream, cmd_stream)


def _add_session_args(parser: argparse.ArgumentParser, run) -> None:
    add_live_args(parser)
    add_runtime_args(parser)
    parser.set_defaults(func=run, mode=None, audio_window=None, audio_gate=None)  # None: the profile decides


def _live_config(args: argparse.Namespace):
    """The session's settings; its recognition from the flags given, else --fast-profile's, else the live defaults."""
    from ..live.session import LIVE_RECOGNITION, LiveConfig
    from ..recognition import FAST_PROFILE

    recognition = recognition_options(args, LIVE_RECOGNITION, FAST_PROFILE if args.fast_profile else None)
    config = LiveConfig(window=args.window, stride=args.stride, recognition=recognition)
    config.check()
    return config


def _finish(*sessions) -> int:
    """The summary line (one per stream when there are several), then the exit code: an output that failed or an
    input that broke is an error after the results it had; Ctrl-C is 130 and SIGTERM 143, as shells expect."""
    for session in sessions:
        name = f"{session.name}: " if len(sessions) > 1 else ""
        print(f"{name}windows {session.windows}, results {session.results}, dropped {session.dropped}, skipped "
              f"{session.skipped}, failed {session.failed}", file=sys.stderr)
    for session in sessions:
        if session.failure is not None:
            raise session.failure
    reasons = {session.stop_reason for session in sessions}
    code = next((code for reason, code in (("terminated", 128 + signal.SIGTERM), ("interrupted", 130))
                 if reason in reasons), 0)
    if any(session.scheduler.working for session in sessions):
        # a recognition still inside onnxruntime after the wait for it (Ctrl-C or SIGTERM): the interpreter's exit
        # would tear the library down under it and abort (exit 134). Every output is closed and flushed: leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _terminate_gracefully() -> None:
    """SIGTERM ends a live session like Ctrl-C does (its JSONL gets the stopped event), with its own exit code."""
    from ..live.session import Terminated

    def handler(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)


def _serve(args: argparse.Namespace):
    """--serve's address and token, checked before the model loads; None without --serve."""
    import os

    if args.serve is None:
        refuse([flag for flag, given in (("--token", args.token), ("--no-token", args.no_token)) if given],
                "to --serve")
        return None
    from ..live.web import TOKEN_ENV, choose_token, parse_serve

    address = parse_serve(args.serve)
    return address, choose_token(address, args.token or os.environ.get(TOKEN_ENV) or None, args.no_token)


def _jsonl(args: argparse.Namespace):
    """--jsonl as a sink, opened now (an unwritable path fails before the model loads), rotated with --jsonl-max-mb."""
    if args.jsonl is None:
        refuse(["--jsonl-max-mb"] if args.jsonl_max_mb else [], "to --jsonl")
        return None
    from ..live.sinks import JsonlSink

    return JsonlSink(args.jsonl, max_bytes=int((args.jsonl_max_mb or 0) * 1e6), backups=args.jsonl_keep)


MQTT_ENV = "R1OMNI_EDGE_MQTT"  # --mqtt's default: a URL with a password stays out of the process list


def _mqtt(args: argparse.Namespace):
    """--mqtt (else $R1OMNI_EDGE_MQTT) as a target, checked before the model loads; None without either."""
    import os

    args.mqtt = args.mqtt or os.environ.get(MQTT_ENV) or None
    if args.mqtt is None:
        given = [flag for flag, value in (("--mqtt-client-id", args.mqtt_client_id), ("--mqtt-ca", args.mqtt_ca),
                                          ("--mqtt-cert", args.mqtt_cert), ("--mqtt-key", args.mqtt_key),
                                          ("--mqtt-discovery", args.mqtt_discovery),
                                          ("--mqtt-required", args.mqtt_required)) if value]
        refuse(given, "to --mqtt")
        return None
    from ..live.mqtt import parse_mqtt

    for flag, path in (("--mqtt-ca", args.mqtt_ca), ("--mqtt-cert", args.mqtt_cert), ("--mqtt-key", args.mqtt_key)):
        if path is not None and not Path(path).is_file():
            from ..errors import InputError

            raise InputError(f"{flag} {path}: no such file")
    return parse_mqtt(args.mqtt, client_id=args.mqtt_client_id, qos=args.mqtt_qos, ca=args.mqtt_ca,
                      cert=args.mqtt_cert, key=args.mqtt_key, discovery=args.mqtt_discovery,
                      discovery_prefix=args.mqtt_discovery_prefix, required=args.mqtt_required,
                      queue=args.mqtt_queue)


def _serving(url: str) -> None:
    print(f"r1omni-edge: the live view is at {url}", file=sys.stderr, flush=True)


def _prepare(args: argparse.Namespace):
    """What live and stream check and open before they run, cheapest first: the settings, the web view's address
    and token, the MQTT target, the JSONL file, then the bundle; and SIGTERM from then on ends the session like Ctrl-C."""
    config, serve, mqtt, jsonl = _live_config(args), _serve(args), _mqtt(args), _jsonl(args)
    recognizer = open_bundle(args)
    recognizer.check(config.recognition)
    _terminate_gracefully()
    return config, serve, jsonl, mqtt, recognizer


def live_streams(args: argparse.Namespace):
    """The streams ``live`` watches: --camera (one), --source (repeated) or --streams (a file); checked before the
    model loads."""
    from ..errors import InputError
    from ..live.streams import DEFAULT_STREAM, StreamSpec, camera_spec, check_streams, load_streams_file, parse_source

    given = [flag for flag, value in (("--camera", args.camera), ("--source", args.source), ("--streams", args.streams))
             if value]
    if len(given) > 1:
        raise InputError(f"{' and '.join(given)}: give one of them (several cameras: --source NAME=CAMERA, "
                         "repeated, or --streams FILE)")
    if args.source or args.streams:
        if args.mic:
            raise InputError("--mic: with several streams, name a microphone per stream in a --streams file")
        specs = [parse_source(text) for text in args.source] if args.source else load_streams_file(args.streams)
        if args.show and len(specs) > 1:
            raise InputError("--show shows one stream; with several, watch them with --serve")
        return check_streams(specs)
    return [StreamSpec(DEFAULT_STREAM, camera_spec(args.camera or "0"),
                       int(args.mic) if args.mic and args.mic.isdigit() else args.mic)]


def cmd_live(args: argparse.Namespace) -> int:
    from ..live.run import run_streams

    streams = live_streams(args)
    config, serve, jsonl, mqtt, recognizer = _prepare(args)
    sessions = run_streams(recognizer, streams, config, use_microphone=not args.no_mic, jsonl=jsonl, show=args.show,
                           duration=args.duration, view=not args.quiet, open_timeout=args.open_timeout, serve=serve,
                           on_serving=_serving, mqtt=mqtt, default_microphone=len(streams) == 1 and not (args.source or args.streams))
    return _finish(*sessions)


def cmd_stream(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..media.decode import check_clip_file
    from ..live.run import run_stream

    check_clip_file(Path(args.clip))
    config, serve, jsonl, mqtt, recognizer = _prepare(args)
    session = run_stream(recognizer, args.clip, config, realtime=not args.fast, jsonl=jsonl,
                         view=not args.quiet, use_audio=not args.video_only, serve=serve, on_serving=_serving,
                         mqtt=mqtt)
    return _finish(session)
