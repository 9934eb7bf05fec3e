"""deeplab_edu.boundary: DeepLabv3 Figure 4 and the degeneration of a 3x3 atrous conv to 1x1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from deeplab_edu import boundary as B


def brute_force_counts(height: int, width: int, rate: int, kernel: int = 3) -> np.ndarray:
    """Independent count, tap by tap: output (i, j) reads (i + rate * a, j + rate * b) for a, b in
    -(k - 1) / 2 .. (k - 1) / 2; count those inside the map. (The package's own brute force,
    ``tap_counts_by_convolution``, convolves instead: both are checked against this.)"""
    half = (kernel - 1) // 2
    offsets = [rate * t for t in range(-half, half + 1)]
    counts = np.zeros((height, width), dtype=np.int64)
    for i in range(height):
        for j in range(width):
            counts[i, j] = sum(0 <= i + di < height and 0 <= j + dj < width for di in offsets for dj in offsets)
    return counts


def test_possible_counts_3x3() -> None:
    assert B.possible_counts(3) == (1, 2, 3, 4, 6, 9)


@pytest.mark.parametrize("rate", range(1, 66))
def test_figure4_fractions_match_brute_force_on_65x65(rate: int) -> None:
    counts = brute_force_counts(65, 65, rate)
    fractions = B.valid_weight_fractions(65, rate)
    assert set(fractions) == {1, 2, 3, 4, 6, 9}
    for c, frac in fractions.items():
        assert frac == pytest.approx(float((counts == c).mean()), abs=1e-12), (rate, c)
    assert sum(fractions.values()) == pytest.approx(1.0)
    # and the per-position map itself
    np.testing.assert_array_equal(B.valid_tap_counts(65, 65, 3, rate), counts)


def test_figure4_shape_of_the_curves() -> None:
    curves = B.figure4_curves(65, range(1, 66))
    nine, one = curves[9], curves[1]
    assert nine[0] > 0.9 and one[0] == 0.0                  # rate 1: almost every position sees all 9
    assert np.all(np.diff(nine) <= 1e-15)                   # "9 valid" only falls ...
    assert np.all(np.diff(one) >= -1e-15)                   # ... and "1 valid" only rises
    assert nine[32] == 0.0                                  # rate 33 > 65 / 2: no position keeps all 9
    assert one[-1] == 1.0 and one[-2] < 1.0                 # rate 65 = map size: only the centre is left
    # the brute force on an all-ones map agrees with the closed form for the whole figure
    for i, r in enumerate(curves["rates"]):
        assert curves[4][i] == pytest.approx((brute_force_counts(65, 65, int(r)) == 4).mean())


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 24), w=st.integers(1, 24), rate=st.integers(1, 30), kernel=st.sampled_from([1, 3, 5]))
def test_tap_counts_match_brute_force(h: int, w: int, rate: int, kernel: int) -> None:
    np.testing.assert_array_equal(B.valid_tap_counts(h, w, kernel, rate), brute_force_counts(h, w, rate, kernel))
    np.testing.assert_array_equal(B.tap_counts_by_convolution(h, w, kernel, rate), brute_force_counts(h, w, rate, kernel))
    fr = B.valid_weight_fractions((h, w), rate, kernel)
    assert sum(fr.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("size", [(7, 7), (16, 16), (17, 13), (1, 9)])
@pytest.mark.parametrize("extra", [0, 1, 25])
def test_rate_at_least_map_size_is_exactly_a_1x1_conv(size: tuple[int, int], extra: int) -> None:
    """Degeneration: rate >= max(H, W) gives bit-for-bit the 1x1 conv with the centre weight."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(-4, 5, (2, 16, *size), generator=gen).double()        # exact arithmetic
    w = torch.randint(-4, 5, (8, 16, 3, 3), generator=gen).double()
    rate = B.degeneration_rate(size) + extra
    y = F.conv2d(x, w, padding=rate, dilation=rate)
    y1 = F.conv2d(x, w[:, :, 1:2, 1:2])
    assert torch.equal(y, y1)
    report = B.compare_with_centre_tap(x, w, rate)
    assert report.identical and report.max_abs_diff == 0.0


def test_float_inputs_agree_up_to_rounding_when_degenerate() -> None:
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(1, 32, 9, 9, generator=gen), torch.randn(4, 32, 3, 3, generator=gen)
    assert B.compare_with_centre_tap(x, w, 9).max_abs_diff < 1e-4


@pytest.mark.parametrize("rate", [1, 4, 8, 12, 16])
def test_intermediate_rates_differ_exactly_where_more_than_the_centre_is_valid(rate: int) -> None:
    gen = torch.Generator().manual_seed(rate)
    x = torch.randint(1, 5, (1, 4, 17, 17), generator=gen).double()     # positive inputs and
    w = torch.randint(1, 5, (3, 4, 3, 3), generator=gen).double()       # weights: no cancellation
    report = B.compare_with_centre_tap(x, w, rate)
    np.testing.assert_array_equal(report.differs, report.tap_counts > 1)
    assert not report.identical


def test_degeneration_rate_is_the_smallest() -> None:
    for size in [(5, 5), (12, 7), (33, 33)]:
        r = B.degeneration_rate(size)
        assert (B.valid_tap_counts(*size, 3, r) == 1).all()
        assert (B.valid_tap_counts(*size, 3, r - 1) > 1).any() if r > 1 else True


def test_effective_kernel_shape_on_a_wide_map() -> None:
    assert B.effective_kernel_shape((17, 65), 24) == (1, 3)
    assert B.effective_kernel_shape(65, 65) == (1, 1)
    assert B.effective_kernel_shape(65, 6) == (3, 3)


def test_input_footprint_conv_vs_image_pooling() -> None:
    conv = torch.nn.Conv2d(2, 2, 3, padding=9, dilation=9)
    fp = B.input_footprint(conv, 9, 9, channels=2)
    assert fp.sum() == 1 and fp[4, 4]
    small = B.input_footprint(torch.nn.Conv2d(2, 2, 3, padding=2, dilation=2), 9, 9, channels=2)
    assert small.sum() == 9

    class ImagePool(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3), keepdim=True).expand_as(x)

    assert B.input_footprint(ImagePool(), 9, 7, channels=2).all()
    assert conv.weight.dtype == torch.float32          # the caller's module is untouched


def test_input_footprint_is_structural_through_relus() -> None:
    """Through a ReLU the gradient of a random input hid whole branches: the ASPP without image pooling
    read 7 inputs from its corner for one seed and 10 for others. Every seed gives the 10 taps now."""
    from deeplab_edu.models.aspp import ASPP

    torch.manual_seed(0)
    aspp = ASPP(4, atrous_rates=(6, 12, 18), out_channels=8, image_pooling=False)
    for seed in range(4):
        fp = B.input_footprint(aspp, 33, 33, (0, 0), channels=4, seed=seed)
        assert {tuple(p) for p in np.argwhere(fp).tolist()} == {
            (0, 0), *((i, j) for r in (6, 12, 18) for i, j in ((0, r), (r, 0), (r, r)))}, seed
    assert any(isinstance(m, torch.nn.ReLU) for m in aspp.modules())  # the caller's module keeps its ReLUs


def test_rate_usage_table_rows() -> None:
    rows = B.rate_usage_table([("a", 33), ("b", 21)], (6, 18))
    assert len(rows) == 4
    assert rows[0]["positions with all 9 taps"] == pytest.approx((21 / 33) ** 2)
    assert rows[-1]["only centre tap"] == pytest.approx((15 / 21) ** 2)  # rows 3..17 see neither neighbour
    assert rows[0]["feature map"] == "33 x 33"
    # a (height, width) pair was labelled "(17, 33) x (17, 33)" (a docstring audit)
    assert B.rate_usage_table([("c", (17, 33))], (6,))[0]["feature map"] == "17 x 33"


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: B.valid_tap_counts(0, 5), "height"),
        (lambda: B.valid_tap_counts(5, 5, kernel=4), "kernel must be odd"),
        (lambda: B.valid_tap_counts(5, 5, rate=0), "rate"),
        (lambda: B.valid_weight_fractions((5,), 2), "size"),
        (lambda: B.valid_tap_counts(5, 5, rate=2.5), "rate"),
        (lambda: B.figure4_curves(65, []), "rates is empty"),
        (lambda: B.centre_weight(torch.zeros(2, 2, 2, 2)), "odd k"),
    ],
)
def test_bad_input_is_named(call, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_figures_and_widget_build_without_a_front_end() -> None:
    import matplotlib.pyplot as plt

    from deeplab_edu.viz import boundary as V

    gen = torch.Generator().manual_seed(0)
    x, w = torch.randint(-3, 4, (1, 2, 9, 9), generator=gen).double(), torch.randint(-3, 4, (2, 2, 3, 3), generator=gen).double()
    figs = [
        V.plot_figure4(),
        V.plot_tap_counts(9, 13, 4),
        V.plot_degeneration([B.compare_with_centre_tap(x, w, r) for r in (2, 9)]),
        V.plot_footprints({"a": np.ones((5, 5), bool)}),
        V.plot_mean_valid_fraction({"x": 21}),
    ]
    assert all(len(f.axes) >= 1 for f in figs)
    four = V.plot_degeneration([B.compare_with_centre_tap(x, w, r) for r in (2, 3, 5, 9)], max_cols=3)
    shown = [ax for ax in four.axes if ax.images]
    assert len(shown) == 8 and len({round(ax.get_position().width, 3) for ax in shown}) == 1  # 2 blocks, equal panels
    with pytest.raises(ValueError, match="max_cols"):
        V.plot_degeneration([B.compare_with_centre_tap(x, w, 2)], max_cols=0)
    box = V.tap_count_widget(height=9, width=9, rate=3)
    sliders = box.children[0].children
    sliders[2].value = 20                      # moving a slider redraws without error
    with pytest.raises(ValueError, match="rate"):
        V.tap_count_widget(rate=0)
    with pytest.raises(ValueError, match="cannot occur"):
        V.plot_figure4(counts=(5,))
    plt.close("all")
