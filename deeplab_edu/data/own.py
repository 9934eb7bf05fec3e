"""Your own data: a folder of images and masks, with a ``classes.txt`` naming the classes.

``build_dataset("folder", split, root=...)`` and ``deeplab-edu train --dataset folder --data-root
DIR`` read this layout (like the course's CamVid copy, but with ``masks/`` for its ``labels/``, a
``classes.txt``, and 255 for unlabelled pixels)::

    DIR/
      classes.txt            one class per line, in label order: "name", "name R G B" or "name #RRGGBB"
      train/images/a.jpg     any image format load_image reads (.png, .jpg, .tif, ...)
      train/masks/a.png      the same stem: one class index per pixel (0, 1, ...), 255 = ignore
      val/images/...  val/masks/...

A mask is a grayscale or palette PNG of class indices, or an RGB PNG in the classes' colours
(:func:`~deeplab_edu.data.io.load_mask`); classes without a colour get PASCAL VOC's colour for
their index (or the next VOC colour no class was given). Masks must be PNG files: a JPEG changes
label values near every edge. Every image needs its mask and every mask its image: the data set fails at
construction listing the unmatched files, not half-way through training.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import torch

from .classes import ClassInfo, voc_colormap
from .folder import JointTransform, SegmentationFolder
from .io import BadDataError, DatasetNotFoundError

__all__ = ["FolderDataset", "read_classes", "image_files", "IMAGE_SUFFIXES", "ignored_objects_note"]

#: The image files a split's ``images/`` folder is searched for (lower-case suffixes).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")

_LAYOUT = ("DIR/classes.txt (one class name per line, optionally followed by its colour: R G B or #RRGGBB), "
           "DIR/<split>/images/<name>.<jpg|png|...> and DIR/<split>/masks/<name>.png")


def image_files(folder: Path) -> list[Path]:
    """The image files in ``folder`` (suffixes :data:`IMAGE_SUFFIXES`, any case), sorted; hidden files
    (a name starting with ``.``: macOS's ``._a.png`` beside ``a.png``, a temporary file) and folders
    (one named ``shots.png``) are not images."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and not p.is_dir())


def _folders_of_images(folder: Path) -> list[str]:
    """The names of ``folder``'s subfolders (not hidden) that hold image files themselves, sorted."""
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and image_files(p))


#: A colour written as ``#RRGGBB`` after a class name (``road #804080``), not a comment.
_HEX_COLOUR = re.compile(r"(?<=\s)#([0-9A-Fa-f]{2})([0-9A-Fa-f]{2})([0-9A-Fa-f]{2})(?=\s|$)")
#: Where a comment starts: a ``#`` at the start of the line or after a space (a ``#RRGGBB`` colour aside).
_COMMENT = re.compile(r"(?:^|\s)#")
#: A comment that is only a colour with a digit too many or too few (``road #80408``): a typo.
_BAD_HEX = re.compile(r"#([0-9A-Fa-f]{3,5}|[0-9A-Fa-f]{7,8})\s*$")
#: Three numbers in brackets at the end (``road (128 64 128)``): a colour written another way.
_BRACKETED_COLOUR = re.compile(r"[(\[]\s*\d+[\s,]+\d+[\s,]+\d+\s*[)\]]$")
#: The line breaks of ``classes.txt``: ``\n``, ``\r\n`` and ``\r`` only (``str.splitlines`` also splits at
#: U+2028, U+0085 NEL, form feed, ..., which an editor shows inside a line: one name became two classes).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _invisible_break(line: str) -> str | None:
    """The first control character (a tab aside) or line/paragraph separator in ``line``, named
    (``'U+2028 LINE SEPARATOR'``), or ``None``."""
    for char in line:
        if char != "\t" and unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return f"U+{ord(char):04X} {unicodedata.name(char, 'control character')}"
    return None


def read_classes(path: str | Path, name: str = "folder") -> ClassInfo:
    """The classes of ``classes.txt``: line ``i`` names class ``i``, optionally followed by its colour
    (``road 128 64 128`` or ``road #804080``); a ``#`` at the start of a line or after a space starts a
    comment (a ``#RRGGBB`` colour aside); blank lines are skipped. Lines end at a line feed, CR LF or
    CR; names are given in Unicode's composed form (NFC), as file names are matched, so ``façade``
    typed on a Mac (NFD) and elsewhere is one name.

    Raises:
        DatasetNotFoundError: the file is missing.
        BadDataError: the file is not UTF-8 text, names fewer than two classes (every pixel would be the
            one class: nothing to learn), a colour that is not three integers in 0..255 (or written with
            commas or brackets, or as ``#`` and other than six hex digits), a ``#`` inside a name, a
            repeated name, more than 255 classes (255 is the ignore label), a line for label 255, or labels
            written before the names ("0 background", "1 road", ...), or a line that holds a control
            character or a Unicode line or paragraph separator (U+2028, U+2029, NEL, form feed, ...), which
            some tools take for a line break and others show as nothing.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path} is missing: a folder data set names its classes there, one per line "
                                   f"in label order (layout: {_LAYOUT})")
    names: list[str] = []
    colours: list[tuple[int, int, int] | None] = []
    try:
        text_of_file = path.read_text(encoding="utf-8-sig")  # -sig: the byte-order mark Notepad writes is not a name
    except UnicodeDecodeError as err:
        raise BadDataError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    for number, line in enumerate(_LINE_BREAK.split(text_of_file), start=1):
        if (char := _invisible_break(line)) is not None:
            raise BadDataError(f"{path}, line {number}: {line!r} holds {char}, which some tools show as a line "
                               "break and others as nothing; delete it (one class per line, lines ending in a "
                               "plain line break)")
        line = unicodedata.normalize("NFC", line)  # one form of each name: duplicates and comparisons agree
        if line.lstrip().startswith("#"):  # a comment line (a heading, a URL, "#####")
            continue
        line = _HEX_COLOUR.sub(lambda m: " ".join(str(int(h, 16)) for h in m.groups()), line, count=1)
        cut = _COMMENT.search(line)
        text, comment = (line[:cut.start()], line[cut.end() - 1:]) if cut else (line, "")
        if (typo := _BAD_HEX.match(comment)) is not None:
            raise BadDataError(f"{path}, line {number}: {comment.strip()!r} has {len(typo.group(1))} hex digits; a "
                               "colour is written '#RRGGBB' (six), e.g. 'road #804080'")
        if "#" in text:
            raise BadDataError(f"{path}, line {number}: {line.strip()!r} has a '#' inside a word, where it would cut "
                               "the name short ('#' after a space starts a comment); a class name cannot hold '#'")
        text = text.strip()
        if not text:
            continue
        fields = text.split()
        numbers = 0  # how many fields at the end are integers: 3 is a colour; 2 a colour with a value missing
        while numbers < len(fields) - 1 and fields[-1 - numbers].lstrip("-").isdigit():
            numbers += 1
        # a colour written another way: "128,64,128", "(128 64 128)"
        if (numbers == 2 or any("," in f and any(c.isdigit() for c in f) for f in fields[1:])
                or _BRACKETED_COLOUR.search(text)):
            raise BadDataError(f"{path}, line {number}: {text!r} is neither a name nor a name followed by a colour "
                               "as three values separated by spaces (e.g. 'road 128 64 128')")
        colour = None
        if numbers >= 3:
            rgb = tuple(int(f) for f in fields[-3:])
            if not all(0 <= c <= 255 for c in rgb):
                raise BadDataError(f"{path}, line {number}: colour {rgb} is not three values in 0..255")
            colour, fields = (rgb[0], rgb[1], rgb[2]), fields[:-3]
        names.append(" ".join(fields))
        colours.append(colour)
    if not names:
        raise BadDataError(f"{path} names no class; write one class name per line, in label order")
    # other tools' formats (a practitioner's trial: "0 background" became the class "0 background", and a last
    # line "255 ignore" a class of its own)
    for class_name in names:  # not `name`: the data set's name, which the ClassInfo below is given
        if class_name.split()[0] == "255" and len(class_name.split()) > 1:
            raise BadDataError(f"{path}: {class_name!r} is not a class: 255 is the ignore label, whose pixels are "
                               "neither learned nor scored; leave that line out")
    firsts = [n.split()[0] for n in names]
    if all(len(n.split()) > 1 for n in names) and firsts in ([str(i) for i in range(len(names))],
                                                              [str(i) for i in range(1, len(names) + 1)]):
        raise BadDataError(f"{path}: each line starts with its label ({names[0]!r}, {names[1]!r}, ...); write the "
                           "names alone (line 1 is label 0, line 2 label 1, ...), each optionally followed by its "
                           "colour, e.g. 'background' or 'road 128 64 128'")
    if len(names) == 1:
        raise BadDataError(f"{path} names one class ({names[0]!r}): every pixel would be that class and any model "
                           "scores 100 %; name at least two, e.g. 'background' on the first line, then your objects")
    if len(names) > 255:
        raise BadDataError(f"{path} names {len(names)} classes; at most 255 (label 255 means 'ignore')")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BadDataError(f"{path} names these classes more than once: {', '.join(repeated)}")
    explicit = [c for c in colours if c is not None]
    for i, colour in enumerate(explicit):
        if colour in explicit[:i]:
            first, second = [names[k] for k, c in enumerate(colours) if c == colour][:2]
            raise BadDataError(f"{path}: classes {first!r} and {second!r} have the same colour {colour}; colour "
                               "masks and predicted masks could not tell them apart")
    # a class without a colour: VOC's colour for its index, or else the first VOC colour still free
    voc = [(int(r), int(g), int(b)) for r, g, b in voc_colormap(256)]
    used = set(explicit)
    palette: list[tuple[int, int, int]] = []
    for i, colour in enumerate(colours):
        if colour is None:
            colour = voc[i] if voc[i] not in used else next(c for c in voc if c not in used)
            used.add(colour)
        palette.append(colour)
    return ClassInfo(name, tuple(names), tuple(palette))


def _by_stem(files: list[Path]) -> dict[str, Path]:
    """The files by name without suffix: an image pairs with the mask of the same stem.

    Raises:
        BadDataError: two files share a stem (``a.jpg`` and ``a.png``): which one the mask belongs to
            is unknown, and keeping one would drop the other without a word.
    """
    found: dict[str, Path] = {}
    for path in files:
        # one name in Unicode's composed form (NFC): macOS writes an accent as a letter and a combining
        # mark (NFD), so café.jpg copied from a Mac would otherwise not pair with café.png made elsewhere
        stem = unicodedata.normalize("NFC", path.stem)
        if stem in found:
            raise BadDataError(f"{found[stem]} and {path.name} share the name {stem!r}: each image pairs with "
                               "the mask of the same name, so rename one of them")
        found[stem] = path
    return found


#: A mask of only 0 and 255 in which 255 (ignore) covers at least this fraction looks like a binary mask
#: whose objects were saved as 255 (:class:`FolderDataset` warns).
IGNORED_OBJECT_FRACTION = 0.05


class FolderDataset(SegmentationFolder):
    """Your own images and masks, laid out as this module's docstring shows.

    Args:
        root: the folder holding ``classes.txt`` and one folder per split.
        split: a folder name under ``root`` (``"train"``, ``"val"``, ...).
        transform: joint transform ``(image, mask) -> (image, mask)``.
        skip_unpaired: read the files that pair up and list the others in :attr:`unpaired` instead of
            raising (``deeplab-edu check-data`` does, to report every problem at once; training does not:
            a file left out without a word would be a file never learned from).

    Attributes:
        unpaired: with ``skip_unpaired``, one message per file left out (an image without a mask, a
            mask without an image, a mask that is not a PNG); otherwise empty.
        classes_file: ``root / "classes.txt"``, the file the classes were read from.

    Items: image float32 (3, H, W) in [0, 1], mask int64 (H, W) with 255 = ignore; ``num_classes``,
    ``class_names`` and ``palette`` come from ``classes.txt``. Like every data set here it gives
    images *before* normalisation: for training or evaluating a model pass
    ``transform=train_transform(crop_size)`` or ``transform=eval_transform()``
    (:mod:`deeplab_edu.data.transforms`), which normalise with ImageNet's mean and std, as the
    command line's ``--dataset folder`` does.

    Raises:
        DatasetNotFoundError: ``root``, ``classes.txt`` or the split's ``images/`` / ``masks/`` folder
            is missing, or a split has no images.
        BadDataError: ``classes.txt`` is malformed (a colour that is not three values, two classes
            with one colour, a repeated name), a mask is not a PNG, images and masks do not pair
            up (the unmatched files are listed), or two images (or two masks) share a name (``a.jpg``
            and ``a.png``).
    """

    def __init__(self, root: str | Path, split: str = "train", *, transform: JointTransform | None = None,
                 skip_unpaired: bool = False) -> None:
        root = Path(root).expanduser()
        if root.is_file():
            raise DatasetNotFoundError(f"the folder data set {root} is a file; give the folder that holds "
                                       f"classes.txt (layout: {_LAYOUT})")
        if not root.is_dir():
            raise DatasetNotFoundError(f"the folder data set {root} does not exist (layout: {_LAYOUT})")
        self.classes_file = root / "classes.txt"
        info = read_classes(self.classes_file, name=root.name or "folder")
        images_dir, masks_dir = root / split / "images", root / split / "masks"
        for folder in (images_dir, masks_dir):
            if not folder.is_dir():
                splits = sorted(p.name for p in root.iterdir() if (p / "images").is_dir())
                need_val = split == "val" and splits  # training validates on val: the error a new user met first
                raise DatasetNotFoundError(f"{folder} does not exist; splits found in {root}: "
                                           f"{', '.join(splits) or 'none'} (layout: {_LAYOUT})"
                                           + ("; training validates on the 'val' split: move a few image/mask "
                                              "pairs into val/images and val/masks" if need_val else ""))
        images, in_masks = _by_stem(image_files(images_dir)), image_files(masks_dir)
        masks = _by_stem([p for p in in_masks if p.suffix.lower() == ".png"])
        not_png = [p.name for p in in_masks if p.suffix.lower() != ".png"]
        png_advice = "save masks as PNG (JPEG is lossy: it changes label values near every edge)"
        if not_png and not skip_unpaired:
            raise BadDataError(f"{masks_dir} holds masks that are not PNG files: {', '.join(not_png[:5])}"
                               f"{' ...' if len(not_png) > 5 else ''}; {png_advice}")
        nested = _folders_of_images(images_dir)  # a trial: images in subfolders were left out without a word
        inside = (f"; the images in its subfolder(s) {', '.join(nested[:3])}{' ...' if len(nested) > 3 else ''} are "
                  "not read: a split's images are the files directly in images/" if nested else "")
        if not images:
            raise DatasetNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images_dir}{inside}")
        if nested:
            warnings.warn(f"{images_dir}{inside}", UserWarning, stacklevel=2)
        unmatched = [f"{images_dir / images[s].name} has no mask {s}.png in {masks_dir}"
                     for s in sorted(images.keys() - masks.keys())]
        unmatched += [f"{masks_dir / masks[s].name} has no image in {images_dir}" for s in sorted(masks.keys() - images.keys())]
        if unmatched and not skip_unpaired:
            shown = "\n  ".join(unmatched[:5]) + (f"\n  ... and {len(unmatched) - 5} more" if len(unmatched) > 5 else "")
            raise BadDataError(f"images and masks of {root / split} do not pair up by name:\n  {shown}")
        self.unpaired: list[str] = [f"{masks_dir / name} is not a PNG file: {png_advice}" for name in not_png] + unmatched
        pairs = [(images[s], masks[s]) for s in sorted(images.keys() & masks.keys())]
        if not pairs:
            raise BadDataError(f"no image of {images_dir} has a mask of the same name in {masks_dir}")
        super().__init__(pairs, info, transform=transform, name=f"{info.name} ({split})")
        self._warned_ignored_objects = False
        #: Warn of every mask that looks like objects saved as the ignore label, not only the first (what
        #: :func:`~deeplab_edu.data.check.check_dataset` sets while it reads the data set).
        self.warn_every_mask = False

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``index`` without the transform, as :meth:`SegmentationFolder.load`; warns (once per data
        set, or for each such mask with ``warn_every_mask``) about a mask that looks like an object saved as
        255, the ignore label."""
        image, mask = super().load(index)
        if ((self.warn_every_mask or not self._warned_ignored_objects) and self.num_classes > 1
                and (note := ignored_objects_note(mask, self.ignore_index, self.class_names[1])) is not None):
            self._warned_ignored_objects = True
            # reported at the mask file, not at a line of this package or of the DataLoader that read it
            warnings.warn_explicit(f"mask {self.pairs[index][1]} {note}", UserWarning,
                                   filename=str(self.pairs[index][1]), lineno=0, module=__name__)
        return image, mask


def ignored_objects_note(mask: torch.Tensor | np.ndarray, ignore_index: int = 255,
                         first_object: str | None = None) -> str | None:
    """What to say of a mask (an integer ``(H, W)`` tensor or array, or any shape) that looks like objects saved
    as ``ignore_index`` (a black-and-white mask: 0 and 255 only, 255 covering at least
    :data:`IGNORED_OBJECT_FRACTION`), else ``None``: "holds only 0 and 255, and 255 (the ignore label ...)
    covers 40% of it. If 255 marks your objects ..., save them as their class index, e.g. 1 for 'object' ...",
    the mask's name to be put before it. ``first_object``: class 1's name, for the example."""
    mask = torch.as_tensor(mask)
    is_ignored = mask == ignore_index
    ignored = float(is_ignored.float().mean()) if mask.numel() else 0.0
    if ignored < IGNORED_OBJECT_FRACTION or not bool(((mask == 0) | is_ignored).all()):
        return None
    ii, what = ignore_index, "(the ignore label: neither learned nor scored)"
    held = (f"is {ii} everywhere {what}" if ignored == 1.0 else  # a trial was told "only 0 and 255" of it
            f"holds only 0 and {ii}, and {ii} {what} covers {ignored:.0%} of it")
    example = f"1 for {first_object!r}" if first_object is not None else "1 for the first object class"
    return (f"{held}. If {ii} marks your objects (a black-and-white mask), save them as their class index, e.g. "
            f"{example}; ignored regions are usually thin borders.")
