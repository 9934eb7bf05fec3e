"""The built book in a real browser: Debian's chromium driven by Playwright, fully offline.

The book built once per session (fixture ``built_book``, smoke profile) is served by a
thread-based http.server on 127.0.0.1; the browser aborts every request to any other host.

* Every page loads with no console error, no failed request, no broken link, anchor or image;
  its equations are typeset by MathJax (served by the book itself: nothing else can load) and its
  tables are HTML tables, not Markdown pipe text; it shows no path of the build machine.
* Each JavaScript explorer (chapters 01, 02, 04) responds: moving a slider with the keyboard
  changes the drawing exactly as the package predicts (taps read by eq. (1), the receptive
  field's square, the valid-tap counts of DeepLabv3 Fig. 4).

Screenshots (a rendered chapter, each explorer before and after a slider move) go to the folder
printed by the tests. Skipped, with the reason, when chromium is not installed.
"""

from __future__ import annotations

import html as html_lib
import re
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urldefrag, urlparse

import numpy as np
import pytest

from browser import announce_screenshots, chromium_or_skip, collect_errors, launch, offline, screenshot_dir, serve
from conftest import REPO_ROOT
from deeplab_edu.atrous import conv_output_size, input_positions
from deeplab_edu.boundary import valid_tap_counts
from deeplab_edu.viz.boundary import count_colours
from deeplab_edu.gridding import path_counts
from deeplab_edu.receptive_field import receptive_field
from deeplab_edu.viz.explorers import DEFAULTS
from deeplab_edu.viz.receptive_field import DEFAULT_STACK, parse_layer_stack

pytestmark = [pytest.mark.book, pytest.mark.slow, pytest.mark.browser]

PAGE_TIMEOUT_MS = 60_000  # one page on a busy 2-core machine
_SKIP_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static"}


@pytest.fixture(scope="module")
def site(built_book: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, html folder) of the built book served on 127.0.0.1."""
    chromium_or_skip()
    with serve(built_book) as url:
        yield url, built_book


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch() as b:
        yield b


def _pages(html: Path) -> list[Path]:
    return sorted(p for p in html.rglob("*.html") if not _SKIP_DIRS & set(p.relative_to(html).parts))


def _wait_for_mathjax(page: Any) -> None:
    page.wait_for_load_state("load")
    page.evaluate("""async () => {
        if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
        if (window.MathJax && MathJax.typesetPromise) { await MathJax.typesetPromise(); }
    }""")


_PAGE_REPORT = """() => {
  const text = document.body.innerText;
  const maths = Array.from(document.querySelectorAll('.math'));
  return {
    maths: maths.length,
    untypeset: maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60)),
    rawDelimiters: (text.match(/\\\\\\(|\\\\\\[|\\$\\$/g) || []).length,
    pipeTables: text.split('\\n').filter(l => /^\\s*\\|?\\s*:?-{3,}:?\\s*\\|/.test(l)).slice(0, 3),
    tables: document.querySelectorAll('table').length,
    images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0,
                                                   lazy: i.loading === 'lazy'})),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    text: text,
  };
}"""


def _anchors(body: str) -> set[str]:
    return {html_lib.unescape(m) for m in re.findall(r"""\b(?:id|name)\s*=\s*["']([^"']+)["']""", body)}


def test_every_page_loads_offline_with_equations_tables_links_and_images(
    site: tuple[str, Path], browser: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    base, html = site
    shots = announce_screenshots(capsys)
    pages = _pages(html)
    assert (html / "index.html") in pages and any(p.parent.name == "notebooks" for p in pages)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    blocked = offline(page)
    errors = collect_errors(page)
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None)

    problems: list[str] = []
    links: dict[str, set[str]] = {}  # target URL without fragment -> fragments asked for
    maths = tables = 0
    machine_paths = {str(REPO_ROOT)} | ({str(html.parent.parent)} if html.parent.name == "_build" else set())
    for path in pages:
        rel = path.relative_to(html).as_posix()
        refresh = re.search(r'http-equiv="refresh"[^>]*url=([^"]+)"', path.read_text(), re.IGNORECASE)
        if refresh:  # a redirect page (index.html -> the root page): its target must exist
            links.setdefault(urldefrag(f"{base}/{Path(rel).parent.as_posix()}/{refresh.group(1)}")[0], set())
            continue
        errors.clear(), failed.clear()
        page.goto(f"{base}/{rel}", wait_until="load", timeout=PAGE_TIMEOUT_MS)
        _wait_for_mathjax(page)
        # MathJax loads its fonts after typesetting: let them finish here, or the next goto aborts
        # them (net::ERR_ABORTED) and they are counted against the next page (a CI flake).
        page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)
        report = page.evaluate(_PAGE_REPORT)
        if errors:
            problems.append(f"{rel}: console errors {errors[:3]}")
        if failed:
            problems.append(f"{rel}: failed requests {failed[:3]}")
        if report["untypeset"]:
            problems.append(f"{rel}: {len(report['untypeset'])} equations not typeset, e.g. {report['untypeset'][:2]}")
        if report["rawDelimiters"]:
            problems.append(f"{rel}: {report['rawDelimiters']} raw LaTeX delimiters in the text")
        if report["pipeTables"]:
            problems.append(f"{rel}: Markdown tables shown as text: {report['pipeTables']}")
        bad_images = [i["src"] for i in report["images"] if not i["ok"] and not i["lazy"]]
        if bad_images:
            problems.append(f"{rel}: images that did not load: {bad_images[:3]}")
        leaked = [p for p in machine_paths if p in report["text"]]
        if leaked:
            problems.append(f"{rel}: shows paths of the build machine {leaked}")
        for src in (i["src"] for i in report["images"] if i["lazy"]):
            links.setdefault(urldefrag(src)[0], set())
        for href in report["links"]:
            url, fragment = urldefrag(href)
            if urlparse(url).hostname == "127.0.0.1":
                links.setdefault(url, set()).update({fragment} if fragment else set())
        maths += report["maths"]
        tables += report["tables"]
        if rel == "notebooks/02_receptive_fields.html":
            page.locator(".math").first.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "book_chapter_02.png"))

    # every internal link and lazy image resolves, and every #anchor exists on its target page
    for url, fragments in sorted(links.items()):
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = response.read().decode("utf-8", "replace") if url.endswith((".html", "/")) else ""
        except urllib.error.HTTPError as err:
            problems.append(f"broken link {url} (HTTP {err.code})")
            continue
        anchors = _anchors(body) if body else set()
        missing = sorted(f for f in fragments if unquote(f) not in anchors) if body else []
        if missing:
            problems.append(f"{url}: missing anchors {missing[:5]}")
    assert not blocked, f"the book tried to load from the network: {sorted(set(blocked))[:10]}"
    assert not problems, f"{len(problems)} problems in the built book:\n" + "\n".join(problems[:40])
    assert maths > 50, f"only {maths} equations in the whole book: is MathJax output missing?"
    assert tables > 5, f"only {tables} HTML tables in the whole book"
    page.close()


# ----------------------------------------------------------------------------- the explorers
def _open_explorer(browser: Any, base: str, chapter: str, name: str) -> tuple[Any, Any, list[str], list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    blocked = offline(page)
    errors = collect_errors(page)
    page.goto(f"{base}/notebooks/{chapter}.html", wait_until="load", timeout=PAGE_TIMEOUT_MS)
    explorer = page.locator(f".dle-explorer[data-explorer='{name}'][data-ready='true']")
    assert explorer.count() == 1, f"the {name} explorer is not on the page of {chapter} (or did not start)"
    explorer.scroll_into_view_if_needed()
    return page, explorer, blocked, errors


def _finish(page: Any, explorer: Any, name: str, blocked: list[str], errors: list[str]) -> None:
    explorer.screenshot(path=str(screenshot_dir() / f"explorer_{name}_after.png"))
    assert not errors, f"the {name} explorer's page logged errors: {errors}"
    assert not blocked, f"the {name} explorer's page tried to reach the network: {blocked}"
    page.close()


def _press(explorer: Any, slider: str, key: str = "ArrowRight", times: int = 1) -> None:
    handle = explorer.locator(f"input[type=range][name='{slider}']")
    handle.focus()
    for _ in range(times):
        handle.press(key)


def _taps(explorer: Any) -> list[int]:
    return [int(v) for v in explorer.locator("rect.dle-tap").evaluate_all("els => els.map(e => e.dataset.index)")]


def test_atrous_explorer_follows_eq1(site: tuple[str, Path], browser: Any) -> None:
    base, _ = site
    shots = screenshot_dir()
    page, explorer, blocked, errors = _open_explorer(browser, base, "01_atrous_convolution", "atrous")
    s = dict(DEFAULTS["atrous"])
    seen_note: list[bool] = []

    def expected() -> tuple[list[int], int]:
        try:
            n_out = conv_output_size(s["input_size"], s["kernel_size"], s["stride"], s["padding"], s["rate"])
        except ValueError:  # the padded input is shorter than the effective kernel: nothing is drawn
            return [], 0
        i = min(s["output_index"], n_out - 1)
        return input_positions(i, s["kernel_size"], s["rate"], s["stride"], s["padding"]), n_out

    def expected_2d() -> str:
        """``data-taps-2d`` as atrous_widget's right panel draws it: "m:rows" on a side of min(n, 11), at least 3."""
        side = max(3, min(s["input_size"], 11))
        try:
            n_out = conv_output_size(side, s["kernel_size"], s["stride"], s["padding"], s["rate"])
        except ValueError:
            return ""
        m = min(s["output_index"], n_out - 1)
        return f"{m}:" + ",".join(map(str, input_positions(m, s["kernel_size"], s["rate"], s["stride"], s["padding"])))

    def check_2d() -> None:
        assert explorer.get_attribute("data-taps-2d") == expected_2d()
        # a book reader's trial: where the 1-D input has an output and the 11 x 11 square does not, the 2-D
        # picture vanished without a word; a note says why in its place (the last move below makes it so)
        notes = explorer.locator(".dle-2d-note")
        assert notes.count() == (1 if expected_2d() == "" and expected()[1] > 0 else 0), notes.all_inner_texts()
        if notes.count():
            assert "effective kernel 19 is longer than the padded side 17" in notes.inner_text()
            seen_note.append(True)
        drawn = explorer.locator("rect.dle-tap-2d").evaluate_all("els => els.map(e => [+e.dataset.row, +e.dataset.col])")
        rows = [int(v) for v in expected_2d().partition(":")[2].split(",") if v]
        assert sorted(map(tuple, drawn)) == [(a, b) for a in rows for b in rows], "the 2-D taps are not the k x k lattice"

    taps, n_out = expected()
    assert _taps(explorer) == taps and explorer.locator("rect.dle-output").count() == n_out
    check_2d()
    explorer.screenshot(path=str(shots / "explorer_atrous_before.png"))
    # (slider, steps): the last two make the effective kernel (7 taps at rate 3: 19) longer than
    # the padded input (12 + 2 * 3 = 18), then shorter again
    moves = (("rate", 1), ("stride", 1), ("output_index", 2), ("kernel_size", 2), ("padding", 1),
             ("kernel_size", 2), ("input_size", 1))
    for slider, steps in moves:
        _press(explorer, slider, times=steps)
        s[slider] += steps
        taps, n_out = expected()
        assert _taps(explorer) == taps, f"after moving {slider}: drawn taps {_taps(explorer)}, eq. (1) reads {taps}"
        assert explorer.locator("rect.dle-output").count() == n_out
        assert explorer.get_attribute("data-output-size") == str(n_out)
        s["output_index"] = max(0, min(s["output_index"], n_out - 1))
        check_2d()
        if slider == "kernel_size" and s[slider] == 7:
            assert n_out == 0 and "no output" in explorer.inner_text()
    assert seen_note, "no move left the 1-D input an output and the 2-D square none"
    _finish(page, explorer, "atrous", blocked, errors)


def test_receptive_field_explorer_grows_with_the_rate(site: tuple[str, Path], browser: Any) -> None:
    base, _ = site
    shots = screenshot_dir()
    page, explorer, blocked, errors = _open_explorer(browser, base, "02_receptive_fields", "receptive_field")
    square = explorer.locator("rect.dle-rf")

    def drawn() -> tuple[float, float, float]:
        return tuple(float(square.get_attribute(a)) for a in ("width", "x", "y"))  # type: ignore[return-value]

    layers = parse_layer_stack(DEFAULT_STACK)
    rf = receptive_field([sp for _, sp in layers])
    assert drawn()[0] == rf.size == 57
    assert "every pixel of its field is read" in explorer.inner_text()  # the default stack leaves no hole
    explorer.screenshot(path=str(shots / "explorer_receptive_field_before.png"))
    sizes = [rf.size]
    last_rate = layers[-1][1].dilation
    for rate in range(last_rate + 1, last_rate + 4):
        _press(explorer, "last_rate")
        text = explorer.locator("textarea").input_value()
        assert text.splitlines()[-1].strip() == f"conv k=3 d={rate}", "the slider rewrites the last conv line"
        predicted = receptive_field([sp for _, sp in parse_layer_stack(text)]).size
        assert drawn()[0] == predicted, f"rate {rate}: the square is {drawn()[0]} px, the recurrences give {predicted}"
        sizes.append(predicted)
    assert sizes == sorted(set(sizes)), f"the drawn receptive field should grow with the rate: {sizes}"
    # moving the unit one row down moves the square by the effective stride, and only vertically
    width, x, y = drawn()
    _press(explorer, "row")
    assert drawn() == (width, x, y + rf.stride)
    # the effective map (every weight 1): drawn, gone when unticked; on a gridded stack the explorer counts the rows,
    # columns and pixels of the field that no path reaches, as the package does (chapter 02: 120 of 169 for rates 2, 2, 2)
    assert explorer.locator("image.dle-erf").count() == 1
    explorer.locator("input[name='effective']").uncheck()
    assert explorer.locator("image.dle-erf").count() == 0 and explorer.locator("svg.dle-erf-zoom").count() == 0
    explorer.locator("input[name='effective']").check()
    explorer.locator("button[name='centre']").click()
    gridded = "conv k=3 d=2\nconv k=3 d=2\nconv k=3 d=2"
    explorer.locator("textarea").fill(gridded)
    specs = [sp for _, sp in parse_layer_stack(gridded)]
    field = path_counts(specs, DEFAULTS["receptive_field"]["photo_size"], 63)
    first, last = receptive_field(specs).region(63)
    empty = int((field[first: last + 1] == 0).sum())
    assert (empty, last - first + 1) == (6, 13)
    assert "6 of the 13 rows and 6 of the 13 columns of its field carry none, so 120 of its 169 pixels are never read" \
        in explorer.inner_text()
    assert explorer.locator("svg.dle-erf-zoom").get_attribute("data-unread") == "120"
    explorer.screenshot(path=str(shots / "explorer_receptive_field_gridding.png"))
    # a line being typed: the message names the line (as the parser's do), the last drawing stays (faded)
    explorer.locator("textarea").fill(gridded + "\nconv k=3 s=2 p=0\n" * 7)  # a blank line between them
    assert "cannot draw this stack: line 16: this layer gets a map of 1 px" in explorer.inner_text()
    assert explorer.locator("image.dle-erf").count() == 1
    _finish(page, explorer, "receptive_field", blocked, errors)


def test_boundary_explorer_counts_valid_taps(site: tuple[str, Path], browser: Any) -> None:
    base, _ = site
    shots = screenshot_dir()
    page, explorer, blocked, errors = _open_explorer(browser, base, "04_boundary_and_image_pooling", "boundary")
    s = dict(DEFAULTS["boundary"])

    def drawn() -> Counter:
        blocks = explorer.locator("rect.dle-block").evaluate_all(
            "els => els.map(e => [Number(e.dataset.count), Number(e.dataset.cells)])")
        total: Counter = Counter()
        for count, cells in blocks:
            total[count] += cells
        return total

    def predicted() -> Counter:
        values, freq = np.unique(valid_tap_counts(s["height"], s["width"], s["kernel"], s["rate"]), return_counts=True)
        return Counter(dict(zip(values.tolist(), freq.tolist())))

    assert drawn() == predicted()
    fills = explorer.locator("rect.dle-block").evaluate_all("els => els.map(e => [e.dataset.count, e.getAttribute('fill')])")
    assert {c: f.lower() for c, f in fills} == {str(c): f.lower() for c, f in count_colours(s["kernel"]).items()
                                                if c in predicted()}, "the map's colours are the figures'"
    assert explorer.locator(".dle-message").get_attribute("aria-live") == "polite"  # read aloud when it changes
    explorer.screenshot(path=str(shots / "explorer_boundary_before.png"))
    for slider, key, times in (("rate", "ArrowRight", 4), ("width", "ArrowLeft", 16), ("rate", "End", 1)):
        _press(explorer, slider, key, times)
        s[slider] = s["max_rate"] if key == "End" else s[slider] + (times if key == "ArrowRight" else -times)
        assert drawn() == predicted(), f"after moving {slider}: drawn {drawn()}, package {predicted()}"
    assert drawn() == Counter({1: s["height"] * s["width"]}), "at a rate past the map only the centre tap is valid"
    assert explorer.locator("line.dle-marker").get_attribute("data-rate") == str(s["max_rate"])
    _finish(page, explorer, "boundary", blocked, errors)


def test_the_explorers_fit_a_phone_screen(browser: Any, tmp_path: Path) -> None:
    """On a 390-px-wide screen no explorer is wider than the page: a wide table scrolls inside its own
    box (the receptive-field explorer's table of layers made the whole explorer, controls included,
    scroll sideways)."""
    from deeplab_edu.viz.explorers import EXPLORERS, explorer_html

    for name in EXPLORERS:
        (tmp_path / f"{name}.html").write_text(
            "<!doctype html><html><head><meta name='viewport' content='width=device-width'></head>"
            f"<body style='margin:0;padding:8px'>{explorer_html(name)}</body></html>", encoding="utf-8")
    page = browser.new_page(viewport={"width": 390, "height": 900})
    blocked = offline(page)
    errors = collect_errors(page)
    with serve(tmp_path) as base:
        for name in EXPLORERS:
            _fits(page, base, name)
    assert not errors and not blocked, (errors, blocked)
    page.close()


def test_the_atrous_walk_stops_when_its_explorer_is_replaced(browser: Any, tmp_path: Path) -> None:
    """The atrous explorer's walk (the play button steps output i every 0.7 s) stops once the explorer
    leaves the page, as when its cell runs again and a new one replaces it: its timer went on redrawing the
    detached figure (a widgets audit)."""
    import time

    from deeplab_edu.viz.explorers import explorer_html

    (tmp_path / "atrous.html").write_text(f"<!doctype html><html><body>{explorer_html('atrous')}</body></html>",
                                          encoding="utf-8")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    blocked, errors = offline(page), collect_errors(page)
    with serve(tmp_path) as base:
        page.goto(f"{base}/atrous.html", wait_until="load", timeout=PAGE_TIMEOUT_MS)
        explorer = page.locator(".dle-explorer[data-explorer='atrous'][data-ready='true']")
        page.evaluate("""() => { window.dleCleared = 0; const clear = window.clearInterval;
                                 window.clearInterval = t => { window.dleCleared += 1; return clear(t); }; }""")
        first, index = _taps(explorer), explorer.locator("input[name='output_index']").input_value()
        explorer.locator("button[name='play']").click()
        page.wait_for_function("i => document.querySelector('input[name=output_index]').value !== i", arg=index,
                               timeout=10_000)  # the walk steps output i
        assert _taps(explorer) != first and page.evaluate("window.dleCleared") == 0
        explorer.evaluate("e => e.remove()")  # replaced: the old explorer is no longer in the page
        time.sleep(1.6)  # two of the walk's steps
        assert page.evaluate("window.dleCleared") == 1, "the walk's timer still runs for a removed explorer"
    assert not errors and not blocked, (errors, blocked)
    page.close()


def _fits(page: Any, base: str, name: str) -> None:
    """One explorer's page at ``base`` is no wider than the viewport."""
    page.goto(f"{base}/{name}.html", wait_until="load", timeout=PAGE_TIMEOUT_MS)
    explorer = page.locator(f".dle-explorer[data-explorer='{name}'][data-ready='true']")
    assert explorer.count() == 1, f"the {name} explorer did not start"
    scroll, client = explorer.evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert scroll <= client, f"the {name} explorer is {scroll} px wide in a {client}-px box at 390 px"
    explorer.screenshot(path=str(screenshot_dir() / f"explorer_{name}_390px.png"))


def test_wide_outputs_never_make_a_chapter_scroll_sideways(site: tuple[str, Path], browser: Any) -> None:
    """A cell with a wide output spans the margin (the theme's full-width tag) where the window has one
    (1200 px up); between 992 and 1200 px the theme's 136 % ran 233 px past the window."""
    base, html = site
    chapters = sorted((html / "notebooks").glob("[0-9][0-9]_*.html"))
    wide = [p for p in chapters if "tag_full-width" in p.read_text()]
    assert wide, "no chapter has a wide output: the test checks nothing"
    for width in (1000, 1280):
        page = browser.new_page(viewport={"width": width, "height": 900})
        offline(page)
        for path in wide:
            page.goto(f"{base}/notebooks/{path.name}", wait_until="load", timeout=PAGE_TIMEOUT_MS)
            scroll, client = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert scroll <= client, f"{path.name} at {width} px is {scroll} px wide"
        page.close()
