"""How long each chapter takes in a profile, run as a learner runs them, and the record the chapters'
headers are checked against.

One notebook at a time, in chapter order, each in a fresh kernel (``deeplab_edu.book.execute_notebooks``
with one job), from scratch: the training chapters train their runs, so the clone's ``runs/`` must hold
none of the course's runs (the script refuses otherwise). The record keeps each chapter's seconds and
status beside the minutes its header states (``cpu_minutes``), its peak memory (sampled: its kernel and
the kernel's DataLoader workers, see :class:`PeakMemory`), whether a CamVid copy was found
(chapter 11 trains on it when it is), and the load average before and after (a busy machine is much slower).
``tests/test_benchmark_records.py`` fails when a header states fewer minutes than the record measured::

    python benchmarks/notebook_times.py --out benchmarks/results/notebook_times_cpu.json  # recorded here
    python benchmarks/notebook_times.py --profile smoke --only 00 01   # a quick try: seconds

Run it from a clean clone on a quiet machine: about 45 minutes in the ``cpu`` profile on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deeplab_edu.book import chapter_headers, execute_notebooks  # noqa: E402
from deeplab_edu.data.paths import find_camvid  # noqa: E402
from deeplab_edu.engine.bench.timing import check_out, load_average, write_result  # noqa: E402
from deeplab_edu.viz.training import camvid_run, course_runs  # noqa: E402


class PeakMemory:
    """The most memory this process's children held at once while the block ran: the notebook's executor, its
    kernel and the kernel's DataLoader workers, their proportional set sizes added up (PSS: a page shared by
    several processes, as a forked worker shares its kernel's, is split among them instead of counted in
    each), sampled every ``interval`` seconds, so a briefer peak can escape it; resident set sizes where the
    system gives no PSS (not Linux), which count shared pages in each process and so overstate. ``peak`` is in
    bytes."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="peak-memory", daemon=True)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(self.interval):
            total = 0
            for child in me.children(recursive=True):
                try:
                    info = child.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue  # it ended between the listing and the reading
                total += getattr(info, "pss", info.rss)
            self.peak = max(self.peak, total)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"],
                        help="the course profile the chapters run in (default: cpu)")
    parser.add_argument("--only", nargs="+", metavar="NN", help="these chapters only (two digits, e.g. 00 08)")
    parser.add_argument("--out", default=None, help="record path (default runs/bench/notebook_times_<profile>.json)")
    parser.add_argument("--executed", type=Path, default=None,
                        help="folder for the executed notebooks (default: a temporary one, deleted afterwards)")
    args = parser.parse_args(argv)
    check_out(parser, args.out)

    headers = chapter_headers()
    if args.only:
        unknown = sorted(set(args.only) - {f"{h['chapter']:02d}" for h in headers})
        if unknown:
            parser.error(f"--only: no chapter {', '.join(unknown)} in the book")
        headers = [h for h in headers if f"{h['chapter']:02d}" in args.only]
    if args.profile != "smoke":  # smoke runs train in a temporary folder of their own
        # the runs chapters 08-11 load (what `deeplab-edu course-runs` trains): any begun is not trained again
        held = [spec.out_dir for spec in (*course_runs(args.profile), camvid_run(args.profile))
                if (spec.out_dir / "checkpoints").is_dir()]
        if held:
            one = len(held) == 1
            parser.error(f"{', '.join(map(str, held))} already hold{'s a run' if one else ' runs'}: the training "
                         f"chapters would load {'it' if one else 'them'} instead of training, and the record would "
                         "understate their time. Run this from a fresh clone, or move those folders away first.")
    notebooks = Path(__file__).resolve().parent.parent / "notebooks"
    sources = [notebooks / h["source"] for h in headers]
    load_before, start = load_average(), time.monotonic()
    runs, peaks = [], []
    with tempfile.TemporaryDirectory(prefix="notebook_times_") as tmp:
        for source in sources:  # one call each: the memory watched is that chapter's
            with PeakMemory() as memory:
                runs += execute_notebooks([source], args.executed or Path(tmp), jobs=1, reuse=False,
                                          active_profile=args.profile, progress=True)
            peaks.append(memory.peak)
    chapters: list[dict[str, Any]] = [
        {"chapter": h["chapter"], "source": h["source"], "status": run.status, "seconds": run.seconds,
         "header_minutes": h["cpu_minutes"], "peak_memory_gb": round(peak / 1e9, 2)}
        for h, run, peak in zip(headers, runs, peaks)]
    results = {"profile": args.profile, "jobs": 1, "camvid_present": find_camvid() is not None,
               "total_seconds": round(time.monotonic() - start, 1), "chapters": chapters,
               "load_average_before": load_before, "load_average_after": load_average()}
    for row in chapters:
        print(f"{row['chapter']:02d} {row['source']:38s} {row['status']:8s} {row['seconds'] / 60:5.1f} min "
              f"(header: {row['header_minutes']:g}), peak {row['peak_memory_gb']:.2f} GB (sampled)")
    print(f"all: {results['total_seconds'] / 60:.1f} min, {args.profile} profile, CamVid "
          f"{'found' if results['camvid_present'] else 'absent'}")
    write_result(results, args.out, f"notebook_times_{args.profile}.json",
                 "one notebook at a time in chapter order, from scratch (no finished runs)")
    return 0 if all(run.ok for run in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
