"""ConfusionMatrix against torchmetrics on random data with ignore labels, and its edge cases."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from deeplab_edu.metrics import ConfusionMatrix, cell_averages_upsampled, format_iou_table, trimap_target


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_torchmetrics_with_ignore_labels(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    c = 6
    cm = ConfusionMatrix(c)
    jac = MulticlassJaccardIndex(num_classes=c, ignore_index=255, average="none")
    acc = MulticlassAccuracy(num_classes=c, ignore_index=255, average="micro")
    recall = MulticlassAccuracy(num_classes=c, ignore_index=255, average="macro")  # mean per-class accuracy
    truth_counts, labelled = torch.zeros(c, dtype=torch.long), 0
    for _ in range(3):  # several batches: accumulation over the data set
        target = torch.randint(0, c, (2, 17, 23), generator=g)
        target[torch.rand(target.shape, generator=g) < 0.2] = 255
        # predictions correlated with the truth so IoUs are not all tiny
        pred = torch.where(torch.rand(target.shape, generator=g) < 0.6, target.clamp(max=c - 1),
                           torch.randint(0, c, target.shape, generator=g))
        cm.update(pred, target)
        jac.update(pred, target)
        acc.update(pred, target)
        recall.update(pred, target)
        truth_counts += torch.bincount(target[target != 255], minlength=c)
        labelled += int((target != 255).sum())
    ours = cm.compute()
    ref_iou = jac.compute()
    assert torch.allclose(torch.tensor(ours["iou"], dtype=torch.float64), ref_iou.double(), atol=1e-6)
    assert math.isclose(ours["miou"], float(ref_iou.mean()), abs_tol=1e-6)
    assert math.isclose(ours["pixel_accuracy"], float(acc.compute()), abs_tol=1e-6)
    # per-class accuracy (recall) tells truth from prediction, which IoU and pixel accuracy do not
    assert math.isclose(ours["mean_accuracy"], float(recall.compute()), abs_tol=1e-6)
    # frequency-weighted IoU by its definition, with the class frequencies counted in the labels
    freq = truth_counts.double() / labelled
    assert math.isclose(ours["fw_iou"], float((freq * ref_iou.double()).sum()), abs_tol=1e-6)
    assert ours["pixels"] == labelled


def test_logits_are_argmaxed_and_ignore_never_counts() -> None:
    cm = ConfusionMatrix(3)
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 2] = 1.0  # predicts class 2 everywhere
    target = torch.tensor([[[2, 255], [255, 255]]])
    cm.update(logits, target)
    out = cm.compute()
    assert out["pixels"] == 1 and out["miou"] == 1.0 and math.isnan(out["iou"][0])


def test_absent_class_is_left_out_of_the_mean() -> None:
    cm = ConfusionMatrix(4)
    cm.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))
    out = cm.compute()
    assert math.isnan(out["iou"][2]) and math.isclose(out["miou"], (0.5 + 0.5) / 2)


def test_bad_labels_and_shapes_are_named() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="label 7"):
        cm.update(torch.tensor([0]), torch.tensor([7]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(2, 2, dtype=torch.long), torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)


def test_iou_table() -> None:
    text = format_iou_table([0.5, float("nan"), 1.0], ["a", "b", "c"])
    assert "| a | 50.0 |" in text and "n/a" in text and "**75.0**" in text


def test_trimap_keeps_a_band_around_boundaries() -> None:
    t = torch.zeros(9, 9, dtype=torch.long)
    t[:, 5:] = 1  # one vertical boundary between columns 4 and 5
    band = trimap_target(t, 1)
    kept = (band != 255).nonzero()[:, 1].unique().tolist()
    assert kept == [3, 4, 5, 6]
    assert (trimap_target(t, 0) != 255).nonzero()[:, 1].unique().tolist() == [4, 5]
    assert (trimap_target(torch.zeros(4, 4, dtype=torch.long), 2) == 255).all()  # no boundary, nothing kept


def _scored(pred: torch.Tensor, target: torch.Tensor, width: int) -> dict[object, dict]:
    out: dict[object, dict] = {}
    for key, t in (("all", target), (width, trimap_target(target, width))):
        cm = ConfusionMatrix(3)
        cm.update(pred, t)
        out[key] = cm.compute()
    return out


def test_removed_errors_by_band_tells_a_boundary_gain_from_an_even_one() -> None:
    from deeplab_edu.metrics import removed_errors_by_band

    target = torch.zeros(1, 32, 32, dtype=torch.long)
    target[:, 8:24, 8:24] = 1  # a square: its band of width 1 is 4 px wide along the edges
    band = trimap_target(target, 1) != 255
    base = target.clone()
    base[band & (target == 1)] = 0  # DeepLabv3-like: the square's rim is wrong
    base[:, 0, :] = 2  # and one interior row of background, far from the square
    at_edges = target.clone()
    at_edges[:, 0, :] = 2  # fixes the rim only
    shares = removed_errors_by_band(_scored(base, target, 1), _scored(at_edges, target, 1))[1]
    assert shares["removed"] == 1.0 and math.isclose(shares["pixels"], band.float().mean().item())
    far_only = target.clone()
    far_only[band & (target == 1)] = 0  # fixes the far row only: nothing in the band
    assert removed_errors_by_band(_scored(base, target, 1), _scored(far_only, target, 1))[1]["removed"] == 0.0
    assert math.isnan(removed_errors_by_band(_scored(base, target, 1), _scored(base, target, 1))[1]["removed"])
    assert _scored(base, target, 1)["all"]["wrong_pixels"] == int((base != target).sum())
    smaller = _scored(base[:, :16], target[:, :16], 1)
    with pytest.raises(ValueError, match="same images"):
        removed_errors_by_band(_scored(base, target, 1), smaller)
    with pytest.raises(ValueError, match="'all'"):
        removed_errors_by_band({1: smaller[1]}, {1: smaller[1]})


def test_one_images_scores_are_read_over_their_class_axis() -> None:
    """An audit: one image's (C, H, W) scores with its (H, W) labels were argmax-ed over H, so a perfect
    prediction of an image as tall as the classes are many scored an mIoU of 0.155 without a word."""
    classes = 4
    target = torch.randint(0, classes, (classes, 6), generator=torch.Generator().manual_seed(0))
    scores = torch.nn.functional.one_hot(target, classes).permute(2, 0, 1).float()  # perfect, unbatched
    alone, batched = ConfusionMatrix(classes), ConfusionMatrix(classes)
    alone.update(scores, target)
    batched.update(scores[None], target[None])
    assert torch.equal(alone.mat, batched.mat) and alone.compute()["miou"] == 1.0
    with pytest.raises(ValueError, match=r"read as scores \(C, H, W\) .* has 3 channels"):
        ConfusionMatrix(classes).update(torch.zeros(3, 5, 6), torch.zeros(5, 6, dtype=torch.long))


def test_trimap_target_refuses_an_ignore_index_its_labels_cannot_hold() -> None:
    """An audit: ignore_index=-1 in uint8 labels was written as 255 (which a matrix of ignore_index=-1
    then refused as a label); int8 with 255 was a bare RuntimeError of full_like."""
    target = torch.zeros(5, 5, dtype=torch.uint8)
    target[:, 3:] = 1
    with pytest.raises(ValueError, match=r"ignore_index -1 does not fit the target's torch.uint8 \(values 0..255\)"):
        trimap_target(target, 0, -1)
    with pytest.raises(ValueError, match="ignore_index 255 does not fit the target's torch.int8"):
        trimap_target(target.to(torch.int8), 0)
    assert trimap_target(target.long(), 0, -1)[0, 0] == -1


def test_iou_table_escapes_a_bar_in_a_class_name() -> None:
    """An audit: a class named 'road|wet' split its row of eval's Markdown table into three cells."""
    text = format_iou_table([0.5, 1.0], ["road|wet", "a\\|b"])
    assert "| road\\|wet | 50.0 |" in text and "| a\\\\\\|b | 100.0 |" in text
    assert all(line.replace("\\|", "").count("|") == 3 for line in text.splitlines())


def test_iou_table_mean_is_na_when_no_class_is_scored() -> None:
    """An audit: a validation set whose only mask is all ignore printed "mIoU nan%" and a table whose mean
    line read 0.0; the mean is "n/a" as every class's IoU is."""
    cm = ConfusionMatrix(2)
    cm.update(torch.zeros(1, 3, 3, dtype=torch.long), torch.full((1, 3, 3), 255, dtype=torch.long))
    scores = cm.compute()
    assert scores["miou"] != scores["miou"]  # NaN: nothing scored
    text = format_iou_table(scores["iou"], ["bg", "fg"])
    assert text.splitlines()[-1] == "| **mean** | **n/a** |" and "0.0" not in text
    assert format_iou_table([], []).splitlines()[-1] == "| **mean** | **n/a** |"


def test_a_bool_mask_gets_the_band_of_its_integer_labels() -> None:
    """An audit: in a bool mask full_like(mask, 255) is True, so trimap_target kept every pixel and
    boundary_band(mask.bool(), 0) held all 64 pixels of an 8x8 mask instead of the 16 beside the change."""
    from deeplab_edu.metrics import boundary_band

    mask = torch.zeros(8, 8, dtype=torch.long)
    mask[:, 4:] = 1
    for width in (0, 1):
        assert torch.equal(boundary_band(mask.bool(), width), boundary_band(mask, width))
        assert torch.equal(trimap_target(mask.bool(), width), trimap_target(mask, width))
    assert int(boundary_band(mask.bool(), 0).sum()) == 16
    assert torch.equal(boundary_band(mask[None].bool(), 0), boundary_band(mask[None], 0))


def test_wrong_types_are_named_with_what_to_give_instead() -> None:
    """An audit of wrong types: format_iou_table(cm.compute()) said "Unknown format code 'f' for object of type
    'str'" (it iterated over the dictionary's keys), ConfusionMatrix.update of two PIL masks "Could not infer
    dtype of Image", and trimap_target of a NumPy array failed with an AttributeError."""
    import numpy as np
    from PIL import Image

    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))
    with pytest.raises(TypeError, match=r"iou must be the per-class IoU values .* got a dict: give "
                                        r"ConfusionMatrix\.compute\(\)\['iou'\]"):
        format_iou_table(cm.compute())  # type: ignore[arg-type]
    assert format_iou_table(cm.compute()["iou"]).splitlines()[-1] == "| **mean** | **100.0** |"
    mask = Image.fromarray(np.zeros((2, 3), np.uint8))
    with pytest.raises(TypeError, match=r"^pred must be a torch tensor \(or a NumPy array\) of labels .* got Image: "
                                        r"torch\.from_numpy\(numpy\.array\(pred\)\)"):
        cm.update(mask, mask)  # type: ignore[arg-type]
    cm.update(np.array(mask), [[0, 0, 0], [0, 0, 0]])  # type: ignore[arg-type]  # NumPy and lists: as before
    assert int(cm.mat.sum()) == 8
    with pytest.raises(TypeError, match=r"^target must be a torch tensor of labels .* torch\.from_numpy\(target\)$"):
        trimap_target(np.zeros((4, 4), np.int64), 1)  # type: ignore[arg-type]


def test_cell_averages_upsampled_puts_every_cell_on_its_own_block() -> None:
    """The figure audit: stride_oracle and coarse_scores stretched ceil(H / stride) cells over H pixels when H was
    not a multiple of the stride; the shared helper upsamples whole cells and crops."""
    import torch.nn.functional as F

    scores = torch.zeros(1, 9, 10)
    scores[0, :, 8:] = 1.0  # the last cell column (stride 4) is partial, two pixels wide, all ones
    out = cell_averages_upsampled(scores, 4)
    assert out.shape == (1, 9, 10)
    # linear between the centres of the middle block (pixel 5.5, value 0) and of the last one (9.5, value 1)
    assert torch.allclose(out[0, 0], torch.tensor([0, 0, 0, 0, 0, 0, 0.125, 0.375, 0.625, 0.875]))
    assert torch.equal(out[0], out[0, :1].expand(9, 10))
    # a multiple of the stride: plain bilinear upsampling to the size, as before
    even = torch.rand(3, 16, 24)
    cells = F.avg_pool2d(even[None], 8)
    assert torch.allclose(cell_averages_upsampled(even, 8), F.interpolate(cells, size=(16, 24), mode="bilinear")[0])
    with pytest.raises(ValueError, match=r"scores must be a \(C, H, W\) float tensor"):
        cell_averages_upsampled(torch.zeros(9, 10), 4)
    with pytest.raises(ValueError, match="stride must be a whole number of pixels from 1, got 0"):
        cell_averages_upsampled(scores, 0)
