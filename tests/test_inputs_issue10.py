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


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained deeplab-edu checkpoint (smoke preset's model) for ``deeplab-edu predict``."""
    from deeplab_edu.engine.checkpoint import save_checkpoint
    from deeplab_edu.engine.config import load_config
    from deeplab_edu.models import build_model

    cfg = load_config("smoke")
    torch.manual_seed(0)
    model = build_model(cfg.model, backbone=cfg.backbone, num_classes=8, output_stride=cfg.output_stride).eval()
    folder = tmp_path_factory.mktemp("ckpt")
    state = {"model": model.state_dict(), "config": cfg.to_dict(),
             "model_info": {"name": cfg.model, "backbone": cfg.backbone, "num_classes": 8}}
    return save_checkpoint(state, folder, 0)


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


@pytest.mark.slow
def test_predict_writes_masks_in_displayed_orientation(tmp_path: Path, checkpoint: Path) -> None:
    from deeplab_edu.cli import main

    Image.fromarray(_stored()).save(tmp_path / "photo.jpg", exif=_exif(6), quality=95)
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "photo.jpg"), "--out", str(out),
                 "--device", "cpu"]) == 0
    assert Image.open(out / "photo_mask.png").size == (20, 40)  # (W, H) as displayed
    assert Image.open(out / "photo_overlay.png").size == (20, 40)

