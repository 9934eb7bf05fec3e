"""The benchmark compares like with like, and runs end to end on a tiny input (not a timed test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deeplab_edu.complexity import count_parameters
from deeplab_edu.engine.bench import build_pair, run_benchmarks

pytestmark = pytest.mark.slow


def test_pairs_have_the_same_configuration() -> None:
    (_, ours), (_, peer) = build_pair("v3")
    assert count_parameters(ours) == count_parameters(peer)  # same layers: OS 8, rates 12/24/36, extra 3x3
    (_, ours_p), (_, peer_p) = build_pair("v3plus")
    assert abs(count_parameters(ours_p) - count_parameters(peer_p)) / count_parameters(peer_p) < 0.01
    x = torch.randn(1, 3, 32, 48)
    assert ours.eval()(x).shape == peer.eval()(x).shape == (1, 21, 32, 48)
    with pytest.raises(ValueError, match="unknown benchmark pair"):
        build_pair("v4")


def test_run_benchmarks_writes_a_record(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = run_benchmarks(device="cpu", size=16, batch=2, repeats=1, warmup=0, out=out, pairs=("v3",))
    record = json.loads(out.read_text())
    assert record["command"] and record["hardware"]["cpu_count"]
    settings = record["results"]["pairs"]["v3"]["settings"]
    assert len(settings) == 2  # equal settings, our defaults (no GPU here)
    for s in settings.values():
        assert s["ratios"]["train_speedup"] > 0 and len(s["rows"]) == 2
        assert all(r["train_peak_mib"] > 0 for r in s["rows"])
    assert res["pairs"]["v3"]["ours_best_vs_peer_equal_train_speedup"] > 0
    with pytest.raises(ValueError, match="batch=1"):
        run_benchmarks(device="cpu", size=32, batch=1, out=out)
