"""engine.allocator: with glibc, a training step reuses freed memory instead of faulting in fresh pages.

Page faults are counted with ``getrusage`` in fresh processes. A training step's count is noisy: on
a loaded machine a step with the setting occasionally faults in a few hundred pages (once a CI run
summed 1180 over three steps against 416 without the setting), so the training test compares the
median step of several; the malloc test checks the setting itself, with no noise.
"""

from __future__ import annotations

import statistics
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
faults = []
for _ in range(9):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
"""

_MALLOC = """
import ctypes, resource, sys
from deeplab_edu.engine.allocator import _glibc, keep_freed_memory
libc = _glibc()
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
if sys.argv[1] == "keep":
    assert keep_freed_memory()
size = 8 * 2**20  # above glibc's default mmap threshold (128 KiB), below ours (32 MiB)
faults = []
for _ in range(3):  # allocate, write every page, free
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
"""


def _faults(script: str) -> tuple[list[int], list[int]]:
    """Minor page faults per step of ``script`` by default and with the setting, each run in a fresh
    process (this one may have set it already); the two run side by side (a count is the process's
    own, whatever else runs)."""
    procs = [subprocess.Popen([sys.executable, "-c", script, mode], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for mode in ("default", "keep")]
    counts = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 0, err
        counts.append([int(n) for n in out.strip().splitlines()[-1].split()])
    return counts[0], counts[1]


@pytest.mark.skipif(allocator._glibc() is None, reason="needs Linux with glibc")
def test_a_freed_block_is_reused_not_returned() -> None:
    default, kept = _faults(_MALLOC)
    # by default the first block is mmap-ed and unmapped at free, so the second is fresh pages again
    # (2048 faults of 4 KiB; a handful where the kernel backs it with 2 MiB pages)
    assert default[1] > 2, f"faults per 8 MiB block by default: {default}"
    assert max(kept[1:]) <= 2, f"faults per 8 MiB block with keep_freed_memory: {kept}"


@pytest.mark.skipif(allocator._glibc() is None, reason="needs Linux with glibc")
def test_training_steps_reuse_freed_memory() -> None:
    default, kept = _faults(_STEPS)
    median_default, median_kept = statistics.median(default), statistics.median(kept)
    assert median_kept < max(median_default / 3, 64), f"page faults per training step: {kept} kept vs {default} by default"


def test_other_platforms_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator._glibc() is None
    monkeypatch.setattr(allocator, "_done", None)
    assert allocator.keep_freed_memory() is False
