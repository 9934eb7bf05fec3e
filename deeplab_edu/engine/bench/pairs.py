"""Our models against torchvision's and segmentation_models_pytorch's: speed and memory, side by side.

Pairs, built with the same configuration (:func:`build_pair`):

- ``v3``: our DeepLabv3-ResNet-50 (``torchvision_head=True``: the extra 3x3 convolution torchvision
  adds) vs ``torchvision.models.segmentation.deeplabv3_resnet50``; both at output stride 8 with
  ASPP rates 12/24/36, no auxiliary head, random weights.
- ``v3plus``: our DeepLabv3+-ResNet-50 vs ``segmentation_models_pytorch.DeepLabV3Plus`` (ResNet-50
  encoder, ``encoder_weights=None``); both at output stride 16, rates 12/24/36, separable ASPP.

For each model: inference throughput (images/s, ``no_grad``, eval mode), training-step throughput
(forward + backward + the engine's SGD step) and peak memory of one training step, first at *equal
settings* (float32, contiguous memory) and then with *our defaults* (``channels_last``; on a GPU
also bf16 autocast) applied to both models. The two models of a pair are timed in interleaved
rounds and every ratio comes with its paired bootstrap 95 % interval
(:func:`~deeplab_edu.engine.bench.timing.speedup_interval`). On a GPU the fraction of the GPU's
dense bf16 peak FLOP/s reached is reported too.
"""

from __future__ import annotations

import contextlib
import statistics
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ...choices import require_packages
from ...complexity import _memory_records, _quiet_stderr, count_macs, count_parameters
from ...models.export import LogitsOnly
from ..allocator import keep_freed_memory as _keep_freed_memory
from ..schedule import build_optimizer
from .timing import (compare_speeds, interleaved, interval_text, load_average, min_rounds, minor_faults, speedup_interval,
                     synchronize, timed, torch_threads, write_result)

__all__ = ["PEAK_BF16_TFLOPS", "build_pair", "StepRunner", "train_memory", "measure_models", "run_benchmarks",
           "check_input", "pair_summary", "format_results", "train_ratio_text"]

#: Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, matched by device name: NVIDIA's product
#: pages (https://www.nvidia.com/en-us/data-center/h200/, .../h100/, .../a100/, .../l40s/, .../products/a10-gpu/)
#: give the rates "with sparsity", twice these; an H100 or H200 SXM's, not a PCIe or NVL board's (lower).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def build_pair(pair: str, num_classes: int = 21) -> tuple[tuple[str, nn.Module], tuple[str, nn.Module]]:
    """``((our name, our model), (peer name, peer model))`` for ``pair`` in ``{"v3", "v3plus"}``.

    Raises:
        ValueError: another ``pair``.
    """
    from ...models import build_model

    if pair == "v3":
        from torchvision.models.segmentation import deeplabv3_resnet50

        ours = build_model("deeplabv3", backbone="resnet50", num_classes=num_classes, output_stride=8,
                           atrous_rates=(12, 24, 36), torchvision_head=True, dropout=0.5)
        peer = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
        return ("deeplab_edu deeplabv3 resnet50", LogitsOnly(ours)), ("torchvision deeplabv3_resnet50", LogitsOnly(peer))
    if pair == "v3plus":
        import segmentation_models_pytorch as smp

        ours_plus = build_model("deeplabv3plus", backbone="resnet50", num_classes=num_classes, output_stride=16,
                                atrous_rates=(12, 24, 36), dropout=0.5)
        peer = smp.DeepLabV3Plus(encoder_name="resnet50", encoder_weights=None, classes=num_classes,
                                 encoder_output_stride=16, decoder_atrous_rates=(12, 24, 36))
        return (("deeplab_edu deeplabv3plus resnet50", LogitsOnly(ours_plus)),
                ("smp DeepLabV3Plus resnet50", LogitsOnly(peer)))
    raise ValueError(f"unknown benchmark pair {pair!r}; use 'v3' or 'v3plus'")


def train_memory(runner: "StepRunner", device: torch.device) -> tuple[int, int]:
    """``(peak, held)`` bytes of one training step, above what was allocated before it.

    ``peak`` is the high-water mark of the whole step (forward, backward, optimiser step); ``held``
    is what the forward pass leaves allocated for the backward pass (the saved activations and the
    loss). On CUDA both come from the caching allocator's counters; on the CPU from the allocations
    and frees the profiler records (every one of them, in time order).

    Raises:
        RuntimeError: on the CPU, this torch's profiler keeps no memory records.
    """
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        loss = runner.forward_loss()
        synchronize(device)
        held = torch.cuda.memory_allocated(device) - base
        runner.backward_step(loss)
        synchronize(device)
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


class StepRunner:
    """One model prepared for one setting (memory format, bf16 autocast), with its inference and
    training steps, each timed by :func:`measure_models`.

    Args:
        model: a segmentation network whose forward returns the logits tensor (N, C, H, W) itself (wrap a
            deeplab-edu or torchvision model, which return ``{"out": ...}``, in
            :class:`~deeplab_edu.models.export.LogitsOnly`; the pairs do).
        x: the batch (N, 3, H, W), float, on the device the model is on.
        y: its labels (N, H, W), int64 class indices.
        channels_last: model and ``x`` in channels-last (NHWC) memory format.
        amp: run forward passes under bf16 autocast.
    """

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
        """One inference forward pass (eval mode, no gradients)."""
        self.model.eval()
        with torch.no_grad(), self._ctx():
            self.model(self.x)

    def forward_loss(self) -> torch.Tensor:
        """The training forward pass: the cross-entropy loss (a float32 scalar) of ``x`` against ``y``."""
        self.model.train()
        with self._ctx():
            return nn.functional.cross_entropy(self.model(self.x).float(), self.y)

    def backward_step(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss``, take one SGD step and free the gradients."""
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def train_step(self) -> None:
        """One whole training step: :meth:`forward_loss` then :meth:`backward_step`."""
        self.backward_step(self.forward_loss())


def measure_models(models: list[tuple[str, nn.Module]], x: torch.Tensor, y: torch.Tensor, *, channels_last: bool,
                   amp: bool, repeats: int, warmup: int) -> list[dict[str, Any]]:
    """Time ``models`` (two for a pair, or more) on one batch ``x`` (N, 3, H, W) with labels ``y``
    (N, H, W) in ``repeats`` interleaved rounds after ``warmup`` untimed ones, then measure each
    one's training memory (:func:`train_memory`).

    Returns:
        One row per model, in order, with the median inference and training seconds and images/s, training
        CPU seconds, peak and held-for-backward MiB, minor page faults per step (``None`` where the
        OS does not count them), and every round's times (for :func:`~.timing.speedup_interval`).
    """
    device = x.device
    runners = [(name, StepRunner(m, x, y, channels_last, amp)) for name, m in models]
    for _ in range(warmup):
        for _, r in runners:
            r.infer()
            r.train_step()
    times: dict[str, dict[str, list[float]]] = {n: {"infer": [], "train": [], "train_cpu": [], "faults": []}
                                                 for n, _ in runners}
    for name, r in interleaved(runners, repeats):
        times[name]["infer"].append(timed(r.infer, device)[0])
        faults = minor_faults()
        wall, cpu = timed(r.train_step, device)
        times[name]["train"].append(wall)
        times[name]["train_cpu"].append(cpu)
        if faults is not None:
            times[name]["faults"].append(minor_faults() - faults)  # type: ignore[operator]
    rows = []
    for name, r in runners:
        t = times[name]
        ti, tt, tc = (statistics.median(t[k]) for k in ("infer", "train", "train_cpu"))
        peak, held = train_memory(r, device)
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


def check_input(batch: int, size: int, pairs: Sequence[str] = ("v3", "v3plus")) -> None:
    """Refuse, before any model is built, an input a training step of ``pairs`` cannot take: ``batch`` images
    of ``size`` x ``size`` pixels (``benchmarks/v3plus_variants.py`` checks its flags with it too).

    Raises:
        ValueError: ``batch`` < 2 (the image-pooling branch's BatchNorm in training), or ``size`` not a multiple
            of 16 for ``v3plus`` (segmentation_models_pytorch's DeepLabV3Plus).
    """
    if batch < 2:
        raise ValueError(f"batch={batch}: a training step needs at least 2 images, because the image-pooling "
                         "branch's BatchNorm sees one value per channel per image in training mode")
    if "v3plus" in pairs and size % 16:
        raise ValueError(f"size={size}: segmentation_models_pytorch's DeepLabV3Plus needs a multiple of 16")


def run_benchmarks(*, device: str = "cpu", size: int = 128, batch: int = 2, repeats: int | None = None, warmup: int = 1,
                   out: str | Path | None = None, pairs: tuple[str, ...] = ("v3", "v3plus"),
                   num_classes: int = 21, threads: int | None = None, bf16: bool = True,
                   keep_freed_memory: bool = True) -> dict[str, Any]:
    """Measure every pair at equal settings and with our defaults; print ratios; write a record.

    Settings: float32 contiguous (*equal settings*), channels_last, and bf16 autocast + channels_last
    (``bf16=False`` skips it; on a CPU without bf16 instructions it is slow for both). Every time is
    the median of ``repeats`` interleaved rounds, and every ours/peer speed-up has its paired
    bootstrap 95 % interval (``*_speedup_interval``) and ``train_verdict`` (faster, slower or
    parity: :func:`~.timing.compare_speeds`, with ``train_p_value``); memory is measured once per model and setting
    (:func:`train_memory`: ``peak`` of the whole step and ``held``, the activations the forward
    pass keeps for the backward pass, which is what grows with batch and image size).

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        size: the side of the square input images, in pixels.
        batch: images per step (at least 2).
        repeats: interleaved rounds; default :func:`~.timing.min_rounds` (6), the fewest that give an interval.
        warmup: untimed rounds before them.
        out: where to write the JSON record (``None``: none written).
        pairs: which comparisons: ``"v3"`` (DeepLabv3 vs torchvision's), ``"v3plus"`` (DeepLabv3+ vs
            segmentation_models_pytorch's).
        num_classes: classes of the random labels and of the models' classifiers.
        bf16: also measure bf16 autocast + channels_last.
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
        ImportError: ``v3plus`` without segmentation_models_pytorch installed (checked before any measurement).
    """
    if "v3plus" in pairs:  # before the v3 pair's minutes, not after them with no record written
        require_packages("segmentation_models_pytorch", what="the v3plus benchmark pair")
    repeats = min_rounds() if repeats is None else repeats
    dev = torch.device(device)
    check_input(batch, size, pairs)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but PyTorch sees no CUDA GPU; use --device cpu")
    with torch_threads(threads):
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
                rows = measure_models([(on, om), (pn, pm)], x, y, channels_last=cl, amp=amp, repeats=repeats,
                                      warmup=warmup)
                ours, peer = rows
                # paired rounds: a speed-up is a finding only when its interval excludes 1 and the exact
                # paired test rejects "no difference" (timing.compare_speeds)
                train = compare_speeds(peer["train_times_s"], ours["train_times_s"])
                ratios = {
                    "inference_speedup": ours["inference_images_per_s"] / peer["inference_images_per_s"],
                    "train_speedup": train.speedup,  # = ours' images/s over the peer's
                    "train_speedup_cpu_time": peer["train_step_cpu_s"] / max(ours["train_step_cpu_s"], 1e-12),
                    "train_memory_ratio": ours["train_peak_mib"] / max(peer["train_peak_mib"], 1e-9),
                    "train_held_memory_ratio": ours["train_held_mib"] / max(peer["train_held_mib"], 1e-9),
                    "train_speedup_interval": train.interval, "train_p_value": train.p_value,
                    "train_verdict": train.verdict,
                    "inference_speedup_interval": speedup_interval(peer["inference_times_s"], ours["inference_times_s"]),
                }
                if dev.type == "cuda":
                    name = torch.cuda.get_device_name(dev)
                    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
                    if peak:
                        for r in rows:
                            flops = 2 * info[r["model"]]["macs"] * batch * 3  # forward + backward ~ 3x forward
                            r["train_fraction_of_bf16_peak"] = flops / r["train_step_s"] / (peak * 1e12)
                entry["settings"][label] = {"rows": rows, "ratios": ratios}
                print(f"[{pair}] {label}: ours/peer inference x{ratios['inference_speedup']:.2f}"
                      f"{interval_text(ratios['inference_speedup_interval'])}, training {train_ratio_text(ratios)} "
                      f"(CPU time x{ratios['train_speedup_cpu_time']:.2f}), "
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
    write_result(results, out, f"bench_{dev.type}.json", "medians of interleaved rounds; the machine may be shared",
           settings=[s[0] for s in settings], repeats=repeats, warmup=warmup)
    return results


def train_ratio_text(ratios: dict[str, Any], bold: bool = False) -> str:
    """The training speed-up ours / peer of one setting's ``ratios`` as text: "x0.98 [0.95, 1.07]
    parity" (interval and verdict where the record has them; the ratio in Markdown bold if ``bold``)."""
    ratio = f"x{ratios['train_speedup']:.2f}"
    verdict = ratios.get("train_verdict")
    return ((f"**{ratio}**" if bold else ratio) + interval_text(ratios.get("train_speedup_interval"))
            + ("" if verdict is None else f" {verdict}"))


def format_results(record: dict[str, Any]) -> str:
    """A Markdown table of a benchmark record (throughputs in images/s, memory in MiB, ratios ours/peer).

    Records written before the held-memory and CPU-time columns existed show "-" there; the speed-ups
    carry their 95 % interval (:func:`~.timing.speedup_interval`) where the record has one.
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
                         f"{interval_text(ra.get('inference_speedup_interval'))} | "
                         f"{train_ratio_text(ra, bold=True)} | "
                         f"{'-' if cpu is None else f'**x{cpu:.2f}** (peer/ours)'} | "
                         f"**x{ra['train_memory_ratio']:.2f}** | {'-' if held is None else f'**x{held:.2f}**'} |")
    return "\n".join(lines)


def pair_summary(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per pair and setting of a benchmark record: the training speed-up ours / peer with its
    95 % interval and verdict, the memory ratios and, on a GPU with a known peak, the fraction of the
    dense bf16 peak FLOP/s our training step reaches (2 x multiply-adds x 3 for forward + backward).

    A shorter view of :func:`format_results` (for chapter 11); throughputs in images/s.
    """
    rows = []
    for pair, entry in record["results"]["pairs"].items():
        for label, s in entry["settings"].items():
            ours, peer = s["rows"]
            ra = s["ratios"]
            row = {"pair": pair, "setting": label, "ours train img/s": round(ours["train_images_per_s"], 1),
                   "peer train img/s": round(peer["train_images_per_s"], 1),
                   "train ours/peer": train_ratio_text(ra),
                   "peak memory ours/peer": f"x{ra['train_memory_ratio']:.2f}"}
            if "train_fraction_of_bf16_peak" in ours:  # a GPU whose peak is known; fp32 rows get "-"
                row["ours: % of bf16 peak"] = (round(100 * ours["train_fraction_of_bf16_peak"], 1)
                                               if ours.get("amp_bf16") else "-")
            rows.append(row)
    return rows
