"""Dense feature extractors: backbones whose output stride is 32, 16 or 8.

A classification network reduces its input by its *output stride* (32 for ResNet). DeepLab keeps
the feature maps dense by removing the last strides and dilating every later 3x3 convolution by the
same factor, so the receptive field and the weights stay those of the classifier (DeepLab v2
sec. 3.1; DeepLabv3 sec. 3.1-3.2). What this module implements:

- ResNet-50/101 at output stride 32, 16 or 8: torchvision's ``replace_stride_with_dilation``
  convention (the first unit of a dilated block keeps the previous rate, the others use the new one);
- **multi-grid** (DeepLabv3 sec. 3.2.1): the three units of block 4 use ``rate * multi_grid[i]``,
  e.g. ``(1, 2, 4)`` at output stride 16 gives rates ``(2, 4, 8)``;
- **going deeper** (DeepLabv3 sec. 3.2, Fig. 3): ``extra_blocks`` copies of block 4 (blocks 5-7) appended
  without striding, each doubling the atrous rate of the one before (multi-grid applies to them too);
- MobileNetV3-Large (the laptop backbone; torchvision's DeepLabv3 uses it at output stride 16);
- VGG-16 for DeepLab v1 LargeFOV (:mod:`deeplab_edu.models.vgg`).

Every backbone's ``forward`` returns ``{"out": high-level features, "low_level": stride-4 features,
"aux": block 3's features for an auxiliary head (ResNet: at stride 16, or the output stride when it
is 8; MobileNetV3, VGG-16: see their classes)}`` and has the attributes
``out_channels``, ``low_level_channels``, ``aux_channels`` and ``output_stride``; it can switch its
output stride in place with ``set_output_stride`` (train at 16, evaluate at 8: DeepLabv3 sec. 4.2-4.3,
Tables 4 and 6, and appendix Table 10; sec. 4.1 fine-tunes at 8).
"""

from __future__ import annotations

import contextlib
import weakref
from typing import TYPE_CHECKING, Any, Iterator, Literal, Mapping, Sequence, TypeVar, cast, overload

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, resnet50, resnet101
from torchvision.models.resnet import BasicBlock

from ..choices import BACKBONES, OUTPUT_STRIDES, is_whole
from .aspp import _positive_int
from .pretrained import PretrainedSource, load_pretrained_state_dict, load_weights_into

if TYPE_CHECKING:  # vgg imports this module: build_backbone imports VGG16Backbone when it builds one
    from .vgg import VGG16Backbone

__all__ = ["BACKBONES", "OUTPUT_STRIDES", "Backbone", "at_output_stride", "ResNetBackbone", "TinyResNetBackbone", "MobileNetV3Backbone",
           "build_backbone", "check_output_stride"]

#: The backbones built like ResNet (blocks 1-4, multi-grid and extra blocks apply).
RESNETS = ("resnet50", "resnet101", "tiny_resnet")

# the module type at_output_stride gives back: a type checker sees a DeepLabV3 stay a DeepLabV3
_M = TypeVar("_M", bound=nn.Module)


def check_output_stride(output_stride: int, allowed: Sequence[int] = OUTPUT_STRIDES, what: str = "") -> int:
    """Return ``output_stride`` if allowed, else raise a ValueError naming the argument (and ``what``
    builds at these strides only, e.g. ``"DeepLab's VGG-16"``).

    Raises:
        ValueError: ``output_stride`` is not one of ``allowed``.
    """
    if not is_whole(output_stride) or output_stride not in allowed:
        choices = f"one of {', '.join(map(str, allowed))}" if len(allowed) > 1 else str(allowed[0])
        raise ValueError(f"output_stride must be {choices}{' for ' + what if what else ''}, got {output_stride!r}")
    return int(output_stride)  # a NumPy integer as a Python int


@contextlib.contextmanager
def at_output_stride(model: _M, output_stride: int | None) -> Iterator[_M]:
    """Run a block with ``model`` (a DeepLab model or a backbone) at ``output_stride``, then restore
    the output stride it had, also when the block raises. ``None``, or the stride it has: nothing
    changes. DeepLabv3 sec. 4 trains at output stride 16 and evaluates at 8.

    >>> from deeplab_edu.models import build_model
    >>> model = build_model("deeplabv3", backbone="tiny_resnet", num_classes=3).eval()
    >>> with at_output_stride(model, 8):
    ...     logits = model(torch.zeros(1, 3, 64, 64))["out"]
    ...     print(model.output_stride)
    8
    >>> model.output_stride, tuple(logits.shape)
    (16, (1, 3, 64, 64))

    Raises:
        ValueError: ``model`` has no ``set_output_stride`` (naming its class), or ``output_stride``
            is not one it accepts.
    """
    if output_stride is None or getattr(model, "output_stride", None) == output_stride:
        yield model
        return
    if not hasattr(model, "set_output_stride"):
        own = _measured_output_stride(model)
        if own == output_stride:  # torchvision's DeepLabv3 at its own stride: nothing to change
            yield model
            return
        name = f"{type(model).__module__}.{type(model).__qualname__}"
        raise ValueError(f"{name} cannot change its output stride (it has no set_output_stride)"
                         + (f"; it runs at {own}: evaluate it there, or with output_stride None" if own else ""))
    switchable = cast(Any, model)
    original = switchable.output_stride
    switchable.set_output_stride(output_stride)
    try:
        yield model
    finally:
        switchable.set_output_stride(original)


#: The strides :func:`_measured_output_stride` measured, per model: ``inference.evaluate`` enters
#: :func:`at_output_stride` once per batch (through ``predict_probs``), which would run the backbone again each time.
_MEASURED_STRIDES: weakref.WeakKeyDictionary[nn.Module, int | None] = weakref.WeakKeyDictionary()


def _measured_output_stride(model: nn.Module, side: int = 64) -> int | None:
    """The output stride of a model with a torchvision-style ``backbone`` (returning ``{"out": features}``),
    measured once per model on a ``side`` x ``side`` zero image in eval mode; ``None`` when it has none or it
    cannot be run."""
    if model in _MEASURED_STRIDES:
        return _MEASURED_STRIDES[model]
    from ..inference import eval_mode, unwrap_out

    body = getattr(model, "backbone", None)
    param = next(model.parameters(), None)
    stride: int | None = None
    if body is not None and param is not None:
        try:
            with torch.no_grad(), eval_mode(model):
                features = body(torch.zeros(1, 3, side, side, device=param.device, dtype=param.dtype))
            height = int(unwrap_out(features).shape[-2])
            stride = side // height if height and side % height == 0 else None
        except Exception:  # not an image backbone after all: the stride is not known
            stride = None
    _MEASURED_STRIDES[model] = stride
    return stride


def _set_conv(conv: nn.Conv2d, *, stride: int | None = None, dilation: int | None = None) -> None:
    """Change a conv's stride and/or dilation in place, keeping 'same' padding."""
    if stride is not None:
        conv.stride = (stride, stride)
    if dilation is not None:
        conv.dilation = (dilation, dilation)
        k = conv.kernel_size[0]
        conv.padding = ((k - 1) // 2 * dilation,) * 2


class Backbone(nn.Module):
    """What a DeepLab model asks of its backbone (the module docstring): the attributes below, a
    ``forward`` returning ``{"out", "low_level", "aux"}`` and :meth:`set_output_stride`. The
    backbones here derive from it; it declares, it computes nothing.
    """

    #: channels of ``"out"``, the high-level features (ASPP's input).
    out_channels: int
    #: channels of ``"low_level"``, the stride-4 features (the DeepLabv3+ decoder's input).
    low_level_channels: int
    #: channels of ``"aux"``, the features an auxiliary head reads.
    aux_channels: int
    #: input side / ``"out"`` side: 8, 16 or 32.
    output_stride: int

    def set_output_stride(self, output_stride: int) -> None:
        """Switch the strides and dilations in place to ``output_stride`` (no weights change).

        Raises:
            NotImplementedError: the subclass does not implement it.
            ValueError: ``output_stride`` is not one this backbone supports (in the subclasses).
        """
        raise NotImplementedError


class ResNetBackbone(Backbone):
    """A torchvision ResNet-50/101 without its classifier, at output stride 32, 16 or 8.

    Args:
        depth: 50 or 101.
        output_stride: 32 (the classifier), 16 or 8.
        multi_grid: unit rates of blocks 4-7, e.g. ``(1, 2, 4)``; ``None`` keeps torchvision's
            convention (first unit of a dilated block at the previous rate).
        extra_blocks: number of extra blocks (0-3: blocks 5, 6, 7) for "going deeper".
        state_dict: torchvision ImageNet weights to load (``None``: random initialisation).

    Raises:
        ValueError: ``output_stride`` is not 8, 16 or 32; ``depth`` is not 50 or 101; ``extra_blocks`` is not an
            int from 0 to 3; ``state_dict`` does not fit the network; or ``multi_grid`` does not hold one rate per
            unit of block 4 (three), or holds a rate below 1.
    """

    low_level_channels = 256
    aux_channels = 1024
    out_channels = 2048

    def __init__(
        self,
        depth: int = 50,
        output_stride: int = 16,
        multi_grid: Sequence[int] | None = None,
        extra_blocks: int = 0,
        state_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        check_output_stride(output_stride)
        if depth not in (50, 101):
            raise ValueError(f"depth must be 50 or 101, got {depth!r}")
        if not is_whole(extra_blocks) or not 0 <= extra_blocks <= 3:  # True refused, NumPy's integers taken (an audit)
            raise ValueError(f"extra_blocks must be 0, 1, 2 or 3 (blocks 5-7), got {extra_blocks!r}")
        extra_blocks = int(extra_blocks)
        flags = [output_stride <= 4, output_stride <= 8, output_stride <= 16]
        net = (resnet50 if depth == 50 else resnet101)(weights=None, replace_stride_with_dilation=flags)
        if state_dict is not None:
            load_weights_into(net, state_dict, f"resnet{depth}")
        self.depth = depth
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.extra = nn.ModuleList(self._new_block() for _ in range(extra_blocks))
        self.multi_grid: tuple[int, ...] | None = None
        self.output_stride = output_stride
        self.set_output_stride(output_stride, multi_grid=multi_grid)

    def _new_block(self) -> nn.Sequential:
        """A copy of block 4's shape (its units, same width), freshly initialised."""
        unit = type(self.layer4[-1])
        width = self.out_channels // unit.expansion
        block = nn.Sequential(*(unit(self.out_channels, width) for _ in range(len(self.layer4))))
        for m in block.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        return block

    @staticmethod
    def _unit_convs(unit: nn.Module) -> tuple[nn.Conv2d, list[nn.Conv2d]]:
        """A unit's strided conv and its 3x3 convs (dilated together): ``conv2`` in a bottleneck
        unit (torchvision strides its 3x3 conv), ``conv1`` and ``conv2`` in a basic unit."""
        if isinstance(unit, BasicBlock):
            return unit.conv1, [unit.conv1, unit.conv2]
        conv2 = cast(nn.Conv2d, unit.conv2)  # a torchvision Bottleneck
        return conv2, [conv2]

    def block_rates(self) -> list[tuple[int, ...]]:
        """The dilation of every unit's 3x3 conv, per block (layer1..layer4, then extra blocks)."""
        layers = [self.layer1, self.layer2, self.layer3, self.layer4, *self.extra]
        return [tuple(unit.conv2.dilation[0] for unit in layer) for layer in layers]

    def set_output_stride(self, output_stride: int, *, multi_grid: Sequence[int] | None | str = "keep") -> None:
        """Switch strides and dilations in place (no weights change).

        ``multi_grid="keep"`` keeps the unit rates given before; pass ``None`` to remove them.

        Raises:
            ValueError: ``output_stride`` is not 8, 16 or 32, or ``multi_grid`` (the kept one with ``"keep"``) does
                not hold one rate per unit of block 4, or holds a rate that is not a whole number of at least 1.
        """
        check_output_stride(output_stride)
        if multi_grid == "keep":
            multi_grid = self.multi_grid
        if multi_grid is not None:
            rates = tuple(multi_grid) if not isinstance(multi_grid, (str, bytes)) else ()  # type: ignore[arg-type]
            if not rates or not all(_positive_int(r) for r in rates):  # an audit: (1, 2.7, 4) was cut to (1, 2, 4)
                raise ValueError(f"multi_grid needs {len(self.layer4)} whole unit rates such as (1, 2, 4) (one per unit "
                                 f"of block 4), got {multi_grid!r}")
            multi_grid = tuple(int(r) for r in rates)
            if len(multi_grid) != len(self.layer4):  # (each rate is at least 1: checked above)
                raise ValueError(
                    f"multi_grid needs {len(self.layer4)} positive unit rates (one per unit of block 4), got {multi_grid}"
                )
        dilation = 1
        current = 4  # after the stem: conv1 (stride 2) and max pooling (stride 2)
        for layer in (self.layer2, self.layer3, self.layer4):
            previous = dilation
            if current < output_stride:
                stride, current = 2, current * 2
            else:
                stride, dilation = 1, dilation * 2
            for i, unit in enumerate(layer):
                rate = previous if i == 0 else dilation
                if layer is self.layer4 and multi_grid is not None:
                    rate = dilation * multi_grid[i]
                strided, convs = self._unit_convs(unit)
                _set_conv(strided, stride=stride if i == 0 else 1)
                for conv in convs:
                    _set_conv(conv, dilation=rate)
                unit.stride = stride if i == 0 else 1
                if i == 0 and unit.downsample is not None:
                    _set_conv(unit.downsample[0], stride=stride)
        for block in self.extra:  # going deeper: every extra block doubles the rate
            dilation *= 2
            for i, unit in enumerate(cast(nn.Sequential, block)):
                for conv in self._unit_convs(unit)[1]:
                    _set_conv(conv, dilation=dilation * (multi_grid[i] if multi_grid is not None else 1))
        self.multi_grid = multi_grid  # type: ignore[assignment]
        self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """An (N, 3, H, W) image -> ``{"out": (N, out_channels, H/os, W/os), "low_level": (N,
        low_level_channels, H/4, W/4), "aux": block 3's output (N, aux_channels, H/16 or, at output
        stride 8, H/8, ...)}`` (``aux_channels``: 1024 for ResNet-50/101, 128 for tiny_resnet; sides
        rounded up; ``os`` the output stride; blocks 5-7, when any, follow block 4 in ``out``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        aux = self.layer3(self.layer2(low))
        out = self.layer4(aux)
        for block in self.extra:
            out = block(out)
        return {"out": out, "low_level": low, "aux": aux}


class TinyResNetBackbone(ResNetBackbone):
    """A teaching-scale ResNet that trains from scratch on a laptop CPU in minutes.

    It is built exactly like :class:`ResNetBackbone` (a stride-4 stem, blocks 1-4 at strides 4, 8,
    16 and 32, the same output-stride switch, multi-grid and going deeper), so everything the
    course teaches about dilated ResNets holds for it, with three differences from the papers'
    ResNet-101 (He et al. 2016, the backbone of DeepLab v2/v3/v3+), all for speed on a CPU:

    - *basic* units (two 3x3 convs, as in ResNet-18/34) instead of bottlenecks (1x1, 3x3, 1x1);
      in a dilated block both 3x3 convs of a unit get the unit's rate;
    - units per block ``(1, 1, 2, 3)`` instead of ``(3, 4, 23, 3)``; block 4 keeps three units so
      that multi-grid ``(1, 2, 4)`` applies unit by unit as in DeepLabv3 sec. 3.2.1;
    - widths ``(w, 2w, 4w, 8w)`` with ``w = 32`` (256 output channels) instead of 256-2048;
      the stem is one 3x3 stride-2 conv (ResNet: 7x7) and the max pooling.

    No ImageNet weights exist for it: it always starts from random weights. 3.9 M parameters
    (ResNet-101 without its classifier: 42.5 M); DeepLabv3 on it has 6.1 M for 8 classes,
    DeepLabv3+ 4.7 M (its ASPP and decoder use separable convolutions).

    Args:
        output_stride: 32, 16 or 8.
        multi_grid: unit rates of block 4 (three numbers), e.g. ``(1, 2, 4)``.
        extra_blocks: 0-3 extra copies of block 4 ("going deeper", DeepLabv3 sec. 3.2, Fig. 3).
        width: channels of block 1 (blocks 2-4 double it each time).
        units: units per block.

    Raises:
        ValueError: ``output_stride`` is not 8, 16 or 32; ``extra_blocks`` is not an int from 0 to 3; ``units``
            does not hold four counts of at least 1; or ``multi_grid`` does not hold one rate per unit of block 4
            (``units[3]``), or holds a rate below 1.
    """

    def __init__(
        self,
        output_stride: int = 16,
        multi_grid: Sequence[int] | None = None,
        extra_blocks: int = 0,
        *,
        width: int = 32,
        units: Sequence[int] = (1, 1, 2, 3),
    ) -> None:
        nn.Module.__init__(self)
        check_output_stride(output_stride)
        if not is_whole(extra_blocks) or not 0 <= extra_blocks <= 3:  # True refused, NumPy's integers taken (an audit)
            raise ValueError(f"extra_blocks must be 0, 1, 2 or 3 (blocks 5-7), got {extra_blocks!r}")
        extra_blocks = int(extra_blocks)
        if len(units) != 4 or min(units) < 1:
            raise ValueError(f"units needs four positive unit counts (blocks 1-4), got {tuple(units)}")
        self.depth = 2 + 2 * sum(units)  # weighted layers, counted as ResNet counts them
        widths = [width * 2**i for i in range(4)]
        self.conv1 = nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        layers = []
        channels = width
        for i, (w, n) in enumerate(zip(widths, units)):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or channels != w:
                down = nn.Sequential(nn.Conv2d(channels, w, 1, stride=stride, bias=False), nn.BatchNorm2d(w))
            layer = [BasicBlock(channels, w, stride, down)] + [BasicBlock(w, w) for _ in range(n - 1)]
            layers.append(nn.Sequential(*layer))
            channels = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.low_level_channels, self.aux_channels, self.out_channels = widths[0], widths[2], widths[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.extra = nn.ModuleList(self._new_block() for _ in range(extra_blocks))
        self.multi_grid = None
        self.output_stride = output_stride
        self.set_output_stride(output_stride, multi_grid=multi_grid)


class MobileNetV3Backbone(Backbone):
    """torchvision's MobileNetV3-Large feature extractor at output stride 32, 16 or 8.

    Dilation follows torchvision's ``dilated=True`` convention: in a stage that no longer strides,
    every depthwise conv (the first one included) uses the doubled rate. ``aux`` is the output of
    the first stride-8 block, as in torchvision's ``deeplabv3_mobilenet_v3_large``; ``low_level`` is
    the end of the stride-4 stage (24 channels).

    Args:
        output_stride: 8, 16 or 32 (DeepLabv3 sec. 3.1).
        state_dict: torchvision ``mobilenet_v3_large`` ImageNet weights to load.

    Raises:
        ValueError: ``output_stride`` is not 8, 16 or 32, or ``state_dict`` does not fit the network.
    """

    def __init__(self, output_stride: int = 16, state_dict: Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        check_output_stride(output_stride)
        net = mobilenet_v3_large(weights=None)
        if state_dict is not None:
            load_weights_into(net, state_dict, "mobilenet_v3_large")
        self.features = net.features
        reductions = [i for i, b in enumerate(self.features) if getattr(b, "_is_cn", False)]
        self.low_level_index = reductions[1] - 1  # last block at stride 4
        self.aux_index = reductions[1]  # torchvision's aux position (first block at stride 8)
        self.low_level_channels = self.features[self.low_level_index].out_channels
        self.aux_channels = self.features[self.aux_index].out_channels
        self.out_channels = self.features[-1].out_channels
        self.output_stride = output_stride
        self.set_output_stride(output_stride)

    def set_output_stride(self, output_stride: int) -> None:
        """Switch the depthwise convs' strides and dilations in place.

        Raises:
            ValueError: ``output_stride`` is not 8, 16 or 32.
        """
        check_output_stride(output_stride)
        current, dilation = 2, 1  # the stem strides by 2
        for block in list(self.features)[1:-1]:
            if block._is_cn:
                if current < output_stride:
                    current *= 2
                else:
                    dilation *= 2
            depthwise = next(m[0] for m in block.block
                             if isinstance(m, nn.Sequential) and isinstance(m[0], nn.Conv2d) and m[0].groups > 1)
            _set_conv(depthwise, stride=2 if block._is_cn and dilation == 1 else 1, dilation=dilation)
        self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """An (N, 3, H, W) image -> ``{"out": (N, out_channels, H/os, W/os), "low_level": the last
        stride-4 block, "aux": the first stride-8 block}`` (sides rounded up; ``os`` the output stride)."""
        feats: dict[str, torch.Tensor] = {}
        for i, block in enumerate(self.features):
            x = block(x)
            if i == self.low_level_index:
                feats["low_level"] = x
            if i == self.aux_index:
                feats["aux"] = x
        feats["out"] = x
        return feats


# the class a literal name builds, for type checkers (its keyword arguments, documented below, are checked as it builds)
@overload
def build_backbone(name: Literal["resnet50", "resnet101"], **options: Any) -> ResNetBackbone: ...
@overload
def build_backbone(name: Literal["tiny_resnet"], **options: Any) -> TinyResNetBackbone: ...
@overload
def build_backbone(name: Literal["mobilenet_v3_large"], **options: Any) -> MobileNetV3Backbone: ...
@overload
def build_backbone(name: Literal["vgg16"], **options: Any) -> VGG16Backbone: ...
@overload
def build_backbone(name: str, **options: Any) -> Backbone: ...


def build_backbone(
    name: str,
    *,
    output_stride: int | None = None,
    multi_grid: Sequence[int] | None = None,
    extra_blocks: int = 0,
    pretrained: PretrainedSource = False,
    **kwargs: object,
) -> Backbone:
    """Build backbone ``name`` at ``output_stride`` (see the module docstring for what it returns).
    A type checker sees the class a literal name builds (``build_backbone("resnet50")`` is a
    :class:`ResNetBackbone`, with ``block_rates``); a name held in a ``str`` gives :class:`Backbone`.

    Args:
        name: ``"resnet50"``, ``"resnet101"``, ``"tiny_resnet"`` (the course's CPU backbone, no
            pre-trained weights), ``"mobilenet_v3_large"`` or ``"vgg16"``.
        output_stride: 8, 16 or 32 (VGG-16 LargeFOV: 8 only); ``None`` gives the usual one
            (16, and 8 for VGG-16).
        multi_grid: ResNet only: unit rates of block 4 (and of the extra blocks), e.g. ``(1, 2, 4)``.
        extra_blocks: ResNet only: 0-3 extra blocks (5-7) with doubling rates ("going deeper").
        pretrained: ``True`` for torchvision's ImageNet weights, or a path to a local copy.
        **kwargs: ``largefov`` for VGG-16 (default True: include fc6/fc7 of DeepLab-LargeFOV).

    Raises:
        ValueError: an unknown name or output stride, ``multi_grid`` / ``extra_blocks`` for a backbone
            that is not a ResNet (or ``extra_blocks`` outside 0-3), ``pretrained`` for ``tiny_resnet``,
            or a weights file that cannot be read or does not fit the backbone.
        TypeError: a keyword argument the backbone does not take.
        FileNotFoundError: ``pretrained`` names a file that does not exist.
        ~deeplab_edu.models.pretrained.PretrainedWeightsUnavailable: ``pretrained=True`` offline,
            with no cached copy of torchvision's weights (the message says where to put one).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if name not in RESNETS and (multi_grid is not None or extra_blocks):
        raise ValueError(f"multi_grid and extra_blocks apply to ResNet backbones only, not {name!r}")
    allowed = {"vgg16": {"largefov"}}.get(name, set())
    unknown = set(kwargs) - allowed
    if unknown:
        raise TypeError(f"build_backbone({name!r}) got unexpected arguments: {', '.join(sorted(unknown))}")
    if output_stride is None:
        output_stride = 8 if name == "vgg16" else 16
    check_output_stride(output_stride, allowed=(8,) if name == "vgg16" else OUTPUT_STRIDES)
    if name == "tiny_resnet":
        if pretrained:
            raise ValueError("tiny_resnet has no pre-trained weights: it is trained from scratch (pretrained=False)")
        return TinyResNetBackbone(output_stride, multi_grid, extra_blocks)
    state = load_pretrained_state_dict(name, pretrained)
    if name.startswith("resnet"):
        return ResNetBackbone(int(name[6:]), output_stride, multi_grid, extra_blocks, state)
    if name == "mobilenet_v3_large":
        return MobileNetV3Backbone(output_stride, state)
    from .vgg import VGG16Backbone

    return VGG16Backbone(output_stride, largefov=bool(kwargs.get("largefov", True)), state_dict=state)
