"""The checks and warnings about the data sets, model and crop given to
:class:`~deeplab_edu.engine.trainer.Trainer` (trainer.py imports these): a passed set's first item (images
not normalised or of another size than the crop, a mask the loss cannot read or that looks like objects saved
as 255: :func:`_check_passed_set`), training and validation sets of other classes
(:func:`_check_same_classes`), a passed model's ASPP branches that are 1 x 1 on the crop's feature map
(:func:`_warn_flat_aspp`, DeepLabv3 sec. 3.3) and crops mostly of padding (:func:`_warn_crop_padding`).
Their warnings name the line of the caller's ``Trainer(...)`` (``stacklevel=3``: the helper,
``Trainer.__init__``, the caller), as they did in trainer.py. Private: moved out of trainer.py unchanged, to
keep it readable in one sitting.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.own import ignored_objects_note
from .config import TrainConfig
from .data import _random_state_kept


def _check_passed_set(dataset: Any, name: str, crop_size: int | None = None, objects_as_ignore: bool = False) -> None:
    """Warn when a data set passed to the Trainer gives images in [0, 1] (the models expect them
    normalised with ImageNet's mean and std; the data sets give [0, 1] without a transform), or, with
    ``crop_size`` (the configuration's, from which the Trainer sizes the ASPP rates of the model it
    builds), images of another size, or, with ``objects_as_ignore``, a first mask of only 0 and the ignore label
    that looks like objects saved as 255 (:func:`~deeplab_edu.data.own.ignored_objects_note`, as
    :class:`~deeplab_edu.data.own.FolderDataset` warns); refuse a first mask the loss cannot read
    (:func:`_check_passed_mask`).

    Raises:
        ValueError: item 0's mask is not ``(H, W)`` or ``(1, H, W)``, or not of an integer type, naming the set,
            the shape and the type.
    """
    import warnings

    try:
        with _random_state_kept():
            item = dataset[0]
        image = item[0]
    except Exception:  # an unreadable first item fails later, naming its file
        return
    mask = item[1] if isinstance(item, (tuple, list)) and len(item) > 1 else None
    _check_passed_mask(mask, name)
    # an audit: a passed set of black-and-white masks (objects 255) trained on its background alone, silently (a
    # FolderDataset, which warned of it as it loaded item 0, is not warned of twice)
    if (objects_as_ignore and isinstance(mask, (torch.Tensor, np.ndarray))
            and not getattr(dataset, "_warned_ignored_objects", False)):
        names = getattr(dataset, "class_names", None)
        note = ignored_objects_note(_untransformed_mask(dataset, mask), int(getattr(dataset, "ignore_index", 255)),
                                    str(names[1]) if names is not None and len(names) > 1 else None)
        if note is not None:
            warnings.warn(f"{name}[0]'s mask {note}", stacklevel=3)
    if isinstance(image, torch.Tensor) and image.is_floating_point() and image.min() >= 0 and image.max() <= 1:
        warnings.warn(f"{name}[0] is an image in [0, 1], not normalised: the models expect ImageNet's mean and std "
                      "removed; give the data set transform=deeplab_edu.data.transforms.train_transform(crop_size) "
                      "(training) or eval_transform() (validation)", stacklevel=3)
    if crop_size is not None and isinstance(image, torch.Tensor) and tuple(image.shape[-2:]) != (crop_size, crop_size):
        warnings.warn(f"{name}[0] is {image.shape[-2]} x {image.shape[-1]} but crop_size={crop_size}, from which the "
                      "Trainer sizes the ASPP rates of the model it builds (resolve_atrous_rates): set crop_size to "
                      "the crop your transform makes", stacklevel=3)


def _untransformed_mask(dataset: Any, mask: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Item 0's mask as its file holds it where ``dataset`` reads files (a
    :class:`~deeplab_edu.data.folder.SegmentationFolder`'s ``load``, also through a
    :class:`~torch.utils.data.Subset` of one), else ``mask`` (item 0's, transformed): a
    training transform pads a small image's mask with the ignore label, and a background-only mask padded so
    was taken for objects saved as 255 (a review)."""
    from torch.utils.data import Subset

    from ..data.folder import SegmentationFolder

    index = 0
    while isinstance(dataset, Subset) and len(dataset.indices):  # a split of a folder: its first item's file
        dataset, index = dataset.dataset, int(dataset.indices[index])
    if not isinstance(dataset, SegmentationFolder):
        return mask
    try:
        with _random_state_kept():
            return dataset.load(index)[1]
    except Exception:  # an unreadable file fails later, naming it
        return mask


def _check_passed_mask(mask: Any, name: str) -> None:
    """Refuse the mask of item 0 of a passed set (``name``) that is no label map of class indices: ``(H, W)``, or
    ``(1, H, W)`` (torchvision's ``PILToTensor``; :meth:`Trainer.to_device` drops the 1), of an integer (or bool)
    type. A trial: a ``(1, H, W)`` mask failed in PyTorch's loss, "only batches of spatial targets supported (3D
    tensors) but got targets of dimension: 4", naming nothing. Its size may differ from the image's (the loss and
    the validation resize the logits to the labels). A mask that is neither a tensor nor an array is not looked at.

    Raises:
        ValueError: naming the set, the mask's shape and type, and what to give instead.
    """
    if not isinstance(mask, (torch.Tensor, np.ndarray)):
        return
    shape = tuple(mask.shape)
    floating = mask.is_floating_point() if isinstance(mask, torch.Tensor) else mask.dtype.kind in "fc"
    fits = len(shape) == 2 or (len(shape) == 3 and shape[0] == 1)
    if fits and not floating:
        return
    wanted = "(H, W) or (1, H, W)"
    why = (" (torchvision's ToTensor() divides a mask's labels by 255: use PILToTensor(), or "
           "torch.as_tensor(np.array(mask)))" if fits else "")
    raise ValueError(f"{name}[0]'s mask is {shape} of {mask.dtype}: the loss reads class indices, a mask {wanted} "
                     f"of an integer type{why}; give the data set a transform that makes such masks "
                     "(deeplab_edu.data.transforms.train_transform(crop_size) or eval_transform() make image and mask "
                     "alike)")


def _check_same_classes(train_set: Any, val_set: Any) -> None:
    """Validation scores the model on the training set's classes: refuse sets whose ``num_classes`` or
    ``class_names`` (where both have them) differ, instead of failing at the first validation.

    Raises:
        ValueError: they differ; the message gives both.
    """
    for attribute, as_value in (("num_classes", int), ("class_names", tuple)):
        ours, theirs = getattr(train_set, attribute, None), getattr(val_set, attribute, None)
        if ours is not None and theirs is not None and as_value(ours) != as_value(theirs):
            raise ValueError(f"train_set and val_set have other {attribute}: {ours!r} and {theirs!r} (validation "
                             "scores the model on the training set's classes)")



def _warn_flat_aspp(model: nn.Module, crop_size: int) -> None:
    """For a model passed to the Trainer: the warning :func:`~deeplab_edu.engine.config.resolve_atrous_rates`
    gives for a model it builds, where an ASPP branch is exactly 1x1 on the training crop's feature map
    (DeepLabv3 sec. 3.3; a practitioner's trial passed ``build_model(...)`` with the paper's rates at
    crop 64, silently). Only for a model that says its ``atrous_rates`` and ``output_stride``."""
    from ..models.aspp import degenerate_branches, degenerate_rates, feature_map_side

    rates, stride = getattr(model, "atrous_rates", None), getattr(model, "output_stride", None)
    if not rates or not isinstance(stride, int):
        return
    side = feature_map_side(crop_size, stride)
    try:
        flat = degenerate_rates(side, rates)
    except (TypeError, ValueError):  # a model's own rates of another kind: no warning rather than an error
        return
    if flat:
        warnings.warn(f"crop_size={crop_size} at the model's output stride {stride} gives a {side} x {side} feature "
                      f"map, so {degenerate_branches(flat, rates)} are exactly 1 x 1 (every "
                      "off-centre tap reads padding; DeepLabv3 sec. 3.3): "
                      + (f"build it with smaller atrous_rates (below {side}), or " if side > 1 else "")
                      + f"train on crops of at least {stride * max(rates) + 1} pixels",
                      UserWarning, stacklevel=3)


def _warn_crop_padding(cfg: TrainConfig, train_set: Any) -> None:
    """Warn when at least a tenth of every training crop is padding (ignored, and slow): the crop is larger
    than every training image at the largest scale. The generated scenes' side is the configuration's
    ``image_size`` (a trial: 96 % padding, silent); a data set that lists its files is sampled with
    :func:`_largest_side` (a practitioner's trial: crop 512 on 128 x 96 images, silent)."""
    if not cfg.pad_to_crop:
        return
    scale = max(cfg.scale_range)
    side = cfg.image_size if cfg.dataset == "procedural" else _largest_side(train_set)
    if side is None:
        return
    largest = side * scale  # the largest image's side after the largest scale
    padding = 1 - (largest / cfg.crop_size) ** 2  # the share of a crop no image reaches
    if padding < 0.1:
        return
    if cfg.dataset == "procedural":
        warnings.warn(f"crop_size={cfg.crop_size} is larger than any training scene (image_size {side} x scale "
                      f"{scale:g} = {largest:g} px): at least {padding:.0%} of every crop is padding, which is "
                      "ignored, and atrous_rates='fit' sizes ASPP for the crop; give a crop_size of at most "
                      f"{int(largest)}, or a larger image_size", stacklevel=3)
    else:
        warnings.warn(f"crop_size={cfg.crop_size} is larger than the training images (the largest side of those "
                      f"sampled: {side} px, x scale {scale:g} = {largest:g} px): at least {padding:.0%} of every "
                      f"crop is padding, which is ignored and slows training; give a crop_size of at most "
                      f"{int(largest)}", stacklevel=3)


def _largest_side(dataset: Any, sample: int = 32) -> int | None:
    """The largest image side (pixels) among up to ``sample`` images of a data set that lists its files
    (``pairs``), read from the files' headers (no image is decoded); ``None`` where it lists none."""
    from PIL import Image

    pairs = getattr(dataset, "pairs", None)
    if not pairs:
        return None
    sides = []
    for image, _ in pairs[:: max(1, len(pairs) // sample)][:sample]:
        try:
            with Image.open(image) as im:
                sides.append(max(im.size))
        except OSError:  # a bad file: the loader reports it by name
            continue
    return max(sides) if sides else None
