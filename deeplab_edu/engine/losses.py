"""Training losses: pixel-wise cross-entropy with an ignore label, auxiliary loss, hard-pixel mining.

- **Cross-entropy** over every labelled pixel, skipping ``ignore_index`` (255), as in all DeepLab
  papers (the logits are upsampled to the label size first: DeepLabv3 sec. 4.1 keeps the ground
  truth intact and upsamples the final logits instead).
- **Auxiliary loss**: torchvision's DeepLabv3 may return ``"aux"`` logits from ``layer3``; their loss
  is added with weight ``aux_weight`` (0.5 by convention, not from the papers).
- **Hard-pixel bootstrapping** (online hard example mining, Wu, Shen & van den Hengel 2016, "Bridging
  category-level and instance-level semantic image segmentation", and Pohlen et al. 2017, FRRN):
  DeepLabv3 sec. 4.3 names it and does *not* use it ("instead of performing pixel hard example
  mining as [85, 70], we resort to bootstrapping on hard images": it duplicates training images of
  hard classes). The released TensorFlow DeepLab code added it later: its
  ``train_utils.add_softmax_cross_entropy_loss_for_each_scale`` keeps the ``top_k_percent_pixels``
  largest per-pixel losses of the whole batch (ignored pixels, whose loss is 0, count in that
  fraction), optionally ramping the kept fraction from 100% down to ``top_k`` over
  ``hard_mining_iters`` iterations. :func:`bootstrapped_ce` keeps the fraction per image and over
  labelled pixels only, so an image with many unlabelled pixels keeps as many hard pixels as its
  labels allow; the ramp is the same.
- **Class weights** (median-frequency balancing, Eigen & Fergus 2015, as SegNet trained CamVid):
  each pixel's cross-entropy weighted by its class's weight
  (:func:`~deeplab_edu.data.stats.median_frequency_weights`), the sum divided by the summed
  weights, as ``F.cross_entropy(weight=...)`` averages. Not used with hard-pixel mining (two ways
  to favour some pixels at once; the configuration refuses the pair).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F

from ..choices import is_whole

__all__ = ["bootstrapped_ce", "SegmentationLoss"]


def bootstrapped_ce(logits: torch.Tensor, target: torch.Tensor, *, top_k: float = 1.0,
                    ignore_index: int = 255, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy averaged over the ``top_k`` fraction of hardest labelled pixels of each image.

    ``logits`` (N, C, h, w), upsampled bilinearly to the labels' size when it differs; ``target``
    (N, H, W) class indices of any integer dtype (uint8 masks as loaded too; computed as int64),
    ``ignore_index`` for unlabelled pixels. ``top_k=1``: the plain
    mean cross-entropy over every labelled pixel of the batch; ``top_k < 1``: the mean over images of
    each image's mean over its ``max(1, floor(top_k * n))`` hardest of ``n`` labelled pixels (the released
    code's truncation to an integer; online hard pixel mining: Wu, Shen
    & van den Hengel 2016, and Pohlen et al. 2017, FRRN; the released DeepLab code's
    ``top_k_percent_pixels``; DeepLabv3 sec. 4.3 names it and duplicates images of hard classes instead).
    A batch without a labelled pixel gives a zero that still has a graph (not NaN), so one such
    batch does not stop a run as a non-finite loss. ``weight`` (C,): a weight per class (class
    balancing); the loss is then the weighted sum over labelled pixels divided by the sum of their
    weights. Returns a float32 scalar.

    Raises:
        ValueError: ``top_k`` is not in (0, 1], or ``weight`` is given with ``top_k < 1`` or with
            another number of entries than ``logits`` has classes.
        TypeError: ``target`` is not a tensor of integers (floating point, complex or bool).
    """
    if not 0.0 < top_k <= 1.0:
        raise ValueError(f"top_k must be in (0, 1], got {top_k}")
    if weight is not None and top_k < 1.0:
        raise ValueError(f"class weights with hard-pixel mining (top_k={top_k}): use one of the two")
    if weight is not None and weight.shape != logits.shape[1:2]:
        raise ValueError(f"weight has shape {tuple(weight.shape)}: one weight per class, ({logits.shape[1]},)")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:  # an audit: uint8 targets
        raise TypeError(  # met PyTorch's "expected scalar type Long but found Byte"; these are refused, by name
            f"target must hold integer class indices (N, H, W), got dtype {target.dtype}: resize masks with "
            "nearest-neighbour interpolation and pass target.long() (a bool mask: target.long(), labels 0 and 1)")
    target = target.long()
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    if top_k == 1.0:  # F.cross_entropy's mean is NaN when every pixel is ignored: divide by at least 1
        if weight is not None:  # the weighted mean; no host sync (a batch with no labelled pixel: 0 / eps = 0)
            weight = weight.to(device=logits.device, dtype=torch.float32)
            total = F.cross_entropy(logits.float(), target, weight=weight, ignore_index=ignore_index, reduction="sum")
            labelled = target != ignore_index
            return total / (weight[target.masked_fill(~labelled, 0)] * labelled).sum().clamp(min=1e-12)
        total = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
        return total / (target != ignore_index).sum().clamp(min=1)
    pixel = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none").flatten(1)
    valid = (target != ignore_index).flatten(1)
    losses = []
    for row, keep in zip(pixel, valid):
        n = int(keep.sum())
        if n == 0:
            continue
        k = max(1, math.floor(top_k * n))
        losses.append(torch.topk(row[keep], k, sorted=False).values.mean())
    if not losses:  # a batch with no labelled pixel: a zero that still has a graph
        return pixel.sum() * 0.0
    return torch.stack(losses).mean()


class SegmentationLoss(torch.nn.Module):
    """The training loss: (bootstrapped) cross-entropy on ``out`` plus ``aux_weight`` x that on ``aux``.

    Args:
        ignore_index: label to skip.
        aux_weight: weight of the auxiliary head's loss (used only when the model returns ``aux``).
        top_k: fraction of hardest pixels kept (1.0: no hard-pixel mining).
        hard_mining_iters: iterations over which the kept fraction ramps from 1.0 to ``top_k``
            (0: use ``top_k`` from the start). Call :meth:`set_iteration` every step.
        class_weights: a loss weight per class, shape (C,) (e.g.
            :func:`~deeplab_edu.data.stats.median_frequency_weights`); ``None``: every pixel alike.

    Raises:
        ValueError: ``top_k`` is not in (0, 1]; ``aux_weight`` is negative or not finite; ``hard_mining_iters`` is
            not a whole number of at least 0; ``class_weights`` come with ``top_k < 1``, are not one
            dimension, or hold a negative or non-finite weight (a count of logits' classes is checked by
            :meth:`forward`).
    """

    def __init__(self, ignore_index: int = 255, aux_weight: float = 0.5, top_k: float = 1.0,
                 hard_mining_iters: int = 0, class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        if not 0.0 < top_k <= 1.0:
            raise ValueError(f"top_k must be in (0, 1], got {top_k}")
        if not 0.0 <= aux_weight < math.inf:  # an audit: aux_weight=-1 cancelled the loss to 0 (NaN: every comparison
            raise ValueError(f"aux_weight must be a finite weight of at least 0, got {aux_weight}")  # is false)
        if not is_whole(hard_mining_iters) or hard_mining_iters < 0:
            raise ValueError(f"hard_mining_iters must be a whole number of iterations, at least 0, got {hard_mining_iters!r}")
        if class_weights is not None and top_k < 1.0:
            raise ValueError(f"class_weights with hard-pixel mining (top_k={top_k}): use one of the two")
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        if weights is not None and (weights.dim() != 1 or not bool(torch.isfinite(weights).all())
                                    or bool((weights < 0).any())):
            raise ValueError(f"class_weights must be one finite, non-negative weight per class, shape (C,); "
                             f"got shape {tuple(weights.shape)}: {weights.tolist()}")
        self.class_weights: torch.Tensor | None
        self.register_buffer("class_weights", weights, persistent=False)
        self.ignore_index, self.aux_weight = ignore_index, aux_weight
        self.top_k, self.hard_mining_iters = top_k, hard_mining_iters
        self.iteration = 0

    def set_iteration(self, iteration: int) -> None:
        """Set the training iteration by which :meth:`current_top_k` ramps the kept fraction."""
        self.iteration = iteration

    def current_top_k(self) -> float:
        """The kept fraction at the current iteration."""
        if self.hard_mining_iters <= 0 or self.iteration >= self.hard_mining_iters:
            return self.top_k
        ratio = self.iteration / self.hard_mining_iters
        return 1.0 - ratio * (1.0 - self.top_k)

    def forward(self, outputs: Mapping[str, torch.Tensor] | torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss, a scalar tensor, of ``outputs`` against ``target`` (N, H, W) class indices (any integer dtype).

        ``outputs`` is ``{"out": (N, C, h, w)}`` (optionally with ``"aux"``) or the ``"out"`` logits alone; logits of
        another size than ``target`` are upsampled bilinearly first.

        Raises:
            ValueError: ``class_weights`` has another number of entries than the logits have classes, C
                (:func:`bootstrapped_ce`).
            TypeError: ``target`` is not a tensor of integers (:func:`bootstrapped_ce`).
        """
        if isinstance(outputs, torch.Tensor):
            outputs = {"out": outputs}
        k = self.current_top_k()
        loss = bootstrapped_ce(outputs["out"], target, top_k=k, ignore_index=self.ignore_index,
                               weight=self.class_weights)
        if "aux" in outputs and self.aux_weight:
            loss = loss + self.aux_weight * bootstrapped_ce(outputs["aux"], target, top_k=k,
                                                            ignore_index=self.ignore_index, weight=self.class_weights)
        return loss
