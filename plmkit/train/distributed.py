"""One process on a laptop or many under `torchrun`: process-group setup and small collectives."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto` is this process's CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(name)


def init_distributed(device: str = "auto") -> tuple[int, int, int, torch.device]:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK and, when WORLD_SIZE > 1, join the process group
    (nccl on CUDA, gloo on CPU). Returns (rank, world_size, local_rank, device); one process gives (0, 1, 0, dev).
    Build the sampler with this rank and world_size; the Trainer reads the same values from the group."""
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return rank, world_size, local_rank, dev


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_object(obj):
    """Every rank's `obj`, in rank order (just [obj] in one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum of `values` over ranks (float64, so token counts stay exact)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()
