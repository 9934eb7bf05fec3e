from __future__ import annotations

import json
from pathlib import Path

import pytest

from deeplab_edu.records import describe_record, load_record, write_record


def test_record_round_trip(tmp_path: Path) -> None:
    path = write_record(tmp_path / "r.json", {"miou": 0.5}, command=["deeplab-edu", "train"])
    rec = load_record(path)
    assert rec["results"] == {"miou": 0.5}
    assert rec["command"] == "deeplab-edu train"
    assert rec["hardware"]["cpu_count"] >= 1
    assert "torch" in rec["environment"]["libraries"]
    text = describe_record(rec)
    assert "deeplab-edu train" in text and "torch" in text
    assert not list(tmp_path.glob(".*tmp*")), "the temporary file was left behind"


def test_missing_record_says_where(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_record(tmp_path / "nope.json")


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
