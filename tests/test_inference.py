"""Inference strategies (DeepLabv3 sec. 4), sliding windows, evaluation and the gallery."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from deeplab_edu.inference import (
    PAPER_SCALES, TABLE6_STRATEGIES, Strategy, evaluate, predict, predict_probs, prediction_gallery,
    sliding_window_logits,
)
from test_engine_fixtures import TinyNet, TinyScenes


class Pointwise(nn.Module):
    """A 1x1 convolution: translation- and flip-equivariant, so every strategy must agree with it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)
        self.output_stride = 16
        self.seen: list[int] = []

    def set_output_stride(self, os_: int) -> None:
        self.output_stride = os_
        self.seen.append(os_)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.conv(x)}


def test_paper_scales_and_table5_rows() -> None:
    assert PAPER_SCALES == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    assert TABLE6_STRATEGIES["OS 8 + MS + Flip"].flip and TABLE6_STRATEGIES["OS 8 + MS"].scales == PAPER_SCALES
    assert Strategy().label == "single scale" and TABLE6_STRATEGIES["OS 8 + MS + Flip"].label == "OS 8 + MS + Flip"


def test_sliding_window_equals_the_full_image_for_a_pointwise_model() -> None:
    m = Pointwise()
    x = torch.randn(2, 3, 37, 50)
    full = m(x)["out"]
    assert torch.allclose(sliding_window_logits(m, x, crop_size=16), full, atol=1e-5)
    assert torch.allclose(sliding_window_logits(m, x[..., :10, :12], crop_size=16), full[..., :10, :12], atol=1e-5)
    with_window = predict_probs(m, x, Strategy(crop_size=16))
    assert torch.allclose(with_window, full.softmax(1), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        sliding_window_logits(m, x[0], crop_size=16)
    with pytest.raises(ValueError, match="stride=0"):
        sliding_window_logits(m, x, crop_size=16, stride=0)
    with pytest.raises(ValueError, match="stride=17 is larger than crop_size=16"):  # a trial: NaN logits between
        sliding_window_logits(m, x, crop_size=16, stride=17)


def test_flip_and_output_stride_are_applied_and_restored() -> None:
    m = Pointwise()
    x = torch.randn(1, 3, 9, 11)
    single = predict_probs(m, x)
    assert torch.allclose(predict_probs(m, x, Strategy(flip=True, output_stride=8)), single, atol=1e-6)
    assert m.seen == [8, 16] and m.output_stride == 16
    # a model that is NOT flip-equivariant gives another answer with flipping: the flip path really runs
    torch.manual_seed(1)
    asym = nn.Conv2d(3, 4, (1, 3), padding=(0, 1))
    wrapped = lambda t: {"out": asym(t)}  # noqa: E731
    a = predict_probs(wrapped, x)  # type: ignore[arg-type]
    b = predict_probs(wrapped, x, Strategy(flip=True))  # type: ignore[arg-type]
    assert not torch.allclose(a, b)


def test_a_scale_that_would_leave_no_pixel_keeps_one_and_odd_scales_are_refused() -> None:
    """A 1-pixel strip at scale 0.5 failed with PyTorch's "sizes should be greater than 0"; NaN and
    infinite scales with "cannot be converted to type int64_t"."""
    model = Pointwise()
    strip = torch.randn(3, 1, 40)  # normalised-like (a [0, 1] image is warned of)
    probs = predict_probs(model, strip, Strategy(scales=(0.5, 1.0)))
    assert probs.shape == (1, 4, 1, 40) and torch.isfinite(probs).all()
    for bad in (float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(ValueError, match="scales must be positive finite numbers"):
            Strategy(scales=(bad,))


def test_multi_scale_averages_probabilities() -> None:
    m = Pointwise()
    x = torch.randn(1, 3, 16, 16)
    probs = predict_probs(m, x, Strategy(scales=(0.5, 1.0)))
    half = torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False,
                                           antialias=True)  # shrunk as training's random scale shrinks
    p_half = torch.nn.functional.interpolate(m(half)["out"], size=(16, 16), mode="bilinear", align_corners=False)
    expect = (m(x)["out"].softmax(1) + p_half.softmax(1)) / 2
    assert torch.allclose(probs, expect, atol=1e-6)
    assert predict(m, x[0]).shape == (1, 16, 16)


def test_evaluate_an_oracle_and_draw_the_gallery() -> None:
    class Oracle(nn.Module):  # the label is the brightest (blurred) channel: exactly TinyScenes' rule
        def __init__(self) -> None:
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"out": x * 100}

    ds = TinyScenes(4, augment=False)
    m = evaluate(Oracle(), ds, progress=False)
    assert m["miou"] == 1.0 and m["pixel_accuracy"] == 1.0
    worse = evaluate(TinyNet(), ds, progress=False)
    assert worse["miou"] < 1.0
    images, masks = zip(*(ds[i] for i in range(2)))
    preds = [predict(TinyNet(), im)[0] for im in images]
    fig = prediction_gallery(images, masks, preds, ds.palette)
    assert len(fig.axes) == 8 and fig.axes[3].get_title() == "errors (red; black: right)"


def test_the_gallery_names_the_class_colours_when_given_the_names() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from deeplab_edu.inference import prediction_gallery

    image, mask = torch.rand(3, 16, 16), torch.randint(0, 3, (16, 16))
    palette = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]
    fig = prediction_gallery([image], [mask], [mask], palette, class_names=["background", "car", "boat"])
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert labels[:3] == ["background", "car", "boat"]
    assert not prediction_gallery([image], [mask], [mask], palette).legends


def test_the_gallery_puts_an_examples_panels_in_two_rows_of_two_when_asked() -> None:
    """Chapter 11's street scenes: four panels in a row left each 2 inches wide, too small for poles and
    dark classes; ``columns=2`` gives each example two rows of two panels, each twice as wide."""
    import matplotlib

    matplotlib.use("Agg")
    from deeplab_edu.inference import prediction_gallery

    image, mask = torch.rand(3, 12, 16), torch.randint(0, 3, (12, 16))
    palette = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]
    wide = prediction_gallery([image] * 2, [mask] * 2, [mask] * 2, palette, columns=2)
    assert len(wide.axes) == 8 and [ax.get_title() for ax in wide.axes[4:8]] == [
        "image", "truth", "prediction", "errors (red; black: right)"]
    width = wide.axes[0].get_position().width * wide.get_figwidth()
    one_row = prediction_gallery([image] * 2, [mask] * 2, [mask] * 2, palette)
    assert width > 1.8 * one_row.axes[0].get_position().width * one_row.get_figwidth()
    with pytest.raises(ValueError, match="columns must be 2 or 4"):
        prediction_gallery([image], [mask], [mask], palette, columns=3)


def test_the_error_map_draws_a_band_in_blue_under_the_errors() -> None:
    """Chapter 11 counts the errors inside the trimap band: the errors panel shows that band (blue where
    the prediction is right), and errors stay red inside it."""
    import matplotlib

    matplotlib.use("Agg")
    from deeplab_edu.inference import BAND_COLOUR, error_map, prediction_gallery

    target = torch.zeros(4, 6, dtype=torch.long)
    pred = target.clone()
    pred[0, 0] = pred[3, 5] = 1
    band = torch.zeros(4, 6, dtype=torch.bool)
    band[:, :3] = True
    drawn = error_map(pred, target, band=band)
    assert tuple(drawn[0, 0]) == (220, 30, 30) and tuple(drawn[3, 5]) == (220, 30, 30)  # errors, in and out
    assert tuple(drawn[1, 1]) == BAND_COLOUR and tuple(drawn[1, 4]) == (0, 0, 0)
    plain = error_map(pred, target)
    assert (plain[~band.numpy()] == drawn[~band.numpy()]).all() and tuple(plain[1, 1]) == (0, 0, 0)  # only the band
    with pytest.raises(ValueError, match="and band"):
        error_map(pred, target, band=band[:3])
    fig = prediction_gallery([torch.rand(3, 4, 6)], [target], [pred], [(0, 0, 0), (255, 0, 0)], bands=[band])
    assert fig.axes[3].get_title() == "errors (red); right: black, blue in band"
    with pytest.raises(ValueError, match="bands 2"):
        prediction_gallery([torch.rand(3, 4, 6)], [target], [pred], [(0, 0, 0), (255, 0, 0)], bands=[band, band])


def test_predicting_leaves_a_training_model_as_it_was() -> None:
    """predict_probs runs in eval mode (running statistics used, not updated; no dropout) and gives
    the model back in the mode it had; evaluate refuses a device the model is not on."""
    from deeplab_edu.inference import evaluate, predict_probs
    from deeplab_edu.models import build_model

    torch.manual_seed(0)
    model = build_model("deeplabv3plus", backbone="tiny_resnet", num_classes=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 48, 40)
    first, second = predict_probs(model, x), predict_probs(model, x)
    assert torch.equal(first, second) and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="device='meta' but the model is on cpu"):
        evaluate(model, [(x[0], torch.zeros(48, 40, dtype=torch.long))], num_classes=3, device="meta", progress=False)


def test_an_image_in_zero_one_is_named_not_normalised() -> None:
    import warnings

    from deeplab_edu.data.transforms import normalize

    photo = torch.rand(3, 8, 8)  # as load_image gives it
    with pytest.warns(UserWarning, match=r"in \[0, 1\], not normalised.*normalize\(image\)"):
        predict(Pointwise(), photo)
    with pytest.warns(UserWarning, match=r"values from 0 to 255, pixels in 0-255.*normalize\(image / 255\)"):
        predict(Pointwise(), torch.linspace(0, 255, 3 * 8 * 8).reshape(3, 8, 8))  # float pixels, as a trial passed them
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # normalised: no warning
        predict(Pointwise(), normalize(photo))


def test_a_strategy_keeps_its_scales_as_a_tuple() -> None:
    """A practitioner's review (stop 51): Strategy(scales=[1.0, 1.5]) was accepted and then unhashable;
    Strategy(scales=1.5) failed with "'float' object is not iterable"."""
    strategy = Strategy(scales=[1.0, 1.5])  # type: ignore[arg-type]
    assert strategy.scales == (1.0, 1.5) and {strategy: 1}[Strategy(scales=(1.0, 1.5))] == 1
    with pytest.raises(TypeError, match="scales must be a sequence of positive finite numbers"):
        Strategy(scales=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="scales must be positive finite numbers"):
        Strategy(scales=(True,))  # type: ignore[arg-type]


def test_wrong_types_are_named_before_they_mislead() -> None:
    """A practitioner's trial: Strategy(flip="no") flipped (a truthy string), crop_size=64.5 failed as "slice
    indices must be integers", predict of a NumPy array as "no attribute 'dim'", and evaluate scored a float
    mask of 1.7 as class 1, without a word."""
    model = Pointwise()
    with pytest.raises(TypeError, match="flip must be True or False, got 'no'"):
        Strategy(flip="no")  # type: ignore[arg-type]
    for name, value in (("crop_size", 64.5), ("output_stride", 8.0), ("crop_size", True)):
        with pytest.raises(TypeError, match=f"{name} must be a whole number"):
            Strategy(**{name: value})
    assert Strategy(scales=[0.5, 1], flip=np.bool_(True), crop_size=np.int64(32)).scales == (0.5, 1.0)
    with pytest.raises(TypeError, match="image must be a tensor .* got ndarray; from a NumPy"):
        predict(model, np.zeros((20, 20, 3), np.float32))  # type: ignore[arg-type]
    image = torch.randn(3, 8, 8)
    with pytest.raises(ValueError, match="the masks of item 0 are torch.float32: a mask holds class indices"):
        evaluate(model, [(image, torch.full((8, 8), 1.7))], num_classes=4, progress=False)
    with pytest.raises(ValueError, match=r"item 1: the image is \(8, 8\) \(H, W\) but its mask \(4, 4\)"):
        evaluate(model, [(image, torch.ones(8, 8, dtype=torch.long)), (image, torch.ones(4, 4, dtype=torch.long))],
                 num_classes=4, progress=False)


class _FloatMasksFromItem2(TinyScenes):
    """Its masks from item 2 on are float32, which evaluate refuses in its loop (a ValueError there)."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = super().__getitem__(i)
        return (image, mask.float()) if i >= 2 else (image, mask)


def test_an_evaluation_that_raises_leaves_no_loader_worker_behind() -> None:
    """The error a notebook keeps holds evaluate's frame, whose batch generator, paused, held the loader's iterator
    and so its worker processes, as long as the error was kept (an audit); it is now closed as the loop ends."""
    import psutil

    me = psutil.Process()
    before = {p.pid for p in me.children()}
    with pytest.raises(ValueError, match="the masks of items 2 to 3 are torch.float32") as failed:
        evaluate(TinyNet(3).eval(), _FloatMasksFromItem2(8, augment=False), batch_size=2, num_workers=1,
                 progress=False)
    assert failed.value.__traceback__ is not None  # kept, as a notebook keeps the last error
    left = [p for p in me.children() if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"loader workers still alive after evaluate raised: {left}"


def _reference_probs(model: nn.Module, image: torch.Tensor, strategy: Strategy) -> torch.Tensor:
    """Chapter 11's strategies written out plainly: each view's logits (windows averaged where they overlap),
    resized to the image, softmax, flipped back, averaged."""
    import math

    import torch.nn.functional as F

    def windows(x: torch.Tensor, crop: int) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, max(crop - w, 0), 0, max(crop - h, 0)))
        H, W = x.shape[-2:]
        stride = max(1, (2 * crop) // 3)
        total, count = None, torch.zeros(1, 1, H, W)
        for r in sorted({min(i * stride, H - crop) for i in range(math.ceil(max(H - crop, 0) / stride) + 1)}):
            for c in sorted({min(j * stride, W - crop) for j in range(math.ceil(max(W - crop, 0) / stride) + 1)}):
                out = model(x[..., r:r + crop, c:c + crop])["out"]
                total = torch.zeros(x.shape[0], out.shape[1], H, W) if total is None else total
                total[..., r:r + crop, c:c + crop] += out
                count[..., r:r + crop, c:c + crop] += 1
        assert total is not None
        return (total / count)[..., :h, :w]

    h, w = image.shape[-2:]
    views = []
    with torch.no_grad():
        for flipped in (False, True) if strategy.flip else (False,):
            x0 = image.flip(-1) if flipped else image
            for s in strategy.scales:
                size = (max(1, int(x0.shape[-2] * s)), max(1, int(x0.shape[-1] * s)))
                x = x0 if s == 1 else F.interpolate(x0, size=size, mode="bilinear", align_corners=False,
                                                    antialias=s < 1)
                if strategy.crop_size and max(x.shape[-2:]) > strategy.crop_size:
                    logits = windows(x, strategy.crop_size)
                else:
                    logits = model(x)["out"]
                p = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False).softmax(1)
                views.append(p.flip(-1) if flipped else p)
    return torch.stack(views).mean(0)


@pytest.mark.parametrize("strategy", [Strategy(), Strategy(crop_size=24), Strategy(scales=(0.5, 1.0, 1.25)),
                                      Strategy(flip=True), Strategy(scales=(0.75, 1.25), flip=True, crop_size=24)],
                         ids=lambda s: f"{s.label}{' + windows' if s.crop_size else ''}")
def test_every_strategy_predicts_what_the_plain_reference_does(strategy: Strategy,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit: predicting kept three full-size copies of the class scores; predict now takes the argmax of the
    logits for one scale without flip, and predict_probs turns them into probabilities a band of rows at a time
    (made small here: several bands). Neither may change a label or a probability beyond float rounding."""
    import deeplab_edu.inference as inference
    from deeplab_edu.models import build_model

    monkeypatch.setattr(inference, "_BAND_ELEMENTS", 5 * 7 * 45)  # 7 rows of 5 classes a band
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", backbone="tiny_resnet", num_classes=5).eval()
    image = torch.randn(2, 3, 37, 45)
    expected = _reference_probs(model, image, strategy)
    assert torch.allclose(predict_probs(model, image, strategy), expected, atol=1e-6)
    labels = predict(model, image, strategy)
    top2 = expected.topk(2, dim=1).values
    clear = top2[:, 0] - top2[:, 1] > 1e-5  # not a tie within float rounding
    assert bool(clear.float().mean() > 0.99) and torch.equal(labels[clear], expected.argmax(1)[clear])
    masks = expected.argmax(1)
    scores = evaluate(model, list(zip(image, masks)), strategy, num_classes=5, progress=False)
    assert scores["pixel_accuracy"] > 0.999  # evaluate labels as predict does


def _peak_class_map_copies(run: Any, full_bytes: int) -> float:
    """The peak bytes of tensors of at least ``full_bytes`` (one full-size (N, C, H, W) float32 copy) alive at once
    while ``run()`` runs, in copies: every tensor an operation returns passes a dispatch mode, which counts its
    storage until the last tensor on it is freed."""
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    users: dict[int, int] = {}
    sizes: dict[int, int] = {}
    peak = [0]

    def freed(key: int) -> None:
        users[key] -= 1
        if not users[key]:
            del users[key], sizes[key]

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes() >= full_bytes:
                    key = t.untyped_storage().data_ptr()
                    users[key] = users.get(key, 0) + 1
                    sizes[key] = t.untyped_storage().nbytes()
                    weakref.finalize(t, freed, key)
                    peak[0] = max(peak[0], sum(sizes.values()))
            return out

    with Count():
        run()
    return peak[0] / full_bytes


def test_predicting_keeps_one_full_size_copy_of_the_class_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit: a 150-class model kept three full-resolution float copies of (classes x height x width) while
    predicting (upsampled logits, softmax, the average; sliding windows a sum and its quotient), and the OOM
    killer ended a 4032 x 3024 photo. predict keeps one for one scale without flip (whole or in windows);
    predict_probs two (the average and one view's logits; the softmax a band of rows at a time)."""
    import deeplab_edu.inference as inference
    from deeplab_edu.models import build_model

    torch.manual_seed(0)
    model = build_model("deeplabv3plus", backbone="tiny_resnet", num_classes=150).eval()
    image = torch.randn(1, 3, 64, 80)
    full = 150 * 64 * 80 * 4  # bytes of one copy of the per-class maps
    monkeypatch.setattr(inference, "_BAND_ELEMENTS", 150 * 80 * 8)  # bands of 8 rows: an eighth of a copy
    for strategy in (Strategy(), Strategy(crop_size=32)):
        assert _peak_class_map_copies(lambda: predict(model, image, strategy), full) == 1  # was 3
        assert _peak_class_map_copies(lambda: evaluate(model, [(image[0], torch.zeros(64, 80, dtype=torch.long))],
                                                       strategy, num_classes=150, progress=False), full) == 1
    assert _peak_class_map_copies(lambda: predict_probs(model, image), full) == 2  # was 3
    # a new user's trial: each window's scores were alive while the next window ran (a 150-class model predicted
    # a 2000 x 1500 photo with more memory in 1024-pixel windows than whole): the sum and one window's scores
    window = 150 * 32 * 32 * 4
    assert _peak_class_map_copies(lambda: predict(model, image, Strategy(crop_size=32)), window) == full / window + 1
    assert _peak_class_map_copies(lambda: predict(model, image, Strategy(scales=(0.75, 1.0), flip=True)), full) == 2


def test_multi_scale_views_come_back_where_they_were() -> None:
    """An audit: each scale's input was resized by the nominal factor and its logits back by size, two mappings
    that cancel only where a side times the scale is whole; a 375-pixel side at 0.5 came back shifted by up to a
    pixel. A model that labels each pixel by its colour exactly, at any scale, then lost 78 pixels of a 375 x 500
    image to the paper's six scales (18,632 at 0.5 alone); resized to the size, it loses none."""
    palette = torch.eye(3) - 0.5  # three colours, centred (a normalised image: no warning)

    class ColourOracle(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # the class whose colour is nearest, as logits
            return -20 * ((x[:, None] - palette[None, :, :, None, None]) ** 2).sum(2)

    blocks = torch.randint(0, 3, (76, 101), generator=torch.Generator().manual_seed(0))
    mask = blocks.repeat_interleave(5, 0).repeat_interleave(5, 1)[:375, :500]
    image = palette[mask].permute(2, 0, 1)[None]
    assert int((predict(ColourOracle(), image)[0] != mask).sum()) == 0  # exact at scale 1
    assert int((predict(ColourOracle(), image, Strategy(scales=PAPER_SCALES))[0] != mask).sum()) == 0


def test_unwrap_out_takes_out_of_any_mapping_and_names_the_keys_of_one_without_it() -> None:
    """A refactor: `out["out"] if isinstance(out, Mapping) else out` was written in five modules, two of them with
    `dict` (a model returning another mapping kept it whole); a mapping without "out" failed with KeyError: 'out'."""
    from collections import OrderedDict
    from types import MappingProxyType

    from deeplab_edu.inference import unwrap_out

    logits = torch.zeros(1, 3, 4, 4)
    assert unwrap_out({"out": logits, "aux": torch.ones(1)}) is logits
    assert unwrap_out(OrderedDict(out=logits)) is logits
    assert unwrap_out(MappingProxyType({"out": logits})) is logits
    assert unwrap_out(logits) is logits
    with pytest.raises(ValueError, match=r"the model returns a mapping without 'out' \(keys: logits, aux\); return "
                                         r"the logits tensor, or \{'out': logits\}"):
        unwrap_out({"logits": logits, "aux": logits})


def test_the_not_normalised_warning_points_at_the_callers_line() -> None:
    """A refactor: the image's checks and the warning, called as a pair in three places, are one function now; its
    stacklevel still names the line that called predict, predict_probs or evaluate (this file)."""
    import warnings

    from deeplab_edu import inference

    photo = torch.rand(3, 8, 8)
    calls = [lambda: predict(Pointwise(), photo), lambda: predict_probs(Pointwise(), photo),
             lambda: evaluate(Pointwise(), [(photo, torch.ones(8, 8, dtype=torch.long))], num_classes=4,
                              progress=False)]
    for call in calls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        assert [(w.filename, "not normalised" in str(w.message)) for w in caught] == [(__file__, True)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert inference._checked_image(photo).shape == (1, 3, 8, 8)  # the checks warn themselves
    assert len(caught) == 1 and "not normalised" in str(caught[0].message)


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_a_half_precision_model_predicts_at_several_scales_like_its_float32_twin(half: torch.dtype) -> None:
    """An audit: the antialiased downscale of a bf16/fp16 image raised "compute_index_ranges_weights not implemented
    for 'BFloat16'" on CPU; it now resizes in float32 and casts back."""
    import copy

    torch.manual_seed(0)
    twin = TinyNet().eval()
    model = copy.deepcopy(twin).to(half)
    image = torch.randn(1, 3, 24, 20).to(half)
    strategy = Strategy(scales=(0.5, 1.0))
    probs = predict_probs(model, image, strategy)
    expected = predict_probs(twin, image.float(), strategy)
    assert probs.shape == expected.shape == (1, 3, 24, 20)
    assert torch.allclose(probs.float(), expected, atol=0.01)
    assert predict(model, image, strategy).shape == (1, 24, 20)


def test_numpy_maps_and_a_float_limit_are_named() -> None:
    """An audit of wrong types: error_map of NumPy label maps failed with "'numpy.ndarray' object has no attribute
    'cpu'", and evaluate(limit=1.0) with range()'s "'float' object cannot be interpreted as an integer"."""
    from deeplab_edu.inference import error_map

    labels = np.zeros((4, 4), np.int64)
    with pytest.raises(TypeError, match=r"^pred must be a torch tensor \(H, W\), got ndarray: torch\.from_numpy"):
        error_map(labels, torch.zeros(4, 4, dtype=torch.long))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^band must be a torch tensor"):
        error_map(torch.zeros(4, 4), torch.zeros(4, 4), band=labels.astype(bool))  # type: ignore[arg-type]
    items = [(torch.randn(3, 4, 4), torch.zeros(4, 4, dtype=torch.long))]
    with pytest.raises(TypeError, match=r"^limit must be a whole number of images \(or None: all of them\), got 1\.0$"):
        evaluate(Pointwise(), items, num_classes=4, limit=1.0, progress=False)  # type: ignore[arg-type]
    assert evaluate(Pointwise(), items, num_classes=4, limit=np.int64(1), progress=False)["pixels"] == 16


def test_load_run_of_a_scripts_own_model_names_the_checkpoint_file_to_load(tmp_path) -> None:
    """An audit: load_run of a run's folder whose script built its own model advised torch.load(path, ...) and
    named the folder, not the checkpoint file in it that the advice is to load."""
    from deeplab_edu.engine.checkpoint import CheckpointMismatchError
    from deeplab_edu.inference import load_run

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    file = tmp_path / "run" / "checkpoints" / "ckpt_2.pt"
    torch.save({"model": TinyNet().state_dict(), "config": {"output_stride": 16},
                "model_info": {"name": "deeplabv3", "backbone": "tiny_resnet", "num_classes": 3,
                               "model_class": "test_engine_fixtures.TinyNet"}}, file)
    with pytest.raises(CheckpointMismatchError, match="built itself") as err:
        load_run(tmp_path / "run")
    assert f"torch.load({str(file)!r}, weights_only=True)['model']" in str(err.value)
    assert str(err.value).startswith(f"checkpoint {file} was written for another model")


def test_a_wrong_type_is_a_type_error_in_a_strategy_as_in_sliding_windows() -> None:
    """A census: Strategy(crop_size=64.5) raised ValueError, sliding_window_logits(model, image, 64.5) TypeError."""
    for kwargs in ({"crop_size": 64.5}, {"output_stride": 8.0}, {"flip": "no"}, {"scales": 1.5}, {"scales": ("1",)}):
        with pytest.raises(TypeError):
            Strategy(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="crop_size must be a whole number"):
        sliding_window_logits(Pointwise(), torch.randn(1, 3, 8, 8), 64.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scales must be positive finite numbers"):
        Strategy(scales=(0.0,))  # a wrong value stays a ValueError


def test_evaluate_names_the_item_whose_mask_holds_a_label_out_of_range() -> None:
    """A census: a mask holding 9 with num_classes=4 raised metrics' "target holds label 9 ..." naming no item,
    though evaluate's docstring says its messages name them."""
    image, mask = torch.randn(3, 8, 8), torch.zeros(8, 8, dtype=torch.long)
    bad = mask.clone()
    bad[0, 0] = 9
    with pytest.raises(ValueError, match=r"^item 2: a mask holds label 9, outside \[0, 4\) and not the ignore index"):
        evaluate(Pointwise(), [(image, mask), (image, mask), (image, bad)], num_classes=4, progress=False)
    assert evaluate(Pointwise(), [(image, bad)], num_classes=4, ignore_index=9, progress=False)["miou"] >= 0


def test_evaluate_says_its_items_are_image_mask_pairs() -> None:
    """A census: dict items failed with AttributeError, triples with "too many values to unpack", and an (H, W)
    image was reported as (1, 1, H, W)."""
    image, mask = torch.randn(3, 8, 8), torch.zeros(8, 8, dtype=torch.long)
    model = Pointwise()
    with pytest.raises(TypeError, match=r"\(image \(3, H, W\), mask \(H, W\)\) pairs; item 0 are mappings "
                                        r"\(keys 'image', 'mask'\)"):
        evaluate(model, [{"image": image, "mask": mask}], num_classes=4, progress=False)
    with pytest.raises(TypeError, match="pairs; item 0 are 3 values each"):
        evaluate(model, [(image, mask, 0)], num_classes=4, progress=False)
    with pytest.raises(ValueError, match=r"pairs; item 0: the image is \(8, 8\) and the mask \(8, 8\)"):
        evaluate(model, [(image[0], mask)], num_classes=4, progress=False)
    with pytest.raises(ValueError, match=r"the image is \(3, 8, 8\) and the mask \(1, 8, 8\)"):
        evaluate(model, [(image, mask[None])], num_classes=4, progress=False)


def test_load_run_checks_the_device_before_reading_the_checkpoint(tmp_path) -> None:
    """A census: device="gpu" gave torch's raw "Expected one of cpu, cuda, ..." after the checkpoint was read."""
    from deeplab_edu.inference import load_run

    with pytest.raises(ValueError, match=r"^device='gpu' is not a device: use cpu, cuda"):
        load_run(tmp_path / "nothing_here.pt", device="gpu")  # named before the missing file


def test_load_run_of_a_runs_settings_file_asks_for_its_checkpoint(tmp_path) -> None:
    """A census: load_run("run/config.json") said "not a file torch.save wrote ... copy it again"."""
    from deeplab_edu.inference import load_run

    for name in ("config.json", "metrics.csv"):
        (tmp_path / name).write_text("{}")
        with pytest.raises(RuntimeError, match=r"it is a run's settings or metrics file .* pass the checkpoint "
                                               r"\(a \.pt file .* or the run's folder"):
            load_run(tmp_path / name)


def test_load_run_takes_device_none_as_the_cpu(tmp_path) -> None:
    """A review: the device check turned None (a wrapper's optional argument) into 'None', refused as no device;
    before the check, None loaded on the CPU: it still does (a missing file is the only complaint here)."""
    from deeplab_edu.inference import load_run

    with pytest.raises(FileNotFoundError):
        load_run(tmp_path / "nothing_here.pt", None)  # type: ignore[arg-type]
