from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from deeplab_edu.records import describe_record, load_record, write_record


def test_record_round_trip(tmp_path: Path) -> None:
    path = write_record(tmp_path / "r.json", {"miou": 0.5}, command=["deeplab-edu", "train"])
    rec = load_record(path)
    assert rec["results"] == {"miou": 0.5}
    assert rec["command"] == "deeplab-edu train"
    assert rec["hardware"]["cpu_count"] >= 1
    import psutil

    assert rec["hardware"]["memory_gib"] == round(psutil.virtual_memory().total / 2**30, 1) > 0  # any system
    from deeplab_edu.engine.bench.timing import busy_cpu_seconds

    assert 0 < busy_cpu_seconds() <= busy_cpu_seconds()  # seconds since boot, on any system psutil knows
    assert "torch" in rec["environment"]["libraries"]
    text = describe_record(rec)
    assert "deeplab-edu train" in text and "torch" in text and f"(deeplab_edu {rec['code_version']['package']})" in text
    # a copy run without its pyproject.toml records no version: the line names the commit, not "0.0.0+unknown"
    unknown = describe_record({**rec, "code_version": {**rec["code_version"], "package": "0.0.0+unknown"}})
    assert "unknown" not in unknown and "deeplab_edu" not in unknown and "at commit" in unknown
    # a GPU's record names the GPU and the CPU that fed it (a launch-bound step runs at that CPU's speed)
    on_gpu = describe_record({**rec, "hardware": {**rec["hardware"], "gpu": "NVIDIA H200", "cpu_count": 16}})
    assert f"NVIDIA H200 (host: {rec['hardware']['cpu']} (16 cores))" in on_gpu
    cpu_only = {k: v for k, v in rec["hardware"].items() if not k.startswith("gpu")}  # also on a GPU machine
    on_cpu = describe_record({**rec, "hardware": cpu_only})  # a CPU's threads: the command does not pin them
    assert f"({cpu_only['cpu_count']} cores, {cpu_only['torch_threads']} torch thread" in on_cpu
    assert "deeplab-edu train" not in describe_record(rec, command=False) and "at commit" in describe_record(rec, command=False)
    assert not list(tmp_path.glob(".*tmp*")), "the temporary file was left behind"


def test_record_names_the_threads_the_measurement_ran_with(tmp_path: Path) -> None:
    import torch

    from deeplab_edu.engine.bench.timing import torch_threads

    outside = torch.get_num_threads()
    with torch_threads(outside + 1):  # a benchmark's own count, restored before the record is written
        results = {"torch_threads": torch.get_num_threads()}
    assert load_record(write_record(tmp_path / "a.json", results))["hardware"]["torch_threads"] == outside + 1
    by_extra = write_record(tmp_path / "b.json", {}, extra={"torch_threads": outside + 2})
    assert load_record(by_extra)["hardware"]["torch_threads"] == outside + 2
    assert load_record(write_record(tmp_path / "c.json", {}))["hardware"]["torch_threads"] == outside


def test_missing_record_says_where(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_record(tmp_path / "nope.json")
    # a relative name is looked for as given and in benchmarks/results: the message names both, not a
    # path the user never typed
    with pytest.raises(FileNotFoundError, match=r"'nope': neither nope nor benchmarks/results/nope\.json exists"):
        load_record("nope")


def test_not_a_record(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a deeplab-edu record"):
        load_record(p)


@pytest.mark.parametrize("fsync", [False, True])
def test_atomic_write_replaces_whole_or_not_at_all(tmp_path: Path, fsync: bool) -> None:
    """Records, checkpoints, metrics.csv, exports and converted masks are written through atomic_path."""
    from deeplab_edu.atomic import atomic_path, write_text_atomic

    target = tmp_path / "sub" / "metrics.csv"
    assert write_text_atomic(target, "old\n") == target  # creates the folder
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(target, fsync=fsync) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n", "a failed write must leave the old file"
    with atomic_path(target, fsync=fsync) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".")  # same file system, hidden
        tmp.write_text("new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.csv"], "a temporary file was left"


def test_a_changed_record_does_not_make_the_code_dirty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import subprocess

    from deeplab_edu import records

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / "benchmarks" / "results").mkdir(parents=True)
    (repo / "code.py").write_text("x = 1\n")
    (repo / "benchmarks" / "results" / "a.json").write_text("{}\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q"], cwd=repo, check=True)
    subprocess.run(git + ["add", "."], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-qm", "init"], cwd=repo, check=True)
    monkeypatch.setattr(records, "REPO_ROOT", repo)
    monkeypatch.setattr(records, "RESULTS_DIR", repo / "benchmarks" / "results")
    assert records.code_version()["git_dirty"] is False
    (repo / "benchmarks" / "results" / "a.json").write_text('{"new": 1}\n')  # a script's first record
    (repo / "benchmarks" / "results" / "b.json").write_text('{"new": 2}\n')  # ... and its second, new
    assert records.code_version()["git_dirty"] is False
    (repo / "new_script.py").write_text("y = 1\n")  # code not committed yet: what was measured is no commit
    assert records.code_version()["git_dirty"] is True
    (repo / "new_script.py").unlink()
    (repo / "code.py").write_text("x = 2\n")  # a change to what was measured
    assert records.code_version()["git_dirty"] is True


def test_a_copy_without_git_takes_its_commit_from_the_environment(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from deeplab_edu import records

    monkeypatch.setattr(records, "REPO_ROOT", tmp_path)  # no .git here (tmp_path is outside any repository)
    monkeypatch.setattr(records, "RESULTS_DIR", tmp_path / "benchmarks" / "results")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.delenv("DEEPLAB_EDU_CODE_COMMIT", raising=False)
    assert "git_commit" not in records.code_version()
    monkeypatch.setenv("DEEPLAB_EDU_CODE_COMMIT", "0123456789abcdef")
    assert records.code_version()["git_commit"] == "0123456789abcdef"
    assert records.code_version()["git_commit_from"] == "environment"


def test_a_commit_given_in_the_environment_wins_over_a_stale_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lent machine's copy had the .git of an older commit than its files: the given commit is recorded."""
    from deeplab_edu import records

    monkeypatch.delenv("DEEPLAB_EDU_CODE_COMMIT", raising=False)
    seen = records.code_version()["git_commit"]  # this checkout's own
    monkeypatch.setenv("DEEPLAB_EDU_CODE_COMMIT", "0123456789abcdef")
    version = records.code_version()
    assert (version["git_commit"], version["git_dirty"], version["git_commit_from"]) == (
        "0123456789abcdef", False, "environment")
    assert version["git_commit_in_copy"] == seen
    monkeypatch.setenv("DEEPLAB_EDU_CODE_COMMIT", seen)
    assert "git_commit_in_copy" not in records.code_version()


def test_commands_are_recorded_and_shown_without_the_machine_s_paths() -> None:
    from deeplab_edu import records

    ran = "python3 /root/copy/deeplab_edu/__main__.py bench --out /root/out/x.json"
    assert records.portable_command(ran) == "python3 -m deeplab_edu bench --out /root/out/x.json"
    inside = f"python {records.REPO_ROOT / 'benchmarks' / 'findings.py'} --seeds 0"
    assert records.portable_command(inside) == "python benchmarks/findings.py --seeds 0"
    shown = records.describe_record({"command": ran, "results": {}})
    assert "/root/copy" not in shown and "`python3 -m deeplab_edu bench" in shown
    # the console script as typed (a trial: 'python .venv/bin/deeplab-edu train ...', run from another folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["/home/me/course/.venv/bin/deeplab-edu", "train", "--data-root", "my data"])
        assert records.provenance()["command"] == "deeplab-edu train --data-root 'my data'"


def test_a_command_is_recorded_with_the_folder_its_relative_paths_start_from(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial: metrics.json kept ``--data-root my_data`` but not where ``my_data`` was."""
    from deeplab_edu import records

    monkeypatch.delenv(records.HIDE_PATHS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    mine = records.provenance()
    assert mine["working_directory"] == str(tmp_path)  # outside the repository and home: in full
    assert f"(run in {mine['working_directory']})" in records.describe_record({**mine, "results": {}})
    assert "working_directory" not in records.provenance("a given command")  # its folder is not this one
    monkeypatch.chdir(records.REPO_ROOT)
    assert records.provenance()["working_directory"] == "."
    assert "(run in" not in records.describe_record({**records.provenance(), "results": {}})

    def removed() -> Path:
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(records.Path, "cwd", staticmethod(removed))  # the folder removed under the process
    assert records.provenance()["working_directory"].startswith("unknown")


def test_paths_are_shown_in_full_to_a_user_and_shortened_in_the_book(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from deeplab_edu.records import HIDE_PATHS_ENV, REPO_ROOT, shown_path

    monkeypatch.delenv(HIDE_PATHS_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    outside = Path("/opt/mydata/camvid")
    assert shown_path(REPO_ROOT / "runs" / "cpu") == "runs/cpu"
    assert shown_path(tmp_path / "home" / "data") == "~/data"
    assert shown_path(tmp_path / "runs" / "a") == "runs/a"              # the working folder's
    assert shown_path(outside) == "/opt/mydata/camvid"                 # a command-line user finds it
    assert shown_path("/tmp") == "/tmp"
    monkeypatch.setenv(HIDE_PATHS_ENV, "1")                            # as the book's build sets it
    assert shown_path(outside) == ".../opt/mydata/camvid" and shown_path("/tmp") == ".../tmp"
    assert shown_path(outside, absolute_outside=True) == "/opt/mydata/camvid"
    # a command typed in a folder of the repository (a practitioner's work/): its paths as typed there, so that
    # a suggested "--out-dir work/runs/b" can be pasted; the record still says where it ran, from the repository
    monkeypatch.delenv(HIDE_PATHS_ENV)
    monkeypatch.chdir(REPO_ROOT / "notebooks")
    assert shown_path(REPO_ROOT / "notebooks" / "runs" / "b") == "runs/b"
    assert shown_path(REPO_ROOT / "runs" / "cpu") == "runs/cpu"  # outside it: from the repository, as before
    from deeplab_edu.records import provenance

    assert provenance()["working_directory"] == "notebooks"


def test_a_source_tree_that_is_not_installed_reports_its_pyproject_version(tmp_path: Path) -> None:
    import tomllib

    from deeplab_edu import source_version
    from deeplab_edu.records import REPO_ROOT

    ours = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert source_version() == f"{ours}+source"  # this checkout's pyproject.toml (records said 0.0.0+unknown)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "2.3.4"\n')
    assert source_version(tmp_path / "pyproject.toml") == "2.3.4+source"
    (tmp_path / "broken.toml").write_text("[project\n")
    for bad in (tmp_path / "missing.toml", tmp_path / "broken.toml"):
        assert source_version(bad) == "0.0.0+unknown"


def test_gpu_driver_version_asks_nvidia_smi_and_gives_none_when_it_cannot(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from deeplab_edu.records import gpu_driver_version

    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu_driver_version() is None  # no nvidia-smi
    smi = tmp_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\n[ "$1" = --query-gpu=driver_version ] && echo 570.124.06 && echo 570.124.06\n')
    smi.chmod(0o755)
    assert gpu_driver_version() == "570.124.06"  # one line per GPU: the first
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' ; exit 9\n")
    assert gpu_driver_version() is None
    smi.write_text("#!/bin/sh\nexec /bin/sleep 5\n")
    assert gpu_driver_version(timeout=0.2) is None


def test_atomic_path_writes_a_file_whose_name_is_near_the_longest_allowed(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit: predict of an image named with 240 characters failed ('[Errno 36] File name too long' for
    '.yyy..._mask.tmp<pid>.png', 19 bytes longer than the legal final name). The temporary name now fits the
    folder's limit (its stem cut, a hash of the whole name after it), keeps the suffix, and a stale one is still
    swept."""
    import os

    from deeplab_edu import atomic

    for stem in ("y" * 240 + "_mask", "\u00e9" * 120 + "_mask"):  # 249 bytes; 255 with two-byte characters
        target = tmp_path / f"{stem}.png"
        with atomic.atomic_path(target) as tmp:
            assert len(os.fsencode(tmp.name)) <= 255 and tmp.name.startswith(".") and tmp.suffix == ".png"
            tmp.name.encode("utf-8")  # whole characters: the cut falls between them
            tmp.write_text("mask")
        assert target.read_text() == "mask"
    a, b = (atomic._temporary_name(tmp_path / f"{'z' * 250}{end}.png") for end in "ab")
    assert a != b and atomic._TEMPORARY.match(a)  # one file per name, still a temporary name
    assert atomic._temporary_name(tmp_path / "m.png") == f".m.tmp{os.getpid()}.png"  # short names as before
    monkeypatch.setattr(os, "getpid", lambda: 99999999999999999999)  # a process that cannot run
    stale = tmp_path / atomic._temporary_name(tmp_path / f"{'x' * 240}.png")
    monkeypatch.undo()
    stale.write_text("half written")
    assert atomic.remove_stale_temporaries(tmp_path) == [stale]


def test_a_record_path_that_is_a_pipe_is_refused(tmp_path) -> None:
    """check_record_path read a FIFO given as --record (or bench --out) whole, and waited for ever; it now serves
    eval --json too, which a review found hanging on /dev/stdout: a pipe or device is refused by name."""
    import os

    from deeplab_edu.records import check_record_path

    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    fifo = tmp_path / "r.json"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"--record .*r\.json is not a regular file \(a pipe or a device\)"):
        check_record_path(fifo)


def test_a_read_only_folder_is_reported_as_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit, on a read-only mount: the ``finally`` that removes the temporary file raised EROFS itself, so the
    error named the hidden ``.x.tmp<pid>.txt`` instead of the file; and with 0 bytes free (what a read-only mount
    reports) the write was called a full disk ("free some space"). Both are now the read-only error, naming the file."""
    import errno
    import shutil

    from deeplab_edu.atomic import write_text_atomic

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(args[0]))

    target = tmp_path / "x.txt"
    monkeypatch.setattr(Path, "write_text", read_only)
    monkeypatch.setattr(Path, "unlink", read_only)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1 << 30, 1 << 30, 0))
    with pytest.raises(OSError) as raised:
        write_text_atomic(target, "new")
    assert raised.value.errno == errno.EROFS and raised.value.filename == str(target), raised.value


def test_a_record_path_in_an_unwritable_folder_fails_before_the_work(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit: ``eval --json R/metrics.csv/eval.json`` (``train --record``, ``bench --out`` alike) scored
    everything, then failed "[Errno 17] File exists". check_record_path now makes the folder and writes a file
    there first (atomic.check_writable, which a run's checkpoints folder shares): a file in the way, or a folder
    that refuses writing, fails up front, naming the path."""
    import errno
    import tempfile

    from deeplab_edu.records import check_record_path

    (tmp_path / "metrics.csv").write_text("iteration\n")
    with pytest.raises(OSError, match=r"--json .*eval\.json: cannot write in .*metrics\.csv \(.*metrics\.csv is a "
                                      r"file, not a folder\)"):
        check_record_path(tmp_path / "metrics.csv" / "eval.json", "--json")
    check_record_path(tmp_path / "new" / "r.json")
    assert (tmp_path / "new").is_dir() and not list((tmp_path / "new").iterdir())  # made, and nothing left there

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(OSError, match=r"--record .*r\.json: cannot write in .*new \(Read-only file system\)"):
        check_record_path(tmp_path / "new" / "r.json")


def test_an_installed_copy_inside_another_repository_names_no_commit(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit of the installed wheel: the package installed in a project's .venv, inside that project's git
    repository, recorded the project's commit (and its dirtiness) as its own in every run's provenance; git is
    asked only where the package's folder has a .git of its own."""
    import subprocess

    from deeplab_edu import records

    project = tmp_path / "project"
    site = project / ".venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    git = ["git", "-C", str(project), "-c", "user.email=a@b", "-c", "user.name=u"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "the user's project"], check=True)
    monkeypatch.setattr(records, "REPO_ROOT", site)
    monkeypatch.setattr(records, "RESULTS_DIR", site / "benchmarks" / "results")
    monkeypatch.delenv("DEEPLAB_EDU_CODE_COMMIT", raising=False)
    version = records.code_version()
    assert "git_commit" not in version and "git_dirty" not in version, version
