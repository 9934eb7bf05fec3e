"""What a learner sees after Run All: no exercise's answer.

The notebook tests run the chapters where the course checks itself (``DEEPLAB_EDU_COURSE_CHECKS``:
hidden solutions print their notes, measuring cells their measurements, for the book). A learner
runs them without it, in JupyterLab, where the tags that hide cells in the book hide nothing and a
collapsed cell's output opens again when it runs. Here the chapters run as a learner's do, in the
``smoke`` profile: with the solutions (Run All), and, for a few chapters, without them (a learner who
leaves them closed; nothing may fail); two chapters at a time, each in its own process and kernel.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import BOOK_SESSION_TIMEOUT, NOTEBOOKS, REPO_ROOT

# the first test waits for every chapter's run (learner_runs): the session's bound, as for the book's runs
pytestmark = [pytest.mark.slow, pytest.mark.timeout(BOOK_SESSION_TIMEOUT)]
#: what only a hidden solution, or a measurement before any prediction, would print
_EARNED = re.compile(r"well done|✓ correct|passes the checker")
#: the chapters run again with their solutions closed (a learner who never opens them)
CLOSED = ("01", "04", "09")
#: seconds one chapter may take in all, as a learner runs it (smoke profile; the slowest takes about 45)
_CHAPTER_LIMIT = 600
#: a chapter run as a learner's: jupytext's notebook, the hidden solutions dropped when asked, executed by
#: nbclient (each cell within 300 s), written out even when a cell fails; the error goes to stderr
_AS_A_LEARNER = """
import sys
from pathlib import Path
import jupytext, nbformat
from nbclient import NotebookClient
source, executed, solutions = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
nb = jupytext.read(source)
if not solutions:
    nb.cells = [c for c in nb.cells if "hide-cell" not in c.metadata.get("tags", [])]
try:
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(source.parent)}}).execute()
finally:
    nbformat.write(nb, executed)
"""


def _failed_cell(cells: list) -> str:
    """The first cell with an error output: its index, first source lines and the error."""
    for index, cell in enumerate(cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "error":
                lines = "\n    ".join(cell.source.splitlines()[:4])
                return f"cell {index}:\n    {lines}\n{output.get('ename')}: {output.get('evalue')}"
    return ""


def _run_as_a_learner(source: Path, executed: Path, solutions: bool, children: list) -> tuple[list, str]:
    """The executed cells and, when the run failed, why: the failing cell and the error (else the
    child's output). The child process is appended to ``children`` (the fixture kills them on an interrupt)."""
    from deeplab_edu.book import _kill_tree
    from deeplab_edu.config import COURSE_CHECKS_ENV, ENV_VAR

    env = {k: v for k, v in os.environ.items() if k != COURSE_CHECKS_ENV}  # as in JupyterLab: no course checks
    env.update({ENV_VAR: "smoke", "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // 2))})  # two at a time
    proc = subprocess.Popen([sys.executable, "-c", _AS_A_LEARNER, str(source), str(executed), "1" if solutions else "0"],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    children.append(proc)
    try:
        out, _ = proc.communicate(timeout=_CHAPTER_LIMIT)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        out, _ = proc.communicate()
        return [], f"{source.name} ran longer than {_CHAPTER_LIMIT} s as a learner's run:\n{out[-3000:]}"
    if not executed.is_file():
        return [], f"{source.name}: the learner's run wrote no notebook (exit {proc.returncode}):\n{out[-3000:]}"
    cells = nbformat.read(executed, as_version=4).cells
    if proc.returncode == 0:
        return cells, ""
    return cells, f"{source.name} failed as a learner runs it, at {_failed_cell(cells) or 'no cell'}\n{out[-1500:]}"


@pytest.fixture(scope="module")
def learner_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], tuple[list, str]]:
    """Every chapter this module's selected tests need, run as a learner's, two at a time (each kernel
    with half the cores), keyed by (notebook stem, solutions run)."""
    needed = set()
    for item in request.session.items:
        if item.module is not request.module or not hasattr(item, "callspec"):
            continue
        params = item.callspec.params
        if "source" in params:
            needed.add((Path(params["source"]).stem, True))
        else:
            needed.add(([p.stem for p in NOTEBOOKS if p.name.startswith(params["chapter"] + "_")][0], False))
    folder = tmp_path_factory.mktemp("as_a_learner")
    by_stem = {p.stem: p for p in NOTEBOOKS}
    # the long chapters first (08, 09, 11: a few times the others), so that the two lanes end together
    order = sorted(needed, key=lambda key: (key[0][:2] not in ("11", "08", "09"), key))
    children: list[subprocess.Popen] = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    try:
        futures = {key: pool.submit(_run_as_a_learner, by_stem[key[0]],
                                    folder / f"{key[0]}{'' if key[1] else '_closed'}.ipynb", key[1], children)
                   for key in order}
        return {key: f.result() for key, f in futures.items()}
    finally:  # an interrupt or a timeout: queued chapters never start, running ones and their kernels stop
        pool.shutdown(wait=False, cancel_futures=True)
        from deeplab_edu.book import _kill_tree

        for proc in children:
            if proc.poll() is None:
                _kill_tree(proc.pid)


def _text(output: dict) -> str:
    data = output.get("data", {})
    return str(output.get("text", "")) + "".join(str(data.get(k, "")) for k in ("text/plain", "text/markdown"))


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_run_all_shows_a_learner_no_answer(source: Path, learner_runs: dict) -> None:
    cells, failure = learner_runs[(source.stem, True)]
    assert not failure, failure
    earned = [_text(o)[:80] for c in cells if c.cell_type == "code" for o in c.get("outputs", []) if _EARNED.search(_text(o))]
    assert not earned, f"{source.name}: Run All shows what only a solution should: {earned}"
    # a predict-then-measure cell, before any prediction, says to predict first instead of measuring
    for c in cells:
        if c.cell_type == "code" and "hide-output" in c.metadata.get("tags", []):
            shown = " ".join(_text(o) for o in c.get("outputs", []))
            assert "predict" in shown, f"{source.name}: a measuring cell shows its measurement before a prediction: {c.source[:80]!r}"


@pytest.mark.parametrize("chapter", CLOSED)
def test_a_learner_who_leaves_the_solutions_closed_runs_the_chapter(chapter: str, learner_runs: dict) -> None:
    (source,) = [p for p in NOTEBOOKS if p.name.startswith(chapter + "_")]
    cells, failure = learner_runs[(source.stem, False)]
    assert not failure, failure  # the child's output names the failing cell (nbclient's CellExecutionError)
    assert any(c.cell_type == "code" and c.get("outputs") for c in cells)
