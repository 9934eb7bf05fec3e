"""The trainer's torch.compile path runs on a CPU (issue 11): compiled, trained, checkpointed, evaluated."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from deeplab_edu.engine.checkpoint import load_checkpoint
from deeplab_edu.engine.trainer import Trainer
from test_engine_fixtures import TinyNet, TinyScenes, tiny_config


def test_trainer_with_compile_trains_and_saves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``compile=True`` wraps the network in ``torch.compile``; here with the quick ``aot_eager`` back end
    (dynamo's graph capture and AOT autograd, as inductor uses them), because inductor's C++ code generation
    takes minutes on a small CPU. ``deeplab-edu bench --mode compile`` measures inductor itself."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        cfg = tiny_config(tmp_path, compile=True, iterations=2, eval_every=2, ckpt_every=2, num_workers=0)
        trainer = Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, seed=9, augment=False))
        assert type(trainer.net).__name__ == "OptimizedModule"
        result = trainer.fit()
    finally:
        torch.set_num_threads(threads)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result["history"] if r["split"] == "train")
    state = load_checkpoint(tmp_path / "checkpoints")
    assert state["iteration"] == 2 and not any(k.startswith("_orig_mod") for k in state["model"])
