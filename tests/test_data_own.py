"""data.own: your own images and masks in a folder, from Python and from the command line."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deeplab_edu.data import BadDataError, DatasetNotFoundError, FolderDataset, build_dataset, read_classes


def _make(root: Path, splits: dict[str, int], classes: str = "background\nsquare 255 0 0\n") -> Path:
    (root / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text(classes)
    for split, n in splits.items():
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            mask = np.zeros((24, 32), np.uint8)
            mask[4 + i: 14 + i, 6:20] = 1
            image = np.where(mask[..., None] == 1, np.array([220, 40, 40], np.uint8), np.uint8(30))
            Image.fromarray(image.astype(np.uint8)).save(root / split / "images" / f"p{i}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"p{i}.png")
    return root


def test_a_folder_reads_as_a_data_set(tmp_path: Path) -> None:
    root = _make(tmp_path / "mine", {"train": 3, "val": 2})
    ds = build_dataset("folder", "train", root=root)
    assert isinstance(ds, FolderDataset) and len(ds) == 3 and ds.num_classes == 2
    assert ds.class_names == ("background", "square") and ds.palette[1] == (255, 0, 0)
    assert ds.palette[0] == (0, 0, 0)  # no colour given: PASCAL VOC's colour of index 0
    (tmp_path / "c.txt").write_text("a\nb\nc 128 0 0\nlane 2\n")  # b's VOC colour is c's: b gets a free one
    assert read_classes(tmp_path / "c.txt").palette == ((0, 0, 0), (0, 128, 0), (128, 0, 0), (128, 128, 0))
    assert read_classes(tmp_path / "c.txt").class_names[3] == "lane 2"
    # a practitioner's trial: the data set was named after its last class ('car (train)' in check-data's line)
    assert read_classes(tmp_path / "c.txt", name="mydata").name == "mydata" and read_classes(tmp_path / "c.txt").name == "folder"
    (tmp_path / "c.txt").write_text("a  # not #ffffff, a comment\nroad #804080 # hex\n")  # the hex colour was dropped
    assert read_classes(tmp_path / "c.txt").palette == ((0, 0, 0), (128, 64, 128))
    with pytest.raises(DatasetNotFoundError, match=r"c\.txt is a file; give the folder that holds classes\.txt"):
        FolderDataset(tmp_path / "c.txt")
    image, mask = ds[1]
    assert image.shape == (3, 24, 32) and mask.shape == (24, 32) and set(mask.unique().tolist()) == {0, 1}


def test_classes_txt_comments_and_names_that_look_odd_are_read(tmp_path: Path) -> None:
    """The typo checks below must not refuse comments or names a careful user writes."""
    (tmp_path / "classes.txt").write_text(
        "## Classes\n#####\n# see https://x.org/a#b\nbackground #0\nsign (30 km/h) # issue #12\n"
        "road #804080 # purple\ncar (2 door) #add later\n")
    info = read_classes(tmp_path / "classes.txt")
    assert info.class_names == ("background", "sign (30 km/h)", "road", "car (2 door)")
    assert info.palette[2] == (128, 64, 128)


@pytest.mark.parametrize("text, message", [
    ("", "names no class"),
    ("# comment\nroad #804080\n", "names one class \\('road'\\): every pixel would be that class"),
    ("a\na\n", "more than once: a"),
    ("a 1 2 300\n", "line 1: colour .* not three values in 0..255"),
    ("a\ndisc 255 0\n", "line 2: 'disc 255 0' is neither a name nor a name followed by a colour"),
    ("a\ndisc 255,0,0\n", "line 2: .*three values separated by spaces"),
    ("a 9 9 9\nb 9 9 9\n", "classes 'a' and 'b' have the same colour"),
    # typos that were read silently: a comment, a name with brackets, a name cut at the '#'
    ("a\nroad #80408\n", "line 2: '#80408' has 5 hex digits; a colour is written '#RRGGBB'"),
    ("a\nroad (128 64 128)\n", "line 2: 'road \\(128 64 128\\)' is neither a name nor"),
    ("a\nC# circle\n", "line 2: 'C# circle' has a '#' inside a word"),
    # other tools' formats (a practitioner's trial): labels before the names, a line for the ignore label
    ("0 background\n1 road\n2 car\n", "each line starts with its label \\('0 background', '1 road', ...\\)"),
    ("background\nroad\n255 ignore\n", "'255 ignore' is not a class: 255 is the ignore label"),
])
def test_classes_txt_mistakes_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "classes.txt").write_text(text)
    with pytest.raises(BadDataError, match=message):
        read_classes(tmp_path / "classes.txt")


def test_a_folder_that_does_not_pair_up_lists_the_files(tmp_path: Path) -> None:
    root = _make(tmp_path / "mine", {"train": 3})
    (root / "train" / "masks" / "p1.png").rename(root / "train" / "masks" / "q1.png")
    with pytest.raises(BadDataError, match=r"(?s)p1\.png has no mask p1\.png.*q1\.png has no image"):
        FolderDataset(root, "train")
    (root / "train" / "masks" / "q1.png").rename(root / "train" / "masks" / "p1.png")
    Image.new("L", (32, 24)).save(root / "train" / "masks" / "p2.jpg")  # a JPEG mask beside the PNG one
    with pytest.raises(BadDataError, match=r"masks that are not PNG files: p2\.jpg"):
        FolderDataset(root, "train")
    with pytest.raises(DatasetNotFoundError, match="splits found in .*: train"):
        FolderDataset(root, "val")
    (root / "classes.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match="classes.txt is missing"):
        FolderDataset(root, "train")
    with pytest.raises(ValueError, match="needs its folder"):
        build_dataset("folder", "train")


def test_files_that_share_a_name_and_classes_txt_encodings(tmp_path: Path) -> None:
    """a.jpg beside a.png: one of them was dropped without a word; classes.txt from Notepad (a byte-order
    mark) gave the name '\\ufeffbackground', and a Latin-1 file an error without its path."""
    root = _make(tmp_path / "mine", {"train": 2})
    Image.new("RGB", (32, 24)).save(root / "train" / "images" / "p0.jpg")
    with pytest.raises(BadDataError, match=r"images/p0\.jpg and p0\.png share the name 'p0'"):
        FolderDataset(root, "train")
    (root / "train" / "images" / "p0.jpg").unlink()
    (root / "classes.txt").write_bytes("\ufeffbackground\nsquare 255 0 0\n".encode("utf-8"))
    assert FolderDataset(root, "train").class_names == ("background", "square")
    (root / "classes.txt").write_bytes("background\ncaf\xe9 255 0 0\n".encode("latin-1"))
    with pytest.raises(BadDataError, match=r"classes\.txt is not UTF-8 text"):
        FolderDataset(root, "train")


def test_objects_saved_as_the_ignore_label_are_warned_about(tmp_path: Path) -> None:
    """A black-and-white mask (objects 255) scored 100 % for a model that predicts nothing: every object
    pixel is ignored. The data set says so, once."""
    root = _make(tmp_path / "mine", {"val": 2})
    ds = FolderDataset(root, "val")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds.load(0)  # 0 and 1: nothing to say
    for i in range(2):
        mask = np.asarray(Image.open(root / "val" / "masks" / f"p{i}.png"))
        Image.fromarray(np.where(mask == 1, 255, 0).astype(np.uint8)).save(root / "val" / "masks" / f"p{i}.png")
    with pytest.warns(UserWarning, match=r"p0\.png holds only 0 and 255, and 255 .* covers 18% of it"):
        ds.load(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds.load(1)  # once per data set
    Image.fromarray(np.full((24, 32), 255, np.uint8)).save(root / "val" / "masks" / "p1.png")  # a trial: all 255 was
    with pytest.warns(UserWarning, match=r"p1\.png is 255 everywhere \(the ignore label"):  # "only 0 and 255"
        FolderDataset(root, "val").load(1)


def test_train_eval_predict_a_folder_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from deeplab_edu.cli import main

    root = _make(tmp_path / "mine", {"train": 4, "val": 2})
    run = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--dataset", "folder", "--data-root", str(root), "--crop-size", "24",
                 "--out-dir", str(run), "--no-progress"]) == 0
    assert "on folder at" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", str(run / "checkpoints" / "last.pt")]) == 0
    assert "| square |" in capsys.readouterr().out
    assert main(["predict", "--checkpoint", str(run / "checkpoints"), str(root / "val" / "images"),
                 "--out", str(tmp_path / "pred")]) == 0
    assert Image.open(tmp_path / "pred" / "p0_mask.png").getpalette()[3:6] == [255, 0, 0]
    # a ground-truth p0_mask.png beside p0.png was replaced without a word when --out was that folder
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(root / "val" / "images" / "p0.png").save(photos / "p0.png")
    Image.new("L", (32, 24), 1).save(photos / "p0_mask.png")
    truth = (photos / "p0_mask.png").read_bytes()
    predict = ["predict", "--checkpoint", str(run / "checkpoints"), str(photos), "--out", str(photos)]
    assert main(predict) == 2
    assert "already holds p0_mask.png, which predict did not write" in capsys.readouterr().err
    assert (photos / "p0_mask.png").read_bytes() == truth and not (photos / "p0_overlay.png").exists()
    assert main(predict + ["--overwrite"]) == 0 and (photos / "p0_mask.png").read_bytes() != truth
    assert main(predict) == 0  # its own files: replaced on the next call
    # hidden files (macOS's ._p0.png beside p0.png) are neither photos nor images of a data set
    (photos / "._p0.png").write_bytes(b"\x00\x05\x16\x07")
    assert main(predict) == 0 and not (photos / "._p0_mask.png").exists()
    (root / "val" / "images" / "._p0.png").write_bytes(b"\x00\x05\x16\x07")
    (root / "val" / "masks" / "._p0.png").write_bytes(b"\x00\x05\x16\x07")
    assert len(FolderDataset(root, "val")) == 2
    # the same two classes in the other order: scored under the wrong names before
    other = _make(tmp_path / "swapped", {"val": 1}, classes="square 255 0 0\nbackground\n")
    assert main(["eval", "--checkpoint", str(run), "--data-root", str(other)]) == 2
    assert "trained on the classes background, square, but data set 'folder' names square, background" in (
        capsys.readouterr().err)
    # the run's data folder moved: the message says where the path came from and how to give another
    root.rename(tmp_path / "moved")
    assert main(["eval", "--checkpoint", str(run)]) == 2
    assert "(the run's data_root, where it was trained; --data-root DIR reads" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(run), "--data-root", str(tmp_path / "moved")]) == 0


def test_a_bad_file_found_mid_run_keeps_the_training_done(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A validation mask with a label that is no class is found at the first evaluation: the
    iterations done are saved first, and the message is the file's, in one line (it came with a
    DataLoader worker's traceback), saying to --resume."""
    from deeplab_edu.cli import main
    from deeplab_edu.engine.checkpoint import latest_checkpoint

    root = _make(tmp_path / "mine", {"train": 4, "val": 2})
    Image.fromarray(np.full((24, 32), 7, np.uint8)).save(root / "val" / "masks" / "p1.png")
    run = tmp_path / "run"
    args = ["train", "--preset", "smoke", "--dataset", "folder", "--data-root", str(root), "--crop-size", "24",
            "--out-dir", str(run), "--no-progress", "--num-workers", "1", "--ckpt-every", "100"]
    assert main(args) == 2
    import multiprocessing

    assert not multiprocessing.active_children(), "the validation's DataLoader worker outlived the run"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "p1.png contains the label value 7" in err and "2 iterations done were saved" in err and "--resume" in err
    assert latest_checkpoint(run / "checkpoints").name == "ckpt_00000002.pt"
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(root / "val" / "masks" / "p1.png")
    assert main(args + ["--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out


def test_check_data_lists_every_bad_file_and_absent_classes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Training stops at the first bad file it reaches, possibly hours in; `check-data` reads them all
    first and lists each, and names a class no mask labels."""
    from deeplab_edu.cli import main
    from deeplab_edu.data.check import check_dataset

    root = _make(tmp_path / "data", {"train": 4, "val": 2}, classes="background\nsquare 255 0 0\nunused\n")
    good = check_dataset(build_dataset("folder", "train", root=root), num_workers=0, progress=False)
    assert good.items == 4 and not good.problems and good.absent_classes == ["unused"]
    assert good.pixels.sum() > 0 and good.pixels[2] == 0
    masks = sorted((root / "train" / "masks").iterdir())
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(masks[0])  # a label outside the classes (and another size)
    (root / "train" / "images" / f"{masks[1].stem}.png").write_bytes(b"not an image")
    size = Image.open(masks[2]).size
    Image.fromarray(np.where(np.arange(size[0]) % 2, 3, 7).astype(np.uint8)[None].repeat(size[1], 0)).save(masks[2])
    report = check_dataset(build_dataset("folder", "train", root=root), num_workers=1, progress=False)
    assert len(report.problems) == 3 and report.items == 4
    # the split's labels outside the classes, summed up once (a trial: only each bad item named its values)
    assert report.unknown_labels[3] == 1 and report.unknown_labels[7] >= 1 and set(report.unknown_labels) == {3, 7}
    assert ("labels outside the 3 classes (0..2) in 2 values: 3 (1 mask), 7 (" in report.summary()
            and "does classes.txt list every class" in report.summary())
    assert any(masks[0].name in p for p in report.problems) and any("not a readable image" in p for p in report.problems)
    assert main(["check-data", "--data-root", str(root), "--no-progress"]) == 2
    out = capsys.readouterr()
    assert "4 items read, 3 bad" in out.out and "2 items read, 0 bad" in out.out and "unused" in out.out
    assert "3 bad item(s)" in out.err
    assert "labelled pixels per class (in the 1 good item)" in report.summary()
    # every item bad (a trial: 'no mask labels a and b', of masks that did): no share and no absent class claimed
    from dataclasses import replace

    all_bad = replace(report, problems=report.problems * 2).summary()
    assert "no good item to count the classes' pixels in" in all_bad and "no mask of this split" not in all_bad


def test_check_data_states_a_shared_problem_once_and_reports_the_loaders_warnings(tmp_path: Path) -> None:
    """A trial: one wrong colour in 16 masks gave 16 identical lines, and the loader's warning came out
    in Python's format (``mask.png:0: UserWarning: ...``) above the progress bar."""
    from deeplab_edu.data.check import GROUP_AT, check_dataset

    root = _make(tmp_path / "data", {"train": GROUP_AT + 3, "val": 1})
    masks = sorted((root / "train" / "masks").iterdir())
    size = Image.open(masks[0]).size
    for mask in masks[:GROUP_AT]:  # the same label outside the classes in GROUP_AT masks
        Image.fromarray(np.full(size[::-1], 7, np.uint8)).save(mask)
    Image.fromarray(np.full(size[::-1], 9, np.uint8)).save(masks[GROUP_AT])  # another problem, alone
    objects = np.zeros(size[::-1], np.uint8)
    objects[:, : size[0] // 2] = 255  # objects saved as the ignore label: a warning, not a bad item
    Image.fromarray(objects).save(masks[GROUP_AT + 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing reaches Python's warning machinery
        report = check_dataset(build_dataset("folder", "train", root=root), num_workers=0, progress=False)
    assert len(report.problems) == GROUP_AT + 1 and report.bad == GROUP_AT + 1
    summary = report.summary()
    assert summary.count("contains the label value 7") == 1 and f"{GROUP_AT} items with the same problem" in summary
    assert str(masks[0]) in summary and all(m.name in summary for m in masks[1:GROUP_AT])
    assert "contains the label value 9" in summary and str(masks[GROUP_AT]) in summary
    assert len(report.warnings) == 1 and str(masks[GROUP_AT + 1]) in report.warnings[0]
    assert f"warning: mask {masks[GROUP_AT + 1]} holds only 0 and 255" in summary


def test_check_data_names_every_mask_of_objects_saved_as_255_and_reads_every_split(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A practitioner's trial: of five black-and-white masks check-data named one (two with three workers:
    the data set warns once, per copy), and an empty split stopped it before the others were read."""
    from deeplab_edu.cli import main
    from deeplab_edu.data.check import check_dataset

    root = _make(tmp_path / "data", {"train": 5, "val": 1})
    (root / "test" / "images").mkdir(parents=True)  # an empty split
    (root / "test" / "masks").mkdir(parents=True)
    masks = sorted((root / "train" / "masks").iterdir())
    for mask in masks[1:4]:
        Image.fromarray(np.where(np.asarray(Image.open(mask)) == 1, 255, 0).astype(np.uint8)).save(mask)
    dataset = FolderDataset(root, "train")
    report = check_dataset(dataset, num_workers=0, progress=False)
    assert len(report.warnings) == 3 and all(any(str(m) in w for w in report.warnings) for m in masks[1:4])
    assert dataset.warn_every_mask is False  # training warns once again
    assert main(["check-data", "--data-root", str(root), "--split", "test", "train", "val", "--no-progress",
                 "--num-workers", "0"]) == 2
    out, err = capsys.readouterr()
    assert "folder test: not read: no images" in err and "folder train:" in out and "folder val:" in out
    assert "the split(s) test not read: fix or remove them before training" in err
    assert main(["check-data", "--data-root", str(root), "--split", "test", "--no-progress"]) == 2  # alone: as before
    assert "error: no images" in capsys.readouterr().err


def test_a_shared_problem_lists_its_files_whole_and_one_naming_two_files_stands_alone() -> None:
    """A review: a name with spaces was broken across lines, and a problem naming an image and its mask
    mixed both into one list."""
    from deeplab_edu.data.check import _grouped

    masks = [f"/d/my data/masks/a{i}.png" for i in range(30)]
    lines = _grouped([f"mask file {m} has a colour" for m in masks], [(m.replace("masks", "images"), m) for m in masks])
    assert lines[0] == "  30 items with the same problem: mask file <file> has a colour"
    listed = " ".join(lines[1:])
    assert "/d/my data/masks/a0.png" in listed and all(f" a{i}.png" in listed for i in range(1, 30))
    assert all(len(line) <= 112 for line in lines) and len(lines) > 2
    pairs = [(f"/d/i/{i}.png", f"/d/m/{i}.png") for i in range(4)]
    both = _grouped([f"image {a} and mask {b} differ in size" for a, b in pairs], pairs)
    assert both == [f"  image {a} and mask {b} differ in size" for a, b in pairs]


def test_check_data_reads_the_pairs_and_lists_the_unpaired_files(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """Training refuses a folder whose images and masks do not pair up; `check-data` lists those files
    and still reads every pair, so one run of it reports every problem."""
    from deeplab_edu.cli import main

    root = _make(tmp_path / "data", {"train": 4, "val": 1})
    masks = root / "train" / "masks"
    (masks / "p1.png").rename(masks / "q1.png")  # p1 has no mask, q1 no image
    Image.new("L", (32, 24)).save(masks / "p2.jpg")  # a JPEG beside p2.png
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(masks / "p3.png")  # a bad pair: read, and reported
    with pytest.raises(BadDataError, match="not PNG files: p2.jpg"):
        FolderDataset(root, "train")
    ds = FolderDataset(root, "train", skip_unpaired=True)
    assert len(ds) == 3 and len(ds.unpaired) == 3
    assert main(["check-data", "--data-root", str(root), "--no-progress"]) == 2
    out = capsys.readouterr()
    assert "3 items read, 1 bad" in out.out and "3 file(s) left out" in out.out
    assert all(name in out.out for name in ("p1.png has no mask", "q1.png has no image", "p2.jpg is not a PNG", "p3.png"))
    assert "1 bad item(s) and 3 file(s) left out: fix or remove them" in out.err  # as the summaries count them
    assert not FolderDataset(root, "val", skip_unpaired=True).unpaired
    with pytest.raises(BadDataError, match="no image of .* has a mask of the same name"):
        for name in ("p0", "p2", "p3"):
            (masks / f"{name}.png").unlink()
        FolderDataset(root, "train", skip_unpaired=True)


def test_an_error_mid_run_starts_a_line_of_its_own_under_the_progress_bar(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The bar was left mid-line and the error was appended to it (a log filtered of the bar's lines lost it)."""
    from deeplab_edu.cli import main

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    root = _make(tmp_path / "mine", {"train": 4, "val": 2})
    Image.fromarray(np.full((24, 32), 7, np.uint8)).save(root / "val" / "masks" / "p1.png")
    assert main(["train", "--preset", "smoke", "--dataset", "folder", "--data-root", str(root), "--crop-size", "24",
                 "--out-dir", str(tmp_path / "run"), "--num-workers", "0", "--ckpt-every", "100"]) == 2
    err = capsys.readouterr().err
    bar, error = err.rfind("%|"), err.find("deeplab-edu train: error: ")
    assert 0 <= bar < error and err[error - 1] == "\n", err[-300:]  # after the bar, at the start of a line


def test_a_resume_refuses_a_data_set_whose_classes_were_renamed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The same number of classes under other names (or in another order): a resumed run went on
    silently and its checkpoints then named the new classes, while eval refuses exactly this."""
    from deeplab_edu.cli import main

    root = _make(tmp_path / "mine", {"train": 2, "val": 1})
    run = tmp_path / "run"
    args = ["train", "--preset", "smoke", "--dataset", "folder", "--data-root", str(root), "--crop-size", "24",
            "--out-dir", str(run), "--no-progress", "--num-workers", "0", "--iterations", "1"]
    assert main(args) == 0
    (root / "classes.txt").write_text("background\nblob 255 0 0\n")
    capsys.readouterr()
    assert main(args + ["--resume", "--iterations", "2"]) == 2
    err = capsys.readouterr().err
    assert "was trained on the classes background, square, but this run's data set names background, blob" in err
    assert "Traceback" not in err


def test_a_crop_larger_than_every_image_is_warned_about(tmp_path: Path) -> None:
    """A practitioner's trial: crop 512 on 128 x 96 images trained, silently, on crops that were mostly
    padding (ignored, and slow). The Trainer reads a sample of the images' sizes from their headers."""
    from deeplab_edu.engine.config import load_config
    from deeplab_edu.engine.trainer import Trainer

    root = _make(tmp_path / "mine", {"train": 4, "val": 1})  # 32 x 24 images
    settings = {"dataset": "folder", "data_root": str(root), "out_dir": str(tmp_path / "run"), "num_workers": 0}
    with pytest.warns(UserWarning, match=r"crop_size=160 is larger than the training images \(the largest side of "
                                         r"those sampled: 32 px, x scale 2 = 64 px\): at least 84% of every crop"):
        Trainer(load_config("smoke", {**settings, "crop_size": 160, "scale_range": (0.5, 2.0)}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        Trainer(load_config("smoke", {**settings, "crop_size": 48, "scale_range": (0.5, 2.0)}))


def test_check_data_tries_a_failing_download_once(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    """A practitioner's trial offline: `check-data --dataset camvid --download` tried the download once per
    split (a minute each at the default stall bound) and printed its error three times."""
    import deeplab_edu.data as data
    from deeplab_edu.cli import main
    from deeplab_edu.data.io import DatasetNotFoundError

    tries = []

    def offline(name, split, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("download"):  # the downloads tried (check-data may look again at a copy without one)
            tries.append(split)
        raise DatasetNotFoundError("downloading CamVid failed: you seem to be offline")

    monkeypatch.setattr(data, "build_dataset", offline)
    assert main(["check-data", "--dataset", "camvid", "--download", "--no-progress"]) == 2
    assert tries == ["train"] and capsys.readouterr().err.count("you seem to be offline") == 1


def test_uint8_batches_warn_naming_a_16_bit_training_image(tmp_path: Path) -> None:
    """uint8_batches rounds pixels to 256 levels: a 16-bit grey training image is named (a practitioner's
    trial: only the docs said so); 8-bit images, or uint8_batches off, say nothing."""
    from deeplab_edu.engine.config import load_config
    from deeplab_edu.engine.data import build_datasets

    root = _make(tmp_path / "mine", {"train": 2, "val": 1})
    cfg = load_config("smoke", {"dataset": "folder", "data_root": str(root), "crop_size": 16, "uint8_batches": True})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_datasets(cfg)
    deep = root / "train" / "images" / "p1.png"
    Image.fromarray(np.full((24, 32), 40000, np.uint16)).save(deep)
    assert Image.open(deep).mode == "I;16"
    with pytest.warns(UserWarning, match=r"p1\.png holds more \(16-bit or float\)"):
        build_datasets(cfg)
    cfg.uint8_batches = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_datasets(cfg)


def test_images_in_subfolders_are_named_as_not_read(tmp_path: Path) -> None:
    """A trial: images kept in subfolders of images/ were left out without a word (predict names them)."""
    root = _make(tmp_path, {"train": 2})
    (root / "train" / "images" / "day2").mkdir()
    Image.new("RGB", (8, 8)).save(root / "train" / "images" / "day2" / "c.png")
    (root / "train" / "images" / "notes").mkdir()  # a subfolder without images: nothing to say
    with pytest.warns(UserWarning, match=r"the images in its subfolder\(s\) day2 are not read: a split's images are "
                                         r"the files directly in images/"):
        assert len(FolderDataset(root, "train")) == 2
    for p in (root / "train" / "images").glob("*.*"):
        p.unlink()
    with pytest.raises(DatasetNotFoundError, match=r"no images .* in .*images; the images in its subfolder\(s\) day2"):
        FolderDataset(root, "train")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FolderDataset(_make(tmp_path / "plain", {"train": 1}), "train")


def test_check_data_names_masks_with_transparent_pixels(tmp_path: Path) -> None:
    """Stop 68's trial: an RGBA mask's transparent pixels (an annotation tool's 'unlabelled') are read as the
    colour under them, as documented, and nothing said so; check-data now names each such mask."""
    from deeplab_edu.data.check import check_dataset

    root = _make(tmp_path / "data", {"train": 2})
    masks = sorted((root / "train" / "masks").iterdir())
    rgba = np.zeros((24, 32, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[4:14, 6:20] = (255, 0, 0, 255)
    rgba[:, :3, 3] = 0  # a transparent border: black under it, read as background
    Image.fromarray(rgba, "RGBA").save(masks[0])
    opaque = rgba.copy()
    opaque[..., 3] = 255
    Image.fromarray(opaque, "RGBA").save(masks[1])  # an alpha channel opaque everywhere: nothing to say
    report = check_dataset(build_dataset("folder", "train", root=root), num_workers=0, progress=False)
    assert not report.problems
    said = [w for w in report.warnings if "transparent pixels" in w]
    assert len(said) == 1 and str(masks[0]) in said[0] and "give them the ignore label (255)" in said[0]
    assert f"warning: mask {masks[0]} has transparent pixels" in report.summary()
    for mask in masks[1:]:  # every mask of an annotation tool's export: one warning, naming them (a review)
        Image.fromarray(rgba, "RGBA").save(mask)
    for i in range(2, 8):
        Image.fromarray(rgba, "RGBA").save(root / "train" / "masks" / f"q{i}.png")
        Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(root / "train" / "images" / f"q{i}.png")
    summary = check_dataset(build_dataset("folder", "train", root=root), num_workers=0, progress=False).summary()
    assert summary.count("transparent pixels") == 1 and "8 masks have transparent pixels" in summary
    assert "and 3 more): a mask's alpha channel carries no label" in summary


def test_classes_txt_lines_end_only_at_line_breaks(tmp_path: Path) -> None:
    """An audit: str.splitlines() also split a line at U+2028, U+2029, NEL, form feed, ... (which an editor shows
    inside the line): 'road<U+2028>wet' became the classes 'road' and 'wet' and every later label shifted.
    Lines end at \\n, \\r\\n and \\r; a line holding another break or control character is refused."""
    path = tmp_path / "classes.txt"
    path.write_bytes(b"bg\r\nroad\rsky\t70 130 180\n")  # Windows, old Mac and Unix endings; a tab separates
    assert read_classes(path).class_names == ("bg", "road", "sky")
    for char in ("\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\x00"):
        path.write_bytes(f"bg\nroad{char}wet\ncar\n".encode())
        with pytest.raises(BadDataError, match=rf"classes\.txt, line 2: .* holds U\+{ord(char):04X} "):
            read_classes(path)


def test_class_names_are_read_in_one_unicode_form(tmp_path: Path) -> None:
    """An audit: file names were compared in NFC, class names as written: 'façade' (NFC) and 'façade' typed on a
    Mac (NFD) were two classes, and eval refused a model trained on one against a classes.txt saved in the other."""
    nfc, nfd = "fa\u00e7ade", "fac\u0327ade"
    path = tmp_path / "classes.txt"
    path.write_text(f"bg\n{nfd} 255 0 0\n", encoding="utf-8")
    assert read_classes(path).class_names == ("bg", nfc)
    path.write_text(f"bg\n{nfc}\n{nfd}\n", encoding="utf-8")
    with pytest.raises(BadDataError, match=f"more than once: {nfc}"):
        read_classes(path)


def test_a_run_and_its_data_agree_on_class_names_in_either_unicode_form(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    """Trained on 'façade' in NFC, scored and resumed with a classes.txt saved in NFD (a Mac's), and a checkpoint
    made before names were normalised (NFD names in it) scored against NFC names: the same classes."""
    import torch

    from deeplab_edu.cli import main

    nfc, nfd = "fa\u00e7ade", "fac\u0327ade"
    root = _make(tmp_path / "mine", {"train": 2, "val": 1}, classes=f"background\n{nfc} 255 0 0\n")
    run = tmp_path / "run"
    args = ["train", "--preset", "smoke", "--dataset", "folder", "--data-root", str(root), "--crop-size", "24",
            "--out-dir", str(run), "--no-progress", "--num-workers", "0", "--iterations", "1"]
    assert main(args) == 0
    (root / "classes.txt").write_text(f"background\n{nfd} 255 0 0\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run)]) == 0, capsys.readouterr().err
    assert main(args + ["--resume", "--iterations", "2"]) == 0, capsys.readouterr().err
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=False)
    state["model_info"]["class_names"] = ["background", nfd]  # as an earlier version recorded them
    torch.save(state, last)
    (root / "classes.txt").write_text(f"background\n{nfc} 255 0 0\n", encoding="utf-8")
    assert main(["eval", "--checkpoint", str(last)]) == 0, capsys.readouterr().err


def test_the_uint8_batches_warning_names_the_line_that_built_the_trainer(tmp_path: Path) -> None:
    """An audit: a Trainer's warning of a 16-bit training image under uint8_batches named a line of trainer.py,
    not the caller's line of Trainer(...)."""
    from deeplab_edu.engine.config import load_config
    from deeplab_edu.engine.trainer import Trainer

    root = _make(tmp_path / "mine", {"train": 2, "val": 1})
    Image.fromarray(np.full((24, 32), 40000, np.uint16)).save(root / "train" / "images" / "p1.png")
    cfg = load_config("smoke", {"dataset": "folder", "data_root": str(root), "crop_size": 16, "uint8_batches": True,
                                "out_dir": str(tmp_path / "run")})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        Trainer(cfg)
    assert [w.filename for w in seen if "16-bit" in str(w.message)] == [__file__]


def test_check_data_hint_for_an_absent_class_says_how_it_is_scored_and_names_classes_txt_only_for_a_folder(
        tmp_path: Path) -> None:
    """A real-data audit: the hint for a class no mask labels said a validation split "does not score it", but
    ``ConfusionMatrix.compute`` averages over the classes present in the truth *or* the prediction (predicted,
    such a class scores IoU 0 and lowers the mIoU); and it suspected classes.txt for every data set, VOC's too,
    which have none. Both of its lines name classes.txt only for the folder data set."""
    import torch

    from deeplab_edu.data.check import check_dataset
    from deeplab_edu.data.classes import VOC
    from deeplab_edu.data.folder import SegmentationFolder
    from deeplab_edu.metrics import ConfusionMatrix

    root = _make(tmp_path / "data", {"train": 2}, classes="background\nsquare 255 0 0\nunused\n")
    folder = check_dataset(build_dataset("folder", "train", root=root), num_workers=0, progress=False)
    hint = "its IoU is 0 if the model predicts it on any labelled pixel, which lowers the mIoU"
    assert hint in folder.summary() and "does not score it" not in folder.summary()
    assert "(a name in classes.txt that no mask uses?)" in folder.summary()
    pairs = sorted(zip(sorted((root / "train" / "images").iterdir()), sorted((root / "train" / "masks").iterdir())))
    voc_like = check_dataset(SegmentationFolder(pairs, VOC, name="voc-like"), num_workers=0, progress=False)
    assert voc_like.absent_classes == list(VOC.class_names[2:]) and hint in voc_like.summary()
    assert "classes.txt" not in voc_like.summary()
    from dataclasses import replace

    assert "classes.txt" not in replace(voc_like, unknown_labels={30: 1}).summary()  # a label outside the classes
    assert "does classes.txt list every class" in replace(folder, unknown_labels={30: 1}).summary()
    # the hint's claim, as the metric computes it: class 2 absent from the truth
    truth = torch.tensor([[0, 0, 1, 1]])
    never, once = ConfusionMatrix(3), ConfusionMatrix(3)
    never.update(torch.tensor([[0, 0, 1, 1]]), truth)
    once.update(torch.tensor([[0, 2, 1, 1]]), truth)
    assert never.compute()["iou"][2] != never.compute()["iou"][2] and never.compute()["miou"] == 1.0  # left out
    assert once.compute()["iou"][2] == 0.0 and once.compute()["miou"] == (0.5 + 1 + 0) / 3  # IoU 0, in the mean


def test_a_small_background_mask_padded_by_the_transform_is_not_taken_for_objects_as_255(tmp_path: Path) -> None:
    """The Trainer's check of a passed set's item 0 read the mask after the transform: a background-only mask of a
    24 x 32 image padded with the ignore label to a 96-pixel crop was "0 and 255 only, 255 covering 92%", and told
    to save the objects as 1. The check reads what the file holds, as FolderDataset's own warning does."""
    from torch.utils.data import Subset

    from deeplab_edu.data.transforms import train_transform
    from deeplab_edu.engine._passed_sets import _check_passed_set

    root = _make(tmp_path / "mine", {"train": 1})
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(root / "train" / "masks" / "p0.png")  # background only
    ds = FolderDataset(root, "train", transform=train_transform(96, scale_range=None))
    assert set(ds[0][1].unique().tolist()) == {0, 255}  # what the transform gives
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check_passed_set(ds, "train_set", objects_as_ignore=True)
    # a split of a folder (Subset, nested): its first item's file, not the folder's item 0 (objects saved as 255)
    split = _make(tmp_path / "split", {"train": 2})
    Image.fromarray(np.where(np.arange(32)[None, :] < 20, 255, 0).repeat(24, 0).astype(np.uint8)).save(
        split / "train" / "masks" / "p0.png")
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(split / "train" / "masks" / "p1.png")
    folder = FolderDataset(split, "train", transform=train_transform(96, scale_range=None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check_passed_set(Subset(Subset(folder, [1, 0]), [0]), "train_set", objects_as_ignore=True)
    Image.fromarray(np.where(np.arange(32)[None, :] < 20, 255, 0).repeat(24, 0).astype(np.uint8)).save(
        root / "train" / "masks" / "p0.png")  # objects saved as 255: still said
    with pytest.warns(UserWarning, match="holds only 0 and 255"):
        _check_passed_set(FolderDataset(root, "train", transform=train_transform(96, scale_range=None)), "train_set",
                          objects_as_ignore=True)
