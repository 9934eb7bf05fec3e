"""The readers chapter 11 uses for the recorded GPU runs: they give what the records hold."""

from __future__ import annotations

import pytest

from deeplab_edu.engine.bench import diagnosis_rows, pair_summary, paired_throughput_ratios, profile_totals
from deeplab_edu.engine.bench.pipeline import PROFILE_STEPS
from deeplab_edu.engine.report import history_from_record
from deeplab_edu.records import load_record


def test_pair_summary_gives_each_setting_its_ratio_and_the_bf16_share_only_for_bf16() -> None:
    record = load_record("bench_cuda")
    rows = pair_summary(record)
    settings = [(p, label) for p, e in record["results"]["pairs"].items() for label in e["settings"]]
    assert [(r["pair"], r["setting"]) for r in rows] == settings
    for row, (pair, label) in zip(rows, settings):
        s = record["results"]["pairs"][pair]["settings"][label]
        assert row["train ours/peer"].startswith(f"x{s['ratios']['train_speedup']:.2f} [")
        ours = s["rows"][0]
        expected = round(100 * ours["train_fraction_of_bf16_peak"], 1) if ours["amp_bf16"] else "-"
        assert row["ours: % of bf16 peak"] == expected
    assert "ours: % of bf16 peak" not in pair_summary(load_record("bench_cpu"))[0]  # no GPU peak on a CPU


def test_diagnosis_rows_split_each_feed_into_launching_and_waiting() -> None:
    record = load_record("pipeline_diagnosis_cuda")
    rows = {r["feed"]: r for r in diagnosis_rows(record)}
    assert set(rows) == {"step", "loader", "pinned", "step+busy", "prefetch"}
    for feed, m in record["results"]["modes"].items():  # one round, the median one: its parts add up
        row = rows[feed]
        assert any(row["ms per step"] == round(1e3 * r["step_s"], 1) for r in m["rounds"])
        assert row["launching ms"] + row["waiting for the batch ms"] <= row["ms per step"] + 0.2
        assert row["what"] and row["throughput vs step (rounds)"].startswith("x")
    assert rows["step"]["throughput vs step (rounds)"] == "x1.00 (1.00-1.00)"
    paired = paired_throughput_ratios(record)  # the last column's numbers, round by round
    assert set(paired) == set(rows) and all(r == sorted(r) and len(r) == len(record["results"]["modes"][f]["rounds"])
                                            for f, r in paired.items())
    assert rows["pinned"]["throughput vs step (rounds)"].endswith(f"({paired['pinned'][0]:.2f}-{paired['pinned'][-1]:.2f})")
    assert paired_throughput_ratios({"results": {"modes": {"loader": record["results"]["modes"]["loader"]}}}) == {}
    totals = profile_totals(record)
    assert totals is not None and 0 < totals["gpu_ms_per_step"] < totals["cpu_ms_per_step"]
    assert totals["steps"] == record["results"].get("profile_steps", PROFILE_STEPS)
    # cudaLaunchKernel 9630 + cuLaunchKernelEx 1300 + cudaLaunchKernelExC 920 calls over 10 steps
    assert totals["launches_per_step"] == 1185.0
    assert profile_totals(load_record("pipeline_diagnosis_cuda_w12")) is None  # made without --profile


def test_history_from_record_gives_plot_history_its_curves() -> None:
    record = load_record("train_gpu_preset")
    history = history_from_record(record)
    val = [(r["iteration"], r["miou"]) for r in history if r["split"] == "val"]
    assert val == [tuple(p) for p in record["results"]["val_miou_curve"]]
    assert val[-1][1] == pytest.approx(record["results"]["final_miou"], abs=1e-4)
    with pytest.raises(ValueError, match="no training curves"):
        history_from_record(load_record("bench_cuda"))
