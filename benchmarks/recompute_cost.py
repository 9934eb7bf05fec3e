"""What the depthwise recomputation costs per training step, and the page faults of a step.

Times training steps of a DeepLabv3+ with the separable convs' depthwise recomputation on and off
(``deeplab_edu.models.aspp.set_recompute_depthwise``), interleaved in one process, one torch
thread, process CPU time, median. Default: the ``cpu`` preset's network and batch (tiny_resnet,
96 px crops, batch 16, fitted rates (1, 2, 3), AdamW). Prints the ratio with its paired bootstrap
interval over the interleaved steps and writes a record (``runs/bench/recompute_cost_cpu.json`` unless
``--out`` names one)::

    python benchmarks/recompute_cost.py --out benchmarks/results/recompute_cost_cpu.json  # recorded here
    python benchmarks/recompute_cost.py --backbone resnet50 --size 128 --batch 2 --rates 12 24 36
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whichever one the environment installed

from deeplab_edu.engine.bench.timing import (DefaultsHelpFormatter, check_out, compare_speeds, interleaved, load_average,  # noqa: E402
                                             minor_faults, timed, write_result)
from deeplab_edu.models import build_model  # noqa: E402
from deeplab_edu.models.aspp import set_recompute_depthwise  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--backbone", default="tiny_resnet", help="DeepLabv3+ backbone")
    parser.add_argument("--size", type=int, default=96, help="input side in pixels")
    parser.add_argument("--batch", type=int, default=16, help="images per step")
    parser.add_argument("--rates", type=int, nargs=3, default=(1, 2, 3), help="the ASPP's three atrous rates")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per setting")
    parser.add_argument("--out", default=None, help="record path (default: runs/bench/recompute_cost_cpu.json)")
    args = parser.parse_args()
    check_out(parser, args.out)
    torch.set_num_threads(1)
    load_before = load_average()
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", backbone=args.backbone, num_classes=12, output_stride=16,
                        atrous_rates=tuple(args.rates)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(args.batch, 3, args.size, args.size), torch.randint(0, 12, (args.batch, args.size, args.size))

    def step() -> None:
        nn.functional.cross_entropy(model(x)["out"], y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    times: dict[bool, list[float]] = {True: [], False: []}
    faults: dict[bool, list[int]] = {True: [], False: []}
    for on in (True, False):  # warm-up
        set_recompute_depthwise(model, on)
        step()
        step()
    for on in interleaved((True, False), args.steps):
        set_recompute_depthwise(model, on)
        before = minor_faults() or 0
        times[on].append(timed(step, x.device)[1])  # process CPU time
        faults[on].append((minor_faults() or 0) - before)
    for on in (True, False):
        print(f"{'recompute' if on else 'plain    '}: {1000 * statistics.median(times[on]):.1f} ms/step, "
              f"{statistics.median(faults[on]):.0f} minor page faults/step")
    plain = compare_speeds(times[True], times[False])  # paired by round: recompute over plain
    print(f"recompute / plain step time (above 1: plain is faster): {plain}")
    write_result({"backbone": args.backbone, "size": args.size, "batch": args.batch, "atrous_rates": list(args.rates),
                  "steps": args.steps, "torch_threads": torch.get_num_threads(), "load_average_before": load_before,
                  "ms_per_step": {k: 1000 * statistics.median(times[v]) for k, v in (("recompute", True),
                                                                                     ("plain", False))},
                  "minor_faults_per_step": {k: statistics.median(faults[v]) for k, v in (("recompute", True),
                                                                                          ("plain", False))},
                  "recompute_over_plain": plain.speedup, "ratio_interval": plain.interval,
                  "seconds": {"recompute": times[True], "plain": times[False]}},
                 args.out, "recompute_cost_cpu.json", "process CPU time of interleaved steps, medians")


if __name__ == "__main__":
    main()
