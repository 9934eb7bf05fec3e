"""What a learner sees after Run All: no exercise's answer.

The notebook tests run the chapters where the course checks itself (``DEEPLAB_EDU_COURSE_CHECKS``:
hidden solutions print their notes, measuring cells their measurements, for the book). A learner
runs them without it, in JupyterLab, where the tags that hide cells in the book hide nothing and a
collapsed cell's output opens again when it runs. Here the chapters run as a learner's do, in the
``smoke`` profile: with the solutions (Run All), and, for a few chapters, without them (a learner who
leaves them closed; nothing may fail).
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

from conftest import NOTEBOOKS

pytestmark = pytest.mark.slow
#: what only a hidden solution, or a measurement before any prediction, would print
_EARNED = re.compile(r"well done|✓ correct|passes the checker")


def _run_as_a_learner(source: Path, monkeypatch: pytest.MonkeyPatch, *, solutions: bool) -> list:
    monkeypatch.delenv("DEEPLAB_EDU_COURSE_CHECKS", raising=False)
    nb = jupytext.read(source)
    if not solutions:
        nb.cells = [c for c in nb.cells if "hide-cell" not in c.metadata.get("tags", [])]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(source.parent)}}).execute()
    return nb.cells


def _text(output: dict) -> str:
    data = output.get("data", {})
    return str(output.get("text", "")) + "".join(str(data.get(k, "")) for k in ("text/plain", "text/markdown"))


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_run_all_shows_a_learner_no_answer(source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cells = _run_as_a_learner(source, monkeypatch, solutions=True)
    earned = [_text(o)[:80] for c in cells if c.cell_type == "code" for o in c.get("outputs", []) if _EARNED.search(_text(o))]
    assert not earned, f"{source.name}: Run All shows what only a solution should: {earned}"
    # a predict-then-measure cell, before any prediction, says to predict first instead of measuring
    for c in cells:
        if c.cell_type == "code" and "hide-output" in c.metadata.get("tags", []):
            shown = " ".join(_text(o) for o in c.get("outputs", []))
            assert "predict" in shown, f"{source.name}: a measuring cell shows its measurement before a prediction: {c.source[:80]!r}"


@pytest.mark.parametrize("chapter", ["01", "04", "09"])
def test_a_learner_who_leaves_the_solutions_closed_runs_the_chapter(chapter: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (source,) = [p for p in NOTEBOOKS if p.name.startswith(chapter + "_")]
    _run_as_a_learner(source, monkeypatch, solutions=False)  # raises CellExecutionError naming the cell
