"""How long an optimiser step takes with PyTorch's fused kernels and with its default ("foreach") ones.

The engine builds SGD and AdamW with ``fused=True`` wherever the kernels apply
(``deeplab_edu.engine.schedule.build_optimizer``). This times ``optimizer.step()`` alone, both
implementations interleaved in one process, on the parameters of DeepLabv3+ ResNet-50 (the
``gpu`` preset's network, 26.7 M parameters) and of the ``cpu`` preset's tiny_resnet network
(4.7 M), with random gradients; the engine's own SGD (momentum 0.9) and AdamW over its parameter groups
(``build_optimizer(..., implementation=...)``), weight decay 1e-4 as the presets use. Median wall time of ``--steps`` steps each. Prints the ratios with their 95 % intervals and writes a record
(``runs/bench/optimizer_<device>.json`` unless ``--out`` names one)::

    python benchmarks/optimizer_step.py                 # this machine's CPU, one torch thread
    python benchmarks/optimizer_step.py --threads 2
    python benchmarks/optimizer_step.py --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whichever one the environment installed

from deeplab_edu.config import resolve_device  # noqa: E402
from deeplab_edu.engine.bench.timing import (DefaultsHelpFormatter, check_out, compare_speeds, interleaved, timed_steps,  # noqa: E402
                                             torch_threads, write_result)
from deeplab_edu.engine.schedule import build_optimizer, param_groups  # noqa: E402
from deeplab_edu.models import build_model  # noqa: E402

NETWORKS = {"deeplabv3plus resnet50": "resnet50", "deeplabv3plus tiny_resnet (cpu preset)": "tiny_resnet"}


def measure(device: torch.device, steps: int, networks: dict[str, str] | None = None) -> dict[str, Any]:
    """Median fused and foreach step times (ms) per network (label -> backbone) and optimiser."""
    results: dict[str, Any] = {}
    for label, backbone in (networks or NETWORKS).items():
        torch.manual_seed(0)
        model = build_model("deeplabv3plus", backbone=backbone, num_classes=21).to(device)
        params = list(model.parameters())
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        for name in ("sgd", "adamw"):  # the engine's optimisers, over the engine's parameter groups
            opts = {impl: build_optimizer(name, param_groups(model, lr=1e-4, weight_decay=1e-4), lr=1e-4, implementation=impl)
                    for impl in ("fused", "foreach")}
            for opt in opts.values():  # warm-up: creates the state (momentum, moments)
                for _ in range(3):
                    opt.step()
            times: dict[str, list[float]] = {impl: [] for impl in opts}
            for impl in interleaved(("fused", "foreach"), steps):
                times[impl].append(timed_steps(opts[impl].step, 1, device))
            med = {impl: statistics.median(v) for impl, v in times.items()}
            fused = compare_speeds(times["foreach"], times["fused"])  # paired steps, as the bench
            results[f"{label} / {name}"] = {
                "parameters": sum(p.numel() for p in params), "fused_ms": 1e3 * med["fused"],
                "foreach_ms": 1e3 * med["foreach"], "foreach_over_fused": med["foreach"] / med["fused"],
                "foreach_over_fused_interval": fused.interval, "times_s": times}
            print(f"{label:40s} {name:5s}: fused {1e3 * med['fused']:7.2f} ms, foreach {1e3 * med['foreach']:7.2f} ms"
                  f" per step: foreach / fused {fused}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per implementation")
    parser.add_argument("--out", default=None, help="record path (default: runs/bench/optimizer_<device>.json)")
    args = parser.parse_args()
    check_out(parser, args.out)
    try:  # before the models are built: "--device cuda" on a machine without one ended in torch's traceback
        device = resolve_device(args.device)
    except ValueError as err:
        parser.error(str(err))
    with torch_threads(args.threads if device.type == "cpu" else None):
        results = {"device": str(device), "torch_threads": torch.get_num_threads(), "steps": args.steps,
                   "networks": measure(device, args.steps)}
    write_result(results, args.out, f"optimizer_{device.type}.json", "medians of interleaved steps")


if __name__ == "__main__":
    main()
