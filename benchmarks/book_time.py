"""How long `make setup` and `make book` take from a clean clone, and the `.venv`'s size on disk.

The record behind the README's planning table.

Clones this repository's HEAD into a temporary folder (beside a link to ``../shared``, where the
course finds its CamVid copy), times ``make setup`` there (the pinned ``.venv``, from the package
registry), then ``make book`` in the given profile (two chapters at a time, as ``make book`` does),
and records both, each chapter's seconds and status (the executor's reports), the ``.venv``'s size
and the load average before and after::

    python benchmarks/book_time.py --profile cpu --out benchmarks/results/make_book_cpu.json
    python benchmarks/book_time.py --profile smoke --out benchmarks/results/make_book_smoke.json

The working tree must be clean (the clone holds HEAD only). Run it on a quiet machine: about 20
minutes in the ``cpu`` profile on 2 cores, 7 in ``smoke``. ``make setup`` needs the package registry.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deeplab_edu.engine.bench.timing import check_out, load_average, write_result  # noqa: E402
from deeplab_edu.records import REPO_ROOT  # noqa: E402


def _timed(cmd: list[str], cwd: Path, env: dict[str, str], limit: int, log: Path) -> float:
    """Seconds ``cmd`` took; its output goes to ``log``.

    Raises:
        RuntimeError: it failed or ran past ``limit`` seconds (naming the command and the log).
    """
    start = time.monotonic()
    with log.open("w") as out:
        try:
            proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=limit)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{' '.join(cmd)} ran past {limit} s; its output is in {log}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); its output is in {log}")
    return time.monotonic() - start


def _size_bytes(folder: Path) -> int:
    """What ``du`` counts: the blocks the files of ``folder`` take on disk."""
    return sum(p.lstat().st_blocks * 512 for p in folder.rglob("*") if not p.is_symlink())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu"],
                        help="the course profile the book is built in (default: cpu)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="chapters executed at the same time (make book's JOBS; default: 2)")
    parser.add_argument("--out", default=None, help="record path (default runs/bench/make_book_<profile>.json)")
    parser.add_argument("--keep", type=Path, default=None, help="clone here and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    check_out(parser, args.out)

    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()
    if dirty:
        parser.error(f"the working tree has uncommitted changes, which the clone would not hold:\n{dirty}")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="book_time_") as tmp:
        parent = args.keep or Path(tmp)
        parent.mkdir(parents=True, exist_ok=True)
        clone = parent / "deeplab-edu"
        subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
        shared = REPO_ROOT.parent / "shared"
        if shared.is_dir() and not (parent / "shared").exists():
            (parent / "shared").symlink_to(shared)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPLAB_EDU_", "VIRTUAL_ENV"))}
        env.update(DEEPLAB_EDU_PROFILE=args.profile, DEEPLAB_EDU_CODE_COMMIT=commit)
        load_before = load_average()
        print(f"make setup in {clone} ...", flush=True)
        setup_seconds = _timed(["make", "-s", "setup"], clone, env, 1800, parent / "setup.log")
        print(f"  {setup_seconds / 60:.1f} min; make book ({args.profile}, JOBS={args.jobs}) ...", flush=True)
        book_seconds = _timed(["make", "-s", "book", f"JOBS={args.jobs}"], clone, env, 5400, parent / "book.log")
        reports = sorted((clone / "book" / "_build" / "executed" / args.profile).glob("[0-9][0-9]_*.json"))
        chapters: list[dict[str, Any]] = []
        for report in reports:
            run = json.loads(report.read_text())
            chapters.append({"chapter": int(report.stem[:2]), "source": Path(run["source"]).name,
                             "status": run["status"], "seconds": round(run["seconds"], 1)})
        venv_bytes = _size_bytes(clone / ".venv")
        camvid = (parent / "shared" / "data" / "camvid").is_dir()
    results = {"profile": args.profile, "jobs": args.jobs, "camvid_present": camvid,
               "setup_seconds": round(setup_seconds, 1), "book_seconds": round(book_seconds, 1),
               "chapters": chapters, "venv_bytes": venv_bytes,
               "load_average_before": load_before, "load_average_after": load_average()}
    for row in chapters:
        print(f"{row['chapter']:02d} {row['source']:38s} {row['status']:8s} {row['seconds'] / 60:5.1f} min")
    print(f"make setup {setup_seconds / 60:.1f} min, make book {book_seconds / 60:.1f} min ({args.profile}, "
          f"JOBS={args.jobs}), .venv {venv_bytes / 1e9:.1f} GB")
    # the code measured is the clone's, HEAD as it was at the start: the record names that commit, whatever
    # this checkout holds by now (an edit made meanwhile would have called the record "dirty")
    os.environ["DEEPLAB_EDU_CODE_COMMIT"] = commit
    write_result(results, args.out, f"make_book_{args.profile}.json",
                 "make setup, then make book, in a clean clone of the commit (two chapters at a time)")
    return 0 if all(row["status"] == "ok" for row in chapters) else 1


if __name__ == "__main__":
    raise SystemExit(main())
