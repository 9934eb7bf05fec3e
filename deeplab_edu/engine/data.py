"""Data plumbing for exact, resumable, multi-process training.

- :class:`SeededDataset` makes every random augmentation a function of ``(seed, epoch, index)``:
  before an item is loaded, Python's, NumPy's and torch's generators are seeded from those three
  numbers (and restored afterwards). The same sample gets the same crop whether it is loaded by the
  main process or a worker, in one process or in several, before or after a resume.
- :class:`ResumableSampler` is a :class:`~torch.utils.data.distributed.DistributedSampler` (a shuffled
  permutation per epoch, rank ``r`` takes every ``world``-th index) that can start part-way through an
  epoch, so a resumed run sees exactly the batches the interrupted one had not seen yet.
- :class:`ShardSampler` splits evaluation data across processes without padding, so summed confusion
  matrices count every image exactly once.
- :func:`train_loader` and :func:`eval_loader` build the engine's DataLoaders (workers limited to one
  thread each, :mod:`deeplab_edu.engine.workers`; pinned memory for a CUDA device). Evaluation is
  batched without resizing or padding anything: :func:`collate_same_size` groups the images of a
  batch by size and stacks each group, so every image is predicted at its own size and the metrics
  equal those of a one-image-at-a-time evaluation (padding would change what the borders and the
  image-pooling branch see).
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, Iterator, Sequence, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data._utils.collate import default_collate
from torch.utils.data.distributed import DistributedSampler

from ..data.io import BadDataError, labels_outside
from .workers import make_loader

__all__ = ["SeededDataset", "ResumableSampler", "ShardSampler", "build_datasets", "train_loader", "eval_loader",
           "collate_same_size"]


@contextlib.contextmanager
def _random_state_kept(devices: Sequence[int] = ()) -> Iterator[None]:
    """Python's, numpy's and torch's CPU random streams (and those of the CUDA ``devices``) as they were
    before, whatever the body draws (a data set's random transform must not shift the seeded streams of the
    run)."""
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=list(devices)):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class SeededDataset(Dataset):
    """Wraps a dataset so that item ``i`` in epoch ``e`` is loaded under RNG seeds derived from ``(seed, e, i)``.

    With ``num_classes``, each ``(image, mask, ...)`` item's mask (a tensor or NumPy array) is checked as it is
    loaded, as the loss reads it (``int64``), in the loader's worker (in the training process without
    workers; about 0.5 ms for a 513 x 513 mask): a label that is neither a class
    (``0 .. num_classes - 1``) nor ``ignore_index`` raises :class:`~deeplab_edu.data.io.BadDataError` naming the
    item, where cross-entropy would have said "Target 7 is out of bounds" (on a GPU, a device-side assert that
    ends the process) of no item in particular. ``what`` names the set in that message (the Trainer also wraps
    a passed validation set, ``"validation set"``, whose bad label otherwise failed at the first validation,
    with ``stream=1``: seeds of its own, ``(seed, e, i, 1)``, for under the training set's a set of random scenes
    gave the first epoch's training images again, and unseeded it drew from the training's random stream, so that
    a validation changed the training and two evaluations differed: reviews).
    """

    def __init__(self, dataset: Dataset, seed: int = 0, *, num_classes: int | None = None,
                 ignore_index: int = 255, what: str = "training set", stream: int = 0) -> None:
        self.dataset, self.seed, self.epoch, self.what, self.stream = dataset, seed, 0, what, stream
        self._classes = None if num_classes is None else (num_classes, ignore_index)  # the labels checked

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:  # num_classes, class_names, palette, ...
        # not Python's own names: a Subset's __getitems__, handed through, let the DataLoader skip this
        # __getitem__ (its seeds and its label check: a review); nor copy's __deepcopy__ and the like
        if name in ("dataset", "seed", "epoch", "what", "stream", "_classes") or (
                name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> Any:
        """Item ``index`` of the wrapped dataset, loaded under its seeds.

        Raises:
            BadDataError: with ``num_classes``, the item's mask holds a label that is neither a class nor
                ``ignore_index``.
        """
        entropy = [self.seed, self.epoch, int(index)] + ([self.stream] if self.stream else [])
        s = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])
        with _random_state_kept():
            torch.manual_seed(s)
            random.seed(s)
            np.random.seed(s % 2**32)
            item = self.dataset[index]
        if (self._classes is not None and isinstance(item, (tuple, list)) and len(item) > 1
                and isinstance(item[1], (torch.Tensor, np.ndarray))):
            # as the loss reads them (int64): uint16 has no comparisons in torch, and -1 in uint8 would wrap to 255
            self._check_labels(torch.as_tensor(item[1]).long().cpu(), index)
        return item

    def _check_labels(self, mask: torch.Tensor, index: int) -> None:
        """Raise :class:`BadDataError` when ``mask`` (item ``index``'s) holds a label outside the classes."""
        n, ignore = cast(tuple[int, int], self._classes)
        bad = labels_outside(mask, n, ignore)
        if bad:
            shown = ", ".join(str(v) for v in bad[:8]) + (", ..." if len(bad) > 8 else "")
            message = (f"the mask of item {index} of the {self.what} ({type(self.dataset).__name__}) holds "
                       f"labels {shown}: not one of the {n} classes (0 to {n - 1}) nor ignore_index {ignore};"
                       " give the Trainer num_classes (and ignore_index) as the masks label them, or map "
                       "the masks' labels (`deeplab-edu check-data` lists a folder's labels)")
            raise BadDataError(message, labels=bad)


class ResumableSampler(DistributedSampler):
    """A ``DistributedSampler`` (also for one process) that can skip the first ``start`` samples of an epoch."""

    def __init__(self, dataset: Dataset, *, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip this many of this process's samples in the current epoch (used once after a resume)."""
        self.start = start

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


class ShardSampler(Sampler[int]):
    """Rank ``r`` of ``world`` gets indices ``r, r + world, ...`` in order; no padding, no duplicates."""

    def __init__(self, length: int, *, num_replicas: int = 1, rank: int = 0) -> None:
        self.indices = list(range(rank, length, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_datasets(cfg: Any, *, stacklevel: int = 2) -> tuple[Dataset, Dataset]:
    """Training and validation sets for a :class:`~deeplab_edu.engine.config.TrainConfig`.

    The training set gets DeepLab's augmentation (random scale in ``scale_range``, random crop of
    ``crop_size`` padded with the ignore label unless ``pad_to_crop`` is off, left-right flip); the validation set is evaluated
    whole (normalised only). With ``uint8_batches`` the training items are uint8 image and mask,
    augmented as uint8 (``train_transform(..., as_uint8=True)``), normalised on the device by the Trainer;
    a training image of more than 256 levels among the first is then warned about, ``stacklevel`` as
    ``warnings.warn``'s from here (2: the line that called this function; the Trainer passes 3, its caller's).
    """
    from deeplab_edu.data import build_dataset, transforms

    compact = bool(getattr(cfg, "uint8_batches", False))
    train_tf = transforms.train_transform(cfg.crop_size, scale_range=tuple(cfg.scale_range),
                                          pad_to_crop=cfg.pad_to_crop, normalize=not compact, as_uint8=compact)
    val_tf = transforms.eval_transform()
    kwargs: dict[str, Any] = {}
    if cfg.dataset == "procedural":
        kwargs = {"size": cfg.image_size, "difficulty": getattr(cfg, "difficulty", "hard")}
    train = build_dataset(cfg.dataset, "train", root=cfg.data_root, download=cfg.download, transform=train_tf,
                          **({**kwargs, "length": cfg.train_length} if kwargs else {}))
    val = build_dataset(cfg.dataset, "val", root=cfg.data_root, download=cfg.download, transform=val_tf,
                        **({**kwargs, "length": cfg.val_length} if kwargs else {}))
    if compact:
        _warn_rounded_pixels(train, stacklevel=stacklevel + 1)
    return train, val


def _warn_rounded_pixels(dataset: Any, sample: int = 8, *, stacklevel: int = 2) -> None:
    """Warn, naming the file, when one of the first ``sample`` training images holds more than 256 levels:
    ``uint8_batches`` rounds every pixel to 1/255 (a practitioner's trial: only the docs said so);
    ``stacklevel``: ``warnings.warn``'s, from here."""
    import itertools
    import warnings

    from deeplab_edu.data.io import holds_more_than_8_bits

    for image_path, *_ in itertools.islice(getattr(dataset, "pairs", ()), sample):
        if holds_more_than_8_bits(image_path):
            warnings.warn(f"uint8_batches rounds the training images to 256 levels, and {image_path} holds more "
                          "(16-bit or float): train with uint8_batches off to keep them", stacklevel=stacklevel)
            return


def train_loader(dataset: Dataset, sampler: Sampler[int], *, batch_size: int, num_workers: int | None,
                 device: torch.device | str | None = None, generator: torch.Generator | None = None) -> DataLoader:
    """The engine's training DataLoader: full batches of ``batch_size`` in ``sampler``'s order.

    Workers (``None``: as many as the machine's cores allow,
    :func:`~deeplab_edu.engine.workers.default_num_workers`) run one thread each; batches are pinned when ``device`` is a CUDA device. ``generator`` seeds the
    workers' base seed without drawing from the global random stream.
    """
    return make_loader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, device=device,
                       drop_last=True, generator=generator)


def collate_same_size(items: Sequence[Any]) -> list[Any]:
    """Collate a list of ``(image, mask, ...)`` items into one stacked batch *per image size*.

    Returns a list of batches (each as :func:`~torch.utils.data.default_collate` makes it) in the order
    in which each size first appears; items of one size keep their order. Nothing is resized or padded.
    """
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for item in items:
        parts = item if isinstance(item, (tuple, list)) else (item,)
        key = tuple(tuple(t.shape) for t in parts if isinstance(t, torch.Tensor))
        groups.setdefault(key, []).append(item)
    return [default_collate(g) for g in groups.values()]


def eval_loader(dataset: Dataset, *, batch_size: int = 1, num_workers: int | None = 0,
                sampler: Sampler[int] | None = None, device: torch.device | str | None = None) -> DataLoader:
    """An evaluation DataLoader whose every element is a *list* of same-size batches (:func:`collate_same_size`).

    Up to ``batch_size`` items are loaded at a time and grouped by size, so a data set of equal-size
    images is evaluated ``batch_size`` images per forward pass and one of mixed sizes still works.
    The loader draws its workers' base seed from a generator of its own, not from torch's global
    one: validating during training leaves the training's random stream (dropout, augmentation)
    where it was, so how often a run validates does not change its weights.

    Raises:
        ValueError: ``batch_size`` is smaller than 1.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return make_loader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, device=device,
                       collate_fn=collate_same_size, generator=torch.Generator().manual_seed(0))
