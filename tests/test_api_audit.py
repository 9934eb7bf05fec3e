"""What an audit of the public API against its docstrings found (stop 69): NaN scores counted as class 0
(a model of NaN weights scored a perfect mIoU), rates cut to integers without a word, arguments that
built a module failing at its first forward pass, errors of another type than documented, and an
ablation ``ASPP`` documents that ``build_model`` refused.

Each test states the right result; each failed before its fix.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeplab_edu.metrics import NAN_SCORES, ConfusionMatrix, counted_labels, trimap_target
from deeplab_edu.models import build_model
from deeplab_edu.models.aspp import ASPPConv, ImagePooling
from deeplab_edu.models.heads import Decoder, FCNHead


class _Scenes(torch.utils.data.Dataset):
    """Two normalised 33 x 33 scenes of background only (class 0 of 3)."""

    num_classes = 3

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(3, 33, 33, generator=torch.Generator().manual_seed(i)), torch.zeros(33, 33, dtype=torch.long)


def _nan_model() -> torch.nn.Module:
    model = build_model("deeplabv3", backbone="tiny_resnet", num_classes=3).eval()
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    return model


def test_nan_scores_are_refused_not_counted_as_class_0() -> None:
    from deeplab_edu.inference import evaluate, predict

    with pytest.raises(ValueError, match="scores hold NaN, which argmax would label class 0"):
        ConfusionMatrix(2).update(torch.full((1, 2, 2, 2), float("nan")), torch.zeros(1, 2, 2, dtype=torch.long))
    model = _nan_model()
    with pytest.raises(ValueError, match=NAN_SCORES[:40]):
        predict(model, torch.randn(1, 3, 33, 33))  # was a map of class 0
    with pytest.raises(ValueError, match=NAN_SCORES[:40]):
        evaluate(model, _Scenes(), num_workers=0, progress=False)  # was mIoU 1.0
    cm = ConfusionMatrix(2)  # scores without NaN are still counted
    cm.update(torch.tensor([[[[1.0]], [[0.0]]]]), torch.zeros(1, 1, 1, dtype=torch.long))
    assert cm.compute()["miou"] == 1.0


def test_evaluate_refuses_num_classes_0_instead_of_replacing_it() -> None:
    from deeplab_edu.inference import evaluate

    model = build_model("deeplabv3", backbone="tiny_resnet", num_classes=3).eval()
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        evaluate(model, _Scenes(), num_classes=0, num_workers=0, progress=False)


def test_multi_grid_and_extra_blocks_take_whole_numbers_only() -> None:
    from deeplab_edu.models.backbones import TinyResNetBackbone

    for multi_grid in [(1, 2.7, 4), "124", (True, 2, 4)]:
        with pytest.raises(ValueError, match=r"multi_grid needs 3 whole unit rates"):
            TinyResNetBackbone(multi_grid=multi_grid)  # type: ignore[arg-type]  # (1, 2.7, 4) was (1, 2, 4)
    assert TinyResNetBackbone(multi_grid=(1, 2, 4)).block_rates()[3] == (2, 4, 8)
    assert TinyResNetBackbone(multi_grid=(1, 2.0, np.int64(4))).block_rates()[3] == (2, 4, 8)  # whole, as rates
    with pytest.raises(ValueError, match="extra_blocks must be 0, 1, 2 or 3"):
        TinyResNetBackbone(extra_blocks=True)  # was one block
    assert len(TinyResNetBackbone(extra_blocks=np.int64(1)).block_rates()) == 5  # was refused  # type: ignore[arg-type]


def test_the_losss_weights_are_checked() -> None:
    from deeplab_edu.engine.losses import SegmentationLoss

    with pytest.raises(ValueError, match="aux_weight must be a finite weight of at least 0, got -1"):
        SegmentationLoss(aux_weight=-1)  # the loss of a perfect 'out' and a bad 'aux' was 0
    with pytest.raises(ValueError, match="aux_weight"):
        SegmentationLoss(aux_weight=float("nan"))
    for iters in (-1, 1.5):
        with pytest.raises(ValueError, match="hard_mining_iters must be a whole number"):
            SegmentationLoss(top_k=0.5, hard_mining_iters=iters)  # type: ignore[arg-type]


def test_build_model_takes_the_aspp_ablation_its_aspp_documents() -> None:
    model = build_model("deeplabv3", backbone="tiny_resnet", num_classes=3, atrous_rates=()).eval()
    assert model(torch.randn(1, 3, 33, 33))["out"].shape == (1, 3, 33, 33)  # was "must be positive integers, got ()"
    assert model.build_kwargs is not None and model.build_kwargs["atrous_rates"] == []
    with pytest.raises(ValueError, match=r"at least one for deeplabv2\), got \(\)"):
        build_model("deeplabv2", backbone="tiny_resnet", num_classes=3, atrous_rates=())


@pytest.mark.parametrize("make, message", [
    (lambda: ASPPConv(4, 4, -1), "ASPPConv: rate must be a positive integer, got -1"),
    (lambda: ASPPConv(4, 4, 2.5), "ASPPConv: rate must be a positive integer, got 2.5"),
    (lambda: ASPPConv(4, 4, 0), "rate"),
    (lambda: ImagePooling(0, 4), "ImagePooling: in_channels must be a positive integer, got 0"),
    (lambda: FCNHead(3, 2), "FCNHead: in_channels must be at least 4"),
    (lambda: Decoder(8, 8, 0), "Decoder: num_classes must be a positive integer, got 0"),
])
def test_modules_refuse_at_construction_what_would_fail_at_their_first_forward_pass(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_heads_take_whole_floats_as_their_counts() -> None:
    assert FCNHead(8.0, 2.0)(torch.randn(1, 8, 5, 5)).shape == (1, 2, 5, 5)  # type: ignore[arg-type]  # a review:
    decoder = Decoder(8.0, 8.0, 3.0, reduced_channels=4.0, channels=8.0)  # type: ignore[arg-type]  # a TypeError
    assert decoder(torch.randn(1, 8, 3, 3), torch.randn(1, 8, 9, 9)).shape == (1, 3, 9, 9)


def test_a_model_refuses_a_negative_number_of_classes() -> None:
    from deeplab_edu.models.aspp import ASPP
    from deeplab_edu.models.backbones import TinyResNetBackbone
    from deeplab_edu.models.deeplab import DeepLabV3

    backbone = TinyResNetBackbone()
    with pytest.raises(ValueError, match="num_classes must be a positive integer, got -1"):  # was "negative dimension"
        DeepLabV3(backbone, ASPP(backbone.out_channels, (1, 2, 3), 16), -1)


def test_input_footprint_reads_a_segmentation_models_out() -> None:
    from deeplab_edu.boundary import input_footprint

    model = build_model("deeplabv3", backbone="tiny_resnet", num_classes=2)
    footprint = input_footprint(model, 33, 33, channels=3)  # was "'dict' object has no attribute 'shape'"
    assert footprint.shape == (33, 33) and footprint[16, 16]
    with pytest.raises(TypeError, match=r"position must be two whole numbers \(row, column\), got \(1.5, 2\)"):
        input_footprint(model, 33, 33, position=(1.5, 2), channels=3)  # type: ignore[arg-type]  # was an IndexError
    with pytest.raises(TypeError, match="position must be two whole numbers"):
        input_footprint(model, 33, 33, position=(1, 2, 3), channels=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="returns a mapping without 'out' .keys: logits."):
        input_footprint(lambda x: {"logits": x}, 9, 9)


def test_feature_map_sides_and_degenerate_rates_take_whole_numbers() -> None:
    from deeplab_edu.models.aspp import degenerate_rates, feature_map_side

    assert feature_map_side(513, 16) == 33
    for args in [(513, True), (5.5, 8), ("5", 8)]:  # (513, True) was 513, (5.5, 8) was 1, "5" a TypeError
        with pytest.raises(ValueError, match="need input_side >= 1 and output_stride in 1..32"):
            feature_map_side(*args)  # type: ignore[arg-type]
    assert degenerate_rates(6, (2, 6, 12)) == (6, 12)
    with pytest.raises(ValueError, match="degenerate_rates: rates must be positive whole numbers"):
        degenerate_rates(6, (2.5, 6.9, -3))  # type: ignore[arg-type]  # was (6,): 6.9 cut to 6


def test_the_crfs_one_image_functions_name_a_batch() -> None:
    from deeplab_edu.crf import kernel_maps, kernel_matrices, message_passing_approx

    with pytest.raises(ValueError, match=r"kernel_matrices takes one image: image must be \(3, H, W\), got \(1, 3, 8, 8\)"):
        kernel_matrices(torch.rand(1, 3, 8, 8))  # was "... but unary has 3 dimensions", an argument not given
    with pytest.raises(ValueError, match=r"message_passing_approx takes one image: q must be \(L, H, W\)"):
        message_passing_approx(torch.rand(1, 2, 8, 8).softmax(1), torch.rand(1, 3, 8, 8))  # failed in the lattice
    with pytest.raises(ValueError, match="kernel_maps takes one image"):
        kernel_maps(torch.rand(1, 3, 8, 8), (1, 1))
    assert message_passing_approx(torch.rand(2, 8, 8).softmax(0), torch.rand(3, 8, 8)).shape == (2, 8, 8)


def test_metrics_helpers_name_bad_shapes_and_widths() -> None:
    with pytest.raises(ValueError, match=r"pred shape \(4,\) does not match target shape \(5,\)"):
        counted_labels(torch.zeros(4, dtype=torch.long), torch.zeros(5, dtype=torch.long), 2)  # was an IndexError
    mask = torch.zeros(1, 8, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="width must be a whole number of pixels, >= 0, got 1.5"):
        trimap_target(mask, 1.5)  # type: ignore[arg-type]  # was a TypeError of max_pool2d
    with pytest.raises(ValueError, match=r"target must be \(H, W\) or \(N, H, W\) labels, got \(1, 1, 8, 8\)"):
        trimap_target(mask[None], 1)


def test_denormalize_and_random_scale_check_their_arguments() -> None:
    from deeplab_edu.data.transforms import RandomScale, denormalize

    with pytest.raises(TypeError, match="denormalize: image has dtype torch.uint8"):
        denormalize(torch.zeros(3, 4, 4, dtype=torch.uint8))  # was black
    with pytest.raises(ValueError, match=r"denormalize: image of shape \(4, 4\)"):
        denormalize(torch.zeros(4, 4))  # was broadcast to (3, 4, 4)
    with pytest.raises(ValueError, match=r"scale_range must be two numbers \(low, high\)"):
        RandomScale(1.0)  # type: ignore[arg-type]  # was a TypeError: 'float' object is not iterable
    with pytest.raises(ValueError, match="both finite"):
        RandomScale((1.0, float("inf")))  # failed at the first image


def test_receptive_field_functions_take_numpy_sides_and_name_bad_ones() -> None:
    from deeplab_edu.effective_receptive_field import effective_receptive_field
    from deeplab_edu.receptive_field import empirical_receptive_field, receptive_field_of

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1))
    assert effective_receptive_field(net, np.int64(15)).shape == (15, 15)  # type: ignore[arg-type]  # "not iterable"
    assert empirical_receptive_field(net, np.int64(9)).rows == (3, 5)  # type: ignore[arg-type]
    for size in (0, (3,), True):  # 0 was a convolution's RuntimeError
        with pytest.raises(ValueError, match="input_size must be a side or"):
            effective_receptive_field(net, size)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="axis must be 0 .height. or 1 .width., got 2"):
        receptive_field_of(net, axis=2)  # was an IndexError


def test_nan_validation_scores_stop_training_naming_the_last_good_checkpoint(tmp_path) -> None:
    """The review of the NaN check: NaN scores in a mid-run validation end the run as a NaN loss does (no
    checkpoint of the NaN model written, the last good one named), not as a ValueError; before the audit they
    were labelled class 0 and the mIoU logged as a number."""
    from deeplab_edu.engine import checkpoint as ck
    from deeplab_edu.engine.trainer import NonFiniteLossError, Trainer
    from test_engine_fixtures import TinyNet, TinyScenes, tiny_config

    class NanWhenEvaluated(TinyNet):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            out = super().forward(x)
            return out if self.training else {"out": out["out"] * float("nan")}

    cfg = tiny_config(tmp_path, iterations=6, ckpt_every=2, eval_every=4)
    trainer = Trainer(cfg, model=NanWhenEvaluated(), train_set=TinyScenes(16), val_set=TinyScenes(2, augment=False))
    with pytest.raises(NonFiniteLossError, match=r"validation scores hold NaN at iteration 4 .*ckpt_00000002\.pt"):
        trainer.fit()
    assert ck.latest_checkpoint(tmp_path / "checkpoints").name == "ckpt_00000002.pt"


# ----------------------------------------------------------------------------- the second audit: viz, findings, ...
def test_findings_helpers_refuse_what_they_scored_wrongly() -> None:
    from deeplab_edu import findings

    with pytest.raises(TypeError, match="must hold integer labels"):  # [0.7, 1.2] was cut to [0, 1]: perfect
        findings.scene_confusions(torch.tensor([[[0.7, 1.2]]]), torch.tensor([[[0, 1]]]), 2)
    cm = np.array([[5, 1], [0, 4]])
    with pytest.raises(ValueError, match="class -1 is not one of the matrix's 2 classes"):
        findings.class_iou(cm, -1)  # was the last class's IoU
    with pytest.raises(ValueError, match="between two classes, got class 0 twice"):
        findings.confusion_share(cm, 0, 0)  # was 0.83
    for name in ("band", "bandfoo:miou"):  # an unpacking error, and accepted
        with pytest.raises(ValueError, match="band<width>:<metric>"):
            findings.metric(name)
    with pytest.raises(ValueError, match="a confusion names two classes"):
        findings.metric("confusion:car/boat/wire")
    with pytest.raises(ValueError, match=r"level is a fraction in \(0, 1\)"):
        findings.seed_interval([0.1, 0.2, 0.3], level=95)  # was (nan, nan), read as "not resolved"
    with pytest.raises(ValueError, match=r"level is a fraction"):
        findings.seed_prediction_interval([0.1, 0.2], level=95)
    cms = np.ones((2, 3, 2, 2))
    with pytest.raises(ValueError, match="n_boot must be a whole number of replicates"):
        findings.bootstrap_difference(cms, cms, findings.miou, n_boot=0)  # "cannot unpack non-iterable"


def test_a_record_keeps_numpy_and_torch_numbers_as_numbers(tmp_path) -> None:
    import json

    from deeplab_edu.records import write_record

    path = write_record(tmp_path / "r.json", {"miou": np.float32(0.5), "n": np.int64(3), "iou": np.array([0.25, 1.0]),
                                              "t": torch.tensor([1.5]), "where": tmp_path}, command="x")
    results = json.loads(path.read_text())["results"]
    assert results == {"miou": 0.5, "n": 3, "iou": [0.25, 1.0], "t": [1.5], "where": str(tmp_path)}  # were strings


def test_figures_draw_where_they_say() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from deeplab_edu.receptive_field import LayerSpec, receptive_field
    from deeplab_edu.viz.receptive_field import plot_erf_maps
    from deeplab_edu.viz.training import plot_band_comparison

    rf = receptive_field([LayerSpec(3, padding=1)])
    axes = plot_erf_maps({"wide": torch.rand(9, 21)}, rf)
    square = axes[0].patches[0]
    assert (square.get_x(), square.get_y()) == (8.5, 2.5)  # column 10, row 4: was x 2.5, the row's index
    fig = plot_band_comparison([0, 1, 4], {"m": {w: {"miou": 0.5} for w in (0, 1, 4)}})
    assert fig.axes[0].get_xscale() == "symlog"  # a log axis piled 0, 1 and 4 at its right edge


def test_viz_and_crf_helpers_name_bad_arguments() -> None:
    from deeplab_edu.crf_eval import grid_search, recolour_objects
    from deeplab_edu.gridding import sampling_pattern
    from deeplab_edu.viz.images import colorize, overlay
    from deeplab_edu.viz.training import loss_decreased

    image, mask = torch.full((3, 4, 6), 0.5), torch.tensor([[1, 1, 0, 0, 2, 2]] * 4)
    with pytest.raises(ValueError, match="image must be RGB in .0, 1."):
        recolour_objects(image * 255, mask, "class")  # was clipped: a white background
    assert torch.equal(sampling_pattern(iter([1, 2])), sampling_pattern((1, 2)))  # was the pattern of no layer
    coloured = colorize(mask.numpy(), [(0, 0, 0), (255, 0, 0), (0, 0, 255)])
    with pytest.raises(ValueError, match=r"alpha is the mask's weight in \[0, 1\], got 1.5"):
        overlay(image, coloured, alpha=1.5)  # wrapped around in uint8
    with pytest.raises(ValueError, match="must both be"):
        overlay(image, coloured[:2])
    assert colorize(np.eye(2, dtype=bool), [(0, 0, 0), (255, 0, 0)])[0, 0].tolist() == [255, 0, 0]  # an IndexError
    with pytest.raises(ValueError, match="looks like a colour image already"):
        colorize(coloured, [(0, 0, 0)])  # was an (H, W, 3, 3) array
    with pytest.raises(ValueError, match="one RGB triple"):
        colorize(mask, [(0, 0, 0, 255)])
    with pytest.raises(ValueError, match="w_bilateral holds no value to try"):
        grid_search([(image, mask)], 3, w_bilateral=(), progress=False)  # "max() arg is an empty sequence"
    with pytest.raises(ValueError, match="theta_beta holds no value to try"):  # a generator is an axis too
        grid_search([(image, mask)], 3, w_bilateral=(v for v in (3, 4)), theta_beta=iter(()), progress=False)
    with pytest.raises(ValueError, match="window must be at least 1"):
        loss_decreased([{"split": "train", "loss": 1.0}] * 4, window=0)  # divided by zero


def test_probe_confusions_refuses_another_number_of_classes() -> None:
    from deeplab_edu.context_reach import ShoreScenes, probe_confusions

    scenes = ShoreScenes(2, 24, far=True)

    class ThreeClasses(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"out": torch.zeros(x.shape[0], 3, *x.shape[-2:])}

    with pytest.raises(ValueError, match=r"should be \{'out': \(N, 5, H, W\)\}"):
        probe_confusions(ThreeClasses(), scenes)  # was scored after the argmax


def test_exercise_helpers_take_what_a_cell_measures() -> None:
    from deeplab_edu.complexity import check_rounds
    from deeplab_edu.exercises import measured_and_predicted, value_exercise

    assert measured_and_predicted(3.0, 3, "d").startswith("measured: 3; your prediction: 3")  # a ValueError
    assert measured_and_predicted(torch.tensor([0.4]), 0.3).startswith("measured: 0.400")  # a TypeError
    with pytest.raises(ValueError, match="rel_tol and abs_tol must be finite and at least 0"):
        value_exercise("zz.audit", "t", solution=lambda: 1, otherwise=0, rel_tol=-1)  # registered; every check failed
    with pytest.raises(ValueError, match="both whole numbers, got repeats=1.5"):
        check_rounds(1.5, 1)  # passed, and failed in range() after the counting


def test_runs_root_names_an_unknown_profile() -> None:
    from deeplab_edu.viz.training import runs_root

    with pytest.raises(ValueError, match="profile must be one of smoke, cpu, gpu"):
        runs_root("bogus")  # was <repo>/runs, as for cpu


def test_numpy_integers_are_integers_everywhere() -> None:
    """The audit: NumPy's integers (a rate read from an array, a side from a shape) were accepted by some
    functions and refused by others; set_conv_rate took True as a rate."""
    from deeplab_edu.atrous import atrous_conv1d, conv_output_size
    from deeplab_edu.crf import CRFParams
    from deeplab_edu.crf_eval import coarse_scores
    from deeplab_edu.effective_receptive_field import TinyDilatedNet
    from deeplab_edu.gridding import sampling_pattern
    from deeplab_edu.models.aspp import fit_atrous_rates, set_conv_rate
    from deeplab_edu.receptive_field import LayerSpec

    two = np.int64(2)
    assert conv_output_size(np.int64(10), 3) == 8
    assert atrous_conv1d(torch.arange(10.0), torch.ones(3), two).shape == (6,)
    conv = torch.nn.Conv2d(1, 1, 3)
    set_conv_rate(conv, two)
    assert conv.dilation == (2, 2) and type(conv.dilation[0]) is int
    with pytest.raises(ValueError, match="atrous rate must be a positive integer, got True"):
        set_conv_rate(conv, True)  # type: ignore[arg-type]
    assert type(LayerSpec(np.int64(3)).kernel) is int  # type: ignore[arg-type]
    assert torch.equal(sampling_pattern((np.int64(1), two)), sampling_pattern((1, 2)))  # type: ignore[arg-type]
    assert fit_atrous_rates(np.int64(33), (6, 12, 18)) == fit_atrous_rates(33, (6, 12, 18))  # type: ignore[arg-type]
    params = CRFParams(iterations=np.int64(5), theta_alpha=np.int64(80))  # type: ignore[arg-type]
    assert type(params.iterations) is int and type(params.theta_alpha) is float
    assert TinyDilatedNet((np.int64(1), two))(torch.randn(1, 3, 9, 9)).shape == (1, 2, 9, 9)  # type: ignore[arg-type]
    assert coarse_scores(torch.zeros(8, 8, dtype=torch.long), 2, output_stride=two).shape[-2:] == (8, 8)  # type: ignore[arg-type]


def test_the_audits_smaller_leftovers_are_named_errors() -> None:
    """Stop 70: the leftovers of stop 69's audits, each an error that named neither the argument nor the
    way out (a convolution's size complaint, an unpacking error, a float's TypeError deep in torch)."""
    import matplotlib

    matplotlib.use("Agg")
    from deeplab_edu.context_reach import BOAT
    from deeplab_edu.crf_eval import evaluate_crf
    from deeplab_edu.models import build_backbone
    from deeplab_edu.viz.context_reach import vehicle_centre
    from deeplab_edu.viz.crf import plot_refinement
    from deeplab_edu.viz.data import procedural_explorer, show_pairs
    from deeplab_edu.viz.decoder import stride_oracle
    from deeplab_edu.viz.output_stride import macs_by_input_size, plot_feature_maps
    from deeplab_edu.viz.receptive_field import plot_erf_maps, plot_gridding, plot_output_stride_grids

    with pytest.raises(ValueError, match="sizes are input sides in pixels, whole numbers from 1; got 0"):
        macs_by_input_size(build_backbone("tiny_resnet"), [64, 0])  # torch: "Kernel size can't be greater"
    image = torch.rand(3, 32, 32)
    with pytest.raises(ValueError, match=r"features\[16\] must be a \(1, C, h, w\).*f\[None\]"):
        plot_feature_maps(image, {16: torch.rand(8, 2, 2)})  # an IndexError
    with pytest.raises(ValueError, match=r"image must be an RGB tensor \(3, H, W\), got shape \(1, 3, 32, 32\)"):
        plot_feature_maps(image[None], {16: torch.rand(1, 8, 2, 2)})
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, 2:4, 2:4] = BOAT
    assert vehicle_centre(labels[0]) == (2, 2)
    with pytest.raises(ValueError, match=r"one \(H, W\) label map, got shape \(2, 8, 8\).*labels\[i\]"):
        vehicle_centre(labels)  # "too many values to unpack"
    with pytest.raises(ValueError, match="stride must be a whole number of pixels from 1, got 2.5"):
        stride_oracle(labels[0], 2.5, 4)  # avg_pool2d's TypeError
    assert stride_oracle(labels[0], np.int64(2), 4).shape == (8, 8)
    with pytest.raises(ValueError, match="count is the number of scenes shown"):
        procedural_explorer(count=0)  # "length must be a positive int"
    pair = (image, torch.zeros(32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="pairs is empty"):
        show_pairs([], ["a"], [(0, 0, 0)])  # matplotlib: "Number of rows must be a positive integer"
    with pytest.raises(ValueError, match="titles has 1 titles for 2 pairs"):
        show_pairs([pair, pair], ["a"], [(0, 0, 0)], titles=["only one"])  # an IndexError
    with pytest.raises(ValueError, match="titles has 2 titles for 4 panels"):
        plot_refinement(image, pair[1], pair[1], pair[1], [(0, 0, 0)], titles=("a", "b"))  # untitled panels
    with pytest.raises(ValueError, match="patterns is empty"):
        plot_gridding({})  # matplotlib's "Number of columns must be a positive integer"
    with pytest.raises(ValueError, match="maps is empty"):
        plot_erf_maps({}, None)  # type: ignore[arg-type]  # the check comes before the field is read
    with pytest.raises(ValueError, match="fields is empty"):
        plot_output_stride_grids({}, image, {})
    bad = [pair, (image, torch.full((32, 32), 7))]  # the second mask holds a label outside the 3 classes
    with pytest.raises(ValueError, match="evaluate_crf: item 1 of the data set"):
        evaluate_crf(bad, 3)


def test_whole_number_names_the_argument_and_takes_numpy_integers():
    """The one check of counts, sizes and rates that atrous and boundary share (choices.whole_number)."""
    import numpy as np

    from deeplab_edu.choices import whole_number

    assert whole_number(np.int64(3), "rate") == 3 and type(whole_number(np.int64(3), "rate")) is int
    assert whole_number(0, "padding", minimum=0) == 0
    for bad in (2.0, True, "3", None):
        with pytest.raises(TypeError, match=r"^rate must be a whole number \(an int\), got"):
            whole_number(bad, "rate")
    with pytest.raises(ValueError, match="^rate must be a positive integer, got 0$"):
        whole_number(0, "rate")
    with pytest.raises(ValueError, match="^padding must be >= 0, got -1$"):
        whole_number(-1, "padding", minimum=0)


def test_overlay_reads_a_float_array_as_display_rgb_reads_a_float_tensor() -> None:
    """An audit of wrong types: a float (H, W, 3) array in [0, 1], display_rgb's own output among them, was read
    as 0-255 and drawn black, where the same picture as a tensor was drawn as it is."""
    from deeplab_edu.viz.images import colorize, display_rgb, overlay

    black = colorize(torch.zeros(4, 4, dtype=torch.long), [(0, 0, 0)])
    grey = torch.full((3, 4, 4), 0.8)
    assert overlay(display_rgb(grey), black)[0, 0].tolist() == overlay(grey, black)[0, 0].tolist() == [102] * 3
    assert overlay(np.full((4, 4, 3), 204, np.uint8), black)[0, 0].tolist() == [102] * 3  # uint8 as before


def test_a_float_image_of_0_to_255_values_is_shown_as_its_uint8_twin() -> None:
    """A review of the change above: a float array (or tensor) of 0-255 values (``np.asarray(photo).astype(float)``)
    went through the normalised branch and came out almost white; no normalised pixel exceeds NORMALISED_MAX
    (2.64), so a non-negative image above it is 0-255 in floats."""
    from deeplab_edu.viz.images import NORMALISED_MAX, colorize, display_rgb, overlay

    assert abs(NORMALISED_MAX - (1 - 0.406) / 0.225) < 1e-9
    photo = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)
    as_floats = photo.float()
    np.testing.assert_allclose(display_rgb(as_floats), display_rgb(photo), atol=1e-6)
    black = colorize(torch.zeros(5, 7, dtype=torch.long), [(0, 0, 0)])
    hwc = photo.permute(1, 2, 0).numpy()
    assert (overlay(hwc.astype(np.float64), black) == overlay(hwc, black)).all()
    normalised = (torch.rand(3, 5, 7) - 0.45) / 0.226  # a normalised image still goes through denormalize
    assert not np.allclose(display_rgb(normalised), display_rgb(normalised.clamp(0, 1)))
