"""torchrun (DDP) support: the process group from torchrun's environment, and the gather that lets
both losses and the graph heads see the global batch.

Every rank plans the same global batch (the planner is deterministic), loads and encodes its own
contiguous share of the nodes, and gathers the encoders' embeddings from all ranks with gradients
(open_clip's `gather_with_grad`); the graph heads and both losses then run on the global batch and
its global in-batch graph, the same on every rank. The gather's backward sums each rank's gradient
of the (identical) loss, and DDP averages the parameters' gradients: the update is the one a
single process makes on the global batch (docs/method.md, "Several processes").
"""

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.nn.functional import all_gather


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes logs and checkpoints."""
        return self.rank == 0


def init_from_env(device_type: str) -> Ranks:
    """The process group torchrun's environment describes (NCCL on CUDA, gloo on the CPU); a single
    process when WORLD_SIZE is unset or 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def gather_rows(x: Tensor) -> Tensor:
    """Every rank's rows, in rank order, with gradients flowing back to each rank's own rows; `x`
    itself in a single process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    with warnings.catch_warnings():  # deprecated for a private successor; works on torch >= 2.4
        warnings.filterwarnings(
            "ignore", "torch.distributed.nn.functional.all_gather", FutureWarning
        )
        return torch.cat(all_gather(x), dim=0)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def own_rows(x: Tensor, rows: int) -> Tensor:
    """This rank's `rows` rows of a tensor `gather_rows` made (each rank's share is as large)."""
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    return x[rank * rows : (rank + 1) * rows]


def average_gradients(parameters: Iterable[Tensor], world: int) -> None:
    """The parameters' gradients averaged over the ranks, as DDP's backward would: for a step
    whose backward passes ran outside DDP's forward (gradient caching). One all-reduce over the
    gradients laid end to end, not one per parameter (a ViT has hundreds)."""
    if world == 1:
        return
    grads = [parameter.grad for parameter in parameters if parameter.grad is not None]
    flat = torch.cat([grad.reshape(-1) for grad in grads])
    dist.all_reduce(flat)
    flat.div_(world)
    for grad, averaged in zip(grads, flat.split([grad.numel() for grad in grads]), strict=True):
        grad.copy_(averaged.view_as(grad))
