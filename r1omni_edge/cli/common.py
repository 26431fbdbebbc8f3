"""What several commands do alike: open a recognizer from the parsed flags, refuse flags that do not apply, report
progress on stderr."""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError


def open_bundle(args: argparse.Namespace):
    from ..open import kind_options, open_recognizer

    return open_recognizer(args.bundle, expect="bundle", **kind_options(vars(args), "bundle"))


def open_checkpoint(args: argparse.Namespace, **options):
    """The checkpoint of ``--model``, its towers found as its flags say; ``options``: how to run it."""
    from ..open import kind_options, open_recognizer

    towers = kind_options(vars(args), "checkpoint", roles=("towers",))
    return open_recognizer(args.model, expect="checkpoint", **towers, **options)


def flags(options, values: dict) -> list[str]:
    """The flags of ``options`` (``open.Option``) as they were given: ``--labels dfew``, ``--compile``."""
    return [option.flag if values[option.dest] is True
            else f"{option.flag} {values[option.dest]}" for option in options]


def refuse(given: list[str], why: str) -> None:
    if given:
        raise InputError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} {why}")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
