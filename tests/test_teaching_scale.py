"""The teaching-scale pieces of the training chapters: scene difficulty, the small ResNet, rates that
fit the feature map, and the AdamW option of the engine."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from deeplab_edu.boundary import degeneration_rate, mean_valid_fraction
from deeplab_edu.data.classes import BOAT, CAR, DISC, RING, WIRE
from deeplab_edu.data.procedural import DIFFICULTIES, ProceduralScenes, SceneStyle, render_scene
from deeplab_edu.engine.config import ConfigError, load_config, resolve_atrous_rates
from deeplab_edu.models import build_backbone, build_model
from deeplab_edu.models.aspp import degenerate_rates, feature_map_side, fit_atrous_rates
from deeplab_edu.models.backbones import ResNetBackbone, TinyResNetBackbone


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------- scenes
def test_hard_is_the_default_and_the_original_scenes() -> None:
    a = render_scene(0, 3, (64, 64))
    b = render_scene(0, 3, (64, 64), difficulty="hard")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert ProceduralScenes(length=2, size=32).difficulty == "hard"


@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
def test_every_difficulty_keeps_the_lessons(difficulty: str) -> None:
    ds = ProceduralScenes(length=60, size=96, seed=0, difficulty=difficulty)
    classes, scenes_with_vehicles = set(), {"land": set(), "water": set()}
    wire_pixels, thick_pixels = 0, 0
    for i in range(len(ds)):
        image, mask, info = ds.render(i)
        classes |= set(np.unique(mask).tolist())
        for c in info.classes:
            if c in (CAR, BOAT):
                scenes_with_vehicles[info.scene_type].add(c)
        wire = mask == WIRE  # 1-3 px wide: most wire pixels have a non-wire pixel within 2 px
        thick = wire[2:, :] & wire[:-2, :]
        wire_pixels, thick_pixels = wire_pixels + wire.sum(), thick_pixels + (thick[:, 2:] & thick[:, :-2]).sum()
    assert set(range(8)) | {255} >= classes >= set(range(8))  # every class appears; clutter may be ignored
    assert scenes_with_vehicles == {"land": {CAR}, "water": {BOAT}}  # context alone names the vehicle
    assert wire_pixels > 0 and thick_pixels < 0.5 * wire_pixels


def test_easy_scenes_colour_each_class_and_keep_vehicles_alike() -> None:
    ds = ProceduralScenes(length=80, size=96, seed=1, difficulty="easy")
    means: dict[int, list[np.ndarray]] = {}
    for i in range(len(ds)):
        image, mask, _ = ds.render(i)
        for c in (DISC, RING, CAR, BOAT):
            m = mask == c
            if m.sum() > 30:
                means.setdefault(c, []).append(np.median(image[:, m], axis=1))
    centre = {c: np.median(v, axis=0) for c, v in means.items()}
    assert np.abs(centre[DISC] - centre[RING]).max() > 0.3  # different families
    assert np.abs(centre[CAR] - centre[BOAT]).max() < 0.15  # the same family on land and water


def test_object_sizes_follow_the_style() -> None:
    style = DIFFICULTIES["easy"]
    sizes = [s for i in range(40) for s in render_scene(0, i, (100, 100), difficulty="easy")[2].sizes if s > 0]
    sizes_hard = [s for i in range(40) for s in render_scene(0, i, (100, 100))[2].sizes if s > 0]
    assert min(sizes) >= 2 * style.min_radius * 100 * 0.99 - 1e-6
    assert min(sizes_hard) < min(sizes)
    assert max(sizes) / min(sizes) > 10  # many scales in one data set


def test_bad_difficulty_is_named() -> None:
    with pytest.raises(ValueError, match="difficulty must be one of"):
        ProceduralScenes(length=2, difficulty="trivial")
    with pytest.raises(ValueError, match="colour_cue"):
        SceneStyle(colour_cue="rainbow")
    with pytest.raises(ConfigError, match="difficulty"):
        load_config("smoke", {"difficulty": "trivial"})


# ----------------------------------------------------------------------------- the small ResNet
@pytest.mark.parametrize("output_stride,side", [(8, 12), (16, 6), (32, 3)])
def test_tiny_resnet_output_strides(output_stride: int, side: int) -> None:
    bb = build_backbone("tiny_resnet", output_stride=output_stride).eval()
    with torch.no_grad():
        f = bb(torch.zeros(1, 3, 96, 96))
    assert f["out"].shape == (1, bb.out_channels, side, side)
    assert f["low_level"].shape[-1] == 24 and f["low_level"].shape[1] == bb.low_level_channels
    assert bb.output_stride == output_stride


def test_tiny_resnet_dilates_like_the_resnets() -> None:
    bb = build_backbone("tiny_resnet", output_stride=8)
    assert bb.block_rates() == [(1,), (1,), (1, 2), (2, 4, 4)]  # first unit keeps the previous rate
    bb.set_output_stride(16, multi_grid=(1, 2, 4))
    assert bb.block_rates() == [(1,), (1,), (1, 1), (2, 4, 8)]  # DeepLabv3 sec. 3.2: rate * (1, 2, 4)
    unit = bb.layer4[1]
    assert unit.conv1.dilation == unit.conv2.dilation == (4, 4)  # both 3x3 convs of a basic unit
    # the same rule as the ResNet-50 backbone
    big = build_backbone("resnet50", output_stride=16, multi_grid=(1, 2, 4))
    assert big.block_rates()[3] == bb.block_rates()[3]
    deeper = build_backbone("tiny_resnet", output_stride=16, extra_blocks=2)
    assert deeper.block_rates()[4:] == [(4, 4, 4), (8, 8, 8)]


def test_tiny_resnet_trains_and_switches_output_stride() -> None:
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", backbone="tiny_resnet", num_classes=8, output_stride=16,
                        atrous_rates=(1, 2, 3))
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 8, (2, 64, 64))
    loss = nn.functional.cross_entropy(model(x)["out"], y)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval().set_output_stride(8)
    assert model.atrous_rates == (2, 4, 6) and model(x)["out"].shape == (2, 8, 64, 64)
    n = sum(p.numel() for p in model.backbone.parameters())
    assert round(n / 1e6, 1) == 3.9, n  # the docstring's figure; ResNet-101 has 42.5 M
    with pytest.raises(ValueError, match="no pre-trained weights"):
        build_backbone("tiny_resnet", pretrained=True)
    assert isinstance(model.backbone, TinyResNetBackbone) and isinstance(model.backbone, ResNetBackbone)


# ----------------------------------------------------------------------------- rates that fit the map
def test_feature_map_side() -> None:
    assert [feature_map_side(513, s) for s in (4, 8, 16, 32)] == [129, 65, 33, 17]
    assert feature_map_side(96, 16) == 6 and feature_map_side(128, 8) == 16


def test_paper_rates_are_their_own_fit_and_small_maps_get_small_rates() -> None:
    assert fit_atrous_rates(33) == (6, 12, 18) and fit_atrous_rates(16) == (2, 5, 8)  # as its docstring says
    paper_share = mean_valid_fraction(33, 18)
    assert 0.40 < paper_share < 0.41
    for side in (4, 6, 8, 12, 16, 24):
        rates = fit_atrous_rates(side)
        assert list(rates) == sorted(rates) and max(rates) < degeneration_rate(side)  # none is 1 x 1
        assert mean_valid_fraction(side, max(rates)) >= 0.40  # the largest uses >= 40 % of its weights
        # the largest such rate: one more and the share falls below the paper's
        assert mean_valid_fraction(side, max(rates) + 1) < paper_share
    assert degenerate_rates(6, (6, 12, 18)) == (6, 12, 18) and degenerate_rates(33, (6, 12, 18)) == ()


def test_engine_warns_about_degenerate_paper_rates_and_fits_them() -> None:
    cfg = load_config("smoke", {"model": "deeplabv3", "crop_size": 96, "output_stride": 16, "atrous_rates": "paper"})
    with pytest.warns(UserWarning, match=r"crop_size=96 .* 6 x 6 feature map.*exactly 1 x 1.*atrous_rates='fit' "
                                         r"\(rates \(1, 2, 3\)\), rates below 6, or a crop of at least 289 pixels"):
        assert resolve_atrous_rates(cfg) == (6, 12, 18)
    for enough in (289, 288):  # the crop the warning names is the smallest that is enough
        cfg.crop_size = enough
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            resolve_atrous_rates(cfg)
        assert bool(seen) == (enough == 288)
    cfg.crop_size = 96
    cfg.atrous_rates = "fit"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_atrous_rates(cfg) == (1, 2, 3)
    cfg.atrous_rates = "2,3,5"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_atrous_rates(cfg) == (2, 3, 5)
    cfg.atrous_rates = "2,6,12"  # given rates warn as the paper's do (a trial's 60,120,180 on a 3 x 3 map did not)
    with pytest.warns(UserWarning, match=r"6 x 6 feature map, so the ASPP branches at rates \(6, 12\) of \(2, 6, 12\)"):
        assert resolve_atrous_rates(cfg) == (2, 6, 12)
    with pytest.raises(ConfigError, match="atrous_rates"):
        load_config("smoke", {"atrous_rates": "big"})
    v2 = load_config("smoke", {"model": "deeplabv2", "backbone": "tiny_resnet", "output_stride": 8,
                               "crop_size": 96, "atrous_rates": "fit"})
    assert resolve_atrous_rates(v2) == fit_atrous_rates(12, (6, 12, 18, 24), 41)


def test_trained_rates_travel_with_the_checkpoint(tmp_path) -> None:
    from deeplab_edu.engine.trainer import Trainer
    from deeplab_edu.inference import load_model

    cfg = load_config("smoke", {"model": "deeplabv3", "backbone": "tiny_resnet", "atrous_rates": "fit",
                                "crop_size": 48, "image_size": 48, "output_stride": 16, "iterations": 2,
                                "optimizer": "adamw", "lr": 1e-3, "progress": False, "out_dir": str(tmp_path)})
    trainer = Trainer(cfg)
    trainer.fit()
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    model, _ = load_model(tmp_path / "checkpoints" / "last.pt")
    assert model.atrous_rates == trainer.model.atrous_rates == fit_atrous_rates(3)
    with pytest.raises(ConfigError, match="optimizer"):
        load_config("smoke", {"optimizer": "rmsprop"})


def test_two_processes_share_one_run(tmp_path) -> None:
    """A second process that asks for a run being trained waits for it and reuses it (no double training)."""
    import subprocess
    import sys

    code = ("import sys, torch; torch.set_num_threads(1); from deeplab_edu.engine.runs import train_or_load; "
            "train_or_load('smoke', out_dir=sys.argv[1], verbose=True, progress=False)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum("skipping training" in o for o in outs) == 1, outs  # one trained, the other reused it
    from filelock import FileLock

    from deeplab_edu.engine.runs import train_or_load

    from deeplab_edu.engine.runs import _held_elsewhere

    with FileLock(str(tmp_path / "run" / "train.lock")):  # held by "another process"
        # a finished run loads without the lock (a classroom's trial: 30 kernels loading one run queued behind
        # it, each told "waiting for another process that trains ...")
        _, history, _ = train_or_load("smoke", out_dir=tmp_path / "run", verbose=False, lock_timeout_s=0.5,
                                      progress=False)
        assert history[-1]["split"] == "val"
        assert _held_elsewhere(tmp_path / "run" / "train.lock")  # as another user's lock is seen, read-only
        (tmp_path / "new").mkdir()
        with FileLock(str(tmp_path / "new" / "train.lock")):
            with pytest.raises(TimeoutError, match="another process has been training"):  # a run still to train
                train_or_load("smoke", out_dir=tmp_path / "new", verbose=False, lock_timeout_s=0.5, progress=False)
    assert not _held_elsewhere(tmp_path / "run" / "train.lock") and not _held_elsewhere(tmp_path / "missing")


def test_a_finished_run_in_a_read_only_folder_loads(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A teacher's trial: a class's finished runs shared read-only failed to load with "OSError: [Errno 30]
    Read-only file system: '.../train.lock'", and `course-runs --dry-run` ended on it. A finished run loads
    without the lock (nobody trains there through this process) and its state is reported; a run that is
    not finished raises RunFolderError naming the folder and the ways out. (A read-only folder is simulated:
    the tests run as root, for whom permissions do not forbid writing.)"""
    import errno

    from deeplab_edu import atomic
    from deeplab_edu.engine import runs
    from deeplab_edu.engine.runs import RunFolderError, run_status, train_or_load

    settings = dict(image_size=32, crop_size=32, iterations=2, verbose=False, progress=False)
    _, trained, _ = train_or_load("smoke", out_dir=tmp_path / "run", **settings)
    (tmp_path / "run" / "metrics.json").unlink()  # rewritten on load where the folder is writable

    class ReadOnlyLock:
        lock_file = str(tmp_path / "run" / "train.lock")

        def acquire(self, timeout: float = 0) -> None:
            raise OSError(errno.EROFS, "Read-only file system", self.lock_file)

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(runs, "_run_lock", lambda folder: ReadOnlyLock())
    monkeypatch.setattr(atomic, "write_text_atomic", refuse)
    model, history, _ = train_or_load("smoke", out_dir=tmp_path / "run", **settings)
    assert str(history) == str(trained) and not model.training  # str: an absent class's IoU is nan, never equal
    assert run_status("smoke", out_dir=tmp_path / "run", image_size=32, crop_size=32, iterations=2).state == "finished"
    with pytest.raises(RunFolderError, match=r"cannot write to .*other.* \(Read-only file system\): .* this one is "
                                             r"not started; train it in a folder this process can write to"):
        train_or_load("smoke", out_dir=tmp_path / "other", **settings)
    (tmp_path / "a file").write_text("not a folder")  # a folder that cannot be made fails as plainly
    with pytest.raises(RunFolderError, match=r"cannot create the run's folder .*a file/run \(.*\); train it in a"):
        train_or_load("smoke", out_dir=tmp_path / "a file" / "run", **settings)


def test_another_users_training_is_waited_for_not_called_unstarted(tmp_path, capsys,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A classroom's trial (one Unix user per learner, a shared writable folder): while one learner trained a run,
    another could not open its lock for writing, took the folder for a read-only share and was told the run was
    "interrupted". The other user's lock is now seen read-only: the process waits (bounded) and then judges."""
    import errno
    import threading
    import time

    from filelock import FileLock

    from deeplab_edu.engine import runs
    from deeplab_edu.engine.runs import RunFolderError, run_status, train_or_load

    folder = tmp_path / "run"
    folder.mkdir()
    lock_file = folder / "train.lock"

    class OtherUsersLock:  # what this process meets: a lock file another user created (0644)
        def __init__(self, *args: object) -> None:
            self.lock_file = str(lock_file)

        def acquire(self, timeout: float = 0) -> None:
            raise OSError(errno.EACCES, "Permission denied", self.lock_file)

    held = FileLock(str(lock_file), thread_local=False)  # (released by a timer's thread below)
    held.acquire()  # "another user's" trainer
    monkeypatch.setattr(runs, "_run_lock", lambda out_dir: OtherUsersLock())
    monkeypatch.setattr(runs, "_POLL_S", 0.05)
    settings = dict(image_size=32, crop_size=32, iterations=2, progress=False)
    assert run_status("smoke", out_dir=folder, **settings).state == "busy"
    with pytest.raises(TimeoutError, match="another user's process has been training"):
        train_or_load("smoke", out_dir=folder, lock_timeout_s=0.2, **settings)
    threading.Timer(0.3, held.release).start()  # it stops (here: without finishing the run)
    start = time.monotonic()
    with pytest.raises(RunFolderError, match="this one is not started"):
        train_or_load("smoke", out_dir=folder, lock_timeout_s=30, **settings)
    assert time.monotonic() - start < 20
    assert "waiting for another user's process that trains" in capsys.readouterr().out
