"""Median-frequency class weights on CamVid: the ``camvid_cpu`` preset with and without, over seeds.

Chapter 11's CamVid run finds the large classes (sky, road) and hardly any of the thin or rare ones
(poles, signs, bicyclists). SegNet trained CamVid with median-frequency balancing (Eigen & Fergus
2015); ``class_weights: median_frequency`` does the same here. This script trains the preset both
ways for each seed (the same seed: the same initialisation and data order) and records, per seed
and arm, the final validation mIoU and per-class IoU, then each per-seed difference (weighted minus
plain) with its Student's t interval over the seeds (:func:`deeplab_edu.findings.seed_interval`):
a difference is a finding only when its interval excludes zero.

    python benchmarks/class_weights.py                 # seeds 0 1 2, about 10 minutes a seed on 2 cores
    python benchmarks/class_weights.py --seeds 0 --iterations 20 --out /tmp/cw.json   # a quick look
    python benchmarks/class_weights.py --seeds 3 4 5 --add-to runs/bench/class_weights_camvid_cpu.json

``--add-to`` trains only the new seeds and writes the record again with every seed's runs (each
run names the commit it was trained at) and the comparison over all of them.

Needs a CamVid copy (``DEEPLAB_EDU_CAMVID`` or ``../shared/data/camvid``). The record goes to
``runs/bench/class_weights_camvid_cpu.json`` unless ``--out`` names one; the committed one, which chapter 11
reads, is ``benchmarks/results/class_weights_camvid_cpu.json`` (``benchmarks/README.md`` gives the commands
that made it, each with that ``--out``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deeplab_edu.data.classes import CAMVID  # noqa: E402
from deeplab_edu.engine.bench.timing import DEFAULT_OUT_DIR, check_out  # noqa: E402
from deeplab_edu.engine.config import load_config  # noqa: E402
from deeplab_edu.engine.trainer import Trainer  # noqa: E402
from deeplab_edu.findings import seed_interval  # noqa: E402
from deeplab_edu.records import code_version, load_record, write_record  # noqa: E402

ARMS = ("none", "median_frequency")


def train_arm(seed: int, class_weights: str, work: Path, iterations: int | None) -> dict[str, Any]:
    """One ``camvid_cpu`` run; its final validation mIoU, per-class IoU and seconds."""
    overrides: dict[str, Any] = {"seed": seed, "class_weights": class_weights, "progress": False,
                                 "out_dir": str(work / f"{class_weights}-seed{seed}"), "keep_last": 1}
    if iterations is not None:
        overrides |= {"iterations": iterations, "eval_every": iterations, "ckpt_every": iterations,
                      "warmup_iters": min(20, iterations // 2)}
    trainer = Trainer(load_config("camvid_cpu", overrides))
    started = time.perf_counter()
    final = trainer.fit()["final"]
    seconds = time.perf_counter() - started
    weights = None if trainer.class_weights is None else [round(float(w), 4) for w in trainer.class_weights]
    version = code_version()
    print(f"seed {seed}, class_weights {class_weights}: val mIoU {100 * final['miou']:.1f} % in {seconds:.0f} s",
          flush=True)
    return {"miou": final["miou"], "iou": final["iou"], "seconds": round(seconds, 1), "class_weights": weights,
            "git_commit": version.get("git_commit"), "git_dirty": version.get("git_dirty")}


def compare(runs: dict[str, dict[int, dict[str, Any]]], seeds: list[int]) -> dict[str, Any]:
    """Per-seed differences (median_frequency minus none) of mIoU and each class's IoU, with t intervals."""
    def differences(value: Any) -> list[float]:
        return [value(runs["median_frequency"][s]) - value(runs["none"][s]) for s in seeds]

    rows = {"mIoU": differences(lambda r: r["miou"])}
    rows |= {name: differences(lambda r, c=c: r["iou"][c]) for c, name in enumerate(CAMVID.class_names)}
    out: dict[str, Any] = {}
    for name, diffs in rows.items():
        entry: dict[str, Any] = {"differences": [round(d, 4) for d in diffs], "mean": round(sum(diffs) / len(diffs), 4)}
        if len(diffs) >= 2:
            low, high = seed_interval(diffs)
            entry |= {"interval_95": [round(low, 4), round(high, 4)], "excludes_zero": low > 0 or high < 0}
        out[name] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds, each trained with and without the weights (default: 0 1 2)")
    parser.add_argument("--iterations", type=int, default=None, help="override the preset's (a quick look)")
    parser.add_argument("--out", default=str(DEFAULT_OUT_DIR / "class_weights_camvid_cpu.json"),
                        help="record path (default: %(default)s; the committed record, which chapter 11 reads, is "
                             "benchmarks/results/class_weights_camvid_cpu.json)")
    parser.add_argument("--add-to", help="a record of this script: keep its runs, train only --seeds it lacks, "
                                         "and write the record with all of them to --out")
    args = parser.parse_args(argv)
    check_out(parser, args.out)
    runs: dict[str, dict[int, dict[str, Any]]] = {arm: {} for arm in ARMS}
    if args.add_to:
        earlier = load_record(args.add_to)
        if earlier["results"].get("preset") != "camvid_cpu" or earlier["extra"].get("iterations_override") != args.iterations:
            raise SystemExit(f"--add-to {args.add_to}: another preset or --iterations than this command's")
        commit = earlier["code_version"].get("git_commit")
        for arm in ARMS:
            for seed, run in earlier["results"]["runs"][arm].items():
                runs[arm][int(seed)] = {"git_commit": commit, "git_dirty": earlier["code_version"].get("git_dirty"),
                                        **run}
        args.seeds = sorted(set(args.seeds) - set(runs["none"]))
    with tempfile.TemporaryDirectory(prefix="class-weights-") as tmp:
        for seed in args.seeds:  # both arms of a seed back to back: the machine's state alike for the pair
            for arm in ARMS:
                runs[arm][seed] = train_arm(seed, arm, Path(tmp), args.iterations)
    seeds = sorted(runs["none"])
    comparison = compare(runs, seeds)
    for name, entry in comparison.items():
        interval = entry.get("interval_95")
        shown = f" (95 % over seeds: {100 * interval[0]:+.1f} to {100 * interval[1]:+.1f})" if interval else ""
        print(f"{name:>12}: {100 * entry['mean']:+.1f} points{shown}")
    config = load_config("camvid_cpu").to_dict()
    write_record(args.out, {"preset": "camvid_cpu", "seeds": seeds, "class_names": list(CAMVID.class_names),
                            "runs": {arm: {str(s): r for s, r in by_seed.items()} for arm, by_seed in runs.items()},
                            "median_frequency_minus_none": comparison},
                 extra={"preset_config": config, "iterations_override": args.iterations})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
