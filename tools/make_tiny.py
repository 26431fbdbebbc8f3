"""Write a tiny R1-Omni checkpoint (published layout, random weights), its tower directories and two clips.

    python tools/make_tiny.py --out out/demo
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from r1omni_edge.synthetic.checkpoint import CHECKPOINT_NAME, write_tiny_checkpoint  # noqa: E402
from r1omni_edge.synthetic.clips import write_clip  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/demo", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--include-towers", action="store_true", help="store tower copies inside the checkpoint")
    args = parser.parse_args()
    if not (args.out / CHECKPOINT_NAME / "config.json").is_file():
        write_tiny_checkpoint(args.out, seed=args.seed, include_towers=args.include_towers)
    write_clip(args.out / "clip.mp4", seconds=3.0, audio=True, seed=args.seed)
    write_clip(args.out / "clip_no_audio.mp4", seconds=3.0, audio=False, seed=args.seed + 1)
    print(f"wrote {args.out}/{CHECKPOINT_NAME}, the towers beside it, clip.mp4 and clip_no_audio.mp4")


if __name__ == "__main__":
    main()
