"""Where does the loader-fed training step lose time against the step alone? (issue 11, item 2)

Recorded on one H200 in ``benchmarks/results/pipeline_diagnosis_cuda*.json`` (first
``pipeline_diagnosis_cuda.json``, 6 workers with the profile, and ``pipeline_diagnosis_cuda_w12.json``,
12 workers; then ``gpu_session.sh``'s stages 5-7); read in ``benchmarks/README.md``.

`deeplab-edu bench --mode pipeline` measured the gpu preset on one H200 at x0.76 of the step alone
with 6, 10 and 14 workers alike, so the workers' output is not the limit. This script times the
same Trainer step fed up to ten ways (the seven below by default, ``--feeds`` for three more), in
interleaved rounds, and splits each window's main-thread time into waiting for the next batch
(``next_s``) and launching the step (``launch_s``):

- ``step``: one synthetic batch already on the device (the pipeline benchmark's baseline);
- ``loader``: the engine's training loader, as ``Trainer.fit`` is fed;
- ``pinned``: batches taken from that loader beforehand, in pinned memory: the host-to-device
  copies without the loader;
- ``step+busy``: the synthetic batch while a background thread drains the loader (the workers'
  CPU load and the pin-memory thread without their batches);
- ``prefetch``: the loader read and copied to the device by a background thread on a side stream
  (:class:`DevicePrefetcher`);
- ``step+load``: the synthetic batch while *another process* drains its own copy of the loader
  (:func:`~deeplab_edu.engine.bench.pipeline.loader_load_elsewhere`): the workers' CPU load without this process's threads. Against
  ``step+busy`` it separates the two explanations the first records left open: if the step slows
  as much here, the CPU load slows the launching thread; if not, the other Python threads of the
  training process (the interpreter lock) do;
- ``unpinned``: the engine's loader without pinned memory, so without DataLoader's pin-memory
  thread (the copies to the device then block the main thread).

With ``--feeds`` three more (stop 47, after CUDA graphs made the step about 2x faster and the loader its
limit): ``loader-uint8``, the loader with ``uint8_batches`` (5x fewer bytes for the workers to write
and this process to pin and copy); ``loader+switch`` and ``loader-uint8+switch``, the same with the
interpreter's switch interval (``sys.setswitchinterval``: Python's default 5 ms) shortened to
``--switch-interval`` (this script's default 0.5 ms) during the window: if the launching thread waits
for the interpreter lock that DataLoader's threads hold, a shorter interval gives it back sooner.

If ``launch_s`` per step is close to the window's seconds per step, the step is bound by the CPU
that launches its kernels, and any work the main thread does for the data costs throughput.
``--compile-mode reduce-overhead`` compiles the model with CUDA graphs (one launch replays a whole
forward or backward pass), as the Trainer does with ``compile: true, compile_mode: reduce-overhead``
(since stop 47 through those settings; stage 5's records, made before, compiled ``trainer.net`` here
and marked each step's start as the Trainer now does).

    python benchmarks/pipeline_diagnosis.py --device cuda --out benchmarks/results/pipeline_diagnosis_cuda.json

Without ``--preset`` the preset is ``deeplab-edu bench --mode pipeline``'s: ``gpu`` with ``--device cuda`` or,
without ``--device``, where PyTorch sees CUDA; ``cpu`` otherwise (the ``gpu`` preset's ResNet-50 at 256 px
takes seconds a step on a CPU: hours at the defaults).
"""

from __future__ import annotations

import argparse
import itertools
import queue
import statistics
import sys
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Iterator

from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whichever one the environment installed

from deeplab_edu.config import resolve_device  # noqa: E402
from deeplab_edu.engine.allocator import keep_freed_memory  # noqa: E402
from deeplab_edu.engine.bench.pipeline import (FEEDS, PROFILE_STEPS, default_preset, diagnosis_rows,  # noqa: E402
                                               loader_load_elsewhere, summarise_profile)
from deeplab_edu.engine.bench.timing import (DefaultsHelpFormatter, check_out, interleaved, synchronize,  # noqa: E402
                                             write_result)
from deeplab_edu.engine.config import ConfigError, load_config  # noqa: E402
from deeplab_edu.engine.data import SeededDataset, build_datasets, train_loader  # noqa: E402
from deeplab_edu.engine.trainer import Trainer  # noqa: E402
from deeplab_edu.viz.tables import markdown_text  # noqa: E402

Batch = tuple[torch.Tensor, torch.Tensor]


class DevicePrefetcher:
    """Reads ``batches`` in a background thread and copies each to the device on a side stream.

    Up to ``depth`` batches wait on the device; the consuming stream waits on each copy's event.
    On a CPU device the batches pass through unchanged (the thread still reads ahead).
    """

    def __init__(self, batches: Iterator[Batch], to_device: Callable[[torch.Tensor, torch.Tensor], Batch],
                 device: torch.device, depth: int = 3) -> None:
        self.device, self.queue = device, queue.Queue(maxsize=depth)  # type: queue.Queue[Any]
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(batches, to_device), daemon=True)
        self.thread.start()

    def _run(self, batches: Iterator[Batch], to_device: Callable[[torch.Tensor, torch.Tensor], Batch]) -> None:
        try:
            while not self.stop.is_set():
                x, y = next(batches)
                if self.stream is not None:
                    with torch.cuda.stream(self.stream):
                        x, y = to_device(x, y)
                        event = torch.cuda.Event()
                        event.record(self.stream)
                else:
                    x, y, event = *to_device(x, y), None
                while not self.stop.is_set():
                    try:
                        self.queue.put((x, y, event), timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as err:  # handed to the consumer
            self.queue.put(err)

    def __iter__(self) -> "DevicePrefetcher":
        return self

    def __next__(self) -> Batch:
        item = self.queue.get(timeout=120)
        if isinstance(item, BaseException):
            raise item
        x, y, event = item
        if event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            x.record_stream(current)
            y.record_stream(current)
        return x, y

    def close(self) -> None:
        self.stop.set()
        while self.thread.is_alive():
            try:
                self.queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self.thread.join(timeout=60)


class Timed:
    """An iterator that adds the seconds each ``next`` waited to ``self.seconds``."""

    def __init__(self, batches: Iterator[Batch]) -> None:
        self.batches, self.seconds = batches, 0.0

    def __iter__(self) -> "Timed":
        return self

    def __next__(self) -> Batch:
        start = time.perf_counter()
        try:
            return next(self.batches)
        finally:
            self.seconds += time.perf_counter() - start


def window(trainer: Trainer, batches: Iterator[Batch], iterations: int) -> dict[str, float]:
    """Seconds per step over a window, main-thread seconds per step in ``next`` and in launching."""
    timed = Timed(batches)
    dev = trainer.device
    synchronize(dev)
    launch = 0.0
    start = time.perf_counter()
    for _ in range(iterations):
        t = time.perf_counter()
        trainer.step(timed)
        launch += time.perf_counter() - t
    synchronize(dev)
    wall = time.perf_counter() - start
    return {"step_s": wall / iterations, "next_s": timed.seconds / iterations,
            "launch_s": (launch - timed.seconds) / iterations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--preset", default=None, help="training preset whose model, data and loader are run (default: "
                        "deeplab-edu bench --mode pipeline's choice: gpu with --device cuda or, without --device, "
                        "where PyTorch sees CUDA; cpu otherwise, whose network trains in minutes on a CPU where "
                        "gpu's would take hours)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: the preset's)")
    parser.add_argument("--iterations", type=int, default=60, help="training steps per timed window")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved windows per feed (medians over them)")
    parser.add_argument("--num-workers", type=int, help="DataLoader workers (default: the engine's choice)")
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's top operators of "
                                                             f"{PROFILE_STEPS} loader-fed steps")
    parser.add_argument("--compile-mode", choices=["none", "default", "reduce-overhead"], default="none",
                        help="torch.compile the model first (reduce-overhead: with CUDA graphs)")
    parser.add_argument("--feeds", default=",".join(list(FEEDS)[:7]),
                        help=f"comma-separated feeds, of: {', '.join(FEEDS)}")
    parser.add_argument("--switch-interval", type=float, default=0.0005,
                        help="seconds: sys.setswitchinterval during the +switch feeds (Python's own default, "
                             "used by every other feed: 0.005)")
    parser.add_argument("--out", default=None, help="record path (default: runs/bench/pipeline_diagnosis_<device>.json)")
    args = parser.parse_args()
    check_out(parser, args.out)
    preset = args.preset or default_preset(args.device)
    modes = [f.strip() for f in args.feeds.split(",") if f.strip()]
    unknown = [f for f in modes if f not in FEEDS]
    if unknown or "step" not in modes:
        parser.error(f"--feeds: {', '.join(unknown) or 'step is missing (the others are compared with it)'}; "
                     f"feeds are {', '.join(FEEDS)}")
    overrides: dict[str, Any] = {"iterations": 10_000, "progress": False, "resume": False, "warmup_iters": 0,
                                 "tensorboard": False}
    if args.device:
        overrides["device"] = args.device
    if args.num_workers is not None:
        overrides["num_workers"] = args.num_workers
    if args.compile_mode != "none":  # the Trainer's compile (with CUDA graphs it marks each step's start)
        overrides.update(compile=True, compile_mode=args.compile_mode)
    try:  # before anything is built: a ConfigError's traceback otherwise
        if args.device:
            resolve_device(args.device)
        cfg = load_config(preset, overrides)
    except ValueError as err:  # ConfigError is one
        parser.error(f"--preset {preset}: {err}" if isinstance(err, ConfigError) else str(err))
    trainer = Trainer(cfg)
    dev = trainer.device
    if trainer.cfg.keep_freed_memory and dev.type == "cpu":  # its steps as fit() trains them
        keep_freed_memory()
    compile_start = time.perf_counter()
    loader = trainer.batches()
    x0, y0 = next(loader)
    synthetic = itertools.repeat(trainer.to_device(x0.clone(), y0.clone()))
    pinned = [next(loader) for _ in range(8)]
    for _ in range(3):
        trainer.train_step(loader)
        trainer.train_step(synthetic)
    warmup_s = time.perf_counter() - compile_start  # with --compile-mode: mostly compiling

    drain_stop = threading.Event()

    def drain() -> None:
        while not drain_stop.is_set():
            next(loader)

    results: dict[str, list[dict[str, float]]] = {}
    compact: Iterator[Batch] = iter(())
    if any(m.startswith("loader-uint8") for m in modes):  # the engine's loader as uint8_batches=True builds it
        compact_set = SeededDataset(build_datasets(replace(trainer.cfg, uint8_batches=True))[0], trainer.cfg.seed)
        compact_loader = train_loader(compact_set, torch.utils.data.RandomSampler(compact_set),
                                      batch_size=trainer.cfg.batch_size, num_workers=trainer.num_workers, device=dev)
        compact = itertools.chain.from_iterable(itertools.repeat(compact_loader))
        for _ in range(2):
            trainer.train_step(compact)
    default_switch = sys.getswitchinterval()
    unpinned = train_loader(trainer.train_set, torch.utils.data.RandomSampler(trainer.train_set),
                            batch_size=trainer.cfg.batch_size, num_workers=trainer.num_workers)  # device None: not pinned
    unpinned_batches = itertools.chain.from_iterable(itertools.repeat(unpinned))
    drain_overrides = {**overrides, "device": "cpu"}
    prefetch = 2 * trainer.num_workers
    # the loader each feed reads (its own or, step+busy, a drained one)
    loaders: dict[str, Iterator[Batch]] = {"loader": loader, "loader+switch": loader, "prefetch": loader,
                                           "step+busy": loader, "unpinned": unpinned_batches,
                                           "loader-uint8": compact, "loader-uint8+switch": compact}
    for mode in interleaved(modes, args.rounds):
        if mode in loaders:
            for _ in range(prefetch):  # what the workers queued meanwhile: steady state, not a full queue
                next(loaders[mode])
        sys.setswitchinterval(args.switch_interval if mode.endswith("+switch") else default_switch)
        if mode == "step":
            r = window(trainer, synthetic, args.iterations)
        elif mode in ("loader", "loader+switch", "loader-uint8", "loader-uint8+switch", "unpinned"):
            r = window(trainer, loaders[mode], args.iterations)
        elif mode == "pinned":
            r = window(trainer, itertools.cycle(pinned), args.iterations)
        elif mode == "step+busy":
            drain_stop.clear()
            thread = threading.Thread(target=drain, daemon=True)
            thread.start()
            r = window(trainer, synthetic, args.iterations)
            drain_stop.set()
            thread.join(timeout=60)
        elif mode == "step+load":
            with loader_load_elsewhere(preset, drain_overrides, trainer.num_workers):
                r = window(trainer, synthetic, args.iterations)
        else:
            pf = DevicePrefetcher(loader, trainer.to_device, dev)
            r = window(trainer, pf, args.iterations)
            pf.close()
        sys.setswitchinterval(default_switch)
        results.setdefault(mode, []).append(r)
        # each window as it ends: a run stopped by its time limit still leaves what it measured in the log
        print(f"{mode}: {trainer.cfg.batch_size / r['step_s']:.1f} images/s  {r}", flush=True)
    batch = trainer.cfg.batch_size
    summary: dict[str, Any] = {}
    for mode, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        summary[mode] = {**med, "images_per_s": batch / med["step_s"], "rounds": rows}
    print(f"{preset} preset on {dev}, {trainer.num_workers} workers, batch {batch}, {args.iterations} steps x "
          f"{args.rounds} rounds (medians)")
    print(markdown_text(diagnosis_rows({"results": {"modes": summary, "batch_size": batch}})))
    profile_table, profile_summary = None, None
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
        with profile(activities=activities) as prof:
            for _ in range(PROFILE_STEPS):
                trainer.step(loader)
            synchronize(dev)
        profile_table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
        print(profile_table)
        profile_summary = summarise_profile(prof, PROFILE_STEPS)
    write_result({"preset": preset, "device": str(dev), "num_workers": trainer.num_workers,
                  "batch_size": batch, "iterations": args.iterations, "compile_mode": args.compile_mode,
                  "switch_interval": args.switch_interval if any(m.endswith("+switch") for m in modes) else None,
                  "warmup_seconds": warmup_s, "modes": summary, "profile": profile_table,
                  "profile_steps": PROFILE_STEPS if profile_table else None, "profile_totals": profile_summary},
                 args.out, f"pipeline_diagnosis_{dev.type}.json", "main-thread split of loader-fed steps")


if __name__ == "__main__":
    main()
