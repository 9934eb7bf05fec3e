"""What the depthwise recomputation costs per training step, and the page faults of a step.

Times training steps of a DeepLabv3+ with the separable convs' depthwise recomputation on and off
(``deeplab_edu.models.aspp.set_recompute_depthwise``), interleaved in one process, one torch
thread, process CPU time, median. Default: the ``cpu`` preset's network and batch (tiny_resnet,
96 px crops, batch 16, fitted rates (1, 2, 3), AdamW). Prints; writes no record::

    python benchmarks/recompute_cost.py                 # cpu preset's network
    python benchmarks/recompute_cost.py --backbone resnet50 --size 128 --batch 2 --rates 12 24 36
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn

from deeplab_edu.engine.bench.timing import interleaved, minor_faults, timed
from deeplab_edu.models import build_model
from deeplab_edu.models.aspp import set_recompute_depthwise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="tiny_resnet")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rates", type=int, nargs=3, default=(1, 2, 3))
    parser.add_argument("--steps", type=int, default=12, help="timed steps per setting")
    args = parser.parse_args()
    torch.set_num_threads(1)
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
    print(f"recompute / plain step time: x{statistics.median(times[True]) / statistics.median(times[False]):.3f}")


if __name__ == "__main__":
    main()
