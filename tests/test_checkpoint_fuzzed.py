"""Checkpoints and configurations a fuzzing trial found mishandled (stop 68): a folder holding only
``last.pt``, damaged counters and random states, a resumed run with frozen batch norm, NaN weights, a
newer version's model description, a model file of a plain state dict, a folder torch.save cannot write
in, an empty configuration file, YAML merge keys, damaged class colours.

Each test states the right result; each failed before its fix.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from deeplab_edu.engine import checkpoint as ck
from deeplab_edu.engine.trainer import Trainer
from test_engine_fixtures import TinyNet, TinyScenes, tiny_config


def _trained(out: Path, **kw: object) -> Path:
    """A tiny run of 3 iterations in ``out``; its checkpoint's path."""
    cfg = tiny_config(out, iterations=3, ckpt_every=3, eval_every=100, warmup_iters=0, **kw)
    Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()
    found = ck.latest_checkpoint(out / "checkpoints")
    assert found is not None and found.name.startswith("ckpt_")
    return found


def _resumed(out: Path, **kw: object) -> Trainer:
    cfg = tiny_config(out, iterations=6, ckpt_every=3, eval_every=100, warmup_iters=0, resume=True, **kw)
    return Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False))


def test_a_folder_holding_only_last_pt_is_resumed_not_overwritten(tmp_path: Path) -> None:
    from deeplab_edu.engine.runs import RunFolderError, claim_run_folder

    _trained(tmp_path / "run")
    copy = tmp_path / "copy" / "checkpoints"
    copy.mkdir(parents=True)
    shutil.copy(tmp_path / "run" / "checkpoints" / "last.pt", copy / "last.pt")  # copied without the rest
    with pytest.raises(RunFolderError, match="already holds a run"):  # a new run was trained over it
        claim_run_folder(tmp_path / "copy", resume=False)
    trainer = _resumed(tmp_path / "copy")
    assert trainer.iteration == 3 and "last.pt at iteration 3" in trainer._resume_message  # was iteration 0


@pytest.mark.parametrize("key, value", [("epoch", None), ("iteration", -5), ("iteration", "four")])
def test_a_checkpoint_with_damaged_counters_is_named(tmp_path: Path, key: str, value: object) -> None:
    path = _trained(tmp_path)
    state = torch.load(path, weights_only=True)
    if value is None:
        del state[key]  # was a KeyError traceback
    else:
        state[key] = value  # -5 was "resumed at iteration -5"
    torch.save(state, path)
    (path.parent / "last.pt").unlink()
    with pytest.raises(ck.CheckpointMismatchError, match=rf"{path.name}: its '{key}' is .*--init-from"):
        _resumed(tmp_path)


def test_a_checkpoint_with_a_damaged_random_state_is_named(tmp_path: Path) -> None:
    path = _trained(tmp_path)
    state = torch.load(path, weights_only=True)
    state["rng"]["python"] = [1]  # was an IndexError traceback
    torch.save(state, path)
    (path.parent / "last.pt").unlink()
    with pytest.raises(ck.CheckpointMismatchError, match=rf"{path.name}: its random number generators' state"):
        _resumed(tmp_path)


def test_resuming_with_frozen_batch_norm_is_refused_with_the_way_out(tmp_path: Path) -> None:
    _trained(tmp_path)
    with pytest.raises(ck.CheckpointMismatchError, match=r"freeze_bn False -> True.*--init-from"):
        _resumed(tmp_path, freeze_bn=True)  # was PyTorch's "parameter group that doesn't match"


def test_nan_weights_are_refused_naming_a_tensor(tmp_path: Path, checkpoint: Path) -> None:
    from deeplab_edu.inference import run_from_checkpoint

    state = torch.load(checkpoint, weights_only=True)
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    with pytest.raises(ValueError, match=rf"NaN or infinite values \(e\.g\. {name}\)"):
        run_from_checkpoint(state, "x.pt")  # was scored: 20.6 % mIoU, every pixel background
    path = _trained(tmp_path / "run")
    tiny = torch.load(path, weights_only=True)
    tiny["model"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                     for k, v in tiny["model"].items()}
    torch.save(tiny, tmp_path / "nan.pt")
    cfg = tiny_config(tmp_path / "new", iterations=3, init_from=str(tmp_path / "nan.pt"))
    with pytest.raises(ValueError, match=r"nan\.pt: its weights hold NaN"):  # was blamed on the learning rate
        Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False))


def test_a_model_this_version_cannot_build_is_named(checkpoint: Path) -> None:
    from deeplab_edu.inference import run_from_checkpoint

    state = torch.load(checkpoint, weights_only=True)
    state["model_info"]["build_kwargs"] = {"name": state["model_info"]["name"], "bogus": 1}
    with pytest.raises(ValueError, match=r"x\.pt: the model it describes cannot be built .*'bogus'"):
        run_from_checkpoint(state, "x.pt")  # was a TypeError traceback


def test_a_model_file_is_not_written_from_a_plain_state_dict(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"tv\.pt holds no config or model_info.*--init-from"):
        ck.save_model_file({"model": {"w": torch.zeros(1)}}, tmp_path / "out.pt", source="tv.pt")
    assert not (tmp_path / "out.pt").exists()  # was written, and then refused by eval and predict


def test_a_file_torch_save_cannot_open_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(obj: object, f: object, *args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:747] . open file failed with strerror: "
                           "Permission denied")  # what torch.save says in a read-only folder

    monkeypatch.setattr(torch, "save", refused)
    with pytest.raises(OSError, match=r"cannot write .*ckpt\.pt: Permission denied \(in the folder"):
        ck.save_atomic({"a": 1}, tmp_path / "ckpt.pt")


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_an_empty_config_file_is_refused(tmp_path: Path, text: str) -> None:
    from deeplab_edu.engine.config import ConfigError, load_config

    (tmp_path / "e.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"e\.yaml holds no settings"):  # ran the preset, or the 30k recipe
        load_config(str(tmp_path / "e.yaml"))


def test_a_config_file_may_merge_settings_with_yaml_merge_keys(tmp_path: Path) -> None:
    from deeplab_edu.engine.config import load_config

    (tmp_path / "m.yaml").write_text("<<: {crop_size: 64, batch_size: 2}\ncrop_size: 96\n")
    cfg = load_config(str(tmp_path / "m.yaml"))  # was "could not determine a constructor for the tag ...merge"
    assert (cfg.crop_size, cfg.batch_size) == (96, 2)


def test_predict_refuses_a_checkpoint_with_damaged_class_colours(tmp_path: Path, checkpoint: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    from deeplab_edu.cli import main

    state = torch.load(checkpoint, weights_only=True)
    state["model_info"]["palette"] = [[1, 2]]
    torch.save(state, tmp_path / "x.pt")
    Image.new("RGB", (40, 30)).save(tmp_path / "img.png")
    assert main(["predict", "--checkpoint", str(tmp_path / "x.pt"), str(tmp_path / "img.png"), "--out",
                 str(tmp_path / "pred"), "--device", "cpu"]) == 2  # was NumPy's shape mismatch, after the mask
    assert "x.pt: its class colours ([1, 2]) are not one RGB colour" in capsys.readouterr().err
    assert not (tmp_path / "pred" / "img_mask.png").exists()


def test_a_model_file_named_last_pt_outside_a_run_is_no_run_checkpoint(tmp_path: Path) -> None:
    # a review: with the last.pt fallback, any last.pt made itself a run's checkpoint (export refused to
    # replace it), and a run folder's stray last.pt went before its checkpoints folder
    (tmp_path / "models").mkdir()
    torch.save({"model": {}}, tmp_path / "models" / "last.pt")
    assert not ck.names_a_run_checkpoint(tmp_path / "models" / "last.pt")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({}, run / "checkpoints" / "last.pt")
    assert ck.names_a_run_checkpoint(run / "checkpoints" / "last.pt")  # a run's, alone in its folder
    torch.save({}, run / "checkpoints" / "ckpt_00000010.pt")
    torch.save({}, run / "last.pt")  # stray, beside the checkpoints folder
    assert ck.checkpoint_file(run) == run / "checkpoints" / "ckpt_00000010.pt"
