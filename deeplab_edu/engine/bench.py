"""Side-by-side speed and memory of our models against torchvision's and segmentation_models_pytorch's.

Pairs, built with the same configuration:

- ``v3``: our DeepLabv3-ResNet-50 (``torchvision_head=True``: the extra 3x3 convolution torchvision
  adds) vs ``torchvision.models.segmentation.deeplabv3_resnet50``; both at output stride 8 with
  ASPP rates 12/24/36, no auxiliary head, random weights.
- ``v3plus``: our DeepLabv3+-ResNet-50 vs ``segmentation_models_pytorch.DeepLabV3Plus`` (ResNet-50
  encoder, ``encoder_weights=None``); both at output stride 16, rates 12/24/36, separable ASPP.

For each model: inference throughput (images/s, ``no_grad``, eval mode), training-step throughput
(forward + backward + the engine's SGD step) and peak memory of one training step, first at *equal settings*
(float32, contiguous memory) and then with *our defaults* (``channels_last``; on a GPU also bf16
autocast) applied to both models. Timings of the two models of a pair are interleaved round by
round and the median is kept, so a machine that gets busier part-way slows both alike; each ratio
comes with a paired bootstrap 95 % interval over the rounds (:func:`speedup_interval`), and a model
is called faster only when that interval excludes 1. On a GPU
the fraction of the GPU's dense bf16 peak FLOP/s reached is reported too.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
from torch import nn

from ..complexity import _memory_records, _quiet_stderr, count_macs, count_parameters
from .allocator import keep_freed_memory as _keep_freed_memory
from .schedule import build_optimizer

__all__ = ["build_pair", "run_benchmarks", "PEAK_BF16_TFLOPS", "loader_throughput", "cores_scaling", "interleaved",
           "timed_steps", "speedup_interval", "speed_verdict"]

#: Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, matched by device name.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


class _OutOnly(nn.Module):
    """Wraps a model so that it returns a logits tensor (torchvision returns a dict)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return y["out"] if isinstance(y, dict) else y


def build_pair(pair: str, num_classes: int = 21) -> tuple[tuple[str, nn.Module], tuple[str, nn.Module]]:
    """``((our name, our model), (peer name, peer model))`` for ``pair`` in ``{"v3", "v3plus"}``.

    Raises:
        ValueError: another ``pair``.
    """
    from ..models import build_model

    if pair == "v3":
        from torchvision.models.segmentation import deeplabv3_resnet50

        ours = build_model("deeplabv3", backbone="resnet50", num_classes=num_classes, output_stride=8,
                           atrous_rates=(12, 24, 36), torchvision_head=True, dropout=0.5)
        peer = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
        return ("deeplab_edu deeplabv3 resnet50", _OutOnly(ours)), ("torchvision deeplabv3_resnet50", _OutOnly(peer))
    if pair == "v3plus":
        import segmentation_models_pytorch as smp

        ours = build_model("deeplabv3plus", backbone="resnet50", num_classes=num_classes, output_stride=16,
                           atrous_rates=(12, 24, 36), dropout=0.5)
        peer = smp.DeepLabV3Plus(encoder_name="resnet50", encoder_weights=None, classes=num_classes,
                                 encoder_output_stride=16, decoder_atrous_rates=(12, 24, 36))
        return ("deeplab_edu deeplabv3plus resnet50", _OutOnly(ours)), ("smp DeepLabV3Plus resnet50", _OutOnly(peer))
    raise ValueError(f"unknown benchmark pair {pair!r}; use 'v3' or 'v3plus'")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _minor_faults() -> int | None:
    """Minor page faults of this process so far (``None`` where the OS does not count them)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall-clock, process CPU) seconds of ``fn()``; on CUDA after synchronising."""
    _sync(device)
    t, c = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - t, time.process_time() - c


def timed_steps(step: Callable[[], Any], iterations: int, device: torch.device) -> float:
    """Wall-clock seconds per call of ``step`` over a window of ``iterations`` calls (CUDA: synchronised
    before and after the window only, so the calls queue on the GPU as in training)."""
    return _timed(lambda: [step() for _ in range(iterations)], device)[0] / iterations


_T = TypeVar("_T")


def interleaved(settings: Sequence[_T], rounds: int) -> Iterator[_T]:
    """Each of ``settings`` once per round, in order in even rounds and reversed in odd ones (A B, B A, ...).

    Every benchmark here measures the settings it compares this way, so a machine that speeds up or
    slows down during a run (another process, thermal limits, a warming cache) affects them alike.
    """
    for r in range(rounds):
        yield from (settings if r % 2 == 0 else settings[::-1])


def speedup_interval(baseline_s: Sequence[float], candidate_s: Sequence[float], *, confidence: float = 0.95,
                     resamples: int = 9999, seed: int = 0) -> tuple[float, float] | None:
    """A paired bootstrap interval of the speed-up ``median(baseline_s) / median(candidate_s)``.

    ``baseline_s[i]`` and ``candidate_s[i]`` are the seconds of round ``i`` of :func:`interleaved`,
    measured one after the other, so the rounds are resampled in pairs (``scipy.stats.bootstrap``,
    percentile method, ``resamples`` replicates, fixed ``seed``): a machine that was slow in one
    round was slow for both. Above 1: the candidate is faster. A speed-up is a finding only when its
    interval excludes 1 (:func:`speed_verdict`).

    Returns:
        ``(low, high)``, or None with fewer than three rounds (or without SciPy).

    Raises:
        ValueError: the two sequences differ in length.
    """
    if len(baseline_s) != len(candidate_s):
        raise ValueError(f"{len(baseline_s)} baseline rounds but {len(candidate_s)} candidate rounds: "
                         "the rounds are paired")
    if len(baseline_s) < 3:
        return None
    import numpy as np
    try:
        from scipy.stats import bootstrap
    except ImportError:  # e.g. a GPU machine's own Python without SciPy: the medians are still recorded
        return None
    result = bootstrap((np.asarray(baseline_s, float), np.asarray(candidate_s, float)),
                       lambda b, c, axis=-1: np.median(b, axis=axis) / np.median(c, axis=axis),
                       paired=True, vectorized=True, confidence_level=confidence, n_resamples=resamples,
                       method="percentile", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def speed_verdict(interval: tuple[float, float] | None) -> str:
    """``"faster"`` / ``"slower"`` when a :func:`speedup_interval` excludes 1, else ``"parity"``
    (``"no interval"`` without one)."""
    if interval is None:
        return "no interval"
    low, high = interval
    return "faster" if low > 1 else "slower" if high < 1 else "parity"


def _interval_text(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f" [{interval[0]:.2f}, {interval[1]:.2f}]"


def _train_memory(runner: "_Runner", device: torch.device) -> tuple[int, int]:
    """``(peak, held)`` bytes of one training step, above what was allocated before it.

    ``peak`` is the high-water mark of the whole step (forward, backward, optimiser step); ``held``
    is what the forward pass leaves allocated for the backward pass (the saved activations and the
    loss). On CUDA both come from the caching allocator's counters; on the CPU from the allocations
    and frees the profiler records (every one of them, in time order).
    """
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        loss = runner.forward_loss()
        _sync(device)
        held = torch.cuda.memory_allocated(device) - base
        runner.backward_step(loss)
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - base, held
    from torch.profiler import ProfilerActivity, profile, record_function

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss = runner.forward_loss()
        with record_function("deeplab_edu.bench.backward"):
            runner.backward_step(loss)
        del loss
    records = _memory_records(prof)
    if records is None:
        raise RuntimeError("this torch's profiler does not expose its memory records; measure memory on CUDA")
    boundary = min(e.start_ns() for e in prof.profiler.kineto_results.events()
                   if e.name() == "deeplab_edu.bench.backward")
    cur = peak = held = 0
    for t, nbytes in records:
        if t < boundary:
            held += nbytes
        cur += nbytes
        peak = max(peak, cur)
    return peak, held


class _Runner:
    """One model prepared for one setting, with its inference and training-step closures."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, channels_last: bool, amp: bool) -> None:
        self.model = model
        self.x = x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()
        self.y = y
        self.model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self.amp = amp
        # the engine's SGD (fused where PyTorch's kernels apply), the same for both models of a pair
        self.opt = build_optimizer("sgd", [{"params": list(model.parameters())}], lr=1e-4, weight_decay=0.0)

    def _ctx(self) -> contextlib.AbstractContextManager[Any]:
        return torch.autocast(self.x.device.type, dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()

    def infer(self) -> None:
        self.model.eval()
        with torch.no_grad(), self._ctx():
            self.model(self.x)

    def forward_loss(self) -> torch.Tensor:
        self.model.train()
        with self._ctx():
            return nn.functional.cross_entropy(self.model(self.x).float(), self.y)

    def backward_step(self, loss: torch.Tensor) -> None:
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def train_step(self) -> None:
        self.backward_step(self.forward_loss())


def _measure_pair(models: list[tuple[str, nn.Module]], x: torch.Tensor, y: torch.Tensor, *, channels_last: bool,
                  amp: bool, repeats: int, warmup: int) -> list[dict[str, Any]]:
    device = x.device
    runners = [(name, _Runner(m, x, y, channels_last, amp)) for name, m in models]
    for _ in range(warmup):
        for _, r in runners:
            r.infer()
            r.train_step()
    times: dict[str, dict[str, list[float]]] = {n: {"infer": [], "train": [], "train_cpu": [], "faults": []}
                                                 for n, _ in runners}
    for name, r in interleaved(runners, repeats):
        times[name]["infer"].append(_timed(r.infer, device)[0])
        faults = _minor_faults()
        wall, cpu = _timed(r.train_step, device)
        times[name]["train"].append(wall)
        times[name]["train_cpu"].append(cpu)
        if faults is not None:
            times[name]["faults"].append(_minor_faults() - faults)  # type: ignore[operator]
    rows = []
    for name, r in runners:
        t = times[name]
        ti, tt, tc = (statistics.median(t[k]) for k in ("infer", "train", "train_cpu"))
        peak, held = _train_memory(r, device)
        rows.append({
            "model": name, "channels_last": channels_last, "amp_bf16": amp,
            "inference_s": ti, "inference_images_per_s": x.shape[0] / ti,
            "train_step_s": tt, "train_images_per_s": x.shape[0] / tt, "train_step_cpu_s": tc,
            "train_peak_mib": peak / 2**20, "train_held_mib": held / 2**20,
            # fresh pages the allocator asked the OS for in a step: each costs microseconds on a VM
            "train_minor_faults": statistics.median(t["faults"]) if t["faults"] else None,
            "inference_times_s": t["infer"], "train_times_s": t["train"], "train_cpu_times_s": t["train_cpu"],
        })
    return rows


def run_benchmarks(*, device: str = "cpu", size: int = 128, batch: int = 2, repeats: int = 3, warmup: int = 1,
                   out: str | Path | None = None, pairs: tuple[str, ...] = ("v3", "v3plus"),
                   num_classes: int = 21, threads: int | None = None, bf16: bool = True,
                   keep_freed_memory: bool = True) -> dict[str, Any]:
    """Measure every pair at equal settings and with our defaults; print ratios; write a record.

    Settings: float32 contiguous (*equal settings*), channels_last, and bf16 autocast + channels_last
    (``bf16=False`` skips it; on a CPU without bf16 instructions it is slow for both). Every time is
    the median of ``repeats`` interleaved rounds, and every ours/peer speed-up has its paired
    bootstrap 95 % interval (``*_speedup_interval``) and ``train_verdict`` (faster, slower or
    parity: :func:`speed_verdict`); memory is measured once per model and setting
    (:func:`_train_memory`: ``peak`` of the whole step and ``held``, the activations the forward
    pass keeps for the backward pass, which is what grows with batch and image size).

    Args:
        threads: torch intra-op threads for the run (``None``: leave them). On a shared machine one
            thread gives steadier ratios; the record then also compares process CPU time
            (``train_speedup_cpu_time``), which other processes barely disturb.
        keep_freed_memory: on the CPU, let glibc reuse freed memory as the engine's CPU training
            does (:func:`~deeplab_edu.engine.allocator.keep_freed_memory`; for the whole process,
            so both models of a pair). Otherwise every step page-faults thousands of times, and
            which model faults more depends on the allocation order, not on the model.

    Raises:
        ValueError: ``batch`` < 2 (batch norm in training), or ``size`` not a multiple of 16 for ``v3plus``.
        RuntimeError: ``device="cuda"`` without a CUDA GPU.
    """

    dev = torch.device(device)
    if batch < 2:
        raise ValueError(f"batch={batch}: a training step needs at least 2 images, because the image-pooling "
                         "branch's BatchNorm sees one value per channel per image in training mode")
    if "v3plus" in pairs and size % 16:
        raise ValueError(f"size={size}: segmentation_models_pytorch's DeepLabV3Plus needs a multiple of 16")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but PyTorch sees no CUDA GPU; use --device cpu")
    with _torch_threads(threads):
        torch.manual_seed(0)
        x = torch.randn(batch, 3, size, size, device=dev)
        y = torch.randint(0, num_classes, (batch, size, size), device=dev)
        settings = [("equal settings (fp32, contiguous)", False, False), ("channels_last (fp32)", True, False)]
        if bf16:
            settings.append(("bf16 autocast + channels_last", True, True))
        results: dict[str, Any] = {"input": [batch, 3, size, size], "device": str(dev), "pairs": {},
                                   "torch_threads": torch.get_num_threads(), "load_average_before": load_average(),
                                   "keeps_freed_memory": dev.type == "cpu" and keep_freed_memory and _keep_freed_memory()}
        for pair in pairs:
            (on, om), (pn, pm) = build_pair(pair, num_classes)
            om.to(dev)
            pm.to(dev)
            info = {name: {"params": count_parameters(m), "macs": count_macs(m.eval(), x[:1])}
                    for name, m in ((on, om), (pn, pm))}
            entry: dict[str, Any] = {"models": info, "settings": {}}
            for label, cl, amp in settings:
                rows = _measure_pair([(on, om), (pn, pm)], x, y, channels_last=cl, amp=amp, repeats=repeats,
                                     warmup=warmup)
                ours, peer = rows
                ratios = {
                    "inference_speedup": ours["inference_images_per_s"] / peer["inference_images_per_s"],
                    "train_speedup": ours["train_images_per_s"] / peer["train_images_per_s"],
                    "train_speedup_cpu_time": peer["train_step_cpu_s"] / max(ours["train_step_cpu_s"], 1e-12),
                    "train_memory_ratio": ours["train_peak_mib"] / max(peer["train_peak_mib"], 1e-9),
                    "train_held_memory_ratio": ours["train_held_mib"] / max(peer["train_held_mib"], 1e-9),
                    # paired bootstrap over the interleaved rounds: a speed-up is a finding only outside parity
                    "train_speedup_interval": speedup_interval(peer["train_times_s"], ours["train_times_s"]),
                    "inference_speedup_interval": speedup_interval(peer["inference_times_s"], ours["inference_times_s"]),
                }
                ratios["train_verdict"] = speed_verdict(ratios["train_speedup_interval"])
                if dev.type == "cuda":
                    name = torch.cuda.get_device_name(dev)
                    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
                    if peak:
                        for r in rows:
                            flops = 2 * info[r["model"]]["macs"] * batch * 3  # forward + backward ~ 3x forward
                            r["train_fraction_of_bf16_peak"] = flops / r["train_step_s"] / (peak * 1e12)
                entry["settings"][label] = {"rows": rows, "ratios": ratios}
                print(f"[{pair}] {label}: ours/peer inference x{ratios['inference_speedup']:.2f}"
                      f"{_interval_text(ratios['inference_speedup_interval'])}, training "
                      f"x{ratios['train_speedup']:.2f}{_interval_text(ratios['train_speedup_interval'])} "
                      f"({ratios['train_verdict']}; CPU time x{ratios['train_speedup_cpu_time']:.2f}), "
                      f"memory: peak x{ratios['train_memory_ratio']:.2f}, held for backward "
                      f"x{ratios['train_held_memory_ratio']:.2f}")
                for r in rows:
                    print(f"    {r['model']:38s} infer {r['inference_images_per_s']:7.2f} img/s  "
                          f"train {r['train_images_per_s']:7.2f} img/s  peak {r['train_peak_mib']:8.1f} MiB  "
                          f"held {r['train_held_mib']:8.1f} MiB  page faults/step {r['train_minor_faults']}")
            best_ours = max(entry["settings"].values(), key=lambda s: s["rows"][0]["train_images_per_s"])
            peer_equal = entry["settings"][settings[0][0]]["rows"][1]
            entry["ours_best_vs_peer_equal_train_speedup"] = (best_ours["rows"][0]["train_images_per_s"]
                                                              / peer_equal["train_images_per_s"])
            results["pairs"][pair] = entry
        results["load_average_after"] = load_average()
    print(f"load average before {results['load_average_before']}, after {results['load_average_after']}")
    _write(results, out, f"bench_{dev.type}.json", "medians of interleaved rounds; the machine may be shared",
           settings=[s[0] for s in settings], repeats=repeats, warmup=warmup)
    return results


def format_results(record: dict[str, Any]) -> str:
    """A Markdown table of a benchmark record (throughputs in images/s, memory in MiB, ratios ours/peer).

    Records written before the held-memory and CPU-time columns existed show "-" there; the speed-ups
    carry their 95 % interval (:func:`speedup_interval`) where the record has one.
    """
    res = record["results"]
    threads = res.get("torch_threads", record["hardware"].get("torch_threads"))
    lines = [f"Input {res['input']} on {res['device']}; "
             f"{record['hardware'].get('gpu') or record['hardware'].get('cpu')} "
             f"({record['hardware'].get('cpu_count')} cores, {threads} torch thread{'' if threads == 1 else 's'}"
             + (f"; load average {res['load_average_before']} before, {res.get('load_average_after')} after"
                if res.get("load_average_before") else "")
             + ("; glibc keeps freed memory, as in the engine's CPU training" if res.get("keeps_freed_memory") else "")
             + ").",
             "", "| pair | setting | model | inference img/s | train img/s | train CPU s/step | train peak MiB "
                 "| held for backward MiB |",
             "|---|---|---|---|---|---|---|---|"]

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    for pair, entry in res["pairs"].items():
        for label, s in entry["settings"].items():
            for r in s["rows"]:
                lines.append(f"| {pair} | {label} | {r['model']} | {r['inference_images_per_s']:.2f} | "
                             f"{r['train_images_per_s']:.2f} | {num(r.get('train_step_cpu_s'), '.2f')} | "
                             f"{r['train_peak_mib']:.0f} | {num(r.get('train_held_mib'), '.0f')} |")
            ra = s["ratios"]
            cpu = ra.get("train_speedup_cpu_time")
            held = ra.get("train_held_memory_ratio")
            lines.append(f"| {pair} | {label} | **ours / peer** | **x{ra['inference_speedup']:.2f}**"
                         f"{_interval_text(ra.get('inference_speedup_interval'))} | "
                         f"**x{ra['train_speedup']:.2f}**{_interval_text(ra.get('train_speedup_interval'))}"
                         f"{'' if 'train_verdict' not in ra else ' ' + ra['train_verdict']} | "
                         f"{'-' if cpu is None else f'**x{cpu:.2f}** (peer/ours)'} | "
                         f"**x{ra['train_memory_ratio']:.2f}** | {'-' if held is None else f'**x{held:.2f}**'} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# The data pipeline: scenes per second through the engine's own training loader
# ---------------------------------------------------------------------------------------------------

def load_average() -> tuple[float, float, float] | None:
    """The machine's 1/5/15-minute load averages (``None`` where the OS has none): recorded with timings."""
    try:
        import os

        return tuple(round(v, 2) for v in os.getloadavg())  # type: ignore[return-value]
    except (AttributeError, OSError):
        return None


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes of the machine have run since boot (Linux ``/proc/stat``), else ``None``."""
    try:
        import os

        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Any:
    """Run the block with ``threads`` torch intra-op threads (``None``: unchanged), restoring them after."""
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _write(results: dict[str, Any], out: str | Path | None, default_name: str, note: str,
           **extra: Any) -> Path:
    """Write ``results`` as a record (default ``benchmarks/results/<default_name>``) and say where."""
    from ..records import RESULTS_DIR, write_record

    path = Path(out) if out else RESULTS_DIR / default_name
    write_record(path, results, extra={**extra, "note": note})
    print(f"record written to {path}")
    return path


def loader_throughput(num_workers: int, *, size: int = 256, batch: int = 8, batches: int = 40, warmup: int = 2,
                      limit_threads: bool = True, seed: int = 0) -> dict[str, Any]:
    """Scenes/s of the engine's training loader on procedural scenes with DeepLab's augmentation.

    The loader is the one :class:`~deeplab_edu.engine.trainer.Trainer` uses
    (:func:`~deeplab_edu.engine.data.train_loader` over a :class:`~deeplab_edu.engine.data.SeededDataset`
    and a :class:`~deeplab_edu.engine.data.ResumableSampler`), over exactly ``warmup + batches`` batches of
    ``batch`` scenes of ``size`` pixels (random scale 0.5-2.0, crop ``size``, flip). The clock starts when
    the ``warmup``-th batch arrives (so worker start-up is not counted). ``limit_threads=False`` builds a
    plain DataLoader instead (workers keep their default BLAS/OpenMP threads) to show what the limits change.

    Returns:
        ``{"num_workers", "limit_threads", "scenes_per_s", "seconds", "cpu_s_per_scene", "other_cores"}``: the
        CPU time is that of the worker processes (of the main process with 0 workers) per scene loaded, in
        seconds; ``other_cores`` is how many cores *other* processes kept busy on average meanwhile (Linux;
        ``None`` elsewhere): above a few tenths the wall-clock figures understate the loader.

    Raises:
        ValueError: ``batches`` or ``warmup`` smaller than 1, or ``num_workers`` negative.
        RuntimeError: the loader gave another number of batches than ``warmup + batches``.
    """
    import resource

    from torch.utils.data import DataLoader

    from .config import TrainConfig
    from .data import ResumableSampler, SeededDataset, build_datasets, train_loader

    if batches < 1 or warmup < 1:
        raise ValueError(f"batches={batches} and warmup={warmup} must both be at least 1")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    cfg = TrainConfig(dataset="procedural", image_size=size, crop_size=size, batch_size=batch,
                      train_length=(warmup + batches) * batch, val_length=1, num_workers=num_workers, device="cpu")
    train, _ = build_datasets(cfg)
    dataset = SeededDataset(train, seed)
    sampler = ResumableSampler(dataset, shuffle=True, seed=seed, drop_last=True)
    if limit_threads:
        loader = train_loader(dataset, sampler, batch_size=batch, num_workers=num_workers)
    else:
        loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=num_workers, drop_last=True)
    def own_cpu() -> float:
        return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                      resource.getrusage(resource.RUSAGE_CHILDREN)))

    who = resource.RUSAGE_CHILDREN if num_workers > 0 else resource.RUSAGE_SELF
    r0 = resource.getrusage(who)
    busy0, own0, start = _busy_cpu_seconds(), own_cpu(), time.perf_counter()
    n = 0
    t0 = time.perf_counter()
    for i, _ in enumerate(loader):  # runs to the end: every worker is joined, its CPU time counted
        n += 1
        if i == warmup - 1:
            t0 = time.perf_counter()
    seconds = time.perf_counter() - t0
    del loader
    r1 = resource.getrusage(who)
    busy1, own1, span = _busy_cpu_seconds(), own_cpu(), time.perf_counter() - start
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if n != warmup + batches:
        raise RuntimeError(f"the loader gave {n} batches, expected {warmup + batches}")
    other = None if busy0 is None or busy1 is None else max(0.0, (busy1 - busy0) - (own1 - own0)) / span
    return {"num_workers": num_workers, "limit_threads": limit_threads, "scenes_per_s": batches * batch / seconds,
            "seconds": seconds, "cpu_s_per_scene": cpu / (n * batch), "other_cores": other}


def _one_thread_loading(size: int, batch: int, batches: int, start: Any, results: Any) -> None:
    """Child of :func:`cores_scaling`: the loading in this process with one thread, once every child is ready."""
    from .workers import limit_worker_threads

    limit_worker_threads()  # one BLAS/OpenMP/torch thread, as in a loader worker
    start.wait(timeout=60)
    run = loader_throughput(0, size=size, batch=batch, batches=batches)
    end = time.perf_counter()  # CLOCK_MONOTONIC on Linux: one clock for every process
    results.put((end - run["seconds"], end))


def cores_scaling(processes: int = 2, *, size: int = 256, batch: int = 8, batches: int = 30,
                  timeout_s: float = 120.0) -> dict[str, Any]:
    """What this machine's cores give to independent work: the ceiling for ``processes`` loader workers.

    Runs the loading of :func:`loader_throughput` (``num_workers=0``, one BLAS/OpenMP/torch thread) in
    one process alone twice, then in ``processes`` separate processes at once (no DataLoader, nothing
    shared). ``ratio`` is the scenes/s of the concurrent processes (all their scenes over the span from
    the first one's start to the last one's end) over the mean of the lone runs: ``processes`` on free
    physical cores, less where the cores are hyper-threads of one another, share a cache or a memory
    bus, slow their clock when all are busy, or belong to a VM whose host takes time from them. No
    loader with ``processes`` workers can do better than this ratio.

    Returns:
        ``{"processes", "alone_scenes_per_s", "together_scenes_per_s", "ratio"}``.

    Raises:
        ValueError: ``processes`` below 2.
        RuntimeError: the processes of one measurement did not all report within ``timeout_s`` seconds of
            their start, or one of them exited without reporting (the message gives their exit codes).
    """
    import multiprocessing as mp
    import queue

    if processes < 2:
        raise ValueError(f"processes must be at least 2, got {processes}")
    ctx = mp.get_context("fork")

    def run(n: int) -> float:
        """Scenes/s of ``n`` processes together: all their scenes over the span from the first start to the last end."""
        start, results = ctx.Barrier(n), ctx.Queue()
        children = [ctx.Process(target=_one_thread_loading, args=(size, batch, batches, start, results), daemon=True)
                    for _ in range(n)]
        for c in children:
            c.start()
        deadline = time.monotonic() + timeout_s
        got: list[tuple[float, float]] = []
        try:
            while len(got) < n:
                try:
                    got.append(results.get(timeout=min(1.0, max(0.0, deadline - time.monotonic()))))
                    continue
                except queue.Empty:
                    pass
                crashed = any(c.exitcode not in (None, 0) for c in children)  # a normal exit has reported first
                if crashed or time.monotonic() >= deadline:
                    raise RuntimeError(f"cores_scaling: {n - len(got)} of {n} one-thread loading processes gave no "
                                       f"result ({'one crashed' if crashed else f'stuck for {timeout_s:g} s'}; "
                                       f"exit codes {[c.exitcode for c in children]})")
        finally:
            for c in children:
                c.join(timeout=10)
                if c.is_alive():
                    c.terminate()
        span = max(end for _, end in got) - min(start for start, _ in got)
        return n * batches * batch / span

    alone = statistics.fmean([run(1), run(1)])
    together = run(processes)
    return {"processes": processes, "alone_scenes_per_s": alone, "together_scenes_per_s": together,
            "ratio": together / alone}


def run_loader_benchmark(*, workers: tuple[int, ...] = (0, 1, 2), size: int = 256, batch: int = 8, batches: int = 40,
                         rounds: int = 3, compare_unlimited: bool = True, out: str | Path | None = None,
                         ) -> dict[str, Any]:
    """Scenes/s of the engine's training loader per worker count; print it and write a record.

    Every setting (worker count, with and without the one-thread-per-worker limits) is measured once per
    round, in an order that alternates between rounds, and the median over ``rounds`` is kept. With two
    or more workers the record also holds :func:`cores_scaling` for the most workers: the ceiling the
    cores set (``"cores_scaling"``, ``None`` otherwise).
    """

    settings = [(w, True) for w in workers] + ([(w, False) for w in workers if w > 0] if compare_unlimited else [])
    runs: dict[tuple[int, bool], list[dict[str, Any]]] = {s: [] for s in settings}
    load_before = load_average()
    for w, lim in interleaved(settings, rounds):
        runs[(w, lim)].append(loader_throughput(w, size=size, batch=batch, batches=batches, limit_threads=lim))
    rows = []
    for (w, lim), rs in runs.items():
        rows.append({"num_workers": w, "limit_threads": lim,
                     "scenes_per_s": statistics.median(r["scenes_per_s"] for r in rs),
                     "cpu_s_per_scene": statistics.median(r["cpu_s_per_scene"] for r in rs),
                     "all_scenes_per_s": [round(r["scenes_per_s"], 2) for r in rs]})
    most = max(workers)
    ceiling = cores_scaling(most, size=size, batch=batch, batches=batches) if most >= 2 else None
    first = min((w for w in workers if w > 0), default=None)  # the ratios are relative to the fewest workers
    base = {row["limit_threads"]: row["scenes_per_s"] for row in rows if row["num_workers"] == first}
    print(f"engine training loader, procedural scenes {size} px, train transform, batch {batch}, "
          f"{batches} batches x {rounds} rounds (median); load average before {load_before}")
    for row in rows:
        ref = base.get(row["limit_threads"])
        speedup = f"  x{row['scenes_per_s'] / ref:.2f} vs {first} worker" if ref and row["num_workers"] else ""
        print(f"    {row['num_workers']} workers, {'one thread each' if row['limit_threads'] else 'default threads'}: "
              f"{row['scenes_per_s']:7.1f} scenes/s, {1000 * row['cpu_s_per_scene']:6.1f} CPU ms/scene{speedup}")
    if ceiling is not None:
        print(f"    the ceiling: {most} separate one-thread processes get x{ceiling['ratio']:.2f} the scenes/s of one "
              f"({ceiling['alone_scenes_per_s']:.1f} alone, {ceiling['together_scenes_per_s']:.1f} together)")
    results = {"size": size, "batch": batch, "batches": batches, "rounds": rounds, "rows": rows, "cores_scaling": ceiling,
               "load_average_before": load_before, "load_average_after": load_average()}
    _write(results, out, "loader_cpu.json", "medians of interleaved rounds; the machine may be shared")
    return results


# ---------------------------------------------------------------------------------------------------
# The whole pipeline: does the engine keep the device busy?
# ---------------------------------------------------------------------------------------------------

def run_pipeline_benchmark(*, preset: str = "gpu", overrides: dict[str, Any] | None = None, device: str | None = None,
                           iterations: int = 30, warmup: int = 3, rounds: int = 2, out: str | Path | None = None,
                           threads: int | None = None) -> dict[str, Any]:
    """End-to-end training throughput through the engine's own loader vs the model step alone.

    Builds a :class:`~deeplab_edu.engine.trainer.Trainer` from ``preset`` (plus ``overrides``) and
    times ``iterations`` training steps as :meth:`~deeplab_edu.engine.trainer.Trainer.fit` runs them
    (the losses stay on the device until the window ends), fed by

    - ``pipeline``: the engine's training loader (workers, pinned memory, host-to-device copies);
    - ``step only``: one synthetic batch of the same shape already on the device, reused.

    Rounds alternate the order of the two. Before each ``pipeline`` window the batches its workers
    prefetched meanwhile are taken untimed, so the window measures what the workers produce, not a
    full queue. The ratio ``pipeline / step only`` is how busy the engine keeps the device: 1.0 means
    the data never waits (the issue's target on a GPU is >= 0.9); ``ratio_interval`` is its paired
    bootstrap 95 % interval over the rounds (:func:`speedup_interval`; None below three rounds).

    ``threads`` sets torch's intra-op threads of the training process for the run (``None``: leave them).

    Returns:
        ``{"pipeline_images_per_s", "step_images_per_s", "ratio", "num_workers", ...}``; also written as a
        record (default ``benchmarks/results/pipeline_<device>.json``).

    Raises:
        ValueError: ``iterations``, ``warmup`` or ``rounds`` below 1.
    """
    from .config import load_config

    if min(iterations, warmup, rounds) < 1:
        raise ValueError(f"iterations={iterations}, warmup={warmup} and rounds={rounds} must all be at least 1")
    total = warmup * 2 + 2 * rounds * iterations + 10
    settings = {**(overrides or {}), "iterations": max(total, 1), "progress": False, "resume": False,
                "warmup_iters": 0, "tensorboard": False}
    if device is not None:
        settings["device"] = device
    cfg = load_config(preset, settings)
    with _torch_threads(threads):
        return _pipeline(cfg, preset, overrides, iterations, warmup, rounds, out)


def _pipeline(cfg: Any, preset: str, overrides: dict[str, Any] | None, iterations: int, warmup: int, rounds: int,
              out: str | Path | None) -> dict[str, Any]:
    import itertools

    from .trainer import Trainer

    trainer = Trainer(cfg)
    dev = trainer.device
    loader_batches = trainer._batches()
    x0, y0 = next(loader_batches)
    synthetic = itertools.repeat(trainer._to_device(x0.clone(), y0.clone()))
    prefetch = 2 * trainer.num_workers  # DataLoader's default prefetch_factor (2) per worker
    for _ in range(warmup):
        trainer.train_step(loader_batches)  # reads the loss: a diverging warm-up fails here
        trainer.train_step(synthetic)
    seconds: dict[str, list[float]] = {"pipeline": [], "step only": []}
    order = ["step only", "pipeline"]
    load_before = load_average()
    for mode in interleaved(order, rounds):
        source = synthetic if mode == "step only" else loader_batches
        if mode == "pipeline":
            for _ in range(prefetch):
                next(loader_batches)
        seconds[mode].append(iterations * timed_steps(lambda: trainer._step(source), iterations, dev))
    images = iterations * cfg.batch_size * cfg.grad_accum * trainer.dist.world_size
    pipe = images / statistics.median(seconds["pipeline"])
    step = images / statistics.median(seconds["step only"])
    results = {"preset": preset, "overrides": overrides or {}, "device": str(dev), "batch_size": cfg.batch_size,
               "crop_size": cfg.crop_size, "model": cfg.model, "backbone": cfg.backbone, "amp": cfg.amp,
               "channels_last": cfg.channels_last, "num_workers": trainer.num_workers, "iterations": iterations,
               "rounds": rounds, "pipeline_images_per_s": pipe, "step_images_per_s": step, "ratio": pipe / step,
               "ratio_interval": speedup_interval(seconds["step only"], seconds["pipeline"]),
               "seconds": seconds, "torch_threads": torch.get_num_threads(), "load_average_before": load_before,
               "load_average_after": load_average()}
    print(f"pipeline ({preset}, {cfg.model} {cfg.backbone}, crop {cfg.crop_size}, batch {cfg.batch_size}, "
          f"{trainer.num_workers} worker{'' if trainer.num_workers == 1 else 's'}, {dev}): {pipe:.1f} images/s through the engine's loader, "
          f"{step:.1f} images/s for the step alone on a synthetic batch: x{pipe / step:.2f}"
          f"{_interval_text(results['ratio_interval'])} (load average {load_before})")
    _write(results, out, f"pipeline_{dev.type}.json", "medians of alternating windows; the machine may be shared")
    del loader_batches
    return results


# ---------------------------------------------------------------------------------------------------
# torch.compile: faster, and the same results?
# ---------------------------------------------------------------------------------------------------

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
                          size: int = 128, batch: int = 2, repeats: int = 5, out: str | Path | None = None,
                          threads: int | None = None, backend: str = "inductor") -> dict[str, Any]:
    """Eager vs ``torch.compile``: training-step and inference time, compile time, output difference.

    Two copies of one randomly initialised model (same weights). Compile time is the first training
    step and the first inference call of the compiled copy, compiled from scratch: inductor's
    caches are off and its kernels are built in an empty folder (a cache left by an earlier run
    made a 15-minute compile take 5 s), as on a machine that compiles the model for the first time. The difference is the largest absolute
    difference of the eval-mode logits on one input (``max_abs_diff``, and relative to the largest
    logit). Steps are timed in interleaved rounds (median; speed-ups with their 95 % interval,
    :func:`speedup_interval`).

    Returns:
        the measured numbers; also written as a record (default ``benchmarks/results/compile_<device>.json``).

    Raises:
        RuntimeError: ``device="cuda"`` without a CUDA GPU.
    """
    import copy

    from ..models import build_model

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but PyTorch sees no CUDA GPU; use --device cpu")
    with _torch_threads(threads), _first_compile(backend):
        torch.manual_seed(0)
        eager = build_model(model, backbone=backbone, num_classes=21).to(dev)
        compiled_model = copy.deepcopy(eager)
        compiled = torch.compile(compiled_model, backend=backend)
        x = torch.randn(batch, 3, size, size, device=dev)
        y = torch.randint(0, 21, (batch, size, size), device=dev)
        runners = {"eager": _Runner(_OutOnly(eager), x, y, False, False),
                   "compiled": _Runner(_OutOnly(compiled), x, y, False, False)}
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
            times[name]["train"].append(_timed(runners[name].train_step, dev)[0])
            times[name]["infer"].append(_timed(runners[name].infer, dev)[0])
        med = {k: {m: statistics.median(v) for m, v in t.items()} for k, t in times.items()}
        results = {
            "device": str(dev), "model": model, "backbone": backbone, "input": [batch, 3, size, size],
            "backend": backend, "compile_caches": "off, empty cache folder (a first compile)" if backend == "inductor" else None,
            "compile_seconds_first_train_step": compile_train_s, "compile_seconds_first_inference": compile_infer_s,
            "train_step_s": {k: v["train"] for k, v in med.items()},
            "inference_s": {k: v["infer"] for k, v in med.items()},
            "train_speedup": med["eager"]["train"] / med["compiled"]["train"],
            "inference_speedup": med["eager"]["infer"] / med["compiled"]["infer"],
            "train_speedup_interval": speedup_interval(times["eager"]["train"], times["compiled"]["train"]),
            "inference_speedup_interval": speedup_interval(times["eager"]["infer"], times["compiled"]["infer"]),
            "max_abs_diff": diff, "max_abs_logit": scale, "relative_diff": diff / max(scale, 1e-12),
            "torch_threads": torch.get_num_threads(), "load_average": load_average(), "times": times,
        }
    print(f"torch.compile ({backend}) on {dev}, {model} {backbone}, input {[batch, 3, size, size]}: "
          f"compile {compile_train_s:.0f} s (train step) + {compile_infer_s:.0f} s (inference); training step "
          f"x{results['train_speedup']:.2f}{_interval_text(results['train_speedup_interval'])}, inference "
          f"x{results['inference_speedup']:.2f}{_interval_text(results['inference_speedup_interval'])} vs eager; "
          f"logits differ by at most {diff:.2e} (largest logit {scale:.2f})")
    _write(results, out, f"compile_{dev.type}.json", "medians of interleaved rounds; the machine may be shared")
    return results
