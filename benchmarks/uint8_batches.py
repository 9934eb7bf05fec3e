"""What ``uint8_batches`` changes for the loader's workers on this machine's CPU (issue 11).

With ``TrainConfig.uint8_batches`` the engine's training items are augmented as uint8 image and mask
(``train_transform(..., as_uint8=True)``: the scene rounded to 0-255 first, then scaled, cropped and
flipped by torchvision's uint8 kernels) and leave the workers so, instead of a float32 image and an
int64 mask, and the Trainer normalises them on the device: 5x fewer bytes per batch. On one H200 the loader-fed
step with CUDA graphs ran 16-33 % faster with them in each of three rounds
(``results/pipeline_diagnosis_cuda_graphs_uint8.json``, ``benchmarks/README.md``, "On one GPU").
This times the engine's training loader alone (``deeplab_edu.engine.bench.loader.loader_throughput``:
the ``gpu`` preset's 256 px hard scenes with DeepLab's augmentation, batches of 16, one worker by
default), float and uint8 items in interleaved rounds, and prints the speed-up with its 95 %
interval, the workers' CPU time per scene, the bytes per batch and, on one thread in this process,
the CPU time per item of rendering a scene and of the float32 and uint8 transforms; it writes a record
(``runs/bench/uint8_batches_cpu.json`` unless ``--out`` names one)::

    python benchmarks/uint8_batches.py --out benchmarks/results/uint8_batches_cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whichever one the environment installed

from deeplab_edu.engine.bench.loader import loader_throughput  # noqa: E402
from deeplab_edu.engine.bench.timing import (DefaultsHelpFormatter, check_out, compare_speeds, interleaved,  # noqa: E402
                                             interval_text, load_average, write_result)


def batch_bytes(size: int, batch: int, uint8_batches: bool) -> int:
    """Bytes of one training batch of ``batch`` images of ``size`` x ``size`` pixels and their masks."""
    pixels = batch * size * size
    return pixels * (3 + 1) if uint8_batches else pixels * (3 * 4 + 8)


def item_times(size: int, items: int = 40) -> dict[str, float]:
    """Milliseconds of CPU time per item on one thread: rendering a hard scene of ``size`` pixels, and
    DeepLab's training transform (random scale 0.5-2, crop ``size``, flip) on it as float32 (normalised)
    and as uint8 (``as_uint8``), each over the same ``items`` scenes and random draws, in one process."""
    import time

    import torch
    from threadpoolctl import threadpool_limits

    from deeplab_edu.data.procedural import ProceduralScenes
    from deeplab_edu.data.transforms import train_transform

    def cpu_ms(fn: Any, n: int) -> float:
        fn(0)
        start = time.process_time()
        for i in range(n):
            fn(i)
        return 1e3 * (time.process_time() - start) / n

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            scenes = ProceduralScenes(length=items, size=size, difficulty="hard")
            pairs = [scenes[i] for i in range(items)]
            times = {"render": cpu_ms(lambda i: scenes[i], items)}
            for name, kwargs in (("float32 transform", {}), ("uint8 transform", {"normalize": False, "as_uint8": True})):
                transform = train_transform(size, **kwargs)
                torch.manual_seed(0)
                times[name] = cpu_ms(lambda i: transform(*pairs[i]), items)
    finally:
        torch.set_num_threads(old)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, help="loader workers")
    parser.add_argument("--size", type=int, default=256, help="scene side in pixels (the gpu preset's 256)")
    parser.add_argument("--batch", type=int, default=16, help="scenes per batch (the gpu preset's 16)")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per window")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds (6 at least give an interval)")
    parser.add_argument("--out", default=None, help="record path (default: runs/bench/uint8_batches_cpu.json)")
    args = parser.parse_args()
    check_out(parser, args.out)
    load_before = load_average()
    runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for compact in interleaved([False, True], args.rounds):
        run = loader_throughput(args.workers, size=args.size, batch=args.batch, batches=args.batches,
                                uint8_batches=compact)
        runs[compact].append(run)
        print(f"{'uint8' if compact else 'float'}: {run['scenes_per_s']:.1f} scenes/s, "
              f"{1e3 * run['cpu_s_per_scene']:.2f} CPU ms/scene", flush=True)
    speed = compare_speeds([r["seconds"] for r in runs[False]], [r["seconds"] for r in runs[True]])
    cpu = {c: statistics.median(r["cpu_s_per_scene"] for r in rs) for c, rs in runs.items()}
    sizes = {c: batch_bytes(args.size, args.batch, c) for c in (False, True)}
    per_item = item_times(args.size)
    print(f"engine training loader, {args.workers} worker(s), {args.size} px hard scenes, batch {args.batch}, "
          f"{args.batches} batches x {args.rounds} rounds; load average before {load_before}")
    print(f"  uint8 / float items: x{speed.speedup:.2f} the scenes/s {interval_text(speed.interval)} ({speed.verdict}); "
          f"CPU ms per scene {1e3 * cpu[False]:.2f} -> {1e3 * cpu[True]:.2f}; "
          f"{sizes[False] / 2**20:.1f} -> {sizes[True] / 2**20:.1f} MiB per batch")
    print("  CPU ms per item, one thread, in this process: " + ", ".join(f"{k} {v:.2f}" for k, v in per_item.items()))
    write_result({"workers": args.workers, "size": args.size, "batch": args.batch, "batches": args.batches,
                  "rounds": args.rounds, "load_average_before": load_before,
                  "scenes_per_s": {"float": [r["scenes_per_s"] for r in runs[False]],
                                   "uint8": [r["scenes_per_s"] for r in runs[True]]},
                  "cpu_s_per_scene": {"float": cpu[False], "uint8": cpu[True]},
                  "speedup": speed.speedup, "speedup_interval": speed.interval, "p_value": speed.p_value,
                  "verdict": speed.verdict, "batch_bytes": {"float": sizes[False], "uint8": sizes[True]},
                  "item_cpu_ms": per_item},
                 args.out, "uint8_batches_cpu.json", "the engine's training loader, float against uint8 items")


if __name__ == "__main__":
    main()
