"""What a learner sees after Run All: no exercise's answer.

The notebook tests run the chapters where the course checks itself (``DEEPLAB_EDU_COURSE_CHECKS``:
hidden solutions print their notes, measuring cells their measurements, for the book). A learner
runs them without it, in JupyterLab, where the tags that hide cells in the book hide nothing and a
collapsed cell's output opens again when it runs. Here the chapters run as a learner's do, in the
``smoke`` profile: with the solutions (Run All), and, for a few chapters, without them (a learner who
leaves them closed; nothing may fail), by the book's executor in its learner mode (two chapters at a
time, each in its own process and kernel, every cell within the profile's bound). The learner here,
alone on a laptop, has no CamVid copy (``DEEPLAB_EDU_CAMVID=none``, for every chapter): chapter 11
takes the path the book's run, which finds the shared copy, does not (chapter 11's exercises use no
CamVid image, so their answers are checked on either path).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from conftest import BOOK_SESSION_TIMEOUT, NOTEBOOKS

# the first test waits for every chapter's run (learner_runs): the session's bound, as for the book's runs
pytestmark = [pytest.mark.slow, pytest.mark.timeout(BOOK_SESSION_TIMEOUT)]
#: what only a hidden solution, or a measurement before any prediction, would print
_EARNED = re.compile(r"well done|✓ correct|passes the checker")
#: the chapters run again with their solutions closed (a learner who never opens them)
CLOSED = ("01", "04", "09")


@pytest.fixture(scope="module")
def learner_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], tuple[list, str]]:
    """Every chapter this module's selected tests need, run as a learner's by the book's executor
    (``execute_notebooks(..., learner=True)``: two at a time, each in its own process and kernel with
    half the cores), keyed by (notebook stem, solutions run): the executed cells, and why the run
    failed (the chapter, the cell, its line and the error; empty when it did not)."""
    from deeplab_edu.book import execute_notebooks

    needed: dict[bool, set[Path]] = {True: set(), False: set()}
    for item in request.session.items:
        if item.module is not request.module or not hasattr(item, "callspec"):
            continue
        params = item.callspec.params
        if "source" in params:
            needed[True].add(Path(params["source"]))
        else:
            needed[False].add(next(p for p in NOTEBOOKS if p.name.startswith(params["chapter"] + "_")))
    folder = tmp_path_factory.mktemp("as_a_learner")
    runs = {}
    for solutions, chapters in needed.items():
        sources = sorted(chapters)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DEEPLAB_EDU_CAMVID", "none")  # look for no CamVid copy (deeplab_edu.data.find_camvid)
            executed = execute_notebooks(sources, folder / ("run_all" if solutions else "closed"), jobs=2,
                                         reuse=False, active_profile="smoke", learner=True,
                                         solutions=solutions) if sources else []
        for source, run in zip(sources, executed):
            cells = nbformat.read(run.executed, as_version=4).cells if run.executed.is_file() else []
            runs[(source.stem, solutions)] = (cells, "" if run.ok else run.describe())
    return runs


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
    assert not failure, failure  # names the failing cell, its line and the error
    assert any(c.cell_type == "code" and c.get("outputs") for c in cells)
    assert not [c for c in cells if "hide-cell" in c.metadata.get("tags", [])], "the solutions ran"


@pytest.mark.parametrize("source", [p for p in NOTEBOOKS if p.name.startswith("11_")], ids=lambda p: p.stem)
def test_chapter_11_runs_without_a_camvid_copy(source: Path, learner_runs: dict) -> None:
    """CI and the book usually find the shared CamVid copy, so the book's run of chapter 11 takes the
    CamVid path; this learner, with none, takes the other (procedural scenes, the recorded CamVid run)."""
    from deeplab_edu.data import find_camvid

    with pytest.MonkeyPatch.context() as mp:  # the switch the learners' runs use makes the chapter look nowhere
        mp.setenv("DEEPLAB_EDU_CAMVID", "none")
        assert find_camvid() is None
    cells, failure = learner_runs[(source.stem, True)]
    assert not failure, failure
    assert "no CamVid copy found" in " ".join(_text(o) for c in cells if c.cell_type == "code" for o in c.get("outputs", []))
