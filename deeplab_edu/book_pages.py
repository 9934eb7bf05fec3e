"""What the book shows of an executed notebook, and the copy it publishes beside each page.

:func:`for_the_page` is a chapter as its page shows it: widget views, which need a kernel, become a
short note; progress bars the text of their final state; a cell whose output is wider than the text
column spans the margin too; the names of the "Helpers introduced" line link to the API reference;
a book built in the ``smoke`` profile warns under every title (:data:`SMOKE_NOTE`).
:func:`for_colab` is the ``.ipynb`` published beside the page (Colab's button and the page's download
open it): the outputs of the solutions and of the measurements that answer a prediction are left
out, and a first cell installs the package in Colab. :mod:`deeplab_edu.book` calls both.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import yaml

from .config import SMOKE_MEANS
from .records import REPO_ROOT

__all__ = ["COLAB_CLONE", "COLAB_PACKAGES", "PUBLISHED_BRANCH", "SMOKE_NOTE", "WIDE_IMAGE_PX", "WIDE_TABLE_COLUMNS",
           "for_the_page", "for_colab", "colab_setup", "repository_url"]

#: Where the published site lives on GitHub (``ghp-import`` of ``book/_build/html``): the Colab
#: button opens the executed copy of a chapter from there.
PUBLISHED_BRANCH = "gh-pages"
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

_WIDGET_NOTE = ("*Interactive figure: {controls} when the notebook runs (`make lab`, or the Binder "
                "button above); the static figure above shows its default settings.*")


def _widget_note(model_id: str, state: Mapping[str, Any]) -> str:
    """:data:`_WIDGET_NOTE` for the widget ``model_id``, naming its main control: the text box of
    an editor (chapter 02's layer stack), else the sliders."""
    names: dict[str, str] = {}  # model id -> model name, of the widget and all its children
    todo = [model_id]
    while todo:
        mid = todo.pop()
        if mid not in names:
            model = state.get(mid, {})
            names[mid] = str(model.get("model_name"))
            todo += [str(c).replace("IPY_MODEL_", "") for c in model.get("state", {}).get("children", []) or []]
    editor = bool(set(names.values()) & {"TextareaModel", "TextModel"})
    return _WIDGET_NOTE.format(controls="the text box and the controls beside it work" if editor else "the sliders work")


def _progress_text(model_id: str, state: Mapping[str, Any]) -> str | None:
    """The final text of a tqdm progress bar widget (an HBox of HTML, FloatProgress, HTML), its texts
    without the bar itself ("train: 50% 5/10 [00:01<00:01]": the percentage says what the bar showed,
    and a screen reader read a drawn bar as ten "full block"s, an accessibility audit); ``""`` for a
    transient bar (``leave=False``: ``tqdm.notebook`` hides its box when it closes, so the notebook
    shows nothing there, and its text stopped at its last refresh, "96% 23/24"); None for any other
    widget."""
    import html as _html

    box = state.get(model_id, {})
    if box.get("model_name") != "HBoxModel":
        return None
    children = [state.get(str(c).replace("IPY_MODEL_", ""), {}) for c in box.get("state", {}).get("children", [])]
    if not any(c.get("model_name") == "FloatProgressModel" for c in children):
        return None
    layout = state.get(str(box.get("state", {}).get("layout", "")).replace("IPY_MODEL_", ""), {})
    if layout.get("state", {}).get("visibility") == "hidden":
        return ""
    parts = []
    for child in children:
        value = child.get("state", {}).get("value")
        if child.get("model_name") != "FloatProgressModel" and isinstance(value, str):
            parts.append(_html.unescape(value).replace("\u2007", " ").strip())
    return " ".join(p for p in parts if p)


#: Shown under the title of every page of a book built in the ``smoke`` profile (CI's), whose trained
#: models and measurements mean nothing, so that nobody reads or publishes it as the course.
SMOKE_NOTE = (
    "```{warning}\n"
    f"This page was built with the `smoke` profile ({SMOKE_MEANS.replace('the cpu profile', 'the `cpu` profile')})."
    " To read or publish the course, build it with `DEEPLAB_EDU_PROFILE=cpu make book`.\n"
    "```"
)


#: Outputs wider than this (pixels of an image, columns of a printed table) would be shrunk or cramped
#: in the book's text column (about 690 px at a 1280-px window): their cells span the page's margin too
#: (sphinx-book-theme's ``full-width`` tag, 136 % of the column).
WIDE_IMAGE_PX, WIDE_TABLE_COLUMNS = 760, 9


def _is_wide(output: Mapping[str, Any]) -> bool:
    """Whether a cell's output is an image wider than :data:`WIDE_IMAGE_PX` or a printed Markdown table
    of at least :data:`WIDE_TABLE_COLUMNS` columns."""
    import base64
    import struct

    data = output.get("data", {})
    if png := data.get("image/png"):
        width = output.get("metadata", {}).get("image/png", {}).get("width")
        if width is None:  # the PNG header's IHDR: width at bytes 16-20
            width = struct.unpack(">I", base64.b64decode(str(png)[:44])[16:20])[0]
        return int(width) > WIDE_IMAGE_PX
    header = str(data.get("text/markdown", "")).lstrip().partition("\n")[0]
    return header.startswith("|") and header.count("|") - 1 >= WIDE_TABLE_COLUMNS


_HELPERS = "**Helpers introduced:**"
_CODE_NAME = re.compile(r"(?<!`)`([A-Za-z_][\w.]*)`(?!`)")


def _helper_target(name: str, modules: list[Any]) -> tuple[str, str] | None:
    """``("mod", "deeplab_edu.findings")`` or ``("obj", "deeplab_edu.findings.seed_interval")`` (where the
    API reference documents it: a function or class under the module that defines it) for a name of a
    "Helpers introduced" line, a short name looked up in the modules named before it there (latest
    first); None for a name of no module (``plt``, a parameter). A named module is added to ``modules``."""
    import importlib
    import types

    if name.startswith("deeplab_edu"):
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            try:
                module = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            if i == len(parts):
                modules.append(module)
                return "mod", name
            owners, attrs = [module], parts[i:]
            break
        else:
            return None
    else:
        owners, attrs = list(reversed(modules)), [name]
    for owner in owners:
        obj: Any = owner
        for attr in attrs:
            obj = getattr(obj, attr, None)
        if obj is None or isinstance(obj, types.ModuleType):
            continue
        defined_in = getattr(obj, "__module__", None) if callable(obj) else None
        if (isinstance(defined_in, str) and defined_in.startswith("deeplab_edu") and "._" not in defined_in
                and len(attrs) == 1):  # documented where it is defined, unless that module is private
            return "obj", f"{defined_in}.{getattr(obj, '__qualname__', attrs[0])}"
        return "obj", f"{owner.__name__}.{'.'.join(attrs)}"
    return None


def _link_helpers(source: str) -> str:
    """A chapter's "Helpers introduced" line with each name it gives linked to the API reference
    (MyST's ``{py:mod}`` and ``{py:obj}`` roles; a name the reference does not document stays code)."""
    start = source.find(_HELPERS)
    if start < 0:
        return source
    modules: list[Any] = []

    def link(match: re.Match[str]) -> str:
        target = _helper_target(match.group(1), modules)
        if target is None:
            return match.group(0)
        role, full = target
        return f"{{py:mod}}`{full}`" if role == "mod" else f"{{py:obj}}`{match.group(1)} <{full}>`"

    return source[:start] + _CODE_NAME.sub(link, source[start:])


def _drop_figure_html(data: Any) -> None:
    """Remove a figure's ``text/html`` form, JupyterLab's (:data:`~deeplab_edu.viz.alt_text.HTML_MARK`), from an
    output's ``data`` that has the figure's ``image/png``: the book shows the PNG as an image file, with the same
    description as alt text (:func:`_set_alt_text`), not a second copy of it inside the page."""
    from .viz.alt_text import HTML_MARK

    page = data.get("text/html", "")
    page = "".join(page) if isinstance(page, list) else str(page)
    if "image/png" in data and f'class="{HTML_MARK}"' in page:
        del data["text/html"]


def _set_alt_text(cell: Any) -> None:
    """Give the cell's images the descriptions of :func:`~deeplab_edu.viz.alt_text.describe_figure` (the
    figures' ``text/plain``) as alt text: myst-nb's ``mystnb.image.alt`` cell metadata, one text for all
    the images of a cell, so a cell with several figures gets each one's description, numbered, and the
    book's Sphinx extension gives each image its own part (:func:`deeplab_edu.book_sphinx.one_alt_per_image`)."""
    from .viz.alt_text import FIGURE_PREFIX

    texts = []
    for out in cell.outputs:
        data = out.get("data", {})
        text = data.get("text/plain", "")
        text = "".join(text) if isinstance(text, list) else str(text)
        if "image/png" in data and text.startswith(FIGURE_PREFIX):
            texts.append(text)
    options = cell.metadata.get("mystnb", {}).get("image", {})
    if texts and "alt" not in options:
        alt = texts[0] if len(texts) == 1 else " ".join(f"({i} of {len(texts)}) {t}" for i, t in enumerate(texts, 1))
        cell.metadata.setdefault("mystnb", {}).setdefault("image", {})["alt"] = alt


def for_the_page(nb: Any, profile: str | None = None) -> Any:
    """The notebook as the book shows it: widget views (which need a kernel) become a short note;
    progress bars become the text of their final state, printed (a stdout stream, so that the
    book's merged streams keep it in order with the cell's printed lines), and transient bars
    (``leave=False``) nothing; a cell with a wide output (:func:`_is_wide`) spans the margin too
    (``full-width``); each figure's description becomes its image's alt text (:func:`_set_alt_text`), and its
    ``text/html`` form for JupyterLab is dropped (:func:`_drop_figure_html`);
    the names of the "Helpers introduced" line link to the API reference; in the
    ``smoke`` profile a warning (:data:`SMOKE_NOTE`) follows the title. ``nb`` is changed in place and
    returned."""
    import nbformat

    if profile == "smoke":
        first = nb.cells[0] if nb.cells and nb.cells[0].cell_type == "markdown" else None
        titled = first is not None and first.source.startswith("# ")
        title, _, rest = first.source.partition("\n") if first is not None and titled else ("", "", "")
        if first is not None and title:  # the warning right under the title, before the objectives
            first.source = title
            nb.cells[1:1] = [nbformat.v4.new_markdown_cell(SMOKE_NOTE), nbformat.v4.new_markdown_cell(rest.strip("\n"))]
        else:
            nb.cells.insert(1 if first is not None else 0, nbformat.v4.new_markdown_cell(SMOKE_NOTE))
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type == "markdown" and _HELPERS in cell.source:
            cell.source = _link_helpers(cell.source)
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if _WIDGET_MIME in data:
                model_id = str(data[_WIDGET_MIME].get("model_id", ""))
                progress = _progress_text(model_id, state)
                if progress == "":  # a transient bar
                    continue
                if progress:
                    out = nbformat.v4.new_output("stream", name="stdout", text=progress + "\n")
                else:
                    out["data"] = {"text/markdown": _widget_note(model_id, state)}
            _drop_figure_html(data)
            outputs.append(out)
        cell.outputs = outputs
        _set_alt_text(cell)
        if any(_is_wide(out) for out in outputs):
            tags = cell.metadata.setdefault("tags", [])
            if "full-width" not in tags:
                tags.append("full-width")
    nb.metadata.pop("widgets", None)
    return nb


#: Tags of the cells whose outputs the published ``.ipynb`` leaves out: a solution (``hide-cell``) and
#: a measurement that answers a prediction (``hide-output``: "measured: 0" after exercise 03.1).
_ANSWER_TAGS = frozenset({"hide-cell", "hide-output"})


def for_colab(nb: Any) -> Any:
    """The published copy: a first cell installs the course's package when run in Colab, and the
    exercise solutions (``hide-cell``) and the measurements that answer a prediction (``hide-output``)
    carry no outputs: Colab and JupyterLab show a cell's output even where the book collapses it,
    and that output is the answer (running the cell shows it). ``nb`` is changed in place and returned."""
    import nbformat

    for cell in nb.cells:
        if cell.cell_type == "code" and _ANSWER_TAGS & set(cell.metadata.get("tags", [])):
            cell.outputs, cell.execution_count = [], None

    install = nbformat.v4.new_code_cell(colab_setup())
    install.metadata["tags"] = ["colab-setup"]
    nb.cells.insert(0, install)
    return nb


#: Where :func:`colab_setup` clones the repository in Colab.
COLAB_CLONE = "/content/deeplab-edu"
#: What the chapters need in Colab beyond the package's own dependencies (Colab has IPython): jupytext (chapter
#: 00's table of chapters, :func:`deeplab_edu.book.chapter_headers`) and ONNX export and its runtime (chapter 11).
COLAB_PACKAGES = ("jupytext", "onnx", "onnxscript", "onnxruntime")


def colab_setup() -> str:
    """The first cell of a published chapter: in Colab (elsewhere it does nothing, as ``make lab`` has
    set everything up), a clone of the repository, its package installed from the clone and imported
    from it in the running kernel, and the chapters' folder as the working directory. A clone, not
    ``pip install`` of the package alone: the chapters also read the repository's recorded runs
    (``benchmarks/results``) and the book's table of contents. With the package, :data:`COLAB_PACKAGES` at
    constraints.txt's versions, the tested ones; the package's own dependencies (torch above all) are left at
    Colab's versions where they suffice (pip's ``-c constraints.txt`` would replace Colab's torch, built for
    its GPUs, with the pinned one).

    Raises:
        KeyError: constraints.txt has no pin for one of :data:`COLAB_PACKAGES`.
    """
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        name, _, version = line.split("#", 1)[0].strip().partition("==")
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    missing = [name for name in COLAB_PACKAGES if not pins.get(name)]
    if missing:
        raise KeyError(f"constraints.txt pins none of {', '.join(missing)}, which the Colab cell installs: add the "
                       "versions installed in the .venv")
    packages = " ".join(f"{name}=={pins[name]}" for name in COLAB_PACKAGES)
    return (
        "# Colab: the course's repository, its package and what chapters 00 and 11 need (elsewhere `make lab` has set "
        "them up)\n"
        "import sys\n"
        "if 'google.colab' in sys.modules:\n"
        f"    !test -d {COLAB_CLONE} || git clone --quiet --depth 1 {repository_url()} {COLAB_CLONE}\n"
        f"    %pip install --quiet -e {COLAB_CLONE} {packages}\n"
        f"    sys.path.insert(0, '{COLAB_CLONE}')  # this kernel imports it without a restart\n"
        f"    %cd {COLAB_CLONE}/notebooks\n"
    )


def repository_url() -> str:
    """The repository's address as ``book/_config.yml`` gives it (``https://github.com/<org>/<name>``)."""
    config = yaml.safe_load((REPO_ROOT / "book" / "_config.yml").read_text(encoding="utf-8"))
    return str(config.get("repository", {}).get("url", "")).rstrip("/")
