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
