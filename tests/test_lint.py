"""Static checks. pyflakes: no unused imports, undefined names or f-strings without placeholders in
the package, the notebooks, the benchmarks and the tests. mypy: the package's type hints hold.
pydoclint: every public function's docstring names the exceptions its body raises. doctest: the
examples in the docstrings run.

An unused import in a notebook is a helper its "Helpers introduced" line promises and the chapter
never shows; an undefined name is a crash waiting in a branch the smoke profile does not take.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT, public_modules


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
    every user who type-checks their own code against it. ``[tool.mypy]`` lists tests/typed_use.py too:
    a user's script whose documented uses (``build_model("deeplabv1").backbone.fc6``, a v2's ``aspp``, a
    v3+'s ``decoder``, ``build_backbone("resnet50").block_rates()``, ...) the hints must type as they are."""
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", "/dev/null", "--no-error-summary"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, "mypy:\n" + proc.stdout + proc.stderr


def test_a_users_script_is_checked_against_the_hints(tmp_path: Path) -> None:
    """A new user's trial: mypy run on their own script outside the clone found no deeplab_edu ("Cannot find
    implementation or library stub"), since setuptools' default editable install is an import hook that type
    checkers do not follow. make setup installs in compat mode (a path): the script's one wrong call is found,
    its right ones pass (build_model's overloads: a deeplabv3 has a ``classifier``)."""
    script = tmp_path / "mine.py"
    script.write_text("import torch\n"
                      "from deeplab_edu.models import build_model\n"
                      "model = build_model('deeplabv3', backbone='tiny_resnet', num_classes=3)\n"
                      "out: torch.Tensor = model(torch.zeros(1, 3, 64, 64))['out']\n"
                      "classes: int = model.classifier.out_channels\n"
                      "build_model('deeplabv3', num_classes='three')\n")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", "/dev/null", "--no-error-summary", str(script)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    # no overload takes num_classes='three': mypy says so, then lists them ("num_classes: int = ...")
    assert len(errors) == 1 and "mine.py:6:" in errors[0] and "build_model" in errors[0] \
        and "num_classes: int" in proc.stdout, proc.stdout + proc.stderr


def test_the_typed_users_script_runs() -> None:
    """tests/typed_use.py, which mypy checks against the hints (``[tool.mypy]``), runs as it is typed: the attributes
    its annotations promise exist (``fc6`` a convolution, a v3's rates at output stride 8)."""
    import runpy

    from torch import nn

    done = runpy.run_path(str(REPO_ROOT / "tests" / "typed_use.py"))
    assert isinstance(done["fc6"], nn.Conv2d) and done["v3_classes"] == done["v3plus_classes"] == 21
    assert done["aspp_rates"] == (12, 24, 36) and done["rates"][3] == (1, 2, 2) and 0 < done["lost"] < 1


def test_public_docstrings_name_what_they_raise() -> None:
    """A public function or method that raises must say so in its docstring's ``Raises:`` section
    (pydoclint's DOC501 and DOC503, Google style): the brief asks every public docstring to give the
    errors raised. One-line docstrings are held to it too. Private helpers (a leading underscore) are exempt. An exception named in the
    docstring but raised by a callee is fine (pydoclint reports those too; they are skipped here), and
    so is a bare ``raise`` that re-raises what an ``except BaseException`` caught."""
    pydoclint = Path(sys.executable).with_name("pydoclint")  # the console script: no `python -m pydoclint`
    proc = subprocess.run([str(pydoclint), "--style=google", "--skip-checking-short-docstrings=False", "--quiet",
                           "deeplab_edu"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    # it exits 1 when it reports anything (on stderr), 0 when it reports nothing; anything else is a crash
    output = proc.stdout + proc.stderr
    assert (proc.returncode == 0 and "Traceback" not in output) or (
        proc.returncode == 1 and re.search(r"^\s+\d+: DOC\d{3}: ", output, re.M)), output[-3000:]
    problems, path = [], ""
    for line in output.splitlines():
        if not line.startswith(" "):
            path = line.strip()
            continue
        found = re.match(r"\s*(\d+): (DOC501|DOC503): \w+ `([^`]+)`", line)
        if not found or any(part.startswith("_") and not part.startswith("__") for part in found[3].split(".")):
            continue
        if found[2] == "DOC503":
            # "FileNotFoundError, RuntimeError" and "~deeplab_edu.engine.config.ConfigError" name classes too
            documented = {name.strip().rsplit(".", 1)[-1] for entry in
                          ast.literal_eval(re.search(r"docstring: (\[.*?\])", line)[1]) for name in entry.split(",")}
            raised = set(ast.literal_eval(re.search(r"body: (\[.*?\])", line)[1]))
            if not raised - documented - {"BaseException"}:
                continue
        problems.append(f"{path}:{found[1]}: {found[3]}: {line.split(': ', 2)[2]}")
    assert not problems, "public functions that raise without saying so:\n" + "\n".join(problems)


def test_docstring_examples_run() -> None:
    """Every ``>>>`` example in the package's docstrings gives the output it shows (pytest's doctest
    runner; an example that needs a file or the network is marked ``# doctest: +SKIP``)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "--doctest-modules", "-p", "no:cacheprovider",
                           "--override-ini", "addopts=", "--override-ini", "testpaths=deeplab_edu", "deeplab_edu"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and " passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]


def _marked_noqa(report: str) -> bool:
    path, line_no = report.split(":")[:2]
    try:
        source = (REPO_ROOT / path).read_text().splitlines()[int(line_no) - 1]
    except (OSError, ValueError, IndexError):
        return False
    return "# noqa" in source


def test_every_public_function_and_class_is_in_its_modules_all() -> None:
    """The API reference documents ``__all__`` (CONTRIBUTING.md): a public ``def`` or ``class`` left out of
    it is missing from the book without a warning. A module's ``main`` (its ``python -m`` entry) may
    stay out; a name meant to be private starts with ``_``."""
    missing = {}
    for path in public_modules().values():
        tree = ast.parse(path.read_text())
        exported: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                exported = set(ast.literal_eval(node.value))
        public = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and not node.name.startswith("_") and node.name != "main"]
        if left_out := [name for name in public if name not in exported]:
            missing[str(path.relative_to(REPO_ROOT))] = left_out
    assert not missing, f"public names missing from their module's __all__ (so from the book's API reference): {missing}"
