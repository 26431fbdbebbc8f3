"""``r1omni-edge live`` and ``stream``: the live session on a camera and a microphone, and on a clip played as both."""

from __future__ import annotations

import argparse
import signal
import sys

from .common import open_bundle, refuse
from .options import SECONDS, add_live_args, add_runtime_args, recognition_options


def register(sub) -> None:
    live = sub.add_parser("live", help="recognise live from a camera and a microphone")
    live.add_argument("--bundle", required=True, metavar="DIR")
    live.add_argument("--camera", default="0", help="device index, video file, RTSP URL or GStreamer pipeline")
    live.add_argument("--mic", help="microphone name or index (default: the system default)")
    live.add_argument("--no-mic", action="store_true", help="video only")
    live.add_argument("--show", action="store_true", help="show the camera with the label where a display exists")
    live.add_argument("--duration", type=SECONDS, help="stop after this many seconds (default: until Ctrl-C)")
    live.add_argument("--open-timeout", type=SECONDS, default=10.0,
                      help="fail when the camera or microphone has not opened within this many seconds")
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


def _serving(url: str) -> None:
    print(f"r1omni-edge: the live view is at {url}", file=sys.stderr, flush=True)


def _prepare(args: argparse.Namespace):
    """What live and stream check and open before they run, cheapest first: the settings, the web view's address
    and token, the JSONL file, then the bundle; and SIGTERM from then on ends the session like Ctrl-C."""
    config, serve, jsonl = _live_config(args), _serve(args), _jsonl(args)
    recognizer = open_bundle(args)
    recognizer.check(config.recognition)
    _terminate_gracefully()
    return config, serve, jsonl, recognizer


def cmd_live(args: argparse.Namespace) -> int:
    from ..live.run import run_live

    config, serve, jsonl, recognizer = _prepare(args)
    camera = int(args.camera) if args.camera.isdigit() else args.camera
    session = run_live(recognizer, camera, args.mic, use_microphone=not args.no_mic, config=config,
                       jsonl=jsonl, show=args.show, duration=args.duration, view=not args.quiet,
                       open_timeout=args.open_timeout, serve=serve, on_serving=_serving)
    return _finish(session)


def cmd_stream(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..media.decode import check_clip_file
    from ..live.run import run_stream

    check_clip_file(Path(args.clip))
    config, serve, jsonl, recognizer = _prepare(args)
    session = run_stream(recognizer, args.clip, config, realtime=not args.fast, jsonl=jsonl,
                         view=not args.quiet, use_audio=not args.video_only, serve=serve, on_serving=_serving)
    return _finish(session)
