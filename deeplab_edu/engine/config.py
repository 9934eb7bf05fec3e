"""The training configuration: one dataclass, filled from defaults, a YAML preset and flags.

Presets live in ``deeplab_edu/presets/*.yaml`` (the papers' recipes and the course profiles
``smoke``/``cpu``/``gpu``); :func:`load_config` merges defaults < preset/YAML file < overrides and
:func:`validate` rejects impossible combinations with a message that names the setting.
The defaults follow DeepLabv3 sec. 4.1 where the paper states them: poly learning rate (power 0.9)
from 0.007, crop 513, batch 16, 30K iterations, random scale 0.5-2.0, output stride 16 for training
and 8 for evaluation. SGD momentum 0.9 and weight decay 1e-4 are the usual values; the paper's
text does not fix them.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = ["TrainConfig", "ConfigError", "PRESETS_DIR", "list_presets", "load_config", "preset_summary", "validate",
           "resolve_atrous_rates"]

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"

MODELS = ("deeplabv1", "deeplabv2", "deeplabv3", "deeplabv3plus")
BACKBONES = ("resnet50", "resnet101", "tiny_resnet", "mobilenet_v3_large", "vgg16")


class ConfigError(ValueError):
    """A setting (or combination of settings) that cannot work; the message names it."""


@dataclass
class TrainConfig:
    """Everything a training run needs. Field names are the CLI flags (``--crop-size`` for ``crop_size``)."""

    # model
    model: str = "deeplabv3"
    backbone: str = "resnet50"
    output_stride: int = 16
    eval_output_stride: int | None = 8
    pretrained_backbone: bool | str = False  # True: torchvision's ImageNet weights (online); or a local .pth file
    aux_loss: bool = False
    atrous_rates: str = "paper"  # "paper", "fit" (to the training crop's feature map) or "r1,r2,r3"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # data
    dataset: str = "procedural"
    difficulty: str = "hard"  # procedural scenes only: "easy", "medium" or "hard" (data.procedural.DIFFICULTIES)
    data_root: str | None = None
    download: bool = False
    image_size: int = 256
    train_length: int = 2000
    val_length: int = 100
    crop_size: int = 513
    scale_range: tuple[float, float] = (0.5, 2.0)
    pad_to_crop: bool = True  # pad crops with the ignore label when needed; False: smaller images give smaller crops
    batch_size: int = 16
    num_workers: int | None = None  # None: from the machine's cores (engine.workers.default_num_workers)
    # optimisation (DeepLabv3 sec. 4.1)
    iterations: int = 30000
    optimizer: str = "sgd"
    lr: float = 0.007
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    warmup_iters: int = 0
    head_lr_mult: float = 1.0
    grad_accum: int = 1
    freeze_bn: bool = False
    init_from: str | None = None
    # loss
    aux_weight: float = 0.5
    top_k: float = 1.0
    hard_mining_iters: int = 0
    # speed
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    device: str | None = None
    # separable convs recompute their depthwise half in backward: less memory, a few % more time
    recompute_depthwise: bool = True
    keep_freed_memory: bool = True  # on the CPU with glibc: reuse freed memory (engine.allocator)
    # bookkeeping
    seed: int = 0
    deterministic: bool = False
    out_dir: str = "runs/deeplab"
    eval_every: int = 1000
    ckpt_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    resume: bool = False
    tensorboard: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        # path settings (out_dir, data_root, init_from, ...) accept any os.PathLike; kept as str (JSON, YAML)
        for f in dataclasses.fields(self):
            if isinstance(getattr(self, f.name), os.PathLike):
                setattr(self, f.name, os.fspath(getattr(self, f.name)))
        # input files and folders as absolute paths: a checkpoint's config is read again by eval,
        # predict and --resume, maybe from another working directory (out_dir stays as given)
        for name in ("data_root", "init_from", "pretrained_backbone"):
            value = getattr(self, name)
            if isinstance(value, str) and value:
                setattr(self, name, os.path.abspath(os.path.expanduser(value)))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["scale_range"] = list(self.scale_range)
        return {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in d.items()}


def list_presets() -> list[str]:
    """Names of the YAML presets shipped with the package."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_summary(name: str) -> str:
    """The first sentence of a shipped preset's header comment (what ``train --list-presets`` shows).

    Raises ConfigError for a name that is not in :func:`list_presets`.
    """
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(list_presets())}")
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip())
    text = " ".join(header)
    end = re.search(r"\.(?=\s+[A-Z]|\s*$)", text)  # "sec. 4.1" and "et al. 2017" do not end it
    return text[: end.end()] if end else text


def _read_yaml(source: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(source)
    if not path.suffix and not path.exists():
        path = PRESETS_DIR / f"{source}.yaml"
        if not path.exists():
            raise ConfigError(f"unknown preset {source!r}; available: {', '.join(list_presets())}")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} should hold a mapping of settings, not {type(data).__name__}")
    return data


def load_config(preset: str | Path | None = None, overrides: Mapping[str, Any] | None = None, *,
                config: str | Path | None = None) -> TrainConfig:
    """Defaults, then the preset (a name from :func:`list_presets` or a YAML path), then the YAML file
    ``config``, then ``overrides``: each level overrides the ones before it.

    ``load_config("cpu", config="mine.yaml")`` is the ``cpu`` preset with the settings of
    ``mine.yaml`` on top (``deeplab-edu train --preset cpu --config mine.yaml``). Path settings
    (``out_dir``, ``data_root``, ``init_from``, ``pretrained_backbone``) accept any ``os.PathLike``;
    they are stored as ``str``, so the configuration stays JSON-serialisable.

    Raises :class:`ConfigError` for an unknown preset, a missing file, a file that is not a mapping,
    an unknown setting, or settings that cannot work together (:func:`validate`).
    """
    merged: dict[str, Any] = {}
    for source in (preset, config):
        if source is not None:
            merged.update(_read_yaml(source))
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(merged) - names)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    if "scale_range" in merged:
        merged["scale_range"] = tuple(float(s) for s in merged["scale_range"])
    cfg = TrainConfig(**merged)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Raise :class:`ConfigError` for settings that cannot work together."""
    if cfg.model not in MODELS:
        raise ConfigError(f"unknown model {cfg.model!r}; choose one of {', '.join(MODELS)}")
    if cfg.backbone not in BACKBONES:
        raise ConfigError(f"unknown backbone {cfg.backbone!r}; choose one of {', '.join(BACKBONES)}")
    for name in ("output_stride", "eval_output_stride"):
        os_ = getattr(cfg, name)
        if os_ is None:
            continue
        if os_ not in (4, 8, 16, 32):
            raise ConfigError(f"{name}={os_} is not an output stride; use 8, 16 or 32")
        if os_ == 4 and cfg.backbone.startswith("resnet"):
            raise ConfigError(
                f"{name}=4 with {cfg.backbone}: the ResNet stem (a stride-2 convolution and a stride-2 "
                "max pooling) already reaches stride 4 before any block can be dilated; the smallest "
                "output stride of a dilated ResNet is 8"
            )
        if os_ == 4:
            raise ConfigError(f"{name}=4 is not supported by {cfg.backbone}; use 8 or 16")
    if cfg.model == "deeplabv1" and cfg.backbone != "vgg16":
        raise ConfigError(f"deeplabv1 (LargeFOV) is built on vgg16, not {cfg.backbone}")
    if cfg.model in ("deeplabv3", "deeplabv3plus") and cfg.backbone == "vgg16":
        raise ConfigError(f"{cfg.model} needs a ResNet or MobileNetV3 backbone, not vgg16")
    if cfg.backbone == "vgg16":
        for name in ("output_stride", "eval_output_stride"):
            if getattr(cfg, name) not in (None, 8):
                raise ConfigError(f"{name}={getattr(cfg, name)} with vgg16: DeepLab's VGG-16 (v1/v2) is built "
                                  "at output stride 8 only (pool4/pool5 have stride 1, fc6 is atrous)")
    if cfg.atrous_rates not in ("paper", "fit"):
        try:
            rates = [int(r) for r in str(cfg.atrous_rates).split(",")]
        except ValueError:
            rates = []
        if not rates or min(rates) < 1:
            raise ConfigError(f"atrous_rates={cfg.atrous_rates!r}; use 'paper', 'fit' or positive integers like '2,4,6'")
    if not isinstance(cfg.pretrained_backbone, (bool, str)):
        raise ConfigError(f"pretrained_backbone={cfg.pretrained_backbone!r}; use true (ImageNet weights, downloaded "
                          "once), false, or the path of a local .pth file holding torchvision's weights")
    if isinstance(cfg.pretrained_backbone, str) and not Path(cfg.pretrained_backbone).expanduser().is_file():
        raise ConfigError(f"pretrained_backbone={cfg.pretrained_backbone!r}: no such file")
    if cfg.difficulty not in ("easy", "medium", "hard"):
        raise ConfigError(f"difficulty={cfg.difficulty!r}; the procedural scenes come as easy, medium or hard")
    if cfg.optimizer not in ("sgd", "adamw"):
        raise ConfigError(f"optimizer={cfg.optimizer!r}; use sgd (the papers') or adamw (short runs from scratch)")
    if cfg.amp not in ("none", "bf16", "fp16"):
        raise ConfigError(f"amp={cfg.amp!r}; use none, bf16 or fp16")
    if cfg.crop_size < 16:
        raise ConfigError(f"crop_size={cfg.crop_size} is too small; use at least 16 pixels")
    if cfg.batch_size == 1 and not cfg.freeze_bn and cfg.crop_size <= cfg.output_stride:
        raise ConfigError(
            f"crop_size={cfg.crop_size} with batch_size=1 at output_stride={cfg.output_stride}: the last feature map "
            "is 1x1 and batch norm cannot train on a single value per channel; use crop_size of at least "
            f"{cfg.output_stride + 1}, a batch of 2 or more, or a smaller output_stride"
        )
    # pad_to_crop off: crops of images smaller than crop_size keep their own (smaller) size, so a batch
    # of several can only be stacked when every crop is known to be whole
    if not cfg.pad_to_crop and cfg.batch_size > 1 and cfg.dataset == "procedural":
        if cfg.crop_size > cfg.image_size * cfg.scale_range[0]:
            raise ConfigError(
                f"crop_size={cfg.crop_size} is larger than the smallest rescaled image "
                f"({cfg.image_size} x {cfg.scale_range[0]}) and pad_to_crop is off, so crops would differ in size "
                f"and a batch of {cfg.batch_size} could not be stacked; enable pad_to_crop (pads with the ignore "
                "label, as DeepLab does), use a smaller crop or scale range, or batch_size=1"
            )
    elif not cfg.pad_to_crop and cfg.batch_size > 1:
        raise ConfigError(
            f"pad_to_crop is off with dataset={cfg.dataset!r} and batch_size={cfg.batch_size}: the images of that "
            "data set are not all known to be larger than the crop, and unpadded crops of smaller ones would "
            "differ in size and could not be stacked into a batch; enable pad_to_crop, or use batch_size=1 "
            "(grad_accum for a larger effective batch)"
        )
    for name in ("batch_size", "iterations", "grad_accum", "eval_every", "ckpt_every", "keep_last", "log_every"):
        if int(getattr(cfg, name)) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if not 0 < cfg.top_k <= 1:
        raise ConfigError(f"top_k={cfg.top_k}: the fraction of hardest pixels kept must be in (0, 1]")
    lo, hi = cfg.scale_range
    if not 0 < lo <= hi:
        raise ConfigError(f"scale_range={cfg.scale_range} should be (min, max) with 0 < min <= max")
    if cfg.warmup_iters > cfg.iterations:
        raise ConfigError(f"warmup_iters={cfg.warmup_iters} is longer than the run ({cfg.iterations} iterations); "
                          f"shorten it (--warmup-iters) or train longer (--iterations)")
    if cfg.lr <= 0:
        raise ConfigError(f"lr must be positive, got {cfg.lr}")
    if cfg.num_workers is not None and (isinstance(cfg.num_workers, bool) or not isinstance(cfg.num_workers, int)
                                        or cfg.num_workers < 0):
        raise ConfigError(f"num_workers={cfg.num_workers!r}; use 0 (load in the main process), a positive number "
                          "of worker processes, or leave it unset (from the machine's cores)")


#: The crop (pixels) and output stride each paper chose its ASPP rates for: DeepLabv3/v3+ (6, 12, 18)
#: for 513 crops at output stride 16 (DeepLabv3 sec. 3.3, 4.1); DeepLab v2 (6, 12, 18, 24) for 321
#: crops at output stride 8 (DeepLab v2 sec. 4.1).
PAPER_RATE_SETTING = {"deeplabv2": ((6, 12, 18, 24), 321, 8), "deeplabv3": ((6, 12, 18), 513, 16),
                      "deeplabv3plus": ((6, 12, 18), 513, 16)}


def resolve_atrous_rates(cfg: TrainConfig, *, warn: bool = True) -> tuple[int, ...] | None:
    """The ASPP rates a run trains with at ``cfg.output_stride`` (``None``: DeepLab v1, no ASPP).

    ``"paper"``: the paper's rates (scaled to the output stride); ``"fit"``: rates that use the
    training crop's feature map as the paper's rates use the paper's
    (:func:`deeplab_edu.models.aspp.fit_atrous_rates`); ``"r1,r2,..."``: these rates.

    With the paper's rates on a crop so small that a branch becomes exactly 1x1 (rate >= the
    feature-map side: DeepLabv3 sec. 3.3, Fig. 4), a ``UserWarning`` names the crop, the map and
    the rates, and suggests ``atrous_rates="fit"``.
    """
    import warnings

    from ..models.aspp import degenerate_rates, feature_map_side, fit_atrous_rates
    from ..models.deeplab import default_atrous_rates

    if cfg.model not in PAPER_RATE_SETTING:
        return None
    if "atrous_rates" in cfg.model_kwargs:
        raise ConfigError("give the ASPP rates as atrous_rates (a setting of its own), not inside model_kwargs")
    side = feature_map_side(cfg.crop_size, cfg.output_stride)
    if cfg.atrous_rates == "fit":
        base, crop, stride = PAPER_RATE_SETTING[cfg.model]
        return fit_atrous_rates(side, base, feature_map_side(crop, stride))
    if cfg.atrous_rates == "paper":
        rates = default_atrous_rates(cfg.model, cfg.output_stride)
        flat = degenerate_rates(side, rates)
        if flat and warn:
            base, crop, stride = PAPER_RATE_SETTING[cfg.model]
            fitted = fit_atrous_rates(side, base, feature_map_side(crop, stride))
            warnings.warn(
                f"crop_size={cfg.crop_size} at output_stride={cfg.output_stride} gives a {side} x {side} feature "
                f"map, so the ASPP branches at rates {flat} of {rates} are exactly 1 x 1 (every off-centre tap "
                f"reads padding; DeepLabv3 sec. 3.3). Use atrous_rates='fit' (rates {fitted}) or a crop of at "
                f"least {cfg.output_stride * (max(rates) + 1)} pixels.", UserWarning, stacklevel=2)
        return rates
    return tuple(int(r) for r in str(cfg.atrous_rates).split(","))
