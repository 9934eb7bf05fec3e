"""Shared fixtures: repository paths and the optional CamVid copy."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")  # before anything imports matplotlib

#: Variables of the runner's shell that change what the package does (each documented for users), unset for the
#: whole session (its session and module fixtures too) as conftest is imported: an audit's `make test` under
#: DEEPLAB_EDU_DEVICE=cuda, DEEPLAB_EDU_DEBUG=1 (the CLI's advice for a bug report), DEEPLAB_EDU_COURSE_CHECKS=1,
#: TQDM_DISABLE=1 (tqdm reads its TQDM_* once, when imported) ... failed up to 142 tests. A test that needs one
#: sets it.
RUNNER_VARIABLES = ("DEEPLAB_EDU_DEVICE", "DEEPLAB_EDU_DEBUG", "DEEPLAB_EDU_COURSE_CHECKS", "DEEPLAB_EDU_CODE_COMMIT",
                    "DEEPLAB_EDU_HIDE_MACHINE_PATHS", "DEEPLAB_EDU_RUNS", "DEEPLAB_EDU_DOWNLOAD_TIMEOUT")
for _name in [n for n in os.environ if n in RUNNER_VARIABLES or n.startswith("TQDM_")]:
    del os.environ[_name]
os.environ["COLUMNS"] = "80"  # argparse wraps its help at $COLUMNS: the tests read it at 80

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def public_modules() -> dict[str, Path]:
    """Every module of the package a reader may import, by dotted name, with its file (exercise
    solutions ``chNN``, ``__main__`` and private modules, ``_core``, ``engine._resume``, left out): what the API
    reference documents."""
    modules = {}
    for path in sorted((REPO_ROOT / "deeplab_edu").rglob("*.py")):
        parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1].startswith("_") or re.fullmatch(r"ch\d\d", parts[-1]) or "__pycache__" in parts:
            continue
        modules[".".join(parts)] = path
    return modules
CAMVID_DIR = Path(os.environ.get("DEEPLAB_EDU_CAMVID", REPO_ROOT.parent / "shared" / "data" / "camvid"))


@pytest.fixture(autouse=True)
def _smoke_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests run in the smoke profile unless a test says otherwise."""
    monkeypatch.setenv("DEEPLAB_EDU_PROFILE", "smoke")
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _no_busy_cpu_note(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's note on a busy CPU (``engine.workers.busy_cpu_note``) is off in tests, which keep the
    CPU busy themselves (other tests, in parallel) and check what a command prints; a test marked
    ``busy_cpu_note`` gets it."""
    if request.node.get_closest_marker("busy_cpu_note") is None:
        from deeplab_edu.engine import workers

        monkeypatch.setattr(workers, "busy_cpu_note", lambda *args, **kwargs: None)


@pytest.fixture(autouse=True)
def _ctrl_c_as_at_a_terminal() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt in each test, as in a terminal's pytest: a shell starts a background job
    (``pytest ... &``, a CI launcher's) with SIGINT ignored, which Python then keeps, and the training engine
    leaves an ignored signal ignored; its tests that send SIGINT then saw no stop and failed."""
    import signal

    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(autouse=True)
def _torch_threads_kept() -> Iterator[None]:
    """Each test ends with as many torch threads as it started with: the CLI's ``--threads 1``, run in-process by
    a test, left every later test of the session on one thread (an audit)."""
    import sys

    torch = sys.modules.get("torch")
    saved = torch.get_num_threads() if torch is not None else None
    yield
    if saved is not None and torch is not None and torch.get_num_threads() != saved:
        torch.set_num_threads(saved)


@pytest.fixture(autouse=True)
def _widgets_closed() -> Iterator[None]:
    """Each test closes the ipywidgets it made, while the comm manager that registered them is still the one in
    use: ``deeplab_edu.lab`` imports ``ipykernel.ipkernel``, which replaces ``comm.get_comm_manager``, so widgets
    left to the end of the session failed to close in ``Widget.__del__`` (KeyError or ImportError), 273
    "Exception ignored" tracebacks after CI's summary line."""
    import sys

    yield
    widgets = sys.modules.get("ipywidgets")
    if widgets is not None:
        widgets.Widget.close_all()


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for the test (modules use it with ``pytestmark``): on a small shared
    CPU, two competing threads per process are far slower than one."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def camvid_root() -> Path:
    """The shared CamVid copy (train + val); skips the test with the reason when absent."""
    if not (CAMVID_DIR / "train.txt").is_file():
        pytest.skip(f"CamVid copy not found at {CAMVID_DIR} (set DEEPLAB_EDU_CAMVID to point at one)")
    return CAMVID_DIR


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the way it fails offline (URLError)."""
    import socket
    import urllib.error

    def refuse(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def offline_torch_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None) -> Path:
    """No network and an empty torch hub cache (``TORCH_HOME``, returned): downloads must fail."""
    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    return tmp_path


# --------------------------------------------------------------------------------------------
# the notebooks, executed once per session, and the book built from them
# --------------------------------------------------------------------------------------------
#: pytest-timeout for a test that sets up the executions or the book: their own bounds (per cell,
#: per notebook, per build; deeplab_edu.book) fail a stuck step long before this.
BOOK_SESSION_TIMEOUT = 3600
_BOOK_FIXTURES = {"notebook_runs", "book_build", "built_book"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _BOOK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.timeout(BOOK_SESSION_TIMEOUT))


class NotebookRuns:
    """The notebooks executed once per test session (smoke profile, two at a time).

    The first request executes, in one parallel batch, every notebook the session needs: all of
    them when a selected test uses the book, otherwise those of the selected notebook tests.
    """

    def __init__(self, folder: Path, needed: list[Path]):
        self.folder = folder
        self.needed = needed
        self.runs: dict[Path, object] = {}

    def get(self, source: Path):
        from deeplab_edu.book import execute_notebooks

        source = Path(source).resolve()
        if source not in self.runs:
            batch = [s for s in self.needed if s not in self.runs]
            if source not in batch:
                batch.append(source)
            # the kernels show the NumPy 2 deprecation of matplotlib's np.array(x, copy=False) on what a cell
            # passes it (a torch tensor to imshow: pytorch/pytorch#136264), hidden by default as a library's
            # warning; test_notebook_runs fails on any stderr output
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("PYTHONWARNINGS", "default::DeprecationWarning:matplotlib.cbook")
                for s, run in zip(batch, execute_notebooks(batch, self.folder, jobs=2, reuse=False,
                                                           active_profile="smoke")):
                    self.runs[s] = run
        return self.runs[source]

    def all(self) -> list:
        from deeplab_edu.book import toc_notebook_sources

        return [self.get(s) for s in toc_notebook_sources()]


@pytest.fixture(scope="session")
def notebook_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> NotebookRuns:
    """Every notebook executed once per session (:class:`NotebookRuns`), shared by the notebook
    tests and the book."""
    from deeplab_edu.book import toc_notebook_sources

    items = request.session.items
    if any({"book_build", "built_book"} & set(getattr(i, "fixturenames", ())) for i in items):
        needed = toc_notebook_sources()
    else:
        needed = [Path(i.callspec.params["source"]).resolve() for i in items
                  if hasattr(i, "callspec") and "source" in i.callspec.params
                  and "notebook_runs" in getattr(i, "fixturenames", ())]
    return NotebookRuns(tmp_path_factory.mktemp("executed"), needed)


@pytest.fixture(scope="session")
def book_build(notebook_runs: NotebookRuns, tmp_path_factory: pytest.TempPathFactory):
    """The book built once per session in the ``smoke`` profile from the session's executed
    notebooks (nothing is executed twice): a ``deeplab_edu.book.BookBuild`` (html, warnings, runs)."""
    from deeplab_edu.book import build_book

    runs = notebook_runs.all()
    failed = [r for r in runs if not r.ok]
    if failed:
        pytest.fail("the book cannot be built, notebooks failed:\n\n" + "\n\n".join(r.describe() for r in failed),
                    pytrace=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPLAB_EDU_PROFILE", "smoke")
        return build_book(tmp_path_factory.mktemp("book"), runs=runs, quiet=True)


@pytest.fixture(scope="session")
def built_book(book_build) -> Path:
    """The HTML folder of the book built once per session (smoke profile): ``index.html``,
    ``notebooks/NN_*.html`` with the executed ``NN_*.ipynb`` beside them, ``_static/``.
    Shared by every test that looks at the built pages (tests/test_book.py, the browser tests)."""
    return book_build.html


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained deeplab-edu checkpoint (smoke preset's model, 8 classes) for ``deeplab-edu predict``."""
    import torch

    from deeplab_edu.engine.checkpoint import save_checkpoint
    from deeplab_edu.engine.config import load_config
    from deeplab_edu.models import build_model

    cfg = load_config("smoke")
    torch.manual_seed(0)
    model = build_model(cfg.model, backbone=cfg.backbone, num_classes=8, output_stride=cfg.output_stride).eval()
    folder = tmp_path_factory.mktemp("ckpt")
    state = {"model": model.state_dict(), "config": cfg.to_dict(),
             "model_info": {"name": cfg.model, "backbone": cfg.backbone, "num_classes": 8}}
    return save_checkpoint(state, folder, 0)
