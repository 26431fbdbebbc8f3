"""``r1omni-edge train``, ``toy-data`` and ``inspect``: fine-tuning, the synthetic task to try it on, and what a
checkpoint directory holds."""

from __future__ import annotations

import argparse
import json

from .options import COUNT, POSITIVE_INT


def register(sub) -> None:
    toy = sub.add_parser("toy-data", help="write the synthetic training task, a fresh tiny model and configs for it")
    toy.add_argument("--out", required=True, metavar="DIR", help="a new or empty directory")
    toy.add_argument("--train", type=POSITIVE_INT, default=48, help="training clips")
    toy.add_argument("--held-out", type=POSITIVE_INT, default=24, help="held-out clips")
    toy.set_defaults(func=cmd_toy_data)

    train = sub.add_parser("train", help="fine-tune: cold-start SFT or GRPO (config file: YAML or JSON)")
    train.add_argument("stage", choices=("sft", "grpo"))
    train.add_argument("--config", required=True, metavar="FILE")
    train.add_argument("--output-dir", help="override the config's output_dir")
    train.add_argument("--max-steps", type=COUNT, help="override the config's max_steps")
    train.add_argument("--resume", metavar="DIR|latest", help="resume from a checkpoint (or the latest one)")
    train.set_defaults(func=cmd_train)

    inspect = sub.add_parser("inspect", help="report what a checkpoint directory holds, without loading it")
    inspect.add_argument("dir", help="checkpoint directory")
    inspect.add_argument("--allow-pickle", action="store_true")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(func=cmd_inspect)


def cmd_toy_data(args: argparse.Namespace) -> int:
    from ..files import check_output_dir
    from ..synthetic.task import write_toy_data

    check_output_dir(args.out, {})
    written = write_toy_data(args.out, args.train, args.held_out)
    print(f"wrote a tiny untrained R1-Omni in {written['models']} and the synthetic task in {written['task']}; "
          "train it with:")
    print(f"  r1omni-edge train sft --config {written['sft']}")
    print(f"  r1omni-edge train grpo --config {written['grpo']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import logging as _logging

    _logging.getLogger("r1omni_edge").setLevel(_logging.INFO)
    if args.stage == "sft":
        from ..train.sft import SFTConfig as Config
        from ..train.sft import train_sft as run
    else:
        from ..train.grpo import GRPOConfig as Config
        from ..train.grpo import train_grpo as run
    config = Config.from_file(args.config, output_dir=args.output_dir, max_steps=args.max_steps,
                              resume_from=args.resume)
    result = run(config)
    if "checkpoint" in result:
        print(f"checkpoint: {result['checkpoint']}")
    if "confusion" in result:
        print(result["confusion"])
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from ..model.inspection import format_report, inspect_checkpoint

    report = inspect_checkpoint(args.dir, args.allow_pickle)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
