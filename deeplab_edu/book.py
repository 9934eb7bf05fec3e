"""Execute the notebooks once and build the Jupyter Book from them (``make book``, the tests).

Two steps, each usable alone:

1. :func:`execute_notebooks` runs every Jupytext notebook of ``notebooks/`` with nbclient, two at a
   time, each in its own process and kernel, and writes the executed ``.ipynb`` files plus a
   JSON report per notebook (status, the failing cell and its traceback, seconds per cell).
   Every cell's execution is bounded by :func:`cell_timeout` (per profile, sized for a busy
   2-core machine): a stuck cell fails in minutes, naming the notebook, the cell and its line
   in the ``.py`` source, instead of waiting for hours. A kernel that does not answer its first
   request within :data:`KERNEL_START_SECONDS` is shut down and another started (at most
   :data:`KERNEL_START_ATTEMPTS` in all; a clean-clone CI run once lost a chapter to a kernel that
   never answered in 120 s, where kernels start in about one second).
2. :func:`build_book` lays the executed notebooks and ``book/`` out in a staging folder and runs
   ``jupyter-book build`` on it with execution turned off, so the book shows exactly the outputs
   the tests checked. The executed notebooks are published next to the pages (the Colab button
   opens them); MathJax is served from the build itself (``sphinx-mathjax-offline``), so the book
   loads nothing from the network.

The same executor runs the chapters as a learner does (``learner=True``: without the course's own
checks, optionally without the hidden solutions); ``tests/test_learner_view.py`` uses it.

Every kernel it starts gets encrypted channels (:func:`kernel_encryption_settings`), as do JupyterLab's
(:func:`write_lab_server_config`, written by ``make setup``).

What a page shows of an executed notebook, and the ``.ipynb`` published beside it, are
:mod:`deeplab_edu.book_pages`; the Sphinx extension the build loads is :mod:`deeplab_edu.book_sphinx`.

Executed notebooks are reused while nothing they depend on changed (the notebook, every file of the
package, every chapter's source, the records in ``benchmarks/results``, the table of contents, the profile,
a learner's run or not): a second ``make book`` executes nothing.

Run it as ``python -m deeplab_edu.book [--output DIR] [--jobs N]``; one notebook alone as
``python -m deeplab_edu.book execute SOURCE EXECUTED [--timeout S] [--learner] [--no-solutions]``; the
chapters without their solutions, for a class, as ``python -m deeplab_edu.book student-copy OUT``
(``make student-copy``).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Mapping, Sequence

import yaml

from .atomic import acquire_or_wait, atomic_path, write_text_atomic
from .book_pages import SMOKE_NOTE, for_colab, for_the_page
from .choices import require_packages
from .config import COURSE_CHECKS_ENV, ENV_VAR, profile
from .records import HIDE_PATHS_ENV, REPO_ROOT, RESULTS_DIR, shown_path

__all__ = [
    "BOOK_DIR", "NOTEBOOK_DIR", "chapter_header", "chapter_headers", "course_runs_minutes", "COURSE_RUN_CHAPTERS", "NotebookRun", "NotebookFailure", "BookBuild",
    "notebooks_in_toc", "toc_notebook_sources", "cell_timeout", "reliable_client", "execute_notebook",
    "execute_notebooks", "build_book", "kernel_encryption_settings", "lab_server_settings", "write_lab_server_config",
    "make_editable_path_relative", "student_copy", "is_updated_version", "changed_questions", "STUDENT_COPY_MANIFEST",
    "chapter_workload",
]

#: The book's sources (``_config.yml``, ``_toc.yml``, its pages) in the repository.
BOOK_DIR = REPO_ROOT / "book"
#: The chapters' Jupytext ``.py`` notebooks in the repository.
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
#: The package's folder: every file in it is an input of every chapter (:func:`_dependency_key`).
PACKAGE_DIR = Path(__file__).resolve().parent
_WARNING = re.compile(r"(WARNING|ERROR|CRITICAL):")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_KERNEL_ENV = {
    # Kernels draw inline figures into the outputs: never inherit a non-interactive backend.
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    # the debugger's warning about frozen modules is noise in every executed notebook
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    # a page shows no absolute path of the machine that built it (records.shown_path)
    HIDE_PATHS_ENV: "1",
    # the hidden solutions must pass and the hidden checks run (config.course_checks)
    COURSE_CHECKS_ENV: "1",
}


# --------------------------------------------------------------------------------------------
# the table of contents
# --------------------------------------------------------------------------------------------
def notebooks_in_toc(toc_file: Path = BOOK_DIR / "_toc.yml") -> list[str]:
    """The ``file:`` entries of the table of contents (``root`` excluded), in order."""
    toc = yaml.safe_load(Path(toc_file).read_text(encoding="utf-8"))
    files: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(str(node["file"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc.get("parts", toc.get("chapters", [])))
    return files


def toc_notebook_sources(toc_file: Path = BOOK_DIR / "_toc.yml") -> list[Path]:
    """The Jupytext sources (``notebooks/NN_*.py``) the table of contents lists, in order.

    Raises:
        FileNotFoundError: naming the entry of ``toc_file`` that has no ``.py`` source.
    """
    sources = []
    for entry in notebooks_in_toc(toc_file):
        if entry.startswith("notebooks/"):
            path = REPO_ROOT / f"{entry}.py"
            if not path.is_file():
                raise FileNotFoundError(f"{toc_file}: '{entry}' has no source {path}")
            sources.append(path)
    return sources


# --------------------------------------------------------------------------------------------
# executing the notebooks
# --------------------------------------------------------------------------------------------
def cell_timeout(active_profile: str | None = None) -> int:
    """Seconds one cell may run before it is stopped and reported as stuck, per profile.

    Sized for a *busy* 2-core machine, about ten times the slowest cell measured on a quiet one:
    ``smoke`` cells take seconds (the slowest, a smoke training run, under 30 s), ``cpu`` training
    cells a few minutes, ``gpu`` ones up to hours.

    Raises:
        ValueError: ``active_profile`` is not one of :data:`~deeplab_edu.config.PROFILES`.
    """
    seconds = {"smoke": 300, "cpu": 3600, "gpu": 6 * 3600}
    name = active_profile or profile()
    if name not in seconds:
        raise ValueError(f"unknown profile {name!r}: use one of {', '.join(seconds)}")
    return seconds[name]


def _notebook_timeout(active_profile: str) -> int:
    """A last bound on a whole notebook (kernel start and shutdown included)."""
    return {"smoke": 1200, "cpu": 4 * 3600, "gpu": 48 * 3600}[active_profile]


@dataclass
class NotebookRun:
    """The outcome of executing one notebook (also written as JSON next to the ``.ipynb``).

    Attributes:
        source: the Jupytext source, relative to the repository (``notebooks/05_aspp.py``).
        executed: the executed ``.ipynb`` (outputs of every cell that ran).
        status: ``"ok"``, ``"error"`` (a cell raised), ``"timeout"`` (a cell ran past its bound),
            ``"dead"`` (the kernel died), ``"interrupted"`` (Ctrl-C or SIGTERM) or ``"crashed"`` (the
            executor itself failed).
        seconds: wall time of the whole execution.
        cell: index of the failing cell in the notebook, if any.
        line: its first line in the ``.py`` source, if any.
        message: what went wrong, with the traceback; empty when ``status == "ok"``.
        cell_seconds: ``(cell index, seconds)`` of every executed code cell.
        reused: True when an execution from an earlier build was reused.
        failed_starts: why each kernel that did not start failed, when a later one did (a run that
            never got a kernel says so in ``message``).
    """

    source: str
    executed: Path
    status: str
    seconds: float
    profile: str
    cell: int | None = None
    line: int | None = None
    message: str = ""
    cell_seconds: list[tuple[int, float]] = field(default_factory=list)
    reused: bool = False
    failed_starts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when ``status`` is ``"ok"``."""
        return self.status == "ok"

    def describe(self) -> str:
        """One paragraph naming the notebook, the cell and what happened."""
        if self.ok:
            return f"{self.source}: ok in {self.seconds:.0f} s ({self.profile} profile)"
        where = f"cell {self.cell}" if self.cell is not None else "before its first cell"
        if self.line is not None:
            where += f" (line {self.line} of {self.source})"
        return f"{self.source} failed ({self.status}) at {where} after {self.seconds:.0f} s:\n{self.message}"

    def to_json(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict, ``executed`` as a string (read back by :meth:`from_json`)."""
        data = {k: v for k, v in self.__dict__.items() if k != "executed"}
        data["executed"] = str(self.executed)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "NotebookRun":
        """A run from a :meth:`to_json` dict (``executed`` a Path again, ``cell_seconds`` tuples again)."""
        data = dict(data)
        data["executed"] = Path(data["executed"])
        data["cell_seconds"] = [tuple(x) for x in data.get("cell_seconds", [])]
        return cls(**data)


class NotebookFailure(RuntimeError):
    """One or more notebooks failed; ``runs`` holds every :class:`NotebookRun`."""

    def __init__(self, runs: Sequence[NotebookRun]) -> None:
        self.runs = list(runs)
        failed = [r for r in self.runs if not r.ok]
        super().__init__("\n\n".join(r.describe() for r in failed))


def _source_line(source_text: str, cell_source: str) -> int | None:
    """1-based line of the .py source where a code cell's first non-empty line appears: where all the
    cell's lines follow in a row (many hidden checks open with the same comment line), else the first
    line equal to that line (a cell whose lines Jupytext wrote otherwise); ``None`` when none is."""
    lines = cell_source.splitlines()
    first_index = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first_index is None:
        return None
    block, text_lines = lines[first_index:], source_text.splitlines()
    for number in range(len(text_lines) - len(block) + 1):
        if text_lines[number:number + len(block)] == block:
            return number + 1
    for number, line in enumerate(text_lines, start=1):
        if line == block[0]:
            return number
    return None


def _key_inputs() -> list[tuple[str, Path]]:
    """The files any chapter may read besides its own source, each with the name the key gives it (relative,
    the same on every machine), in a fixed order: every file of the package (its code, this module included:
    chapter 00 calls it; the presets; the explorers' JavaScript and CSS, copied into chapters 01, 02 and 04),
    ``__pycache__`` aside; every chapter's source (chapter 00 reads their headers and prose); every record
    under ``benchmarks/results`` (``load_record``, ``load_findings``); and ``book/_toc.yml`` (the chapters'
    order, read by :func:`chapter_headers`)."""
    inputs = [(f"deeplab_edu/{p.relative_to(PACKAGE_DIR).as_posix()}", p) for p in sorted(PACKAGE_DIR.rglob("*"))
              if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    inputs += [(f"notebooks/{p.name}", p) for p in sorted(NOTEBOOK_DIR.glob("*.py"))]
    inputs += [(f"benchmarks/results/{p.relative_to(RESULTS_DIR).as_posix()}", p)
               for p in sorted(RESULTS_DIR.rglob("*")) if p.is_file()]
    toc = BOOK_DIR / "_toc.yml"
    return inputs + ([("book/_toc.yml", toc)] if toc.is_file() else [])


def _dependency_key(source: Path, active_profile: str, learner: bool = False, solutions: bool = True) -> str:
    """What an executed notebook depends on: its source, the profile, how it ran (a learner's run or not,
    with the solutions or not) and every file of :func:`_key_inputs` (the package, all the chapters, the
    committed records, the table of contents; a change to any of them runs every chapter again)."""
    digest = hashlib.sha256()
    digest.update(active_profile.encode())
    if learner or not solutions:  # the book's runs keep the keys they had
        digest.update(f"learner={learner} solutions={solutions}".encode())
    digest.update(source.read_bytes())
    for name, path in _key_inputs():
        data = path.read_bytes()
        digest.update(f"\0{name}\0{len(data)}\0".encode())  # a renamed, added or removed file changes the key
        digest.update(data)
    return digest.hexdigest()


#: Seconds between two looks at the shell channel while a cell runs (see :func:`reliable_client`).
SHELL_POLL_SECONDS = 1.0


def reliable_client(nb: Any, **kwargs: Any) -> Any:
    """An ``nbclient.NotebookClient`` that cannot miss a cell's ``execute_reply``.

    **The hang this prevents** (``make book`` stuck at ``05_aspp.py`` with the kernel idle):
    nbclient waits for a cell's reply with ``await shell_socket.poll(timeout)`` on a
    ``zmq.asyncio`` socket, which wakes on the socket's *edge-triggered* file descriptor. While the
    cell runs, nbclient's stand-in for an ipywidgets ``Output`` front end (``nbclient.output_widget``)
    sends a ``comm_msg`` back to the kernel **on that same shell socket** (``sync_state``, after every
    output captured by ``with out:``). A send processes the socket's pending commands and can consume
    the readable edge of a reply that arrives at that moment; the poll then sleeps until its
    timeout (3600 s for the old ``cpu`` book) although the reply sits in the socket, and finally
    returns it as if nothing happened. The course's interactive figures used to capture their
    figure with ``with out:`` (chapter 06's explorer stalled a stock ``nbconvert --execute`` in
    about one run in three); they now set the Output's state instead
    (:func:`deeplab_edu.viz.widgets.show_figure`), and this guard stays for any other capture (a
    learner's own widget, ``print`` inside ``with out:``).

    The fix, twice: (1) look at the shell channel every :data:`SHELL_POLL_SECONDS` instead of once
    for the whole cell timeout, so that a stranded reply is read within a second whatever stranded
    it; the cell timeout still applies in full (nbclient's own logic raises ``CellTimeoutError``
    at the deadline); (2) the stand-in ``Output`` widget no longer sends its outputs back to the
    kernel (no front end needs them; the notebook's saved widget state still gets them), which
    removes the send that strands replies.

    Its ``python3`` kernel runs in this interpreter (``sys.executable``), whatever kernel of that name the
    Jupyter path (``JUPYTER_PATH``, ``~/.local/share/jupyter``) lists first.
    """
    from nbclient import NotebookClient

    class _Client(NotebookClient):
        def create_kernel_manager(self) -> Any:
            km = super().create_kernel_manager()
            if km.kernel_name == "python3":  # this interpreter's kernel (ipykernel's own spec: sys.executable), not
                # the first "python3" of the Jupyter path: an audit's JUPYTER_PATH (a JupyterHub's kernels folder, a
                # user's ~/.local one) ran every chapter in another Python, or in none ("no kernel started")
                from jupyter_client.kernelspec import KernelSpecManager

                km.kernel_spec_manager = KernelSpecManager(kernel_dirs=[])
            return km

        async def async_start_new_kernel_client(self) -> Any:
            kc = await super().async_start_new_kernel_client()
            _poll_in_slices(kc.shell_channel)
            return kc

        def on_comm_open_jupyter_widget(self, msg: dict[str, Any]) -> Any:
            widget = super().on_comm_open_jupyter_widget(msg)
            if widget is not None and hasattr(widget, "sync_state"):
                widget.sync_state = lambda: None
            return widget

    from traitlets.config import Config

    kwargs.setdefault("config", Config(kernel_encryption_settings()))
    return _Client(nb, **kwargs)


def kernel_encryption_settings() -> dict[str, Any]:
    """Jupyter configuration that has jupyter_client give every kernel CurveZMQ keys, where it can.

    ipykernel (7.x) warns on every start of a kernel whose TCP channels carry code and outputs in plain
    text; jupyter_client (8.10 on) provisions CurveZMQ keys when the kernelspec declares support
    (``KernelManager.transport_encryption = "auto"``; ipykernel's does) and pyzmq has CurveZMQ. Returns
    that setting, or ``{}`` (plain channels, and the warning) with a pyzmq without CurveZMQ, for which
    jupyter_client would refuse the setting, or an older jupyter_client. Used by the book's executor
    and, through :func:`write_lab_server_config`, by ``make lab`` and Binder.
    """
    import zmq
    from jupyter_client.manager import KernelManager

    if zmq.has("curve") and KernelManager.class_traits().get("transport_encryption") is not None:
        return {"KernelManager": {"transport_encryption": "auto"}}
    return {}


#: The contents manager every ``jupyter lab`` of the environment starts with (:mod:`deeplab_edu.lab`: Jupytext's,
#: so that opening a chapter does not mark it changed).
LAB_CONTENTS_MANAGER = "deeplab_edu.lab.CourseContentsManager"


def lab_server_settings() -> dict[str, Any]:
    """The Jupyter server settings :func:`write_lab_server_config` adds: :func:`kernel_encryption_settings` and
    the course's contents manager (:data:`LAB_CONTENTS_MANAGER`)."""
    return {**kernel_encryption_settings(), "ServerApp": {"contents_manager_class": LAB_CONTENTS_MANAGER}}


def write_lab_server_config(prefix: str | Path | None = None) -> Path:
    """Add :func:`lab_server_settings` where every ``jupyter lab`` of the environment reads them:
    ``<prefix>/etc/jupyter/jupyter_server_config.json`` (``prefix``: default ``sys.prefix``, the ``.venv``;
    the ``.d`` folder beside it only enables extensions). Other settings already in the file are kept.
    ``make setup`` and Binder's ``postBuild`` call it. Returns the file's path.

    Raises:
        ValueError: the file exists and is not a JSON object (its path named).
    """
    path = Path(sys.prefix if prefix is None else prefix) / "etc" / "jupyter" / "jupyter_server_config.json"
    config: dict[str, Any] = {}
    if path.is_file():
        try:
            config = json.loads(path.read_text(encoding="utf-8") or "{}")
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not JSON ({err}); fix or delete it") from err
        if not isinstance(config, dict):
            raise ValueError(f"{path}: not a JSON object of Jupyter settings; fix or delete it")
    for section, values in lab_server_settings().items():
        config[section] = {**config.get(section, {}), **values}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(config, indent=1) + "\n")
    return path


def make_editable_path_relative(site_packages: str | Path | None = None) -> list[Path]:
    """Rewrite the editable install's ``.pth`` lines that name this checkout by its absolute path as a
    path relative to ``site_packages`` (default: the running environment's), which Python's
    :mod:`site` (and mypy and pyright) resolve from there. ``make setup`` calls it after ``pip install -e``.

    A portability trial: Python 3.11 and 3.12 read a ``.pth`` file in the locale's encoding, so with
    ``LC_ALL=C`` an absolute path holding a non-ASCII letter (``/home/josé/...``) stopped every Python of
    the ``.venv`` at start-up ("Failed to import the site module"); the relative path of a ``.venv``
    inside the checkout, ``../../../..``, is ASCII. ``make setup`` runs it with ``python -S`` (no ``.pth`` read),
    so that it also mends a ``.pth`` the locale cannot read. Returns the files rewritten.
    """
    import sysconfig

    folder = Path(site_packages if site_packages is not None else sysconfig.get_paths()["purelib"])
    root = REPO_ROOT.resolve()
    changed = []
    for pth in sorted(folder.glob("__editable__.deeplab_edu-*.pth")):
        lines = pth.read_text(encoding="utf-8").splitlines()
        relative = [os.path.relpath(root, folder) if Path(line).is_absolute() and Path(line).resolve() == root
                    else line for line in lines]
        if relative != lines:
            write_text_atomic(pth, "\n".join(relative) + "\n")
            changed.append(pth)
    return changed


def _poll_in_slices(channel: Any, interval: float | None = None) -> None:
    """Make ``channel.get_msg(timeout=T)`` look at the socket every ``interval`` s until ``T``."""
    from queue import Empty

    original = channel.get_msg

    async def get_msg(timeout: float | None = None) -> Any:
        step = interval or SHELL_POLL_SECONDS
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            try:
                return await original(timeout=step if remaining is None else max(0.0, min(step, remaining)))
            except Empty:
                if remaining is not None and remaining <= step:
                    raise

    channel.get_msg = get_msg


def _set_environ(values: Mapping[str, str | None]) -> None:
    """Set each variable of ``values`` in this process's environment; unset those whose value is None."""
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _without_solutions(nb: Any) -> Any:
    """``nb`` (a jupytext notebook) without the cells the book hides behind a button (``hide-cell``: the
    exercises' solutions) and without the course's own checks of them (``remove-cell`` cells that run only
    where the course checks itself, under ``config.course_checks()``: without the solutions they would
    fail on names nothing defines any more); changed in place and returned."""
    def kept(cell: Any) -> bool:
        tags = cell.metadata.get("tags", [])
        return "hide-cell" not in tags and not ("remove-cell" in tags and "config.course_checks()" in cell.source)

    nb.cells = [c for c in nb.cells if kept(c)]
    return nb


#: The file in a student copy's folder that records what :func:`student_copy` wrote (a SHA-256 per
#: file: each chapter and each ``.updated`` version), so that a file a learner has since edited is told
#: from one the copy wrote; under ``"questions"``, per file, a SHA-256 of each exercise's question (see
#: :func:`changed_questions`; copies made before it was recorded have none).
STUDENT_COPY_MANIFEST = ".student-copy.json"
_QUESTIONS = "questions"  # the manifest's entry of the exercises' questions (no chapter's file name)


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_UPDATED = re.compile(r"\.updated(-[0-9]+)?\.py$")
_EXERCISE_HEADING = re.compile(r"^### Exercise ([0-9]+\.[0-9]+)\b", re.M)


def is_updated_version(path: Path) -> bool:
    """True for a chapter's new version that :func:`student_copy` wrote beside a learner's changed one
    (``NN_name.updated.py``, ``NN_name.updated-2.py``, ...)."""
    return _UPDATED.search(Path(path).name) is not None


def _question_digests(nb: Any) -> dict[str, str]:
    """``{key: SHA-256}`` of each exercise's question in ``nb`` (a jupytext notebook): the Markdown cell whose
    heading is ``### Exercise NN.k``, its whitespace collapsed (a rewrapped line is no new question)."""
    return {m.group(1): _sha256_text(" ".join(cell.source.split()))
            for cell in nb.cells if cell.cell_type == "markdown"
            for m in [_EXERCISE_HEADING.search(cell.source)] if m}


def changed_questions(out_dir: Path, updated: Path) -> list[str] | None:
    """The exercises (keys such as ``"05.3"``) whose question differs between the chapter a learner kept in
    the student copy ``out_dir`` (as :func:`student_copy` handed it out) and its new version ``updated``
    (``NN_name.updated.py``, as it wrote it), in the new version's order; an exercise added or removed is
    not counted. ``None`` when the copy's record (:data:`STUDENT_COPY_MANIFEST`) lacks the questions of either
    file: a chapter handed out before the questions were recorded."""
    try:
        manifest = json.loads((Path(out_dir) / STUDENT_COPY_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no record (or one damaged by hand)
        return None
    record = manifest.get(_QUESTIONS) if isinstance(manifest, dict) else None
    old, new = (record.get(name) if isinstance(record, dict) else None
                for name in (_UPDATED.sub(".py", Path(updated).name), Path(updated).name))
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return None
    return [key for key, digest in new.items() if key in old and old[key] != digest]


def _chapter_files() -> list[Path]:
    """The chapters ``notebooks/NN_*.py``, in order: what :func:`student_copy` hands out by default.

    Raises:
        ValueError: there are none: the package is installed without the course's repository (an audit of the
            installed wheel: student-copy handed out an empty folder, the book build wrote into site-packages).
    """
    chapters = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
    if not chapters or not (BOOK_DIR / "_toc.yml").is_file():
        raise ValueError(f"no course beside the package: {shown_path(NOTEBOOK_DIR)} holds no chapters (NN_*.py) or "
                         f"{shown_path(BOOK_DIR / '_toc.yml')} is missing; the book and the student copy are made "
                         "from a clone of the course's repository (git clone ...; make lab), not an installed copy")
    return chapters


def student_copy(out_dir: Path, sources: Iterable[Path] | None = None) -> list[Path]:
    """Write the chapters without their exercises' solutions into ``out_dir``, for a class to hand out.

    Each ``notebooks/NN_*.py`` (or each of ``sources``) is written under its own name as a
    ``py:percent`` notebook without the cells the book hides behind a button (``hide-cell``: the
    solutions, one per exercise) and without the course's own checks of those solutions (cells that
    run only under ``config.course_checks()``); every other cell, the checks' included, is kept, so
    the copy runs as the course does, also under ``python -m deeplab_edu.book execute``. The package
    still holds the reference answers its checker compares with (``python -m deeplab_edu.exercises``
    prints them, a teacher's answer key): the copy keeps the solutions out of sight, not out of reach.

    Made again into a folder a class works in (after ``git pull``, say), it never writes over a file
    a learner has changed: such a chapter is kept, and the new version is written beside it as
    ``NN_name.updated.py``, or, when a learner has changed that one too, as the first of
    ``NN_name.updated-2.py``, ``-3``, ... that nobody has changed (kept as well); a chapter a learner has changed
    whose new version is the one handed out is left as it is, with nothing beside it. What the copy wrote,
    chapters and ``.updated`` files alike, is recorded in :data:`STUDENT_COPY_MANIFEST`; a file it did not
    record (a copy made before the record existed) counts as changed when it differs. So is each exercise's
    question, so that :func:`changed_questions` names the exercises of a kept chapter whose question the new
    version changed (``check`` answers the new question).

    Returns:
        the paths written, in chapter order (an ``.updated`` file where a learner's chapter was kept;
        :func:`is_updated_version` tells them apart); a chapter left as a learner changed it, the course's
        version unchanged since it was handed out, is not among them.

    Raises:
        ValueError: ``out_dir`` is the folder of a source notebook (the copy would replace the course's
            own chapters and lose their solutions) or the repository's own folder, or it is a file; or, without
            ``sources``, the package is installed without the course's chapters.
        ImportError: jupytext (the ``course`` extra) is not installed, naming what to install.
    """
    require_packages("jupytext", what="the student copy (the chapters are Jupytext notebooks)")
    import jupytext

    out_dir = Path(out_dir).expanduser()
    chosen = _chapter_files() if sources is None else [Path(p) for p in sources]
    if any(out_dir.resolve() == src.resolve().parent for src in chosen):
        raise ValueError(f"{out_dir} holds the course's own chapters: write the student copy to another folder")
    if out_dir.resolve() == REPO_ROOT.resolve():
        raise ValueError(f"{out_dir} is the repository's own folder: write the student copy to a folder of its "
                         "own (make student-copy writes student-copy/)")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file: name a folder for the student copy")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / STUDENT_COPY_MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    except (OSError, ValueError):
        manifest = {}

    def learners(path: Path, digest: str) -> bool:
        """True when ``path`` holds what a learner wrote: neither what the copy recorded nor ``digest``."""
        if not path.is_file():
            return False
        current = _sha256_text(path.read_text(encoding="utf-8"))
        return current != digest and manifest.get(path.name) != current

    questions = manifest.setdefault(_QUESTIONS, {})
    if not isinstance(questions, dict):  # a record damaged by hand: written anew
        questions = manifest[_QUESTIONS] = {}
    written = []
    for src in chosen:
        nb = _without_solutions(jupytext.reads(src.read_text(encoding="utf-8"), fmt="py:percent"))
        text = jupytext.writes(nb, fmt="py:percent")
        target, digest = out_dir / src.name, _sha256_text(text)
        if manifest.get(target.name) == digest and learners(target, digest):  # nothing new to hand out beside it
            continue
        tries = 0
        while learners(target, digest):  # a learner's answers are in it: keep them, write the new version beside
            tries += 1
            target = out_dir / (f"{src.stem}.updated.py" if tries == 1 else f"{src.stem}.updated-{tries}.py")
        manifest[target.name] = digest
        questions[target.name] = _question_digests(nb)
        write_text_atomic(target, text)
        written.append(target)
    write_text_atomic(manifest_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return written


#: Names the temporary folder (also ``TMPDIR``) a parent gave a child of :func:`execute_notebooks`, and removes.
_GIVEN_TMP_ENV = "DEEPLAB_EDU_GIVEN_TMPDIR"

#: Seconds a new kernel has to answer its first request (it takes about one on a busy 2-core machine).
KERNEL_START_SECONDS = 60
#: Kernels started before a notebook whose kernel never answers is reported as failed.
KERNEL_START_ATTEMPTS = 3


def _run_client(nb: Any, timeout: int, active_profile: str, folder: Path,
                on_start: Callable[..., None], on_executed: Callable[..., None]) -> tuple[str, str, bool]:
    """Execute ``nb`` (in place) in one new kernel started in ``folder``: ``(status, message,
    interrupted)`` as :class:`NotebookRun` reports them; ``interrupted`` when nbclient's own
    SIGINT/SIGTERM handler shut the kernel down."""
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    client = None
    status, message = "ok", ""
    try:
        client = reliable_client(
            nb, timeout=timeout, kernel_name="python3", allow_errors=False, record_timing=True,
            resources={"metadata": {"path": str(folder)}},
            # a kernel that does not answer is reported (and another one started), not waited for
            startup_timeout=KERNEL_START_SECONDS, shutdown_kernel="immediate",
            on_cell_start=on_start, on_cell_executed=on_executed,
        )
        client.execute()
    except CellTimeoutError as err:
        status = "timeout"
        message = (f"the cell ran longer than {timeout} s (the {active_profile} profile's bound per cell; "
                   f"something is stuck or the machine is far too slow):\n{str(err)[:2000]}")
    except CellExecutionError as err:
        status, message = "error", _ANSI.sub("", str(err))  # the traceback without the terminal's colours
    except DeadKernelError as err:
        status, message = "dead", (f"the kernel died: {err} (most often it ran out of memory: close other programs "
                                   "and run one chapter at a time, --jobs 1; the README's \"Two commands\" gives "
                                   "each chapter's peak memory)")
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C while a kernel starts (nbclient's own
        return "interrupted", "", True                   # handler is not installed yet)
    except Exception as err:  # noqa: BLE001 - reported with its type, never swallowed silently
        status, message = "crashed", f"{type(err).__name__}: {err}"
    interrupted = status != "ok" and getattr(client, "_async_cleanup_kernel_future", None) is not None
    return status, message, interrupted


def execute_notebook(source: Path, executed: Path, *, timeout: int | None = None,
                     active_profile: str | None = None, learner: bool = False,
                     solutions: bool = True) -> NotebookRun:
    """Execute one Jupytext notebook in a fresh kernel; write ``executed`` and its JSON report.

    Runs in the calling process (:func:`execute_notebooks` gives each notebook its own process).
    The kernel starts in the notebook's folder with the profile of ``active_profile``.

    Args:
        source: a ``py:percent`` notebook.
        executed: the ``.ipynb`` to write (also written when a cell fails: the outputs so far).
        timeout: seconds per cell; default :func:`cell_timeout` of the profile.
        learner: run it as a learner does in JupyterLab: without the course's own checks
            (``DEEPLAB_EDU_COURSE_CHECKS`` unset, see :func:`deeplab_edu.config.course_checks`), so
            that hidden solutions and measuring cells behave as they do for a learner. The book's
            runs (the default) set it.
        solutions: False drops the cells the book hides (``hide-cell``: the exercises' solutions), and
            the course's own checks of them, before running, as for a learner who never opens them (a
            failing cell's index then counts the cells that ran; its line is the ``.py`` source's).

    Either way the kernel draws figures inline and prints no absolute path of the machine
    (``_KERNEL_ENV``), as for the book, and its temporary folder (``TMPDIR``) is one of its own,
    removed when the run ends, however it ends (the kernel is stopped at once, so its exit handlers
    do not run).

    Returns:
        the :class:`NotebookRun`; failures are reported in it, not raised.

    Raises:
        ValueError: ``executed`` does not end in ``.ipynb``, or ``active_profile`` is unknown (:func:`cell_timeout`).
        FileNotFoundError: ``source`` is not a file.
        OSError: ``executed``'s folder cannot be made or written in (checked before the kernel starts).
        ImportError: jupytext (the ``course`` extra) is not installed, naming what to install.
    """
    require_packages("jupytext", what="executing a chapter (the chapters are Jupytext notebooks)")
    import jupytext
    import nbformat

    from .atomic import check_writable

    active_profile = active_profile or profile()
    timeout = timeout or cell_timeout(active_profile)
    source = Path(source).resolve()
    executed = Path(executed)
    if executed.suffix != ".ipynb":
        raise ValueError(f"{executed}: the executed notebook must end in .ipynb (its .json report goes beside it)")
    if not source.is_file():
        raise FileNotFoundError(f"no notebook {source}")
    # before the kernel's minutes, not when the outputs are written after them
    check_writable(executed.parent, before=f"{executed}: ",
                   after="; name an executed notebook in a folder this process can write to")
    text = source.read_text(encoding="utf-8")
    nb = jupytext.reads(text, fmt="py:percent")
    if not solutions:
        _without_solutions(nb)
    # the kernel inherits this process's environment: set what it needs, and unset the course
    # checks for a learner's run (None), for the time of the run
    kernel_env: dict[str, str | None] = {**_KERNEL_ENV, ENV_VAR: active_profile}
    if learner:
        kernel_env[COURSE_CHECKS_ENV] = None
    # the kernel's temporary folder, removed after the run: the kernel is killed, not asked to exit, so its own
    # exit handlers (the smoke profile's runs folder: 125 MB in chapter 10) never run. A child of
    # execute_notebooks gets one from its parent, which removes it (not nested: short paths for sockets)
    given = os.environ.get(_GIVEN_TMP_ENV)
    owned = not (given and Path(given) == Path(tempfile.gettempdir()))
    kernel_tmp = _kernel_folder() if owned else Path(given)  # type: ignore[arg-type]
    kernel_env["TMPDIR"] = str(kernel_tmp)
    env_before = {k: os.environ.get(k) for k in kernel_env}
    current: dict[str, Any] = {"index": None, "start": None}
    cell_seconds: list[tuple[int, float]] = []

    def on_start(cell: Any, cell_index: int, **_: Any) -> None:
        current.update(index=cell_index, start=time.monotonic())

    def on_executed(cell: Any, cell_index: int, **_: Any) -> None:
        if cell.cell_type == "code" and current["start"] is not None:
            cell_seconds.append((cell_index, round(time.monotonic() - current["start"], 2)))

    status, message = "ok", ""
    failed_starts: list[str] = []
    start = time.monotonic()
    _set_environ(kernel_env)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            status, message, interrupted = _run_client(nb, timeout, active_profile, source.parent, on_start, on_executed)
            if threading.current_thread() is threading.main_thread():
                # a kernel that failed to start leaves nbclient's no-op signal handlers behind: Ctrl-C
                # between two attempts (or after the run) must reach this process again
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)
            if interrupted:
                # nbclient's own SIGINT/SIGTERM handler shut the kernel down mid-cell (what failed after it is its echo)
                status, message = "interrupted", "stopped by Ctrl-C (SIGINT) or SIGTERM: the kernel was shut down"
            if status in ("ok", "interrupted", "timeout") or current["index"] is not None:
                break
            # the kernel did not start (no cell ran): a fresh kernel, on fresh ports, usually does
            failed_starts.append(f"attempt {attempt}: {message}")
            if attempt < KERNEL_START_ATTEMPTS:
                print(f"{_shown(source)}: the kernel did not start ({message.splitlines()[0][:300]}); "
                      f"starting another", file=sys.stderr, flush=True)
        if status not in ("ok", "interrupted") and current["index"] is None and len(failed_starts) > 1:
            message = (f"no kernel started in {len(failed_starts)} attempts (each had {KERNEL_START_SECONDS} s to "
                       "answer):\n" + "\n".join(failed_starts))
    finally:
        _set_environ(env_before)
        if owned:
            shutil.rmtree(kernel_tmp, ignore_errors=True)
    seconds = time.monotonic() - start
    index = current["index"] if status != "ok" else None
    line = _source_line(text, nb.cells[index].source) if index is not None else None
    nb.metadata["deeplab_edu_build"] = {
        "source": _shown(source),
        "profile": active_profile, "status": status, "seconds": round(seconds, 1),
        "key": _dependency_key(source, active_profile, learner, solutions),
        **({"learner": learner, "solutions": solutions} if learner or not solutions else {}),
    }
    with atomic_path(executed) as tmp:  # a build killed here leaves the previous notebook, not half of one
        nbformat.write(nb, str(tmp))
    run = NotebookRun(
        source=nb.metadata["deeplab_edu_build"]["source"], executed=executed, status=status,
        seconds=round(seconds, 1), profile=active_profile, cell=index, line=line, message=message,
        # why earlier kernels failed, when a later one started (a run that got none says it in its message)
        cell_seconds=cell_seconds, failed_starts=failed_starts if status == "ok" or index is not None else [],
    )
    write_text_atomic(executed.with_suffix(".json"), json.dumps(run.to_json(), indent=1) + "\n")
    return run


def _shown(path: Path) -> str:
    """A path as messages show it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _kill_tree(pid: int) -> None:
    """Kill a process and everything it started (the kernel), by id."""
    try:
        import psutil

        procs = psutil.Process(pid).children(recursive=True) + [psutil.Process(pid)]
    except Exception:  # noqa: BLE001 - already gone
        procs = []
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except Exception:  # noqa: BLE001
            pass


def _run_in_subprocess(source: Path, executed: Path, active_profile: str, timeout: int,
                       threads: int | None, *, learner: bool = False, solutions: bool = True,
                       register: Callable[[subprocess.Popen], bool] | None = None) -> NotebookRun:
    """Execute one notebook in a child process (``python -m deeplab_edu.book execute``), bounded by
    :func:`_notebook_timeout`. ``register`` is told the child as soon as it starts and returns False
    when the caller is stopping: the child is then killed at once."""
    env = {**os.environ, ENV_VAR: active_profile}
    if threads:
        # n notebooks at a time on n*threads cores: each kernel keeps to its share
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "deeplab_edu.book", "execute", str(source), str(executed),
           "--timeout", str(timeout), *(["--learner"] if learner else []),
           *([] if solutions else ["--no-solutions"])]
    report = executed.with_suffix(".json")
    report.unlink(missing_ok=True)  # an earlier run's report is never taken for this one's
    # the temporary folder of the child and its kernel, removed here: a child killed on Ctrl-C or a time-out
    # cannot remove its own
    env["TMPDIR"] = env[_GIVEN_TMP_ENV] = tmp = str(_kernel_folder())
    try:
        return _run_child(cmd, env, source, executed, report, active_profile, register)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


#: ``dl_nb_<pid>_<random>``: a notebook's kernel's temporary folder, named after the process that removes it.
_KERNEL_FOLDER_PREFIX = "dl_nb_"
#: A kernel folder untouched for this long, whose owner no longer runs, belongs to a process that was killed.
_STALE_KERNEL_FOLDER_SECONDS = 24 * 3600


def _kernel_folder() -> Path:
    """A fresh temporary folder for a notebook's kernel, named after this process, once the folders of killed
    executions are removed (:func:`~deeplab_edu.atomic.owned_temporary_folder`: a SIGHUP or SIGKILL left the
    kernel's smoke runs, 125 MB in chapter 10)."""
    from .atomic import owned_temporary_folder

    return owned_temporary_folder(_KERNEL_FOLDER_PREFIX, abandoned_after_s=_STALE_KERNEL_FOLDER_SECONDS)


def _run_child(cmd: list[str], env: dict[str, str], source: Path, executed: Path, report: Path, active_profile: str,
               register: Callable[[subprocess.Popen], bool] | None) -> NotebookRun:
    """:func:`_run_in_subprocess`'s child: started, bounded, and read back. Its output goes to a file, not a
    pipe: a process the notebook left behind (a loader worker outside the kernel's group, a review's trial)
    would hold a pipe open, and reading it to its end waited for that process, past every time limit."""
    with tempfile.TemporaryFile() as log:
        return _run_child_into(cmd, env, source, executed, report, active_profile, register, log)


def _run_child_into(cmd: list[str], env: dict[str, str], source: Path, executed: Path, report: Path,
                    active_profile: str, register: Callable[[subprocess.Popen], bool] | None,
                    log: IO[bytes]) -> NotebookRun:
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)

    def ended() -> str:  # the child, killed if it runs: its output
        if proc.poll() is None:
            _kill_tree(proc.pid)
            proc.wait(timeout=60)
        log.seek(0)
        return log.read().decode("utf-8", errors="replace")

    if register is not None and not register(proc):
        ended()
        return NotebookRun(source=_shown(source), executed=executed, status="crashed",
                           seconds=round(time.monotonic() - start, 1), profile=active_profile,
                           message="stopped: the executor was interrupted")
    limit = _notebook_timeout(active_profile)
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        out = ended()
        return NotebookRun(source=_shown(source), executed=executed, status="timeout",
                           seconds=round(time.monotonic() - start, 1), profile=active_profile,
                           message=f"the notebook ran longer than {limit} s in all (kernel start or shutdown "
                                   f"stuck?); executor output:\n{out[-3000:]}")
    out = ended()
    if proc.returncode not in (0, 1, 130) or not report.is_file():  # 1: it failed, 130: interrupted (the report says)
        return NotebookRun(source=_shown(source), executed=executed, status="crashed",
                           seconds=round(time.monotonic() - start, 1), profile=active_profile,
                           message=f"the executor exited with {proc.returncode}:\n{out[-3000:]}")
    run = NotebookRun.from_json(json.loads(report.read_text(encoding="utf-8")))
    if not run.ok and run.cell is None and out.strip():
        # no cell ran: what the kernels and the executor printed is the only clue
        run.message += f"\nexecutor and kernel output:\n{out[-3000:]}"
    return run


def execute_notebooks(sources: Iterable[Path], out_dir: Path, *, jobs: int = 2, reuse: bool = True,
                      active_profile: str | None = None, timeout: int | None = None,
                      progress: bool = False, learner: bool = False,
                      solutions: bool = True) -> list[NotebookRun]:
    """Execute notebooks ``jobs`` at a time into ``out_dir/<name>.ipynb`` (+ ``.json`` reports).

    Args:
        sources: Jupytext notebooks (``notebooks/NN_*.py``).
        out_dir: folder for the executed notebooks.
        jobs: notebooks executed at the same time, each in its own process and kernel; with
            ``jobs > 1`` each kernel's PyTorch/OpenMP threads are limited to its share of the cores
            and the notebooks start longest first (their headers' ``cpu_minutes``); with one job
            they run in chapter order.
        reuse: keep an executed notebook from an earlier call when it succeeded and its source, the
            profile, ``learner`` / ``solutions`` and every file of the package, the chapters' sources,
            the committed records and the table of contents are unchanged (:func:`_dependency_key`).
        timeout: seconds per cell (default :func:`cell_timeout`).
        learner: run the notebooks as a learner does in JupyterLab, without the course's own checks
            (see :func:`execute_notebook`).
        solutions: False drops the cells the book hides (the exercises' solutions) before running, as for
            a learner who never opens them (see :func:`execute_notebook`).

    Returns:
        one :class:`NotebookRun` per source, in order. Failures are in the runs, not raised.

    Raises:
        ValueError: ``jobs`` is below 1.
        KeyboardInterrupt: or any other exception while waiting, raised again after the notebooks still
            running were stopped, kernels included; no queued notebook starts.
    """
    active_profile = active_profile or profile()
    timeout = timeout or cell_timeout(active_profile)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = [Path(s).resolve() for s in sources]
    if jobs < 1:
        raise ValueError(f"jobs={jobs}: need at least 1")
    from .engine.workers import available_cores  # a container's CPU quota counted (os.cpu_count is the host's)

    threads = max(1, available_cores() // jobs) if jobs > 1 else None
    runs: dict[Path, NotebookRun] = {}
    todo = []
    for source in sources:
        executed = out_dir / f"{source.stem}.ipynb"
        report = executed.with_suffix(".json")
        if reuse and executed.is_file() and report.is_file():
            import nbformat

            meta = nbformat.read(executed, as_version=4).metadata.get("deeplab_edu_build", {})
            if meta.get("status") == "ok" and meta.get("key") == _dependency_key(source, active_profile,
                                                                                 learner, solutions):
                run = NotebookRun.from_json(json.loads(report.read_text(encoding="utf-8")))
                run.reused = True
                runs[source] = run
                continue
        todo.append(source)

    running: list[subprocess.Popen] = []
    lock, stopping = threading.Lock(), threading.Event()

    def register(proc: subprocess.Popen) -> bool:
        with lock:  # a child started after the stop below is killed by its own thread
            running.append(proc)
            return not stopping.is_set()

    def one(source: Path) -> NotebookRun:
        run = _run_in_subprocess(source, out_dir / f"{source.stem}.ipynb", active_profile, timeout, threads,
                                 learner=learner, solutions=solutions, register=register)
        if progress and not stopping.is_set():
            print(("  " if run.ok else "  FAILED ") + run.describe().splitlines()[0], flush=True)
        return run

    queue, waits = _schedule(todo, jobs), _waits_for(todo, active_profile)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
    try:
        futures: dict[concurrent.futures.Future, Path] = {}
        pending: set[concurrent.futures.Future] = set()
        finished: set[Path] = set()
        while queue or pending:  # in slices: a thread blocked in a wait without end would not see Ctrl-C
            while queue and len(pending) < jobs:
                ready = next((s for s in queue if waits[s] <= finished), None if pending else queue[0])
                if ready is None:
                    break
                queue.remove(ready)
                future = pool.submit(one, ready)
                futures[future] = ready
                pending.add(future)
            done, pending = concurrent.futures.wait(pending, timeout=1.0)
            finished |= {futures[f] for f in done}
        runs.update({source: future.result() for future, source in futures.items()})
    finally:  # normally all done; after an interrupt, queued notebooks never start, running ones stop
        pool.shutdown(wait=False, cancel_futures=True)
        with lock:
            stopping.set()
            started = list(running)
        for proc in started:
            if proc.poll() is None:
                _kill_tree(proc.pid)
    return [runs[s] for s in sources]


def _schedule(todo: list[Path], jobs: int) -> list[Path]:
    """The order to start notebooks in. One at a time: chapter order, as a learner runs them (chapter
    08 trains the run chapter 09 reuses, so each takes the time its header states). Several: the
    longest first (headers' ``cpu_minutes``), so that the workers finish together, each once the
    chapters whose runs it reuses have finished (:func:`_waits_for`)."""
    return list(todo) if jobs == 1 else sorted(todo, key=lambda s: -_expected_minutes(s))


def _waits_for(todo: list[Path], active_profile: str) -> dict[Path, set[Path]]:
    """For each notebook, the notebooks of ``todo`` it must not start before: the chapters its header's
    ``reuses_runs_of`` names (chapter 09 reuses chapter 08's trained DeepLabv3). Started side by side,
    the later chapter would train the shared run itself while the earlier one waited for it, and the
    book would show the training in the wrong chapter and time the later one's measurements beside
    a training. None in the ``smoke`` profile, where every chapter trains in a folder of its own
    (:func:`~deeplab_edu.viz.training.runs_root`)."""
    if active_profile == "smoke":
        return {source: set() for source in todo}
    by_chapter = {int(s.name[:2]): s for s in todo if s.name[:2].isdigit()}
    return {source: {by_chapter[c] for c in _reuses_runs_of(_header_metadata(source)) if c in by_chapter}
            for source in todo}


def _header_metadata(source: Path) -> dict[str, Any]:
    """The ``deeplab_edu`` section of a notebook's Jupytext header (empty when absent).

    Raises:
        ImportError: jupytext (the ``course`` extra) is not installed, naming what to install.
    """
    require_packages("jupytext", what=f"reading {source.name}'s header (a Jupytext notebook)")
    import jupytext

    return dict(jupytext.read(source).metadata.get("deeplab_edu", {}))


def _reuses_runs_of(meta: Mapping[str, Any]) -> tuple[int, ...]:
    """The chapters whose trained runs a notebook reuses: its header's ``reuses_runs_of`` (``meta``,
    from :func:`_header_metadata`; none when absent)."""
    return tuple(int(c) for c in meta.get("reuses_runs_of", ()))


def chapter_headers(toc_file: Path = BOOK_DIR / "_toc.yml") -> list[dict[str, Any]]:
    """The ``deeplab_edu`` header of every chapter in the book's order (:func:`chapter_header` of
    each source the table of contents lists); chapter 00 shows them to teachers.

    Raises:
        KeyError: a chapter's header lacks a field (:func:`chapter_header`).
        ValueError: a chapter's header is inconsistent (:func:`chapter_header`).
        ImportError: jupytext (the ``course`` extra) is not installed, naming what to install (in Colab,
            the chapters' first cell installs it).
    """
    return [chapter_header(source) for source in toc_notebook_sources(toc_file)]


#: The chapters that train the ``cpu`` profile's course runs (``make course-runs``): 08, 09, and 11 with CamVid.
COURSE_RUN_CHAPTERS = (8, 9, 11)


def course_runs_minutes(with_camvid: bool = True) -> float | None:
    """The minutes the ``cpu`` profile's course runs take at most on the course's 2-core machine: the
    ``cpu_minutes`` the headers of the chapters that train them (:data:`COURSE_RUN_CHAPTERS`; 11 only
    ``with_camvid``) state, added up. ``None`` when the book lacks one of them (a teacher dropped a chapter) or
    its headers cannot be read (outside a checkout, or without jupytext)."""
    try:
        minutes = {h["chapter"]: h["cpu_minutes"] for h in chapter_headers()}
    except (OSError, KeyError, ValueError, ImportError):
        return None
    chapters = COURSE_RUN_CHAPTERS if with_camvid else COURSE_RUN_CHAPTERS[:2]
    return sum(minutes[c] for c in chapters) if all(c in minutes for c in chapters) else None


def chapter_header(source: Path) -> dict[str, Any]:
    """A chapter's ``deeplab_edu`` header: ``{"chapter", "title", "cpu_minutes", "prerequisites",
    "source"}`` (``cpu_minutes``: what the chapter takes in the ``cpu`` profile on the course's 2-core machine,
    as recorded; ``prerequisites``: the earlier chapters it builds on, a tuple of chapter numbers,
    chapter 00 aside; ``source``: the file's name).

    Raises:
        KeyError: the header lacks one of those fields (naming the file).
        ValueError: the header's ``chapter`` is not the number its file name starts with, or the prerequisites
            (or ``reuses_runs_of``) name a chapter that is not an earlier one (naming the file).
        ImportError: jupytext (the ``course`` extra) is not installed, naming what to install.
    """
    meta = _header_metadata(source)
    missing = [k for k in ("chapter", "title", "cpu_minutes", "prerequisites") if k not in meta]
    if missing:
        raise KeyError(f"{source.name}: its header's deeplab_edu section lacks {', '.join(missing)}")
    chapter, prerequisites = int(meta["chapter"]), tuple(int(c) for c in meta["prerequisites"])
    if source.name[:2].isdigit() and chapter != int(source.name[:2]):  # a header copied from another chapter
        raise ValueError(f"{source.name}: its header says chapter: {chapter}, its file name {source.name[:2]}: "
                         "make them agree (chapter 00's table and course-runs key the chapters by it)")
    for name, chapters in (("prerequisites", prerequisites), ("reuses_runs_of", _reuses_runs_of(meta))):
        if any(not 0 < c < chapter for c in chapters):
            raise ValueError(f"{source.name}: {name} {list(chapters)} must be earlier chapters (01-{chapter - 1:02d})")
    return {"chapter": chapter, "title": str(meta["title"]), "cpu_minutes": float(meta["cpu_minutes"]),
            "prerequisites": prerequisites, "source": source.name}


def chapter_workload(source: Path) -> dict[str, int]:
    """What a chapter asks of a reader besides its run time, for a teacher planning sessions:
    ``{"words": ..., "exercises": ...}``, the words of its Markdown cells (prose and formulas; code
    and outputs left out) and its exercises (its ``### Exercise`` headings).

    Raises:
        FileNotFoundError: ``source`` does not exist.
    """
    import jupytext

    nb = jupytext.reads(Path(source).read_text(encoding="utf-8"), fmt="py:percent")
    prose = [c.source for c in nb.cells if c.cell_type == "markdown"]
    return {"words": sum(len(text.split()) for text in prose),
            "exercises": sum(len(re.findall(r"^### Exercise ", text, re.M)) for text in prose)}


def _expected_minutes(source: Path) -> float:
    """The notebook header's ``cpu_minutes`` (0 when absent): used to schedule long ones first."""
    match = re.search(r"cpu_minutes:\s*([0-9.]+)", source.read_text(encoding="utf-8")[:2000])
    return float(match.group(1)) if match else 0.0


# --------------------------------------------------------------------------------------------
# building the book
# --------------------------------------------------------------------------------------------
@dataclass
class BookBuild:
    """A built book: its HTML folder, the Sphinx warnings and the notebook runs it shows."""

    html: Path
    warnings: list[str]
    runs: list[NotebookRun]
    log: Path


def _stage(stage: Path, runs: Sequence[NotebookRun]) -> None:
    """Lay out ``book/`` and the executed notebooks (as the pages show them) under ``stage``."""
    import nbformat

    if stage.exists():
        shutil.rmtree(stage)
    shutil.copytree(BOOK_DIR, stage / "book", ignore=shutil.ignore_patterns("_build", ".*", "__pycache__"))
    (stage / "notebooks").mkdir(parents=True)
    for run in runs:
        nb = nbformat.read(run.executed, as_version=4)
        nbformat.write(for_the_page(nb, run.profile), stage / "notebooks" / run.executed.name)
    if any(run.profile == "smoke" for run in runs):
        intro = stage / "book" / "intro.md"
        title, _, rest = intro.read_text(encoding="utf-8").partition("\n")
        intro.write_text(f"{title}\n\n{SMOKE_NOTE.replace('This page', 'This book', 1)}\n{rest}", encoding="utf-8")


def _publish_notebooks(html: Path, runs: Sequence[NotebookRun]) -> None:
    """Copy each executed notebook next to its page (``notebooks/05_aspp.html`` + ``.ipynb``, which
    Colab opens) and put the same copy where the page's download button points
    (``_sources/notebooks/05_aspp.ipynb``, which Sphinx wrote with the answers' outputs in it)."""
    import nbformat

    for run in runs:
        nb = nbformat.read(run.executed, as_version=4)
        nb.metadata.pop("deeplab_edu_build", None)
        published = for_colab(nb)
        nbformat.write(published, html / "notebooks" / run.executed.name)
        if (download := html / "_sources" / "notebooks" / run.executed.name).exists():
            nbformat.write(published, download)


#: Seconds the ``jupyter-book build`` of :func:`build_book` may run, per profile (it takes a few minutes).
JUPYTER_BOOK_SECONDS = {"smoke": 1200, "cpu": 1800, "gpu": 1800}
#: Seconds a book build waits for another one that builds into the same folder: that one's staging,
#: ``jupyter-book`` call (at most :data:`JUPYTER_BOOK_SECONDS`) and publishing, with a margin.
BUILD_WAIT_SECONDS = max(JUPYTER_BOOK_SECONDS.values()) + 300


@contextlib.contextmanager
def _build_lock(build: Path) -> Iterator[None]:
    """Hold ``build/build.lock`` (a :class:`filelock.FileLock`) while one build lays out ``build/source``, runs
    ``jupyter-book`` and writes ``build/html`` and ``build/build.log``: a second build into the same folder
    waits for it, saying so, at most :data:`BUILD_WAIT_SECONDS`. The holder's process id is in
    ``build/build.lock.pid`` (the lock file itself is emptied by every process that tries it).

    Raises:
        RuntimeError: another build held the folder for :data:`BUILD_WAIT_SECONDS` (naming the folder and
            that build's process id).
    """
    from filelock import FileLock, Timeout

    lock, owner = FileLock(build / "build.lock"), build / "build.lock.pid"

    def holder() -> str:
        try:
            return f"process {int(owner.read_text(encoding='utf-8'))}"
        except (OSError, ValueError):
            return "process unknown"

    try:
        acquire_or_wait(lock, BUILD_WAIT_SECONDS, f"another book build is running in {_shown(build)} ({holder()}): "
                        f"waiting for it to finish (at most {BUILD_WAIT_SECONDS / 60:.0f} min)", stream=sys.stderr)
    except Timeout:
        raise RuntimeError(f"another book build is running in {build} ({holder()}) and did not finish within "
                           f"{BUILD_WAIT_SECONDS:.0f} s: wait for it, stop it, or build into another folder "
                           "(--output DIR)") from None
    try:
        owner.write_text(f"{os.getpid()}\n", encoding="utf-8")
        yield
    finally:
        lock.release()


def build_book(output: Path = BOOK_DIR, *, executed_dir: Path | None = None, jobs: int = 2,
               quiet: bool = False, runs: Sequence[NotebookRun] | None = None,
               timeout: int | None = None, reuse: bool = True) -> BookBuild:
    """Execute the notebooks (active profile, reusing unchanged ones) and write the HTML book.

    Args:
        output: folder that gets ``_build/html`` (and ``_build/executed/<profile>``).
        executed_dir: where executed notebooks live (default ``output/_build/executed/<profile>``).
        runs: notebook runs already made (the tests' shared execution); then nothing is executed.
        jobs: notebooks executed at the same time.
        reuse: keep the executed notebooks whose inputs are unchanged: the profile, the package's files,
            the chapters' sources, the records in ``benchmarks/results`` and the table of contents
            (False: execute every one again, e.g. after adding a CamVid copy or trained runs, which
            the reuse key does not see).

    Returns:
        a :class:`BookBuild` (HTML folder, Sphinx warnings, notebook runs).

    Raises:
        ValueError: the package is installed without the course (no ``notebooks/`` chapters, no ``book/_toc.yml``).
        NotebookFailure: when a notebook fails, naming it, the cell, its line and the traceback.
        RuntimeError: when ``jupyter-book`` fails, with the end of its log; or when another build into the
            same folder (``output/_build``) did not finish within :data:`BUILD_WAIT_SECONDS` (a second build
            waits for the first, which holds ``_build/build.lock``, before it stages and runs ``jupyter-book``).
    """
    active_profile = profile()
    _chapter_files()  # a clone of the course, before anything is written (an installed copy has none)
    output = Path(output).resolve()
    build = output / "_build"
    build.mkdir(parents=True, exist_ok=True)
    if runs is None:
        executed_dir = Path(executed_dir or build / "executed" / active_profile)
        runs = execute_notebooks(toc_notebook_sources(), executed_dir, jobs=jobs, timeout=timeout,
                                 progress=not quiet, reuse=reuse)
        reused = [Path(r.source).stem[:2] for r in runs if r.reused]
        if reused and not quiet:
            print(f"  reused (unchanged since they ran): {', '.join(reused)}; --no-reuse runs them again", flush=True)
    if not all(r.ok for r in runs):
        raise NotebookFailure(runs)

    stage, html, log_file = build / "source", build / "html", build / "build.log"
    with _build_lock(build):  # one build at a time stages, runs jupyter-book and publishes in this folder
        _stage(stage, runs)
        config = yaml.safe_load((BOOK_DIR / "_config.yml").read_text(encoding="utf-8"))
        generated = stage / "book" / "_config.yml"
        generated.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        cmd = [
            str(Path(sys.executable).with_name("jupyter-book")), "build", str(stage),
            "--config", str(generated), "--toc", str(stage / "book" / "_toc.yml"),
            "--path-output", str(output),
        ]
        env = {**os.environ, ENV_VAR: active_profile}
        try:
            proc = subprocess.run(cmd, cwd=stage, env=env, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=JUPYTER_BOOK_SECONDS[active_profile])
            log, returncode = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as err:
            log = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
            raise RuntimeError(f"jupyter-book did not finish within {err.timeout} s; log so far:\n"
                               f"{log[-4000:]}") from None
        log_file.write_text(log, encoding="utf-8")
        if not quiet:
            print(log[-3000:])
        if returncode != 0:
            raise RuntimeError(f"jupyter-book failed (exit {returncode}); log in {log_file}:\n{log[-6000:]}")
        _publish_notebooks(html, runs)
    clean = _ANSI.sub("", log)
    warnings = [line for line in clean.splitlines() if _WARNING.search(line)]
    return BookBuild(html=html, warnings=warnings, runs=list(runs), log=log_file)


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (``--jobs``)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: give at least 1")
    return value


_positive_int.__name__ = "integer >= 1"  # what argparse's message calls the type

_EXIT_CODES = ("exit status: 0 built / the notebook ran, 1 a notebook (or the build) failed, 2 a wrong argument, "
               "130 interrupted (Ctrl-C; the notebooks that finished are kept and reused by the next build)")


def main(argv: list[str] | None = None) -> int:
    """``python -m deeplab_edu.book``: build the book, or execute one notebook (``execute``).

    Exit status: 0 built / the notebook ran; 1 a notebook failed (or the build); 2 a wrong argument,
    printed as one line (also a build option given to ``execute``, which would not read it); 130
    interrupted (Ctrl-C). The notebooks that finished are kept and reused by the next build."""
    from .cli import OneLineErrorParser

    parser = OneLineErrorParser(prog="python -m deeplab_edu.book", description=__doc__.splitlines()[0],
                                epilog=_EXIT_CODES)
    timeouts = ", ".join(f"{name} {cell_timeout(name)}" for name in ("smoke", "cpu", "gpu"))
    sub = parser.add_subparsers(dest="command")
    ex = sub.add_parser("execute", help="execute one notebook: write the executed .ipynb and its .json report "
                                        "(the parallel executor runs each notebook so)",
                        epilog="exit status: 0 the notebook ran, 1 a cell failed or timed out, 2 a wrong "
                               "argument, 130 interrupted (Ctrl-C)")
    ex.add_argument("source", type=Path, help="a py:percent notebook (notebooks/NN_*.py)")
    ex.add_argument("executed", type=Path, help="the .ipynb to write (its .json report goes beside it)")
    ex.add_argument("--timeout", "--cell-timeout", dest="timeout", type=int, default=None,
                    help=f"seconds one cell may run (default per profile: {timeouts})")
    ex.add_argument("--learner", action="store_true",
                    help=f"run it as a learner does in JupyterLab: the hidden solutions and measuring cells "
                         f"do not check themselves ({COURSE_CHECKS_ENV} unset)")
    ex.add_argument("--no-solutions", dest="solutions", action="store_false",
                    help="drop the hidden solutions (hide-cell) before running (with or without --learner)")
    sc = sub.add_parser("student-copy", help="write the chapters without their exercises' solutions (hide-cell) "
                                              "into a folder, for a class to hand out",
                        description="Write the chapters without their exercises' solutions (hide-cell) and the "
                                    "course's own checks of them into a folder, for a class to hand out. Made again "
                                    "into the same folder (after a git pull), it keeps every chapter a learner has "
                                    "changed and writes the new version beside it as NN_name.updated.py "
                                    "(NN_name.updated-2.py, -3, ... when a learner has changed that one too: no "
                                    "changed file is written over), and names the exercises of a kept chapter "
                                    "whose question changed.")
    sc.add_argument("out", type=Path, help="the folder to write the notebooks/NN_*.py copies to")
    build_options = [  # the build's, which 'execute' does not read: None when not given
        parser.add_argument("--output", type=Path, default=None,
                            help="folder that gets _build/html and _build/executed/<profile> (default: book/)"),
        parser.add_argument("--no-reuse", dest="reuse", action="store_false", default=None,
                            help="execute every notebook again (by default those unchanged since their last "
                                 "successful run are reused; a new CamVid copy or trained run is not a change)"),
        parser.add_argument("--jobs", type=_positive_int, default=None,
                            help="notebooks executed at the same time (default 2)"),
        parser.add_argument("--cell-timeout", type=int, default=None,
                            help=f"seconds one cell may run (default per profile: {timeouts})"),
    ]
    args = parser.parse_args(argv)
    try:  # every command reads the chapters with jupytext: one line naming it, not a traceback
        require_packages("jupytext", what=args.command or "the book's build")
    except ImportError as err:
        parser.error(str(err))
    if args.command == "execute":
        given = [a.option_strings[0] for a in build_options if getattr(args, a.dest) is not None]
        if given:  # before 'execute' they set the build, which this command does not run
            parser.error(f"{', '.join(given)} set the book's build, not 'execute': give the execute command's "
                         "own options after the notebook (python -m deeplab_edu.book execute --help)")
        # The executor's process only (one per notebook): jsonschema, which nbformat imports, loads an
        # optional checker for the "iri" string format when rfc3987-syntax is installed (it is, by
        # jupyter-events' format-nongpl extra), and that builds a Lark grammar at import: 2.8 s of
        # every notebook's start on a 2-core VM (python-jsonschema/jsonschema#1428). The notebook
        # schema has no "iri" field, so nothing this process validates changes without it.
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    if args.command == "student-copy":
        try:
            written = student_copy(args.out)
        except ValueError as err:
            parser.error(str(err))
        except OSError as err:  # a folder that cannot be written: one line, as the package's command line prints it
            print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
            return 2
        kept = [p for p in written if is_updated_version(p)]
        print(f"{len(written) - len(kept)} chapters without their solutions written to {args.out}")
        handed = {_UPDATED.sub(".py", p.name) for p in written}
        if left := [src.name for src in _chapter_files() if src.name not in handed]:  # what student_copy skipped
            print(f"{len(left)} chapter(s) a learner had changed left as they are (the course has not changed them "
                  f"since they were handed out): {', '.join(left)}")
        if kept:
            print(f"{len(kept)} chapter(s) there had been changed (a learner's answers): each was kept, and its new "
                  f"version written beside it: {', '.join(p.name for p in kept)}")
        if again := [p for p in kept if not p.name.endswith(".updated.py")]:
            print(f"the earlier new version of {len(again)} of them had been changed by a learner, or written by an "
                  f"older make student-copy (which kept no record of it): kept as well, so the newest went to "
                  f"{', '.join(p.name for p in again)}")
        for p in kept:  # a question changed under its key: check() answers the new one, not the kept chapter's
            if changed := changed_questions(args.out, p):
                print(f"exercise{'s' if len(changed) > 1 else ''} {', '.join(changed)} changed in this update: "
                      f"{'their' if len(changed) > 1 else 'its'} new version is in {p.name}; `check` answers the "
                      f"new one, not the question in {_UPDATED.sub('.py', p.name)}")
            elif changed is None:
                print(f"{_UPDATED.sub('.py', p.name)} was handed out before the copy recorded its exercises' "
                      f"questions: compare its exercises with {p.name}'s (`check` answers the new ones)")
        return 0
    try:
        active_profile = profile()
    except ValueError as err:  # a misspelt DEEPLAB_EDU_PROFILE
        parser.error(str(err))
    if args.command == "execute":
        try:
            run = execute_notebook(args.source, args.executed, timeout=args.timeout, learner=args.learner,
                                   solutions=args.solutions, active_profile=active_profile)
        except (ValueError, FileNotFoundError) as err:  # a missing notebook, an output that is no .ipynb
            parser.error(str(err))
        except OSError as err:  # a folder that cannot be written: one line, as the package's command line prints it
            print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # before or after the kernel's run (nbclient handles Ctrl-C during it)
            print(f"{args.source}: interrupted (Ctrl-C)", file=sys.stderr)
            return 130
        print(run.describe())
        return 0 if run.ok else 130 if run.status == "interrupted" else 1
    output = BOOK_DIR if args.output is None else args.output
    jobs = 2 if args.jobs is None else args.jobs
    try:
        _chapter_files()  # an installed copy: one line, before the build's first message
    except ValueError as err:
        parser.error(str(err))
    print(f"Building the book in the '{active_profile}' profile (set {ENV_VAR} to change it); "
          f"at most {args.cell_timeout or cell_timeout()} s per cell, "
          f"{'one notebook' if jobs == 1 else f'{jobs} notebooks'} at a time.")
    start = time.monotonic()
    try:
        result = build_book(output, jobs=jobs, timeout=args.cell_timeout, reuse=args.reuse is not False)
    except RuntimeError as err:  # a notebook failed (NotebookFailure), jupyter-book did, or another build held on
        print(f"\nThe book was not built: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nInterrupted (Ctrl-C): nothing is left running; the notebooks that finished are kept in "
              f"{_shown(Path(output) / '_build' / 'executed' / active_profile)} and the next build "
              "reuses them.", file=sys.stderr)
        return 130
    for w in result.warnings:
        print(w)
    print(f"The book is at {result.html / 'index.html'} ({time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
