"""The book: built once per session from the executed notebooks (fixture ``book_build``), without
warnings, offline, with rendered tables, working launch links, an API reference and a glossary."""

from __future__ import annotations

import ast
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import pytest

from conftest import NOTEBOOKS, REPO_ROOT, public_modules
from deeplab_edu import book, book_sphinx
from deeplab_edu.book import notebooks_in_toc

PACKAGE = REPO_ROOT / "deeplab_edu"
GLOSSARY_TERMS = ("atrous rate", "output stride", "multi-grid", "ASPP", "image pooling", "decoder",
                  "trimap", "mIoU", "dense CRF")


def test_toc_lists_every_notebook_in_order() -> None:
    toc = [f for f in notebooks_in_toc() if f.startswith("notebooks/")]
    expected = [f"notebooks/{p.stem}" for p in NOTEBOOKS]
    missing = sorted(set(expected) - set(toc))
    assert not missing, f"add these notebooks to book/_toc.yml: {missing}"
    stale = sorted(set(toc) - set(expected))
    assert not stale, f"book/_toc.yml names notebooks that do not exist: {stale}"
    assert toc == expected, "book/_toc.yml should list the notebooks in their numbered order"
    assert {"book/glossary", "book/api", "book/references"} <= set(notebooks_in_toc())


def test_bibliography_has_the_papers() -> None:
    bib = (REPO_ROOT / "book" / "references.bib").read_text()
    for key in ("chen2015deeplab", "chen2018deeplabv2", "chen2017deeplabv3", "chen2018deeplabv3plus",
                "dumoulin2016guide", "araujo2019receptive"):
        assert f"{{{key}," in bib, f"references.bib lacks {key}"


def test_every_cited_key_is_in_the_bibliography() -> None:
    """A contributor's trial: a misspelt {cite:p} key passed `make check` (only the book build's Sphinx warning,
    minutes later, would name it). Every key cited by a chapter or a page of the book is in references.bib."""
    bib = set(re.findall(r"^@\w+\{([^,\s]+),", (REPO_ROOT / "book" / "references.bib").read_text(), re.M))
    sources = [*NOTEBOOKS, *sorted((REPO_ROOT / "book").glob("*.md"))]
    cited = {(path.name, key.strip()) for path in sources
             for keys in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", path.read_text(encoding="utf-8"))
             for key in keys.split(",")}
    assert len(cited) > 20, cited  # the course cites its papers
    unknown = sorted(f"{name}: {key}" for name, key in cited if key not in bib)
    assert not unknown, f"cited but not in book/references.bib: {unknown}"


def test_api_reference_lists_every_module() -> None:
    api = (REPO_ROOT / "book" / "api.md").read_text()
    listed = set(re.findall(r"^\.\. automodule:: (\S+)$", api, re.M))
    missing = sorted(set(public_modules()) - listed)
    assert not missing, f"book/api.md should document these modules: {missing}"


def test_api_reference_documents_each_name_once() -> None:
    """A book reader's trial: the index listed RunFolderError twice, and PermutohedralLattice, boundary_band,
    shown_path and figure_widget under two or three modules each: a module whose ``__all__`` names a class or
    function of another module documents it again (autodoc follows ``__all__``). Only a package whose
    entry in book/api.md ignores its ``__all__`` (``:ignore-module-all:``) may gather its modules' names."""
    import importlib
    import inspect

    api = (REPO_ROOT / "book" / "api.md").read_text()
    gathering = set(re.findall(r"^\.\. automodule:: (\S+)\n   :ignore-module-all:$", api, re.M))
    documented, again = public_modules(), []  # a private module's names (exercises._core) are documented once
    for name in documented:
        if name in gathering:
            continue
        module = importlib.import_module(name)
        for member in getattr(module, "__all__", []):
            obj = getattr(module, member)
            home = getattr(obj, "__module__", name) if inspect.isclass(obj) or inspect.isfunction(obj) else name
            if home != name and home in documented:
                again.append(f"{name}.{member} (defined in {home})")
    assert not again, f"documented twice in the API reference: {again}"
    # names left out of an __all__ stay importable where older chapters (and student copies) import them
    from deeplab_edu import crf_eval, metrics
    from deeplab_edu.engine import runs, trainer

    assert crf_eval.boundary_band is metrics.boundary_band and trainer.RunFolderError is runs.RunFolderError


def test_attribute_docs_are_read_as_prose_not_type_and_description() -> None:
    # napoleon reads "#: Random scale factors ... (DeepLabv3 sec. 4.1: 0.5 to 2.0)." as a "Type" field
    # "0.5 to 2.0)." and a description; the book's extension keeps each such line whole
    import importlib
    import inspect

    from sphinx.ext.napoleon import Config
    from sphinx.ext.napoleon.docstring import GoogleDocstring
    from sphinx.pycode import ModuleAnalyzer

    def parsed(lines: list[str], what: str, name: str) -> str:
        lines = list(lines)
        book_sphinx._attribute_doc_has_no_type(None, what, name, None, None, lines)
        return "\n".join(GoogleDocstring(lines, Config(), what=what, name=name).lines())

    docs: list[tuple[str, list[str], str]] = []
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        for key, lines in ModuleAnalyzer.for_module(module_name).find_attr_docs().items():
            docs.append((".".join(p for p in (module_name, *key) if p), list(lines), "attribute"))
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module_name:
                docs += [(f"{module_name}.{cls_name}.{name}", inspect.cleandoc(member.__doc__).splitlines(), "property")
                         for name, member in vars(cls).items() if isinstance(member, property) and member.__doc__]
    assert len(docs) > 100, len(docs)
    # the case the mend is for: napoleon alone splits this line
    scale_range = next(lines for name, lines, _ in docs if name.endswith("TrainConfig.scale_range"))
    assert ":type:" in "\n".join(GoogleDocstring(list(scale_range), Config(), what="attribute", name="x").lines())
    typed = [name for name, lines, what in docs if ":type:" in parsed(lines, what, name)]
    assert not typed, f"napoleon would show part of these attributes' text as their type: {typed}"


# --------------------------------------------------------------------------------------------
# the built book
# --------------------------------------------------------------------------------------------
class _Resources(HTMLParser):
    """What a page loads (scripts, stylesheets, images, fonts) and where its links go."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "video", "audio") and a.get("src"):
            self.loads.append(a["src"])
        if tag == "link" and a.get("href") and a.get("rel") not in ("canonical",):
            self.loads.append(a["href"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])


def _pages(html: Path) -> list[Path]:
    return sorted(p for p in html.rglob("*.html") if "_static" not in p.parts)


@pytest.mark.book
@pytest.mark.slow
def test_book_builds_without_warnings(book_build) -> None:
    assert not book_build.warnings, (
        "Sphinx warnings (broken references, missing files, docstrings autodoc cannot read):\n"
        + "\n".join(book_build.warnings)
    )
    html = book_build.html
    assert (html / "index.html").is_file()
    for nb in NOTEBOOKS:
        page = html / "notebooks" / f"{nb.stem}.html"
        assert page.is_file(), f"the book has no page for {nb.name}"
        draws = any(s in nb.read_text() for s in ("plt.show(", "plt.subplots(", "deeplab_edu.viz"))
        if draws:
            assert "<img" in page.read_text(), f"{nb.name} draws figures but its book page has none"
    for name in ("references", "glossary", "api"):
        assert (html / "book" / f"{name}.html").is_file(), f"the book has no {name} page"


@pytest.mark.book
@pytest.mark.slow
def test_tables_printed_by_cells_render_as_tables(built_book: Path) -> None:
    page = (built_book / "notebooks" / "05_aspp.html").read_text()
    # chapter 05 prints its ASPP cost tables with display(markdown_table(...))
    assert re.search(r"<table[^>]*>.*?image pooling.*?</table>", page, re.S), "05's cost table is not a <table>"
    for path in _pages(built_book):
        text = path.read_text()
        assert "|---|" not in text, f"{path.relative_to(built_book)} shows a Markdown table as raw text"


@pytest.mark.book
@pytest.mark.slow
def test_pages_show_no_machine_paths(built_book: Path) -> None:
    machine = [str(REPO_ROOT), str(Path.home()) + "/", str(built_book.parents[2])]
    for path in _pages(built_book):
        text = path.read_text()
        for marker in machine:
            assert marker not in text, f"{path.relative_to(built_book)} shows a path of the build machine: {marker}"
    for nb in NOTEBOOKS:  # cell outputs: no temporary folders either
        text = (built_book / "notebooks" / f"{nb.stem}.html").read_text()
        found = re.findall(r"(?:/tmp|/var/folders|/private/var)/[^\s<\"']*", text)
        assert not found, f"the page of {nb.name} shows paths of the build machine: {found[:3]}"


@pytest.mark.book
@pytest.mark.slow
def test_book_loads_nothing_from_the_network(built_book: Path) -> None:
    mathjax = built_book / "_static" / "mathjax" / "tex-chtml.js"
    assert mathjax.is_file(), "MathJax should be served from the book's _static/mathjax"
    assert list((built_book / "_static" / "mathjax").rglob("*.woff")), "MathJax's fonts should be served too"
    for path in _pages(built_book):
        parser = _Resources()
        text = path.read_text()
        parser.feed(text)
        remote = [u for u in parser.loads if re.match(r"(https?:)?//", u)]
        assert not remote, f"{path.relative_to(built_book)} loads from the network: {remote}"
        assert text.count("const THEBE_JS_URL") <= 1, f"{path.relative_to(built_book)} declares THEBE_JS_URL twice"
    for css in (built_book / "_static").rglob("*.css"):
        remote = re.findall(r"url\(\s*['\"]?(?:https?:)?//[^)]*\)|@import\s+['\"]?(?:url\()?['\"]?https?://", css.read_text(errors="ignore"))
        assert not remote, f"{css.relative_to(built_book)} loads from the network: {remote[:3]}"


@pytest.mark.book
@pytest.mark.slow
def test_equations_are_left_for_the_local_mathjax(built_book: Path) -> None:
    page = (built_book / "notebooks" / "01_atrous_convolution.html").read_text()
    assert 'src="../_static/mathjax/tex-chtml.js' in page
    assert "\\(" in page or "\\[" in page or 'class="math' in page


@pytest.mark.book
@pytest.mark.slow
def test_launch_buttons_open_the_executed_notebooks(built_book: Path) -> None:
    for nb in NOTEBOOKS:
        page = built_book / "notebooks" / f"{nb.stem}.html"
        parser = _Resources()
        parser.feed(page.read_text())
        colab = [u for u in parser.links if "colab.research.google.com" in u]
        binder = [u for u in parser.links if "mybinder.org" in u]
        assert colab == [f"https://colab.research.google.com/github/deeplab-edu/deeplab-edu/blob/gh-pages/notebooks/{nb.stem}.ipynb"], colab
        assert binder == [f"https://mybinder.org/v2/gh/deeplab-edu/deeplab-edu/main?urlpath=lab/tree/notebooks/{nb.stem}.py"], binder
        published = built_book / "notebooks" / f"{nb.stem}.ipynb"
        assert published.is_file(), f"the executed copy of {nb.name} is not published next to its page"
        copy = nbformat.read(published, as_version=4)
        assert "colab-setup" in copy.cells[0].metadata.get("tags", [])
        code = [c for c in copy.cells[1:] if c.cell_type == "code" and c.source.strip()]
        solutions = [c for c in code if "hide-cell" in c.metadata.get("tags", [])]
        answers = [c for c in code if "hide-output" in c.metadata.get("tags", [])]  # "measured: ..." after a prediction
        code = [c for c in code if c not in solutions + answers]
        assert code and all(c.execution_count for c in code), f"{published.name} is not the executed notebook"
        assert solutions and not any(c.outputs for c in solutions), f"{published.name} shows what a solution printed"
        assert not any(c.outputs for c in answers), f"{published.name} shows a measurement that answers a prediction"
        # the page's download button gives the same copy, not the one Sphinx wrote with the answers in it
        download = built_book / "_sources" / "notebooks" / f"{nb.stem}.ipynb"
        assert download.read_bytes() == published.read_bytes(), f"{download.name}'s download keeps the answers"
    # Binder builds the repository from these
    assert (REPO_ROOT / "environment.yml").is_file() and (REPO_ROOT / "postBuild").is_file()


def test_the_colab_cell_clones_the_repository_and_is_valid_ipython() -> None:
    """A book reader's trial: Colab's first cell installed the package alone (pip of a git URL), and the
    chapters that read the repository's records (00's table of chapters, 11's recorded runs) failed there
    with FileNotFoundError. The cell clones the repository, installs and imports the package from the
    clone, and works in the chapters' folder; IPython turns its magics into Python that compiles."""
    from IPython.core.inputtransformer2 import TransformerManager

    from deeplab_edu.book_pages import COLAB_CLONE, colab_setup, for_colab, repository_url

    cell = colab_setup()
    assert f"git clone --quiet --depth 1 {repository_url()} {COLAB_CLONE}" in cell
    assert f"%pip install --quiet -e {COLAB_CLONE}" in cell and f"sys.path.insert(0, '{COLAB_CLONE}')" in cell
    assert f"%cd {COLAB_CLONE}/notebooks" in cell
    python = TransformerManager().transform_cell(cell)
    compile(python, "colab-setup", "exec")  # a magic IPython could not read would stay as a syntax error
    assert "get_ipython().system(" in python and "get_ipython().run_line_magic('pip'" in python
    nb = for_colab(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import deeplab_edu")]))
    assert nb.cells[0].source == cell and nb.cells[0].metadata["tags"] == ["colab-setup"]


def test_progress_bars_become_their_final_text_and_other_widgets_a_note() -> None:
    """A bar becomes printed text in its place (the book merges a cell's printed lines: a display
    output would move below them); a transient bar (``leave=False``, hidden by tqdm when it
    closes) disappears instead of showing a frozen "96%"; other widgets become a note naming
    their controls."""
    from deeplab_edu.book_pages import _WIDGET_MIME, for_the_page

    def model(name: str, **state: object) -> dict:
        return {"model_name": name, "state": state}

    def bar(name: str, visibility: str | None) -> dict:
        return {name: model("HBoxModel", children=[f"IPY_MODEL_{name}a", f"IPY_MODEL_{name}b", f"IPY_MODEL_{name}c"],
                            layout=f"IPY_MODEL_{name}l"),
                f"{name}a": model("HTMLModel", value=f"{name}:\u2007\u200796%"),
                f"{name}b": model("FloatProgressModel", value=5.0, max=10.0),
                f"{name}c": model("HTMLModel", value="\u20075/10\u2007[00:01&lt;00:01]"),
                f"{name}l": model("LayoutModel", visibility=visibility)}

    state = {**bar("train", None), **bar("transient", "hidden"), "slider": model("IntSliderModel", value=3),
             "editor": model("VBoxModel", children=["IPY_MODEL_text", "IPY_MODEL_slider"]),
             "text": model("TextareaModel", value="conv k=3")}
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    nb.cells = [nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="before\n"),
        *[nbformat.v4.new_output("display_data", {_WIDGET_MIME: {"model_id": m}, "text/plain": "0%"})
          for m in ("train", "transient", "slider", "editor")]])]
    before, shown_bar, slider, editor = for_the_page(nb).cells[0].outputs
    assert before["text"] == "before\n"
    assert shown_bar["output_type"] == "stream" and shown_bar["name"] == "stdout"
    assert shown_bar["text"] == "train:  96% 5/10 [00:01<00:01]\n"  # no drawn bar: ten "full block"s read aloud
    assert "the sliders work when the notebook runs" in slider["data"]["text/markdown"]
    assert "the text box and the controls beside it work" in editor["data"]["text/markdown"]
    assert "widgets" not in nb.metadata


def test_only_wide_outputs_span_the_margin() -> None:
    import base64
    import io

    from PIL import Image

    from deeplab_edu.book_pages import WIDE_IMAGE_PX, WIDE_TABLE_COLUMNS, for_the_page

    def png(width: int) -> str:
        buffer = io.BytesIO()
        Image.new("RGB", (width, 10)).save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode()

    def table(columns: int) -> str:
        return "| " + " | ".join(f"c{i}" for i in range(columns)) + " |\n|" + "---|" * columns

    def cell(data: dict, metadata: dict | None = None) -> nbformat.NotebookNode:
        return nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output("display_data", data, metadata=metadata or {})])

    nb = nbformat.v4.new_notebook()
    nb.cells = [cell({"image/png": png(WIDE_IMAGE_PX + 1)}), cell({"image/png": png(WIDE_IMAGE_PX)}),
                cell({"image/png": png(2 * WIDE_IMAGE_PX)}, {"image/png": {"width": WIDE_IMAGE_PX}}),  # retina: shown at half
                cell({"text/markdown": table(WIDE_TABLE_COLUMNS)}), cell({"text/markdown": table(WIDE_TABLE_COLUMNS - 1)})]
    wide = ["full-width" in c.metadata.get("tags", []) for c in for_the_page(nb).cells]
    assert wide == [True, False, False, True, False]


@pytest.mark.book
@pytest.mark.slow
def test_widgets_are_replaced_by_a_note(built_book: Path) -> None:
    page = (built_book / "notebooks" / "05_aspp.html").read_text()
    assert "Interactive figure" in page
    assert "widget-view+json" not in page


@pytest.mark.book
@pytest.mark.slow
def test_a_smoke_book_says_so_on_every_page(built_book: Path) -> None:
    """CI's book (smoke profile) has meaningless numbers: the front page and each chapter say so."""
    pages = [built_book / "book" / "intro.html", *sorted((built_book / "notebooks").glob("[0-9][0-9]_*.html"))]
    assert len(pages) == 13
    unmarked = [p.name for p in pages if not re.search("This (page|book) was built with the", p.read_text())]
    assert not unmarked, f"pages without the smoke-profile warning: {unmarked}"
    # right under a chapter's title, not a screen below it after the objectives and the helpers' list
    late = [p.name for p in pages[1:] if p.read_text().index("This page was built with the") > p.read_text().index("Helpers introduced")]
    assert not late, f"the smoke-profile warning comes after the objectives in {late}"


@pytest.mark.book
@pytest.mark.slow
def test_bibliography_labels_read_as_the_text_cites(built_book: Path) -> None:
    # the chapters cite "Chen et al., 2018a" (author_year); pybtex's default labels were "[CPK+8a]"
    text = (built_book / "book" / "references.html").read_text()
    labels = re.findall(r'<span class="label"><span class="fn-bracket">\[</span>([^<]*)<', text)
    assert len(labels) == len(re.findall(r"^@\w+\{", (REPO_ROOT / "book" / "references.bib").read_text(), re.M))
    assert "Chen et al., 2018a" in labels and "Krähenbühl and Koltun, 2011" in labels, labels
    assert labels == sorted(labels, key=lambda label: (label.split()[0].lower(), label.rpartition(", ")[2])), labels
    chapter = (built_book / "notebooks" / "07_deeplab_v1_v2_crf.html").read_text()
    assert "Chen <em>et al.</em>, 2018a" in chapter or "Chen et al., 2018a" in chapter


def test_the_helpers_line_links_each_name_to_the_api_reference() -> None:
    from deeplab_edu.book_pages import _link_helpers

    text = ("Intro `deeplab_edu.atrous` stays.\n\n**Helpers introduced:** `deeplab_edu.atrous` (`same_padding`, "
            "`plt`, `describe()`), `deeplab_edu.models.build_backbone`, `deeplab_edu.exercises` (`check`).")
    linked = _link_helpers(text)
    assert linked.startswith("Intro `deeplab_edu.atrous` stays.")  # only the helpers' line
    assert "{py:mod}`deeplab_edu.atrous` ({py:obj}`same_padding <deeplab_edu.atrous.same_padding>`, `plt`, `describe()`)" in linked
    # documented where it is defined (models.backbones), unless that module is private (exercises._core)
    assert "{py:obj}`deeplab_edu.models.build_backbone <deeplab_edu.models.backbones.build_backbone>`" in linked
    assert "{py:obj}`check <deeplab_edu.exercises.check>`" in linked


@pytest.mark.book
@pytest.mark.slow
def test_the_helpers_lines_link_to_the_api_reference(built_book: Path) -> None:
    page = (built_book / "notebooks" / "01_atrous_convolution.html").read_text()
    assert 'href="../book/api.html#deeplab_edu.atrous.atrous_conv1d"' in page
    for path in sorted((built_book / "notebooks").glob("[0-9][0-9]_*.html")):
        links = re.findall(r'href="../book/api.html#([\w.-]+)"', path.read_text())
        assert len(links) >= 5, f"{path.name}: its helpers' line links {links} to the API reference"


@pytest.mark.book
@pytest.mark.slow
def test_no_signature_runs_on(built_book: Path) -> None:
    # TrainConfig's 60 fields with their defaults made a signature of about 1000 characters
    text = (built_book / "book" / "api.html").read_text()
    signatures = {m.group(1): re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", m.group(2)))
                  for m in re.finditer(r'<dt class="sig sig-object py" id="([^"]+)">(.*?)</dt>', text, re.S)}
    assert signatures["deeplab_edu.engine.config.TrainConfig"].strip().endswith("TrainConfig(**fields)#")
    long = {name: len(s) for name, s in signatures.items() if len(s) > 400}
    assert not long, long


@pytest.mark.book
@pytest.mark.slow
def test_every_figure_has_a_description_as_alt_text(built_book: Path) -> None:
    # the pages' figures had only their file's path as alt text, which a screen reader reads out
    from deeplab_edu.viz.alt_text import FIGURE_PREFIX

    images = 0
    for page in sorted((built_book / "notebooks").glob("*.html")):
        for tag in re.findall(r"<img [^>]*src=\"[^\"]*_images/[0-9a-f]{64}\.png\"[^>]*>", page.read_text()):
            images += 1
            alt = re.search(r'alt="([^"]*)"', tag)
            # each image its own description: a cell's several figures had all of theirs, numbered (stop 70)
            assert alt and re.match(FIGURE_PREFIX, alt.group(1)) and not re.search(rf"\(\d+ of \d+\) {FIGURE_PREFIX}", alt.group(1)), \
                f"{page.name}: {tag[:300]}"
    assert images >= 40, images  # the pattern still finds the chapters' figures


@pytest.mark.book
@pytest.mark.slow
def test_wide_figures_and_tables_span_the_margin(built_book: Path) -> None:
    # chapter 07's CRF panels (about 1300 px) were shrunk to half size in the text column; chapter 10's
    # findings table (10 columns) wrapped every cell over five lines
    for stem in ("07_deeplab_v1_v2_crf", "10_reproducing_findings"):
        page = (built_book / "notebooks" / f"{stem}.html").read_text()
        assert "tag_full-width" in page, f"{stem}: no wide output spans the margin"


@pytest.mark.book
@pytest.mark.slow
def test_glossary_links_each_term_to_its_chapter(built_book: Path) -> None:
    page = built_book / "book" / "glossary.html"
    text = page.read_text()
    for term in GLOSSARY_TERMS:
        match = re.search(rf'<dt id="term-[^"]*">{re.escape(term)}.*?</dt>\s*<dd>(.*?)</dd>', text, re.S)
        assert match, f"the glossary lacks '{term}'"
        chapters = re.findall(r'href="\.\./(notebooks/\d\d_[a-z0-9_]+\.html)', match.group(1))
        assert chapters, f"the glossary entry '{term}' links to no chapter"
        assert 'href="api.html#' in match.group(1), f"'{term}' links to no code in the API reference"
        for chapter in chapters:
            assert (built_book / chapter).is_file(), f"'{term}' links to a missing page {chapter}"


def _public_callables(module: str) -> list[str]:
    """The functions and classes a module defines and exports in ``__all__``."""
    path = PACKAGE.joinpath(*module.split(".")[1:])
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text())
    exported: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            exported = list(ast.literal_eval(node.value))
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    return [name for name in exported if name in defined]


@pytest.mark.book
@pytest.mark.slow
def test_api_reference_documents_the_public_functions(built_book: Path) -> None:
    text = (built_book / "book" / "api.html").read_text()
    ids = set(re.findall(r'id="(deeplab_edu\.[\w.]+)"', text))
    for module in ("deeplab_edu.atrous", "deeplab_edu.receptive_field", "deeplab_edu.boundary",
                   "deeplab_edu.models.aspp", "deeplab_edu.metrics", "deeplab_edu.crf", "deeplab_edu.config"):
        names = _public_callables(module)
        assert names, module
        for name in names:
            assert f"{module}.{name}" in ids, f"the API reference lacks {module}.{name}"
    # the exercise checker is defined in a private module and exported by the package: documented there
    import deeplab_edu.exercises as exercises

    missing = {f"deeplab_edu.exercises.{n}" for n in exercises.__all__ if callable(getattr(exercises, n))} - ids
    assert not missing, f"the API reference lacks {sorted(missing)}"
    # every training setting is documented (a `#:` comment above its field), so a new one cannot be silent
    import dataclasses

    from deeplab_edu.engine.config import TrainConfig

    missing = {f"deeplab_edu.engine.config.TrainConfig.{f.name}" for f in dataclasses.fields(TrainConfig)} - ids
    assert not missing, f"TrainConfig settings without documentation: {sorted(missing)}"


def test_one_job_runs_the_chapters_in_order_and_two_start_the_longest(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sources = []
    for name, minutes in (("08_a", 5), ("09_b", 7), ("10_c", 1)):
        sources.append(tmp_path / f"{name}.py")
        sources[-1].write_text(f"# ---\n#   deeplab_edu:\n#     cpu_minutes: {minutes}\n# ---\n")
    started: list[str] = []

    def fake_run(source: Path, executed: Path, active_profile: str, timeout: int, threads: int | None,
                 **_: object) -> book.NotebookRun:
        started.append(source.stem)
        return book.NotebookRun(source=source.name, executed=executed, status="ok", seconds=0.0, profile=active_profile)

    monkeypatch.setattr(book, "_run_in_subprocess", fake_run)
    runs = book.execute_notebooks(sources, tmp_path / "out1", jobs=1, reuse=False, active_profile="smoke")
    assert started == ["08_a", "09_b", "10_c"] and [r.source for r in runs] == ["08_a.py", "09_b.py", "10_c.py"]
    assert [s.stem for s in book._schedule(sources, 2)] == ["09_b", "08_a", "10_c"]  # several: longest first


def test_a_chapter_that_reuses_runs_starts_after_the_chapters_that_train_them(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A lecturer's review found chapter 08's page without its training log ("waiting for another process
    that trains runs/course/cpu/v3/seed0"): built two at a time, chapter 09 (longer) started first and
    trained chapter 08's run. Outside ``smoke``, a chapter waits for those its header's ``reuses_runs_of``
    names, and the other worker takes the chapters that are ready."""
    import threading
    import time

    headers = {"08_a": (8, 5, []), "09_b": (9, 7, [8]), "10_c": (10, 1, [8, 9]), "11_d": (11, 6, [])}
    sources = []
    for name, (chapter, minutes, reuses) in headers.items():
        sources.append(tmp_path / f"{name}.py")
        reused = "".join(f"#     - {c}\n" for c in reuses)
        sources[-1].write_text(f"# ---\n# jupyter:\n#   deeplab_edu:\n#     chapter: {chapter}\n#     cpu_minutes: {minutes}\n"
                               + (f"#     reuses_runs_of:\n{reused}" if reuses else "") + "# ---\n")
    events: list[str] = []
    lock = threading.Lock()

    def fake_run(source: Path, executed: Path, active_profile: str, timeout: int, threads: int | None,
                 **_: object) -> book.NotebookRun:
        with lock:
            events.append("start " + source.stem)
        time.sleep(0.3 if source.stem == "08_a" else 0.05)
        with lock:
            events.append("end " + source.stem)
        return book.NotebookRun(source=source.name, executed=executed, status="ok", seconds=0.0, profile=active_profile)

    monkeypatch.setattr(book, "_run_in_subprocess", fake_run)
    runs = book.execute_notebooks(sources, tmp_path / "out", jobs=2, reuse=False, active_profile="cpu")
    assert [r.source for r in runs] == [s.name for s in sources] and all(r.ok for r in runs)
    assert set(events[:2]) == {"start 08_a", "start 11_d"}, events  # 09 is the longest, but waits for 08
    assert events.index("start 09_b") > events.index("end 08_a"), events
    assert events.index("start 10_c") > events.index("end 09_b"), events
    events.clear()
    book.execute_notebooks(sources, tmp_path / "smoke", jobs=2, reuse=False, active_profile="smoke")
    assert set(events[:2]) == {"start 09_b", "start 11_d"}, events  # smoke: every chapter trains in its own folder
    sources[2].write_text(sources[2].read_text().replace("- 9", "- 10").replace(
        "#     cpu_minutes", "#     title: c\n#     prerequisites: []\n#     cpu_minutes"))
    with pytest.raises(ValueError, match=r"10_c.py: reuses_runs_of \[8, 10\] must be earlier chapters"):
        book.chapter_header(sources[2])


def test_student_copy_drops_every_solution_and_keeps_the_rest(tmp_path) -> None:
    """A lecturer's trial: the solutions ship in the chapters a class receives; ``student-copy`` writes
    them without the hidden (``hide-cell``) cells, and refuses to write over the course's own chapters."""
    import jupytext

    from deeplab_edu.book import NOTEBOOK_DIR, main, student_copy

    sources = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
    written = student_copy(tmp_path / "class")
    assert [p.name for p in written] == [p.name for p in sources]
    for src, copy in zip(sources, written):
        original, stripped = (jupytext.read(p) for p in (src, copy))
        kept = [c for c in original.cells if "hide-cell" not in c.metadata.get("tags", [])
                and not ("remove-cell" in c.metadata.get("tags", []) and "config.course_checks()" in c.source)]
        assert [c.source for c in stripped.cells] == [c.source for c in kept], copy.name
        assert "solved(" not in copy.read_text() or "solved(" in "".join(c.source for c in kept), copy.name
    assert sum("solved(" in p.read_text() for p in sources) > 10  # the course's own chapters keep theirs
    with pytest.raises(ValueError, match="course's own chapters"):
        student_copy(NOTEBOOK_DIR)
    with pytest.raises(SystemExit):
        main(["student-copy", str(NOTEBOOK_DIR)])


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell's code defines, names it reads), anywhere in it (IPython's magics made Python first)."""
    from IPython.core.inputtransformer2 import TransformerManager

    defined, read = set(), set()
    for node in ast.walk(ast.parse(TransformerManager().transform_cell(source))):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else defined).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    return defined, read


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_a_student_copy_reads_no_name_only_a_solution_defines(source: Path) -> None:
    """A teacher's trial: chapter 10's student copy stopped at a check after exercise 10.4 with "name 'reach_px'
    is not defined", its traceback showing the answer (22), and kept 10.5's check (its answer, 4) a click away:
    two checks of the solutions ran outside ``config.course_checks()``, so the copy kept them. Here every
    chapter: a name the copy's cells read that only a removed cell defines would fail the same way."""
    import builtins

    import jupytext

    from deeplab_edu.book import _without_solutions

    full = [c.source for c in jupytext.read(source).cells if c.cell_type == "code"]
    kept = [c.source for c in _without_solutions(jupytext.read(source)).cells if c.cell_type == "code"]
    removed = [c for c in full if c not in kept]
    defined_kept, read_kept, defined_removed = set(), set(), set()
    for cell in kept:
        defined, read = _names(cell)
        defined_kept |= defined
        read_kept |= read
    for cell in removed:
        defined_removed |= _names(cell)[0]
    orphans = sorted((read_kept & defined_removed) - defined_kept - set(dir(builtins)))
    assert not orphans, (f"{source.name}: the student copy reads {orphans}, which only its solutions define "
                         "(guard such a check with `if config.course_checks():`)")


def test_making_the_student_copy_again_keeps_what_learners_wrote(tmp_path, capsys) -> None:
    """A learner's trial (stop 53): ``make student-copy`` run again into the folder a class works in
    replaced every chapter, answers and all. Now a chapter a learner changed is kept and the new
    version goes beside it; one the copy wrote and nobody changed is updated."""
    from deeplab_edu.book import REPO_ROOT, STUDENT_COPY_MANIFEST, main, student_copy

    chapter = tmp_path / "src" / "01_first.py"
    chapter.parent.mkdir()
    chapter.write_text("# %%\nanswer = ...  # your answer here\n")
    other = chapter.with_name("02_second.py")
    other.write_text("# %%\nx = 1\n")
    out = tmp_path / "class copy"  # a space, as the Makefile now quotes OUT
    first = student_copy(out, [chapter, other])
    assert [p.name for p in first] == ["01_first.py", "02_second.py"] and (out / STUDENT_COPY_MANIFEST).is_file()
    (out / "01_first.py").write_text((out / "01_first.py").read_text().replace("...", "13"))  # a learner answers
    other.write_text("# %%\nx = 2\n")  # the course changes (git pull)
    chapter.write_text("# %%\nanswer = ...  # your answer here, in words\n")
    again = student_copy(out, [chapter, other])
    assert [p.name for p in again] == ["01_first.updated.py", "02_second.py"]
    assert "answer = 13" in (out / "01_first.py").read_text()  # the learner's answer is kept
    assert "in words" in (out / "01_first.updated.py").read_text() and "x = 2" in (out / "02_second.py").read_text()
    (out / STUDENT_COPY_MANIFEST).unlink()  # a copy made before the record: a chapter that differs is kept
    assert [p.name for p in student_copy(out, [chapter, other])] == ["01_first.updated.py", "02_second.py"]
    course = tmp_path / "course"
    assert main(["student-copy", str(course)]) == 0
    capsys.readouterr()
    with (course / "00_start_here.py").open("a") as f:
        f.write("# %%\nmy_note = 'learnt'\n")
    assert main(["student-copy", str(course)]) == 0
    shown = capsys.readouterr().out  # a teacher's trial: the first line counted the kept chapter as written too
    written = f"{len(NOTEBOOKS) - 1} chapters without their solutions written"  # all but the kept one
    # a new user's trial: the chapter the course had not changed got an .updated.py "new version" equal to it
    assert "1 chapter(s) a learner had changed left as they are" in shown and written in shown, shown
    assert "my_note" in (course / "00_start_here.py").read_text()
    assert not (course / "00_start_here.updated.py").exists() and "there had been changed" not in shown
    (tmp_path / "a file").write_text("")
    for bad, message in ((tmp_path / "a file", "is a file"), (REPO_ROOT, "the repository's own folder")):
        with pytest.raises(ValueError, match=message):
            student_copy(bad, [chapter])


def test_a_student_copy_runs_as_the_course_checks_it(tmp_path) -> None:
    """A teacher's trial (stop 51): ``book execute`` of the student copy's chapters 02, 03, 05 and 09
    failed with NameError: the course's own checks of the solutions (cells that run only under
    ``config.course_checks()``) called the solutions the copy leaves out. The copy drops those checks
    too; chapter 03 (one of the four) runs as the book runs it."""
    from deeplab_edu.book import NOTEBOOK_DIR, execute_notebook, student_copy

    (copy,) = student_copy(tmp_path / "class", [NOTEBOOK_DIR / "03_output_stride.py"])
    assert "block_rates_solution" not in copy.read_text()
    run = execute_notebook(copy, tmp_path / "03.ipynb", active_profile="smoke")
    assert run.ok, run.describe()


def test_the_answer_key_gives_every_exercise_its_answer(tmp_path, capsys) -> None:
    """A teacher's trial (stop 51): the book's hidden solutions print "this solution passes the
    checker", not the value, so a teacher marking by hand had no key. ``python -m deeplab_edu.exercises``
    prints one row per exercise with the checker's own answer."""
    from deeplab_edu.exercises import all_exercises
    from deeplab_edu.exercises.__main__ import main

    main(["--chapter", "08"])
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 2 + sum(k.startswith("08.") for k in all_exercises())
    assert any(r.startswith("| 08.3 | predict |") and r.endswith("| (2, 5, 8) |") for r in rows), rows
    main(["--out", str(tmp_path / "key.md")])
    key = (tmp_path / "key.md").read_text()
    assert all(f"| {k} |" in key for k in all_exercises()) and "| 05.2 | value |" in key and "2212352" in key
    # an answer that depends on the machine says so (stop 61's teacher: 00.2 gave 300 alone, 30000 on a GPU)
    row = next(r for r in key.splitlines() if r.startswith("| 00.2 |"))
    assert "no CUDA device" in row and "30000 where it sees one" in row, row
    with pytest.raises(SystemExit):
        main(["--chapter", "99"])
    capsys.readouterr()
    main(["--chapter", "09", "--chapter", "08"])  # given twice: both chapters (the last only, until stop 55)
    rows = capsys.readouterr().out.splitlines()[2:]
    assert len(rows) == sum(k[:2] in ("08", "09") for k in all_exercises()) and rows[0].startswith("| 08.")
    main(["--chapter", "9", "8"])  # one digit, as a teacher typed it (was "no exercises in chapter '4'")
    assert capsys.readouterr().out.splitlines()[2:] == rows
    with pytest.raises(SystemExit):
        main(["--chapter", "08", "99"])
    assert "no exercises in chapter '99'" in capsys.readouterr().err
    main(["--out", str(tmp_path / "new" / "key.md")])  # a learner's trial: a missing folder was a traceback
    assert (tmp_path / "new" / "key.md").read_text() == key
    with pytest.raises(SystemExit):  # a folder as --out: a one-line error naming a file to give, not IsADirectoryError
        main(["--out", str(tmp_path)])
    assert "is a folder: name a file" in capsys.readouterr().err


def test_making_the_student_copy_again_keeps_a_learners_edit_of_the_updated_version(tmp_path, capsys) -> None:
    """An audit: the third copy into a class's folder wrote over ``NN_name.updated.py`` although a learner
    had worked in it (the copy recorded only the chapters it wrote). Every file the copy writes is recorded
    now; one a learner changed is kept and the newest version goes to the next free ``.updated-N.py``."""
    from deeplab_edu.book import STUDENT_COPY_MANIFEST, is_updated_version, main, student_copy

    chapter = tmp_path / "src" / "01_first.py"
    chapter.parent.mkdir()
    chapter.write_text("# %%\nanswer = ...  # version 1\n")
    out = tmp_path / "class"
    student_copy(out, [chapter])
    (out / "01_first.py").write_text((out / "01_first.py").read_text().replace("...", "13"))  # a learner answers
    chapter.write_text("# %%\nanswer = ...  # version 2\n")  # git pull
    assert [p.name for p in student_copy(out, [chapter])] == ["01_first.updated.py"]
    updated = out / "01_first.updated.py"
    updated.write_text(updated.read_text().replace("...", "14"))  # the learner goes on in the new version
    chapter.write_text("# %%\nanswer = ...  # version 3\n")  # git pull again
    assert [p.name for p in student_copy(out, [chapter])] == ["01_first.updated-2.py"]
    assert "answer = 13" in (out / "01_first.py").read_text() and "answer = 14" in updated.read_text()
    assert "version 3" in (out / "01_first.updated-2.py").read_text()
    chapter.write_text("# %%\nanswer = ...  # version 4\n")  # nobody touched updated-2: it is updated in place
    assert [p.name for p in student_copy(out, [chapter])] == ["01_first.updated-2.py"]
    assert "version 4" in (out / "01_first.updated-2.py").read_text() and "answer = 14" in updated.read_text()
    assert is_updated_version(updated) and is_updated_version(out / "01_first.updated-2.py")
    assert not is_updated_version(out / "01_first.py")
    course = tmp_path / "course"  # the command line says where the newest version went
    assert main(["student-copy", str(course)]) == 0
    record = json.loads((course / STUDENT_COPY_MANIFEST).read_text())  # handed out before the course changed it
    (course / STUDENT_COPY_MANIFEST).write_text(json.dumps({**record, "00_start_here.py": "an older version"}))
    for name in ("00_start_here.py", "00_start_here.updated.py"):
        with (course / name).open("a") as f:
            f.write("# %%\nmy_note = 'learnt'\n")
        capsys.readouterr()
        assert main(["student-copy", str(course)]) == 0
    shown = capsys.readouterr().out
    written = f"{len(NOTEBOOKS) - 1} chapters without their solutions written"  # all but the kept one
    assert written in shown and "00_start_here.updated-2.py" in shown, shown
    assert "changed by a learner, or written by an older make student-copy" in shown, shown  # (kept no record)
    assert "my_note" in (course / "00_start_here.updated.py").read_text()


def test_the_reuse_key_sees_every_file_a_chapter_may_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit: ``make book`` reused an executed chapter after a change it could not see: the explorers'
    JavaScript and CSS (copied into chapters 01, 02 and 04), another chapter's source (chapter 00's planning
    table reads them all), a committed record (chapters 00, 08-11 load them) or the table of contents. The key
    now covers every file of the package (``__pycache__`` aside), every chapter, every record and the toc."""
    files = {"pkg/core.py": "x = 1\n", "pkg/viz/explorers/explorers.js": "let a = 1;\n",
             "pkg/viz/explorers/explorers.css": "a {}\n", "pkg/__pycache__/core.cpython-312.pyc": "bytecode",
             "notebooks/00_start.py": "# %%\n", "notebooks/01_first.py": "# %%\nprint(1)\n",
             "results/timings.json": "{}\n", "results/runs/curve.npz": "npz", "book/_toc.yml": "root: intro\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    for attr, folder in (("PACKAGE_DIR", "pkg"), ("NOTEBOOK_DIR", "notebooks"), ("RESULTS_DIR", "results"),
                         ("BOOK_DIR", "book")):
        monkeypatch.setattr(book, attr, tmp_path / folder)
    chapter = tmp_path / "notebooks" / "01_first.py"
    key = book._dependency_key(chapter, "smoke")
    (tmp_path / "pkg" / "__pycache__" / "core.cpython-312.pyc").write_text("other bytecode")
    assert book._dependency_key(chapter, "smoke") == key  # compiled files are no input
    changes = {"the explorers' JavaScript": ("pkg/viz/explorers/explorers.js", "let a = 2;\n"),
               "the explorers' CSS": ("pkg/viz/explorers/explorers.css", "a { color: red }\n"),
               "another chapter": ("notebooks/00_start.py", "# %%\nprint(0)\n"),
               "a record": ("results/timings.json", '{"seconds": 3}\n'),
               "a record in a subfolder": ("results/runs/curve.npz", "other npz"),
               "a new record": ("results/new.json", "{}\n"),
               "the table of contents": ("book/_toc.yml", "root: start\n")}
    for what, (name, text) in changes.items():
        (tmp_path / name).write_text(text)
        assert book._dependency_key(chapter, "smoke") != key, f"a change of {what} ({name}) kept the key"
        key = book._dependency_key(chapter, "smoke")
    (tmp_path / "results" / "new.json").rename(tmp_path / "results" / "renamed.json")
    assert book._dependency_key(chapter, "smoke") != key, "a renamed record kept the key"


def test_two_book_builds_into_one_folder_take_turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """An audit: two builds into one folder at once broke each other (each deletes and lays out
    ``_build/source`` again while the other's jupyter-book reads it, and both write ``_build/html``).
    The second waits for the first's lock now, saying so, and gives up with an error after a bound."""
    import subprocess
    import threading
    import time

    from filelock import FileLock

    events: list[str] = []

    def fake_stage(stage: Path, runs: object) -> None:
        events.append(f"stage {threading.current_thread().name}")
        (stage / "book").mkdir(parents=True, exist_ok=True)
        time.sleep(0.2)

    def fake_jupyter_book(cmd: list[str], **_: object) -> subprocess.CompletedProcess:
        time.sleep(0.2)  # what the real build (minutes) does meanwhile: read _build/source, write _build/html
        events.append(f"built {threading.current_thread().name}")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(book, "_stage", fake_stage)
    monkeypatch.setattr(book.subprocess, "run", fake_jupyter_book)
    monkeypatch.setattr(book, "_publish_notebooks", lambda html, runs: None)
    builds = [threading.Thread(target=book.build_book, args=(tmp_path,), kwargs={"runs": [], "quiet": True},
                               name=name) for name in ("a", "b")]
    for thread in builds:
        thread.start()
    for thread in builds:
        thread.join(timeout=30)
    assert sorted(events) == ["built a", "built b", "stage a", "stage b"], events
    assert events[0].split()[1] == events[1].split()[1], f"the builds overlapped: {events}"
    assert "another book build is running in" in capsys.readouterr().err  # the second one said it waits
    monkeypatch.setattr(book, "BUILD_WAIT_SECONDS", 0.3)
    events.clear()
    with FileLock(tmp_path / "_build" / "build.lock"):  # a build that does not finish, in another process
        with pytest.raises(RuntimeError, match="another book build is running in .*_build .*build into another"):
            book.build_book(tmp_path, runs=[], quiet=True)
    assert events == []  # it touched nothing of the other build's


def test_a_build_that_cannot_finish_is_one_line_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    """Another build holding the folder past its wait (or jupyter-book failing) raised a RuntimeError through
    ``python -m deeplab_edu.book`` as a traceback; it is the same one line as a failed notebook now, exit 1."""
    from deeplab_edu import book

    def held(*args: object, **kwargs: object) -> None:
        raise RuntimeError("another book build is running in x/_build (process 7) and did not finish")

    monkeypatch.setattr(book, "build_book", held)
    assert book.main(["--output", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "The book was not built: another book build is running" in err and "Traceback" not in err


def test_a_killed_executions_kernel_folder_is_removed_by_a_later_one(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit: a `book execute` ended by SIGHUP or SIGKILL left its kernel's temporary folder (the smoke runs:
    125 MB in chapter 10), which nothing removed. Kernel folders are named after their process now, and a later
    execution removes those of processes that no longer run (after a day untouched), never a running one's."""
    import os
    import subprocess
    import sys
    import tempfile
    import time

    from deeplab_edu import book

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    dead, unnamed = tmp_path / f"dl_nb_{int(ended.stdout)}_x", tmp_path / "dl_nb_y"  # killed; an older version's
    living = tmp_path / f"dl_nb_{os.getpid()}_z"
    recent = tmp_path / f"dl_nb_{int(ended.stdout)}_w"  # killed, but touched within the day: kept for now
    for folder in (dead, unnamed, living, recent):
        (folder / "deeplab_edu_smoke_1_a").mkdir(parents=True)
    day_and_more = time.time() - book._STALE_KERNEL_FOLDER_SECONDS - 60
    for folder in (dead, unnamed, living):
        os.utime(folder, (day_and_more, day_and_more))
    fresh = book._kernel_folder()
    assert fresh.parent == tmp_path and fresh.name.startswith(f"dl_nb_{os.getpid()}_")
    assert not dead.exists() and not unnamed.exists() and living.is_dir() and recent.is_dir()


def test_the_kernels_share_of_threads_counts_a_cpu_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two kernels at a time got os.cpu_count() // 2 threads each: the host's cores, not the 2 CPUs a
    container's quota allows, so each kernel of a book built in Docker on a 64-core host started 32."""
    from deeplab_edu.engine import workers

    given: list[int | None] = []

    def fake_run(source: Path, executed: Path, active_profile: str, timeout: int, threads: int | None,
                 **_: object) -> book.NotebookRun:
        given.append(threads)
        return book.NotebookRun(source=source.name, executed=executed, status="ok", seconds=0.0, profile=active_profile)

    sources = [tmp_path / f"0{i}_a.py" for i in (1, 2)]
    for source in sources:
        source.write_text("# ---\n#   deeplab_edu:\n#     cpu_minutes: 1\n# ---\n")
    monkeypatch.setattr(book, "_run_in_subprocess", fake_run)
    monkeypatch.setattr(book.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(workers, "available_cores", lambda: 4)  # the quota
    book.execute_notebooks(sources, tmp_path / "out", jobs=2, reuse=False, active_profile="smoke")
    assert given == [2, 2]


def test_making_the_student_copy_again_names_the_exercises_whose_question_changed(tmp_path, monkeypatch,
                                                                                  capsys) -> None:
    """An audit: since b3e41f8 exercise 05.3 asks for the parameters a rate-24 branch adds (it asked for the
    channels entering the projection), under the same key, and ``student-copy`` run again kept a learner's
    edited chapter 05 without a word on it, so ``check("05.3", ...)`` judged the kept question's answer against
    the new one. The copy now records each exercise's question and names the exercises that changed."""
    import json
    import shutil

    from deeplab_edu.book import NOTEBOOK_DIR, STUDENT_COPY_MANIFEST, changed_questions, main

    course = tmp_path / "notebooks"  # a copy of the course's chapter 05, changed as by a git pull
    course.mkdir()
    chapter = course / "05_aspp.py"
    shutil.copy(NOTEBOOK_DIR / "05_aspp.py", chapter)
    monkeypatch.setattr(book, "NOTEBOOK_DIR", course)
    out = tmp_path / "class"
    assert main(["student-copy", str(out)]) == 0
    kept = out / "05_aspp.py"
    kept.write_text(kept.read_text(encoding="utf-8").replace("answer_05_1 = ...", "answer_05_1 = (3, 6, 9, 12)"),
                    encoding="utf-8")  # a learner answers
    source = chapter.read_text(encoding="utf-8")
    question = "**How many parameters does that branch add to DeepLabv3's ASPP"
    assert question in source
    chapter.write_text(source.replace(question, "**How many weights does that branch add to DeepLabv3's ASPP")
                       .replace("# ### Exercise 05.1\n", "# ### Exercise 05.1\n#\n"),  # 05.1: only its lines
                       encoding="utf-8")
    capsys.readouterr()
    assert main(["student-copy", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "exercise 05.3 changed in this update: its new version is in 05_aspp.updated.py" in shown, shown
    assert "05.1" not in shown and "05.2" not in shown and "answer_05_1 = (3, 6, 9, 12)" in kept.read_text()
    assert changed_questions(out, out / "05_aspp.updated.py") == ["05.3"]
    manifest = json.loads((out / STUDENT_COPY_MANIFEST).read_text())
    del manifest["questions"]  # a copy made before the questions were recorded: only the chapter is named
    (out / STUDENT_COPY_MANIFEST).write_text(json.dumps(manifest))
    assert changed_questions(out, out / "05_aspp.updated.py") is None
    assert main(["student-copy", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "05.3" not in shown and "05_aspp.py was handed out before the copy recorded its exercises" in shown, shown


def test_book_commands_check_their_output_folder_first_and_print_one_line(tmp_path, capsys) -> None:
    """An audit: ``execute`` made its output's folder and found only after the kernel's minutes that it could not be
    written, and ``execute`` and ``student-copy`` printed a whole traceback for any OSError (only ValueError was
    caught). The folder is now checked before the kernel starts, and the error is one line naming the path."""
    from deeplab_edu.book import main

    source = tmp_path / "n.py"
    source.write_text("# %%\nprint(1)\n", encoding="utf-8")
    blocking = tmp_path / "a_file"
    blocking.write_text("not a folder\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["execute", str(source), str(blocking / "out" / "n.ipynb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m deeplab_edu.book execute: error: ") and len(err.splitlines()) == 1, err
    assert f"{blocking} is a file, not a folder" in err and "n.ipynb" in err, err
    assert main(["student-copy", str(blocking / "copy")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m deeplab_edu.book student-copy: error: ") and len(err.splitlines()) == 1, err
    assert str(blocking) in err, err


def _book_sphinx_config() -> dict:
    """The Sphinx settings ``book/_config.yml`` passes to ``conf.py`` (its ``sphinx: config:``)."""
    import yaml

    return dict(yaml.safe_load((REPO_ROOT / "book" / "_config.yml").read_text())["sphinx"]["config"])


def _autodoc_text(tmp_path: Path, rst: str) -> str:
    """``rst`` (autodoc directives) built as plain text with the book's extensions and autodoc settings:
    one small page, not the book."""
    from sphinx.application import Sphinx

    config = {k: v for k, v in _book_sphinx_config().items() if k.startswith(("autodoc_", "napoleon_"))}
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "conf.py").write_text(
        f"extensions = ['sphinx.ext.autodoc', 'sphinx.ext.napoleon', 'deeplab_edu.book_sphinx']\n"
        f"globals().update({config!r})\n")
    (tmp_path / "src" / "index.rst").write_text(rst)
    app = Sphinx(str(tmp_path / "src"), str(tmp_path / "src"), str(tmp_path / "out"), str(tmp_path / "doctrees"),
                 "text", status=None, warning=None, freshenv=True)
    app.build()
    return (tmp_path / "out" / "index.txt").read_text()


@pytest.mark.slow
def test_overloaded_functions_show_their_implementations_signature(tmp_path: Path) -> None:
    # the API page showed build_model's five @overload stubs (no defaults: "name: Literal['deeplabv1'],
    # **options: Unpack[_ModelOptions]") and crf.mean_field's three of 350 characters each
    text = _autodoc_text(tmp_path, ".. autofunction:: deeplab_edu.models.deeplab.build_model\n\n"
                                   ".. autofunction:: deeplab_edu.crf.mean_field\n\n"
                                   ".. autofunction:: deeplab_edu.models.backbones.build_backbone\n")
    signatures = [line for line in text.splitlines() if re.match(r"deeplab_edu\.[\w.]+\(", line)]
    assert len(signatures) == 3, signatures
    assert "num_classes=21" in signatures[0] and "Literal['deeplabv1']" not in text and "_ModelOptions" not in text
    assert all(len(s) < 400 for s in signatures), signatures


@pytest.mark.slow
def test_dataclass_fields_show_their_defaults_and_module_data_no_value(tmp_path: Path) -> None:
    # TrainConfig's signature is (**fields) and no-value hid every field's value: its defaults were nowhere
    # (as the page does: automodule, whose no-value an autoclass directive would not take)
    text = _autodoc_text(tmp_path, ".. automodule:: deeplab_edu.engine.config\n\n.. automodule:: deeplab_edu.records\n")
    assert re.search(r"^\s*lr: float = 0\.007$", text, re.M), text[:3000]
    assert re.search(r"^\s*out_dir: .* = 'runs/deeplab'$", text, re.M), text[:3000]
    assert re.search(r"^\s*model_kwargs: dict\[str, Any\]$", text, re.M), "a default_factory field shows no value"
    assert "TrainConfig(**fields)" in text
    assert "REPO_ROOT" in text and str(REPO_ROOT) not in text, "module data keeps no-value: no machine path"


def test_references_to_reexported_names_find_where_they_are_documented() -> None:
    # ~45 references (deeplab_edu.models.build_model, deeplab_edu.data.build_dataset, ...) named a package that
    # re-exports the name; autodoc documents it in its module only
    assert book_sphinx.home_of("deeplab_edu.models.build_model") == "deeplab_edu.models.deeplab.build_model"
    assert book_sphinx.home_of("deeplab_edu.models.ASPP") == "deeplab_edu.models.aspp.ASPP"
    assert book_sphinx.home_of("deeplab_edu.engine.Trainer.fit") == "deeplab_edu.engine.trainer.Trainer.fit"
    assert book_sphinx.home_of("ConfusionMatrix.compute", "deeplab_edu.inference") \
        == "deeplab_edu.metrics.ConfusionMatrix.compute"
    for target, module in (("deeplab_edu.models.deeplab.build_model", None), ("torch.Tensor", None),
                           ("deeplab_edu.models.no_such_name", None), ("Tensor", "deeplab_edu.metrics"),
                           ("JointTransform", "deeplab_edu.data.voc")):  # a typing alias: collections.abc.Callable
        assert book_sphinx.home_of(target, module) is None, target


def test_returns_sections_give_no_phrase_as_the_return_type() -> None:
    # "Returns:\n    The matplotlib figure: ..." (or "Q: (B, L, H, W) ...") made napoleon show "The matplotlib
    # figure" as the return type, a broken cross-reference, in place of the annotation's
    import builtins
    import importlib
    import inspect

    from sphinx.ext.napoleon import Config
    from sphinx.ext.napoleon.docstring import GoogleDocstring

    # the book shows the annotation as the return type (napoleon_use_rtype: false); with true, napoleon's own
    # reading of a Returns: section's first line is its ":rtype:"
    config = Config(**{k: v for k, v in _book_sphinx_config().items() if k.startswith("napoleon_")}
                    | {"napoleon_use_rtype": True})
    docs: dict[str, tuple[Any, str]] = {}
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module_name:
                continue
            if inspect.isfunction(obj):
                docs[f"{module_name}.{name}"] = (obj, "function")
            elif inspect.isclass(obj):
                for member_name, member in vars(obj).items():
                    member = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                    if inspect.isfunction(member):
                        docs[f"{module_name}.{name}.{member_name}"] = (member, "method")
    assert len(docs) > 300, len(docs)
    phrases = []
    for name, (function, what) in docs.items():
        lines = inspect.cleandoc(function.__doc__ or "").splitlines()
        out = "\n".join(GoogleDocstring(lines, config, what=what, name=name).lines())
        for kind in re.findall(r"^:rtype: (.*)$", out, re.M):
            # a type names what the module or builtins hold ("tuple[int, int]", "Tensor | None"), or is
            # written as code or a cross-reference (``(loss, images)``, :class:`DataCheck`)
            words = re.findall(r"[A-Za-z_][\w.]*", re.sub(r"(:\w+:)?(``[^`]*``|`[^`]*`)", "", kind))
            if any(w.split(".")[0] not in function.__globals__ and not hasattr(builtins, w) for w in words):
                phrases.append(f"{name}: {kind!r}")
    assert not phrases, f"napoleon reads these phrases as return types (reword the Returns: line): {phrases}"


def test_every_exported_data_name_is_documented() -> None:
    # 37 names in modules' __all__ (config.PROFILES, records.REPO_ROOT, data.classes.VOC, ...) were missing from
    # the API page: autodoc shows module data only with a `#:` comment or a docstring below it. A name a module
    # imports from another is documented there (once), if that module is on the page and exports it.
    import importlib
    import importlib.util
    import inspect

    from sphinx.pycode import ModuleAnalyzer

    def home(module_name: str, name: str) -> str:
        """The module that assigns ``name``, following ``from ... import`` lines."""
        module = importlib.import_module(module_name)
        for node in ast.parse(inspect.getsource(module)).body:
            if isinstance(node, ast.ImportFrom) and any(a.name == name and a.asname in (None, name)
                                                        for a in node.names):
                source = importlib.util.resolve_name("." * node.level + (node.module or ""), module.__package__)
                return home(source, name)
        return module_name

    api = (REPO_ROOT / "book" / "api.md").read_text()
    listed = re.findall(r"^\.\. automodule:: (\S+)$", api, re.M)
    gathering = set(re.findall(r"^\.\. automodule:: (\S+)\n   :ignore-module-all:$", api, re.M))
    undocumented, data = [], 0
    for module_name in listed:
        module = importlib.import_module(module_name)
        if module_name in gathering:
            continue
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
                continue
            data += 1
            where = home(module_name, name)
            shown = where == module_name or (where in listed and name in importlib.import_module(where).__all__)
            if not shown or ("", name) not in ModuleAnalyzer.for_module(where).find_attr_docs():
                undocumented.append(f"{module_name}.{name}" + (f" ({where})" if where != module_name else ""))
    assert data > 50, data
    assert not undocumented, (f"add a `#:` comment above each of these, in a module the API page documents and whose "
                              f"__all__ names it (the page leaves them out): {undocumented}")


def test_parameters_of_different_meaning_have_their_own_descriptions() -> None:
    # "multi_grid, extra_blocks: ResNet block-4 unit rates and blocks 5-7" became, once napoleon split it, the
    # same text under each ("multi_grid - ... rates and blocks 5-7"); "learner, solutions: run the notebooks as a
    # learner does" said solutions=True ran them as a learner
    import inspect

    from sphinx.ext.napoleon import Config
    from sphinx.ext.napoleon.docstring import GoogleDocstring

    from deeplab_edu.models import aspp, deeplab

    for function, names in ((deeplab.build_model, ("multi_grid", "extra_blocks")),
                            (book.execute_notebooks, ("learner", "solutions")),
                            (aspp.SeparableConv2d, ("in_channels", "out_channels"))):
        out = "\n".join(GoogleDocstring(inspect.cleandoc(function.__doc__ or ""), Config()).lines())
        descriptions = {name: re.search(rf"^:param {name}: (.*)$", out, re.M) for name in names}
        assert all(descriptions.values()), (function.__name__, out)
        assert len({d.group(1) for d in descriptions.values() if d}) == len(names), (function.__name__, descriptions)


def test_an_installed_copy_builds_no_book_and_hands_out_no_empty_copy(tmp_path: Path, monkeypatch,
                                                                     capsys) -> None:
    """An audit of the installed wheel: without the course beside the package (site-packages), `python -m
    deeplab_edu.book` made site-packages/book/_build and died with a FileNotFoundError traceback, and
    `student-copy OUT` wrote "0 chapters" and exited 0 (a class handed an empty folder). Both now stop at once
    with one line naming what is missing, before anything is written."""
    from deeplab_edu import book

    site = tmp_path / "site-packages"
    monkeypatch.setattr(book, "NOTEBOOK_DIR", site / "notebooks")
    monkeypatch.setattr(book, "BOOK_DIR", site / "book")
    for argv in (["student-copy", str(tmp_path / "copy")], ["--output", str(tmp_path / "out")], []):
        with pytest.raises(SystemExit) as stopped:
            book.main(argv)
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert "no course beside the package" in err and "Traceback" not in err, err
    assert not (tmp_path / "copy").exists() and not (tmp_path / "out").exists() and not site.exists()


def test_the_colab_cell_installs_what_the_chapters_need_at_the_pinned_versions() -> None:
    """A dependency audit: the Colab cell installed the package's runtime dependencies alone, and chapter 00's
    first code cell (chapter_headers, which reads the headers with jupytext) stopped with a bare
    ModuleNotFoundError, as did chapter 11's ONNX export. The cell installs them at constraints.txt's versions;
    Colab's torch (built for its GPUs) is not replaced by the pinned one."""
    import re

    from deeplab_edu.book_pages import COLAB_CLONE, colab_setup

    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.split("#", 1)[0].strip().partition("==")
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    install = next(line for line in colab_setup().splitlines() if "%pip install" in line)
    for name in ("jupytext", "onnx", "onnxscript", "onnxruntime"):
        assert f" {name}=={pins[name]}" in install, f"{name} is not installed at its pin: {install}"
    assert f"-e {COLAB_CLONE} " in install and "torch" not in install and "-c " not in install


def test_the_book_commands_without_jupytext_name_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A dependency audit: without jupytext (Colab had only the runtime dependencies) python -m deeplab_edu.book,
    student-copy and chapter_headers() ended in a bare ModuleNotFoundError. Each names what to install, as the
    package's other optional features do (choices.require_packages), before any work."""
    import sys

    from deeplab_edu import book

    monkeypatch.setitem(sys.modules, "jupytext", None)  # not installed, as import and find_spec see it
    for argv in (["student-copy", str(tmp_path / "copy")], ["execute", "notebooks/00_start_here.py",
                                                            str(tmp_path / "out.ipynb")]):
        with pytest.raises(SystemExit) as stop:
            book.main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "needs jupytext" in err and "pip install jupytext" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ImportError, match="needs jupytext, not installed here: pip install jupytext"):
        book.chapter_headers()
    with pytest.raises(ImportError, match="pip install jupytext"):
        book.student_copy(tmp_path / "copy")
    assert book.course_runs_minutes() is None


def test_the_intros_chapter_list_credits_each_work_to_the_chapter_that_cites_it() -> None:
    """An audit: the intro's item for chapter 02 credited convolution arithmetic (Dumoulin & Visin) to the
    receptive fields, but relationship 15, output sizes and padding are chapter 01's, and chapter 02 never
    cites it. Every work cited in the intro's numbered item for chapter NN is cited by chapter NN."""
    intro = (REPO_ROOT / "book" / "intro.md").read_text(encoding="utf-8")
    items = re.findall(r"^(\d+)\. (.*?)(?=^\d+\. |^\S|\Z)", intro, re.M | re.S)
    assert len(items) == len(NOTEBOOKS) - 1, [n for n, _ in items]  # chapters 01 to 11
    misplaced = []
    for number, text in items:
        chapter = next(p for p in NOTEBOOKS if p.name.startswith(f"{int(number):02d}_")).read_text(encoding="utf-8")
        for keys in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text):
            misplaced += [f"{key} (item {number})" for key in keys.split(",") if key.strip() not in chapter]
    assert not misplaced, f"book/intro.md credits works to chapters that do not cite them: {misplaced}"
