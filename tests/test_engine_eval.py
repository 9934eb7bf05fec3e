"""Batched evaluation (issue 11): images grouped by size, never padded, metrics equal to one at a time."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from deeplab_edu.engine.data import collate_same_size, eval_loader
from deeplab_edu.engine.trainer import Trainer
from deeplab_edu.inference import Strategy, evaluate
from deeplab_edu.metrics import ConfusionMatrix
from deeplab_edu.models import build_model
from test_engine_fixtures import TinyScenes, tiny_config

SIZES = [(32, 32), (48, 40), (32, 32), (40, 48), (32, 32), (48, 40), (32, 32)]


class MixedSizes(Dataset):
    """Random images of several sizes, labels from the brightest channel, some pixels ignored."""

    num_classes = 3
    ignore_index = 255

    def __len__(self) -> int:
        return len(SIZES)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        h, w = SIZES[i]
        image = torch.randn(3, h, w, generator=g)
        mask = image.argmax(0)
        mask[: h // 8] = 255
        return image, mask


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine two threads can make a tiny forward pass 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("deeplabv3plus", backbone="mobilenet_v3_large", num_classes=3).eval()


def _one_at_a_time(model: torch.nn.Module, dataset: Dataset) -> dict:
    cm = ConfusionMatrix(3, 255)
    model.eval()  # the Trainer leaves the model in training mode
    with torch.no_grad():
        for i in range(len(dataset)):  # type: ignore[arg-type]
            x, y = dataset[i]
            cm.update(model(x[None])["out"].argmax(1), y[None])
    return cm.compute()


def test_collate_same_size_groups_without_padding() -> None:
    items = [MixedSizes()[i] for i in range(len(SIZES))]
    groups = collate_same_size(items)
    assert [tuple(x.shape) for x, _ in groups] == [(4, 3, 32, 32), (2, 3, 48, 40), (1, 3, 40, 48)]
    assert torch.equal(groups[0][0][1], items[2][0]) and torch.equal(groups[1][1][1], items[5][1])
    loader = eval_loader(MixedSizes(), batch_size=3)
    assert sum(len(x) for batch in loader for x, _ in batch) == len(SIZES)
    with pytest.raises(ValueError, match="batch_size"):
        eval_loader(MixedSizes(), batch_size=0)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_trainer_evaluates_in_batches_with_the_metrics_of_one_at_a_time(tmp_path: Path, num_workers: int,
                                                                       model: torch.nn.Module) -> None:
    expected = _one_at_a_time(model, MixedSizes())
    cfg = tiny_config(tmp_path, batch_size=4, num_workers=num_workers)
    trainer = Trainer(cfg, model=model, train_set=TinyScenes(8), val_set=MixedSizes())
    got = trainer.evaluate()
    assert got["iou"] == expected["iou"] and got["miou"] == expected["miou"]
    assert got["pixel_accuracy"] == expected["pixel_accuracy"]


def test_inference_evaluate_in_batches_equals_one_at_a_time(model: torch.nn.Module) -> None:
    model.eval()
    strategy = Strategy(scales=(0.75,), flip=True)
    one = evaluate(model, MixedSizes(), strategy, progress=False)
    batched = evaluate(model, MixedSizes(), strategy, progress=False, batch_size=4, num_workers=1)
    assert batched["iou"] == one["iou"] and batched["miou"] == one["miou"]
    assert evaluate(model, MixedSizes(), progress=False, batch_size=3)["miou"] == _one_at_a_time(model, MixedSizes())["miou"]
    limited = evaluate(model, MixedSizes(), progress=False, batch_size=2, limit=3)
    assert limited == evaluate(model, [MixedSizes()[i] for i in range(3)], num_classes=3, progress=False)


class Unreadable(MixedSizes):
    """A validation set whose third image cannot be read."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i == 2:
            raise OSError("image 2 is unreadable")
        return super().__getitem__(i)


def test_an_evaluation_that_raises_leaves_the_training_output_stride_and_mode(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_model("deeplabv3plus", backbone="tiny_resnet", num_classes=3, output_stride=16)
    cfg = tiny_config(tmp_path, batch_size=2, num_workers=0, output_stride=16, eval_output_stride=8)
    trainer = Trainer(cfg, model=net, train_set=TinyScenes(8), val_set=Unreadable())
    with pytest.raises(OSError, match="image 2"):
        trainer.evaluate()
    assert net.output_stride == 16 and net.training
