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


@pytest.mark.parametrize("mode", ["reduce-overhead", "default"])
def test_compile_mode_reaches_torch_compile_and_cuda_graphs_mark_each_step(tmp_path: Path, mode: str,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``compile_mode`` is torch.compile's ``mode``; with CUDA graphs (reduce-overhead) every forward pass of a
    training step starts with ``torch.compiler.cudagraph_mark_step_begin`` (the outputs of the last replay
    may be overwritten), CUDA graphs with gradient accumulation are refused, and validation runs the model uncompiled. Here the network is not compiled at all
    (a CPU has no CUDA graphs): the test checks what the Trainer asks of torch."""
    from deeplab_edu.engine.config import ConfigError

    modes: list[str | None] = []
    marks: list[int] = []
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: modes.append(mode) or model)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    accum = 1 if mode == "reduce-overhead" else 2  # CUDA graphs refuse gradient accumulation (below)
    cfg = tiny_config(tmp_path, compile=True, compile_mode=mode, iterations=2, grad_accum=accum, eval_every=2,
                      num_workers=0)
    Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, seed=9, augment=False)).fit()
    assert modes == [mode] and len(marks) == (2 if mode == "reduce-overhead" else 0)  # one per step
    for graphs in ("reduce-overhead", "max-autotune"):  # a replay would overwrite the accumulated gradients
        with pytest.raises(ConfigError, match=f"compile_mode='{graphs}' .CUDA graphs. with grad_accum=2.*169545"):
            Trainer(tiny_config(tmp_path / graphs, compile=True, compile_mode=graphs, grad_accum=2), model=TinyNet(),
                    train_set=TinyScenes(8), val_set=TinyScenes(2))
    with pytest.raises(ConfigError, match="compile_mode='graphs'; use default, reduce-overhead, max-autotune"):
        Trainer(tiny_config(tmp_path / "bad", compile=True, compile_mode="graphs"), model=TinyNet(),
                train_set=TinyScenes(8), val_set=TinyScenes(2))
