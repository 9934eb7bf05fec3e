"""Kill a training process part-way (SIGKILL), resume it, and get the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from deeplab_edu.engine.checkpoint import load_checkpoint
from test_engine_fixtures import TinyNet, TinyScenes, tiny_config

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).with_name("test_engine_fixtures.py")
ITERS = 12


def _run(out: Path, *extra: str, slow: bool = False) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if slow:
        env["DEEPLAB_EDU_TEST_SLOW"] = "1"
    return subprocess.Popen([sys.executable, str(SCRIPT), str(out), str(ITERS), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_run_resumes_to_identical_weights(tmp_path: Path) -> None:
    ref, cut = tmp_path / "uninterrupted", tmp_path / "killed"
    p_ref = _run(ref)
    p_cut = _run(cut, slow=True)  # each item takes 20 ms: a run lasts ~1 s per 3 iterations
    ckpts = cut / "checkpoints"
    deadline = time.time() + 120
    while not (ckpts / "ckpt_00000003.pt").exists():
        assert p_cut.poll() is None, f"training ended before it could be killed:\n{p_cut.communicate()[0]}"
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    p_cut.send_signal(signal.SIGKILL)
    p_cut.wait()
    assert p_cut.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(ckpts)["iteration"]
    assert 3 <= killed_at < ITERS, f"the kill came too late (checkpoint at {killed_at})"
    resumed = _run(cut, "--resume")
    out_resumed = resumed.communicate(timeout=180)[0]
    assert resumed.returncode == 0, out_resumed
    assert "resumed from" in out_resumed and f"at iteration {killed_at}" in out_resumed
    out_ref = p_ref.communicate(timeout=180)[0]
    assert p_ref.returncode == 0, out_ref
    a, b = load_checkpoint(ref / "checkpoints"), load_checkpoint(cut / "checkpoints")
    assert a["iteration"] == b["iteration"] == ITERS
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), f"{key} differs after resume"
    for (ka, va), (kb, vb) in zip(a["optimizer"]["state"].items(), b["optimizer"]["state"].items()):
        assert torch.equal(va["momentum_buffer"], vb["momentum_buffer"])
    assert a["history"][-1] == b["history"][-1] or a["history"][-1]["miou"] == b["history"][-1]["miou"]


def test_validating_more_often_does_not_change_the_weights(tmp_path: Path) -> None:
    """Validation draws nothing from the training's random stream (its loader has a generator of its
    own), so a run validated every 2 steps ends with the weights of one validated only at its end
    (TinyNet has dropout, so a shifted global stream would show). Hence eval_every is bookkeeping."""
    from deeplab_edu.engine.runs import BOOKKEEPING
    from deeplab_edu.engine.trainer import Trainer

    weights = []
    for every in (2, 12):
        torch.manual_seed(0)
        cfg = tiny_config(tmp_path / f"every{every}", eval_every=every, num_workers=0)
        trainer = Trainer(cfg, model=TinyNet(), train_set=TinyScenes(32), val_set=TinyScenes(4, seed=9, augment=False))
        trainer.fit()
        weights.append(trainer.model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert "eval_every" in BOOKKEEPING


def test_a_run_records_what_trained_each_stretch_of_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints and metrics.json name the commit, hardware and command of every stretch of a run:
    a run resumed at another commit (or on another machine) says which iterations each trained."""
    import json

    from deeplab_edu.engine.trainer import Trainer

    def fit(iterations: int, resume: bool) -> dict:
        cfg = tiny_config(tmp_path, iterations=iterations, ckpt_every=2, eval_every=100, resume=resume)
        return Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()

    monkeypatch.setenv("DEEPLAB_EDU_CODE_COMMIT", "aaaa111")
    fit(2, resume=False)
    monkeypatch.setenv("DEEPLAB_EDU_CODE_COMMIT", "bbbb222")
    result = fit(4, resume=True)
    stretches = [(p["code_version"]["git_commit"], p["from_iteration"], p["to_iteration"]) for p in result["provenance"]]
    assert stretches == [("aaaa111", 0, 2), ("bbbb222", 2, 4)]
    assert json.loads((tmp_path / "metrics.json").read_text())["provenance"] == result["provenance"]
    cfg = tiny_config(tmp_path, iterations=4, ckpt_every=2, eval_every=100, resume=True)
    again = Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False))
    assert again.provenance == result["provenance"]  # nothing trained by this one yet: the checkpoint's
    saved = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["provenance"]
    assert saved == result["provenance"]
    first = saved[0]
    assert first["hardware"]["cpu_count"] and torch.__version__.startswith(first["environment"]["libraries"]["torch"])
    assert first["device"] == "cpu" and first["processes"] == 1 and first["command"]
