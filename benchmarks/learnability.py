"""Learnability table: which scenes, model, optimiser and resolution a laptop CPU learns in minutes.

For every candidate (scene difficulty x model x optimiser x resolution) the engine trains one run
whose poly schedule is sized to the longest budget (6 minutes by default: the iteration count comes
from a short timed calibration), and evaluates snapshots of that run on the same validation scenes
after 1, 3 and 6 minutes of *training* wall-clock time (evaluation time is not counted). The record
(``benchmarks/results/learnability_cpu.json``) holds, per candidate and budget, the iterations
reached, the validation mIoU and the per-class IoU, with the command, the commit, the hardware and
the machine's load average before and after. Chapter 08 shows the table.

    python benchmarks/learnability.py                       # every candidate, 1/3/6 minutes
    python benchmarks/learnability.py --only easy-v3plus-tiny-adamw --minutes 1 3
    python benchmarks/learnability.py --list

The snapshots at 1 and 3 minutes are points of the 6-minute run (its learning rate has not decayed
yet), not runs scheduled for 1 or 3 minutes: a run planned for 3 minutes would end a little higher.
The timings need a quiet machine: other jobs on the cores slow every run, and torch's threads
suffer most when the cores are shared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deeplab_edu.engine.allocator import keep_freed_memory  # noqa: E402
from deeplab_edu.engine.bench.timing import check_out  # noqa: E402
from deeplab_edu.engine.config import load_config  # noqa: E402
from deeplab_edu.engine.trainer import Trainer  # noqa: E402
from deeplab_edu.records import RESULTS_DIR, write_record  # noqa: E402

#: name -> (what it tests, overrides of the ``cpu`` preset, the recipe every candidate starts from).
CANDIDATES: dict[str, tuple[str, dict[str, Any]]] = {
    "easy-v3plus-tiny-adamw": ("the cpu preset", {}),
    "easy-v3-tiny-adamw": ("no decoder", {"model": "deeplabv3"}),
    "easy-v3plus-tiny-sgd": ("the papers' optimiser", {"optimizer": "sgd", "lr": 0.05}),
    "medium-v3plus-tiny-adamw": ("shape separates disc/ring and box/triangle", {"difficulty": "medium"}),
    "hard-v3plus-tiny-adamw": ("the original scenes", {"difficulty": "hard"}),
    "easy-v3plus-mobilenet-adamw": ("MobileNetV3-Large backbone", {"backbone": "mobilenet_v3_large"}),
    "hard-v3plus-mobilenet-sgd-64px": ("the previous cpu preset", {
        "difficulty": "hard", "backbone": "mobilenet_v3_large", "optimizer": "sgd", "lr": 0.1,
        "image_size": 64, "crop_size": 64, "atrous_rates": "paper"}),
    "easy-v3plus-tiny-adamw-64px": ("lower resolution", {"image_size": 64, "crop_size": 48}),
    "easy-v3plus-tiny-adamw-192px": ("higher resolution", {"image_size": 192, "crop_size": 144}),
}


def _config(name: str, out_dir: Path, val_length: int) -> Any:
    overrides = {**CANDIDATES[name][1], "out_dir": str(out_dir), "val_length": val_length, "progress": False,
                 "iterations": 100_000, "warmup_iters": 0}
    return load_config("cpu", overrides)


def run_candidate(name: str, minutes: list[float], val_length: int, work: Path) -> dict[str, Any]:
    """Train candidate ``name`` for ``max(minutes)`` minutes; evaluate at each budget."""
    probe = _config(name, work / f"{name}-probe", val_length)
    trainer = Trainer(probe)
    if probe.keep_freed_memory and trainer.device.type == "cpu":  # its steps as fit() trains them (a review)
        keep_freed_memory()
    batches = trainer.batches()
    for _ in range(3):  # warm-up: allocator, first loader batches
        trainer.train_step(batches)
    t0 = time.perf_counter()
    for _ in range(8):
        trainer.train_step(batches)
    seconds_per_it = (time.perf_counter() - t0) / 8
    del trainer, batches

    budget = 60 * max(minutes)
    iterations = max(10, int(budget / seconds_per_it))
    preset_warmup = load_config("cpu").warmup_iters
    cfg = _config(name, work / name, val_length)
    cfg.iterations, cfg.warmup_iters = iterations, min(preset_warmup, iterations // 10)
    trainer = Trainer(cfg)
    batches = trainer.batches()
    marks = sorted(60 * m for m in minutes)
    trained, rows = 0.0, []
    while marks and trainer.iteration < cfg.iterations:
        t = time.perf_counter()
        trainer.train_step(batches)
        trainer.iteration += 1
        trained += time.perf_counter() - t
        if trained >= marks[0] or trainer.iteration == cfg.iterations:
            m = trainer.evaluate()
            rows.append({"minutes": round(marks[0] / 60, 2), "iterations": trainer.iteration,
                         "train_seconds": round(trained, 1), "miou": m["miou"], "iou": m["iou"]})
            print(f"{name}: {trained / 60:.1f} min, {trainer.iteration} iterations, val mIoU {100 * m['miou']:.1f}%",
                  flush=True)
            marks.pop(0)
    return {"what": CANDIDATES[name][0], "overrides": CANDIDATES[name][1], "config": cfg.to_dict(),
            "calibrated_seconds_per_iteration": round(seconds_per_it, 4), "planned_iterations": iterations,
            "snapshots": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", nargs="+", type=float, default=[1, 3, 6],
                   help="training budgets in minutes, each candidate evaluated after each (default: 1 3 6)")
    p.add_argument("--only", nargs="+", choices=sorted(CANDIDATES), help="run these candidates only")
    p.add_argument("--val-length", type=int, default=200, help="validation scenes per evaluation (default: 200)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all cores)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "learnability_cpu.json", help="record path (default: %(default)s)")
    p.add_argument("--list", action="store_true", help="print the candidates and exit")
    args = p.parse_args(argv)
    if not args.list:
        check_out(p, args.out)
    if args.list:
        for name, (what, overrides) in CANDIDATES.items():
            print(f"{name:34s} {what}: {overrides}")
        return 0
    torch.set_num_threads(args.threads)
    names = args.only or list(CANDIDATES)
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="learnability_"))
    results: dict[str, Any] = {}
    start = time.time()
    try:
        for name in names:
            results[name] = run_candidate(name, args.minutes, args.val_length, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_record(args.out, {"minutes": args.minutes, "val_scenes": args.val_length, "candidates": results},
                 extra={"torch_threads": args.threads, "load_average_before": load_before,
                        "load_average_after": os.getloadavg(), "wall_minutes": round((time.time() - start) / 60, 1)})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
