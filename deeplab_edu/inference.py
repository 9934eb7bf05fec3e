"""Inference strategies of DeepLabv3, sliding windows, and evaluation of a trained model.

DeepLabv3 (sec. 4.2-4.3; "Inference strategy on the val set": Table 4 for the cascaded model,
Table 6 for the ASPP model, 77.21% -> 78.51% (OS 8) -> 79.45% (+MS) -> 79.77% (+Flip)) improves a trained model *at test time* with

- **output stride 8** instead of 16 (denser features; :meth:`~deeplab_edu.models.deeplab.DeepLab.set_output_stride`),
- **multi-scale inputs** (MS): the image is resized by each of the scales
  ``{0.5, 0.75, 1.0, 1.25, 1.5, 1.75}``, the logits of every scale are resized back to the image
  size (bilinearly), turned into class probabilities (softmax) and *averaged*, as the official code's
  ``predict_labels_multi_scale`` does,
- **left-right flipping** (Flip): the flipped image is added to the inputs and its prediction flipped
  back before averaging.

Images larger than the training crop can be evaluated in overlapping **sliding windows** of the crop
size (logits averaged where windows overlap), the way large Cityscapes images are often handled.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .choices import is_whole, require_tensor
from .data.io import labels_outside
from .metrics import NAN_SCORES, ConfusionMatrix
from .models.backbones import at_output_stride

__all__ = [
    "PAPER_SCALES", "Strategy", "TABLE6_STRATEGIES", "eval_mode", "unwrap_out", "model_logits", "sliding_window_logits",
    "predict_probs", "predict",
    "evaluate", "load_model", "load_run", "run_from_checkpoint", "LoadedRun", "prediction_gallery", "error_map", "BAND_COLOUR",
    "ERRORS_TITLE",
]

#: The input scales of DeepLabv3's multi-scale inference (sec. 4.2, used for Tables 4 and 6).
PAPER_SCALES: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def _whole_or_none(value: Any) -> bool:
    """``value`` is ``None`` or a whole number (a NumPy integer too; ``True`` is not one)."""
    return value is None or is_whole(value)


@dataclass(frozen=True)
class Strategy:
    """How to predict (DeepLabv3 sec. 4.2-4.3): input scales, flip, output stride, sliding windows.

    Attributes:
        scales: input scale factors; the class probabilities of all scales are averaged (``(1.0,)``:
            single scale; :data:`PAPER_SCALES` for the paper's multi-scale inference).
        flip: add the left-right flipped input (its prediction flipped back) to the average.
        output_stride: evaluate at this output stride (8, 16 or 32; checked when the model is
            switched, not here); ``None`` leaves the model's.
        crop_size: predict in overlapping windows of this side, pixels (:func:`sliding_window_logits`);
            ``None``: the whole image at once.

    Raises:
        ValueError: no scale, a scale that is not positive and finite, or a ``crop_size`` below 1 pixel.
        TypeError: ``scales`` is not a sequence of numbers, ``flip`` is not a bool, or ``output_stride`` or
            ``crop_size`` is not a whole number (as :func:`sliding_window_logits`).
    """

    scales: Sequence[float] = (1.0,)  # kept as a tuple of floats (a list given is converted)
    flip: bool = False
    output_stride: int | None = None
    crop_size: int | None = None

    def __post_init__(self) -> None:
        scales = self.scales
        if isinstance(scales, (np.ndarray, torch.Tensor)):
            scales = scales.tolist()
        if isinstance(scales, (str, bytes)) or not isinstance(scales, Iterable):
            raise TypeError(f"scales must be a sequence of positive finite numbers, e.g. (1.0,) or (0.5, 1.0, 1.5), "
                            f"got {scales!r}")
        scales = tuple(scales)  # a list is kept as a tuple: the strategy stays hashable
        if not all(isinstance(s, numbers.Real) and not isinstance(s, bool) for s in scales):
            raise TypeError(f"scales must be positive finite numbers, got {scales}")
        if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
            raise ValueError(f"scales must be positive finite numbers, got {scales}")
        object.__setattr__(self, "scales", tuple(float(s) for s in scales))
        if not isinstance(self.flip, (bool, np.bool_)):  # a trial: flip="no" is truthy, and flipped
            raise TypeError(f"flip must be True or False, got {self.flip!r}")
        object.__setattr__(self, "flip", bool(self.flip))
        for name in ("output_stride", "crop_size"):  # crop_size=64.5 failed later as "slice indices must be integers"
            if not _whole_or_none(getattr(self, name)):
                raise TypeError(f"{name} must be a whole number (or None), got {getattr(self, name)!r}")
        if self.crop_size is not None and self.crop_size < 1:
            raise ValueError(f"crop_size must be at least 1 pixel (or None: the whole image), got {self.crop_size}")

    @property
    def label(self) -> str:
        """A short name, e.g. ``"OS 8 + MS + Flip"`` (the row labels of DeepLabv3's Table 6)."""
        parts = [f"OS {self.output_stride}" if self.output_stride else "", "MS" if len(self.scales) > 1 else "",
                 "Flip" if self.flip else ""]
        return " + ".join(p for p in parts if p) or "single scale"


#: The rows of DeepLabv3's inference-strategy table for the ASPP model (Table 6: eval output stride,
#: multi-scale, flip; 77.21 -> 78.51 -> 79.45 -> 79.77 % on VOC 2012 val).
TABLE6_STRATEGIES: dict[str, Strategy] = {
    "OS 16": Strategy(output_stride=16),
    "OS 8": Strategy(output_stride=8),
    "OS 8 + MS": Strategy(scales=PAPER_SCALES, output_stride=8),
    "OS 8 + MS + Flip": Strategy(scales=PAPER_SCALES, flip=True, output_stride=8),
}


def unwrap_out(output: Mapping[str, Any] | torch.Tensor) -> torch.Tensor:
    """The tensor a model (or backbone) returned: ``output["out"]`` where it returns torchvision's
    ``{"out": ...}`` (any mapping: a dict, an OrderedDict), else ``output`` itself, as it is
    (logits (N, C, h, w) for a segmentation model, features for a backbone).

    >>> unwrap_out({"out": torch.zeros(1, 3, 4, 4), "aux": torch.ones(1)}).shape
    torch.Size([1, 3, 4, 4])

    Raises:
        ValueError: ``output`` is a mapping without ``"out"`` (the message names its keys).
    """
    if not isinstance(output, Mapping):
        return output
    if "out" not in output:
        raise ValueError(f"the model returns a mapping without 'out' (keys: {', '.join(map(str, output))}); return "
                         "the logits tensor, or {'out': logits} as torchvision's segmentation models do")
    return output["out"]


def model_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The float32 logits (N, C, h, w) of ``model(x)``, ``x`` (N, 3, H, W): its ``"out"`` where it returns
    torchvision's ``{"out": ...}`` (any mapping), else the tensor it returns; at the model's own output size
    (:func:`unwrap_out`).

    Raises:
        ValueError: the model returns a mapping without ``"out"``.
    """
    return unwrap_out(model(x)).float()


def sliding_window_logits(model: nn.Module, image: torch.Tensor, crop_size: int,
                          stride: int | None = None) -> torch.Tensor:
    """Logits (N, C, H, W) of an (N, 3, H, W) image from overlapping ``crop_size`` windows.

    Windows of ``crop_size`` x ``crop_size`` pixels start every ``stride`` pixels (default: two
    thirds of the crop) and the last row and column of windows end at the image's edge; an image
    smaller than the crop is zero-padded at the bottom and right first (the padding is cut off
    again). Logits of overlapping windows are averaged (summed into one (N, C, H, W) tensor, divided in
    place by the count: no second full-size copy). ``model(x)`` may return a tensor or
    torchvision's ``{"out": ...}``, at its input's size. The model runs in its current mode with
    autograd on: use :func:`eval_mode` and ``torch.no_grad()``, or :func:`predict_probs` with a
    ``crop_size``, which do both.

    Raises:
        ValueError: ``image`` is not 4-dimensional, ``crop_size`` / ``stride`` is below 1, or ``stride`` is
            larger than ``crop_size`` (pixels between windows would be covered by none).
        TypeError: ``crop_size`` or ``stride`` is not a whole number.
    """
    if image.dim() != 4:
        raise ValueError(f"image must be (N, 3, H, W), got shape {tuple(image.shape)}")
    for name, value in (("crop_size", crop_size), ("stride", stride)):
        if not _whole_or_none(value):
            raise TypeError(f"{name} must be a whole number of pixels, got {value!r}")
    crop_size, stride = int(crop_size), None if stride is None else int(stride)
    if crop_size < 1 or (stride is not None and stride < 1):
        raise ValueError(f"crop_size={crop_size} and stride={stride} must be at least 1 pixel")
    if stride is not None and stride > crop_size:  # rows between two windows no window covers: their logits NaN
        raise ValueError(f"stride={stride} is larger than crop_size={crop_size}: the pixels between two windows "
                         "would get no logits; use a stride of at most the crop (default: two thirds of it)")
    n, _, h, w = image.shape
    stride = stride or max(1, (2 * crop_size) // 3)
    ph, pw = max(crop_size - h, 0), max(crop_size - w, 0)
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph))
    H, W = image.shape[-2:]
    rows = [min(r * stride, H - crop_size) for r in range(math.ceil(max(H - crop_size, 0) / stride) + 1)]
    cols = [min(c * stride, W - crop_size) for c in range(math.ceil(max(W - crop_size, 0) / stride) + 1)]
    total: torch.Tensor | None = None
    count = torch.zeros(1, 1, H, W, device=image.device)
    for r in sorted(set(rows)):
        for c in sorted(set(cols)):
            logits = model_logits(model, image[..., r:r + crop_size, c:c + crop_size])
            if total is None:
                total = torch.zeros(n, logits.shape[1], H, W, device=image.device)
            total[..., r:r + crop_size, c:c + crop_size] += logits
            count[..., r:r + crop_size, c:c + crop_size] += 1
            del logits  # before the next window's forward pass: one window's scores alive at a time
    assert total is not None
    return total.div_(count)[..., :h, :w]  # in place: a second (N, C, H, W) copy is no smaller for a window


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block with ``model`` in evaluation mode (batch norm uses its running statistics and does
    not update them; dropout is off), then restore the mode it had, also when the block raises.
    A plain function (e.g. a wrapper around an exported program) passes through unchanged."""
    if not isinstance(model, nn.Module):
        yield model
        return
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def _rescale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` (N, C, H, W) resized bilinearly by ``scale``, each side rounded down but kept at least 1 pixel
    (a 1-pixel strip at scale 0.5 would otherwise have no pixels left), antialiased when it shrinks, as
    training's random scaling is (:class:`~deeplab_edu.data.transforms.RandomScale`).

    Resized *to that size*, not by the factor: the logits are resized back to the image's size, and the
    two mappings cancel only when both use the sides' true ratio (by the factor, a 375-pixel side at 0.5 is
    mapped as if 187 were 187.5 pixels, and its labels came back shifted by up to a pixel: an audit).

    The result has ``x``'s dtype; a float16/bfloat16 ``x`` is shrunk in float32 and cast back (PyTorch's
    antialiased resize is not implemented for them on CPU: a half-precision model's multi-scale prediction
    raised)."""
    size = tuple(max(1, int(d * scale)) for d in x.shape[-2:])
    antialias = scale < 1
    if antialias and x.dtype in (torch.float16, torch.bfloat16):
        return F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=True).to(x.dtype)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias)


def _checked_image(image: torch.Tensor) -> torch.Tensor:
    """``image`` as (N, 3, H, W), after :func:`predict_probs`'s checks (it raises what that function documents).

    It warns (once per line calling :func:`predict_probs`, :func:`predict` or :func:`evaluate`, which call it
    themselves: stacklevel 4 passes this function, theirs and their ``no_grad`` wrapper, so call it from nowhere
    else) when ``image`` lies in [0, 1], or holds 0-255 pixel values: a photo as loaded, not normalised; the model
    then predicts poorly without an error. A normalised photo has negative values (its mean removed).
    """
    if not isinstance(image, torch.Tensor):  # a trial: "'numpy.ndarray' object has no attribute 'dim'"
        raise TypeError(f"image must be a tensor (3, H, W) or (N, 3, H, W), got {type(image).__name__}; from a NumPy "
                        "(H, W, 3) uint8 array: normalize(torch.from_numpy(a).permute(2, 0, 1) / 255) "
                        "(deeplab_edu.data.transforms.normalize)")
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4:
        raise ValueError(f"image should be (3, H, W) or (N, 3, H, W), got {tuple(image.shape)}")
    if image.shape[1] != 3 and image.shape[-1] == 3:  # a trial: torchvision's model said "got 33 channels"
        raise ValueError(f"image should be (N, 3, H, W), got {tuple(image.shape)}: its colours come last (a NumPy or "
                         "PIL layout); image.permute(0, 3, 1, 2) puts them first")
    if not image.is_floating_point():  # checked here for any model, not only this package's
        raise TypeError(f"image must be floating point and normalised as in training, got {image.dtype}: "
                        "normalize(image.float() / 255) (deeplab_edu.data.transforms.normalize)")
    if image.device.type != "meta" and not bool(torch.isfinite(image).all()):
        raise ValueError("image holds NaN or infinite values (a failed normalisation, a division by zero?): "
                         "the model would label every pixel alike without an error")
    if image.device.type == "meta" or not image.numel():
        return image
    low, high = float(image.min()), float(image.max())
    if low >= 0 and high <= 1:
        warnings.warn("the image is in [0, 1], not normalised: the models expect ImageNet's mean and std removed, "
                      "as in training; pass deeplab_edu.data.transforms.normalize(image)", stacklevel=4)
    elif low >= 0 and high > 10:  # a practitioner's trial: float pixels 0-255 were predicted from without a word
        warnings.warn(f"the image holds values from {low:g} to {high:g}, pixels in 0-255 rather than normalised: the "
                      "models expect ImageNet's mean and std removed, as in training; pass "
                      "deeplab_edu.data.transforms.normalize(image / 255)", stacklevel=4)
    return image


def _views_logits(model: nn.Module, image: torch.Tensor, strategy: Strategy) -> Iterator[tuple[torch.Tensor, bool]]:
    """For each input the strategy makes of ``image`` (N, 3, H, W) (each scale, of the image and, with ``flip``,
    of its mirror image): the logits (N, C, H, W), resized to the image's size, and whether the input was flipped
    (its logits are not flipped back). One view at a time: each is dropped before the next is computed.

    Raises:
        ValueError: the model gives one score per pixel (``num_classes=1``).
    """
    h, w = image.shape[-2:]
    for x0, flipped in [(image, False)] + ([(image.flip(-1), True)] if strategy.flip else []):
        for s in strategy.scales:
            x = x0 if s == 1.0 else _rescale(x0, s)
            if strategy.crop_size and max(x.shape[-2:]) > strategy.crop_size:
                logits = sliding_window_logits(model, x, strategy.crop_size)
            else:
                logits = model_logits(model, x)
            if logits.shape[1] == 1:  # a trial: the softmax of one score is 1, and every label 0
                raise ValueError("the model gives one score per pixel (num_classes=1): its softmax is 1 "
                                 "everywhere; threshold torch.sigmoid(model(x)['out']) for a one-output model, or "
                                 "build it with num_classes=2 (background and object) for this package")
            if logits.shape[-2:] != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            yield logits, flipped
            del logits  # before the next view's forward pass: one view's scores alive at a time


#: Elements (class scores) of one band of rows that :func:`predict_probs` turns into probabilities at a time:
#: 2**24 float32, 64 MiB, instead of a whole third (N, C, H, W) copy beside the average and the logits.
_BAND_ELEMENTS = 2 ** 24


def _softmax_nan(scores: torch.Tensor) -> bool:
    """Whether the softmax over dim 1 of ``scores`` (N, C, H, W; logits or probabilities) holds NaN: a pixel whose
    largest score is NaN, +inf or -inf (``amax`` keeps NaN), read without a full-size copy; ``False`` on the meta
    device."""
    return scores.device.type != "meta" and not bool(torch.isfinite(scores.amax(1)).all())


@torch.no_grad()
def predict_probs(model: nn.Module, image: torch.Tensor, strategy: Strategy = Strategy()) -> torch.Tensor:
    """Class probabilities (N, C, H, W) averaged over the strategy's scales (and flips).

    ``image`` is (3, H, W) or (N, 3, H, W), float, **normalised as in training** (ImageNet mean and
    std: :func:`deeplab_edu.data.transforms.normalize` of an image in [0, 1] such as
    :func:`deeplab_edu.data.io.load_image` returns; the data sets' ``eval_transform`` does it). The
    model's output stride is switched for the call when ``strategy.output_stride`` is set, and
    restored afterwards; the model runs in evaluation mode (:func:`eval_mode`) without autograd
    (``torch.no_grad``: 12 passes of the multi-scale, flipped strategy keep no graph), on the device it
    is on, which must be ``image``'s. DeepLabv3 sec. 4.2-4.3 (multi-scale and flipped inputs: each
    scale's logits resized to (H, W), then softmax, the probabilities averaged).

    Memory: besides the network's activations, the running sum of the probabilities and one view's logits,
    two (N, C, H, W) float32 tensors at the image's size (4 bytes per class and pixel each), the softmax
    being taken a band of rows at a time. :func:`predict`, which needs only the labels, keeps one.

    Raises:
        ValueError: ``image`` is not 3- or 4-dimensional, has its 3 colours last, or holds NaN or infinite values,
            the model's scores hold NaN (:data:`~deeplab_edu.metrics.NAN_SCORES`), the model gives one score per pixel (``num_classes=1``: a softmax of one class is 1), or
            ``strategy.output_stride`` is set and the model cannot run at it
            (:func:`~deeplab_edu.models.backbones.at_output_stride`: no ``set_output_stride``, or a stride
            its backbone cannot give). :class:`Strategy` checks
            its scales and crop size when it is made.
        TypeError: ``image`` is not a tensor (a NumPy array, say; the message says how to convert it) or not
            floating point (uint8 pixels).
    """
    image = _checked_image(image)
    return _averaged_probs(model, image, strategy)


def _averaged_probs(model: nn.Module, image: torch.Tensor, strategy: Strategy) -> torch.Tensor:
    """:func:`predict_probs` of an image it has checked, (N, 3, H, W); raises as it."""
    with eval_mode(model), at_output_stride(model, strategy.output_stride):
        probs: torch.Tensor | None = None
        views = 0
        for logits, flipped in _views_logits(model, image, strategy):
            probs = torch.zeros_like(logits) if probs is None else probs
            n, c, _, w = logits.shape
            rows = max(1, _BAND_ELEMENTS // max(1, n * c * w))
            for top in range(0, logits.shape[-2], rows):  # each band's softmax added to the sum where it belongs
                p = logits[..., top:top + rows, :].softmax(1)
                probs[..., top:top + rows, :] += p.flip(-1) if flipped else p
            views += 1
            del logits  # (the generator drops its own reference too)
        assert probs is not None
        if _softmax_nan(probs):
            raise ValueError(NAN_SCORES)  # an audit: a model of NaN weights was scored a perfect mIoU
        return probs.div_(views)


def _labels(model: nn.Module, image: torch.Tensor, strategy: Strategy) -> tuple[torch.Tensor, int]:
    """:func:`predict`'s label maps (N, H, W) of an image it has checked, (N, 3, H, W), and the number of classes
    the model scores; raises as :func:`predict_probs`.

    With one scale and no flip the labels are the argmax of the logits, whose order the softmax keeps (the
    same maps up to float rounding, without the probabilities' full-size copies); else of :func:`predict_probs`.
    """
    if len(strategy.scales) > 1 or strategy.flip:
        probs = _averaged_probs(model, image, strategy)
        return probs.argmax(1), probs.shape[1]
    with eval_mode(model), at_output_stride(model, strategy.output_stride):
        ((logits, _),) = _views_logits(model, image, strategy)
        if _softmax_nan(logits):  # where predict_probs's softmax would be NaN
            raise ValueError(NAN_SCORES)
        return logits.argmax(1), logits.shape[1]


@torch.no_grad()
def predict(model: nn.Module, image: torch.Tensor, strategy: Strategy = Strategy()) -> torch.Tensor:
    """Label map(s) (N, H, W), int64, for ``image`` with ``strategy``: the argmax of :func:`predict_probs`.

    ``image`` must be normalised as in training (see :func:`predict_probs`); an image in [0, 1]
    gives poor predictions, with a warning. With an image file, ``x = normalize(load_image("photo.jpg"))``
    (:func:`~deeplab_edu.data.io.load_image`, :func:`~deeplab_edu.data.transforms.normalize`); here a
    random image and an untrained model:

    >>> from deeplab_edu.data.transforms import normalize
    >>> from deeplab_edu.models import build_model
    >>> model = build_model("deeplabv3", backbone="tiny_resnet", num_classes=3)
    >>> x = normalize(torch.rand(3, 50, 70))                    # (3, H, W), as load_image gives
    >>> labels = predict(model, x, Strategy(scales=(0.75, 1.0), flip=True))
    >>> labels.shape, labels.dtype, int(labels.max()) < 3        # (N, H, W): one label per pixel
    (torch.Size([1, 50, 70]), torch.int64, True)

    With one scale and no flip it takes the argmax of the logits themselves (the softmax keeps their order):
    the same labels, with one (N, C, H, W) float32 copy of the class scores at the image's size instead of
    three (a 150-class model on a 1008 x 756 photo: 0.46 GB each). Sliding windows (``strategy.crop_size``,
    the command line's ``--crop-size``) make the network's activations smaller, not these per-class maps.

    Raises:
        ValueError: as :func:`predict_probs` (an image that is not 3- or 4-D, has its colours last or is not
            finite, NaN scores, a model with one output channel, an output stride the model cannot take).
        TypeError: ``image`` is not a tensor, or not floating point (as :func:`predict_probs`).
    """
    image = _checked_image(image)
    return _labels(model, image, strategy)[0]


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Sequence[tuple[torch.Tensor, torch.Tensor]] | Any,
             strategy: Strategy = Strategy(), *, num_classes: int | None = None, ignore_index: int = 255,
             device: torch.device | str | None = None, limit: int | None = None,
             progress: bool = True, batch_size: int = 1, num_workers: int | None = 0) -> dict[str, Any]:
    """Confusion-matrix metrics of ``model`` on ``dataset`` (items ``(image, mask)``) with ``strategy``.

    Args:
        model: a segmentation model returning logits or ``{"out": logits}``; put in eval mode for the
            call (its mode is restored afterwards).
        dataset: a map-style data set (``len`` and ``dataset[i]``) of ``(image (3, H, W), mask (H, W))``,
            images normalised as in training.
        strategy: scales, flip, output stride and sliding windows (:class:`Strategy`).
        num_classes: defaults to ``dataset.num_classes``.
        ignore_index: the mask label that is not scored (255).
        device: where to run, which must be the model's device (``None``: the model's device).
        limit: evaluate only the first ``limit`` items.
        progress: show a progress bar (tqdm).
        batch_size: images per forward pass; the images of a batch are grouped by size and never
            resized or padded (:func:`deeplab_edu.engine.data.collate_same_size`), so the metrics do not
            depend on it. Multi-scale + flip multiplies the memory a batch needs.
        num_workers: DataLoader worker processes that load the images (one thread each;
            ``None``: from the machine's cores, :func:`deeplab_edu.engine.workers.default_num_workers`).

    Returns:
        :meth:`~deeplab_edu.metrics.ConfusionMatrix.compute`'s metrics (``miou``, ``iou``, ``pixel_accuracy``,
        ``fw_iou``...), fractions in [0, 1].

    Raises:
        ValueError: ``num_classes`` is missing or differs from the classes the model scores, the data
            set is empty, ``device`` is not the model's, ``limit`` is below 1, ``batch_size`` or
            ``num_workers`` is invalid, a mask holds a label outside ``[0, num_classes)`` other than
            ``ignore_index``, is of a floating-point type or of another size than its image (the message
            names the items), an item's image is not 3-D or its mask not 2-D, an image is not finite, the model's scores hold NaN (NaN weights:
            :data:`~deeplab_edu.metrics.NAN_SCORES`), or ``strategy.output_stride`` cannot be applied to
            the model; the model has no parameters (its device is read from them).
        TypeError: an item is not a pair of an image and a mask (a dict, a triple); an image is not floating point
            (uint8 pixels, say: normalise them as in training, :func:`predict_probs`); ``limit`` is not a whole
            number.
    """
    from .progress import progress_bar

    from .engine.data import eval_loader
    from .engine.workers import naming_a_stall

    if num_classes is None:  # (not `or`: an audit's num_classes=0 was replaced by the data set's)
        num_classes = getattr(dataset, "num_classes", None)
    if num_classes is None:
        raise ValueError("num_classes is needed (the dataset has no num_classes attribute)")
    if limit is not None and not is_whole(limit):  # an audit: limit=1.0 failed in range() with a raw TypeError
        raise TypeError(f"limit must be a whole number of images (or None: all of them), got {limit!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 image (or None: all of them), got {limit}")
    weight = next(model.parameters(), None)
    if weight is None:
        raise ValueError("evaluate reads the model's device from its parameters, and this model has none")
    on = weight.device
    device = torch.device(device) if device else on
    if (device.type, device.index or 0) != (on.type, on.index or 0):
        raise ValueError(f"device={str(device)!r} but the model is on {on}: move it first (model.to(device))")
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise ValueError("the data set is empty: there is nothing to evaluate (every metric would be NaN)")
    loader = eval_loader(dataset, batch_size=batch_size, num_workers=num_workers, sampler=range(n),  # type: ignore[arg-type]
                         device=device)
    cm = ConfusionMatrix(num_classes, ignore_index, device=device)
    # at the strategy's output stride for the whole loop: a stride the model cannot run at fails here,
    # before the progress bar and the first image
    scored = 0
    batches = naming_a_stall(loader, lambda: f"after {scored} of the {n} images", "`deeplab-edu check-data` reads "
                             "every file of a data set and names those it cannot read")
    # closing: an error in the loop (a kept one, in a notebook) leaves no paused generator holding the workers
    with contextlib.closing(batches), at_output_stride(model, strategy.output_stride), \
            progress_bar(total=n, desc=f"eval {strategy.label}", progress=progress, leave=False) as bar:
        for k, same_size_batches in enumerate(batches):
            # which items a message names: the loaded batch's (grouped by size within it, each group in order)
            first, last = k * batch_size, min((k + 1) * batch_size, n) - 1
            items = f"item {first}" if first == last else f"items {first} to {last}"
            for batch in same_size_batches:
                images, masks = _image_mask_pairs(batch, items)
                if masks.is_floating_point():  # a trial: 1.7 was scored as class 1, without a word
                    raise ValueError(f"the masks of {items} are {masks.dtype}: a mask holds class indices, integers "
                                     f"(int64; {ignore_index} for ignored pixels); convert it with mask.long() if its "
                                     "values are whole numbers")
                if masks.shape[-2:] != images.shape[-2:]:  # before the forward pass it would waste
                    raise ValueError(f"{items}: the image is {tuple(images.shape[-2:])} (H, W) but its mask "
                                     f"{tuple(masks.shape[-2:])}: a mask labels every pixel of its image")
                if bad := labels_outside(masks, num_classes, ignore_index):  # metrics' message named no item
                    raise ValueError(f"{items}: a mask holds label {bad[0]}, outside [0, {num_classes}) "
                                     f"and not the ignore index {ignore_index}: pass the data set's num_classes, or "
                                     f"mark such pixels {ignore_index} (`deeplab-edu check-data` lists the labels)")
                # in eval mode; predict's labels: no probabilities at full size where they are not averaged
                images = _checked_image(images.to(device, non_blocking=True))  # and warns if not normalised
                labels, scored_classes = _labels(model, images, strategy)
                if scored_classes != num_classes:
                    raise ValueError(f"the model scores {scored_classes} classes, the data set has {num_classes}: "
                                     "evaluate a model trained on this data set's classes (or pass num_classes)")
                cm.update(labels, masks.to(device, non_blocking=True))
                bar.update(len(images))
                scored += len(images)
    return cm.compute()


def _image_mask_pairs(batch: Any, items: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (N, 3, H, W) and masks (N, H, W) of a collated ``batch`` of :func:`evaluate`'s data set
    ``items`` (named in the messages), after checking that each item was a pair of an image (3, H, W) and a mask
    (H, W): a dict item failed with "'str' object has no attribute ...", a triple with "too many values to
    unpack", and an (H, W) image was reported as (1, 1, H, W) (a census).

    Raises:
        TypeError: the items are not pairs of tensors (arrays).
        ValueError: an image is not 3-D or a mask not 2-D (the message gives the shape of the item).
    """
    form = "evaluate's data set items must be (image (3, H, W), mask (H, W)) pairs"
    if isinstance(batch, Mapping):
        raise TypeError(f"{form}; {items} are mappings (keys {', '.join(map(repr, batch))}): wrap the data set so "
                        "that it returns (item['image'], item['mask'])")
    if not isinstance(batch, (list, tuple)) or len(batch) != 2:
        got = f"{len(batch)} values each" if isinstance(batch, (list, tuple)) else type(batch).__name__
        raise TypeError(f"{form}; {items} are {got}: return (image, mask) alone")
    images, masks = batch
    if not isinstance(images, torch.Tensor) or not isinstance(masks, torch.Tensor):
        raise TypeError(f"{form} of tensors (or arrays); {items} hold {type(images).__name__} and "
                        f"{type(masks).__name__}")
    if images.dim() != 4 or masks.dim() != 3:  # the batch's first dimension: the items'
        raise ValueError(f"{form}; {items}: the image is {tuple(images.shape[1:])} and the mask "
                         f"{tuple(masks.shape[1:])}")
    return images, masks


class LoadedRun(NamedTuple):
    """What :func:`load_run` returns."""

    model: nn.Module
    config: dict[str, Any]
    model_info: dict[str, Any]


# the fields' documentation, once, where help() and Sphinx both read it (not "Alias for field number 0": a trial)
LoadedRun.model.__doc__ = "The run's model, rebuilt and loaded, in eval mode on the device asked for."
LoadedRun.config.__doc__ = "The run's configuration (``TrainConfig.to_dict()``)."
LoadedRun.model_info.__doc__ = (
    "The checkpoint's description of its model and classes: ``name``, ``backbone``, ``num_classes``, and where "
    "the run recorded them ``atrous_rates``, ``class_names``, ``palette``, ``model_class`` (a model the training "
    "script passed to the Trainer), ``data_class`` (a data set it passed), ``build_kwargs`` (the "
    ":func:`~deeplab_edu.models.build_model` arguments it is rebuilt from).")


def load_model(checkpoint: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a training checkpoint describes and load its weights.

    Returns ``(model in eval mode, checkpoint config)``; :func:`load_run` also returns the model's
    description. Raises as :func:`load_run`.
    """
    run = load_run(checkpoint, device)
    return run.model, run.config


def load_run(checkpoint: str | Path, device: torch.device | str = "cpu") -> LoadedRun:
    """Rebuild the model a training checkpoint describes, load its weights, and say what it was trained on.

    Returns a :class:`LoadedRun` (the model in eval mode on ``device``, at the output stride it was
    trained at: the run validated at ``config["eval_output_stride"]`` where that is set, which
    ``Strategy(output_stride=...)`` or :func:`~deeplab_edu.models.at_output_stride` applies, as
    ``deeplab-edu eval`` does by default).

    Raises:
        ValueError: ``device`` is not a device this PyTorch can use (``"gpu"``, ``"cuda"`` without a GPU:
            :func:`~deeplab_edu.config.resolve_device`), checked before the checkpoint is read.
        FileNotFoundError, RuntimeError: no checkpoint there, or one that cannot be read
            (:func:`~deeplab_edu.engine.checkpoint.load_checkpoint`).
        ValueError: ``checkpoint`` is not a deeplab-edu training checkpoint, describes a model this version
            cannot build, or holds NaN or infinite weights (:func:`run_from_checkpoint`).
        CheckpointMismatchError: its weights do not fit the model its configuration names (a run
            whose script passed its own model to the Trainer: the message names that model's class).
    """
    from .config import resolve_device
    from .engine.checkpoint import checkpoint_file, load_checkpoint

    # "gpu": torch's "Expected one of cpu, cuda, ..." (a census); None, as before it, the CPU
    device = resolve_device("cpu" if device is None else str(device), what="device")
    path = checkpoint_file(checkpoint)  # a folder's newest checkpoint: the file the messages name
    return run_from_checkpoint(load_checkpoint(path), path, device)


def run_from_checkpoint(state: dict[str, Any], checkpoint: str | Path,
                        device: torch.device | str = "cpu") -> LoadedRun:
    """:func:`load_run` for a checkpoint already loaded (``state``, read from the file ``checkpoint``,
    which the messages name): the caller that has read it does not read it again.

    Raises:
        ValueError: ``state`` is not a deeplab-edu training checkpoint, describes a model this version cannot
            build (written by another version), or holds NaN or infinite weights.
        CheckpointMismatchError: its weights do not fit the model its configuration names (as for
            :func:`load_run`).
    """
    from .engine.checkpoint import check_compatible, check_finite_weights
    from .models import build_model

    cfg = state.get("config")
    info = state.get("model_info")
    if not cfg or not info:
        raise ValueError(f"{checkpoint} is not a deeplab-edu training checkpoint (no config/model_info)")
    try:
        if "build_kwargs" in info:  # the build_model arguments of the model that was trained
            model = build_model(num_classes=info["num_classes"], **info["build_kwargs"])
        else:  # checkpoints written before build_kwargs: the configuration's model
            kwargs = dict(cfg.get("model_kwargs", {}))
            if info.get("atrous_rates") and "atrous_rates" not in kwargs:
                kwargs["atrous_rates"] = tuple(info["atrous_rates"])
            model = build_model(info["name"], backbone=info["backbone"], num_classes=info["num_classes"],
                                output_stride=cfg["output_stride"], aux_loss=cfg.get("aux_loss", False), **kwargs)
    except (TypeError, KeyError) as err:  # a trial: a newer version's build argument was a TypeError traceback
        raise ValueError(f"{checkpoint}: the model it describes cannot be built by this version of deeplab-edu "
                         f"({type(err).__name__}: {err}); it was written by another version, or damaged. Update "
                         "deeplab-edu, or load its 'model' weights into a model you build "
                         f"(torch.load({str(checkpoint)!r}, weights_only=True)['model'])") from None
    own = None
    if "model_class" in info:  # a model the training script built: the configuration's model is not it
        own = (f"It holds a model its training script built itself ({info['model_class']}), not the "
               f"{info['name']} / {info['backbone']} its configuration names: build that model in Python and load "
               f"the checkpoint's 'model' weights into it (torch.load({str(checkpoint)!r}, "
               "weights_only=True)['model']).")
    check_compatible(state, info, model, source=f"checkpoint {checkpoint}", advice=own)
    check_finite_weights(state["model"], checkpoint)
    model.load_state_dict(state["model"])
    return LoadedRun(model.to(device).eval(), cfg, dict(info))


#: The colour of the right pixels of a band in :func:`error_map`: Okabe and Ito's blue, which stays apart from
#: the errors' red under every colour-vision deficiency (an accessibility audit: the earlier dark grey stood
#: at a luminance contrast of 1.6 to the red).
BAND_COLOUR = (0, 114, 178)

#: The title of an :func:`error_map` panel: right pixels are black, close to the background class's dark grey,
#: so the title says so (a figure audit: "errors (red)" left the black unexplained).
ERRORS_TITLE = "errors (red; black: right)"


def error_map(pred: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
              band: torch.Tensor | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) for the label maps ``pred`` and ``target`` (H, W): black where right, red
    where wrong, white where ``target`` is ``ignore_index``. With ``band`` (bool (H, W), e.g. the trimap
    band of :func:`deeplab_edu.metrics.boundary_band`), right pixels inside it are blue (:data:`BAND_COLOUR`), so
    that the errors inside and outside the band can be told apart.

    Raises:
        TypeError: ``pred``, ``target`` or ``band`` is not a tensor (a NumPy array: ``torch.from_numpy``).
        ValueError: ``pred`` and ``target`` (or ``band``) differ in shape (a prediction at another size, or logits).
    """
    for name, value in (("pred", pred), ("target", target), ("band", band)):  # an audit: NumPy was an AttributeError
        if value is not None:
            require_tensor(value, name, "(H, W)")
    if pred.shape != target.shape or (band is not None and band.shape != target.shape):
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)}"
                         f"{'' if band is None else f' and band {tuple(band.shape)}'} must be maps of one "
                         "shape (H, W): resize the prediction, or take the logits' argmax(0)")
    p, t = pred.cpu().numpy(), target.cpu().numpy()
    out = np.zeros((*t.shape, 3), dtype=np.uint8)
    if band is not None:
        out[band.cpu().numpy().astype(bool)] = BAND_COLOUR
    out[(p != t) & (t != ignore_index)] = (220, 30, 30)
    out[t == ignore_index] = (255, 255, 255)
    return out


def prediction_gallery(images: Sequence[torch.Tensor], targets: Sequence[torch.Tensor],
                       preds: Sequence[torch.Tensor], palette: Sequence[Sequence[int]], *,
                       titles: Sequence[str] | None = None, ignore_index: int = 255,
                       class_names: Sequence[str] | None = None, columns: int = 4,
                       bands: Sequence[torch.Tensor] | None = None) -> Any:
    """A matplotlib ``Figure`` with four panels per example: image, ground truth, prediction, errors (red; right black).

    ``images`` are (3, H, W) (normalised, in [0, 1] or uint8: :func:`~deeplab_edu.viz.images.display_rgb`),
    ``targets`` and ``preds`` (H, W) class
    indices coloured with ``palette`` (RGB 0-255 per class). With ``class_names`` a legend under
    the rows names each colour, so that a confusion (car for boat) can be read off the figure.
    ``columns=4`` puts an example's panels in one row; ``columns=2`` in two rows of two, each panel
    twice as wide (street scenes, whose small and dark classes need the room). ``bands`` (one bool
    (H, W) map per example, e.g. trimap bands) are drawn blue on the errors panel (:func:`error_map`).

    Raises:
        ValueError: ``images``, ``targets`` and ``preds`` (and ``titles`` or ``bands``, when given) differ in length, or
            there are none; a prediction differs in shape from its target (:func:`error_map`); ``columns``
            is not 2 or 4.
    """
    import matplotlib.pyplot as plt

    from .viz.images import colorize, display_rgb

    n = len(images)
    lengths = {"images": n, "targets": len(targets), "preds": len(preds), **({"titles": len(titles)} if titles else {}),
               **({"bands": len(bands)} if bands is not None else {})}
    if n == 0 or len(set(lengths.values())) > 1:
        raise ValueError("prediction_gallery needs as many targets and preds (and titles, bands) as images, at least one: "
                         "got " + ", ".join(f"{k} {v}" for k, v in lengths.items()))
    if columns not in (2, 4) or isinstance(columns, bool):
        raise ValueError(f"prediction_gallery: columns must be 2 or 4 (panels a row per example), got {columns!r}")
    rows_each = 4 // columns
    if columns == 4:
        fig, grid = plt.subplots(n, 4, figsize=(8, 2.1 * n), squeeze=False)
    else:  # each panel 4 inches wide, as tall as the image's shape asks (plus its title)
        aspect = images[0].shape[-2] / images[0].shape[-1]
        fig, grid = plt.subplots(2 * n, 2, figsize=(8, 2 * n * (3.9 * aspect + 0.3)), squeeze=False)
    axes = [[ax for row in grid[rows_each * i:rows_each * (i + 1)] for ax in row] for i in range(n)]
    for i in range(n):
        panels = [display_rgb(images[i]), colorize(targets[i], palette, ignore_index),
                  colorize(preds[i], palette, ignore_index),
                  error_map(preds[i], targets[i], ignore_index, None if bands is None else bands[i])]
        for j, (ax, panel) in enumerate(zip(axes[i], panels)):
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 or columns == 2:
                ax.set_title(("image", "truth", "prediction",
                              ERRORS_TITLE if bands is None else "errors (red); right: black, blue in band")[j],
                             fontsize=9)
        if titles:
            axes[i][0].set_ylabel(titles[i], fontsize=8)
    if class_names is not None:
        from .viz.data import class_legend

        fig.tight_layout(rect=(0, class_legend(fig, class_names, palette), 1, 1))
    else:
        fig.tight_layout()
    return fig
