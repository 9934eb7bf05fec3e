"""``torch.compile``: faster, and the same results?

Eager against compiled copies of one model (the same weights): the compile time of a first
compile, training-step and inference time in interleaved rounds, and the largest logit difference.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path
from typing import Any, Iterator, cast

import torch
from torch import nn

from ...models.export import LogitsOnly
from .pairs import StepRunner
from .timing import (compare_speeds, interleaved, interval_text, load_average, min_rounds, speedup_interval, timed,
                     torch_threads, write_result)

__all__ = ["run_compile_benchmark"]


@contextlib.contextmanager
def _first_compile(backend: str) -> Iterator[None]:
    """Compile as a machine does the first time: inductor's caches off, and an empty cache folder
    for the kernels it builds (compiled C++ is otherwise found again by its source's hash)."""
    if backend != "inductor":
        yield
        return
    import os
    import tempfile

    import torch._inductor.config as inductor_config

    caches_off = (inductor_config.patch(force_disable_caches=True) if hasattr(inductor_config, "force_disable_caches")
                  else contextlib.nullcontext())
    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="inductor_") as folder, caches_off:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = before


def run_compile_benchmark(*, device: str = "cpu", model: str = "deeplabv3plus", backbone: str = "mobilenet_v3_large",
                          size: int = 128, batch: int = 2, repeats: int | None = None, out: str | Path | None = None,
                          threads: int | None = None, backend: str = "inductor") -> dict[str, Any]:
    """Eager vs ``torch.compile``: training-step and inference time, compile time, output difference.

    Two copies of one randomly initialised model (same weights). Compile time is the first training
    step and the first inference call of the compiled copy, compiled from scratch: inductor's
    caches are off and its kernels are built in an empty folder (a cache left by an earlier run
    made a 15-minute compile take 5 s), as on a machine that compiles the model for the first time. The difference is the largest absolute
    difference of the eval-mode logits on one input (``max_abs_diff``, and relative to the largest
    logit). Steps are timed in interleaved rounds (median; speed-ups with their 95 % interval,
    :func:`~.timing.speedup_interval`): ``repeats`` rounds, default :func:`~.timing.min_rounds` (6).

    Returns:
        the measured numbers; also written as a record (default ``runs/bench/compile_<device>.json``).

    Raises:
        RuntimeError: ``device="cuda"`` without a CUDA GPU.
    """
    import copy

    from ...models import build_model

    repeats = min_rounds() if repeats is None else repeats
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but PyTorch sees no CUDA GPU; use --device cpu")
    with torch_threads(threads), _first_compile(backend):
        torch.manual_seed(0)
        eager = build_model(model, backbone=backbone, num_classes=21).to(dev)
        compiled_model = copy.deepcopy(eager)
        compiled = cast(nn.Module, torch.compile(compiled_model, backend=backend))  # an OptimizedModule
        x = torch.randn(batch, 3, size, size, device=dev)
        y = torch.randint(0, 21, (batch, size, size), device=dev)
        runners = {"eager": StepRunner(LogitsOnly(eager), x, y, False, False),
                   "compiled": StepRunner(LogitsOnly(compiled), x, y, False, False)}
        t0 = time.perf_counter()
        runners["compiled"].train_step()
        compile_train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        runners["compiled"].infer()
        compile_infer_s = time.perf_counter() - t0
        runners["eager"].train_step()
        runners["eager"].infer()
        compiled_model.load_state_dict(eager.state_dict())  # the same weights and BN statistics again
        with torch.no_grad():
            a = eager.eval()(x)["out"].float()
            b = compiled.eval()(x)["out"].float()
        diff = (a - b).abs().max().item()
        scale = a.abs().max().item()
        times: dict[str, dict[str, list[float]]] = {k: {"train": [], "infer": []} for k in runners}
        for name in interleaved(list(runners), repeats):
            times[name]["train"].append(timed(runners[name].train_step, dev)[0])
            times[name]["infer"].append(timed(runners[name].infer, dev)[0])
        med = {k: {m: statistics.median(v) for m, v in t.items()} for k, t in times.items()}
        train = compare_speeds(times["eager"]["train"], times["compiled"]["train"])
        results = {
            "device": str(dev), "model": model, "backbone": backbone, "input": [batch, 3, size, size],
            "backend": backend, "compile_caches": "off, empty cache folder (a first compile)" if backend == "inductor" else None,
            "compile_seconds_first_train_step": compile_train_s, "compile_seconds_first_inference": compile_infer_s,
            "train_step_s": {k: v["train"] for k, v in med.items()},
            "inference_s": {k: v["infer"] for k, v in med.items()},
            "train_speedup": train.speedup,
            "inference_speedup": med["eager"]["infer"] / med["compiled"]["infer"],
            "train_speedup_interval": train.interval, "train_p_value": train.p_value, "train_verdict": train.verdict,
            "inference_speedup_interval": speedup_interval(times["eager"]["infer"], times["compiled"]["infer"]),
            "max_abs_diff": diff, "max_abs_logit": scale, "relative_diff": diff / max(scale, 1e-12),
            "torch_threads": torch.get_num_threads(), "load_average": load_average(), "times": times,
        }
    print(f"torch.compile ({backend}) on {dev}, {model} {backbone}, input {[batch, 3, size, size]}: "
          f"compile {compile_train_s:.0f} s (train step) + {compile_infer_s:.0f} s (inference); training step "
          f"{train}, inference "
          f"x{results['inference_speedup']:.2f}{interval_text(results['inference_speedup_interval'])} vs eager; "
          f"logits differ by at most {diff:.2e} (largest logit {scale:.2f})")
    write_result(results, out, f"compile_{dev.type}.json", "medians of interleaved rounds; the machine may be shared")
    return results