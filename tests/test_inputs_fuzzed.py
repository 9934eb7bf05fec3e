"""Inputs a fuzzing trial of the image and mask readers found mishandled (stop 68): a malformed TIFF, masks
of 2, 4 and 16 bits per sample, a malformed EXIF orientation, ``predict``'s output names, a broken link,
a name in Unicode's decomposed form.

Each test states the right result; each failed before its fix.
"""

from __future__ import annotations

import os
import struct
import unicodedata
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deeplab_edu.data.io import BadDataError, DatasetNotFoundError, check_files_exist, load_image, load_mask

ORIENTATION = 0x0112  # the EXIF tag


def _png(path: Path, rows: list[bytes], width: int, height: int, depth: int, colour_type: int) -> Path:
    """A PNG written chunk by chunk: bit depths and layouts Pillow cannot save (2-bit grey, 16-bit RGB)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    data = zlib.compress(b"".join(b"\x00" + row for row in rows))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def _tiff_without_width_on_page_2(path: Path) -> Path:
    """A two-page TIFF whose second page has no ImageWidth: Pillow raises TypeError ("Missing dimensions")."""
    def ifd(entries: list[tuple[int, int]], next_ifd: int) -> bytes:
        long_tags = (256, 257, 273, 278, 279)
        return (struct.pack("<H", len(entries))
                + b"".join(struct.pack("<HHII", t, 4 if t in long_tags else 3, 1, v) for t, v in entries)
                + struct.pack("<I", next_ifd))

    def tags(offset: int) -> list[tuple[int, int]]:
        return [(256, 2), (257, 2), (258, 8), (259, 1), (262, 1), (273, offset), (277, 1), (278, 2), (279, 4)]

    page2 = ifd([(257, 2)], 0)
    size1 = len(ifd(tags(0), 0))
    page1 = ifd(tags(8 + size1 + len(page2)), 8 + size1)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + page1 + page2 + bytes([0, 64, 128, 255]))
    return path


def test_a_tiff_that_pillow_fails_on_with_a_type_error_is_named_as_corrupt(tmp_path: Path) -> None:
    path = _tiff_without_width_on_page_2(tmp_path / "two pages.tif")
    with pytest.raises(BadDataError, match=r"image file .*two pages\.tif is corrupt or truncated \(TypeError"):
        load_image(path)
    with pytest.raises(BadDataError, match=r"mask file .*two pages\.tif is corrupt"):
        load_mask(path, 3)


def test_two_and_four_bit_grey_masks_keep_their_indices(tmp_path: Path) -> None:
    # 2 bits: the samples 0, 1, 2, 3 of each row's first byte (0b00011011), then 3, 3, 3, 3
    two = _png(tmp_path / "two.png", [bytes([0b00011011, 0xFF])] * 3, 8, 3, 2, 0)
    assert load_mask(two, 4)[0].tolist() == [0, 1, 2, 3, 3, 3, 3, 3]  # was 0, 85, 170, 255: refused
    only_0_and_3 = _png(tmp_path / "ends.png", [bytes([0x00, 0xFF])] * 3, 8, 3, 2, 0)
    assert load_mask(only_0_and_3, 4).unique().tolist() == [0, 3]  # was [0, 255]: class 3 ignored, silently
    four = _png(tmp_path / "four.png", [bytes([0x01, 0x2F])] * 2, 4, 2, 4, 0)
    assert load_mask(four, 16)[0].tolist() == [0, 1, 2, 15]
    assert load_image(two)[0, 0, :4].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])  # an image: levels in [0, 1]


@pytest.mark.parametrize("colour_type, channels", [(4, 2), (2, 3), (6, 4)], ids=["grey+alpha", "RGB", "RGBA"])
def test_sixteen_bit_colour_masks_are_refused_not_read_as_class_0(tmp_path: Path, colour_type: int,
                                                                   channels: int) -> None:
    samples = np.repeat(np.array([0, 1, 2, 2], ">u2"), channels)  # indices in every channel (alpha too)
    path = _png(tmp_path / "m.png", [samples.tobytes()] * 4, 4, 4, 16, colour_type)
    with pytest.raises(BadDataError, match=r"mask file .*m\.png stores 16 bits per sample .* only the high byte"):
        load_mask(path, 3)  # was: every pixel class 0
    grey = _png(tmp_path / "grey16.png", [np.array([0, 1, 2, 2], ">u2").tobytes()] * 4, 4, 4, 16, 0)
    assert load_mask(grey, 3).unique().tolist() == [0, 1, 2]  # 16-bit grey is read whole, as before


def _exif_orientation_as_text(path: Path, text: bytes) -> Path:
    """A JPEG whose EXIF Orientation is written as ASCII text (type 2), which Pillow's exif_transpose ignores."""
    entry = struct.pack("<HHI", ORIENTATION, 2, 2) + text.ljust(4, b"\x00")
    exif = b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 0)
    Image.new("RGB", (40, 20)).save(path, exif=exif)
    return path


@pytest.mark.parametrize("text", [b"x", b"6"])
def test_an_orientation_tag_of_text_is_not_applied_and_does_not_refuse_the_photo(tmp_path: Path, text: bytes) -> None:
    from deeplab_edu.data.io import _orientation

    path = _exif_orientation_as_text(tmp_path / "photo.jpg", text)
    assert tuple(load_image(path).shape) == (3, 20, 40)  # was "corrupt or truncated" for "x"
    assert _orientation(path) == 1  # "6" was kept as 6, so a size mismatch blamed a tag not applied


def test_predict_gives_each_image_its_own_output_names() -> None:
    from deeplab_edu.cli import _output_names

    names = _output_names([Path(n) for n in ("a.JPG", "a.jpg", "a.png", "a_png.tif", "b.png", "café.png")])
    assert list(names.values()) == ["a_jpg", "a_jpg_2", "a_png", "a_png_2", "b", "café"]  # a.JPG's masks were lost
    assert len({n.casefold() for n in names.values()}) == len(names)  # on a file system blind to case too


def test_a_broken_link_is_named_as_one(tmp_path: Path) -> None:
    link = tmp_path / "x.png"
    link.symlink_to(tmp_path / "gone.png")
    with pytest.raises(DatasetNotFoundError, match=r"x\.png \(a broken link to .*gone\.png\)$"):
        check_files_exist([link], what="folder train", hint="")  # and no empty line after an empty hint


def test_names_in_decomposed_unicode_pair_with_composed_ones(tmp_path: Path) -> None:
    from deeplab_edu.data import build_dataset

    root = tmp_path / "own"
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "masks").mkdir(parents=True)
    (root / "classes.txt").write_text("background\nthing\n")
    nfd, nfc = unicodedata.normalize("NFD", "café"), unicodedata.normalize("NFC", "café")
    assert nfd != nfc
    Image.new("RGB", (8, 6)).save(root / "train" / "images" / f"{nfd}.jpg")  # as a Mac writes it
    Image.fromarray(np.ones((6, 8), np.uint8)).save(root / "train" / "masks" / f"{nfc}.png")
    if sorted(os.listdir(root / "train" / "images")) == sorted(os.listdir(root / "train" / "masks")):
        pytest.skip("this file system normalises names itself")
    data = build_dataset("folder", root=root, split="train")
    image, mask = data[0]
    assert len(data) == 1 and tuple(image.shape[-2:]) == tuple(mask.shape) == (6, 8)


def test_other_stored_layouts_pillow_converts(tmp_path: Path) -> None:
    # a review: PGM/PPM store samples up to their maxval, which Pillow stretches or cuts like PNG's
    pgm = tmp_path / "m3.pgm"
    pgm.write_bytes(b"P5\n4 2\n3\n" + bytes([0, 1, 2, 3, 3, 2, 1, 0]))
    assert load_mask(pgm, 4).tolist() == [[0, 1, 2, 3], [3, 2, 1, 0]]  # was refused as "85, 170"
    ppm = tmp_path / "m16.ppm"
    ppm.write_bytes(b"P6\n2 1\n65535\n" + np.array([1, 1, 1, 2, 2, 2], ">u2").tobytes())
    with pytest.raises(BadDataError, match=r"m16\.ppm stores 16 bits per sample"):
        load_mask(ppm, 3)  # was every pixel class 0


@pytest.mark.parametrize("field_type, data", [(5, struct.pack("<II", 6, 1)), (12, struct.pack("<d", 6.0))],
                         ids=["rational 6/1", "double 6.0"])
def test_an_orientation_stored_as_a_number_of_another_type_is_applied_and_recorded(tmp_path: Path, field_type: int,
                                                                                   data: bytes) -> None:
    # a review: an orientation of the RATIONAL or DOUBLE type is applied by exif_transpose, and was recorded as 1
    from deeplab_edu.data.io import _orientation

    value_at = 8 + 2 + 12 + 4  # after the header, the entry count, one entry and the next-IFD offset
    entry = struct.pack("<HHII", ORIENTATION, field_type, 1, value_at)
    exif = b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 0) + data
    Image.new("RGB", (40, 20)).save(tmp_path / "p.jpg", exif=exif)
    assert tuple(load_image(tmp_path / "p.jpg").shape) == (3, 40, 20)  # exif_transpose turns it
    assert _orientation(tmp_path / "p.jpg") == 6  # and the message check_pair gives names the tag
