"""Read a whole data set once, before training on it: every bad file, and each class's share of pixels.

Training reads a file when a batch needs it, so a corrupt image, a mask whose size differs from its
image or a label outside the classes stops a run when it is reached, possibly hours in (the
iterations done are saved, and ``--resume`` continues once the file is fixed). :func:`check_dataset`
reads every item with the data set's own loader, the very checks training runs, in DataLoader
workers, and lists *every* bad file instead of stopping at the first; it also counts each class's
labelled pixels, so that a class no mask uses (a typo in ``classes.txt``, a split without it) is
found before a model is trained to predict it. ``deeplab-edu check-data`` runs it.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..progress import progress_bar
from .io import BadDataError, has_transparency

__all__ = ["DataCheck", "check_dataset"]


@dataclass
class DataCheck:
    """What :func:`check_dataset` found.

    Attributes:
        items: the items read (good and bad).
        problems: one message per bad item, naming its file(s) and the problem (the loader's own).
        unpaired: one message per file the data set left out, not read: an image without a mask, a mask
            without an image (:class:`~deeplab_edu.data.own.FolderDataset` built with ``skip_unpaired``).
        pixels: labelled pixels per class, int64 of shape (num_classes,) (ignored pixels not counted).
        class_names: the data set's class names, in label order.
        unknown_labels: each label value that is neither a class nor the ignore label, with the number
            of bad masks that use it (each of those masks is also one of ``problems``).
        warnings: what the loader warned of while reading (a mask that looks like objects saved as the
            ignore label, a PIL warning about a file), and masks with transparent pixels (read as the colour
            under them), each once, naming its file; not counted as bad.
        problem_files: the file(s) each of ``problems`` names, in the same order (empty where unknown):
            :meth:`summary` states a problem that several files share once, with the files.
        classes_file: the file that names the data set's classes, where it has one (the folder data set's
            ``classes.txt``: its ``classes_file``), else ``None``; only then do the hints suspect it.
    """

    items: int
    problems: list[str] = field(default_factory=list)
    unpaired: list[str] = field(default_factory=list)
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    class_names: Sequence[str] = ()
    unknown_labels: dict[int, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    problem_files: list[tuple[str, ...]] = field(default_factory=list)
    classes_file: str | None = None

    @property
    def bad(self) -> int:
        """Bad items and files left out: what to fix before training."""
        return len(self.problems) + len(self.unpaired)

    @property
    def absent_classes(self) -> list[str]:
        """Classes no mask of the data set labels a single pixel with."""
        return [name for name, n in zip(self.class_names, self.pixels) if n == 0]

    def summary(self) -> str:
        """A few lines: the items read, the bad ones, each class's share of the labelled pixels of the good
        items (the bad ones are not counted: with none good, no share and no absent class is claimed)."""
        total = max(int(self.pixels.sum()), 1)
        lines = [f"{self.items} items read, {len(self.problems)} bad"]
        lines += _grouped(self.problems, self.problem_files)
        transparent = [m for w in self.warnings if (m := _TRANSPARENT.match(w))]
        if len(transparent) < GROUP_AT:
            lines += [f"warning: {w}" for w in self.warnings]
        else:  # a tool that saves every mask with a transparent "unlabelled": one warning, not one per mask (a review)
            lines += [f"warning: {w}" for w in self.warnings if not _TRANSPARENT.match(w)]
            names = [m[1] for m in transparent]
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            lines.append(f"warning: {len(names)} masks have transparent pixels ({shown}): {transparent[0][2]}")
        if self.unknown_labels:
            values = ", ".join(f"{v} ({n} mask{'' if n == 1 else 's'})" for v, n in sorted(self.unknown_labels.items()))
            lines.append(f"labels outside the {len(self.class_names)} classes (0..{len(self.class_names) - 1}) in "
                         f"{len(self.unknown_labels)} value{'' if len(self.unknown_labels) == 1 else 's'}: {values}"
                         + ("; does classes.txt list every class, in the masks' order?" if self.classes_file else ""))
        if self.unpaired:
            lines.append(f"{len(self.unpaired)} file(s) left out, not read (training refuses the folder until they pair up):")
            lines += [f"  {p}" for p in self.unpaired]
        good = self.items - len(self.problems)
        if good <= 0:
            lines.append("no good item to count the classes' pixels in")
            return "\n".join(lines)
        shares = ", ".join(f"{name} {100 * n / total:.1f} %" for name, n in zip(self.class_names, self.pixels))
        counted = f" (in the {good} good item{'' if good == 1 else 's'})" if self.problems else ""
        lines.append(f"labelled pixels per class{counted}: {shares}")
        if self.absent_classes:  # scored as metrics.ConfusionMatrix.compute does: mIoU over truth or prediction
            lines.append(f"no mask of this split labels a pixel as {', '.join(self.absent_classes)}: a model cannot "
                         "learn such a class from a training split; on a validation split its IoU is 0 if the model "
                         "predicts it on any labelled pixel, which lowers the mIoU (the mean over the classes present "
                         "in the truth or the prediction), and it is left out of the mIoU only if never predicted"
                         + (" (a name in classes.txt that no mask uses?)" if self.classes_file else ""))
        return "\n".join(lines)


#: A problem shared by at least this many files is stated once, with the files (a trial: 16 identical lines).
GROUP_AT = 3
#: The warning of a mask with transparent pixels (:class:`_Checked`): its file, and what it means.
_TRANSPARENT = re.compile(r"^mask (.+) has transparent pixels: (.*)$", re.S)
#: Where a file's name stood in a problem stated once for several files.
_FILE = "<file>"


def _grouped(problems: Sequence[str], files: Sequence[tuple[str, ...]]) -> list[str]:
    """The summary's lines for ``problems``: each alone, indented, except that a message that
    :data:`GROUP_AT` or more files share (once their names are replaced by :data:`_FILE`) is written
    once, followed by every file it names (the first with its folder, the others by name where they
    are in the same folder)."""
    def cause(message: str, names: tuple[str, ...]) -> str:
        for name in sorted(names, key=len, reverse=True):
            message = message.replace(name, _FILE)
        return message

    files = list(files) + [()] * (len(problems) - len(files))  # a problem without its files stands alone
    keys = [cause(m, f) if f else m for m, f in zip(problems, files)]
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    lines: list[str] = []
    for key, members in groups.items():
        if len(members) < GROUP_AT or key.count(_FILE) != 1:  # two files named (an image and its mask): alone
            lines += [f"  {problems[i]}" for i in members]
            continue
        named = [next(n for n in files[i] if n in problems[i]) for i in members]
        folder = Path(named[0]).parent
        shown = [named[0]] + [Path(n).name if Path(n).parent == folder else n for n in named[1:]]
        lines.append(f"  {len(members)} items with the same problem: {key}")
        rows: list[list[str]] = [[]]
        for name in shown:  # lines broken between names, never inside one (a name may hold spaces)
            if rows[-1] and len(", ".join(rows[-1] + [name])) > 96:
                rows.append([])
            rows[-1].append(name)
        lines += [("    " + _FILE + " = " if i == 0 else "      ") + ", ".join(row) + ("," if i < len(rows) - 1 else "")
                  for i, row in enumerate(rows)]
    return lines


class _Checked(Dataset):
    """Item ``i`` as ``(None, pixel counts, (), warnings, files)`` or ``(message, None, unknown labels,
    warnings, files)``: a bad file is a result, not an error; ``files`` are the item's file names
    where the data set lists them (``pairs``), ``warnings`` what the loader warned of."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.read = getattr(dataset, "load", dataset.__getitem__)  # the untransformed item where there is one

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[str | None, np.ndarray | None, tuple[int, ...], list[str],
                                               tuple[str, ...]]:
        pairs = getattr(self.dataset, "pairs", None)
        files = tuple(str(f) for f in pairs[index]) if pairs is not None else ()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # each item's warnings, even one Python showed for an earlier item
            try:
                _, mask = self.read(index)
            except (BadDataError, OSError) as err:  # OSError: a file removed or unreadable since the listing
                return str(err), None, tuple(getattr(err, "labels", ())), _named(caught, files), files
        mask = torch.as_tensor(mask).reshape(-1)
        mask = mask[mask != self.dataset.ignore_index]
        counts = torch.bincount(mask, minlength=self.dataset.num_classes)[: self.dataset.num_classes].numpy()
        said = _named(caught, files)
        if len(files) == 2 and has_transparency(files[1]):  # a trial: an annotation tool's transparent "unlabelled"
            said.append(f"mask {files[1]} has transparent pixels: a mask's alpha channel carries no label, so each of "
                        "them is read as the colour (or index) stored under it, not as ignored; to leave pixels "
                        f"out of training, give them the ignore label ({self.dataset.ignore_index})")
        return None, counts, (), said, files


def _named(caught: list[warnings.WarningMessage], files: tuple[str, ...]) -> list[str]:
    """Each caught warning's text, prefixed with the item's files where it names none of them."""
    texts = [str(w.message) for w in caught]
    return [t if not files or any(f in t for f in files) else f"{' / '.join(files)}: {t}" for t in texts]


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


def check_dataset(dataset: Any, *, num_workers: int | None = None, progress: bool = True) -> DataCheck:
    """Read every item of ``dataset`` once, as training would, and report what is wrong.

    Args:
        dataset: a data set of this package (``load(i)`` is read where it exists, else ``dataset[i]``),
            with ``num_classes``, ``class_names`` and ``ignore_index``.
        num_workers: DataLoader workers (``None``: :func:`~deeplab_edu.engine.workers.default_num_workers`).
        progress: show a progress bar.

    Returns:
        A :class:`DataCheck`, with every bad item's message, the files the data set left out (its
        ``unpaired`` attribute, where it has one) and the labelled pixels per class.
    """
    checked = _Checked(dataset)
    every = getattr(dataset, "warn_every_mask", None)  # a folder data set: name every suspicious mask, not the first
    if every is not None:
        dataset.warn_every_mask = True
    try:
        return _check(dataset, checked, num_workers, progress)
    finally:
        if every is not None:
            dataset.warn_every_mask = every


def _check(dataset: Any, checked: "_Checked", num_workers: int | None, progress: bool) -> DataCheck:
    """:func:`check_dataset`'s reading: every item of ``checked`` once, through a DataLoader."""
    from ..engine.workers import make_loader, naming_a_stall

    loader = make_loader(checked, batch_size=8, num_workers=num_workers, collate_fn=_as_list)
    classes_file = getattr(dataset, "classes_file", None)
    report = DataCheck(items=len(checked), pixels=np.zeros(dataset.num_classes, np.int64),
                       class_names=tuple(dataset.class_names), unpaired=list(getattr(dataset, "unpaired", [])),
                       classes_file=None if classes_file is None else str(classes_file))
    done = 0

    def stalled_at() -> str:  # the batch the loader waited for: the next 8 items, in order
        first, last = done, min(done + 8, len(checked)) - 1
        pairs = getattr(dataset, "pairs", None)
        images = f" (images {', '.join(str(p[0]) for p in pairs[first:last + 1])})" if pairs is not None else ""
        return f"at items {first} to {last} of the {len(checked)}{images}"

    batches = naming_a_stall(loader, stalled_at, "one of those files hangs when it is read; read each by hand to "
                             "find it")
    with contextlib.closing(batches):  # a Ctrl-C between batches leaves no paused generator holding the workers
        for batch in progress_bar(batches, desc="checking the data", unit="batch", progress=progress,
                                  total=len(loader)):
            done += len(batch)
            for message, counts, labels, warned, files in batch:
                report.warnings += [w for w in warned if w not in report.warnings]
                if message is not None:
                    report.problems.append(message)
                    report.problem_files.append(files)
                    for value in labels:
                        report.unknown_labels[value] = report.unknown_labels.get(value, 0) + 1
                else:
                    report.pixels += counts
    return report
