"""The training configs: one dataclass per trainer, a YAML / JSON file mapping onto it field by field, presets as
named constructors, and every field checked by type and range before anything loads. Importable without torch."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..files import read_json
from ..labels import DEFAULT_LABEL_SET, LABEL_SETS
from ..media.frames import RESIZE_MODES
from ..typed import POSITIVE, at_least, between, check_value, range_problems
from .rewards import REWARDS, resolve_reward

TRAINABLE_PARTS = ("mm_projector", "bert_gate", "audio_projector", "llm")
ADVANTAGE_SCALES = ("group", "batch", "none")
AGGREGATIONS = ("grpo", "bnpo", "dapo", "dr_grpo")
IMPORTANCE_LEVELS = ("token", "sequence")  # sequence: GSPO
OBJECTIVES = ("clip", "cispo")


CONFIG_MAX_BYTES = 1024 * 1024  # a config is a few hundred bytes


@dataclass
class TrainConfig:
    """Fields common to both trainers; a YAML / JSON config file maps onto these one to one."""

    model: str = ""  # checkpoint directory to start from
    models_dir: str | None = None  # towers under their published names (default: beside the checkpoint)
    siglip: str | None = None
    whisper: str | None = None
    bert: str | None = None
    train_data: str = ""
    eval_data: str | None = None
    data_root: str | None = None  # default: the dataset file's directory
    output_dir: str = "runs/r1omni"
    cache_dir: str | None = None  # default: OUTPUT/feature-cache
    labels: str = DEFAULT_LABEL_SET
    resize_mode: str = "pad"  # training padded frames to a grey square
    seed: int = 0
    learning_rate: float = 2e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    schedule: str = "cosine"  # cosine | linear | constant
    max_steps: int = 0  # 0: run the epochs
    epochs: float = 1.0
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    train_parts: list[str] = field(default_factory=lambda: list(TRAINABLE_PARTS))
    lora: dict[str, Any] | None = None  # {"r": 16, "alpha": 32, "dropout": 0.05, "targets": [...]} via peft
    dtype: str = "fp32"  # bf16 on GPUs
    gradient_checkpointing: bool = False
    fsdp: bool = False  # shard weights, gradients and optimizer state over the ranks (FSDP2, a unit per LLM layer)
    device: str = "cpu"
    save_every: int = 0  # steps; 0: only at the end
    eval_every: int = 0
    log_every: int = 1
    resume_from: str | None = None  # a checkpoint directory, or "latest"
    tensorboard: bool = True
    # control: every clip gets the first training clip's features, so the inputs say nothing of the label while the
    # model stays on its input distribution (zeroed features left it off it, never answering: a control that could
    # not fail)
    blank_inputs: bool = False

    @classmethod
    def from_file(cls, path: str | Path, **overrides):
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such config file")
        if path.suffix not in (".yaml", ".yml"):
            data = read_json(path, max_bytes=CONFIG_MAX_BYTES)
        else:
            import yaml

            if path.stat().st_size > CONFIG_MAX_BYTES:
                raise InputError(f"{path}: more than the {CONFIG_MAX_BYTES // 1024} kB a config may hold")
            try:
                data = yaml.safe_load(path.read_bytes().decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
            except (yaml.YAMLError, RecursionError) as exc:
                raise InputError(f"{path}: cannot be parsed as YAML ({str(exc).splitlines()[0]})") from None
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise InputError(f"{path}: a config is a mapping of field: value, not {type(data).__name__}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data, str(path))

    # Ranges and choices of the fields, checked for every config (a file, the CLI or the Python API): a bad value
    # fails before anything loads, named by its field. Subclasses add theirs.
    RANGES = {"max_steps": at_least(0), "epochs": POSITIVE, "learning_rate": POSITIVE, "weight_decay": at_least(0),
              "warmup_ratio": between(0, 1), "grad_accum": at_least(1), "max_grad_norm": POSITIVE,
              "save_every": at_least(0), "eval_every": at_least(0), "log_every": at_least(1)}
    CHOICES = {"schedule": ("cosine", "linear", "constant"), "dtype": ("fp32", "bf16", "fp16"),
               "resize_mode": RESIZE_MODES, "labels": tuple(LABEL_SETS)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config"):
        if not isinstance(data, dict):
            raise InputError(f"{source}: a config is a mapping of field: value, not {type(data).__name__}")
        data = dict(data)
        preset = data.pop("preset", None)
        base = cls.preset(preset) if preset else cls()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{source}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        hints = typing.get_type_hints(cls)
        values, problems = {}, []
        for name, value in data.items():
            values[name], found = check_value(hints[name], value, name)
            problems += found
        if problems:
            raise InputError(f"{source}: {'; '.join(problems)}")
        config = dataclasses.replace(base, **values)
        if not config.model or not config.train_data:
            raise InputError(f"{source}: 'model' and 'train_data' are required")
        config.check(source)
        return config

    def check(self, source: str = "config") -> None:
        """Every field within its range and choices, named by its field; raises InputError."""
        problems = range_problems(self, self.RANGES, self.CHOICES)
        bad = sorted(set(self.train_parts) - set(TRAINABLE_PARTS))
        if bad:
            problems.append(f"train_parts: {bad} are not trainable parts {list(TRAINABLE_PARTS)}")
        if self.fsdp and self.lora:
            problems.append("fsdp and lora together are not supported; LoRA's few trainable weights fit on each "
                            "GPU, so use DDP (fsdp: false) with lora")
        if problems:
            raise InputError(f"{source}: {'; '.join(problems)}")

    @classmethod
    def preset(cls, name: str):
        raise InputError(f"unknown preset {name!r}")



@dataclass
class SFTConfig(TrainConfig):
    batch_size: int = 16  # prompts per optimizer step, over all ranks
    micro_batch: int = 4  # prompts per forward on one rank
    eval_max_tokens: int = 256

    RANGES = {**TrainConfig.RANGES, "batch_size": at_least(1), "micro_batch": at_least(1),
              "eval_max_tokens": at_least(1)}

    @classmethod
    def preset(cls, name: str):
        if name == "emer-sft":  # the published cold start: 5 epochs, AdamW 2e-5 cosine, warmup 3%, batch 16
            return cls(learning_rate=2e-5, schedule="cosine", warmup_ratio=0.03, weight_decay=0.0, epochs=5,
                       batch_size=16)
        return super().preset(name)


@dataclass
class GRPOConfig(TrainConfig):
    group_size: int = 8  # G completions per prompt
    prompts_per_step: int = 16  # over all ranks
    temperature: float = 1.0
    top_k: int = 50
    max_completion: int = 512
    beta: float = 0.04  # KL to the frozen reference; 0 does not load the reference at all
    updates_per_batch: int = 1
    eps_low: float = 0.2
    eps_high: float = 0.2
    advantage_scale: str = "group"
    aggregation: str = "grpo"
    rewards: dict[str, float] = field(default_factory=lambda: {"accuracy": 1.0, "format": 1.0})
    dynamic_sampling: bool = False  # drop groups whose rewards are all equal (no signal)
    mask_truncated: bool = False  # no loss on completions cut at max_completion
    shared_prefix: bool = True
    reward_labels: str = "truth"  # "random": the control whose accuracy must not improve
    # objectives beyond the published recipe (grpo_math.token_loss cites each source); the defaults are the published
    importance_sampling_level: str = "token"  # "sequence": GSPO's length-normalised sequence ratio
    objective: str = "clip"  # "cispo": MiniMax-M1's clipped, detached importance weight times log pi
    kl_importance_correction: bool = False  # the KL estimate times the importance ratio (DeepSeek-V3.2)
    entropy_coef: float = 0.0  # an entropy bonus: the loss minus entropy_coef * each token's entropy
    delta: float | None = None  # INTELLECT-2: cap on the unclipped ratio (above 1 + eps_high, e.g. 4)
    # completions per forward and backward in the update (gradients accumulated), and per no-grad log-prob pass:
    # peak memory follows it, not group_size. None: every kept group of the rank in one forward
    micro_batch: int | None = None
    eval_max_tokens: int = 64
    learning_rate: float = 1e-6
    schedule: str = "linear"
    epochs: float = 2.0

    RANGES = {**TrainConfig.RANGES, "group_size": at_least(2), "prompts_per_step": at_least(1),
              "temperature": POSITIVE, "top_k": at_least(0), "max_completion": at_least(1), "beta": at_least(0),
              "updates_per_batch": at_least(1), "eps_low": between(0, 1), "eps_high": at_least(0),
              "eval_max_tokens": at_least(1), "entropy_coef": at_least(0),
              "micro_batch": (lambda value: value is None or value >= 1, "at least 1, or null (no micro-batches)")}
    CHOICES = {**TrainConfig.CHOICES, "advantage_scale": ADVANTAGE_SCALES, "aggregation": AGGREGATIONS,
               "reward_labels": ("truth", "random"), "importance_sampling_level": IMPORTANCE_LEVELS,
               "objective": OBJECTIVES}

    def check(self, source: str = "config") -> None:
        super().check(source)
        if self.grad_accum != 1:
            raise InputError(f"{source}: grad_accum applies to SFT; a GRPO step is already one optimizer step over "
                             "prompts_per_step prompts (all ranks together): set prompts_per_step instead")
        if self.delta is not None and self.delta <= 1 + self.eps_high:
            raise InputError(f"{source}: delta {self.delta} must exceed 1 + eps_high ({1 + self.eps_high:g}): it caps "
                             "the unclipped ratio above the clipping range (INTELLECT-2 used 4)")
        if self.delta is not None and self.objective == "cispo":
            raise InputError(f"{source}: delta caps PPO's unclipped ratio; cispo has none (its weight is clipped at "
                             "1 + eps_high): drop one")
        unknown = sorted(name for name in set(self.rewards) - set(REWARDS) if ":" not in name)
        if unknown:
            raise InputError(f"{source}: rewards: unknown reward(s) {', '.join(unknown)}; registered: "
                             f"{', '.join(sorted(REWARDS))}, or a function of yours as 'package.module:function'")
        for name in self.rewards:  # the user's functions: imported and their signatures checked now, not mid-run
            if ":" in name:
                try:
                    resolve_reward(name)
                except InputError as exc:
                    raise InputError(f"{source}: {exc}") from None

    @classmethod
    def preset(cls, name: str):
        if name == "r1omni":  # the published recipe
            return cls(group_size=8, prompts_per_step=16, temperature=1.0, top_k=50, max_completion=512, beta=0.04,
                       learning_rate=1e-6, schedule="linear", warmup_ratio=0.0, epochs=2, updates_per_batch=1,
                       eps_low=0.2, eps_high=0.2, advantage_scale="group", aggregation="grpo")
        if name == "gspo":  # GSPO (arXiv 2507.18071) as TRL's paper index reproduces it: sequence ratio, section 5.1
            return cls(importance_sampling_level="sequence", beta=0.0, eps_low=3e-4, eps_high=4e-4,
                       aggregation="grpo", advantage_scale="group", updates_per_batch=2)
        if name == "cispo":  # CISPO (MiniMax-M1, arXiv 2506.13585): clipped IS weight, token-level mean, no KL
            return cls(objective="cispo", beta=0.0, eps_high=4.0, aggregation="dapo", advantage_scale="group",
                       updates_per_batch=2)
        if name == "modern":  # DAPO / Dr. GRPO lessons: no KL, clip-higher, token-level loss, dynamic sampling
            return cls(beta=0.0, eps_low=0.2, eps_high=0.28, aggregation="dapo", advantage_scale="group",
                       dynamic_sampling=True, mask_truncated=True, updates_per_batch=2, learning_rate=1e-6,
                       schedule="constant")
        return super().preset(name)


@dataclass
class AdaptConfig(TrainConfig):
    """Window adaptation (``train adapt``): the model under a fast audio front end (the student) learns the answers
    the same model gives under the published one (the teacher), on the user's clips, no labels needed."""

    audio_window: str | int = "fit"  # the student's window: fit or seconds (the published is full)
    audio_layout: str = "compact"  # how the student's shorter window sits in the prompt: compact or tail
    batch_size: int = 8  # clips per optimizer step, over all ranks
    micro_batch: int = 4  # clips per forward on one rank
    kl_weight: float = 1.0  # KL(teacher || student) on the answer's label distribution (label mode)
    ce_weight: float = 1.0  # cross-entropy on the teacher's greedy reasoning and answer (full mode)
    keep_weight: float = 1.0  # the same two losses under the published front end: it must not forget them
    teacher_max_tokens: int = 64  # the teacher's greedy answer, at most this many tokens
    # the teacher's label distribution: "label", label mode's (right after an empty reasoning); "full", the one after
    # its own greedy reasoning, so that label mode learns the reasoned answer (with audio_window full: label mode
    # alone is taught, the front end stays the published one)
    teacher_mode: str = "label"
    train_parts: list[str] = field(default_factory=lambda: ["audio_projector", "llm"])
    lora: dict[str, Any] | None = field(default_factory=lambda: {"r": 8, "alpha": 16})
    learning_rate: float = 1e-4
    schedule: str = "constant"

    RANGES = {**TrainConfig.RANGES, "batch_size": at_least(1), "micro_batch": at_least(1), "kl_weight": at_least(0),
              "ce_weight": at_least(0), "keep_weight": at_least(0), "teacher_max_tokens": at_least(1)}
    CHOICES = {**TrainConfig.CHOICES, "audio_layout": ("compact", "tail"), "teacher_mode": ("label", "full")}

    def check(self, source: str = "config") -> None:
        super().check(source)
        from ..media.processor import parse_audio_window

        try:
            self.audio_window = parse_audio_window(self.audio_window)
        except InputError as exc:
            raise InputError(f"{source}: audio_window: {exc}") from None
        if self.audio_window in ("full", 30) and self.teacher_mode == "label":
            raise InputError(f"{source}: audio_window {self.audio_window!r} is the published front end: there is "
                             "nothing to adapt to; use fit or a number of seconds below 30 (or teacher_mode full, "
                             "which teaches label mode the reasoned answer)")
        if self.kl_weight == self.ce_weight == 0:
            raise InputError(f"{source}: kl_weight and ce_weight are both 0: nothing to learn from the teacher")
