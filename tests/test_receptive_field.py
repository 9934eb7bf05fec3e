"""deeplab_edu.receptive_field: the recurrences agree with brute force, from toy stacks to ResNet-50."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from deeplab_edu.effective_receptive_field import (
    TinyDilatedNet,
    effective_receptive_field,
    interpolated_extent,
    mass_extent,
    noisy_halves_batch,
    erf_before_and_after_training,
    row_share,
    train_tiny_segmenter,
)
from deeplab_edu.receptive_field import (
    LayerSpec,
    ReceptiveField,
    compare_with_brute_force,
    empirical_receptive_field,
    receptive_field,
    receptive_field_of,
    receptive_field_table,
    spatial_part,
)
from deeplab_edu.gridding import coverage, path_counts, sampling_pattern


def assert_agrees(model: nn.Module, input_size: int | tuple[int, int], **kw) -> ReceptiveField:
    """The theoretical region of the centre unit equals the bounding box of its gradient support."""
    rf = receptive_field_of(model, **kw)
    emp = empirical_receptive_field(model, input_size, **kw)
    (i, j), (h, w) = emp.output_index, ((input_size,) * 2 if isinstance(input_size, int) else input_size)
    rows, cols = rf.region(i), receptive_field_of(model, axis=1, **kw).region(j)
    assert 0 <= rows[0] and rows[1] < h and 0 <= cols[0] and cols[1] < w, "pick a larger input for this check"
    assert (emp.rows, emp.cols) == (rows, cols), f"theory {rows, cols} vs brute force {emp.rows, emp.cols}"
    return rf


def test_recurrences_by_hand():
    assert receptive_field([LayerSpec(3)] * 3).size == 7
    rf = receptive_field([LayerSpec(3, 2, 1), LayerSpec(3, 2, 1), LayerSpec(3, 1, 1)])
    assert (rf.size, rf.stride, rf.padding) == (1 + 2 + 4 + 8, 4, 1 + 2 + 4)
    assert rf.region(0) == (-7, 7) and rf.center(3) == 12
    assert receptive_field([LayerSpec(3, dilation=d) for d in (1, 2, 4)]).size == 15
    assert LayerSpec(3, dilation=6).effective_kernel == 13
    table = receptive_field_table([LayerSpec(7, 2, 3, name="conv1"), LayerSpec(3, 2, 1, name="pool")])
    assert [r["receptive field"] for r in table] == [7, 11] and table[-1]["effective stride"] == 4


def test_union_of_branches_and_errors():
    main = receptive_field([LayerSpec(1), LayerSpec(3, 2, 1), LayerSpec(1)])
    short = receptive_field([LayerSpec(1, 2, 0)])
    both = ReceptiveField.union([main, short])
    assert (both.size, both.stride, both.padding) == (3, 2, 1)
    with pytest.raises(ValueError, match="different effective strides"):
        ReceptiveField.union([main, receptive_field([LayerSpec(1)])])
    with pytest.raises(ValueError, match="stride must be an int >= 1"):
        LayerSpec(3, stride=0)
    with pytest.raises(TypeError, match="nn.Module"):
        receptive_field_of("vgg16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="upto='nope'"):
        receptive_field_of(nn.Sequential(nn.Conv2d(1, 1, 3)), upto="nope")


class Upsampling(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, stride=2)

    def forward(self, x):
        return nn.functional.interpolate(self.conv(x), scale_factor=2.0)


def test_upsampling_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="backbone"):
        receptive_field_of(Upsampling())


@st.composite
def stacks(draw):
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        k = draw(st.integers(1, 4))
        d = draw(st.integers(1, 3)) if k > 1 else 1
        p = draw(st.integers(0, (d * (k - 1)) // 2))
        if draw(st.booleans()) and k > 1 and d == 1:
            layers.append(nn.MaxPool2d(k, draw(st.integers(1, 2)), padding=min(p, k // 2)))
        else:
            layers.append(nn.Conv2d(2, 2, k, stride=draw(st.integers(1, 2)), padding=p, dilation=d))
            layers.append(nn.ReLU())
    return nn.Sequential(nn.Conv2d(3, 2, 1), *layers), draw(st.integers(0, 3))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(stacks())
def test_random_stacks_agree_with_brute_force(case):
    net, extra = case
    rf = receptive_field_of(net)
    size = rf.size + 2 * rf.padding + 4 * rf.stride + extra  # odd and even sizes
    emp = empirical_receptive_field(net, size)
    rows = rf.region(emp.output_index[0])
    assume(rows[0] >= 0 and rows[1] < size)
    assert emp.rows == rows and emp.cols == rf.region(emp.output_index[1])


class Bottleneck(nn.Module):
    """A residual block with a strided, dilated main path and a strided 1x1 shortcut."""

    def __init__(self, stride: int, dilation: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 2, 1)
        self.b = nn.Conv2d(2, 2, 3, stride=stride, padding=dilation, dilation=dilation)
        self.shortcut = nn.Conv2d(2, 2, 1, stride=stride)

    def forward(self, x):
        return torch.relu(self.b(torch.relu(self.a(x))) + self.shortcut(x))


@pytest.mark.parametrize("stride,dilation,size", [(1, 1, 21), (2, 1, 24), (1, 2, 27), (2, 3, 31)])
def test_residual_blocks_agree(stride, dilation, size):
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), Bottleneck(stride, dilation), Bottleneck(1, 2))
    assert_agrees(net, size)
    assert_agrees(net, (size, size + 4))  # non-square input


def test_non_square_kernels_per_axis():
    net = nn.Sequential(nn.Conv2d(1, 1, (3, 5), padding=(1, 2), dilation=(2, 1)))
    assert receptive_field_of(net, axis=0).size == 5 and receptive_field_of(net, axis=1).size == 5
    assert_agrees(net, (15, 13))


@pytest.mark.parametrize(
    "name,build,size",
    [
        ("alexnet", lambda: torchvision.models.alexnet().features, 259),
        ("vgg16", lambda: torchvision.models.vgg16().features, 257),
        ("resnet50", lambda: torchvision.models.resnet50(), 481),
        ("resnet50-os16", lambda: torchvision.models.resnet50(replace_stride_with_dilation=[False, False, True]), 481),
        ("resnet50-os8", lambda: torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True]), 483),
    ],
)
def test_torchvision_models_agree_with_brute_force(name, build, size):
    with torch.device("meta"):  # the check needs the architecture only: no weights are allocated
        model, plain = build(), torchvision.models.resnet50()
    rf = assert_agrees(model, size)
    if name.startswith("resnet50"):
        # dilation replaces the last strides: denser maps, the same receptive field
        assert rf.size == receptive_field_of(plain).size
        assert rf.stride == {"resnet50": 32, "resnet50-os16": 16, "resnet50-os8": 8}[name]


def test_spatial_part_cuts_before_global_pooling_and_leaves_model_intact():
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 65, 65)
    before = model(x)
    feats = spatial_part(model)(x)
    assert feats.shape == (1, 512, 3, 3)
    empirical_receptive_field(model, 65)
    assert isinstance(model.maxpool, nn.MaxPool2d) and model.conv1.in_channels == 3
    torch.testing.assert_close(model(x), before)
    assert receptive_field_of(model, upto="layer2").stride == 8


def test_unfaithful_gradient_is_sparser_but_inside():
    torch.manual_seed(0)  # one channel: max pooling sends the gradient to one pixel of each window
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3), nn.MaxPool2d(2))
    faithful = empirical_receptive_field(net, 33)
    raw = empirical_receptive_field(net, 33, faithful=False)
    assert raw.support.sum() < faithful.support.sum()
    assert not (raw.support & ~faithful.support).any()


def test_gridding_sampling_patterns():
    same = sampling_pattern((2, 2, 2))
    mixed = sampling_pattern((1, 2, 4))
    assert same.shape == (13, 13) and mixed.shape == (15, 15)
    assert coverage(mixed) == 1.0
    assert (same > 0).sum() == 7 * 7  # only every other pixel: the holes of gridding
    assert int(same.sum()) == 9**3 and int(mixed.sum()) == 9**3  # every path counted once
    # the same lattice comes out of the brute-force gradient of a real conv stack
    net = nn.Sequential(*[nn.Conv2d(1, 1, 3, dilation=r) for r in (2, 2, 2)])
    emp = empirical_receptive_field(net, 13)
    assert torch.equal(emp.support, same > 0)
    with pytest.raises(ValueError, match="positive ints"):
        sampling_pattern((1, 0))


def test_effective_receptive_field_lies_inside_the_theoretical_one():
    torch.manual_seed(0)
    net = TinyDilatedNet(rates=(1, 2, 1), channels=4)
    rf = receptive_field_of(net)
    assert rf.size == 1 + 2 * (1 + 2 + 1)
    erf = effective_receptive_field(net, 21, samples=2)
    assert erf.shape == (21, 21) and abs(float(erf.sum()) - 1) < 1e-5
    u, v = rf.region(10)
    outside = erf.clone()
    outside[u : v + 1, u : v + 1] = 0
    assert float(outside.abs().sum()) == 0.0
    assert 1 <= mass_extent(erf, 0.5) <= mass_extent(erf, 0.9) <= rf.size
    peak = divmod(int(erf.argmax()), 21)
    assert abs(peak[0] - 10) <= 2 and abs(peak[1] - 10) <= 2


def test_row_share_splits_the_map_by_distance_and_nothing_lies_beyond_the_field():
    """The rows' shares add up to the whole map, and rows beyond the field's half side draw no gradient."""
    torch.manual_seed(0)
    net = TinyDilatedNet(rates=(1, 2, 1), channels=4)  # field 9 px: 4 rows above and below
    erf = effective_receptive_field(net, 21, samples=2)
    near, mid, edge = row_share(erf, 0, 1), row_share(erf, 2, 3), row_share(erf, 4, 4)
    assert abs(near + mid + edge - 1) < 1e-6 and min(near, mid, edge) > 0
    assert row_share(erf, 5, 20) == 0.0 and row_share(erf, 0, 100) == pytest.approx(1.0)
    # from row 6, rows 2 and 10 lie 4 away: row 2 is outside the field (centre 10, 4 rows each side), row 10 its centre
    assert row_share(erf, 4, 4, centre_row=6) == pytest.approx(float(erf[10].sum())) and float(erf[10].sum()) > 0
    for args, named in (((2, 1), "nearest <= farthest"), ((-1, 2), "0 <= nearest")):
        with pytest.raises(ValueError, match=named):
            row_share(erf, *args)
    with pytest.raises(ValueError, match="centre_row 21"):
        row_share(erf, 0, 1, centre_row=21)
    with pytest.raises(ValueError, match="all zero"):
        row_share(torch.zeros(3, 3), 0, 1)


@pytest.mark.parametrize("text", ["conv k=3 s=2\nconv k=3\npool k=2 s=2\nconv k=3 d=2\nconv k=3 d=4",
                                  "conv k=3 d=2\nconv k=3 d=2\nconv k=3 d=4", "conv k=5 s=2 p=0\npool k=3 s=1 p=1\nconv k=1 s=3"])
def test_path_counts_are_the_gradient_of_the_all_ones_stack(text: str) -> None:
    """Luo et al.'s simplest case, computed by counting paths, is autograd's gradient of the same stack with
    every weight 1, no nonlinearity and average pooling, for several units; with shared rates whole rows carry none."""
    from deeplab_edu.viz.receptive_field import parse_layer_stack

    layers = parse_layer_stack(text)
    mods: list[nn.Module] = []
    for kind, sp in layers:
        if kind == "conv":
            conv = nn.Conv2d(1, 1, sp.kernel, sp.stride, sp.padding, sp.dilation, bias=False)
            nn.init.ones_(conv.weight)
            mods.append(conv)
        else:
            mods.append(nn.AvgPool2d(sp.kernel, sp.stride, sp.padding))
    net, size = nn.Sequential(*mods).double(), 40
    x = torch.zeros(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    out = net(x)
    specs = [sp for _, sp in layers]
    for i, j in ((0, 0), (out.shape[-2] // 2, out.shape[-1] // 2), (out.shape[-2] - 1, 1)):
        (grad,) = torch.autograd.grad(out[0, 0, i, j], x, retain_graph=True)
        expected = grad[0, 0] / grad.sum()
        field = torch.outer(*(torch.from_numpy(path_counts(specs, size, n)) for n in (i, j)))
        torch.testing.assert_close(field / field.sum(), expected, rtol=0, atol=1e-12)
    if "d=2\nconv k=3 d=2" in text:
        row = path_counts(specs, size, 20)
        assert (row[1::2] == 0).all() and (row[::2] > 0).sum() == 9  # odd rows: no path at all (gridding)
    with pytest.raises(ValueError, match=r"index must be an output unit in 0\.\."):
        path_counts(specs, size, out.shape[-1])


def test_toy_task_and_training_run():
    images, masks = noisy_halves_batch(2, 24, generator=torch.Generator().manual_seed(1))
    assert images.shape == (2, 3, 24, 24) and masks.shape == (2, 24, 24) and set(masks.unique().tolist()) <= {0, 1}
    assert torch.equal(images[:, 0], images[:, 2])  # one grey value in the three channels
    losses = train_tiny_segmenter(TinyDilatedNet(rates=(1, 2), channels=4), 3, batch=2, size=24, progress=False)
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))


def test_noisy_halves_differ_by_the_contrast_and_only_by_it():
    """The brighter half (label 1) is ``contrast`` brighter on average; the noise has standard deviation 1."""
    images, masks = noisy_halves_batch(64, 48, contrast=0.5, generator=torch.Generator().manual_seed(0))
    grey = images[:, 0]
    difference = float(grey[masks == 1].mean() - grey[masks == 0].mean())
    assert abs(difference - 0.5) < 0.02 and abs(float(grey[masks == 1].std()) - 1) < 0.02
    assert 0.3 < float(masks.float().mean()) < 0.7  # both halves, the line near the centre
    assert torch.equal(noisy_halves_batch(2)[0], noisy_halves_batch(2)[0])  # no generator: seeded 0
    for kwargs, named in (({"contrast": 0}, "contrast must be > 0"), ({"size": 0}, "batch and size")):
        with pytest.raises(ValueError, match=named):
            noisy_halves_batch(2, **kwargs)


def test_erf_before_and_after_training_measures_each_seed_and_its_growth():
    runs = erf_before_and_after_training((1, 1), (0, 1), 2, channels=16, batch=2, size=16, input_size=15, samples=1,
                                         progress=False)
    assert [r.seed for r in runs] == [0, 1] and all(len(r.losses) == 2 for r in runs)
    for r in runs:
        assert r.before.shape == r.after.shape == (15, 15) and abs(float(r.after.sum()) - 1) < 1e-5
        assert r.growth(0.5) == interpolated_extent(r.after, 0.5) - interpolated_extent(r.before, 0.5)
        # on a continuous scale, within a step of 2 px of the odd squares' change
        assert abs(r.growth(0.9) - (mass_extent(r.after, 0.9) - mass_extent(r.before, 0.9))) < 2
    with pytest.raises(ValueError, match="at least one seed"):
        erf_before_and_after_training((1,), (), 1)


def test_compare_with_brute_force_grows_the_input_until_the_field_fits():
    with torch.device("meta"):  # the architecture is enough: no weights are allocated
        model = torchvision.models.resnet50(replace_stride_with_dilation=[False, False, True])
    row = compare_with_brute_force(model, name="resnet50-os16")
    assert row["agree"] is True and row["effective stride"] == 16
    assert row["receptive field (theory)"] == 427
    bad = compare_with_brute_force(model, input_size=101)  # too small: the region is clipped
    assert bad["agree"] is False


def test_layer_stack_text_and_editor():
    import ipywidgets
    import matplotlib.pyplot as plt

    from deeplab_edu.viz.receptive_field import DEFAULT_STACK, layer_stack_editor, parse_layer_stack, plot_layer_stack, stack_model

    layers = parse_layer_stack("conv k=3 s=2\n# a comment\n\npool k=2 s=2\nconv k=3 d=4")
    assert [sp for _, sp in layers] == [LayerSpec(3, 2, 1), LayerSpec(2, 2, 0), LayerSpec(3, 1, 4, 4)]
    assert receptive_field_of(stack_model(layers)) == receptive_field([sp for _, sp in layers])
    with pytest.raises(ValueError, match="line 2"):
        parse_layer_stack("conv k=3\nconvolution 3x3")
    with pytest.raises(ValueError, match="empty"):
        parse_layer_stack("# nothing")
    axes = plot_layer_stack("conv k=3 s=2\nconv k=3 d=2", torch.rand(3, 33, 35), samples=1)
    assert "receptive field (solid yellow) 11px" in axes[0].get_title()  # the mark named (stop 70)
    assert isinstance(layer_stack_editor(DEFAULT_STACK, image=torch.rand(3, 40, 40)), ipywidgets.VBox)
    plt.close("all")


def test_imagenet_resnet50_is_offline_by_default(monkeypatch, tmp_path):
    from deeplab_edu.effective_receptive_field import imagenet_resnet50

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    model, message = imagenet_resnet50()
    assert model is None and "download=True" in message and str(tmp_path) in message


def test_tf_slim_stride_layout_gives_araujo_et_al_s_483_and_1027():
    """Araujo et al.'s table (TF-Slim resnet_v1_50 / _101): 483 and 1027 px, torchvision's layout 427."""
    from deeplab_edu.receptive_field import strides_in_last_unit

    with torch.device("meta"):
        r50 = torchvision.models.resnet50()
        assert receptive_field_of(r50).size == 427
        slim50 = strides_in_last_unit(r50)
        slim101 = strides_in_last_unit(torchvision.models.resnet101())
    assert receptive_field_of(slim50).size == 483 and receptive_field_of(slim50).stride == 32
    assert receptive_field_of(slim101).size == 1027
    assert slim50.layer1[2].conv2.stride == (2, 2) and slim50.layer2[0].conv2.stride == (1, 1)
    with pytest.raises(ValueError, match="not already modified"):
        strides_in_last_unit(slim50)
    with pytest.raises(ValueError, match="bottleneck"):
        strides_in_last_unit(torchvision.models.resnet18())


def test_tf_slim_layout_runs_and_keeps_the_output_stride():
    from deeplab_edu.receptive_field import strides_in_last_unit

    net = strides_in_last_unit(torchvision.models.resnet50()).eval()
    with torch.no_grad():
        feats = spatial_part(net)(torch.zeros(1, 3, 65, 65))
    assert feats.shape[-2:] == (3, 3)


def test_an_output_that_ignores_the_input_gets_the_documented_error() -> None:
    import torch
    from torch import nn

    from deeplab_edu.receptive_field import empirical_receptive_field

    class IgnoresInput(nn.Module):  # its output needs gradients (the conv's weights) but not the image's
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(torch.ones_like(x))

    with pytest.raises(ValueError, match="no input pixel has a non-zero gradient"):
        empirical_receptive_field(IgnoresInput(), 9)


def test_mass_extent_of_the_whole_mass_is_at_most_the_map() -> None:
    # an audit (stop 68): a float32 map sums to 0.99999976, so fraction 1 fell through to 2 * side - 1
    block = torch.zeros(21, 21)
    block[5:16, 5:16] = 1
    assert mass_extent(block, 1.0) == 11
    assert mass_extent(torch.rand(15, 15, generator=torch.Generator().manual_seed(0)), 1.0) <= 15


def test_receptive_field_of_a_whole_deeplab_model() -> None:
    """receptive_field_of and empirical_receptive_field trace a whole DeepLab model (its forward checked its input in
    Python, so fx could not trace it: "could not trace DeepLabV3"); ``upto="backbone"`` gives the backbone's field."""
    from deeplab_edu.models import build_model

    model = build_model("deeplabv3", backbone="tiny_resnet", num_classes=3)
    assert receptive_field_of(model, upto="backbone").size == receptive_field_of(model.backbone).size
    assert empirical_receptive_field(model, 40, upto="backbone").size == (40, 40)


def test_erf_growth_is_measured_on_a_continuous_scale() -> None:
    """mass_extent moves in steps of 2 px: three seeds that all grew by one step had the interval [+2, +2] over
    seeds, of no width, which chapter 02 called "a finding, not noise". The growth is now measured by
    interpolated_extent, whose odd round-up is mass_extent, so that such seeds still differ."""
    import math

    from deeplab_edu.effective_receptive_field import ErfTraining
    from deeplab_edu.findings import seed_interval

    def gaussian(sigma: float, n: int = 41) -> torch.Tensor:
        x = torch.arange(n, dtype=torch.float64) - n // 2
        m = torch.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
        return (m / m.sum()).float()

    runs = [ErfTraining(k, gaussian(3.0), gaussian(sigma), []) for k, sigma in enumerate((3.4, 3.6, 3.8))]
    assert {mass_extent(r.after, 0.5) - mass_extent(r.before, 0.5) for r in runs} == {2}  # one step in each
    growth = [r.growth(0.5) for r in runs]
    low, high = seed_interval(growth)
    assert 0 < growth[0] < growth[1] < growth[2] < 2 and low < high, (growth, low, high)
    for sigma in (0.3, 1.0, 2.5, 3.0, 3.7, 6.0):
        for fraction in (0.1, 0.5, 0.9, 1.0):
            side = interpolated_extent(gaussian(sigma), fraction)
            assert mass_extent(gaussian(sigma), fraction) == 2 * math.ceil((side - 1) / 2 - 1e-9) + 1, (sigma, fraction)
    assert interpolated_extent(torch.ones(1, 1), 0.3) == pytest.approx(0.3)  # the 1-px square, above the empty one
    with pytest.raises(ValueError, match="fraction"):
        interpolated_extent(gaussian(1.0), 0)
    with pytest.raises(ValueError, match="all zero"):
        interpolated_extent(torch.zeros(5, 5), 0.5)


def test_interpolated_extent_says_where_it_is_not_continuous_in_the_map() -> None:
    """interpolated_extent's docstring said that a map which moves a little mass outwards changes it by a little; its
    squares sit on the rounded centre of mass, so a change that moves that centre across a half pixel re-centres
    them and the extent jumps. The docstring says so, with the house's Args and Returns."""
    def row(x: float) -> torch.Tensor:
        m = torch.zeros(1, 7)
        m[0, 0], m[0, 1], m[0, 5] = 1.0, 2.0, x  # centre of mass (2 + 5 x) / (3 + x): 2.5 at x = 2.2
        return m

    before, after = interpolated_extent(row(2.199), 0.3), interpolated_extent(row(2.201), 0.3)
    assert before == pytest.approx(2.56, abs=0.01) and after == pytest.approx(3.74, abs=0.01)  # the documented jump
    doc = " ".join((interpolated_extent.__doc__ or "").split())
    assert "a map that moves a little mass outwards changes it by a little" not in doc
    assert "continuous in the map only while the squares keep their centre" in doc and "2.56 to 3.74 px" in doc
    assert "Args: erf: a non-negative map (H, W)" in doc and "fraction:" in doc and "Returns: The side in pixels" in doc


def test_squeeze_excitation_gates_keep_the_field_of_the_spatial_path() -> None:
    """An audit: MobileNetV3's squeeze-excitation gate (global pooling, then a product with the map) made the map
    global, and a fallback silently returned the map before the first gate (features.4: 35 px, stride 8), for the
    theory and the brute force alike (``agree: True``). A gate -- a product with a 1x1 global map -- now keeps the
    field of the map it rescales; the reference is the same network with its gates taken out."""
    from torchvision.ops import SqueezeExcitation

    from deeplab_edu.models import build_model

    features = torchvision.models.mobilenet_v3_large().features.eval()
    ungated = torchvision.models.mobilenet_v3_large().features
    for name, module in list(ungated.named_modules()):
        if isinstance(module, SqueezeExcitation):
            parent, _, child = name.rpartition(".")
            setattr(ungated.get_submodule(parent), child, nn.Identity())
    rf, reference = receptive_field_of(features), receptive_field_of(ungated)
    assert (rf.size, rf.stride, rf.padding) == (reference.size, reference.stride, reference.padding) == (595, 32, 297)
    assert rf.path[-1].name == "16.0" and len(rf.gates) == 8 and rf.gates[0] == "4.block.2.scale_activation"
    x = torch.zeros(1, 3, 64, 64)
    assert spatial_part(features)(x).shape == features(x).shape == (1, 960, 2, 2)
    check = compare_with_brute_force(features)
    assert check["agree"] and check["receptive field (theory)"] == 595 and check["effective stride"] == 32
    assert receptive_field_of(torchvision.models.mobilenet_v3_large()).size == 595  # the classifier head is cut off
    model = build_model("deeplabv3", backbone="mobilenet_v3_large", num_classes=3)
    assert receptive_field_of(model.backbone).stride == model.output_stride == 16
    assert receptive_field_of(model, upto="backbone").stride == 16  # was "the requested feature map is global"


class _Gated(nn.Module):
    """conv -> a channel gate computed by ``squeeze`` -> conv."""

    def __init__(self, squeeze: str) -> None:
        super().__init__()
        self.squeeze = squeeze
        self.conv1, self.conv2 = nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 5)
        self.fc = nn.Conv2d(2, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if self.squeeze == "mean":  # a 1x1 map: a gate
            gate = torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))
        elif self.squeeze == "pool":
            gate = torch.sigmoid(self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 1)))
        else:  # "view": a vector reshaped, which the walk cannot see to be 1x1
            gate = torch.sigmoid(x.mean((2, 3))).view(-1, 2, 1, 1)
        return self.conv2(x * gate)


def test_a_global_output_is_cut_only_before_a_head() -> None:
    """The fallback for a global output returned the map before the first node that became global, wherever that
    was. It now applies to a head only (global layers reading one spatial map: resnet18's pooling and classifier);
    a map combined with a global one otherwise is a ValueError naming the node."""
    from deeplab_edu.models import build_model

    for squeeze in ("mean", "pool"):
        assert receptive_field_of(_Gated(squeeze)).size == 7 and len(receptive_field_of(_Gated(squeeze)).gates) == 1
        assert compare_with_brute_force(_Gated(squeeze))["agree"]
    with pytest.raises(ValueError, match="global from node 'mul'"):  # was conv1's 3 px
        receptive_field_of(_Gated("view"))
    with pytest.raises(ValueError, match="global from node 'mul'"):
        spatial_part(_Gated("view"))
    model = build_model("deeplabv3", backbone="tiny_resnet", num_classes=3)
    with pytest.raises(ValueError, match="image pooling.*upto="):  # was the backbone's field, an earlier map
        receptive_field_of(model)
    plus = build_model("deeplabv3plus", backbone="tiny_resnet", num_classes=3)  # the first mix named, not the decoder's
    with pytest.raises(ValueError, match=r"global from node 'cat' \(in aspp\)"):
        receptive_field_of(plus)
    assert receptive_field_of(torchvision.models.resnet18()).path[-1].name == "layer4.1.conv2"


def test_train_toy_takes_the_logits_out_of_any_mapping() -> None:
    """A refactor (deeplab_edu.inference.unwrap_out): train_toy unwrapped a dict only (an OrderedDict, a dict too,
    passed); a model returning another mapping gave F.cross_entropy the mapping itself."""
    from types import MappingProxyType

    from deeplab_edu.effective_receptive_field import train_toy

    class Proxied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 1)

        def forward(self, x: torch.Tensor) -> MappingProxyType[str, torch.Tensor]:
            return MappingProxyType({"out": self.conv(x)})

    g = torch.Generator().manual_seed(0)
    losses = train_toy(Proxied(), lambda: (torch.randn(2, 3, 4, 4, generator=g),
                                           torch.randint(0, 2, (2, 4, 4), generator=g)), 2, lr=1e-2)
    assert len(losses) == 2


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_the_effective_receptive_field_of_a_model_in_another_dtype(dtype: torch.dtype) -> None:
    """An audit: the inputs were float32 whatever the model, so a float64 or bfloat16 model raised "expected
    scalar type Float but found Double"; they are now in its parameters' dtype, and the map stays float32."""
    import copy

    torch.manual_seed(0)
    net = TinyDilatedNet(rates=(1, 2, 1), channels=4)
    erf = effective_receptive_field(copy.deepcopy(net).to(dtype), 15, samples=2)
    expected = effective_receptive_field(net, 15, samples=2)
    assert erf.dtype == torch.float32 and erf.shape == (15, 15)
    torch.testing.assert_close(erf, expected, rtol=0, atol=1e-6 if dtype == torch.float64 else 5e-4)


def test_a_numpy_map_is_named_as_not_a_tensor() -> None:
    """An audit of wrong types: coverage, mass_extent and interpolated_extent of a NumPy map failed with
    "'numpy.ndarray' object has no attribute 'double'"."""
    import numpy as np

    from deeplab_edu.effective_receptive_field import interpolated_extent

    with pytest.raises(TypeError, match=r"^pattern must be a torch tensor .* torch\.from_numpy\(pattern\)$"):
        coverage(np.ones((5, 5)))  # type: ignore[arg-type]
    for extent in (mass_extent, interpolated_extent):
        with pytest.raises(TypeError, match=r"^erf must be a torch tensor \(H, W\), got ndarray"):
            extent(np.ones((5, 5)))  # type: ignore[arg-type]
    assert coverage(torch.ones(5, 5)) == 1.0 and mass_extent(torch.ones(5, 5), 1.0) == 5


def test_extents_name_a_nan_negative_or_wrongly_shaped_map() -> None:
    """A census: a NaN map failed as "cannot convert float NaN to integer", an all-negative one was reported as
    "all zero", and a 1-D or 3-D one as "too many values to unpack"."""
    for extent in (mass_extent, interpolated_extent):
        with pytest.raises(ValueError, match="erf holds NaN or infinite values"):
            extent(torch.full((9, 9), float("nan")))
        with pytest.raises(ValueError, match=r"erf holds negative values .*erf\.abs\(\)"):
            extent(-torch.rand(9, 9) - 0.1)
        for shape in ((9,), (1, 9, 9)):
            with pytest.raises(ValueError, match=rf"erf must be a map \(H, W\), got shape {re.escape(str(shape))}"):
                extent(torch.rand(shape))
