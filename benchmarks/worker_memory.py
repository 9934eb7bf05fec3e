"""How much memory each DataLoader worker adds to a course training run.

``benchmarks/notebook_times.py`` records each chapter's peak memory on the course's 2-core VM, where
the engine starts one loader worker; a laptop with more cores starts more (one per core but one, at
most 8: ``deeplab_edu.engine.workers.default_num_workers``), each a process of its own. This trains
the ``cpu`` preset (chapter 08's DeepLabv3 run) for ``--iterations`` steps, one validation included,
with each of ``--workers`` loader workers in turn, in a subprocess (``deeplab-edu train``) whose
memory, with its workers', is watched as the chapters' is (``notebook_times.PeakMemory``: proportional
set sizes added up, sampled every 0.5 s). Prints each count's peak and the memory one more worker
adds between one count and the next, and writes a record (``runs/bench/worker_memory.json``
unless ``--out`` names one)::

    python benchmarks/worker_memory.py
    python benchmarks/worker_memory.py --out benchmarks/results/worker_memory_cpu.json   # the committed record
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whichever one the environment installed

from deeplab_edu.engine.bench.timing import DefaultsHelpFormatter, check_out, write_result  # noqa: E402
from deeplab_edu.engine.workers import available_cores  # noqa: E402

from notebook_times import PeakMemory  # noqa: E402  (this folder is on sys.path when run as a script)


def peak_bytes(workers: int, iterations: int, timeout: float) -> int:
    """The peak memory (bytes) of ``deeplab-edu train --preset cpu`` with ``workers`` loader workers, this
    checkout's package first on the training's ``PYTHONPATH`` (not the one the environment installed).

    Raises:
        RuntimeError: the training failed (its last output is in the message).
        subprocess.TimeoutExpired: it took more than ``timeout`` seconds.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    with tempfile.TemporaryDirectory(prefix="worker_memory_") as folder, PeakMemory() as memory:
        proc = subprocess.run(
            [sys.executable, "-m", "deeplab_edu", "train", "--preset", "cpu", "--num-workers", str(workers),
             "--iterations", str(iterations), "--warmup-iters", "0", "--eval-every", str(iterations),
             "--out-dir", folder],
            capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"the training with {workers} worker(s) failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
    return memory.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 3, 7], help="loader workers to try")
    parser.add_argument("--iterations", type=int, default=20, help="training steps per run (one validation at the end)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one run may take")
    parser.add_argument("--out", default=None, help="record path (default: runs/bench/worker_memory.json)")
    args = parser.parse_args()
    check_out(parser, args.out)
    counts = sorted(set(args.workers))
    if len(counts) < 2:
        parser.error("--workers needs at least two different counts to give the memory per worker")
    peaks = {w: peak_bytes(w, args.iterations, args.timeout) for w in counts}
    per_worker = {f"{a}->{b}": (peaks[b] - peaks[a]) / (b - a) for a, b in zip(counts, counts[1:])}
    for w, peak in peaks.items():
        print(f"{w} worker(s): peak {peak / 1e9:.2f} GB (sampled)")
    for step, added in per_worker.items():
        print(f"workers {step}: {added / 1e9:+.3f} GB per worker added")
    print(f"({available_cores()} cores here; {args.iterations} training steps and one validation per run)")
    results: dict[str, Any] = {"preset": "cpu", "iterations": args.iterations, "cores": available_cores(),
                               "peak_gb": {str(w): round(p / 1e9, 3) for w, p in peaks.items()},
                               "added_per_worker_gb": {k: round(v / 1e9, 3) for k, v in per_worker.items()}}
    write_result(results, args.out, "worker_memory.json",
                 "deeplab-edu train --preset cpu with each worker count in turn, memory sampled every 0.5 s")


if __name__ == "__main__":
    main()
