"""The designed image-pooling experiment of chapter 10, section 7 (deeplab_edu.context_reach)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeplab_edu import context_reach as cr
from deeplab_edu import findings


def test_shore_scenes_follow_their_rule() -> None:
    """A boat only on water scenes and a car only on road scenes, drawn alike; far vehicles at least
    FAR_GAP pixels above the band, near ones on it."""
    g = torch.Generator().manual_seed(0)
    for far in (True, False):
        images, labels = cr.shore_scenes(64, 48, far=far, generator=g, noise=0.0)
        assert images.shape == (64, 3, 48, 48) and labels.shape == (64, 48, 48) and labels.dtype == torch.int64
        for image, label in zip(images, labels):
            water, road = bool((label == cr.WATER).any()), bool((label == cr.ROAD).any())
            assert water != road  # one band, of one kind
            vehicle = (label == cr.BOAT) | (label == cr.CAR)
            assert int(vehicle.sum()) == (48 // 6) * (48 // 3)  # one whole vehicle
            assert bool((label == cr.BOAT).any()) == water and bool((label == cr.CAR).any()) == road
            # boat and car pixels look the same: only the band tells them apart
            drawn = image[:, vehicle]
            assert torch.equal(drawn, torch.tensor([0.85, 0.2, 0.15]).view(3, 1).expand_as(drawn))
            rows = vehicle.any(1).nonzero().flatten()
            band_top = int(((label == cr.WATER) | (label == cr.ROAD)).any(1).nonzero().min())
            if far:
                assert band_top - (int(rows.max()) + 1) >= cr.FAR_GAP
            else:
                assert int(rows.min()) >= band_top  # on the band
    with pytest.raises(ValueError, match="size >= 24"):
        cr.shore_scenes(4, 16, far=True)


def test_the_probe_without_image_pooling_cannot_reach_the_band() -> None:
    """The footprint chapter 10 prints: 9 x 9 input pixels without image pooling, the whole scene with it."""
    for pooling, expected in ((False, 81), (True, 48 * 48)):
        probe = cr.ContextProbe(image_pooling=pooling)
        assert probe(torch.zeros(2, 3, 48, 48))["out"].shape == (2, 5, 48, 48)
        seen = cr.probe_footprint(probe)
        assert seen.shape == (48, 48) and int(seen.sum()) == expected
    for bad in ({"width": 0}, {"width": 2.5}, {"num_classes": 0}):
        with pytest.raises(ValueError, match="positive integer"):
            cr.ContextProbe(**bad)  # type: ignore[arg-type]


def test_scene_confusions_count_each_scene_apart() -> None:
    target = torch.tensor([[[0, 1], [2, 255]], [[1, 1], [0, 255]]])  # 255 ignored, whatever was predicted there
    pred = torch.tensor([[[0, 2], [2, 1]], [[1, 0], [0, 9]]])
    cms = findings.scene_confusions(pred, target, 3)
    assert cms.shape == (2, 3, 3) and cms.dtype == np.uint32
    assert cms[0].tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 1]]
    assert cms[1].tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="one shape"):
        findings.scene_confusions(pred[:1], target, 3)
    with pytest.raises(ValueError, match="one shape"):  # an (H, W) map is not H scenes
        findings.scene_confusions(pred[0], target[0], 3)
    # a label no class has is refused, as the ConfusionMatrix refuses it (it would be counted in the next scene)
    with pytest.raises(ValueError, match="target holds label 7"):
        findings.scene_confusions(pred, torch.where(target == 255, 7, target), 3)
    bad_pred = pred.clone()
    bad_pred[0, 0, 0] = 3  # where the target counts
    with pytest.raises(ValueError, match="pred holds labels outside"):
        findings.scene_confusions(bad_pred, target, 3)


def test_a_short_experiment_keeps_one_matrix_per_seed_and_scene_and_the_callers_random_stream() -> None:
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    result = cr.reach_experiment((0, 1), steps=2, val_scenes=3, progress=False)
    assert torch.equal(torch.rand(1), expected)  # the experiment's seeds did not move the caller's stream
    assert set(result.matrices) == set(cr.REACH_ARMS) and set(result.models) == set(cr.REACH_ARMS)
    for arm, cms in result.matrices.items():
        assert cms.shape == (2, 3, 5, 5) and int(cms[0, 0].sum()) == 48 * 48, arm
    rows = findings.findings_table(result.keyed(), cr.REACH_FINDINGS, n_boot=20)
    assert [r["finding"][1:3] for r in rows] == ["r1", "r2"]
    with pytest.raises(ValueError, match="needs seeds"):
        cr.reach_experiment((), progress=False)


@pytest.mark.slow
def test_image_pooling_names_far_vehicles_and_only_far_ones() -> None:
    """The finding chapter 10 shows, with one seed: far from the band, only the network with image
    pooling tells boats from cars; on the band, both do."""
    result = cr.reach_experiment((0,), val_scenes=40, progress=False)
    miou = {arm: 100 * findings.miou(cms[0].sum(0).astype(float)) for arm, cms in result.matrices.items()}
    assert miou["far, with image pooling"] > 97 and miou["far, without"] < 80, miou
    assert miou["near, with image pooling"] > 97 and miou["near, without"] > 97, miou
