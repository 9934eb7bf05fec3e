"""Parameters and multiply-adds of every DeepLab model at 513 x 513, next to the published figures.

Multiply-adds are counted by :func:`deeplab_edu.complexity.count_macs` from a forward pass. To make
the count instant even for ResNet-101 at output stride 8, the model and the input live on PyTorch's
``meta`` device: every operation computes only output *shapes*, which is all the counter needs
(the count is the same as on real tensors; ``tests/test_models_summary.py`` checks it).

Published figures: the only multiply-add counts the DeepLab papers publish for these architectures
are in DeepLabv3+ Table 3 (ResNet-101 encoder, 513 x 513 PASCAL VOC crops: eval output stride 32,
16, 8, without and with the decoder). The other papers give none, and we show none for them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..complexity import count_macs, count_parameters
from .deeplab import build_model


__all__ = ["trace_stages", "aspp_branch_costs", "ModelConfig", "DEFAULT_CONFIGS", "PUBLISHED_GMACS", "model_cost", "complexity_table"]


@dataclass(frozen=True)
class ModelConfig:
    """One row of the table: the arguments of :func:`deeplab_edu.models.build_model`.

    Attributes:
        name: the model, e.g. ``"deeplabv3"`` or ``"deeplabv3plus"``.
        backbone: e.g. ``"resnet101"``.
        output_stride: 8, 16 or 32 (DeepLabv3 sec. 3.1).
        kwargs: further build arguments, e.g. ``{"atrous_rates": (6, 12, 18)}``.
    """

    name: str
    backbone: str
    output_stride: int
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The row label ``"name / backbone / OS n"``, with the extra build arguments in parentheses if any."""
        extra = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.name} / {self.backbone} / OS {self.output_stride}" + (f" ({extra})" if extra else "")


#: The models :func:`complexity_table` measures by default: each DeepLab version with the papers'
#: backbones and output strides.
DEFAULT_CONFIGS: tuple[ModelConfig, ...] = (
    ModelConfig("deeplabv1", "vgg16", 8),
    ModelConfig("deeplabv2", "vgg16", 8),
    ModelConfig("deeplabv2", "resnet101", 8),
    ModelConfig("deeplabv3", "resnet101", 32),
    ModelConfig("deeplabv3", "resnet101", 16),
    ModelConfig("deeplabv3", "resnet101", 8),
    ModelConfig("deeplabv3plus", "resnet101", 32, {"separable": False}),
    ModelConfig("deeplabv3plus", "resnet101", 16, {"separable": False}),
    ModelConfig("deeplabv3plus", "resnet101", 8, {"separable": False}),
    ModelConfig("deeplabv3plus", "resnet101", 16),
    ModelConfig("deeplabv3", "resnet50", 16),
    ModelConfig("deeplabv3plus", "resnet50", 16),
    ModelConfig("deeplabv3", "mobilenet_v3_large", 16),
    ModelConfig("deeplabv3plus", "mobilenet_v3_large", 16),
    ModelConfig("deeplabv3", "tiny_resnet", 16),
    ModelConfig("deeplabv3plus", "tiny_resnet", 16),
)

#: (model, backbone, eval output stride) -> (GMACs, source). DeepLabv3+ Table 3, ResNet-101, 513 x 513.
PUBLISHED_GMACS: dict[tuple[str, str, int], tuple[float, str]] = {
    ("deeplabv3", "resnet101", 32): (52.43, "DeepLabv3+ Table 3"),
    ("deeplabv3", "resnet101", 16): (81.02, "DeepLabv3+ Table 3"),
    ("deeplabv3", "resnet101", 8): (276.18, "DeepLabv3+ Table 3"),
    ("deeplabv3plus", "resnet101", 32): (74.20, "DeepLabv3+ Table 3"),
    ("deeplabv3plus", "resnet101", 16): (101.28, "DeepLabv3+ Table 3"),
    ("deeplabv3plus", "resnet101", 8): (297.92, "DeepLabv3+ Table 3"),
}


def model_cost(config: ModelConfig, size: int | tuple[int, int] = 513, num_classes: int = 21) -> tuple[int, int]:
    """``(parameters, multiply-adds)`` of one model for one 3-channel image of ``size`` (batch 1).

    Counted on the meta device (no memory, no weights: seconds even for ResNet-101 at 513 px);
    multiply-adds as :func:`~deeplab_edu.complexity.count_macs` counts them (convolutions and matrix
    products). ``size`` is a side or ``(height, width)`` in pixels; ``num_classes`` sizes the
    classifier (21: PASCAL VOC, as the papers' tables).

    Raises:
        ValueError: an unknown model or backbone, or arguments it rejects (``build_model``).
    """
    h, w = (size, size) if isinstance(size, int) else size
    with torch.device("meta"):
        model = build_model(
            config.name, backbone=config.backbone, output_stride=config.output_stride, num_classes=num_classes,
            **config.kwargs,
        ).eval()
        x = torch.empty(1, 3, h, w)
    return count_parameters(model), count_macs(model, x)


def complexity_table(
    configs: Sequence[ModelConfig] = DEFAULT_CONFIGS, size: int = 513, num_classes: int = 21
) -> list[dict[str, Any]]:
    """One row per model: label, parameters (M), GMACs at ``size``, and the published GMACs where any.

    A published figure is attached only to the matching configuration of DeepLabv3+ Table 3
    (ResNet-101, regular 3x3 convs, 513 x 513).
    """
    rows = []
    for cfg in configs:
        params, macs = model_cost(cfg, size, num_classes)
        key = (cfg.name, cfg.backbone, cfg.output_stride)
        published = PUBLISHED_GMACS.get(key) if size == 513 and not cfg.kwargs.get("separable", False) else None
        if cfg.name == "deeplabv3plus" and "separable" not in cfg.kwargs:
            published = None  # the default v3+ is separable; Table 3's ResNet-101 rows are not
        rows.append(
            {
                "model": cfg.label,
                "params (M)": round(params / 1e6, 2),
                "GMACs": round(macs / 1e9, 2),
                "published GMACs": published[0] if published else None,
                "source": published[1] if published else "none published",
            }
        )
    return rows



def aspp_branch_costs(aspp: torch.nn.Module, in_channels: int, size: int) -> list[dict[str, Any]]:
    """Parameters and multiply-adds of every branch of an ASPP (v2 or v3) on a ``size x size`` map.

    Works for :class:`~deeplab_edu.models.aspp.ASPP` (branches ``convs`` plus the ``project``
    1x1 conv) and :class:`~deeplab_edu.models.aspp.ASPPv2` (branches ``branches``). Counted on a
    meta-device copy, so it is instant.
    """
    meta: Any = copy.deepcopy(aspp).to("meta").eval()  # duck-typed: ours or any module with these parts
    x = torch.empty(1, in_channels, size, size, device="meta")
    parts: list[tuple[str, torch.nn.Module, torch.Tensor]] = []
    if hasattr(meta, "convs"):
        from ..viz.aspp import branch_names

        for name, branch in zip(branch_names(meta), meta.convs):
            parts.append((name, branch, x))
        cat = torch.empty(1, meta.project[0].in_channels, size, size, device="meta")
        parts.append(("projection", meta.project, cat))
    else:
        for branch in meta.branches:
            parts.append((f"rate {branch[0].dilation[0]} classifier", branch, x))
    return [
        {"branch": name, "params": count_parameters(module), "MACs (M)": round(count_macs(module, inp) / 1e6, 1)}
        for name, module, inp in parts
    ]


def trace_stages(model: torch.nn.Module, images: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """The tensor shapes along a DeepLab model's forward pass, stage by stage (no gradients).

    For DeepLabv3: backbone features, ASPP output, logits at the output stride, upsampled logits.
    For DeepLabv3+: also the low-level features, their 48-channel reduction and the decoder's
    concatenation. The stages are computed by the model's own modules, in the model's order, in
    evaluation mode (the model's mode is restored; batch-norm statistics are not touched).
    ``images`` (N, 3, H, W); returns ``(stage name, shape)`` pairs, the input's first.

    Raises:
        TypeError: ``model`` is not a DeepLabv3 or v3+ (it needs a ``backbone``, an ``aspp`` and a
            ``classifier`` or ``decoder``: DeepLab v1 and v2 have no ASPP module of that kind).
    """
    import torch.nn.functional as F

    from ..inference import eval_mode

    stages: list[tuple[str, tuple[int, ...]]] = [("input", tuple(images.shape))]
    net: Any = model  # duck-typed: any model with a backbone, an aspp and a classifier or decoder
    missing = [name for name in ("backbone", "aspp") if getattr(net, name, None) is None]
    if missing or not (hasattr(net, "decoder") or hasattr(net, "classifier")):
        raise TypeError(f"trace_stages follows DeepLabv3 and v3+ (a backbone, an aspp and a classifier or decoder); "
                        f"this {type(model).__name__} has no {', '.join(missing) or 'classifier or decoder'}")
    with torch.no_grad(), eval_mode(model):
        feats = net.backbone(images)
        stages.append((f"backbone 'out' (output stride {net.output_stride})", tuple(feats["out"].shape)))
        enc = net.aspp(feats["out"])
        stages.append(("ASPP", tuple(enc.shape)))
        if hasattr(net, "decoder"):
            dec = net.decoder
            low = feats["low_level"]
            stages.append(("backbone 'low_level' (stride 4)", tuple(low.shape)))
            reduced = dec.reduce(low)
            stages.append(("low-level reduced (1x1 conv)", tuple(reduced.shape)))
            up = F.interpolate(enc, size=low.shape[-2:], mode="bilinear", align_corners=False)
            cat = torch.cat([up, reduced], dim=1)
            stages.append(("ASPP upsampled + concatenated", tuple(cat.shape)))
            refined = dec.refine(cat)
            stages.append(("two 3x3 convs", tuple(refined.shape)))
            logits = dec.classifier(refined)
        else:
            if getattr(net, "refine", None) is not None:
                enc = net.refine(enc)
            logits = net.classifier(enc)
        stages.append(("logits", tuple(logits.shape)))
        stages.append(("logits upsampled to the input", tuple(net(images)["out"].shape)))
    return stages
