"""Distributed set-up: torchrun / accelerate launch join one process group; DDP, or FSDP2 sharding for the real
model; the few collectives the trainers need."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..errors import InputError
from .config import TrainConfig


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


def sum_over_ranks(values: list[float], dist_info: Dist) -> list[float]:
    """Each value summed over every rank (float64): the global batch's token count and reward moments."""
    if dist_info.world <= 1:
        return list(values)
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()
