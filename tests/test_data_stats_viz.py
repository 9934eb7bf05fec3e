"""Data-set statistics (hand-checked cases) and the chapter's figures and widget."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from deeplab_edu.data import ProceduralScenes
from deeplab_edu.data.procedural import BOAT, CAR
from deeplab_edu.data.stats import (
    class_pixel_frequencies,
    context_free_fraction,
    dataset_masks,
    median_frequency_weights,
    object_sizes,
    stride_oracle_iou,
)
from deeplab_edu.data.transforms import train_transform
from deeplab_edu.viz import data as vdata


def test_context_free_fraction_by_hand():
    m = np.zeros((1, 11), np.uint8)
    m[0, 3:8] = CAR  # background at columns 0-2 and 8-10
    # distance from each car pixel to the nearest background pixel: col3:1, col4:2, col5:3, col6:2, col7:1
    assert context_free_fraction([m], 0) == 1.0
    assert context_free_fraction([m], 1) == pytest.approx(3 / 5)
    assert context_free_fraction([m], 2) == pytest.approx(1 / 5)
    assert context_free_fraction([m], 3) == 0.0
    assert np.isnan(context_free_fraction([np.zeros((3, 3), np.uint8)], 1))
    boat = torch.full((4, 4), BOAT)
    assert context_free_fraction([boat], 10) == 1.0  # no background anywhere
    with pytest.raises(ValueError, match="radius"):
        context_free_fraction([m], -1)


def test_stride_oracle_iou_by_hand():
    m = np.zeros((8, 8), np.uint8)
    m[:, 3] = 1  # a 1-pixel wide vertical line
    assert stride_oracle_iou([m], 1, 2)["iou"] == [1.0, 1.0]
    # stride 4 samples columns 2 and 6: the line is never sampled
    res = stride_oracle_iou([m], 4, 2)
    assert res["iou"][1] == 0.0 and res["iou"][0] == pytest.approx(56 / 64)
    # stride 2 samples columns 1, 3, 5, 7: the line is hit, and widened to columns 2-3
    assert stride_oracle_iou([m], 2, 2)["iou"][1] == pytest.approx(0.5)
    ign = m.copy()
    ign[0, 0] = 255
    assert stride_oracle_iou([ign], 1, 2)["pixels"] == 63
    with pytest.raises(ValueError, match="stride"):
        stride_oracle_iou([m], 0, 2)


def test_median_frequency_weights_by_hand():
    # class 0: 4 pixels in two images of 4 + 3 labelled pixels -> 4/7; class 1: 1 of 4 -> 1/4;
    # class 2: 2 of 3 -> 2/3; median 4/7: weights 1, (4/7)/(1/4), (4/7)/(2/3); class 3, absent from
    # these masks, the largest (a weight of 0 would never let it be learned)
    masks = [np.array([[0, 0, 0, 1]]), torch.tensor([[0, 2, 2, 255]])]
    np.testing.assert_allclose(median_frequency_weights(masks, 4), [1, 16 / 7, 6 / 7, 16 / 7])
    with pytest.raises(ValueError, match=r"mask 1 holds \[7\]: neither a class in \[0, 4\) nor 255"):
        median_frequency_weights([np.array([[0, 1]]), np.array([[0, 7]])], 4)
    with pytest.raises(ValueError, match=r"mask 0 holds \[-1\]"):
        median_frequency_weights([np.array([[0, -1]])], 4)
    with pytest.raises(ValueError, match="mask 0 is of type float32"):
        median_frequency_weights([np.array([[0.0, 1.5]], dtype=np.float32)], 4)
    with pytest.raises(ValueError, match="no mask has a labelled pixel"):
        median_frequency_weights([np.full((2, 2), 255)], 4)


def test_class_frequencies_and_object_sizes():
    masks = [np.array([[0, 0, 1, 255]], np.uint8)]
    freqs = class_pixel_frequencies(masks, 2)
    assert freqs.tolist() == [0.5, 0.25, 0.25]
    ds = ProceduralScenes(length=5, size=64)
    got = object_sizes(ds.render(i)[2] for i in range(5))
    assert len(got["classes"]) == len(got["sizes"]) == len(got["visible"]) > 0
    assert len(dataset_masks(ds, 3)) == 3


def test_figures_build():
    ds = ProceduralScenes(length=4, size=48)
    figs = [
        vdata.show_samples(ds, range(2)),
        vdata.show_sizes(index=1, sizes=(32, 48)),
        vdata.plot_class_frequencies(np.full(9, 1 / 9), ds.class_names, ds.palette),
        vdata.plot_object_sizes(np.array([3.0, 20, 40]), 48, np.array([1, 2, 5]), ds.class_names),
        vdata.plot_context_free([4, 8], [0.5, 0.2], 48),
        vdata.plot_stride_oracle([1, 2], [[1.0] * 8, [0.5] * 8], ds.class_names, ds.palette),
        vdata.show_transform_samples(ds, 0, train_transform(40), n=2),
    ]
    for f in figs:
        assert f.axes
        plt.close(f)


def test_explorer_builds_without_a_front_end():
    w = vdata.procedural_explorer(seed=1, size=40, index=2, count=2)
    sliders = w.children[0].children
    assert [s.value for s in sliders] == [1, 40, 2]
    sliders[0].value = 2  # redraws without error
    plt.close("all")


def test_octave_histogram_and_log_uniform_share():
    from deeplab_edu.data.stats import log_uniform_share, octave_histogram

    rows = octave_histogram([4, 5, 7.9, 8, 31, 32, 100], low=4)
    assert [(r["from"], r["to"], r["objects"]) for r in rows] == [
        (4, 8, 3), (8, 16, 1), (16, 32, 1), (32, 64, 1), (64, 128, 1)]
    assert sum(r["share"] for r in rows) == pytest.approx(1)
    with pytest.raises(ValueError, match="below low"):
        octave_histogram([2, 8], low=4)
    # a full octave of a law spanning 2 % to 90 % of a side: 1 / log2(45)
    assert log_uniform_share(16, 32, 0.02 * 256, 0.9 * 256) == pytest.approx(1 / np.log2(45))
    assert log_uniform_share(4, 8, 5.12, 230.4) == pytest.approx(np.log2(8 / 5.12) / np.log2(45))
    assert log_uniform_share(300, 600, 5.12, 230.4) == 0.0
    with pytest.raises(ValueError):
        log_uniform_share(8, 4, 1, 2)


def test_procedural_sizes_follow_the_log_uniform_law():
    from deeplab_edu.data.procedural import WIRE
    from deeplab_edu.data.stats import log_uniform_share, object_sizes

    ds = ProceduralScenes(length=120, size=256, seed=3)
    sizes = object_sizes(ds.render(i)[2] for i in range(len(ds)))
    shapes = sizes["sizes"][(sizes["classes"] != WIRE) & (sizes["sizes"] < 0.9 * 256)]
    assert shapes.min() >= 0.02 * 256 - 1e-6
    share = float(((shapes >= 16) & (shapes < 32)).mean())
    expected = log_uniform_share(16, 32, 0.02 * 256, 0.9 * 256)
    assert abs(share - expected) < 4 * np.sqrt(expected * (1 - expected) / len(shapes))


def test_median_frequency_from_counts_matches_the_masks_path_and_streams():
    """An audit: --class-weights median_frequency held every counted training mask (up to 1,000, full size)
    in memory at once. The engine now keeps only each mask's pixels per class, with the same weights."""
    import gc
    import weakref

    from deeplab_edu.data.stats import iter_dataset_masks, mask_class_counts, median_frequency_from_counts
    from deeplab_edu.engine.trainer import _median_frequency_weights

    rng = np.random.default_rng(0)
    masks = [rng.choice([0, 1, 2, 255], size=(6 + i, 5), p=[0.6, 0.25, 0.1, 0.05]).astype(np.uint8)
             for i in range(12)]
    masks[3][:] = 255  # an image with no labelled pixel
    wanted = median_frequency_weights(masks, 4)  # class 3 absent: the rarest class's weight
    counts = [mask_class_counts(m, 4) for m in masks]
    assert counts[0].dtype == np.int64 and counts[0].shape == (4,)
    np.testing.assert_array_equal(median_frequency_from_counts(counts, 4), wanted)
    streamed = iter_dataset_masks([(None, m) for m in masks], indices=[2, 5])
    assert [mask_class_counts(m, 4).tolist() for m in streamed] == [counts[2].tolist(), counts[5].tolist()]
    with pytest.raises(ValueError, match="num_classes must be at least 1"):
        median_frequency_from_counts(counts, 0)

    class Recorded:
        """A training set that records the most of its masks alive at once."""
        num_classes, class_names = 4, ["a", "b", "c", "d"]

        def __init__(self) -> None:
            self.alive: list[weakref.ref] = []
            self.peak = 0

        def __len__(self) -> int:
            return len(masks)

        def __getitem__(self, i: int) -> tuple[None, np.ndarray]:
            gc.collect()
            self.alive = [r for r in self.alive if r() is not None]
            mask = masks[i].copy()
            self.alive.append(weakref.ref(mask))
            self.peak = max(self.peak, len(self.alive))
            return None, mask

    ds = Recorded()
    with pytest.warns(UserWarning, match="no pixel of d in the 12 training masks counted"):
        got = _median_frequency_weights(ds, 4)
    torch.testing.assert_close(got, torch.as_tensor(wanted, dtype=torch.float32))
    assert ds.peak <= 2, f"{ds.peak} of {len(masks)} masks held at once"
    masks[5][0, 0] = 7
    with pytest.raises(ValueError, match=r"the mask of training item 5 holds \[7\]"):
        _median_frequency_weights(Recorded(), 4)
