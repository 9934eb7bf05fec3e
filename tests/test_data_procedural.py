"""The procedural scene generator: determinism, speed, class coverage, scales, context, ignore label."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeplab_edu.data import ProceduralScenes, build_dataset
from deeplab_edu.data.procedural import BOAT, CAR, WIRE, benchmark, render_scene


def test_item_format_and_attributes():
    ds = ProceduralScenes(length=5, size=64)
    image, mask = ds[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert mask.shape == (64, 64) and mask.dtype == torch.int64
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert ds.num_classes == len(ds.class_names) == len(ds.palette) == 8
    assert ds.ignore_index == 255
    valid = (mask < ds.num_classes) | (mask == 255)
    assert bool(valid.all())
    assert len(ds) == 5


def test_same_index_same_item_regardless_of_order_and_instance():
    a = ProceduralScenes(length=20, size=48, seed=3)
    b = ProceduralScenes(length=20, size=48, seed=3)
    forward = [a[i] for i in range(6)]
    backward = [b[i] for i in reversed(range(6))][::-1]
    for (x1, m1), (x2, m2) in zip(forward, backward):
        assert torch.equal(x1, x2) and torch.equal(m1, m2)
    x, m = a[4]
    a[17]
    x_again, m_again = a[4]
    assert torch.equal(x, x_again) and torch.equal(m, m_again)


def test_independent_of_torch_and_numpy_global_state():
    ds = ProceduralScenes(length=3, size=40)
    torch.manual_seed(0)
    np.random.seed(0)
    x1, _ = ds[1]
    torch.manual_seed(123)
    np.random.seed(123)
    np.random.rand(10)
    x2, _ = ds[1]
    assert torch.equal(x1, x2)


def test_seeds_and_indices_differ():
    x0, _ = ProceduralScenes(length=3, size=40, seed=0)[0]
    x1, _ = ProceduralScenes(length=3, size=40, seed=1)[0]
    y, _ = ProceduralScenes(length=3, size=40, seed=0)[1]
    assert not torch.equal(x0, x1)
    assert not torch.equal(x0, y)


def test_dataloader_workers_give_the_same_items():
    ds = ProceduralScenes(length=4, size=32)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    batches = list(loader)
    assert torch.equal(batches[1][0][0], ds[2][0])
    assert batches[0][1].shape == (2, 32, 32)


@pytest.mark.parametrize("size", [(37, 101), (8, 8), 129])
def test_any_size(size):
    ds = ProceduralScenes(length=2, size=size)
    image, mask = ds[1]
    hw = (size, size) if isinstance(size, int) else size
    assert image.shape == (3, *hw) and mask.shape == hw


def test_class_coverage_and_context_pair():
    ds = ProceduralScenes(length=150, size=96)
    counts = np.zeros(256, np.int64)
    scene_classes = {"land": set(), "water": set()}
    for i in range(len(ds)):
        _, mask, info = ds.render(i)
        counts += np.bincount(mask.ravel(), minlength=256)
        scene_classes[info.scene_type] |= set(np.unique(mask).tolist())
    for c, name in enumerate(ds.class_names):
        assert counts[c] > 0, f"class {name} never appears in 150 scenes"
    assert counts[255] > 0, "the ignore label never appears"
    # the context pair: the same shape is a car on land and a boat on water, never the other way
    assert CAR in scene_classes["land"] and BOAT not in scene_classes["land"]
    assert BOAT in scene_classes["water"] and CAR not in scene_classes["water"]


def test_objects_span_a_wide_range_of_scales_in_one_dataset():
    ds = ProceduralScenes(length=40, size=256)
    infos = [ds.render(i)[2] for i in range(len(ds))]
    sizes = np.concatenate([info.sizes for info in infos])
    assert sizes.min() < 10, "no object smaller than 10 px"
    assert sizes.max() > 0.6 * 256, "no object larger than 60 % of the frame"
    # and within single images, a factor of 10 between the smallest and largest shape
    ratios = [max(info.sizes) / min(info.sizes) for info in infos if len(info.sizes) > 1]
    assert max(ratios) > 10


def test_occlusion_happens():
    ds = ProceduralScenes(length=40, size=128)
    occluded = 0
    for i in range(len(ds)):
        info = ds.render(i)[2]
        for size, vis, cls in zip(info.sizes, info.visible_pixels, info.classes):
            if cls != WIRE:
                full_area_lower_bound = 0.2 * size**2  # every shape fills > 20 % of its box
                occluded += vis < 0.5 * full_area_lower_bound
    assert occluded > 0


def test_wires_are_thin():
    ds = ProceduralScenes(length=40, size=256)
    for i in range(len(ds)):
        _, mask, info = ds.render(i)
        if WIRE in info.classes:
            wire = mask == WIRE
            # a 1-3 px wide line: most wire pixels touch a non-wire pixel within 2 px vertically or horizontally
            thick = wire[2:, :] & wire[:-2, :]
            thick = thick[:, 2:] & thick[:, :-2]
            assert thick.sum() < 0.5 * wire.sum()
            return
    pytest.fail("no wire in 40 scenes")


def test_boundary_ignore_band():
    plain = ProceduralScenes(length=2, size=64, clutter_prob=0.0)
    band = ProceduralScenes(length=2, size=64, clutter_prob=0.0, boundary_ignore=2)
    _, m0 = plain[0]
    _, m1 = band[0]
    assert (m0 == 255).sum() == 0
    assert (m1 == 255).sum() > 0
    keep = m1 != 255
    assert torch.equal(m0[keep], m1[keep])


def test_transform_is_applied():
    calls = []

    def t(image, mask):
        calls.append(1)
        return image[:, :16, :16], mask[:16, :16]

    ds = ProceduralScenes(length=2, size=32, transform=t)
    image, mask = ds[0]
    assert calls and image.shape == (3, 16, 16) and mask.shape == (16, 16)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(length=0), "length"),
        (dict(size=4), "size"),
        (dict(size=(10, 20, 30)), "size"),
        (dict(seed=-1), "seed"),
        (dict(transform=3), "transform"),
        (dict(clutter_prob=2.0), "clutter_prob"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ProceduralScenes(**kwargs)


def test_index_errors():
    ds = ProceduralScenes(length=3, size=16)
    with pytest.raises(IndexError, match="out of range"):
        ds[3]
    assert torch.equal(ds[-1][0], ds[2][0])


def test_splits_do_not_overlap():
    train = build_dataset("procedural", "train", length=2, size=32)
    val = build_dataset("procedural", "val", length=2, size=32)
    assert not torch.equal(train[0][0], val[0][0])
    assert len(build_dataset("procedural", "val", size=32)) == 200


def test_render_scene_matches_dataset():
    ds = ProceduralScenes(length=3, size=(40, 50), seed=7)
    img, mask, _ = render_scene(7, 2, (40, 50))
    assert np.array_equal(ds[2][0].numpy(), img) and np.array_equal(ds[2][1].numpy(), mask)


def test_speed_lower_bound():
    """Loose bound that cannot flake on a loaded machine; the real figure is in the module docstring."""
    old = torch.get_num_threads()
    try:
        rate = benchmark(size=256, n=30, threads=1)
    finally:
        torch.set_num_threads(old)
    # CPU time, not wall time: other jobs on the machine cannot make this fail
    assert rate["images_per_cpu_s"] > 20, f"only {rate['images_per_cpu_s']:.1f} images per CPU-second at 256 x 256"
    assert rate["images_per_s"] > 0


def test_benchmark_runs_the_generator_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """'1 thread' means numpy's BLAS / OpenMP pools too, not only torch's (it used to start one per core)."""
    from threadpoolctl import threadpool_info

    from deeplab_edu.data import procedural

    seen: list[int] = []
    original = procedural.ProceduralScenes.__getitem__

    def getitem(self, index):  # type: ignore[no-untyped-def]
        seen.append(max((p["num_threads"] for p in threadpool_info()), default=1))
        return original(self, index)

    monkeypatch.setattr(procedural.ProceduralScenes, "__getitem__", getitem)
    old = torch.get_num_threads()
    try:
        benchmark(size=32, n=3, threads=1)
        assert torch.get_num_threads() == old  # restored
    finally:
        torch.set_num_threads(old)
    assert seen and max(seen) == 1, f"thread pools while benchmarking: {seen}"


def test_python_dash_m_prints_the_generator_speed() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "deeplab_edu.data", "--n", "3"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "256 x 256:" in out.stdout and "(1 thread)" in out.stdout, out.stderr
    assert "RuntimeWarning" not in out.stderr, out.stderr


def test_diameter_range_bounds_the_drawn_shapes():
    from deeplab_edu.data.procedural import scene_style

    for difficulty in ("hard", "easy"):
        style = scene_style(difficulty)
        low, high = style.diameter_range(256)
        assert (low, high) == pytest.approx((2 * style.min_radius * 256, 2 * style.max_radius * 256))
        ds = ProceduralScenes(length=30, size=256, seed=1, difficulty=difficulty)
        infos = [ds.render(i)[2] for i in range(len(ds))]
        sizes = np.concatenate([info.sizes for info in infos])
        classes = np.concatenate([info.classes for info in infos])
        shapes = sizes[(classes != WIRE) & (sizes < high)]  # the frame-filling heroes are drawn apart, >= 0.9 side
        assert shapes.min() >= low - 1e-6 and shapes.min() < 2 * low  # log-uniform: the low end is reached
    with pytest.raises(ValueError, match="side must be a positive int"):
        scene_style("hard").diameter_range(0)
