"""Figures get a text alternative: a description from their own titles, labels and legends, as their
plain-text form in Jupyter, and as the ``alt`` of their image in the book."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from deeplab_edu.viz.alt_text import FIGURE_PREFIX, describe_figure  # noqa: E402


def test_a_figure_is_described_by_its_titles_labels_and_legends() -> None:
    fig, (a, b) = plt.subplots(1, 2)
    fig.suptitle("Receptive field of $3 \\times 3$ convolutions")
    a.imshow(np.zeros((4, 4)))
    a.set_title("rate $r_{1}$\n9 of 1089 inputs")
    b.plot([1, 2], label="parameters")
    b.plot([2, 1], label="multiply-adds")
    b.legend()
    b.set_xlabel("atrous rate r")
    b.set_ylabel("pixels")
    fig.colorbar(a.images[0], ax=a)  # a colour bar is not a panel
    assert describe_figure(fig) == ("Figure: Receptive field of 3 times 3 convolutions. 2 panels. "
                                    "1: rate r_1, 9 of 1089 inputs. "
                                    "2: x: atrous rate r; y: pixels; legend: parameters, multiply-adds.")
    plt.close(fig)


def test_an_untitled_image_and_a_long_description() -> None:
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((4, 4)))
    assert describe_figure(fig) == "Figure. An image."
    ax.set_title("word " * 100)
    short = describe_figure(fig, max_chars=60)
    assert len(short) <= 60 and short.endswith("…") and short.startswith(FIGURE_PREFIX)
    with pytest.raises(ValueError, match="max_chars must be at least 40"):
        describe_figure(fig, max_chars=10)
    plt.close(fig)


def test_untitled_image_panels_are_counted_and_a_figures_legend_is_read() -> None:
    """An audit (stop 70): a gallery's description read "5: an image." eight times, and the class legend
    under it, the key to its colours, was left out."""
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(2, 3)
    for ax in axes.flat:
        ax.imshow(np.zeros((4, 4)))
    axes[0, 0].set_title("scene 7, as drawn")
    fig.legend(handles=[Patch(color="k", label="background"), Patch(color="r", label="disc")])
    assert describe_figure(fig) == ("Figure. 6 panels, 5 of them untitled images. 1: scene 7, as drawn. "
                                    "Legend: background, disc.")
    plt.close(fig)


def test_the_book_gives_each_figure_its_description_as_alt_text() -> None:
    from deeplab_edu.book_pages import for_the_page

    import base64
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")

    def figure(text: str) -> dict:
        return nbformat.v4.new_output("display_data", {"image/png": base64.b64encode(png.getvalue()).decode(),
                                                       "text/plain": text})

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("one", outputs=[figure("Figure: A.")]),
                nbformat.v4.new_code_cell("two", outputs=[figure("Figure: A."), figure("Figure: B.")]),
                nbformat.v4.new_code_cell("mpl's own", outputs=[figure("<Figure size 640x480 with 1 Axes>")]),
                nbformat.v4.new_code_cell("set", outputs=[figure("Figure: A.")],
                                          metadata={"mystnb": {"image": {"alt": "mine"}}})]
    alts = [c.metadata.get("mystnb", {}).get("image", {}).get("alt") for c in for_the_page(nb).cells]
    assert alts == ["Figure: A.", "(1 of 2) Figure: A. (2 of 2) Figure: B.", None, "mine"]


@pytest.mark.slow
def test_a_jupyter_kernel_shows_each_figure_with_its_description(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a kernel (Jupyter's inline backend, which drops Figure's formatters when it starts), the
    first figure of the session, a figure shown with ``plt.show()`` and one shown at the cell's end
    all carry the description, also after ``%matplotlib inline`` starts the backend again."""
    from deeplab_edu.book import reliable_client

    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own backend, as in JupyterLab (not the tests' Agg)

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in [
        "import matplotlib.pyplot as plt\nimport deeplab_edu.viz",
        "fig, ax = plt.subplots()\nax.set_title('first')\nplt.show()",
        "fig, ax = plt.subplots()\nax.set_title('at the end')",
        "%matplotlib inline",
        "fig, ax = plt.subplots()\nax.set_xlabel('after the magic')"]]
    reliable_client(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    images = [o for c in nb.cells for o in c.outputs if "image/png" in o.get("data", {})]
    texts = [o["data"]["text/plain"] for o in images]
    assert texts == ["Figure. first.", "Figure. at the end.", "Figure. x: after the magic."], texts
    # each a "retina" PNG (an accessibility audit, stop 70: 100-dpi figures were blurred on HiDPI screens):
    # twice the pixels of the size it is shown at, which its metadata gives
    import base64
    import struct

    for o in images:
        assert "image/png" in o.get("metadata", {}), o.get("metadata")
        pixels = struct.unpack(">I", base64.b64decode(o["data"]["image/png"][:44])[16:20])[0]
        assert abs(pixels - 2 * o["metadata"]["image/png"]["width"]) <= 1, (pixels, o.get("metadata"))  # w // 2 of odd w


def test_each_image_of_a_cell_with_several_figures_gets_its_own_alt_text() -> None:
    """myst-nb gives a cell's one alt text to each of its images; the book's Sphinx extension splits the
    numbered descriptions (an audit, stop 70: a screen reader read both descriptions at each figure)."""
    from docutils import nodes

    from deeplab_edu.book_sphinx import one_alt_per_image

    both = "(1 of 2) Figure: loss. (2 of 2) Figure: mIoU."
    doctree = nodes.section()
    for alt in (both, both, "Figure: alone.", both):  # the fourth: a second cell showing the same figures
        doctree += nodes.image(uri="x.png", alt=alt)
    one_alt_per_image(None, doctree)
    assert [image["alt"] for image in doctree.findall(nodes.image)] == [
        "Figure: loss.", "Figure: mIoU.", "Figure: alone.", "Figure: loss."]


def test_a_bar_per_class_names_its_classes() -> None:
    """An accessibility audit: chapter 11's IoU per class was described as "y: IoU (%)", its classes (the x
    axis's tick labels, with no axis label) left out; numeric ticks stay out."""
    fig, ax = plt.subplots()
    ax.bar(["road", "car", "sky"], [1, 2, 3])
    ax.set_ylabel("IoU (%)")
    assert "x: road, car, sky; y: IoU (%)" in describe_figure(fig)
    ax.set_xlabel("class")
    assert "x: class (road, car, sky)" in describe_figure(fig)
    many, axes = plt.subplots()
    axes.bar([f"class {c}" for c in range(15)], range(15))
    assert "class 11 and 3 more" in describe_figure(many)
    numeric, axes = plt.subplots()
    axes.plot([1, 2], [3, 4])
    axes.set_xlabel("iteration")
    assert describe_figure(numeric) == "Figure. x: iteration."
    axes.set_xscale("log")  # a review: mathtext ticks ($\\mathdefault{10^{0}}$) were read as "mathdefault10^0"
    numeric.canvas.draw()
    assert describe_figure(numeric) == "Figure. x: iteration."
    plt.close("all")


def test_jupyterlab_shows_each_figure_with_its_description_as_alt(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """JupyterLab's image renderer gives an ``image/png`` no alt (the accessibility audit: a screen reader met every
    figure as an unnamed image); a figure's ``text/html`` form, which JupyterLab prefers, is the same PNG in an
    <img> with the description as alt, drawn once for both forms; none where a learner chose SVG; the book drops
    it and keeps its image."""
    import base64
    import html as html_lib

    from deeplab_edu.book import reliable_client
    from deeplab_edu.book_pages import for_the_page
    from deeplab_edu.viz.alt_text import HTML_MARK

    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own backend, as in JupyterLab
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in [
        "import matplotlib.figure\nimport matplotlib.pyplot as plt\nimport deeplab_edu.viz",
        "png = get_ipython().display_formatter.formatters['image/png'].lookup_by_type(matplotlib.figure.Figure)\n"
        "drawn = []\ndraw = png.draw\npng.draw = lambda fig: drawn.append(fig) or draw(fig)",
        "fig, ax = plt.subplots()\nax.set_title('a <title> & more')\nplt.show()",
        "print(len(drawn))",
        "from matplotlib_inline.backend_inline import set_matplotlib_formats\nset_matplotlib_formats('svg')",
        "fig, ax = plt.subplots()\nax.set_title('as svg')\nplt.show()"]]
    reliable_client(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    shown = nb.cells[2].outputs[0]["data"]
    page = shown["text/html"]
    assert f'alt="{html_lib.escape("Figure. a <title> & more.", quote=True)}"' in page and HTML_MARK in page, page[-300:]
    assert base64.b64decode(shown["image/png"]) == base64.b64decode(page.split("base64,")[1].split('"')[0])
    assert f'width="{nb.cells[2].outputs[0]["metadata"]["image/png"]["width"]}"' in page  # shown at its size
    assert nb.cells[3].outputs[0]["text"].strip() == "1"  # drawn once for the two forms
    svg = nb.cells[5].outputs[0]["data"]
    assert "image/svg+xml" in svg and "text/html" not in svg, list(svg)
    book = for_the_page(nb).cells[2].outputs[0]["data"]
    assert "text/html" not in book and "image/png" in book
