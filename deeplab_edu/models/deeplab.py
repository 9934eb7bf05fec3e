"""DeepLab v1 (LargeFOV), v2, v3 and v3+ assembled from a backbone and a head.

- :class:`DeepLabV1` (DeepLab v1 sec. 3 and 5, "DeepLab-LargeFOV", Table 2): VGG-16 at output stride 8 with
  fc6 (3x3, rate 12, 1024) and fc7 (1x1, 1024), then fc8 (1x1 classifier).
- :class:`DeepLabV2` (DeepLab v2 sec. 3.2): a backbone at output stride 8 and :class:`ASPPv2`
  (summed per-rate classifiers, rates 6/12/18/24).
- :class:`DeepLabV3` (DeepLabv3 sec. 3.3): a backbone at output stride 16 (train) or 8 (evaluate)
  and :class:`ASPP` (1x1 + three atrous + image pooling, concatenated and projected), then a 1x1
  classifier. ``torchvision_head=True`` adds torchvision's extra 3x3 conv (256, BN, ReLU) before the
  classifier, which the paper does not have.
- :class:`DeepLabV3Plus` (DeepLabv3+ sec. 3): DeepLabv3 as the encoder plus :class:`Decoder`.

Every model follows torchvision's convention: ``model(x)`` returns ``{"out": logits}`` bilinearly
upsampled to the input size (and ``"aux"`` from :class:`FCNHead` when built with ``aux_loss=True``).
Everything outside ``model.backbone`` is "head" (the engine's ``head_lr_mult`` can give it a larger
learning rate; 1 by default, as in DeepLabv3's text).
"""

from __future__ import annotations

from typing import Any, Literal, Sequence, TypedDict, Unpack, cast, overload

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..choices import MODELS, is_whole, unknown_model
from .aspp import ASPP, ASPPv2, atrous_rates_for
from .backbones import BACKBONES, Backbone, build_backbone, check_output_stride
from .heads import Decoder, FCNHead
from .pretrained import PretrainedSource, load_pretrained_state_dict
from .vgg import VGG16Backbone, decimated_fc_weights

__all__ = ["MODELS", "DeepLab", "DeepLabV1", "DeepLabV2", "DeepLabV3", "DeepLabV3Plus", "build_model", "default_atrous_rates"]


def _upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class DeepLab(nn.Module):
    """Common part: run the backbone, compute logits, upsample them to the input size.

    ``model(x)`` returns ``{"out": (N, num_classes, H, W)}`` (and ``"aux"``) as torchvision's
    segmentation models do, so code that *calls* a model (a training loop, the engine,
    :mod:`deeplab_edu.inference`) takes either. The modules inside are this course's, not
    torchvision's: :func:`deeplab_edu.models.interop.from_torchvision` converts a torchvision
    DeepLabv3 with its weights (same outputs), and the last layer is ``model.classifier`` for
    DeepLab v1 and v3, one per rate in ``model.aspp`` for v2 and ``model.decoder.classifier`` for
    v3+ (torchvision's DeepLabv3:
    ``model.classifier[4]``); for another number of classes, ``build_model(..., num_classes=n)``.
    Build one with :func:`build_model`.

    Args:
        backbone: a dense feature extractor returning ``{"out", "low_level", "aux"}``
            (:func:`deeplab_edu.models.build_backbone`), with ``output_stride`` and ``aux_channels``.
        num_classes: classes of the classifier (21 for PASCAL VOC).
        aux_loss: add torchvision's auxiliary FCN head on the ``"aux"`` features (block 3).

    Raises:
        ValueError: ``num_classes`` is not a positive integer.
    """

    def __init__(self, backbone: Backbone, num_classes: int, aux_loss: bool = False) -> None:
        if not is_whole(num_classes) or num_classes < 1:  # an audit: -1 failed deep inside torch
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        num_classes = int(num_classes)
        super().__init__()
        self.backbone = backbone
        self.aspp: ASPP | ASPPv2 | None = None
        self.num_classes = num_classes
        self.aux_classifier = FCNHead(backbone.aux_channels, num_classes) if aux_loss else None
        #: The :func:`build_model` arguments (besides ``num_classes`` and the pretrained weights) that
        #: rebuild this model; ``None`` for a model assembled by hand.
        self.build_kwargs: dict[str, Any] | None = None

    def logits(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Class scores (N, num_classes, h, w) at feature resolution (stride 4 for v3+, the output
        stride otherwise) of the backbone's ``features``.

        Raises:
            NotImplementedError: the subclass does not implement it.
        """
        raise NotImplementedError

    @property
    def output_stride(self) -> int:
        """The backbone's output stride (8, 16 or 32); change it with :meth:`set_output_stride`."""
        return int(self.backbone.output_stride)

    @property
    def atrous_rates(self) -> tuple[int, ...]:
        """The ASPP rates at the current output stride (v1: fc6's rate; none without ASPP)."""
        return tuple(self.aspp.atrous_rates) if self.aspp is not None else ()

    def set_output_stride(self, output_stride: int) -> None:
        """Switch the backbone's dilation and the ASPP rates in place (train at 16, evaluate at 8).

        The rates scale with the feature-map size, e.g. (6, 12, 18) at 16 becomes (12, 24, 36) at 8
        (DeepLabv3 sec. 3.3: the rates double at output stride 8).

        Raises:
            ValueError: ``output_stride`` is not 8, 16 or 32; the backbone cannot give it (VGG-16:
                8 only); or the rates do not scale to whole numbers (v2's rate 6 at 32 would be 1.5).
        """
        check_output_stride(output_stride)
        rates, current = self.atrous_rates if self.aspp is not None else (), self.output_stride
        try:
            new_rates = atrous_rates_for(output_stride, rates, current)
        except ValueError:  # its advice is for building a model: say what this built one can do
            fits = [s for s in (8, 16, 32) if s != current and not any(r * current % s for r in rates)]
            raise ValueError(
                f"this model's atrous_rates {rates} at output stride {current} do not scale to whole rates at output "
                f"stride {output_stride} (each is multiplied by {current}/{output_stride}): "
                + (f"it can switch to output stride {' or '.join(map(str, fits))}" if fits else
                   "it can switch to no other output stride")
                + f", or build it with rates that are multiples of {output_stride // current}"
                f" at output stride {current}") from None
        self.backbone.set_output_stride(output_stride)
        if self.aspp is not None:
            self.aspp.atrous_rates = new_rates

    def check_input_size(self, x: torch.Tensor) -> None:
        """Raise a ValueError, before any layer runs, for an input batch norm cannot train on.

        A batch of one image whose last feature map is 1 x 1 (every side at most the output stride:
        a ResNet or MobileNet halves a side ``s`` to ``ceil(s / 2)`` at each stride) leaves one value
        per channel, which batch norm in training mode cannot normalise. The message names the
        input size, the output stride and the smallest input that works. Models without batch norm
        in training mode (VGG, frozen or synchronised batch norm) are not concerned.

        Raises:
            ValueError: ``x`` (N, 3, H, W) is one image whose last feature map would be 1 x 1.
        """
        n, _, h, w = x.shape
        stride = self.output_stride
        if n != 1 or -(-h // stride) * -(-w // stride) > 1:
            return
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)
                   and m.training for m in self.modules()):
            return
        raise ValueError(
            f"an input of {h}x{w} pixels (HxW) at batch size 1 cannot be trained: at output stride {stride} the "
            "backbone's last feature map is 1x1, and batch norm in training mode cannot normalise a single value "
            f"per channel. The smallest input that works at output stride {stride} is {stride + 1}x{stride + 1} "
            f"(any side longer than {stride} pixels); or use a batch of 2 or more, a smaller output stride, or "
            "evaluation mode (model.eval())."
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits ``{"out": (N, C, H, W)}`` (and ``"aux"``) for images (N, 3, H, W).

        A ``torch.fx`` trace (``torch.fx.symbolic_trace``, torchvision's ``create_feature_extractor``,
        :func:`~deeplab_edu.receptive_field.receptive_field_of`) passes a ``torch.fx.Proxy``, which has no
        shape or dtype to check: the checks below are skipped, and the traced module does not make them.

        Raises:
            TypeError: ``x`` is not a tensor, not floating point (images are normalised floats:
                :func:`deeplab_edu.data.transforms.normalize`), or of another dtype than the weights
                outside autocast.
            ValueError: for a wrong or empty shape, or (training mode) an input too small for batch
                norm at batch size 1 (:meth:`check_input_size`), before the backbone runs.
        """
        if not isinstance(x, fx.Proxy):
            self._check_images(x)
        size = x.shape[-2:]
        features = self.backbone(x)
        result = {"out": _upsample(self.logits(features), size)}
        if self.aux_classifier is not None:
            result["aux"] = _upsample(self.aux_classifier(features["aux"]), size)
        return result

    def _check_images(self, x: torch.Tensor) -> None:
        """Raise :meth:`forward`'s TypeError or ValueError for input ``x`` it cannot take."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a tensor of images (N, 3, H, W), got {type(x).__name__}; from a NumPy (H, W, 3) "
                            "uint8 array: normalize(torch.from_numpy(a).permute(2, 0, 1) / 255)[None] "
                            "(deeplab_edu.data.transforms.normalize)")
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f"expected images of shape (N, 3, H, W) with H, W > 0, got {tuple(x.shape)}")
        weight = next(self.parameters())
        if not x.is_floating_point() or (x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type)):
            raise TypeError(_images_dtype_message(x.dtype, weight.dtype, x.is_floating_point()))
        if self.training:  # (evaluation, and so export, never depends on the batch size)
            self.check_input_size(x)


def _images_dtype_message(got: object, expected: torch.dtype, floating: bool) -> str:
    """The TypeError's message for images of dtype ``got`` (``floating`` point or not) where ``expected`` ones
    belong: the model's check and :func:`~deeplab_edu.models.export.run_onnx` give the same advice (integer pixels
    0-255: ``float() / 255``, then the normalisation)."""
    return (f"expected {expected} images (the weights' dtype; normalised with ImageNet's mean and std: "
            f"deeplab_edu.data.transforms.normalize), got {got}"
            + (f"; x.to({expected})" if floating else "; x.float() / 255 first"))


def _in_channels(module: nn.Module) -> int | None:
    """The channels ``module``'s first convolution takes (``None`` when it has none)."""
    conv = _first_conv(module)
    return conv.in_channels if conv is not None else None


def _first_conv(module: nn.Module) -> nn.Conv2d | None:
    """The first convolution of ``module`` in registration order (``None`` when it has none)."""
    return next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)


def _check_wiring(owner: str, links: Sequence[tuple[str, int | None, str, int | None]]) -> None:
    """Each ``(what gives, channels, what takes, channels)`` link agrees (each phrase ends in its verb),
    else a ValueError naming both ends: a head built for other channels than its backbone gives fails
    here, when the model is assembled, instead of inside a convolution at the first forward pass. A
    side that does not say its channels (``None``: a backbone of one's own without the attribute) is
    not checked."""
    for giver, given, taker, taken in links:
        if given is not None and taken is not None and int(given) != int(taken):
            raise ValueError(f"{owner}: {giver} {given} channels but {taker} {taken}; build the head "
                             f"for the backbone (or use deeplab_edu.models.build_model, which wires them)")


class DeepLabV1(DeepLab):
    """DeepLab-LargeFOV: VGG-16 (output stride 8, fc6 at rate 12, fc7) and the fc8 classifier
    (DeepLab v1 sec. 3 and 5, Table 2).

    Args:
        backbone: :class:`~deeplab_edu.models.vgg.VGG16Backbone` with ``largefov=True`` (fc6, fc7).
        num_classes, aux_loss: as for :class:`DeepLab`.
    """

    backbone: VGG16Backbone
    aspp: None

    def __init__(self, backbone: VGG16Backbone, num_classes: int, aux_loss: bool = False) -> None:
        super().__init__(backbone, num_classes, aux_loss)
        self.classifier = nn.Conv2d(backbone.out_channels, num_classes, 1)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(cast(torch.Tensor, self.classifier.bias))

    @property
    def atrous_rates(self) -> tuple[int, ...]:
        """fc6's atrous rate, as a one-element tuple."""
        return (self.backbone.fc6.dilation[0],)

    def logits(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """fc8 class scores (N, num_classes, h, w) of the fc7 features ``features["out"]``, at the output stride."""
        return self.classifier(features["out"])


class DeepLabV2(DeepLab):
    """DeepLab v2: backbone + ASPP with one classifier per rate, summed (v2 sec. 3.2, Fig. 4; the sum is the
    released model's fusion).

    Args:
        backbone, num_classes, aux_loss: as for :class:`DeepLab`.
        aspp: an :class:`~deeplab_edu.models.aspp.ASPPv2` whose branches end in ``num_classes`` scores.

    Raises:
        ValueError: ``aspp`` takes other channels than the backbone's ``out_channels``, or scores another
            number of classes than ``num_classes``.
    """

    aspp: ASPPv2

    def __init__(self, backbone: Backbone, aspp: ASPPv2, num_classes: int, aux_loss: bool = False) -> None:
        scores = [m for m in aspp.branches[0].modules() if isinstance(m, nn.Conv2d)][-1]  # ASPPv2 has 1+ branch
        _check_wiring("DeepLabV2", [
            ("the backbone gives", getattr(backbone, "out_channels", None), "the ASPP takes", _in_channels(aspp)),
            ("the ASPP scores", scores.out_channels, "the model's num_classes is", num_classes)])
        super().__init__(backbone, num_classes, aux_loss)
        self.aspp = aspp

    def logits(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Class scores (N, num_classes, h, w) at the output stride: the ASPP-v2 branches summed."""
        return self.aspp(features["out"])


class DeepLabV3(DeepLab):
    """DeepLabv3: backbone + ASPP (with image pooling) + 1x1 classifier (DeepLabv3 sec. 3.3).

    Args:
        backbone, num_classes, aux_loss: as for :class:`DeepLab`.
        aspp: an :class:`~deeplab_edu.models.aspp.ASPP`.
        torchvision_head: add the 3x3 conv + BN + ReLU torchvision puts between ASPP and the classifier
            (not in the paper; for exact interchange with ``torchvision.models.segmentation``).

    Raises:
        ValueError: ``aspp`` takes other channels than the backbone's ``out_channels``.
    """

    aspp: ASPP

    def __init__(
        self, backbone: Backbone, aspp: ASPP, num_classes: int, aux_loss: bool = False, torchvision_head: bool = False
    ) -> None:
        _check_wiring("DeepLabV3", [("the backbone gives", getattr(backbone, "out_channels", None), "the ASPP takes",
                                     _in_channels(aspp))])
        super().__init__(backbone, num_classes, aux_loss)
        self.aspp = aspp
        c = aspp.out_channels
        self.refine = (
            nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
            if torchvision_head
            else None
        )
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def logits(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Class scores (N, num_classes, h, w) at the output stride: ASPP, torchvision's 3x3 head if any, 1x1 conv."""
        y = self.aspp(features["out"])
        if self.refine is not None:
            y = self.refine(y)
        return self.classifier(y)


class DeepLabV3Plus(DeepLab):
    """DeepLabv3+: the DeepLabv3 encoder (backbone + ASPP) and the decoder at stride 4 (DeepLabv3+ sec. 3.1, Fig. 2).

    Args:
        backbone, num_classes, aux_loss: as for :class:`DeepLab`; the backbone's ``"low_level"``
            features (stride 4) feed the decoder.
        aspp: an :class:`~deeplab_edu.models.aspp.ASPP` (separable in the paper).
        decoder: a :class:`~deeplab_edu.models.heads.Decoder` producing ``num_classes`` scores.

    Raises:
        ValueError: the channels do not chain: ``aspp`` takes other channels than the backbone's
            ``out_channels``, the decoder's reduction other than its ``low_level_channels``, the decoder
            another ``encoder_channels`` than the ASPP's ``out_channels``, or it scores another number of
            classes than ``num_classes``.
    """

    aspp: ASPP

    def __init__(self, backbone: Backbone, aspp: ASPP, decoder: Decoder, num_classes: int, aux_loss: bool = False) -> None:
        reduce, refine = _first_conv(decoder.reduce), _first_conv(decoder.refine)
        _check_wiring("DeepLabV3Plus", [
            ("the backbone gives", getattr(backbone, "out_channels", None), "the ASPP takes", _in_channels(aspp)),
            ("the backbone's low-level features have", getattr(backbone, "low_level_channels", None),
             "the decoder's reduction takes", reduce.in_channels if reduce is not None else None),
            ("the ASPP gives", aspp.out_channels, "the decoder's encoder_channels are",
             refine.in_channels - reduce.out_channels if refine is not None and reduce is not None else None),
            ("the decoder scores", decoder.classifier.out_channels, "the model's num_classes is", num_classes)])
        super().__init__(backbone, num_classes, aux_loss)
        self.aspp = aspp
        self.decoder = decoder

    def logits(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Class scores (N, num_classes, H/4, W/4): the decoder on the ASPP output and ``features["low_level"]``."""
        return self.decoder(self.aspp(features["out"]), features["low_level"])


def default_atrous_rates(name: str, output_stride: int) -> tuple[int, ...]:
    """The papers' rates: v1 fc6 12 (at 8); v2 (6, 12, 18, 24) at 8; v3/v3+ (6, 12, 18) at 16; v2's and
    v3's scaled to ``output_stride`` (:func:`~deeplab_edu.models.aspp.atrous_rates_for`). v1's 12 is
    returned as it is at any stride (DeepLab-LargeFOV, v1 sec. 5 "Field of View" and Table 2, runs at output stride 8 only).

    Raises:
        ValueError: ``name`` is not one of :data:`~deeplab_edu.choices.MODELS`, ``output_stride`` is not 8, 16
            or 32, or a rate scaled to ``output_stride`` is not a
            whole number of at least 1 (e.g. DeepLab v2's 6 at output stride 32).
    """
    if name not in MODELS:
        raise ValueError(unknown_model(name))
    check_output_stride(output_stride)
    if name == "deeplabv1":
        return (12,)
    if name == "deeplabv2":
        return atrous_rates_for(output_stride, (6, 12, 18, 24), 8)
    return atrous_rates_for(output_stride, (6, 12, 18), 16)


def _integers(values: Sequence[int] | None, name: str) -> tuple[int, ...] | None:
    """``values`` as a tuple of ints (``None`` stays ``None``).

    Raises:
        TypeError: ``values`` is a string, not a sequence, or holds something that is not an integer.
    """
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of integers such as (6, 12, 18), got {values!r}"
                        + (" (the command line's comma-separated form; in Python give a tuple)" if isinstance(values, str)
                           else ""))
    out = []
    for v in values:
        if isinstance(v, bool) or not hasattr(v, "__index__"):
            raise TypeError(f"{name} must be a sequence of integers such as (6, 12, 18), got {values!r}")
        out.append(int(v))
    return tuple(out)


class _ModelOptions(TypedDict, total=False):
    """:func:`build_model`'s keyword arguments (its docstring says what each does), typed once for its
    overloads: a signature of each of them in full made the API page's entry run on (a test's bound)."""

    backbone: str | None
    num_classes: int
    output_stride: int | None
    pretrained_backbone: PretrainedSource
    aux_loss: bool
    atrous_rates: Sequence[int] | None
    multi_grid: Sequence[int] | None
    extra_blocks: int
    image_pooling: bool
    separable: bool | None
    torchvision_head: bool
    dropout: float | None


@overload
def build_model(name: Literal["deeplabv1"], **options: Unpack[_ModelOptions]) -> DeepLabV1: ...
@overload
def build_model(name: Literal["deeplabv2"], **options: Unpack[_ModelOptions]) -> DeepLabV2: ...
@overload
def build_model(name: Literal["deeplabv3"], **options: Unpack[_ModelOptions]) -> DeepLabV3: ...
@overload
def build_model(name: Literal["deeplabv3plus"], **options: Unpack[_ModelOptions]) -> DeepLabV3Plus: ...
@overload
def build_model(name: str, **options: Unpack[_ModelOptions]) -> DeepLab: ...


def build_model(
    name: str,
    *,
    backbone: str | None = None,
    num_classes: int = 21,
    output_stride: int | None = None,
    pretrained_backbone: PretrainedSource = False,
    aux_loss: bool = False,
    atrous_rates: Sequence[int] | None = None,
    multi_grid: Sequence[int] | None = None,
    extra_blocks: int = 0,
    image_pooling: bool = True,
    separable: bool | None = None,
    torchvision_head: bool = False,
    dropout: float | None = None,
) -> DeepLab:
    """Build a DeepLab model: ``model(x)["out"]`` gives logits (N, num_classes, H, W) for x (N, 3, H, W).

    The logits are at the input's size (bilinearly upsampled, as torchvision's segmentation models),
    for any H and W; x is normalised as in training (ImageNet mean and std). A type checker sees the
    class a literal name builds (``build_model("deeplabv3")`` is a :class:`DeepLabV3`, with its
    ``classifier``); a name held in a ``str`` variable gives :class:`DeepLab`.

    Args:
        name: ``"deeplabv1"``, ``"deeplabv2"``, ``"deeplabv3"`` or ``"deeplabv3plus"``.
        backbone: ``"resnet50"`` (default), ``"resnet101"``, ``"tiny_resnet"`` (the course's small
            ResNet for CPU training: basic units, fewer and narrower, 3.9 M parameters; no
            pretrained weights: :class:`~deeplab_edu.models.backbones.TinyResNetBackbone`), ``"mobilenet_v3_large"``, or ``"vgg16"``
            (v1 needs it and defaults to it; v2 accepts it: "ASPP-L" branches with fc6/fc7/fc8, whose
            fc6/fc7 start from ImageNet's decimated fc layers when ``pretrained_backbone`` is given).
        num_classes: classes to score (21 for PASCAL VOC).
        output_stride: 8, 16 or 32; default 8 for v1/v2 and 16 for v3/v3+ (as in the papers).
        pretrained_backbone: ``True`` for torchvision's ImageNet weights, or a path to a local copy.
        aux_loss: add torchvision's auxiliary FCN head; the output then has ``"aux"`` too.
        atrous_rates: ASPP rates at ``output_stride`` (default: :func:`default_atrous_rates`); v3/v3+ take an
            empty one (ASPP's 1x1 branch and image pooling alone, an ablation).
        multi_grid: ResNet block-4 unit rates, e.g. ``(1, 2, 4)`` (DeepLabv3 sec. 3.2.1, multi-grid).
        extra_blocks: number of extra ResNet blocks (0-3: blocks 5, 6, 7), copies of block 4 appended
            without striding (DeepLabv3 sec. 3.2, "going deeper").
        image_pooling: v3/v3+: include ASPP's image-level branch.
        separable: v3/v3+: depthwise-separable convs in ASPP (and decoder); default True for v3+.
        torchvision_head: v3: add torchvision's extra 3x3 conv before the classifier.
        dropout: dropout after the ASPP projection (default 0.1; torchvision uses 0.5).

    Raises:
        ValueError: an unknown name or backbone, a ``num_classes`` that is not a positive integer, a
            combination the papers do not define (e.g. deeplabv1 without vgg16), an output stride
            the backbone cannot give (vgg16: 8 only), or bad rates; a ``pretrained_backbone`` file
            that holds no state dict or whose weights do not fit.
        TypeError: ``atrous_rates`` or ``multi_grid`` is not a sequence of integers (e.g. the string
            ``"6,12,18"``), or ``aux_loss``, ``image_pooling``, ``separable`` or ``torchvision_head`` is
            not a bool.
        FileNotFoundError: ``pretrained_backbone`` is a path with no file.
        PretrainedWeightsUnavailable: ``pretrained_backbone=True`` and the download failed (offline);
            the message says how to pass a local copy.
    """
    if name not in MODELS:
        raise ValueError(unknown_model(name))
    for flag, value in (("aux_loss", aux_loss), ("image_pooling", image_pooling), ("separable", separable),
                        ("torchvision_head", torchvision_head)):
        if not isinstance(value, bool) and not (flag == "separable" and value is None):
            raise TypeError(f"{flag} must be True or False, got {value!r}")
    atrous_rates, multi_grid = _integers(atrous_rates, "atrous_rates"), _integers(multi_grid, "multi_grid")
    if not is_whole(num_classes) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)  # 1: one score per pixel (a sigmoid's); this package's training and predict
    # take a softmax over classes and refuse it (an object against its background is num_classes=2)
    backbone = backbone or ("vgg16" if name == "deeplabv1" else "resnet50")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    if name == "deeplabv1" and backbone != "vgg16":
        raise ValueError(f"deeplabv1 (LargeFOV) is built on backbone='vgg16', got backbone={backbone!r}")
    if name in ("deeplabv3", "deeplabv3plus") and backbone == "vgg16":
        raise ValueError(f"{name} needs a ResNet or MobileNetV3 backbone, not 'vgg16'")
    if separable and name not in ("deeplabv3", "deeplabv3plus"):
        raise ValueError(f"separable=True applies to deeplabv3/deeplabv3plus, not {name!r}")
    if torchvision_head and name != "deeplabv3":
        raise ValueError("torchvision_head=True applies to deeplabv3 only")
    if name in ("deeplabv1", "deeplabv2") and (not image_pooling or dropout is not None):
        raise ValueError(f"image_pooling and dropout are settings of the ASPP of deeplabv3/deeplabv3plus; "
                         f"{name} has none (got image_pooling={image_pooling}, dropout={dropout})")
    build_kwargs = {"name": name, "backbone": backbone, "output_stride": output_stride, "aux_loss": aux_loss,
                    "atrous_rates": None if atrous_rates is None else list(atrous_rates),
                    "multi_grid": None if multi_grid is None else list(multi_grid),
                    "extra_blocks": extra_blocks, "image_pooling": image_pooling, "separable": separable,
                    "torchvision_head": torchvision_head, "dropout": dropout}
    if output_stride is None:
        output_stride = 8 if name in ("deeplabv1", "deeplabv2") else 16
    check_output_stride(output_stride, allowed=(8,) if backbone == "vgg16" else (8, 16, 32), what=backbone)
    rates = tuple(int(r) for r in atrous_rates) if atrous_rates is not None else default_atrous_rates(name, output_stride)
    ablation = name in ("deeplabv3", "deeplabv3plus")  # no rate: ASPP's 1x1 branch (and image pooling) alone
    if (not rates and not ablation) or min(rates, default=1) < 1:  # (an audit: ASPP documents it, and this refused it)
        raise ValueError(f"atrous_rates must be positive integers{'' if ablation else f' (at least one for {name})'}, "
                         f"got {atrous_rates!r}")

    bb_kwargs: dict = {}
    vgg_state = None
    if backbone == "vgg16":
        bb_kwargs["largefov"] = name == "deeplabv1"
        if name == "deeplabv2":  # the ASPP-L branches need ImageNet's fc6/fc7 too: load once, use twice
            vgg_state = load_pretrained_state_dict("vgg16", pretrained_backbone)
            pretrained_backbone = False
    body = build_backbone(
        backbone, output_stride=output_stride, multi_grid=multi_grid, extra_blocks=extra_blocks,
        pretrained=pretrained_backbone, **bb_kwargs,
    )
    if name == "deeplabv1":
        if len(rates) != 1:
            raise ValueError(f"deeplabv1 has one atrous rate (fc6), got atrous_rates={rates}")
        if rates[0] != 12:
            from .aspp import set_conv_rate

            set_conv_rate(cast(nn.Conv2d, body.fc6), rates[0])
        model: DeepLab = DeepLabV1(cast(VGG16Backbone, body), num_classes, aux_loss)
    elif name == "deeplabv2":
        hidden = 1024 if backbone == "vgg16" else None
        aspp_v2 = ASPPv2(body.out_channels, num_classes, rates, hidden_channels=hidden)
        if vgg_state is not None:
            cast(VGG16Backbone, body).load_torchvision_state_dict(vgg_state)
            aspp_v2.load_fc_weights(decimated_fc_weights(vgg_state))
        model = DeepLabV2(body, aspp_v2, num_classes, aux_loss)
    else:
        sep = bool(separable) if separable is not None else name == "deeplabv3plus"
        aspp = ASPP(body.out_channels, rates, image_pooling=image_pooling, separable=sep,
                    dropout=0.1 if dropout is None else dropout)
        if name == "deeplabv3":
            model = DeepLabV3(body, aspp, num_classes, aux_loss, torchvision_head)
        else:
            decoder = Decoder(body.low_level_channels, aspp.out_channels, num_classes, separable=sep)
            model = DeepLabV3Plus(body, aspp, decoder, num_classes, aux_loss)
    model.build_kwargs = build_kwargs  # what a checkpoint records to rebuild it (engine.trainer)
    return model
