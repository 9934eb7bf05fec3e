"""engine.allocator: with glibc, a training step reuses freed memory instead of faulting in fresh pages."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deeplab_edu.engine import allocator

_STEPS = """
import resource, sys, torch
from torch import nn
torch.set_num_threads(1)
from deeplab_edu.engine.allocator import keep_freed_memory
from deeplab_edu.models import build_model
if sys.argv[1] == "keep":
    assert keep_freed_memory() and keep_freed_memory()  # accepted, idempotent
torch.manual_seed(0)
model = build_model("deeplabv3plus", backbone="tiny_resnet", num_classes=5, atrous_rates=(1, 2, 3)).train()
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(8, 3, 64, 64), torch.randint(0, 5, (8, 64, 64))
def step():
    nn.functional.cross_entropy(model(x)["out"], y).backward(); opt.step(); opt.zero_grad(set_to_none=True)
for _ in range(5):  # warm-up: the first steps take their memory from the OS either way
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _STEPS, mode], capture_output=True, text=True, timeout=300, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(allocator._glibc() is None, reason="needs Linux with glibc")
def test_training_steps_reuse_freed_memory() -> None:
    # fresh processes: this one may have set it already (every CPU Trainer does)
    default, kept = _faults("default"), _faults("keep")
    assert kept < max(default / 3, 500), f"page faults in 3 training steps: {kept} kept vs {default} by default"


def test_other_platforms_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator._glibc() is None
    monkeypatch.setattr(allocator, "_done", None)
    assert allocator.keep_freed_memory() is False
