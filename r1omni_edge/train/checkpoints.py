"""Training checkpoints: the published layout (loadable by the loader, exportable by `export`) with
trainer_state.pt beside it (optimizer, schedule, RNG, step, the trainable weights in full precision), written in one
atomic swap; finding the one to resume from, and resuming exactly."""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .config import TrainConfig
from .distributed import is_sharded

log = logging.getLogger("r1omni_edge.train")
STATE_FILE = "trainer_state.pt"
CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)")  # what training writes in output_dir



def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])



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
