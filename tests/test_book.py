"""The book: its table of contents lists every notebook, and it builds without warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import NOTEBOOKS, REPO_ROOT
from deeplab_edu.book import build_book, notebooks_in_toc


def test_toc_lists_every_notebook_in_order() -> None:
    toc = [f for f in notebooks_in_toc() if f.startswith("notebooks/")]
    expected = [f"notebooks/{p.stem}" for p in NOTEBOOKS]
    missing = sorted(set(expected) - set(toc))
    assert not missing, f"add these notebooks to book/_toc.yml: {missing}"
    stale = sorted(set(toc) - set(expected))
    assert not stale, f"book/_toc.yml names notebooks that do not exist: {stale}"
    assert toc == expected, "book/_toc.yml should list the notebooks in their numbered order"


def test_bibliography_has_the_papers() -> None:
    bib = (REPO_ROOT / "book" / "references.bib").read_text()
    for key in ("chen2015deeplab", "chen2018deeplabv2", "chen2017deeplabv3", "chen2018deeplabv3plus",
                "dumoulin2016guide", "araujo2019receptive"):
        assert f"{{{key}," in bib, f"references.bib lacks {key}"


@pytest.mark.book
@pytest.mark.slow
def test_book_builds_without_warnings(tmp_path: Path) -> None:
    html, warnings = build_book(tmp_path, quiet=True)
    assert not warnings, "Sphinx warnings (broken references, missing files, failed cells):\n" + "\n".join(warnings)
    assert (html / "index.html").is_file()
    for nb in NOTEBOOKS:
        page = html / "notebooks" / f"{nb.stem}.html"
        assert page.is_file(), f"the book has no page for {nb.name}"
        draws = any(s in nb.read_text() for s in ("plt.show(", "plt.subplots(", "deeplab_edu.viz"))
        if draws:
            assert "<img" in page.read_text(), f"{nb.name} draws figures but its book page has none"
    assert (html / "book" / "references.html").is_file()
