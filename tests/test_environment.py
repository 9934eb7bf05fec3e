"""Set-up: the pins of environment.yml and constraints.txt agree, and cover pyproject's needs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from conftest import REPO_ROOT


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: '{line}' is not pinned with =="
            pins[_norm(name)] = version
    return pins


def _environment_pins() -> dict[str, str]:
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pins = {}
    for item in pip:
        if item.startswith("-"):
            continue
        name, _, version = item.partition("==")
        assert version, f"environment.yml: '{item}' is not pinned with =="
        pins[_norm(name)] = version
    return pins


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += [r for r in extra if not r.startswith("deeplab-edu")]
    return {_norm(re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0]) for r in reqs}


def test_environment_yml_matches_constraints() -> None:
    constraints, env = _constraints(), _environment_pins()
    drift = {n: (v, constraints.get(n)) for n, v in env.items() if constraints.get(n) != v}
    assert not drift, f"environment.yml and constraints.txt disagree (env, constraints): {drift}"


def test_every_requirement_is_pinned_in_both() -> None:
    constraints, env = _constraints(), _environment_pins()
    for name in _pyproject_requirements():
        assert name in constraints, f"{name} (pyproject.toml) has no pin in constraints.txt"
        assert name in env, f"{name} (pyproject.toml) has no pin in environment.yml"


def test_every_installed_pin_admits_the_oldest_python_the_course_accepts() -> None:
    """pyproject's ``requires-python`` (">=3.11") admits Python 3.11.0 and later, as the README says:
    Debian 12's Python is 3.11.2. A pinned package that needs a later patch release
    stopped `make setup` there (soupsieve 4.1.1, needing 3.11.5: pip found no version to install). The
    packages installed from the pins say which Pythons they accept in their metadata, read offline here."""
    from importlib.metadata import distributions

    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    floor = re.fullmatch(r">=\s*(\d+\.\d+(?:\.\d+)?)", requires.strip())
    assert floor, f"pyproject.toml: requires-python {requires!r} is not of the form >=X.Y"
    pins, refused, checked = _constraints(), {}, 0
    for dist in distributions():
        name, needs = _norm(dist.metadata["Name"] or ""), dist.metadata.get("Requires-Python")
        if name not in pins or dist.version != pins[name]:
            continue
        checked += 1
        try:
            if needs and not SpecifierSet(needs).contains(floor[1], prereleases=True):
                refused[f"{name}=={dist.version}"] = needs
        except InvalidSpecifier:
            pass  # an old, malformed Requires-Python: pip ignores it too
    assert checked > 100, f"only {checked} installed packages match constraints.txt: is this the .venv?"
    assert not refused, (f"these pins refuse Python {floor[1]}, which pyproject.toml's requires-python admits: "
                         f"{refused}; pin a release that accepts it, or raise requires-python and the README")


def test_torch_pins_are_the_course_versions() -> None:
    pins = _constraints()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert pins["jupyter-book"] == "1.0.4.post1"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make lab" in readme


def test_lab_opens_python_files_as_notebooks() -> None:
    """`make setup` writes JupyterLab's settings override: .py files open with Jupytext's notebook view."""
    import json

    import pytest

    makefile = (REPO_ROOT / "Makefile").read_text()
    assert '"python": "Jupytext Notebook"' in makefile
    assert "--LabApp.default_url=/lab/tree/00_start_here.py" in makefile  # Lab opens the first chapter
    assert (REPO_ROOT / "notebooks" / "00_start_here.py").is_file()
    overrides = REPO_ROOT / ".venv" / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    if not overrides.is_file():
        pytest.skip("not running inside a `make`-built .venv")
    settings = json.loads(overrides.read_text())
    assert settings["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"] == {"python": "Jupytext Notebook"}
    # no news pop-up over the first chapter and no request to a website (a trial saw the pop-up)
    assert settings["@jupyterlab/apputils-extension:notification"] == {"fetchNews": "false", "checkForUpdates": False}


def test_lab_gives_its_kernels_encrypted_channels(tmp_path: Path) -> None:
    """`make setup` (and Binder's postBuild) add the kernels' CurveZMQ setting and the course's contents manager
    (deeplab_edu.lab) to the environment's Jupyter server configuration, keeping what the file held; a broken
    file is named, not overwritten."""
    import json

    import pytest

    from deeplab_edu.book import kernel_encryption_settings, write_lab_server_config

    assert kernel_encryption_settings() == {"KernelManager": {"transport_encryption": "auto"}}  # the pins have both
    for setup in ((REPO_ROOT / "Makefile").read_text(), (REPO_ROOT / "postBuild").read_text()):
        assert "write_lab_server_config()" in setup
    config = tmp_path / "etc" / "jupyter" / "jupyter_server_config.json"
    config.parent.mkdir(parents=True)
    config.write_text('{"ServerApp": {"open_browser": false}, "KernelManager": {"shutdown_wait_time": 2}}')
    assert write_lab_server_config(tmp_path) == config
    assert json.loads(config.read_text()) == {
        "ServerApp": {"open_browser": False, "contents_manager_class": "deeplab_edu.lab.CourseContentsManager"},
        "KernelManager": {"shutdown_wait_time": 2, "transport_encryption": "auto"}}
    config.write_text("{not json")
    with pytest.raises(ValueError, match="jupyter_server_config.json: not JSON"):
        write_lab_server_config(tmp_path)
    assert config.read_text() == "{not json"
    venv = REPO_ROOT / ".venv" / "etc" / "jupyter" / "jupyter_server_config.json"
    if venv.parent.parent.parent.joinpath(".deeplab-edu-installed").exists():
        written = json.loads(venv.read_text())
        assert written["KernelManager"]["transport_encryption"] == "auto"
        assert written["ServerApp"]["contents_manager_class"] == "deeplab_edu.lab.CourseContentsManager"


def test_second_run_installs_nothing() -> None:
    """`make -q setup` exits 0 only when the venv stamp is newer than the pins: nothing to install."""
    import shutil
    import subprocess

    if shutil.which("make") is None or not (REPO_ROOT / ".venv" / ".deeplab-edu-installed").exists():
        import pytest

        pytest.skip("not running inside a `make`-built .venv")
    proc = subprocess.run(["make", "-q", "setup"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, "make would reinstall: the .venv stamp is older than pyproject.toml/constraints.txt"


def test_a_moved_checkout_makes_its_venv_again(tmp_path: Path) -> None:
    """A portability trial (stop 70): a checkout moved or renamed kept a .venv whose scripts name the old
    folder's python, and `make setup` had nothing to do; the stamp now holds the .venv's folder."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        import pytest

        pytest.skip("no make")
    venv = tmp_path / "moved_venv"  # a make target holds no space (the checkout's path may: VENV is relative)
    venv.mkdir()
    stamp = venv / ".deeplab-edu-installed"

    def planned() -> str:  # what `make setup` would run for the stamp (-n: nothing is run)
        return subprocess.run(["make", "-n", f"VENV={venv}", str(stamp)], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout

    stamp.write_text("/old/place/.venv\n")
    assert "was made in /old/place/.venv" in planned() and "rm -rf" in planned()
    stamp.write_text(f"{venv}\n")  # made here, and newer than the pins
    assert "pip install" not in planned()
    stamp.write_text("")  # a stamp of before this check (empty), and no pip to read: not taken for a move
    assert "cannot move" not in planned()
    (venv / "bin").mkdir()
    (venv / "bin" / "pip").write_text("#!/old/place/.venv/bin/python3\n")  # pip's first line names the folder
    assert "was made in /old/place/.venv" in planned()
    (venv / "bin" / "pip").write_text(f"#!{venv}/bin/python3\n")
    assert "pip install" not in planned()


def test_the_editable_install_names_the_checkout_by_a_relative_path(tmp_path: Path) -> None:
    """Python 3.11 reads a .pth file in the locale's encoding: under LC_ALL=C an absolute path with a
    non-ASCII letter stopped every Python of the .venv at start-up (a portability trial, stop 70)."""
    import os

    from deeplab_edu.book import make_editable_path_relative

    site = tmp_path / "lib" / "site-packages"
    site.mkdir(parents=True)
    pth = site / "__editable__.deeplab_edu-0.1.0.pth"
    pth.write_text(f"{REPO_ROOT.resolve()}\nimport something_else\n")
    assert make_editable_path_relative(site) == [pth]
    line, other = pth.read_text().splitlines()
    assert not os.path.isabs(line) and Path(site, line).resolve() == REPO_ROOT.resolve() and other == "import something_else"
    assert make_editable_path_relative(site) == []  # already relative: left alone


def test_the_course_reads_its_own_files_in_a_legacy_locale(tmp_path: Path) -> None:
    """The chapters hold non-ASCII text (θ, ×, —); the package read them in the locale's encoding, so under a
    legacy locale (LC_ALL=C without Python's UTF-8 mode: native Windows, old systems) `student-copy` ended
    in "'ascii' codec can't decode" (a portability trial, stop 70). Files the package writes and reads are
    UTF-8 whatever the locale."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    proc = subprocess.run([sys.executable, "-m", "deeplab_edu.book", "student-copy", str(tmp_path / "copy")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert any("×" in p.read_text(encoding="utf-8") for p in (tmp_path / "copy").glob("*.py"))


def test_environment_yml_installs_under_constraints_txt() -> None:
    """A dependency audit: environment.yml's pip section pinned only the direct dependencies, so about 20 of the
    indirect ones resolved to other versions than constraints.txt's (soupsieve 4.x, pinned to 2.10 on purpose).
    Its first entry applies the whole file, as `make` does; conda writes the section to a requirements file
    beside environment.yml, from which pip reads the relative path."""
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert pip[0] == "-c constraints.txt", f"environment.yml: start the pip section with -c constraints.txt: {pip[:2]}"
    assert (REPO_ROOT / "constraints.txt").is_file()
    assert "-c constraints.txt" in (REPO_ROOT / "Makefile").read_text()


def test_setup_keeps_no_second_copy_of_the_wheels() -> None:
    """`make setup` installs with ``--no-cache-dir``: a clean CI machine ran out of disk space in the install
    ("[Errno 28] No space left on device"); where PyPI's answers are cacheable, pip kept the 2.7 GB of torch's
    and its CUDA libraries' wheels in its cache beside the .venv. The README's disk figure counts the download."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    install = re.search(r"\$\(BIN\)/python -m pip install (?:[^\n]*\\\n)*[^\n]*", makefile)
    assert install is not None, "Makefile: no `$(BIN)/python -m pip install` line"
    assert "--no-cache-dir" in install.group(0), install.group(0)
    assert "10 GB of free disk while installing" in (REPO_ROOT / "README.md").read_text()


def _required_by_the_project() -> set[str]:
    """The packages pyproject.toml's requirements lead to here, by normalised name: theirs, their
    requirements' (with the extras asked for), and so on, read from the installed packages' metadata (offline);
    markers are read for constraints.txt's machine, Python 3.11 on Linux (``sys_platform == "win32"``: left out)."""
    import sys
    from importlib.metadata import distributions

    import pytest
    from packaging.requirements import Requirement

    if sys.platform != "linux":
        pytest.skip("constraints.txt is a freeze of a Linux .venv (its CUDA packages are torch's there)")
    freeze = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux",
              "platform_system": "Linux"}
    needs: dict[str, list[Requirement]] = {}  # "name" and "name[extra]": what the package (or extra) adds
    for dist in distributions():
        name = _norm(dist.metadata["Name"] or "")
        for req in map(Requirement, dist.requires or []):
            extra = next((e for e in ["", *(dist.metadata.get_all("Provides-Extra") or [])]
                          if req.marker is None or req.marker.evaluate({**freeze, "extra": e})), None)
            if extra is not None:
                needs.setdefault(f"{name}[{extra}]" if extra else name, []).append(req)
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    todo += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    reached: set[str] = set()
    while todo:
        req = todo.pop()
        for key in {_norm(req.name), *(f"{_norm(req.name)}[{e}]" for e in req.extras)} - reached:
            reached.add(key)
            todo += needs.get(key, [])
    assert len(needs) > 100, "few installed packages: is this the .venv?"
    return {key.split("[")[0] for key in reached} - {"deeplab-edu"}


def test_every_package_the_project_requires_is_pinned() -> None:
    """pip freeze leaves out setuptools and wheel, so constraints.txt had no pin for them, though torch requires
    setuptools>=77.0.3 and sphinx-togglebutton both: a new .venv got their newest releases. Every package the
    requirements lead to has a pin, so `pip install -c constraints.txt` (make setup) installs it at that version."""
    unpinned = sorted(_required_by_the_project() - set(_constraints()))
    assert not unpinned, f"constraints.txt has no pin for {unpinned}: add the versions installed in the .venv"


def test_every_pin_is_needed() -> None:
    """A pin no requirement of pyproject.toml leads to is a package `make` installs for nothing (nbval and
    pytest-xdist, which nothing used, left the dev extra, and with them execnet and coverage, theirs alone)."""
    unneeded = sorted(set(_constraints()) - _required_by_the_project())
    assert not unneeded, f"constraints.txt pins {unneeded}, which nothing requires: remove them"
