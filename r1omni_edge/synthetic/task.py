"""A synthetic audio-visual emotion task whose label is recoverable from both inputs: each class tints the whole
frame with a colour of its own (so every patch carries it), moves a disc of that colour, and sounds a tone at its
own pitch, plus noise. Written as clips and a dataset JSON in the published format, for the training tests and tools
(K = 4 classes by default). The reasoning of every target names the clip's colour and pitch, as the EMER cold-start
annotations name the cues they saw and heard."""

from __future__ import annotations

import json
import random
from pathlib import Path

from ..prompt import INSTRUCTION, user_content
from .clips import write_clip

CLASSES = ("happy", "sad", "angry", "surprise")
COLOURS = {"happy": (240, 200, 40), "sad": (40, 80, 220), "angry": (220, 40, 40), "surprise": (40, 200, 90)}
TONES = {"happy": 660.0, "sad": 220.0, "angry": 440.0, "surprise": 990.0}
# What the reasoning names: the colour seen and the pitch heard, as EMER's cold-start annotations name the cues.
COLOUR_NAMES = {"happy": "yellow", "sad": "blue", "angry": "red", "surprise": "green"}
PITCH_NAMES = {"happy": "high", "sad": "low", "angry": "mid", "surprise": "top"}


def describe(truth: str) -> str:
    """The reasoning of a clip of class ``truth``: its cues, never its label."""
    return f"{COLOUR_NAMES[truth]} light, {PITCH_NAMES[truth]} tone"


def target_text(label: str, reasoning: str) -> str:
    return f"<think>{reasoning}</think>\n<answer>{label}</answer>"


def _balanced_labels(truths: list[str], classes, rng: random.Random) -> list[str]:
    """Labels independent of ``truths``: within each true class, the labels in turn, shuffled."""
    targets = list(truths)
    for truth in classes:
        rows = [index for index, value in enumerate(truths) if value == truth]
        labels = [classes[k % len(classes)] for k in range(len(rows))]
        rng.shuffle(labels)
        for index, label in zip(rows, labels):
            targets[index] = label
    return targets


def write_task(root: str | Path, train: int = 48, held_out: int = 24, classes=CLASSES, seed: int = 0,
               permute_train_labels: bool = False, seconds: float = 1.0) -> dict[str, Path]:
    """Write clips/ and train.json, eval.json (published format: video, conversations human/gpt).

    ``permute_train_labels`` gives the training targets labels that do not depend on the clip: each class gets
    every label equally often, so SFT on them can teach the format but not the task (a plain shuffle leaves chance
    correlations in 48 rows that SFT learns, up to 50 % held-out on one seed).
    """
    root = Path(root)
    rng = random.Random(seed)
    files = {}
    for split, count in (("train", train), ("eval", held_out)):
        truths = [classes[i % len(classes)] for i in range(count)]
        rng.shuffle(truths)
        targets = list(truths)
        if split == "train" and permute_train_labels:
            targets = _balanced_labels(truths, classes, rng)
        rows = []
        for index, (truth, target) in enumerate(zip(truths, targets)):
            name = f"clips/{split}_{index:04d}.mp4"
            if not (root / name).is_file():
                write_clip(root / name, seconds=seconds, fps=8, size=(64, 64), audio=True, tone_hz=TONES[truth],
                           seed=seed * 10007 + index + (0 if split == "train" else 50000), color=COLOURS[truth],
                           background=tuple(c // 2 for c in COLOURS[truth]))
            rows.append({
                "video": name,
                "label": truth,
                "conversations": [
                    {"from": "human", "value": user_content(INSTRUCTION)},
                    {"from": "gpt", "value": target_text(target, describe(truth))},
                ],
            })
        files[split] = root / f"{split}.json"
        files[split].write_text(json.dumps(rows, indent=1))
    return files


# The toy's window-adaptation clips (`train adapt`, tools/train_toy.py): the training clips' look (64x64, 8 fps, a 0.3
# tone, no noise) at the lengths a live window and a short clip take; labels are written but adaptation never reads
# them. The held-out clips of the front-end agreement measure (benchmarks/front_end_agreement.py) draw from settings
# neither uses: other lengths, frame sizes and rates, quieter tones, noise.
ADAPT_SETTINGS = {"seconds": (1.0, 2.0, 3.5, 5.0, 8.0), "size": ((64, 64),), "fps": (8,), "volume": (0.3,),
                  "noise": (0.0,)}
HELD_OUT_SETTINGS = {"seconds": (1.5, 2.5, 3.0, 4.0, 6.0), "size": ((48, 48), (96, 64), (80, 60), (64, 96)),
                     "fps": (6, 10, 15), "volume": (0.3, 0.12, 0.05), "noise": (0.0, 0.01, 0.03)}


def write_clip_set(root: str | Path, count: int, seed: int, settings: dict, name: str = "held_out",
                   classes=CLASSES) -> Path:
    """``count`` labelled clips of the task, each with settings drawn from ``settings`` (the classes balanced);
    -> ``root/NAME.json`` (published format, a ``label`` per row, the clips under ``root/clips``)."""
    root = Path(root)
    rng = random.Random(seed)
    truths = [classes[i % len(classes)] for i in range(count)]
    rng.shuffle(truths)
    rows = []
    for index, truth in enumerate(truths):
        setting = {key: rng.choice(values) for key, values in settings.items()}
        video = f"clips/{name}_{index:04d}.mp4"
        if not (root / video).is_file():
            write_clip(root / video, seconds=setting["seconds"], fps=setting["fps"], size=setting["size"],
                       audio=True, tone_hz=TONES[truth], seed=seed + 7919 * index, color=COLOURS[truth],
                       background=tuple(c // 2 for c in COLOURS[truth]), volume=setting["volume"],
                       noise=setting["noise"])
        rows.append({"video": video, "label": truth, "setting": setting,
                     "conversations": [{"from": "human", "value": user_content(INSTRUCTION)},
                                       {"from": "gpt", "value": target_text(truth, describe(truth))}]})
    path = root / f"{name}.json"
    path.write_text(json.dumps(rows, indent=1))
    return path


def write_held_out(root: str | Path, count: int = 120, seed: int = 20261205) -> Path:
    """Held-out clips with settings and seeds no training uses (``HELD_OUT_SETTINGS``)."""
    return write_clip_set(root, count, seed, HELD_OUT_SETTINGS, "held_out")


def write_scene_clip(path: str | Path, classes=CLASSES, seconds_each: float = 3.0) -> tuple[Path, list[tuple[str, float, float]]]:
    """One clip that shows each class in turn (its colours and tone): for the demo. Returns (path, [(label, start,
    end)])."""
    scenes, timeline, start = [], [], 0.0
    for label in classes:
        scenes.append(dict(seconds=seconds_each, color=COLOURS[label], background=tuple(c // 2 for c in COLOURS[label]),
                           tone_hz=TONES[label]))
        timeline.append((label, start, start + seconds_each))
        start += seconds_each
    return write_clip(path, fps=10, size=(64, 64), audio=True, segments=scenes), timeline


# The toy recipes: the settings the learning tests, tools/train_toy.py and `r1omni-edge toy-data` all train with.
# SFT on labels independent of the clip teaches the format and to name the cues it sees and hears, not the task; GRPO
# then teaches the task. With a reasoning that named nothing ("I see it."), SFT taught the tiny LLM to ignore the
# media (the hidden states of the four classes became nearly equal) and GRPO had to regrow that from a policy that
# gave one answer for most clips: held-out accuracy ended anywhere from 0.25 to 1.0 by seed and CPU. GRPO follows the
# DAPO lessons (no KL term, clip-higher, token-level loss, dynamic sampling) with 4 updates per batch (docs/training.md
# has the seeds measured).
TOY_SFT = {"max_steps": 100, "batch_size": 8, "micro_batch": 8, "learning_rate": 1e-2, "warmup_ratio": 0.1,
           "schedule": "cosine", "labels": "dfew", "eval_max_tokens": 40, "tensorboard": False}
TOY_GRPO = {"max_steps": 30, "group_size": 8, "prompts_per_step": 8, "max_completion": 40, "temperature": 1.0,
            "top_k": 50, "beta": 0.0, "updates_per_batch": 4, "eps_high": 0.28, "aggregation": "dapo",
            "dynamic_sampling": True, "learning_rate": 5e-4, "schedule": "constant", "labels": "dfew",
            "eval_max_tokens": 40, "tensorboard": False}

# Window adaptation of the trained toy to the fast profile's window (`train adapt`, tools/train_toy.py): LoRA on the
# tiny LLM and the audio projector, the teacher's greedy answer up to the GRPO completion's length.
TOY_ADAPT = {"max_steps": 60, "batch_size": 8, "micro_batch": 8, "learning_rate": 2e-3, "schedule": "constant",
             "audio_window": "fit", "audio_layout": "compact", "teacher_max_tokens": 40, "labels": "dfew",
             "lora": {"r": 8, "alpha": 16}, "train_parts": ["audio_projector", "llm"], "tensorboard": False}
# Before it, the same recipe under the published window teaches label mode the answer the toy gives after its own
# reasoning (teacher_mode full): GRPO trains the reasoned answer only, and a toy whose reasoning names the cues then
# answered label mode (an empty reasoning) right on half the held-out clips.
TOY_LABEL = dict(TOY_ADAPT, audio_window="full", teacher_mode="full", keep_weight=0.0)
ADAPT_CLIPS, ADAPT_SEED = 64, 4242


def write_toy_data(out: str | Path, train: int = 48, held_out: int = 24, adapt: int = ADAPT_CLIPS) -> dict[str, Path]:
    """A fresh tiny R1-Omni (published layout, untrained), the synthetic task and ready-to-run configs:
    ``sft.yaml`` starts from the tiny model, ``grpo.yaml`` from the SFT run's final checkpoint, ``label.yaml`` (label
    mode taught the reasoned answer) from the GRPO run's and ``adapt.yaml`` (the fast profile's window) from that,
    both on unlabelled clips of several lengths."""
    import yaml

    from .checkpoint import TRAINABLE_STD, write_tiny_checkpoint

    out = Path(out)
    models = write_tiny_checkpoint(out / "models", decoder_std=TRAINABLE_STD)
    files = write_task(out / "task", train=train, held_out=held_out, permute_train_labels=True)
    adapt_clips = write_clip_set(out / "task", adapt, ADAPT_SEED, ADAPT_SETTINGS, "adapt")
    paths = {"models_dir": str(models.root), "train_data": str(files["train"]), "eval_data": str(files["eval"]),
             "data_root": str(out / "task"), "cache_dir": str(out / "cache")}
    sft_out = out / "runs" / "sft"
    configs = {
        "sft": dict(TOY_SFT, model=str(models.checkpoint), output_dir=str(sft_out), **paths),
        "grpo": dict(TOY_GRPO, model=str(sft_out / f"checkpoint-{TOY_SFT['max_steps']}"),
                     output_dir=str(out / "runs" / "grpo"), **paths),
        "label": dict(TOY_LABEL, model=str(out / "runs" / "grpo" / f"checkpoint-{TOY_GRPO['max_steps']}"),
                      output_dir=str(out / "runs" / "label"), models_dir=paths["models_dir"],
                      train_data=str(adapt_clips), cache_dir=paths["cache_dir"]),
        "adapt": dict(TOY_ADAPT, model=str(out / "runs" / "label" / f"checkpoint-{TOY_LABEL['max_steps']}"),
                      output_dir=str(out / "runs" / "adapt"), models_dir=paths["models_dir"],
                      train_data=str(adapt_clips), cache_dir=paths["cache_dir"]),
    }
    written = {"models": models.root, "task": out / "task"}
    for stage, config in configs.items():
        written[stage] = out / f"{stage}.yaml"
        written[stage].write_text(yaml.safe_dump(config, sort_keys=False))
    return written
