"""Stand-ins shared by the engine tests (no tests here): a tiny segmentation net and tiny scenes.

Also runnable as a script, for the kill-and-resume test:
``python tests/test_engine_fixtures.py OUT_DIR ITERATIONS [--resume]`` trains the tiny net on CPU.
With ``DEEPLAB_EDU_TEST_SLOW=1`` every item takes 20 ms to load, so a run lasts long enough to be
killed part-way.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deeplab_edu.engine.config import TrainConfig  # noqa: E402


class TinyNet(nn.Module):
    """conv-BN-ReLU backbone (stride 2, dilatable), a head with dropout, logits at input size."""

    def __init__(self, num_classes: int = 3, width: int = 8, dropout: float = 0.2) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(width, num_classes, 1))
        self.output_stride = 2
        self.num_classes = num_classes
        self.nan_after: int | None = None  # for the NaN test: forward returns NaN after this many calls
        self.calls = 0

    def set_output_stride(self, os_: int) -> None:
        self.output_stride = os_

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        size = x.shape[-2:]
        y = self.head(self.backbone(x))
        y = nn.functional.interpolate(y, size=size, mode="bilinear", align_corners=False)
        if self.nan_after is not None and self.calls > self.nan_after:
            y = y * float("nan")
        return {"out": y}


class TinyScenes(Dataset):
    """Deterministic random images (centred on 0) whose label is the brightest channel; a random flip augments them."""

    num_classes = 3
    ignore_index = 255
    class_names = ("red", "green", "blue")
    palette = ((255, 0, 0), (0, 255, 0), (0, 0, 255))

    def __init__(self, length: int = 32, size: int = 16, seed: int = 0, augment: bool = True,
                 ignore: bool = False) -> None:
        self.length, self.size, self.seed, self.augment, self.ignore = length, size, seed, augment, ignore

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if os.environ.get("DEEPLAB_EDU_TEST_SLOW"):
            time.sleep(0.02)
        g = torch.Generator().manual_seed(self.seed * 100_003 + i)
        img = torch.rand(3, self.size, self.size, generator=g)
        img = nn.functional.avg_pool2d(img[None], 3, 1, 1)[0] - 0.5  # centred, as normalised images are
        mask = img.argmax(0)
        if self.ignore:
            mask[: self.size // 4] = 255
        if self.augment and torch.rand(()) < 0.5:  # uses the global RNG, as real transforms do
            img, mask = img.flip(-1), mask.flip(-1)
        return img, mask


def tiny_config(out_dir: str | Path, **kw: object) -> TrainConfig:
    base = dict(model="deeplabv3", backbone="mobilenet_v3_large", crop_size=16, image_size=16, batch_size=4,
                iterations=12, lr=0.05, eval_every=6, ckpt_every=3, log_every=3, out_dir=str(out_dir),
                device="cpu", progress=False, eval_output_stride=None)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def main(argv: list[str]) -> None:
    from deeplab_edu.engine.trainer import Trainer

    torch.set_num_threads(1)
    out, iters = argv[0], int(argv[1])
    cfg = tiny_config(out, iterations=iters, resume="--resume" in argv)
    torch.manual_seed(0)  # the model is built here, before the Trainer seeds everything
    Trainer(cfg, model=TinyNet(), train_set=TinyScenes(32), val_set=TinyScenes(4, seed=9, augment=False)).fit()


if __name__ == "__main__":
    main(sys.argv[1:])
