"""Measuring what the dense CRF does: DeepLab v1 sec. 5 and v2 sec. 4.1 on the procedural scenes.

DeepLab reports mean IoU before and after the CRF (v1 Table 1, v2 Tables 1, 3, 4) and the mean
IoU inside a narrow band around object boundaries, the "trimap" (v1 Fig. 5, v2 Fig. 10), and
chooses the CRF's parameters by a coarse grid search on 100 validation images (v1 sec. 5,
v2 sec. 4.1.1). This module does the same on any data set of ``(image, mask)`` items:

- :func:`coarse_scores`: a stand-in for a DCNN's stride-8 score map (no training needed);
- :func:`~deeplab_edu.metrics.boundary_band`: the trimap band (the one of chapter 09 and the findings);
- :func:`evaluate_crf`: mIoU and band mIoU before and after the CRF;
- :func:`grid_search`: the cross-validation of ``w1``, ``theta_alpha``, ``theta_beta``;
- :func:`recolour_objects`: the control of the bilateral kernel's colour term (chapter 10, findings f3, f4).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .choices import is_whole
from .crf import DEEPLAB_RELEASED, CRFParams, Method, mean_field, unary_from_logits
from .metrics import ConfusionMatrix, cell_averages_upsampled, counted_labels, trimap_target
from .metrics import boundary_band  # noqa: F401 - still importable here, as chapter 07 and its student copies did
from .progress import progress_bar

__all__ = ["coarse_scores", "CRFScores", "evaluate_crf", "grid_search", "grid_edges",
           "recolour_objects"]


def coarse_scores(
    mask: torch.Tensor, num_classes: int, *, output_stride: int = 8, confidence: float = 6.0, ignore_index: int = 255
) -> torch.Tensor:
    """A stand-in for a DCNN score map: ground truth seen at ``output_stride``, bilinearly upsampled.

    The one-hot labels times ``confidence`` (logit units) are averaged over blocks of
    ``output_stride`` x ``output_stride`` pixels (what a network with that output stride can resolve
    at best; a partial block at the right or bottom edge averages its own pixels) and upsampled
    bilinearly to the mask size, every block onto its own pixels (:func:`~deeplab_edu.metrics.cell_averages_upsampled`),
    as DeepLab upsamples its stride-8 scores before the CRF (v2 Fig. 1).
    Interiors stay confident; boundaries blur and thin structures fade. An ignored pixel adds to no
    class (its one-hot is zero, and it still counts in its block's average, so scores fade near void).

    Args:
        mask: (H, W) integer labels.
        num_classes: C.
        output_stride: the block side in pixels, at least 1.
        confidence: the logit of a pixel's own class inside a block of one class.
        ignore_index: the label of ignored pixels.

    Returns:
        float32 logits (C, H, W).

    Raises:
        ValueError: ``mask`` is not a 2-D integer tensor, or holds labels outside ``[0, num_classes)`` other than
            ``ignore_index``; ``output_stride`` is not a positive int.
    """
    if not is_whole(output_stride) or output_stride < 1:
        raise ValueError(f"output_stride must be a positive int (a block side in pixels), got {output_stride!r}")
    output_stride = int(output_stride)
    if mask.dim() != 2 or mask.is_floating_point():
        raise ValueError(f"mask must be an integer label map (H, W), got {tuple(mask.shape)} {mask.dtype}")
    try:  # the confusion matrix's own check of the labels
        counted_labels(mask, mask, num_classes, ignore_index)
    except ValueError as err:
        raise ValueError(f"mask: {err}") from None
    ignored = mask == ignore_index
    labels = mask.masked_fill(ignored, 0).long()
    onehot = F.one_hot(labels, num_classes).permute(2, 0, 1).float() * confidence
    onehot[:, ignored] = 0.0
    return cell_averages_upsampled(onehot, output_stride)


@dataclass(frozen=True)
class CRFScores:
    """mIoU over a data set before/after the CRF, overall and inside the boundary band."""

    miou_before: float
    miou_after: float
    band_miou_before: float
    band_miou_after: float
    images: int

    def as_row(self) -> dict[str, float]:
        """A table row of the four mIoUs: before/after the CRF, overall and in the boundary band (not ``images``)."""
        return {
            "mIoU before": self.miou_before,
            "mIoU after": self.miou_after,
            "band mIoU before": self.band_miou_before,
            "band mIoU after": self.band_miou_after,
        }


def evaluate_crf(
    dataset: Iterable[tuple[torch.Tensor, torch.Tensor]] | Sequence[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    params: CRFParams = DEEPLAB_RELEASED,
    *,
    band_width: int = 2,
    output_stride: int = 8,
    method: Method = "approx",
    ignore_index: int = 255,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> CRFScores:
    """Refine :func:`coarse_scores` of every item with the CRF; accumulate mIoU before and after.

    DeepLab v1 Table 1 and Fig. 5 (v2 Table 3 and Fig. 10): mIoU before and after the CRF, over the
    whole image and in the trimap band. One confusion matrix per quantity is accumulated over the
    whole data set (as VOC does). The band is :func:`~deeplab_edu.metrics.trimap_target`'s of
    ``band_width``: the boundary pixels and those within ``band_width`` pixels of one (6 pixels
    across a straight change at the default 2).

    Args:
        dataset: ``(image, mask)`` items: the image (3, H, W), float in [0, 1] or uint8, *not*
            normalised (the CRF's colour kernel measures RGB differences in 0-255 units); the mask (H, W)
            integer labels.
        num_classes: C.
        params: the CRF's parameters (DeepLab's released ones by default).
        band_width: the trimap band's half-width, pixels.
        output_stride: :func:`coarse_scores`'s block side, pixels.
        method: :func:`~deeplab_edu.crf.mean_field`'s message passing.
        ignore_index: the label of ignored pixels.
        device: where the CRF runs.
        progress: show a progress bar.

    Raises:
        ValueError: ``dataset`` yields no item; ``num_classes`` is not a positive int; or, on an item, a mask fails
            the checks of :func:`coarse_scores`, ``band_width`` is negative, or the image and scores fail those of
            :func:`~deeplab_edu.crf.mean_field` (the message names the item, counted from 0).
    """
    cms = {k: ConfusionMatrix(num_classes, ignore_index) for k in ("b", "a", "bb", "ba")}
    n = 0
    items = progress_bar(dataset, desc="dense CRF", leave=False, progress=progress)
    for image, mask in items:
        try:
            logits = coarse_scores(mask, num_classes, output_stride=output_stride, ignore_index=ignore_index)
            q = mean_field(unary_from_logits(logits.to(device)), image.to(device), params, method=method)
            band_mask = trimap_target(mask, band_width, ignore_index)[None]
        except ValueError as error:  # which item: a data set's 40th image is otherwise hard to find
            raise ValueError(f"evaluate_crf: item {n} of the data set: {error}") from error
        before, after = logits.argmax(0)[None], q.argmax(0).cpu()[None]
        cms["b"].update(before, mask[None])
        cms["a"].update(after, mask[None])
        cms["bb"].update(before, band_mask)
        cms["ba"].update(after, band_mask)
        n += 1
    if n == 0:
        raise ValueError("dataset is empty")
    m = {k: cm.compute()["miou"] for k, cm in cms.items()}
    return CRFScores(m["b"], m["a"], m["bb"], m["ba"], n)


def grid_search(
    dataset: Sequence[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    *,
    w_bilateral: Sequence[float] = (3, 4, 5, 6),
    theta_alpha: Sequence[float] = (30, 50, 70, 90),
    theta_beta: Sequence[float] = (3, 5, 8, 13),
    base: CRFParams = DEEPLAB_RELEASED,
    progress: bool = True,
    **kwargs: object,
) -> tuple[CRFParams, list[tuple[CRFParams, float]]]:
    """Cross-validate ``w1``, ``theta_alpha``, ``theta_beta`` (w2 and theta_gamma fixed, as in the papers).

    DeepLab v1 sec. 5 and v2 sec. 4.1.1 search a coarse grid of these on 100 validation images, each
    grid point scored by :func:`evaluate_crf` (mIoU after the CRF).

    Args:
        dataset: items as :func:`evaluate_crf` takes them (images not normalised).
        num_classes: C.
        w_bilateral: the appearance kernel's weights to try.
        theta_alpha: its spatial bandwidths, pixels.
        theta_beta: its colour bandwidths, in 0-255 RGB units.
        base: the other parameters (w2, theta_gamma, iterations).
        progress: show a progress bar over the grid.
        **kwargs: passed on to :func:`evaluate_crf` (``band_width``, ``output_stride``, ``method``, ...).

    Returns:
        the parameters with the best mIoU after the CRF, and every (parameters, mIoU) tried.

    Raises:
        ValueError: ``dataset`` or an axis of the grid is empty, or a grid value is one
            :class:`~deeplab_edu.crf.CRFParams` refuses.
    """
    items = list(dataset)
    w_bilateral, theta_alpha, theta_beta = tuple(w_bilateral), tuple(theta_alpha), tuple(theta_beta)  # any iterable
    for name, axis in (("w_bilateral", w_bilateral), ("theta_alpha", theta_alpha), ("theta_beta", theta_beta)):
        if len(axis) == 0:  # an audit: "max() arg is an empty sequence"
            raise ValueError(f"grid_search: {name} holds no value to try")
    grid = list(itertools.product(w_bilateral, theta_alpha, theta_beta))
    results = []
    for w1, ta, tb in progress_bar(grid, desc="CRF grid search", progress=progress):
        p = base.replace(w_bilateral=float(w1), theta_alpha=float(ta), theta_beta=float(tb))
        results.append((p, evaluate_crf(items, num_classes, p, **kwargs).miou_after))  # type: ignore[arg-type]
    best = max(results, key=lambda r: r[1])[0]
    return best, results


def grid_edges(best: CRFParams | Mapping[str, float], tried: Mapping[str, Sequence[float]]) -> dict[str, str]:
    """The searched parameters whose best value lies on the edge of the grid.

    A cross-validated value that is the largest (or smallest) one tried says the search stopped
    where the grid did: a wider grid may find a better CRF, and the gain measured with it may be
    understated.

    Args:
        best: the chosen parameters (:func:`grid_search`'s first result, or a record's dict).
        tried: each searched parameter's values (``grid_search``'s keyword arguments); an axis of
            one value is not a search and is left out.

    Returns:
        ``{name: "largest" | "smallest"}`` for each parameter at an edge, in ``tried``'s order.

    Raises:
        KeyError: ``best``, a dict, has no value for a parameter of ``tried``.
        AttributeError: ``best``, a :class:`~deeplab_edu.crf.CRFParams`, has no parameter of that name.
    """
    chosen = best if isinstance(best, Mapping) else {k: getattr(best, k) for k in tried}
    edges = {}
    for name, values in tried.items():
        values = [float(v) for v in values]
        if len(set(values)) > 1:
            if float(chosen[name]) == max(values):
                edges[name] = "largest"
            elif float(chosen[name]) == min(values):
                edges[name] = "smallest"
    return edges


def recolour_objects(image: torch.Tensor, mask: torch.Tensor, per: Literal["object", "class"], *,
                     seed: int | Sequence[int] = 0, background: int = 0, ignore_index: int = 255) -> torch.Tensor:
    """``image`` with its objects' colours drawn at random: the control of the CRF's colour term.

    The bilateral kernel of the dense CRF (DeepLab v2 eq. 3) pulls pixels of like colour within
    about ``theta_alpha`` of each other towards one label. On the ``easy`` scenes every class has a
    colour family (chapter 06), so like colours also mean one class across the scene. This function
    keeps each object's outline, texture and noise and changes only its colour: every connected
    region (8 neighbours) of one class of ``mask``, other than ``background`` and ``ignore_index``,
    is shifted by a new colour minus its own mean colour (then clipped to [0, 1]). The new colours
    are drawn uniform in [0, 1]^3, independently. ``per="class"``: one colour per class present,
    which all its regions take (a class's objects look alike); ``per="object"``: one colour per
    region (they do not). Regions of different classes get independent colours either way, so
    between the two images only whether a class's regions share a colour differs: the CRF on both,
    with the same scores and parameters, measures what it gains from like-coloured objects of one
    class (chapter 10, findings f3 and f4). A partly hidden object may show as several regions, and
    touching objects of one class as one.

    Args:
        image: (3, H, W) float RGB in [0, 1] (de-normalised).
        mask: (H, W) integer class labels (the ground truth: a view made with it is a control, not a
            prediction one could deploy).
        per: ``"object"`` or ``"class"``.
        seed: seeds :func:`numpy.random.default_rng`: one seed, image and mask give one result.
        background: the class left as drawn (0 on the procedural scenes).
        ignore_index: the label of pixels left as drawn.

    Returns:
        A new (3, H, W) tensor of ``image``'s dtype and device, in [0, 1].

    Raises:
        ValueError: ``per`` is neither ``"object"`` nor ``"class"``; ``image`` is not a floating
            (3, H, W) tensor with values in [0, 1] (a normalised one, or pixels 0-255) or ``mask`` not an
            integer (H, W) one of the same H and W.

    Example:
        >>> image, mask = torch.full((3, 4, 6), 0.5), torch.tensor([[1, 1, 0, 0, 2, 2]] * 4)
        >>> out = recolour_objects(image, mask, "class")
        >>> bool((out[:, :, 2:4] == 0.5).all()), bool((out[:, :, :2] != out[:, :, 4:]).any())
        (True, True)
    """
    from scipy import ndimage

    if per not in ("object", "class"):
        raise ValueError(f"per must be 'object' or 'class', got {per!r}")
    if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
        raise ValueError(f"image must be a float RGB tensor (3, H, W), got {tuple(image.shape)} {image.dtype}")
    if mask.shape != image.shape[1:] or mask.is_floating_point():
        raise ValueError(f"mask must be an integer (H, W) tensor of the image's size {tuple(image.shape[1:])}, "
                         f"got {tuple(mask.shape)} {mask.dtype}")
    low, high = float(image.min()), float(image.max())
    if not (-1e-6 <= low and high <= 1 + 1e-6):  # an audit: 0-255 pixels were clipped to a white background
        raise ValueError(f"image must be RGB in [0, 1] (de-normalised: deeplab_edu.data.transforms.denormalize), "
                         f"got values from {low:g} to {high:g}")
    rng = np.random.default_rng(seed)
    pixels = image.detach().cpu().double().numpy()
    labels = mask.cpu().numpy()
    out = pixels.copy()
    for k in np.unique(labels):  # sorted, so the draws come in one order
        if k in (background, ignore_index):
            continue
        class_colour = rng.uniform(0.0, 1.0, 3)
        regions, count = ndimage.label(labels == k, structure=np.ones((3, 3), bool))
        for r in range(1, count + 1):
            inside = regions == r
            colour = class_colour if per == "class" else rng.uniform(0.0, 1.0, 3)
            out[:, inside] += (colour - pixels[:, inside].mean(1))[:, None]
    return torch.from_numpy(np.clip(out, 0.0, 1.0)).to(device=image.device, dtype=image.dtype)
