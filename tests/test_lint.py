"""Static checks. pyflakes: no unused imports, undefined names or f-strings without placeholders in
the package, the notebooks, the benchmarks and the tests. mypy: the package's type hints hold.

An unused import in a notebook is a helper its "Helpers introduced" line promises and the chapter
never shows; an undefined name is a crash waiting in a branch the smoke profile does not take.
"""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT


def test_pyflakes_finds_nothing() -> None:
    folders = ["deeplab_edu", "notebooks", "benchmarks", "tests"]
    proc = subprocess.run([sys.executable, "-m", "pyflakes", *folders], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    # `import x  # noqa` marks imports made for their side effect (e.g. "is it installed?")
    problems = [line for line in proc.stdout.splitlines() if not _marked_noqa(line)]
    assert proc.returncode in (0, 1) and not proc.stderr.strip(), proc.stderr
    assert not problems, "pyflakes:\n" + "\n".join(problems)


def test_mypy_finds_nothing() -> None:
    """The package's annotations agree with one another and with torch's and numpy's (pyproject's
    ``[tool.mypy]``: default strictness). A ``py.typed`` package whose hints do not check misleads
    every user who type-checks their own code against it."""
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", "/dev/null", "--no-error-summary"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, "mypy:\n" + proc.stdout + proc.stderr


def _marked_noqa(report: str) -> bool:
    path, line_no = report.split(":")[:2]
    try:
        source = (REPO_ROOT / path).read_text().splitlines()[int(line_no) - 1]
    except (OSError, ValueError, IndexError):
        return False
    return "# noqa" in source
