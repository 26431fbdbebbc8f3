"""``r1omni-edge serve``: an HTTP recognition service (``http_service.py``) for a bundle, or a checkpoint."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import InputError
from .options import MAX_NEW_TOKENS_HELP, POSITIVE_INT, add_audio_front_end, add_model_args, add_runtime_args, bounded


def register(sub) -> None:
    serve = sub.add_parser("serve", help="an HTTP recognition service: POST a clip, get predict --json's object")
    serve.add_argument("--bundle", metavar="DIR", help="the bundle to serve (the torch-free runtime)")
    add_model_args(serve, required=False)
    add_runtime_args(serve)
    serve.add_argument("--max-new-tokens", type=POSITIVE_INT, default=2048, help=MAX_NEW_TOKENS_HELP)
    add_audio_front_end(serve)
    http = serve.add_argument_group("HTTP")
    http.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    http.add_argument("--port", type=bounded(int, minimum=0, maximum=65535), default=8000,
                      help="port (default 8000; 0: any free one)")
    http.add_argument("--token", help="the access token (default: $R1OMNI_EDGE_TOKEN, else one generated and printed "
                                      "for any host but loopback)")
    http.add_argument("--no-token", action="store_true", help="no token (refused for any host but loopback)")
    http.add_argument("--queue", type=POSITIVE_INT, default=8,
                      help="requests that may wait while one is recognised; beyond them 503 (default 8)")
    http.add_argument("--max-upload-mb", type=bounded(float, above=0), default=64.0, metavar="MB",
                      help="the largest clip accepted (default 64 MB)")
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..http_service import RecognitionService, ServiceSettings, describe, serve_forever
    from ..live.web import TOKEN_ENV, ServeAddress, choose_token
    from .options import recognition_options
    from .predict import _open_bundle, _open_checkpoint

    if (args.model is None) == (args.bundle is None):
        raise InputError("give either --bundle DIR (runtime) or --model DIR (PyTorch), not both or neither")
    address = ServeAddress(args.host, args.port)
    token = choose_token(address, args.token or os.environ.get(TOKEN_ENV) or None, args.no_token)
    args.device = args.dtype = args.resize = args.labels = args.instruction = None  # a checkpoint's defaults
    args.compile = False
    recognizer = _open_bundle(args) if args.bundle is not None else _open_checkpoint(args)
    settings = ServiceSettings(queue=args.queue, max_upload=int(args.max_upload_mb * 1024 * 1024))
    service = RecognitionService(recognizer, recognition_options(args), settings,
                                 describe(recognizer, str(args.bundle or args.model)))

    def listening(url: str) -> None:
        print(f"r1omni-edge: the recognition service is at {url}", file=sys.stderr, flush=True)

    serve_forever(service, address, token, on_listening=listening)
    return 0
