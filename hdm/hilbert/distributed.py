"""Data-parallel training across processes: the process group, this process's rank, the
number of processes and the device each one trains on.

``torchrun --nproc_per_node W ...`` starts W copies of a program and tells each, through
the environment, who it is:

    WORLD_SIZE   W, the number of processes (all nodes together)
    RANK         r ∈ {0, …, W−1}, this process's index among them
    LOCAL_RANK   its index on this node (which GPU it drives)
    MASTER_ADDR, MASTER_PORT   where process 0 waits for the others (the ``env://``
                               rendezvous of ``torch.distributed.init_process_group``)

:func:`distributed_session` joins that process group (backend "nccl" when CUDA is
available, one GPU per process, else "gloo" on CPU) and leaves it at the end; without
torchrun (WORLD_SIZE unset or 1) it is a single process and nothing is initialised.
:func:`current_context` describes the group already joined, however it was joined (the
tests join one through a file store), so the training loop needs no arguments for it.

Process 0 is the *main* process: the only one that writes files, logs and draws a
progress bar. Every process must reach each :meth:`DistributedContext.barrier`, and the
files written between barriers must be on a file system all processes see.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands among W data-parallel processes.

    rank: r ∈ {0, …, W−1}. world_size: W (1: a single process, no process group).
    local_rank: the index on this node. device: where this process trains (cuda:LOCAL_RANK
    with CUDA, else cpu). backend: "nccl", "gloo", or None for a single process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """True on process 0, the one that writes checkpoints, logs and progress."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait until every process gets here (nothing to wait for with one process)."""
        if not self.is_distributed:
            return
        if self.backend == "nccl":  # names the GPU, so NCCL need not guess it
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def all_mean(self, value: torch.Tensor) -> torch.Tensor:
        """(1/W) Σ_r value_r, the same on every process: a detached copy, ``value`` stays."""
        value = value.detach().clone()
        if self.is_distributed:
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value /= self.world_size
        return value


def launched_by_torchrun(env: dict | None = None) -> bool:
    """True when the environment describes more than one process (WORLD_SIZE > 1)."""
    env = os.environ if env is None else env
    return int(env.get("WORLD_SIZE", "1")) > 1


def default_device(local_rank: int = 0) -> torch.device:
    """cuda:local_rank when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def current_context(device: torch.device | str | None = None) -> DistributedContext:
    """The process group this process has joined, or a single process.

    ``device`` defaults to :func:`default_device` of LOCAL_RANK for an NCCL group, the CPU
    for a gloo group, and is used as given for a single process (default: the CPU).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext(device=torch.device(device or "cpu"))
    rank, world_size = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = str(dist.get_backend())
    if device is None:
        device = default_device(local_rank) if backend == "nccl" else torch.device("cpu")
    return DistributedContext(rank, world_size, local_rank, torch.device(device), backend)


@contextmanager
def distributed_session() -> Iterator[DistributedContext]:
    """Join torchrun's process group for the duration of the block, then leave it.

    With WORLD_SIZE > 1 in the environment: backend "nccl" and device cuda:LOCAL_RANK when
    CUDA is available, else "gloo" on the CPU; the rendezvous is ``env://``. Otherwise a
    single process on cuda:0 (when available) or the CPU. A group that is already joined
    is used and left alone (its owner destroys it).
    """
    owner = False
    if launched_by_torchrun() and dist.is_available() and not dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(default_device(local_rank))
        dist.init_process_group(backend=backend)
        owner = True
    if dist.is_available() and dist.is_initialized():
        ctx = current_context()
    else:
        ctx = DistributedContext(device=default_device(0))
    try:
        yield ctx
    finally:
        if owner:
            dist.destroy_process_group()
