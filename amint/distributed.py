"""Several processes, one pair: torch.distributed helpers for ``torchrun ... -m amint train``.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; ``setup`` joins that process
group (NCCL on CUDA, gloo on CPU). Every rank holds the same split and draws the same permutations
and augmentations; each takes its slice of every global batch (``shard``), weights its mean loss by its
share of the rows (``rank_weight``: slices differ by a row when the batch does not divide), and
DistributedDataParallel averages the gradients, so a step is the single-process step over the global
batch. BatchNorm keeps
per-rank statistics (each rank's slice is itself members and externals 1:1); the running statistics
that are kept are rank 0's (DDP broadcasts them, ``sync_state`` at the end of every epoch).
With one process every helper here is a no-op.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

# Rank 0 alone calibrates and evaluates while the others wait in a collective: allow it an hour.
COLLECTIVE_TIMEOUT = timedelta(minutes=int(os.environ.get("AMINT_DIST_TIMEOUT_MIN", "60")))


@dataclass(frozen=True)
class Ranks:
    """Where this process sits: rank among world_size processes, local_rank on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


SINGLE = Ranks()


def launched_world_size() -> int:
    """The WORLD_SIZE torchrun (or srun with these variables) gave this process; 1 when run plainly."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: torch.device) -> tuple[Ranks, torch.device, bool]:
    """Join the process group the environment describes (if any and not joined yet).

    Returns this process's ranks, its device (``cuda:LOCAL_RANK`` for a CUDA run) and whether this call
    created the group (then ``teardown`` destroys it).
    """
    created = False
    if not dist.is_initialized() and launched_world_size() > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
        created = True
    if not dist.is_initialized():
        return SINGLE, device, False
    ranks = Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    return ranks, device, created


def teardown(created: bool) -> None:
    if created and dist.is_initialized():
        # A DDP wrapper still alive here (its reducer holds the group) is freed at interpreter exit, after the group
        # is gone, and aborts the process (gloo: "terminate called without an active exception"; 4 of 20 two-rank
        # runs on a busy CPU). One that went out of use is still alive until the cycle collector runs: DDP's hooks
        # form reference cycles. Callers keep their wrappers in functions that returned (as _run_epochs does).
        gc.collect()
        dist.destroy_process_group()


def shard(global_batch: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """This rank's contiguous part of a global batch (sizes differ by at most one)."""
    if not ranks.active:
        return global_batch
    return torch.tensor_split(global_batch, ranks.world_size)[ranks.rank]


def rank_weight(rows: int, global_rows: float, ranks: Ranks) -> float:
    """The factor on this rank's mean loss over ``rows`` of the global batch's ``global_rows`` such that
    DDP's average of the ranks' gradients is the gradient of the global batch's mean loss:
    (1 / world) * sum_r (rows_r * world / global) * grad mean_r = sum_r rows_r * grad mean_r / global.
    Exactly 1 with one process, and with even shards."""
    if not ranks.active:
        return 1.0
    return rows * ranks.world_size / global_rows


def wrap(module: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """DistributedDataParallel over exactly the parameters one phase trains; the module itself alone."""
    if not ranks.active:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def all_sum(values: list[float], ranks: Ranks, device: torch.device) -> list[float]:
    """Element-wise sums over the ranks (float64): global batch sums from per-rank sums."""
    if not ranks.active:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, ranks: Ranks, device: torch.device) -> bool:
    """True on every rank when any rank says True (a stop request reaches all of them at the same step)."""
    return all_sum([float(flag)], ranks, device)[0] > 0 if ranks.active else flag


def sync_state(module: nn.Module, ranks: Ranks) -> None:
    """Copy rank 0's parameters and buffers into every rank (running statistics, memories)."""
    if not ranks.active:
        return
    for t in [*module.parameters(), *module.buffers()]:
        # Collectives take dense contiguous tensors; channels_last weights go through a contiguous copy.
        buf = t.data if t.is_contiguous() else t.data.contiguous()
        dist.broadcast(buf, 0)
        if buf is not t.data:
            t.data.copy_(buf)


def broadcast_object(obj: Any, ranks: Ranks) -> Any:
    """Rank 0's object (JSON-able results) on every rank."""
    if not ranks.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def or_across_ranks(table: torch.Tensor, ranks: Ranks) -> None:
    """Bitwise OR of a uint8 bit table over the ranks, in place (NCCL has no BOR reduction: gather, then OR)."""
    if not ranks.active:
        return
    parts = [torch.empty_like(table) for _ in range(ranks.world_size)]
    dist.all_gather(parts, table.contiguous())
    for part in parts:
        table |= part


def barrier(ranks: Ranks) -> None:
    if ranks.active:
        dist.barrier()
