"""The course in JupyterLab, as a learner gets it from `make lab`.

* Every exercise solution (cells tagged ``hide-cell``) carries ``jupyter.source_hidden``, which
  JupyterLab honours: the solution stays collapsed until the learner opens it. Jupytext passes
  the metadata through (checked here and, in the browser test, on the rendered notebook).
* The chapter-02 layer editor: "-1 centre" means the centre on each axis on its own.
* In a real browser (Debian's chromium driven by Playwright), JupyterLab started by `make lab`
  on a free port with a token opens ``02_receptive_fields.py`` as a notebook, runs it, the
  solutions are collapsed, citations are rendered by jupyterlab-myst (no raw ``{cite:p}``), and
  moving a slider of the layer editor redraws its figure. Screenshots go to the folder printed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import jupytext
import pytest

from browser import announce_screenshots, collect_errors, free_port, launch, offline
from conftest import NOTEBOOKS, REPO_ROOT

LAB_START_TIMEOUT = 180  # s: a busy 2-core machine starts JupyterLab in ~5-30 s
RUN_ALL_TIMEOUT = 600  # s: chapter 02 in the smoke profile (measured ~35 s quiet)
REDRAW_TIMEOUT = 120  # s: one matplotlib redraw through the kernel (~2 s quiet)


# ----------------------------------------------------------------------------- no browser needed
def _hide_cells(source: Path) -> list[tuple[int, dict[str, Any]]]:
    nb = jupytext.read(source)
    return [(i, c.metadata) for i, c in enumerate(nb.cells) if "hide-cell" in c.metadata.get("tags", [])]


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_solution_is_collapsed_in_lab(source: Path) -> None:
    """A ``hide-cell`` cell (hidden in the book) is collapsed in Lab too (``jupyter={"source_hidden":
    true}``), and carries no ``outputs_hidden``: a ``.py`` chapter has no outputs, Lab clears that flag
    on every cell it runs, and its autosave then rewrote every solution's header (a learner's trial: a
    chapter only run showed as changed, and ``git pull`` of the course's updates would stop on it). The
    published ``.ipynb`` leaves the solutions' outputs out instead (``book_pages.for_colab``), and a
    learner's solutions print nothing (``exercises.solved``). The course's own checks that use the
    solutions (``if config.course_checks():``) are collapsed too."""
    header = '# %% tags=["hide-cell"] jupyter={"source_hidden": true}'
    open_ = [i for i, meta in _hide_cells(source) if meta.get("jupyter") != {"source_hidden": True}]
    assert not open_, f"{source.name}: cells {open_} are tagged hide-cell but not collapsed as {header} alone"
    nb = jupytext.read(source)
    checks = [i for i, c in enumerate(nb.cells) if "config.course_checks()" in c.source
              and c.metadata.get("jupyter", {}).get("source_hidden") is not True]
    assert not checks, f"{source.name}: cells {checks} hold the course's checks but are open in JupyterLab"


def test_lab_opens_a_chapter_with_its_kernel_language_info(tmp_path: Path) -> None:
    """`make lab`'s contents manager (deeplab_edu.lab) reads a chapter with the ``language_info`` its kernel
    will report: Lab wrote the kernel's into each chapter as it opened it, which marked the chapter changed
    (a JupyterLab trial). Saving leaves it out of the ``.py`` again, and other files are read as Jupytext's."""
    import asyncio
    import importlib

    from jupytext import AsyncTextFileContentsManager

    from deeplab_edu.lab import CourseContentsManager, kernel_language_info

    chapter = NOTEBOOKS[1]
    (tmp_path / chapter.name).write_text(chapter.read_text())
    (tmp_path / "notes.txt").write_text("not a notebook")
    manager = CourseContentsManager(root_dir=str(tmp_path))
    model = asyncio.run(manager.get(chapter.name, type="notebook"))
    assert model["content"]["metadata"]["language_info"] == kernel_language_info()
    plain = asyncio.run(AsyncTextFileContentsManager(root_dir=str(tmp_path)).get(chapter.name, type="notebook"))
    assert "language_info" not in plain["content"]["metadata"]  # what Lab met before
    assert asyncio.run(manager.get("notes.txt"))["content"] == "not a notebook"
    (tmp_path / "analysis.R").write_text("# %%\nx <- 1\n")  # another language's script: not given Python's
    (tmp_path / "null.ipynb").write_text(json.dumps({"cells": [], "metadata": {"kernelspec": None}, "nbformat": 4,
                                                     "nbformat_minor": 5}))
    assert "language_info" not in asyncio.run(manager.get("analysis.R", type="notebook"))["content"]["metadata"]
    assert asyncio.run(manager.get("null.ipynb"))["content"]["metadata"]["language_info"]["name"] == "python"
    asyncio.run(manager.save(model, chapter.name))
    assert (tmp_path / chapter.name).read_text() == chapter.read_text(), "saving unchanged must write the same file"
    from deeplab_edu.book import LAB_CONTENTS_MANAGER, lab_server_settings

    # what every `jupyter lab` of the .venv (make lab, Binder) starts with: make setup writes it
    assert lab_server_settings()["ServerApp"]["contents_manager_class"] == LAB_CONTENTS_MANAGER
    module, name = LAB_CONTENTS_MANAGER.rsplit(".", 1)
    assert getattr(importlib.import_module(module), name) is CourseContentsManager


def test_widgets_made_before_lab_imports_ipykernel_close_quietly() -> None:
    """A widget test followed by this file's contents-manager test (which imports ``ipykernel.ipkernel``, and
    with it ipykernel's ``comm.get_comm_manager``) ends without "Exception ignored in Widget.__del__": CI printed
    273 of them after its summary line, the widgets left open until the interpreter's end (conftest's
    ``_widgets_closed`` closes each test's)."""
    import sys

    tests = ["tests/test_atrous.py::test_the_widget_writes_relationship_15_in_chapter_01s_symbols",
             "tests/test_lab.py::test_lab_opens_a_chapter_with_its_kernel_language_info"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "2 passed" in output, output[-3000:]
    assert "Exception ignored" not in output, output[-3000:]


def test_jupytext_passes_source_hidden_through() -> None:
    text = '# %% [markdown]\n# Exercise\n\n# %% tags=["hide-cell"] jupyter={"source_hidden": true}\nanswer = 1\n'
    nb = jupytext.reads(text, fmt="py:percent")
    assert nb.cells[1].metadata == {"tags": ["hide-cell"], "jupyter": {"source_hidden": True}}
    assert jupytext.writes(nb, fmt="py:percent") == text, "the metadata should survive a save from Lab"


def test_layer_editor_centres_each_axis_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Moving only the row slider keeps the column centred ("-1 centre" on each axis), and back."""
    import matplotlib.pyplot as plt

    from deeplab_edu.viz import receptive_field as vrf

    drawn: list[tuple[int, int]] = []

    def fake_plot(layers: Any, image: Any, output_index: Any, effective: bool = True) -> Any:
        drawn.append(output_index)
        return plt.subplots(1, 2)[1]

    monkeypatch.setattr(vrf, "plot_layer_stack", fake_plot)
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: None)
    editor = vrf.layer_stack_editor()
    row, col = editor.children[0].children[1].children[:2]
    assert "-1 centre" in row.description and "-1 centre" in col.description
    centre = drawn[-1]  # the default stack gives a 32 x 32 map: unit (15, 15)
    assert centre == (15, 15)
    row.value = 3
    assert drawn[-1] == (3, centre[1]), "moving only the row must keep the column at the centre"
    col.value = 5
    assert drawn[-1] == (3, 5)
    row.value = -1
    assert drawn[-1] == (centre[0], 5)
    col.value = 999
    assert drawn[-1] == (centre[0], 31), "a unit past the edge is the last one"
    plt.close("all")


# ----------------------------------------------------------------------------- JupyterLab
def _write_user_settings(folder: Path) -> None:
    """Lab user settings for the test: no news pop-up, every cell rendered (no virtual scrolling), and
    no autosave: running the course's notebook must not rewrite its ``.py`` source."""
    settings = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    }
    for name, value in settings.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """JupyterLab started by `make lab` (token, free port, --allow-root as root); yields (url, token, its log)."""
    from browser import chromium_or_skip

    chromium_or_skip()  # no point starting Lab without a browser
    if not (REPO_ROOT / ".venv" / "bin" / "jupyter").exists():
        pytest.skip("no .venv: run `make setup` (or `make test`) first")
    home = tmp_path_factory.mktemp("lab")
    _write_user_settings(home / "settings")
    port, token = free_port(), os.urandom(12).hex()
    lab_args = f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} --IdentityProvider.token={token}"
    if os.getuid() == 0:
        lab_args += " --allow-root"
    env = {
        **os.environ, "DEEPLAB_EDU_PROFILE": "smoke",
        # the learner's own Lab settings, workspaces and runtime files stay untouched
        "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
    }
    env.pop("MPLBACKEND", None)  # kernels draw inline, as for a learner
    log = (home / "lab.log").open("w")
    proc = subprocess.Popen(
        ["make", "-s", "lab", f"LAB_ARGS={lab_args}"], cwd=REPO_ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + LAB_START_TIMEOUT
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"`make lab` did not serve {url} within {LAB_START_TIMEOUT} s "
                                f"(exit {proc.poll()}):\n{(home / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, token, home / "lab.log"
    finally:
        # a clean shutdown stops the kernels too; then the process group (make + jupyter-lab)
        try:
            req = urllib.request.Request(f"{url}/api/shutdown", method="POST", headers={"Authorization": f"token {token}"})
            urllib.request.urlopen(req, timeout=10)
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


#: The text of every rendered Markdown cell of the open notebook (None where it is not rendered yet).
_RENDERED_MARKDOWN = """() => Array.from(document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownCell')).map(c => {
        const out = c.querySelector('.jp-MarkdownOutput, .jp-RenderedMarkdown, .myst');
        return out ? out.textContent : null; })"""

_CODE_PROMPTS = """() => Array.from(document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')).map(e => e.textContent.trim())"""


@pytest.mark.slow
@pytest.mark.browser
def test_lab_runs_chapter_02_and_its_widget_responds(lab: tuple[str, str, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    url, token, log = lab
    shots = announce_screenshots(capsys)
    notebook = REPO_ROOT / "notebooks" / "02_receptive_fields.py"
    source_before = notebook.read_text()
    hidden = sum(1 for c in jupytext.read(notebook).cells if c.metadata.get("jupyter", {}).get("source_hidden") is True)
    with launch() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        blocked = offline(page)
        errors = collect_errors(page)
        page.goto(f"{url}/lab/tree/{notebook.name}?token={token}", timeout=120_000)
        panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        cells = len(jupytext.read(notebook).cells)
        page.wait_for_function(  # Lab adds the cells progressively
            "n => document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell').length === n",
            arg=cells, timeout=120_000, polling=500,
        )
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        time.sleep(2)  # the kernel's language_info reaches the notebook as it starts: opened, the chapter is unchanged
        dirty = page.locator(".lm-TabBar-tab.jp-mod-dirty").count()
        assert dirty == 0, "Lab marks the chapter changed as it opens it (deeplab_edu.lab.CourseContentsManager)"

        # solutions collapsed: one input placeholder per source_hidden cell
        placeholders = panel.locator(".jp-InputPlaceholder").count()
        assert placeholders == hidden, f"{hidden} solution cells should be collapsed in Lab, {placeholders} are"

        # citations rendered (jupyterlab-myst), never raw MyST roles. Read the rendered outputs'
        # textContent: innerText is empty for cells Lab has not laid out (off-screen cells use
        # content-visibility), which made this check depend on scrolling and timing.
        source_keys = notebook.read_text().count("{cite")
        if source_keys:
            page.wait_for_function(f"() => ({_RENDERED_MARKDOWN})().some(t => t && t.includes('araujo2019receptive'))",
                                   timeout=60_000, polling=500)
        rendered = [t for t in page.evaluate(_RENDERED_MARKDOWN) if t is not None]
        raw = [t[:80] for t in rendered if "{cite" in t]
        assert not raw, f"citations shown as raw MyST text in Lab: {raw}"
        if source_keys:
            assert any("araujo2019receptive" in t for t in rendered), "the citation keys should still be readable"
        page.screenshot(path=str(shots / "lab_02_opened.png"))

        # Run > Run All Cells; every code cell gets an execution count (Run All stops at an error)
        t0 = time.monotonic()
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
        deadline, prompts = t0 + RUN_ALL_TIMEOUT, []
        while time.monotonic() < deadline:  # collapsed solutions show no prompt: ignore the empty ones
            prompts = page.evaluate(_CODE_PROMPTS)
            shown = [p for p in prompts if p]
            idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count() > 0
            if idle and shown and all(re.fullmatch(r"\[\d+\]:", p) for p in shown):
                break
            time.sleep(1)
        else:
            page.screenshot(path=str(shots / "lab_02_run_all_timeout.png"))
            pytest.fail(f"Run All did not finish within {RUN_ALL_TIMEOUT} s; prompts: {prompts}")
        run_s = time.monotonic() - t0
        tracebacks = panel.locator(".jp-OutputArea-output", has_text="Traceback (most recent call last)").count()
        assert tracebacks == 0, "a cell of chapter 02 raised in Lab"
        # the hidden solutions ran and show nothing (Lab opens a collapsed output when its cell runs, so
        # they print nothing in a learner's notebook: exercises.solved); the learner's own cells report
        outputs = page.evaluate("() => Array.from(document.querySelectorAll("
                                "'.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output')).map(e => e.textContent)")
        assert not [t for t in outputs if "well done" in t or "passes the checker" in t], "a solution's result shows in Lab"
        assert any("not answered yet" in t for t in outputs), "the exercises' own cells did not report"
        # each figure an <img> with its description as alt (Lab's image renderer sets none: the accessibility
        # audit; deeplab_edu.viz.alt_text gives figures a text/html form, which Lab prefers)
        alts = page.evaluate("() => Array.from(document.querySelectorAll("
                             "'.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output img')).map(i => i.alt)")
        assert alts and all(a.startswith("Figure") for a in alts), alts[:5]
        print(f"Lab ran {len(prompts)} code cells of chapter 02 in {run_s:.0f} s")

        # the layer editor: move the row slider one step with the keyboard, the figure is redrawn
        editor = panel.locator(".jp-OutputArea-output .widget-vbox", has=page.locator(".widget-textarea")).first
        editor.scroll_into_view_if_needed()
        row = editor.locator(".widget-slider", has_text="unit row")
        figure = editor.locator(".widget-output img").first
        figure.wait_for(timeout=REDRAW_TIMEOUT * 1000)
        before = figure.get_attribute("src")
        editor.screenshot(path=str(shots / "lab_02_widget_before.png"))
        row.locator(".noUi-handle").focus()
        page.keyboard.press("ArrowRight")  # -1 (centre) -> 0: the top row of units
        assert row.locator(".widget-readout").inner_text().strip() == "0"
        page.wait_for_function(
            "([el, src]) => { const img = el.querySelector('.widget-output img'); return img && img.src !== src; }",
            arg=[editor.element_handle(), before], timeout=REDRAW_TIMEOUT * 1000,
        )
        editor.screenshot(path=str(shots / "lab_02_widget_after.png"))

        # the JavaScript explorer of the same chapter is live in Lab too (no kernel round trip)
        explorer = panel.locator(".dle-explorer[data-explorer='receptive_field'][data-ready='true']")
        assert explorer.count() == 1, "the JavaScript explorer did not start in Lab"
        assert not blocked, f"Lab tried to reach the network: {blocked}"
        myst_errors = [e for e in errors if "myst" in e.lower()]
        assert not myst_errors, f"jupyterlab-myst failed: {myst_errors}"
    assert notebook.read_text() == source_before, "running the notebook in Lab rewrote its .py source"
    # `make lab` gives the kernel CurveZMQ keys: ipykernel's warning of plain-text channels is not in its log
    assert "Kernel started" in log.read_text() and "without encryption" not in log.read_text()
    # the address `make lab` prints opens the first chapter, not the Launcher (a trial)
    assert "/lab/tree/00_start_here.py?token=" in log.read_text()
