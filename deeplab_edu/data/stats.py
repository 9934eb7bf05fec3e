"""Statistics of a segmentation data set that say which DeepLab ingredient it will need.

* :func:`class_pixel_frequencies`: how unbalanced the classes are, and
  :func:`median_frequency_weights`: the loss weights that balance them (Eigen & Fergus 2015);
  :func:`median_frequency_from_counts` computes them from each image's :func:`mask_class_counts`,
  which is all a large set needs to keep (the engine reads its masks one at a time,
  :func:`iter_dataset_masks`);
* :func:`object_sizes`: the spread of object scales (the multi-scale problem that ASPP and image
  pyramids address, DeepLabv2 Sec. 3.2); :func:`octave_histogram` counts them per octave and
  :func:`log_uniform_share` says what share of a log-uniform law falls in a size range;
* :func:`context_free_fraction`: the fraction of pixels of context-dependent classes (``car`` /
  ``boat`` in the procedural scenes) that have **no** background pixel within a window of a given
  radius. A classifier whose field of view is that window cannot tell such pixels apart; only
  larger context, up to image-level pooling (DeepLabv3 Sec. 3.3), can;
* :func:`stride_oracle_iou`: the IoU per class that a *perfect* classifier would still reach if it
  predicted one label per ``stride x stride`` cell and upsampled by nearest neighbour: what the
  output stride alone costs such a predictor (why DeepLabv3 evaluates at output stride 8 and v3+
  adds a decoder at stride 4). A baseline, not a ceiling: a network upsamples its scores
  bilinearly and can draw a boundary inside a cell.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from .classes import IGNORE_INDEX
from .io import labels_outside
from .procedural import BACKGROUND, BOAT, CAR, ProceduralScenes, SceneInfo

__all__ = [
    "dataset_masks", "iter_dataset_masks", "mask_class_counts", "median_frequency_from_counts",
    "class_pixel_frequencies", "median_frequency_weights", "object_sizes", "octave_histogram", "log_uniform_share", "context_free_fraction",
    "stride_oracle_iou"]


def iter_dataset_masks(dataset: Any, n: int | None = None, *,
                       indices: Sequence[int] | None = None) -> Iterator[np.ndarray]:
    """The masks of the first ``n`` items, or of the items at ``indices``, one at a time (procedural
    scenes are rendered, and sets with a ``load`` method loaded, without their transform; other sets
    give their items as they are). Each mask is read when the next one is asked for, so that a large
    set is never in memory at once."""
    if indices is None:
        indices = range(len(dataset) if n is None else min(n, len(dataset)))
    load = getattr(dataset, "load", None)
    for i in indices:
        if isinstance(dataset, ProceduralScenes):
            yield dataset.render(i)[1]
        else:
            yield np.asarray((load(i) if callable(load) else dataset[i])[1])


def dataset_masks(dataset: Any, n: int | None = None, *, indices: Sequence[int] | None = None) -> list[np.ndarray]:
    """The masks of :func:`iter_dataset_masks` as a list (all in memory: for a few small masks)."""
    return list(iter_dataset_masks(dataset, n, indices=indices))


def class_pixel_frequencies(masks: Iterable[np.ndarray | torch.Tensor], num_classes: int) -> np.ndarray:
    """Fraction of pixels per class over ``masks``; the last entry is the ignore label.

    Args:
        masks: label maps (H, W) of integer class indices, any sizes.
        num_classes: the number of classes, C.

    Returns:
        The share (0-1), float64 of shape ``(C + 1,)``, of the counted pixels in each class, then the share
        of ignored ones (255). Only labels in ``[0, C)`` and 255 are counted: another label (a class of a
        larger label set) is left out of the shares (:mod:`deeplab_edu.data.check` names such labels).

    Raises:
        ValueError: a mask holds a negative label.
    """
    counts = np.zeros(num_classes + 1, np.int64)
    for m in masks:
        m = m.numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
        if m.size and m.min() < 0:
            raise ValueError(f"a mask holds the negative label {m.min()}: labels are class indices >= 0 (255: ignored)")
        c = np.bincount(m.ravel().astype(np.int64), minlength=256)
        counts[:-1] += c[:num_classes]
        counts[-1] += c[IGNORE_INDEX]
    return counts / max(1, counts.sum())


def mask_class_counts(mask: np.ndarray | torch.Tensor, num_classes: int, *, name: str = "mask") -> np.ndarray:
    """The pixels of each class in one label map: all that :func:`median_frequency_from_counts` needs of it.

    Args:
        mask: a label map (H, W) of class indices in ``[0, num_classes)`` or 255 (ignored: counted nowhere).
        num_classes: the number of classes, C.
        name: what the error messages call the mask (e.g. ``"mask 3"``).

    Returns:
        The number of pixels of each class, int64 of shape ``(C,)``.

    Raises:
        ValueError: the mask is not of an integer type, or holds a value that is neither a class nor 255.
    """
    m = mask.numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"{name} is of type {m.dtype}: labels are integers (class indices, {IGNORE_INDEX})")
    wrong = labels_outside(m, num_classes)
    if wrong:
        raise ValueError(f"{name} holds {wrong[:5]}: neither a class in [0, {num_classes}) nor {IGNORE_INDEX}")
    return np.bincount(m.ravel().astype(np.int64, copy=False), minlength=256)[:num_classes]


def median_frequency_from_counts(counts: Iterable[np.ndarray], num_classes: int) -> np.ndarray:
    """Median-frequency balancing (:func:`median_frequency_weights`) from each image's pixels per class.

    Args:
        counts: per image, the number of pixels of each class, shape ``(num_classes,)``
            (:func:`mask_class_counts`); read once, one image at a time.
        num_classes: the number of classes.

    Returns:
        float64 weights, shape ``(num_classes,)``, as :func:`median_frequency_weights` gives them.

    Raises:
        ValueError: ``num_classes`` is below 1, or no image has a labelled pixel.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    pixels = np.zeros(num_classes, np.int64)  # pixels of class c
    present = np.zeros(num_classes, np.int64)  # labelled pixels of the images where c appears
    for image in counts:
        pixels += image
        present[image > 0] += image.sum()
    if not present.any():
        raise ValueError("no mask has a labelled pixel: nothing to balance")
    seen = present > 0
    freq = np.zeros(num_classes)
    freq[seen] = pixels[seen] / present[seen]
    weights = np.zeros(num_classes)
    weights[seen] = np.median(freq[seen]) / freq[seen]
    weights[~seen] = weights[seen].max()
    return weights


def median_frequency_weights(masks: Iterable[np.ndarray | torch.Tensor], num_classes: int) -> np.ndarray:
    """Median-frequency balancing: a loss weight per class, large for rare classes.

    Eigen & Fergus (2015, "Predicting Depth, Surface Normals and Semantic Labels with a Common
    Multi-Scale Convolutional Architecture", sec. 4.3; SegNet trains CamVid with it): "we weight
    each pixel by alpha_c = median freq / freq(c) where freq(c) is the number of pixels of class c
    divided by the total number of pixels in images where c is present, and median freq is the
    median of these frequencies". Pixels are counted over the whole set; "pixels in images where c
    is present" are their labelled pixels (the ignore label 255 counts nowhere). Only each mask's
    pixels per class are kept (:func:`mask_class_counts`), and the formula is
    :func:`median_frequency_from_counts`'s.

    Args:
        masks: label maps (H, W) of class indices in ``[0, num_classes)`` or 255, any sizes.
        num_classes: the number of classes.

    Returns:
        Weights, float64 of shape ``(num_classes,)``, 1 for the class at the median frequency, above
        1 for rarer classes. A class that appears in no mask gets the largest weight of the others
        (the rarest class's): absent from the masks counted, it may still be in the training set,
        and a weight of 0 would never let it be learned.

    Raises:
        ValueError: ``num_classes`` is below 1, a mask (named by its position) is not of an
            integer type or holds a value that is neither a class nor 255, or no mask has a
            labelled pixel.
    """
    counts = (mask_class_counts(m, num_classes, name=f"mask {position}") for position, m in enumerate(masks))
    return median_frequency_from_counts(counts, num_classes)


def object_sizes(infos: Iterable[SceneInfo]) -> dict[str, np.ndarray]:
    """Per drawn object of procedural scenes (their :class:`SceneInfo`, e.g. ``ds.render(i)[2]``):
    ``classes``, ``sizes`` (extent in pixels: diameter, or length for wires) and ``visible``
    (pixels left after occlusion)."""
    cls, size, vis = [], [], []
    for info in infos:
        cls += info.classes
        size += info.sizes
        vis += info.visible_pixels
    return {"classes": np.array(cls, int), "sizes": np.array(size, float), "visible": np.array(vis, int)}


def octave_histogram(sizes: Sequence[float] | np.ndarray, low: float = 4.0) -> list[dict[str, float]]:
    """Objects per octave of size, ``[low * 2**k, low * 2**(k + 1))`` for ``k = 0, 1, ...`` up to the
    largest size; one row per octave: ``from``, ``to`` (pixels), ``objects`` and ``share`` (a fraction
    of all objects, 0-1).

    Raises:
        ValueError: ``low`` is not positive or a size is below ``low``.
    """
    sizes = np.asarray(sizes, float)
    if low <= 0:
        raise ValueError(f"low must be positive, got {low}")
    if sizes.size and sizes.min() < low:
        raise ValueError(f"a size of {sizes.min():g} px is below low={low:g}; pass a smaller low")
    octaves = max(1, int(np.floor(np.log2(sizes.max() / low))) + 1) if sizes.size else 1
    edges = low * 2.0 ** np.arange(octaves + 1)
    counts = np.histogram(sizes, edges)[0]
    total = max(1, int(counts.sum()))
    return [{"from": float(a), "to": float(b), "objects": int(c), "share": c / total}
            for a, b, c in zip(edges[:-1], edges[1:], counts)]


def log_uniform_share(low: float, high: float, size_min: float, size_max: float) -> float:
    """Share of a log-uniform law on ``[size_min, size_max]`` that falls in ``[low, high)``:
    the overlap of the two ranges in ``log`` size over ``log(size_max / size_min)``.

    Raises:
        ValueError: a bound is not positive or a range is empty.
    """
    if min(low, high, size_min, size_max) <= 0 or high <= low or size_max <= size_min:
        raise ValueError(f"need 0 < low < high and 0 < size_min < size_max, got {low}, {high}, {size_min}, {size_max}")
    overlap = np.log(min(high, size_max)) - np.log(max(low, size_min))
    return float(max(0.0, overlap) / np.log(size_max / size_min))


def _box_any(binary: np.ndarray, radius: int) -> np.ndarray:
    """For every pixel: is any pixel of ``binary`` within the (2r+1) x (2r+1) window around it (the window
    cut at the image's edges)? SciPy's maximum filter, zero beyond the edges."""
    from scipy import ndimage

    reach = min(radius, max(binary.shape, default=0))  # a window wider than the image sees all of it
    return ndimage.maximum_filter(binary.astype(bool), size=2 * reach + 1, mode="constant", cval=0)


def context_free_fraction(
    masks: Iterable[np.ndarray | torch.Tensor],
    radius: int,
    *,
    classes: Sequence[int] = (CAR, BOAT),
    evidence: Sequence[int] = (BACKGROUND,),
) -> float:
    """Fraction of pixels of ``classes`` with no ``evidence`` pixel (the scene's background) within
    ``radius`` pixels (a square window). Returns ``nan`` when there are no such pixels.

    Raises:
        ValueError: ``radius`` is negative.
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    hit = total = 0
    for m in masks:
        m = m.numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
        target = np.isin(m, classes)
        if not target.any():
            continue
        seen = _box_any(np.isin(m, evidence), radius)
        total += int(target.sum())
        hit += int((target & ~seen).sum())
    return hit / total if total else float("nan")


def stride_oracle_iou(masks: Iterable[np.ndarray | torch.Tensor], stride: int, num_classes: int, *,
                      ignore_index: int = IGNORE_INDEX) -> dict[str, Any]:
    """IoU of a perfect classifier limited to one label per ``stride`` cell (nearest upsampling).

    ``masks`` are (H, W) label maps; ``stride`` is the output stride, in pixels. The label of each cell
    is read at its centre pixel; ignored samples (``ignore_index``) predict background.
    Returns :meth:`deeplab_edu.metrics.ConfusionMatrix.compute`'s dictionary.

    Raises:
        ValueError: ``stride`` or ``num_classes`` is below 1, or a mask holds a label of at least ``num_classes``
            other than ``ignore_index``.
    """
    from ..metrics import ConfusionMatrix

    if stride < 1 or num_classes < 1:
        raise ValueError(f"stride and num_classes must be >= 1, got stride={stride}, num_classes={num_classes}")
    counts = np.zeros(num_classes * num_classes, np.int64)
    for m in masks:
        t = m.numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
        h, w = t.shape
        ys = np.minimum(np.arange(h) // stride * stride + stride // 2, h - 1)
        xs = np.minimum(np.arange(w) // stride * stride + stride // 2, w - 1)
        pred = t[ys][:, xs].astype(np.int64)
        pred[pred == ignore_index] = 0
        keep = t != ignore_index
        truth = t[keep].astype(np.int64)
        if truth.size and (truth.max() >= num_classes or truth.min() < 0):
            bad = int(truth.max()) if truth.max() >= num_classes else int(truth.min())
            raise ValueError(f"a mask holds label {bad}, outside 0..{num_classes - 1} and not {ignore_index}")
        counts += np.bincount(truth * num_classes + pred[keep], minlength=num_classes * num_classes)
    # numpy counts (fast on a busy machine); the metric itself is the course's ConfusionMatrix
    cm = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    cm.mat += torch.from_numpy(counts.reshape(num_classes, num_classes))
    return cm.compute()
