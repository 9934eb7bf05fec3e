"""``benchmarks/README.md`` shows the records of ``benchmarks/results/`` as they are now.

A figure in the README is copied from a record; these checks fail when a record is made again
and the README still describes the old one, or when the README names a record that is not there.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from deeplab_edu.engine.bench import format_results
from deeplab_edu.records import RESULTS_DIR, load_record

README = RESULTS_DIR.parent / "README.md"
#: The folder a recorded command runs from (the repository: ``python benchmarks/x.py ...``).
REPO_ROOT_OF_RESULTS = RESULTS_DIR.parent.parent
RECORDS = sorted(p.stem for p in RESULTS_DIR.glob("*.json"))
#: How many minutes a chapter's header may state above its slowest one-at-a-time record (rounded up).
HEADER_MARGIN_MINUTES = 2


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


#: The records ``benchmarks/README.md`` may name before they exist: those ``benchmarks/gpu_session.sh`` still has
#: to create on a GPU (stage 8 has not run). Every other record it names must exist; a name leaves this list
#: once its record is committed (a test below says when).
AWAITING_THE_GPU_SESSION = ("train_gpu_preset_eager", "train_gpu_preset_graphs")
GPU_SESSION = RESULTS_DIR.parent / "gpu_session.sh"


def _missing_records(text: str) -> list[str]:
    """The records ``text`` names (``results/<name>.json``) that neither exist nor await the GPU session."""
    named = set(re.findall(r"results/([a-z0-9_]+)\.json", text))
    return sorted(named - set(RECORDS) - set(AWAITING_THE_GPU_SESSION))


def test_the_readme_names_only_records_that_exist() -> None:
    missing = _missing_records(README.read_text())
    assert not missing, f"benchmarks/README.md names records that do not exist: {missing}"


def test_the_model_table_is_the_record_formatted() -> None:
    table = format_results(load_record("bench_cpu"))
    assert table in README.read_text(), ("the bench table in benchmarks/README.md differs from "
                                         "format_results(results/bench_cpu.json): paste it again")


def test_the_records_are_read_from_the_repository() -> None:
    assert RESULTS_DIR == Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def test_the_findings_table_is_the_record_formatted() -> None:
    from deeplab_edu.findings import RecordedFindings

    for name in ("findings_cpu", "findings_decoder_cpu", "findings_context_cpu", "findings_crf_cpu",
                 "findings_crf_colour_cpu"):
        table = RecordedFindings(load_record(name), {}).markdown()
        assert table in README.read_text(), (f"the findings table in benchmarks/README.md differs from "
                                             f"RecordedFindings.markdown() of results/{name}.json (benchmarks/findings.py "
                                             "prints it): paste it again")


def test_the_findings_rows_the_record_predates_are_computed_from_its_matrices() -> None:
    """benchmarks/README.md gives in words (b3), which chapter 10 computes from the record's matrices, and the split
    of the decoder's gain at output stride 8 that chapter 09 computes from the decoder record."""
    from deeplab_edu.findings import FINDINGS, load_findings, findings_table

    recorded = load_findings()
    assert recorded is not None
    (row,) = findings_table(recorded.matrices, [f for f in FINDINGS if f.key == "b3"], n_boot=200)
    text = " ".join(README.read_text().split())
    expected = (f"{row['baseline (%)'].split(' ')[0]} -> {row['variant (%)'].split(' ')[0]} %, "
                f"{row['difference (points)']:+.2f} points (95 % interval over seeds {row['95% interval over seeds']}")
    assert expected in text, expected
    assert row["verdict"] == "reproduced" and "), reproduced, but with p = " in text  # Holm: the test below
    # ... and the split of the decoder's gain at output stride 8 that the decoder record's paragraph gives
    from deeplab_edu.findings import Finding

    decoder = load_findings("findings_decoder_cpu")
    assert decoder is not None
    sep, plus = "v3, separable ASPP", "v3+"
    at_8 = [Finding("s8", "", (sep, "eval OS 16"), (sep, "eval OS 8"), "miou", "", None),
            Finding("p8", "", (plus, "eval OS 16"), (plus, "eval OS 8"), "miou", "", None)]
    rows = {r["finding"][1:3]: r for r in findings_table(decoder.matrices, [f for f in FINDINGS if f.key in ("d1", "d4")]
                                                         + at_8, n_boot=200)}
    low, high = rows["s8"]["95% interval over seeds"].strip("[]").split(", ")
    split = (f"{rows['d1']['_difference']:+.2f} = {rows['d4']['_difference']:+.2f} (d4) - "
             f"({rows['s8']['_difference']:+.2f}: the separable-ASPP DeepLabv3 at 8, 95 % interval over seeds "
             f"{float(low):.2f} to {float(high):.2f})")
    assert split in text, split
    assert f"({rows['p8']['_difference']:+.2f}: DeepLabv3+ at 8, {rows['p8']['verdict']})" in text


def test_every_chapter_is_timed_by_a_record() -> None:
    """A chapter's ``cpu_minutes`` is a measured bound: each chapter is timed, "ok", by at least one
    ``notebook_times_cpu*.json`` record (a contributor's trial: a new chapter failed the check of every older
    record, which cannot be made again; CONTRIBUTING's "Adding a chapter" says how to time it)."""
    from deeplab_edu.book import chapter_headers

    timed = {row["source"] for path in RESULTS_DIR.glob("notebook_times_cpu*.json")
             for row in load_record(path)["results"]["chapters"] if row["status"] == "ok"}
    for header in chapter_headers():
        assert header["source"] in timed, (
            f"{header['source']} is timed by no benchmarks/results/notebook_times_cpu*.json record: from a clean "
            "clone with CamVid, `python benchmarks/notebook_times.py --only NN --out "
            "benchmarks/results/notebook_times_cpu_<commit>.json` (CONTRIBUTING.md, Adding a chapter)")


def test_no_chapter_header_states_fewer_minutes_than_its_recorded_run() -> None:
    """Every chapter states under its title the minutes it takes in the ``cpu`` profile (its header's
    ``cpu_minutes``, listed in chapter 00); ``benchmarks/notebook_times.py`` measured them, one chapter
    at a time from scratch, in ``results/notebook_times_cpu.json`` and, later (other hours of the same
    VM, later versions of the chapters), ``results/notebook_times_cpu_<commit>.json``: each header holds
    the slowest of them."""
    from deeplab_edu.book import chapter_headers

    records = sorted(RESULTS_DIR.glob("notebook_times_cpu*.json"))
    assert RESULTS_DIR / "notebook_times_cpu.json" in records and len(records) >= 2, records
    for path in records:
        record = load_record(path)
        assert record["results"]["profile"] == "cpu" and record["results"]["camvid_present"], (
            f"{path.name} must time the cpu profile with a CamVid copy present (chapter 11 trains on it)")
        assert not record["code_version"]["git_dirty"], f"{path.name} was made from a dirty tree"
        measured = {row["source"]: row for row in record["results"]["chapters"]}
        for header in chapter_headers():
            row = measured.get(header["source"])
            if row is None:  # a chapter added after this record (timed by a later one: below)
                continue
            assert row["status"] == "ok", f"{header['source']}: failed in {path.name}"
            assert header["cpu_minutes"] >= row["seconds"] / 60, (
                f"{header['source']} states {header['cpu_minutes']:g} minutes, but took {row['seconds'] / 60:.1f} in "
                f"results/{path.name}: raise its header's cpu_minutes (and the line under its title)")
        if path.stem != "notebook_times_cpu":  # the later records name their commit, as benchmarks/README.md does
            assert path.stem == f"notebook_times_cpu_{record['code_version']['git_commit'][:7]}", path.name
    # ... and none states much more: at most HEADER_MARGIN_MINUTES above the slowest record's whole minutes (a
    # slower hour of the VM: chapter 10 alone took 6.2 minutes at 1d6cd61, benchmarks/README.md)
    slowest: dict[str, float] = {}
    for path in records:
        for row in load_record(path)["results"]["chapters"]:
            slowest[row["source"]] = max(slowest.get(row["source"], 0.0), row["seconds"] / 60)
    for header in chapter_headers():
        bound = math.ceil(slowest[header["source"]]) + HEADER_MARGIN_MINUTES
        assert header["cpu_minutes"] <= bound, (
            f"{header['source']} states {header['cpu_minutes']:g} minutes, more than {HEADER_MARGIN_MINUTES} above its "
            f"slowest record ({slowest[header['source']]:.1f}): a learner plans by it; lower it, or record the slower run")


def _recorded_commands(value: object) -> list[str]:
    """Every ``command`` string in a record (its top level, its provenance and runs)."""
    if isinstance(value, dict):
        own = [value["command"]] if isinstance(value.get("command"), str) else []
        return own + [c for v in value.values() for c in _recorded_commands(v)]
    if isinstance(value, list):
        return [c for v in value for c in _recorded_commands(v)]
    return []


def test_every_recorded_command_still_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record names the command that made it, so that its numbers can be made again: each command
    must still be accepted by today's CLI or script (a renamed flag would leave a record nobody can
    rerun). The commands are parsed, not run: the parse of every ``argparse`` parser ends the command
    (stop 70; all of them parsed then)."""
    import argparse
    import json
    import runpy
    import shlex
    import sys

    from deeplab_edu.cli import main as cli_main

    class Parsed(BaseException):  # past any "except Exception" of a command's main
        pass

    parse = argparse.ArgumentParser.parse_known_args

    def parse_only(self: argparse.ArgumentParser, args: object = None, namespace: object = None) -> None:
        raise Parsed(parse(self, args, namespace)[1])  # type: ignore[arg-type]  # the arguments left unread

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", parse_only)
    stale = []
    for path in sorted(RESULTS_DIR.glob("*.json")):
        for command in sorted(set(_recorded_commands(json.loads(path.read_text(encoding="utf-8"))))):
            words = shlex.split(command)
            words = words[1:] if Path(words[0]).name.startswith("python") else words
            if words[0] == "-m" and words[1] == "deeplab_edu":
                words, script = words[2:], None
            elif words[0].endswith(("deeplab-edu", "deeplab_edu/__main__.py")):
                words, script = words[1:], None
            else:
                script = REPO_ROOT_OF_RESULTS / words.pop(0)
                if "argparse" not in script.read_text(encoding="utf-8"):  # it would run: not here
                    stale.append(f"{path.name}: {command} (its script reads no arguments with argparse)")
                    continue
            try:
                if script is None:
                    cli_main(words)
                else:
                    monkeypatch.setattr(sys, "argv", [str(script), *words])
                    monkeypatch.syspath_prepend(str(script.parent))
                    runpy.run_path(str(script), run_name="__main__")
                stale.append(f"{path.name}: {command} (ran without parsing its arguments)")
            except Parsed as parsed:
                if parsed.args[0]:
                    stale.append(f"{path.name}: {command} (not accepted: {parsed.args[0]})")
            except SystemExit as exit_:
                stale.append(f"{path.name}: {command} (the parser refused it: exit {exit_.code})")
    assert not stale, "recorded commands that today's code does not accept:\n" + "\n".join(stale)


def test_the_readme_says_which_findings_do_not_hold_after_holm() -> None:
    """Each comparison of a table is judged at 95 % alone; benchmarks/README.md names the findings that do not
    hold after Holm's correction over their table ((b1) and (b3) of the main record's 16, sign of CamVid's
    twelve rows), with p-values computed from the records."""
    from deeplab_edu.findings import HOLM_COLUMN, findings_table, load_findings, measurable
    from deeplab_edu.viz.training import class_weights_table

    text = " ".join(README.read_text().split())
    recorded, context = load_findings(), load_findings("findings_context_cpu")
    assert recorded is not None and context is not None
    measured = measurable(recorded.matrices)
    rows = {f.key: r for f, r in zip(measured, findings_table(recorded.matrices, measured, n_boot=20))}
    assert {k for k, r in rows.items() if r[HOLM_COLUMN] == "no"} == {"b1", "b3"}
    own = measurable(context.matrices)  # the context record's repeat of (b1), in its own table: Holm's family there
    again = {f.key: r for f, r in zip(own, findings_table(context.matrices, own, n_boot=20))}["b1"]
    assert (f"with p = {rows['b1']['_p']:.3f} (paired t test over the three seeds), (b1) does not hold after Holm's "
            f"correction over the {len(rows)} comparisons chapter 10 computes") in text
    # the same seeds trained again, per-seed mIoUs within a point: a repeat of the runs, not of the finding
    assert context.seeds == recorded.seeds == [0, 1, 2] and "trained its arms again with the same seeds 0, 1 and 2" in text
    assert max(abs(a - b) for side in ("_baseline", "_variant") for a, b in zip(again[side], rows["b1"][side])) < 1
    assert (f"(p = {again['_p']:.3f} alone, {again['_p_holm']:.2f} after Holm's correction over its own {len(own)} "
            "comparisons): retraining with the same seeds gives the same answer") in text
    assert again["verdict"] == "opposite" and again[HOLM_COLUMN] == "no" and "finds it again" not in text
    assert (f"reproduced, but with p = {rows['b3']['_p']:.3f} it does not hold after Holm's correction over the "
            f"{len(rows)} comparisons") in text
    camvid = {r["class"]: r for r in class_weights_table(load_record("class_weights_camvid_cpu"))}
    assert [c for c, r in camvid.items() if r[HOLM_COLUMN] == "no"] == ["sign_symbol"] and len(camvid) == 12
    assert (f"sign's (p = {camvid['sign_symbol']['p']}, paired t test over the seeds) does not hold after Holm's "
            "correction over the twelve") in text


def test_only_the_records_the_gpu_session_still_owes_may_be_missing() -> None:
    """An audit: every ``*_cuda`` name was exempt from "the README names only records that exist", so a GPU
    record cited by a typo, or deleted, passed. Only the names ``gpu_session.sh`` writes and has not yet
    recorded are exempt now, each listed."""
    assert _missing_records("results/never_made_cuda.json and results/bench_cuda.json") == ["never_made_cuda"]
    script = GPU_SESSION.read_text()
    for name in AWAITING_THE_GPU_SESSION:
        assert f"$RES/{name}.json" in script, f"benchmarks/gpu_session.sh does not write {name}.json: drop it"
        assert name not in RECORDS, (f"results/{name}.json is committed now: drop it from AWAITING_THE_GPU_SESSION "
                                     "in tests/test_benchmark_records.py")
