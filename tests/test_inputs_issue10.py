"""Inputs that used to fail (issue 10): EXIF orientation, 16-bit images in ``predict``, checkpoints the
loader refused, tiny inputs, ``pad_to_crop``, the ONNX batch axis.

Each test states the right value; each failed before its fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deeplab_edu.data.classes import ClassInfo
from deeplab_edu.data.folder import SegmentationFolder
from deeplab_edu.data.io import BadDataError, load_image, load_mask

ORIENTATION = 0x0112  # the EXIF tag


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return exif.tobytes()


def _stored(h: int = 20, w: int = 40) -> np.ndarray:
    """An (h, w, 3) uint8 image in which every pixel differs (so a wrong rotation is visible)."""
    v = np.arange(h * w, dtype=np.int64).reshape(h, w)
    return np.stack([v % 256, (v // 7) % 256, (v * 3) % 256], axis=2).astype(np.uint8)


TOY = ClassInfo(name="toy", class_names=("a", "b", "c"), palette=((0, 0, 0), (255, 0, 0), (0, 255, 0)))


# ------------------------------------------------------------------ 1. EXIF orientation
def test_load_image_applies_exif_orientation(tmp_path: Path) -> None:
    arr = _stored()  # stored 40 wide, 20 tall
    Image.fromarray(arr).save(tmp_path / "rot.jpg", exif=_exif(6), quality=95)
    Image.fromarray(arr).save(tmp_path / "rot.png", exif=_exif(6))
    assert load_image(tmp_path / "rot.jpg").shape == (3, 40, 20)  # displayed 20 wide, 40 tall
    # orientation 6: the viewer rotates the stored pixels 90 degrees clockwise
    shown = np.rot90(arr, k=-1)
    got = load_image(tmp_path / "rot.png")
    assert torch.equal(got, torch.from_numpy(shown.copy()).permute(2, 0, 1).float() / 255)


def test_folder_pairs_exif_image_with_mask_drawn_as_displayed(tmp_path: Path) -> None:
    Image.fromarray(_stored()).save(tmp_path / "img.jpg", exif=_exif(6), quality=95)
    mask = np.zeros((40, 20), np.uint8)  # annotated 20 wide, 40 tall, as a viewer shows the photo
    mask[:10] = 1
    Image.fromarray(mask, mode="L").save(tmp_path / "mask.png")
    image, target = SegmentationFolder([(tmp_path / "img.jpg", tmp_path / "mask.png")], TOY).load(0)
    assert image.shape == (3, 40, 20) and target.shape == (40, 20)
    assert torch.equal(target, torch.from_numpy(mask).long())


def test_mask_carrying_exif_is_turned_like_its_image(tmp_path: Path) -> None:
    """A mask saved with the photo's EXIF (stored orientation) is turned too, so image and mask agree."""
    stored = np.zeros((20, 40), np.uint8)
    stored[:, :5] = 2  # the left edge as stored: the top edge once displayed (orientation 6)
    Image.fromarray(stored, mode="L").save(tmp_path / "mask.png", exif=_exif(6))
    Image.fromarray(_stored()).save(tmp_path / "img.png", exif=_exif(6))
    got = load_mask(tmp_path / "mask.png", 3)
    assert torch.equal(got, torch.from_numpy(np.rot90(stored, k=-1).copy()).long())
    image, target = SegmentationFolder([(tmp_path / "img.png", tmp_path / "mask.png")], TOY).load(0)
    assert image.shape[-2:] == target.shape == (40, 20) and (target[:5] == 2).all()


def test_image_and_mask_with_different_orientation_tags_are_refused(tmp_path: Path) -> None:
    """Tags 6 and 8 turn a 40 x 20 file into 20 x 40 both: the sizes matched and the mask was read
    upside down against its image, silently."""
    Image.fromarray(_stored()).save(tmp_path / "img.png", exif=_exif(6))
    mask = np.zeros((20, 40), np.uint8)
    mask[:5] = 1
    Image.fromarray(mask, mode="L").save(tmp_path / "mask.png", exif=_exif(8))
    with pytest.raises(BadDataError, match=r"img\.png has EXIF orientation 6 .* mask .*mask\.png has orientation 8"):
        SegmentationFolder([(tmp_path / "img.png", tmp_path / "mask.png")], TOY).load(0)
    Image.fromarray(mask, mode="L").save(tmp_path / "mask.png", exif=_exif(6))  # the image's tag: turned alike
    assert SegmentationFolder([(tmp_path / "img.png", tmp_path / "mask.png")], TOY).load(0)[1].shape == (40, 20)


def test_mismatch_caused_by_orientation_says_so(tmp_path: Path) -> None:
    Image.fromarray(_stored()).save(tmp_path / "img.jpg", exif=_exif(6), quality=95)
    Image.fromarray(np.zeros((20, 40), np.uint8), mode="L").save(tmp_path / "mask.png")  # stored orientation
    ds = SegmentationFolder([(tmp_path / "img.jpg", tmp_path / "mask.png")], TOY)
    with pytest.raises(BadDataError, match=r"(?s)img\.jpg.*mask\.png.*EXIF orientation 6"):
        ds.load(0)
    # without a tag, the message does not talk about EXIF
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "plain.png")
    with pytest.raises(BadDataError) as err:
        SegmentationFolder([(tmp_path / "plain.png", tmp_path / "mask.png")], TOY).load(0)
    assert "EXIF" not in str(err.value)
    # a tag on the mask itself: its displayed size is what the message gives, and it says why
    Image.fromarray(np.zeros((20, 30), np.uint8), mode="L").save(tmp_path / "tagged.png", exif=_exif(6))
    with pytest.raises(BadDataError, match=r"mask file has EXIF orientation 6 .* read as displayed \(20x30\)"):
        SegmentationFolder([(tmp_path / "plain.png", tmp_path / "tagged.png")], TOY).load(0)


@pytest.mark.slow
def test_predict_writes_masks_in_displayed_orientation(tmp_path: Path, checkpoint: Path) -> None:
    from deeplab_edu.cli import main

    Image.fromarray(_stored()).save(tmp_path / "photo.jpg", exif=_exif(6), quality=95)
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "photo.jpg"), "--out", str(out),
                 "--device", "cpu"]) == 0
    assert Image.open(out / "photo_mask.png").size == (20, 40)  # (W, H) as displayed
    assert Image.open(out / "photo_overlay.png").size == (20, 40)


# ------------------------------------------------------------------ 2. one image reader; 16-bit by mode
def _ramp16(h: int = 97, w: int = 131) -> np.ndarray:
    """A horizontal 0..65535 ramp, 16-bit."""
    return np.round(np.linspace(0, 65535, w))[None, :].repeat(h, 0).astype(np.uint16)


@pytest.mark.slow
def test_predict_reads_16bit_images_like_the_data_sets(tmp_path: Path, checkpoint: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import deeplab_edu.inference as inference
    from deeplab_edu.cli import main
    from deeplab_edu.data.transforms import denormalize

    Image.fromarray(_ramp16()).save(tmp_path / "ramp.png")
    assert Image.open(tmp_path / "ramp.png").mode == "I;16"
    seen: list[torch.Tensor] = []
    original = inference.predict

    def spy(model: torch.nn.Module, image: torch.Tensor, strategy: inference.Strategy) -> torch.Tensor:
        seen.append(image.detach().cpu())
        return original(model, image, strategy)

    monkeypatch.setattr(inference, "predict", spy)
    assert main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "ramp.png"), "--out",
                 str(tmp_path / "out"), "--device", "cpu"]) == 0
    (given,) = seen
    shown = denormalize(given)
    assert shown.shape == (3, 97, 131)
    assert torch.allclose(shown, load_image(tmp_path / "ramp.png"), atol=1e-5)  # the one reader
    assert abs(float(shown[:, :, 65].mean()) - 0.5) < 0.01  # mid column: mid grey, not white
    assert Image.open(tmp_path / "out" / "ramp_mask.png").size == (131, 97)


def test_dark_16bit_image_is_read_as_16bit(tmp_path: Path) -> None:
    dark = np.linspace(0, 200, 12 * 16).reshape(12, 16).astype(np.uint16)
    Image.fromarray(dark).save(tmp_path / "dark16.png")
    assert Image.open(tmp_path / "dark16.png").mode == "I;16"
    x = load_image(tmp_path / "dark16.png")
    assert abs(float(x.max()) - 200 / 65535) < 1e-6  # ~0.003, not 200/255
    # the same values in an 8-bit file are 8-bit
    Image.fromarray(dark.astype(np.uint8), mode="L").save(tmp_path / "dark8.png")
    assert abs(float(load_image(tmp_path / "dark8.png").max()) - 200 / 255) < 1e-6
    ramp = load_image(_save(tmp_path / "ramp.png", _ramp16()))
    assert abs(float(ramp[0, :, 65].mean()) - 0.5) < 0.01 and float(ramp.max()) == 1.0


def _save(path: Path, arr: np.ndarray, **kw: object) -> Path:
    Image.fromarray(arr).save(path, **kw)
    return path


def test_float_and_big_endian_16bit_tiffs(tmp_path: Path) -> None:
    flt = np.linspace(0, 1, 12 * 16, dtype=np.float32).reshape(12, 16)
    x = load_image(_save(tmp_path / "f.tif", flt))
    assert Image.open(tmp_path / "f.tif").mode == "F"
    assert torch.allclose(x[1], torch.from_numpy(flt))
    Image.fromarray(flt * 3).save(tmp_path / "hdr.tif")
    with pytest.raises(BadDataError, match=r"hdr\.tif.*0\.0\.\.3\.0"):
        load_image(tmp_path / "hdr.tif")
    big = Image.fromarray(np.full((4, 5), 100, np.uint16)).convert("I;16B")
    big.save(tmp_path / "b.tif")
    assert Image.open(tmp_path / "b.tif").mode == "I;16B"
    assert abs(float(load_image(tmp_path / "b.tif").max()) - 100 / 65535) < 1e-6
    # 32-bit integer images (how some Pillow versions open 16-bit PNGs): 16-bit values, else an error
    Image.fromarray(np.full((4, 5), 100, np.int32), mode="I").save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    assert abs(float(load_image(tmp_path / "i.tif").max()) - 100 / 65535) < 1e-6
    Image.fromarray(np.full((4, 5), 70000, np.int32), mode="I").save(tmp_path / "i32.tif")
    with pytest.raises(BadDataError, match=r"i32\.tif.*0\.\.65535"):
        load_image(tmp_path / "i32.tif")


# ------------------------------------------------------------------ 3. what the package writes, its loader reads
def test_checkpoint_with_numpy_values_and_paths_loads_weights_only(tmp_path: Path, checkpoint: Path) -> None:
    import collections

    from deeplab_edu.engine.checkpoint import load_checkpoint, save_checkpoint
    from deeplab_edu.inference import load_model

    state = load_checkpoint(checkpoint)
    state.update({
        "epoch": np.int64(3), "best": np.float64(0.25), "flag": np.bool_(True),
        "history": [{"iteration": np.int32(2), "miou": np.float32(0.5), "iou": np.array([0.5, 0.25])}],
        "run": Path("runs") / "x", "counts": collections.defaultdict(int, {np.int64(1): 2}),
        "pair": (Path("a"), np.uint8(7)),
    })
    state["config"] = {**state["config"], "out_dir": tmp_path / "run"}
    path = save_checkpoint(state, tmp_path / "ckpts", 5)
    got = load_checkpoint(path)  # weights_only=True: failed with "Unsupported global" before
    assert got["epoch"] == 3 and type(got["epoch"]) is int
    assert got["best"] == 0.25 and type(got["best"]) is float and got["flag"] is True
    hist = got["history"][0]
    assert type(hist["iteration"]) is int and hist["miou"] == 0.5
    assert torch.equal(hist["iou"], torch.tensor([0.5, 0.25], dtype=torch.float64))
    assert got["run"] == str(Path("runs") / "x") and got["counts"] == {1: 2} and got["pair"] == ("a", 7)
    assert got["config"]["out_dir"] == str(tmp_path / "run")
    assert torch.equal(got["model"]["classifier.weight"], state["model"]["classifier.weight"])
    model, cfg = load_model(tmp_path / "ckpts" / "last.pt")  # what eval/predict use
    assert cfg["out_dir"] == str(tmp_path / "run")


def test_checkpoint_refuses_what_it_cannot_convert_naming_the_key(tmp_path: Path) -> None:
    from deeplab_edu.engine.checkpoint import save_checkpoint

    class Opaque:
        pass

    with pytest.raises(TypeError, match=r"state\['extra'\]\['items'\]\[1\].*Opaque.*weights_only"):
        save_checkpoint({"extra": {"items": [1, Opaque()]}}, tmp_path, 1)
    with pytest.raises(TypeError, match=r"state\['names'\].*object"):
        save_checkpoint({"names": np.array(["a", None], dtype=object)}, tmp_path, 1)
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("content, what", [
    (torch.zeros(3), "a Tensor, not a dictionary"),
    ([1, 2], "a list, not a dictionary"),
    ({"conv.weight": torch.zeros(2)}, "a plain state_dict"),  # torchvision's or a backbone's weights
    ({"epoch": 3}, "no 'model' weights"),
    ({"model": {"w": 1}}, "a 'model' entry that is not a state_dict of tensors"),
    ({"model": {}, "config": "x"}, "a 'config' entry that is not a dictionary"),
])
def test_a_file_that_reads_but_is_no_checkpoint_is_named(tmp_path: Path, content: object, what: str) -> None:
    """Each reached a KeyError, AttributeError or TypeError traceback in train --init-from, eval,
    predict or export."""
    from deeplab_edu.engine.checkpoint import load_checkpoint

    torch.save(content, tmp_path / "weights.pt")
    with pytest.raises(ValueError, match=rf"weights\.pt is not a deeplab-edu checkpoint: it holds {what}"):
        load_checkpoint(tmp_path / "weights.pt")


def test_config_accepts_pathlike_for_every_path_setting(tmp_path: Path) -> None:
    import json

    from deeplab_edu.engine.config import TrainConfig, load_config
    from deeplab_edu.engine.trainer import Trainer
    from test_engine_fixtures import TinyNet, TinyScenes

    paths = {"out_dir": tmp_path / "run", "data_root": tmp_path / "data", "init_from": None}
    cfg = load_config("smoke", paths)
    assert cfg.out_dir == str(tmp_path / "run") and cfg.data_root == str(tmp_path / "data")
    assert TrainConfig(out_dir=tmp_path / "other").out_dir == str(tmp_path / "other")
    cfg = load_config(None, {**paths, "model": "deeplabv3", "backbone": "mobilenet_v3_large", "crop_size": 16,
                             "image_size": 16, "batch_size": 2, "iterations": 2, "eval_every": 2, "ckpt_every": 2,
                             "device": "cpu", "progress": False, "eval_output_stride": None})
    # failed with "Object of type PosixPath is not JSON serializable" before
    Trainer(cfg, model=TinyNet(), train_set=TinyScenes(4), val_set=TinyScenes(2, augment=False)).fit()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["out_dir"] == str(tmp_path / "run")
    # the second phase of a recipe starts from a checkpoint given as a path object
    cfg2 = load_config(None, {**cfg.to_dict(), "out_dir": tmp_path / "run2",
                              "init_from": tmp_path / "run" / "checkpoints" / "last.pt"})
    assert cfg2.init_from == str(tmp_path / "run" / "checkpoints" / "last.pt")
    Trainer(cfg2, model=TinyNet(), train_set=TinyScenes(4), val_set=TinyScenes(2, augment=False)).fit()


# ------------------------------------------------------------------ 4. tiny inputs
@pytest.mark.parametrize("name, backbone, output_stride, side", [
    ("deeplabv3", "resnet50", 16, 16),
    ("deeplabv3plus", "mobilenet_v3_large", 16, 16),
    ("deeplabv2", "resnet50", 8, 8),
])
def test_tiny_input_at_batch_one_is_refused_before_the_forward_pass(name: str, backbone: str, output_stride: int,
                                                                     side: int) -> None:
    from deeplab_edu.models import build_model

    torch.manual_seed(0)
    model = build_model(name, backbone=backbone, num_classes=3, output_stride=output_stride).train()
    calls: list[str] = []
    model.backbone.register_forward_pre_hook(lambda *_: calls.append("backbone"))
    smallest = output_stride + 1
    with pytest.raises(ValueError, match=rf"(?s){side}x{side}.*output stride {output_stride}.*{smallest}x{smallest}"):
        model(torch.rand(1, 3, side, side))
    assert calls == []  # raised before the backbone ran (the error used to come from its batch norm)
    with torch.no_grad():
        assert model(torch.rand(1, 3, smallest, smallest))["out"].shape == (1, 3, smallest, smallest)
        assert model(torch.rand(1, 3, side, 2 * side))["out"].shape[-2:] == (side, 2 * side)  # one long side
        assert model(torch.rand(2, 3, side, side))["out"].shape[0] == 2  # a batch of two
        model.eval()
        assert model(torch.rand(1, 3, side, side))["out"].shape[-2:] == (side, side)  # running statistics


def test_config_refuses_a_crop_too_small_for_batch_one() -> None:
    from deeplab_edu.engine.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"(?s)crop_size=16.*batch_size=1.*output_stride=16.*17"):
        load_config("smoke", {"crop_size": 16, "batch_size": 1})
    assert load_config("smoke", {"crop_size": 17, "batch_size": 1}).crop_size == 17
    assert load_config("smoke", {"crop_size": 16, "batch_size": 2}).batch_size == 2
    assert load_config("smoke", {"crop_size": 16, "batch_size": 1, "output_stride": 8}).output_stride == 8


# ------------------------------------------------------------------ 5. pad_to_crop
def test_train_transform_pads_or_not() -> None:
    from deeplab_edu.data.transforms import train_transform

    image = torch.rand(3, 20, 40)
    mask = torch.randint(0, 3, (20, 40))
    x, y = train_transform(32, scale_range=None, hflip=0.0, normalize=False)(image, mask)
    assert x.shape == (3, 32, 32) and int((y == 255).sum()) == 12 * 32  # 12 rows of the ignore label
    x, y = train_transform(32, scale_range=None, hflip=0.0, normalize=False, pad_to_crop=False)(image, mask)
    assert x.shape == (3, 20, 32) and not (y == 255).any()  # the image's own 20 rows, a 32-wide window
    left = next(c for c in range(9) if torch.equal(y, mask[:, c:c + 32]))
    assert torch.equal(x, image[:, :, left:left + 32])


@pytest.mark.parametrize("pad", [True, False])
def test_training_data_honours_pad_to_crop(pad: bool) -> None:
    from deeplab_edu.engine.config import TrainConfig
    from deeplab_edu.engine.data import build_datasets

    cfg = TrainConfig(dataset="procedural", image_size=32, crop_size=48, scale_range=(1.0, 1.0), pad_to_crop=pad,
                      train_length=2, val_length=1)
    image, mask = build_datasets(cfg)[0][0]
    if pad:  # padded with the ignore label (at least the 48 x 48 - 32 x 32 padded pixels)
        assert image.shape == (3, 48, 48) and int((mask == 255).sum()) >= 48 * 48 - 32 * 32
    else:  # the whole 32 x 32 scene, nothing added
        assert image.shape == (3, 32, 32) and mask.shape == (32, 32)


def test_config_refuses_unpadded_crops_that_could_not_be_batched() -> None:
    from deeplab_edu.engine.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"crop_size=48.*pad_to_crop"):
        load_config("smoke", {"crop_size": 48, "pad_to_crop": False})  # 48 x 0.5 < 48: crops would vary
    assert load_config("smoke", {"crop_size": 24, "pad_to_crop": False}).pad_to_crop is False
    with pytest.raises(ConfigError, match=r"(?s)pad_to_crop.*voc.*batch_size=2"):
        load_config(None, {"dataset": "voc", "pad_to_crop": False, "batch_size": 2, "crop_size": 321})
    assert load_config(None, {"dataset": "voc", "pad_to_crop": False, "batch_size": 1, "crop_size": 321}).batch_size == 1
    # one image per batch: unpadded crops of any size train
    assert load_config("smoke", {"crop_size": 48, "pad_to_crop": False, "batch_size": 1}).batch_size == 1


def test_unpadded_crops_train_at_batch_one(tmp_path: Path) -> None:
    from deeplab_edu.engine.config import load_config
    from deeplab_edu.engine.trainer import Trainer
    from test_engine_fixtures import TinyNet

    cfg = load_config("smoke", {"image_size": 32, "crop_size": 48, "pad_to_crop": False, "batch_size": 1,
                                "iterations": 2, "eval_every": 2, "ckpt_every": 2, "train_length": 2,
                                "val_length": 1, "out_dir": tmp_path, "progress": False,
                                "eval_output_stride": None})
    result = Trainer(cfg, model=TinyNet(num_classes=8)).fit()
    assert result["final"]["iteration"] == 2
