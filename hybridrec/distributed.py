"""Data-parallel training under ``torchrun``: the process group and each process's share.

``torchrun --nproc-per-node N -m hybridrec.train …`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set. Each holds the whole graph (full-graph message passing)
and the same frozen collaborative scorers; the GNN's positive pairs are split between them,
and :class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients, so one step
trains on ``N x batch_size`` pairs. Rank 0 evaluates, decides early stopping and writes the
run folder; the others follow its decisions. Backend: NCCL with one GPU per process, gloo on
the CPU.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class Ranks:
    """This process's place in the group: ``rank`` of ``world_size``, ``local_rank`` on its
    node (its GPU). One process alone is ``Ranks()``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def current() -> Ranks:
    """The group this process belongs to (``Ranks()`` outside one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Ranks()
    return Ranks(dist.get_rank(), dist.get_world_size(),
                 int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def launched() -> bool:
    """Started by ``torchrun`` (or another launcher) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> Ranks:
    """Join the group ``torchrun``'s environment describes (once): NCCL when training on CUDA,
    gloo otherwise. Outside a launcher, nothing to join: ``Ranks()``."""
    if not launched():
        return Ranks()
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this build of torch; "
                           "train in one process")
    if not dist.is_initialized():
        # Rank 0 fits the collaborative scorers while the others wait for the GNN's first
        # step: a wait longer than the default 10-30 minutes on a big data set.
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(hours=3))
    return current()


def device_for(device: torch.device, ranks: Ranks) -> torch.device:
    """One GPU per process on a node (``cuda:LOCAL_RANK``); the CPU is shared."""
    if device.type == "cuda" and ranks.active:
        torch.cuda.set_device(ranks.local_rank)
        return torch.device("cuda", ranks.local_rank)
    return device


def shard(rows: Tensor, ranks: Ranks) -> Tensor:
    """This process's part of ``rows``: ``N`` nearly equal consecutive slices, one per rank."""
    return rows.tensor_split(ranks.world_size)[ranks.rank] if ranks.active else rows


def agree(flag: bool, ranks: Ranks) -> bool:
    """Rank 0's ``flag`` on every rank (early stopping is decided there)."""
    if not ranks.active:
        return flag
    # NCCL moves CUDA tensors only; gloo, CPU ones.
    device = (torch.device("cuda", torch.cuda.current_device())
              if dist.get_backend() == "nccl" else torch.device("cpu"))
    value = torch.tensor([int(flag)], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def share_state(module: torch.nn.Module, ranks: Ranks) -> None:
    """Copy rank 0's parameters into every rank's ``module`` (its best state, which only rank
    0's early stopping kept; the buffers are masks of the graph, the same everywhere)."""
    if not ranks.active:
        return
    with torch.no_grad():
        for tensor in module.parameters():
            dist.broadcast(tensor.data, src=0)


@contextlib.contextmanager
def main_first(ranks: Ranks) -> Iterator[None]:
    """Rank 0 runs the block first (it fills the data and text caches), the others after it
    (they read what it wrote instead of writing the same files at the same time)."""
    if ranks.active and not ranks.is_main:
        dist.barrier()
    yield
    if ranks.active and ranks.is_main:
        dist.barrier()


def finish(ranks: Ranks) -> None:
    """Leave the group (after the last collective call)."""
    if ranks.active and dist.is_initialized():
        dist.destroy_process_group()
