"""Output stride (DeepLabv3 sec. 3.1-3.2) on the real backbone: feature-map sizes, the atrous
algorithm's exactness, and the measurement helpers of chapter 03."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch

from deeplab_edu.complexity import count_macs, peak_memory_bytes, time_interleaved
from deeplab_edu.exercises import get
from deeplab_edu.models import build_backbone
from deeplab_edu.viz import output_stride as vos


@pytest.fixture(scope="module")
def backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone("resnet50", output_stride=16).eval()


def test_expected_feature_size_for_513() -> None:
    assert [vos.expected_feature_size(513, s) for s in (4, 8, 16, 32)] == [129, 65, 33, 17]
    assert vos.expected_feature_size(321, 8) == 41
    assert vos.expected_feature_size(512, 16) == 32


def test_feature_map_sizes_of_the_real_backbone_for_an_odd_input(backbone: torch.nn.Module) -> None:
    x = torch.randn(1, 3, 33, 33)               # batch size 1, odd size, real arithmetic
    try:
        for os_ in (32, 16, 8):
            backbone.set_output_stride(os_)
            with torch.no_grad():
                out = backbone(x)
            side = vos.expected_feature_size(33, os_)
            assert tuple(out["out"].shape) == (1, 2048, side, side), os_
            assert out["low_level"].shape[-1] == vos.expected_feature_size(33, 4)
    finally:
        backbone.set_output_stride(16)


@pytest.mark.parametrize("size", [65, 97, 101, 513, 50])
def test_feature_map_sizes_for_odd_inputs_on_the_meta_device(size: int) -> None:
    """Shapes only (PyTorch's meta device runs the real layers' shape rules without arithmetic)."""
    with torch.device("meta"):
        net = build_backbone("resnet50", output_stride=32)
    x = torch.empty(1, 3, size, size, device="meta")
    for os_ in (32, 16, 8):
        net.set_output_stride(os_)
        side = vos.expected_feature_size(size, os_)
        assert tuple(net(x)["out"].shape) == (1, 2048, side, side), (size, os_)


def test_non_square_input_on_the_meta_device() -> None:
    with torch.device("meta"):
        net = build_backbone("resnet50", output_stride=8)
    out = net(torch.empty(1, 3, 513, 321, device="meta"))["out"]
    assert tuple(out.shape[-2:]) == (vos.expected_feature_size(513, 8), vos.expected_feature_size(321, 8)) == (65, 41)


def test_dense_features_contain_the_strided_ones(backbone: torch.nn.Module) -> None:
    """The atrous algorithm: same weights, OS 8 at every 4th position == OS 32 (up to rounding)."""
    image = torch.rand(3, 49, 49, generator=torch.Generator().manual_seed(1))
    feats = vos.photo_features(backbone, image, (32, 16, 8))
    assert {k: v.shape[-1] for k, v in feats.items()} == {32: 2, 16: 4, 8: 7}
    diffs = vos.dense_vs_strided_difference(feats)
    assert set(diffs) == {(8, 16), (8, 32), (16, 32)}
    assert max(diffs.values()) < 1e-4
    assert backbone.output_stride == 16 and not backbone.training


def test_multi_grid_breaks_the_equivalence() -> None:
    """With multi-grid the OS-16 network is a different function: the check must notice."""
    torch.manual_seed(0)
    net = build_backbone("resnet50", output_stride=16, multi_grid=(1, 2, 4)).eval()
    image = torch.rand(3, 49, 49, generator=torch.Generator().manual_seed(2))
    feats = vos.photo_features(net, image, (32, 16))
    assert vos.dense_vs_strided_difference(feats)[(16, 32)] > 1e-3


@pytest.mark.slow
def test_measure_output_strides(backbone: torch.nn.Module) -> None:
    rows = vos.measure_output_strides(backbone, 33, (32, 16, 8), repeats=1, warmup=0, progress=False)
    assert [r["output stride"] for r in rows] == [32, 16, 8]
    assert [r["feature map"] for r in rows] == [vos.expected_feature_size(33, s) for s in (32, 16, 8)]
    assert len({r["params (M)"] for r in rows}) == 1
    assert rows[0]["GMACs"] < rows[1]["GMACs"] < rows[2]["GMACs"]
    assert all(r["forward (s)"] > 0 and r["peak memory (MiB)"] > 0 for r in rows)
    assert backbone.output_stride == 16


@pytest.mark.slow
def test_meta_counts_match_a_real_forward(backbone: torch.nn.Module) -> None:
    rows = vos.macs_by_input_size(backbone, [49], (16,))
    assert rows[0]["feature map"] == 4
    real = count_macs(backbone, torch.randn(1, 3, 49, 49))
    assert rows[0]["GMACs"] == pytest.approx(real / 1e9)
    stages = vos.macs_by_stage(backbone, 49)
    assert list(stages) == ["stem", "block1", "block2", "block3", "block4"]
    assert sum(stages.values()) == pytest.approx(real / 1e9, rel=1e-6)


def test_going_deeper_and_multi_grid_rates_agree_with_the_exercises() -> None:
    with torch.device("meta"):
        mg = build_backbone("resnet50", output_stride=16, multi_grid=(1, 2, 4))
        deep = build_backbone("resnet50", output_stride=16, multi_grid=(1, 2, 1), extra_blocks=3)
    block_rates = get("03.2").solution()  # the learner-style solution of exercise 03.2
    assert mg.block_rates()[3:] == block_rates(16, (1, 2, 4), 0) == [(2, 4, 8)]
    assert deep.block_rates()[3:] == block_rates(16, (1, 2, 1), 3)
    assert deep.block_rates()[5] == (8, 16, 8)
    stages = vos.macs_by_stage(deep, 129)
    assert list(stages)[-3:] == ["block5", "block6", "block7"]
    assert stages["block5"] == pytest.approx(stages["block7"])


def test_quoted_paper_tables_are_consistent() -> None:
    # Table 3's (1, 1, 1) row is Table 2's ResNet-101 row, and Table 1 at OS 16 is Table 2's
    # ResNet-50 block7 entry: a typo in one of the quoted constants breaks this.
    assert vos.PAPER_TABLE3_MIOU[(1, 1, 1)] == vos.PAPER_TABLE2_MIOU["resnet101"]
    assert vos.PAPER_TABLE1_MIOU[16] == vos.PAPER_TABLE2_MIOU["resnet50"][3]


def test_bad_input_is_named(backbone: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="output_stride"):
        vos.expected_feature_size(513, 12)
    with pytest.raises(TypeError, match="set_output_stride"):
        vos.measure_output_strides(torch.nn.Conv2d(3, 3, 3), 65)
    with pytest.raises(ValueError, match="input_size"):
        vos.measure_output_strides(backbone, 8)
    with pytest.raises(ValueError, match="image"):
        vos.photo_features(backbone, torch.rand(1, 65, 65))


def test_figures_and_widget_build_without_a_front_end(backbone: torch.nn.Module) -> None:
    import matplotlib.pyplot as plt

    image = torch.rand(3, 33, 33)
    feats = {32: torch.randn(1, 8, 2, 2), 16: torch.randn(1, 8, 3, 3), 8: torch.randn(1, 8, 5, 5)}
    rows = [{"output stride": s, "feature map": 3, "GMACs": 1.0, "forward (s)": 0.1, "peak memory (MiB)": 2.0}
            for s in (32, 16, 8)]
    size_rows = [{"input": n, "output stride": s, "GMACs": n * n / s} for n in (33, 65) for s in (16, 8)]
    figs = [
        vos.plot_feature_maps(image, feats),
        vos.plot_feature_maps(image, feats, channel=3),
        vos.plot_cost_vs_output_stride(rows, vos.PAPER_TABLE1_MIOU),
        vos.plot_cost_vs_input_size(size_rows),
        vos.plot_macs_by_stage({"a": {"stem": 1.0, "block1": 2.0}, "b": {"stem": 1.0, "block5": 3.0}}),
    ]
    assert all(f.axes for f in figs)
    box = vos.feature_map_widget(image, feats)
    dropdown, slider = box.children[0].children
    dropdown.value, slider.value = 32, 5
    with pytest.raises(ValueError, match="channel"):
        vos.feature_map_widget(image, feats, channel=99)
    plt.close("all")


def test_the_colour_scale_of_the_feature_maps_is_set_by_their_interior() -> None:
    import matplotlib.pyplot as plt

    # a bright one-cell frame (1000) around an interior of 0..99 on 17 x 17, a two-cell frame on 33 x 33
    small, large = np.full((17, 17), 1000.0), np.full((33, 33), 1000.0)
    small[1:-1, 1:-1] = np.arange(15 * 15).reshape(15, 15) % 100
    large[2:-2, 2:-2] = np.arange(29 * 29).reshape(29, 29) % 100
    lo, hi = vos.interior_range([small, large])
    assert 0 <= lo < 2 and 97 < hi <= 99  # the frame is left out
    assert vos.interior_range([np.array([[1.0, 2.0], [3.0, 4.0]])], (0, 100)) == (1.0, 4.0)  # too small: whole
    with pytest.raises(ValueError, match="2-D"):
        vos.interior_range([np.zeros(5)])
    with pytest.raises(ValueError, match="no maps"):
        vos.interior_range([])

    image = torch.rand(3, 33, 33)
    feats = {16: torch.from_numpy(large).float()[None, None]}  # one channel: the view of channel 0 is the map
    scaled = vos.plot_feature_maps(image, feats, channel=0).axes[1].images[0].norm
    full = vos.plot_feature_maps(image, feats, channel=0, interior_scale=False).axes[1].images[0].norm
    assert scaled.vmax < 100 and full.vmax == 1000
    plt.close("all")


def _chain_of_temporaries(x: torch.Tensor) -> torch.Tensor:
    """Ten 4 MiB temporaries, each freed as the next is made: 8 MiB at the most, never 40."""
    for _ in range(10):
        x = x * 1.5
    return x


def test_peak_memory_is_a_high_water_mark_not_a_sum() -> None:
    x = torch.ones(1, 1, 1024, 1024)  # 4 MiB of float32
    mib = peak_memory_bytes(_chain_of_temporaries, x) / 2**20
    assert 7.9 < mib < 8.1, mib


def test_time_interleaved_alternates_rounds_skips_the_warmup_and_takes_medians(monkeypatch: pytest.MonkeyPatch) -> None:
    import deeplab_edu.complexity as complexity

    clock, calls, rounds = [0.0], [], []
    durations = {"a": iter([9.0, 3.0, 2.0, 4.0]), "b": iter([9.0, 1.0, 5.0, 1.0])}  # seconds of each call, in turn

    def call(name: str) -> Callable[[], None]:
        def run() -> None:
            calls.append(name)
            clock[0] += next(durations[name])
        return run

    monkeypatch.setattr(complexity.time, "perf_counter", lambda: clock[0])
    seconds = time_interleaved({"a": call("a"), "b": call("b")}, repeats=3, warmup=1,
                               on_round=lambda: rounds.append(len(calls)))
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]  # in order, then reversed
    assert rounds == [2, 4, 6, 8]
    assert seconds == {"a": 3.0, "b": 1.0}  # medians of the timed rounds: the 9 s warm-up is not counted
    with pytest.raises(ValueError, match="repeats"):
        time_interleaved({"a": lambda: None}, repeats=0)
