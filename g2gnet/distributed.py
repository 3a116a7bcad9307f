"""Data-parallel training across processes (SPEC §10): PyTorch's own launcher and collectives.

``torchrun --nproc_per_node N -m g2gnet train ...`` starts N copies of the command; each finds its
rank here (the ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` variables torchrun sets), joins the process
group (gloo on CPU, NCCL on GPUs) and trains on its share of every global batch. Everything that
must be identical on all ranks is made so by construction (same seeds, same data order) and
checked where it matters (DST masks after every update).

Without torchrun, ``World`` is a single process and every helper here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import G2GError


@dataclass(frozen=True)
class World:
    size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that writes the run directory and prints."""
        return self.rank == 0

    def shard(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global batch (shares differ by at most one)."""
        n = t.shape[0]
        lo, hi = n * self.rank // self.size, n * (self.rank + 1) // self.size
        return t[lo:hi]


def world_from_env() -> World:
    """The world torchrun describes in the environment (one process without it)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(size, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")))


def init(world: World, device: torch.device) -> torch.device:
    """Join the process group; returns the device this rank trains on (cuda:LOCAL_RANK on GPUs)."""
    if world.size == 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_size() -> tuple[int, int]:
    """This process's rank and the number of processes ((0, 1) without a process group)."""
    return (dist.get_rank(), dist.get_world_size()) if active() else (0, 1)


def gather_all(obj: object) -> list:
    """Every rank's ``obj`` (picklable; tensors on the CPU), in rank order, on every rank: a
    collective, which every rank must call ([obj] without a process group)."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum_(tensors: list[torch.Tensor]) -> None:
    """Sum each tensor over all ranks, in place (nothing without a process group)."""
    if active():
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


def check_same(what: str, t: torch.Tensor) -> None:
    """A G2GError naming ``what`` unless ``t`` is identical on every rank (compared by checksum)."""
    if not active():
        return
    data = t.detach().reshape(-1)
    if data.dtype == torch.bool:
        data = data.to(torch.uint8)
    weights = torch.arange(1, data.numel() + 1, device=data.device, dtype=torch.float64) % 1_000_003
    digest = torch.stack([data.double().sum(), (data.double() * weights).sum()])
    digests = [torch.empty_like(digest) for _ in range(dist.get_world_size())]
    dist.all_gather(digests, digest)
    if any(not torch.equal(d, digests[0]) for d in digests):
        raise G2GError(f"{what} differs across ranks (rank {dist.get_rank()} of {dist.get_world_size()})")


# What a collective says when the process at the other end is gone (killed, crashed): gloo's TCP
# pair errors and NCCL's aborted communicator.
_PEER_GONE = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "Connection refused",
              "NCCL communicator was aborted", "NCCL error")


def lost_peer(e: BaseException) -> str | None:
    """Why a collective failed, when it failed because another rank is gone; None for any other
    error (which must keep its traceback)."""
    if not active() or not isinstance(e, RuntimeError):
        return None
    text = str(e)
    marker = next((m for m in _PEER_GONE if m in text), None)
    if marker is None and not isinstance(e, getattr(dist, "DistNetworkError", ())):
        return None
    return f"{'gloo' if 'gloo' in text else 'nccl' if 'NCCL' in text else 'process group'}: {marker or type(e).__name__}"


def barrier() -> None:
    if active():
        dist.barrier()


def close() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
