"""Multi-process training with PyTorch's own engine: ``torchrun``, DDP, SyncBatchNorm, sharded data.

Launch ``torchrun --nproc_per_node=N -m deeplab_edu train ...``: ``torchrun`` sets ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`init_distributed` reads them and joins the process group
(NCCL on GPUs, gloo on the CPU). Each process sees its own shard of the data
(:class:`~torch.utils.data.distributed.DistributedSampler`), BatchNorm statistics are computed over
the global batch (SyncBatchNorm, as DeepLabv3 sec. 4.1 stresses that batch norm needs a large
batch; PyTorch's ``SyncBatchNorm`` runs on GPUs only, so on the CPU :class:`CPUSyncBatchNorm` sums the
statistics with a differentiable all-reduce over gloo), gradients are averaged by DDP, metrics are summed
across processes, and only rank 0 writes files. With a per-process batch of B and N processes, a step is
that of one process with batch N x B (up to floating-point summation order) only when every process's batch
holds as many labelled pixels: each process's loss is the mean over its own labelled pixels and DDP averages
the processes' gradients, so where the counts differ (ignored pixels: void borders, crop padding) a pixel of a
sparsely labelled batch weighs more (each process weighs alike, as ``grad_accum``'s micro-batches do); with
``top_k`` below 1 each process also keeps the hardest pixels of its own batch. ``tests/test_distributed.py``
checks both cases.
"""

from __future__ import annotations

import contextlib
import gc
import os
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, TypeVar, cast

import torch
import torch.distributed as dist
from torch import nn

_T = TypeVar("_T", float, torch.Tensor)
_V = TypeVar("_V")

__all__ = ["CPUSyncBatchNorm", "convert_sync_batchnorm", "DistInfo", "launched_world_size", "init_distributed",
           "is_main", "wrap_model", "unwrap", "barrier", "all_reduce_mean", "all_gather_objects", "cpu_group",
           "max_over_processes", "release_group", "cleanup", "local_main_first"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size, local rank, and whether it is distributed."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """True when there is more than one process (``world_size > 1``)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0."""
        return self.rank == 0


def launched_world_size() -> int:
    """The number of processes ``torchrun`` launched (its ``WORLD_SIZE``; 1 where it is unset or empty), read
    before, or without, joining the process group."""
    return int(os.environ.get("WORLD_SIZE", "").strip() or 1)


def init_distributed(device: torch.device, backend: str | None = None) -> DistInfo:
    """Join the process group described by the ``torchrun`` environment; a single process otherwise."""
    world = launched_world_size()
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = backend or ("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def is_main() -> bool:
    """True on rank 0 (and in a single process): the process group's rank, or before the group is joined,
    torchrun's ``RANK`` (the command line's notes come before :func:`init_distributed`)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0").strip() in ("0", "")


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the batch of *all* processes (any device).

    The per-channel sums of ``x`` and ``x**2`` and the pixel count are added over processes with
    :func:`torch.distributed.nn.functional.all_reduce`, which is differentiable, so gradients flow
    exactly as in single-process BatchNorm on the concatenated batch. Same parameters and buffers as
    :class:`~torch.nn.BatchNorm2d` (checkpoints are interchangeable).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (N, C, H, W); the output has its shape.

        In training with an initialised process group the mean and variance are those of all processes' batches
        (the running statistics, when tracked, are updated with them); otherwise this is
        :class:`~torch.nn.BatchNorm2d`'s forward.
        """
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        xf = x.float()
        count = torch.full((1,), float(x.numel() // c), dtype=torch.float32, device=x.device)
        with warnings.catch_warnings():  # torch 2.14 deprecates it for a private module's all_reduce
            warnings.filterwarnings("ignore", message="torch.distributed.nn.functional.all_reduce is deprecated",
                                    category=FutureWarning)
            stats = all_reduce(torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp(min=0)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1).clamp(min=1))
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked += 1
        y = (xf - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace BatchNorm by PyTorch's SyncBatchNorm on CUDA, by :class:`CPUSyncBatchNorm` elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            new = CPUSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats)
            if child.affine:  # the same Parameter objects: an optimizer built earlier still holds them
                new.weight, new.bias = child.weight, child.bias
            new.running_mean, new.running_var = child.running_mean, child.running_var
            new.num_batches_tracked = child.num_batches_tracked
            new.train(child.training)
            setattr(model, name, new)
        else:
            convert_sync_batchnorm(child, device)
    return model


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device, sync_bn: bool = True) -> nn.Module:
    """SyncBatchNorm + DistributedDataParallel when distributed; the model unchanged otherwise."""
    if not info.distributed:
        return model
    if sync_bn:
        model = convert_sync_batchnorm(model, device)
    ids = [device.index if device.index is not None else info.local_rank] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        else:
            return model


def barrier() -> None:
    """Wait for every process (``dist.barrier``); does nothing without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@contextlib.contextmanager
def local_main_first(info: DistInfo, enabled: bool = True, *, timeout_hours: float = 6.0) -> Iterator[None]:
    """Run the ``with`` block in each machine's first process (local rank 0) before the others: a download
    (a data set's ``--download``, ImageNet weights) is then made once per machine and the other processes
    find the files in place, instead of every process writing the same files at once.

    The others wait at a barrier of a gloo group made for the purpose, with a timeout of ``timeout_hours``
    (the default group's barrier would abort them after NCCL's 10 minutes, shorter than a large data
    set's download). The first process reaches the barrier also when its block raises, so the others are
    never left waiting: they then run the block themselves, all at once (and, offline, fail with the same
    message). Without a process group, or with ``enabled`` false, it only runs the block.
    """
    if not (enabled and info.distributed and dist.is_available() and dist.is_initialized()):
        yield
        return
    import datetime

    # every process calls it, and every process is a member (not GroupMember.NON_GROUP_MEMBER)
    group = cast(dist.ProcessGroup, dist.new_group(backend="gloo", timeout=datetime.timedelta(hours=timeout_hours)))
    try:
        if info.local_rank != 0:
            dist.barrier(group=group)
        try:
            yield
        finally:
            if info.local_rank == 0:
                dist.barrier(group=group)
    finally:
        dist.destroy_process_group(group)


def all_reduce_mean(value: _T, device: torch.device) -> _T:
    """Average a Python number, or a tensor element by element, over processes (itself when not
    distributed). A number travels through a tensor on ``device``; a tensor is averaged on its own
    device (``device`` is then unused) and is not read back."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    if isinstance(value, torch.Tensor):
        t = value.clone()
        dist.all_reduce(t)
        return t / dist.get_world_size()  # type: ignore[return-value]
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()  # type: ignore[return-value]


def all_gather_objects(value: _V) -> list[_V]:
    """Every process's ``value``, in rank order (``dist.all_gather_object``: pickled, for small states such as
    random streams); ``[value]`` without an initialised process group. Every process must call it."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def cpu_group() -> dist.ProcessGroup | None:
    """A process group whose collectives take CPU tensors: the default group where its backend is gloo, else
    a new gloo group (NCCL's take CUDA tensors, and reading one back waits for the GPU). Every process must
    call it; ``None`` without an initialised process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    if dist.get_backend() == "gloo":
        return cast(dist.ProcessGroup, dist.group.WORLD)
    return cast(dist.ProcessGroup, dist.new_group(backend="gloo"))


def max_over_processes(value: int, group: dist.ProcessGroup | None) -> int:
    """The largest of every process's ``value`` (a MAX all-reduce of one integer over ``group``, a
    :func:`cpu_group`), which every process of the group must call at the same point; ``value`` itself
    where ``group`` is ``None``."""
    if group is None:
        return value
    reduced = torch.tensor([int(value)], dtype=torch.int64)
    dist.all_reduce(reduced, op=dist.ReduceOp.MAX, group=group)
    return int(reduced.item())


def release_group(group: dist.ProcessGroup | None) -> None:
    """Destroy a group :func:`cpu_group` made (not the default group, and nothing for ``None``)."""
    if group is not None and group is not dist.group.WORLD and dist.is_initialized():
        dist.destroy_process_group(group)


def cleanup() -> None:
    """Destroy the process group if one is initialised; does nothing otherwise.

    Free the :class:`~deeplab_edu.engine.trainer.Trainer` first (``del trainer``): its DDP wrapper's reducer
    holds the group, and a reducer freed after this call destroys the group while holding Python's lock,
    which under torch 2.11's gloo can deadlock with the group's own threads (the likely cause of a hang at a
    process's exit in ``make test-compat``, seen once). Objects in reference cycles are collected here first,
    for that reason.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
