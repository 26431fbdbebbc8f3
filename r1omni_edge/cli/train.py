"""``r1omni-edge train``, ``toy-data`` and ``inspect``: fine-tuning, the synthetic task to try it on, and what a
checkpoint directory holds."""

from __future__ import annotations

import argparse
import json

from ..errors import InputError
from .options import COUNT, POSITIVE_INT


def register(sub) -> None:
    toy = sub.add_parser("toy-data", help="write the synthetic training task, a fresh tiny model and configs for it")
    toy.add_argument("--out", required=True, metavar="DIR", help="a new or empty directory")
    toy.add_argument("--train", type=POSITIVE_INT, default=48, help="training clips")
    toy.add_argument("--held-out", type=POSITIVE_INT, default=24, help="held-out clips")
    toy.add_argument("--adapt-clips", type=POSITIVE_INT, default=64,
                     help="unlabelled clips of several lengths for the two `train adapt` runs")
    toy.set_defaults(func=cmd_toy_data)

    train = sub.add_parser("train", help="fine-tune: cold-start SFT, GRPO, or adapt (to a fast audio front end, no "
                                         "labels needed); config file: YAML or JSON")
    train.add_argument("stage", choices=("sft", "grpo", "adapt"))
    train.add_argument("--config", metavar="FILE", help="the run's config (required for sft and grpo)")
    train.add_argument("--output-dir", help="override the config's output_dir")
    adapt = train.add_argument_group("adapt without a config file (or overriding it)")
    adapt.add_argument("--model", metavar="DIR", help="the checkpoint to adapt (towers beside it, or --models-dir)")
    adapt.add_argument("--models-dir", metavar="DIR", help="the towers under their published names")
    adapt.add_argument("--clips", metavar="DIR|LIST|JSON",
                       help="the clips to adapt on: a folder, a text list of paths or a dataset (no labels needed)")
    adapt.add_argument("--audio-window", metavar="fit|SECONDS", help="the fast front end's window (default fit)")
    adapt.add_argument("--audio-layout", choices=("compact", "tail"),
                       help="how its shorter window sits in the prompt (default compact)")
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
    written = write_toy_data(args.out, args.train, args.held_out, args.adapt_clips)
    print(f"wrote a tiny untrained R1-Omni in {written['models']} and the synthetic task in {written['task']}; "
          "train it with:")
    print(f"  r1omni-edge train sft --config {written['sft']}")
    print(f"  r1omni-edge train grpo --config {written['grpo']}")
    print(f"  r1omni-edge train adapt --config {written['label']}   # label mode learns the reasoned answer")
    print(f"  r1omni-edge train adapt --config {written['adapt']}   # the fast profile's window")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import logging as _logging

    _logging.getLogger("r1omni_edge").setLevel(_logging.INFO)
    if args.stage == "sft":
        from ..train.sft import SFTConfig as Config
        from ..train.sft import train_sft as run
    elif args.stage == "grpo":
        from ..train.grpo import GRPOConfig as Config
        from ..train.grpo import train_grpo as run
    else:
        from ..train.adapt import AdaptConfig as Config
        from ..train.adapt import train_adapt as run
    overrides = dict(output_dir=args.output_dir, max_steps=args.max_steps, resume_from=args.resume)
    flags = {"--model": ("model", args.model), "--models-dir": ("models_dir", args.models_dir),
             "--clips": ("train_data", args.clips), "--audio-window": ("audio_window", args.audio_window),
             "--audio-layout": ("audio_layout", args.audio_layout)}  # flag -> (config field, value)
    given = {flag: field for flag, field in flags.items() if field[1] is not None}
    if given and args.stage != "adapt":
        raise InputError(f"{', '.join(given)}: for train adapt; sft and grpo take them from --config")
    overrides.update(dict(given.values()))
    if args.config is not None:
        config = Config.from_file(args.config, **overrides)
    elif args.stage == "adapt":
        config = Config.from_dict({k: v for k, v in overrides.items() if v is not None}, "train adapt")
    else:
        raise InputError(f"train {args.stage} needs --config FILE")
    result = run(config)
    if "checkpoint" in result:
        print(f"checkpoint: {result['checkpoint']}")
    if "confusion" in result:
        print(result["confusion"])
    if "after" in result:
        print(f"label agreement with the published answers under {result['front_end']}: "
              f"{result['before']['agreement']} before, {result['after']['agreement']} after (KL "
              f"{result['before']['kl']} -> {result['after']['kl']}); under the published front end after: "
              f"{result['published_after']['agreement']}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from ..model.inspection import format_report, inspect_checkpoint

    report = inspect_checkpoint(args.dir, args.allow_pickle)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
