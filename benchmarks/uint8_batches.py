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
interval, the workers' CPU time per scene and the bytes per batch; it writes a record
(``runs/bench/uint8_batches_cpu.json`` unless ``--out`` names one)::

    python benchmarks/uint8_batches.py --out benchmarks/results/uint8_batches_cpu.json
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from deeplab_edu.engine.bench.loader import loader_throughput
from deeplab_edu.engine.bench.timing import compare_speeds, interleaved, interval_text, load_average, write_result


def batch_bytes(size: int, batch: int, uint8_batches: bool) -> int:
    """Bytes of one training batch of ``batch`` images of ``size`` x ``size`` pixels and their masks."""
    pixels = batch * size * size
    return pixels * (3 + 1) if uint8_batches else pixels * (3 * 4 + 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="loader workers (default 1)")
    parser.add_argument("--size", type=int, default=256, help="scene side in pixels (the gpu preset's 256)")
    parser.add_argument("--batch", type=int, default=16, help="scenes per batch (the gpu preset's 16)")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per window")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds (6 at least give an interval)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
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
    print(f"engine training loader, {args.workers} worker(s), {args.size} px hard scenes, batch {args.batch}, "
          f"{args.batches} batches x {args.rounds} rounds; load average before {load_before}")
    print(f"  uint8 / float items: x{speed.speedup:.2f} the scenes/s {interval_text(speed.interval)} ({speed.verdict}); "
          f"CPU ms per scene {1e3 * cpu[False]:.2f} -> {1e3 * cpu[True]:.2f}; "
          f"{sizes[False] / 2**20:.1f} -> {sizes[True] / 2**20:.1f} MiB per batch")
    write_result({"workers": args.workers, "size": args.size, "batch": args.batch, "batches": args.batches,
                  "rounds": args.rounds, "load_average_before": load_before,
                  "scenes_per_s": {"float": [r["scenes_per_s"] for r in runs[False]],
                                   "uint8": [r["scenes_per_s"] for r in runs[True]]},
                  "cpu_s_per_scene": {"float": cpu[False], "uint8": cpu[True]},
                  "speedup": speed.speedup, "speedup_interval": speed.interval, "p_value": speed.p_value,
                  "verdict": speed.verdict, "batch_bytes": {"float": sizes[False], "uint8": sizes[True]}},
                 args.out, "uint8_batches_cpu.json", "the engine's training loader, float against uint8 items")


if __name__ == "__main__":
    main()
