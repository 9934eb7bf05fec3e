"""The designed experiments of chapter 10, sections 7 (image pooling) and 8 (multi-grid): deeplab_edu.context_reach."""

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


def test_mid_scenes_put_the_vehicle_between_the_two_fields() -> None:
    """With gap=MID_GAP every vehicle pixel lies 15 to 28 rows from the band (the GridProbe's reach:
    14 without multi-grid, 30 with it); a gap that does not fit, or a near scene with a gap, is refused."""
    images, labels = cr.shore_scenes(300, far=True, gap=cr.MID_GAP, generator=torch.Generator().manual_seed(0))
    band_top = 48 - 48 // 4
    assert cr.BAND_TOP == band_top and cr.VEHICLE_ROWS == 48 // 6
    assert bool(((labels == cr.WATER) | (labels == cr.ROAD))[:, band_top:].all())
    distances = set()
    for label in labels:
        rows = ((label == cr.BOAT) | (label == cr.CAR)).any(1).nonzero().flatten()
        distances.update(band_top - rows.tolist()[i] for i in (0, -1))
    assert min(distances) == 15 and max(distances) == 28, sorted(distances)
    for kwargs in ({"far": False, "gap": (14, 20)}, {"far": True, "gap": (20, 14)}, {"far": True, "gap": (0, 29)},
                   {"far": True, "gap": (-1, 3)}, {"far": True, "gap": (14.5, 20)}):
        with pytest.raises(ValueError, match="gap="):
            cr.shore_scenes(2, 48, **kwargs)  # type: ignore[arg-type]


def test_multi_grid_reaches_the_band_from_mid_vehicles_with_the_same_weights() -> None:
    """The footprints chapter 10, section 8 shows: 29 x 29 input pixels with no multi-grid (1, 1, 1), 61 x 61
    with multi-grid (1, 2, 4), the same number of weights; from a mid vehicle's nearest row the first sees no
    band row, from its farthest row the second does."""
    probes = {mg: cr.GridProbe(mg) for mg in ((1, 1, 1), (1, 2, 4))}
    assert probes[(1, 1, 1)](torch.zeros(2, 3, 48, 48))["out"].shape == (2, 5, 48, 48)
    sizes = {mg: sum(p.numel() for p in probe.parameters()) for mg, probe in probes.items()}
    assert sizes[(1, 1, 1)] == sizes[(1, 2, 4)], sizes
    for mg, side in (((1, 1, 1), 29), ((1, 2, 4), 61)):
        assert int(cr.probe_footprint(probes[mg], 128, (64, 64)).sum()) == side * side
    band_top = 48 - 48 // 4
    nearest, farthest = band_top - 1 - cr.MID_GAP[0], band_top - cr.MID_GAP[1] - 48 // 6
    assert not cr.probe_footprint(probes[(1, 1, 1)], 48, (nearest, 24))[band_top:].any()
    assert cr.probe_footprint(probes[(1, 2, 4)], 48, (farthest, 24))[band_top:].any()
    for bad in ({"multi_grid": (1, 2)}, {"multi_grid": (1, 0, 4)}, {"rate": 0}, {"width": 1.5}):
        with pytest.raises(ValueError, match="GridProbe"):
            cr.GridProbe(**bad)  # type: ignore[arg-type]


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
    grid = cr.grid_experiment((0,), steps=2, val_scenes=2, progress=False)
    assert set(grid.matrices) == set(cr.GRID_ARMS) and set(grid.val) == {"mid", "near"}
    assert all(isinstance(m, cr.GridProbe) for m in grid.models.values())
    rows = findings.findings_table(grid.keyed(), cr.GRID_FINDINGS, n_boot=20)
    assert [r["finding"][1:3] for r in rows] == ["m1", "m2"]
    with pytest.raises(ValueError, match="grid_experiment needs seeds"):
        cr.grid_experiment((), progress=False)


def test_a_probes_reach_is_half_its_footprints_side() -> None:
    """probe_reach: 4 pixels for the probe without image pooling (9 x 9), 14 and 30 for the grid probes (29 and
    61 across, GridProbe's docstring); a field the scene does not hold is refused, not measured short."""
    assert cr.probe_reach(cr.ContextProbe(image_pooling=False)) == 4
    assert cr.probe_reach(cr.GridProbe((1, 1, 1))) == 14 and cr.probe_reach(cr.GridProbe((1, 2, 4))) == 30
    with pytest.raises(ValueError, match="reaches the edge"):
        cr.probe_reach(cr.ContextProbe(image_pooling=True))
    with pytest.raises(ValueError, match="reaches the edge"):
        cr.probe_reach(cr.GridProbe((1, 2, 4)), size=48)


def test_a_probe_is_scored_per_scene_and_over_all_pixels() -> None:
    """probe_confusions counts each scene apart, as the experiments keep them; probe_miou pools every pixel
    (exercises 10.4 and 10.5), and a probe that calls every pixel background scores the background's IoU alone."""
    scenes = cr.ShoreScenes(3, far=True, gap=(4, 4))

    class Background(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            out = torch.zeros(len(x), 5, *x.shape[-2:])
            out[:, cr.BACKGROUND] = 1
            return {"out": out}

    cms = cr.probe_confusions(Background(), scenes)
    assert cms.shape == (3, 5, 5) and cms.dtype == np.uint32 and int(cms[0].sum()) == 48 * 48
    assert cms[:, :, 1:].sum() == 0  # nothing predicted but background
    background = (scenes.labels == cr.BACKGROUND).sum().item() / scenes.labels.numel()  # background's IoU
    present = len(torch.unique(scenes.labels))  # every class in the truth counts, with an IoU of 0 but background
    assert cr.probe_miou(Background(), scenes) == pytest.approx(background / present)


@pytest.mark.slow
def test_image_pooling_names_far_vehicles_and_only_far_ones() -> None:
    """The finding chapter 10 shows, with one seed: far from the band, only the network with image
    pooling tells boats from cars; on the band, both do."""
    result = cr.reach_experiment((0,), val_scenes=40, progress=False)
    miou = {arm: 100 * findings.miou(cms[0].sum(0).astype(float)) for arm, cms in result.matrices.items()}
    assert miou["far, with image pooling"] > 97 and miou["far, without"] < 80, miou
    assert miou["near, with image pooling"] > 97 and miou["near, without"] > 97, miou


@pytest.mark.slow
def test_multi_grid_names_mid_vehicles_and_only_there_makes_a_difference() -> None:
    """The finding chapter 10, section 8 shows, with one seed: 15-28 px from the band, only multi-grid's
    field reaches it; on the band both arms name the vehicles."""
    result = cr.grid_experiment((0,), val_scenes=40, progress=False)
    miou = {arm: 100 * findings.miou(cms[0].sum(0).astype(float)) for arm, cms in result.matrices.items()}
    assert miou["mid, multi-grid (1, 2, 4)"] > 97 and miou["mid, no multi-grid (1, 1, 1)"] < 80, miou
    assert miou["near, multi-grid (1, 2, 4)"] > 97 and miou["near, no multi-grid (1, 1, 1)"] > 97, miou


def test_the_figure_titles_its_columns_and_shows_what_a_probe_sees() -> None:
    """Chapter 10's figure of sections 7 and 8: a row per scene, the columns titled once."""
    import matplotlib.pyplot as plt

    from deeplab_edu.viz.context_reach import first_vehicles, plot_probe_scenes, vehicle_centre

    scenes = cr.ShoreScenes(8, far=True, gap=cr.MID_GAP, seed=1)
    shown = first_vehicles(scenes)
    assert [bool((scenes.labels[i] == k).any()) for i, k in zip(shown, (cr.BOAT, cr.CAR))] == [True, True]
    probe = cr.GridProbe((1, 1, 1)).eval()
    fig = plot_probe_scenes(scenes, shown, {"labels": probe}, footprints={"sees": probe}, title="t")
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert titles == ["sees", "truth", "labels"] and len(fig.axes) == 6
    assert all(not ax.get_title() for ax in fig.axes[3:])  # titled once
    assert len(fig.axes[0].patches) == 1  # the footprint's frame
    plt.close(fig)
    fig = plot_probe_scenes(scenes, shown, {"labels": probe})  # no footprints: the scene itself
    assert [ax.get_title() for ax in fig.axes[:3]] == ["scene", "truth", "labels"]
    plt.close(fig)
    with pytest.raises(ValueError, match="no boat or car"):
        vehicle_centre(torch.zeros(48, 48, dtype=torch.int64))
    with pytest.raises(ValueError, match="need a boat and a car"):
        first_vehicles(cr.ShoreScenes(1, far=True, seed=0))


def test_the_multi_grid_arms_are_named_as_chapter_03_names_them() -> None:
    """Chapter 03's unit rates are multi-grid's factors, (1, 1, 1) as much as (1, 2, 4); the arm without
    multi-grid was named 'unit rates (1, 1, 1)', a third meaning of the term (an audit of the course's terms)."""
    assert all("unit rates" not in arm for arm in cr.GRID_ARMS), list(cr.GRID_ARMS)
    assert {arm for arm, (_, multi_grid) in cr.GRID_ARMS.items() if multi_grid == (1, 1, 1)} == {
        "mid, no multi-grid (1, 1, 1)", "near, no multi-grid (1, 1, 1)"}
    assert {name for f in cr.GRID_FINDINGS for name in (f.baseline[0], f.variant[0])} <= set(cr.GRID_ARMS)
