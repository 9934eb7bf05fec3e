"""The book's Sphinx extension (listed in ``book/_config.yml``): what Jupyter Book's defaults get wrong here.

- the launch buttons: Colab opens the executed copy published beside the page, Binder the ``.py``
  notebook in JupyterLab (:mod:`deeplab_edu.book_pages`);
- one copy of each script a page loads;
- attribute, data and property documentation read as prose, not as napoleon's ``type: description``,
  and a dataclass of many fields without its run-on signature, each field with its default;
- an ``@overload``-ed function with its implementation's signature (defaults shown), not its stubs;
- a reference to a name a package re-exports (``deeplab_edu.models.build_model``) linked to where
  the page documents it (:func:`home_of`);
- the bibliography's entries labelled as the text cites them (:data:`BIBLIOGRAPHY_STYLE`);
- each figure of a cell with several its own alt text (:func:`one_alt_per_image`);
- the book's stylesheet (``book/_static/deeplab_edu.css``: printed output, long inline code and
  signatures wrap; wide tables and equations scroll in place; wide outputs span the margin).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from .book_pages import PUBLISHED_BRANCH, repository_url
from .records import REPO_ROOT

__all__ = ["BIBLIOGRAPHY_STYLE", "home_of", "one_alt_per_image", "setup"]

#: The start of a cell's alt text that holds the descriptions of several figures, numbered
#: (:func:`deeplab_edu.book_pages._set_alt_text`): ``"(1 of 2) Figure... (2 of 2) Figure..."``.
_NUMBERED_ALT = re.compile(r"\(1 of (\d+)\) ")


def one_alt_per_image(app: Any, doctree: Any) -> None:
    """Give each image of a cell with several figures its own description.

    myst-nb takes a cell's alt text from its ``mystnb.image.alt`` metadata and gives that one text to
    every image the cell shows (``myst_nb/core/render.py``, ``render_image``): the book writes the
    descriptions of all of them into it, numbered ``(1 of n)`` to ``(n of n)``, and this
    ``doctree-read`` handler gives the k-th image with that text its k-th part (an accessibility
    audit: a screen reader read both descriptions at each of two figures)."""
    from docutils import nodes

    seen: dict[str, int] = {}
    for image in doctree.findall(nodes.image):
        alt = image.get("alt", "")
        match = _NUMBERED_ALT.match(alt)
        if match is None:
            continue
        n = int(match.group(1))
        parts = re.split(rf"(?:^|\s)\(\d+ of {n}\) ", alt)[1:]
        if len(parts) != n:  # a description that itself holds "(k of n)": left whole
            continue
        k = seen.get(alt, 0)
        image["alt"] = parts[k % n]
        seen[alt] = k + 1


def _launch_links(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Point Colab at the published executed copy and Binder at the notebook in the repository.

    sphinx-book-theme would send both to ``<branch>/<page>.ipynb`` of the repository, which holds
    Jupytext ``.py`` sources only. Colab needs an ``.ipynb``: the one this build publishes next to
    the page (on the ``gh-pages`` branch once published). Binder builds the repository
    (``environment.yml`` + ``postBuild``) and opens the ``.py`` notebook in JupyterLab.
    """
    if not pagename.startswith("notebooks/"):
        return
    repo = repository_url()
    match = re.match(r"https://github\.com/([^/]+)/([^/]+)", repo)
    if not match:
        return
    org, name = match.groups()
    branch = app.config.html_theme_options.get("repository_branch", "main")
    for button in context.get("header_buttons", []):
        for item in button.get("buttons", []) if isinstance(button, dict) else []:
            text = item.get("text")
            if text == "Colab":
                item["url"] = (f"https://colab.research.google.com/github/{org}/{name}/blob/"
                               f"{PUBLISHED_BRANCH}/{pagename}.ipynb")
            elif text == "Binder":
                item["url"] = f"https://mybinder.org/v2/gh/{org}/{name}/{branch}?urlpath=lab/tree/{pagename}.py"


def _drop_duplicate_scripts(app: Any, pagename: str, templatename: str, context: dict[str, Any],
                            doctree: Any) -> None:
    """Keep one copy of each script: sphinx-thebe adds its ``const THEBE_JS_URL`` snippet once per
    read of the sources, and a second copy is a JavaScript error on every page."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[str] = set()
    kept = []
    for script in scripts:
        # an inline script (filename None or "") is the same script as another with its body
        body = str(getattr(script, "attributes", {}).get("body", "") or "")
        key = "body:" + body if body else "file:" + str(getattr(script, "filename", script))
        if key in seen:
            continue
        seen.add(key)
        kept.append(script)
    context["script_files"] = kept


def _add_static(app: Any, config: Any) -> None:
    """Serve ``book/_static`` (the book's own stylesheet) beside the theme's files."""
    config.html_static_path = [*config.html_static_path, str(REPO_ROOT / "book" / "_static")]


def _attribute_doc_has_no_type(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Keep napoleon from reading an attribute's first line as ``type: description``.

    The package documents attributes, data and properties in prose (``#: Random scale factors of
    training images, (min, max) (DeepLabv3 sec. 4.1: 0.5 to 2.0).``) and gives their types as hints;
    napoleon's Google style would split that line at its colon into a "Type" field ("0.5 to 2.0).")
    and a description. A leading ``": "`` is an empty type in its syntax: the whole line is the
    description. Runs before napoleon (``autodoc-process-docstring`` at priority 400; napoleon's is 500).
    """
    if what in ("attribute", "data", "property"):
        for i, line in enumerate(lines):
            if line.strip():
                lines[i] = ": " + line
                break


#: A dataclass with more fields than this shows ``(**fields)`` as its signature: ``TrainConfig``'s
#: 60 keywords with their defaults made one line of about 1000 characters, above the same fields
#: documented one by one.
SIGNATURE_FIELDS_AT_MOST = 12


def _short_dataclass_signature(app: Any, what: str, name: str, obj: Any, options: Any, signature: str | None,
                               return_annotation: str | None) -> tuple[str, str | None] | None:
    """``(**fields)`` for a dataclass of more than :data:`SIGNATURE_FIELDS_AT_MOST` fields
    (``autodoc-process-signature``); None leaves every other signature as autodoc made it."""
    import dataclasses

    if what == "class" and dataclasses.is_dataclass(obj) and len(dataclasses.fields(obj)) > SIGNATURE_FIELDS_AT_MOST:
        return "(**fields)", return_annotation
    return None


def _autodocumenters() -> list[Any]:
    """autodoc's function and attribute documenters, mended (registered by :func:`setup`; defined here
    since Sphinx is the book's dependency, not the package's).

    - a function with ``@overload`` stubs (``build_model``, ``build_backbone``, ``crf.mean_field``)
      shows its implementation's signature, defaults included, where autodoc shows only the stubs'
      (five of ``build_model`` without a default, three of ``mean_field`` of 350 characters each);
    - a dataclass field shows its default (``lr: float = 0.007``), although ``no-value``
      (``autodoc_default_options`` in ``book/_config.yml``) hides the value of every module's data:
      ``TrainConfig``'s signature is ``(**fields)`` (:data:`SIGNATURE_FIELDS_AT_MOST`), and its
      defaults were written nowhere. A field with a ``default_factory`` shows none.
    """
    import dataclasses

    from sphinx.ext.autodoc import AttributeDocumenter, FunctionDocumenter

    class ImplementationSignature(FunctionDocumenter):
        def format_signature(self, **kwargs: Any) -> str:
            if self.analyzer is not None:
                self.analyzer.overloads.pop(".".join(self.objpath), None)
            return str(super().format_signature(**kwargs))

    class FieldDefault(AttributeDocumenter):
        def add_directive_header(self, sig: str) -> None:
            if dataclasses.is_dataclass(self.parent):
                field = {f.name: f for f in dataclasses.fields(self.parent)}.get(self.objpath[-1])
                if field is not None and field.default is not dataclasses.MISSING:
                    self.options = self.options.copy()  # shared by the class's other members
                    self.options["no-value"] = False
            super().add_directive_header(sig)

    return [ImplementationSignature, FieldDefault]


def home_of(target: str, module: str | None = None) -> str | None:
    """Where the API page documents a package name referred to by another: ``obj.__module__`` +
    ``"." + obj.__qualname__``.

    A package that gathers its modules' names (``:ignore-module-all:`` in ``book/api.md``) documents
    none of them under its own name: ``deeplab_edu.models.build_model`` is documented as
    ``deeplab_edu.models.deeplab.build_model``. A name without the package's prefix is looked up in
    ``module``, the module whose docstring refers to it (``ConfusionMatrix.compute`` in
    ``deeplab_edu.inference``, which imports ``ConfusionMatrix``).

    Args:
        target: the reference's target, dotted (``"deeplab_edu.data.build_dataset"``).
        module: the dotted name of the module the reference is in, or None.

    Returns:
        The dotted name of the object's definition; None for a target outside ``deeplab_edu``, one that
        names no class, function or method of the package (module data, a TypeVar, a type alias such as
        ``JointTransform``), or one already at its home.
    """
    for name in (target, f"{module}.{target}" if module else ""):
        if not name.startswith("deeplab_edu."):
            continue
        parts = name.split(".")
        for i in range(len(parts) - 1, 0, -1):  # the longest importable module, then attributes
            try:
                obj: Any = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            try:
                for attribute in parts[i:]:
                    obj = getattr(obj, attribute)
            except AttributeError:
                break
            home, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
            if (isinstance(home, str) and home.startswith("deeplab_edu.") and isinstance(qualname, str)
                    and f"{home}.{qualname}" != name):
                return f"{home}.{qualname}"
            break
    return None


def _resolve_at_home(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """``missing-reference``: link a reference Sphinx found no target for to its :func:`home_of`;
    None (Sphinx's warning stands) where that is not documented either."""
    if node.get("refdomain") != "py":
        return None
    home = home_of(node.get("reftarget", ""), node.get("py:module"))
    if home is None:
        return None
    return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, node["reftype"], home, node, contnode)


#: The bibliography's style (``bibtex_default_style`` in ``book/_config.yml``): each entry labelled as
#: the text cites it ("Chen et al., 2018a", ``bibtex_reference_style: author_year``), sorted by author
#: and year; pybtex's default labels ("[CPK+8a]") match nothing a reader sees in the chapters.
BIBLIOGRAPHY_STYLE = "deeplab_edu_author_year"


def _register_bibliography_style() -> None:
    """Register :data:`BIBLIOGRAPHY_STYLE` with pybtex: ``unsrt``'s entries, author-year labels."""
    from pybtex.plugin import register_plugin
    from pybtex.richtext import Text
    from pybtex.style.formatting.unsrt import Style
    from pybtex.style.labels import BaseLabelStyle
    from pybtex.style.sorting import BaseSortingStyle

    def last_names(entry: Any) -> list[str]:
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        return [Text(*person.rich_last_names).render_as("text") for person in people]

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries: Any) -> Any:
            for entry in sorted_entries:
                names = last_names(entry)
                who = f"{names[0]} et al." if len(names) > 2 else " and ".join(names) or entry.key
                yield f"{who}, {entry.fields.get('year', 'n.d.')}"

    class ByLabel(BaseSortingStyle):  # as the labels read: first author, then year ("2018a" before "2018b")
        def sorting_key(self, entry: Any) -> tuple[str, str, str]:
            return (" ".join(last_names(entry)[:1]).lower(), entry.fields.get("year", ""), entry.fields.get("title", ""))

    class AuthorYearStyle(Style):
        default_label_style = AuthorYearLabels
        default_sorting_style = ByLabel

    register_plugin("pybtex.style.formatting", BIBLIOGRAPHY_STYLE, AuthorYearStyle, force=True)


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension (``book/_config.yml``): launch buttons, the thebe script fix, attribute
    documentation read as prose (``_attribute_doc_has_no_type``), overloaded functions' and dataclass
    fields' signatures (``_autodocumenters``), references to re-exported names
    (:func:`home_of`), one alt text per figure
    (:func:`one_alt_per_image`), the bibliography's labels
    (:data:`BIBLIOGRAPHY_STYLE`) and the book's stylesheet
    (``book/_static/deeplab_edu.css``: printed output, long inline code and signatures wrap; wide
    tables and equations scroll in place)."""
    app.connect("config-inited", _add_static)
    app.connect("autodoc-process-docstring", _attribute_doc_has_no_type, priority=400)
    app.connect("autodoc-process-signature", _short_dataclass_signature)
    for documenter in _autodocumenters():
        app.add_autodocumenter(documenter, override=True)
    app.connect("missing-reference", _resolve_at_home)
    _register_bibliography_style()
    app.add_css_file("deeplab_edu.css")
    app.connect("html-page-context", _launch_links, priority=900)
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    app.connect("doctree-read", one_alt_per_image)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
