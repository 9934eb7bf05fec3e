"""``benchmarks/README.md`` shows the records of ``benchmarks/results/`` as they are now.

A figure in the README is copied from a record; these checks fail when a record is made again
and the README still describes the old one, or when the README names a record that is not there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deeplab_edu.engine.bench import format_results
from deeplab_edu.records import RESULTS_DIR, load_record

README = RESULTS_DIR.parent / "README.md"
RECORDS = sorted(p.stem for p in RESULTS_DIR.glob("*.json"))


@pytest.mark.parametrize("name", RECORDS)
def test_the_readme_describes_each_record_at_its_own_commit(name: str) -> None:
    text = README.read_text()
    record = load_record(name)
    commit = record["code_version"].get("git_commit", "")[:7]
    assert commit, (f"results/{name}.json names no commit: on a copy without .git, set DEEPLAB_EDU_CODE_COMMIT "
                    "(benchmarks/gpu_session.sh)")
    assert f"results/{name}.json" in text, f"benchmarks/README.md does not show results/{name}.json"
    assert f"`{commit}`" in text, (f"results/{name}.json was recorded at commit {commit}, which benchmarks/README.md "
                                   "never names: its figures there describe an older record")


def test_the_readme_names_only_records_that_exist() -> None:
    named = set(re.findall(r"results/([a-z0-9_]+)\.json", README.read_text()))
    # GPU records are named for `bash benchmarks/gpu_session.sh` to create; every other one must exist
    missing = sorted(n for n in named - set(RECORDS) if not n.endswith("_cuda"))
    assert not missing, f"benchmarks/README.md names records that do not exist: {missing}"


def test_the_model_table_is_the_record_formatted() -> None:
    table = format_results(load_record("bench_cpu"))
    assert table in README.read_text(), ("the bench table in benchmarks/README.md differs from "
                                         "format_results(results/bench_cpu.json): paste it again")


def test_the_records_are_read_from_the_repository() -> None:
    assert RESULTS_DIR == Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def test_the_findings_table_is_the_record_formatted() -> None:
    from deeplab_edu.findings import RecordedFindings

    table = RecordedFindings(load_record("findings_cpu"), {}).markdown()
    assert table in README.read_text(), ("the findings table in benchmarks/README.md differs from "
                                         "RecordedFindings.markdown() of results/findings_cpu.json (benchmarks/findings.py "
                                         "prints it): paste it again")


def test_no_chapter_header_states_fewer_minutes_than_its_recorded_run() -> None:
    """Every chapter states under its title the minutes it takes in the ``cpu`` profile (its header's
    ``cpu_minutes``, listed in chapter 00); ``benchmarks/notebook_times.py`` measured them, one chapter
    at a time from scratch, in ``results/notebook_times_cpu.json``."""
    from deeplab_edu.book import chapter_headers

    record = load_record("notebook_times_cpu")
    assert record["results"]["profile"] == "cpu" and record["results"]["camvid_present"], (
        "the record must time the cpu profile with a CamVid copy present (chapter 11 trains on it)")
    measured = {row["source"]: row for row in record["results"]["chapters"]}
    for header in chapter_headers():
        row = measured.get(header["source"])
        assert row is not None and row["status"] == "ok", f"{header['source']}: not timed, or failed, in the record"
        assert header["cpu_minutes"] >= row["seconds"] / 60, (
            f"{header['source']} states {header['cpu_minutes']:g} minutes, but took {row['seconds'] / 60:.1f} in "
            "results/notebook_times_cpu.json: raise its header's cpu_minutes (and the line under its title)")
