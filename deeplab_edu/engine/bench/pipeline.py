"""The whole pipeline: does the engine keep the device busy?

Training steps as :meth:`~deeplab_edu.engine.trainer.Trainer.fit` runs them, fed by the engine's
own loader against the same step on a batch already on the device (issue 11's target on a GPU:
the loader-fed throughput at least 90 % of the step alone).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import statistics
from collections.abc import Iterator, Sized
from pathlib import Path
from typing import Any, cast

import torch

from .timing import (interleaved, interval_text, load_average, min_rounds, speedup_interval, timed_steps, torch_threads,
                     write_result)

__all__ = ["run_pipeline_benchmark", "default_preset", "FEEDS", "PROFILE_STEPS", "diagnosis_rows", "profile_totals", "summarise_profile",
           "loader_load_elsewhere", "paired_throughput_ratios"]

#: Loader-fed steps ``benchmarks/pipeline_diagnosis.py --profile`` profiles (its records say so in
#: ``profile_steps``; the first record, made before that field, profiled this many too).
PROFILE_STEPS = 10

#: The feeds of ``benchmarks/pipeline_diagnosis.py``: what each one gives the training step.
FEEDS = {
    "step": "one synthetic batch already on the device",
    "loader": "the engine's training loader, as Trainer.fit is fed",
    "pinned": "batches taken from the loader beforehand, in pinned memory (the copies alone)",
    "step+busy": "the synthetic batch while another thread drains the loader",
    "prefetch": "the loader read and copied by a background thread on a side stream",
    "step+load": "the synthetic batch while another process drains its own loader (the workers' CPU load "
                 "without this process's threads)",
    "unpinned": "the engine's training loader without pinned memory (no pin-memory thread; blocking copies)",
    "loader-uint8": "the engine's training loader with uint8_batches (uint8 image and mask, normalised on the device)",
    "loader+switch": "the engine's training loader, the interpreter's switch interval shortened (--switch-interval)",
    "loader-uint8+switch": "loader-uint8 with the switch interval shortened",
}


def default_preset(device: str | None) -> str:
    """The pipeline benchmark's preset when none is given (``deeplab-edu bench --mode pipeline``,
    ``benchmarks/pipeline_diagnosis.py``): ``gpu`` for a CUDA ``device`` ("cuda", "cuda:1"), ``cpu`` for any
    other; with no ``device``, ``gpu`` where PyTorch sees CUDA. The ``cpu`` preset's network trains in minutes
    on a CPU, where the ``gpu`` preset's would take hours."""
    if device is not None:
        return "gpu" if device.startswith("cuda") else "cpu"
    return "gpu" if torch.cuda.is_available() else "cpu"


def run_pipeline_benchmark(*, preset: str = "gpu", overrides: dict[str, Any] | None = None, device: str | None = None,
                           iterations: int = 30, warmup: int = 3, rounds: int | None = None, out: str | Path | None = None,
                           threads: int | None = None) -> dict[str, Any]:
    """End-to-end training throughput through the engine's own loader vs the model step alone.

    Builds a :class:`~deeplab_edu.engine.trainer.Trainer` from ``preset`` (plus ``overrides``) and
    times ``iterations`` training steps as :meth:`~deeplab_edu.engine.trainer.Trainer.fit` runs them
    (the losses stay on the device until the window ends), fed by

    - ``pipeline``: the engine's training loader (workers, pinned memory, host-to-device copies);
    - ``step only``: one synthetic batch of the same shape already on the device, reused.

    Rounds alternate the order of the two. Before each ``pipeline`` window the batches its workers
    prefetched meanwhile are taken untimed, so the window measures what the workers produce, not a
    full queue. The ratio ``pipeline / step only`` is how busy the engine keeps the device: 1.0 means
    the data never waits (the issue's target on a GPU is >= 0.9); ``ratio_interval`` is its paired
    bootstrap 95 % interval over the ``rounds`` (:func:`~.timing.speedup_interval`; None below
    :func:`~.timing.min_rounds`, 6, which is the default).

    ``threads`` sets torch's intra-op threads of the training process for the run (``None``: leave them).

    Returns:
        ``{"pipeline_images_per_s", "step_images_per_s", "ratio", "num_workers", ...}``; also written as a
        record (default ``runs/bench/pipeline_<device>.json``).

    Raises:
        ValueError: ``iterations``, ``warmup`` or ``rounds`` below 1.
    """
    from ..config import load_config

    rounds = min_rounds() if rounds is None else rounds
    if min(iterations, warmup, rounds) < 1:
        raise ValueError(f"iterations={iterations}, warmup={warmup} and rounds={rounds} must all be at least 1")
    total = warmup * 2 + 2 * rounds * iterations + 10
    settings = {**(overrides or {}), "iterations": max(total, 1), "progress": False, "resume": False,
                "warmup_iters": 0, "tensorboard": False}
    if device is not None:
        settings["device"] = device
    cfg = load_config(preset, settings)
    with torch_threads(threads):
        return _pipeline(cfg, preset, overrides, iterations, warmup, rounds, out)


def _pipeline(cfg: Any, preset: str, overrides: dict[str, Any] | None, iterations: int, warmup: int, rounds: int,
              out: str | Path | None) -> dict[str, Any]:
    import itertools

    from ..allocator import keep_freed_memory
    from ..trainer import Trainer

    trainer = Trainer(cfg)
    dev = trainer.device
    if cfg.keep_freed_memory and dev.type == "cpu":  # its steps as fit() trains them (for this process, as pairs')
        keep_freed_memory()
    loader_batches = trainer.batches()
    x0, y0 = next(loader_batches)
    synthetic = itertools.repeat(trainer.to_device(x0.clone(), y0.clone()))
    prefetch = 2 * trainer.num_workers  # DataLoader's default prefetch_factor (2) per worker
    for _ in range(warmup):
        trainer.train_step(loader_batches)  # reads the loss: a diverging warm-up fails here
        trainer.train_step(synthetic)
    seconds: dict[str, list[float]] = {"pipeline": [], "step only": []}
    order = ["step only", "pipeline"]
    load_before = load_average()
    for mode in interleaved(order, rounds):
        source = synthetic if mode == "step only" else loader_batches
        if mode == "pipeline":
            for _ in range(prefetch):
                next(loader_batches)
        seconds[mode].append(iterations * timed_steps(lambda: trainer.step(source), iterations, dev))
    images = iterations * cfg.batch_size * cfg.grad_accum * trainer.dist.world_size
    pipe = images / statistics.median(seconds["pipeline"])
    step = images / statistics.median(seconds["step only"])
    results = {"preset": preset, "overrides": overrides or {}, "device": str(dev), "batch_size": cfg.batch_size,
               "crop_size": cfg.crop_size, "model": cfg.model, "backbone": cfg.backbone, "amp": cfg.amp,
               "channels_last": cfg.channels_last, "num_workers": trainer.num_workers, "iterations": iterations,
               "rounds": rounds, "pipeline_images_per_s": pipe, "step_images_per_s": step, "ratio": pipe / step,
               "ratio_interval": speedup_interval(seconds["step only"], seconds["pipeline"]),
               "seconds": seconds, "torch_threads": torch.get_num_threads(), "load_average_before": load_before,
               "load_average_after": load_average()}
    print(f"pipeline ({preset}, {cfg.model} {cfg.backbone}, crop {cfg.crop_size}, batch {cfg.batch_size}, "
          f"{trainer.num_workers} worker{'' if trainer.num_workers == 1 else 's'}, {dev}): {pipe:.1f} images/s through the engine's loader, "
          f"{step:.1f} images/s for the step alone on a synthetic batch: x{pipe / step:.2f}"
          f"{interval_text(results['ratio_interval'])} (load average {load_before})")
    write_result(results, out, f"pipeline_{dev.type}.json", "medians of alternating windows; the machine may be shared")
    del loader_batches
    return results


def _drain_loader(preset: str, overrides: dict[str, Any], num_workers: int, ready: Any, stop: Any) -> None:
    """In a child process: the preset's training loader, drained (batches discarded) until ``stop``;
    ``ready`` is set once the first batch has arrived."""
    from ..config import load_config
    from ..data import build_datasets, train_loader

    cfg = load_config(preset, overrides)
    train, _ = build_datasets(cfg)
    sampler = torch.utils.data.RandomSampler(cast(Sized, train))
    while not stop.is_set():
        for _ in train_loader(train, sampler, batch_size=cfg.batch_size, num_workers=num_workers):
            ready.set()
            if stop.is_set():
                break


@contextlib.contextmanager
def loader_load_elsewhere(preset: str, overrides: dict[str, Any], num_workers: int,
                          timeout: float = 120.0) -> Iterator[None]:
    """A block during which a spawned process drains its own copy of ``preset``'s training loader
    (``num_workers`` workers, one thread each, batches not pinned): the CPU load of the engine's
    loader without a thread in this process (``benchmarks/pipeline_diagnosis.py``, feed ``step+load``).

    The block starts once the first batch has arrived; the process is stopped when it ends.

    Raises:
        TimeoutError: no batch within ``timeout`` seconds (or the process died), naming the preset.
    """
    ctx = multiprocessing.get_context("spawn")  # CUDA may be initialised here: no fork
    ready, stop = ctx.Event(), ctx.Event()
    process = ctx.Process(target=_drain_loader, args=(preset, overrides, num_workers, ready, stop))
    process.start()
    try:
        waited = 0.0
        while not ready.wait(1.0):
            waited += 1.0
            if not process.is_alive() or waited >= timeout:
                raise TimeoutError(f"the process draining the {preset!r} preset's loader gave no batch in "
                                   f"{waited:.0f} s (exit code {process.exitcode})")
        yield
    finally:
        stop.set()
        process.join(timeout=60)
        if process.is_alive():
            process.kill()
            process.join(timeout=10)


def paired_throughput_ratios(record: dict[str, Any]) -> dict[str, list[float]]:
    """Each feed's throughput relative to the ``step`` feed of a ``benchmarks/pipeline_diagnosis.py``
    record, round by round (the step alone's time in a round / the feed's in the same round), sorted;
    an empty dict when the record has no ``step`` feed. The last column of :func:`diagnosis_rows` is
    their median and range."""
    modes = record["results"]["modes"]
    if "step" not in modes:
        return {}
    base = [r["step_s"] for r in modes["step"]["rounds"]]
    return {feed: sorted(b / r["step_s"] for b, r in zip(base, m["rounds"])) for feed, m in modes.items()}


def diagnosis_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A row per feed of a ``benchmarks/pipeline_diagnosis.py`` record: images/s, milliseconds per
    step, and the milliseconds of each step the main thread spent launching it and waiting for its
    batch, all from the feed's median round (by step time, so that the parts add up; with an even
    number of rounds, the faster of the two middle ones), and the feed's
    throughput relative to the ``step`` feed, paired round by round (median and range over rounds:
    :func:`paired_throughput_ratios`).

    When launching takes as long as the whole step, the CPU that launches the kernels sets the
    pace, unless the GPU's queue is full (then launching waits for it); the profile of the record
    (:func:`profile_totals`) tells the two apart.
    """
    modes = record["results"]["modes"]
    paired = paired_throughput_ratios(record)
    rows = []
    for feed, m in modes.items():
        rounds = m["rounds"]
        mid = sorted(rounds, key=lambda r: r["step_s"])[(len(rounds) - 1) // 2]
        row = {"feed": feed, "what": FEEDS.get(feed, ""),
               "images/s": round(record["results"]["batch_size"] / mid["step_s"], 1),
               "ms per step": round(1e3 * mid["step_s"], 1), "launching ms": round(1e3 * mid["launch_s"], 1),
               "waiting for the batch ms": round(1e3 * mid["next_s"], 2)}
        if paired:
            ratios = paired[feed]
            row["throughput vs step (rounds)"] = (f"x{statistics.median(ratios):.2f} "
                                                  f"({ratios[0]:.2f}-{ratios[-1]:.2f})")
        rows.append(row)
    return rows


def summarise_profile(prof: Any, steps: int) -> dict[str, float]:
    """The totals :func:`profile_totals` reads, from a finished ``torch.profiler.profile`` of ``steps``
    training steps, computed from its events (``prof.key_averages()``) as the profiler's own table sums
    them: ``cpu_ms_per_step`` (self CPU time of every operator and runtime call, all threads),
    ``gpu_ms_per_step`` (self time of the device's kernels and copies; 0 on a CPU), ``launches_per_step``
    (calls of the CUDA runtime's and driver's ``*LaunchKernel*`` functions, every one of them, not only
    the rows a printed table shows) and ``steps``. Times in ms.

    Raises:
        ValueError: ``steps`` is not positive.
    """
    from torch.autograd import DeviceType

    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    events = prof.key_averages()
    cpu_us = sum(e.self_cpu_time_total for e in events)
    device_us = sum(e.self_device_time_total for e in events
                    if e.device_type != DeviceType.CPU and not e.is_user_annotation)
    launches = sum(e.count for e in events if "LaunchKernel" in e.key)
    return {"cpu_ms_per_step": cpu_us / 1e3 / steps, "gpu_ms_per_step": device_us / 1e3 / steps,
            "launches_per_step": launches / steps, "steps": steps}


def profile_totals(record: dict[str, Any]) -> dict[str, float] | None:
    """From a diagnosis record made with ``--profile`` (``profile_steps`` loader-fed steps): the profiler's total
    CPU time (operators and CUDA runtime calls, all threads) and GPU kernel time, in ms per step
    (``cpu_ms_per_step``, ``gpu_ms_per_step``), the kernel launches per step (``launches_per_step``:
    the calls of the CUDA runtime's and driver's launch functions) and ``steps``, the number of steps
    profiled; ``None`` without a profile.

    Records keep these as :func:`summarise_profile` computed them (``profile_totals``); the first record
    (2026-11-30) kept only the profiler's printed table, whose totals line is read and whose launch
    rows (25 rows shown, by self CPU time) are added up.
    """
    results = record["results"]
    if results.get("profile_totals"):
        return dict(results["profile_totals"])
    table = results.get("profile")
    if not table:
        return None
    import re

    steps = results.get("profile_steps", PROFILE_STEPS)
    totals: dict[str, float] = {}
    for key, label in (("cpu_ms_per_step", "Self CPU time total"), ("gpu_ms_per_step", "Self CUDA time total")):
        found = re.search(rf"{label}: ([0-9.]+)(ms|s|us)", table)
        if found:
            value = float(found.group(1)) * {"ms": 1.0, "s": 1e3, "us": 1e-3}[found.group(2)]
            totals[key] = value / steps
    rows = (line.split() for line in table.splitlines())
    launches = [int(row[-1]) for row in rows if row and "LaunchKernel" in row[0] and row[-1].isdigit()]
    if launches:
        totals["launches_per_step"] = sum(launches) / steps
    return {**totals, "steps": steps} if totals else None
