"""Shared helpers of the browser tests (tests/test_browser.py, tests/test_lab.py).

The tests drive Debian's ``chromium`` package through Playwright (PyPI), launched by
``executable_path``: Playwright never downloads a browser here (``playwright install`` is never
run). Without chromium the tests skip and say how to install it; CI (``.ci/run``) installs it.

* :func:`chromium_or_skip` / :func:`launch`: the browser, headless, with no background traffic.
* :func:`offline`: blocks every request that does not go to 127.0.0.1 and records it.
* :func:`serve`: a folder served by a thread-based ``http.server`` on a free 127.0.0.1 port.
* :func:`screenshot_dir`: where screenshots go (printed by the tests).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import socket
import threading
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import pytest

from conftest import REPO_ROOT

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")  # never fetch a browser build

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
]
INSTALL_HINT = "install Debian's chromium (`apt-get install -y chromium`) as the README says"


def chromium_path() -> str | None:
    """The chromium executable: ``$DEEPLAB_EDU_CHROMIUM``, else ``chromium`` on PATH, else None."""
    configured = os.environ.get("DEEPLAB_EDU_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_or_skip() -> str:
    """The chromium path, or skip the test naming what is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (run `make setup`)")
    path = chromium_path()
    if path is None:
        pytest.skip(f"chromium not found: {INSTALL_HINT}")
    return path


@contextlib.contextmanager
def launch() -> Iterator[Any]:
    """A headless Chromium (Playwright ``Browser``); skips the test when chromium is absent."""
    path = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


def offline(page: Any, allowed_host: str = "127.0.0.1") -> list[str]:
    """Abort every request of ``page`` to a host other than ``allowed_host``; returns the list of them."""
    blocked: list[str] = []

    def route(r: Any) -> None:
        url = r.request.url
        if urlparse(url).scheme in ("data", "blob") or urlparse(url).hostname == allowed_host:
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    page.route("**/*", route)
    return blocked


def collect_errors(page: Any) -> list[str]:
    """Console errors and uncaught exceptions of ``page``, as they happen."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text} ({m.location.get('url', '')})") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    return errors


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a thread-based http.server); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="book-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def screenshot_dir() -> Path:
    """``$DEEPLAB_EDU_SCREENSHOTS`` or ``book/_build/screenshots`` (created)."""
    folder = Path(os.environ.get("DEEPLAB_EDU_SCREENSHOTS", REPO_ROOT / "book" / "_build" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def announce_screenshots(capsys: Any) -> Path:
    """The screenshot folder, printed to the terminal even while pytest captures output."""
    folder = screenshot_dir()
    with capsys.disabled():
        print(f"\nbrowser screenshots: {folder}")
    return folder
