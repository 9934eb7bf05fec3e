"""How much faster a training step is in the channels_last (NHWC) memory format than in PyTorch's
default contiguous (NCHW) one, for a preset's network, through the engine's own training step.

Two :class:`~deeplab_edu.engine.trainer.Trainer` objects are built from the same preset and seed
(the same initial weights), one with ``channels_last: false`` and one with ``true``; each trains
on one batch of its own loader, kept on the device, so only the step is timed (forward, loss,
backward, the fused optimiser). Windows of ``--iterations`` steps alternate between the two;
medians. Prints the ratio with its 95 % interval and verdict (faster / slower / parity:
:func:`~deeplab_edu.engine.bench.timing.speed_verdict`) and writes a record (``runs/bench/memory_format_<device>.json`` unless ``--out`` names one)::

    python benchmarks/memory_format.py                       # the cpu preset, 2 torch threads
    python benchmarks/memory_format.py --preset gpu --device cuda

On the CPU, channels_last sends convolutions to oneDNN's NHWC kernels and batch norm and max
pooling to PyTorch's vectorised NHWC loops (batch norm's training statistics over an NCHW tensor
are computed one channel at a time); the ``cpu`` preset turns it on because of what this measures.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whichever one the environment installed

from deeplab_edu.config import resolve_device  # noqa: E402
from deeplab_edu.engine.allocator import keep_freed_memory  # noqa: E402
from deeplab_edu.engine.bench.timing import (DefaultsHelpFormatter, check_out, compare_speeds, interleaved, load_average,  # noqa: E402
                                             timed_steps, torch_threads, write_result)
from deeplab_edu.engine.config import ConfigError, load_config  # noqa: E402
from deeplab_edu.engine.trainer import Trainer  # noqa: E402

FORMATS = ("contiguous", "channels_last")


def measure(preset: str, *, device: str | None = None, iterations: int = 5, rounds: int = 4,
            warmup: int = 2) -> dict[str, Any]:
    """Median seconds per training step of ``preset``'s network in each memory format, and their ratio."""
    trainers, batches = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in FORMATS:
            overrides: dict[str, Any] = {"channels_last": fmt == "channels_last", "progress": False, "num_workers": 0,
                                         "out_dir": f"{tmp}/{fmt}", "iterations": 10_000, "warmup_iters": 0}
            if device is not None:
                overrides["device"] = device
            trainers[fmt] = t = Trainer(load_config(preset, overrides))
            x, y = next(t.batches())
            batches[fmt] = itertools.repeat(t.to_device(x, y))
    dev = trainers[FORMATS[0]].device
    if trainers[FORMATS[0]].cfg.keep_freed_memory and dev.type == "cpu":  # their steps as fit() trains them
        keep_freed_memory()
    for fmt in FORMATS:
        for _ in range(warmup):
            trainers[fmt].train_step(batches[fmt])  # reads the loss: a diverging warm-up fails here
    seconds: dict[str, list[float]] = {fmt: [] for fmt in FORMATS}
    load_before = load_average()
    for fmt in interleaved(FORMATS, rounds):
        seconds[fmt].append(timed_steps(lambda: trainers[fmt].step(batches[fmt]), iterations, dev))
    med = {fmt: statistics.median(v) for fmt, v in seconds.items()}
    cfg = trainers[FORMATS[0]].cfg
    channels_last = compare_speeds(seconds["contiguous"], seconds["channels_last"])  # paired rounds, as the bench
    results = {"preset": preset, "device": str(dev), "model": cfg.model, "backbone": cfg.backbone,
               "crop_size": cfg.crop_size, "batch_size": cfg.batch_size, "amp": cfg.amp, "iterations": iterations,
               "rounds": rounds, "ms_per_step": {fmt: 1e3 * v for fmt, v in med.items()},
               "contiguous_over_channels_last": channels_last.speedup,
               "contiguous_over_channels_last_interval": channels_last.interval,
               "seconds_per_step": seconds, "torch_threads": torch.get_num_threads(),
               "load_average_before": load_before, "load_average_after": load_average()}
    print(f"{preset} ({cfg.model} {cfg.backbone}, crop {cfg.crop_size}, batch {cfg.batch_size}, {dev}, "
          f"{torch.get_num_threads()} threads): contiguous {1e3 * med['contiguous']:.1f} ms, channels_last "
          f"{1e3 * med['channels_last']:.1f} ms per training step: contiguous / channels_last "
          f"{channels_last} (load average {load_before})")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--preset", default="cpu", help="training preset whose model and crop are timed")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: the preset's)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads on the CPU (the classroom's 2)")
    parser.add_argument("--iterations", type=int, default=5, help="steps per timed window")
    parser.add_argument("--rounds", type=int, default=6, help="windows per memory format (alternating; 6: the fewest for an interval)")
    parser.add_argument("--out", default=None, help="record path (default: runs/bench/memory_format_<device>.json)")
    args = parser.parse_args()
    check_out(parser, args.out)
    try:  # before the trainers are built: a ConfigError's traceback otherwise
        if args.device is not None:
            resolve_device(args.device)
        cfg = load_config(args.preset, None if args.device is None else {"device": args.device})
    except ValueError as err:  # ConfigError is one
        parser.error(f"--preset {args.preset}: {err}" if isinstance(err, ConfigError) else str(err))
    on_cpu = (cfg.device or "cpu").startswith("cpu")
    with torch_threads(args.threads if on_cpu else None):
        results = measure(args.preset, device=args.device, iterations=args.iterations, rounds=args.rounds)
    write_result(results, args.out, f"memory_format_{results['device'].split(':')[0]}.json",
           "medians of alternating windows of training steps")


if __name__ == "__main__":
    main()
