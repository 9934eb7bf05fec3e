"""The command line: helpful errors for impossible settings, and train -> eval -> predict end to end."""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO_ROOT
from deeplab_edu.cli import build_parser, main
from deeplab_edu.engine.config import ConfigError, TrainConfig, list_presets, load_config, preset_summary


@pytest.mark.parametrize("argv, message", [
    (["--backbone", "no_such_backbone"], "unknown backbone 'no_such_backbone'"),
    (["--output-stride", "4", "--backbone", "resnet50"], "output_stride=4 with resnet50"),
    (["--crop-size", "300", "--image-size", "64", "--no-pad-to-crop"], "crop_size=300 is larger"),
    (["--model", "deeplabv3", "--backbone", "vgg16"], "needs a ResNet or MobileNetV3"),
    (["--model", "deeplabv1", "--backbone", "resnet50"], "built on vgg16"),
    (["--amp", "fp8"], "amp='fp8'"),
    (["--top-k", "0"], "top_k=0"),
    (["--preset", "nonexistent"], "unknown preset 'nonexistent'"),
    (["--pretrained-backbone", "missing.pth"], "missing.pth': no such file"),
    (["--model-kwargs", '{"bogus": 1}'], "unknown build_model argument 'bogus'; known: dropout"),
    (["--model-kwargs", '{"output_stride": 8}'], "output_stride is a setting of its own"),
    (["--model-kwargs", '{"image_pooling": "no"}'], "image_pooling='no' should be bool"),
    (["--model-kwargs", '{"multi_grid": [1, "x"]}'], "should be a list of integers"),
    (["--model-kwargs", "[1]"], "use a mapping of build_model arguments"),
    (["--out-dir", "README.md"], "README.md is a file; out_dir (--out-dir)"),
    (["--model", "deeplabv2", "--output-stride", "32"], "rate 6 at output stride 8 does not scale to an integer"),
    (["--preset", "cpu", "--eval-output-stride", "32"], "eval_output_stride=32, atrous_rates='fit'"),
    *([(["--device", "cuda"], "sees no CUDA GPU; use device=cpu")] if not torch.cuda.is_available() else []),
    (["--device", "gpu"], "device='gpu' is not a device: use cpu, cuda, cuda:N"),
    (["--seed", "-1"], "seed must be 0 or more, got -1"),
    (["--dataset", "folder", "--data-root", ".", "--image-size", "64", "--train-length", "3"],  # a trial: ignored
     "image_size=64, train_length=3 (given): settings of the generated scenes (dataset procedural), not of dataset "
     "folder"),
    (["--dataset", "camvid", "--difficulty", "easy"], "difficulty='easy' (given): settings of the generated scenes"),
    (["--momentum", "1.5"], "momentum=1.5: SGD's momentum (AdamW's beta1) is in [0, 1)"),
    (["--weight-decay", "-1"], "weight_decay must be 0 or more, got -1"),
    (["--image-size", "0"], "image_size=0: the generated scenes are at least 8 pixels a side"),
    (["--train-length", "0"], "train_length must be at least 1"),
])
def test_impossible_settings_are_explained(argv: list[str], message: str, capsys: pytest.CaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from deeplab_edu.engine.trainer import Trainer

    # a setting that became possible (a new backbone named here) fails at once instead of training for hours
    monkeypatch.setattr(Trainer, "step", lambda self, batches: pytest.fail(f"train {argv} was accepted and trains"))
    assert main(["train", "--out-dir", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_under_torchrun_each_process_names_its_rank_in_an_error(capsys: pytest.CaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A practitioner's trial: with four processes, a wrong setting printed the same line four times, with
    nothing to tell them apart. Each now names its rank (each still prints: torchrun may stop the others
    before rank 0 has printed, and a setting can fail on one machine only); one process alone prints no prefix."""
    argv = ["train", "--out-dir", str(tmp_path / "run"), "--top-k", "0"]
    assert main(argv) == 2 and capsys.readouterr().err.startswith("deeplab-edu train: error: ")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("[rank 3] deeplab-edu train: error: ") and "top_k=0" in err


def test_yaml_config_and_presets(tmp_path: Path) -> None:
    assert {"smoke", "cpu", "gpu", "deeplabv3_voc", "deeplabv3_voc_phase2", "deeplabv3plus_voc"} <= set(list_presets())
    for name in list_presets():
        load_config(name)  # every preset is valid
        summary = preset_summary(name)  # and its header comment starts with one sentence about it
        assert summary.endswith(".") and "\n" not in summary and len(summary) < 400, (
            f"preset {name}: its header comment's first sentence, ending in a full stop and under 400 characters, "
            f"is what --list-presets shows (CONTRIBUTING.md, 'Training presets'); got {summary!r}")
    # each preset trains into a folder of its own: two sharing one would refuse or resume each other's runs
    folders = [(load_config(name).out_dir, name) for name in list_presets()]
    shared = sorted({f"{a} and {b}: {folder}" for folder, a in folders for other, b in folders
                     if folder == other and a < b})
    assert not shared, f"presets with one out_dir: {shared} (give each an out_dir of its own)"
    assert preset_summary("deeplabv3_voc").endswith("evaluated at output stride 8.")  # not cut at "sec. 4.1"
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        preset_summary("nope")
    cfg = load_config("deeplabv3_voc")
    assert (cfg.lr, cfg.crop_size, cfg.batch_size, cfg.iterations, cfg.output_stride) == (0.007, 513, 16, 30000, 16)
    p2 = load_config("deeplabv3_voc_phase2")
    assert p2.freeze_bn and p2.output_stride == 8 and p2.lr == 0.001
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown setting.*learning_rate"):
        load_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("lr: 0.1\niterations: [4\n")
    with pytest.raises(ConfigError, match=r"broken.yaml is not valid YAML \(line 3, column 1\)"):
        load_config("smoke", config=broken)
    tagged = tmp_path / "tagged.yaml"  # valid YAML asking for an object: named as a tag, not as broken YAML
    tagged.write_text('lr: 0.1\niterations: !!python/object/apply:os.system ["echo ran"]\n')
    with pytest.raises(ConfigError, match=r"tagged.yaml uses the YAML tag '!!python/object/apply:os.system' "
                                          r"\(line 2, column 13\).*nothing in it was run"):
        load_config("smoke", config=tagged)
    good = tmp_path / "good.yaml"
    good.write_text("model: deeplabv3plus\nbackbone: mobilenet_v3_large\nlr: 0.05\n")
    assert load_config(good, {"lr": 0.2}).lr == 0.2  # flags win over the file


def test_pretrained_backbone_flag_takes_a_switch_or_a_file(tmp_path: Path) -> None:
    """``--pretrained-backbone`` downloads (online), ``--pretrained-backbone FILE`` reads a local copy
    (what the offline message tells users to do), ``--no-pretrained-backbone`` overrides a preset."""
    from deeplab_edu.cli import build_parser

    weights = tmp_path / "resnet50.pth"
    weights.touch()
    parse = build_parser().parse_args
    assert parse(["train", "--pretrained-backbone"]).pretrained_backbone is True
    assert parse(["train", "--pretrained-backbone", str(weights)]).pretrained_backbone == str(weights)
    assert parse(["train", "--no-pretrained-backbone"]).pretrained_backbone is False
    assert parse(["train"]).pretrained_backbone is None  # the preset's value stands
    assert load_config("camvid_gpu", {"pretrained_backbone": False}).pretrained_backbone is False
    assert load_config("cpu", {"pretrained_backbone": weights}).pretrained_backbone == str(weights)
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(f"pretrained_backbone: {weights}\n")
    assert load_config(yaml_file).pretrained_backbone == str(weights)
    with pytest.raises(ConfigError, match="pretrained_backbone=3; use true"):
        load_config(None, {"pretrained_backbone": 3})


def test_every_progress_bar_is_switched_by_the_same_pair_of_flags() -> None:
    """``train``, ``eval`` and ``check-data`` all take ``--progress`` / ``--no-progress`` (a trial found
    ``eval`` with ``--no-progress`` alone where ``train`` had both)."""
    parse = build_parser().parse_args
    for argv in (["train"], ["eval", "--checkpoint", "m.pt"], ["check-data", "--dataset", "procedural"]):
        assert parse(argv + ["--no-progress"]).progress is False
        assert parse(argv + ["--progress"]).progress is True
    assert parse(["eval", "--checkpoint", "m.pt"]).progress is True  # on unless switched off
    assert parse(["check-data", "--dataset", "procedural"]).progress is True


def test_python_dash_m_lists_presets() -> None:
    out = subprocess.run([sys.executable, "-m", "deeplab_edu", "train", "--list-presets"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "cpu" in out.stdout.split()
    smoke = [line for line in out.stdout.splitlines() if line.startswith("smoke ")]
    assert len(smoke) == 1 and smoke[0].split(None, 1)[1] == preset_summary("smoke")


@pytest.mark.slow
def test_train_eval_predict_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    record = tmp_path / "record.json"
    assert main(["train", "--preset", "smoke", "--out-dir", str(run), "--image-size", "32", "--crop-size", "32",
                 "--iterations", "2", "--no-progress", "--record", str(record)]) == 0
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "metrics.csv").is_file() and record.is_file()
    ckpt = str(run / "checkpoints" / "last.pt")
    from deeplab_edu.engine.runs import train_or_load

    model, history, _ = train_or_load("smoke", out_dir=run, image_size=32, crop_size=32, iterations=2)
    assert "skipping training" in capsys.readouterr().out and history[-1]["split"] == "val"
    with pytest.raises(ValueError, match=r"other settings \(lr\)"):
        train_or_load("smoke", out_dir=run, image_size=32, crop_size=32, iterations=2, lr=0.5)
    # where and how a run is logged does not make it another run
    _, _, cfg = train_or_load("smoke", out_dir=run, image_size=32, crop_size=32, iterations=2, keep_last=1, log_every=1,
                              channels_last=not load_config("smoke").channels_last)  # nor how memory is laid out
    assert "skipping training" in capsys.readouterr().out and cfg.resume is False
    metrics = tmp_path / "metrics.json"
    assert main(["eval", "--checkpoint", str(run), "--limit", "2", "--scales", "0.75", "1", "--flip", "--json", str(metrics)]) == 0
    out_text = capsys.readouterr().out
    import json

    saved = json.loads(metrics.read_text(), parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert saved["strategy"]["flip"] and len(saved["iou"]) == 8 and all(v is None or 0 <= v <= 1 for v in saved["iou"])
    assert saved["split"] == "val" and saved["dataset"] == "procedural" and saved["images"] == 2  # what it scores
    assert list(saved["iou_by_class"].values()) == saved["iou"] and len(saved["iou_by_class"]) == 8  # named too
    assert "on procedural val (2 images)" in out_text  # what is scored, named before the metrics
    assert "MS + Flip: mIoU" in out_text and "OS " in out_text  # the run's evaluation output stride, named
    # the checkpoint file scored, not the folder given; the file's writing said (a trial)
    assert Path(saved["checkpoint"]).parent == run / "checkpoints" and Path(saved["checkpoint"]).suffix == ".pt"
    assert f"metrics written to {metrics}" in out_text
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (33, 47, 3), dtype=np.uint8)).save(images / "a.png")
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", ckpt, str(images), "--out", str(out)]) == 0
    mask = Image.open(out / "a_mask.png")
    assert mask.size == (47, 33) and (out / "a_overlay.png").is_file()
    (tmp_path / "masks").mkdir()  # images/ beside masks/: a folder data set's split (a second trial's predict
    assert main(["predict", "--checkpoint", ckpt, str(images), "--out", str(images)]) == 2  # broke check-data)
    assert "is the images folder of a data set" in capsys.readouterr().err and not list(images.glob("*_mask.png"))
    (tmp_path / "masks").rmdir()
    Image.open(images / "a.png").convert("RGB").save(images / "a.jpg")  # same name, two formats
    assert main(["predict", "--checkpoint", ckpt, str(images), "--out", str(tmp_path / "pred2")]) == 0
    assert sorted(p.name for p in (tmp_path / "pred2").glob("*_mask.png")) == ["a_jpg_mask.png", "a_png_mask.png"]
    indices = np.asarray(Image.open(tmp_path / "pred2" / "a_png_mask.png"))  # class indices, palette for viewers
    from deeplab_edu.data import PROCEDURAL

    assert indices.shape == (33, 47) and indices.dtype == np.uint8 and indices.max() < len(PROCEDURAL.palette)
    assert Image.open(tmp_path / "pred2" / "a_png_mask.png").mode == "P"
    (images / "broken.png").write_bytes(b"not an image")  # skipped, named, and the exit status says so
    assert main(["predict", "--checkpoint", ckpt, str(images), "--out", str(tmp_path / "pred3")]) == 2
    assert "1 of 3 images could not be read or predicted" in capsys.readouterr().err
    assert len(list((tmp_path / "pred3").glob("*_mask.png"))) == 2
    assert main(["predict", "--checkpoint", ckpt, str(tmp_path / "missing.png")]) == 2
    assert "missing.png does not exist" in capsys.readouterr().err  # said plainly (a learner's trial, stop 59)
    assert main(["predict", "--checkpoint", ckpt, "/dev/null"]) == 2  # there, but neither a file nor a folder
    assert "neither an image file nor a folder" in capsys.readouterr().err
    # a model file: the weights without the optimiser's state, read by predict and eval like the checkpoint
    model_file = tmp_path / "model.pt"
    assert main(["export", "--checkpoint", str(run / "checkpoints"), "--out", str(model_file)]) == 0
    assert model_file.stat().st_size < 0.6 * Path(ckpt).stat().st_size
    assert "optimizer" not in torch.load(model_file, weights_only=True)
    assert main(["predict", "--checkpoint", str(model_file), str(images / "a.png"), "--out", str(tmp_path / "p4")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "p4" / "a_mask.png")), np.asarray(mask))
    assert main(["export", "--checkpoint", ckpt]) == 2
    assert "--out model.pt" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(run / "checkpoints"), "--out", str(model_file)]) == 0
    assert "replacing the file there" in capsys.readouterr().out
    before = Path(ckpt).read_bytes()
    assert main(["export", "--checkpoint", ckpt, "--out", ckpt]) == 2  # would drop the run's optimiser state
    assert "is the checkpoint being exported" in capsys.readouterr().err and Path(ckpt).read_bytes() == before
    for target in (run / "checkpoints" / "last.pt", run / "checkpoints" / "ckpt_00000999.pt"):  # the folder form
        assert main(["export", "--checkpoint", str(run / "checkpoints"), "--out", str(target)]) == 2
        assert "names a training checkpoint of a run" in capsys.readouterr().err
    assert Path(ckpt).read_bytes() == before and not (run / "checkpoints" / "ckpt_00000999.pt").exists()
    assert main(["export", "--checkpoint", ckpt, "--out", str(tmp_path / "p4")]) == 2  # a folder, named
    assert f"is a folder: name the file to write in it, e.g. {tmp_path / 'p4' / 'model.pt'}" in capsys.readouterr().err
    # --onnx hands the run's model (eval mode, at the output stride eval and predict use) to export_onnx (tested
    # in test_export)
    exported: list[tuple[Any, Path, int]] = []
    metadata: list[dict[str, str]] = []

    def fake_export(m: Any, path: Path, **kwargs: Any) -> Path:
        exported.append((m, path, m.output_stride))
        metadata.append(kwargs.get("metadata") or {})
        return path

    monkeypatch.setattr("deeplab_edu.models.export.export_onnx", fake_export)
    assert main(["export", "--checkpoint", str(model_file), "--onnx", str(tmp_path / "m.onnx")]) == 0
    assert len(exported) == 1 and str(exported[0][1]) == str(tmp_path / "m.onnx") and not exported[0][0].training
    # what a deployment needs travels in the file (a practitioner's trial: the ONNX file held no metadata)
    info = torch.load(model_file, weights_only=True)["model_info"]
    assert json.loads(metadata[0]["class_names"]) == list(info["class_names"])
    assert json.loads(metadata[0]["mean"]) == [0.485, 0.456, 0.406] and json.loads(metadata[0]["std"])[0] == 0.229
    assert json.loads(metadata[0]["output_stride"]) == exported[0][2]
    saved = torch.load(model_file, weights_only=True)["config"]
    assert exported[0][2] == (saved["eval_output_stride"] or saved["output_stride"])
    assert main(["export", "--checkpoint", str(model_file), "--onnx", str(tmp_path / "m16.onnx"),
                 "--output-stride", "16"]) == 0
    assert exported[1][2] == 16 and "output stride 16" in capsys.readouterr().out
    assert main(["export", "--checkpoint", str(model_file), "--out", str(tmp_path / "x.pt"), "--output-stride", "8"]) == 2
    assert "give --onnx too" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()
    import deeplab_edu.cli as cli

    monkeypatch.setattr(cli, "LARGE_IMAGE_PIXELS", 32 * 32)  # a "large" image gets a hint, once
    assert main(["predict", "--checkpoint", ckpt, str(images), "--out", str(tmp_path / "pred4")]) == 2
    assert capsys.readouterr().err.count("--crop-size 1024 predicts it in overlapping windows") == 1
    assert main(["predict", "--checkpoint", ckpt, str(images / "a.png"), "--out", str(tmp_path / "pred5"),
                 "--crop-size", "32"]) == 0
    assert "--crop-size 1024" not in capsys.readouterr().err
    beside = tmp_path / "beside"  # outputs written into the input folder are not inputs the next time
    beside.mkdir()
    shutil.copy(images / "a.png", beside / "a.png")
    (beside / ".a_mask.tmp4242.png").write_bytes(b"\x89PNG cut short")  # left by a killed call: not an input
    for _ in range(2):
        assert main(["predict", "--checkpoint", ckpt, str(beside), "--out", str(beside)]) == 0
    assert sorted(p.name for p in beside.iterdir() if not p.name.startswith(".")) == ["a.png", "a_mask.png",
                                                                                      "a_overlay.png"]
    # a photo that fails while being predicted (out of memory, say) is named, and the others are done
    import deeplab_edu.inference as inference

    real_predict = inference.predict

    def out_of_memory_when_wide(model: torch.nn.Module, x: torch.Tensor, strategy: object) -> torch.Tensor:
        if x.shape[-1] > 40:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99 GB\nmore lines")
        return real_predict(model, x, strategy)  # type: ignore[arg-type]

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(images / "a.png", mixed / "wide.png")  # 47 pixels wide
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(mixed / "small.png")
    monkeypatch.setattr(inference, "predict", out_of_memory_when_wide)
    assert main(["predict", "--checkpoint", ckpt, str(mixed), "--out", str(tmp_path / "pred6")]) == 2
    err = capsys.readouterr().err
    assert "predicting " in err and "wide.png (47 x 33 pixels) failed (RuntimeError: DefaultCPUAllocator" in err
    assert "more lines" not in err and "1 of 2 images could not be read or predicted" in err
    assert sorted(p.name for p in (tmp_path / "pred6").glob("*_mask.png")) == ["small_mask.png"]
    assert main(["predict", "--checkpoint", ckpt, str(mixed / "wide.png"), "--out", str(tmp_path / "pred7")]) == 2
    assert "wide.png (47 x 33 pixels) failed" in capsys.readouterr().err
    monkeypatch.setattr(inference, "predict", real_predict)
    # arguments that cannot work are named, not run on silently or ended in a traceback
    for argv, message in ((["predict", "--checkpoint", ckpt, str(images / "a.png"), "--out", str(images / "a.png")],
                           "is a file; --out names the folder"),
                          (["eval", "--checkpoint", ckpt, "--json", str(tmp_path)], "is a folder; name the file")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    # a stride no model runs at is refused by the flag's name before anything is read (0 was the run's stride
    # once; the busy-CPU note came before the error)
    for argv in (["eval", "--checkpoint", ckpt, "--output-stride", "0"],
                 ["predict", "--checkpoint", ckpt, str(images / "a.png"), "--output-stride", "4"],
                 ["export", "--checkpoint", ckpt, "--onnx", str(tmp_path / "m.onnx"), "--output-stride", "7"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert f"argument --output-stride: invalid choice: {argv[-1]} (choose from 8, 16, 32)" in err, err


def test_interrupted_training_names_the_checkpoint_to_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    from deeplab_edu.engine.trainer import Trainer

    def interrupted(self: Trainer, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", interrupted)
    run = tmp_path / "run"
    argv = ["train", "--preset", "smoke", "--out-dir", str(run), "--no-progress"]
    assert main(argv) == 130
    assert "no checkpoint had been written yet" in capsys.readouterr().err
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "ckpt_00000004.pt").write_bytes(b"")
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "ckpt_00000004.pt" in err and "--resume" in err


def test_a_second_ctrl_c_during_the_save_still_names_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture) -> None:
    """Ctrl-C during a step, then again while that step's checkpoint is written: the save finishes
    (both files), training stops at once, and the command still says which checkpoint to resume from."""
    import os
    import signal

    import deeplab_edu.engine.checkpoint as ck
    from deeplab_edu.engine.trainer import Trainer

    real_save, real_step = ck.save_atomic, Trainer.step

    def step(self: Trainer, *args: Any) -> Any:
        done = real_step(self, *args)
        if self.iteration == 1:  # during the second step
            os.kill(os.getpid(), signal.SIGINT)
        return done

    def save(obj: Any, path: Any) -> Any:
        written = real_save(obj, path)
        os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C, between ckpt_N.pt and last.pt
        return written

    monkeypatch.setattr(Trainer, "step", step)
    monkeypatch.setattr(ck, "save_atomic", save)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)  # CI's background jobs ignore SIGINT
    try:
        assert main(["train", "--preset", "smoke", "--out-dir", str(tmp_path / "run"), "--no-progress"]) == 130
    finally:
        signal.signal(signal.SIGINT, outer)
    err = capsys.readouterr().err
    assert "interrupt again to stop at once" in err
    assert "the last checkpoint is" in err and "ckpt_00000002.pt" in err and "--resume" in err
    saved = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in saved.iterdir()) == ["ckpt_00000002.pt", "last.pt"]


def test_train_without_a_preset_on_a_cpu_says_what_it_costs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    import deeplab_edu.engine.trainer as trainer_module

    class Interrupted:  # the note comes before the Trainer is built: nothing needs to train
        iteration = 0

        def __init__(self, cfg: object) -> None:
            pass

        def fit(self) -> None:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module, "Trainer", Interrupted)
    assert main(["train", "--out-dir", str(tmp_path / "a"), "--device", "cpu"]) == 130
    err = capsys.readouterr().err
    assert "note: no --preset: these are the papers' settings (resnet50, 513-pixel crops" in err and "--preset cpu" in err
    assert main(["train", "--preset", "smoke", "--out-dir", str(tmp_path / "b"), "--device", "cpu"]) == 130
    err = capsys.readouterr().err
    assert "note: no --preset" not in err and "made for a GPU" not in err
    # a trial of the README's examples: camvid_gpu started a ResNet-50 run on a CPU without a word
    assert main(["train", "--preset", "camvid_gpu", "--out-dir", str(tmp_path / "c"), "--device", "cpu"]) == 130
    assert "note: --preset camvid_gpu is made for a GPU (resnet50" in capsys.readouterr().err
    assert main(["train", "--preset", "camvid_cpu", "--out-dir", str(tmp_path / "d"), "--device", "cpu"]) == 130
    assert "made for a GPU" not in capsys.readouterr().err
    (tmp_path / "mine.yaml").write_text("backbone: tiny_resnet\ncrop_size: 64\n")  # a teacher's own preset: no guess
    assert main(["train", "--preset", str(tmp_path / "mine.yaml"), "--out-dir", str(tmp_path / "e"), "--device",
                 "cpu"]) == 130
    assert "made for a GPU" not in capsys.readouterr().err


def test_a_config_file_applies_on_top_of_a_preset(tmp_path: Path) -> None:
    """``--preset cpu --config mine.yaml``: the preset, then the file, then the flags."""
    from deeplab_edu.cli import build_parser

    mine = tmp_path / "mine.yaml"
    mine.write_text("iterations: 70\nlr: 0.5\n")
    args = build_parser().parse_args(["train", "--preset", "cpu", "--config", str(mine), "--lr", "0.25"])
    cfg = load_config(args.preset, {"lr": args.lr}, config=args.config)
    cpu, paper = load_config("cpu"), load_config(None)
    assert (cfg.iterations, cfg.lr) == (70, 0.25)  # the file over the preset, the flag over the file
    assert (cfg.crop_size, cfg.batch_size) == (cpu.crop_size, cpu.batch_size) != (paper.crop_size, paper.batch_size)
    assert load_config(None, config=mine).crop_size == paper.crop_size  # a file alone: the papers' defaults
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("cpu", config=tmp_path / "missing.yaml")


def test_input_paths_are_stored_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """eval / predict / --resume read a run's config again, maybe from another folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.pth").touch()
    cfg = load_config("cpu", {"data_root": "data/mine", "pretrained_backbone": "w.pth", "out_dir": "runs/x"})
    assert cfg.data_root == str(tmp_path / "data" / "mine") and cfg.pretrained_backbone == str(tmp_path / "w.pth")
    assert cfg.out_dir == "runs/x"


def test_path_settings_take_path_objects_and_are_kept_as_strings(tmp_path: Path) -> None:
    """``TrainConfig(out_dir=Path(...))`` type-checks (every path field admits ``os.PathLike``) and
    the configuration stays JSON: after construction each path is a ``str``."""
    import os
    import typing

    from deeplab_edu.engine.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    paths = ("out_dir", "data_root", "init_from", "pretrained_backbone")
    assert all("PathLike" in str(hints[name]) for name in paths), {n: hints[n] for n in paths}
    cfg = TrainConfig(out_dir=tmp_path / "run", data_root=tmp_path / "data", init_from=tmp_path / "a.pt",
                      pretrained_backbone=tmp_path / "w.pth")
    assert all(type(getattr(cfg, name)) is str for name in paths)
    assert cfg.to_dict()["out_dir"] == os.fspath(tmp_path / "run")


def test_every_flag_says_what_it_does() -> None:
    """--help explains every flag (the training flags without a wording of their own take the
    TrainConfig field's comment)."""
    from deeplab_edu.cli import build_parser

    subparsers = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    silent = [(name, a.option_strings) for name, sub in subparsers.items() for a in sub._actions if not a.help]
    assert not silent, (f"flags without help: {silent}; a TrainConfig field takes its help from the `#:` comment "
                        "above it (deeplab_edu/engine/config.py) or from cli._TRAIN_HELP")
    help_text = subparsers["train"].format_help()
    assert "SGD's momentum" in help_text and "(DeepLabv3: 0.5 to 2.0)" in help_text


def test_each_model_gets_its_papers_settings_unless_they_are_given() -> None:
    """DeepLab v1 alone is VGG-16 at output stride 8, DeepLab v2 alone trains at 8 (its paper), v3
    keeps DeepLabv3's 16/8; a setting given in a preset or a flag wins over the model's."""
    v1 = load_config(overrides={"model": "deeplabv1"})
    assert (v1.backbone, v1.output_stride, v1.eval_output_stride) == ("vgg16", 8, 8)
    v2 = load_config(overrides={"model": "deeplabv2"})
    assert (v2.backbone, v2.output_stride, v2.eval_output_stride) == ("resnet50", 8, 8)
    v3 = load_config(overrides={"model": "deeplabv3"})
    assert (v3.output_stride, v3.eval_output_stride) == (16, 8)
    v2_16 = load_config(overrides={"model": "deeplabv2", "output_stride": 16})
    assert (v2_16.output_stride, v2_16.eval_output_stride) == (16, 8)
    from_preset = load_config("cpu", {"model": "deeplabv2"})  # the preset sets output_stride 16 and tiny_resnet
    assert (from_preset.backbone, from_preset.output_stride) == ("tiny_resnet", 16)


def test_the_advice_of_an_error_works_and_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="--backbone vgg16 --output-stride 8 --eval-output-stride 8"):
        load_config(overrides={"model": "deeplabv1", "backbone": "resnet50"})
    cfg = load_config(overrides={"model": "deeplabv1", "backbone": "vgg16", "output_stride": 8,
                                 "eval_output_stride": 8})
    assert cfg.backbone == "vgg16"
    monkeypatch.setenv("DEEPLAB_EDU_DEBUG", "1")
    with pytest.raises(ConfigError, match="amp='fp8'"):
        main(["train", "--amp", "fp8"])


def test_ctrl_c_while_torch_is_imported_ends_without_a_traceback(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    """The console script imports deeplab_edu.cli before main() can catch anything: that import
    stays free of torch, and main() catches Ctrl-C from then on (e.g. while a command imports torch)."""
    from deeplab_edu import cli

    probe = "import sys, deeplab_edu.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["train"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_help_is_quick_because_it_does_not_import_torch() -> None:
    """``deeplab-edu --help`` and ``deeplab-edu train --help`` list the models, backbones and settings
    from torch-free modules (deeplab_edu.choices, engine.config): well under a second, not the
    seconds importing torch takes."""
    probe = ("import sys; from deeplab_edu.cli import build_parser; p = build_parser(); p.format_help(); "
             "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_a_presets_value_that_keeps_a_models_default_is_named(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ConfigError, match="backbone=tiny_resnet comes from the preset 'smoke', not from deeplabv1's"):
        load_config("smoke", {"model": "deeplabv1"})
    assert load_config("smoke", {"model": "deeplabv1", "backbone": "vgg16"}).output_stride == 8
    with pytest.raises(SystemExit) as stop:  # argparse's own mistakes are one line too
        main(["train", "--lr", "abc"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["deeplab-edu train: error: argument --lr: invalid float value: 'abc' "
                   "(deeplab-edu train --help lists the flags)"]


def test_an_unknown_or_shortened_flag_is_named_by_its_command_with_the_closest_one(capsys: pytest.CaptureFixture) -> None:
    """A new user's trial: ``train --itrations 3`` was reported by the top-level parser, pointing at
    ``deeplab-edu --help`` (which lists no training flag), and ``predict --scale 2`` ran silently as
    ``--scales 2`` (argparse's abbreviations)."""
    for argv, line in [
        (["train", "--preset", "smoke", "--itrations", "3"],
         "deeplab-edu train: error: unrecognized arguments: --itrations 3 (did you mean --iterations?) "
         "(deeplab-edu train --help lists the flags)"),
        (["train", "--iteration=3"], "deeplab-edu train: error: unrecognized arguments: --iteration=3 "
                                     "(did you mean --iterations?) (deeplab-edu train --help lists the flags)"),
        (["eval", "--checkpoint", "run", "--bogus"],
         "deeplab-edu eval: error: unrecognized arguments: --bogus (deeplab-edu eval --help lists the flags)"),
        (["predict", "--checkpoint", "run", "x.png", "--scale", "2"],
         "deeplab-edu predict: error: unrecognized arguments: --scale 2 (did you mean --scales?) "
         "(deeplab-edu predict --help lists the flags)"),
        # a practitioner's trial: a shell glob gave several images; a flag after "--" was "did you mean" itself
        (["predict", "--checkpoint", "run", "a.png", "b.png"],
         "deeplab-edu predict: error: unrecognized arguments: b.png (it takes one image file or one folder: to predict "
         "several images, give their folder) (deeplab-edu predict --help lists the flags)"),
        (["predict", "--checkpoint", "run", "--", "a.png", "--flip"],
         "deeplab-edu predict: error: unrecognized arguments: --flip (--flip came after --, which ends the flags: give "
         "every flag before it) (deeplab-edu predict --help lists the flags)"),
        # ... but not a flag given before the command's name (there is no "--" there), nor a guess for "--" itself
        (["--flip", "predict", "--checkpoint", "run", "a.png"],
         "deeplab-edu predict: error: unrecognized arguments: --flip (--flip came before the command's name: give it "
         "after deeplab-edu predict) (deeplab-edu predict --help lists the flags)"),
        (["train", "--", "--iterations", "5"],
         "deeplab-edu train: error: unrecognized arguments: -- --iterations 5 (--iterations came after --, which ends "
         "the flags: give every flag before it) (deeplab-edu train --help lists the flags)"),
    ]:
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
        assert capsys.readouterr().err.strip().splitlines() == [line]


def test_the_help_gives_each_training_default_and_a_bad_value_a_readable_error(capsys: pytest.CaptureFixture) -> None:
    """An audit of the help texts: train's flags gave no default (--recompute-depthwise, on by default, read as
    an opt-in), --eval-output-stride eight said "invalid <lambda> value", and predict's --scales took the image
    path its usage line puts after it."""
    from deeplab_edu.cli import build_parser

    subparsers = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    help_of = {a.dest: " ".join(a.help.split()) for a in subparsers["train"]._actions if a.help}
    assert help_of["recompute_depthwise"].endswith("(without a preset: on)")
    assert help_of["lr"].endswith("(without a preset: 0.007)") and help_of["scale_range"].endswith("0.5 2.0)")
    assert "--aux-loss" in help_of["aux_weight"] and "aux_loss" not in help_of["aux_weight"]  # the flag, not the field
    assert "off: smaller images" in help_of["pad_to_crop"]
    assert "DEEPLAB_EDU_CAMVID" in help_of["data_root"]
    from deeplab_edu.viz.images import IMAGENET_MEAN, IMAGENET_STD

    onnx_help = " ".join(next(a for a in subparsers["export"]._actions if a.dest == "onnx").help.split())
    assert ", ".join(map(str, IMAGENET_MEAN)) in onnx_help and ", ".join(map(str, IMAGENET_STD)) in onnx_help
    for command in ("eval", "predict", "export"):
        checkpoint = next(a for a in subparsers[command]._actions if a.dest == "checkpoint")
        assert "model file" in checkpoint.help and "run's folder" in checkpoint.help, command
    for argv, said in [
        (["train", "--eval-output-stride", "eight"],
         "argument --eval-output-stride: use 8, 16, 32 or none (the training output stride), got 'eight'"),
        (["predict", "--checkpoint", "run", "--scales", "0.5", "1", "photo.jpg"],
         "argument --scales: 'photo.jpg' is not a scale (a number such as 0.75): --scales takes the numbers up to the "
         "next flag (predict: give the image before --scales)"),
        (["eval", "--checkpoint", "run", "--scales", "0"], "argument --scales: a scale must be a positive, finite number"),
        (["predict", "--checkpoint", "run", "a.png", "--scales", "nan"], "a scale must be a positive, finite number"),
        # a practitioner's trial: predict --crop-size 1 ran one-pixel windows and exited 0
        (["predict", "--checkpoint", "run", "a.png", "--crop-size", "1"],
         "argument --crop-size: a sliding window of 1 pixel is too small to predict from"),
        (["eval", "--checkpoint", "run", "--crop-size", "0"], "use at least 32, or leave --crop-size out"),
    ]:
        with pytest.raises(SystemExit):
            main(argv)
        assert said in capsys.readouterr().err, argv
    args = build_parser().parse_args(["predict", "--checkpoint", "run", "--scales", "0.5", "1", "--", "photo.jpg"])
    assert (args.scales, args.input) == ([0.5, 1.0], "photo.jpg")
    assert build_parser().parse_args(["train", "--eval-output-stride", "None"]).eval_output_stride is None


def test_eval_takes_download_as_its_missing_data_message_says() -> None:
    """A new user's trial: evaluating on a missing VOC said "Pass download=True (--download ...)", and
    ``eval`` refused --download as an unrecognized argument."""
    from deeplab_edu.cli import build_parser

    assert build_parser().parse_args(["eval", "--checkpoint", "run", "--dataset", "voc", "--download"]).download
    # and check-data, whose message for a missing CamVid or VOC says the same (a learner's trial, stop 59)
    assert build_parser().parse_args(["check-data", "--dataset", "camvid", "--download"]).download


def test_check_data_refuses_download_for_your_own_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from deeplab_edu.cli import main

    assert main(["check-data", "--data-root", str(tmp_path), "--download"]) == 2
    err = capsys.readouterr().err
    assert "download" in err and "Traceback" not in err, err


def test_course_runs_trains_what_the_chapters_load_in_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    import deeplab_edu.data
    from deeplab_edu.book import chapter_headers
    from deeplab_edu.records import shown_path
    from deeplab_edu.viz.training import RUNS_ENV, RunSpec, camvid_run, chapter_run, course_runs

    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "runs"))  # none trained yet, whatever the checkout's runs/ holds
    chapters = [chapter_run("deeplabv3", profile="cpu"), chapter_run("deeplabv3", phase=2, profile="cpu"),
                chapter_run("deeplabv3", phase=2, profile="cpu", output_stride=16),
                chapter_run("deeplabv3plus", profile="cpu")]  # what chapters 08 and 09 call
    assert course_runs("cpu") == chapters

    trained: list[RunSpec] = []
    monkeypatch.setattr(RunSpec, "train_or_load", lambda self, verbose=True: trained.append(self))
    monkeypatch.setattr(deeplab_edu.data, "find_camvid", lambda: None)
    assert main(["course-runs", "--profile", "cpu", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert trained == [] and all(spec.command() in out for spec in chapters) and "no CamVid copy found" in out
    assert all(f"{spec.command()}\n        {spec.status()}" in out for spec in chapters)  # each run's state
    assert "DEEPLAB_EDU_CAMVID" in out or "shared" in out  # where it looked
    headers = {h["chapter"]: h["cpu_minutes"] for h in chapter_headers()}
    assert f"4 of 4 runs to train; all 4 together take less than {headers[8] + headers[9]:.0f} min on a 2-core machine" in out  # no CamVid: 08 and 09

    monkeypatch.setattr(deeplab_edu.data, "find_camvid", lambda: tmp_path)
    assert main(["course-runs", "--profile", "cpu"]) == 0
    assert trained == [*chapters, camvid_run("cpu")]  # phase 1 before the two runs that start from it
    out = capsys.readouterr().out
    assert f"all 5 together take less than {headers[8] + headers[9] + headers[11]:.0f} min" in out  # with CamVid: 11 too
    assert "all 5 runs ready" in out and f"copy its folder {shown_path(tmp_path / 'runs')}/ there" in out
    assert "with `tar` or `rsync -aH`" in out  # a teacher's trial: cp -r copied each hard-linked checkpoint twice
    threads = torch.get_num_threads()
    try:  # a laptop in use: fewer threads for the runs, as train takes them
        assert main(["course-runs", "--profile", "cpu", "--threads", "1"]) == 0 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    trained.clear()
    monkeypatch.setattr("deeplab_edu.config.device", lambda: "cpu")  # gpu runs without CUDA would take days
    assert main(["course-runs", "--profile", "gpu"]) == 2 and "need a CUDA GPU" in capsys.readouterr().err
    monkeypatch.setattr("deeplab_edu.config.device", lambda: "cuda")  # the gpu profile's runs, planned on a CPU
    monkeypatch.setattr("deeplab_edu.models.pretrained.cached_weights", lambda weights: None)
    assert main(["course-runs", "--profile", "gpu"]) == 0
    assert trained[-1] == camvid_run("gpu") and "data_root" not in trained[-1].overrides  # the engine finds it
    assert "[5/5] downloads torchvision's ImageNet weights of resnet50" in capsys.readouterr().out  # said first

    monkeypatch.setenv("DEEPLAB_EDU_PROFILE", "smoke")  # smoke runs live in temporary folders: nothing to keep
    assert main(["course-runs"]) == 2 and "DEEPLAB_EDU_PROFILE=cpu make course-runs" in capsys.readouterr().err
    smoke = course_runs("smoke")
    assert smoke[1].overrides["init_from"] == str(smoke[0].checkpoint)  # one folder for all of them


def test_course_runs_refuses_stale_runs_first_and_goes_on_after_a_failure(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """A phase 2 finished from a phase 1 that the command is about to train again (its folder was
    deleted) is named before any training; a run that fails does not stop the others, only those
    that start from it, and the end lists what is not ready."""
    import deeplab_edu.data
    from deeplab_edu.engine.runs import RunStatus, shown_path
    from deeplab_edu.viz.training import RunSpec, course_runs

    phase1, phase2, control, plus = course_runs("cpu")
    monkeypatch.setattr(deeplab_edu.data, "find_camvid", lambda: None)
    finished = RunStatus("finished", "finished (800 iterations): reused")
    states = {phase1.out_dir: RunStatus("not started", "not started: will be trained")}
    monkeypatch.setattr(RunSpec, "status", lambda self: states.get(self.out_dir, finished))
    trained: list[RunSpec] = []

    def train(self: RunSpec, verbose: bool = True) -> None:
        if self.out_dir == phase1.out_dir:
            raise OSError("no space left on device")
        trained.append(self)

    monkeypatch.setattr(RunSpec, "train_or_load", train)
    assert main(["course-runs", "--profile", "cpu"]) == 2
    captured = capsys.readouterr()
    assert trained == [] and "which this command trains first" in captured.out
    assert f"delete {shown_path(phase2.out_dir)}, {shown_path(control.out_dir)}," in captured.err

    states.update({phase2.out_dir: states[phase1.out_dir], control.out_dir: states[phase1.out_dir]})
    assert main(["course-runs", "--profile", "cpu"]) == 2
    err = capsys.readouterr().err
    assert trained == [plus] and "1 of 4 runs ready" in err and "no space left on device" in err
    assert err.count("the run it starts from") == 4  # phase 2 and its control were not tried: as they come, at the end


def test_eval_output_stride_none_means_the_training_stride() -> None:
    """``--eval-output-stride none`` is a value (validate at the training stride), not "not given"."""
    from deeplab_edu.cli import _train_config

    def config(*flags: str) -> TrainConfig:
        return _train_config(build_parser().parse_args(["train", "--preset", "cpu", *flags]))

    preset = load_config("cpu").eval_output_stride
    assert preset is not None  # so that the flag's None is seen to change it
    assert config().eval_output_stride == preset
    assert config("--eval-output-stride", "none").eval_output_stride is None
    assert config("--eval-output-stride", "16").eval_output_stride == 16


def test_a_config_files_mistakes_are_named(tmp_path: Path) -> None:
    """A misspelt key gets a suggestion and its file; a value of the wrong type names its setting and file;
    a number YAML reads as a string (1e-3 without a dot) is taken as the float it means."""
    typo, word, number = tmp_path / "typo.yaml", tmp_path / "word.yaml", tmp_path / "number.yaml"
    typo.write_text("iteratons: 5\n")
    word.write_text("iterations: five\n")
    number.write_text("lr: 1e-3\n")
    with pytest.raises(ConfigError, match=r"iteratons \(in the config file .*typo.yaml'; did you mean iterations\?\)"):
        load_config("smoke", config=typo)
    with pytest.raises(ConfigError, match=r"iterations='five' \(from the config file .*word.yaml'\) should be an int"):
        load_config("smoke", config=word)
    assert load_config("smoke", config=number).lr == 0.001


@pytest.mark.parametrize("line, message", [
    ("scale_range: 0.5", r"scale_range=0.5 \(from the config file .*bad.yaml'\) should be two numbers \[min, max\]"),
    ("scale_range: [0.5]", r"scale_range=\[0.5\] .*should be two numbers"),
    ("scale_range: '0.5 2'", r"scale_range='0.5 2' .*should be two numbers"),
    ("lr: .nan", r"lr=nan \(from the config file .*\) should be a finite number"),
    ("class_weights: [1, 2, 3]", r"class_weights=\[1, 2, 3\] .*should be a str: 'median_frequency', or null"),
    ("eval_output_stride: eight", r"eval_output_stride='eight' .*should be an int or none"),
    ("seed: -1", r"seed must be 0 or more, got -1"),
])
def test_a_config_files_malformed_values_are_named(tmp_path: Path, line: str, message: str) -> None:
    """A new user's trial: scale_range: 0.5 ended in a TypeError traceback, [0.5] and '0.5 2' in messages
    naming no setting ('not enough values to unpack'), lr: .nan and seed: -1 in PyTorch's and NumPy's
    words after the run had started, and the type messages did not say what form works."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(line + "\n")
    with pytest.raises(ConfigError, match=message):
        load_config("smoke", config=bad)


def test_a_config_files_generated_scene_settings_and_a_folder_are_named(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    """A second trial: image_size, train_length and difficulty in a user's YAML file with dataset: folder
    were dropped without a word (the same flags were refused), and --config <run folder> said the file
    'does not exist'. A run's own config.json lists every setting, so it is not refused."""
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"dataset: folder\ndata_root: {tmp_path}\nimage_size: 64\ndifficulty: hard\n")
    assert main(["train", "--preset", "smoke", "--config", str(mine), "--out-dir", str(tmp_path / "r")]) == 2
    assert (f"image_size: 64, difficulty: 'hard' (in the config file '{mine}'): settings of the generated scenes"
            in capsys.readouterr().err)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    assert main(["train", "--config", str(run), "--out-dir", str(tmp_path / "r")]) == 2
    assert f"config file {run} is a folder: name a YAML file, or the run's {run / 'config.json'}" in capsys.readouterr().err


def test_a_config_file_may_write_what_the_command_line_writes(tmp_path: Path) -> None:
    """eval_output_stride: none (the flag's word; YAML's is null) and atrous_rates as a YAML list; a flag's
    value that replaces a file's is not said to come from the file."""
    good = tmp_path / "good.yaml"
    good.write_text("eval_output_stride: none\natrous_rates: [1, 2, 3]\namp: null\npretrained_backbone: none\n")
    cfg = load_config("smoke", config=good)
    assert cfg.eval_output_stride is None and cfg.atrous_rates == "1,2,3"
    assert cfg.amp == "none" and cfg.pretrained_backbone is False  # a second trial: refused, and read as a file name
    other = tmp_path / "other.yaml"
    other.write_text("learning_rate: 0.01\n")  # another framework's name: the nearest spelling was hard_mining_iters
    with pytest.raises(ConfigError, match=r"learning_rate \(in the config file .*; did you mean lr\?\)"):
        load_config("smoke", config=other)
    with pytest.raises(ConfigError, match=r"lr=nan \(from the overrides\)"):
        load_config("smoke", {"lr": float("nan")}, config=good)


def test_bench_pipeline_preset_follows_the_device(monkeypatch) -> None:
    """Without --preset the pipeline benchmark measures the gpu preset on CUDA only: on a CPU its
    ResNet-50 would train for hours (the cpu preset's network takes minutes)."""
    import torch

    from deeplab_edu.engine.bench import default_preset

    assert default_preset("cuda:1") == "gpu" and default_preset("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_preset(None) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_preset(None) == "gpu"


def test_benchmark_scripts_help_names_each_default_once() -> None:
    """A benchmark script's ``--help`` said "record path (None: runs/bench/...)" and then "(default: None)": an
    option whose default is None says in its own words what not giving it does, and no "(default: None)"."""
    import argparse

    from deeplab_edu.engine.bench.timing import DefaultsHelpFormatter

    parser = argparse.ArgumentParser(prog="bench", formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--out", default=None, help="record path (default: runs/bench/x.json)")
    parser.add_argument("--steps", type=int, default=12, help="timed steps")
    text = parser.format_help()
    assert "(default: None)" not in text and "(default: 12)" in text and "runs/bench/x.json" in text, text
    for script in sorted((REPO_ROOT / "benchmarks").glob("*.py")):
        source = script.read_text()
        assert "ArgumentDefaultsHelpFormatter" not in source, f"{script.name}: use DefaultsHelpFormatter"
        assert "(None:" not in source, f"{script.name}: say (default: ...) in the help of a None default"


def test_a_copied_runs_config_resumes_the_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--config <run>/config.json --resume` continues *that* run: a copied run's config.json still
    names the original folder (it resumed the original), and a relative out_dir resolved from another
    folder started a new run from iteration 0."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--preset", "smoke", "--iterations", "2", "--eval-every", "2", "--out-dir", "runs/a",
                 "--no-progress"]) == 0
    shutil.copytree(tmp_path / "runs" / "a", tmp_path / "copy")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", "--config", str(tmp_path / "copy" / "config.json"), "--resume", "--iterations", "3",
                 "--eval-every", "3", "--no-progress"]) == 0
    assert (tmp_path / "copy" / "checkpoints" / "ckpt_00000003.pt").is_file()
    assert not (tmp_path / "runs" / "a" / "checkpoints" / "ckpt_00000003.pt").exists()  # the original is untouched
    assert not (elsewhere / "runs").exists()
    # a config file that is not a run's own keeps its out_dir
    from deeplab_edu.engine.config import run_of_config

    (tmp_path / "mine.yaml").write_text("iterations: 5\n")
    assert run_of_config(str(tmp_path / "mine.yaml")) is None
    assert run_of_config(tmp_path / "copy" / "config.json") == tmp_path / "copy"


@pytest.mark.busy_cpu_note
def test_threads_and_a_busy_machine(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """PyTorch's threads wait for each other when another job holds a core (a smoke training ran 3 s per
    iteration instead of 0.04 s with one thread): `--threads` sets them, and a CPU run is told when the
    other processes leave fewer free cores than threads."""
    from deeplab_edu.cli import _cpu_threads
    from deeplab_edu.engine import workers

    import psutil

    monkeypatch.setattr(workers, "available_cores", lambda: 2)
    monkeypatch.setattr(workers, "_affinity_cores", lambda: 2)  # no CPU quota
    monkeypatch.setattr(psutil, "cpu_count", lambda: 2)
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None: 60.0)  # 1.2 cores busy (this process: ~0)
    note = workers.busy_cpu_note(2)
    assert note is not None and "keep 1.2 of this machine's 2 cores busy" in note and "--threads 1" in note
    assert workers.busy_cpu_note(1) is None  # one thread fits the free core
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None: 100.0)  # both cores busy
    assert "--threads 1" in (workers.busy_cpu_note(2) or "")
    # a learner's trial under OMP_NUM_THREADS=1 was told "PyTorch will use 1 threads that wait for each other:
    # torch.set_num_threads(1) can be several times faster": one thread waits for no other
    assert workers.busy_cpu_note(1) is None
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None: 10.0)
    assert workers.busy_cpu_note(2) is None  # a quiet machine
    threads = torch.get_num_threads()
    try:
        args = build_parser().parse_args(["train", "--threads", "1"])
        _cpu_threads(args, "cpu")
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="--threads must be at least 1, got 0"):  # a Namespace built in code
            _cpu_threads(argparse.Namespace(threads=0), "cpu")
        for command in (["course-runs", "--dry-run"], ["eval", "--checkpoint", "x"], ["bench"]):
            with pytest.raises(SystemExit):  # a teacher's trial: course-runs --threads 0 --dry-run exited 0
                build_parser().parse_args([*command, "--threads", "0"])
        with pytest.raises(SystemExit):  # a practitioner's trial: "no median for empty data" after compiling
            build_parser().parse_args(["bench", "--repeats", "0"])
            assert "argument --threads: must be at least 1, got 0" in capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)


def test_export_refuses_to_replace_a_file_of_the_other_kind(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A practitioner's trial: `export --onnx m.pt` (meant --out) replaced the model file m.pt with an ONNX
    graph without a word, and predict then called the ONNX file "truncated, damaged or not a PyTorch checkpoint"."""
    from deeplab_edu.models.export import is_onnx_file

    assert main(["train", "--preset", "smoke", "--iterations", "1", "--eval-every", "1",
                 "--out-dir", str(tmp_path / "run"), "--no-progress", "--threads", "1"]) == 0
    ckpt = str(tmp_path / "run" / "checkpoints")
    model_file = tmp_path / "m.pt"
    assert main(["export", "--checkpoint", ckpt, "--out", str(model_file)]) == 0
    before = model_file.read_bytes()
    capsys.readouterr()
    for argv, message in ((["--onnx", str(model_file)], "--onnx writes the ONNX graph (.onnx), --out the PyTorch"),
                          (["--out", str(tmp_path / "m.onnx")], "--out writes the PyTorch model file (.pt), --onnx"),
                          (["--onnx", str(tmp_path / "copy.bin")], "already holds a file that is not an ONNX model")):
        (tmp_path / "copy.bin").write_bytes(before)
        assert main(["export", "--checkpoint", ckpt, *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert model_file.read_bytes() == before and (tmp_path / "copy.bin").read_bytes() == before
    assert not (tmp_path / "m.onnx").exists()
    # an ONNX file (its first bytes, as torch.onnx writes them) is neither replaced by a model file nor read as one
    onnx_like = tmp_path / "graph.bin"
    onnx_like.write_bytes(b"\x08\x0a\x12\x07pytorch\x1a\x062.14.1" + bytes(64))
    assert is_onnx_file(onnx_like) and not is_onnx_file(model_file) and not is_onnx_file(tmp_path / "missing")
    assert main(["export", "--checkpoint", ckpt, "--out", str(onnx_like)]) == 2
    assert "already holds a file that is not a PyTorch file" in capsys.readouterr().err
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(tmp_path / "a.png")
    assert main(["predict", "--checkpoint", str(onnx_like), str(tmp_path / "a.png"), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "it is an ONNX model (what deeplab-edu export --onnx writes)" in err and "damaged" not in err, err
    assert main(["export", "--checkpoint", ckpt, "--out", str(onnx_like), "--overwrite"]) == 0  # when asked to
    assert not is_onnx_file(onnx_like) and main(["export", "--checkpoint", ckpt, "--out", str(model_file)]) == 0
    assert "replacing the file there" in capsys.readouterr().out  # an earlier model file: replaced, and said


@pytest.mark.busy_cpu_note
def test_busy_note_comes_after_the_checks_that_fail_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    """A new user's trial: predict printed the note on a busy CPU (advice for a long run) and then an
    error about its arguments; now the note comes only once the images are about to be predicted."""
    from deeplab_edu.engine import workers

    assert main(["train", "--preset", "smoke", "--iterations", "1", "--eval-every", "1",
                 "--out-dir", str(tmp_path / "run"), "--no-progress", "--threads", "1"]) == 0
    monkeypatch.setattr(workers, "busy_cpu_note", lambda *args, **kwargs: "note: BUSY")
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a_mask.png").write_bytes(b"a ground truth")
    capsys.readouterr()
    ckpt = str(tmp_path / "run" / "checkpoints")
    assert main(["predict", "--checkpoint", ckpt, str(tmp_path / "a.png"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "which predict did not write" in err and "BUSY" not in err, err
    assert main(["predict", "--checkpoint", ckpt, str(tmp_path / "a.png"), "--out", str(tmp_path / "new")]) == 0
    assert "note: BUSY" in capsys.readouterr().err


def test_predict_out_is_a_folder_and_subfolders_are_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`--out mask.png` made a folder named mask.png (and the next call's message was misleading);
    a folder's subfolders are not read, and predict says so."""
    assert main(["train", "--preset", "smoke", "--iterations", "1", "--eval-every", "1",
                 "--out-dir", str(tmp_path / "run"), "--no-progress"]) == 0
    images = tmp_path / "images"
    (images / "more").mkdir(parents=True)
    (images / "shots.png").mkdir()  # a folder with an image's suffix: counted as an image that was missing
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(images / "a.png")
    capsys.readouterr()
    ckpt = str(tmp_path / "run" / "checkpoints")
    assert main(["predict", "--checkpoint", ckpt, str(images / "a.png"), "--out", str(tmp_path / "a_mask.png")]) == 2
    assert "looks like a file name; --out names the folder" in capsys.readouterr().err
    assert not (tmp_path / "a_mask.png").exists()
    assert main(["predict", "--checkpoint", ckpt, str(images), "--out", str(tmp_path / "pred")]) == 0
    err = capsys.readouterr().err
    assert "not of its subfolders (more, shots.png)" in err and "not found" not in err, err
    assert "without an image's suffix" not in err  # none here
    (images / "notes.txt").write_text("where the photos come from")
    assert main(["predict", "--checkpoint", ckpt, str(images), "--out", str(tmp_path / "pred_n")]) == 0
    assert "note: 1 file(s) of" in (err := capsys.readouterr().err) and "are not predicted (notes.txt)" in err, err
    (images / "notes.txt").unlink()
    assert (tmp_path / "pred" / "a_mask.png").is_file()
    # predict given its own output folder (a trial: 'no images' of a folder of PNGs): says what it holds
    assert main(["predict", "--checkpoint", ckpt, str(tmp_path / "pred"), "--out", str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err
    assert "other than 2 masks and overlays an earlier predict wrote (a_mask.png, a_overlay.png)" in err, err
    shutil.copy(images / "a.png", tmp_path / "pred" / "b.png")  # a photo among them: only it is predicted
    assert main(["predict", "--checkpoint", ckpt, str(tmp_path / "pred"), "--out", str(tmp_path / "again")]) == 0
    assert "2 masks and overlays an earlier predict wrote" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["b_mask.png", "b_overlay.png"]
    assert main(["predict", "--checkpoint", ckpt, str(tmp_path / "pred" / "a_overlay.png"), "--out",
                 str(tmp_path / "one")]) == 0  # one such file, by name: predicted, with a note
    assert "a_overlay.png is a mask or overlay an earlier predict wrote" in capsys.readouterr().err
    # a practitioner's review (stop 51): a.png, then a.webp of the same stem, into one --out in two calls
    # replaced a.png's mask without a word; the same image predicted again still replaces its own
    Image.fromarray(np.full((20, 24, 3), 200, np.uint8)).save(tmp_path / "a.webp")
    pred_args = ["predict", "--checkpoint", ckpt, "--out", str(tmp_path / "pred")]
    assert main([*pred_args, str(tmp_path / "a.webp")]) == 2
    assert "a_mask.png (of a.png)" in capsys.readouterr().err
    assert main([*pred_args, str(images / "a.png")]) == 0
    assert main([*pred_args, "--overwrite", str(tmp_path / "a.webp")]) == 0


#: The benchmark function each ``bench --mode`` calls.
BENCH_FUNCTIONS = {"models": "run_benchmarks", "pipeline": "run_pipeline_benchmark", "loader": "run_loader_benchmark",
                   "compile": "run_compile_benchmark"}


def test_bench_leaves_the_rounds_to_each_benchmark_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """One source for the default rounds: the benchmark functions (``min_rounds()``, 6, the fewest with an
    interval; the loader's 3, which gives none); ``--repeats`` overrides it in every mode."""
    import inspect

    from deeplab_edu.engine import bench

    defaults = {mode: next(p.default for p in inspect.signature(getattr(bench, name)).parameters.values()
                           if p.name in ("repeats", "rounds")) for mode, name in BENCH_FUNCTIONS.items()}
    assert defaults == {"models": None, "pipeline": None, "loader": 3, "compile": None}  # None: min_rounds()
    seen: dict[str, dict] = {}
    for mode, name in BENCH_FUNCTIONS.items():
        monkeypatch.setattr(bench, name, lambda _mode=mode, **kw: seen.__setitem__(_mode, kw))
    for mode, name in BENCH_FUNCTIONS.items():
        assert main(["bench", "--mode", mode, "--device", "cpu"]) == 0
        assert not {"repeats", "rounds"} & set(seen[mode]), f"{mode}: the CLI chose the rounds, not {name}"
        assert main(["bench", "--mode", mode, "--device", "cpu", "--repeats", "9"]) == 0
        assert 9 in (seen[mode].get("repeats"), seen[mode].get("rounds")), mode


@pytest.mark.parametrize("argv, message", [
    (["--mode", "loader", "--device", "cuda"], "the loader mode measures DataLoader workers on the CPU; leave --device out"),
    (["--mode", "loader", "--threads", "1", "--iterations", "5"],
     "--iterations (read by: pipeline); --threads (read by: models, pipeline, compile)"),
    (["--mode", "models", "--workers", "1", "2"], "the models mode does not read --workers (read by: loader)"),
    (["--mode", "pipeline", "--size", "256"], "the pipeline mode does not read --size (read by: models, loader, compile)"),
    (["--mode", "compile", "--pairs", "v3"], "--pairs (read by: models)"),
])
def test_bench_refuses_a_flag_its_mode_does_not_read(argv: list[str], message: str, capsys: pytest.CaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A benchmark that silently dropped ``--size`` would record a setting nobody asked for."""
    from deeplab_edu.engine import bench

    for name in BENCH_FUNCTIONS.values():
        monkeypatch.setattr(bench, name, lambda **kw: pytest.fail(f"ran with {kw}"))
    assert main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err


def test_bench_flags_are_each_read_by_a_mode_and_their_help_gives_the_functions_defaults() -> None:
    """A new ``bench`` flag left out of ``BENCH_MODE_FLAGS`` would be refused in every mode; a default the
    help names must be the one the benchmark function uses."""
    import inspect

    from deeplab_edu.cli import BENCH_MODE_FLAGS
    from deeplab_edu.engine import bench

    bench_parser = build_parser()._subparsers._group_actions[0].choices["bench"]  # type: ignore[union-attr]
    options = {a.dest: a for a in bench_parser._actions if a.dest != "help"}
    assert set(options) == set().union(*BENCH_MODE_FLAGS.values()) | {"mode", "repeats", "out"}

    def default(function: str, name: str) -> object:
        return inspect.signature(getattr(bench, function)).parameters[name].default

    help_of = {name: " ".join(action.help.split()) for name, action in options.items()}
    assert f"default {default('run_benchmarks', 'size')}" in help_of["size"]
    assert f"default {default('run_compile_benchmark', 'size')}" in help_of["size"]
    assert f"default {default('run_loader_benchmark', 'size')})" in help_of["size"]
    assert f"default {default('run_benchmarks', 'batch')};" in help_of["batch"]
    assert f"default {default('run_loader_benchmark', 'batch')})" in help_of["batch"]
    assert f"default {default('run_pipeline_benchmark', 'iterations')})" in help_of["iterations"]
    assert f"default {' '.join(map(str, default('run_loader_benchmark', 'workers')))})" in help_of["workers"]
    assert f"default {default('run_compile_benchmark', 'backbone')})" in help_of["backbone"]
    assert default("run_benchmarks", "pairs") == ("v3", "v3plus") and "default both" in help_of["pairs"]


def test_bench_passes_each_mode_the_flags_it_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    from deeplab_edu.engine import bench

    seen: dict[str, dict] = {}
    for name in BENCH_FUNCTIONS.values():
        monkeypatch.setattr(bench, name, lambda _name=name, **kw: seen.__setitem__(_name, kw))
    assert main(["bench", "--mode", "loader", "--device", "cpu", "--workers", "1", "2", "--size", "64", "--batch", "4",
                 "--repeats", "2"]) == 0
    assert seen["run_loader_benchmark"] == {"out": None, "workers": (1, 2), "size": 64, "batch": 4, "rounds": 2}
    assert main(["bench", "--mode", "pipeline", "--preset", "cpu", "--num-workers", "0", "--iterations", "5"]) == 0
    assert seen["run_pipeline_benchmark"] == {"out": None, "preset": "cpu", "iterations": 5,
                                              "overrides": {"num_workers": 0}}
    assert main(["bench", "--pairs", "v3", "--size", "64"]) == 0
    assert seen["run_benchmarks"] == {"out": None, "device": "cpu", "pairs": ("v3",), "size": 64}
    assert main(["bench", "--mode", "compile", "--backbone", "tiny_resnet", "--threads", "1"]) == 0
    assert seen["run_compile_benchmark"] == {"out": None, "device": "cpu", "backbone": "tiny_resnet", "threads": 1}


def test_a_commands_warnings_go_above_a_bar_and_are_recorded_without_one(capsys: pytest.CaptureFixture) -> None:
    """main() writes warnings above an open progress bar (tqdm.write); with no bar it hands them to the
    handler it found, so catch_warnings and pytest still record them."""
    import functools
    import warnings

    from tqdm.auto import tqdm

    from deeplab_edu.cli import _warning_above_bars

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.showwarning = functools.partial(_warning_above_bars, warnings.showwarning)
        warnings.warn("no bar open", UserWarning)
        bar = tqdm(total=3, file=sys.stderr)
        try:
            warnings.warn("a bar open", UserWarning)
        finally:
            bar.close()
    assert [str(w.message) for w in seen] == ["no bar open"]
    assert "UserWarning: a bar open\n" in capsys.readouterr().err


def test_the_final_line_says_when_the_miou_leaves_classes_out() -> None:
    """A practitioner's trial: masks drawn 0 / 255 (the object on the ignore label) trained to "val mIoU
    100.0%" with the one class that matters never scored; the line now says so."""
    from deeplab_edu.cli import _unscored_note

    assert _unscored_note([1.0, None], ["background", "object"]) == (
        " over 1 of 2 classes (object: no pixel in the validation truth or prediction, not scored)")
    assert "over 2 of 3 classes (1:" in _unscored_note([0.5, float("nan"), 0.7], None)
    assert _unscored_note([0.5, 0.7], ["a", "b"]) == "" and _unscored_note(None, None) == ""


def test_a_presets_short_intervals_are_named_for_a_much_longer_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    """A practitioner's trial: --preset smoke --iterations 300 validated and wrote a checkpoint every 2
    iterations (the smoke preset's), silently; the command now says so, and not for an interval given."""
    import deeplab_edu.engine.trainer as trainer_module

    class Stop(Exception):
        pass

    def stop(*args: object, **kwargs: object) -> None:
        raise Stop

    monkeypatch.setattr(trainer_module.Trainer, "__init__", stop)
    for extra, said in ([], "keeps --eval-every 2 and --ckpt-every 2 for 300 iterations"),\
                       (["--eval-every", "100"], "keeps --ckpt-every 2 for 300 iterations"):
        with pytest.raises(Stop):
            main(["train", "--preset", "smoke", "--iterations", "300", "--out-dir", str(tmp_path / "run"), *extra])
        assert said in capsys.readouterr().err
    with pytest.raises(Stop):
        main(["train", "--preset", "smoke", "--iterations", "20", "--out-dir", str(tmp_path / "run")])
    assert "keeps" not in capsys.readouterr().err


def test_the_last_line_of_train_is_short_and_a_finished_run_resumed_says_nothing_trained(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A trial: the smoke preset's last line listed 15 (iteration, mIoU) pairs, and resuming a finished
    run printed the training banner, 'from iteration 40', and 'done in 0 s' after saying nothing is trained."""
    from deeplab_edu.cli import _short_curve

    args = ["train", "--preset", "smoke", "--iterations", "8", "--eval-every", "1", "--out-dir", str(tmp_path / "run"),
            "--no-progress", "--num-workers", "0"]
    assert main(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("done in") and "... 2 more ..." in last and last.count("(") <= 8, last
    assert _short_curve([(1, 0.5)]) == "[(1, 0.5)]"
    assert main([*args, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "nothing trained (the run already has 8 iterations); its last validation: val mIoU" in out
    assert "done in" not in out and not any(line.startswith("train ") for line in out.splitlines()), out


def test_a_runs_folder_counts_a_hard_linked_checkpoint_once(tmp_path: Path) -> None:
    """course-runs says how large the folder to copy is; a run's last.pt is a hard link to its newest
    checkpoint, which `du` counts once and so must this."""
    from deeplab_edu.cli import _folder_megabytes

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "iter_800.pt").write_bytes(b"x" * 2_000_000)
    (tmp_path / "run" / "last.pt").hardlink_to(tmp_path / "run" / "iter_800.pt")
    (tmp_path / "metrics.json").write_bytes(b"y" * 500_000)
    assert _folder_megabytes(tmp_path) == pytest.approx(2.5)



def _documented_commands() -> list[tuple[str, str]]:
    """Every ``deeplab-edu`` (or ``python -m deeplab_edu``, ``torchrun ... -m deeplab_edu``) command in a
    code block of the README, CONTRIBUTING, benchmarks/README, a notebook's Markdown, or the CLI's
    docstring, as ``(file, arguments after the program)``: ``\\`` continuations joined, shell comments
    dropped, ``.venv/bin/`` allowed in front."""
    import re
    import shlex

    import deeplab_edu.cli as cli

    root = Path(__file__).resolve().parents[1]
    blocks: list[tuple[str, str]] = []
    for path in [root / "README.md", root / "CONTRIBUTING.md", root / "benchmarks" / "README.md",
                 *sorted((root / "notebooks").glob("*.py"))]:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".py":  # the Markdown of a Jupytext notebook is in "# " comments
            text = "\n".join(line[2:] if line.startswith("# ") else "" for line in text.splitlines())
        blocks += [(path.relative_to(root).as_posix(), block)
                   for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.DOTALL | re.MULTILINE)]
    blocks.append(("deeplab_edu/cli.py", (cli.__doc__ or "").split("::", 1)[1]))
    program = re.compile(r"^\s*(?:\.venv/bin/)?(?:deeplab-edu|(?:python|torchrun)\b.*?-m deeplab_edu)\s+(.*)$")
    found = []
    for where, block in blocks:
        for line in re.sub(r"\\\n", " ", block).splitlines():
            if match := program.match(line):
                found.append((where, shlex.join(shlex.split(match.group(1), comments=True))))
    return sorted(set(found))


def test_every_command_the_documentation_shows_parses() -> None:
    """A command that a code block of the README, CONTRIBUTING, benchmarks/README, a notebook or
    ``deeplab-edu --help`` shows is accepted by the parser as it is written: a renamed or removed flag
    fails here, not on a reader's machine."""
    import shlex

    commands = _documented_commands()
    assert len(commands) >= 25, commands  # the pattern still finds the documentation's commands
    failures = []
    for where, arguments in commands:
        try:
            build_parser().parse_args(shlex.split(arguments))
        except SystemExit as exit_:
            if exit_.code:
                failures.append(f"{where}: deeplab-edu {arguments}")
    assert not failures, "\n".join(failures)


def test_the_papers_ablations_are_flags_that_write_model_kwargs() -> None:
    """``--multi-grid``, ``--image-pooling`` and ``--separable`` (DeepLabv3 sec. 3.2.1 and 3.3, v3+ sec. 3.1) add
    to the ``model_kwargs`` the preset, a file or ``--model-kwargs`` give, and refuse to contradict them."""
    from deeplab_edu.cli import _train_config

    def kwargs(*flags: str) -> dict:
        return _train_config(build_parser().parse_args(["train", "--preset", "cpu", *flags])).model_kwargs

    assert kwargs() == {}
    assert kwargs("--no-image-pooling") == {"image_pooling": False}
    assert kwargs("--multi-grid", "1", "2", "4", "--separable") == {"multi_grid": [1, 2, 4], "separable": True}
    assert kwargs("--model-kwargs", '{"dropout": 0.2}', "--no-image-pooling") == {"dropout": 0.2,
                                                                                  "image_pooling": False}
    assert kwargs("--model-kwargs", '{"image_pooling": false}', "--no-image-pooling") == {"image_pooling": False}
    with pytest.raises(ConfigError, match="give image_pooling two values"):
        kwargs("--model-kwargs", '{"image_pooling": true}', "--no-image-pooling")
    with pytest.raises(SystemExit):
        kwargs("--multi-grid", "one")


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    """A teacher's trial: `deeplab-edu course-runs --dry-run | head -3` ended with "error: [Errno 32] Broken
    pipe". A reader that stops reading is no error of the command: nothing on stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "deeplab_edu", "course-runs", "--dry-run", "--profile", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the command writes a line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1 and err == "", err


def test_a_missing_optional_package_is_one_line_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """A practitioner's trial: without onnx, ``export --out m.pt --onnx m.onnx`` wrote m.pt and then ended in a
    20-line traceback; ``train --tensorboard`` without tensorboard did after writing the run's config.json."""
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("onnx", "tensorboard") else real_find_spec(name, *a))
    (tmp_path / "c.pt").write_bytes(b"not read: the exporter is missing")
    argv = ["export", "--checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path / "m.pt"), "--onnx",
            str(tmp_path / "m.onnx")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs onnx, not installed here: pip install onnx" in err[0], err
    assert "DEEPLAB_EDU_DEBUG" not in err[0]  # a missing optional package is no bug: no traceback to offer
    assert not (tmp_path / "m.pt").exists()
    with pytest.raises(ConfigError, match=r"\(--tensorboard\) needs tensorboard, not installed here: pip install "
                                          r"tensorboard .*metrics.csv holds"):
        load_config("smoke", {"tensorboard": True, "out_dir": str(tmp_path / "run")})
    assert not (tmp_path / "run").exists()
    # an import that fails deeper: one line, with the pip command for an optional package (its pip name), and
    # none for a module that is not one (a required package or the course's own: pip would not mend it)
    def missing(module: str) -> Any:
        def handler(args: Any) -> int:
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)
        return handler

    monkeypatch.setattr("deeplab_edu.cli._check_data", missing("segmentation_models_pytorch"))
    assert main(["check-data", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install segmentation-models-pytorch" in err[0], err
    monkeypatch.setattr("deeplab_edu.cli._check_data", missing("yaml"))
    assert main(["check-data", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No module named 'yaml'" in err[0] and "pip install" not in err[0], err
    assert "DEEPLAB_EDU_DEBUG=1 shows the traceback" in err[0]  # not an optional package: maybe a broken install


def test_a_settings_error_of_train_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A practitioner's trial: ``--batch-size 0`` was told "batch_size must be at least 1", the configuration's
    spelling; the line now also names the flag (and says nothing more where it names the flag already)."""
    assert main(["train", "--out-dir", str(tmp_path / "run"), "--batch-size", "0"]) == 2
    assert "(the setting batch_size is the flag --batch-size)" in capsys.readouterr().err
    assert main(["train", "--out-dir", str(tmp_path / "run"), "--amp", "fp8"]) == 2
    assert "(the setting amp is the flag --amp)" in capsys.readouterr().err
    assert main(["train", "--out-dir", "README.md"]) == 2
    assert "the setting" not in capsys.readouterr().err  # "out_dir (--out-dir)" names it already


def test_predict_says_once_that_transparency_is_dropped(tmp_path: Path, checkpoint: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    """An RGBA photo (a cut-out saved as PNG) is read without its alpha channel: the colours under its
    transparent pixels are predicted. predict says so once per call, naming the first such file."""
    from deeplab_edu.data.io import has_transparency

    images = tmp_path / "images"
    images.mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (20, 24, 4), dtype=np.uint8)
    Image.fromarray(pixels[..., :3]).save(images / "a_opaque.png")
    for name in ("b_cutout.png", "c_cutout.png"):
        Image.fromarray(pixels, "RGBA").save(images / name)
    keyed = Image.fromarray(pixels[..., :3])  # an RGB PNG with a transparent colour (tRNS), no alpha channel
    keyed.save(images / "d_keyed.png", transparency=tuple(int(v) for v in pixels[0, 0, :3]))
    opaque = pixels.copy()
    opaque[..., 3] = 255  # an alpha channel opaque everywhere (a screenshot): nothing is dropped
    Image.fromarray(opaque, "RGBA").save(tmp_path / "screenshot.png")
    Image.fromarray(pixels[..., :3]).save(tmp_path / "unused_key.png", transparency=(255, 255, 255))  # no pixel's
    files = [images / "a_opaque.png", images / "b_cutout.png", images / "d_keyed.png", tmp_path / "screenshot.png",
             tmp_path / "unused_key.png"]
    assert [has_transparency(f) for f in files] == [False, True, True, False, False]  # values drawn below 255
    assert not has_transparency(tmp_path / "missing.png")  # loading it names the problem
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(checkpoint), str(images / "a_opaque.png"), "--out", str(tmp_path / "p1")]) == 0
    assert "transparency" not in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(checkpoint), str(images), "--out", str(tmp_path / "p2")]) == 0
    err = capsys.readouterr().err
    assert err.count("has transparent pixels") == 1 and "note: b_cutout.png has transparent pixels" in err, err
    assert len(list((tmp_path / "p2").glob("*_mask.png"))) == 4


def test_untrusted_inputs_are_refused_by_name(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A safety audit (stop 70): a decompression-bomb PNG given alone to predict ended in a traceback (the check
    of whether predict wrote it let Pillow's DecompressionBombError through), and ``train --record`` replaced a
    user's file with the run's record without a word; both are refused by name, the record before any training."""
    import json

    from PIL import Image as PILImage

    image = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(image)
    with monkeypatch.context() as patched:  # (undo() would undo conftest's settings of the environment too)
        patched.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # 1,600 pixels: twice the limit and more, a "bomb"
        assert main(["predict", str(image), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "pred"),
                     "--device", "cpu"]) == 2
    assert "bomb.png is too large to read safely" in capsys.readouterr().err
    precious = tmp_path / "notes.json"
    precious.write_text("my notes\n")
    run = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--out-dir", str(run), "--record", str(precious), "--no-progress"]) == 2
    assert "--record" in capsys.readouterr().err and precious.read_text() == "my notes\n" and not run.exists()
    assert main(["bench", "--mode", "loader", "--out", str(precious)]) == 2  # refused before measuring
    assert "already holds a file that is not a record" in capsys.readouterr().err
    precious.write_text(json.dumps({"command": "an earlier run", "results": {}}))  # a record: replaced, as before
    from deeplab_edu.records import check_record_path

    check_record_path(precious)


def test_export_of_a_script_built_model_says_who_can_read_the_file(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    """A practitioner's trial: `export --out` of a run trained on a model its script built said "eval, predict and
    --init-from read it", which all refuse that file; `--out` with `--onnx` wrote the model file, then refused."""
    from deeplab_edu.engine.trainer import Trainer
    from test_engine_fixtures import TinyNet, TinyScenes, tiny_config

    Trainer(tiny_config(tmp_path / "run", iterations=1, ckpt_every=1, eval_every=100), model=TinyNet(),
            train_set=TinyScenes(4), val_set=TinyScenes(2, augment=False)).fit()
    ckpt = str(tmp_path / "run" / "checkpoints")
    capsys.readouterr()
    assert main(["export", "--checkpoint", ckpt, "--out", str(tmp_path / "m.pt")]) == 0
    out = capsys.readouterr().out
    assert "its model is one the training script built (test_engine_fixtures.TinyNet)" in out, out
    assert "eval, predict and --init-from read it" not in out
    assert main(["export", "--checkpoint", ckpt, "--out", str(tmp_path / "n.pt"), "--onnx",
                 str(tmp_path / "n.onnx")]) == 2
    assert "build that model in Python" in capsys.readouterr().err
    assert not (tmp_path / "n.pt").exists() and not (tmp_path / "n.onnx").exists()


def test_a_training_record_holds_the_steady_throughput(tmp_path: Path) -> None:
    """A GPU-code audit: gpu_session.sh stage 8 compares training with and without CUDA graphs by its records, which
    held only the wall time (a compile and four validations inside it): the record now holds the median images/s of
    the logged windows after the first (which holds the warm-up)."""
    import json

    record = tmp_path / "record.json"
    assert main(["train", "--preset", "smoke", "--out-dir", str(tmp_path / "run"), "--image-size", "32",
                 "--crop-size", "32", "--iterations", "4", "--log-every", "1", "--eval-every", "4", "--no-progress",
                 "--threads", "1", "--record", str(record)]) == 0
    results = json.loads(record.read_text())["results"]
    rates = [r["images_per_s"] for r in json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
             if r["split"] == "train"]
    assert results["images_per_s_windows"] == 3 == len(rates) - 1
    assert results["images_per_s_median"] == round(sorted(rates[1:])[1], 2) > 0


class _ReaderGone(io.StringIO):
    """A standard output whose reader went away (``deeplab-edu ... | head -1``): once ``lines`` lines are written,
    or a write holds ``at``, every write raises BrokenPipeError. ``fileno`` is a file of the test's (main points
    the real stdout at /dev/null after a closed pipe)."""

    def __init__(self, fd: int, lines: int | None = None, at: str | None = None) -> None:
        super().__init__()
        self.fd, self.lines, self.at, self.gone = fd, lines, at, False

    def write(self, text: str) -> int:
        self.gone = self.gone or (self.lines is not None and self.getvalue().count("\n") >= self.lines) or (
            self.at is not None and self.at in text)
        if self.gone:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)

    def fileno(self) -> int:
        return self.fd


@pytest.fixture
def reader_gone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Install a :class:`_ReaderGone` as ``sys.stdout``: ``reader_gone(lines=1)`` or ``reader_gone(at="done in")``."""
    import os

    fds: list[int] = []

    def install(**kw: Any) -> _ReaderGone:
        fds.append(os.open(tmp_path / "stdout.txt", os.O_WRONLY | os.O_CREAT))
        out = _ReaderGone(fds[-1], **kw)
        monkeypatch.setattr(sys, "stdout", out)
        return out

    yield install
    for fd in fds:
        os.close(fd)


def test_eval_json_replaces_only_an_earlier_eval_output(tmp_path: Path, checkpoint: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """A CLI audit: `eval --json model.pt` replaced the model file being scored with JSON (exit 0), and `--json RUN`
    (a folder) suggested RUN/metrics.json, the run's training history: --json refuses the checkpoint and any file
    that is no earlier eval output, before the model is loaded; an earlier output is replaced, as before."""
    import json

    model = tmp_path / "model.pt"
    shutil.copy(checkpoint, model)
    kept = model.read_bytes()
    history = tmp_path / "metrics.json"
    history.write_text(json.dumps({"history": [], "final": {"miou": 0.5}}))
    for argv, message in ((["--checkpoint", str(model), "--json", str(model)], "is the checkpoint being scored"),
                          (["--checkpoint", str(checkpoint.parent), "--json", str(checkpoint)],
                           "is the checkpoint being scored"),
                          (["--checkpoint", str(model), "--json", str(history)], "is not an earlier eval output"),
                          (["--checkpoint", str(model), "--json", str(tmp_path)], f"e.g. {tmp_path / 'eval.json'}")):
        assert main(["eval", *argv, "--no-progress", "--device", "cpu"]) == 2, argv
        captured = capsys.readouterr()
        assert message in captured.err and "scoring" not in captured.out, captured  # refused before scoring
    assert model.read_bytes() == kept and json.loads(history.read_text())["final"] == {"miou": 0.5}
    earlier = tmp_path / "eval.json"
    argv = ["eval", "--checkpoint", str(model), "--json", str(earlier), "--limit", "1", "--no-progress",
            "--device", "cpu"]
    assert main(argv) == 0 and main(argv) == 0  # the second replaces the first's output
    assert json.loads(earlier.read_text())["images"] == 1


def test_a_closed_stdout_during_training_is_no_dead_worker(tmp_path: Path, reader_gone: Any,
                                                           capsys: pytest.CaptureFixture) -> None:
    """A CLI audit: `deeplab-edu train ... | head -1` ended with exit 2 "a data loader worker died ... ([Errno 32]
    Broken pipe) ... out-of-memory killer", with no worker at all: a BrokenPipeError was taken for a worker's
    broken connection. The reader's leaving ends the command quietly (exit 1), the training done saved."""
    from deeplab_edu.engine.trainer import _loader_worker_died

    run = tmp_path / "run"
    reader_gone(lines=1)  # the run's first line read, then the reader gone
    assert main(["train", "--preset", "smoke", "--out-dir", str(run), "--iterations", "6", "--log-every", "1",
                 "--eval-every", "100", "--ckpt-every", "100", "--num-workers", "0", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "worker" not in err and "out-of-memory" not in err, err
    assert list((run / "checkpoints").glob("ckpt_*.pt")), "the iterations done were not saved"
    assert not _loader_worker_died(BrokenPipeError(32, "Broken pipe"))
    assert _loader_worker_died(ConnectionResetError(104, "Connection reset by peer"))


def test_a_closed_stdout_keeps_the_files_asked_for(tmp_path: Path, checkpoint: Path, reader_gone: Any) -> None:
    """A CLI audit: `eval --json m.json | head -1` scored every image, then lost m.json (the table was printed
    first, and its write failed); `train --record` the same after the run's last line. The files are written
    before the console's summary."""
    import json

    metrics = tmp_path / "m.json"
    reader_gone(lines=1)  # "scoring ...", then the reader gone
    assert main(["eval", "--checkpoint", str(checkpoint), "--json", str(metrics), "--limit", "1", "--no-progress",
                 "--device", "cpu"]) == 1
    assert json.loads(metrics.read_text())["images"] == 1
    record = tmp_path / "record.json"
    reader_gone(at="done in")  # the run's last line
    assert main(["train", "--preset", "smoke", "--out-dir", str(tmp_path / "run"), "--iterations", "2",
                 "--no-progress", "--record", str(record)]) == 1
    assert "final_miou" in json.loads(record.read_text())["results"]


def test_a_tilde_in_a_path_flag_or_out_dir_is_the_home_folder(tmp_path: Path, checkpoint: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A CLI audit: bash leaves `--out-dir=~/t2` as it is (no expansion after =), and so does YAML's `out_dir: ~/t2`:
    the run was trained into ./~/t2 while its last line said "outputs in ~/t2"; `eval --checkpoint=~/run` said it
    did not exist, and predict --out, --json, --record wrote under ./~ too. A leading ~ is the home folder now."""
    from deeplab_edu.engine.checkpoint import checkpoint_file

    monkeypatch.setenv("HOME", str(tmp_path))
    home = str(tmp_path)
    parse = build_parser().parse_args
    args = parse(["eval", "--checkpoint=~/run", "--json=~/m.json", "--data-root=~/data"])
    assert (args.checkpoint, args.json, args.data_root) == (f"{home}/run", f"{home}/m.json", f"{home}/data")
    args = parse(["predict", "--checkpoint", "~/run", "--out=~/p", "~/photo.jpg"])
    assert (args.out, args.input) == (f"{home}/p", f"{home}/photo.jpg")
    args = parse(["export", "--checkpoint", "~/run", "--out=~/m.pt", "--onnx=~/m.onnx"])
    assert (args.out, args.onnx) == (f"{home}/m.pt", f"{home}/m.onnx")
    args = parse(["train", "--record=~/r.json", "--config=~/c.yaml", "--out-dir=~/t2"])
    assert (args.record, args.config) == (f"{home}/r.json", f"{home}/c.yaml")
    assert parse(["bench", "--out=~/b.json"]).out == f"{home}/b.json"
    assert TrainConfig(out_dir="~/t2").out_dir == f"{home}/t2"
    assert TrainConfig(out_dir="runs/t2").out_dir == "runs/t2"  # relative otherwise, as given
    (tmp_path / "c.yaml").write_text("out_dir: ~/t3\n")
    assert load_config("smoke", config=tmp_path / "c.yaml").out_dir == f"{home}/t3"
    shutil.copy(checkpoint, tmp_path / "model.pt")
    assert checkpoint_file("~/model.pt") == tmp_path / "model.pt"


def test_an_empty_path_a_dash_and_a_limit_below_one_are_refused_by_the_parser(
        capsys: pytest.CaptureFixture) -> None:
    """A CLI audit: `--json -` wrote a file named "-"; `predict --out ""` (or an image "") meant the working folder;
    `eval --limit 0` failed after its first line, naming the Python setting ("or None") rather than --limit."""
    for argv, message in ((["eval", "--checkpoint", "c.pt", "--json", "-"], "--json: - (standard output)"),
                          (["train", "--record", "-"], "--record: - (standard output)"),
                          (["predict", "--checkpoint", "c.pt", "a.png", "--out", ""], "--out: an empty path"),
                          (["predict", "--checkpoint", "c.pt", ""], "input: an empty path"),
                          (["eval", "--checkpoint", "c.pt", "--limit", "0"], "--limit: must be at least 1"),
                          (["eval", "--checkpoint", "c.pt", "--limit", "-1"], "--limit: must be at least 1")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        captured = capsys.readouterr()
        assert stop.value.code == 2 and message in captured.err and captured.out == "", (argv, captured)


def test_the_moved_data_hint_is_given_only_where_the_data_root_is_missing(tmp_path: Path) -> None:
    """A CLI audit: `eval --split test` of a folder run whose data folder is there but has no test/ ended with
    "--data-root DIR reads the data set from where it is now", the hint for a data folder that moved."""
    from deeplab_edu.cli import _dataset_for
    from deeplab_edu.data import DatasetNotFoundError

    (tmp_path / "data" / "val" / "images").mkdir(parents=True)
    (tmp_path / "data" / "classes.txt").write_text("background\nthing\n")
    with pytest.raises(DatasetNotFoundError) as there:
        _dataset_for({"dataset": "folder", "data_root": str(tmp_path / "data")}, "test", None)
    assert "where it is now" not in str(there.value)
    with pytest.raises(DatasetNotFoundError, match="reads the data set from where it is now"):
        _dataset_for({"dataset": "folder", "data_root": str(tmp_path / "moved")}, "test", None)


def test_eval_json_takes_an_empty_file_and_refuses_a_pipe(tmp_path: Path) -> None:
    """A review: the check of --json read a FIFO's (or /dev/stdout's) first byte and waited for ever, and refused
    the empty file mktemp makes (nothing there to lose)."""
    import os

    from deeplab_edu.cli import _check_eval_json

    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"PK")
    empty = tmp_path / "m.json"
    empty.touch()
    _check_eval_json(str(empty), checkpoint)  # no error
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "f.json"
        os.mkfifo(fifo)
        with pytest.raises(ValueError, match="is not a regular file"):
            _check_eval_json(str(fifo), checkpoint)


def test_the_large_image_note_counts_the_classes_and_says_what_crop_size_does_not_reduce(
        tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit: a 150-class model's 2016 x 1512 photo took 6.2 GB without a note (it looked at the pixels only,
    above 2048 x 2048, whatever the classes), and its remedy, --crop-size, does not make the per-class score maps
    at full resolution any smaller (2.13 GB with it, 2.11 GB without, at 1008 x 756)."""
    import deeplab_edu.cli as cli
    import deeplab_edu.inference as inference
    from deeplab_edu.inference import Strategy

    many = cli._large_image_note("p.jpg", 2016, 1512, 150, Strategy())
    assert many and "150 classes" in many and "about 1.8 GB" in many and "--crop-size limits the activations, not " \
        "these maps" in many
    assert cli._large_image_note("p.jpg", 2016, 1512, 150, Strategy(crop_size=512)) == many  # the same maps
    assert cli._large_image_note("p.jpg", 2016, 1512, 8, Strategy()) is None  # 8 classes: 0.1 GB a copy
    assert cli._large_image_note("p.jpg", 1008, 756, 150, Strategy()) is None  # 0.46 GB
    # 1.75: its logits before resizing, 3.1 copies, beside the average and one view: 5.1 x 0.46 GB
    assert "about 2.3 GB" in (cli._large_image_note("p.jpg", 1008, 756, 150, Strategy((1.0, 1.75), True)) or "")
    assert "--crop-size 1024 predicts it" in (cli._large_image_note("p.jpg", 4032, 3024, 8, Strategy()) or "")
    assert cli._large_image_note("p.jpg", 4032, 3024, 8, Strategy(crop_size=1024)) is None  # few classes: windows do
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setattr(cli, "LARGE_CLASS_MAP_BYTES", 8 * 40 * 50 * 4 - 1)  # the checkpoint's 8 classes: "large"
    assert main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "a.png"), "--out", str(tmp_path / "o"),
                 "--crop-size", "32"]) == 0
    assert "the model scores 8 classes" in capsys.readouterr().err

    def out_of_memory(*args: Any) -> torch.Tensor:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(inference, "predict", out_of_memory)
    assert main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "a.png"), "--out", str(tmp_path / "o"),
                 "--crop-size", "32"]) == 2
    err = capsys.readouterr().err
    assert "its 8 per-class score maps take about 0.0 GB" in err and "which --crop-size does not reduce" in err


def test_course_runs_and_train_name_a_run_left_in_its_earlier_folder(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    """An audit: d8ed0de moved camvid_gpu's run from runs/camvid_deeplabv3plus to runs/course/gpu/camvid, and
    course-runs (and train --preset camvid_gpu) trained a GPU learner's finished run again without a word.
    course-runs --dry-run shows the mv before any training and stops; train notes it on stderr."""
    import deeplab_edu.data
    import deeplab_edu.engine.trainer
    from deeplab_edu.engine import checkpoint as ck
    from deeplab_edu.records import shown_path
    from deeplab_edu.viz.training import RUNS_ENV, camvid_run

    def fake_run(folder: Path) -> None:  # camvid_gpu's settings, finished (no weights: the status reads no more)
        cfg = load_config("camvid_gpu", {"out_dir": str(folder)})
        ck.save_atomic({"model": {}, "config": cfg.to_dict(), "iteration": cfg.iterations},
                       folder / "checkpoints" / "last.pt")

    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "runs"))
    monkeypatch.setattr(deeplab_edu.data, "find_camvid", lambda: tmp_path)
    monkeypatch.setattr("deeplab_edu.config.device", lambda: "cuda")  # the gpu profile's runs, planned on a CPU
    monkeypatch.setattr("deeplab_edu.models.pretrained.cached_weights", lambda weights: "cached")
    fake_run(tmp_path / "runs" / "camvid_deeplabv3plus")
    assert main(["course-runs", "--profile", "gpu", "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert f"{camvid_run('gpu').command()}\n        in its earlier folder" in captured.out
    assert (f"mv {shown_path(tmp_path / 'runs' / 'camvid_deeplabv3plus')} "
            f"{shown_path(tmp_path / 'runs' / 'course' / 'gpu' / 'camvid')}`") in captured.out
    assert "1 run(s) are in the folders an earlier version of the course trained them in" in captured.err

    def stop(cfg: TrainConfig) -> None:
        raise RuntimeError("stopped here")

    monkeypatch.setattr(deeplab_edu.engine.trainer, "Trainer", stop)
    monkeypatch.chdir(tmp_path)  # the preset's out_dir, runs/course/gpu/camvid, is relative to it
    assert main(["train", "--preset", "camvid_gpu", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "note: runs/course/gpu/camvid, the preset's out_dir, holds no checkpoint" in err
    assert "`mkdir -p runs/course/gpu && mv runs/camvid_deeplabv3plus runs/course/gpu/camvid`" in err
    assert main(["train", "--preset", "camvid_gpu", "--device", "cpu", "--out-dir", "elsewhere"]) == 2
    assert "holds no checkpoint" not in capsys.readouterr().err  # a folder of the user's choice: not the preset's


@pytest.mark.parametrize("name", ["PROCEDURAL", "Pro_cedural"])
def test_eval_reads_the_runs_data_set_named_in_another_case(name: str, checkpoint: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """A settings-parity audit: train takes a data set's name in any case (and build_dataset without - and _),
    but eval compared --dataset PROCEDURAL with the run's "procedural" as typed, so it scored 200 scenes of
    another size and difficulty (the run's image_size and val_length dropped) and wrote the name as typed."""
    import json

    record = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(checkpoint), "--dataset", name, "--json", str(record)]) == 0
    assert "on procedural val (4 images)" in capsys.readouterr().out  # the smoke preset's val_length
    assert json.loads(record.read_text())["dataset"] == "procedural"
    assert TrainConfig(dataset="Pascal-VOC").dataset == "voc"  # the one rule, build_dataset's, for a run too


def test_eval_scores_the_train_split_at_its_own_length(checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    """The audit: eval --split train generated val_length scenes of the training split, not train_length."""
    assert main(["eval", "--checkpoint", str(checkpoint), "--split", "train", "--limit", "1"]) == 0
    assert "on procedural train (1 image" in capsys.readouterr().out
    from deeplab_edu.cli import _dataset_for

    assert len(_dataset_for(load_config("smoke").to_dict(), "train", None)) == load_config("smoke").train_length


def test_model_kwargs_flag_adds_to_the_files_model_kwargs(tmp_path: Path) -> None:
    """The audit: --model-kwargs on top of a --config file with model_kwargs replaced the file's whole dict,
    while the model flags (--no-image-pooling) add to it; both add now, an argument named again replacing."""
    from deeplab_edu.cli import _train_config

    mine = tmp_path / "mine.yaml"
    mine.write_text("model_kwargs:\n  separable: false\n  multi_grid: [1, 2, 4]\n", encoding="utf-8")

    def kwargs(*argv: str) -> dict[str, Any]:
        args = build_parser().parse_args(["train", "--preset", "smoke", "--config", str(mine),
                                          "--out-dir", str(tmp_path / "run"), *argv])
        return _train_config(args).model_kwargs

    assert kwargs("--model-kwargs", '{"image_pooling": false}') == {"separable": False, "multi_grid": [1, 2, 4],
                                                                   "image_pooling": False}
    assert kwargs("--model-kwargs", '{"separable": true}', "--no-image-pooling") == {
        "separable": True, "multi_grid": [1, 2, 4], "image_pooling": False}


@pytest.mark.parametrize("text, named", [("1: 2\n", "1"), ("null: 3\nlr: 0.1\n", "None"), ("yes: 4\n", "True"),
                                         ("1: 2\nnull: 3\n", "1 (in the config file")])
def test_a_settings_key_that_is_not_text_is_an_unknown_setting(text: str, named: str, tmp_path: Path) -> None:
    """The audit: a YAML key that is no string (a number, null, yes) ended in AttributeError: 'int' object has
    no attribute 'lower' (and two of them in a TypeError of sorting): now the usual unknown-setting line."""
    path = tmp_path / "mine.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"unknown setting\(s\) {re.escape(named)}.*mine\.yaml"):
        load_config("smoke", config=path)


def test_a_negative_warmup_is_refused_by_its_name() -> None:
    """The audit: warmup_iters=-5 passed load_config and was refused at the schedule, naming max_iter."""
    with pytest.raises(ConfigError, match="warmup_iters must be 0 or more, got -5"):
        load_config("smoke", {"warmup_iters": -5})


def test_under_torchrun_a_warning_prints_from_rank_0_only(capsys: pytest.CaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit: under torchrun each Python warning printed once per process (the command line's notes once).
    The processes other than rank 0 now ignore warnings while the command runs (the filters are restored
    after it); an error still prints in every process, with its rank."""
    import warnings

    from deeplab_edu import cli

    def warns_then_fails(args: Any) -> int:
        warnings.warn("a warning of the command", UserWarning)
        raise ValueError("a bad setting")

    monkeypatch.setattr(cli, "_check_data", warns_then_fails)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, expected in (("0", 1), ("1", 0)):
        monkeypatch.setenv("RANK", rank)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert cli.main(["check-data"]) == 2
            assert [str(w.message) for w in caught] == ["a warning of the command"] * expected, rank
            warnings.warn("after the command", UserWarning)  # the filters are the caller's again
            assert str(caught[-1].message) == "after the command"
        assert capsys.readouterr().err.startswith(f"[rank {rank}] deeplab-edu check-data: error: a bad setting")


def test_predict_out_that_cannot_be_written_fails_before_any_image(tmp_path: Path, checkpoint: Path,
                                                                   capsys: pytest.CaptureFixture,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A new user's trial: predict --out into a read-only folder printed Python's raw "[Errno 30] Read-only file
    system: 'ro/pred'"; --out is checked as eval --json and train --record are (atomic.check_writable), naming the
    folder and why, before the model is run."""
    import errno
    import tempfile

    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 24, 3), dtype=np.uint8)).save(image)

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(checkpoint), str(image), "--out", str(tmp_path / "pred")]) != 0
    err = capsys.readouterr().err
    assert "--out: cannot write in" in err and "Read-only file system" in err and "[Errno" not in err, err
    assert not list((tmp_path / "pred").glob("*.png"))


def test_a_small_window_is_told_of_the_output_stride_asked_for(capsys: pytest.CaptureFixture) -> None:
    """A census: predict --crop-size 1 --output-stride 32 quoted output strides 16 and 8 in its message."""
    from deeplab_edu.cli import main

    for argv in (["predict", "--checkpoint", "run", "a.png", "--crop-size", "1", "--output-stride", "32"],
                 ["eval", "--output-stride", "32", "--checkpoint", "run", "--crop-size", "16"]):
        with pytest.raises(SystemExit):
            main(argv)
        err = capsys.readouterr().err
        assert "too small to predict from (a map of 0 cells a side at output stride 32): use at least 32" in err, err
