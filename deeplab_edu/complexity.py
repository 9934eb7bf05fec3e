"""Measured cost of a model: parameters, multiply-adds, forward time and peak memory.

Multiply-adds are *counted from a real forward pass* with PyTorch's
:class:`torch.utils.flop_counter.FlopCounterMode` (one multiply-add = 2 FLOPs), so they follow
whatever the model actually does at the given input size: dilation, padding and odd sizes
included. Times are medians over repeats after a warm-up; peak memory is the allocator's
high-water mark on CUDA and the profiler's tracked tensor memory on the CPU.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Hashable, Iterator, Mapping, TypeVar

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .choices import is_whole

__all__ = ["count_parameters", "count_macs", "time_forward", "time_interleaved", "check_rounds", "peak_memory_bytes",
           "saved_for_backward_bytes", "Cost", "measure"]

_K = TypeVar("_K", bound=Hashable)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (shared parameters counted once: ``Module.parameters()`` yields each once)."""
    return sum(p.numel() for p in model.parameters() if not trainable_only or p.requires_grad)


def count_macs(model: nn.Module | Callable[..., Any], *inputs: torch.Tensor) -> int:
    """Multiply-accumulate operations (MACs) of one forward pass on ``inputs`` (no gradients).

    Counted by PyTorch's ``FlopCounterMode``, which counts the operators that dominate a CNN's cost:
    convolutions (atrous, depthwise and transposed included) and matrix products (``linear``,
    ``matmul``, ``bmm``, attention), half its FLOP count. Batch norm, activations, pooling,
    interpolation and additions are *not* counted: they cost memory traffic more than arithmetic,
    so a network with many of them (depthwise layers, a decoder at stride 4) runs slower than its
    MACs suggest. Figures in papers follow other conventions; compare MACs counted the same way.

    Args:
        model: a module or any callable.
        *inputs: its inputs, e.g. one (N, 3, H, W) image batch; the count scales with N.

    Returns:
        the number of multiply-adds (an ``int``; divide by 1e9 for GMACs).
    """
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(*inputs)
    return counter.get_total_flops() // 2


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the profiler back end's start/stop chatter, which it writes to file descriptor 2, and
    torch 2.11's warning that a profiler without a schedule "clears events at the end of each cycle"
    (issued for every profiler there; later versions warn only on a second cycle)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Warning: Profiler clears events", category=UserWarning)
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(
    model: nn.Module | Callable[..., Any], *inputs: torch.Tensor, repeats: int = 5, warmup: int = 1
) -> float:
    """Median wall-clock seconds of one forward pass ``model(*inputs)`` (no gradients), over ``repeats``
    timed passes after ``warmup`` untimed ones; on CUDA the device is synchronised around each pass.

    Raises:
        ValueError: no ``inputs`` (the device is read from the first), ``repeats`` below 1 or ``warmup``
            below 0.
    """
    if not inputs:
        raise ValueError("give the model's inputs, e.g. time_forward(model, torch.randn(1, 3, 128, 128))")
    check_rounds(repeats, warmup)
    device = inputs[0].device
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            _sync(device)
            start = time.perf_counter()
            model(*inputs)
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def check_rounds(repeats: int, warmup: int) -> None:
    """Refuse timing rounds that cannot give a median: :func:`time_forward`'s and :func:`time_interleaved`'s
    check, for a caller that wants it before other costly work.

    Raises:
        ValueError: ``repeats`` is not a whole number of at least 1 or ``warmup`` not one of at least 0 (an audit:
            1.5 passed this check and failed in ``range()`` after the minutes of counting).
    """
    if not (is_whole(repeats) and is_whole(warmup)) or repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be at least 1 and warmup at least 0, both whole numbers, got repeats={repeats!r}, "
                         f"warmup={warmup!r}")


def time_interleaved(
    calls: Mapping[_K, Callable[[], Any]], *, repeats: int = 3, warmup: int = 1,
    device: torch.device | str = "cpu", on_round: Callable[[], Any] | None = None,
) -> dict[_K, float]:
    """Median wall-clock seconds of each of ``calls`` (run without gradients), timed in rounds.

    Every round runs each call once, in order in even rounds and reversed in odd ones
    (:func:`deeplab_edu.engine.bench.timing.interleaved`); the first ``warmup`` rounds are not
    timed. Timed one after the other instead, the first call pays the process's warm-up alone (a
    model's first passes on the CPU ran five times slower than its later ones) and a busy spell of
    a shared machine slows one call only. Each call is timed by
    :func:`deeplab_edu.engine.bench.timing.timed` (on CUDA, synchronised around it).

    Args:
        calls: name -> a function of no arguments (a forward pass, a prediction).
        repeats: timed rounds (>= 1); the median of these is returned.
        warmup: untimed rounds first (>= 0).
        device: where the calls run (synchronised on CUDA).
        on_round: called after every round (a progress bar's ``update``).

    Returns:
        name -> median seconds, in the order of ``calls``.

    Raises:
        ValueError: ``repeats`` < 1 or ``warmup`` < 0.
    """
    from .engine.bench.timing import interleaved, timed

    check_rounds(repeats, warmup)
    device = torch.device(device)
    names = list(calls)
    times: dict[_K, list[float]] = {name: [] for name in names}
    with torch.no_grad():
        for i, name in enumerate(interleaved(names, warmup + repeats)):
            seconds = timed(calls[name], device)[0]
            if i >= warmup * len(names):
                times[name].append(seconds)
            if on_round is not None and (i + 1) % len(names) == 0:
                on_round()
    return {name: statistics.median(t) for name, t in times.items()}


def _memory_records(prof: Any) -> list[tuple[int, int]] | None:
    """``(time ns, bytes)`` of every CPU allocation (+) and free (-) the profiler saw, in time order.

    ``None`` on a torch without the profiler internals this reads (``kineto_results``).
    """
    try:
        events = prof.profiler.kineto_results.events()
        return sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    except AttributeError:
        return None


def peak_memory_bytes(model: nn.Module | Callable[..., Any], *inputs: torch.Tensor) -> int:
    """Peak tensor memory allocated during one forward pass (no gradients), in bytes.

    What the pass allocates on top of what already exists: the weights and ``inputs`` are *not*
    included (add ``count_parameters(model) * 4`` bytes for float32 weights), nor is what training
    keeps for the backward pass (:func:`saved_for_backward_bytes` measures that).

    On CUDA this is ``torch.cuda.max_memory_allocated`` above the memory in use before
    the call; on the CPU it is the high-water mark of every allocation and free the profiler
    records, in time order (where the profiler lacks those records: of the allocations and frees
    of its innermost operator events, which miss frees done outside any operator).

    Raises:
        ValueError: no ``inputs`` are given.
    """
    if not inputs:
        raise ValueError("give the model's inputs, e.g. peak_memory_bytes(model, torch.randn(1, 3, 128, 128))")
    device = inputs[0].device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        with torch.no_grad():
            model(*inputs)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model(*inputs)
    records = _memory_records(prof)
    if records is None:
        events = sorted((e for e in prof.events() if getattr(e, "cpu_memory_usage", 0) != 0 and not e.cpu_children),
                        key=lambda e: e.time_range.start)
        records = [(0, e.cpu_memory_usage) for e in events]
    current = peak = 0
    for _, nbytes in records:
        current += nbytes
        peak = max(peak, current)
    return peak


def saved_for_backward_bytes(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps from one forward pass of ``model`` for its backward pass.

    Each storage counts once (an in-place ReLU's output and the next conv's input are one map);
    the inputs and the model's parameters do not count: what is left are the intermediate maps
    that grow with batch and image size (plus small per-channel statistics). Runs the forward pass
    with gradients in the model's current mode (train it first to see training memory; in training
    mode that pass updates the batch norms' running statistics), via
    :func:`torch.autograd.graph.saved_tensors_hooks`.
    """
    skip = {t.untyped_storage().data_ptr() for t in (*inputs, *model.parameters())}
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            kept[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(*inputs)
    return sum(kept.values())


@dataclass(frozen=True)
class Cost:
    """What :func:`measure` returns (counts, seconds, bytes); :meth:`as_row` gives a table row."""

    params: int
    macs: int
    seconds: float
    peak_bytes: int

    def as_row(self) -> dict[str, float]:
        """A table row: ``"params (M)"``, ``"GMACs"``, ``"forward (s)"`` and ``"peak memory (MiB)"``."""
        row = asdict(self)
        return {
            "params (M)": row["params"] / 1e6,
            "GMACs": row["macs"] / 1e9,
            "forward (s)": row["seconds"],
            "peak memory (MiB)": row["peak_bytes"] / 2**20,
        }


def measure(model: nn.Module, *inputs: torch.Tensor, repeats: int = 3, warmup: int = 1) -> Cost:
    """Parameters, multiply-adds, median forward time and peak memory of ``model(*inputs)``.

    The model is measured in eval mode (batch norm with its running statistics) and put back in the
    mode it was in. Units: a count of parameters, :func:`count_macs`' multiply-adds, seconds
    (:func:`time_forward`), bytes (:func:`peak_memory_bytes`: activations only, not the weights).

    Raises:
        ValueError: no ``inputs`` are given, ``repeats`` is below 1 or ``warmup`` below 0 (:func:`time_forward`).
    """
    if not inputs:
        raise ValueError("give the model's inputs, e.g. measure(model, torch.randn(1, 3, 128, 128))")
    was_training = model.training
    model.eval()
    try:
        return Cost(
            params=count_parameters(model),
            macs=count_macs(model, *inputs),
            seconds=time_forward(model, *inputs, repeats=repeats, warmup=warmup),
            peak_bytes=peak_memory_bytes(model, *inputs),
        )
    finally:
        model.train(was_training)
