"""Engine pieces: poly schedule, head LR groups, losses, checkpoints, NaN stop, frozen BN, metrics files."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import signal
import time
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from deeplab_edu.engine import checkpoint as ck
from deeplab_edu.engine.config import ConfigError, TrainConfig, load_config
from deeplab_edu.engine.distributed import DistInfo
from deeplab_edu.engine.losses import SegmentationLoss, bootstrapped_ce
from deeplab_edu.engine.schedule import PolyLR, param_groups, poly_factor
from deeplab_edu.engine import trainer as trainer_module
from deeplab_edu.engine.trainer import NonFiniteLossError, Trainer, freeze_batchnorm
from test_engine_fixtures import TinyNet, TinyScenes, tiny_config


def test_poly_schedule_and_warmup() -> None:
    assert poly_factor(0, 100) == 1.0 and poly_factor(100, 100) == 0.0
    assert math.isclose(poly_factor(50, 100), 0.5**0.9)
    assert math.isclose(poly_factor(0, 100, warmup_iters=10, warmup_factor=0.1), 0.1)
    assert poly_factor(5, 100, warmup_iters=10) < poly_factor(10, 100, warmup_iters=10)
    model = TinyNet()
    opt = torch.optim.SGD(param_groups(model, lr=0.1, weight_decay=0, head_lr_mult=10), lr=0.1)
    sched = PolyLR(opt, 10)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"backbone": 0.1, "head": 1.0}
    for _ in range(5):
        opt.step()
        sched.step()
    assert math.isclose(opt.param_groups[0]["lr"], 0.1 * 0.5**0.9)
    state = sched.state_dict()
    sched2 = PolyLR(torch.optim.SGD(model.parameters(), lr=0.1), 10)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == 5


def test_head_lr_needs_a_backbone() -> None:
    with pytest.raises(ValueError, match="backbone"):
        param_groups(torch.nn.Conv2d(1, 1, 1), lr=0.1, weight_decay=0, head_lr_mult=10)


def test_bootstrapped_ce_keeps_the_hardest_pixels() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 5)
    target = torch.randint(0, 4, (2, 5, 5))
    target[0, 0] = 255
    full = bootstrapped_ce(logits, target)
    assert torch.isclose(full, torch.nn.functional.cross_entropy(logits, target, ignore_index=255))
    hard = bootstrapped_ce(logits, target, top_k=0.25)
    pix = torch.nn.functional.cross_entropy(logits, target, ignore_index=255, reduction="none")
    expect = []
    for b in range(2):
        v = pix[b][target[b] != 255]
        expect.append(v.topk(math.floor(0.25 * v.numel())).values.mean())
    assert torch.isclose(hard, torch.stack(expect).mean()) and hard > full
    # k truncates as the released code's int cast does: 0.29 of 10 labelled pixels keeps 2 (round: 3), and a
    # fraction of fewer than one pixel keeps 1
    row = torch.arange(10.0)
    logits_1d = torch.stack([torch.zeros(10), -row]).view(1, 2, 1, 10)  # pixel i's loss grows with i (class 1)
    ones = torch.ones(1, 1, 10, dtype=torch.long)
    losses = torch.nn.functional.cross_entropy(logits_1d, ones, reduction="none").flatten()
    assert torch.isclose(bootstrapped_ce(logits_1d, ones, top_k=0.29), losses.topk(2).values.mean())
    assert torch.isclose(bootstrapped_ce(logits_1d, ones, top_k=0.05), losses.max())
    loss = SegmentationLoss(top_k=0.25, hard_mining_iters=10)
    assert loss.current_top_k() == 1.0
    loss.set_iteration(5)
    assert math.isclose(loss.current_top_k(), 0.625)
    with_aux = SegmentationLoss(aux_weight=0.5)({"out": logits, "aux": logits}, target)
    assert torch.isclose(with_aux, 1.5 * full)
    with pytest.raises(ValueError, match="top_k"):
        bootstrapped_ce(logits, target, top_k=0)
    nothing = torch.full_like(target, 255)  # a batch without a labelled pixel: zero with a graph, not NaN
    for k in (1.0, 0.25):
        logits.grad = None
        zero = bootstrapped_ce(logits.requires_grad_(), nothing, top_k=k)
        zero.backward()
        assert zero.item() == 0.0 and logits.grad is not None and not logits.grad.any()


def test_class_weights_weigh_each_pixel_by_its_class(tmp_path) -> None:
    """Median-frequency balancing: the weighted loss is F.cross_entropy's weighted mean; the Trainer
    computes the weights from its training labels; the pair with hard-pixel mining is refused."""
    from deeplab_edu.data.stats import dataset_masks, median_frequency_weights

    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 5, 5), torch.randint(0, 3, (2, 5, 5))
    target[0, 0] = 255
    weight = torch.tensor([0.5, 2.0, 1.0])
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weight, ignore_index=255)
    assert torch.isclose(bootstrapped_ce(logits, target, weight=weight), expected)
    assert not torch.isclose(bootstrapped_ce(logits, target), expected)
    assert torch.isclose(SegmentationLoss(class_weights=weight)(logits, target), expected)
    nothing = torch.full_like(target, 255)
    zero = bootstrapped_ce(logits.requires_grad_(), nothing, weight=weight)
    zero.backward()
    assert zero.item() == 0.0 and not logits.grad.any()  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="use one of the two"):
        bootstrapped_ce(logits, target, weight=weight, top_k=0.5)

    scenes = TinyScenes(8)
    cfg = tiny_config(tmp_path, iterations=1, eval_every=1, class_weights="median_frequency", tensorboard=False)
    trainer = Trainer(cfg, model=TinyNet(), train_set=scenes, val_set=TinyScenes(2, augment=False))
    wanted = median_frequency_weights(dataset_masks(scenes), 3)
    torch.testing.assert_close(trainer.class_weights, torch.as_tensor(wanted, dtype=torch.float32))
    assert trainer.criterion.class_weights is trainer.class_weights and "median frequency" in trainer.describe()
    assert "per process" not in trainer.describe()
    trainer.dist = DistInfo(rank=0, world_size=2, local_rank=0)  # as torchrun --nproc_per_node 2 would start it
    assert (f"of batch {cfg.batch_size} per process x 2 processes (a global batch of {2 * cfg.batch_size} per "
            "optimiser step)") in trainer.describe()
    trainer.cfg = dataclasses.replace(cfg, grad_accum=3)  # each optimiser step sees 3 batches of each process
    assert (f"of batch {cfg.batch_size} per process x 2 processes x 3 accumulated (a global batch of "
            f"{6 * cfg.batch_size} per optimiser step)") in trainer.describe()
    plain = Trainer(tiny_config(tmp_path / "plain", class_weights="none"), model=TinyNet(), train_set=scenes,
                    val_set=TinyScenes(2, augment=False))
    assert plain.class_weights is None

    class NoBlue(TinyScenes):  # class 2 ("blue") in no mask: its weight is a guess, said so
        def __getitem__(self, i: int):
            image, mask = super().__getitem__(i)
            return image, torch.where(mask == 2, 0, mask)

    with pytest.warns(UserWarning, match=r"no pixel of blue in the 8 training masks counted"):
        Trainer(tiny_config(tmp_path / "noblue", class_weights="median_frequency"), model=TinyNet(),
                train_set=NoBlue(8), val_set=TinyScenes(2, augment=False))

    assert load_config("smoke", {"class_weights": "None"}).class_weights is None  # one value for "no weights"
    for bad, match in (({"class_weights": "inverse"}, "class_weights='inverse'"),
                       ({"class_weights": "median_frequency", "top_k": 0.5}, "use one of them")):
        with pytest.raises(ConfigError, match=match):
            Trainer(tiny_config(tmp_path / "bad", **bad), model=TinyNet(), train_set=scenes,
                    val_set=TinyScenes(2, augment=False))


def test_checkpoint_atomic_keep_last_and_rng(tmp_path) -> None:
    for it in range(1, 6):
        ck.save_checkpoint({"model": {}, "iteration": it, "rng": ck.rng_state()}, tmp_path, it, keep_last=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ckpt_00000004.pt", "ckpt_00000005.pt", "last.pt"]  # no temporary files left
    state = ck.load_checkpoint(tmp_path)
    assert state["iteration"] == 5
    assert (tmp_path / "last.pt").samefile(tmp_path / "ckpt_00000005.pt")  # a hard link: written once
    ck.set_rng_state(state["rng"])
    a = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    ck.set_rng_state(state["rng"])
    b = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ck.load_checkpoint(tmp_path / "nothing_here")


def test_last_pt_is_written_where_the_file_system_has_no_hard_links(tmp_path, monkeypatch) -> None:
    import os

    def no_links(*args: object) -> None:
        raise OSError("hard links are not supported here")

    monkeypatch.setattr(os, "link", no_links)
    for it in (1, 2):
        ck.save_checkpoint({"model": {}, "iteration": it}, tmp_path, it, keep_last=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_00000002.pt", "last.pt"]
    assert not (tmp_path / "last.pt").samefile(tmp_path / "ckpt_00000002.pt")
    assert ck.load_checkpoint(tmp_path)["iteration"] == 2


def test_checkpoint_from_another_model_is_refused(tmp_path) -> None:
    cfg = tiny_config(tmp_path / "a", iterations=2, ckpt_every=2, eval_every=2)
    Trainer(cfg, model=TinyNet(3), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()
    state = ck.load_checkpoint(tmp_path / "a" / "checkpoints")
    with pytest.raises(ck.CheckpointMismatchError, match="another model: num_classes 3 there, 5 here"):
        ck.check_compatible(state, {"name": "deeplabv3", "backbone": "mobilenet_v3_large", "num_classes": 5})
    with pytest.raises(ck.CheckpointMismatchError, match="backbone"):
        ck.check_compatible(state, {"name": "deeplabv3", "backbone": "resnet50", "num_classes": 3})
    with pytest.raises(ck.CheckpointMismatchError, match="other shapes"):
        ck.check_compatible(state, {}, TinyNet(3, width=4))
    # resuming into a run with another class count fails with the same clear error
    cfg2 = tiny_config(tmp_path / "a", iterations=4, resume=True)
    with pytest.raises(ck.CheckpointMismatchError, match="num_classes"):
        Trainer(cfg2, model=TinyNet(3), train_set=TinyScenes(8), val_set=TinyScenes(2), num_classes=4)
    bad = tmp_path / "ckpt_00000001.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="(?s)could not read checkpoint.*not a file torch.save wrote .*copy it again$"):
        ck.load_checkpoint(bad)  # its advice once (a trial read "copy it again; it is truncated, damaged or ...")
    photo = tmp_path / "photo.jpg"  # given as --checkpoint by mistake: one line, no weights_only=False advice
    photo.write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    with pytest.raises(RuntimeError) as info:
        ck.load_checkpoint(photo)
    assert "not a file torch.save wrote" in str(info.value) and "weights_only" not in str(info.value)
    pickled = tmp_path / "pickled.pt"  # an object that would run code when unpickled: refused, not run
    torch.save({"model": _RunsCode()}, pickled)
    with pytest.raises(RuntimeError) as info:
        ck.load_checkpoint(pickled)
    assert not _RunsCode.ran and "holds a Python object that is not tensors (exec)" in str(info.value)
    assert "damaged" not in str(info.value) and "\x1b" not in str(info.value)  # not torch's coloured advice
    # a damaged newest checkpoint of a run: the message names the one to fall back to
    folder = tmp_path / "a" / "checkpoints"
    newest = ck.latest_checkpoint(folder)
    (folder / "ckpt_00000000.pt").write_bytes(newest.read_bytes())  # an older, good one
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.raises(RuntimeError, match=r"move it away, and the run.s folder then offers ckpt_00000000\.pt"):
        ck.load_checkpoint(folder)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path) -> None:
    model = TinyNet()
    model.nan_after = 7  # forward calls: iterations 1..7 fine (no eval before 6 ... eval at 6 adds 2 calls)
    cfg = tiny_config(tmp_path, iterations=12, ckpt_every=2, eval_every=100)
    trainer = Trainer(cfg, model=model, train_set=TinyScenes(16), val_set=TinyScenes(2, augment=False))
    with pytest.raises(NonFiniteLossError, match=r"nan at iteration 8.*ckpt_00000006\.pt"):
        trainer.fit()
    assert ck.latest_checkpoint(tmp_path / "checkpoints").name == "ckpt_00000006.pt"
    good = ck.load_checkpoint(tmp_path / "checkpoints")
    assert all(torch.isfinite(v).all() for v in good["model"].values() if v.is_floating_point())


def test_a_passed_model_or_data_without_classes_is_named(tmp_path) -> None:
    """A practitioner's trial: a model of 5 classes on data of 8 trained until PyTorch's "Target 7 is out of
    bounds"; a list of pairs without num_classes= failed with "'list' object has no attribute 'num_classes'"."""
    cfg = tiny_config(tmp_path, iterations=2, ckpt_every=100, eval_every=100)
    trainer = Trainer(cfg, model=TinyNet(num_classes=2), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False))
    with pytest.raises(ValueError, match=r"the model scores 2 classes .* but the data has 3 \(num_classes\)"):
        trainer.fit()
    pairs = [TinyScenes(8)[i] for i in range(8)]
    with pytest.raises(ValueError, match=r"train_set \(list\) has no num_classes attribute: pass num_classes="):
        Trainer(tiny_config(tmp_path / "b"), model=TinyNet(), train_set=pairs, val_set=pairs[:2])
    trainer = Trainer(tiny_config(tmp_path / "c", iterations=2, ckpt_every=100, eval_every=100), model=TinyNet(),
                      train_set=pairs, val_set=pairs[:2], num_classes=3)
    trainer.fit()  # a list of pairs trains, and the first step's check passed
    assert trainer.iteration == 2 and not trainer._check_classes
    # a crop larger than any scene trained silently on 96 % padding (a trial)
    with pytest.warns(UserWarning, match=r"crop_size=500 is larger than any training scene \(image_size 48 x scale 2"):
        Trainer(load_config("smoke", {"crop_size": 500, "out_dir": str(tmp_path / "d")}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(load_config("smoke", {"crop_size": 96, "out_dir": str(tmp_path / "e")}))  # the largest scaled scene


def test_nan_between_reads_names_its_iteration(tmp_path) -> None:
    model = TinyNet()
    model.nan_after = 7  # iteration 8 is the first NaN; fit reads the losses back at 5 and 10 only
    cfg = tiny_config(tmp_path, iterations=12, ckpt_every=5, log_every=5, eval_every=100)
    trainer = Trainer(cfg, model=model, train_set=TinyScenes(16), val_set=TinyScenes(2, augment=False))
    with pytest.raises(NonFiniteLossError, match=r"nan at iteration 8.*ckpt_00000005\.pt"):
        trainer.fit()
    assert ck.latest_checkpoint(tmp_path / "checkpoints").name == "ckpt_00000005.pt"


def test_training_steps_do_not_wait_for_the_device(tmp_path, monkeypatch) -> None:
    """fit reads losses back (a GPU sync) only when it logs, evaluates or saves, not per iteration.

    Catches reads made from Python (``item``, ``float(t)``, ``tolist``, ``bool(t)``...), the usual way a
    loop syncs; syncs inside PyTorch's own kernels (boolean masks, fp16's gradient scaler on CUDA)
    are not seen here."""
    cfg = tiny_config(tmp_path, iterations=10, log_every=5, ckpt_every=100, eval_every=100)
    trainer = Trainer(cfg, model=TinyNet(), train_set=TinyScenes(16), val_set=TinyScenes(2, augment=False))
    batches = trainer.batches()
    next(batches)  # the loader's first batch reads tensors freely; only the step itself is checked

    def no_read(*args: object) -> None:
        raise AssertionError("a training step read a value back from the device")

    with monkeypatch.context() as m:
        for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
            m.setattr(torch.Tensor, name, no_read)
        for _ in range(2):
            loss, images = trainer.step(batches)
    assert loss.dim() == 0 and images == cfg.batch_size
    reads: list[int] = []
    read = trainer._read_losses
    monkeypatch.setattr(trainer, "_read_losses", lambda losses, last: reads.append(last) or read(losses, last))
    trainer.fit()
    assert reads == [5, 10]
    rows = [r for r in trainer.history if r["split"] == "train"]
    assert [r["iteration"] for r in rows] == [5, 10] and all(math.isfinite(r["loss"]) for r in rows)


def test_freeze_bn_and_metrics_files(tmp_path) -> None:
    model = TinyNet()
    assert freeze_batchnorm(model) == 2
    cfg = tiny_config(tmp_path, iterations=3, eval_every=3, freeze_bn=True, tensorboard=False)
    before = model.backbone[1].running_mean.clone()
    result = Trainer(cfg, model=model, train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()
    assert torch.equal(model.backbone[1].running_mean, before)  # frozen statistics
    assert not model.backbone[1].weight.requires_grad
    assert result["final"]["split"] == "val" and 0 <= result["final"]["miou"] <= 1
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,split,loss") and len(rows) == 3
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["final"]["iteration"] == 3
    # what each entry of a row's iou is (a trial: an unnamed list)
    assert written["class_names"] == ["red", "green", "blue"] == result["class_names"]
    assert len(written["final"]["iou"]) == 3


def test_bn_momentum_sets_the_running_statistics_decay(tmp_path) -> None:
    """DeepLabv3's decay 0.9997 is PyTorch's momentum 0.0003: the first training step moves the running
    mean by 0.0003 of the batch mean's distance from it, 0.003 times what PyTorch's default 0.1 moves it."""

    def first_step_shift(out: str, **momentum: float) -> torch.Tensor:
        torch.manual_seed(0)
        model = TinyNet()
        cfg = tiny_config(tmp_path / out, iterations=1, eval_every=1, tensorboard=False, **momentum)
        trainer = Trainer(cfg, model=model, train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False))
        if momentum:
            assert all(m.momentum == 0.0003 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        before = model.backbone[1].running_mean.clone()
        trainer.fit()
        return model.backbone[1].running_mean - before

    default, paper = first_step_shift("default"), first_step_shift("paper", bn_momentum=0.0003)
    assert default.abs().max() > 0
    torch.testing.assert_close(paper, 0.003 * default, rtol=1e-3, atol=1e-9)
    with pytest.raises(ConfigError, match="bn_momentum=0.0"):
        Trainer(tiny_config(tmp_path / "b", bn_momentum=0.0), model=TinyNet(), train_set=TinyScenes(8),
                val_set=TinyScenes(2, augment=False))


def test_gradient_accumulation_equals_the_larger_batch(tmp_path) -> None:
    """With frozen BN and no dropout, 2 micro-batches of 2 give the same step as one batch of 4 (their crops are
    labelled alike; where micro-batches hold different numbers of labelled pixels each micro-batch weighs alike,
    not each pixel, as ``TrainConfig.grad_accum`` says)."""

    def run(out: str, batch: int, accum: int) -> dict:
        torch.manual_seed(0)
        model = TinyNet(dropout=0.0)
        cfg = tiny_config(tmp_path / out, iterations=3, batch_size=batch, grad_accum=accum, freeze_bn=True,
                          eval_every=3, ckpt_every=3)
        Trainer(cfg, model=model, train_set=TinyScenes(16), val_set=TinyScenes(2, augment=False)).fit()
        return model.state_dict()

    a, b = run("big", 4, 1), run("accum", 2, 2)
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_bf16_channels_last_and_tensorboard(tmp_path) -> None:
    cfg = tiny_config(tmp_path, iterations=2, amp="bf16", channels_last=True, tensorboard=True, eval_every=2)
    model = TinyNet()
    seen: list[tuple[bool, torch.dtype, bool]] = []  # (training, dtype of the conv's output, input channels_last)
    model.backbone[0].register_forward_hook(lambda m, args, out: seen.append(
        (m.training, out.dtype, args[0].is_contiguous(memory_format=torch.channels_last))))
    result = Trainer(cfg, model=model, train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()
    assert all(math.isfinite(r["loss"]) for r in result["history"] if r["split"] == "train")
    training = [(dtype, cl) for train, dtype, cl in seen if train]
    assert len(training) == 2 and all(dtype == torch.bfloat16 and cl for dtype, cl in training)  # both settings act
    assert model.backbone[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        Trainer(tiny_config(tmp_path / "fp16", iterations=1, amp="fp16"), model=TinyNet(),
                train_set=TinyScenes(8), val_set=TinyScenes(2)).fit()
    assert not (tmp_path / "fp16").exists()  # refused before its folder was made


def test_a_log_window_cut_by_a_resume_averages_its_own_steps(tmp_path) -> None:
    """Resumed between two logs (here: checkpoint at 6, a log every 4), the first logged loss is the
    mean of the steps run since the resume (7 and 8), not their sum over log_every."""
    import shutil

    cfg = tiny_config(tmp_path / "a", iterations=6, ckpt_every=3, log_every=1, eval_every=100, warmup_iters=0)
    Trainer(cfg, model=TinyNet(), train_set=TinyScenes(16), val_set=TinyScenes(2, augment=False)).fit()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    losses = {}
    for run, log_every in (("a", 1), ("b", 4)):
        cfg = tiny_config(tmp_path / run, iterations=8, ckpt_every=3, log_every=log_every, eval_every=100,
                          warmup_iters=0, resume=True)
        history = Trainer(cfg, model=TinyNet(), train_set=TinyScenes(16), val_set=TinyScenes(2, augment=False)).fit()
        losses[run] = {r["iteration"]: r["loss"] for r in history["history"] if r["split"] == "train"
                       and r["iteration"] > 6}
    assert list(losses["b"]) == [8]
    assert losses["b"][8] == pytest.approx((losses["a"][7] + losses["a"][8]) / 2, rel=1e-5)


def test_resume_continues_under_this_runs_settings(tmp_path, capsys) -> None:
    """Extending a run (more iterations) or lowering its lr on resume takes effect, and the resume
    message says what changed; rows metrics.csv got after the checkpoint are dropped."""
    from deeplab_edu.engine.schedule import poly_factor

    cfg = tiny_config(tmp_path, iterations=6, ckpt_every=3, log_every=1, eval_every=100, warmup_iters=0)
    Trainer(cfg, model=TinyNet(), train_set=TinyScenes(16), val_set=TinyScenes(2, augment=False)).fit()
    csv_path = tmp_path / "metrics.csv"
    with open(csv_path, "a") as f:  # as an interrupted run leaves it: logged past its last checkpoint
        f.write("7,train,0.5,0.01,1.0,,,,\n")
    cfg2 = tiny_config(tmp_path, iterations=12, lr=0.01, ckpt_every=3, log_every=1, eval_every=100,
                       warmup_iters=0, resume=True)
    trainer = Trainer(cfg2, model=TinyNet(), train_set=TinyScenes(16), val_set=TinyScenes(2, augment=False))
    assert trainer.iteration == 6
    assert "iterations 6 -> 12, lr 0.05 -> 0.01" in trainer._resume_message  # printed by fit, under the lock
    expected = 0.01 * poly_factor(6, 12, 0.9)
    # a practitioner's trial: the extended schedule raised the learning rate without a word
    assert (f"the poly schedule now decays over 12 iterations, so the learning rate at iteration 6 is {expected:.3g} "
            "(it was 0 on the run's schedule of 6)") in trainer._resume_message
    partway = tmp_path / "partway"  # resumed mid-run with another lr: "it was" is the run's own rate there
    shutil.copytree(tmp_path / "checkpoints", partway / "checkpoints")
    for f in (partway / "checkpoints").iterdir():
        if f.name != "ckpt_00000003.pt":
            f.unlink()
    resumed = Trainer(tiny_config(partway, iterations=12, lr=0.01, ckpt_every=3, eval_every=100, warmup_iters=0,
                                  resume=True), model=TinyNet(), train_set=TinyScenes(16),
                      val_set=TinyScenes(2, augment=False))
    assert resumed.iteration == 3
    assert (f"learning rate at iteration 3 is {0.01 * poly_factor(3, 12, 0.9):.3g} (it was "
            f"{0.05 * poly_factor(3, 6, 0.9):.3g} on the run's schedule of 6)") in resumed._resume_message
    assert all(g["lr"] == pytest.approx(expected) for g in trainer.optimizer.param_groups)
    assert trainer.scheduler.max_iter == 12 and trainer.scheduler.get_last_lr()[0] == pytest.approx(expected)
    assert "7,train" in csv_path.read_text()  # constructing a Trainer writes nothing: fit() does, under the lock
    trainer.fit()
    assert "iterations 6 -> 12, lr 0.05 -> 0.01" in capsys.readouterr().out
    rows = [r for r in trainer.history if r["split"] == "train"]
    assert [r["iteration"] for r in rows] == list(range(1, 13))
    assert rows[6]["lr"] == pytest.approx(0.01 * poly_factor(6, 12, 0.9))  # the rate step 7 used
    assert rows[-1]["lr"] > 0 and rows[-1]["lr"] == pytest.approx(0.01 * poly_factor(11, 12, 0.9))  # the last step's
    lines = [line.split(",") for line in csv_path.read_text().splitlines()[1:]]
    assert [r[0] for r in lines if r[1] == "train"] == [str(i) for i in range(1, 13)]
    assert [r[0] for r in lines if r[1] == "val"] == ["6", "12"]
    done = Trainer(tiny_config(tmp_path, iterations=12, lr=0.001, ckpt_every=3, eval_every=100, warmup_iters=0,
                               resume=True), model=TinyNet(), train_set=TinyScenes(16), val_set=TinyScenes(2, augment=False))
    assert "it has reached its 12 iterations, so nothing is trained" in done._resume_message  # a second trial: silent
    done.fit()  # trains nothing: the run's config.json keeps the settings that trained it (lr 0.01, not 0.001)
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == pytest.approx(0.01)


@pytest.mark.parametrize("first, then", [("sgd", "adamw"), ("adamw", "sgd")])
def test_resume_refuses_another_optimizer(tmp_path, first: str, then: str) -> None:
    """A new user's trial: resuming an SGD run with --optimizer adamw ended in a KeyError traceback from the
    optimiser's state, and the other way round the switch went unmentioned (Adam's moments dropped). The
    optimiser is a setting a resumed run cannot change; the message names it and both ways out."""
    from deeplab_edu.engine.checkpoint import CheckpointMismatchError

    cfg = tiny_config(tmp_path, iterations=3, ckpt_every=3, eval_every=100, warmup_iters=0, optimizer=first)
    Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()
    cfg2 = tiny_config(tmp_path, iterations=6, ckpt_every=3, eval_every=100, warmup_iters=0, optimizer=then,
                       resume=True)
    with pytest.raises(CheckpointMismatchError, match=f"optimizer '{first}' -> '{then}'.*--init-from"):
        Trainer(cfg2, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False))


def test_resume_lists_every_changed_setting_and_refuses_another_network() -> None:
    """The trial's second finding: resumed with another --crop-size, a run fitted its ASPP rates anew
    ([1, 2, 3] -> [1, 1, 2]) and took another --output-stride, --batch-size or --seed, while the message
    listed only the schedule's settings. A change of the network is refused; every other change is listed."""
    from deeplab_edu.engine._resume import _resume_differences

    saved = TrainConfig(atrous_rates="fit", crop_size=96, batch_size=8).to_dict()
    info = {"name": "deeplabv3", "atrous_rates": [1, 2, 3]}
    assert _resume_differences(saved, saved, info, info) == ([], [])
    now = TrainConfig(atrous_rates="fit", crop_size=64, batch_size=4, seed=3, iterations=40000).to_dict()
    refused, changed = _resume_differences(saved, now, info, {**info, "atrous_rates": [1, 1, 2]})
    assert refused == ["the ASPP's rates (1, 2, 3) -> (1, 1, 2) (atrous_rates 'fit' at crop_size 64)"]
    assert changed == ["iterations 30000 -> 40000", "crop_size 96 -> 64", "batch_size 8 -> 4", "seed 0 -> 3"]
    refused, _ = _resume_differences(saved, {**saved, "output_stride": 8}, info, info)
    assert refused == ["output_stride 16 -> 8"]
    _, changed = _resume_differences(saved, {**saved, "out_dir": "elsewhere", "resume": True}, info, info)
    assert changed == []  # where and how a run goes on is no change of what it trains
    assert _resume_differences({"lr": 0.1}, saved, {}, info) == ([], ["lr 0.1 -> 0.007"])  # an older checkpoint
    refused, _ = _resume_differences(saved, {**saved, "init_from": "r1/checkpoints"}, info, info)  # a second trial
    assert refused == ["init_from None -> 'r1/checkpoints' (--init-from starts a new run from weights; a resumed "
                       "run continues from its own checkpoint)"]
    _, changed = _resume_differences({**saved, "init_from": "a"}, {**saved, "init_from": "/x/a"}, info, info)
    assert changed == ["init_from a -> /x/a"]  # the same file by another path: listed, not refused


def test_a_run_folder_is_never_written_by_two_runs(tmp_path) -> None:
    """A new run refuses a folder holding another run's checkpoints (it used to overwrite them, and
    prune its own newest ones among the old), and a second process cannot train into a locked one."""
    import subprocess
    import sys

    from deeplab_edu.engine.runs import RunFolderError

    def trainer(**kw):
        cfg = tiny_config(tmp_path, **{"iterations": 4, "ckpt_every": 2, "eval_every": 100, "warmup_iters": 0, **kw})
        return Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False))

    first = trainer()
    first.fit()
    assert first.fit()["history"][-1]["iteration"] == 4  # fit() again on the same Trainer: its own run
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").iterdir()}
    with pytest.raises(RunFolderError, match="already holds a run .*ckpt_00000004.pt.*--resume"):
        trainer().fit()
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").iterdir()} == before
    # a process killed while writing a checkpoint left its temporary file: the next run removes it
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "checkpoints" / f".last.tmp{int(dead.stdout)}.pt"
    stale.write_bytes(b"half a checkpoint")
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from filelock import FileLock
with FileLock({str(tmp_path / 'train.lock')!r}):
    print('locked', flush=True); time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match="another process is training into"):
            trainer(resume=True, iterations=8).fit()
    finally:
        holder.kill()
        holder.wait()
    assert trainer(resume=True, iterations=8).fit()["history"][-1]["iteration"] == 8
    assert not stale.exists()


def test_a_checkpoint_says_what_its_script_passed_in(tmp_path, capsys) -> None:
    """A run whose script passed its own model or data set records so, with the classes; the CLI
    says it cannot rebuild them (eval used to score such a model on the procedural scenes, and
    predict printed 90 lines of missing keys) and predict colours masks with the run's palette."""
    import numpy as np
    from PIL import Image

    from deeplab_edu.cli import main
    from deeplab_edu.models import build_model

    own = tiny_config(tmp_path / "own", iterations=2, eval_every=100, warmup_iters=0)
    Trainer(own, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()
    info = ck.load_checkpoint(tmp_path / "own" / "checkpoints" / "last.pt")["model_info"]
    assert info["model_class"].endswith("TinyNet") and info["data_class"].endswith("TinyScenes")
    assert info["class_names"] == ["red", "green", "blue"] and info["palette"][2] == [0, 0, 255]
    # the configured model with the script's data: eval cannot rebuild the data, predict reads the classes
    cfg = tiny_config(tmp_path / "data", iterations=2, eval_every=100, warmup_iters=0)
    model = build_model(cfg.model, backbone=cfg.backbone, num_classes=3)
    Trainer(cfg, model=model, train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()
    assert main(["eval", "--checkpoint", str(tmp_path / "data" / "checkpoints" / "last.pt")]) == 2
    err = capsys.readouterr().err
    assert "TinyScenes" in err and "cannot rebuild" in err and err.count("\n") == 1
    Image.fromarray(np.full((20, 24, 3), 200, np.uint8)).save(tmp_path / "photo.png")
    assert main(["predict", "--checkpoint", str(tmp_path / "data" / "checkpoints" / "last.pt"),
                 str(tmp_path / "photo.png"), "--out", str(tmp_path / "pred")]) == 0
    assert Image.open(tmp_path / "pred" / "photo_mask.png").getpalette()[:9] == [255, 0, 0, 0, 255, 0, 0, 0, 255]
    assert main(["predict", "--checkpoint", str(tmp_path / "own" / "checkpoints" / "last.pt"),
                 str(tmp_path / "photo.png"), "--out", str(tmp_path / "pred2")]) == 2
    err = capsys.readouterr().err
    assert "built itself" in err and "TinyNet" in err and err.count("\n") == 1
    assert "start a new run" not in err  # the generic advice contradicted this one


class _InterruptedScenes(TinyScenes):
    """Sends this process ``signal_number`` (a Ctrl-C by default) while the 15th item is loaded, as a
    user (or ``kill``, ``docker stop``) would mid-step."""

    calls = 0
    signal_number = 2  # SIGINT

    def __getitem__(self, i: int):
        import os

        type(self).calls += 1
        if type(self).calls == 15:
            os.kill(os.getpid(), self.signal_number)
        return super().__getitem__(i)


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_ctrl_c_finishes_the_step_and_saves(tmp_path, capsys, monkeypatch: pytest.MonkeyPatch,
                                            signal_name: str, request: pytest.FixtureRequest) -> None:
    """The first Ctrl-C (or SIGTERM, which killed the run without a checkpoint) lets the step end, saves
    a checkpoint there and stops (KeyboardInterrupt); nothing is lost: --resume continues from that
    iteration. (Checkpoints were every 100 iterations; SIGHUP, a closed terminal, lost them until an audit.)"""
    import signal

    if not hasattr(signal, signal_name):
        pytest.skip(f"no {signal_name} on this system")
    sig = getattr(signal, signal_name)
    if signal.getsignal(sig) is signal.SIG_IGN:  # pytest started under nohup (a CI's launcher): as a terminal has it
        request.addfinalizer(functools.partial(signal.signal, sig, signal.signal(sig, signal.SIG_DFL)))
    monkeypatch.setattr(_InterruptedScenes, "calls", 0)
    monkeypatch.setattr(_InterruptedScenes, "signal_number", int(getattr(signal, signal_name)))
    cfg = tiny_config(tmp_path, iterations=12, ckpt_every=100, eval_every=100, warmup_iters=0, num_workers=0,
                      batch_size=4)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, signal_name))}
    with pytest.raises(KeyboardInterrupt) as stopped:
        Trainer(cfg, model=TinyNet(), train_set=_InterruptedScenes(16), val_set=TinyScenes(2, augment=False)).fit()
    assert stopped.value.signum == getattr(signal, signal_name)  # type: ignore[attr-defined]  # the exit status: 128 + it
    assert {sig: signal.getsignal(sig) for sig in before} == before  # the handlers are put back
    err = capsys.readouterr().err  # no validation was under way (a trial found the message saying one was skipped)
    assert "finishing this step and saving a checkpoint" in err and "validation" not in err
    saved = ck.latest_checkpoint(tmp_path / "checkpoints")
    assert saved is not None and saved.name == "ckpt_00000004.pt"  # items 13-16 made step 4
    # the last line of a notebook's traceback says where the run stands and how to go on (outside a kernel, as
    # here, not by its cell: test_a_stopped_runs_advice_fits_where_it_ran)
    assert f"stopped after iteration 4 of 12, saved in {ck.shown_path(saved)}" in str(stopped.value)
    assert "to continue, run it again" in str(stopped.value)
    cfg.resume = True
    result = Trainer(cfg, model=TinyNet(), train_set=TinyScenes(16), val_set=TinyScenes(2, augment=False)).fit()
    assert [r["iteration"] for r in result["history"] if r["split"] == "train"][-1] == 12


def test_a_stop_request_cuts_a_validation_short(tmp_path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C while the model is being validated stops after the current batch of the validation
    (on CamVid a whole pass took 30 s after the message said "finishing this step"): the run saves
    its checkpoint at that iteration and logs no validation there; --resume continues."""
    monkeypatch.setattr(_InterruptedScenes, "calls", 0)
    cfg = tiny_config(tmp_path, iterations=12, ckpt_every=100, eval_every=4, warmup_iters=0, num_workers=0,
                      batch_size=2)
    val = _InterruptedScenes(20, augment=False)  # validation at iteration 4 reads its items 1-20: Ctrl-C at the 15th
    torch.manual_seed(0)  # the model's initial weights, as the uninterrupted run's below
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, model=TinyNet(), train_set=TinyScenes(16), val_set=val).fit()
    assert _InterruptedScenes.calls < 20 - 1  # the validation stopped before its last items
    assert "stopping the validation under way and saving a checkpoint" in capsys.readouterr().err
    saved = ck.latest_checkpoint(tmp_path / "checkpoints")
    assert saved is not None and saved.name == "ckpt_00000004.pt"
    metrics = (tmp_path / "metrics.csv").read_text()
    assert ",val," not in metrics  # no half-validation was logged as one
    cfg.resume = True
    resumed = Trainer(cfg, model=TinyNet(), train_set=TinyScenes(16), val_set=TinyScenes(4, augment=False))
    result = resumed.fit()
    # the resumed run validates first where the stop cut the validation short: the curve has no gap
    assert "first the validation the stop cut short" in capsys.readouterr().out
    assert [r["iteration"] for r in result["history"] if r["split"] == "val"] == [4, 8, 12]
    assert "4,val," in (tmp_path / "metrics.csv").read_text()
    # ... and trains on as if it had never stopped (the validation draws nothing from the run's random stream)
    whole = tiny_config(tmp_path / "whole", iterations=12, ckpt_every=100, eval_every=4, warmup_iters=0,
                        num_workers=0, batch_size=2)
    torch.manual_seed(0)
    uninterrupted = Trainer(whole, model=TinyNet(), train_set=TinyScenes(16), val_set=TinyScenes(4, augment=False))
    expected = uninterrupted.fit()
    assert [r["miou"] for r in result["history"] if r["split"] == "val"] == \
        [r["miou"] for r in expected["history"] if r["split"] == "val"]
    for a, b in zip(resumed.net.state_dict().values(), uninterrupted.net.state_dict().values()):
        assert torch.equal(a, b)


def test_a_stop_during_the_resumed_validation_keeps_it_due(tmp_path, capsys,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped again while the resumed run does the validation a stop cut short: nothing is trained,
    the message names the checkpoint, and the next resume validates there again."""
    monkeypatch.setattr(_InterruptedScenes, "calls", 0)
    cfg = tiny_config(tmp_path, iterations=8, ckpt_every=100, eval_every=4, warmup_iters=0, num_workers=0,
                      batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, model=TinyNet(), train_set=TinyScenes(16), val_set=_InterruptedScenes(20, augment=False)).fit()
    cfg.resume = True
    monkeypatch.setattr(_InterruptedScenes, "calls", 0)
    with pytest.raises(KeyboardInterrupt) as stopped:
        Trainer(cfg, model=TinyNet(), train_set=TinyScenes(16), val_set=_InterruptedScenes(20, augment=False)).fit()
    assert "stopped after iteration 4 of 8, saved in" in str(stopped.value)
    assert [p.name for p in sorted((tmp_path / "checkpoints").glob("ckpt_*.pt"))] == ["ckpt_00000004.pt"]
    result = Trainer(cfg, model=TinyNet(), train_set=TinyScenes(16), val_set=TinyScenes(4, augment=False)).fit()
    assert [r["iteration"] for r in result["history"] if r["split"] == "val"] == [4, 8]


def test_a_scripts_data_comes_in_pairs_and_normalised(tmp_path) -> None:
    """Only a train_set used to validate on the configuration's procedural scenes (8 classes, for a
    4-class model); images in [0, 1] train and evaluate a model that predicts background."""

    class Unnormalised(TinyScenes):
        def __getitem__(self, i: int):
            image, mask = super().__getitem__(i)
            return image + 0.5, mask  # in [0, 1]: what a data set without a transform gives

    cfg = tiny_config(tmp_path, iterations=2)
    with pytest.raises(ValueError, match="train_set and val_set together"):
        Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8))
    with pytest.warns(UserWarning, match=r"val_set\[0\] is an image in \[0, 1\].*eval_transform"):
        Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=Unnormalised(2))


def test_checking_a_scripts_data_draws_no_random_numbers(tmp_path) -> None:
    """The Trainer looks at the first item of a data set it is given (normalised?); a random
    transform there must not shift the seeded random streams the run starts from."""
    import random

    import numpy as np

    class Drawing(TinyScenes):
        def __getitem__(self, i: int):
            random.random(), np.random.rand(), torch.rand(1)
            return super().__getitem__(i)

    Trainer(tiny_config(tmp_path, iterations=2), model=TinyNet(), train_set=Drawing(8), val_set=Drawing(2))
    after = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    Trainer(tiny_config(tmp_path, iterations=2), model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2))
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == after


def test_ctrl_c_on_a_logging_step_saves_too(tmp_path) -> None:
    """At a step that logged (every loss read already) the interrupt's checkpoint has no loss left to
    read; reading none used to fail (torch.stack of an empty list) instead of saving."""

    class At10(_InterruptedScenes):
        calls = 5  # the 15th count falls on item 10: step 3, a logging step (log_every 3)

    cfg = tiny_config(tmp_path, iterations=12, ckpt_every=100, eval_every=100, warmup_iters=0, num_workers=0,
                      batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, model=TinyNet(), train_set=At10(16), val_set=TinyScenes(2, augment=False)).fit()
    assert ck.latest_checkpoint(tmp_path / "checkpoints").name == "ckpt_00000003.pt"


def test_a_val_set_with_other_classes_is_refused_at_once(tmp_path) -> None:
    """It failed at the first validation with 'target holds label 4, outside [0, 4)', naming no data set."""
    cfg = tiny_config(tmp_path, iterations=2, warmup_iters=0, num_workers=0)
    with pytest.raises(ValueError, match=r"train_set and val_set have other num_classes: 2 and \d"):
        Trainer(cfg, model=TinyNet(), train_set=TwoScenes(4), val_set=TinyScenes(2, augment=False))


class TwoScenes(TinyScenes):
    """TinyScenes with two classes: red or not."""

    num_classes = 2
    class_names = ("red", "other")
    palette = ((255, 0, 0), (128, 128, 128))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, mask = super().__getitem__(i)
        return img, (mask > 0).long()


def test_a_passed_library_model_is_rebuilt_and_fine_tunes_to_other_classes(tmp_path, capsys) -> None:
    """A build_model model passed to the Trainer is recorded as itself (not as the configuration's
    model), so load_run rebuilds it; init_from a checkpoint with other classes loads all but the
    class-scoring layers."""
    from deeplab_edu.inference import load_run
    from deeplab_edu.models import build_model

    def model(classes: int) -> torch.nn.Module:
        return build_model("deeplabv3plus", backbone="tiny_resnet", num_classes=classes, atrous_rates=(1, 2, 3),
                           aux_loss=True)

    cfg = tiny_config(tmp_path / "a", iterations=2, ckpt_every=2, eval_every=100)  # it names deeplabv3 / mobilenet
    Trainer(cfg, model=model(3), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()
    run = load_run(tmp_path / "a" / "checkpoints")
    assert type(run.model).__name__ == "DeepLabV3Plus" and run.model_info["backbone"] == "tiny_resnet"
    assert run.model.aspp.atrous_rates == (1, 2, 3)
    saved = run.model.state_dict()
    cfg2 = tiny_config(tmp_path / "b", iterations=1, eval_every=100, init_from=str(tmp_path / "a" / "checkpoints"))
    trainer = Trainer(cfg2, model=model(2), train_set=TwoScenes(8), val_set=TwoScenes(2, augment=False))
    assert "3 classes there, 2 here" in capsys.readouterr().out
    mine = trainer.model.state_dict()
    fresh = {k for k in mine if mine[k].shape != saved[k].shape}
    assert fresh and all("classifier" in k for k in fresh)  # the decoder's and the auxiliary head's
    assert all(torch.equal(mine[k], saved[k]) for k in mine if k not in fresh and "num_batches" not in k)
    with pytest.raises(ck.CheckpointMismatchError, match="another model"):  # another backbone: refused
        other = build_model("deeplabv3plus", backbone="mobilenet_v3_large", num_classes=2)
        Trainer(tiny_config(tmp_path / "c", iterations=1, init_from=str(tmp_path / "a" / "checkpoints")),
                model=other, train_set=TwoScenes(8), val_set=TwoScenes(2, augment=False))


def test_a_passed_set_of_another_crop_size_is_named(tmp_path) -> None:
    """The Trainer sizes the ASPP rates of the model it builds from crop_size: a train_set whose
    transform makes other crops is named, since its ASPP would silently see another map."""
    cfg = tiny_config(tmp_path, iterations=1, model="deeplabv3plus", backbone="tiny_resnet", crop_size=96,
                      atrous_rates="fit")
    with pytest.warns(UserWarning, match=r"train_set\[0\] is 16 x 16 but crop_size=96"):
        Trainer(cfg, train_set=TinyScenes(4), val_set=TinyScenes(2, augment=False))


def test_ctrl_c_during_a_save_waits_until_last_pt_is_written(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C (SIGINT) that lands between ckpt_N.pt and last.pt is held until both are written and
    the old checkpoints pruned, then raised: last.pt never lags behind the newest checkpoint."""
    import os
    import signal

    real_save = ck.save_atomic

    def interrupted_save(obj: object, path: object) -> object:
        written = real_save(obj, path)
        if str(path).endswith("ckpt_00000004.pt"):
            os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler at the next bytecode
        return written

    for it in (1, 2, 3):
        ck.save_checkpoint({"model": {}, "iteration": it}, tmp_path, it, keep_last=3)
    monkeypatch.setattr(ck, "save_atomic", interrupted_save)
    # Python's own handler (a job started in the background of a non-interactive shell, as CI is,
    # inherits SIGINT ignored)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            ck.save_checkpoint({"model": {}, "iteration": 4}, tmp_path, 4, keep_last=3)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, outer)
    assert ck.load_checkpoint(tmp_path / "last.pt")["iteration"] == 4
    assert sorted(p.name for p in tmp_path.glob("ckpt_*.pt")) == [f"ckpt_0000000{i}.pt" for i in (2, 3, 4)]


class _HangsAfterTwo(TinyScenes):
    """Its third item never comes (a stalled network file system)."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i >= 2:
            import time

            time.sleep(120)
        return super().__getitem__(i)


def test_a_loader_worker_that_hangs_stops_training_naming_it(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deeplab_edu.engine import workers

    monkeypatch.setattr(workers, "LOADER_TIMEOUT_S", 3.0)
    cfg = tiny_config(tmp_path / "run", num_workers=1, batch_size=2, iterations=4, ckpt_every=1, eval_every=4)
    trainer = Trainer(cfg, model=TinyNet(3), train_set=_HangsAfterTwo(8), val_set=TinyScenes(2), num_classes=3)
    with pytest.raises(RuntimeError, match=r"timed out after 3(\.0)? seconds: a data loader worker produced no batch "
                                           r"in that time at iteration \d .*resume \(--resume\)"):
        trainer.fit()


def test_evaluation_and_the_data_check_name_where_their_loader_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    """``deeplab-edu eval`` and ``check-data`` passed PyTorch's bare "DataLoader timed out" on (a review)."""
    from deeplab_edu.data.check import check_dataset
    from deeplab_edu.engine import workers
    from deeplab_edu.inference import evaluate

    monkeypatch.setattr(workers, "LOADER_TIMEOUT_S", 3.0)
    with pytest.raises(RuntimeError, match=r"no batch in that time after 2 of the 4 images \(an item that hangs.*"
                                           r"deeplab-edu check-data"):
        evaluate(TinyNet(3).eval(), _HangsAfterTwo(4, augment=False), batch_size=2, num_workers=1, progress=False)
    scenes = _HangsAfterTwo(12, augment=False)
    scenes.pairs = [(f"scene{i}.png", f"mask{i}.png") for i in range(12)]  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match=r"no batch in that time at items 0 to 7 of the 12 \(images scene0.png, "
                                           r"scene1.png, .*scene7.png\).*one of those files hangs"):
        check_dataset(scenes, num_workers=1, progress=False)


class _SignalsTheJob(TinyScenes):
    """In a loader worker, its first item sends SIGTERM to the training process and to the worker itself: a
    scheduler that signals every process of the job (Slurm, systemd) at a validation."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.utils.data.get_worker_info() is not None:
            os.kill(os.getppid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
        return super().__getitem__(i)


def test_a_stop_signal_that_also_ends_the_workers_is_a_stop(tmp_path) -> None:
    """SIGTERM to every process of the job, the loader's workers too, during a validation: the run stops as
    asked (TrainingInterrupted, the validation still due in the checkpoint). Before, the dead worker was
    reported as the out-of-memory killer's (exit 2) and the validation was lost (a fuzzing trial)."""
    from deeplab_edu.engine.trainer import TrainingInterrupted

    cfg = tiny_config(tmp_path / "run", num_workers=1, batch_size=2, iterations=4, ckpt_every=100, eval_every=2)
    trainer = Trainer(cfg, model=TinyNet(3), train_set=TinyScenes(8), val_set=_SignalsTheJob(4), num_classes=3)
    with pytest.raises(TrainingInterrupted) as stopped:
        trainer.fit()
    assert stopped.value.signum == signal.SIGTERM
    state = ck.load_checkpoint(tmp_path / "run" / "checkpoints")
    assert state["iteration"] == 2 and state["validation_due"] == 2


def test_a_validation_whose_loader_hangs_keeps_the_training_done(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A validation file that hangs gave PyTorch's bare "DataLoader timed out" and lost the iterations since
    the last planned checkpoint (a review's trial); now they are saved, with the validation still due."""
    from deeplab_edu.engine import workers

    monkeypatch.setattr(workers, "LOADER_TIMEOUT_S", 8.0)  # the training batches' too: not tight on a busy machine
    cfg = tiny_config(tmp_path / "run", num_workers=1, batch_size=2, iterations=4, ckpt_every=100, eval_every=2)
    trainer = Trainer(cfg, model=TinyNet(3), train_set=TinyScenes(8), val_set=_HangsAfterTwo(4), num_classes=3)
    with pytest.raises(RuntimeError, match=r"no batch in that time in the validation at iteration 2 .*the 2 "
                                           r"iterations done were saved; continue .*--resume"):
        trainer.fit()
    state = ck.load_checkpoint(tmp_path / "run" / "checkpoints")
    assert state["iteration"] == 2 and state["validation_due"] == 2


class _RunsCode:
    """Pickled as a call of ``exec``: loading it without ``weights_only`` would run code."""

    ran = False

    def __reduce__(self) -> tuple:
        return (exec, ("_RunsCode.ran = True",))


def test_every_public_name_of_the_engine_resolves() -> None:
    """``deeplab_edu.engine`` imports its modules on first use: each name of ``__all__`` must be found."""
    import deeplab_edu.engine as engine

    assert set(engine.__all__) == set(engine._MODULE_OF)
    for name in engine.__all__:
        assert getattr(engine, name).__name__ == name
    with pytest.raises(AttributeError, match="has no attribute 'Trainr'"):
        engine.Trainr  # noqa: B018


def test_resuming_from_a_model_file_says_what_it_is(tmp_path) -> None:
    """A model file (``export``: weights, no optimiser) copied into a run's checkpoints folder is its newest
    checkpoint to --resume: it failed with a bare KeyError 'optimizer'; it now says what the file is."""
    cfg = tiny_config(tmp_path, iterations=2, eval_every=100, warmup_iters=0)
    Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()
    state = ck.load_checkpoint(tmp_path / "checkpoints")
    ck.save_model_file(state, tmp_path / "checkpoints" / "ckpt_00000009.pt", source="test")
    cfg.resume, cfg.iterations = True, 4
    with pytest.raises(ck.CheckpointMismatchError, match="holds no training state.*a model file.*--init-from"):
        Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()


def test_uint8_batches_are_normalised_on_the_device(tmp_path) -> None:
    """uint8_batches: the engine's training set gives uint8 image and mask, and the Trainer's copy to
    the device normalises the image as the float pipeline does (to a level and a half of 255: the uint8 items are augmented as uint8)."""
    from deeplab_edu.data.transforms import IMAGENET_STD

    trainers = {on: Trainer(load_config("smoke", {"uint8_batches": on, "channels_last": True, "iterations": 2,
                                                  "out_dir": str(tmp_path / str(on)), "progress": False}))
                for on in (False, True)}
    x, y = trainers[False].train_set[0]
    x8, y8 = trainers[True].train_set[0]  # the same seeded augmentation
    assert x8.dtype == y8.dtype == torch.uint8 and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(y8.long(), y)
    a, ya = trainers[False].to_device(x[None], y[None])
    b, yb = trainers[True].to_device(x8[None], y8[None])
    assert "uint8 batches" in trainers[True].describe() and "uint8 batches" not in trainers[False].describe()
    assert b.dtype == torch.float32 and yb.dtype == torch.int64 and torch.equal(ya, yb)
    assert b.is_contiguous(memory_format=torch.channels_last)
    assert ((a - b) * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)).abs().max() <= 1.5 / 255 + 1e-5  # augmented as uint8: one level
    result = trainers[True].fit()
    assert all(math.isfinite(r["loss"]) for r in result["history"] if r["split"] == "train")
    with pytest.warns(UserWarning, match="uint8_batches applies to the data sets the Trainer builds"):
        Trainer(tiny_config(tmp_path / "passed", uint8_batches=True), model=TinyNet(), train_set=TinyScenes(8),
                val_set=TinyScenes(2, augment=False))
    from deeplab_edu.data.transforms import train_transform

    already = TinyScenes(8)
    already.transform = train_transform(16, normalize=False, as_uint8=True)  # what the warning advises: no warning
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="uint8_batches applies")
        Trainer(tiny_config(tmp_path / "own", uint8_batches=True), model=TinyNet(), train_set=already,
                val_set=TinyScenes(2, augment=False))


class _WorkerKilledAt(TinyScenes):
    """TinyScenes whose loader worker is killed (as the out-of-memory killer kills one) at item ``fatal``."""

    def __init__(self, fatal: int, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.fatal = fatal

    def __getitem__(self, idx: int):  # type: ignore[no-untyped-def]
        import os
        import signal

        if idx == self.fatal and torch.utils.data.get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__getitem__(idx)


@pytest.mark.slow
def test_a_killed_loader_worker_saves_the_training_done_and_says_what_to_do(tmp_path) -> None:
    """A practitioner's trial: a DataLoader worker killed with SIGKILL (what the out-of-memory killer
    does) ended the run with "Connection reset by peer" or "worker ... killed by signal", and the
    iterations since the last checkpoint were lost. Now they are saved, and the message says why a
    worker dies and how to go on; the run resumes from there."""
    cfg = tiny_config(tmp_path / "run", iterations=12, ckpt_every=100, eval_every=100, num_workers=1,
                      batch_size=2)
    torch.manual_seed(0)
    trainer = Trainer(cfg, model=TinyNet(), train_set=_WorkerKilledAt(fatal=3, length=16),
                      val_set=TinyScenes(2, augment=False))
    with pytest.raises(RuntimeError) as info:  # the batch that holds item 3 kills its worker
        trainer.fit()
    message = str(info.value)
    assert "a data loader worker died at iteration" in message and "out-of-memory killer" in message, message
    assert "--num-workers" in message and "--resume" in message
    done = trainer.iteration
    if done:  # the worker may die before the first step (prefetching): then there is nothing to save
        assert f"the {done} iterations done were saved" in message or "the iteration done was saved" in message
        assert ck.load_checkpoint(ck.latest_checkpoint(tmp_path / "run" / "checkpoints"))["iteration"] == done


def test_a_passed_model_whose_aspp_is_flat_on_the_crop_is_warned_about(tmp_path) -> None:
    """A practitioner's trial: the Trainer warned of 1x1 ASPP branches for the models it builds, not for
    ``build_model(...)`` passed to it with the paper's rates and 64-pixel crops (a 4 x 4 map at stride 16)."""
    from deeplab_edu.models import build_model

    model = build_model("deeplabv3", backbone="tiny_resnet", num_classes=3)
    data = {"train_set": TinyScenes(8, size=64), "val_set": TinyScenes(2, size=64, augment=False)}
    with pytest.warns(UserWarning, match=r"4 x 4 feature map, so all the ASPP branches \(rates \(6, 12, 18\)\) "
                                         r"are exactly 1 x 1"):
        Trainer(tiny_config(tmp_path / "a", crop_size=64), model=model, **data)
    fitted = build_model("deeplabv3", backbone="tiny_resnet", num_classes=3, atrous_rates=(1, 2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        Trainer(tiny_config(tmp_path / "b", crop_size=64), model=fitted, **data)


def test_init_from_names_an_aspp_whose_rates_reach_other_distances() -> None:
    """--init-from into other atrous rates (atrous_rates 'fit' with another crop) is named with the rates that
    keep the reach; DeepLabv3's phase 2 (output stride 16 -> 8, rates doubled) reaches as far and says nothing."""
    from deeplab_edu.engine._resume import _init_from_rates_note

    def info(rates: list[int], stride: int) -> dict:
        return {"atrous_rates": rates, "build_kwargs": {"output_stride": stride}}

    assert _init_from_rates_note(info([6, 12, 18], 16), info([12, 24, 36], 8)) is None  # phase 2: the same reach
    note = _init_from_rates_note(info([2, 4, 6], 16), info([3, 6, 9], 16), fitted=True)
    assert note is not None and "(2, 4, 6)" in note and "32, 64, 96 image pixels" in note
    assert "'fit' follows the crop size; --atrous-rates 2,4,6 keeps the reach" in note
    given = _init_from_rates_note(info([2, 4, 6], 16), info([3, 6, 9], 16))  # rates given: no word of 'fit'
    assert given is not None and "'fit'" not in given and given.endswith("(--atrous-rates 2,4,6 keeps the reach)")
    odd = _init_from_rates_note(info([1, 2, 3], 16), info([1, 2, 3], 32))  # 16, 32, 48 px: not a multiple of 32
    assert odd is not None and "keeps the reach" not in odd
    assert _init_from_rates_note({}, info([1, 2, 3], 16)) is None  # an older checkpoint without the rates


def test_each_process_of_a_multi_process_run_draws_its_own_dropout_stream() -> None:
    from deeplab_edu.engine.trainer import process_seed

    seeds = {process_seed(0, rank, iteration) for rank in (1, 2, 3) for iteration in (0, 100)}
    assert len(seeds) == 6 and 0 not in seeds  # rank 0 keeps the run's own seed, in the Trainer
    assert process_seed(5, 1, 7) == process_seed(5, 1, 7) and 0 <= process_seed(2**62, 3, 9) < 2**63


class _FixedStride(torch.nn.Module):
    """A model that cannot switch its output stride (as torchvision's DeepLabv3), optionally naming it."""

    def __init__(self, output_stride: int | None = None) -> None:
        super().__init__()
        self.net = TinyNet()
        if output_stride is not None:
            self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(x)


@pytest.mark.parametrize("stride", [None, 2])
def test_a_model_that_cannot_switch_stride_is_recorded_at_its_own(tmp_path, stride: int | None) -> None:
    """A trial: a torchvision model (output stride 16) was logged as validated at eval_output_stride 8."""
    cfg = tiny_config(tmp_path, iterations=2, eval_every=2, ckpt_every=2, eval_output_stride=8)
    result = Trainer(cfg, model=_FixedStride(stride), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()
    assert [r["output_stride"] for r in result["history"] if r["split"] == "val"] == [stride]


def test_train_or_load_leaves_the_callers_random_streams_as_they_were(tmp_path) -> None:
    """Training seeds the streams and loading builds a model: either way the caller's next draws are the
    ones it would have made without the call (a reproducibility trial: chapter 08's crops after its runs
    differed between a first execution, which trains, and a later one, which loads)."""
    import random

    import numpy as np

    from deeplab_edu.engine.runs import train_or_load

    def draws() -> tuple[float, float, list[float]]:
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    def seeded() -> None:
        random.seed(7)
        np.random.seed(7)
        torch.manual_seed(7)

    seeded()
    expected = draws()
    workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    torch.use_deterministic_algorithms(False)
    for path in ("trains", "loads"):
        seeded()
        train_or_load("smoke", out_dir=tmp_path / "run", verbose=False, image_size=32, crop_size=32, iterations=2,
                      deterministic=True)
        assert draws() == expected, path
        assert not torch.are_deterministic_algorithms_enabled(), path  # the run's switch is not left on
        assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == workspace, path


def test_a_passed_model_of_plain_or_coarse_logits_is_validated_as_it_trains(tmp_path) -> None:
    """A practitioner's trial: a passed model that returns a plain tensor, or logits smaller than its input,
    trained (the loss takes both) and then failed its first validation ("new(): invalid data type 'str'";
    "pred shape ... does not match"), losing every iteration since the last checkpoint. Validation now reads
    the logits as the loss and inference.evaluate do: a tensor or {"out": ...}, upsampled to the labels."""
    from deeplab_edu.inference import evaluate

    class Plain(torch.nn.Module):
        def __init__(self, stride: int) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, stride=stride, padding=1)
            self.stride = stride

        def forward(self, x: torch.Tensor) -> Any:
            logits = self.conv(x)
            return logits if self.stride == 1 else {"out": logits}

    for stride in (1, 4):
        cfg = tiny_config(tmp_path / str(stride), iterations=2, eval_every=2, ckpt_every=2)
        val = TinyScenes(3, seed=9, augment=False)
        trainer = Trainer(cfg, model=Plain(stride), train_set=TinyScenes(8), val_set=val)
        final = trainer.fit()["final"]
        assert final["iteration"] == 2 and 0 <= final["miou"] <= 1
        assert math.isclose(final["miou"], evaluate(trainer.model, val)["miou"], abs_tol=1e-6)


def test_labels_outside_the_classes_are_named_on_the_first_step(tmp_path) -> None:
    """A passed set's masks were never checked: a label of 3 with num_classes=3 ended training with
    cross-entropy's "Target 3 is out of bounds" (on a GPU, a device-side assert), naming no range."""

    class Beyond(TinyScenes):
        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            img, mask = super().__getitem__(i)
            return img, torch.where(mask == 2, 4, mask)

    trainer = Trainer(tiny_config(tmp_path, iterations=1), model=TinyNet(), train_set=Beyond(8),
                      val_set=TinyScenes(2, augment=False))
    with pytest.raises(ValueError, match=r"the mask of item \d+ of the training set \(Beyond\) holds labels 4: not "
                                         r"one of the 3 classes \(0 to 2\) nor ignore_index 255"):
        trainer.fit()
    ignored = Trainer(tiny_config(tmp_path / "ignored", iterations=1, eval_every=1), model=TinyNet(),
                      train_set=TinyScenes(8, ignore=True), val_set=TinyScenes(2, augment=False))
    assert ignored.fit()["final"]["iteration"] == 1  # ignore_index is no bad label


def _one_iteration_run(out_dir, model: torch.nn.Module) -> str:
    """A run of one iteration of ``model`` on TinyScenes with its checkpoint saved: its checkpoints folder, what
    ``init_from`` names."""
    Trainer(tiny_config(out_dir, iterations=1, ckpt_every=1, eval_every=100), model=model,
            train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()
    return str(out_dir / "checkpoints")


def test_init_from_classes_named_otherwise_says_so(tmp_path, capsys) -> None:
    """A practitioner's trial: --init-from a run whose classes are as many but named otherwise loaded its
    classifiers without a word (eval refuses that pairing); now the Trainer names the pairs."""

    class Renamed(TinyScenes):
        class_names = ("sky", "road", "car")

    init = _one_iteration_run(tmp_path / "a", TinyNet())
    capsys.readouterr()
    Trainer(tiny_config(tmp_path / "b", iterations=1, init_from=init),
            model=TinyNet(), train_set=Renamed(8), val_set=Renamed(2, augment=False))
    out = capsys.readouterr().out
    assert "named otherwise than the data's (red -> sky, green -> road, blue -> car)" in out, out
    Trainer(tiny_config(tmp_path / "c", iterations=1, init_from=init),
            model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False))
    assert "named otherwise" not in capsys.readouterr().out


def test_is_main_reads_torchruns_rank_before_the_group_exists(monkeypatch) -> None:
    """The command line's notes come before the process group is joined: every torchrun process printed them."""
    from deeplab_edu.engine.distributed import is_main

    monkeypatch.delenv("RANK", raising=False)
    assert is_main()
    monkeypatch.setenv("RANK", "1")
    assert not is_main()
    monkeypatch.setenv("RANK", "0")
    assert is_main()


def test_confusion_matrix_takes_numpy_arrays() -> None:
    """A practitioner's trial: NumPy labels gave "'numpy.ndarray' object has no attribute 'is_floating_point'"."""
    import numpy as np

    from deeplab_edu.metrics import ConfusionMatrix

    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 1], [2, 2]]), np.array([[0, 1], [2, 255]]))
    assert cm.compute()["miou"] == 1.0 and int(cm.mat.sum()) == 3
    flipped = np.array([[[0, 1], [2, 2]]])[:, :, ::-1]  # a view with negative strides (a review)
    readonly = np.array([[[0, 1], [2, 2]]])
    readonly.flags.writeable = False  # as np.asarray of a PIL image is
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns of a tensor over a read-only array
        cm.update(flipped, flipped)
        cm.update(readonly, readonly)
    assert int(cm.mat.sum()) == 11
    with pytest.raises(TypeError, match="target must hold integer labels"):
        cm.update(np.zeros((2, 2), int), np.zeros((2, 2)))


def test_a_reused_run_names_its_commit_and_notes_a_package_changed_since(tmp_path, capsys, monkeypatch) -> None:
    """A finished run was reused without a word about the code that trained it: after a pull that changed the
    data generator or a model, the chapters showed numbers the current code would not produce. The reuse
    message and the status name the commit, and note when deeplab_edu/ changed since (as git tells, in a
    repository of three commits here); nothing is noted for the same package, an unknown git, or no commit."""
    import subprocess

    from deeplab_edu import records
    from deeplab_edu.engine.runs import run_status, train_or_load

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    settings = dict(image_size=32, crop_size=32, iterations=1)
    run = tmp_path / "run"
    train_or_load("smoke", out_dir=run, verbose=False, **settings)
    last = run / "checkpoints" / "last.pt"
    state = ck.load_checkpoint(last)

    repo = tmp_path / "repo"  # the package changes at its 2nd commit, only the README at its 3rd
    (repo / "deeplab_edu").mkdir(parents=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q"], cwd=repo, check=True)
    commits = []
    for path, text in (("deeplab_edu/data.py", "x = 1\n"), ("deeplab_edu/data.py", "x = 2\n"), ("README.md", "r\n")):
        (repo / path).write_text(text)
        subprocess.run(git + ["add", "."], cwd=repo, check=True)
        subprocess.run(git + ["commit", "-qm", path], cwd=repo, check=True)
        commits.append(subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                      check=True).stdout.strip())
    monkeypatch.setattr(records, "REPO_ROOT", repo)

    def reused(commit: str | None) -> tuple[str, str]:
        stretch = {"code_version": {"package": "0.1.0", "git_dirty": False,
                                    **({"git_commit": commit} if commit else {})}}
        ck.save_atomic({**state, "provenance": [stretch]}, last)
        train_or_load("smoke", out_dir=run, **settings)
        return str(run_status("smoke", out_dir=run, **settings)), capsys.readouterr().out

    note = (f"if the change alters what a run learns (data, transforms, losses, models), delete "
            f"{records.shown_path(run)} to retrain it with this code")
    for commit in (commits[0], "f" * 40):  # the package changed since; a commit this clone does not know
        status, out = reused(commit)
        assert status == (f"finished (1 iteration, trained at commit {commit[:7]}): reused; deeplab_edu/ has changed "
                          f"since {commit[:7]}: {note}")
        assert f"(1 iteration, trained at commit {commit[:7]})\n" in out and "changed since" not in out  # learners
    for commit in commits[1:]:  # the same package (only the README changed since the 2nd commit)
        status, out = reused(commit)
        assert status == f"finished (1 iteration, trained at commit {commit[:7]}): reused" and "changed" not in out
    monkeypatch.setenv("PATH", str(tmp_path / "no_git_here"))  # no git: the commit is named, nothing more
    status, out = reused(commits[0])
    assert status.endswith(f"trained at commit {commits[0][:7]}): reused") and "changed" not in out
    status, out = reused(None)  # a run that kept no commit
    assert status == "finished (1 iteration): reused" and "skipping training" in out and "commit" not in out


def test_tensorboard_draws_each_step_once_after_a_failure_and_a_resume(tmp_path) -> None:
    """An audit: the TensorBoard writer was closed only after a run that ended well (a failed fit left its thread
    running in the kernel), and a resumed run appended to the events the failed one had logged after its last
    checkpoint (340 points of train/loss for 300 iterations). The writer is closed whatever ends the fit, and a
    run purges the events after the step it starts from."""
    import threading

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    class FailsLate(TinyScenes):  # training's 7th batch (items 25-28) fails, after the checkpoint at 4
        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            if i >= 24 and not getattr(self, "healed", False):
                raise OSError("a disk error")
            return super().__getitem__(i)

    cfg = tiny_config(tmp_path, iterations=10, ckpt_every=4, eval_every=100, log_every=1, tensorboard=True,
                      num_workers=0, batch_size=4, warmup_iters=0)
    def writers() -> list[threading.Thread]:  # TensorBoard's event-file threads (not tqdm's monitor, say)
        return [t for t in threading.enumerate() if "tensorboard" in type(t).__module__]

    scenes = FailsLate(64)
    with pytest.raises(Exception, match="a disk error"):
        Trainer(cfg, model=TinyNet(), train_set=scenes, val_set=TinyScenes(2, augment=False)).fit()
    assert not writers()  # the writer's thread ended with the failed fit
    scenes.healed = True  # type: ignore[attr-defined]
    cfg.resume = True
    Trainer(cfg, model=TinyNet(), train_set=scenes, val_set=TinyScenes(2, augment=False)).fit()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars("train/loss")]
    assert sorted(steps) == list(range(1, 11)), steps  # steps 5 and 6 of the failed run are not drawn twice


def test_a_signal_the_process_ignores_stays_ignored(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: under `nohup` (SIGHUP ignored, so that training outlives the terminal) the Trainer's own SIGHUP
    handler stopped the run when the terminal closed. A signal ignored when the fit starts stays ignored."""
    import signal

    if not hasattr(signal, "SIGHUP"):
        pytest.skip("no SIGHUP on this system")
    monkeypatch.setattr(_InterruptedScenes, "calls", 0)
    monkeypatch.setattr(_InterruptedScenes, "signal_number", int(signal.SIGHUP))
    cfg = tiny_config(tmp_path, iterations=6, ckpt_every=100, eval_every=100, warmup_iters=0, num_workers=0,
                      batch_size=4)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts the process
    try:
        result = Trainer(cfg, model=TinyNet(), train_set=_InterruptedScenes(16),
                         val_set=TinyScenes(2, augment=False)).fit()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    except KeyboardInterrupt as stopped:  # (pytest would take it for the user's Ctrl-C and end the session)
        pytest.fail(f"the ignored SIGHUP stopped the run: {stopped}")
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert _InterruptedScenes.calls > 15 and result["history"][-1]["iteration"] == 6  # it trained on


def test_a_later_items_label_outside_the_classes_is_named_and_the_iterations_kept(tmp_path) -> None:
    """Only the first training batch's labels were checked: a mask read later with a label past the classes
    ended the run in cross-entropy ("Target 4 is out of bounds"; on a GPU, a device-side assert), naming no item.
    Every item is now checked as it is loaded, and the iterations done are saved, as for a bad file."""
    from deeplab_edu.data.io import BadDataError

    class LaterBeyond(TinyScenes):
        calls = 0

        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            img, mask = super().__getitem__(i)
            LaterBeyond.calls += 1
            return img, (torch.where(mask == 2, 4, mask) if LaterBeyond.calls > 8 else mask)  # from the 3rd batch

    cfg = tiny_config(tmp_path, iterations=6, num_workers=0, ckpt_every=100, eval_every=100)
    trainer = Trainer(cfg, model=TinyNet(), train_set=LaterBeyond(16), val_set=TinyScenes(2, augment=False))
    LaterBeyond.calls = 0  # the Trainer reads an item or two as it starts
    with pytest.raises(BadDataError, match=r"the mask of item \d+ of the training set \(LaterBeyond\) holds labels "
                                           r"4: .* \(the 2 iterations done were saved"):
        trainer.fit()
    assert trainer.iteration == 2


def test_the_label_check_reads_masks_as_the_loss_does(tmp_path) -> None:
    """A review: the per-item check compared the mask in its own dtype, so a uint16 mask (a 16-bit PNG read with
    NumPy), which trained before, failed ("lt_cpu" not implemented for 'UInt16'), and 255 in a uint8 mask with
    ignore_index -1 passed it and met cross-entropy's "Target 255 is out of bounds"."""
    from deeplab_edu.data.io import BadDataError

    class Sixteen(TinyScenes):
        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            img, mask = super().__getitem__(i)
            return img, mask.numpy().astype("uint16")  # type: ignore[return-value]

    class WrappedIgnore(TinyScenes):
        ignore_index = -1

        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            img, mask = super().__getitem__(i)
            return img, torch.where(mask == 2, 255, mask).to(torch.uint8)

    cfg = tiny_config(tmp_path / "16", iterations=1, num_workers=0, eval_every=1)
    assert Trainer(cfg, model=TinyNet(), train_set=Sixteen(8), val_set=TinyScenes(2, augment=False)).fit()
    trainer = Trainer(tiny_config(tmp_path / "w", iterations=1, num_workers=0), model=TinyNet(),
                      train_set=WrappedIgnore(8), val_set=TinyScenes(2, augment=False))
    with pytest.raises(BadDataError, match=r"holds labels 255: not one of the 3 classes .* nor ignore_index -1") as err:
        trainer.fit()
    assert err.value.labels == (255,)


def test_init_from_the_same_classes_in_another_order_reorders_the_classifiers(tmp_path, capsys) -> None:
    """An audit: --init-from a run whose classes are the data's in another order loaded the classifiers as they
    were, each class's scorer now scoring another class. Now the class-scoring rows (classifier, auxiliary
    classifier, v3+'s decoder) follow the data's order: the new model scores each class as the old one did."""
    from deeplab_edu.inference import load_run
    from deeplab_edu.models import build_model

    class Permuted(TinyScenes):
        class_names = ("blue", "red", "green")

    def model() -> torch.nn.Module:
        return build_model("deeplabv3plus", backbone="tiny_resnet", num_classes=3, atrous_rates=(1, 2, 3),
                           aux_loss=True)

    init = _one_iteration_run(tmp_path / "a", model())
    old = load_run(init).model.eval()
    capsys.readouterr()
    new = Trainer(tiny_config(tmp_path / "b", iterations=1, init_from=init), model=model(),
                  train_set=Permuted(8), val_set=Permuted(2, augment=False)).model.eval()
    out = capsys.readouterr().out
    assert "the data's in another order (blue 2 -> 0, red 0 -> 1, green 1 -> 2); the class-scoring" in out, out
    assert "decoder.classifier.weight" in out and "named otherwise" not in out
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before, after = old(x), new(x)
    for key in ("out", "aux"):
        torch.testing.assert_close(after[key], before[key][:, [2, 0, 1]])
    # a model build_model did not make does not say which layers score the classes: loaded as it is, and said
    plain = _one_iteration_run(tmp_path / "c0", TinyNet())
    capsys.readouterr()
    Trainer(tiny_config(tmp_path / "c", iterations=1, init_from=plain),
            model=TinyNet(), train_set=Permuted(8), val_set=Permuted(2, augment=False))
    out = capsys.readouterr().out
    assert "named otherwise than the data's (red -> blue, green -> red, blue -> green) (the same names in another " \
           "order, but this model, not made by build_model, does not say" in out, out


def test_a_passed_model_that_can_switch_stride_trains_at_the_configured_one(tmp_path) -> None:
    """An audit: from_torchvision's DeepLabv3-ResNet comes at output stride 8 (the default is 16); passed to the
    Trainer, it trained at 8 while the start-up line, the history and the checkpoint's configuration said 16, and
    `eval` then switched it to a stride it was never trained at. It is switched to cfg.output_stride, as the
    engine's own models are built there, and its checkpoint rebuilds the model trained."""
    from deeplab_edu.inference import load_run
    from deeplab_edu.models import build_model

    model = build_model("deeplabv3", backbone="tiny_resnet", num_classes=3, output_stride=8, atrous_rates=(2, 4, 6))
    cfg = tiny_config(tmp_path, iterations=1, eval_every=1, ckpt_every=1, crop_size=64, image_size=64, batch_size=2)
    with pytest.warns(UserWarning, match=r"built at output stride 8\) is switched to output_stride=16"):
        trainer = Trainer(cfg, model=model, train_set=TinyScenes(4, size=64),
                          val_set=TinyScenes(2, size=64, augment=False))
    assert cfg.output_stride == 16 and "(output stride 16)" in trainer.describe()
    assert model.output_stride == 16 and model.atrous_rates == (1, 2, 3)
    assert trainer.fit()["final"]["output_stride"] == 16
    run = load_run(tmp_path / "checkpoints" / "last.pt")
    assert (run.model.output_stride, run.model.atrous_rates) == (16, (1, 2, 3))
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(run.model(x)["out"], model.eval()(x)["out"])
    vgg = build_model("deeplabv2", backbone="vgg16", num_classes=3)  # output stride 8 only
    with pytest.raises(ConfigError, match=r"output_stride=16: the passed model \(DeepLabV2, at output stride 8\)"):
        Trainer(tiny_config(tmp_path / "vgg"), model=vgg, train_set=TinyScenes(8), val_set=TinyScenes(2))


def test_init_from_names_the_torchvision_converter_and_the_checkpoints_own_model(tmp_path) -> None:
    """An audit: torchvision DeepLabv3 weights given to init_from (a plain state dict, or a checkpoint holding it
    under 'model') were refused without a word of the converter, and a checkpoint of a model passed to its
    Trainer was refused without naming that model."""
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    weights = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3).state_dict()
    torch.save(weights, tmp_path / "plain.pth")
    torch.save({"model": weights, "epoch": 3}, tmp_path / "reference.pth")  # torchvision's references' layout
    converter = r"torchvision_pretrained\('mobilenet_v3_large', '.*{}'\)"
    with pytest.raises(ValueError, match=converter.format("plain.pth")):
        Trainer(tiny_config(tmp_path / "a", init_from=str(tmp_path / "plain.pth")), train_set=TinyScenes(8),
                val_set=TinyScenes(2, augment=False))
    with pytest.raises(ck.CheckpointMismatchError, match=converter.format("reference.pth")):
        Trainer(tiny_config(tmp_path / "b", init_from=str(tmp_path / "reference.pth")), train_set=TinyScenes(8),
                val_set=TinyScenes(2, augment=False))
    init = _one_iteration_run(tmp_path / "c", TinyNet())
    with pytest.raises(ck.CheckpointMismatchError,
                       match=r"model test_engine_fixtures.TinyNet there \(passed to its Trainer\), deeplabv3 / "):
        Trainer(tiny_config(tmp_path / "d", init_from=init), train_set=TinyScenes(8), val_set=TinyScenes(2))


class _FailsFromItem(TinyScenes):
    """Its items from ``first`` on raise a ValueError (in a loader worker, which PyTorch raises again in the
    training process, its frames holding the loader's iterator)."""

    first = 6

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i >= self.first:
            raise ValueError(f"item {i} cannot be read")
        return super().__getitem__(i)


@pytest.mark.parametrize("ending", ["interrupt", "nan", "item error"])
def test_a_run_that_fails_or_stops_leaves_no_loader_worker_behind(tmp_path, request: pytest.FixtureRequest,
                                                                  ending: str) -> None:
    """A notebook keeps the last error, and through its traceback the frames of fit: the paused batch generator
    held the training loader's iterator, whose worker processes (and their queue threads in the kernel) outlived
    a Ctrl-C, one more set per interrupt (an audit: 4 workers alive a minute after the resumed run finished).
    The generator is now closed as fit ends, however it ends, and it shuts its loader's workers down (a loader
    whose own frames the error holds too: a worker's error raised again, a second Ctrl-C while waiting)."""
    import psutil

    from deeplab_edu.engine.trainer import TrainingInterrupted

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # pytest started under nohup: as a terminal has it
        request.addfinalizer(functools.partial(signal.signal, signal.SIGINT,
                                               signal.signal(signal.SIGINT, signal.default_int_handler)))
    me = psutil.Process()
    before = {p.pid for p in me.children()}
    model = TinyNet(3)
    if ending == "nan":
        model.nan_after = 3  # the 4th step's loss is NaN: NonFiniteLossError, read back at iteration 4
    cfg = tiny_config(tmp_path / "run", num_workers=1, batch_size=2, iterations=8, ckpt_every=100, eval_every=2,
                      log_every=2, warmup_iters=0)
    train_set = _FailsFromItem(16) if ending == "item error" else TinyScenes(16)
    trainer = Trainer(cfg, model=model, train_set=train_set, val_set=TinyScenes(2, augment=False), num_classes=3)
    expected = {"interrupt": TrainingInterrupted, "nan": NonFiniteLossError, "item error": ValueError}[ending]
    with pytest.raises(expected) as failed:  # kept, with its traceback, as a notebook keeps the last error
        trainer.fit(on_eval=lambda row: os.kill(os.getpid(), signal.SIGINT) if ending == "interrupt" else None)
    assert failed.value.__traceback__ is not None
    left = [p for p in me.children() if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"loader workers still alive after fit raised: {left}"


def test_a_second_ctrl_c_while_the_workers_shut_down_still_closes_the_writer(tmp_path, monkeypatch) -> None:
    """A review: fit's cleanup closed the batches (PyTorch joins each worker for up to 5 s) before it released the
    process group and closed the TensorBoard writer; a second Ctrl-C during that wait skipped both, leaving the
    writer's thread in a notebook's kernel."""
    import deeplab_edu.engine.workers as workers_module

    def ctrl_c(iterator: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(workers_module, "shut_down_workers", ctrl_c)  # as Trainer.batches's shutting_down_workers
    cfg = tiny_config(tmp_path, iterations=2, eval_every=100, ckpt_every=100, num_workers=1, tensorboard=True)
    trainer = Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False))
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert trainer._tb is None


class _SlowClock:
    """The trainer's ``time`` module with a ``perf_counter`` that :class:`_SlowScenes` moves on by 100 s per item
    (no real wait: a timing on a busy machine does not flake)."""

    ahead = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def perf_counter(self) -> float:
        return time.perf_counter() + self.ahead


class _SlowScenes(TinyScenes):
    """Each item takes 100 s of :class:`_SlowClock`'s time to load: a validation long beside any training window."""

    clock: _SlowClock | None = None

    def __getitem__(self, i: int):
        if self.clock is not None:
            self.clock.ahead += 100.0
        return super().__getitem__(i)


def test_the_validation_a_resumed_run_redoes_does_not_count_as_training_time(tmp_path, monkeypatch) -> None:
    """An audit: a run resumed where a stop cut a validation short redoes that validation first, and its time
    landed in the first training window's throughput (200 times too low in metrics.csv and TensorBoard), where
    every other validation's time is left out."""
    monkeypatch.setattr(_InterruptedScenes, "calls", 0)
    cfg = tiny_config(tmp_path, iterations=12, ckpt_every=100, eval_every=4, log_every=4, warmup_iters=0,
                      num_workers=0, batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, model=TinyNet(), train_set=TinyScenes(16), val_set=_InterruptedScenes(20, augment=False)).fit()
    cfg.resume = True
    clock = _SlowClock()
    monkeypatch.setattr(trainer_module, "time", clock)
    monkeypatch.setattr(_SlowScenes, "clock", clock)
    result = Trainer(cfg, model=TinyNet(), train_set=TinyScenes(16), val_set=_SlowScenes(6, augment=False)).fit()
    speeds = {r["iteration"]: r["images_per_s"] for r in result["history"] if r["split"] == "train"}
    assert set(speeds) == {4, 8, 12}
    # a window with a validation in it lasts 600 s (8 images: 0.013 images/s); without, the real seconds of 4 steps
    assert min(speeds.values()) > 0.1, speeds


def test_resuming_a_passed_models_run_without_it_says_to_pass_it_again(tmp_path) -> None:
    """A new user's trial: a run of a model its script passed (from_torchvision's) resumed without it, from
    --config <run>/config.json --resume, was refused with advice to give back exactly that command (its
    config.json names the model the engine builds, not the one passed)."""
    _one_iteration_run(tmp_path, TinyNet())
    cfg = tiny_config(tmp_path, iterations=2, ckpt_every=1, eval_every=100, resume=True)
    with pytest.raises(ck.CheckpointMismatchError, match=r"it trained a model its script passed, TinyNet: pass it "
                                                         r"again with resume=True"):
        Trainer(cfg, train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()


def test_metrics_json_is_strict_json_and_both_forms_load(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """metrics.json held ``NaN`` (an undefined IoU: a class in neither truth nor prediction), Python's dialect,
    which jq, JavaScript and strict parsers refuse (``eval --json`` wrote ``null``): it writes ``null`` now, and
    read_metrics_json reads ``null`` and an older file's ``NaN`` as the same NaN."""
    scores = {"miou": 0.5, "pixel_accuracy": 0.9, "fw_iou": 0.8, "iou": [0.75, 0.25, float("nan")]}
    monkeypatch.setattr(Trainer, "evaluate", lambda self, **kw: dict(scores))
    cfg = tiny_config(tmp_path, iterations=2, eval_every=2, log_every=1, ckpt_every=2)
    result = Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()
    path = tmp_path / "metrics.json"

    def refuse(constant: str) -> float:
        raise ValueError(f"{constant} is not JSON")

    strict = json.loads(path.read_text(), parse_constant=refuse)  # what a strict parser reads
    assert strict["final"]["iou"] == [0.75, 0.25, None]
    from deeplab_edu.engine.runs import read_metrics_json

    old = tmp_path / "old_metrics.json"  # as metrics.json was written before
    old.write_text(json.dumps(result, indent=2))
    for read in (read_metrics_json(path), read_metrics_json(old)):
        assert read["final"]["iou"][:2] == [0.75, 0.25] and math.isnan(read["final"]["iou"][2])
        assert [r["iou"][2] for r in read["history"] if r["split"] == "val"][0] != 0  # NaN, not a number
        assert read["final"]["output_stride"] == result["final"]["output_stride"]  # a null that is no score stays
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(ValueError, match="bad.json holds a list"):
        read_metrics_json(tmp_path / "bad.json")


def test_a_stopped_runs_advice_fits_where_it_ran(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The message of a stopped run said "run the same cell again" in a script too (the command line prints its
    own, --resume): a notebook's kernel is told to run its cell again, a script how a run resumes."""
    import sys
    import types

    def stop() -> str:
        monkeypatch.setattr(_InterruptedScenes, "calls", 0)
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
        cfg = tiny_config(tmp_path / "run", iterations=12, ckpt_every=100, eval_every=100, warmup_iters=0,
                          num_workers=0, batch_size=4)
        with pytest.raises(KeyboardInterrupt) as stopped:
            Trainer(cfg, model=TinyNet(), train_set=_InterruptedScenes(16), val_set=TinyScenes(2, augment=False)).fit()
        return str(stopped.value)

    in_script = stop()
    assert "cell" not in in_script and "resume=True" in in_script and "--resume" in in_script
    kernel = types.SimpleNamespace(kernel=object())  # what IPython's kernel shell has
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: kernel))
    assert "run the same cell again" in stop()
    terminal = types.SimpleNamespace()  # IPython in a terminal: no kernel
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: terminal))
    assert "cell" not in stop()


def test_weight_decay_can_spare_batch_norm_and_biases(tmp_path) -> None:
    """TF DeepLab decays neither batch norm's parameters nor biases; param_groups could, but no setting reached
    it: weight_decay_norm_and_bias (default on, as every earlier run trained) is a setting, kept in config.json,
    read as on from a config.json without it, and refused when a resumed run would change it."""
    from deeplab_edu.cli import _train_config, build_parser

    assert TrainConfig().weight_decay_norm_and_bias is True
    cfg = tiny_config(tmp_path, iterations=1, ckpt_every=1, eval_every=100, weight_decay_norm_and_bias=False)
    model = TinyNet()
    trainer = Trainer(cfg, model=model, train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False))
    decay = {id(p): g["weight_decay"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert decay[id(model.backbone[1].weight)] == decay[id(model.backbone[1].bias)] == 0  # batch norm
    assert decay[id(model.head[1].bias)] == 0 and decay[id(model.head[1].weight)] == cfg.weight_decay  # a conv's
    trainer.fit()
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["weight_decay_norm_and_bias"] is False
    del saved["weight_decay_norm_and_bias"]  # a run's config.json from before the setting
    (tmp_path / "old.json").write_text(json.dumps(saved))
    assert load_config(config=tmp_path / "old.json").weight_decay_norm_and_bias is True
    flags = build_parser().parse_args(["train", "--preset", "cpu", "--no-weight-decay-norm-and-bias"])
    assert _train_config(flags).weight_decay_norm_and_bias is False
    # the checkpoint's optimiser has groups without decay: a resumed run cannot take them away (nor an older run's
    # checkpoint, which has none, gain them)
    cfg.resume, cfg.weight_decay_norm_and_bias, cfg.iterations = True, True, 2
    with pytest.raises(ck.CheckpointMismatchError, match="weight_decay_norm_and_bias False -> True"):
        Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False))
    from deeplab_edu.engine._resume import _resume_differences

    refused, _ = _resume_differences(saved, {**saved, "weight_decay_norm_and_bias": False}, {}, {})
    assert refused == ["weight_decay_norm_and_bias True -> False"]  # saved: a config from before the setting


def test_fit_refuses_settings_changed_since_the_trainer_was_built(tmp_path) -> None:
    """An audit: "train a bit more" from a REPL, ``t.cfg.iterations = 4; t.fit()`` after a run of 2, trained
    iterations 3-4 at learning rate 0 (the poly schedule, built with the Trainer, had ended) and config.json said
    4; a new lr was ignored alike. fit() now refuses a changed setting, naming it, but for those it reads afresh;
    what the message says to do, a new Trainer with resume on, trains on at the new settings' rates."""
    cfg = tiny_config(tmp_path, iterations=2, log_every=1, eval_every=100, warmup_iters=0)
    data = {"train_set": TinyScenes(8), "val_set": TinyScenes(2, augment=False)}
    trainer = Trainer(cfg, model=TinyNet(), **data)
    trainer.fit()
    trainer.cfg.eval_every, trainer.cfg.log_every, trainer.cfg.progress = 1, 2, False  # read by fit(): allowed
    trainer.fit()
    trainer.cfg.iterations, trainer.cfg.lr = 4, 0.01
    with pytest.raises(ConfigError, match=r"changed since this Trainer was built from it \(iterations 2 -> 4; lr "
                                          r"0\.05 -> 0\.01\).*build a new Trainer from them with resume on"):
        trainer.fit()
    assert trainer.iteration == 2 and json.loads((tmp_path / "config.json").read_text())["iterations"] == 2
    cfg = trainer.cfg  # the changed settings, continued as the message says
    cfg.resume = True
    result = Trainer(cfg, model=TinyNet(), **data).fit()
    rates = {r["iteration"]: r["lr"] for r in result["history"] if r["split"] == "train"}
    assert rates[4] == pytest.approx(0.01 * poly_factor(3, 4))  # the rate of iteration 4's step, on the new schedule


def test_deterministic_kernels_are_switched_back_when_fit_ends(tmp_path, monkeypatch) -> None:
    """An audit: a Trainer with deterministic=True left torch's deterministic algorithms, cuDNN's benchmark
    switch and CUBLAS_WORKSPACE_CONFIG changed for the rest of the process. They are now switched for fit()
    alone (building the Trainer switches nothing), and back when it returns or raises."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    torch.use_deterministic_algorithms(False)

    def switches() -> tuple[bool, bool, str | None]:
        return (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
                os.environ.get("CUBLAS_WORKSPACE_CONFIG"))

    before = switches()
    data = {"train_set": TinyScenes(8), "val_set": TinyScenes(2, augment=False)}
    trainer = Trainer(tiny_config(tmp_path / "a", iterations=2, eval_every=1, deterministic=True), model=TinyNet(),
                      **data)
    assert switches() == before
    during: list[tuple[bool, bool, str | None]] = []
    trainer.fit(on_eval=lambda row: during.append(switches()))
    assert during[0] == (True, False, ":4096:8") and switches() == before
    nan = TinyNet()
    nan.nan_after = 0
    with pytest.raises(NonFiniteLossError):
        Trainer(tiny_config(tmp_path / "b", iterations=2, log_every=1, deterministic=True), model=nan, **data).fit()
    assert switches() == before


def test_the_trainers_warnings_name_the_line_that_built_it(tmp_path) -> None:
    """An audit: the warnings of 1x1 ASPP branches (engine.config) and of a class no mask holds (class weights)
    named a line of trainer.py, not the caller's line of Trainer(...)."""
    no_blue = [(torch.randn(3, 16, 16), torch.zeros(16, 16, dtype=torch.long))] * 4
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        Trainer(load_config("smoke", {"out_dir": str(tmp_path / "a"), "atrous_rates": "paper"}))
        Trainer(tiny_config(tmp_path / "b", class_weights="median_frequency"), model=TinyNet(), train_set=no_blue,
                val_set=no_blue, num_classes=3)
    named = {str(w.message)[:20]: w.filename for w in seen}
    assert any("exactly 1 x 1" in str(w.message) for w in seen) and any("no pixel of" in str(w.message) for w in seen)
    assert set(named.values()) == {__file__}, named


def test_masks_of_one_channel_train_and_others_are_refused_by_name(tmp_path) -> None:
    """A trial: a passed set whose masks are (1, H, W), as torchvision's PILToTensor gives them, failed in
    PyTorch's loss ("only batches of spatial targets supported (3D tensors) but got targets of dimension: 4").
    They now train and validate (the 1 dropped as the package's transforms drop it); a first mask of another
    shape, or of floats (ToTensor's), is refused naming the set. A review: a mask of another size than its image
    trained before (the loss resizes the logits to the labels) and still does."""
    image = torch.randn(3, 16, 16)
    flat = [(image, torch.randint(0, 3, (1, 16, 16)))] * 4
    result = Trainer(tiny_config(tmp_path / "a", iterations=2, eval_every=2), model=TinyNet(), train_set=flat,
                     val_set=flat, num_classes=3).fit()
    assert 0 <= result["final"]["miou"] <= 1
    for mask, match in ((torch.rand(1, 16, 16), r"val_set\[0\]'s mask is \(1, 16, 16\) of torch\.float32.*ToTensor"),
                        (torch.zeros(3, 16, 16, dtype=torch.long), r"val_set\[0\]'s mask is \(3, 16, 16\) of "
                                                                   r"torch\.int64.*\(H, W\) or \(1, H, W\)")):
        with pytest.raises(ValueError, match=match):
            Trainer(tiny_config(tmp_path / "b"), model=TinyNet(), train_set=flat, val_set=[(image, mask)] * 2,
                    num_classes=3)
    half = [(image, torch.randint(0, 3, (8, 8)))] * 4  # labels at half the image's size
    result = Trainer(tiny_config(tmp_path / "c", iterations=2, eval_every=2), model=TinyNet(), train_set=half,
                     val_set=half, num_classes=3).fit()
    assert 0 <= result["final"]["miou"] <= 1


def test_train_or_load_verbose_false_prints_nothing(tmp_path, capsys) -> None:
    """An audit: train_or_load(verbose=False) still printed the Trainer's start-up line, its loss and validation
    lines and its progress bar; the Trainer's verbose=False now silences them (the run is the same)."""
    from deeplab_edu.engine.runs import train_or_load

    _, history, _ = train_or_load("smoke", out_dir=tmp_path / "run", verbose=False, iterations=2, progress=True)
    assert [r["iteration"] for r in history if r["split"] == "val"] == [2]
    assert capsys.readouterr() == ("", "")
    Trainer(load_config("smoke", {"out_dir": str(tmp_path / "loud"), "iterations": 1, "progress": False})).fit()
    assert "train deeplabv3" in capsys.readouterr().out  # verbose by default


def test_the_loss_takes_any_integer_target_and_names_a_float_or_bool_one() -> None:
    """An audit: uint8/int16/int32 targets (masks as loaded) met PyTorch's "expected scalar type Long but found
    Byte"; they now give the int64 target's loss, and a float or bool target is a TypeError naming ``target``."""
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    target[0, 0, 0] = 255
    for top_k in (1.0, 0.5):
        expected = bootstrapped_ce(logits, target, top_k=top_k)
        for dtype in (torch.uint8, torch.int16, torch.int32):
            torch.testing.assert_close(bootstrapped_ce(logits, target.to(dtype), top_k=top_k), expected)
            torch.testing.assert_close(SegmentationLoss(top_k=top_k)(logits, target.to(dtype)), expected)
    for dtype in (torch.float32, torch.bool):
        with pytest.raises(TypeError, match=rf"target must hold integer class indices .* {dtype}"):
            bootstrapped_ce(logits, target.to(dtype))
        with pytest.raises(TypeError, match="target must hold integer"):
            SegmentationLoss()(logits, target.to(dtype))


def test_plot_history_draws_fits_result_and_a_metrics_json(tmp_path) -> None:
    """An audit of wrong types: plot_history(trainer.fit()) and plot_history("metrics.json") said "'str' object has no
    attribute 'get'" (it iterated over the keys). Both hold a run's history, drawn as the rows themselves are; a
    mapping without one is refused naming its keys."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deeplab_edu.engine.report import plot_history
    from deeplab_edu.engine.runs import write_metrics_json
    from deeplab_edu.engine.trainer import run_result

    rows = [{"split": "train", "iteration": 1, "loss": 2.0}, {"split": "train", "iteration": 2, "loss": 1.5},
            {"split": "val", "iteration": 2, "miou": 0.25}]
    result = run_result(rows, [])
    write_metrics_json(tmp_path / "metrics.json", result)

    def drawn(history: Any) -> list[list[float]]:
        fig = plot_history(history)
        lines = [list(line.get_ydata()) for ax in fig.axes for line in ax.get_lines()]
        plt.close(fig)
        return lines

    assert drawn(rows) == drawn(result) == drawn(tmp_path / "metrics.json") == drawn(str(tmp_path / "metrics.json")) \
        == [[2.0, 1.5], [25.0]]
    assert drawn(tmp_path) == drawn(str(tmp_path)) == [[2.0, 1.5], [25.0]]  # a new user's trial: the run's folder
    with pytest.raises(TypeError, match=r"without a 'history' list \(keys: \['miou'\]\)"):
        plot_history({"miou": 0.5})


def test_resume_refuses_another_pretrained_backbone_before_building_the_model(tmp_path, monkeypatch) -> None:
    """A settings-parity audit: --pretrained-backbone given with --resume was listed as a change
    ("pretrained_backbone False -> r50.pth"), yet the checkpoint's weights replaced the backbone's, config.json
    recorded weights the run never started from, and a plain --pretrained-backbone downloaded ImageNet's first.
    Refused now, before the model is built (nothing read or downloaded), naming the setting and the way on."""
    from deeplab_edu.engine.checkpoint import CheckpointMismatchError

    cfg = tiny_config(tmp_path, iterations=3, ckpt_every=3, eval_every=100)
    Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()
    weights = tmp_path / "r50.pth"
    weights.write_bytes(b"")
    monkeypatch.setattr("deeplab_edu.models.build_model", lambda *a, **k: pytest.fail("the model was built"))
    again = tiny_config(tmp_path, iterations=6, ckpt_every=3, eval_every=100, resume=True,
                        pretrained_backbone=str(weights))
    with pytest.raises(CheckpointMismatchError, match=r"pretrained_backbone False -> '.*r50\.pth'.*--init-from"):
        Trainer(again, train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False))


def test_resume_and_reuse_take_the_same_value_spelt_otherwise() -> None:
    """The audit: model_kwargs' tuples stayed tuples (config.json reads them back as lists, so
    `--config r/config.json --resume` was refused with that very command as advice) and an atrous_rates
    string was kept as typed ('1,2,3', '1, 2, 3', '01,2,3'). Both are stored in one form, and a checkpoint
    saved before is compared in that form too."""
    from deeplab_edu.engine.runs import _differing
    from deeplab_edu.engine._resume import _resume_differences

    cfg = TrainConfig(model_kwargs={"multi_grid": (1, 2, 4), "x": [{"y": (1,)}]}, atrous_rates="01, 2,3")
    assert cfg.model_kwargs == {"multi_grid": [1, 2, 4], "x": [{"y": [1]}]} and cfg.atrous_rates == "1,2,3"
    info = {"name": "deeplabv3", "atrous_rates": [1, 2, 3]}
    read_back = json.loads(json.dumps(cfg.to_dict()))  # config.json, the --config of a resumed run
    assert _resume_differences(cfg.to_dict(), TrainConfig(**read_back).to_dict(), info, info) == ([], [])
    old = {**cfg.to_dict(), "model_kwargs": {"multi_grid": (1, 2, 4), "x": [{"y": (1,)}]},
           "atrous_rates": "1, 2, 3"}  # a checkpoint saved before: torch.save keeps tuples
    assert _resume_differences(old, TrainConfig(**read_back).to_dict(), info, info) == ([], [])
    assert _differing({"config": old}, TrainConfig(**read_back)) == []  # train_or_load reuses the run
    assert _differing({"config": old}, TrainConfig(**{**read_back, "atrous_rates": "1,2,4"})) == ["atrous_rates"]


def _short_trainer(out: Path, **kw: Any) -> Trainer:
    """A 4-iteration Trainer of TinyNet in ``out`` with a checkpoint every 2 iterations (the tests below)."""
    cfg = tiny_config(out, **{"iterations": 4, "ckpt_every": 2, "eval_every": 100, "warmup_iters": 0, **kw})
    return Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False))


def test_a_resumed_trainer_refuses_a_folder_trained_on_since_it_was_built(tmp_path: Path) -> None:
    """An audit: a resumed Trainer reads its checkpoint when it is built and takes the run's lock in fit(); where
    another process trained the folder on meanwhile, fit() trained from the older iteration (last.pt then held it
    beside the newer ckpt_*, and metrics.csv was cut back). fit() now refuses, naming both checkpoints."""
    from deeplab_edu.engine.runs import RunFolderError

    _short_trainer(tmp_path, iterations=2).fit()
    stale = _short_trainer(tmp_path, resume=True, iterations=6)  # resumes from ckpt_2...
    _short_trainer(tmp_path, resume=True).fit()  # ...while another trains on to 4
    with pytest.raises(RunFolderError, match=r"after this Trainer was built \(it resumed from .*ckpt_00000002\.pt; the "
                                             r"newest is now .*ckpt_00000004\.pt\): build the Trainer again"):
        stale.fit()
    checkpoints = tmp_path / "checkpoints"
    assert ck.latest_checkpoint(checkpoints) == checkpoints / "ckpt_00000004.pt"
    assert os.path.samefile(checkpoints / "last.pt", checkpoints / "ckpt_00000004.pt")
    again = _short_trainer(tmp_path, resume=True, iterations=6)  # built again: it trains on from the newest
    assert again.iteration == 4 and again.fit()["history"][-1]["iteration"] == 6


def test_a_run_killed_before_linking_last_pt_is_judged_by_its_newest_checkpoint(tmp_path: Path) -> None:
    """An audit: a process that died between writing ckpt_N.pt and linking last.pt left last.pt older for ever
    (run_status read only last.pt: "interrupted at 2 of 4"; eval of last.pt scored the older model). The run is
    judged by its newest checkpoint, and last.pt is linked to it again when the folder is claimed."""
    from deeplab_edu.engine.runs import _judge, claim_run_folder

    trainer = _short_trainer(tmp_path)
    trainer.fit()
    checkpoints = tmp_path / "checkpoints"
    newest, older, last = checkpoints / "ckpt_00000004.pt", checkpoints / "ckpt_00000002.pt", checkpoints / "last.pt"
    last.unlink()
    os.link(older, last)  # as the killed process left it: ckpt_4 written, last.pt still ckpt_2's
    os.utime(older, ns=(newest.stat().st_mtime_ns - 10**9,) * 2)
    assert _judge(trainer.cfg, tmp_path).status.state == "finished"  # what run_status and train_or_load decide
    claim_run_folder(tmp_path, resume=True).release()
    assert os.path.samefile(last, newest) and ck.load_checkpoint(last)["iteration"] == 4
    assert not ck.repair_last(checkpoints)  # once repaired, nothing to do


def test_a_run_folder_that_cannot_be_written_or_locked_is_named(tmp_path: Path) -> None:
    """An audit: a --out-dir that is a broken link failed "[Errno 17] File exists", and a lock file that cannot be
    opened (a read-only run folder, another user's lock) a raw "[Errno 30] ... train.lock": each now says what the
    path is and what to do."""
    from deeplab_edu.engine.runs import RunFolderError, claim_run_folder

    broken = tmp_path / "broken"
    broken.symlink_to(tmp_path / "nowhere")
    with pytest.raises(RunFolderError, match=r"broken is a broken link, not a folder\): the run's files .* choose "
                                             r"another out_dir \(--out-dir\)"):
        claim_run_folder(broken, resume=True)
    (tmp_path / "run" / "train.lock").mkdir(parents=True)  # a lock file that cannot be opened
    with pytest.raises(RunFolderError, match=r"cannot open the run's lock .*train\.lock \(Is a directory\): "
                                             r".*--out-dir"):
        claim_run_folder(tmp_path / "run", resume=True)


def test_resume_advice_quotes_its_paths_for_the_shell(tmp_path: Path) -> None:
    """An audit: the resume advice printed its paths unquoted, so a folder with a space broke the command it gave."""
    out = tmp_path / "my run"
    _short_trainer(out, iterations=2).fit()
    with pytest.raises(ck.CheckpointMismatchError, match=r"--config '[^']*my run/config\.json' --resume --out-dir "
                                                        r"'[^']*my run'\).*--init-from '[^']*my run/checkpoints/"
                                                        r"ckpt_00000002\.pt'"):
        _short_trainer(out, resume=True, weight_decay_norm_and_bias=False)


def test_train_or_load_under_torchrun_is_refused_before_it_takes_the_lock(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit: under torchrun every process took the run's lock; rank 0 got it and waited in
    init_process_group for rank 1, which waited for the lock (up to ``lock_timeout_s``, an hour): ~30 minutes
    of silence. train_or_load now refuses in each process (``WORLD_SIZE`` above 1) and names what trains under
    torchrun, before it makes the run's folder or takes its lock; ``WORLD_SIZE`` 1 or empty is one process."""
    from deeplab_edu.engine.runs import train_or_load

    monkeypatch.delenv("MASTER_ADDR", raising=False)  # before: the Trainer's env:// join failed on it, after the lock
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match=r"train_or_load trains in one process, but torchrun launched 2 .*"
                                           r"torchrun --nproc-per-node 2 -m deeplab_edu train"):
        train_or_load("smoke", out_dir=tmp_path / "run", iterations=1, lock_timeout_s=1)
    assert not (tmp_path / "run").exists()
    # a new user's trial: a finished run loads in each process, as before the refusal (no lock is taken)
    monkeypatch.setenv("WORLD_SIZE", "1")
    train_or_load("smoke", out_dir=tmp_path / "done", iterations=1, verbose=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    _, history, cfg = train_or_load("smoke", out_dir=tmp_path / "done", iterations=1, verbose=False)
    assert cfg.iterations == 1 and history
    with pytest.raises(ValueError, match="other settings"):  # a second review: the refusal, not "no finished run"
        train_or_load("smoke", out_dir=tmp_path / "done", iterations=1, lr=0.5, verbose=False)
    from deeplab_edu.engine.distributed import launched_world_size

    for value, world in (("", 1), ("1", 1), (" 2 ", 2)):
        monkeypatch.setenv("WORLD_SIZE", value)
        assert launched_world_size() == world


def test_settings_fit_reads_again_are_validated_again(tmp_path) -> None:
    """A review: eval_every, keep_last, ... may change between fit() calls, but were not validated again
    (``eval_every = 0`` failed with ZeroDivisionError after the first step, ``keep_last = 0`` at the first save);
    now a ConfigError names the setting before anything trains."""
    trainer = Trainer(tiny_config(tmp_path, iterations=2), model=TinyNet(), train_set=TinyScenes(4),
                      val_set=TinyScenes(2, augment=False))
    for name in ("eval_every", "keep_last"):
        setattr(trainer.cfg, name, 0)
        with pytest.raises(ConfigError, match=name):
            trainer.fit()
        setattr(trainer.cfg, name, 1)
    assert trainer.iteration == 0 and not (tmp_path / "checkpoints").exists()


def test_a_run_resumes_after_its_backbone_weights_file_moved(tmp_path) -> None:
    """A review: a resumed run may not change pretrained_backbone, but validate still required its file, which a
    resumed run never reads (its checkpoint holds the weights): once the file moved, the run could not go on in any
    way (`--config <run>/config.json --resume` said "no such file"). It resumes now; where a resume finds no
    checkpoint, the run starts and the missing file is refused, naming it."""
    from deeplab_edu.engine.config import validate

    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"")
    cfg = tiny_config(tmp_path / "run", iterations=3, ckpt_every=3, eval_every=100, pretrained_backbone=str(weights))
    Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()
    weights.unlink()
    validate(cfg)  # its folder holds the run: the file is not read again (a second review: train_or_load said so)
    with pytest.raises(ConfigError, match="no such file"):
        validate(dataclasses.replace(cfg, out_dir=str(tmp_path / "other")))  # a run that starts still needs it
    again = tiny_config(tmp_path / "run", iterations=6, ckpt_every=3, eval_every=100, resume=True,
                        pretrained_backbone=str(weights))
    validate(again)
    Trainer(again, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["iterations"] == 6
    fresh = tiny_config(tmp_path / "new", resume=True, pretrained_backbone=str(weights))
    with pytest.raises(ConfigError, match=r"weights\.pth'?: no such file"):
        Trainer(fresh, train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False))


def test_trainers_built_from_one_changed_configuration_keep_their_own_settings(tmp_path) -> None:
    """A new user's trial: a seed sweep changed one configuration between Trainer(cfg) calls and fit() them all
    after; each Trainer held the caller's object, so the first fit() was refused ("the configuration changed since
    this Trainer was built"), and before that refusal it trained with the last seed. Each keeps its own copy."""
    cfg = tiny_config(tmp_path / "s0", iterations=2, eval_every=100)
    trainers = []
    for seed in (0, 1):
        cfg.seed, cfg.out_dir = seed, str(tmp_path / f"s{seed}")
        trainers.append(Trainer(cfg, model=TinyNet(), train_set=TinyScenes(4), val_set=TinyScenes(2, augment=False)))
    with pytest.warns(UserWarning, match=r"built from changed since \(seed 0 -> 1; out_dir .*its own copy"):
        trainers[0].fit()  # a second review: the caller's object changed, which the Trainer does not follow
    trainers[1].fit()
    assert [json.loads((tmp_path / f"s{s}" / "config.json").read_text())["seed"] for s in (0, 1)] == [0, 1]



def test_a_moved_backbone_file_neither_stops_a_started_run_nor_a_later_fit(tmp_path) -> None:
    """A second review: train_or_load (and run_status) still refused a finished or interrupted run whose
    pretrained_backbone file had moved (load_config validated it as for a new run), and fit() refused a Trainer
    whose file moved after it was built; the file is read once, when a run starts. A run that starts without it
    is refused before its data is built."""
    from deeplab_edu.engine import trainer as trainer_module
    from deeplab_edu.engine.runs import run_status, train_or_load

    import torchvision

    weights = tmp_path / "w.pth"
    torch.save(torchvision.models.mobilenet_v3_large().state_dict(), weights)  # torchvision's, offline
    kw = dict(iterations=2, eval_every=2, progress=False, verbose=False, pretrained_backbone=str(weights),
              model="deeplabv3", backbone="mobilenet_v3_large", image_size=32, crop_size=32, batch_size=2,
              train_length=4, val_length=2, num_workers=0)
    train_or_load("smoke", out_dir=tmp_path / "run", **kw)
    weights.unlink()
    train_or_load("smoke", out_dir=tmp_path / "run", **kw)  # finished: loads
    assert run_status("smoke", out_dir=tmp_path / "run", **{k: v for k, v in kw.items() if k != "verbose"}).state \
        == "finished"
    weights.write_bytes(b"")
    cfg = tiny_config(tmp_path / "fit", iterations=2, eval_every=100, pretrained_backbone=str(weights))
    trainer = Trainer(cfg, model=TinyNet(), train_set=TinyScenes(4), val_set=TinyScenes(2, augment=False))
    weights.unlink()
    trainer.fit()  # built, then the file moved: nothing reads it again
    built: list[str] = []
    original = trainer_module.build_datasets
    try:
        trainer_module.build_datasets = lambda *a, **k: built.append("data") or original(*a, **k)  # type: ignore
        with pytest.raises(ConfigError, match="no such file"):
            Trainer(dataclasses.replace(cfg, out_dir=str(tmp_path / "new"), resume=True))
    finally:
        trainer_module.build_datasets = original
    assert built == []


def test_resume_with_another_network_setting_names_it_before_the_shapes(tmp_path) -> None:
    """A new user's trial: resumed with --no-image-pooling (or other model_kwargs), a run built with image pooling
    was refused with "written for another model: parameters differ (6 unexpected ...)", naming no setting: the
    weights' shapes were compared before the settings. The settings' refusal comes first and names the change."""
    from deeplab_edu.engine.checkpoint import CheckpointMismatchError

    def trainer(**kw: Any) -> Trainer:
        cfg = tiny_config(tmp_path, **{"iterations": 1, "ckpt_every": 1, "eval_every": 100, "model": "deeplabv3",
                                       "backbone": "tiny_resnet", "atrous_rates": "fit", **kw})
        return Trainer(cfg, train_set=TinyScenes(4), val_set=TinyScenes(2, augment=False))

    trainer().fit()
    with pytest.raises(CheckpointMismatchError, match=r"cannot change: model_kwargs \{\} -> \{'image_pooling': "
                                                      r"False\}.*--init-from") as err:
        trainer(iterations=2, resume=True, model_kwargs={"image_pooling": False})
    assert "parameters differ" not in str(err.value)


def test_resume_whose_init_from_moved_says_to_give_its_new_path(tmp_path) -> None:
    """A new user's trial: a resumed run whose init_from file had moved said only "checkpoint ... does not exist",
    though --init-from NEWPATH beside --resume continues it: the message says so."""
    def trainer(out: Path, **kw: Any) -> Trainer:
        cfg = tiny_config(out, **{"iterations": 1, "ckpt_every": 1, "eval_every": 100, **kw})
        return Trainer(cfg, model=TinyNet(), train_set=TinyScenes(4), val_set=TinyScenes(2, augment=False))

    trainer(tmp_path / "a").fit()
    trainer(tmp_path / "b", init_from=str(tmp_path / "a")).fit()
    (tmp_path / "a").rename(tmp_path / "moved")
    with pytest.raises(FileNotFoundError, match=r"does not exist: the run in .*b started from it.*--init-from "
                                                r"NEWPATH beside --resume"):
        trainer(tmp_path / "b", iterations=2, init_from=str(tmp_path / "a"), resume=True)
    assert trainer(tmp_path / "b", iterations=2, init_from=str(tmp_path / "moved"), resume=True).iteration == 1
    with pytest.raises(FileNotFoundError, match=r"does not exist$"):  # a new run: the path is the whole story
        trainer(tmp_path / "c", init_from=str(tmp_path / "a"))


def test_validate_refuses_non_finite_numbers_and_fit_takes_an_equal_nan_as_unchanged(tmp_path, monkeypatch) -> None:
    """A census: TrainConfig(lr=inf) made its run's folder and trained an iteration before "try a lower --lr", and
    a NaN poly_power was refused by fit() as "the configuration changed (poly_power nan -> nan)": validate()
    checked finiteness only in load_config. It refuses them by name, as load_config does (one rule)."""
    from deeplab_edu.engine.config import validate

    for name in ("lr", "weight_decay", "head_lr_mult", "poly_power", "bn_momentum"):
        for value in (float("inf"), float("nan")):
            with pytest.raises(ConfigError, match=rf"^{name}={value!r} should be a finite number"):
                validate(TrainConfig(**{name: value}))
    with pytest.raises(ConfigError, match=r"^lr=inf should be a finite number"):
        Trainer(tiny_config(tmp_path / "inf", lr=float("inf")), model=TinyNet(), train_set=TinyScenes(4),
                val_set=TinyScenes(2, augment=False))
    assert not (tmp_path / "inf").exists()
    monkeypatch.setattr(trainer_module, "validate", lambda cfg: None)  # a NaN past validate: not a change
    trainer = Trainer(tiny_config(tmp_path / "nan", poly_power=float("nan")), model=TinyNet(),
                      train_set=TinyScenes(4), val_set=TinyScenes(2, augment=False))
    trainer._check_cfg_unchanged()


def test_a_failing_evaluate_leaves_no_loader_worker_behind(tmp_path) -> None:
    """An audit: Trainer.evaluate iterated its loader bare, so the error a notebook keeps held the loader's
    iterator, and its workers lived on: 2 -> 4 -> 6 worker processes over three failed calls with two workers.
    They now end as evaluate raises (workers.shutting_down_workers, as fit and inference.evaluate do)."""
    import psutil

    me = psutil.Process()
    before = {p.pid for p in me.children()}
    val_set = _FailsFromItem(6, augment=False)
    val_set.first = 3  # in the second worker's batch (items 2 and 3); the first worker's batches load
    cfg = tiny_config(tmp_path / "run", num_workers=2, batch_size=2)
    trainer = Trainer(cfg, model=TinyNet(3), train_set=TinyScenes(8), val_set=val_set, num_classes=3)
    kept = []
    for _ in range(2):
        with pytest.raises(ValueError, match="item 3 cannot be read") as failed:
            trainer.evaluate()
        kept.append(failed.value)  # kept, with its traceback, as a notebook keeps the last error
        assert failed.value.__traceback__ is not None
        left = [p for p in me.children() if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE]
        assert not left, f"loader workers still alive after Trainer.evaluate raised: {left}"


def test_a_direct_evaluate_names_where_its_loader_hangs(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trainer.evaluate called by itself passed PyTorch's bare "DataLoader timed out" on; it now says where, as
    inference.evaluate does (fit's validation keeps its own message, which says what was saved)."""
    from deeplab_edu.engine import workers

    monkeypatch.setattr(workers, "LOADER_TIMEOUT_S", 3.0)
    cfg = tiny_config(tmp_path / "run", num_workers=1, batch_size=2)
    trainer = Trainer(cfg, model=TinyNet(3), train_set=TinyScenes(8), val_set=_HangsAfterTwo(4, augment=False),
                      num_classes=3)
    with pytest.raises(RuntimeError, match=r"timed out after 3(\.0)? seconds: a data loader worker produced no batch "
                                           r"in that time in Trainer.evaluate\(\) after 2 of the 4 validation images "
                                           r"\(an item that hangs.*deeplab-edu check-data"):
        trainer.evaluate()


def test_validate_refuses_an_infinite_scale_range() -> None:
    """A review: the finiteness rule looked at float settings only, so scale_range=(0.5, inf) passed validate and
    was refused later by the data set, not by the configuration (nor named with its file by load_config)."""
    from deeplab_edu.engine.config import validate

    with pytest.raises(ConfigError, match=r"^scale_range=\(0.5, inf\) should be a finite number"):
        validate(TrainConfig(scale_range=(0.5, float("inf"))))
    with pytest.raises(ConfigError, match=r"scale_range=\[0.5, inf\] \(from the overrides\) should be a finite"):
        load_config("smoke", {"scale_range": [0.5, float("inf")]})


class _InfStatsNet(TinyNet):
    """Its first batch norm's running variance becomes infinite in training forward call ``inf_at`` and after,
    while its losses stay finite (batch norm trains on the batch's own statistics): a diverged run's state, a
    loss of 1e19 with running_var infinite (an audit)."""

    def __init__(self, inf_at: int) -> None:
        super().__init__()
        self.inf_at = inf_at

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training and self.calls + 1 >= self.inf_at:  # before the forward, which updates it in place
            self.backbone[1].running_var.fill_(float("inf"))
        return super().forward(x)


def test_non_finite_weights_are_not_saved_nor_resumed(tmp_path) -> None:
    """An audit: a diverged run wrote checkpoints whose weights were infinite (its losses were finite), called the
    newest "the last good checkpoint", and --resume loaded it without a word."""
    cfg = tiny_config(tmp_path, iterations=8, ckpt_every=2, eval_every=100)
    trainer = Trainer(cfg, model=_InfStatsNet(inf_at=6), train_set=TinyScenes(16),
                      val_set=TinyScenes(2, augment=False))
    stopped = r"weights hold NaN or infinite values at iteration 6 \(e\.g\. backbone\.1\.running_var\)"
    with pytest.raises(NonFiniteLossError, match=stopped + r".*last good checkpoint is .*ckpt_00000004\.pt"):
        trainer.fit()
    folder = tmp_path / "checkpoints"
    assert ck.latest_checkpoint(folder).name == "ckpt_00000004.pt"  # nothing written at iteration 6
    # a checkpoint written so before this check: the last good one named is the older one, and resume refuses it
    state = ck.load_checkpoint(folder)
    state["model"]["backbone.1.running_var"].fill_(float("inf"))
    state["iteration"] = 6
    ck.save_checkpoint(state, folder, 6, keep_last=5)
    assert re.search(r"last good checkpoint is .*ckpt_00000004\.pt .*move ckpt_00000006\.pt out of",
                     trainer._last_good())
    with pytest.raises(ck.CheckpointMismatchError, match=r"ckpt_00000006\.pt: its weights hold NaN or infinite "
                                                         r"values \(e\.g\. backbone\.1\.running_var\).*resume from "
                                                         r".*ckpt_00000004\.pt"):
        Trainer(tiny_config(tmp_path, iterations=8, resume=True), model=TinyNet(), train_set=TinyScenes(16),
                val_set=TinyScenes(2, augment=False))


class _BadLabelAt(TinyScenes):
    """Item ``bad``'s mask holds label 7 (3 classes)."""

    bad = 1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, mask = super().__getitem__(i)
        if i == self.bad:
            mask[0, 0] = 7
        return img, mask


def test_a_passed_val_sets_bad_label_names_its_item(tmp_path) -> None:
    """An audit: a label outside the classes in a passed val_set failed at the first validation with a bare
    "target holds label 7" of no item, and the iterations since the last checkpoint were lost."""
    from deeplab_edu.data.io import BadDataError

    cfg = tiny_config(tmp_path, iterations=4, eval_every=4, ckpt_every=100)
    trainer = Trainer(cfg, model=TinyNet(), train_set=TinyScenes(16), val_set=_BadLabelAt(2, augment=False))
    with pytest.raises(BadDataError, match=r"the mask of item 1 of the validation set \(_BadLabelAt\) holds labels 7.*"
                                           r"the 4 iterations done were saved"):
        trainer.fit()
    assert ck.latest_checkpoint(tmp_path / "checkpoints").name == "ckpt_00000004.pt"
    # the validation is still due: resumed with the set fixed, the run does it (it was skipped: no val row at 4)
    assert ck.load_checkpoint(tmp_path / "checkpoints")["validation_due"] == 4
    resumed = Trainer(tiny_config(tmp_path, iterations=4, eval_every=4, ckpt_every=100, resume=True),
                      model=TinyNet(), train_set=TinyScenes(16), val_set=TinyScenes(2, augment=False))
    resumed.fit()
    assert [row["iteration"] for row in resumed.history if row["split"] == "val"] == [4]


def test_the_non_finite_loss_message_names_the_images_too(tmp_path) -> None:
    """An audit: the message blamed the learning rate alone (a NaN in the images does the same) and suggested
    another amp whatever the run's was."""
    model = TinyNet()
    model.nan_after = 3
    trainer = Trainer(tiny_config(tmp_path, iterations=6, ckpt_every=2, eval_every=100), model=model,
                      train_set=TinyScenes(16), val_set=TinyScenes(2, augment=False))
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    message = str(info.value)
    assert "ckpt_00000002.pt" in message and "lower lr" in message and "amp=" not in message
    assert "A NaN or infinite value in the images (a float image file, a passed data set or its transform)" in message
    trainer.cfg.amp = "fp16"  # (fp16 trains on CUDA only)
    assert "lower lr or amp=bf16/none" in trainer._last_good()


class _ObjectsAs255(TinyScenes):
    """Black-and-white masks: the objects (the scene's class 1) saved as 255, the rest 0."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, mask = super().__getitem__(i)
        return img, torch.where(mask == 1, 255, 0)


def test_passed_sets_of_black_and_white_masks_or_no_items(tmp_path) -> None:
    """An audit: a passed train_set whose objects were saved as 255 trained on its background alone, silently
    (FolderDataset warned of such masks); an empty passed val_set was accepted, every mIoU then NaN."""
    cfg = tiny_config(tmp_path, iterations=2)
    with pytest.warns(UserWarning, match=r"train_set\[0\]'s mask holds only 0 and 255, and 255 \(the ignore label: "
                                         r"neither learned nor scored\) covers \d+% of it.*e\.g\. 1 for 'green'"):
        Trainer(cfg, model=TinyNet(), train_set=_ObjectsAs255(8), val_set=TinyScenes(2, augment=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # masks of class indices, with ignored borders: no warning
        Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8, ignore=True), val_set=TinyScenes(2, augment=False))
    with pytest.raises(ValueError, match=r"the validation set \(val_set\) has 0 items: not one image to score \(its "
                                         r"mIoU would be NaN\); add images"):
        Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(0))


def test_metric_bars_keep_their_values_inside_the_frame() -> None:
    """The figure audit: the value over the tallest bar ran into the top frame, and chapter 11's 11 CamVid class
    names overlapped at 15 degrees."""
    import matplotlib.pyplot as plt

    from deeplab_edu.engine.report import plot_metric_bars

    names = ["Sky", "Building", "Pole", "Road", "Sidewalk", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian",
             "Bicyclist"]
    fig = plot_metric_bars({n: 0.9 - 0.05 * i for i, n in enumerate(names)}, ylabel="IoU (%)")
    ax = fig.axes[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    top = ax.get_window_extent(renderer).y1
    values = [t for t in ax.texts if t.get_text()]
    assert len(values) == len(names) and all(t.get_window_extent(renderer).y1 < top for t in values)
    assert all(label.get_rotation() == 40 for label in ax.get_xticklabels())
    plt.close(fig)


class _RandomScenes(torch.utils.data.Dataset):
    """A fresh random scene at every call, drawn from the global generator (a learner's own data set)."""

    num_classes, ignore_index = 3, 255

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = torch.randn(3, 16, 16)
        return img, img.argmax(0)


def test_a_passed_val_set_is_not_drawn_under_the_training_sets_seeds(tmp_path) -> None:
    """A review: the label check wrapped a passed val_set in the training set's seeds, so a set of random scenes
    gave as validation images the first epoch's training images (scored on what it trained on)."""
    trainer = Trainer(tiny_config(tmp_path, iterations=4), model=TinyNet(), train_set=_RandomScenes(64),
                      val_set=_RandomScenes(8))
    assert not any(torch.equal(trainer.train_set[i][0], trainer.val_set[i][0]) for i in range(8))


def test_passed_subsets_are_seeded_and_checked_item_by_item(tmp_path) -> None:
    """A review: SeededDataset handed a Subset's __getitems__ through, so the DataLoader called it and skipped
    the wrapper's __getitem__: no seeds (a random_split training set's augmentation followed the global stream)
    and no label check (a bad label in a Subset val_set failed bare at the first validation)."""
    from torch.utils.data import Subset

    from deeplab_edu.data.io import BadDataError
    from deeplab_edu.engine.data import SeededDataset

    seeded = SeededDataset(Subset(TinyScenes(8), range(8)), 0)
    batches = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        batches.append(next(iter(torch.utils.data.DataLoader(seeded, batch_size=4)))[0])
    assert torch.equal(*batches)
    cfg = tiny_config(tmp_path, iterations=4, eval_every=4, ckpt_every=100)
    bad = _BadLabelAt(2, augment=False)
    trainer = Trainer(cfg, model=TinyNet(), train_set=TinyScenes(16), val_set=Subset(bad, range(2)),
                      num_classes=3)
    with pytest.raises(BadDataError, match=r"the mask of item 1 of the validation set \(Subset\) holds labels 7"):
        trainer.fit()


def test_a_run_that_diverges_again_from_the_checkpoint_it_resumed_is_told_to_start_anew(tmp_path) -> None:
    """A new user's trial: a diverging run wrote checkpoints whose weights were finite but whose model had diverged
    already; the message named one as the last good checkpoint, and resuming from it (at a 200 000 times lower
    rate) diverged again and named the same file again, for ever. A review: a healthy checkpoint (its loss had not
    risen) resumed at the same rate is told to resume with a clearly lower one, not to start anew."""
    def run(nan_after: int, **kw: Any) -> tuple[Trainer, str]:
        model = TinyNet()
        model.nan_after = nan_after
        trainer = Trainer(tiny_config(tmp_path, iterations=6, ckpt_every=2, eval_every=100, log_every=1, **kw),
                          model=model, train_set=TinyScenes(16), val_set=TinyScenes(2, augment=False))
        with pytest.raises(NonFiniteLossError) as info:
            trainer.fit()
        return trainer, str(info.value)

    assert "The last good checkpoint is" in run(3)[1]
    trainer, again = run(1, resume=True)
    assert re.search(r"This run resumed from \S*ckpt_00000002\.pt, its last checkpoint with finite weights, and "
                     r"diverged again: resume from it with a clearly lower lr than this run's 0\.\d+", again), again
    at_checkpoint = [r for r in trainer.history if r["split"] == "train" and r["iteration"] <= 2][-1]
    at_checkpoint["loss"] = 1e9  # the checkpoint's training loss had risen: start anew
    assert re.search(r"diverged again, and its training loss had risen to 1e\+09 .*start a new run with a lower lr",
                     trainer._last_good())


def test_the_last_good_checkpoint_says_when_its_loss_had_risen_tenfold(tmp_path) -> None:
    """A new user's trial: the checkpoint named had a training loss of 3.4e12 (from about 1 at the start)."""
    trainer = Trainer(tiny_config(tmp_path, iterations=2), model=TinyNet(), train_set=TinyScenes(8),
                      val_set=TinyScenes(2, augment=False))
    trainer.history = [{"iteration": 1, "split": "train", "loss": 1.1},
                       {"iteration": 4, "split": "train", "loss": 3.4e12}, {"iteration": 6, "split": "val"}]
    assert "risen to 3.4e+12 by then (from 1.1 at iteration 1)" in trainer._loss_risen_by(Path("ckpt_00000004.pt"))
    assert "may have diverged already" in trainer._loss_risen_by(Path("ckpt_00000004.pt"))
    assert trainer._loss_risen_by(Path("ckpt_00000002.pt")) == ""  # no loss logged by then: nothing said
    trainer.history[1]["loss"] = 5.0
    assert trainer._loss_risen_by(Path("ckpt_00000004.pt")) == ""


def test_passed_sets_get_python_advice_and_their_val_set_the_objects_as_255_note(tmp_path) -> None:
    """A new user's trial: a passed val_set with objects saved as 255 trained without a word (its objects never
    scored); a bad item of a passed set was told to "fix the file" and use check-data and --resume; validation
    scores of NaN suggested fp16 on a run without amp."""
    from deeplab_edu.data.io import BadDataError

    with pytest.warns(UserWarning, match=r"val_set\[0\]'s mask holds only 0 and 255"):
        Trainer(tiny_config(tmp_path / "a"), model=TinyNet(), train_set=TinyScenes(8), val_set=_ObjectsAs255(2))
    cfg = tiny_config(tmp_path / "b", iterations=4, eval_every=4, ckpt_every=100)
    trainer = Trainer(cfg, model=TinyNet(), train_set=TinyScenes(16), val_set=_BadLabelAt(2, augment=False))
    with pytest.raises(BadDataError) as info:
        trainer.fit()
    assert "fix the item of the set you passed, then run again with resume=True" in str(info.value)
    assert "check-data" not in str(info.value).split("were saved")[-1]
    model = TinyNet()
    model.nan_after = 2  # trains 2 iterations, then validates on NaN scores
    trainer = Trainer(tiny_config(tmp_path / "c", iterations=2, eval_every=2, ckpt_every=100), model=model,
                      train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False))
    with pytest.raises(NonFiniteLossError, match="validation scores hold NaN") as nan:
        trainer.fit()
    assert "fp16" not in str(nan.value)


def test_the_warnings_of_passed_sets_models_and_crops_name_the_line_that_built_the_trainer(tmp_path) -> None:
    """The checks of the data sets, model and crop given to the Trainer moved from trainer.py to engine._passed_sets
    (a refactor): each warning still names the caller's line of Trainer(...), not a line of the package (a passed
    set's image in [0, 1], a passed model's 1 x 1 ASPP branches, crops mostly of padding)."""
    unnormalised = [(torch.rand(3, 16, 16), torch.zeros(16, 16, dtype=torch.long))] * 4
    flat = TinyNet()
    flat.atrous_rates = (6, 12, 18)  # type: ignore[assignment]  # at output stride 16, crop 16: a 1 x 1 map
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        Trainer(tiny_config(tmp_path / "a"), model=flat, train_set=unnormalised, val_set=unnormalised, num_classes=3)
        Trainer(tiny_config(tmp_path / "b", crop_size=64, image_size=16), model=TinyNet())
    named = {phrase: [w.filename for w in seen if phrase in str(w.message)]
             for phrase in ("not normalised", "exactly 1 x 1", "is padding")}
    assert all(named.values()) and {f for files in named.values() for f in files} == {__file__}, named


def test_a_passed_val_set_draws_nothing_from_the_training_stream(tmp_path) -> None:
    """A review: unseeded, a passed val_set of random scenes drew from the training's random stream (without
    workers), so a validation at iteration 2 changed the trained weights and two evaluations differed; it has
    seeds of its own (SeededDataset's stream 1), neither the training set's nor none."""
    weights = []
    for eval_every in (2, 100):
        torch.manual_seed(0)
        trainer = Trainer(tiny_config(tmp_path / str(eval_every), iterations=4, eval_every=eval_every,
                                      ckpt_every=100, num_workers=0),
                          model=TinyNet(), train_set=TinyScenes(16), val_set=_RandomScenes(8))
        trainer.fit()
        weights.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    assert torch.equal(*weights)
    state = torch.get_rng_state()
    assert trainer.evaluate() == trainer.evaluate() and torch.equal(state, torch.get_rng_state())
