"""Build the Jupyter Book (``make book``) with the execution cache kept per profile.

Jupyter Book 1 caches executed notebooks by their source, not by the environment they ran
in, so a book executed in the ``smoke`` profile would otherwise be reused for the ``cpu``
one. :func:`build_book` gives every profile its own cache folder and returns the Sphinx
warnings so that tests can fail on broken cross-references or missing files.

Run it as ``python -m deeplab_edu.book [--output DIR]``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from .config import ENV_VAR, profile
from .records import REPO_ROOT

__all__ = ["build_book", "notebooks_in_toc", "BOOK_DIR"]

BOOK_DIR = REPO_ROOT / "book"
_WARNING = re.compile(r"(WARNING|ERROR|CRITICAL):")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def notebooks_in_toc(toc_file: Path = BOOK_DIR / "_toc.yml") -> list[str]:
    """The ``file:`` entries of the table of contents, in order."""
    toc = yaml.safe_load(toc_file.read_text())
    files: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(str(node["file"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc.get("parts", toc.get("chapters", [])))
    return files


def build_book(output: Path = BOOK_DIR, *, quiet: bool = False) -> tuple[Path, list[str]]:
    """Execute the notebooks (active profile) and write HTML to ``output/_build/html``.

    Returns:
        the HTML folder and the list of Sphinx warning/error lines.

    Raises:
        RuntimeError: if ``jupyter-book`` fails, with the end of its log.
    """
    output = Path(output).resolve()
    build = output / "_build"
    build.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((BOOK_DIR / "_config.yml").read_text())
    config.setdefault("execute", {})["cache"] = str(build / ".jupyter_cache" / profile())
    generated = build / f"_config.{profile()}.yml"
    generated.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [
        str(Path(sys.executable).with_name("jupyter-book")), "build", str(REPO_ROOT),
        "--config", str(generated), "--toc", str(BOOK_DIR / "_toc.yml"),
        "--path-output", str(output),
    ]
    # Kernels must draw inline figures into the pages: never inherit a non-interactive backend.
    env = {**os.environ, ENV_VAR: profile(), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (build / "build.log").write_text(log)
    if not quiet:
        print(log[-4000:])
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book failed (exit {proc.returncode}); log in {build / 'build.log'}:\n{log[-6000:]}")
    log = _ANSI.sub("", log)
    warnings = [line for line in log.splitlines() if _WARNING.search(line)]
    return build / "html", warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=BOOK_DIR, help="folder that gets _build/html")
    args = parser.parse_args(argv)
    print(f"Building the book in the '{profile()}' profile (set {ENV_VAR} to change it).")
    html, warnings = build_book(args.output)
    for w in warnings:
        print(w)
    print(f"The book is at {html / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
