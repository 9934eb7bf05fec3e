"""What an accessibility audit of the figures found (stop 70), each stated as the figure's right property:
text that contrasts with the tile under it, marks a legend explains, lines told apart without their
colour, whole-number iteration ticks, a stack's legend in the stack's order, and class colours named
where a figure shows them. (The palettes themselves: ``tests/test_palettes.py``.)
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402


def _luminance(colour: object) -> float:
    """WCAG 2's relative luminance of a matplotlib colour."""
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(colour)]  # type: ignore[arg-type]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(a: object, b: object) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_the_tap_counts_numbers_contrast_with_their_tiles() -> None:
    """Chapter 04's counts were white on every tile: 1.3:1 on the yellow of 3 taps (WCAG asks 4.5:1)."""
    from deeplab_edu.viz.boundary import count_colours, plot_tap_counts

    colours, seen = count_colours(3), set()
    for height, width, rate in ((3, 3, 3), (3, 9, 3), (9, 9, 2)):  # counts 1; 2 and 3; 4, 6 and 9
        for text in plot_tap_counts(height, width, rate=rate).axes[0].texts:
            tile = colours[int(text.get_text())]
            assert _contrast(text.get_color(), tile) >= 4.5, (text.get_text(), text.get_color(), tile)
            assert text.get_fontsize() >= 8
            seen.add(int(text.get_text()))
    assert seen == set(colours)  # every tile colour was checked


def test_the_footprints_circle_is_named_in_a_legend() -> None:
    from deeplab_edu.viz.boundary import plot_footprints

    fig = plot_footprints({"3x3, rate 6": np.ones((9, 9), bool)}, position=(4, 4))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["the output position"]  # was never explained
    assert len(plot_footprints({"a": np.ones((3, 3), bool)}).legends) == 0  # no circle, no legend


def test_lines_of_one_plot_differ_in_marker_or_style_and_iterations_are_whole() -> None:
    from deeplab_edu.engine.report import plot_history
    from deeplab_edu.viz.training import plot_band_comparison, plot_histories

    history = ([{"split": "train", "iteration": i, "loss": 1 / i} for i in (1, 2, 3)]
               + [{"split": "val", "iteration": 3, "miou": 0.5}])
    fig = plot_histories({"a": history, "b": history, "c": history})
    assert len({line.get_marker() for line in fig.axes[1].lines}) == 3  # was "o" for every run
    for ax in fig.axes + plot_history(history).axes:
        ax.figure.canvas.draw()
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert all(float(t).is_integer() for t in ticks), ticks  # a smoke run's axis read 1.25, 1.90
    long = [{"split": "train", "iteration": i, "loss": 1.0} for i in range(0, 30001, 1000)]
    ax = plot_history(long).axes[0]
    ax.figure.canvas.draw()
    steps = set(np.diff(ax.get_xticks()))  # a review: the integer locator's own steps gave 4,000, crowding the axis
    assert steps == {5000.0}, steps
    bands = plot_band_comparison([1, 2, 4], {m: {w: {"miou": 0.5} for w in (1, 2, 4)} for m in ("x", "y")})
    assert len({line.get_marker() for line in bands.axes[0].lines}) == 2


def test_the_cost_and_share_curves_differ_in_more_than_colour() -> None:
    from deeplab_edu.models import build_backbone
    from deeplab_edu.viz.boundary import plot_mean_valid_fraction
    from deeplab_edu.viz.output_stride import macs_by_input_size, plot_cost_vs_input_size

    shares = plot_mean_valid_fraction({"small": 21, "large": 65}, max_rate=8, marked_rates=())
    assert len({line.get_linestyle() for line in shares.axes[0].lines}) == 2
    rows = macs_by_input_size(build_backbone("tiny_resnet"), [32, 64], output_strides=(16, 8))
    assert len({line.get_marker() for line in plot_cost_vs_input_size(rows).axes[0].lines}) == 2


def test_a_stacks_legend_reads_in_the_stacks_order() -> None:
    from deeplab_edu.viz.output_stride import plot_macs_by_stage

    fig = plot_macs_by_stage({"OS 16": {"stem": 1.0, "block1": 2.0, "block2": 3.0}})
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["block2", "block1", "stem"]  # top first
    bars = fig.axes[0].patches
    assert len({bar.get_hatch() for bar in bars}) == 3  # told apart without hue


def test_the_crf_figure_names_its_class_colours() -> None:
    from deeplab_edu.viz.crf import plot_refinement

    image, mask = torch.rand(3, 16, 16), torch.zeros(16, 16, dtype=torch.long)
    palette = [(40, 40, 40), (213, 94, 0)]
    fig = plot_refinement(image, mask, mask, mask, palette, class_names=["background", "disc"])
    assert [t.get_text() for t in fig.legends[0].get_texts()][:2] == ["background", "disc"]
    assert not plot_refinement(image, mask, mask, None, palette).legends


def test_a_legend_of_many_classes_leaves_the_panels_their_room() -> None:
    """With 150 classes (an ADE20K-like data set) the legend's 26 rows were drawn over the image, truth and
    prediction panels of ``prediction_gallery`` and ``show_pairs`` (its share of the height was capped at a
    half): the figure grows by the legend's height, and no panel reaches into it."""
    from deeplab_edu.inference import prediction_gallery
    from deeplab_edu.viz.data import show_pairs

    names = [f"class {k}" for k in range(150)]
    palette = [(k, 255 - k, (7 * k) % 256) for k in range(150)]
    image, mask = torch.rand(3, 24, 32), torch.randint(0, 150, (24, 32))
    for fig in (prediction_gallery([image, image], [mask, mask], [mask, mask], palette, class_names=names),
                show_pairs([(image, mask)] * 2, names, palette)):
        fig.canvas.draw()
        legend_top = fig.legends[0].get_window_extent().y1
        lowest_panel = min(ax.get_window_extent().y0 for ax in fig.axes if ax.get_images())
        assert lowest_panel >= legend_top, (lowest_panel, legend_top)
        plt.close(fig)


def test_a_long_runs_loss_is_a_line_not_a_band_of_markers() -> None:
    """An audit of long runs: plot_history marked each of 10,000 logged losses (100,000 iterations at log_every 10),
    a solid band; a short run keeps its markers."""
    from deeplab_edu.engine.report import MARKED_POINTS, plot_history

    for n, marker in ((50, "."), (MARKED_POINTS + 1, "None")):
        history = [{"split": "train", "iteration": 10 * k, "loss": 1.0 / (k + 1)} for k in range(n)]
        fig = plot_history(history + [{"split": "val", "iteration": 10 * n, "miou": 0.5}])
        assert fig.axes[0].lines[0].get_marker() == marker
        plt.close(fig)


def test_a_second_accessibility_audit_of_the_figures() -> None:
    """A second audit (simulated colour-vision deficiencies, WCAG contrast): chapter 06's eight class lines were
    all "o-" (box and wire 11.6 apart to a deuteranope), chapter 08's loss panel marked every run "." with the
    control's purple one colour with phase 1's blue to a protanope, chapter 04's Figure 4 curves were all solid,
    chapter 01's numbers were black on the darkest tile (1.6:1), and chapter 07's kernel colourbars were unnamed."""
    from deeplab_edu.viz.atrous import plot_dilated_kernel
    from deeplab_edu.viz.boundary import plot_figure4
    from deeplab_edu.viz.crf import plot_kernels
    from deeplab_edu.viz.data import plot_stride_oracle
    from deeplab_edu.viz.training import plot_phases

    names = [f"class {c}" for c in range(8)]
    oracle = plot_stride_oracle([4, 8, 16], np.full((3, 8), 0.5), names, [(c * 30, 0, 0) for c in range(8)])
    assert len({line.get_marker() for line in oracle.axes[0].lines}) >= 6
    history = ([{"split": "train", "iteration": i, "loss": 1 / i} for i in (1, 2, 3)]
               + [{"split": "val", "iteration": 3, "miou": 0.5}])
    phases = plot_phases(history, history, control=history)
    runs = [line for line in phases.axes[0].lines if not line.get_label().startswith("_")]  # not the phases' divide
    loss_markers = [line.get_marker() for line in runs]
    assert len(set(loss_markers)) == len(loss_markers) == 3, loss_markers
    assert len({line.get_color() for line in runs}) == 3
    long = [{"split": "train", "iteration": i, "loss": 1.0} for i in range(1000)]
    marked = plot_phases(long, long, control=long).axes[0].lines[1]  # phase 2: a line, not a band of markers
    assert len(marked.get_xdata()[::marked.get_markevery()]) <= 30
    first = plot_phases(long, long).axes[0].lines[0]  # phase 1, drawn by plot_history: marked too (a review)
    assert first.get_marker() == "." and len(first.get_xdata()[::first.get_markevery()]) <= 30
    assert len({str(line.get_linestyle()) for line in plot_figure4(size=9).axes[0].lines}) == 3
    for ax in plot_dilated_kernel(torch.arange(1.0, 10.0).view(3, 3), rate=2):
        image = ax.images[0]
        for text in ax.texts:
            tile = image.cmap(image.norm(float(text.get_text())))
            assert _contrast(text.get_color(), tile) >= 4.5, (text.get_text(), text.get_color())
    kernels = plot_kernels(torch.rand(3, 8, 8), (2, 3))
    bars = [ax for ax in kernels.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 2 and all(ax.get_ylabel() for ax in bars)


def test_chapter_01s_wide_figure_keeps_its_text_readable_at_the_books_width() -> None:
    """The audit measured chapter 01's edge-and-line figure (12 x 5.2 in, shown at about 0.8 of that in the book's
    column): 73 of its 81 texts under 9 px, ticks at 7 pt."""
    from deeplab_edu.atrous import edge_and_line_response
    from deeplab_edu.viz.atrous import plot_edge_and_line

    fig = plot_edge_and_line([edge_and_line_response(rate) for rate in (1, 4, 16)])
    fig.canvas.draw()
    shrink = min(1.0, 9.6 / fig.get_figwidth())  # the book's column: about 690 px at 72 px an inch
    sizes = [t.get_fontsize() for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels() + ax.texts
             + [ax.xaxis.label, ax.yaxis.label, ax.title] if t.get_text()]
    assert min(sizes) * shrink * 96 / 72 >= 9, (min(sizes), shrink)
    plt.close(fig)
