"""The JavaScript explorers compute the same numbers as the package, and their HTML is self-contained.

``deeplab_edu/viz/explorers/explorers.js`` ports the arithmetic of :mod:`deeplab_edu.atrous`,
:mod:`deeplab_edu.receptive_field` (and the layer-stack parser of chapter 02) and
:mod:`deeplab_edu.boundary`. Its ``core`` functions run here under node on a grid of settings
and every result is compared with the package's (errors included: both must refuse the same
input). What the explorers draw is checked in Chromium by ``tests/test_browser.py``.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from deeplab_edu import atrous, boundary
from deeplab_edu.receptive_field import receptive_field, receptive_field_table
from deeplab_edu.viz import explorers
from deeplab_edu.viz.receptive_field import DEFAULT_STACK, parse_layer_stack, stack_model

JS = Path(explorers.__file__).with_name("explorers.js")
NODE = shutil.which("node")

# Reads [[function, [args...]], ...] on stdin, prints [{"ok": result} | {"error": message}, ...].
_DRIVER = """
const api = require(process.argv[1]);
let input = "";
process.stdin.on("data", (d) => { input += d; });
process.stdin.on("end", () => {
  const out = JSON.parse(input).map(([fn, args]) => {
    try { return { ok: api.core[fn](...args) }; } catch (e) { return { error: String(e.message) }; }
  });
  process.stdout.write(JSON.stringify(out));
});
"""

needs_node = pytest.mark.skipif(NODE is None, reason="node (Node.js) is not installed: cannot run explorers.js")


def run_js(calls: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """Evaluate ``core[fn](*args)`` for every call in one node process."""
    proc = subprocess.run(
        [NODE, "-e", _DRIVER, str(JS)], input=json.dumps(calls), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"node failed on explorers.js:\n{proc.stderr[-3000:]}"
    results = json.loads(proc.stdout)
    assert len(results) == len(calls)
    return results


def python_or_error(fn: Any, *args: Any) -> dict[str, Any]:
    try:
        return {"ok": fn(*args)}
    except (ValueError, TypeError) as err:
        return {"error": str(err)}


def assert_same(calls: list[tuple[str, list[Any]]], expected: list[dict[str, Any]], *, close: bool = False) -> None:
    got = run_js(calls)
    mismatches = []
    for call, js, py in zip(calls, got, expected):
        if ("error" in js) != ("error" in py):
            mismatches.append(f"{call}: JavaScript {js}, Python {py}")
        elif "ok" in py:
            same = np.allclose(js["ok"], py["ok"], rtol=0, atol=1e-12) if close else js["ok"] == py["ok"]
            if not same:
                mismatches.append(f"{call}: JavaScript {js['ok']}, Python {py['ok']}")
    assert not mismatches, f"{len(mismatches)} of {len(calls)} differ, e.g.:\n" + "\n".join(mismatches[:10])


# ----------------------------------------------------------------------------- chapter 01
@needs_node
def test_atrous_arithmetic_matches_the_package() -> None:
    calls, expected = [], []
    for n in range(1, 14):
        for k in range(1, 6):
            for r in range(1, 5):
                calls.append(("effectiveKernelSize", [k, r]))
                expected.append(python_or_error(atrous.effective_kernel_size, k, r))
                for s in range(1, 4):
                    for p in range(0, 4):
                        calls.append(("convOutputSize", [n, k, s, p, r]))
                        expected.append(python_or_error(atrous.conv_output_size, n, k, s, p, r))
                        for i in range(0, 4):
                            calls.append(("inputPositions", [i, k, r, s, p]))
                            expected.append(python_or_error(atrous.input_positions, i, k, r, s, p))
    assert sum("error" in e for e in expected) > 100, "the grid should include inputs with no output"
    assert_same(calls, expected)


# ----------------------------------------------------------------------------- chapter 02
def _random_stacks(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    stacks = []
    for _ in range(count):
        lines = []
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.25:
                k = rng.choice([2, 3])
                lines.append(f"pool k={k} s={rng.choice([1, 2])}" + (f" p={rng.randint(0, k // 2)}" if rng.random() < 0.3 else ""))
            else:
                line = f"conv k={rng.choice([1, 3, 5])}"
                if rng.random() < 0.4:
                    line += f" s={rng.choice([1, 2])}"
                if rng.random() < 0.5:
                    line += f" d={rng.choice([1, 2, 3, 4, 6])}"
                if rng.random() < 0.2:
                    line += f" p={rng.randint(0, 4)}"
                lines.append(line + ("   # a comment" if rng.random() < 0.1 else ""))
        stacks.append("\n".join(lines))
    return stacks


STACKS = [DEFAULT_STACK, "conv k=7 s=2\npool k=3 s=2 p=1\nconv\nconv k=3 d=2", "\n# only a comment\nCONV K=3 S=2\n\n"]
STACKS += ["\ufeffconv k=3\r\nconv k=5\rpool k=2 s=2",  # a byte-order mark and Windows/old Mac line ends
           "conv\u00a0k=3\u2003d=2 \ufeff\nconv\tk=5\v"]  # pasted no-break and em spaces, a tab: spaces
STACKS += _random_stacks(120)
BAD_STACKS = ["", "# nothing", "conv k=3 x=2", "pool k=2 d=2", "pool k=2 p=2", "conv k=0", "conv s=0",
              "dense k=3", "conv k=3 s=2 d=-1", "conv k=3\nconv q=1", "conv k=3s=2",
              "conv k=3\u2028conv k=5", "conv k=\u0663",  # a Unicode line separator and digit: not in the JavaScript
              "conv k=3\x85", "\x1cconv k=3"]  # control characters Python's strip() would drop and JavaScript's keeps


def _layers_py(text: str) -> list[dict[str, Any]]:
    return [{"kind": kind, "kernel": sp.kernel, "stride": sp.stride, "padding": sp.padding, "dilation": sp.dilation,
             "name": sp.name} for kind, sp in parse_layer_stack(text)]


@needs_node
def test_layer_stack_parser_matches_the_package() -> None:
    calls = [("parseLayerStack", [text]) for text in STACKS + BAD_STACKS]
    expected = [python_or_error(_layers_py, text) for text in STACKS + BAD_STACKS]
    assert all("error" in e for e in expected[len(STACKS):]), "every bad stack must be refused by the package"
    assert_same(calls, expected)


@needs_node
def test_receptive_field_matches_the_package() -> None:
    calls, expected = [], []
    for text in STACKS:
        layers = _layers_py(text)
        specs = [sp for _, sp in parse_layer_stack(text)]
        rf = receptive_field(specs)
        calls.append(("receptiveField", [layers]))
        expected.append({"ok": {"size": rf.size, "stride": rf.stride, "padding": rf.padding}})
        calls.append(("receptiveFieldTable", [layers]))
        expected.append({"ok": receptive_field_table(specs)})
        for index in (0, 1, 5, 17):
            calls.append(("region", [{"size": rf.size, "stride": rf.stride, "padding": rf.padding}, index]))
            expected.append({"ok": list(rf.region(index))})
    assert_same(calls, expected)


@needs_node
def test_stack_output_size_matches_the_pytorch_model() -> None:
    """The feature-map size the explorer draws is the size the network really returns."""
    calls, expected = [], []
    for text in STACKS[:40]:
        layers = parse_layer_stack(text)
        model = stack_model(layers, channels=1, in_channels=1)
        for size in (17, 64, 128):
            calls.append(("stackOutputSize", [_layers_py(text), size]))
            try:
                with torch.no_grad():
                    out = model(torch.zeros(1, 1, size, size))
                expected.append({"ok": int(out.shape[-1])})
            except RuntimeError as err:  # the map shrank to nothing
                expected.append({"error": str(err)})
    assert any("error" in e for e in expected) and any("ok" in e for e in expected)
    assert_same(calls, expected)


@needs_node
def test_path_counts_matches_the_package() -> None:
    """The explorer's effective map (every weight 1) is the package's, for every unit tried, errors included."""
    from deeplab_edu.gridding import path_counts

    calls, expected = [], []
    for text in STACKS[:60]:
        specs = [sp for _, sp in parse_layer_stack(text)]
        for size in (17, 64, 128):
            for index in (0, 3, 30, 200):
                calls.append(("pathCounts", [_layers_py(text), size, index]))
                expected.append(python_or_error(lambda *a: path_counts(*a).tolist(), specs, size, index))
    assert sum("error" in e for e in expected) > 20 and sum("ok" in e for e in expected) > 200
    assert_same(calls, expected, close=True)


# ----------------------------------------------------------------------------- chapter 04
@needs_node
def test_boundary_counts_match_the_package() -> None:
    calls, expected = [], []
    sizes = [(1, 1), (2, 5), (7, 7), (9, 4), (13, 20), (33, 33), (33, 17)]
    for kernel in (1, 3, 5, 7):
        calls.append(("possibleCounts", [kernel]))
        expected.append({"ok": list(boundary.possible_counts(kernel))})
        for h, w in sizes:
            for rate in (1, 2, 3, 5, 8, 12, 16, 17, 24, 33, 40):
                calls.append(("validTapCounts", [h, w, kernel, rate]))
                expected.append({"ok": boundary.valid_tap_counts(h, w, kernel, rate).tolist()})
                calls.append(("meanValidFraction", [h, w, rate, kernel]))
                expected.append({"ok": boundary.mean_valid_fraction((h, w), rate, kernel)})
    for call in (("validTapCounts1d", [5, 2, 1]), ("validTapCounts", [5, 5, 3, 0]), ("validTapCounts", [0, 5, 3, 1])):
        calls.append(call)
        expected.append({"error": "the package refuses it too"})
        with pytest.raises((ValueError, TypeError)):
            fn = boundary.valid_tap_counts_1d if call[0] == "validTapCounts1d" else boundary.valid_tap_counts
            fn(*call[1])
    assert_same(calls, expected, close=False)


@needs_node
def test_figure4_curves_match_the_package() -> None:
    """DeepLabv3 Fig. 4's data (65 x 65 map, rates 1..65) and a few other maps, every count."""
    calls, expected = [], []
    for (h, w), kernel in (((65, 65), 3), ((33, 33), 3), ((33, 17), 3), ((21, 21), 5)):
        rates = list(range(1, max(h, w) + 3))
        curves = boundary.figure4_curves((h, w), rates, kernel)
        for count in boundary.possible_counts(kernel):
            calls.append(("figure4Curves", [h, w, rates, kernel]))
            expected.append({"ok": curves[count].tolist()})
    got = run_js(calls)
    for (name, args), js, py in zip(calls, got, expected):
        h, w, rates, kernel = args
        for count in boundary.possible_counts(kernel):
            ours = boundary.figure4_curves((h, w), rates, kernel)[count]
            assert js["ok"]["rates"] == rates
            np.testing.assert_allclose(js["ok"][str(count)], ours, rtol=0, atol=1e-12,
                                       err_msg=f"count {count} on {h}x{w}, kernel {kernel}")
    # the paper's reading: at rate >= 65 only the centre weight is valid everywhere
    js65 = got[0]["ok"]
    assert js65["1"][64] == 1.0 and js65["9"][64] == 0.0


# ----------------------------------------------------------------------------- the HTML
@needs_node
def test_shares_above_zero_never_read_zero() -> None:
    """Chapter 04's point is that the centre-only share is small but not zero: (1/255)**2 must not print
    as 0.00 %."""
    calls = [("percent", [x]) for x in (0.0, (1 / 255) ** 2, 0.004, 0.01, 0.1479, 1.0)]
    expected = [{"ok": v} for v in ("0.0%", "0.0015%", "0.40%", "1.0%", "14.8%", "100.0%")]
    assert_same(calls, expected, close=False)


@needs_node
def test_the_rate_slider_rewrites_the_setting_the_parser_reads() -> None:
    """The explorer's "rate d of the last conv" slider edits the text: the package must then read that rate."""
    texts = ["conv k=3 # wide", "conv k=3", "conv d=2 d=5", "conv k=3 d=2\npool k=2 s=2", DEFAULT_STACK,
             "conv k=3 d=2\rconv k=5\r\n"]
    results = run_js([("setLastRate", [t, 7]) for t in texts])
    for text, result in zip(texts, results):
        convs = [sp for kind, sp in parse_layer_stack(result["ok"]) if kind == "conv"]
        assert convs[-1].dilation == 7, (text, result)
        assert len(parse_layer_stack(result["ok"])) == len(parse_layer_stack(text))
    assert results[0]["ok"] == "conv k=3 d=7 # wide"


def test_boundary_explorer_colours_every_count_as_the_figures_do() -> None:
    from deeplab_edu.viz.boundary import count_colours

    for kernel in (3, 5, 7):
        settings = json.loads(re.search(r"mount\([^,]+, \"boundary\", (\{.*\})\)", explorers.explorer_html(
            "boundary", kernel=kernel))[1])
        assert settings["colours"] == {str(c): v for c, v in count_colours(kernel).items()}
        assert len(set(settings["colours"].values())) == len(boundary.possible_counts(kernel)), kernel


def test_explorer_html_is_self_contained() -> None:
    for name in explorers.EXPLORERS:
        html = explorers.explorer_html(name)
        assert html.count("<script>") == 1 and html.count("</script>") == 1
        assert "DeeplabEduExplorers.mount(" in html
        # no external resource: only the SVG namespace URI, which is a name, not a download
        urls = set(re.findall(r"https?://[^\s\"')]+", html)) - {"http://www.w3.org/2000/svg"}
        assert not urls, f"explorer {name} refers to {urls}"
        assert not re.search(r"""\b(src|href)\s*=\s*["'](?!data:|#)""", html), f"explorer {name} loads a file"
        assert html.isascii(), f"explorer {name}: a page that declares no encoding would garble its non-ASCII text"
    photo = explorers.explorer_html("receptive_field")
    assert "data:image/jpeg;base64," in photo


def test_explorer_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown explorer 'fig4'"):
        explorers.show("fig4")
    with pytest.raises(TypeError, match="no setting"):
        explorers.show("atrous", dilation=2)
    with pytest.raises(ValueError, match="rate=9 must lie in 1..6"):
        explorers.show("atrous", rate=9)
    with pytest.raises(ValueError, match="output_index"):
        explorers.show("atrous", input_size=5, kernel_size=3, rate=1, padding=0, output_index=3)
    with pytest.raises(ValueError, match="line 2"):
        explorers.show("receptive_field", stack="conv k=3\nconv k=3 q=1")
    with pytest.raises(ValueError, match="kernel=4 must be odd"):
        explorers.show("boundary", kernel=4)
    with pytest.raises(ValueError, match="height=98"):
        explorers.show("boundary", height=98)
    # an audit: settings the page can only answer with "cannot draw" are refused by the call, naming the line
    with pytest.raises(ValueError, match=r"'receptive_field': line 2: this layer gets a map of 128 px"):
        explorers.show("receptive_field", stack="conv k=3\nconv k=300 p=0")
    with pytest.raises(ValueError, match="'atrous': these settings give no output"):
        explorers.show("atrous", input_size=3, kernel_size=7, rate=6)


def test_the_python_stack_check_agrees_with_the_model() -> None:
    """``_stack_output_size`` gives the side a stack of layers computes on a photo, or refuses where the model
    has no output (the same grid as the node test of stackOutputSize)."""
    from deeplab_edu.viz.receptive_field import parse_layer_stack, stack_model

    for text in ("conv k=3 s=2\nconv k=3\npool k=2 s=2", "conv k=7 s=2 p=0\nconv k=3 d=8 p=0", "conv k=40 p=0"):
        layers = parse_layer_stack(text)
        for size in (17, 64):
            try:
                with torch.no_grad():
                    want = int(stack_model(layers, channels=1, in_channels=1)(torch.zeros(1, 1, size, size)).shape[-1])
            except RuntimeError:
                with pytest.raises(ValueError, match="this layer gets a map of"):
                    explorers._stack_output_size(layers, size, "receptive_field")
            else:
                assert explorers._stack_output_size(layers, size, "receptive_field") == want, (text, size)


def test_settings_cannot_close_the_script() -> None:
    html = explorers.explorer_html("receptive_field", stack="conv k=3  # </script><script>alert(1)")
    assert html.lower().count("</script") == 1


def test_show_returns_displayable_html() -> None:
    shown = explorers.show("boundary", height=65, width=65, rate=24)
    assert 'data-explorer="boundary"' in shown._repr_html_()
    two = explorers.explorer_html("atrous"), explorers.explorer_html("atrous")
    ids = [re.search(r'id="([^"]+)"', h).group(1) for h in two]
    assert ids[0] != ids[1], "two explorers on one page need distinct ids"


@lru_cache(maxsize=None)
def _js_source() -> str:
    return JS.read_text()


def test_javascript_loads_nothing() -> None:
    src = _js_source()
    for needle in ("fetch(", "XMLHttpRequest", "import(", "importScripts", "WebSocket", "eval("):
        assert needle not in src, f"explorers.js should not use {needle}"


def test_the_atrous_explorer_writes_relationship_15_in_chapter_01s_symbols() -> None:
    """A new user's trial: chapter 01 writes relationship 15 with K taps, rate r and input size n (its lowercase
    k is eq. (1)'s tap index), but the explorer printed floor((n + 2p − k − (k−1)(r−1)) / s) + 1. What the page
    shows is checked in Chromium (tests/test_browser.py); the text is the source's."""
    src = _js_source()
    assert '"</b> = floor((n + 2p − K − (K−1)(r−1)) / s) + 1 = floor(("' in src
    assert '["kernel_size", "kernel size K", 1, 7]' in src
    assert "− k −" not in src and "(k−1)" not in src
