"""Behaviours a mutation trial (stop 71) changed by hand without any test failing, each pinned here.

A helper made 96 small mutations of the package's key logic (metrics, findings, eq. 1, receptive fields,
ASPP, checkpoints, schedule, loss, transforms, CRF, the exercise checkers) and ran the tests covering each;
20 survived, 18 of them real behaviour changes (two were equivalent). The names keep the trial's ids (M
metrics, F findings, R receptive fields, P ASPP, C checkpoints, S schedule, L loss, X transforms, K CRF),
and each test failed with its mutant applied alone (stop 71's note lists the mutations): an ignore label of
one's own, a 95 % interval that is one, the seeds resampled, the warm-up's ramp, the fsync before a
checkpoint's rename, the CRF's approximate messages. M3 is a direct test of a mutant another file caught.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn


# ---------------------------------------------------------------- metrics
def test_M2_update_honours_its_own_ignore_index() -> None:
    from deeplab_edu.metrics import ConfusionMatrix

    cm = ConfusionMatrix(3, ignore_index=9)
    cm.update(torch.tensor([[0, 1, 2]]), torch.tensor([[0, 9, 2]]))
    out = cm.compute()
    assert out["pixels"] == 2 and out["miou"] == 1.0


def test_M3_a_class_predicted_but_absent_from_the_truth_counts_in_the_mean() -> None:
    from deeplab_edu.metrics import ConfusionMatrix

    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]))  # class 0: IoU 1/2; class 1: 0; class 2: absent
    assert cm.compute()["miou"] == pytest.approx(0.25)


def test_M9_no_net_gain_gives_nan_shares_not_negative_ones() -> None:
    from deeplab_edu.metrics import removed_errors_by_band

    base = {"all": {"pixels": 100, "wrong_pixels": 10}, 1: {"pixels": 20, "wrong_pixels": 5}}
    worse = {"all": {"pixels": 100, "wrong_pixels": 14}, 1: {"pixels": 20, "wrong_pixels": 6}}
    assert math.isnan(removed_errors_by_band(base, worse)[1]["removed"])


def test_M12_an_ignored_region_has_a_boundary_too() -> None:
    from deeplab_edu.metrics import trimap_target

    t = torch.zeros(9, 9, dtype=torch.long)
    t[:, 5:] = 255  # VOC's void: the labelled pixels next to it are boundary pixels
    assert (trimap_target(t, 1) != 255).nonzero()[:, 1].unique().tolist() == [3, 4]


# ---------------------------------------------------------------- findings
def _confusions(rng: np.random.Generator) -> np.ndarray:
    """Confusion matrices of 3 seeds x 20 scenes x 4 classes, mostly right (300 more on the diagonal)."""
    base = rng.integers(0, 30, (3, 20, 4, 4)).astype(np.float64)
    base[:, :, range(4), range(4)] += 300
    return base


def test_F4_a_lower_is_better_finding_is_reproduced_when_the_variant_is_lower() -> None:
    from deeplab_edu.findings import Finding, findings_table

    base = _confusions(np.random.default_rng(0))
    worse = base.copy()
    worse[:, :, 0, 1] += 200  # every seed and scene gets worse: mIoU falls
    f = Finding("x", "t", ("A", "v"), ("B", "v"), "miou", "src", None, direction=-1)
    row = findings_table({"A|v|all": base, "B|v|all": worse}, [f], n_boot=200)[0]
    assert row["_high"] < 0 and row["verdict"] == "reproduced"


def test_F6_the_bootstrap_resamples_seeds() -> None:
    from deeplab_edu.findings import bootstrap_difference, miou

    base = np.zeros((3, 5, 2, 2))
    base[..., 0, 0], base[..., 1, 1], base[..., 0, 1] = 50, 50, 10
    variant = base.copy()
    variant[0, :, 0, 1] = 0  # only seed 0 gains; the scenes of a seed are alike
    diff, lo, hi = bootstrap_difference(base, variant, miou, n_boot=300)
    assert lo < diff < hi  # seed draws spread the replicates (without them every replicate is the observed one)


def test_F7_the_interval_is_the_requested_level() -> None:
    from deeplab_edu.findings import bootstrap_difference, miou

    rng = np.random.default_rng(1)
    base = _confusions(rng)
    variant = base + rng.integers(0, 20, base.shape)
    _, lo, hi, samples = bootstrap_difference(base, variant, miou, n_boot=400, level=0.95, return_samples=True)
    np.testing.assert_allclose((lo, hi), np.nanquantile(samples, [0.025, 0.975]), rtol=1e-12)


# ---------------------------------------------------------------- receptive field
def test_R4_same_padding_of_a_dilated_conv() -> None:
    from deeplab_edu.receptive_field import receptive_field_of

    rf = receptive_field_of(nn.Sequential(nn.Conv2d(1, 1, 3, padding="same", dilation=4)))
    assert (rf.size, rf.padding) == (9, 4)


# ---------------------------------------------------------------- ASPP
@pytest.mark.parametrize("rate", range(1, 8))
def test_P7_the_1x1_shortcut_equals_the_conv_at_every_rate(rate: int) -> None:
    from deeplab_edu.models.aspp import atrous_conv

    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, padding=rate, dilation=rate, groups=4, bias=False)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(atrous_conv(conv, x), conv(x))


# ---------------------------------------------------------------- checkpoint
def test_C4_a_checkpoint_is_flushed_to_disk_before_its_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from deeplab_edu.engine import checkpoint as ck

    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    ck.save_checkpoint({"model": {}, "iteration": 1}, tmp_path, 1)
    assert synced  # the checkpoint's bytes reach the disk before os.replace names them


# ---------------------------------------------------------------- schedule, loss, trainer
def test_S2_warmup_is_a_linear_ramp_to_the_poly_value() -> None:
    from deeplab_edu.engine.schedule import poly_factor

    assert poly_factor(5, 100, warmup_iters=10, warmup_factor=0.1) == pytest.approx(0.95**0.9 * 0.55)
    assert poly_factor(9, 100, warmup_iters=10, warmup_factor=0.1) < poly_factor(9, 100)


def test_S5_no_decay_norm_frees_biases_and_norm_weights() -> None:
    from deeplab_edu.engine.schedule import param_groups
    from test_engine_fixtures import TinyNet

    groups = param_groups(TinyNet(), lr=0.1, weight_decay=1e-4, no_decay_norm=True)
    for g in groups:
        assert all((p.ndim <= 1) == (g["weight_decay"] == 0.0) for p in g["params"]), g["name"]


def test_L2_the_loss_skips_the_data_sets_own_ignore_label(tmp_path: Path) -> None:
    from deeplab_edu.engine.trainer import Trainer
    from test_engine_fixtures import TinyNet, TinyScenes, tiny_config

    class Ignore9(TinyScenes):
        ignore_index = 9

        def __getitem__(self, i: int):
            img, mask = super().__getitem__(i)
            mask[:4] = 9
            return img, mask

    trainer = Trainer(tiny_config(tmp_path, iterations=1, eval_every=1, ckpt_every=1), model=TinyNet(),
                      train_set=Ignore9(8), val_set=Ignore9(2, augment=False))
    assert trainer.criterion.ignore_index == 9
    trainer.fit()


# ---------------------------------------------------------------- transforms
def test_X6_the_no_pad_crop_reaches_every_offset() -> None:
    from deeplab_edu.data.transforms import RandomCropNoPad

    mask = (10 * torch.arange(6).view(6, 1) + torch.arange(6).view(1, 6)).contiguous()  # row, column
    image = mask.float().expand(3, 6, 6).contiguous()
    torch.manual_seed(0)
    corners = {int(RandomCropNoPad(5)(image, mask)[1][0, 0]) for _ in range(60)}
    assert corners == {0, 1, 10, 11}  # top and left each 0 or 1


def test_X7_eval_padding_uses_the_given_ignore_label() -> None:
    from deeplab_edu.data.transforms import eval_transform

    image, mask = torch.rand(3, 4, 4), torch.zeros(4, 4, dtype=torch.long)
    _, y = eval_transform(pad_to=6, ignore_index=9, normalize=False)(image, mask)
    assert (y[4:] == 9).all() and (y[:, 4:] == 9).all()


# ---------------------------------------------------------------- CRF
def test_K4_unary_of_a_small_probability() -> None:
    from deeplab_edu.crf import unary_from_probs

    assert unary_from_probs(torch.tensor([1e-6, 1.0])).tolist() == pytest.approx([-math.log(1e-6), 0.0])


def test_K6_the_smoothness_blur_reaches_its_tails() -> None:
    from deeplab_edu.crf import CRFParams, kernel_matrices, message_passing_approx, message_passing_exact

    torch.manual_seed(0)
    image = torch.rand(3, 24, 24)
    q = torch.softmax(torch.randn(2, 24, 24), 0)
    params = CRFParams(w_bilateral=0.0, w_spatial=3.0, theta_gamma=3.0)
    exact = message_passing_exact(q, kernel_matrices(image, params))  # 3 sigma would be 1e-3 off, 4 sigma 3e-5
    torch.testing.assert_close(message_passing_approx(q, image, params), exact, atol=1e-4, rtol=1e-4)


def test_K8_symmetric_normalisation_is_not_pixel_normalisation() -> None:
    from deeplab_edu.crf import CRFParams, kernel_matrices, message_passing_approx, message_passing_exact

    torch.manual_seed(0)
    image = torch.rand(3, 12, 12)
    q = torch.softmax(torch.randn(2, 12, 12), 0)
    params = CRFParams(w_bilateral=0.0, w_spatial=3.0, normalization="symmetric")
    exact = message_passing_exact(q, kernel_matrices(image, params))
    torch.testing.assert_close(message_passing_approx(q, image, params), exact, atol=1e-3, rtol=1e-3)
