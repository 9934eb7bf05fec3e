"""Bad input a fresh adversarial trial found (stop 53): each case failed late, silently or naming the wrong
thing before its fix, and now fails at once naming the file or setting (or is handled).

1000 DataLoader workers (the machine ran out of memory), a negative poly power (a crash at the last step),
a full disk under a checkpoint (torch's "unexpected pos"), a checkpoint with flipped bytes (loaded as
weights), negative loss and learning-rate multipliers, a flat grey photo (a wrong "normalise it" warning),
a config file that is not UTF-8 or gives a key twice, a multi-frame image (its file left open), an empty
or mismatched evaluation, a NaN image, and a folder that is not writable (the temporary file named).
"""

from __future__ import annotations

import errno
import gc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deeplab_edu.engine.config import ConfigError, load_config


def test_more_workers_than_the_machine_takes_are_refused(tmp_path: Path) -> None:
    from deeplab_edu.engine.trainer import Trainer
    from deeplab_edu.engine.workers import max_num_workers, resolve_num_workers

    most = max_num_workers()
    assert resolve_num_workers(most) == most
    with pytest.raises(ValueError, match=f"num_workers=1000: more than {most} worker processes"):
        resolve_num_workers(1000)
    with pytest.raises(ConfigError, match=r"num_workers=1000.*\(--num-workers\)"):
        Trainer(load_config("smoke", {"num_workers": 1000, "out_dir": str(tmp_path / "run")}))
    assert not (tmp_path / "run").exists()  # refused before the run's folder was made


@pytest.mark.parametrize("setting, value, message", [
    ("poly_power", -1.0, "poly_power=-1.0: the poly schedule"),
    ("head_lr_mult", -1.0, "head_lr_mult=-1.0: the head's learning rate"),
    ("head_lr_mult", 0.0, "head_lr_mult=0.0"),
    ("aux_weight", -2.0, "aux_weight=-2.0: the auxiliary loss's weight"),
])
def test_schedule_and_loss_factors_that_cannot_train_are_refused(setting: str, value: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("smoke", {setting: value})
    assert load_config("smoke", {"poly_power": 0.0}).poly_power == 0.0  # a constant learning rate is fine


def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import deeplab_edu.atomic as atomic

    target = tmp_path / "ckpt.pt"
    target.write_text("the old checkpoint")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda p: usage._replace(free=4096))
    with pytest.raises(OSError, match=f"could not write {target}: no space left on the disk") as info:
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half a checkpoint")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 30575744 vs 30575632")
    assert info.value.errno == errno.ENOSPC
    assert target.read_text() == "the old checkpoint" and [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda p: usage._replace(free=1 << 40))
    with pytest.raises(OSError, match="no space left"):  # ENOSPC itself, whatever the free space says now
        with atomic.atomic_path(target):
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(RuntimeError, match="^a bug$"):  # anything else passes through unchanged
        with atomic.atomic_path(target):
            raise RuntimeError("a bug")


def test_a_folder_that_cannot_be_written_is_named_not_the_temporary_file(tmp_path: Path) -> None:
    from deeplab_edu.atomic import atomic_path

    target = tmp_path / "model.pt"
    with pytest.raises(PermissionError, match=f"Permission denied: '{target}'") as info:
        with atomic_path(target) as tmp:
            raise PermissionError(errno.EACCES, "Permission denied", str(tmp))  # as open(tmp, "wb") raises it
    assert ".tmp" not in str(info.value)


def test_a_checkpoint_with_damaged_bytes_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    from deeplab_edu.engine.checkpoint import load_checkpoint
    from deeplab_edu.models.pretrained import checksum_failure, load_state_dict_file

    assert checksum_failure(checkpoint) is None and load_checkpoint(checkpoint)["model"]
    data = bytearray(checkpoint.read_bytes())
    middle = len(data) // 2  # inside a tensor's bytes: torch.load would read them as weights
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match=f"could not read checkpoint {damaged}: the bytes of its entry .* do not "
                                           r"match their checksum \(CRC-32\)"):
        load_checkpoint(damaged)
    torch.save(load_checkpoint(checkpoint)["model"], tmp_path / "weights.pth")
    data = bytearray((tmp_path / "weights.pth").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "weights.pth").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="do not match their checksum"):
        load_state_dict_file(tmp_path / "weights.pth", "pretrained_backbone")


def test_predict_does_not_ask_to_normalise_the_photo_it_normalised(tmp_path: Path, checkpoint: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    from deeplab_edu.cli import main

    Image.fromarray(np.full((30, 40, 3), 150, np.uint8)).save(tmp_path / "grey.png")  # lies in [0, 1] once normalised
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "grey.png"),
                     "--out", str(tmp_path / "out")]) == 0
    assert not [w for w in caught if "not normalised" in str(w.message)]
    assert "not normalised" not in capsys.readouterr().err


def test_a_config_file_that_is_not_utf8_or_gives_a_key_twice_is_named(tmp_path: Path) -> None:
    binary, twice = tmp_path / "bin.yaml", tmp_path / "twice.yaml"
    binary.write_bytes(b"\xff\xfe bad\n")
    twice.write_text("iterations: 4\nlr: 0.1\niterations: 8\n")
    with pytest.raises(ConfigError, match=f"config file {binary} is not UTF-8 text"):
        load_config("smoke", config=binary)
    with pytest.raises(ConfigError, match=r"line 3, column 1\): 'iterations' is given twice \(first on line 1\)"):
        load_config("smoke", config=twice)
    twice.write_text("iterations: 4\nmodel_kwargs: {image_pooling: false}\n")  # nested mappings still read
    assert load_config("smoke", config=twice).model_kwargs == {"image_pooling": False}


def test_a_multi_frame_image_gives_its_first_frame_and_closes_its_file(tmp_path: Path) -> None:
    from deeplab_edu.data.io import load_image

    frames = [Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)) for i in range(3)]
    for name in ("anim.gif", "stack.tif"):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            image = load_image(tmp_path / name)
            gc.collect()  # an unclosed file warns when it is collected
        assert image.shape == (3, 20, 30) and float(image.max()) == 0.0  # the first frame (black)
        messages = [str(w.message) for w in caught]
        assert any(f"{tmp_path / name} holds 3 frames" in m for m in messages), messages
        assert not [w for w in caught if issubclass(w.category, ResourceWarning)], messages


def test_evaluate_refuses_nothing_to_score_and_a_model_of_other_classes() -> None:
    from deeplab_edu.inference import evaluate, predict
    from deeplab_edu.models import build_model

    model = build_model("deeplabv3", backbone="tiny_resnet", num_classes=3).eval()
    item = (torch.randn(3, 32, 32), torch.zeros(32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="the data set is empty"):
        evaluate(model, [], num_classes=3, progress=False)
    with pytest.raises(ValueError, match="the model scores 3 classes, the data set has 5"):
        evaluate(model, [item], num_classes=5, progress=False)
    with pytest.raises(ValueError, match="image holds NaN or infinite values"):
        predict(model, torch.full((1, 3, 32, 32), float("nan")))


def test_a_chapter_run_does_not_start_from_a_run_that_is_missing_or_unfinished(tmp_path: Path,
                                                                              checkpoint: Path) -> None:
    # a learner's trial: chapter 08's phase 2 after an interrupted phase 1 trained silently from the
    # half-trained model (47.9 % against 73.6 %), and before phase 1 it failed with a bare FileNotFoundError
    from deeplab_edu.engine.runs import run_status, train_or_load

    unfinished = checkpoint.parent / "last.pt"  # iteration 0 of the smoke preset's 4
    assert unfinished.is_file() and checkpoint.name != "last.pt"
    with pytest.raises(ValueError, match=r"whose run stopped at iteration 0 of 4: finish that run first"):
        train_or_load("smoke", out_dir=tmp_path / "phase2", init_from=str(unfinished), verbose=False)
    status = run_status("smoke", out_dir=tmp_path / "phase2", init_from=str(unfinished))
    assert status.state == "not started" and "waits for the run it starts from" in status.text
    missing = tmp_path / "phase1" / "checkpoints" / "last.pt"
    with pytest.raises(FileNotFoundError, match="which does not exist yet: train the run it starts from first"):
        train_or_load("smoke", out_dir=tmp_path / "phase2b", init_from=str(missing), verbose=False)
    assert not list((tmp_path / "phase2b").glob("checkpoints/*.pt"))  # nothing was trained
    model, history, cfg = train_or_load("smoke", out_dir=tmp_path / "chosen", init_from=str(checkpoint),
                                        verbose=False, progress=False)  # a checkpoint chosen by name: as asked
    assert cfg.init_from == str(checkpoint) and history


def test_exercises_read_answers_as_a_learner_types_them() -> None:
    # a learner's trial: '300' passed check() while the measuring cell called it "not a number"; 09.1 and
    # 09.2 (own checkers) refused "320"; np.array([8]) was "not a number"; "01.1 " was no exercise
    from deeplab_edu.exercises import check
    from deeplab_edu.exercises._core import measured_and_predicted

    assert measured_and_predicted(300.0, "300") == "measured: 300.000; your prediction: 300.000"
    assert measured_and_predicted(30000.0, "30,000", "g").endswith("your prediction: 30000")
    for key, answer in (("09.1", "320"), ("09.2", "27776"), ("01.1 ", 13)):
        feedback = check(key, answer)
        assert str(feedback).startswith(f"[{key.strip()}] correct"), (key, answer, feedback)
    for one in (np.array([13]), torch.tensor([13])):  # as a list of one: not the number, but said how to give it
        assert "holding one: write 13 itself (`x.item()` gives it)" in check("01.1", one).message


def test_a_widget_refuses_a_start_value_its_slider_would_clamp() -> None:
    # a learner's trial: atrous_widget(rate=12) showed rate 6, procedural_explorer(size=16) showed 32
    from deeplab_edu.crf import CRFParams
    from deeplab_edu.viz.atrous import atrous_widget
    from deeplab_edu.viz.crf import crf_widget
    from deeplab_edu.viz.data import procedural_explorer

    with pytest.raises(ValueError, match="rate=12 is outside this slider's range, 1 to 6"):
        atrous_widget(rate=12)
    with pytest.raises(TypeError, match="rate=2.5: give a whole number from 1 to 6"):
        atrous_widget(rate=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="output_index=50 is outside the output of these settings, 0 to 7"):
        atrous_widget(output_index=50)
    with pytest.raises(ValueError, match="size=16 is outside this slider's range, 32 to 513"):
        procedural_explorer(size=16)
    with pytest.raises(ValueError, match="theta_alpha=200.0 is outside this slider's range, 1 to 150"):
        crf_widget(torch.rand(3, 8, 8), torch.rand(2, 8, 8), [(0, 0, 0), (255, 255, 255)], CRFParams(theta_alpha=200.0))
    # chapter 07's search grids fit the sliders in every profile (a best w1 of 16 or 32 would have shown as 10)
    box = crf_widget(torch.rand(3, 8, 8), torch.rand(2, 8, 8), [(0, 0, 0), (255, 255, 255)],
                     CRFParams(w_bilateral=32.0, theta_alpha=120.0, theta_beta=25.0))
    sliders = [w for row in box.children[0].children for w in row.children]
    assert [s.value for s in sliders[:3]] == [32.0, 120.0, 25.0]


def test_the_widget_helpers_blame_the_argument_at_fault() -> None:
    """An audit of viz.widgets: a slider blamed its value for an empty range, NumPy rates were refused as not
    whole, one rate gave an unnamed TypeError, and a draw function without ``return fig`` an AttributeError."""
    import numpy as np

    from deeplab_edu.viz.widgets import figure_widget, positive_ints, slider

    with pytest.raises(ValueError, match="the rate slider's range is empty: low=6 is above high=1"):
        slider("rate", 3, 6, 1)
    with pytest.raises(TypeError, match="counts whole numbers: its range 0.5 to 3.7"):
        slider("rate", 2, 0.5, 3.7)
    assert positive_ints("rates", np.array([6, 12]), "atrous rates", "(6, 12, 18)") == (6, 12)
    assert all(type(v) is int for v in positive_ints("rates", np.array([6, 12]), "atrous rates", "(6, 12, 18)"))
    with pytest.raises(TypeError, match=r"rates must be a sequence of atrous rates, e.g. \(6, 12, 18\); got 6"):
        positive_ints("rates", 6, "atrous rates", "(6, 12, 18)")
    with pytest.raises(TypeError, match="draw function must return a matplotlib Figure, got NoneType"):
        figure_widget(lambda **values: None, {})


def test_widgets_name_the_argument_a_learner_got_wrong() -> None:
    # a learner's trial: these failed deep inside with IndexError, TraitError, RuntimeError or AttributeError
    from deeplab_edu.data import ProceduralScenes
    from deeplab_edu.viz.aspp import aspp_footprint_widget
    from deeplab_edu.viz.decoder import stride_oracle_widget
    from deeplab_edu.viz.deeplab import cost_widget
    from deeplab_edu.viz.output_stride import feature_map_widget

    with pytest.raises(ValueError, match="sizes must be input sides in pixels, at least one"):
        cost_widget(sizes=[])
    with pytest.raises(ValueError, match="strides must be output strides, at least one"):
        stride_oracle_widget(ProceduralScenes(length=2, size=64), strides=())
    with pytest.raises(ValueError, match="dataset is empty"):
        stride_oracle_widget([])
    with pytest.raises(ValueError, match=r"photo must be a square RGB image \(3, S, S\).*got \(65, 65\)"):
        aspp_footprint_widget(torch.rand(65, 65))
    with pytest.raises(ValueError, match="image_size must be a whole number of pixels, at least 33, got 0"):
        aspp_footprint_widget(image_size=0)
    with pytest.raises(ValueError, match="features must map each output stride to its features"):
        feature_map_widget(torch.rand(3, 64, 64), [torch.rand(1, 8, 4, 4)])  # type: ignore[arg-type]


def test_an_api_trials_odd_calls_get_clear_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    """A practitioner's trial of the Python API beside torchvision: each call failed obscurely or silently."""
    import torchvision.models.segmentation as tvseg

    from deeplab_edu.crf import DenseCRF
    from deeplab_edu.inference import Strategy, predict, sliding_window_logits
    from deeplab_edu.metrics import ConfusionMatrix
    from deeplab_edu.models import build_model
    from deeplab_edu.models.backbones import at_output_stride
    from deeplab_edu.choices import require_packages

    tv = tvseg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3).eval()
    with pytest.raises(TypeError, match="floating point"):  # was "expected scalar type Byte but found Float"
        predict(tv, torch.zeros(1, 3, 33, 33, dtype=torch.uint8))
    with pytest.raises(ValueError, match="colours come last"):  # was "expected ... 3 channels, but got 33"
        predict(tv, torch.zeros(1, 33, 33, 3))
    with at_output_stride(tv, 16):  # its own stride: nothing to change (was refused)
        assert predict(tv, torch.randn(3, 33, 33), Strategy(output_stride=16)).shape == (1, 33, 33)
    runs = []
    tv.backbone.register_forward_hook(lambda *_: runs.append(1))
    for _ in range(3):  # evaluate enters at_output_stride once per batch: the stride is measured once per model
        with at_output_stride(tv, 16):
            pass
    assert not runs  # measured above already
    with pytest.raises(ValueError, match=r"torchvision\.models\.segmentation.*runs at 16"):
        with at_output_stride(tv, 8):
            pass
    with pytest.raises(TypeError, match="crop_size must be a whole number"):
        sliding_window_logits(tv, torch.zeros(1, 3, 33, 33), 20.5)  # type: ignore[arg-type]
    one = build_model("deeplabv3", backbone="tiny_resnet", num_classes=1).eval()  # a sigmoid's model: built
    with pytest.raises(ValueError, match="one score per pixel"):  # softmax of one score: was 1 everywhere
        predict(one, torch.randn(3, 33, 33))
    model = build_model("deeplabv3", backbone="tiny_resnet", num_classes=np.int64(3), output_stride=np.int64(16))
    assert model.output_stride == 16 and isinstance(model.output_stride, int)
    cm = ConfusionMatrix(np.int64(2))
    with pytest.raises(TypeError, match="must be integers"):  # [0.7, 1.2] was cut to [0, 1] and scored right
        cm.update(torch.tensor([0.7, 1.2]), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="integer labels"):
        cm.update(torch.tensor([0, 1]), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"read as scores \(C, H, W\)"):  # one image's: its first axis, 1 class
        cm.update(torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="method must be"):  # was accepted, and failed at the first call
        DenseCRF(method="fast")  # type: ignore[arg-type]
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(ImportError, match="export_onnx needs onnx and onnxscript"):
        require_packages("onnx", "onnxscript", what="export_onnx")


def test_gallery_error_map_and_state_dict_conversion_name_their_mismatches() -> None:
    """The same API trial: mismatched lengths or shapes drew a figure cut short or raised from NumPy, and an
    unknown backbone converted torchvision's names as a ResNet's without a word."""
    from deeplab_edu.inference import error_map, prediction_gallery
    from deeplab_edu.models.interop import convert_torchvision_state_dict

    mask = torch.zeros(4, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="one shape"):
        error_map(torch.zeros(1, 4, 5, dtype=torch.long), mask)
    with pytest.raises(ValueError, match="targets 1, preds 2"):
        prediction_gallery([torch.rand(3, 4, 5)], [mask], [mask, mask], [(0, 0, 0)])
    with pytest.raises(ValueError, match="at least one"):
        prediction_gallery([], [], [], [(0, 0, 0)])
    with pytest.raises(ValueError, match="backbone must be one of"):
        convert_torchvision_state_dict({}, "mobilenet")


def test_what_a_docstring_audit_found_fails_naming_the_argument() -> None:
    """A docstring audit (stop 64) found arguments that failed late, from deep inside, or were cut quietly:
    class weights of another shape, a negative label, a rate of 2.7, a block side of 0, values for another
    lattice, weights of another image, a model without parameters, a measurement without inputs."""
    from torch import nn

    from deeplab_edu.complexity import measure, peak_memory_bytes
    from deeplab_edu.crf import message_passing_exact
    from deeplab_edu.crf_eval import coarse_scores
    from deeplab_edu.data.stats import class_pixel_frequencies
    from deeplab_edu.engine.losses import SegmentationLoss
    from deeplab_edu.inference import evaluate
    from deeplab_edu.models.aspp import ASPPv2
    from deeplab_edu.permutohedral import PermutohedralLattice

    with pytest.raises(ValueError, match="one finite, non-negative weight per class"):
        SegmentationLoss(class_weights=torch.ones(2, 3))
    with pytest.raises(ValueError, match="one finite, non-negative weight per class"):
        SegmentationLoss(class_weights=[1.0, -0.5])
    with pytest.raises(ValueError, match="one weight per class"):
        SegmentationLoss(class_weights=torch.ones(5))(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="negative label -1"):
        class_pixel_frequencies([np.array([[0, -1]])], 2)
    head = ASPPv2(8, 3, atrous_rates=(6, 12))
    with pytest.raises(ValueError, match="positive integers"):
        head.atrous_rates = (2.7, 4.9)
    assert head.atrous_rates == (6, 12)
    with pytest.raises(ValueError, match="output_stride must be a positive int"):
        coarse_scores(torch.zeros(8, 8, dtype=torch.long), 2, output_stride=0)
    with pytest.raises(ValueError, match="N = 10 points"):
        PermutohedralLattice(torch.rand(10, 5)).filter(torch.ones(9, 2))
    with pytest.raises(ValueError, match="kernel_matrices"):
        message_passing_exact(torch.rand(2, 4, 4), torch.rand(15, 15))
    with pytest.raises(ValueError, match="has none"):
        evaluate(nn.Identity(), [(torch.rand(3, 4, 4), torch.zeros(4, 4, dtype=torch.long))], num_classes=3,
                 progress=False)
    with pytest.raises(ValueError, match="give the model's inputs"):
        peak_memory_bytes(nn.Identity())
    with pytest.raises(ValueError, match="give the model's inputs"):
        measure(nn.Conv2d(3, 3, 1))


def test_what_the_figures_audit_found_is_drawn_right_or_refused() -> None:
    """A second docstring audit (stop 64, the figures and the book): a uint8 photo was drawn black and white by
    the CRF figures and white by the data figures, a MobileNet's stages were all "stem", a wide photo's ASPP
    footprints fell below the picture, two figures reset the caller's random stream, and a label outside the
    classes, a channel of -1, an unknown profile or a float mask failed deep inside or drew the wrong thing."""
    import matplotlib

    matplotlib.use("Agg")
    from deeplab_edu.book import cell_timeout
    from deeplab_edu.models import build_backbone
    from deeplab_edu.viz.aspp import aspp_footprint_widget, branch_footprints
    from deeplab_edu.viz.decoder import stride_oracle
    from deeplab_edu.viz.images import colorize, display_rgb, overlay
    from deeplab_edu.viz.output_stride import macs_by_stage, plot_feature_maps
    from deeplab_edu.viz.receptive_field import parse_layer_stack, stack_model

    photo = torch.rand(3, 6, 8)
    as_uint8 = (photo * 255).round().to(torch.uint8)
    assert np.allclose(display_rgb(as_uint8), display_rgb(photo), atol=1 / 255)
    black = np.zeros((6, 8, 3), np.uint8)
    assert np.abs(overlay(as_uint8, black, 0.4).astype(int) - overlay(photo, black, 0.4).astype(int)).max() <= 1
    assert len(np.unique(overlay(as_uint8, black, 0.4))) > 10  # was 0 or 102 only
    with pytest.raises(ValueError, match="has no layer1"):
        macs_by_stage(build_backbone("mobilenet_v3_large", pretrained=False), 65)
    with pytest.raises(ValueError, match="square"):
        aspp_footprint_widget(torch.rand(3, 64, 256))
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    stack_model(parse_layer_stack("conv k=3"))
    branch_footprints((1,), 5)
    assert torch.equal(torch.rand(3), expected)  # the caller's stream, as it was
    with pytest.raises(ValueError, match=r"holds label 5, outside \[0, 3\)"):
        stride_oracle(torch.tensor([[0, 5], [1, 255]]), 2, 3)
    with pytest.raises(ValueError, match="channel must be one of"):
        plot_feature_maps(torch.rand(3, 16, 16), {16: torch.rand(1, 4, 2, 2)}, channel=-1)
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        cell_timeout("fast")
    with pytest.raises(ValueError, match="integer labels"):
        colorize(np.array([[0.2, 0.8]]), [(0, 0, 0), (255, 0, 0)])
    assert colorize(np.array([[0.0, 1.0]]), [(0, 0, 0), (255, 0, 0)])[0, 1].tolist() == [255, 0, 0]


def test_colorize_and_sample_photo_name_a_bad_palette_or_size() -> None:
    """A census: a palette entry of 300 raised OverflowError though colorize promised ValueError, and
    sample_photo(0) or sample_photo((-5, 4)) gave torch's raw error."""
    from deeplab_edu.viz.images import colorize, sample_photo

    with pytest.raises(ValueError, match="palette must be one RGB triple .* got values from 0 to 300"):
        colorize(torch.zeros(3, 3, dtype=torch.long), [(300, 0, 0), (0, 0, 0)])
    for size in (0, (-5, 4), (4,), 2.5):
        with pytest.raises(ValueError, match="size must be a whole number of pixels, at least 1, or a pair"):
            sample_photo(size)  # type: ignore[arg-type]
    assert sample_photo((4, 6)).shape == (3, 4, 6)
