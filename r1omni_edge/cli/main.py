"""The ``r1omni-edge`` command: thin, one module per command family (each registers its flags beside its code),
heavy imports only inside the job that needs them."""

from __future__ import annotations

import logging
import signal
import sys

from ..errors import R1OmniError
from . import batch, demo, doctor, export, live, predict, serve, service, train
from .options import Parser

log = logging.getLogger("r1omni_edge")
FAMILIES = (predict, export, batch, live, serve, demo, doctor, service, train)  # the order of the help's command list


def build_parser() -> Parser:
    from .. import __version__

    parser = Parser(prog="r1omni-edge", description="R1-Omni emotion recognition, from training to the edge.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for family in FAMILIES:
        family.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
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
        from ..live.session import Terminated

        terminated = isinstance(exc, Terminated)
        print(f"r1omni-edge {args.command}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
