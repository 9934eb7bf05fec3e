"""The papers' findings over seeds: train every arm of deeplab_edu.findings, evaluate, record.

    python benchmarks/findings.py                      # 3 seeds, 500 validation scenes (hours on 2 cores)
    python benchmarks/findings.py --seeds 0 1 --val-length 200 --arms v3 v3+
    python benchmarks/findings.py --train-only --threads 1 & python benchmarks/findings.py --train-only --threads 1
    python benchmarks/findings.py --arms "v3, separable ASPP" v3+ --out benchmarks/results/findings_decoder_cpu.json  # d4
    python benchmarks/findings.py --arms v3 "v3, no image pooling" "v3, multi-grid (1, 1, 1)" "v3, multi-grid (1, 2, 4)" \
        --findings c1 c2 c3 c4 c5 c6 e1 e2 --out benchmarks/results/findings_context_cpu.json  # c4-c6, e2
    python benchmarks/findings.py --arms v2 --findings f1 f2 --out benchmarks/results/findings_crf_cpu.json  # f
    python benchmarks/findings.py --arms v2 --findings f1 f2 f3 f4 --out benchmarks/results/findings_crf_colour_cpu.json

Runs are kept in ``runs/course/cpu/<arm>/seed<k>`` (the folders chapters 08-10 train in, so the
chapters' seed-0 runs are these) and reused when finished (delete to retrain).
The dense CRF's parameters are chosen first, on 25 *training* scenes with the seed-0 DeepLab v2
model (DeepLab v2 sec. 4.1.1 cross-validates them), so the validation scenes stay unseen.
Writes ``benchmarks/results/findings_cpu.json`` (the table, per-seed values, the CRF search, the
configuration, command, commit and hardware, and for every run the commit and machine that trained
it, ``extra.runs_trained_by``: reused runs may come from earlier commits) and ``findings_cpu.npz``
(the per-scene confusion matrices the table is computed from; chapter 10 recomputes the
intervals from them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deeplab_edu import findings  # noqa: E402
from deeplab_edu.atomic import atomic_path  # noqa: E402
from deeplab_edu.engine.bench.timing import check_out  # noqa: E402
from deeplab_edu.records import RESULTS_DIR, load_record, write_record  # noqa: E402


def _check_matrices_path(p: argparse.ArgumentParser, out: Path) -> None:
    """Refuse, before any training, an ``--out`` whose matrices file (``out`` with ``.npz``, which
    :func:`~deeplab_edu.records.check_record_path` does not look at) would replace something else: a folder, or a
    file that the record at ``out`` does not name as its ``matrices_file`` (``p.error``: exit status 2)."""
    npz = out.with_suffix(".npz")
    if out.suffix == ".npz":
        p.error(f"--out {out}: the confusion matrices are written beside the record as {npz.name}; name a .json file")
    if npz.is_dir() or (npz.exists() and not npz.is_file()):
        p.error(f"--out {out}: the confusion matrices would go to {npz}, which is a folder or not a regular file; "
                "name another --out")
    if npz.exists():
        try:
            named = json.loads(out.read_text(encoding="utf-8"))["results"]["matrices_file"]
        except (OSError, ValueError, KeyError, TypeError):  # no record there, or another kind of record
            named = None
        if named != npz.name:
            p.error(f"--out {out}: the confusion matrices would replace {npz}, which that record does not name as its "
                    "matrices: name another --out (or move the file away), so that nothing of yours is overwritten")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds of every arm (default: 0 1 2)")
    p.add_argument("--arms", nargs="+", choices=list(findings.ARMS), help="only these arms (default: all)")
    p.add_argument("--findings", nargs="+", metavar="KEY",
                   help="evaluate only the views these findings need (e.g. c4 e2; default: every finding's)")
    p.add_argument("--val-length", type=int, default=500,
                   help="validation scenes each run is evaluated on (default: 500)")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "course" / "cpu",
                   help="folder of the trained runs (reused when finished; default: %(default)s)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all cores)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "findings_cpu.json",
                   help="record path; the confusion matrices go beside it as .npz (default: %(default)s)")
    for axis, what in (("w_bilateral", "the bilateral kernel's weight w1"), ("theta_alpha", "in pixels"),
                       ("theta_beta", "in 0-255 RGB units")):
        p.add_argument(f"--crf-{axis.replace('_', '-')}", dest=f"crf_{axis}", nargs="+", type=float,
                       default=findings.CRF_GRID[axis], metavar="V",
                       help=f"the CRF search's values of {axis} ({what}; with the arm v2 only; default: %(default)s)")
    p.add_argument("--train-only", action="store_true",
                   help="train the missing runs and stop, without evaluating; start it several times (with --threads 1) "
                        "to train runs side by side: each process skips the runs another is training")
    args = p.parse_args(argv)
    if not args.train_only:  # the record and its matrices, before hours of training (--train-only writes neither)
        check_out(p, args.out)
        _check_matrices_path(p, args.out)
    repeated = sorted({s for s in args.seeds if args.seeds.count(s) > 1})
    if repeated:  # a seed given twice is the same runs counted twice: a narrower interval from no new evidence
        p.error(f"--seeds {' '.join(map(str, args.seeds))}: seed{'s' if len(repeated) > 1 else ''} "
                f"{', '.join(map(str, repeated))} given more than once, so the same runs would count twice; "
                "give each seed once")
    if len(set(args.seeds)) < 2 and not args.train_only:  # one seed has no interval over seeds, so no verdict
        p.error(f"--seeds {' '.join(map(str, args.seeds))}: a verdict needs the interval over seeds, so at least two "
                "different seeds (default: 0 1 2); --train-only trains the runs of one seed")
    from deeplab_edu.crf import DEEPLAB_RELEASED

    for axis in findings.CRF_GRID:  # a bad value fails here, not after the seed-0 run has trained
        for value in getattr(args, f"crf_{axis}"):
            try:
                DEEPLAB_RELEASED.replace(**{axis: value})
            except ValueError as err:
                p.error(f"--crf-{axis.replace('_', '-')} {value:g}: {err}")
    if args.arms and "v2" not in args.arms and any(
            tuple(getattr(args, f"crf_{axis}")) != tuple(findings.CRF_GRID[axis]) for axis in findings.CRF_GRID):
        p.error("the --crf-* flags choose the CRF search of the arm v2, which --arms leaves out")
    torch.set_num_threads(args.threads)
    start, load_before = time.time(), os.getloadavg()
    if args.train_only:
        trained = findings.train_runs(args.runs, args.seeds, arms=args.arms, progress=False)
        print(f"trained {len(trained)} runs in {(time.time() - start) / 60:.1f} minutes: {', '.join(trained) or 'none'}")
        return 0

    crf_params, crf_search, crf_grid = None, [], None
    arms = args.arms or list(findings.ARMS)
    if "v2" in arms:
        from deeplab_edu.data import build_dataset
        from deeplab_edu.data.transforms import eval_transform
        from deeplab_edu.engine.runs import train_or_load

        out = findings.run_dir(args.runs, "v2", args.seeds[0])
        model, _, cfg = train_or_load("cpu", out_dir=out, **findings.arm_overrides("v2", args.seeds[0]))
        held_out = build_dataset("procedural", "train", size=cfg.image_size, length=findings.CRF_SEARCH_SCENES, difficulty=cfg.difficulty,
                                 transform=eval_transform())
        crf_params, tried = findings.tune_crf(model, held_out, w_bilateral=args.crf_w_bilateral,
                                              theta_alpha=args.crf_theta_alpha, theta_beta=args.crf_theta_beta,
                                              progress=True)
        crf_search = [{"w_bilateral": t.w_bilateral, "theta_alpha": t.theta_alpha, "theta_beta": t.theta_beta,
                       "miou": m} for t, m in tried]
        print(f"CRF parameters: {crf_params}")
        crf_grid = {axis: getattr(args, f"crf_{axis}") for axis in findings.CRF_GRID}

    matrices = findings.run_findings(args.runs, args.seeds, arms=arms, val_length=args.val_length,
                                     crf_params=crf_params, findings=args.findings)
    npz = args.out.with_suffix(".npz")
    table = findings.findings_table(matrices, findings.measurable(matrices))
    for row in table:
        print(f"{row['finding']:45s} {row['baseline (%)']:>12s} -> {row['variant (%)']:>12s} "
              f"{row['difference (points)']:+6.2f} {row['95% interval']:>18s}  paper {row['paper (mIoU %)']}  "
              f"{row['verdict']}")
    trained_by = findings.runs_provenance(args.runs, arms, args.seeds)
    commits = {(p["commit"], p["dirty"]) for stretches in trained_by.values() for p in stretches}
    unknown = sorted(run for run, stretches in trained_by.items() if not stretches)
    print("runs trained at " + ", ".join(f"{c[:7] if c else '?'}{' (uncommitted changes)' if d else ''}"
                                         for c, d in sorted(commits, key=str))
          + (f"; without provenance (trained before runs kept it): {', '.join(unknown)}" if unknown else ""))
    # the matrices and the record that describes them, each written whole (atomic_path), last: a crash before
    # leaves the old pair as it was; the matrices take their name only once the record is written
    with atomic_path(npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **{k: v.astype(np.uint16) for k, v in matrices.items()})
        write_record(args.out, {"seeds": args.seeds, "val_scenes": args.val_length, "table": table,
                                "findings_evaluated": args.findings,
                                "matrices_file": npz.name, "crf_params": crf_params.__dict__ if crf_params else None,
                                "crf_search": crf_search, "crf_grid": crf_grid,
                                "crf_search_scenes": findings.CRF_SEARCH_SCENES if crf_search else None},
                     extra={"arms": {a: findings.ARMS[a] for a in arms}, "runs_trained_by": trained_by,
                            "torch_threads": args.threads,
                            "load_average_before": load_before, "load_average_after": os.getloadavg(),
                            "wall_minutes": round((time.time() - start) / 60, 1)})
    print(f"wrote {args.out} and {npz}; the table for benchmarks/README.md:\n")
    print(findings.RecordedFindings(load_record(args.out), {}).markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
