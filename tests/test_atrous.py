"""deeplab_edu.atrous: eq. (1) by hand agrees with PyTorch; the arithmetic matches real shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from deeplab_edu.atrous import (
    atrous_conv1d,
    atrous_conv2d,
    conv_output_size,
    cost_vs_rate,
    dilate_kernel,
    effective_kernel_size,
    input_positions,
    same_padding,
)

FAST = settings(max_examples=40, deadline=None)


@st.composite
def conv1d_case(draw):
    k = draw(st.integers(1, 4))
    r = draw(st.integers(1, 4))
    p = draw(st.integers(0, 3))
    s = draw(st.integers(1, 3))
    span = effective_kernel_size(k, r)
    length = draw(st.integers(max(1, span - 2 * p), span + 10))
    return length, k, r, p, s


@FAST
@given(conv1d_case(), st.integers(0, 2**31 - 1))
def test_atrous_conv1d_matches_torch(case, seed):
    length, k, r, p, s = case
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(length, generator=g, dtype=torch.float64), torch.randn(k, generator=g, dtype=torch.float64)
    ours = atrous_conv1d(x, w, rate=r, padding=p, stride=s)
    ref = F.conv1d(x.view(1, 1, -1), w.view(1, 1, -1), stride=s, padding=p, dilation=r).view(-1)
    torch.testing.assert_close(ours, ref)


@st.composite
def conv2d_case(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    rh, rw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    eh, ew = effective_kernel_size(kh, rh), effective_kernel_size(kw, rw)
    h = draw(st.integers(max(1, eh - 2 * ph), eh + 4))
    w = draw(st.integers(max(1, ew - 2 * pw), ew + 4))
    n, c_in, c_out = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return (n, c_in, c_out, h, w), (kh, kw), (rh, rw), (ph, pw), (sh, sw)


@FAST
@given(conv2d_case(), st.booleans(), st.integers(0, 2**31 - 1))
def test_atrous_conv2d_matches_torch(case, with_bias, seed):
    (n, c_in, c_out, h, w), k, r, p, s = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, w, generator=g, dtype=torch.float64)
    weight = torch.randn(c_out, c_in, *k, generator=g, dtype=torch.float64)
    bias = torch.randn(c_out, generator=g, dtype=torch.float64) if with_bias else None
    ours = atrous_conv2d(x, weight, rate=r, padding=p, stride=s, bias=bias)
    ref = F.conv2d(x, weight, bias, stride=s, padding=p, dilation=r)
    torch.testing.assert_close(ours, ref)


def test_atrous_conv2d_float32_tolerance():
    x, w = torch.randn(2, 3, 9, 8), torch.randn(4, 3, 3, 3)
    torch.testing.assert_close(atrous_conv2d(x, w, rate=2, padding=2), F.conv2d(x, w, padding=2, dilation=2))


@FAST
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_dilated_kernel_equals_atrous_conv(k, r, c, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, c, 14, 13, generator=g, dtype=torch.float64)
    w = torch.randn(2, c, k, k, generator=g, dtype=torch.float64)
    big = dilate_kernel(w, r)
    assert big.shape[-2:] == (effective_kernel_size(k, r),) * 2
    torch.testing.assert_close(F.conv2d(x, big), F.conv2d(x, w, dilation=r))
    w1 = torch.randn(k, generator=g, dtype=torch.float64)
    x1 = torch.randn(20, generator=g, dtype=torch.float64)
    torch.testing.assert_close(atrous_conv1d(x1, dilate_kernel(w1, r)), atrous_conv1d(x1, w1, rate=r))


def test_dilate_kernel_values():
    assert dilate_kernel(torch.tensor([1.0, 2.0, 3.0]), 3).tolist() == [1, 0, 0, 2, 0, 0, 3]
    assert dilate_kernel(torch.ones(2, 2), 2).tolist() == [[1, 0, 1], [0, 0, 0], [1, 0, 1]]
    assert dilate_kernel(torch.ones(1, 1, 2, 2), (1, 3)).shape == (1, 1, 2, 4)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(1, 7), st.integers(1, 4), st.integers(0, 6), st.integers(1, 5))
def test_conv_output_size_matches_pytorch_shapes(i, k, s, p, d):
    if i + 2 * p < effective_kernel_size(k, d):
        with pytest.raises(ValueError, match="effective kernel size"):
            conv_output_size(i, k, s, p, d)
        return
    out = F.conv1d(torch.zeros(1, 1, i), torch.zeros(1, 1, k), stride=s, padding=p, dilation=d)
    assert conv_output_size(i, k, s, p, d) == out.shape[-1]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([1, 3, 5, 7]), st.integers(1, 24), st.integers(1, 30))
def test_same_padding_keeps_size(k, r, i):
    p = same_padding(k, r)
    assert conv_output_size(i, k, 1, p, r) == i


def test_known_values_and_errors():
    assert effective_kernel_size(3, 1) == 3 and effective_kernel_size(3, 2) == 5 and effective_kernel_size(3, 24) == 49
    assert same_padding(3, 12) == 12
    assert conv_output_size(7, 3, dilation=2) == 3  # Dumoulin & Visin's dilation figure: i=7, k=3, d=2
    assert input_positions(2, 3, rate=2) == [2, 4, 6]
    assert input_positions(0, 3, rate=2, padding=2) == [-2, 0, 2]
    with pytest.raises(ValueError, match="even effective size"):
        same_padding(2, 1)
    with pytest.raises(ValueError, match="rate"):
        effective_kernel_size(3, 0)
    with pytest.raises(TypeError, match="kernel_size"):
        effective_kernel_size(3.0, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x must be a 4-D"):
        atrous_conv2d(torch.zeros(3, 4), torch.zeros(1, 1, 1, 1))
    with pytest.raises(ValueError, match="input channels"):
        atrous_conv2d(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 1, 1))


def test_cost_is_measured_and_independent_of_rate():
    rows = cost_vs_rate((1, 2, 6), channels=8, size=17)
    assert [r["effective kernel"] for r in rows] == [3, 5, 13]
    assert len({r["params"] for r in rows}) == 1 and rows[0]["params"] == 8 * 8 * 9 + 8
    # counted from a forward pass, so it follows the real output size: 8*8*9 MACs per output pixel
    assert {r["MACs"] for r in rows} == {8 * 8 * 9 * 17 * 17}


def test_figures_and_widget_build_without_a_front_end():
    import ipywidgets
    import matplotlib.pyplot as plt

    from deeplab_edu.viz.atrous import atrous_widget, plot_cost_vs_rate, plot_eq1, plot_eq1_2d
    from deeplab_edu.viz.tables import markdown_table

    ax = plot_eq1(12, 3, 2, 1, 2, output_index=3)
    assert "x[1]·w[0] + x[3]·w[1] + x[5]·w[2]" in ax.get_title()
    plot_eq1_2d(9, 3, 2, 1, 2, (1, 2))
    plot_cost_vs_rate(cost_vs_rate((1, 2), channels=2, size=9))
    with pytest.raises(ValueError, match="output_index must be in \\[0, 7\\]"):
        plot_eq1(12, 3, 2, output_index=10)
    widget = atrous_widget(input_size=5, kernel_size=3, rate=3)  # no output at these values: a message, no error
    assert isinstance(widget, ipywidgets.VBox)
    table = markdown_table([{"a": 1234, "b": "1, 2", "c": 0.123456}], digits=3).data
    assert table.splitlines()[2] == "| 1,234 | 1, 2 | 0.123 |"  # strings untouched, numbers to 3 digits
    assert markdown_table([{"a": 524800, "b": np.int64(36928), "c": True}]).data.splitlines()[2] == \
        "| 524,800 | 36,928 | True |"  # integers alike in every table, with or without digits
    plt.close("all")


def test_the_widget_says_why_its_2d_picture_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A book reader's trial: at n = 13, k = 7, r = 3, p = 3 the 1-D input has an output and the 11 x 11 square
    of the 2-D panel none (19 > 11 + 6); the panel stayed blank without a word. It says why (as the book's
    JavaScript explorer does, tests/test_browser.py)."""
    import IPython.display
    import matplotlib.pyplot as plt

    from deeplab_edu.viz.atrous import atrous_widget

    panels: list[list[str]] = []
    monkeypatch.setattr(IPython.display, "display", lambda fig, *a, **k: panels.append(
        [t.get_text() for t in fig.axes[-1].texts]))
    atrous_widget(input_size=13, kernel_size=7, rate=3, padding=3, output_index=0)
    assert panels and "the effective kernel 19\nis longer than the padded side 17" in panels[-1][-1], panels
    atrous_widget(input_size=11, kernel_size=7, rate=3, padding=4, output_index=0)  # 11 + 8 >= 19: a picture, no note
    assert not any("No 2-D picture" in t for t in panels[-1]), panels[-1]
    plt.close("all")


@pytest.mark.parametrize("rate", [1, 2, 5, 12])
def test_derivative_at_rate_r_widens_a_step_to_2r_and_doubles_a_line(rate):
    from deeplab_edu.atrous import edge_and_line_response

    res = edge_and_line_response(rate)
    assert res.step_columns == list(range(res.step_at - rate, res.step_at + rate))
    assert res.line_columns == [res.line_at - rate, res.line_at + rate]


def test_edge_and_line_response_refuses_overlapping_features():
    from deeplab_edu.atrous import edge_and_line_response

    with pytest.raises(ValueError, match="step_at"):
        edge_and_line_response(30, size=128, step_at=40, line_at=88)


def test_edge_and_line_figure():
    import matplotlib.pyplot as plt

    from deeplab_edu.atrous import edge_and_line_response
    from deeplab_edu.viz.atrous import plot_edge_and_line

    fig = plot_edge_and_line([edge_and_line_response(r) for r in (1, 12)])
    assert any("step: 24 px" in t.get_text() for ax in fig.axes for t in ax.texts)
    with pytest.raises(ValueError):
        plot_edge_and_line([])
    plt.close("all")


def test_a_numpy_array_is_named_as_not_a_tensor() -> None:
    """An audit of wrong types: atrous_conv1d(np.arange(5.), np.ones(3)) said "x must be a 1-D tensor (L,), got
    (5,)", a 1-D shape; it now says a torch tensor is needed and how to make one."""
    with pytest.raises(TypeError, match=r"^x must be a torch tensor \(L,\), got ndarray: torch\.from_numpy\(x\)$"):
        atrous_conv1d(np.arange(5.0), np.ones(3))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^w must be a torch tensor \(K,\), got list"):
        atrous_conv1d(torch.arange(5.0), [1.0, 1.0])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^x must be a torch tensor \(N, C_in, H, W\), got ndarray"):
        atrous_conv2d(np.ones((1, 1, 5, 5)), torch.ones(1, 1, 3, 3))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^w must be a torch tensor .* got ndarray: torch\.from_numpy\(w\)$"):
        dilate_kernel(np.ones(3), 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"x must be a 1-D tensor \(L,\), got \(2, 2\)"):  # a tensor: as before
        atrous_conv1d(torch.ones(2, 2), torch.ones(1))


def test_atrous_conv2d_refuses_mixed_dtypes_up_front() -> None:
    """A census: a float64 input with a float32 weight failed with torch's matmul error from inside the loop."""
    x, w = torch.randn(1, 1, 8, 8), torch.randn(1, 1, 3, 3)
    with pytest.raises(TypeError, match=r"x is torch\.float64 but w torch\.float32: convert them to one dtype"):
        atrous_conv2d(x.double(), w)
    with pytest.raises(TypeError, match=r"and bias torch\.float64"):
        atrous_conv2d(x, w, bias=torch.zeros(1, dtype=torch.float64))
    assert atrous_conv2d(x.double(), w.double()).dtype == torch.float64


def test_the_widget_writes_relationship_15_in_chapter_01s_symbols() -> None:
    """A new user's trial: chapter 01 writes relationship 15 with K taps, rate r and input size n (its lowercase
    k is eq. (1)'s tap index), but the widget printed floor((i + 2p - k - (k-1)(r-1)) / s) + 1."""
    import matplotlib.pyplot as plt

    from deeplab_edu.viz.atrous import atrous_widget

    controls = atrous_widget(input_size=12, kernel_size=3, rate=2).children[0]
    message = controls.children[-1].value
    assert message == "output size <b>8</b> = floor((n + 2p - K - (K-1)(r-1)) / s) + 1", message
    labels = [s.description for box in controls.children[:2] for s in box.children]
    assert "input size n" in labels and "kernel size K" in labels, labels
    plt.close("all")
