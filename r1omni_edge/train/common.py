"""What SFT and GRPO share: their config base and file loading, the model and policy set-up with freezing, the
optimizer and schedule, checkpoints (published layout + trainer state, written atomically) with exact resume,
distributed set-up (torchrun / accelerate launch: DDP, or FSDP2 sharding for the real model), and logging to the
console and TensorBoard."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import random
import re
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..typed import POSITIVE, at_least, between, check_value, range_problems

log = logging.getLogger("r1omni_edge.train")
STATE_FILE = "trainer_state.pt"
CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)")  # what training writes in output_dir
TRAINABLE_PARTS = ("mm_projector", "bert_gate", "audio_projector", "llm")


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
    labels: str = "mafw"
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
    blank_inputs: bool = False  # control: zero the tower features (nothing to learn from)

    @classmethod
    def from_file(cls, path: str | Path, **overrides):
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such config file")
        text = path.read_text()
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text) or {}
            else:
                data = json.loads(text)
        except Exception as exc:  # yaml and json raise different types
            raise InputError(f"{path}: cannot be parsed ({exc})") from exc
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data, str(path))

    # Ranges and choices of the fields, checked for every config (a file, the CLI or the Python API): a bad value
    # fails before anything loads, named by its field. Subclasses add theirs.
    RANGES = {"max_steps": at_least(0), "epochs": POSITIVE, "learning_rate": POSITIVE, "weight_decay": at_least(0),
              "warmup_ratio": between(0, 1), "grad_accum": at_least(1), "max_grad_norm": POSITIVE,
              "save_every": at_least(0), "eval_every": at_least(0), "log_every": at_least(1)}
    CHOICES = {"schedule": ("cosine", "linear", "constant"), "dtype": ("fp32", "bf16", "fp16"),
               "resize_mode": ("stretch", "pad"), "labels": ("mafw", "dfew", "ravdess")}

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


# ---- reproducibility -------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


# ---- distributed -----------------------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str, fsdp: bool = False) -> Dist:
    """torchrun and accelerate launch both set RANK / WORLD_SIZE: join their process group (gloo on CPUs). FSDP needs
    the group even for one process."""
    world = int(os.environ.get("WORLD_SIZE", "0"))
    if fsdp and not world:
        raise InputError("fsdp: true needs a launcher: torchrun --nproc_per_node N (or accelerate launch) "
                         "-m r1omni_edge.cli train ...")
    if world <= 1 and not fsdp:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank)


def wrap_distributed(module: torch.nn.Module, dist_info: Dist, config: TrainConfig) -> torch.nn.Module:
    """DDP over several ranks; with ``fsdp`` the module is sharded in place (and returned)."""
    if config.fsdp:
        return shard_fsdp(module, config.device)
    if dist_info.world <= 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [dist_info.local_rank] if config.device.startswith("cuda") else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)


def shard_fsdp(policy: torch.nn.Module, device: str) -> torch.nn.Module:
    """FSDP2 over all ranks: each Qwen2 decoder layer is its own unit, the rest of the policy (embedding table,
    projectors, gate, frozen towers) the root unit. At rest every weight, gradient and AdamW state is a 1/N shard.

    A step gathers each unit's weights at its first forward and keeps them until the backward has reduce-scattered
    the gradients (FSDP1's SHARD_GRAD_OP, ZeRO-2): rollouts then run token by token with no collective per token,
    and ranks with different completion lengths or group counts never wait on each other. The bf16 weights of the
    0.5 B decoder are small next to its fp32 gradients and optimizer state, which stay sharded throughout."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cuda" if device.startswith("cuda") else "cpu", (dist.get_world_size(),))
    for layer in policy.model.llm.model.layers:
        fully_shard(layer, mesh=mesh, reshard_after_forward=False)
    fully_shard(policy, mesh=mesh, reshard_after_forward=False)
    return policy


def is_sharded(module: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def clip_gradients(policy: torch.nn.Module, max_norm: float) -> float:
    """Clip the trainable weights' gradients; the norm over all ranks' shards under FSDP."""
    norm = torch.nn.utils.clip_grad_norm_([p for p in policy.parameters() if p.requires_grad], max_norm)
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


def shard(items: list, dist_info: Dist) -> list:
    """This rank's share of a step's prompts (whole prompts: a GRPO group never spans ranks)."""
    return items[dist_info.rank::dist_info.world]


def max_over_ranks(value: int, dist_info: Dist) -> int:
    """The largest ``value`` of any rank: every rank must run as many backward passes as the busiest one."""
    if dist_info.world <= 1:
        return value
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.long)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


# ---- model and optimizer -----------------------------------------------------------------------------------------
def build_policy(config: TrainConfig):
    from ..model.checkpoint import load_model
    from ..model.towers import load_bert_tokenizer
    from ..prompt import PromptTokenizer
    from .policy import Policy

    device = config.device
    model, report = load_model(config.model, config.siglip, config.whisper, config.bert, config.models_dir,
                               dtype=config.dtype, device=device)
    for part in ("vision_tower", "audio_tower", "bert_model"):  # frozen: their outputs are cached
        getattr(model, part).requires_grad_(False)
    for part in TRAINABLE_PARTS:
        getattr(model, part).requires_grad_(part in config.train_parts)
    if config.lora:
        model.llm = apply_lora(model.llm, config.lora)
    if config.gradient_checkpointing:  # non-reentrant: works with frozen inputs and under FSDP
        model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    policy = Policy(model, PromptTokenizer(config.model), load_bert_tokenizer(Path(report.towers["bert"])))
    return policy, report


def apply_lora(llm, options: dict[str, Any]):
    """LoRA adapters on the LLM through peft; the frozen reference is then the base with adapters disabled."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise InputError("lora needs peft: pip install peft") from None
    lora = LoraConfig(r=options.get("r", 16), lora_alpha=options.get("alpha", 32),
                      lora_dropout=options.get("dropout", 0.0),
                      target_modules=options.get("targets", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                             "up_proj", "down_proj"]))
    return get_peft_model(llm, lora)


def make_optimizer(module: torch.nn.Module, config: TrainConfig, total_steps: int):
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise InputError("nothing to train: every part is frozen (check train_parts)")
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = int(round(config.warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        progress = (step - warmup) / max(total_steps - warmup, 1)
        if config.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if config.schedule == "linear":
            return max(0.0, 1 - progress)
        return 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---- checkpoints -----------------------------------------------------------------------------------------------
def save_checkpoint(policy, directory: Path, config: TrainConfig, optimizer, scheduler, step: int,
                    extra: dict[str, Any] | None = None, main: bool = True) -> Path:
    """Published layout (loadable by the loader, exportable by `export`) + trainer_state.pt, in one atomic write.

    Call it on every rank: under FSDP the full weights and optimizer state are gathered from all ranks (to the CPU of
    rank 0) first; only ``main`` writes."""
    from ..model.checkpoint import save_model

    model = policy.model
    full_state = None
    if is_sharded(policy):
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        full_state = {k.removeprefix("model."): v for k, v in get_model_state_dict(policy, options=options).items()}
        optimizer_state = get_optimizer_state_dict(policy, optimizer, options=options)
    else:
        optimizer_state = optimizer.state_dict()
    if not main:
        return directory
    source = full_state if full_state is not None else model.state_dict()
    trainable = {k: v.detach().cpu() for k, v in source.items() if k.split(".")[0] in config.train_parts}

    def trainer_state(staging: Path) -> None:
        torch.save({"step": step, "optimizer": optimizer_state, "scheduler": scheduler.state_dict(),
                    "rng": rng_state(), "config": dataclasses.asdict(config), "extra": extra or {},
                    "trainable": trainable, "sharded": full_state is not None}, staging / STATE_FILE)

    original = model.llm
    if config.lora and hasattr(model.llm, "merge_and_unload"):  # the published layout has no adapters
        model.llm = copy.deepcopy(model.llm).merge_and_unload()
    try:
        return save_model(model, directory, tokenizer_dir=config.model, extra=trainer_state, state=full_state)
    finally:
        model.llm = original


def find_resume(config: TrainConfig) -> Path | None:
    """The checkpoint ``resume_from`` names: a directory with trainer_state.pt, or "latest": the newest
    ``checkpoint-N`` in output_dir that has one (other directories there are not ours and are left alone)."""
    if not config.resume_from:
        return None
    if config.resume_from != "latest":
        path = Path(config.resume_from)
        if not (path / STATE_FILE).is_file():
            raise InputError(f"{path}: no {STATE_FILE}; pass a checkpoint written by a training run")
        return path
    output = Path(config.output_dir)
    numbered = sorted((int(match.group(1)), path) for path in output.glob("checkpoint-*")
                      if (match := CHECKPOINT_DIR.fullmatch(path.name)) and path.is_dir())
    complete = [path for _, path in numbered if (path / STATE_FILE).is_file()]
    if not complete:
        raise InputError(f"--resume latest: {output} holds no checkpoint-N with {STATE_FILE} to resume from; drop "
                         "--resume to start from scratch")
    for _, path in numbered:
        if path not in complete and int(path.name.split("-")[1]) > int(complete[-1].name.split("-")[1]):
            log.warning("resume: skipping %s, it has no %s (a copy without it, or an interrupted save)", path,
                        STATE_FILE)
    return complete[-1]


def load_state(policy, path: Path, optimizer, scheduler) -> dict[str, Any]:
    """Restore the trainable weights exactly (fp32 as trained, not the bf16 checkpoint), optimizer, schedule, RNG."""
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    if is_sharded(policy) != state.get("sharded", False):
        raise InputError(f"{path}: written with fsdp {state.get('sharded', False)}, resumed with fsdp "
                         f"{is_sharded(policy)}; resume with the setting it was written with")
    if is_sharded(policy):  # every rank reads the full state and keeps its own shards
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                             set_optimizer_state_dict)

        options = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(policy, {f"model.{k}": v for k, v in state["trainable"].items()}, options=options)
        set_optimizer_state_dict(policy, optimizer, state["optimizer"], options=options)
    else:
        policy.model.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state


# ---- logs --------------------------------------------------------------------------------------------------------
class Logger:
    """Console lines and, where installed, TensorBoard scalars under OUTPUT/tensorboard."""

    def __init__(self, output_dir: str | Path, enabled: bool, tensorboard: bool = True):
        self.enabled = enabled
        self.writer = None
        self.history: list[dict[str, Any]] = []
        self.started = time.perf_counter()
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(output_dir) / "tensorboard"))
            except ImportError:
                log.warning("tensorboard is not installed: logging to the console only (pip install tensorboard)")

    def log(self, step: int, metrics: dict[str, float], prefix: str = "train") -> None:
        if not self.enabled:
            return
        self.history.append({"step": step, **{f"{prefix}/{k}": v for k, v in metrics.items()}})
        shown = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        log.info("[%s %d] %s", prefix, step, shown)
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self, output_dir: str | Path) -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            self.writer.close()
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in self.history))


# ---- one run's set-up and finish, shared by the trainers ----------------------------------------------------------
@dataclass
class Run:
    config: TrainConfig
    dist: Dist
    policy: Any
    module: torch.nn.Module  # the policy, wrapped for DDP when distributed (FSDP shards the policy itself)
    labels: tuple[str, ...]
    samples: list
    prompts: list
    eval_prompts: list
    cache: Any
    encode_seconds: float
    logger: Logger
    reference: Any = None  # the frozen reference policy for the KL term (GRPO with beta > 0, without LoRA)
    optimizer: Any = None
    scheduler: Any = None
    start_step: int = 0
    resume: Path | None = None  # the checkpoint to resume from, found before anything loaded

    def start(self, total_steps: int) -> None:
        """Optimizer and schedule for ``total_steps`` optimizer steps, then resume if asked."""
        self.optimizer, self.scheduler = make_optimizer(self.policy, self.config, total_steps)
        if self.resume is not None:
            self.start_step = load_state(self.policy, self.resume, self.optimizer, self.scheduler)["step"]
            log.info("resumed from %s at step %d", self.resume, self.start_step)

    def steps(self, total: int, unit: str = "step"):
        """The step range with a progress bar on the main rank (quiet when not on a terminal)."""
        import sys

        from tqdm.auto import tqdm

        return tqdm(range(self.start_step, total), initial=self.start_step, total=total, unit=unit,
                    disable=not (self.dist.main and sys.stderr.isatty()), dynamic_ncols=True)

    @property
    def evaluates(self) -> bool:
        """Rank 0 evaluates; under FSDP every rank must run the (gathering) forwards with it."""
        return bool(self.eval_prompts) and (self.dist.main or self.config.fsdp)

    def periodic(self, step: int, eval_max_tokens: int) -> None:
        """Evaluation and checkpoints every eval_every / save_every steps (written by rank 0)."""
        config = self.config
        if config.eval_every and step % config.eval_every == 0 and self.evaluates:
            self.logger.log(step, self.evaluate(eval_max_tokens).metrics(), "eval")
        if config.save_every and step % config.save_every == 0:
            self.save(step)

    def evaluate(self, max_tokens: int):
        from .evaluate import evaluate

        return evaluate(self.policy, self.eval_prompts, self.labels, max_tokens, blank=self.config.blank_inputs)

    def save(self, step: int) -> Path:
        """Called on every rank (FSDP gathers collectively); rank 0 writes."""
        return save_checkpoint(self.policy, Path(self.config.output_dir) / f"checkpoint-{step}", self.config,
                               self.optimizer, self.scheduler, step, main=self.dist.main)

    def finish(self, total: int, eval_max_tokens: int, result: dict[str, Any]) -> dict[str, Any]:
        result.update({"steps": total, "encode_seconds": self.encode_seconds, "cache": self.cache.describe()})
        checkpoint = self.save(total)
        if self.dist.main:
            result["checkpoint"] = str(checkpoint)
        if self.evaluates:
            evaluation = self.evaluate(eval_max_tokens)
            self.logger.log(total, evaluation.metrics(), "eval")
            result["eval"] = evaluation.metrics()
            result["confusion"] = evaluation.table()
        self.logger.close(self.config.output_dir)
        result["config"] = dataclasses.asdict(self.config)
        return result


def check_output_dir_is_writable(config: TrainConfig) -> None:
    """output_dir gets checkpoints and logs: it must be writable and not inside the model or a tower directory."""
    from ..files import refuse_inputs, writable_directory

    inputs = {"the model": config.model, "models_dir": config.models_dir, "siglip": config.siglip,
              "whisper": config.whisper, "bert": config.bert}
    refuse_inputs(config.output_dir, inputs, "output_dir")
    writable_directory(config.output_dir, "output_dir")


def prepare_run(config: TrainConfig, with_reference: bool = False) -> Run:
    """Distributed set-up, seeds, the policy (and a frozen copy as the reference), the validated datasets and their
    features (encoded once), then the DDP / FSDP wrapping."""
    from ..labels import label_set
    from .data import load_dataset
    from .features import FeatureCache
    from .policy import Policy

    config.check()
    resume = find_resume(config)  # a wrong --resume fails before the model loads
    check_output_dir_is_writable(config)
    dist_info = setup_distributed(config.device, config.fsdp)
    seed_everything(config.seed)
    policy, _ = build_policy(config)
    labels = label_set(config.labels)
    samples = load_dataset(config.train_data, config.data_root, labels)
    eval_samples = load_dataset(config.eval_data, config.data_root, labels) if config.eval_data else []
    cache = FeatureCache(config.cache_dir or Path(config.output_dir) / "feature-cache", policy.model,
                         config.resize_mode)
    started = time.perf_counter()
    cache.warm(samples + eval_samples)
    encode_seconds = time.perf_counter() - started
    prompts = [policy.prompt(s, cache.get(s.video)) for s in samples]
    eval_prompts = [policy.prompt(s, cache.get(s.video)) for s in eval_samples]
    reference = None
    if with_reference:  # copied before any sharding; frozen, so each rank keeps a whole bf16 copy (no collectives)
        reference = Policy(copy.deepcopy(policy.model).eval().requires_grad_(False), policy.tokenizer,
                           policy.bert_tokenizer)
    module = wrap_distributed(policy, dist_info, config)
    return Run(config, dist_info, policy, module, labels, samples, prompts, eval_prompts, cache, encode_seconds,
               Logger(config.output_dir, dist_info.main, config.tensorboard), reference, resume=resume)
