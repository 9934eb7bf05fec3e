"""The core explorers as self-contained JavaScript widgets: interactive without a kernel.

The ipywidgets of chapters 01, 02 and 04 need a running Python kernel; in the static book they
are blank. These explorers compute and draw the same figures in the browser (``explorers.js``,
with ``explorers.css``, shipped inside this package), so they work in the book's HTML pages,
in JupyterLab and in Colab alike, with no CDN and no network:

* ``"atrous"`` (chapter 01): the inputs eq. (1) of DeepLabv3 (Sec. 3.1) reads for one output,
  for a chosen kernel size, rate, stride and padding, with the output size of Dumoulin & Visin's
  relationship 15 (:mod:`deeplab_edu.atrous`), and beside it the 2-D picture of
  :func:`deeplab_edu.viz.atrous.plot_eq1_2d` as :func:`~deeplab_edu.viz.atrous.atrous_widget`
  draws it;
* ``"receptive_field"`` (chapter 02): a layer stack (the text format of
  :func:`deeplab_edu.viz.receptive_field.parse_layer_stack`) and the receptive field of one
  output unit drawn on the photograph, by Araujo et al.'s recurrences
  (:mod:`deeplab_edu.receptive_field`), with the effective field of the stack whose weights are all
  1 (:func:`deeplab_edu.gridding.path_counts`: exact, where the ipywidgets editor averages the
  gradients of a random network);
* ``"boundary"`` (chapter 04): valid taps per output position of a "same" atrous convolution and
  DeepLabv3 Fig. 4 (Sec. 3.3) for the chosen map (:mod:`deeplab_edu.boundary`).

:func:`show` returns an ``IPython.display.HTML`` object whose HTML inlines the script, the
stylesheet and the settings. The JavaScript is a port of the package's arithmetic;
``tests/test_explorers.py`` runs it under node on a grid of settings and checks that every number
equals the package's, and ``tests/test_browser.py`` moves its sliders in Chromium.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["EXPLORERS", "DEFAULTS", "script", "stylesheet", "explorer_html", "show"]

EXPLORERS = ("atrous", "receptive_field", "boundary")

#: Default settings of each explorer (the values the chapters' ipywidgets start from).
DEFAULTS: dict[str, dict[str, Any]] = {
    "atrous": {"input_size": 12, "kernel_size": 3, "rate": 2, "stride": 1, "padding": 2, "output_index": 3},
    "receptive_field": {"stack": None, "photo_size": 128},  # stack None: viz.receptive_field.DEFAULT_STACK
    "boundary": {"height": 33, "width": 33, "rate": 12, "kernel": 3, "max_size": 97, "max_rate": 100},
}

# Slider ranges of the atrous explorer (explorers.js draws the same ranges).
_ATROUS_RANGES = {"input_size": (3, 24), "kernel_size": (1, 7), "rate": (1, 6), "stride": (1, 3), "padding": (0, 8)}


@lru_cache(maxsize=None)
def script() -> str:
    """The JavaScript source of the explorers (``explorers.js``).

    Raises:
        RuntimeError: the source contains ``</script``, which would end the page's script element.
    """
    text = resources.files(__name__).joinpath("explorers.js").read_text(encoding="utf-8")
    if "</script" in text.lower():  # would end the inline <script> early
        raise RuntimeError("explorers.js must not contain '</script'")
    # ASCII only ("×" as \u00d7, valid in its strings, regular expressions and comments), so that the explorer
    # reads the same in a page that declares no encoding (a browser then guesses windows-1252: "32Ã—32")
    return "".join(c if ord(c) < 128 else f"\\u{ord(c):04x}" for c in text)


@lru_cache(maxsize=None)
def stylesheet() -> str:
    """The stylesheet of the explorers (``explorers.css``)."""
    return resources.files(__name__).joinpath("explorers.css").read_text(encoding="utf-8")


def _int_in(settings: dict[str, Any], name: str, low: int, high: int, explorer: str) -> None:
    value = settings[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"explorer {explorer!r}: {name} must be an int, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"explorer {explorer!r}: {name}={value} must lie in {low}..{high}")


@lru_cache(maxsize=8)
def _photo_data_uri(size: int) -> str:
    """The course photograph (:func:`~deeplab_edu.viz.images.sample_photo`) as a JPEG data URI."""
    from PIL import Image

    from ..images import sample_photo

    pixels = (sample_photo(size).permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@lru_cache(maxsize=1)
def _erf_colours(steps: int = 64) -> list[str]:
    """The colour map of the effective map in chapter 02's figures (``receptive_field.ERF_CMAP``), as ``steps`` hex colours."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    from ..receptive_field import ERF_CMAP

    cmap = colormaps[ERF_CMAP].resampled(steps)
    return [to_hex(cmap(i)) for i in range(steps)]


def _stack_output_size(layers: Any, size: int, explorer: str) -> int:
    """The side of the map a layer stack (:func:`~deeplab_edu.viz.receptive_field.parse_layer_stack`) gives on a
    ``size``-pixel photo, as ``stackOutputSize`` in ``explorers.js``; raises ValueError naming the first line
    that gets a map too small for its kernel."""
    from ...atrous import conv_output_size

    n = size
    for kind, spec in layers:
        try:
            n = conv_output_size(n, spec.kernel, spec.stride, spec.padding, spec.dilation)
        except ValueError as err:
            line = spec.name[len(kind):]  # parse_layer_stack names a layer kind + line number
            raise ValueError(f"explorer {explorer!r}: line {line}: this layer gets a map of {n} px (on a {size}-px "
                             f"photo), and {str(err).replace('input_size', 'its input size')}") from None
    return n


def _settings(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Defaults merged with ``overrides``, checked; raises naming the bad argument."""
    if name not in EXPLORERS:
        raise ValueError(f"unknown explorer {name!r}; choose one of {', '.join(EXPLORERS)}")
    unknown = sorted(set(overrides) - set(DEFAULTS[name]))
    if unknown:
        raise TypeError(f"explorer {name!r} has no setting(s) {unknown}; its settings are {sorted(DEFAULTS[name])}")
    s = {**DEFAULTS[name], **overrides}
    if name == "atrous":
        from ...atrous import conv_output_size

        for key, (low, high) in _ATROUS_RANGES.items():
            _int_in(s, key, low, high, name)
        try:  # the page could only say "no output": refused here, where the call can be changed
            n_out = conv_output_size(s["input_size"], s["kernel_size"], s["stride"], s["padding"], s["rate"])
        except ValueError as err:
            raise ValueError(f"explorer {name!r}: these settings give no output: {err}") from None
        _int_in(s, "output_index", 0, n_out - 1, name)
    elif name == "receptive_field":
        from ..receptive_field import DEFAULT_STACK, parse_layer_stack

        if s["stack"] is None:
            s["stack"] = DEFAULT_STACK
        if not isinstance(s["stack"], str):
            raise TypeError(f"explorer {name!r}: stack must be the text of a layer stack, got {type(s['stack']).__name__}")
        layers = parse_layer_stack(s["stack"])  # raises ValueError naming the line
        _int_in(s, "photo_size", 16, 256, name)
        _stack_output_size(layers, s["photo_size"], name)  # the page would only say "cannot draw this stack"
        s["photo"] = _photo_data_uri(s["photo_size"])
        s["erf_colours"] = _erf_colours()
    else:
        _int_in(s, "max_size", 1, 256, name)
        _int_in(s, "max_rate", 1, 512, name)
        _int_in(s, "height", 1, s["max_size"], name)
        _int_in(s, "width", 1, s["max_size"], name)
        _int_in(s, "rate", 1, s["max_rate"], name)
        _int_in(s, "kernel", 1, 15, name)
        if s["kernel"] % 2 == 0:
            raise ValueError(f"explorer {name!r}: kernel={s['kernel']} must be odd ('same' padding is symmetric)")
        from ..boundary import count_colours  # the figures' colours: one table for Python and JavaScript

        s["colours"] = {str(c): colour for c, colour in count_colours(s["kernel"]).items()}
    return s


def explorer_html(name: str, **settings: Any) -> str:
    """Self-contained HTML of explorer ``name``: a container, the stylesheet and the script, inlined.

    Args:
        name: ``"atrous"``, ``"receptive_field"`` or ``"boundary"``.
        **settings: start values (defaults: :data:`DEFAULTS`), whole numbers unless said; sizes in pixels
            (positions of a 1-D input for ``"atrous"``):

            - ``"atrous"``: ``input_size`` (3-24), ``kernel_size`` (1-7), ``rate`` (1-6), ``stride``
              (1-3), ``padding`` (0-8), and ``output_index`` (from 0 to the output size less one), the
              output whose inputs are drawn; the slider ranges of the page.
            - ``"receptive_field"``: ``stack``, the text of a layer stack
              (:func:`~deeplab_edu.viz.receptive_field.parse_layer_stack`; ``None``: its
              ``DEFAULT_STACK``), and ``photo_size`` (16-256), the photograph's side.
            - ``"boundary"``: ``height`` and ``width`` of the feature map (1 to ``max_size``), ``rate``
              (1 to ``max_rate``), an odd ``kernel`` (1-15), and the sliders' ends ``max_size`` (at
              most 256) and ``max_rate`` (at most 512).

    Returns:
        An HTML fragment that needs nothing else (no CDN, no kernel, no other file).

    Raises:
        ValueError: ``name`` is not an explorer, a setting is out of its range, or the settings give no
            output (an atrous filter wider than its padded input; a stack with a layer whose map is
            smaller than its kernel on the photo: the message names the line).
        TypeError: a setting's name is unknown, or its value of the wrong type.
    """
    s = _settings(name, settings)
    element_id = f"dle-{name.replace('_', '-')}-{uuid.uuid4().hex[:12]}"
    # "<" escaped so that no string in the settings can close the <script> element.
    payload = json.dumps(s).replace("<", "\\u003c")
    return (
        f'<div id="{element_id}" class="dle-explorer" data-explorer="{name}">'
        f"(this explorer needs JavaScript)</div>\n"
        f"<style>\n{stylesheet()}</style>\n"
        f"<script>\n{script()}\n"
        f'DeeplabEduExplorers.mount("{element_id}", "{name}", {payload});\n</script>\n'
    )


def show(name: str, **settings: Any) -> Any:
    """Explorer ``name`` for a notebook cell: an ``IPython.display.HTML`` object (see :func:`explorer_html`).

    Example (chapter 01): ``show("atrous", kernel_size=3, rate=2, padding=2)``.
    """
    from IPython.display import HTML

    return HTML(explorer_html(name, **settings))
