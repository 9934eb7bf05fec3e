"""engine.allocator: with glibc, a training step reuses freed memory instead of faulting in fresh pages.

Page faults are counted with ``getrusage`` in fresh processes. A training step's count is noisy: on
a loaded machine a step with the setting occasionally faults in a few hundred pages (once a CI run
summed 1180 over three steps against 416 without the setting), so the training test compares the
median step of several; the malloc test checks the setting itself, with no noise.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from typing import Any

import pytest
import torch

from deeplab_edu.engine import allocator
from test_engine_fixtures import TinyNet, TinyScenes, tiny_config

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


class _FakeLibc:
    """Records the allocator calls instead of making them (glibc's thresholds cannot be read back)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 1  # accepted

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1


_KEEP = [("mallopt", allocator._M_MMAP_THRESHOLD, allocator.MMAP_THRESHOLD),
         ("mallopt", allocator._M_TRIM_THRESHOLD, allocator.TRIM_THRESHOLD)]
_RESTORE = [("mallopt", allocator._M_TRIM_THRESHOLD, 64 * 2**20), ("malloc_trim", 0)]


@pytest.fixture
def fake_libc(monkeypatch: pytest.MonkeyPatch) -> _FakeLibc:
    """A process in which nothing has kept freed memory yet, whose C library records the calls."""
    fake = _FakeLibc()
    monkeypatch.setattr(allocator, "_libc", lambda: fake)
    monkeypatch.setattr(allocator, "_done", None)  # (a benchmark test may have kept it for this process)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    return fake


class _FailsAtItem3(TinyScenes):
    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i == 3:
            raise ValueError("item 3 cannot be read")
        return super().__getitem__(i)


def test_fit_keeps_freed_memory_only_while_it_trains(tmp_path, fake_libc: _FakeLibc) -> None:
    """An audit: the Trainer's constructor set glibc's thresholds for the whole process for good, so a notebook's
    kernel never returned freed memory again (255 MiB of a ResNet-50's once a Trainer was built). fit() now sets
    them as it starts and, as it returns or raises, puts glibc's defaults back and trims the heap."""
    from deeplab_edu.engine.trainer import Trainer

    def trainer(out: str, train_set: TinyScenes, **kw: Any) -> Trainer:
        cfg = tiny_config(tmp_path / out, iterations=2, eval_every=2, ckpt_every=100, warmup_iters=0, **kw)
        return Trainer(cfg, model=TinyNet(3), train_set=train_set, val_set=TinyScenes(2, augment=False),
                       num_classes=3)

    built = trainer("a", TinyScenes(8))
    assert fake_libc.calls == []  # building a Trainer changes nothing
    during: list[list[tuple[Any, ...]]] = []
    built.fit(on_eval=lambda row: during.append(list(fake_libc.calls)))
    assert during == [_KEEP] and fake_libc.calls == _KEEP + _RESTORE

    fake_libc.calls.clear()
    with pytest.raises(ValueError, match="item 3 cannot be read"):
        trainer("b", _FailsAtItem3(8), batch_size=2).fit()
    assert fake_libc.calls == _KEEP + _RESTORE  # a fit that raises restores them too

    fake_libc.calls.clear()
    trainer("c", TinyScenes(8), keep_freed_memory=False).fit()
    assert fake_libc.calls == []  # keep_freed_memory: false, as before


def test_only_the_last_block_and_only_what_it_set_is_undone(fake_libc: _FakeLibc,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Two trainings side by side in one process: the first to end leaves the setting to the other. A process
    whose thresholds GLIBC_TUNABLES set, or one that keep_freed_memory() set for good, is left as it is."""
    with allocator.freed_memory_kept() as outer:
        with allocator.freed_memory_kept() as inner:
            assert outer and inner and fake_libc.calls == _KEEP
        assert fake_libc.calls == _KEEP  # the outer one still trains
    assert fake_libc.calls == _KEEP + _RESTORE
    with allocator.freed_memory_kept(enabled=False) as kept:
        assert not kept
    assert fake_libc.calls == _KEEP + _RESTORE

    fake_libc.calls.clear()
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")
    with allocator.freed_memory_kept() as kept:
        assert not kept
    assert fake_libc.calls == []
    monkeypatch.delenv("GLIBC_TUNABLES")

    monkeypatch.setattr(allocator, "_glibc", lambda: fake_libc)
    with allocator.freed_memory_kept():
        assert allocator.keep_freed_memory()  # for the rest of the process (a benchmark's)
    with allocator.freed_memory_kept() as kept:
        assert kept
    assert fake_libc.calls == _KEEP + _KEEP  # set twice, never undone


_AFTER_TRAINING = """
import ctypes, os, resource
from deeplab_edu.engine.allocator import _glibc, freed_memory_kept
libc = _glibc()
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
def resident_mib():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(8 * 2**20)  # above glibc's default mmap threshold (128 KiB), below ours (32 MiB)
    ctypes.memset(block, 1, 8 * 2**20)
    libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
with freed_memory_kept():
    during = [faults() for _ in range(3)]
    blocks = [libc.malloc(8 * 2**20) for _ in range(24)]  # a training's 192 MiB, freed: kept in the block
    for block in blocks:
        ctypes.memset(block, 1, 8 * 2**20)
    for block in reversed(blocks):
        libc.free(block)
    kept = resident_mib()
after = [faults() for _ in range(3)]
print(*during, *after, kept - resident_mib())
"""


@pytest.mark.skipif(allocator._glibc() is None, reason="needs Linux with glibc")
def test_glibc_returns_freed_blocks_again_after_the_block() -> None:
    """With glibc itself: an 8 MiB block freed in the block is reused (no fresh pages); the 192 MiB freed in the
    block go back to the system as it ends; and after it an 8 MiB block is still reused, not mapped afresh each
    time (a review: thresholds put back to a fixed 128 KiB cost inference twice the CPU time after a training)."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}  # which would leave glibc as it sets it
    proc = subprocess.run([sys.executable, "-c", _AFTER_TRAINING], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    *counts, returned_mib = [float(n) for n in proc.stdout.split()]
    assert max(counts[1:3]) <= 2 and max(counts[4:]) <= 2, f"faults per 8 MiB block in the block, then after: {counts}"
    assert returned_mib > 150, f"only {returned_mib:.0f} MiB of the 192 MiB freed in the block were given back"
