"""torch.distributed helpers: shard work under torchrun, single process otherwise."""

from __future__ import annotations

import os

import torch.distributed as dist


def init_from_env() -> tuple[int, int]:
    """Initialise the process group when launched by torchrun; returns (rank, world)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        import torch
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj) -> list:
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def shard(items: list, rank: int, world: int) -> list:
    """Round-robin shard; every item lands on exactly one rank."""
    return items[rank::world]
