"""Things made locally instead of downloaded: tiny checkpoints in the published layout, tokenizers, clips.

Used by the tests, the tools and the demo; nothing here is the real model.
"""

from pathlib import Path

TOY_DIR = Path(__file__).parent / "toy_model"  # the trained toy R1-Omni shipped with the package (tools/train_toy.py)
