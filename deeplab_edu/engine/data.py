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
"""

from __future__ import annotations

import random
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

__all__ = ["SeededDataset", "ResumableSampler", "ShardSampler", "build_datasets"]


class SeededDataset(Dataset):
    """Wraps a dataset so that item ``i`` in epoch ``e`` is loaded under RNG seeds derived from ``(seed, e, i)``."""

    def __init__(self, dataset: Dataset, seed: int = 0) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:  # num_classes, class_names, palette, ...
        if name in ("dataset", "seed", "epoch"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> Any:
        s = int(np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(1, dtype=np.uint64)[0])
        py, npy = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            random.seed(s)
            np.random.seed(s % 2**32)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py)
                np.random.set_state(npy)


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


def build_datasets(cfg: Any) -> tuple[Dataset, Dataset]:
    """Training and validation sets for a :class:`~deeplab_edu.engine.config.TrainConfig`.

    The training set gets DeepLab's augmentation (random scale in ``scale_range``, random crop of
    ``crop_size`` padded with the ignore label unless ``pad_to_crop`` is off, left-right flip); the validation set is evaluated
    whole (normalised only).
    """
    from deeplab_edu.data import build_dataset, transforms

    train_tf = transforms.train_transform(cfg.crop_size, scale_range=tuple(cfg.scale_range),
                                          pad_to_crop=cfg.pad_to_crop)
    val_tf = transforms.eval_transform()
    kwargs: dict[str, Any] = {}
    if cfg.dataset == "procedural":
        kwargs = {"size": cfg.image_size}
    train = build_dataset(cfg.dataset, "train", root=cfg.data_root, download=cfg.download, transform=train_tf,
                          **({**kwargs, "length": cfg.train_length} if kwargs else {}))
    val = build_dataset(cfg.dataset, "val", root=cfg.data_root, download=cfg.download, transform=val_tf,
                        **({**kwargs, "length": cfg.val_length} if kwargs else {}))
    return train, val
