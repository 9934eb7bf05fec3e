"""Recorded runs: every number the course shows says where it came from.

A *record* is a JSON file holding results together with the command that produced
them, the code version (package version and git commit, with a ``dirty`` flag) and
the hardware and software it ran on. Notebooks either compute a number live or read
it from a record with :func:`load_record`, and show its provenance with
:func:`describe_record`.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from .atomic import write_text_atomic

__all__ = [
    "HIDE_PATHS_ENV",
    "REPO_ROOT",
    "RESULTS_DIR",
    "hardware",
    "gpu_driver_version",
    "code_version",
    "package_changed_since",
    "environment",
    "provenance",
    "write_record",
    "nan_to_null",
    "check_record_path",
    "load_record",
    "describe_record",
    "portable_command",
    "shown_path",
]

#: The repository's folder (the package's parent): recorded results, the notebooks and the book.
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Where recorded runs (benchmarks, training runs) are kept in the repository.
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"


#: Set (to any non-empty value) where outputs are published, as the book's build does for the
#: notebooks it executes: :func:`shown_path` then never shows an absolute path of the machine.
HIDE_PATHS_ENV = "DEEPLAB_EDU_HIDE_MACHINE_PATHS"


def shown_path(path: str | os.PathLike[str], *, absolute_outside: bool = False) -> str:
    """A path as messages and notebook outputs show it: short, and in a published book never the
    machine's absolute path.

    Relative to the working folder when that is a folder of the repository and the path lies inside
    it (as a command typed there names it); else relative to the repository
    (``runs/cpu/checkpoints/last.pt``) when inside it; ``~/...`` when
    inside the home folder; otherwise relative to the working folder when inside it; else the
    absolute path (what a user of the command line needs to find the file), except while
    :data:`HIDE_PATHS_ENV` is set (the book's build sets it): then ``.../`` and the path's last three
    parts. With ``absolute_outside=True`` (messages that tell the reader where to put a file) a path
    outside the repository and the home folder is always absolute.
    Use it for every path a message or a notebook prints.
    """
    path = Path(path).absolute()

    def inside(base: Path) -> str | None:
        for b in (base.absolute(), base.resolve()):
            try:
                return path.relative_to(b).as_posix()
            except ValueError:
                continue
        return None

    try:
        cwd: Path | None = Path.cwd()
    except OSError:  # the working folder was removed
        cwd = None
    # a command run in a folder of the repository (a practitioner's work/): its own paths as they are typed
    # there, so that a command a message suggests can be pasted ("--out-dir work/runs/b" failed in work/)
    if (not absolute_outside and cwd is not None and (here := inside(cwd)) is not None
            and cwd.resolve() != REPO_ROOT.resolve() and _within(cwd, REPO_ROOT)):
        return here
    if (rel := inside(REPO_ROOT)) is not None:
        return rel
    if (rel := inside(Path.home())) is not None:
        return f"~/{rel}"
    if absolute_outside:
        return str(path)
    if cwd is not None and (rel := inside(cwd)) is not None:
        return rel
    if not os.environ.get(HIDE_PATHS_ENV):
        return str(path)
    return _elided(path)


def _within(path: Path, base: Path) -> bool:
    """Whether ``path`` is ``base`` or lies inside it (links resolved)."""
    return path.resolve().is_relative_to(base.resolve())


def _elided(path: Path) -> str:
    """``path`` as a published page shows one outside the repository and home folder: ``.../`` and its
    last three parts."""
    return ".../" + "/".join(path.parts[1:][-3:])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, Any]:
    """The machine: CPU model and cores, memory, and the GPU if CUDA sees one (name, count, memory, CUDA and
    cuDNN versions, and the NVIDIA driver's version as ``nvidia-smi`` reports it, where it does)."""
    import torch

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except (ImportError, OSError):
        pass
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = props.name
        info["gpu_count"] = torch.cuda.device_count()
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()  # an int, e.g. 91000 for 9.10.0
        driver = gpu_driver_version()
        if driver:
            info["gpu_driver"] = driver
    return info


def gpu_driver_version(timeout: float = 10.0) -> str | None:
    """The NVIDIA driver's version (e.g. ``"570.124.06"``) from ``nvidia-smi``, or ``None`` where there is
    no ``nvidia-smi`` or it fails or takes longer than ``timeout`` seconds (a record is still written)."""
    import shutil

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    versions = done.stdout.split()
    return versions[0] if done.returncode == 0 and versions else None


def code_version() -> dict[str, Any]:
    """Package version plus git commit, and whether the checkout had local changes (``git_dirty``: changed
    files, or new ones git does not ignore).

    Changes to the records themselves (``benchmarks/results/``) do not count: a script that writes
    two records would otherwise call its second one dirty because of its first.

    The environment variable ``DEEPLAB_EDU_CODE_COMMIT``, when set, names the commit instead
    (``git_commit_from: "environment"``; the copy is taken as clean): a copy of the checkout made
    for another machine may have no ``.git``, or one older than its files (a lent GPU machine's
    copy carried the ``.git`` of the session's start while its files were two commits on, so git
    named the wrong commit). What git said there is kept as ``git_commit_in_copy`` when it differs.
    """
    from . import __version__

    out: dict[str, Any] = {"package": __version__}
    given = os.environ.get("DEEPLAB_EDU_CODE_COMMIT", "").strip()
    # an installed copy has no .git of its own: git would name the commit of whatever repository holds its
    # site-packages (a user's project with its .venv inside; an audit of the installed wheel)
    sha = _git("rev-parse", "HEAD") if (REPO_ROOT / ".git").exists() else None
    if sha is not None and sha.returncode == 0:
        out["git_commit"] = sha.stdout.strip()
        if not given:  # a given commit is taken as clean: the copy's own state is not asked
            # untracked files too: a new script is code
            dirty = _git("status", "--porcelain", "--", ".",
                         f":(exclude){RESULTS_DIR.relative_to(REPO_ROOT).as_posix()}")
            if dirty is not None:
                out["git_dirty"] = bool(dirty.stdout.strip())
    if given:
        seen = out.pop("git_commit", None)
        out.update(git_commit=given, git_dirty=False, git_commit_from="environment")
        if seen and not seen.startswith(given) and not given.startswith(seen):
            out["git_commit_in_copy"] = seen
    return out


def _git(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str] | None:
    """``git <args>`` run in :data:`REPO_ROOT`, its output captured as text; ``None`` where git is not installed,
    cannot start, or takes longer than ``timeout`` seconds (a hung network drive): callers then say nothing
    about the code's version rather than fail."""
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None


def package_changed_since(commit: str, *, timeout: float = 5.0) -> bool | None:
    """Whether the package (``deeplab_edu/``) at this checkout's ``HEAD`` differs from ``commit``'s, as
    ``git diff --quiet <commit> HEAD -- deeplab_edu/`` tells: ``True`` also for a commit this clone does not
    know (a run trained in another clone, or a shallow one); ``None`` where it cannot be told: no git, no
    repository at :data:`REPO_ROOT` (a package installed as a copy), a git that refuses this repository, a
    ``commit`` that is not a revision's name, or a git call longer than ``timeout`` seconds.

    Local changes not committed yet do not count (neither ``HEAD``'s nor ``commit``'s ``git_dirty``).
    """
    if not commit or commit.startswith("-") or not (REPO_ROOT / ".git").exists():
        return None
    head = _git("rev-parse", "--verify", "--quiet", "HEAD", timeout=timeout)
    if head is None or head.returncode != 0:  # git refuses this repository (another user's, say): nothing to tell
        return None
    if head.stdout.strip().startswith(commit):
        return False
    diff = _git("diff", "--quiet", commit, "HEAD", "--", "deeplab_edu/", timeout=timeout)
    if diff is None:
        return None
    return diff.returncode != 0  # 1: the package differs; 128: a commit this clone does not know


def environment() -> dict[str, Any]:
    """Versions of Python and the libraries the course uses, and the active profile/device."""
    import importlib.metadata as md

    from .config import device, profile

    libs: dict[str, str | None] = {}
    for name in ("torch", "torchvision", "numpy", "scipy", "matplotlib", "ipywidgets", "jupytext", "jupyter-book",
                 "segmentation-models-pytorch", "timm"):  # the last two: the bench's peer (smp) and its encoders
        try:
            libs[name] = md.version(name)
        except md.PackageNotFoundError:
            libs[name] = None
    try:
        course: dict[str, str | None] = {"profile": profile(), "device": str(device())}
    except ValueError as err:  # a bad DEEPLAB_EDU_PROFILE: recorded as such (a record must not fail on it)
        course = {"profile": f"invalid ({err})", "device": None}
    return {"python": sys.version.split()[0], "libraries": libs, **course}


def _this_command() -> str:
    """This process's command line, without the machine's paths; the ``deeplab-edu`` console script as
    ``deeplab-edu ...`` (not ``python /path/to/.venv/bin/deeplab-edu ...``, which its ``sys.argv`` gives); a
    notebook's kernel is named as such (its command line is only the kernel's connection file)."""
    if sys.argv and Path(sys.argv[0]).name == "ipykernel_launcher.py":
        return "a notebook (Jupyter kernel)"
    script = bool(sys.argv) and Path(sys.argv[0]).name == "deeplab-edu"  # the console script, as it was typed
    argv = ["deeplab-edu", *sys.argv[1:]] if script else [Path(sys.executable).name, *sys.argv]
    return portable_command(shlex.join(argv))


def _working_directory() -> str:
    """This process's working folder as :func:`shown_path` shows a folder elsewhere (``.`` only for the
    repository itself; ``.../`` and its last three parts outside the repository and home folder while
    :data:`HIDE_PATHS_ENV` is set)."""
    try:
        cwd = Path.cwd()
    except OSError:  # the folder was removed while the process ran: a record must not fail on it
        return "unknown (the working folder no longer exists)"
    shown = shown_path(cwd, absolute_outside=True)
    return _elided(cwd) if os.environ.get(HIDE_PATHS_ENV) and shown == str(cwd.absolute()) else shown


def provenance(command: str | None = None) -> dict[str, Any]:
    """Where a result comes from: ``command`` (default: this process's, :func:`portable_command`, with
    ``working_directory``, the folder its relative paths start from, as :func:`shown_path` shows it),
    ``created`` (UTC, ISO 8601), :func:`code_version`, :func:`hardware` and :func:`environment`.

    What :func:`write_record` stores beside its results, and what a training run keeps for each
    stretch of iterations it trained (``provenance`` in its checkpoints and ``metrics.json``).
    """
    return {
        "command": _this_command() if command is None else command,
        # a command's relative paths (--data-root my_data) say nothing without the folder they start from
        **({"working_directory": _working_directory()} if command is None else {}),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "hardware": hardware(),
        "environment": environment(),
    }


def check_record_path(path: str | os.PathLike[str], flag: str = "--record", *, keys: Sequence[str] = ("command",),
                      what: str = "a record", example: str = "record.json") -> None:
    """Refuse, before a run starts, a record's ``path`` that holds something other than a record (a safety
    audit: ``train --record notes.json`` replaced the user's file with the run's record, without a word;
    ``export`` and ``predict`` already refused to overwrite a file they did not write). A record of an
    earlier run is replaced, as before. ``eval --json`` checks its metrics file with it too (``keys`` the
    fields of such a file, ``what`` its name in the message, ``example`` a file name to suggest).

    ``path``'s folder is made, and a file written in it (:func:`~deeplab_edu.atomic.check_writable`): a folder that
    cannot be written fails here, not after the run's minutes.

    Raises:
        ValueError: ``path`` is a folder, a pipe or a device (reading it would wait for ever: a review of
            ``eval --json /dev/stdout``), or a file that is not such a JSON object (one without every one of
            ``keys``); ``flag`` is the option named in the message.
        OSError: ``path``'s folder cannot be made or written in (read-only, a file where a folder belongs).
    """
    from .atomic import check_writable

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; name the file to write, e.g. {path / example}")
    if path.exists() and not path.is_file():
        raise ValueError(f"{flag} {path} is not a regular file (a pipe or a device): name a file to write, e.g. "
                         f"{example}")
    check_writable(path.parent, before=f"{flag} {path}: ", after="; name a file in a folder this process can write to")
    if not path.exists():
        return
    try:
        with path.open("rb") as f:
            start = f.read(1)
            held = json.loads(start + f.read()) if start == b"{" else None  # a checkpoint is not read whole
    except (OSError, ValueError):  # UnicodeDecodeError and json's errors are ValueErrors
        held = None
    if not (isinstance(held, dict) and all(key in held for key in keys)):
        raise ValueError(f"{flag} {path} already holds a file that is not {what}: name another file (or "
                         "delete it), so that nothing of yours is overwritten")


def write_record(
    path: str | os.PathLike[str],
    results: Mapping[str, Any],
    *,
    command: str | list[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``results`` with provenance to ``path`` (JSON), atomically.

    Args:
        path: the JSON file to write; parent folders are created.
        results: the measured numbers (JSON-serialisable).
        command: the command that produced them; defaults to this process's argv.
        extra: anything else worth keeping (configuration, notes).

    ``hardware.torch_threads`` is the ``torch_threads`` of ``results`` (or ``extra``) when it has one:
    the threads the measurement ran with, not those of the process when it writes. NumPy scalars and
    arrays and torch tensors are written as the numbers they hold (:func:`_as_json`); a NaN as JSON's
    non-standard ``NaN``, which Python's ``json`` reads back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if command is not None and not isinstance(command, str):
        command = shlex.join(command)
    record = {
        **provenance(command),
        **({"extra": dict(extra)} if extra else {}),
        "results": results,
    }
    # the threads the measurement ran with (a benchmark sets its own, and restores them before writing)
    threads = results.get("torch_threads", (extra or {}).get("torch_threads"))
    if isinstance(threads, int) and not isinstance(threads, bool):
        record["hardware"]["torch_threads"] = threads
    return write_text_atomic(path, json.dumps(record, indent=2, sort_keys=False, default=_as_json) + "\n")


def nan_to_null(value: Any) -> Any:
    """``value`` with every float that is not finite (NaN: an undefined IoU, a diverged loss; infinity) replaced
    by ``None``, in nested dicts, lists and tuples (a tuple becomes a list): what ``json.dumps(...,
    allow_nan=False)`` writes as strict JSON (``null``), which jq, JavaScript and strict parsers read; Python's
    default writes ``NaN``, which they refuse."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_null(v) for v in value]
    return value


def _as_json(value: Any) -> Any:
    """What ``json.dumps`` writes for a value it cannot: the number(s) of a NumPy scalar or array or a torch
    tensor (an audit: ``np.float32(0.7)`` was written as the string "0.7"), else its text (a path, say)."""
    for kind in ("numpy", "torch"):
        if type(value).__module__.split(".")[0] == kind and hasattr(value, "tolist"):
            return value.tolist()
    return str(value)


def load_record(name_or_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a record by path, or by file name inside :data:`RESULTS_DIR`.

    Raises:
        FileNotFoundError: naming the file and the command that would create it when
            the record says so (records are committed; re-run to regenerate).
        ValueError: if the file is not a record (no ``results``/``command``).
    """
    given = path = Path(name_or_path)
    if not path.is_absolute() and not path.exists():
        candidate = RESULTS_DIR / path
        path = candidate if candidate.suffix else candidate.with_suffix(".json")
    if not path.exists():
        looked = (f"{shown_path(given)} does not exist" if path == given
                  else f"neither {shown_path(given)} nor {shown_path(path)} exists")
        raise FileNotFoundError(
            f"no recorded run {str(name_or_path)!r}: {looked}; records live in {shown_path(RESULTS_DIR)} "
            "and are made by the scripts in benchmarks/ (see benchmarks/README.md)"
        )
    record = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(record, dict) or "results" not in record or "command" not in record:
        raise ValueError(f"{path} is not a deeplab-edu record (needs 'results' and 'command')")
    return record


def portable_command(command: str) -> str:
    """``command`` without the paths of the machine that ran it: ``python /any/where/deeplab_edu/__main__.py``
    (what ``python -m deeplab_edu`` puts in ``sys.argv``) becomes ``python -m deeplab_edu``, and paths
    inside the repository become relative to it."""
    command = re.sub(r"(?<=\s)\S*/deeplab_edu/__main__\.py(?=\s|$)", "-m deeplab_edu", command)
    return command.replace(str(REPO_ROOT) + os.sep, "")


def describe_record(record: Mapping[str, Any], *, command: bool = True) -> str:
    """One paragraph of provenance: command (and the folder it ran in, when not the repository), commit
    (and whether the tree had uncommitted changes), hardware (a GPU's record: the GPU and its host CPU; a
    CPU's: its cores and the torch threads the run used, which a command run as written may not), date.

    ``command=False`` leaves the command out (a record made on another machine whose command names that
    machine's folders, e.g. a GPU session's output folder; :func:`load_record` still gives it).
    """
    hw = record.get("hardware", {})
    cv = record.get("code_version", {})
    # the threads too: on a CPU another count sums in another order, and a training learns other weights
    n = hw.get("torch_threads")
    threads = f", {n} torch thread{'' if n == 1 else 's'}" if n and not hw.get("gpu") else ""
    cpu = f"{hw.get('cpu', '?')} ({hw.get('cpu_count', '?')} cores{threads})"
    # a GPU's record also names its host CPU: the processes that feed the GPU (launches, loader) run there
    where = f"{hw['gpu']} (host: {cpu})" if hw.get("gpu") else cpu
    commit = cv.get("git_commit", "unknown")[:10] + (" plus uncommitted changes" if cv.get("git_dirty") else "")
    folder = record.get("working_directory")
    where_run = f" (run in {folder})" if folder and folder != "." else ""
    package = cv.get("package", "?")
    # "0.0.0+unknown": a source tree run without its pyproject.toml (the GPU machine's copies); the commit names the code
    version = "" if package.endswith("+unknown") else f" (deeplab_edu {package})"
    by = f" by `{portable_command(record['command'])}`{where_run}" if command else ""
    return (
        f"Recorded {record.get('created', '?')}{by} at commit {commit}"
        f"{version} on {where}, "
        f"torch {record.get('environment', {}).get('libraries', {}).get('torch', '?')}."
    )
