"""How much fewer PyTorch threads help a CPU training while another job holds a core.

PyTorch splits each CPU operation between its intra-op threads (one per core by default) and waits
for the slowest, so a core taken by another process stalls every operation. ``deeplab-edu train``
says so when other processes keep cores busy (``deeplab_edu.engine.workers.busy_cpu_note``) and
takes ``--threads``. This measures what that advice is worth: the ``smoke`` preset's training
(``--iterations`` steps, no validation, no workers) in this process with PyTorch's default threads
and with ``--busy-cores`` fewer, on the quiet machine and beside ``--busy-cores`` busy loops (other
processes, started before and stopped after each measurement), all four settings interleaved over
``--rounds`` rounds. Prints each setting's median seconds and the speed-up of fewer threads with
its 95 % interval, and writes a record (``runs/bench/busy_threads.json`` unless ``--out`` names one)::

    python benchmarks/busy_threads.py
    python benchmarks/busy_threads.py --out benchmarks/results/busy_threads_cpu.json   # the committed record
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whichever one the environment installed

from deeplab_edu.engine.bench.timing import (DefaultsHelpFormatter, check_out, compare_speeds, interleaved, torch_threads,  # noqa: E402
                                             write_result)
from deeplab_edu.engine.config import load_config  # noqa: E402
from deeplab_edu.engine.trainer import Trainer  # noqa: E402
from deeplab_edu.engine.workers import available_cores  # noqa: E402


@contextlib.contextmanager
def busy_loops(count: int) -> Iterator[None]:
    """``count`` other processes, each spinning on one core, for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.5)  # let them start spinning
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=30)


def train_seconds(iterations: int, threads: int, folder: Path) -> float:
    """Wall seconds of ``Trainer(smoke preset).fit()`` for ``iterations`` steps at ``threads`` threads."""
    cfg = load_config("smoke", {"iterations": iterations, "eval_every": iterations + 1, "ckpt_every": iterations,
                                "num_workers": 0, "progress": False, "out_dir": str(folder)})
    with torch_threads(threads):
        trainer = Trainer(cfg)
        start = time.perf_counter()
        trainer.fit()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--iterations", type=int, default=150, help="training steps per measurement")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds of the four settings (6: the fewest for an interval)")
    parser.add_argument("--busy-cores", type=int, default=1, help="busy loops beside the training ('busy' settings)")
    parser.add_argument("--out", default=None, help="record path (default: runs/bench/busy_threads.json)")
    args = parser.parse_args()
    check_out(parser, args.out)
    default = torch.get_num_threads()
    fewer = max(1, default - args.busy_cores)
    if fewer == default:
        raise SystemExit(f"PyTorch uses {default} thread(s) here: there are no fewer threads to compare")
    settings = [(busy, threads) for busy in (False, True) for threads in (default, fewer)]
    times: dict[tuple[bool, int], list[float]] = {s: [] for s in settings}
    train_seconds(5, default, Path(tempfile.mkdtemp()))  # warm-up: imports, first allocations
    for busy, threads in interleaved(settings, args.rounds):
        with tempfile.TemporaryDirectory() as folder, busy_loops(args.busy_cores if busy else 0):
            times[(busy, threads)].append(train_seconds(args.iterations, threads, Path(folder)))
    results: dict[str, Any] = {"iterations": args.iterations, "rounds": args.rounds, "busy_cores": args.busy_cores,
                               "cores": available_cores(), "default_threads": default, "fewer_threads": fewer,
                               "seconds": {}, "speedup_of_fewer_threads": {}}
    for busy in (False, True):
        state = "busy" if busy else "quiet"
        for threads in (default, fewer):
            med = statistics.median(times[(busy, threads)])
            results["seconds"][f"{state}, {threads} threads"] = times[(busy, threads)]
            print(f"{state:5s} machine, {threads:2d} threads: median {med:6.2f} s for {args.iterations} iterations")
        fewer_vs_default = compare_speeds(times[(busy, default)], times[(busy, fewer)])
        results["speedup_of_fewer_threads"][state] = {"ratio": fewer_vs_default.speedup,
                                                      "interval": fewer_vs_default.interval}
        print(f"  {state}: {fewer} thread(s) instead of {default}: {fewer_vs_default}")
    write_result(results, args.out, "busy_threads.json", "medians of interleaved rounds; speed-up = seconds with "
                 "the default threads / seconds with fewer, paired bootstrap 95 % interval", torch_threads=default)


if __name__ == "__main__":
    main()
