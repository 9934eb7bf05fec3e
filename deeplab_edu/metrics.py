"""Confusion-matrix metrics for semantic segmentation: mIoU, per-class IoU, pixel accuracy, fwIoU.

The PASCAL VOC measure used by every DeepLab paper (v1 sec. 5, v2 sec. 4, v3 sec. 4, v3+ sec. 4)
is the *mean intersection-over-union* over classes,

.. math::  \\mathrm{IoU}_c = \\frac{TP_c}{TP_c + FP_c + FN_c},\\qquad
           \\mathrm{mIoU} = \\frac{1}{|C'|} \\sum_{c \\in C'} \\mathrm{IoU}_c,

computed from one confusion matrix accumulated over the *whole* data set (not averaged per image).
:math:`C'` are the classes that occur in the ground truth or the predictions: a class absent from
both has an undefined IoU (0/0) and is left out. (The VOC development kit's ``VOCevalseg.m`` averages
over every class; each VOC class occurs in its validation set, where the two agree.) Pixels labelled
``ignore_index`` (255: object boundaries in VOC) count nowhere.

The *trimap* measure (DeepLab v1 Fig. 5, v2 Fig. 10, DeepLabv3+ Fig. 5 and sec. 4.4) scores only the
pixels in a band around object boundaries: the papers dilate VOC's 'void' annotations (the
unlabelled band along object boundaries) and score the pixels within the dilated band.
:func:`trimap_target` adapts it to label maps without such a band: it dilates the label changes,
keeps those pixels and marks the others ``ignore_index``, so the same matrix measures boundary accuracy.

In distributed evaluation each process accumulates its own matrix and :meth:`ConfusionMatrix.all_reduce`
sums them, so the metrics equal those of a single process that saw every image.
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping, Sequence, TypeVar

import numpy as np
import torch

from .choices import is_whole, require_tensor

K = TypeVar("K", bound=Hashable)

__all__ = ["ConfusionMatrix", "counted_labels", "format_iou_table", "trimap_target", "boundary_band",
           "cell_averages_upsampled", "removed_errors_by_band", "NAN_SCORES", "NAN_SCORES_CAUSE"]

#: Why scores holding NaN are refused, without fp16's part: ``argmax`` labels such a pixel class 0, so a model with
#: NaN weights scored a perfect mIoU on masks of background (an audit), where it should fail.
NAN_SCORES_CAUSE = ("the model's scores hold NaN, which argmax would label class 0 without an error: the model has "
                    "NaN weights or batch-norm statistics (a diverged training?)")
#: :data:`NAN_SCORES_CAUSE` and fp16's part, for a model of unknown training (the Trainer names fp16 only where
#: it trained in fp16).
NAN_SCORES = NAN_SCORES_CAUSE + ", or fp16 overflowed (train with amp: bf16 or none)"


def counted_labels(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                   ignore_index: int = 255) -> tuple[torch.Tensor, torch.Tensor]:
    """The predictions and targets of the pixels a confusion matrix counts (those whose target is not
    ``ignore_index``), flattened, after refusing labels it cannot count: a ``target`` outside
    ``[0, num_classes)`` other than ``ignore_index``, or a ``pred`` (same shape) outside it where the
    target is counted.

    Raises:
        ValueError: naming the first such target label, or saying the predictions are out of range; or
            ``pred`` and ``target`` differ in shape, or ``num_classes`` is below 1.
    """
    if pred.shape != target.shape:  # an audit: an IndexError of the mask's indexing
        raise ValueError(f"pred shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    keep = target != ignore_index
    target, pred = target[keep], pred[keep]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        bad = target[(target < 0) | (target >= num_classes)][0].item()
        raise ValueError(f"target holds label {bad}, outside [0, {num_classes}) and not the ignore index "
                         f"{ignore_index}")
    if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= num_classes):
        raise ValueError(f"pred holds labels outside [0, {num_classes})")
    return pred, target


class ConfusionMatrix:
    """Accumulates a (num_classes x num_classes) matrix: rows are the truth, columns the prediction.

    Args:
        num_classes: number of classes (labels ``0 .. num_classes-1``).
        ignore_index: label that is skipped (default 255).
        device: where the matrix starts; each :meth:`update` moves it to its ``target``'s device, so
            the counting happens where the labels are (``compute`` reads it on the CPU).

    >>> cm = ConfusionMatrix(2)
    >>> cm.update(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]))
    >>> round(cm.compute()["miou"], 3)
    0.25

    Raises:
        ValueError: ``num_classes`` is not an int of at least 1.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None) -> None:
        if not is_whole(num_classes) or num_classes < 1:  # NumPy ints too
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes: int = int(num_classes)
        self.ignore_index: int = ignore_index
        self.mat: torch.Tensor = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        """Start again from an empty matrix."""
        self.mat.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        """Add a batch. ``pred`` is either labels (N, H, W) or logits/probabilities (N, C, H, W);
        ``target`` integer labels (N, H, W), ``ignore_index`` where unlabelled (tensors or NumPy arrays).
        One image's scores (C, H, W) with its (H, W) labels are read so too (the class axis is then the first).

        Raises:
            ValueError: the shapes disagree, logits have another number of channels than
                ``num_classes`` or hold NaN (:data:`NAN_SCORES`), ``target`` holds labels outside
                ``[0, num_classes)`` other than ``ignore_index``, or ``pred`` holds labels outside
                ``[0, num_classes)``.
            TypeError: ``pred`` or ``target`` is neither a tensor nor a NumPy array (a PIL mask: the message says
                how to convert it); ``target``, or ``pred`` given as labels, is floating point (labels are integers:
                a float label would be cut to an integer without a word).
        """
        for name, a in (("pred", pred), ("target", target)):  # an audit: a PIL mask was "Could not infer dtype"
            if not isinstance(a, (np.ndarray, list, tuple)):
                require_tensor(a, name, "(or a NumPy array) of labels (N, H, W)", f"torch.from_numpy(numpy.array("
                               f"{name})) for a PIL mask of mode P or L (its values are the labels)")
        # NumPy arrays too, copied: a flipped view (negative strides) or a read-only np.asarray(PIL image)
        pred, target = (torch.from_numpy(np.array(a)) if isinstance(a, np.ndarray) else torch.as_tensor(a)
                        for a in (pred, target))
        if target.is_floating_point():
            raise TypeError(f"target must hold integer labels (N, H, W), got {target.dtype}: the masks' class indices, "
                            "as the data sets return them")
        if pred.dim() == target.dim() + 1:
            # one image's (C, H, W) scores: an audit's were argmax-ed over H, and scored wrong when H == C
            axis, layout = (0, "(C, H, W)") if target.dim() == 2 else (1, "(N, C, H, W)")
            if pred.shape[axis] != self.num_classes:
                raise ValueError(f"pred {tuple(pred.shape)} is read as scores {layout} for target "
                                 f"{tuple(target.shape)}, but has {pred.shape[axis]} channels where the matrix has "
                                 f"{self.num_classes} classes; labels need the target's shape")
            if pred.is_floating_point() and pred.device.type != "meta" and bool(pred.isnan().any()):
                raise ValueError(NAN_SCORES)  # an audit: argmax labels NaN class 0, and mIoU was 1.0
            pred = pred.argmax(axis)
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}")
        if pred.is_floating_point():  # a trial: labels [0.7, 1.2] were cut to [0, 1] and scored as right
            raise TypeError(f"pred of the target's shape is read as labels, which must be integers, got {pred.dtype}: "
                            "scores need a class dimension (N, C, H, W), or take their argmax(1)")
        if self.mat.device != target.device:
            self.mat = self.mat.to(target.device)
        target = target.reshape(-1).long()
        pred = pred.reshape(-1).long().to(target.device)
        pred, target = counted_labels(pred, target, self.num_classes, self.ignore_index)
        idx = target * self.num_classes + pred
        self.mat += torch.bincount(idx, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)

    def all_reduce(self) -> None:
        """Sum the matrices of every process (no-op when torch.distributed is not initialised)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.mat, op=dist.ReduceOp.SUM)

    def compute(self) -> dict[str, Any]:
        """The metrics as plain Python numbers.

        Returns:
            ``miou`` (mean over classes present in truth or prediction), ``iou`` (list, one per
            class, ``nan`` where undefined), ``pixel_accuracy``, ``fw_iou`` (IoU weighted by the
            class frequency in the truth), ``mean_accuracy`` (all fractions in [0, 1], not %),
            ``pixels`` (the number of pixels counted) and ``wrong_pixels`` (how many of them are
            predicted as another class).
        """
        m = self.mat.double().cpu()
        tp = m.diag()
        gt = m.sum(1)
        pr = m.sum(0)
        union = gt + pr - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        valid = union > 0
        total = m.sum()
        acc_c = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
        freq = gt / total if total > 0 else gt
        return {
            "miou": float(iou[valid].mean()) if valid.any() else float("nan"),
            "iou": [float(v) for v in iou],
            "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
            "mean_accuracy": float(acc_c[gt > 0].mean()) if (gt > 0).any() else float("nan"),
            "fw_iou": float((freq[valid] * iou[valid]).sum()) if total > 0 else float("nan"),
            "pixels": int(total),
            "wrong_pixels": int(total - tp.sum()),
        }


def format_iou_table(iou: Sequence[float], class_names: Sequence[str] | None = None) -> str:
    """A per-class IoU table in Markdown (percent, one decimal), with the mean on the last line.

    ``iou`` holds fractions in [0, 1] (as :meth:`ConfusionMatrix.compute` gives them; NaN: a class
    absent from both prediction and truth, shown "n/a" and left out of the mean, which is "n/a" too when
    every class is, as the mIoU is then NaN). A ``|`` in a class name
    is written ``\\|`` (and a backslash ``\\\\``), so that it stays in its cell.

    Raises:
        TypeError: ``iou`` is a mapping or a string, not one value per class (``ConfusionMatrix.compute()``'s
            whole dictionary: give its ``["iou"]``).
        ValueError: ``class_names`` is given and its length differs from that of ``iou``.
    """
    if isinstance(iou, (Mapping, str)):  # an audit: compute()'s dict was "Unknown format code 'f' ... 'str'"
        raise TypeError(f"iou must be the per-class IoU values (fractions in [0, 1]), got a {type(iou).__name__}: "
                        "give ConfusionMatrix.compute()['iou'], not the whole dictionary")
    names = list(class_names) if class_names is not None else [f"class {i}" for i in range(len(iou))]
    if len(names) != len(iou):
        raise ValueError(f"{len(names)} class names for {len(iou)} IoU values")
    lines = ["| class | IoU (%) |", "|---|---|"]
    vals = [v for v in iou if v == v]
    for name, v in zip(names, iou):
        cell = str(name).replace("\\", "\\\\").replace("|", "\\|")  # Markdown's escapes: "a|b" is one cell
        lines.append(f"| {cell} | {'n/a' if v != v else f'{100 * v:.1f}'} |")
    mean = f"{100 * sum(vals) / len(vals):.1f}" if vals else "n/a"  # no class scored: no mean (mIoU nan)
    lines.append(f"| **mean** | **{mean}** |")
    return "\n".join(lines)


def trimap_target(target: torch.Tensor, width: int, ignore_index: int = 255) -> torch.Tensor:
    """``target`` with every pixel farther than ``width`` pixels from a label boundary set to ``ignore_index``.

    A boundary pixel is one with a 4-neighbour (left, right, above, below) of another label, so both
    pixels of every label change are boundary pixels; ignored pixels count as a label. (The papers'
    trimap, v1 Fig. 5, v2 Fig. 10, v3+ sec. 4.4, dilates VOC's 'void' boundary annotations instead;
    see the module's docstring.) The band is the boundary pixels dilated by
    ``width`` (a square of side ``2 * width + 1``, i.e. chessboard distance): ``width=0`` keeps the
    boundary pixels only, and across a straight change between two labels the band is
    ``2 * width + 2`` pixels wide (``width + 1`` on each side).

    Args:
        target: (H, W) or (N, H, W) integer labels; the result has the same shape and dtype (``torch.long`` for a
            bool mask, which cannot hold ``ignore_index``).
        width: the band's half-width in pixels.

    Raises:
        TypeError: ``target`` is not a tensor (a NumPy array: ``torch.from_numpy``).
        ValueError: ``width`` is not a whole number of at least 0, ``target`` is not (H, W) or (N, H, W), or its
            dtype cannot hold ``ignore_index`` (-1 in ``uint8`` was written as 255).
    """
    require_tensor(target, "target", "of labels (H, W) or (N, H, W)")  # an audit: NumPy was an AttributeError
    if not is_whole(width) or width < 0:  # an audit: 1.5 was a TypeError of max_pool2d
        raise ValueError(f"width must be a whole number of pixels, >= 0, got {width!r}")
    if target.dim() not in (2, 3):
        raise ValueError(f"target must be (H, W) or (N, H, W) labels, got {tuple(target.shape)}")
    if target.dtype == torch.bool:  # an audit: full_like(mask, 255) is True in a bool mask, so every pixel was kept
        target = target.long()
    if not target.is_floating_point():
        held = torch.iinfo(target.dtype)
        if not held.min <= ignore_index <= held.max:
            raise ValueError(f"ignore_index {ignore_index} does not fit the target's {target.dtype} (values "
                             f"{held.min}..{held.max}): give labels of a wider dtype, e.g. target.long()")
    width = int(width)
    t = target if target.dim() == 3 else target[None]
    edge = torch.zeros_like(t, dtype=torch.bool)
    dx = t[..., :, 1:] != t[..., :, :-1]
    dy = t[..., 1:, :] != t[..., :-1, :]
    edge[..., :, 1:] |= dx
    edge[..., :, :-1] |= dx
    edge[..., 1:, :] |= dy
    edge[..., :-1, :] |= dy
    if width > 0:
        k = 2 * width + 1
        edge = torch.nn.functional.max_pool2d(edge[:, None].float(), k, stride=1, padding=width)[:, 0] > 0
    out = torch.where(edge, t, torch.full_like(t, ignore_index))
    return out if target.dim() == 3 else out[0]


def boundary_band(mask: torch.Tensor, width: int, ignore_index: int = 255) -> torch.Tensor:
    """Bool, shaped like ``mask`` ((H, W) or (N, H, W)): the trimap band of ``width`` around its label
    boundaries, the pixels :func:`trimap_target` keeps (DeepLab v1 Fig. 5, v2 Fig. 10, v3+ Fig. 5).
    Ignored pixels are left out of the band. ``width`` is in pixels, chessboard distance from the
    boundary pixels: the band reaches ``width + 1`` pixels into each side of a straight change between
    two labels, ``2 * width + 2`` across it (:func:`deeplab_edu.data.drawing.boundary_band`, which
    draws the generated scenes' bands, counts ``width`` per side instead).

    Raises:
        ValueError: ``width`` is negative.
    """
    return trimap_target(mask, width, ignore_index) != ignore_index


def cell_averages_upsampled(scores: torch.Tensor, stride: int) -> torch.Tensor:
    """What a prediction grid of stride ``stride`` keeps of a score map: (C, H, W) float ``scores`` averaged
    over ``stride x stride`` cells, upsampled bilinearly back to (C, H, W) as DeepLab upsamples its logits.

    When a side is not a multiple of ``stride``, its last cell is partial and averages the pixels it holds
    (``ceil_mode``). The upsampling spans whole cells (``cells * stride`` pixels, ``align_corners=False``) and
    is cropped to (H, W), so every cell's value lands on the centre of its own ``stride x stride`` block.
    (Stretching the ``ceil(H / stride)`` cells over H pixels instead moved them up to a cell up and left: a
    vertical edge at column 109 of a 129-pixel map came out at 99 with stride 16.)

    Raises:
        ValueError: ``scores`` is not a (C, H, W) floating-point tensor, or ``stride`` is not a whole number
            from 1.
    """
    if scores.dim() != 3 or not scores.is_floating_point():
        raise ValueError(f"scores must be a (C, H, W) float tensor, got {tuple(scores.shape)} {scores.dtype}")
    if not is_whole(stride) or stride < 1:
        raise ValueError(f"stride must be a whole number of pixels from 1, got {stride!r}")
    stride = int(stride)
    h, w = scores.shape[-2:]
    cells = torch.nn.functional.avg_pool2d(scores[None], stride, stride, ceil_mode=True, count_include_pad=False)
    whole = (cells.shape[-2] * stride, cells.shape[-1] * stride)
    up = torch.nn.functional.interpolate(cells, size=whole, mode="bilinear", align_corners=False)
    return up[0, :, :h, :w]


def removed_errors_by_band(base: Mapping[K, Mapping[str, float]],
                           variant: Mapping[K, Mapping[str, float]]) -> dict[K, dict[str, float]]:
    """Where the errors that ``variant`` removes lie: inside each trimap band, or away from boundaries.

    Comparing mIoU in a band with mIoU on the whole image does not say where a gain comes from (the
    whole image contains the band, and mIoU averages over classes). This counts pixels instead: of the
    net drop in wrong pixels from ``base`` to ``variant`` on the whole image, the share that lies in
    each band, beside the share of all pixels that the band holds. A gain spread evenly over the image
    gives two equal shares; a gain made at boundaries gives a removed share far above the pixel share.

    Args:
        base, variant: :meth:`ConfusionMatrix.compute` results (``pixels``, ``wrong_pixels``) of two
            models on the same pixels, keyed ``"all"`` for the whole image and anything else (a band
            width) for a band of it, as :func:`deeplab_edu.viz.training.band_metrics` returns them.

    Returns:
        For each band key, a dict of ``"pixels"`` (the share of the whole image's pixels in the band)
        and ``"removed"`` (the share of the net drop in wrong pixels in the band), fractions (0-1;
        ``removed`` is ``nan`` when ``variant`` gets no fewer pixels wrong than ``base``, and can leave
        [0, 1] when a band gets worse while the image gets better).

    Raises:
        ValueError: ``"all"`` is missing, the two have different keys, or they count different numbers
            of pixels in one of them (not the same images or bands).
    """
    if "all" not in base or set(base) != set(variant):
        raise ValueError(f"base and variant need the same keys, 'all' among them; got {sorted(map(str, base))} "
                         f"and {sorted(map(str, variant))}")
    for key in base:
        if base[key]["pixels"] != variant[key]["pixels"]:
            raise ValueError(f"{key!r}: base counts {base[key]['pixels']} pixels and variant {variant[key]['pixels']}; "
                             "score both models on the same images")
    all_key: Any = "all"
    drop = float(base[all_key]["wrong_pixels"]) - float(variant[all_key]["wrong_pixels"])
    total = float(base[all_key]["pixels"])
    return {key: {"pixels": float(base[key]["pixels"]) / total if total else float("nan"),
                  "removed": (float(base[key]["wrong_pixels"]) - float(variant[key]["wrong_pixels"])) / drop
                  if drop > 0 else float("nan")}
            for key in base if key != "all"}
