"""Several processes with ``torchrun`` (PyTorch's ``torch.distributed`` and
DistributedDataParallel): who this process is, and the few collectives the training loop needs.

Started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment), ``init`` joins the process group
(NCCL on GPUs, gloo on the CPU) with a bounded timeout, so that a process that dies or hangs makes
the others stop with an error instead of waiting forever. Without ``torchrun`` every function is
the single-process identity, and nothing here is imported into the computation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .errors import ConfigError, TrainingError

__all__ = ["ProcessGroupError", "World", "init", "world", "local_device", "all_mean",
           "broadcast_value", "share", "gather", "all_gather", "barrier", "failure",
           "wrap_backbone", "unwrap_state", "shutdown"]

DDP_PREFIX = "module."


class ProcessGroupError(TrainingError):
    """An exchange between the processes failed: another process died or stopped answering."""


@dataclass(frozen=True)
class World:
    """This process's ``rank`` among ``size`` processes, and its ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place, from the process group if one is up, else the environment."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 int(os.environ.get("LOCAL_RANK", 0)))


def init(device: torch.device, timeout_s: float) -> World:
    """Join the process group when started by ``torchrun`` with several processes; returns this
    process's ``World``. GPUs: process ``local_rank`` uses GPU ``local_rank`` (NCCL); CPU: gloo."""
    here = world()
    if not here.distributed or dist.is_initialized():
        return here
    if device.type == "cuda":
        if torch.cuda.device_count() <= here.local_rank:
            raise ConfigError(f"torchrun: process {here.local_rank} on this machine needs GPU "
                              f"{here.local_rank}, but {torch.cuda.device_count()} are visible")
        torch.cuda.set_device(here.local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return world()


def local_device(device: torch.device) -> torch.device:
    """The GPU of this process (``cuda:<local_rank>``) or the CPU."""
    return torch.device("cuda", world().local_rank) if device.type == "cuda" else device


def failure(what: str, exc: BaseException, hint: str = "") -> ProcessGroupError:
    """The one-line error of a process whose exchange with the others failed: another process
    died, or stopped answering for the timeout."""
    here = world()
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return ProcessGroupError(f"rank {here.rank} of {here.size}: {what} failed: another process "
                             f"died or stopped answering ({first}){hint}")


def _collective(what: str, fn) -> None:
    try:
        fn()
    except RuntimeError as exc:  # torch.distributed's errors derive from it
        raise failure(what, exc) from None


def all_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over the processes (equal shares: the mean of the whole batch)."""
    if not world().distributed:
        return x
    y = x.detach().clone()
    _collective("averaging over the processes", lambda: dist.all_reduce(y, op=dist.ReduceOp.SUM))
    return y / world().size


def broadcast_value(value: float, device: torch.device) -> float:
    """Rank 0's ``value`` on every process (the training clock: every process then makes the
    same decisions about time limits and snapshots, at the same step)."""
    if not world().distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    _collective("agreeing on the clock", lambda: dist.broadcast(t, src=0))
    return float(t.item())


def share(num: int, block: int) -> tuple[int, int]:
    """This process's examples ``start .. stop - 1`` of ``num``: whole blocks of ``block``,
    contiguous in rank order, as even as blocks allow (``start == stop``: none)."""
    here = world()
    blocks = -(-num // block)
    first = here.rank * (blocks // here.size) + min(here.rank, blocks % here.size)
    count = blocks // here.size + (here.rank < blocks % here.size)
    return min(num, first * block), min(num, (first + count) * block)


def gather(value):
    """Every process's ``value`` (any picklable object, CPU tensors included), in rank order,
    on rank 0; ``None`` on the others. One process: ``[value]``."""
    if not world().distributed:
        return [value]
    here = world()
    out = [None] * here.size if here.main else None
    _collective("gathering the results", lambda: dist.gather_object(value, out, dst=0))
    return out


def all_gather(value) -> list:
    """Every process's ``value`` (picklable), in rank order, on every process."""
    if not world().distributed:
        return [value]
    out = [None] * world().size
    _collective("exchanging the results", lambda: dist.all_gather_object(out, value))
    return out


def barrier() -> None:
    """Wait until every process gets here (e.g. until rank 0 has written a file)."""
    if world().distributed:
        _collective("waiting for the other processes", dist.barrier)


def wrap_backbone(model, device: torch.device) -> None:
    """Put the operator's backbone behind ``DistributedDataParallel`` (in place): every forward
    pass goes through DDP, and backward all-reduces the gradients. No-op for one process."""
    if not world().distributed:
        return
    from torch.nn.parallel import DistributedDataParallel  # noqa: PLC0415

    ids = [device.index] if device.type == "cuda" else None
    model.operator.backbone = DistributedDataParallel(model.operator.backbone, device_ids=ids)


def unwrap_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict without DDP's ``module.`` level (the keys of a single-process model)."""
    marker = "backbone." + DDP_PREFIX
    return {k.replace(marker, "backbone."): v for k, v in state.items()}


def shutdown() -> None:
    """Leave the process group (end of a run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
