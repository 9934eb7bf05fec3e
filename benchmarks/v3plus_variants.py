"""DeepLabv3+ against smp's with and without the recomputed depthwise halves (issue 11, item 3).

Our separable convolutions recompute their depthwise half in the backward pass
(``models.aspp._RecomputedDepthwise``), which made the activations held for backward no larger than
smp's. This times three models in interleaved rounds at one setting: ours as built, ours with
``set_recompute_depthwise(model, False)``, and ``segmentation_models_pytorch.DeepLabV3Plus``.

    python benchmarks/v3plus_variants.py --device cuda --size 512 --batch 16
    python benchmarks/v3plus_variants.py --show benchmarks/results/v3plus_variants_cuda.json  # its ratios
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whichever one the environment installed

from deeplab_edu.config import resolve_device  # noqa: E402
from deeplab_edu.engine.bench.pairs import build_pair, check_input, measure_models  # noqa: E402
from deeplab_edu.engine.bench.timing import DefaultsHelpFormatter, check_out, compare_speeds, write_result  # noqa: E402
from deeplab_edu.models.aspp import set_recompute_depthwise  # noqa: E402


def summarise(settings: dict) -> list[str]:
    """Per setting: each model's training images/s and peak memory, and the paired ratios (with their
    bootstrap 95 % intervals over the interleaved rounds) of ours without recomputation against ours
    and against smp, and of ours against smp."""
    lines = []
    for label, rows in settings.items():
        ours, plain, smp = rows
        lines.append(label)
        for r in rows:
            lines.append(f"  {r['model']:50s} train {r['train_images_per_s']:7.1f} img/s  peak {r['train_peak_mib']:8.1f} MiB")
        for a, b, what in ((plain, ours, "no recompute / recompute"), (plain, smp, "no recompute / smp"),
                           (ours, smp, "recompute / smp")):
            lines.append(f"  training {what}: {compare_speeds(b['train_times_s'], a['train_times_s'])}, "
                         f"peak memory x{a['train_peak_mib'] / b['train_peak_mib']:.2f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--size", type=int, default=128, help="input side in pixels (a multiple of 16: smp needs it)")
    parser.add_argument("--batch", type=int, default=2, help="images per step (at least 2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--out", default=None, help="record path (default: runs/bench/v3plus_variants_<device>.json)")
    parser.add_argument("--show", help="print the ratios of a record this script wrote, and exit")
    args = parser.parse_args()
    if args.show:
        from deeplab_edu.records import load_record

        print("\n".join(summarise(load_record(args.show)["results"]["settings"])))
        return
    check_out(parser, args.out)
    try:  # before the models are built: smp's, BatchNorm's or torch's traceback otherwise
        check_input(args.batch, args.size, ("v3plus",))
        dev = resolve_device(args.device)
    except ValueError as err:
        parser.error(str(err))
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, device=dev)
    y = torch.randint(0, 21, (args.batch, args.size, args.size), device=dev)
    (on, om), (pn, pm) = build_pair("v3plus")
    (_, plain), _ = build_pair("v3plus")
    set_recompute_depthwise(plain, False)
    models = [(on, om.to(dev)), (on + " (no recompute)", plain.to(dev)), (pn, pm.to(dev))]
    results = {}
    for label, cl, amp in (("fp32", False, False), ("bf16 + channels_last", True, True)):
        rows = measure_models(models, x, y, channels_last=cl, amp=amp, repeats=args.repeats, warmup=2)
        results[label] = rows
    print("\n".join(summarise(results)))
    write_result({"device": str(dev), "input": list(x.shape), "settings": results}, args.out,
                 f"v3plus_variants_{dev.type}.json", "medians of interleaved rounds; one run")


if __name__ == "__main__":
    main()
