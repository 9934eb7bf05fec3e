"""Run profiles and the compute device, decided in one place.

Every notebook and the training engine ask this module which *profile* they run
in, instead of reading environment variables themselves:

``smoke``
    CI and quick checks: tiny images, a handful of iterations; every notebook
    finishes in seconds.
``cpu``
    A classroom laptop without a GPU: minutes per notebook.
``gpu``
    The full recipes (real crop sizes, long schedules) on a CUDA GPU.

The profile comes from the environment variable ``DEEPLAB_EDU_PROFILE``. When it
is unset (or ``auto``) the profile is ``gpu`` if CUDA is available and ``cpu``
otherwise.

>>> from deeplab_edu.config import profile, choose
>>> steps = choose(smoke=5, cpu=300, gpu=30_000)   # doctest: +SKIP
"""

from __future__ import annotations

import os
import traceback
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Iterator, Literal, Sequence, TypeVar

if TYPE_CHECKING:  # torch is imported where it is used: `import deeplab_edu` (and the CLI's start) stays light
    import torch

__all__ = ["ENV_VAR", "DEVICE_ENV_VAR", "COURSE_CHECKS_ENV", "PROFILES", "Profile", "profile", "device",
           "resolve_device", "choose", "is_smoke", "course_checks", "text_checks", "SMOKE_MEANS", "profile_line",
           "CGROUP_ROOT", "PROC_SELF_CGROUP", "memory_limit_bytes", "recorded_peak_memory", "memory_note"]

#: The environment variable that picks the profile (:func:`profile`): ``smoke``, ``cpu`` or ``gpu``.
ENV_VAR = "DEEPLAB_EDU_PROFILE"
#: The environment variable that forces the device (:func:`device`), e.g. ``cpu`` or ``cuda:1``.
DEVICE_ENV_VAR = "DEEPLAB_EDU_DEVICE"
#: Set (to ``1``) where the course checks itself: the notebook tests, ``make book`` and the chapter
#: timings (``deeplab_edu.book`` sets it in every kernel it starts); see :func:`course_checks`.
COURSE_CHECKS_ENV = "DEEPLAB_EDU_COURSE_CHECKS"
#: The profiles, smallest first: ``smoke`` (seconds, checks that the code runs), ``cpu`` (a laptop's
#: course runs) and ``gpu`` (the papers' recipes).
PROFILES: tuple[str, ...] = ("smoke", "cpu", "gpu")
#: The type of a profile's name (:data:`PROFILES`), for type checkers.
Profile = Literal["smoke", "cpu", "gpu"]
T = TypeVar("T")


def profile() -> Profile:
    """Return the active profile: ``DEEPLAB_EDU_PROFILE`` or the automatic default.

    Raises:
        ValueError: if the variable holds something other than a known profile
            or ``auto``, naming the variable and the allowed values.
    """
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in ("", "auto"):
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    if value not in PROFILES:
        raise ValueError(
            f"{ENV_VAR}={value!r} is not a profile; use one of {', '.join(PROFILES)} "
            "or leave it unset for the automatic choice (gpu if CUDA is available, else cpu)."
        )
    return value  # type: ignore[return-value]


def is_smoke() -> bool:
    """True in the ``smoke`` profile (CI): skip anything slow."""
    return profile() == "smoke"


#: What the ``smoke`` profile's numbers mean (the book built in it says so under every title; so does
#: :func:`profile_line` in a notebook).
SMOKE_MEANS = ("a few iterations on tiny images, to test that everything runs: its trained models and measured "
               "numbers mean nothing, and the text describes the cpu profile's results")


def profile_line(*, with_device: bool = False) -> str:
    """The line a chapter prints first: the active profile (and the compute device with ``with_device``),
    and in the ``smoke`` profile what its numbers mean (:data:`SMOKE_MEANS`), so that a learner who
    runs a chapter in it does not read its numbers against the text. On a CPU, where a learner runs
    the chapter (not :func:`course_checks`), it adds the command line's note when other processes keep
    cores busy (:func:`deeplab_edu.engine.workers.busy_cpu_note`: PyTorch's threads then wait for each
    other, and one chapter ran eleven times slower), with the call that helps.

    Raises:
        ValueError: ``DEEPLAB_EDU_PROFILE`` holds no profile (:func:`profile`), or ``DEEPLAB_EDU_DEVICE``
            no device (:func:`device`).
    """
    active, dev = profile(), device()
    line = f"profile: {active}" + (f", device: {dev}" if with_device else "")
    if active == "smoke":
        line += f"\n(the smoke profile: {SMOKE_MEANS})"
    if not course_checks() and dev.type == "cpu":
        from .engine import workers

        if note := workers.busy_cpu_note(remedy="torch.set_num_threads({n})"):
            line += "\n" + note
    return line


#: Where Linux mounts the cgroup hierarchies (v2's, or v1's with one folder per controller).
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: The file that names this process's cgroup in each hierarchy (``0::/path`` in v2, ``4:memory:/path`` in v1).
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def _cgroup_memory_files(proc_text: str, root: Path) -> list[Path]:
    """The files that may limit this process's memory: for each hierarchy that ``proc_text`` (the text of
    :data:`PROC_SELF_CGROUP`) names, its cgroup's limit file and every parent's up to the hierarchy's root (a
    limit on a parent binds its children too): v2's ``memory.max`` (under ``root``, or ``root/unified`` on a
    hybrid machine), v1's ``memory.limit_in_bytes`` (under ``root/memory``). Files that do not exist are kept:
    the caller skips them, and reads a file named twice once."""
    files: list[Path] = []
    for line in proc_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, cgroup = parts
        if hierarchy == "0" and controllers == "":
            bases, name = [root, root / "unified"], "memory.max"
        elif "memory" in controllers.split(","):
            bases, name = [root / "memory"], "memory.limit_in_bytes"
        else:
            continue
        relative = PurePosixPath(cgroup.lstrip("/"))
        if ".." in relative.parts:  # a cgroup namespace's path above its own mount: only the mount's root is ours
            relative = PurePosixPath()
        files += [base / folder / name for base in bases for folder in (relative, *relative.parents)]
    return files


def memory_limit_bytes() -> int:
    """The memory this process may use, in bytes: the smaller of the machine's RAM (psutil's) and the limits of
    its cgroups (Linux: Binder gives a session about 2 GB, however large its machine). Each hierarchy named in
    :data:`PROC_SELF_CGROUP` is read from this process's cgroup up to the root of :data:`CGROUP_ROOT`, since a
    parent's limit binds its children. cgroup v1's "no limit" is a number above any RAM, v2's the word ``max``:
    both leave the RAM; a file that cannot be read is skipped (the RAM is then said, never less)."""
    import psutil

    limits = [int(psutil.virtual_memory().total)]
    try:
        proc_text = PROC_SELF_CGROUP.read_text(errors="replace")
    except OSError:  # not Linux
        return limits[0]
    for path in dict.fromkeys(_cgroup_memory_files(proc_text, CGROUP_ROOT)):
        try:
            text = path.read_text(errors="replace").strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append(int(text))
    return min(limits)


def recorded_peak_memory(chapters: Sequence[int], profile_name: str) -> tuple[float, int, str] | None:
    """The largest peak memory of ``chapters`` in the newest chapter-timing record of ``profile_name`` that
    holds peaks (``benchmarks/results/notebook_times_<profile>*.json``, by ``benchmarks/notebook_times.py``:
    a chapter's kernel, its loader workers and the process that ran it, sampled every 0.5 s), as
    ``(gigabytes, chapter, the record's file name)``; ``None`` where no record holds one (another profile, or a
    package installed without the repository's records)."""
    from .records import RESULTS_DIR, load_record

    newest: tuple[str, dict[int, float], str] | None = None
    for path in RESULTS_DIR.glob(f"notebook_times_{profile_name}*.json"):
        try:
            record = load_record(path)
            peaks = {int(row["chapter"]): float(row["peak_memory_gb"]) for row in record["results"]["chapters"]
                     if row.get("peak_memory_gb") is not None}
            created = str(record["created"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # not such a record: no reason to stop
            continue
        if peaks and (newest is None or created > newest[0]):
            newest = (created, peaks, path.name)
    if newest is None:
        return None
    found = [(newest[1][c], c) for c in chapters if c in newest[1]]
    if not found:
        return None
    peak, chapter = max(found)
    return peak, chapter, newest[2]


def memory_note(chapter: int, *trains_runs_of: int) -> str | None:
    """What to say before chapter ``chapter`` trains where this session has less memory than that chapter (or a
    chapter whose runs it trains, ``trains_runs_of``: chapter 09 trains chapter 08's when it is missing) used in
    its newest recorded run at the active profile (:func:`recorded_peak_memory`, with a tenth to spare), else
    ``None``: the kernel may be killed partway through the training, on Binder (about 2 GB) after minutes, with
    no word of why. ``None`` in the ``smoke`` profile, and where the records cannot be read.
    :func:`deeplab_edu.viz.training.memory_before_training` prints it where a run will be trained.

    Raises:
        ValueError: ``DEEPLAB_EDU_PROFILE`` holds no profile (:func:`profile`).
    """
    active = profile()
    if active == "smoke":
        return None
    found = recorded_peak_memory((chapter, *trains_runs_of), active)
    limit = memory_limit_bytes()
    if found is None or limit >= 1.1 * found[0] * 1e9:
        return None
    peak, which, record = found
    whose = f"chapter {which:02d}'s training" if which != chapter else "this chapter"
    return (f"Memory: this session may use {limit / 1e9:.2f} GB, and {whose} took {peak:.2f} GB at the {active} "
            f"profile (benchmarks/results/{record}; JupyterLab's own memory, which the record leaves out, comes out "
            "of the session's too, and a peak sampled every 0.5 s can miss a higher one): the kernel may be killed "
            "partway through the training below.\n"
            "Run this chapter where more memory is free (a laptop with 8 GB, Colab), or here at the smoke profile "
            "(a few iterations on tiny images: its numbers mean nothing): Kernel > Restart, then run "
            f"%env {ENV_VAR}=smoke in a new cell above the chapter's first cell, then the chapter.")


def course_checks() -> bool:
    """True where the course checks itself (``DEEPLAB_EDU_COURSE_CHECKS=1``: the notebook tests,
    ``make book``), not where a learner runs a notebook.

    Then the notebooks' hidden cells compare the exercises' answers with what the chapter measured,
    and :func:`deeplab_edu.exercises.check` raises on a wrong answer (a hidden solution that stopped
    passing fails the run); a learner's notebook skips those cells, whose checks need the solutions
    to have run, and only reports.
    """
    return os.environ.get(COURSE_CHECKS_ENV, "").strip() not in ("", "0")


@contextmanager
def text_checks() -> Iterator[None]:
    """The block of a notebook's hidden cell that checks what the text around it says of this run.

    Where the course checks itself (:func:`course_checks`: the notebook tests, ``make book``) a failed
    ``assert`` in the block raises, so a text that no longer matches its numbers fails the build. In a
    learner's run it prints which check failed instead, and Run All goes on: a laptop with another CPU
    (or another BLAS) trains to slightly different numbers than the runs the text was written from,
    and a cell the learner never opens should not stop the chapter. The rest of the block is skipped.
    Only the block's own ``assert`` statements are checks: an ``AssertionError`` raised inside a function
    the block calls is a failure like any other, and raises.

    Raises:
        AssertionError: a check in the block does not hold, where the course checks itself; or one was
            raised inside a function the block called.
    """
    try:
        yield
    except AssertionError as err:
        frames = traceback.extract_tb(err.__traceback__)[1:]  # the first is this generator's own `yield`
        if course_checks() or len(frames) != 1:  # the block's own assert: the block's frame alone
            raise
        frame = frames[0]
        failed = f"`{frame.line.strip()}`" if frame.line else f"line {frame.lineno}"
        print(f"Note from the course's hidden check of the text: in this run, {failed} does not hold"
              f"{f' ({str(err).splitlines()[0]})' if str(err) else ''}. The text was written from the course's own runs; another "
              "machine can train to slightly different numbers, so read the numbers printed above as yours. "
              "The notebook goes on.")


def device() -> torch.device:
    """The device to compute on.

    ``DEEPLAB_EDU_DEVICE`` (e.g. ``cpu``, ``cuda:1``, ``mps``) decides when it is set, in every
    profile; otherwise the ``smoke`` profile uses the CPU (so that CI results do not depend on the
    machine) and the others CUDA when available, else the CPU.

    Raises:
        ValueError: ``DEEPLAB_EDU_DEVICE`` names no device this PyTorch can use (:func:`resolve_device`),
            or ``DEEPLAB_EDU_PROFILE`` names no profile (:func:`profile`).
    """
    import torch

    forced = os.environ.get(DEVICE_ENV_VAR, "").strip()
    if forced:
        return resolve_device(forced, what=DEVICE_ENV_VAR)
    if profile() != "smoke" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def resolve_device(name: str | None, *, what: str = "--device") -> torch.device:
    """The device ``name`` names (``cpu``, ``cuda``, ``cuda:1``, ``mps``), checked; :func:`device` when it is
    ``None`` or empty. ``what`` is the flag or setting that gave it, for the messages.

    Raises:
        ValueError: ``name`` is not a device string torch parses (e.g. ``gpu``), names a device of another kind
            than these three (``meta``, ``xpu``: the course is not built or tested for them), or names a CUDA or
            MPS device this PyTorch cannot see; the message names ``what`` and what to give instead.
    """
    import torch

    if not name or not name.strip():
        return device()
    kinds = "use cpu, cuda, cuda:N (the N-th GPU) or mps"
    try:
        dev = torch.device(name.strip())
    except (RuntimeError, ValueError):
        raise ValueError(f"{what}={name!r} is not a device: {kinds}") from None
    if dev.type not in ("cpu", "cuda", "mps"):  # a trial: 'meta' was accepted, and failed later in a model
        raise ValueError(f"{what}={name!r} is a {dev.type} device, which the course does not run on: {kinds}")
    unset = f"use {what}=cpu (or leave it unset: a GPU when there is one, else the CPU)"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{what}={name!r}, but this PyTorch sees no CUDA GPU; {unset}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{what}={name!r}, but this PyTorch sees {torch.cuda.device_count()} CUDA GPU(s), "
                             f"numbered from 0")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"{what}={name!r}, but this PyTorch has no Apple MPS device; {unset}")
    return dev


def choose(*, smoke: T, cpu: T, gpu: T) -> T:
    """Pick the value for the active profile, e.g. ``choose(smoke=2, cpu=200, gpu=30000)``.

    Raises:
        ValueError: ``DEEPLAB_EDU_PROFILE`` names no profile (:func:`profile`).
    """
    return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[profile()]
