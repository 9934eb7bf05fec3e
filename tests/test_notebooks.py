"""Every notebook in notebooks/ runs top to bottom in the smoke profile, executed once per session.

The notebooks are executed by ``deeplab_edu.book.execute_notebooks`` (nbclient, two at a time,
each cell bounded by the profile's timeout) through the session fixture ``notebook_runs``; the
book (tests/test_book.py) is built from the same executed notebooks, so nothing runs twice. A
failing notebook fails its own test, naming the cell, its line in the ``.py`` source and the
traceback. Cells that compute a meaningful, deterministic value are checked by assertions inside
the notebooks (cells tagged ``remove-cell``, hidden in the book). Run one notebook with
``make test-notebook NB=03``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import time
from pathlib import Path
from queue import Empty
from typing import Any

import jupytext
import nbformat
import pytest

from conftest import NOTEBOOKS

#: A stall (the client waiting for a reply the kernel has already sent) lasted a whole cell
#: timeout (300 s in smoke); normal turnarounds take milliseconds, a few seconds on a loaded machine.
MAX_TURNAROUND_S = 60


def _stamp(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(source: Path, notebook_runs) -> None:
    run = notebook_runs.get(source)
    if not run.ok:
        pytest.fail(run.describe(), pytrace=False)
    nb = nbformat.read(run.executed, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert all(c.execution_count for c in code), f"{source.name}: some code cells were not executed"
    # nothing on stderr: no warning a learner would read under a cell (tensors passed to imshow once printed
    # NumPy's copy-keyword deprecation, shown in the session's kernels: conftest's NotebookRuns)
    noise = [(i, "".join(o.get("text", ""))[:300]) for i, c in enumerate(nb.cells) if c.cell_type == "code"
             for o in c.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert not noise, f"{source.name}: cells print on stderr: {noise}"
    # every reply reached the executor promptly: no cell waited out its timeout (the old hang)
    for before, after in zip(code, code[1:]):
        gap = _stamp(after.metadata.execution["iopub.status.busy"]) - _stamp(before.metadata.execution["shell.execute_reply"])
        assert gap < MAX_TURNAROUND_S, (
            f"{source.name}: {gap:.0f} s passed between the kernel's reply to a cell and the next cell "
            f"(cell source: {before.source[:80]!r}): the executor missed a reply"
        )


def test_notebook_sources_are_percent_format() -> None:
    for source in NOTEBOOKS:
        head = source.read_text().splitlines()[:30]
        assert any("format_name: percent" in line for line in head), f"{source.name} is not a py:percent notebook"
        nb = jupytext.read(source)
        assert nb.cells[0].cell_type == "markdown", f"{source.name} should start with a markdown title cell"
        assert nb.cells[0].source.lstrip().startswith(f"# {source.name[:2]} "), (
            f"{source.name}: the title should start with its chapter number '{source.name[:2]}'"
        )


def test_opening_and_saving_a_chapter_in_jupyterlab_leaves_its_file_as_it_is(tmp_path: Path) -> None:
    """JupyterLab reads and writes the chapters through Jupytext's contents manager; its autosave
    rewrote every header a learner had opened (a trial: ``git status`` then showed the chapters
    modified, and ``git pull`` of the course's updates would stop on them). The sources are kept in
    the form Jupytext writes, so a save changes nothing."""
    import shutil

    from jupyter_server.services.contents.filemanager import FileContentsManager
    from jupytext.sync_contentsmanager import build_sync_jupytext_contents_manager_class

    manager = build_sync_jupytext_contents_manager_class(FileContentsManager)(root_dir=str(tmp_path))
    for source in NOTEBOOKS:
        shutil.copy(source, tmp_path / source.name)
        model = manager.get(source.name, content=True, type="notebook")
        for cell in model["content"].cells:  # as Lab runs a cell: its outputs shown (outputHidden = false)
            cell.metadata.get("jupyter", {}).pop("outputs_hidden", None)
        manager.save(model, source.name)
        assert (tmp_path / source.name).read_text() == source.read_text(), (
            f"{source.name}: running and saving it in JupyterLab rewrites it; write it as Jupytext does "
            f"(jupytext --to py:percent {source.as_posix()}), with no outputs_hidden (Lab clears it on a run)")


def test_a_collapsed_cell_shows_a_learner_no_answer() -> None:
    """JupyterLab shows a collapsed cell's first line on its bar: a solution's bar read
    ``# Solution: floor((13 + 4 - 9) / 2) + 1 = 5`` under the exercise asking for it, and a hidden
    check's bar its asserted numbers (a trial). A solution's first line is ``# Solution``; a hidden
    check's is a comment."""
    shown = []
    for source in NOTEBOOKS:
        for cell in jupytext.read(source).cells:
            if not cell.metadata.get("jupyter", {}).get("source_hidden"):
                continue
            first = cell.source.split("\n", 1)[0]
            solution = "hide-cell" in cell.metadata.get("tags", [])
            if (solution and first != "# Solution") or not first.startswith("#"):
                shown.append(f"{source.name}: {first[:80]!r}")
    assert not shown, "collapsed cells whose bar shows code or an answer:\n" + "\n".join(shown)


def test_every_exercise_has_its_cells_and_every_solution_is_hidden() -> None:
    """Each registered exercise ``NN.k`` has an answer cell (``check("NN.k"``) and a solution
    (``solved("NN.k"``) in chapter NN, and every cell that calls ``solved(`` is a solution cell,
    tagged ``hide-cell``: the student copy drops those by their tag, so an untagged one handed out its
    answer, and an exercise left out of its chapter still showed in the answer key (a contributor's trial).
    A solution prints nothing itself: a learner's Run All shows its output (a learner's trial of chapter 11)."""
    import re

    from deeplab_edu.exercises import all_exercises

    problems = []
    for source in NOTEBOOKS:
        chapter = source.name[:2]
        cells = [c for c in jupytext.reads(source.read_text(encoding="utf-8"), fmt="py:percent").cells
                 if c.cell_type == "code"]
        for cell in cells:
            if re.search(r"\bsolved\(", cell.source) and "hide-cell" not in cell.metadata.get("tags", []):
                problems.append(f"{source.name}: a cell calls solved() but is not tagged hide-cell "
                                f"(the student copy keeps it): {cell.source.splitlines()[0][:60]!r}")
            if "hide-cell" in cell.metadata.get("tags", []) and re.search(r"\b(print|display)\(", cell.source):
                # a learner's Run All shows a solution's output (chapter 11's printed 11.6's answer): pass it
                # to solved(key, answer, *notes), which prints only where the course checks itself
                problems.append(f"{source.name}: a solution cell prints (a learner's Run All shows it): "
                                f"{cell.source.splitlines()[0][:60]!r}; give the line to solved() as a note")
        code = "\n".join(c.source for c in cells)
        for key in (k for k in all_exercises() if k.startswith(chapter + ".")):
            for call in ("check", "solved"):
                if not re.search(rf'\b{call}\(\s*"{re.escape(key)}"', code):
                    problems.append(f"{source.name}: exercise {key} is registered but no cell calls "
                                    f'{call}("{key}", ...) (CONTRIBUTING.md, "Notebook conventions")')
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_helpers_line_names_every_helper_the_chapter_imports(source: Path) -> None:
    """Each chapter names the package functions it uses (its "Helpers introduced" paragraph, "from
    earlier chapters" included), as d2l does: a learner who meets a helper finds where it comes from.
    The exercise plumbing (``check``, ``get``, ``measured_and_predicted``, ``config`` and the
    exercises' constants) is exempt."""
    import ast
    import re

    text = source.read_text(encoding="utf-8")
    helpers = re.search(r"\*\*Helpers introduced:\*\*(.*?)\n(?:#\s*\n|\n|# %%)", text, re.S)
    assert helpers, f"{source.name} has no **Helpers introduced:** paragraph"
    imported = {(node.module or "", alias.name) for node in ast.walk(ast.parse(text))
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("deeplab_edu")
                for alias in node.names}
    plumbing = {"check", "get", "measured_and_predicted", "config"}
    unnamed = sorted(name for module, name in imported
                     if name not in plumbing and not module.startswith("deeplab_edu.exercises")
                     and not re.search(rf"\b{re.escape(name)}\b", helpers[1]))
    assert not unnamed, f"{source.name}: its Helpers introduced paragraph does not name {unnamed}"
    # a module imported under a name (``from deeplab_edu.viz import output_stride as vos``): a paragraph that
    # lists the module's helpers (`deeplab_edu.viz.output_stride` (`a`, `b`, ...)) names each one a learner's
    # cell uses as ``vos.<name>``; one that names the module for what it holds ("(figures ...)") covers them
    # (a contributor's trial: ``vos.new_helper`` passed unnamed). The course's own checks (remove-cell) are exempt.
    modules = _imported_modules(text)
    learner_code = "\n".join(c.source for c in jupytext.reads(text, fmt="py:percent").cells
                             if c.cell_type == "code" and "remove-cell" not in c.metadata.get("tags", []))
    unlisted = sorted({f"{alias}.{node.attr} ({modules[alias]})" for node in ast.walk(ast.parse(learner_code))
                       if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                       and (alias := node.value.id) in modules
                       and not re.search(rf"\b{re.escape(node.attr)}\b", helpers[1])
                       and (f"`{modules[alias]}` (`" in " ".join(helpers[1].replace("#", " ").split())
                            or f"`{modules[alias]}`" not in helpers[1])})
    assert not unlisted, (f"{source.name}: its Helpers introduced paragraph does not name {unlisted}: add each "
                          "to its module's list (or name the module, for figures: `deeplab_edu.viz.x` (figures))")


def _imported_modules(text: str) -> dict[str, str]:
    """``{name in the notebook: module}`` of the package's modules a chapter imports as modules
    (``from deeplab_edu.viz import output_stride as vos``), but ``config`` and the exercises."""
    import ast
    import importlib
    import importlib.util

    modules = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("deeplab_edu"):
            package = importlib.import_module(node.module or "")
            for alias in node.names:
                dotted = f"{node.module}.{alias.name}"
                if (hasattr(package, "__path__") and importlib.util.find_spec(dotted) is not None
                        and dotted not in ("deeplab_edu.config",) and not dotted.startswith("deeplab_edu.exercises")):
                    modules[alias.asname or alias.name] = dotted
    return modules


# --------------------------------------------------------------------------------------------
# the executor itself
# --------------------------------------------------------------------------------------------
def test_a_stranded_reply_is_read_within_a_slice() -> None:
    """The hang's mechanism, simulated: the socket's wake-up was lost, so a poll for the whole
    timeout sees nothing although the reply is there; polling in slices finds it in one slice."""
    from deeplab_edu.book import _poll_in_slices

    class Channel:
        def __init__(self) -> None:
            self.calls: list[float] = []

        async def get_msg(self, timeout: float | None = None) -> dict:
            self.calls.append(timeout)
            if len(self.calls) == 1:  # the first wait misses the wake-up: nothing until its end
                raise Empty
            return {"parent_header": {"msg_id": "x"}}

    channel = Channel()
    _poll_in_slices(channel, interval=0.5)
    msg = asyncio.run(channel.get_msg(timeout=3600))
    assert msg["parent_header"]["msg_id"] == "x"
    assert channel.calls == [0.5, 0.5], "each look at the socket should last one slice, not the whole timeout"

    class Silent:
        async def get_msg(self, timeout: float | None = None) -> dict:
            await asyncio.sleep(timeout)
            raise Empty

    silent = Silent()
    _poll_in_slices(silent, interval=0.05)
    with pytest.raises(Empty):  # nothing comes: the caller's timeout still ends the wait
        asyncio.run(silent.get_msg(timeout=0.2))


def _notebook(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(s) for s in sources],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )


@pytest.mark.slow
def test_widget_cells_never_stall(tmp_path: Path) -> None:
    """Cells whose ipywidgets Output captures a figure (the course's figure_widget pattern) used to
    leave the executor waiting a whole cell timeout now and then; with the fix none waits."""
    from deeplab_edu.book import execute_notebook

    setup = (
        "import ipywidgets as w, matplotlib.pyplot as plt\n"
        "from IPython.display import display\n"
        "def widget(k):\n"
        "    out = w.Output()\n"
        "    with out:\n"
        "        out.clear_output(wait=True)\n"
        "        fig, ax = plt.subplots(figsize=(1, 1)); ax.plot([0, k]); display(fig); plt.close(fig)\n"
        "    return w.VBox([w.IntSlider(value=k), out])"
    )
    cells = [setup] + [c for k in range(30) for c in (f"widget({k})", f"x = {k}")]
    source = tmp_path / "widgets.py"
    source.write_text(jupytext.writes(_notebook(*cells), fmt="py:percent"))
    run = execute_notebook(source, tmp_path / "widgets.ipynb", timeout=120, active_profile="smoke")
    assert run.ok, run.describe()
    slowest = max(s for _, s in run.cell_seconds)
    assert slowest < MAX_TURNAROUND_S, f"a widget cell took {slowest} s: the executor missed its reply"


@pytest.mark.slow
def test_course_widgets_do_not_stall_a_plain_nbclient(monkeypatch: pytest.MonkeyPatch) -> None:
    """The course's figure widgets under a stock nbclient (what ``jupyter nbconvert --execute`` and
    papermill use), not the book's guarded client: 12 widget cells. While the widgets captured their
    figure with ``with out:``, about one such cell in three waited out the whole cell timeout."""
    import time

    from nbclient import NotebookClient

    setup = (
        "import ipywidgets as w, matplotlib.pyplot as plt\n"
        "from deeplab_edu.viz.widgets import figure_widget\n"
        "import numpy as np\n"
        "def draw(k):\n"  # a figure like chapter 06's explorer: a few scenes, drawn in a moment
        "    fig, axes = plt.subplots(1, 4, figsize=(10, 3))\n"
        "    for ax in axes: ax.imshow(np.random.default_rng(k).random((128, 128, 3)))\n"
        "    return fig"
    )
    cells = [setup] + [f"figure_widget(draw, {{'k': w.IntSlider(value={k})}})" for k in range(12)]
    nb = _notebook(*cells)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # the kernel draws as for a learner
    start = time.monotonic()
    NotebookClient(nb, timeout=30, kernel_name="python3").execute()
    seconds = time.monotonic() - start
    assert seconds < 25, f"12 widget cells took {seconds:.0f} s under nbclient: a cell waited for its reply"
    outputs = [c.outputs[0]["data"] for c in nb.cells[1:]]
    assert all("application/vnd.jupyter.widget-view+json" in d for d in outputs)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    pictures = [m["state"]["outputs"] for m in state.values() if m["model_name"] == "OutputModel"]
    assert len(pictures) == 12 and all("image/png" in p[0]["data"] for p in pictures)  # each shows its figure


def test_a_hidden_check_that_fails_stops_the_book_but_not_a_learners_run(tmp_path: Path) -> None:
    """A laptop with another CPU can train to slightly different numbers than the runs a chapter's text was
    written from: a hidden check of the text (``config.text_checks()``) that does not hold fails the book's
    run, and in a learner's run prints which check failed while Run All goes on to the next cell."""
    from deeplab_edu.book import execute_notebook

    nb = _notebook("from deeplab_edu import config\nmiou = 0.29",
                   "with config.text_checks():\n    assert miou > 0.3, miou\n    print('not reached')",
                   "print('the chapter went on')")
    nb.cells[1].metadata["tags"] = ["remove-cell"]
    source = tmp_path / "chapter.py"
    source.write_text(jupytext.writes(nb, fmt="py:percent"))
    book = execute_notebook(source, tmp_path / "book.ipynb", active_profile="smoke")
    assert not book.ok and book.cell == 1 and "AssertionError" in book.message
    learner = execute_notebook(source, tmp_path / "learner.ipynb", active_profile="smoke", learner=True)
    assert learner.ok, learner.describe()
    printed = "".join(o.get("text", "") for c in nbformat.read(learner.executed, as_version=4).cells
                      for o in c.get("outputs", []))
    assert "`assert miou > 0.3, miou` does not hold (0.29)" in printed and "not reached" not in printed
    assert "the chapter went on" in printed


def test_every_hidden_check_of_a_chapters_text_goes_through_text_checks() -> None:
    """A hidden cell's ``assert`` outside ``config.text_checks()`` (or the exercises' ``config.course_checks()``
    guard) would stop a learner's Run All wherever their machine's numbers differ a little from the text's."""
    for source in NOTEBOOKS:
        for cell in jupytext.reads(source.read_text(), fmt="py:percent").cells:
            if cell.cell_type != "code" or "remove-cell" not in cell.metadata.get("tags", []):
                continue
            if "assert" in cell.source and "config.course_checks()" not in cell.source:
                code = [line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")]
                assert code[0] == "with config.text_checks():" and all(line.startswith("    ") for line in code[1:]), (
                    f"{source.name}: a hidden check outside `with config.text_checks():`\n{cell.source[:300]}")


@pytest.mark.slow
def test_failures_name_the_notebook_cell_and_line(tmp_path: Path) -> None:
    """Also: a process the notebook forked, outside the kernel's group (as a loader worker is), keeps the
    executor's output open; the time-out does not wait for it (it waited for its end, a review's trial)."""
    from deeplab_edu.book import execute_notebooks

    source = tmp_path / "broken.py"
    forks = "import os\nif os.fork() == 0:\n    os.setsid()\n    os.system('sleep 60')\n    os._exit(0)\nx = 1"
    source.write_text(jupytext.writes(_notebook(forks, "import time\ntime.sleep(30)", "y = 2"), fmt="py:percent"))
    error = tmp_path / "error.py"
    error.write_text(jupytext.writes(_notebook("x = 1", "raise ValueError('no such file: scene.png')"), fmt="py:percent"))
    start = time.monotonic()
    stuck, failed = execute_notebooks([source, error], tmp_path / "out", jobs=2, timeout=3, active_profile="smoke")
    assert time.monotonic() - start < 45, "the executor waited for the notebook's forked process (60 s)"
    assert stuck.status == "timeout" and stuck.cell == 1
    assert "3 s" in stuck.message and "time.sleep(30)" in stuck.message
    assert stuck.line == source.read_text().splitlines().index("import time") + 1
    assert "line" in stuck.describe() and "broken.py" in stuck.describe()
    assert failed.status == "error" and failed.cell == 1
    assert "ValueError" in failed.message and "scene.png" in failed.message
    report = json.loads((tmp_path / "out" / "error.json").read_text())
    assert report["status"] == "error" and report["cell"] == 1


def test_a_kernel_leaves_no_temporary_files_behind(tmp_path: Path) -> None:
    """A learner's trial (stop 59): every smoke run of chapter 10 left its runs folder (125 MB) in /tmp,
    since the book kills its kernels and the folder's exit handler never ran. The kernel's
    temporary folder is now one of the run's own, removed when the run ends, however it ends."""
    import tempfile

    from deeplab_edu.book import execute_notebook

    marker = tmp_path / "kernel_tmp.txt"
    cell = ("import atexit, tempfile, pathlib\n"
            "from deeplab_edu.viz.training import runs_root\n"
            "folder = runs_root('smoke')\n"
            "(folder / 'last.pt').write_bytes(b'0' * 1000)\n"
            f"pathlib.Path({str(marker)!r}).write_text(str(folder) + '\\n' + tempfile.gettempdir())")
    for code in (cell, cell + "\nraise RuntimeError('a failing cell')"):
        source = tmp_path / "temporary.py"
        source.write_text(jupytext.writes(_notebook(code), fmt="py:percent"))
        run = execute_notebook(source, tmp_path / "temporary.ipynb", active_profile="smoke")
        assert run.ok == ("raise" not in code), run.describe()
        folder, kernel_tmp = (Path(line) for line in marker.read_text().splitlines())
        assert folder.parent == kernel_tmp and kernel_tmp.parent == Path(tempfile.gettempdir())
        assert not kernel_tmp.exists(), f"{kernel_tmp} was left behind"


def _kernels_that_never_answer(monkeypatch: pytest.MonkeyPatch, failures: int,
                               then: BaseException | None = None) -> list[int]:
    """Make the first ``failures`` kernels of ``execute_notebook`` fail to start as the one of a CI run
    did (``RuntimeError: Kernel didn't respond in 120 seconds``, from jupyter_client's wait for the
    first reply); later ones start for real, or raise ``then`` (an interrupt) as they start. Returns the
    list of attempts made, filled as they are."""
    import deeplab_edu.book as book

    attempts: list[int] = []
    real = book.reliable_client

    class _Silent:
        def execute(self) -> None:
            raise RuntimeError(f"Kernel didn't respond in {book.KERNEL_START_SECONDS} seconds")

    class _Interrupted:
        def execute(self) -> None:
            raise then  # type: ignore[misc]

    def client(nb: Any, **kwargs: Any) -> Any:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= failures:
            return _Silent()
        return _Interrupted() if then is not None else real(nb, **kwargs)

    monkeypatch.setattr(book, "reliable_client", client)
    return attempts


@pytest.mark.slow
def test_a_kernel_that_never_answers_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that does not answer its first request is given up after ``KERNEL_START_SECONDS``
    and another started; the run says what happened to the first."""
    from deeplab_edu.book import execute_notebook

    attempts = _kernels_that_never_answer(monkeypatch, failures=1)
    source = tmp_path / "chapter.py"
    source.write_text(jupytext.writes(_notebook("print('ran')"), fmt="py:percent"))
    run = execute_notebook(source, tmp_path / "chapter.ipynb", active_profile="smoke")
    assert run.ok, run.describe()
    assert attempts == [1, 2]
    assert len(run.failed_starts) == 1 and "didn't respond" in run.failed_starts[0]
    assert json.loads((tmp_path / "chapter.json").read_text())["failed_starts"] == run.failed_starts


@pytest.mark.slow
def test_a_replaced_kernel_is_recorded_when_a_cell_then_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deeplab_edu.book import execute_notebook

    _kernels_that_never_answer(monkeypatch, failures=1)
    source = tmp_path / "chapter.py"
    source.write_text(jupytext.writes(_notebook("x = 1", "raise ValueError('bad')"), fmt="py:percent"))
    run = execute_notebook(source, tmp_path / "chapter.ipynb", active_profile="smoke")
    assert run.status == "error" and run.cell == 1 and "ValueError" in run.message
    assert len(run.failed_starts) == 1 and "didn't respond" in run.failed_starts[0]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), asyncio.CancelledError()], ids=["sigint", "cancelled"])
def test_an_interrupt_while_a_kernel_starts_is_reported_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               interrupt: BaseException) -> None:
    """Ctrl-C while a (replacement) kernel starts: reported as an interrupt, with no further attempt,
    and not as kernels that never started (a review); this process's signal handlers are as before."""
    import signal

    from deeplab_edu.book import execute_notebook

    before = signal.getsignal(signal.SIGINT)
    attempts = _kernels_that_never_answer(monkeypatch, failures=2, then=interrupt)
    source = tmp_path / "chapter.py"
    source.write_text(jupytext.writes(_notebook("print('ran')"), fmt="py:percent"))
    run = execute_notebook(source, tmp_path / "chapter.ipynb", active_profile="smoke")
    assert run.status == "interrupted" and "Ctrl-C" in run.message and "no kernel started" not in run.message
    assert attempts == [1, 2, 3] and signal.getsignal(signal.SIGINT) is before


def test_a_notebook_whose_kernels_never_answer_fails_naming_every_attempt(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from deeplab_edu.book import KERNEL_START_ATTEMPTS, execute_notebook

    attempts = _kernels_that_never_answer(monkeypatch, failures=KERNEL_START_ATTEMPTS)
    source = tmp_path / "chapter.py"
    source.write_text(jupytext.writes(_notebook("print('ran')"), fmt="py:percent"))
    run = execute_notebook(source, tmp_path / "chapter.ipynb", active_profile="smoke")
    assert run.status == "crashed" and run.cell is None and len(attempts) == KERNEL_START_ATTEMPTS
    assert f"no kernel started in {KERNEL_START_ATTEMPTS} attempts" in run.message
    assert run.message.count("didn't respond") == KERNEL_START_ATTEMPTS
    assert "before its first cell" in run.describe() and "chapter.py" in run.describe()


@pytest.mark.slow
def test_a_learners_run_has_no_course_checks_and_can_leave_the_solutions_out(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``learner=True`` runs a chapter as JupyterLab does (the course checks unset, even when this
    process has them), ``solutions=False`` drops the hidden solutions; the book's runs keep both;
    the two kinds of run never reuse each other's notebooks."""
    from deeplab_edu.book import _dependency_key, execute_notebook
    from deeplab_edu.config import COURSE_CHECKS_ENV

    nb = _notebook("import os\nprint('checks:', os.environ.get('DEEPLAB_EDU_COURSE_CHECKS'))", "print('the solution ran')")
    nb.cells[1].metadata["tags"] = ["hide-cell"]
    source = tmp_path / "chapter.py"
    source.write_text(jupytext.writes(nb, fmt="py:percent"))
    monkeypatch.setenv(COURSE_CHECKS_ENV, "1")

    def printed(run: Any) -> str:
        assert run.ok, run.describe()
        cells = nbformat.read(run.executed, as_version=4).cells
        return "".join(o.get("text", "") for c in cells for o in c.get("outputs", []))

    book = printed(execute_notebook(source, tmp_path / "book.ipynb", active_profile="smoke"))
    learner = printed(execute_notebook(source, tmp_path / "learner.ipynb", active_profile="smoke", learner=True,
                                       solutions=False))
    assert "checks: 1" in book and "the solution ran" in book
    assert "checks: None" in learner and "the solution ran" not in learner
    assert os.environ[COURSE_CHECKS_ENV] == "1"  # this process's environment is as it was
    keys = {_dependency_key(source, "smoke", *mode) for mode in ((False, True), (True, True), (True, False))}
    assert len(keys) == 3


@pytest.mark.slow
def test_an_interrupt_stops_the_running_notebooks_and_starts_no_more(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during ``make book`` (or a test's time-out): the notebook running is killed with its
    kernel, the queued one never starts, and the interrupt reaches the caller at once; the killed
    child's temporary folder is removed all the same (stop 59)."""
    import _thread
    import tempfile
    import threading
    import time

    import psutil

    from deeplab_edu.book import execute_notebooks

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))  # this process's...
    monkeypatch.setenv("TMPDIR", str(temporary))  # ...and the children's

    sources = []
    for name in ("a_slow", "b_queued"):
        sources.append(tmp_path / f"{name}.py")
        sources[-1].write_text(jupytext.writes(_notebook("import time\ntime.sleep(120)"), fmt="py:percent"))
    threading.Timer(8, _thread.interrupt_main).start()  # after the first kernel started
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        execute_notebooks(sources, tmp_path / "out", jobs=1, reuse=False, active_profile="smoke")
    assert time.monotonic() - start < 40
    time.sleep(1)
    left = [" ".join(c.cmdline()) for c in psutil.Process().children(recursive=True) if c.is_running()
            and c.status() != psutil.STATUS_ZOMBIE]
    assert not [c for c in left if "deeplab_edu.book" in c or "ipykernel" in c], left
    assert not (tmp_path / "out" / "b_queued.json").exists()
    deadline = time.monotonic() + 10  # the thread that ran the child removes its folder when the child is gone
    while any(temporary.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not list(temporary.iterdir()), list(temporary.iterdir())


@pytest.mark.slow
def test_the_execute_command_exits_non_zero_when_the_notebook_fails(tmp_path: Path) -> None:
    """``python -m deeplab_edu.book execute`` for scripts: exit 1 when a cell fails (the error, without the
    terminal's colour codes, in its output and report), 2 with a one-line error for a wrong argument; the
    kernel's channels are encrypted."""
    import subprocess
    import sys

    source = tmp_path / "bad.py"
    source.write_text(jupytext.writes(_notebook("x = 1", "1 / 0"), fmt="py:percent"))
    env = {**os.environ, "DEEPLAB_EDU_PROFILE": "smoke"}

    def execute(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "deeplab_edu.book", "execute", *args], env=env, text=True,
                              capture_output=True, timeout=300)

    failed = execute(str(source), str(tmp_path / "bad.ipynb"))
    assert failed.returncode == 1 and "ZeroDivisionError" in failed.stdout, failed.stdout + failed.stderr
    report = json.loads((tmp_path / "bad.json").read_text())
    assert report["status"] == "error" and "\x1b[" not in report["message"]
    # the kernel's channels carry CurveZMQ keys: ipykernel's plain-text warning is not in the output
    assert "without encryption" not in failed.stderr + failed.stdout, failed.stderr
    wrong = execute(str(source), str(tmp_path / "bad.json"))
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert "bad.json: the executed notebook must end in .ipynb" in wrong.stderr, wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1, wrong.stderr  # one line, not the usage block


@pytest.mark.parametrize("argv, message", [
    (["--cell-timeout", "1", "execute", "a.py", "a.ipynb"], "--cell-timeout set the book's build, not 'execute'"),
    (["--jobs", "3", "--no-reuse", "execute", "a.py", "a.ipynb"], "--no-reuse, --jobs set the book's build"),
    (["--jobs", "0"], "argument --jobs: 0: give at least 1"),
])
def test_the_book_command_refuses_what_it_would_not_use(argv: list[str], message: str,
                                                        capsys: pytest.CaptureFixture) -> None:
    """A build option before ``execute`` (which runs no build) would be dropped without a word."""
    from deeplab_edu.book import main

    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_the_execute_command_exits_130_when_interrupted(tmp_path: Path) -> None:
    """Ctrl-C while a cell runs: exit 130, the report says "interrupted", no kernel is left behind."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    started = tmp_path / "started"
    source = tmp_path / "slow.py"
    source.write_text(jupytext.writes(_notebook(f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\n"
                                                "time.sleep(120)"), fmt="py:percent"))
    proc = subprocess.Popen([sys.executable, "-m", "deeplab_edu.book", "execute", str(source),
                             str(tmp_path / "slow.ipynb")], env={**os.environ, "DEEPLAB_EDU_PROFILE": "smoke"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the cell did not start"
            time.sleep(0.2)
        kernels = [c for c in psutil.Process(proc.pid).children(recursive=True) if "ipykernel" in " ".join(c.cmdline())]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert json.loads((tmp_path / "slow.json").read_text())["status"] == "interrupted"
    psutil.wait_procs(kernels, timeout=10)
    assert kernels and not [k for k in kernels if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]


def test_a_failing_cell_is_located_by_all_its_lines() -> None:
    """Hidden checks open with the same comment line: the failing one is found by its whole source."""
    from deeplab_edu.book import _source_line

    check = "# The course's own check (hidden in the book; a learner need not open it)."
    text = "\n".join(["# %%", check, "assert a == 1", "", "# %%", check, "assert b == 2", ""])
    assert _source_line(text, f"{check}\nassert b == 2") == 6
    assert _source_line(text, f"\n{check}\nassert a == 1") == 2
    assert _source_line("# %% [markdown]\n# # Title", "# Title") is None  # a markdown cell: its first line only
    assert _source_line(text, "   \n") is None


@pytest.mark.slow
def test_the_chapters_kernel_is_this_interpreter_whatever_the_jupyter_path(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit: the executor started the first kernel named "python3" of the Jupyter path, so a JUPYTER_PATH
    (a JupyterHub's kernels folder, a user's ~/.local one) ran every chapter in another Python, here none."""
    import sys

    from deeplab_edu.book import execute_notebook

    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [str(tmp_path / "no-python"), "-m", "ipykernel_launcher",
                                                           "-f", "{connection_file}"],
                                                  "display_name": "another Python", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    source = tmp_path / "which.py"
    source.write_text(jupytext.writes(_notebook("import sys\nprint(sys.executable)"), fmt="py:percent"))
    run = execute_notebook(source, tmp_path / "which.ipynb", timeout=120, active_profile="smoke")
    assert run.ok, run.describe()
    printed = nbformat.read(tmp_path / "which.ipynb", as_version=4).cells[0].outputs[0]["text"].strip()
    assert printed == sys.executable


def _helpers_paragraph_names(paragraph: str) -> list[str]:
    """The names a "Helpers introduced" paragraph puts in backticks, each as the chapter would spell it: a
    dotted path's last part before any call (``build_model("deeplabv3plus", ...)``: ``build_model``), a
    quoted string's text (``"deeplabv1"``). Left out: a name given as another chapter's (``chapter 08's
    `describe_record```, what a helper is built on) or as working behind another (```kernel_maps` behind``)."""
    import re

    paragraph = " ".join(paragraph.replace("#", " ").split())
    names = []
    for found in re.finditer(r"`([^`]+)`", paragraph):
        before, after = paragraph[:found.start()], paragraph[found.end():]
        if re.search(r"chapter \d\d's $", before) or after.startswith(" behind "):
            continue
        span = found[1].strip()
        quoted = re.fullmatch(r'"([^"]+)"', span)
        dotted = re.match(r"[A-Za-z_][\w.]*", span)
        if quoted or dotted:
            names.append(quoted[1] if quoted else dotted[0].rstrip(".").split(".")[-1])  # type: ignore[index]
    return names


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_helpers_line_names_only_helpers_the_chapter_uses(source: Path) -> None:
    """The reverse of the check above: every name in backticks in a chapter's "Helpers introduced"
    paragraph appears in the chapter's code, or in backticks in its prose, elsewhere (an audit: chapter 05
    named `ASPPConv`, chapter 10 `seed_p_value`, `SHORE`, `BOAT` and `CAR`, chapter 00 `prediction_made`,
    none of them used there). Names the paragraph gives as another chapter's, or as working behind another
    helper, are exempt (:func:`_helpers_paragraph_names`)."""
    import re

    text = source.read_text(encoding="utf-8")
    helpers = re.search(r"\*\*Helpers introduced:\*\*(.*?)\n(?:#\s*\n|\n|# %%)", text, re.S)
    assert helpers, f"{source.name} has no **Helpers introduced:** paragraph"
    cells = jupytext.reads(text[:helpers.start(1)] + text[helpers.end(1):], fmt="py:percent").cells
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    quoted = "\n".join(span for c in cells if c.cell_type == "markdown" for span in re.findall(r"`([^`]+)`", c.source))
    unused = sorted({name for name in _helpers_paragraph_names(helpers[1])
                     if not re.search(rf"(?<!\w){re.escape(name)}(?!\w)", code + "\n" + quoted)})
    assert not unused, (f"{source.name}: its Helpers introduced paragraph names {unused}, which the chapter never "
                        "uses: drop them, or say which chapter they belong to")
