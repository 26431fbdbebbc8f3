"""The project's exceptions: each message names the input, what is wrong with it and what to do.

The CLI prints these as one line and exits 2 (bad input); anything else is a bug and keeps its traceback.
"""


class R1OmniError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code = 1


class InputError(R1OmniError):
    """Something the user gave us (a file, a directory, an argument) cannot be used."""

    exit_code = 2


class MediaError(InputError):
    """A clip, a frame array or an audio array cannot be decoded or is malformed."""


class CheckpointError(InputError):
    """A checkpoint or tower directory is missing, malformed or does not fit the model."""


class ConfigError(CheckpointError):
    """A config.json is missing fields or describes a model this project does not build."""


class OutputError(InputError):
    """An output (a bundle, a checkpoint, a JSONL file) cannot be written where the user asked, or writing it there
    would replace something the command did not write."""


def first_of(problems: list[str], limit: int, separator: str) -> str:
    """Up to ``limit`` problems joined by ``separator``, then how many more there are: a message stays readable when
    a file has thousands of faults."""
    more = f"{separator}and {len(problems) - limit} more" if len(problems) > limit else ""
    return separator.join(problems[:limit]) + more
