"""The fully connected CRF (deeplab_edu.crf) and its permutohedral filter, on tiny images."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from deeplab_edu.crf import (
    DEEPLAB_RELEASED,
    CRFParams,
    DenseCRF,
    dense_crf,
    free_energy,
    kernel_maps,
    kernel_matrices,
    mean_field,
    message_passing_approx,
    message_passing_exact,
    unary_from_logits,
    unary_from_probs,
)
from deeplab_edu.crf_eval import coarse_scores, evaluate_crf, grid_search
from deeplab_edu.metrics import boundary_band
from deeplab_edu.permutohedral import PermutohedralLattice


def two_colour_scene(h: int = 17, w: int = 23, edge: int = 11, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Red left of column ``edge``, blue right of it, a little noise; returns (image, labels)."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(3, h, w)
    img[0, :, :edge] = 0.85
    img[2, :, edge:] = 0.75
    img = (img + 0.02 * torch.randn(img.shape, generator=g)).clamp(0, 1)
    labels = (torch.arange(w) >= edge).long().expand(h, w).clone()
    return img, labels


def blurred_unary(h: int, w: int, boundary: float, width: float = 3.0) -> torch.Tensor:
    """Two-class unary whose soft boundary sits at column ``boundary`` (not at the colour edge)."""
    p = torch.sigmoid((torch.arange(w, dtype=torch.float32) - boundary) / width).expand(h, w)
    return unary_from_probs(torch.stack([1 - p, p]))


def test_crf_moves_a_misplaced_blurred_boundary_onto_the_colour_edge() -> None:
    img, labels = two_colour_scene()
    unary = blurred_unary(*labels.shape, boundary=15.0)  # 4 columns too far right
    before = (unary.argmin(0) == labels).float().mean()
    q, history = mean_field(unary, img, method="exact", return_history=True)
    after = (q.argmax(0) == labels).float().mean()
    assert before < 0.85 and after == 1.0
    # converged, not oscillating: the iteration before the last agrees too
    assert torch.equal(history[-2].argmax(0), labels) and (history[-1] - history[-2]).abs().max() < 0.01
    # and the belief is sharper: right of the edge, the blurry unary is unsure, the CRF is not
    p0 = torch.softmax(-unary, 0)
    assert (q[1, :, 11:15] > 0.9).all() and (p0[1, :, 11:15] < 0.5).all()


def test_crf_preserves_a_confident_correct_prediction() -> None:
    img, labels = two_colour_scene(h=15, w=21, edge=9)
    probs = torch.nn.functional.one_hot(labels, 2).permute(2, 0, 1).float() * 0.98 + 0.01
    q = mean_field(unary_from_probs(probs), img)
    assert torch.equal(q.argmax(0), labels)
    assert q.max(0).values.min() > 0.95


def test_probabilities_sum_to_one_for_batch_size_one_and_odd_sizes() -> None:
    torch.manual_seed(1)
    for h, w in ((1, 1), (1, 7), (9, 13)):
        img = torch.rand(1, 3, h, w)
        logits = torch.randn(1, 4, h, w) * 3
        for method in ("exact", "approx"):
            q = dense_crf(logits, img, method=method)
            assert q.shape == (1, 4, h, w)
            assert torch.allclose(q.sum(1), torch.ones(1, h, w), atol=1e-5)
            assert (q >= 0).all()


def test_unbatched_and_batched_inputs_agree() -> None:
    img, labels = two_colour_scene()
    unary = blurred_unary(*labels.shape, boundary=14.0)
    single = mean_field(unary, img)
    batch = mean_field(torch.stack([unary, unary.flip(-1)]), torch.stack([img, img.flip(-1)]))
    assert single.shape == unary.shape and batch.shape == (2, *unary.shape)
    assert torch.allclose(batch[0], single, atol=1e-6)
    assert torch.allclose(batch[1], single.flip(-1), atol=1e-4)


def test_uint8_and_float_images_give_the_same_result() -> None:
    img, labels = two_colour_scene()
    img = (img * 255).round() / 255
    unary = blurred_unary(*labels.shape, boundary=14.0)
    q_float = mean_field(unary, img)
    q_uint8 = mean_field(unary, (img * 255).round().to(torch.uint8))
    assert torch.allclose(q_float, q_uint8, atol=1e-5)


def test_zero_iterations_is_the_softmax_of_the_unary() -> None:
    img, labels = two_colour_scene()
    unary = blurred_unary(*labels.shape, boundary=14.0)
    q = mean_field(unary, img, DEEPLAB_RELEASED.replace(iterations=0))
    assert torch.allclose(q, torch.softmax(-unary, 0))


@pytest.mark.parametrize("normalization", ["pixel", "symmetric"])
def test_exact_and_lattice_agree_on_small_inputs(normalization: str) -> None:
    img, labels = two_colour_scene(h=19, w=27, edge=13, seed=3)
    unary = blurred_unary(*labels.shape, boundary=17.0)
    params = CRFParams(theta_alpha=12.0, normalization=normalization)  # type: ignore[arg-type]
    q_exact = mean_field(unary, img, params, method="exact")
    q_approx = mean_field(unary, img, params, method="approx")
    assert (q_exact.argmax(0) == q_approx.argmax(0)).float().mean() >= 0.99
    assert (q_exact - q_approx).abs().mean() < 0.02


def test_lattice_approximates_a_normalised_gaussian_filter() -> None:
    torch.manual_seed(0)
    # features of a smooth two-region image: 2 position + 3 colour dimensions, in units of the std
    img, _ = two_colour_scene(h=12, w=16, edge=8)
    ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), indexing="ij")
    feats = torch.cat([torch.stack([ys, xs], -1).reshape(-1, 2) / 6.0, img.reshape(3, -1).T * 255 / 20.0], 1)
    values = torch.rand(feats.shape[0], 3)
    k = torch.exp(-0.5 * torch.cdist(feats, feats) ** 2)
    exact = (k @ values) / k.sum(1, keepdim=True)
    lat = PermutohedralLattice(feats)
    approx = lat.filter(values) / lat.filter(torch.ones(feats.shape[0], 1))
    # measured: mean 0.0025, max 0.009 (without the blur step: 0.019 and 0.12)
    assert (approx - exact).abs().mean() < 0.01
    assert (approx - exact).abs().max() < 0.05


def test_exact_messages_match_the_definition() -> None:
    img, labels = two_colour_scene(h=5, w=6, edge=3)
    params = CRFParams(theta_alpha=4.0, normalization="none", include_self=False, w_bilateral=0.5, w_spatial=0.2)
    weights = kernel_matrices(img, params)
    assert torch.allclose(weights, weights.T) and torch.all(weights.diagonal() == 0)
    # one entry by hand: pixels (0, 0) and (1, 2)
    p, q = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 2.0])
    ci, cj = img[:, 0, 0] * 255, img[:, 1, 2] * 255
    d2 = ((p - q) ** 2).sum()
    expected = 0.5 * torch.exp(-d2 / (2 * 4.0**2) - ((ci - cj) ** 2).sum() / (2 * 5.0**2)) + 0.2 * torch.exp(
        -d2 / (2 * 3.0**2)
    )
    assert torch.isclose(weights[0, 1 * 6 + 2], expected, rtol=1e-5)
    beliefs = torch.softmax(torch.randn(2, 5, 6), 0)
    msg = message_passing_exact(beliefs, weights)
    assert torch.allclose(msg[:, 0, 0], (weights[0] * beliefs.reshape(2, -1)).sum(1), atol=1e-6)


def test_pixel_normalisation_makes_messages_averages() -> None:
    img, _ = two_colour_scene(h=6, w=7, edge=3)
    weights = kernel_matrices(img, CRFParams(w_bilateral=1.0, w_spatial=0.0))
    assert torch.allclose(weights.sum(1), torch.ones(42), atol=1e-5)
    msg = message_passing_approx(torch.ones(2, 6, 7), img, CRFParams(w_bilateral=1.0, w_spatial=0.0))
    assert torch.allclose(msg, torch.ones(2, 6, 7), atol=1e-4)


@pytest.mark.parametrize("contrast", [25, 31, 40])
def test_a_pixel_unlike_all_its_neighbours_still_averages_them(contrast: int) -> None:
    # an audit (stop 68): without the pixel itself, a row's sum below 1e-20 was divided by 1e-20, so a pixel
    # 31 levels from its one neighbour received 1e-5 of a message, and 40 levels 2e-22, instead of an average
    image = torch.tensor([[[0, contrast]]] * 3, dtype=torch.uint8)  # 1 x 2 pixels
    weights = kernel_matrices(image.double() / 255, CRFParams(include_self=False, w_spatial=0.0, w_bilateral=1.0))
    assert weights.sum(1).tolist() == pytest.approx([1.0, 1.0])


def test_free_energy_never_increases_in_the_guaranteed_case() -> None:
    # Symmetric normalisation keeps the Gaussian kernel positive semi-definite, so with the self
    # term the Potts pairwise term is concave and each parallel update lowers F (Kraehenbuehl &
    # Koltun 2013); check it on random scenes.
    params = CRFParams(normalization="symmetric", theta_alpha=8.0, w_bilateral=6.0, w_spatial=4.0)
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        img = torch.rand(3, 9, 11, generator=g)
        unary = torch.randn(3, 9, 11, generator=g).abs() * 2
        _, history = mean_field(unary, img, params, method="exact", return_history=True)
        energies = torch.stack([free_energy(unary, q, img, params) for q in history])
        assert (energies[1:] <= energies[:-1] + 1e-4).all(), energies


def test_free_energy_falls_with_the_released_parameters_on_a_toy_scene() -> None:
    img, labels = two_colour_scene()
    unary = blurred_unary(*labels.shape, boundary=15.0)
    _, history = mean_field(unary, img, method="exact", return_history=True)
    energies = torch.stack([free_energy(unary, q, img) for q in history])
    # 'pixel' weights are not symmetric, so this is the energy of their symmetrised version:
    # allow 0.1 % slack per step, and require a clear overall decrease
    assert (energies[1:] <= energies[:-1] * (1 + 1e-3) + 1e-3).all(), energies
    assert energies[-1] < 0.7 * energies[0]


def test_free_energy_equals_kl_up_to_log_z_on_a_tiny_model() -> None:
    # 3 pixels, 2 labels: enumerate all 8 labelings and compare F(Q) + log Z with KL(Q || P)
    img = torch.rand(3, 1, 3)
    unary = torch.randn(2, 1, 3)
    params = CRFParams(normalization="none", include_self=False, w_bilateral=0.7, w_spatial=0.4, theta_alpha=2.0)
    w = kernel_matrices(img, params)
    q = torch.softmax(torch.randn(2, 1, 3), 0)
    energies, log_q = [], []
    for code in range(8):
        x = [(code >> i) & 1 for i in range(3)]
        e = sum(unary[x[i], 0, i] for i in range(3))
        e = e + sum(w[i, j] * (x[i] != x[j]) for i in range(3) for j in range(i + 1, 3))
        energies.append(e)
        log_q.append(sum(torch.log(q[x[i], 0, i]) for i in range(3)))
    energies_t, log_q_t = torch.stack(energies), torch.stack(log_q)
    log_z = torch.logsumexp(-energies_t, 0)
    kl = (log_q_t.exp() * (log_q_t + energies_t + log_z)).sum()
    assert torch.isclose(free_energy(unary, q, img, params) + log_z, kl, atol=1e-5)


def test_module_wrapper_runs_without_gradients() -> None:
    img, labels = two_colour_scene()
    logits = -blurred_unary(*labels.shape, boundary=14.0)[None].requires_grad_(True)
    out = DenseCRF()(logits, img[None])
    assert not out.requires_grad and out.shape == logits.shape
    assert "w_bilateral=4.0" in repr(DenseCRF())


def test_unary_helpers() -> None:
    logits = torch.randn(2, 3, 4, 5)
    probs = logits.exp() / logits.exp().sum(1, keepdim=True)  # theta = -log P with P the softmax of the scores
    assert torch.allclose(unary_from_logits(logits), -probs.log(), atol=1e-5)
    probs = torch.softmax(logits, 1)
    assert torch.allclose(unary_from_probs(probs), -probs.log(), atol=1e-5)
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        unary_from_probs(logits * 10)


@pytest.mark.parametrize(
    ("unary", "image", "error", "match"),
    [
        (torch.zeros(2, 5, 6), torch.zeros(3, 5, 7), ValueError, "size"),
        (torch.zeros(1, 2, 5, 6), torch.zeros(2, 3, 5, 6), ValueError, "batch size"),
        (torch.zeros(2, 5, 6), torch.zeros(1, 3, 5, 6), ValueError, "dimensions"),
        (torch.zeros(2, 5, 6), torch.zeros(4, 5, 6), ValueError, "3 colour channels"),
        (torch.zeros(2, 5, 6, dtype=torch.long), torch.zeros(3, 5, 6), TypeError, "floating-point"),
        (torch.zeros(2, 5, 6), torch.zeros(3, 5, 6, dtype=torch.int32), TypeError, "uint8"),
        (torch.zeros(2, 5, 6), torch.full((3, 5, 6), 200.0), ValueError, "\\[0, 1\\]"),
        (torch.full((2, 5, 6), float("nan")), torch.zeros(3, 5, 6), ValueError, "NaN"),
        (torch.zeros(5, 6), torch.zeros(3, 5, 6), ValueError, "shape"),
    ],
)
def test_bad_inputs_raise_clear_errors(unary: torch.Tensor, image: torch.Tensor, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        mean_field(unary, image)


def test_bad_parameters_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="theta_beta"):
        CRFParams(theta_beta=0)
    with pytest.raises(ValueError, match="iterations"):
        CRFParams(iterations=-1)
    with pytest.raises(ValueError, match="normalization"):
        CRFParams(normalization="global")  # type: ignore[arg-type]
    img, labels = two_colour_scene(h=4, w=4, edge=2)
    with pytest.raises(ValueError, match="method"):
        mean_field(torch.zeros(2, 4, 4), img, method="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="include_self"):
        mean_field(torch.zeros(2, 4, 4), img, CRFParams(include_self=False), method="approx")
    with pytest.raises(ValueError, match="too large"):
        kernel_matrices(torch.zeros(3, 200, 200))


def test_free_energy_of_a_history_equals_one_by_one() -> None:
    img, labels = two_colour_scene(h=7, w=9, edge=4)
    unary = blurred_unary(7, 9, boundary=6.0)
    _, history = mean_field(unary, img, CRFParams(iterations=3), method="exact", return_history=True)
    together = free_energy(unary, history, img)
    assert together.shape == (4,)
    assert torch.allclose(together, torch.stack([free_energy(unary, q, img) for q in history]))


def test_kernel_maps_peak_at_the_pixel_and_respect_colour() -> None:
    img, _ = two_colour_scene(h=9, w=12, edge=6)
    maps = kernel_maps(img, (4, 3))
    assert maps["bilateral"][4, 3] == 1 and maps["spatial"][4, 3] == 1
    # same distance, other colour: the appearance kernel is (almost) zero, the smoothness one is not
    assert maps["bilateral"][4, 7] < 1e-6 < maps["bilateral"][4, 0]
    assert torch.isclose(maps["spatial"][4, 7], torch.exp(torch.tensor(-16 / 18)), atol=1e-6)
    with pytest.raises(ValueError, match="outside"):
        kernel_maps(img, (9, 0))


def test_coarse_scores_and_boundary_band() -> None:
    mask = torch.zeros(20, 21, dtype=torch.long)
    mask[2:18, 3:17] = 2
    mask[0, 0] = 255
    logits = coarse_scores(mask, 3)
    assert logits.shape == (3, 20, 21)
    assert torch.equal(logits.argmax(0)[8:12, 8:12], torch.full((4, 4), 2))  # interiors survive
    # an ignored pixel adds to no class (it is not counted as background): only class 0 of its cell differs
    as_background = coarse_scores(mask.masked_fill(mask == 255, 0), 3)
    assert torch.isfinite(logits).all() and torch.equal(as_background[1:], logits[1:])
    assert (as_background[0] - logits[0]).min() >= 0 and (as_background[0, 0, 0] - logits[0, 0, 0]) > 0
    # the trimap band: the pixels on both sides of a change (columns 2 and 3), widened by the width
    band = boundary_band(mask.masked_fill(mask == 255, 0), 1)
    assert band[10, 1:5].all() and not band[10, 5] and not band[10, 0]
    assert boundary_band(mask, 0)[10, 2:4].all() and not boundary_band(mask, 0)[10, 1]
    with pytest.raises(ValueError, match=r"mask: target holds label 2, outside \[0, 2\)"):
        coarse_scores(mask, 2)
    with pytest.raises(ValueError, match="width"):
        boundary_band(mask, -1)


def test_evaluate_and_grid_search_on_tiny_scenes() -> None:
    from deeplab_edu.data import ProceduralScenes

    data = ProceduralScenes(length=2, size=32, seed=3)
    items = [data[i] for i in range(2)]
    scores = evaluate_crf(items, data.num_classes, CRFParams(iterations=3))
    assert scores.images == 2 and 0 < scores.miou_before <= 1 and 0 < scores.band_miou_after <= 1
    assert set(scores.as_row()) == {"mIoU before", "mIoU after", "band mIoU before", "band mIoU after"}
    best, tried = grid_search(items, data.num_classes, w_bilateral=(0.0, 4.0), theta_alpha=(20,), theta_beta=(5,),
                              base=CRFParams(iterations=3), progress=False)
    assert len(tried) == 2 and best.w_bilateral in (0.0, 4.0)
    assert max(m for _, m in tried) == evaluate_crf(items, data.num_classes, best).miou_after
    with pytest.raises(ValueError, match="empty"):
        evaluate_crf([], 3)


def test_figures_and_widget_build_without_a_front_end() -> None:
    import matplotlib.pyplot as plt

    from deeplab_edu.viz import crf as viz

    img, labels = two_colour_scene(h=12, w=14, edge=7)
    unary = blurred_unary(12, 14, boundary=9.0)
    palette = [(255, 0, 0), (0, 0, 255)]
    q, history = mean_field(unary, img, CRFParams(iterations=2), return_history=True)
    figs = [
        viz.plot_kernels(img, (3, 3)),
        viz.plot_refinement(img, unary.argmin(0), q.argmax(0), labels, palette),
        viz.plot_free_energy([3.0, 2.0, 1.5]),
        viz.plot_iterations(history, 1, steps=(0, 2)),
        viz.crf_figure(img, unary, palette, CRFParams(iterations=2), target=labels),
    ]
    assert "pixel accuracy" in figs[-1].axes[2].get_title()
    for fig in figs:
        plt.close(fig)
    box = viz.crf_widget(img, unary, palette, CRFParams(iterations=2), target=labels)
    sliders = [w for row in box.children[0].children for w in row.children]
    # named for what they weigh (the accessibility audit: "w1" alone told a screen reader nothing)
    assert [s.description for s in sliders][:2] == ["w1 (appearance)", "θα (px)"] and len(sliders) == 6
    sliders[-1].value = 1  # moving a slider redraws without error
    plt.close("all")


def test_mean_field_update_is_the_potts_softmax():
    from deeplab_edu.crf import mean_field_update

    g = torch.Generator().manual_seed(0)
    unary, messages = torch.rand(3, 5, generator=g), torch.rand(3, 5, generator=g)
    q = mean_field_update(unary, messages)
    torch.testing.assert_close(q.sum(0), torch.ones(5))
    # the Potts update as Krahenbuhl & Koltun write it: label l pays the messages of every other label
    penalty = messages.sum(0, keepdim=True) - messages  # sum over l' != l of M(l')
    potts = torch.exp(-unary - penalty)
    torch.testing.assert_close(q, potts / potts.sum(0, keepdim=True))
    with pytest.raises(ValueError, match="same shape"):
        mean_field_update(unary, messages[:2])


def test_grid_edges_names_the_parameters_the_search_stopped_at() -> None:
    from deeplab_edu.crf_eval import grid_edges

    best = DEEPLAB_RELEASED.replace(w_bilateral=5.0, theta_alpha=60.0, theta_beta=13.0)
    grid = dict(w_bilateral=(3, 5), theta_alpha=(30, 60, 90), theta_beta=(13,))
    assert grid_edges(best, grid) == {"w_bilateral": "largest"}  # an axis of one value is no search
    assert grid_edges({"w_bilateral": 3, "theta_alpha": 30}, dict(w_bilateral=(3, 5), theta_alpha=(30, 60))) == {
        "w_bilateral": "smallest", "theta_alpha": "smallest"}
    with pytest.raises(KeyError):
        grid_edges({}, dict(w_bilateral=(3, 5)))


def test_the_crf_figure_takes_one_image_not_a_batch() -> None:
    # a batched unary passed mean_field, then the figure took argmin over the batch axis
    from deeplab_edu.viz import crf as viz

    img, labels = two_colour_scene(h=12, w=14, edge=7)
    unary = blurred_unary(12, 14, boundary=9.0)
    with pytest.raises(ValueError, match=r"one image's \(L, H, W\) scores, got shape \(1, 2, 12, 14\)"):
        viz.crf_figure(img[None], unary[None], [(255, 0, 0), (0, 0, 255)])


def test_recolour_objects_keeps_outlines_and_texture_and_changes_only_colours() -> None:
    from deeplab_edu.crf_eval import recolour_objects

    rng = torch.Generator().manual_seed(0)
    image = 0.3 + 0.4 * torch.rand(3, 12, 12, generator=rng)
    mask = torch.zeros(12, 12, dtype=torch.long)
    regions = {"2a": (slice(1, 4), slice(1, 4)), "2b": (slice(8, 11), slice(8, 11)), "3": (slice(1, 4), slice(8, 11))}
    for name, (rows, cols) in regions.items():  # two regions of class 2, one of class 3, and ignored clutter
        mask[rows, cols] = int(name[0])
    mask[8:11, 1:3] = 255
    kept = (mask == 0) | (mask == 255)

    def colours(out: torch.Tensor) -> dict[str, torch.Tensor]:  # a region's new colour: its shift plus its old mean
        found = {}
        for name, (rows, cols) in regions.items():
            after, before = out[:, rows, cols].flatten(1), image[:, rows, cols].flatten(1)
            unclipped = ((after > 0) & (after < 1)).all(0)
            assert unclipped.any(), name
            found[name] = (after - before)[:, unclipped].mean(1) + before.mean(1)
        return found

    for per in ("object", "class"):
        out = recolour_objects(image, mask, per, seed=7)
        assert out.shape == image.shape and out.dtype == image.dtype and 0 <= out.min() and out.max() <= 1
        assert torch.equal(out[:, kept], image[:, kept])  # background and ignored pixels as drawn
        assert torch.equal(out, recolour_objects(image, mask, per, seed=7))  # one seed, one result
        for rows, cols in regions.values():  # one shift per channel of a region: its texture stays (unless clipped)
            shift, inside = out[:, rows, cols] - image[:, rows, cols], out[:, rows, cols]
            unclipped = ((inside > 0) & (inside < 1)).all(0)
            assert (shift[:, unclipped] - shift[:, unclipped][:, :1]).abs().max() < 1e-5
    by_class, by_object = (colours(recolour_objects(image, mask, per, seed=7)) for per in ("class", "object"))
    assert torch.allclose(by_class["2a"], by_class["2b"])  # a class's regions look alike...
    assert not torch.allclose(by_object["2a"], by_object["2b"], atol=0.05)  # ...or each takes its own colour
    for found in (by_class, by_object):  # and regions of different classes differ either way
        assert not torch.allclose(found["2a"], found["3"], atol=0.05)


@pytest.mark.parametrize(("image", "mask", "per", "match"), [
    (torch.rand(3, 4, 4), torch.zeros(4, 4, dtype=torch.long), "scene", "per must be 'object' or 'class'"),
    (torch.rand(4, 4, 4), torch.zeros(4, 4, dtype=torch.long), "object", r"float RGB tensor \(3, H, W\)"),
    (torch.rand(3, 4, 4), torch.zeros(4, 5, dtype=torch.long), "object", r"image's size \(4, 4\)"),
    (torch.rand(3, 4, 4), torch.zeros(4, 4), "class", r"integer \(H, W\)"),
])
def test_recolour_objects_names_a_bad_argument(image: torch.Tensor, mask: torch.Tensor, per: str, match: str) -> None:
    from deeplab_edu.crf_eval import recolour_objects

    with pytest.raises(ValueError, match=match):
        recolour_objects(image, mask, per)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["exact", "approx"])
@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_half_precision_scores_run_the_crf_in_float32(method: str, half: torch.dtype) -> None:
    # an audit: bf16 scores labelled 0.5-10 % of pixels differently from float32 (approx) and method="exact",
    # kernel_matrices and free_energy raised "cdist not implemented for 'BFloat16'"
    torch.manual_seed(0)
    image = torch.rand(3, 17, 23)
    logits = (torch.randn(4, 17, 23) * 1.5).to(half)
    q = dense_crf(logits, image, method=method)  # type: ignore[arg-type]
    reference = dense_crf(logits.float(), image, method=method)  # type: ignore[arg-type]
    assert q.dtype == torch.float32 and torch.equal(q.argmax(0), reference.argmax(0))
    assert torch.allclose(q, reference, atol=1e-5)
    unary = unary_from_logits(logits)
    assert unary.dtype == torch.float32 and torch.allclose(unary, unary_from_logits(logits.float()))
    assert torch.isfinite(unary_from_probs(torch.zeros(2, 3, 3, dtype=half))).all()  # 1e-8 is 0 in float16
    assert kernel_matrices(image.to(half)).dtype == torch.float32
    assert torch.allclose(free_energy(unary.to(half), q.to(half), image),
                          free_energy(unary.to(half).float(), q.to(half).float(), image))
    if method == "approx":
        m = message_passing_approx(q.to(half), image)
        assert m.dtype == torch.float32 and torch.allclose(m, message_passing_approx(q.to(half).float(), image))


def test_crf_params_refuse_an_include_self_that_is_not_a_bool() -> None:
    """A census: CRFParams(include_self="no") was accepted, and (a truthy string) included each pixel itself."""
    with pytest.raises(TypeError, match="CRFParams.include_self must be True or False, got 'no'"):
        CRFParams(include_self="no")  # type: ignore[arg-type]
    assert CRFParams(include_self=False).include_self is False


_EXACT_PEAK = """
import re, torch
from deeplab_edu.crf import mean_field
def status(field):  # in KiB
    return int(re.search(field + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
torch.set_num_threads(1)
torch.manual_seed(0)
mean_field(torch.rand(2, 4, 8, 8), torch.rand(2, 3, 8, 8), method="exact")  # warm-up: lazy initialisations
unary, image = torch.rand(2, 4, 64, 64), torch.rand(2, 3, 64, 64)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the resident memory now
before = status("VmRSS")
mean_field(unary, image, method="exact")
print(status("VmHWM") - before)
"""


_FREE_ENERGY_PEAK = _EXACT_PEAK.replace("from deeplab_edu.crf import mean_field",
                                       "from deeplab_edu.crf import CRFParams, free_energy, mean_field").replace(
    'mean_field(unary, image, method="exact")',
    'free_energy(unary, unary.softmax(1), image, CRFParams(normalization=__import__("sys").argv[1]))')


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak resident memory in /proc (Linux's)")
@pytest.mark.parametrize("normalization", ["pixel", "symmetric"])
def test_the_free_energy_holds_two_dense_matrices_at_its_peak(normalization: str) -> None:
    """free_energy's docstring said three N x N matrices at its peak, and 3.01 were measured (the weights beside
    their symmetrised copy, or beside the pairwise sum's <Q_i, Q_j> for all pairs at once); two are what building
    the weights takes. The other normalisations are symmetric already, and the pairwise sum is taken a block of
    rows at a time."""
    assert "free_energy(unary" in _FREE_ENERGY_PEAK
    proc = subprocess.run([sys.executable, "-c", _FREE_ENERGY_PEAK, normalization], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    matrices = int(proc.stdout.split()[-1]) * 1024 / ((64 * 64) ** 2 * 4)
    assert matrices < 2.5, f"free_energy's peak memory rose by {matrices:.2f} N x N matrices (2 expected)"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak resident memory in /proc (Linux's)")
def test_the_exact_crf_holds_two_dense_matrices_at_its_peak() -> None:
    # two 64 x 64 images in a fresh process; one N x N float32 matrix = 64 MiB. The kernels are built in place, two
    # matrices at the peak (2.0 measured), and the first image's weights are freed before the second's are built:
    # temporaries made it 6.0 (a memory audit), keeping the first image's weights alone 3.0. Not getrusage's ru_maxrss:
    # a child's starts at its parent's peak (under pytest 560 MB against the child's 530 MB)
    proc = subprocess.run([sys.executable, "-c", _EXACT_PEAK], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    matrices = int(proc.stdout.split()[-1]) * 1024 / ((64 * 64) ** 2 * 4)
    assert matrices < 2.5, f"the exact CRF's peak memory rose by {matrices:.2f} N x N matrices (2 expected)"


def test_the_exact_crf_still_differentiates_with_respect_to_the_image():
    # a review: working the dense kernels in place (to hold two N x N matrices) broke autograd where the image
    # requires a gradient (exp's output, kept for its gradient, was overwritten); such a call works on copies
    torch.manual_seed(0)
    logits, image = torch.randn(1, 3, 12, 12), torch.rand(1, 3, 12, 12)
    grads = []
    for method in ("exact", "approx"):
        x = image.clone().requires_grad_(True)
        q = mean_field(unary_from_logits(logits), x, method=method)
        q[:, 0].sum().backward()
        grads.append(x.grad)
        assert torch.equal(q.detach(), mean_field(unary_from_logits(logits), image, method=method))
    assert grads[0].abs().sum() > 0 and torch.isfinite(grads[0]).all()


@pytest.mark.parametrize("normalization", ["pixel", "symmetric"])
def test_a_row_whose_weights_all_underflow_is_still_normalised_and_differentiable(normalization: str) -> None:
    """Without include_self, a pixel whose neighbours all differ in colour by more than about 13 theta_beta has a
    row whose every float32 k(i, j) underflows: divided by its float32 sum, the row lost its message (sum 0), and
    the gradient with respect to the image was NaN for 50 of 80 random 12 x 12 images (a sum of about 1e-38,
    whose square underflows). Each row is now shifted by its largest log before it is summed."""
    params = CRFParams(include_self=False, normalization=normalization, w_spatial=0.0, w_bilateral=1.0)
    black_and_white = torch.tensor([0.0, 1.0]).view(1, 1, 2).expand(3, 1, 2)  # 51 theta_beta apart
    weights = kernel_matrices(black_and_white, params)
    assert torch.allclose(weights, torch.tensor([[0.0, 1.0], [1.0, 0.0]])), weights  # each the other's only one
    for seed in range(6):
        torch.manual_seed(seed)
        logits, image = torch.randn(1, 3, 12, 12), torch.rand(1, 3, 12, 12)
        x = image.clone().requires_grad_(True)
        q = mean_field(unary_from_logits(logits), x, params.replace(w_spatial=3.0, w_bilateral=4.0), method="exact")
        q[:, 0].sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all(), seed
        no_grad = mean_field(unary_from_logits(logits), image, params.replace(w_spatial=3.0, w_bilateral=4.0),
                             method="exact")
        assert torch.allclose(q.detach(), no_grad, atol=1e-5), seed
    one = torch.rand(1, 3, 1, 1, requires_grad=True)  # one pixel without itself: no message, a zero gradient
    mean_field(unary_from_logits(torch.randn(1, 2, 1, 1)), one, params, method="exact")[:, 0].sum().backward()
    assert one.grad is not None and not one.grad.any()


def test_coarse_scores_keep_blocks_in_place_at_odd_sizes() -> None:
    """The figure audit: a side that is not a multiple of output_stride stretched its ceil(H / stride) blocks
    over H pixels, moving boundaries up to a block up and left (here 58 -> 54 of 67 px)."""
    for column in (17, 40, 58):
        mask = torch.zeros(67, 67, dtype=torch.long)
        mask[column:, :] = 1
        predicted = int(coarse_scores(mask, 2).argmax(0)[:, 0].nonzero()[0])  # the first row predicted class 1
        assert abs(predicted - column) <= 1, (column, predicted)


def test_the_refinement_figure_shows_the_legend_colours_in_the_book_column() -> None:
    """The figure audit: the masks before and after the CRF were blended over the image (13 % of the wire pixels
    nearest their own legend colour), and four panels in a row made a 13-inch figure, shown at half size."""
    import matplotlib.pyplot as plt
    import numpy as np

    from deeplab_edu.viz import crf as viz
    from deeplab_edu.viz.images import colorize

    img, labels = two_colour_scene(h=12, w=14, edge=7)
    before = blurred_unary(12, 14, boundary=9.0).argmin(0)
    palette = [(0, 158, 115), (86, 180, 233)]
    fig = viz.plot_refinement(img, before, labels, labels, palette, class_names=["boat", "sky"])
    shown = [np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images]
    assert np.array_equal(shown[1], colorize(before, palette)) and np.array_equal(shown[2], colorize(labels, palette))
    assert fig.get_figwidth() <= 7
    plt.close(fig)
