"""Single-process and ``torchrun`` (DistributedDataParallel) runs from the same code."""
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import TDKDError


@dataclass
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1


def resolve_device(name):
    """``cpu`` / ``cuda`` / ``cuda:N`` -> torch.device; the one device check of every tool and
    of the Python API: anything else, or a GPU this machine does not have, is a ``TDKDError``."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise TDKDError(f"device {name!r}: not a device here; use 'cpu', 'cuda' or 'cuda:N'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TDKDError(f"device {name!r}: no CUDA GPU is available on this machine; run on the CPU with --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise TDKDError(f"device {name!r}: this machine has {count} CUDA GPU{'s' * (count > 1)} "
                        f"(cuda:0 to cuda:{count - 1})")
    return device


def init_distributed(device_name):
    """Join the process group when launched by ``torchrun`` (gloo on CPU, nccl on CUDA)."""
    device = resolve_device(device_name)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistContext(0, 1, device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), device)


def cleanup_distributed(ctx):
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def finish_distributed(ctx):
    """Leave the process group once every rank is done with its collectives. A rank that left
    while another was still receiving its last message (the root of a broadcast, say) could
    abort in gloo's threads ("terminate called without an active exception"), now and then,
    on a busy machine. Objects no longer used that hold the group (a finished trainer's
    DistributedDataParallel wrappers, in reference cycles) are collected first, so that the
    group is not torn down later, during interpreter exit."""
    gc.collect()
    if ctx.distributed and dist.is_initialized():
        dist.barrier()
    cleanup_distributed(ctx)


def all_ranks_agree(ctx, flag):
    """True when ``flag`` is true on every rank (used to stop all ranks together)."""
    if not ctx.distributed:
        return bool(flag)
    value = torch.tensor([1.0 if flag else 0.0], device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())
