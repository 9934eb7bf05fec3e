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
