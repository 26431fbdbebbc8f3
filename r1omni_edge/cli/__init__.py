"""The ``r1omni-edge`` command line: ``main.py`` builds the parser from the command families' modules."""

from .main import main

__all__ = ["main"]
