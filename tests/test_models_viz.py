"""Figures and widgets of chapters 05 and 09: ASPP footprints, stride oracles, boundary bands."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from deeplab_edu.viz import aspp as vaspp
from deeplab_edu.viz.decoder import band_accuracy, boundary_band, plot_stride_oracles, stride_oracle


def test_branch_footprints_match_the_tap_geometry() -> None:
    fps = vaspp.branch_footprints((6, 12, 18), size=33, position=(5, 16))
    assert fps["1x1"].sum() == 1 and fps["image pooling"].all()
    # rows 5 - r, 5, 5 + r and columns 16 - r, 16, 16 + r, kept when inside the 33 x 33 map
    assert fps["rate 6"].sum() == 2 * 3 and fps["rate 12"].sum() == 2 * 3 and fps["rate 18"].sum() == 2 * 1
    assert fps["rate 18"][5, 16] and fps["rate 18"][23, 16]


def test_footprint_squares_are_centred_on_their_features_image_position() -> None:
    # feature (a, b) is centred on pixel (S a, S b) (chapter 02), so its square spans S a - S/2 .. S a + S/2
    from deeplab_edu.receptive_field import receptive_field_of
    from deeplab_edu.models import build_backbone
    from deeplab_edu.viz.aspp import _cell_corner

    with torch.device("meta"):
        net = build_backbone("resnet50", output_stride=16)
    field = receptive_field_of(net)
    centre_of = lambda a: a * field.stride - field.padding + (field.size - 1) / 2  # noqa: E731
    assert [centre_of(a) for a in (0, 5)] == [0, 80]
    x, y = _cell_corner(5, 2, 16)
    assert (x + 8, y + 8) == (centre_of(2), centre_of(5))


def test_footprint_figure_and_widget_build_without_front_end() -> None:
    photo = torch.rand(3, 65, 65)
    fig = vaspp.plot_branch_footprints(photo, vaspp.branch_footprints((1, 2, 3), 5), 16)
    assert len(fig.axes) == 5
    widget = vaspp.aspp_footprint_widget(photo, image_size=65)
    assert widget.children


def test_the_footprint_widget_keeps_its_place_in_the_photo_when_the_stride_changes() -> None:
    """A learner's trial: row and column 16 stayed 16 at output stride 8, so the marked output jumped from
    the centre of the photo to a quarter of the way in; the sliders now start at the centre and move with it."""
    import matplotlib.pyplot as plt

    widget = vaspp.aspp_footprint_widget(image_size=513)
    stride, row, col = widget.children[0].children
    assert (row.value, col.value, row.max) == (16, 16, 32)  # the centre of the 33 x 33 map
    stride.value = 8
    assert (row.value, col.value, row.max) == (32, 32, 64)  # the centre of the 65 x 65 map
    col.value = 10
    stride.value = 16
    assert (row.value, col.value) == (16, 5)
    plt.close("all")


def test_stride_oracle() -> None:
    mask = torch.zeros(37, 41, dtype=torch.int64)
    mask[10:30, 5:22] = 2
    mask[0, 0] = 255
    assert torch.equal(stride_oracle(mask, 1, 3)[1:], mask[1:])
    coarse = stride_oracle(mask, 16, 3)
    assert coarse.shape == mask.shape
    acc4, acc16 = (band_accuracy(stride_oracle(mask, s, 3), mask, [2])[0] for s in (4, 16))
    assert acc4 > acc16
    with pytest.raises(ValueError, match="stride"):
        stride_oracle(mask, 0, 3)


def test_boundary_band() -> None:
    mask = torch.zeros(10, 10, dtype=torch.int64)
    mask[:, 5:] = 1
    band = boundary_band(mask, 0)  # the boundary pixels: both sides of the label change
    assert band[:, 4:6].all() and not band[:, :4].any() and not band[:, 6:].any()
    assert boundary_band(mask, 1)[:, 3:7].all() and not boundary_band(mask, 1)[:, :3].any()
    assert plot_stride_oracles(torch.rand(3, 10, 10), mask, (2, 4), 2, [(0, 0, 0), (255, 0, 0)]).axes
    mask[0, 0] = 255
    fig = plot_stride_oracles(torch.rand(3, 10, 10), mask, (2, 4), 3, [(0, 0, 0), (255, 0, 0), (0, 255, 0)],
                              ["road", "car", "tree"])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["road", "car", "ignore (255)"]  # the classes present


def test_chapter_08_and_09_widgets_build_without_front_end() -> None:
    from deeplab_edu.data import ProceduralScenes
    from deeplab_edu.viz.decoder import stride_oracle_widget
    from deeplab_edu.viz.deeplab import cost_widget, plot_cost_vs_size

    assert stride_oracle_widget(ProceduralScenes(length=2, size=33)).children
    fig = plot_cost_vs_size("deeplabv3", "mobilenet_v3_large", sizes=(65, 129), output_strides=(16, 8), highlight=(65, 8))
    lines = [line for line in fig.axes[0].lines if len(line.get_xdata()) == 2]
    assert all(a < b for a, b in (line.get_ydata() for line in lines))  # cost grows with the input
    assert cost_widget("deeplabv3", "mobilenet_v3_large", sizes=(65, 129)).children


def test_stride_oracle_keeps_cells_in_place_at_odd_sizes() -> None:
    """The figure audit: at sides that are not a multiple of the stride (chapter 09's 129, 257 and 513 px) the
    ceil(H / stride) cells were stretched over H pixels, so an edge at column 109 of 129 came out at 99."""
    for size in (129, 257):
        for column in (32, size // 2, size - 20):
            mask = torch.zeros(size, size, dtype=torch.long)
            mask[:, column:] = 1
            predicted = int(stride_oracle(mask, 16, 2)[0].nonzero()[0])  # the first column predicted class 1
            assert abs(predicted - column) <= 1, (size, column, predicted)
