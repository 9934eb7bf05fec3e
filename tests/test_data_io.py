"""Reading image and mask files: every bad input gets an error naming the file, or a correct conversion."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from deeplab_edu.data.classes import CAMVID, VOC, voc_colormap
from deeplab_edu.data.io import (
    BadDataError,
    DatasetNotFoundError,
    check_files_exist,
    check_pair,
    load_image,
    load_mask,
    read_split_list,
)

BOUNDARY = {(224, 224, 192): 255}


def _rgb(h=12, w=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- images
def test_rgb_jpeg_and_png(tmp_path):
    arr = _rgb()
    Image.fromarray(arr).save(tmp_path / "a.png")
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=95)
    png = load_image(tmp_path / "a.png")
    assert png.shape == (3, 12, 16) and png.dtype == torch.float32
    assert torch.allclose(png, torch.from_numpy(arr).permute(2, 0, 1).float() / 255)
    assert load_image(tmp_path / "a.jpg").shape == (3, 12, 16)


def test_grayscale_image_becomes_rgb(tmp_path):
    grey = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png")
    assert x.shape == (3, 12, 16)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    assert torch.allclose(x[0], torch.from_numpy(grey).float() / 255)


def test_16bit_grayscale_image(tmp_path):
    arr = (np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 300).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    x = load_image(tmp_path / "g16.png")
    assert x.shape == (3, 12, 16)  # every 16-bit level kept (clipping to 8 bits would saturate at 255 / 65535)
    assert torch.allclose(x[0], torch.from_numpy(arr.astype(np.float64) / 65535).float(), atol=1e-6)


def test_rgba_image_drops_alpha(tmp_path):
    arr = np.concatenate([_rgb(), np.full((12, 16, 1), 7, np.uint8)], axis=2)
    Image.fromarray(arr, mode="RGBA").save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    assert x.shape == (3, 12, 16)
    assert torch.allclose(x, torch.from_numpy(arr[..., :3]).permute(2, 0, 1).float() / 255)


def test_corrupt_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg at all" * 10)
    with pytest.raises(BadDataError, match="broken.jpg"):
        load_image(bad)


def test_truncated_image_names_the_file(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, format="JPEG", quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(BadDataError, match=r"cut\.jpg.*(corrupt|truncated)"):
        load_image(cut)
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, format="PNG")
    cut_png = tmp_path / "cut.png"
    cut_png.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(BadDataError, match="cut.png"):
        load_image(cut_png)


def test_an_image_too_large_to_read_safely_names_the_file(tmp_path, monkeypatch):
    """PIL refuses an image whose header claims more than twice MAX_IMAGE_PIXELS (a decompression bomb):
    that was a raw PIL traceback without the file's name, and stopped a folder's predictions."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # a 20000 x 20000 file, made small
    Image.fromarray(_rgb(16, 16)).save(tmp_path / "huge.png")
    with pytest.raises(BadDataError, match=r"huge\.png is too large to read safely"):
        load_image(tmp_path / "huge.png")


def test_missing_image(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="nothere.png"):
        load_image(tmp_path / "nothere.png")


# ---------------------------------------------------------------- masks
def test_index_mask(tmp_path):
    m = np.array([[0, 1, 2], [10, 255, 3]], np.uint8)
    Image.fromarray(m, mode="L").save(tmp_path / "m.png")
    out = load_mask(tmp_path / "m.png", 11)
    assert out.dtype == torch.int64 and out.tolist() == m.tolist()


def test_label_values_outside_the_classes(tmp_path):
    m = np.array([[0, 1, 2], [40, 255, 12]], np.uint8)
    Image.fromarray(m, mode="L").save(tmp_path / "bad_labels.png")
    with pytest.raises(BadDataError, match=r"bad_labels\.png.*12, 40.*neither a class"):
        load_mask(tmp_path / "bad_labels.png", 11)


def test_lut_maps_void_to_ignore(tmp_path):
    m = np.array([[0, 11], [10, 3]], np.uint8)
    Image.fromarray(m, mode="L").save(tmp_path / "m.png")
    lut = np.arange(256, dtype=np.uint8)
    lut[11] = 255
    assert load_mask(tmp_path / "m.png", 11, lut=lut).tolist() == [[0, 255], [10, 3]]


def _voc_palette_png(path, m):
    img = Image.fromarray(m, mode="P")
    img.putpalette(voc_colormap(256).ravel().tolist())
    img.save(path)


def test_voc_palette_mask_gives_indices(tmp_path):
    m = np.array([[0, 1, 255], [15, 20, 0]], np.uint8)
    _voc_palette_png(tmp_path / "voc.png", m)
    out = load_mask(tmp_path / "voc.png", 21, palette=VOC.palette, colour_aliases=BOUNDARY)
    assert out.tolist() == m.tolist()


def test_palette_mask_with_other_slot_order_is_converted_by_colour(tmp_path):
    # slot 0 holds class 3's colour, slot 1 class 0's: the colours carry the meaning
    m = np.array([[0, 1], [1, 0]], np.uint8)
    img = Image.fromarray(m, mode="P")
    pal = [*VOC.palette[3], *VOC.palette[0]] + [0, 0, 0] * 254
    img.putpalette(pal)
    img.save(tmp_path / "shuffled.png")
    out = load_mask(tmp_path / "shuffled.png", 21, palette=VOC.palette, colour_aliases=BOUNDARY)
    assert out.tolist() == [[3, 0], [0, 3]]


def test_palette_mask_whose_indices_name_no_class_is_read_by_its_class_colours(tmp_path):
    """A practitioner's trial: a palette mask drawn at indices 5, 7 and 9 in exactly the colours of
    classes.txt was refused ("label values 5, 7, 9 ... neither a class"), though it shows the class
    colours in any viewer; its colours carry the meaning."""
    m = np.array([[5, 7], [9, 255]], np.uint8)
    img = Image.fromarray(m, mode="P")
    pal = [0, 0, 0] * 256
    pal[7 * 3:7 * 3 + 3], pal[9 * 3:9 * 3 + 3] = [255, 0, 0], [0, 0, 255]  # index 5 keeps black: background
    img.putpalette(pal)
    img.save(tmp_path / "drawn.png")
    classes = ((0, 0, 0), (255, 0, 0), (0, 0, 255))
    assert load_mask(tmp_path / "drawn.png", 3, palette=classes).tolist() == [[0, 1], [2, 255]]
    pal[9 * 3:9 * 3 + 3] = [0, 200, 0]  # a colour that is no class's: refused, naming the values
    img.putpalette(pal)
    img.save(tmp_path / "drawn.png")
    with pytest.raises(BadDataError, match=r"drawn\.png"):
        load_mask(tmp_path / "drawn.png", 3, palette=classes)


def test_palette_mask_with_unknown_colours_is_read_by_index_or_refused(tmp_path):
    """Another tool's palette (an annotation tool's display colours): its indices are the labels when
    every one is a class or 255, as in VOC; otherwise neither reading is safe."""
    m = np.array([[0, 1], [255, 0]], np.uint8)
    img = Image.fromarray(m, mode="P")
    img.putpalette([12, 34, 56, 78, 90, 12] + [0, 0, 0] * 254)
    img.save(tmp_path / "tool_palette.png")
    assert load_mask(tmp_path / "tool_palette.png", 2, palette=((1, 2, 3), (4, 5, 6))).tolist() == m.tolist()
    with pytest.raises(BadDataError, match=r"tool_palette\.png.*not class colours"):
        load_mask(tmp_path / "tool_palette.png", 1, palette=((1, 2, 3),))  # index 1 is no class


def test_the_ignore_index_of_a_palette_mask_read_by_colour_is_ignored(tmp_path):
    """The class colours in another order (read by colour) and 255 in white, a colour that is no
    class (annotation tools draw "ignore" as they like): 255 stays the ignore label. Before, the
    white made the whole mask be read by index, giving index 0's pixels class 0 in class 2's colour."""
    classes = ((0, 0, 0), (200, 0, 0), (0, 200, 0))
    m = np.array([[0, 1, 255], [2, 255, 0]], np.uint8)
    img = Image.fromarray(m, mode="P")
    img.putpalette([c for rgb in classes[::-1] for c in rgb] + [0, 0, 0] * 252 + [255, 255, 255])
    img.save(tmp_path / "white_ignore.png")
    assert load_mask(tmp_path / "white_ignore.png", 3, palette=classes).tolist() == [[2, 1, 255], [0, 255, 2]]


def test_a_palette_whose_index_has_another_class_colour_is_refused(tmp_path):
    """Index 0 in class 2's colour and index 1 in a colour that is no class: by index the pixel is
    class 0, by colour class 2. It was read by index, silently."""
    classes = ((0, 0, 0), (200, 0, 0), (0, 200, 0))
    img = Image.fromarray(np.array([[0, 1]], np.uint8), mode="P")
    img.putpalette([0, 200, 0, 9, 9, 9])
    img.save(tmp_path / "contradicts.png")
    with pytest.raises(BadDataError, match=r"contradicts\.png is a palette image whose index 0 has the colour of class 2"):
        load_mask(tmp_path / "contradicts.png", 3, palette=classes)


def test_bilevel_and_grey_alpha_masks_hold_indices(tmp_path):
    m = np.array([[0, 1, 1], [1, 0, 0]], np.uint8)
    Image.fromarray(m.astype(bool)).save(tmp_path / "bilevel.png")
    assert Image.open(tmp_path / "bilevel.png").mode == "1"
    assert load_mask(tmp_path / "bilevel.png", 2).tolist() == m.tolist()
    Image.fromarray(np.stack([m, np.full_like(m, 255)], -1), mode="LA").save(tmp_path / "la.png")
    assert load_mask(tmp_path / "la.png", 2).tolist() == m.tolist()


def test_jpeg_mask_is_refused(tmp_path):
    Image.fromarray(np.array([[0, 1], [2, 0]], np.uint8)).save(tmp_path / "mask.jpg", quality=95)
    with pytest.raises(BadDataError, match=r"mask\.jpg is a JPEG: lossy.*save masks as PNG"):
        load_mask(tmp_path / "mask.jpg", 3)


def test_rgb_mask_with_class_colours_is_converted(tmp_path):
    idx = np.array([[0, 3, 8], [10, 1, 0]], np.uint8)
    rgb = np.asarray(CAMVID.palette, np.uint8)[idx]
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    out = load_mask(tmp_path / "colour.png", 11, palette=CAMVID.palette)
    assert out.tolist() == idx.tolist()


def test_rgb_mask_with_equal_channels_is_taken_as_indices(tmp_path):
    idx = np.array([[0, 3, 8], [10, 1, 255]], np.uint8)
    Image.fromarray(np.repeat(idx[..., None], 3, axis=2)).save(tmp_path / "grey_rgb.png")
    assert load_mask(tmp_path / "grey_rgb.png", 11, palette=CAMVID.palette).tolist() == idx.tolist()


def test_rgb_mask_with_other_colours_is_an_error(tmp_path):
    rgb = _rgb(6, 6)  # like a JPEG-compressed colour mask: colours that are no class colour
    Image.fromarray(rgb).save(tmp_path / "photo_mask.png")
    with pytest.raises(BadDataError, match=r"photo_mask\.png.*RGB.*not class colours") as err:
        load_mask(tmp_path / "photo_mask.png", 11, palette=CAMVID.palette)
    assert "give that class this colour" in str(err.value) and "255" in str(err.value)  # how to mend it (a trial)
    with pytest.raises(BadDataError, match=r"photo_mask\.png.*colour \(RGB\)"):
        load_mask(tmp_path / "photo_mask.png", 11)


def test_corrupt_mask(tmp_path):
    (tmp_path / "m.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(BadDataError, match="m.png"):
        load_mask(tmp_path / "m.png", 11)


# ---------------------------------------------------------------- pairs and lists
def test_size_mismatch_names_both_files():
    with pytest.raises(BadDataError, match=r"img\.jpg is 16x12.*lab\.png is 15x12"):
        check_pair(torch.zeros(3, 12, 16), torch.zeros(12, 15), "img.jpg", "lab.png")
    check_pair(torch.zeros(3, 12, 16), torch.zeros(12, 16), "a", "b")


def test_split_lists(tmp_path):
    (tmp_path / "empty.txt").write_text("\n  \n# only a comment\n")
    with pytest.raises(BadDataError, match=r"empty\.txt is empty"):
        read_split_list(tmp_path / "empty.txt")
    with pytest.raises(DatasetNotFoundError, match="missing.txt"):
        read_split_list(tmp_path / "missing.txt")
    (tmp_path / "ok.txt").write_text("a\n\nb\n")
    assert read_split_list(tmp_path / "ok.txt") == ["a", "b"]
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9_0001\n".encode("latin-1"))  # read as UTF-8 whatever the locale
    with pytest.raises(BadDataError, match=r"latin1\.txt is not UTF-8 text"):
        read_split_list(tmp_path / "latin1.txt")


def test_missing_files_are_listed(tmp_path):
    (tmp_path / "here.png").write_bytes(b"x")
    files = [tmp_path / "here.png"] + [tmp_path / f"gone{i}.png" for i in range(7)]
    with pytest.raises(DatasetNotFoundError, match=r"7 of 8 files are missing(.|\n)*gone0.png(.|\n)*and 2 more(.|\n)*get it"):
        check_files_exist(files, what="toy", hint="how to get it")


def test_rgb_mask_of_grey_class_colours_is_read_by_colour(tmp_path):
    # CamVid's sky is (128, 128, 128): a colour mask of sky alone has equal channels, but 128 is no class index
    Image.fromarray(np.full((4, 5, 3), 128, np.uint8)).save(tmp_path / "sky.png")
    assert load_mask(tmp_path / "sky.png", 11, palette=CAMVID.palette).unique().tolist() == [0]
    # VOC's car (class 7) is (128, 128, 128) and its background (0, 0, 0): both readings of 0 agree
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[1:3, 1:4] = 128
    Image.fromarray(rgb).save(tmp_path / "car.png")
    assert load_mask(tmp_path / "car.png", 21, palette=VOC.palette).unique().tolist() == [0, 7]


def test_rgb_mask_of_greys_read_both_ways_differently_is_refused(tmp_path):
    # class 0 "road" is (128, 64, 128), class 2 "background" is black: an all-black RGB mask is index 0 (road)
    # or colour (0, 0, 0) (background); nothing in the file says which
    palette = [(128, 64, 128), (0, 0, 255), (0, 0, 0)]
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(BadDataError, match=r"black\.png is an RGB image whose colours are all grey \(\(0, 0, 0\)\)"):
        load_mask(tmp_path / "black.png", 3, palette=palette)
    # a grey index mask whose greys are no class colours is still read by index
    Image.fromarray(np.full((4, 5, 3), 1, np.uint8)).save(tmp_path / "one.png")
    assert load_mask(tmp_path / "one.png", 3, palette=palette).unique().tolist() == [1]


def test_colour_masks_name_classes_and_skip_the_index_lookup_table(tmp_path):
    # Cityscapes' lut maps the files' label ids to train ids; a mask in the train-id colours (its
    # *_color.png) already names train ids: road (128, 64, 128) is train id 0, and label id 0 is "unlabeled"
    from deeplab_edu.data.classes import CITYSCAPES, cityscapes_lut

    rgb = np.asarray(CITYSCAPES.palette, np.uint8)[np.array([[0, 1], [2, 18]])]
    Image.fromarray(rgb).save(tmp_path / "color.png")
    out = load_mask(tmp_path / "color.png", CITYSCAPES.num_classes, palette=CITYSCAPES.palette, lut=cityscapes_lut())
    assert out.tolist() == [[0, 1], [2, 18]]
    ids = np.array([[7, 8], [11, 33]], np.uint8)  # road, sidewalk, building, bicycle as label ids
    Image.fromarray(ids).save(tmp_path / "labelIds.png")
    out = load_mask(tmp_path / "labelIds.png", CITYSCAPES.num_classes, palette=CITYSCAPES.palette, lut=cityscapes_lut())
    assert out.tolist() == [[0, 1], [2, 18]]


def test_a_palette_padded_with_black_is_read_by_index(tmp_path):
    """A palette padded to 256 entries with black gives several used indices one colour: read by colour
    they merged into class 0, silently (class 2 vanished). The indices are what tells them apart."""
    classes = ((0, 0, 0), (255, 0, 0), (0, 128, 0))
    m = np.zeros((4, 6), np.uint8)
    m[1, 1], m[2, 4] = 1, 2
    img = Image.fromarray(m, mode="P")
    for name, pal in (("padded.png", [0, 0, 0, 255, 0, 0] + [0] * 762), ("all_black.png", [0] * 768)):
        img.putpalette(pal)
        img.save(tmp_path / name)
        assert load_mask(tmp_path / name, 3, palette=classes).tolist() == m.tolist(), name
    img.putpalette([0, 0, 0, 0, 128, 0] + [0] * 762)  # index 1 in class 2's colour: index and colour contradict
    img.save(tmp_path / "contradicts.png")
    with pytest.raises(BadDataError, match=r"contradicts\.png is a palette image whose index 1 has the colour of class 2"):
        load_mask(tmp_path / "contradicts.png", 3, palette=classes)
    m[0, 0] = 7  # an index that is no class
    img = Image.fromarray(m, mode="P")
    img.putpalette([0] * 768)  # all black: read by index, and 7 is refused as a label
    img.save(tmp_path / "all_black_7.png")
    with pytest.raises(BadDataError, match=r"all_black_7\.png contains the label value 7"):
        load_mask(tmp_path / "all_black_7.png", 3, palette=classes)
    img.putpalette([0, 0, 0, 9, 9, 9] + [0] * 762)  # and index 1 in a colour that is no class: no reading is safe
    img.save(tmp_path / "no_class.png")
    with pytest.raises(BadDataError, match=r"no_class\.png is a palette image in which several used indices have the same"):
        load_mask(tmp_path / "no_class.png", 3, palette=classes)


def test_a_float_image_with_nan_pixels_is_refused(tmp_path):
    """NaN fails no range test (every comparison with it is false): it passed, and training then
    stopped with a NaN loss blamed on the learning rate."""
    arr = np.full((4, 5), 0.5, np.float32)
    arr[1, 2] = np.nan
    Image.fromarray(arr).save(tmp_path / "nan.tif")
    with pytest.raises(BadDataError, match=r"nan\.tif is a float \(mode F\) image with 1 pixels that are NaN"):
        load_image(tmp_path / "nan.tif")
