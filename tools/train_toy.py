"""Train the toy R1-Omni end to end with the real commands: a tiny model, the synthetic audio-visual task, SFT on
permuted labels (format only), then GRPO (the task). With --install, the result becomes the demo's model.

    .venv/bin/python tools/train_toy.py --out out/toy [--install]

Takes about 6 minutes on 2 CPU cores (SFT 100 steps, GRPO 200 steps).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/toy"))
    parser.add_argument("--install", action="store_true", help="copy the trained model into the package (demo)")
    args = parser.parse_args()
    import yaml

    from r1omni_edge.synthetic.checkpoint import TRAINABLE_STD, write_tiny_checkpoint
    from r1omni_edge.synthetic.task import write_task

    out = args.out.resolve()
    models = write_tiny_checkpoint(out / "models", decoder_std=TRAINABLE_STD)
    files = write_task(out / "task", train=48, held_out=24, permute_train_labels=True)
    paths = {"models_dir": str(models.root), "train_data": str(files["train"]), "eval_data": str(files["eval"]),
             "data_root": str(out / "task"), "cache_dir": str(out / "cache")}
    stages = [("sft", "toy_sft.yaml", str(models.checkpoint)), ("grpo", "toy_grpo.yaml", None)]
    checkpoint = None
    for stage, name, model in stages:
        config = yaml.safe_load((REPO / "configs" / name).read_text())
        config.update(paths, model=model or checkpoint, output_dir=str(out / stage))
        config_file = out / f"{stage}.json"
        config_file.write_text(json.dumps(config, indent=2))
        run = subprocess.run([sys.executable, "-m", "r1omni_edge.cli", "train", stage, "--config", str(config_file)],
                             capture_output=True, text=True)
        print(run.stdout)
        if run.returncode != 0:
            sys.exit(f"{stage} failed:\n{run.stderr[-4000:]}")
        checkpoint = next(line.split(": ", 1)[1] for line in run.stdout.splitlines() if line.startswith("checkpoint: "))
    if args.install:
        from r1omni_edge.demo import TOY_DIR

        shutil.rmtree(TOY_DIR, ignore_errors=True)
        TOY_DIR.mkdir(parents=True)
        for part in (Path(checkpoint), models.siglip, models.whisper, models.bert):
            target = TOY_DIR / (part.name if part != Path(checkpoint) else "R1-Omni-toy")
            shutil.copytree(part, target, ignore=shutil.ignore_patterns("trainer_state.pt"))
        print(f"installed the trained toy model in {TOY_DIR}")


if __name__ == "__main__":
    main()
