"""The data pipeline: scenes per second through the engine's own training loader, per worker count.

:func:`loader_throughput` times the loader :class:`~deeplab_edu.engine.trainer.Trainer` uses, with
the one-thread-per-worker limits of :mod:`deeplab_edu.engine.workers` or without them;
:func:`cores_scaling` measures the ceiling the machine's cores set for independent work (no loader
can beat it); :func:`run_loader_benchmark` prints both and writes the record.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from .timing import busy_cpu_seconds, interleaved, load_average, write_result

__all__ = ["loader_throughput", "cores_scaling", "loader_lines", "run_loader_benchmark"]


def loader_throughput(num_workers: int, *, size: int = 256, batch: int = 8, batches: int = 40, warmup: int = 2,
                      limit_threads: bool = True, seed: int = 0, uint8_batches: bool = False) -> dict[str, Any]:
    """Scenes/s of the engine's training loader on procedural scenes with DeepLab's augmentation.

    The loader is the one :class:`~deeplab_edu.engine.trainer.Trainer` uses
    (:func:`~deeplab_edu.engine.data.train_loader` over a :class:`~deeplab_edu.engine.data.SeededDataset`
    and a :class:`~deeplab_edu.engine.data.ResumableSampler`), over exactly ``warmup + batches`` batches of
    ``batch`` scenes of ``size`` pixels (random scale 0.5-2.0, crop ``size``, flip). The clock starts when
    the ``warmup``-th batch arrives (so worker start-up is not counted). ``limit_threads=False`` builds a
    plain DataLoader instead (workers keep their default BLAS/OpenMP threads) to show what the limits change.
    ``uint8_batches`` makes the items uint8 as ``TrainConfig.uint8_batches`` does (``benchmarks/uint8_batches.py``).

    Returns:
        ``{"num_workers", "limit_threads", "scenes_per_s", "seconds", "cpu_s_per_scene", "other_cores"}``: the
        CPU time is that of the worker processes (of the main process with 0 workers) per scene loaded, in
        seconds; ``other_cores`` is how many cores *other* processes kept busy on average meanwhile (Linux;
        ``None`` elsewhere): above a few tenths the wall-clock figures understate the loader.

    Raises:
        ValueError: ``batches`` or ``warmup`` smaller than 1, or ``num_workers`` negative.
        RuntimeError: the loader gave another number of batches than ``warmup + batches``.
    """
    import resource

    from torch.utils.data import DataLoader

    from ..config import TrainConfig
    from ..data import ResumableSampler, SeededDataset, build_datasets, train_loader
    from ..workers import LOADER_TIMEOUT_S

    if batches < 1 or warmup < 1:
        raise ValueError(f"batches={batches} and warmup={warmup} must both be at least 1")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    cfg = TrainConfig(dataset="procedural", image_size=size, crop_size=size, batch_size=batch,
                      train_length=(warmup + batches) * batch, val_length=1, num_workers=num_workers, device="cpu",
                      uint8_batches=uint8_batches)
    train, _ = build_datasets(cfg)
    dataset = SeededDataset(train, seed)
    sampler = ResumableSampler(dataset, shuffle=True, seed=seed, drop_last=True)
    if limit_threads:
        loader = train_loader(dataset, sampler, batch_size=batch, num_workers=num_workers)
    else:
        loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=num_workers, drop_last=True,
                            timeout=LOADER_TIMEOUT_S if num_workers else 0)  # a hung worker fails, as in train_loader
    def own_cpu() -> float:
        return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                      resource.getrusage(resource.RUSAGE_CHILDREN)))

    who = resource.RUSAGE_CHILDREN if num_workers > 0 else resource.RUSAGE_SELF
    r0 = resource.getrusage(who)
    busy0, own0, start = busy_cpu_seconds(), own_cpu(), time.perf_counter()
    n = 0
    t0 = time.perf_counter()
    for i, _ in enumerate(loader):  # runs to the end: every worker is joined, its CPU time counted
        n += 1
        if i == warmup - 1:
            t0 = time.perf_counter()
    seconds = time.perf_counter() - t0
    del loader
    r1 = resource.getrusage(who)
    busy1, own1, span = busy_cpu_seconds(), own_cpu(), time.perf_counter() - start
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if n != warmup + batches:
        raise RuntimeError(f"the loader gave {n} batches, expected {warmup + batches}")
    other = None if busy0 is None or busy1 is None else max(0.0, (busy1 - busy0) - (own1 - own0)) / span
    return {"num_workers": num_workers, "limit_threads": limit_threads, "scenes_per_s": batches * batch / seconds,
            "seconds": seconds, "cpu_s_per_scene": cpu / (n * batch), "other_cores": other}


def _one_thread_loading(size: int, batch: int, batches: int, start: Any, results: Any) -> None:
    """Child of :func:`cores_scaling`: the loading in this process with one thread, once every child is ready."""
    from ..workers import limit_worker_threads

    limit_worker_threads()  # one BLAS/OpenMP/torch thread, as in a loader worker
    start.wait(timeout=60)
    run = loader_throughput(0, size=size, batch=batch, batches=batches)
    end = time.perf_counter()  # CLOCK_MONOTONIC on Linux: one clock for every process
    results.put((end - run["seconds"], end))


def cores_scaling(processes: int = 2, *, size: int = 256, batch: int = 8, batches: int = 30,
                  timeout_s: float = 120.0) -> dict[str, Any]:
    """What this machine's cores give to independent work: the ceiling for ``processes`` loader workers.

    Runs the loading of :func:`loader_throughput` (``num_workers=0``, one BLAS/OpenMP/torch thread) in
    one process alone twice, then in ``processes`` separate processes at once (no DataLoader, nothing
    shared). ``ratio`` is the scenes/s of the concurrent processes (all their scenes over the span from
    the first one's start to the last one's end) over the mean of the lone runs: ``processes`` on free
    physical cores, less where the cores are hyper-threads of one another, share a cache or a memory
    bus, slow their clock when all are busy, or belong to a VM whose host takes time from them. No
    loader with ``processes`` workers can do better than this ratio.

    Returns:
        ``{"processes", "alone_scenes_per_s", "together_scenes_per_s", "ratio"}``.

    Raises:
        ValueError: ``processes`` below 2.
        RuntimeError: the processes of one measurement did not all report within ``timeout_s`` seconds of
            their start, or one of them exited without reporting (the message gives their exit codes).
    """
    import multiprocessing as mp
    import queue

    if processes < 2:
        raise ValueError(f"processes must be at least 2, got {processes}")
    ctx = mp.get_context("fork")

    def _run(n: int) -> float:
        """Scenes/s of ``n`` processes together: all their scenes over the span from the first start to the last end."""
        start, results = ctx.Barrier(n), ctx.Queue()
        children = [ctx.Process(target=_one_thread_loading, args=(size, batch, batches, start, results), daemon=True)
                    for _ in range(n)]
        for c in children:
            c.start()
        deadline = time.monotonic() + timeout_s
        got: list[tuple[float, float]] = []
        try:
            while len(got) < n:
                try:
                    got.append(results.get(timeout=min(1.0, max(0.0, deadline - time.monotonic()))))
                    continue
                except queue.Empty:
                    pass
                crashed = any(c.exitcode not in (None, 0) for c in children)  # a normal exit has reported first
                if crashed or time.monotonic() >= deadline:
                    raise RuntimeError(f"cores_scaling: {n - len(got)} of {n} one-thread loading processes gave no "
                                       f"result ({'one crashed' if crashed else f'stuck for {timeout_s:g} s'}; "
                                       f"exit codes {[c.exitcode for c in children]})")
        finally:
            for c in children:
                c.join(timeout=10)
                if c.is_alive():
                    c.terminate()
        span = max(end for _, end in got) - min(start for start, _ in got)
        return n * batches * batch / span

    alone = statistics.fmean([_run(1), _run(1)])
    together = _run(processes)
    return {"processes": processes, "alone_scenes_per_s": alone, "together_scenes_per_s": together,
            "ratio": together / alone}


def loader_lines(results: Mapping[str, Any]) -> list[str]:
    """The rows of :func:`run_loader_benchmark`'s results (a ``loader_cpu`` record's ``results``) as
    lines of text: scenes/s and CPU ms per scene of each worker count, with and without the
    one-thread-per-worker limit, the speed-up against the fewest workers of the same kind, and the
    ceiling the cores set (``cores_scaling``) when measured."""
    rows = results["rows"]
    first = min((r["num_workers"] for r in rows if r["num_workers"] > 0), default=None)  # ratios: against the fewest
    base = {row["limit_threads"]: row["scenes_per_s"] for row in rows if row["num_workers"] == first}

    def who(n: int) -> str:
        return "the main process" if n == 0 else f"{n} worker{'s' if n > 1 else ''}"

    lines = []
    for row in rows:
        ref = base.get(row["limit_threads"])
        threads = "one thread per worker" if row["limit_threads"] else "default threads"
        compared = ref and row["num_workers"] and row["num_workers"] != first  # not the main process, nor the base
        speedup = f"  x{row['scenes_per_s'] / ref:.2f} vs {who(first or 1)} with {threads}" if compared else ""
        lines.append(f"{who(row['num_workers'])}{', ' + threads if row['num_workers'] else ''}: "
                     f"{row['scenes_per_s']:7.1f} scenes/s, {1000 * row['cpu_s_per_scene']:6.1f} CPU ms/scene{speedup}")
    ceiling = results.get("cores_scaling")
    if ceiling is not None:
        lines.append(f"the ceiling: {ceiling['processes']} separate one-thread processes get x{ceiling['ratio']:.2f} the "
                     f"scenes/s of one ({ceiling['alone_scenes_per_s']:.1f} alone, "
                     f"{ceiling['together_scenes_per_s']:.1f} together)")
    return lines


def run_loader_benchmark(*, workers: tuple[int, ...] = (0, 1, 2), size: int = 256, batch: int = 8, batches: int = 40,
                         rounds: int = 3, compare_unlimited: bool = True, out: str | Path | None = None,
                         ) -> dict[str, Any]:
    """Scenes/s of the engine's training loader per worker count; print it and write a record.

    Every setting (worker count, with and without the one-thread-per-worker limits) is measured once per
    round, in an order that alternates between rounds, and the median over ``rounds`` is kept. With two
    or more workers the record also holds :func:`cores_scaling` for the most workers: the ceiling the
    cores set (``"cores_scaling"``, ``None`` otherwise).
    """

    settings = [(w, True) for w in workers] + ([(w, False) for w in workers if w > 0] if compare_unlimited else [])
    runs: dict[tuple[int, bool], list[dict[str, Any]]] = {s: [] for s in settings}
    load_before = load_average()
    for w, lim in interleaved(settings, rounds):
        runs[(w, lim)].append(loader_throughput(w, size=size, batch=batch, batches=batches, limit_threads=lim))
    rows = []
    for (w, lim), rs in runs.items():
        rows.append({"num_workers": w, "limit_threads": lim,
                     "scenes_per_s": statistics.median(r["scenes_per_s"] for r in rs),
                     "cpu_s_per_scene": statistics.median(r["cpu_s_per_scene"] for r in rs),
                     "all_scenes_per_s": [round(r["scenes_per_s"], 2) for r in rs]})
    most = max(workers)
    ceiling = cores_scaling(most, size=size, batch=batch, batches=batches) if most >= 2 else None
    print(f"engine training loader, procedural scenes {size} px, train transform, batch {batch}, "
          f"{batches} batches x {rounds} rounds (median); load average before {load_before}")
    results = {"size": size, "batch": batch, "batches": batches, "rounds": rounds, "rows": rows, "cores_scaling": ceiling,
               "load_average_before": load_before, "load_average_after": load_average()}
    for line in loader_lines(results):
        print("    " + line)
    write_result(results, out, "loader_cpu.json", "medians of interleaved rounds; the machine may be shared")
    return results
