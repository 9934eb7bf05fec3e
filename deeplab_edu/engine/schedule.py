"""The "poly" learning-rate policy (DeepLabv2 sec. 4.1, DeepLabv3 sec. 4.1) and an optional larger rate for
the head.

DeepLab v2 and v3 use the *poly* policy:

.. math::  \\mathrm{lr}(t) = \\mathrm{lr}_0 \\left(1 - \\frac{t}{T}\\right)^{p},\\qquad p = 0.9,

for iteration :math:`t` of :math:`T`. An optional linear warm-up ramps the rate from
``warmup_factor * lr_0`` to the poly value over the first ``warmup_iters`` iterations (useful with
large batches or mixed precision; not in the papers). The newly added layers (everything that is
not ``model.backbone``) may use a larger rate, ``head_lr_mult`` times the base rate (a common choice
for freshly initialised layers on a pre-trained backbone; DeepLab v1/v2's released Caffe models gave
their final classifier ten times the rate, DeepLabv3's text uses no such factor, so the default is 1).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from ..choices import OPTIMIZERS

__all__ = ["OPTIMIZERS", "poly_factor", "PolyLR", "param_groups", "build_optimizer", "load_optimizer_state"]



def poly_factor(iteration: int, max_iter: int, power: float = 0.9, warmup_iters: int = 0,
                warmup_factor: float = 0.1) -> float:
    """Multiplier of the base learning rate at ``iteration`` (0-based) of ``max_iter``: DeepLab's
    "poly" policy ``(1 - t / max_iter) ** power`` (DeepLab v2 sec. 4.1, DeepLabv3 sec. 4.1), with
    ``t`` clipped to ``[0, max_iter]`` (0 from ``max_iter`` on). During a linear warm-up
    (``t < warmup_iters``) it is multiplied by ``warmup_factor + (1 - warmup_factor) * t / warmup_iters``.

    Raises:
        ValueError: ``max_iter`` is not positive.
    """
    if max_iter <= 0:
        raise ValueError(f"max_iter must be positive, got {max_iter}")
    t = min(max(iteration, 0), max_iter)
    factor = (1.0 - t / max_iter) ** power
    if warmup_iters > 0 and t < warmup_iters:
        alpha = t / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


class PolyLR(torch.optim.lr_scheduler.LambdaLR):
    """``LambdaLR`` with :func:`poly_factor`; call ``step()`` once per optimiser step.

    Raises:
        ValueError: ``warmup_iters`` is negative or greater than ``max_iter``, or ``max_iter`` is not positive.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_iter: int, power: float = 0.9,
                 warmup_iters: int = 0, warmup_factor: float = 0.1, last_epoch: int = -1) -> None:
        if warmup_iters < 0 or warmup_iters > max_iter:
            raise ValueError(f"warmup_iters must be in [0, max_iter={max_iter}], got {warmup_iters}")
        self.max_iter, self.power = max_iter, power
        self.warmup_iters, self.warmup_factor = warmup_iters, warmup_factor
        super().__init__(optimizer, self._factor, last_epoch=last_epoch)

    def _factor(self, it: int) -> float:
        return poly_factor(it, self.max_iter, self.power, self.warmup_iters, self.warmup_factor)

    def state_dict(self) -> dict[str, Any]:  # the lambda itself is not picklable; keep numbers only
        """The scheduler's attributes (``last_epoch``, ``base_lrs``, ``max_iter``, ...) without ``lr_lambdas``."""
        return {k: v for k, v in super().state_dict().items() if k != "lr_lambdas"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the attributes saved by :meth:`state_dict`, this schedule's settings included.

        The optimiser's learning rates are not set; :meth:`resume` continues under this schedule instead.
        """
        state = dict(state_dict)
        state.pop("lr_lambdas", None)
        self.__dict__.update(state)

    def resume(self, state_dict: dict[str, Any]) -> None:
        """Continue from ``state_dict``'s iteration under *this* schedule (``max_iter``, power,
        warm-up, base rates), setting the optimiser's learning rates for that iteration: a resumed
        run may be longer, or use another base rate, than the one that saved the state."""
        own = {k: self.__dict__[k] for k in ("max_iter", "power", "warmup_iters", "warmup_factor", "base_lrs")}
        self.load_state_dict(state_dict)
        self.__dict__.update(own)
        self._last_lr = [base * self._factor(self.last_epoch) for base in self.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


def param_groups(model: nn.Module, *, lr: float, weight_decay: float, head_lr_mult: float = 1.0,
                 no_decay_norm: bool = False) -> list[dict[str, Any]]:
    """Parameter groups: the backbone at ``lr`` and the head (everything else) at ``lr * head_lr_mult``.

    Args:
        model: a model with a ``.backbone`` attribute (every deeplab_edu model has one).
        no_decay_norm: if true, biases and normalisation weights (every parameter of one dimension) get no
            weight decay, as in TF DeepLab (``TrainConfig.weight_decay_norm_and_bias=False``).

    Raises:
        ValueError: if ``head_lr_mult != 1`` and the model has no ``backbone``.
    """
    backbone = getattr(model, "backbone", None)
    if backbone is None and head_lr_mult != 1.0:
        raise ValueError(f"{type(model).__name__} has no .backbone, so head_lr_mult={head_lr_mult} cannot apply")
    bb_ids = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        part = "backbone" if id(p) in bb_ids or backbone is None else "head"
        decay = not (no_decay_norm and p.ndim <= 1)
        groups.setdefault((part, decay), []).append(p)
    out = []
    for (part, decay), params in groups.items():
        out.append({
            "params": params, "name": f"{part}{'' if decay else '_no_decay'}",
            "lr": lr * (head_lr_mult if part == "head" else 1.0),
            "weight_decay": weight_decay if decay else 0.0,
        })
    return out


def build_optimizer(name: str, groups: list[dict[str, Any]], *, lr: float, momentum: float = 0.9,
                    weight_decay: float = 1e-4,
                    implementation: Literal["auto", "fused", "foreach"] = "auto") -> torch.optim.Optimizer:
    """The optimiser of a run, over the groups of :func:`param_groups`.

    - ``"sgd"``: SGD with momentum, the papers' optimiser (DeepLab v2 sec. 4 and 4.1.1; DeepLabv3 does not repeat it),
      made for fine-tuning an ImageNet-initialised backbone over tens of thousands of iterations.
    - ``"adamw"``: AdamW (Loshchilov & Hutter 2019; ``momentum`` is its beta1). Not in the papers:
      the course's ``cpu`` profile uses it for short runs *from scratch*, where it needs no search
      for a learning rate; chapter 08's learnability table trains both, one run each, and cannot
      rank them (within a point after 6 minutes). ``weight_decay`` is then decoupled, as AdamW
      defines it.

    Both use PyTorch's *fused* implementation (each parameter updated in one pass; on a GPU a few
    kernel launches instead of one per operation) when all parameters are floating-point tensors
    on the CPU or a CUDA GPU, and the default multi-tensor ("foreach") one elsewhere: the same
    update to rounding, and on this course's CPU, at one thread, a step is 2.8x (SGD) and 3.5x
    (AdamW) faster for DeepLabv3+-ResNet-50's 26.7 M parameters (``benchmarks/optimizer_step.py``,
    ``benchmarks/README.md``). Build the optimiser after moving the model to its device. The fused
    CPU kernels assume each gradient has its parameter's strides, which autograd guarantees; a
    gradient assigned by hand to a ``channels_last`` parameter must be ``channels_last`` too.
    ``implementation="fused"`` or ``"foreach"`` asks for one of the two (the benchmark compares them).

    Raises:
        ValueError: for an unknown ``name`` or ``implementation``.
    """
    if implementation not in ("auto", "fused", "foreach"):
        raise ValueError(f"implementation must be 'auto', 'fused' or 'foreach', got {implementation!r}")
    if implementation == "auto":
        impl = {"fused": True} if _fused_supported(groups) else {}  # else PyTorch's default
    else:
        impl = {implementation: True}
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, **impl)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay, **impl)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def _fused_supported(groups: list[dict[str, Any]]) -> bool:
    """Whether PyTorch's fused SGD/AdamW kernels take every parameter of ``groups``."""
    params = [p for g in groups for p in g["params"]]
    return bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load the per-parameter state of ``state`` (momentum buffers, Adam's moments and step counts)
    into ``optimizer``, keeping every option of ``optimizer``'s parameter groups.

    PyTorch's ``load_state_dict`` restores the saved groups' options too: the hyperparameters (so a
    resumed run could not change its learning rate or weight decay) and the implementation
    (``fused``, ``foreach``: a checkpoint written without the fused kernels, by older code or on
    another device, would silently switch them off). Here they are taken from ``optimizer`` before
    loading, so the saved state is also placed where that implementation expects it (AdamW's step
    counts on the parameters' device for the fused kernels).

    Raises:
        ValueError: from PyTorch, if ``state`` has other parameter groups or sizes.
        KeyError: ``state`` is not an optimiser state dict (no ``"param_groups"``).
    """
    groups = [{**saved, **{k: v for k, v in g.items() if k != "params"}}
              for saved, g in zip(state["param_groups"], optimizer.param_groups)]
    optimizer.load_state_dict({**state, "param_groups": groups + state["param_groups"][len(groups):]})
