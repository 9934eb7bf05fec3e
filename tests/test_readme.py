"""The README's curriculum table lists every notebook with the CPU time from its header."""

from __future__ import annotations

import re

import jupytext

from conftest import NOTEBOOKS, REPO_ROOT


def test_curriculum_table_matches_notebook_headers() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for nb in NOTEBOOKS:
        meta = jupytext.read(nb).metadata.get("deeplab_edu", {})
        assert "cpu_minutes" in meta, f"{nb.name}: header lacks deeplab_edu.cpu_minutes"
        row = next((line for line in readme.splitlines() if f"`{nb.name}`" in line), None)
        assert row is not None, f"README.md's curriculum table has no row for {nb.name}"
        assert re.search(rf"~{meta['cpu_minutes']} min", row), (
            f"README row for {nb.name} should say ~{meta['cpu_minutes']} min (its header's cpu_minutes)"
        )


def test_readme_puts_the_two_commands_first() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    first_code = readme.split("```", 2)[1]
    assert "make lab" in first_code and "make test" in first_code


def test_each_chapter_states_its_header_time_under_its_title() -> None:
    """JupyterLab does not show the header's metadata: the first cell says it, from the same number."""
    for nb in NOTEBOOKS:
        notebook = jupytext.read(nb)
        minutes = notebook.metadata["deeplab_edu"]["cpu_minutes"]
        first = next(c for c in notebook.cells if c.cell_type == "markdown").source
        assert f"*About {minutes:g} min on a 2-core machine in the `cpu` profile" in first, nb.name


def test_each_chapter_names_its_prerequisites_under_its_title() -> None:
    """The first cell says which chapters the page builds on, from the header's ``prerequisites``."""
    for nb in NOTEBOOKS[1:]:
        notebook = jupytext.read(nb)
        wanted = [f"{c:02d}" for c in notebook.metadata["deeplab_edu"]["prerequisites"]]
        first = " ".join(next(c for c in notebook.cells if c.cell_type == "markdown").source.split())
        said = re.search(r"Builds on (no earlier chapter|chapters? ([0-9, and]+))\.", first)
        assert said, f"{nb.name}: the first cell should say 'Builds on chapter(s) ...' or 'Builds on no earlier chapter.'"
        assert re.findall(r"[0-9]{2}", said.group(2) or "") == wanted, (nb.name, said.group(0), wanted)


def test_prerequisites_must_be_earlier_chapters(tmp_path) -> None:
    import pytest

    from deeplab_edu.book import chapter_header

    source = tmp_path / "03_x.py"
    header = "# ---\n# jupyter:\n#   deeplab_edu:\n#     chapter: 3\n#     title: x\n#     cpu_minutes: 1\n"
    source.write_text(header + "#     prerequisites: [1, 2]\n# ---\n\n# %%\n1\n")
    assert chapter_header(source)["prerequisites"] == (1, 2)
    source.write_text(header + "#     prerequisites: [1, 3]\n# ---\n\n# %%\n1\n")
    with pytest.raises(ValueError, match=r"03_x.py: prerequisites \[1, 3\] must be earlier chapters"):
        chapter_header(source)
    source.write_text(header + "# ---\n\n# %%\n1\n")
    with pytest.raises(KeyError, match="03_x.py.*lacks prerequisites"):
        chapter_header(source)
    copied = tmp_path / "12_y.py"  # a contributor's trial: a header copied from chapter 03, its number kept
    copied.write_text(header + "#     prerequisites: [1, 2]\n# ---\n\n# %%\n1\n")
    with pytest.raises(ValueError, match="12_y.py: its header says chapter: 3, its file name 12"):
        chapter_header(copied)


def test_chapter_00_lists_every_chapter_with_its_header_time() -> None:
    from deeplab_edu.book import chapter_headers

    headers = chapter_headers()
    assert [h["source"] for h in headers] == [nb.name for nb in NOTEBOOKS]
    for h, nb in zip(headers, NOTEBOOKS):
        assert h["cpu_minutes"] == jupytext.read(nb).metadata["deeplab_edu"]["cpu_minutes"]


def test_the_readmes_python_example_predicts_with_a_trained_run(tmp_path, monkeypatch) -> None:
    """The README's "A trained run in Python" block, run as written on a smoke run and a photo."""
    import numpy as np
    from PIL import Image

    from deeplab_edu.cli import main

    block = next(b for b in (REPO_ROOT / "README.md").read_text().split("```python\n")[1:] if "load_run(" in b)
    code = block.split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--preset", "smoke", "--out-dir", "runs/mine", "--no-progress"]) == 0
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save("photo.jpg")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert tuple(scope["mask"].shape) == (40, 56) and scope["strategy"].output_stride == scope["run"].config[
        "eval_output_stride"]


def test_the_planning_tables_build_times_are_the_records() -> None:
    """The README's `make book` minutes and `.venv` size are copied from benchmarks/book_time.py's records:
    a record made again fails this until the README says what it measured."""
    from deeplab_edu.records import load_record

    readme = (REPO_ROOT / "README.md").read_text()
    for profile in ("smoke", "cpu"):
        results = load_record(f"make_book_{profile}")["results"]
        row = next(line for line in readme.splitlines() if f"`benchmarks/results/make_book_{profile}.json`" in line
                   and line.startswith("| `make book`"))
        assert (f"| {results['book_seconds'] / 60:.1f}, HTML included, plus {results['setup_seconds'] / 60:.1f} for "
                "`make setup` |") in row, row
    cpu = load_record("make_book_cpu")["results"]
    assert f"the `.venv` took {cpu['venv_bytes'] / 1e9:.1f} GB" in readme
    minutes = {row["chapter"]: row["seconds"] / 60 for row in cpu["chapters"]}
    assert (f"took {minutes[8]:.1f} (08), {minutes[9]:.1f} (09) and {minutes[11]:.1f} (11) minutes, and\n"
            f"chapter 10 {minutes[10]:.1f}") in readme
    commit = load_record("make_book_cpu")["code_version"]["git_commit"][:7]
    row = next(line for line in readme.splitlines() if "`benchmarks/results/make_book_cpu.json`" in line
               and line.startswith("| `make book`"))
    assert f"(commit `{commit}`" in row, row  # the commit the table names is the record's
    assert load_record("chapter11_no_camvid_cpu")["results"]["total_seconds"] < 60  # "under a minute"


def test_the_readmes_memory_figures_are_the_newest_record() -> None:
    """The README's memory per chapter is copied from the newest notebook_times record that measured it."""
    from deeplab_edu.records import load_record

    readme = " ".join((REPO_ROOT / "README.md").read_text().split())  # one line, as the sentence wraps
    results = REPO_ROOT / "benchmarks" / "results"
    measured = [load_record(p.stem) for p in sorted(results.glob("notebook_times_cpu*.json"))]
    measured = [r for r in measured if all("peak_memory_gb" in row for row in r["results"]["chapters"])]
    assert measured, "no notebook_times record holds peak_memory_gb"
    newest = max(measured, key=lambda r: r["created"])
    peak = {row["chapter"]: row["peak_memory_gb"] for row in newest["results"]["chapters"]}
    top = max(peak, key=lambda c: peak[c])
    assert f"(`benchmarks/results/notebook_times_cpu_{newest['code_version']['git_commit'][:7]}.json`, sampled" in readme
    assert f"peaked at about {peak[top]:.2f} GB together (chapter {top:02d}" in readme
    others = {c: v for c, v in peak.items() if c not in (top, 8)}
    assert f"{peak[8]:.2f} chapter 08 and at most {max(others.values()):.2f} every other chapter" in readme
    workers = load_record("worker_memory_cpu")["results"]
    assert f"{workers['peak_gb']['1']:.2f} GB with one worker, {workers['peak_gb']['7']:.2f} with seven" in readme
    beyond_first = [v for k, v in workers["added_per_worker_gb"].items() if not k.startswith("0->")]
    assert all(abs(v - 0.04) <= 0.015 for v in beyond_first), beyond_first  # "each added about 0.04 GB"


def test_the_readmes_chapter_counts_are_the_notebooks() -> None:
    """The README's "all twelve chapters" and "00 to 11" were prose no test read: a chapter added or
    removed would leave them wrong without a word."""
    words = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
             "sixteen seventeen eighteen nineteen twenty").split()
    readme = (REPO_ROOT / "README.md").read_text()
    numbers = sorted(int(nb.name[:2]) for nb in NOTEBOOKS)
    assert numbers == list(range(len(numbers))), "the chapters are numbered 00, 01, ... without a gap"
    assert re.search(rf"\ball {words[len(numbers)]} chapters\b", readme), (
        f"README.md should say 'all {words[len(numbers)]} chapters' ({len(numbers)} notebooks)")
    last = f"{numbers[-1]:02d}"
    assert re.search(rf"\b00 to {last}\b", readme), f"README.md should say the notebooks run 00 to {last}"
    stale = [m.group(0) for m in re.finditer(r"\ball (\w+) chapters\b|\b00 to (\d\d)\b", readme)
             if m.group(1) not in (None, words[len(numbers)]) or m.group(2) not in (None, last)]
    assert not stale, f"README.md counts the chapters otherwise: {stale}"


def test_the_chapters_said_to_print_the_profile_line_print_it() -> None:
    """A new user's trial: the README promised the CPU-quota note in "each chapter's first lines", which only
    chapters 03 and 05 to 10 print (config.profile_line); the README and chapter 00 name the chapters that do."""
    printing = [int(nb.name[:2]) for nb in NOTEBOOKS if "print(config.profile_line(" in nb.read_text()]
    assert printing == [3, *range(5, len(NOTEBOOKS))], printing
    said = f"chapters 03 and 05 to {printing[-1]:02d}"
    assert said in " ".join((REPO_ROOT / "README.md").read_text().split()), f"README.md should say {said!r}"
    start = " ".join(NOTEBOOKS[0].read_text().replace("\n# ", " ").split())
    assert f"C{said[1:]} print their profile" in start and f"the first line of {said}" in start


def test_the_readmes_tracing_calls_work() -> None:
    """An audit: the README said `torch.jit.trace` takes the models as they are, but a model's dict output makes
    it raise; the README names the call that works (LogitsOnly), and both documented exports run."""
    import warnings

    import pytest
    import torch

    from deeplab_edu.models import build_model
    from deeplab_edu.models.export import LogitsOnly

    readme = " ".join((REPO_ROOT / "README.md").read_text().split())
    assert "`torch.export.export` takes the models as they are" in readme
    assert "`torch.jit.trace` takes `deeplab_edu.models.export.LogitsOnly(model)`" in readme
    model, x = build_model("deeplabv3", backbone="tiny_resnet", num_classes=3).eval(), torch.rand(1, 3, 64, 64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer warnings
        with pytest.raises(RuntimeError, match="dict at the output"):
            torch.jit.trace(model, x)
        torch.testing.assert_close(torch.jit.trace(LogitsOnly(model), x)(x), model(x)["out"])
        torch.testing.assert_close(torch.export.export(model, (x,)).module()(x)["out"], model(x)["out"])


def test_a_chapter_after_10_that_uses_its_statistics_builds_on_it() -> None:
    """An audit: chapter 11 reads its class-weight comparison with chapter 10's statistics (95 % intervals over
    seeds, paired t, Holm's correction: `deeplab_edu.findings`), but its prerequisites were 06, 08 and 09, so
    chapter 00's table let a class start chapter 11 without chapter 10."""
    from deeplab_edu.book import chapter_header

    for nb in NOTEBOOKS:
        header = chapter_header(nb)
        if header["chapter"] > 10 and re.search(r"^from deeplab_edu\.findings import", nb.read_text(), re.M):
            assert 10 in header["prerequisites"], (nb.name, header["prerequisites"])


def test_the_readme_and_the_intro_say_binder_needs_the_smoke_profile_for_chapters_08_to_11() -> None:
    """A new user's trial: mybinder.org gives a session about 2 GB, the README recorded chapter 08 peaking at
    2.04 GB (11 at 3.18 on CamVid) at the `cpu` profile, and the book's Binder button named no profile. The
    README (where it gives the record) and the book's intro say so with the record's figures, and how to set
    the profile in a Binder kernel."""
    from deeplab_edu.records import load_record

    results = REPO_ROOT / "benchmarks" / "results"
    measured = [load_record(p.stem) for p in sorted(results.glob("notebook_times_cpu*.json"))]
    newest = max((r for r in measured if all("peak_memory_gb" in row for row in r["results"]["chapters"])),
                 key=lambda r: r["created"])
    peak = {row["chapter"]: row["peak_memory_gb"] for row in newest["results"]["chapters"]}
    assert peak[8] > 2 and peak[11] > 2 and max(peak[c] for c in range(8)) < 2  # what the text says of them
    readme = " ".join((REPO_ROOT / "README.md").read_text().split())
    intro = " ".join((REPO_ROOT / "book" / "intro.md").read_text().split())
    for name, text in (("README.md", readme), ("book/intro.md", intro)):
        assert "gives a session about 2 GB" in text and "`%env DEEPLAB_EDU_PROFILE=smoke`" in text, name
        assert f"{peak[8]:.2f} GB" in text and f"{peak[11]:.2f}" in text, name
    assert "run chapters 08-11 at the `smoke` profile" in readme
    assert f"Chapters 00-07 peaked at {max(peak[c] for c in range(8)):.2f} GB at most" in readme
    assert "less than chapters 08-11 need at the `cpu` profile" in intro
