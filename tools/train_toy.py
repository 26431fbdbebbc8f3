"""Train the toy R1-Omni end to end with the real commands: `r1omni-edge toy-data` (a tiny model, the synthetic
audio-visual task and its configs), SFT on labels independent of the clip (the format and the cues' names), then
GRPO (the task). With --install, the result becomes the demo's model.

    .venv/bin/python tools/train_toy.py --out out/toy [--install]

Takes about 4 minutes on 2 CPU cores (SFT 100 steps, GRPO 30 steps, `TOY_SFT` and `TOY_GRPO`). The shipped toy
model was trained with the recipe of its day (constant reasoning, 200 GRPO steps, beta 0.04); retraining uses the
current recipes.
"""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def cli(*args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "r1omni_edge.cli", *args], capture_output=True, text=True)
    print(run.stdout)
    if run.returncode != 0:
        sys.exit(f"r1omni-edge {' '.join(args[:2])} failed:\n{run.stderr[-4000:]}")
    return run.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/toy"))
    parser.add_argument("--install", action="store_true", help="copy the trained model into the package (demo)")
    args = parser.parse_args()
    out = args.out.resolve()
    cli("toy-data", "--out", str(out))
    for stage in ("sft", "grpo"):
        stdout = cli("train", stage, "--config", str(out / f"{stage}.yaml"))
    checkpoint = Path(next(line.split(": ", 1)[1] for line in stdout.splitlines() if line.startswith("checkpoint: ")))
    if args.install:
        from r1omni_edge.synthetic import TOY_DIR

        shutil.rmtree(TOY_DIR, ignore_errors=True)
        TOY_DIR.mkdir(parents=True)
        models = out / "models"
        for part in (checkpoint, *(p for p in models.iterdir() if p.name != "R1-Omni-tiny")):
            target = TOY_DIR / ("R1-Omni-toy" if part == checkpoint else part.name)
            shutil.copytree(part, target, ignore=shutil.ignore_patterns("trainer_state.pt"))
        print(f"installed the trained toy model in {TOY_DIR}")


if __name__ == "__main__":
    main()
