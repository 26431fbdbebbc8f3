"""Train the toy R1-Omni end to end with the real commands: `r1omni-edge toy-data` (a tiny model, the synthetic
audio-visual task and its configs), SFT on labels independent of the clip (the format and the cues' names), then
GRPO (the task), then two `train adapt` runs on unlabelled clips: label mode taught the answer the model gives after
its own reasoning (`TOY_LABEL`), then window adaptation to the fast profile's window (`TOY_ADAPT`: the model's own
published answers as the teacher). With --install, the first becomes the demo's model and the adapted one the demo's
--fast-profile model.

    .venv/bin/python tools/train_toy.py --out out/toy [--install]

Takes about 8 minutes on 2 CPU cores (SFT 100 steps, GRPO 30 steps, 60 steps each of the two adaptations; 8 min
12 s on an AMD EPYC Zen 3, 2026-12-05).
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
    checkpoints = {}
    for stage in ("sft", "grpo", "label", "adapt"):  # label and adapt: both `train adapt` runs
        stdout = cli("train", "adapt" if stage == "label" else stage, "--config", str(out / f"{stage}.yaml"))
        checkpoints[stage] = Path(next(line.split(": ", 1)[1] for line in stdout.splitlines()
                                       if line.startswith("checkpoint: ")))
    if args.install:
        from r1omni_edge.cli.demo import TOY, TOY_ADAPTED
        from r1omni_edge.synthetic import TOY_DIR

        shutil.rmtree(TOY_DIR, ignore_errors=True)
        TOY_DIR.mkdir(parents=True)
        models = out / "models"
        parts = {TOY: checkpoints["label"], TOY_ADAPTED: checkpoints["adapt"],
                 **{p.name: p for p in models.iterdir() if p.name != "R1-Omni-tiny"}}
        for name, part in parts.items():
            shutil.copytree(part, TOY_DIR / name, ignore=shutil.ignore_patterns("trainer_state.pt"))
        print(f"installed the trained toy model and its adapted variant in {TOY_DIR}")


if __name__ == "__main__":
    main()
