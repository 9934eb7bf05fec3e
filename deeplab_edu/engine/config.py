"""The training configuration: one dataclass, filled from defaults, a YAML preset and flags.

Presets live in ``deeplab_edu/presets/*.yaml`` (the papers' recipes and the course profiles
``smoke``/``cpu``/``gpu``); :func:`load_config` merges defaults < preset/YAML file < overrides and
:func:`validate` rejects impossible combinations with a message that names the setting.
The defaults follow DeepLabv3 sec. 4.1 where the paper states them: poly learning rate (power 0.9)
from 0.007, crop 513, batch 16, 30K iterations, random scale 0.5-2.0, output stride 16 for training
and 8 for evaluation. SGD with momentum 0.9 is DeepLab v2's (sec. 4.1.1); DeepLabv3's text fixes
neither momentum nor weight decay (1e-4, the usual value for ResNets, is the default here).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..choices import (BACKBONES, MODELS, OPTIMIZERS, OUTPUT_STRIDES, dataset_name, require_packages,
                       unknown_model)

__all__ = ["TrainConfig", "ConfigError", "PRESETS_DIR", "COMPILE_MODES", "MODEL_DEFAULTS", "list_presets",
           "load_config", "preset_summary", "validate", "resolve_atrous_rates", "PROCEDURAL_ONLY", "run_of_config",
           "flag_of", "file_settings", "normalised_settings", "missing_pretrained_file"]

#: The folder of the preset YAML files (``deeplab_edu/presets``: ``cpu.yaml``, ...) that
#: :func:`load_config` finds by name.
PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
#: ``torch.compile`` modes ``TrainConfig.compile_mode`` accepts.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


#: Settings in which a model's paper differs from :class:`TrainConfig`'s (DeepLabv3's) defaults;
#: :func:`load_config` uses them where neither the preset, the YAML file nor the overrides set the
#: setting. DeepLab v1 (LargeFOV) is VGG-16 at output stride 8 (DeepLab v1 sec. 3.1); DeepLab v2
#: trains and evaluates at output stride 8 too (DeepLab v2 sec. 3.1, 4.1).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "deeplabv1": {"backbone": "vgg16", "output_stride": 8, "eval_output_stride": 8},
    "deeplabv2": {"output_stride": 8, "eval_output_stride": 8},
}


class ConfigError(ValueError):
    """A setting (or combination of settings) that cannot work; the message names it."""


def flag_of(setting: str) -> str:
    """The command-line flag of a setting (a :class:`TrainConfig` field, or any argument's name):
    ``flag_of("crop_size")`` is ``"--crop-size"``."""
    return "--" + setting.replace("_", "-")


@dataclass
class TrainConfig:
    """Everything a training run needs. Field names are the CLI flags (``--crop-size`` for ``crop_size``).

    The defaults are DeepLabv3's recipe (sec. 4.1: 513-pixel crops, batch 16, a learning rate of 0.007
    with the poly schedule, 30k iterations; SGD with momentum 0.9 is DeepLab v2's, sec. 4.1.1); the
    presets (:func:`list_presets`) change them for a laptop or a GPU. :func:`validate` checks a configuration and raises :class:`ConfigError` naming the setting.
    Sizes are in pixels, lengths in images, schedules in iterations (optimiser steps). Each field's
    meaning is the comment above it in the source, which the API reference shows and ``deeplab-edu
    train --help`` prints as the flag's help (``help(TrainConfig)`` lists only the names and defaults).
    """

    # model
    #: ``"deeplabv1"``, ``"deeplabv2"``, ``"deeplabv3"`` or ``"deeplabv3plus"`` (:data:`~deeplab_edu.choices.MODELS`).
    model: str = "deeplabv3"
    #: ``"resnet50"``, ``"resnet101"``, ``"tiny_resnet"``, ``"mobilenet_v3_large"`` or ``"vgg16"`` (v1/v2;
    #: :func:`load_config` makes it DeepLab v1's ``vgg16`` for ``model="deeplabv1"``).
    backbone: str = "resnet50"
    #: Output stride in training: 8, 16 or 32 (v1/v2 on VGG-16: 8; :func:`load_config` makes it 8
    #: for v1 and v2, as their papers, unless it is set).
    output_stride: int = 16
    #: Output stride for validation and evaluation (``None``: the training one). DeepLabv3 trains at
    #: 16 and evaluates at 8 (its Tables 4 and 6, for the cascaded model and for ASPP).
    eval_output_stride: int | None = 8
    #: ``True``: torchvision's ImageNet weights (downloaded once); a path: a local ``.pth`` copy; ``False``: random.
    pretrained_backbone: bool | str | os.PathLike[str] = False
    #: Add torchvision's auxiliary FCN head on block 3 (its loss weighted by ``aux_weight``).
    aux_loss: bool = False
    #: ASPP rates: ``"paper"`` (DeepLabv3's (6, 12, 18) at output stride 16, scaled to the stride),
    #: ``"fit"`` (the largest rates the training crop's feature map still uses: :func:`resolve_atrous_rates`)
    #: or ``"r1,r2,r3"``.
    atrous_rates: str = "paper"
    #: Further keyword arguments of :func:`deeplab_edu.models.build_model` (``multi_grid``, ``image_pooling``, ...).
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # data
    #: A name of :data:`~deeplab_edu.choices.DATASETS` (``"procedural"``: generated, offline; ``"folder"``: your own).
    dataset: str = "procedural"
    #: Procedural scenes only: ``"easy"``, ``"medium"`` or ``"hard"`` (:data:`deeplab_edu.data.procedural.DIFFICULTIES`).
    difficulty: str = "hard"
    #: Where a real data set lives (or is downloaded to); the folder of ``dataset="folder"``.
    data_root: str | os.PathLike[str] | None = None
    #: Download a real data set that is missing (needs the network; fails with a message offline).
    download: bool = False
    #: Procedural scenes only: the side of a generated scene, pixels.
    image_size: int = 256
    #: Procedural scenes only: number of training scenes.
    train_length: int = 2000
    #: Procedural scenes only: number of validation scenes.
    val_length: int = 100
    #: Side of the square training crop, pixels (after random scaling).
    crop_size: int = 513
    #: Random scale factors of training images, (min, max) (DeepLabv3: 0.5 to 2.0).
    scale_range: tuple[float, float] = (0.5, 2.0)
    #: Where the scaled image is smaller than the crop, pad it with the mean pixel and its mask with the
    #: ignore label; ``False``: smaller images give smaller crops.
    pad_to_crop: bool = True
    #: Images per forward pass (a micro-batch) and process; an optimiser step sees
    #: ``batch_size * grad_accum`` images per process.
    batch_size: int = 16
    #: DataLoader worker processes; ``None``: from the machine's cores
    #: (:func:`deeplab_edu.engine.workers.default_num_workers`); 0: load in the main process.
    num_workers: int | None = None
    # optimisation (DeepLabv3 sec. 4.1)
    #: Length of the run in optimiser steps.
    iterations: int = 30000
    #: ``"sgd"`` (the papers', with ``momentum``) or ``"adamw"`` (short runs from scratch).
    optimizer: str = "sgd"
    #: Initial learning rate, decayed by the poly schedule ``(1 - iter / iterations) ** poly_power``.
    lr: float = 0.007
    #: SGD's momentum; AdamW's beta1 (its gradient average's decay). In [0, 1).
    momentum: float = 0.9
    #: L2 weight decay (decoupled in AdamW).
    weight_decay: float = 1e-4
    #: Apply ``weight_decay`` to the biases and the normalisation layers' (batch norm's) weights and biases too,
    #: every parameter of one dimension. TF DeepLab does not (``False``; tensorflow/models research/deeplab:
    #: its L2 regulariser covers the convolutions' weights, batch norm's parameters and biases are not
    #: regularised); ``True``, the default, keeps the runs trained before this setting reproducible.
    weight_decay_norm_and_bias: bool = True
    #: Exponent of the poly schedule (DeepLab: 0.9).
    poly_power: float = 0.9
    #: Linear warm-up steps before the poly schedule (at most ``iterations``).
    warmup_iters: int = 0
    #: Learning-rate multiplier of the head (ASPP, decoder) over the backbone's.
    head_lr_mult: float = 1.0
    #: Gradient accumulation steps per optimiser step (an effective batch of ``batch_size * grad_accum``
    #: images). Each micro-batch's loss is its own mean over its labelled pixels, and the step averages
    #: the micro-batches' losses, as DDP averages its processes' and TF DeepLab its clones': the same
    #: step as one batch when the micro-batches hold as many labelled pixels; otherwise a pixel of a
    #: sparsely labelled micro-batch weighs more (each micro-batch weighs alike).
    grad_accum: int = 1
    #: Keep batch norm's statistics and affine parameters fixed (DeepLabv3's phase 2 at output stride 8).
    freeze_bn: bool = False
    #: Momentum of batch norm's running statistics, in PyTorch's convention (the weight of each new
    #: batch: 1 - the paper's *decay*; DeepLabv3 sec. 4.1 trains with decay 0.9997, i.e. 0.0003).
    #: ``None`` keeps the layers' own (PyTorch's 0.1).
    bn_momentum: float | None = None
    #: Start from this checkpoint's weights (a new run: schedule and optimiser start afresh); a checkpoint
    #: with another number of classes gives all but its class-scoring layers (fine-tuning to new classes).
    init_from: str | os.PathLike[str] | None = None
    # loss
    #: Weight of the auxiliary head's loss (``aux_loss``, which needs a weight above 0).
    aux_weight: float = 0.5
    #: Fraction of the hardest pixels the loss keeps, in (0, 1] (1: plain cross-entropy; the released
    #: DeepLab code's ``top_k_percent_pixels``: DeepLabv3 sec. 4.3 duplicates hard images instead).
    top_k: float = 1.0
    #: Steps over which ``top_k`` falls from 1 to its value.
    hard_mining_iters: int = 0
    #: Class balancing of the loss: ``"median_frequency"`` weights each class by the median class
    #: frequency over its own, counted on the training labels (Eigen & Fergus 2015; SegNet's for
    #: CamVid), so rare classes weigh more; ``None`` (or ``"none"``): every pixel alike.
    class_weights: str | None = None
    # speed
    #: Mixed precision: ``"none"``, ``"bf16"`` or ``"fp16"`` (fp16 with a gradient scaler; CUDA).
    amp: str = "none"
    #: Train in the channels_last memory format (faster on recent GPUs and on this course's CPU).
    channels_last: bool = False
    #: ``torch.compile`` the model (minutes of compiling before the first step).
    compile: bool = False
    #: ``torch.compile``'s mode with ``compile``: ``"default"``, or ``"reduce-overhead"`` (CUDA graphs: each
    #: training pass replayed with one launch; on one H200 the ``gpu`` preset's step alone ran about 2x faster,
    #: ``benchmarks/README.md``, "On one GPU"), or ``"max-autotune"``. Validation runs the model uncompiled.
    compile_mode: str = "default"
    #: The engine's training images travel from the loader's workers as uint8 (masks as uint8 too) and are
    #: normalised on the device: 5x fewer bytes per batch for the workers to write and the training
    #: process to pin and copy, and the workers augment uint8 pixels (the image rounded to 1/255, the
    #: step of 8-bit pictures, before it is scaled), x1.4 faster on one CPU core
    #: (``benchmarks/uint8_batches.py``). Leave it off for 16-bit images, which would keep 256 levels (a warning
    #: names such a file among the first eight training images).
    #: Only for the data sets built from this configuration, with labels 0-255; a passed data set's
    #: items are sent as they are (a uint8 image among them is normalised on the device either way).
    uint8_batches: bool = False
    #: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...; ``None``: CUDA when available.
    device: str | None = None
    #: Separable convs recompute their depthwise half in the backward pass: less memory, a few % more time.
    recompute_depthwise: bool = True
    #: On the CPU with glibc, reuse freed memory while fit() trains instead of returning it to the OS, and give it
    #: back as fit() ends (:mod:`deeplab_edu.engine.allocator`).
    keep_freed_memory: bool = True
    # bookkeeping
    #: Seed of the model's initialisation, the data order and the augmentation.
    seed: int = 0
    #: Deterministic algorithms where PyTorch has them (slower; the others warn).
    deterministic: bool = False
    #: The run folder: checkpoints, ``metrics.csv``, ``config.json`` (one run per folder).
    out_dir: str | os.PathLike[str] = "runs/deeplab"
    #: Validate every this many steps (and at the end).
    eval_every: int = 1000
    #: Write a checkpoint every this many steps (and at the end); keep the newest ``keep_last``.
    ckpt_every: int = 1000
    #: Checkpoints kept in ``out_dir`` (the newest; ``last.pt`` is kept too).
    keep_last: int = 3
    #: Log the loss every this many steps (``metrics.csv``; a line with ``progress=False``).
    log_every: int = 10
    #: Continue the newest checkpoint in ``out_dir`` (schedule, optimiser and data order included).
    resume: bool = False
    #: Also write TensorBoard logs to ``out_dir`` (needs the ``tensorboard`` package).
    tensorboard: bool = False
    #: Show a progress bar (tqdm).
    progress: bool = True

    def __post_init__(self) -> None:
        # path settings (out_dir, data_root, init_from, pretrained_backbone) accept any os.PathLike and
        # are kept as str (JSON, YAML): after construction they are always str
        for f in dataclasses.fields(self):
            if isinstance(getattr(self, f.name), os.PathLike):
                setattr(self, f.name, os.fspath(getattr(self, f.name)))
        # input files and folders as absolute paths: a checkpoint's config is read again by eval,
        # predict and --resume, maybe from another working directory (out_dir stays as given, but for a
        # leading ~: `--out-dir=~/t2`, which bash leaves as it is, and YAML's `out_dir: ~/t2` trained into ./~/t2)
        for name in ("data_root", "init_from", "pretrained_backbone"):
            value = getattr(self, name)
            if isinstance(value, str) and value:
                setattr(self, name, os.path.abspath(os.path.expanduser(value)))
        if isinstance(self.out_dir, str):
            self.out_dir = os.path.expanduser(self.out_dir)
        # "none" (a flag, a YAML string) is None: one value for "no weights", as runs compare settings
        if isinstance(self.class_weights, str) and self.class_weights.lower() == "none":
            self.class_weights = None
        # a pair given as a list (JSON, YAML, Python) is kept as the tuple its hint says; validate() checks it
        if isinstance(self.scale_range, list):
            self.scale_range = tuple(self.scale_range)  # type: ignore[assignment]
        # the same value in one spelling, as runs compare settings with a config.json read back (JSON has no
        # tuple), and the engine builds the generated scenes for "procedural" alone: normalised_settings' spellings
        spelt = normalised_settings({"dataset": self.dataset, "atrous_rates": self.atrous_rates,
                                     "model_kwargs": self.model_kwargs})
        self.dataset, self.atrous_rates, self.model_kwargs = (spelt["dataset"], spelt["atrous_rates"],
                                                              spelt["model_kwargs"])

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (``scale_range`` a list, paths strings), as checkpoints store them."""
        d = dataclasses.asdict(self)
        d["scale_range"] = list(self.scale_range)
        return {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in d.items()}


def _rates_text(rates: Any) -> Any:
    """``atrous_rates`` given as whole numbers (a list or tuple, or a string such as ``'6, 12, 18'`` or
    ``'06,12,18'``) in the flag's one form, ``"6,12,18"``; any other value as it is (:func:`validate` judges it)."""
    if isinstance(rates, str) and re.fullmatch(r"\s*\d+\s*(,\s*\d+\s*)*", rates):
        return ",".join(str(int(r)) for r in rates.split(","))
    if isinstance(rates, (list, tuple)) and rates and all(_fits(r, int) for r in rates):
        return ",".join(str(int(r)) for r in rates)
    return rates


def _as_lists(value: Any) -> Any:
    """``value`` with every tuple in it a list, at any depth of lists, tuples and dicts (JSON's form)."""
    if isinstance(value, (list, tuple)):
        return [_as_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_lists(v) for k, v in value.items()}
    return value


def normalised_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration as a dict (:meth:`TrainConfig.to_dict`, a checkpoint's or a ``config.json``'s) with the
    spellings :class:`TrainConfig` stores (it normalises itself with this function): the data set's name as
    :data:`~deeplab_edu.choices.DATASETS` spells it (:func:`~deeplab_edu.choices.dataset_name`: case, ``-`` and
    ``_`` do not count), ``atrous_rates`` as ``"6,12,18"`` (numbers, ``'6, 12, 18'``, ``'06,12,18'``) and
    ``model_kwargs``' tuples as lists; so that the settings of a run saved before they were normalised compare
    equal to the same settings today (a resumed run, a reused one)."""
    out = dict(settings)
    if isinstance(out.get("dataset"), str):
        out["dataset"] = dataset_name(out["dataset"])
    if "atrous_rates" in out:
        out["atrous_rates"] = _rates_text(out["atrous_rates"])
    if isinstance(out.get("model_kwargs"), dict):
        out["model_kwargs"] = _as_lists(out["model_kwargs"])
    return out


def list_presets() -> list[str]:
    """Names of the YAML presets shipped with the package."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_summary(name: str) -> str:
    """The first sentence of a shipped preset's header comment (what ``train --list-presets`` shows).

    Raises:
        ConfigError: ``name`` is not in :func:`list_presets`.
    """
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(list_presets())}")
    header = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip())
    text = " ".join(header)
    end = re.search(r"\.(?=\s+[A-Z]|\s*$)", text)  # "sec. 4.1" and "et al. 2017" do not end it
    return text[: end.end()] if end else text


@functools.lru_cache(maxsize=None)
def _unique_key_loader() -> Any:
    """yaml's SafeLoader, refusing a mapping that gives a key twice (SafeLoader keeps the last value
    without a word: ``iterations: 4`` then ``iterations: 8`` trained 8)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        pass

    def mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: keys merged in, which the mapping's own
                continue  # may override (construct_mapping merges them; a trial found merge keys refused)
            key = loader.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):  # an unhashable key: construct_mapping says so
                continue
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice (first on line {first[key] + 1}); keep one",
                    key_node.start_mark)
            first[key] = key_node.start_mark.line
        return loader.construct_mapping(node, deep=deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return UniqueKeyLoader


def _read_yaml(source: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(source)
    if not path.suffix and not path.exists():
        path = PRESETS_DIR / f"{source}.yaml"
        if not path.exists():
            raise ConfigError(f"unknown preset {source!r}; available: {', '.join(list_presets())}")
    if path.is_dir():
        inside = path / "config.json"
        raise ConfigError(f"config file {path} is a folder: name a YAML file"
                          + (f", or the run's {inside} to resume it" if inside.is_file() else ""))
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {err.object[err.start]:#04x} at position "
                          f"{err.start}); save it as UTF-8 (a YAML file of settings)") from None
    try:
        data = yaml.load(text, Loader=_unique_key_loader())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        problem = str(getattr(err, "problem", None) or err)
        tag = re.search(r"constructor for the tag '([^']*)'", problem)
        if tag:  # valid YAML that asks for an object (`!!python/object/apply:os.system`): refused, nothing built
            raise ConfigError(f"config file {path} uses the YAML tag {tag.group(1).replace('tag:yaml.org,2002:', '!!')!r}"
                              f"{at}, which a settings file may not use: give plain values (numbers, text, "
                              "true/false, lists); nothing in it was run") from None
        raise ConfigError(f"config file {path} is not valid YAML{at}: {problem}") from None
    if data is None:  # a trial: an empty file ran the preset, or without one the papers' 30k-iteration recipe
        raise ConfigError(f"config file {path} holds no settings (it is empty, or only comments): write the settings "
                          "to change, one 'name: value' per line (deeplab-edu train --help lists them)")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} should hold a mapping of settings, not {type(data).__name__}")
    return data


def file_settings(preset: str | Path | None = None, config: str | Path | None = None) -> dict[str, Any]:
    """The settings the preset and then the YAML file ``config`` give, as written (the file's over the preset's),
    without defaults, overrides or checks: what :func:`load_config` starts from.

    Raises:
        ConfigError: as :func:`load_config`, for a preset or file that cannot be read as settings.
    """
    merged: dict[str, Any] = {}
    for source in (preset, config):
        if source is not None:
            merged.update(_read_yaml(source))
    return merged


#: Settings of the generated scenes only, which a real or folder data set does not read: given for
#: another data set (as an override or in a config file), :func:`load_config` refuses them.
PROCEDURAL_ONLY = ("image_size", "train_length", "val_length", "difficulty")


def run_of_config(config: str | os.PathLike[str] | None) -> Path | None:
    """The run folder whose own ``config.json`` ``config`` names (it holds ``checkpoints/`` or
    ``metrics.json`` beside it), else ``None``.

    A run's ``config.json`` lists every setting of the run (as ``deeplab-edu train`` wrote it), so
    its lines are not the user's choices; it also records the ``out_dir`` the run was trained into,
    as given: relative to the folder ``train`` ran in, and the old place of a run that was copied or
    moved since (``deeplab-edu train --config <run>/config.json --resume`` continues in the folder
    of the file).
    """
    if not config:
        return None
    path = Path(config)
    folder = path.parent
    if path.name == "config.json" and ((folder / "checkpoints").is_dir() or (folder / "metrics.json").is_file()):
        return folder
    return None


def _is_run_record(settings: Mapping[str, Any]) -> bool:
    """A file that sets nearly every setting is a run's own ``config.json`` (or a copy of one: the Trainer
    writes them all), not a file a user wrote; 30 of them, as a run of an earlier version wrote fewer."""
    return len(settings) >= 30


def _check_generated_scenes_settings(merged: Mapping[str, Any], given: Mapping[str, Any],
                                     files: Mapping[str, Mapping[str, Any]], preset: Any, config: Any) -> None:
    """Refuse :data:`PROCEDURAL_ONLY` settings that a data set other than the generated scenes would ignore:
    an override, a line of ``config`` (unless it is a run's own record) or of a preset file that itself
    names another data set (a built-in preset's values stay: ``smoke`` with ``dataset: camvid`` is fine)."""
    dataset = str(merged.get("dataset", TrainConfig.dataset)).lower()
    if dataset == "procedural":
        return
    named = [k for k in PROCEDURAL_ONLY if k in given]  # each setting named once, where it was last set
    idle = [f"{', '.join(f'{k}={given[k]!r}' for k in named)} (given)"] if named else []
    for kind, source in (("the config file", config), ("the preset", preset)):
        data = files.get(kind, {})
        if kind == "the config file" and (run_of_config(source) is not None or _is_run_record(data)):
            continue  # a run's config.json lists every setting: not the user's choices
        if kind == "the preset" and str(data.get("dataset", "procedural")).lower() == "procedural":
            continue
        lines = [k for k in PROCEDURAL_ONLY if k in data and k not in named]
        if lines:
            idle.append(f"{', '.join(f'{k}: {data[k]!r}' for k in lines)} (in {kind} {str(source)!r})")
            named += lines
    if idle:
        raise ConfigError(f"{'; '.join(idle)}: settings of the generated scenes (dataset procedural), not of "
                          f"dataset {dataset}, whose images keep their own size and whose splits are used whole: "
                          "leave them out (crop_size sets the training crops)")


def load_config(preset: str | Path | None = None, overrides: Mapping[str, Any] | None = None, *,
                config: str | Path | None = None) -> TrainConfig:
    """Defaults, then the preset (a name from :func:`list_presets` or a YAML path), then the YAML file
    ``config``, then ``overrides``: each level overrides the ones before it.

    ``load_config("cpu", config="mine.yaml")`` is the ``cpu`` preset with the settings of
    ``mine.yaml`` on top (``deeplab-edu train --preset cpu --config mine.yaml``). Where none of
    them sets a setting that the chosen model's paper sets otherwise (:data:`MODEL_DEFAULTS`:
    DeepLab v1 on VGG-16, v1 and v2 at output stride 8), the model's value is used, so
    ``load_config(overrides={"model": "deeplabv1"})`` is a working DeepLab v1; a value from a
    preset or YAML file counts as set (``load_config("smoke", {"model": "deeplabv1"})`` keeps the
    preset's backbone, and the error says so). Path settings
    (``out_dir``, ``data_root``, ``init_from``, ``pretrained_backbone``) accept any ``os.PathLike``;
    they are stored as ``str``, so the configuration stays JSON-serialisable. ``None`` in ``overrides``
    means "not given".

    Raises:
        ConfigError: an unknown preset, a missing file, a file that is not a mapping, an unknown
            setting (naming where it came from, and the setting it may be a misspelling of), a value of the
            wrong type for an ``int``, ``float``, ``bool`` or ``str`` setting, or settings that cannot work
            together (:func:`validate`), or a setting of the generated scenes (:data:`PROCEDURAL_ONLY`)
            given as an override or in ``config`` for another data set (where it would do nothing).
    """
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}  # which file set a setting, for the error message
    files: dict[str, dict[str, Any]] = {}  # each file's own settings, for the generated scenes' check
    for source, kind in ((preset, "the preset"), (config, "the config file")):
        if source is not None:
            data = _read_yaml(source)
            files[kind] = data
            merged.update(data)
            origin.update({k: f"{kind} {str(source)!r}" for k in data})
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    merged.update(given)
    for k in given:  # an override replaces a file's value: the file no longer set it
        origin.pop(k, None)
    model = merged.get("model", TrainConfig.model)
    model_defaults = MODEL_DEFAULTS.get(model, {}) if isinstance(model, str) else {}
    for name, value in model_defaults.items():
        merged.setdefault(name, value)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    # a YAML key need not be text (`1: 2`, `null:`, `yes:`): named as str() gives it, sorted as text
    unknown = sorted(set(merged) - names, key=str)
    if unknown:
        import difflib

        guesses = [f"{k} (in {origin.get(k, 'the overrides')}"
                   + "".join(f"; did you mean {m}?" for m in ([_OTHER_NAMES[str(k).lower()]]
                                                              if str(k).lower() in _OTHER_NAMES
                                                              else difflib.get_close_matches(str(k), names, n=1)))
                   + ")" for k in unknown]
        raise ConfigError(f"unknown setting(s) {', '.join(guesses)}; known: {', '.join(sorted(names))}")
    _check_types(merged, origin)
    if "scale_range" in merged:
        merged["scale_range"] = _scale_range(merged["scale_range"], origin.get("scale_range", "the overrides"))
    _check_generated_scenes_settings(merged, given, files, preset, config)
    cfg = TrainConfig(**merged)
    try:
        validate(cfg)
    except ConfigError as err:
        # a file's value kept the model's own: say where it came from and that a flag overrides it
        kept = [k for k, v in model_defaults.items() if k in origin and k not in given and merged[k] != v]
        if not kept:
            named = _first_setting_named(str(err))
            if named in origin:  # a trial: 'output_stride=7 is not an output stride' did not say which file set it
                raise ConfigError(f"{err} (from {origin[named]})") from None
            raise
        values = ", ".join(f"{k}={merged[k]}" for k in kept)
        sources = " and ".join(sorted({origin[k] for k in kept}))
        raise ConfigError(f"{err} (note: {values} {'comes' if len(kept) == 1 else 'come'} from {sources}, not from "
                          f"{model}'s defaults; a flag or override replaces them)") from None
    return cfg


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the type ``hint`` names, for the hints of settings and of ``build_model``:
    ``int``, ``float``, ``bool``, ``str`` (a bool is no number; numpy's numbers are), ``os.PathLike``,
    unions of them (``X | None``, ``str | os.PathLike[str]``) and ``Sequence[X]`` (a list or tuple); any
    other hint is not checked (``True``)."""
    import collections.abc
    import numbers
    import types
    import typing

    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None, str | os.PathLike[str], ...
        return any(value is None if a is type(None) else _fits(value, a) for a in args)
    if typing.get_origin(hint) is os.PathLike or hint is os.PathLike:
        return isinstance(value, os.PathLike)
    if typing.get_origin(hint) is collections.abc.Sequence:
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value)
    plain = {int: isinstance(value, numbers.Integral), float: isinstance(value, numbers.Real),
             bool: isinstance(value, bool), str: isinstance(value, str)}
    if hint not in plain:
        return True
    return plain[hint] and (hint is bool or not isinstance(value, bool))


def _scale_range(value: Any, source: str) -> tuple[float, float]:
    """``scale_range`` as a pair of floats, from a list or tuple of two numbers.

    Raises:
        ConfigError: ``value`` is not two numbers (``source`` says where it came from).
    """
    import numbers

    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)):
        raise ConfigError(f"scale_range={value!r} (from {source}) should be two numbers [min, max], e.g. [0.5, 2.0]")
    return float(value[0]), float(value[1])


#: Other frameworks' names of settings (mmsegmentation's, Detectron2's, Lightning's), for the message
#: about an unknown setting: closer than the nearest spelling (``learning_rate`` is nearest to
#: ``hard_mining_iters``).
_OTHER_NAMES = {"learning_rate": "lr", "base_lr": "lr", "max_iters": "iterations", "max_iter": "iterations",
                "max_steps": "iterations", "num_iterations": "iterations", "batch": "batch_size",
                "ims_per_batch": "batch_size", "crop": "crop_size", "workers": "num_workers", "precision": "amp"}

#: What a ``str`` setting of a fixed form takes, for the message when a file gives another type.
_STR_FORMS = {
    "atrous_rates": "'paper', 'fit' or the rates as a list of integers ([6, 12, 18]) or a string ('6,12,18')",
    "class_weights": "'median_frequency', or null in YAML (none on the command line) for no class weights",
}


def _first_setting_named(message: str) -> str | None:
    """The first setting ``message`` names as ``name=value`` or ``name must`` (a :func:`validate` error), else
    ``None``."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return next((m.group(1) for m in re.finditer(r"\b([a-z][a-z0-9_]*)(?:=| must\b)", message)
                 if m.group(1) in names), None)


def _check_types(merged: dict[str, Any], origin: Mapping[str, str]) -> None:
    """Settings declared ``int``, ``float``, ``bool`` or ``str`` (or that type or ``None``) must have
    that type, named with their source when not; a number YAML reads as a string (``lr: 1e-3``: YAML 1.1 wants a dot,
    ``1.0e-3``) becomes a float for a ``float`` setting, the string ``none`` (as on the command line)
    ``None`` for a number that may be ``None`` and ``False`` for ``pretrained_backbone``, YAML's
    ``null`` ``'none'`` for ``amp``, and a list of integers the string ``'6,12,18'`` for
    ``atrous_rates``. A ``float`` must be finite (:func:`_not_finite`)."""
    import typing

    hints = typing.get_type_hints(TrainConfig)
    for key, value in merged.items():
        hint = hints[key]
        args = typing.get_args(hint)
        source = origin.get(key, "the overrides")
        says_none = isinstance(value, str) and value.strip().lower() == "none"  # the command line's word
        if key == "amp" and value is None:  # YAML's null for the flag's word
            merged[key] = value = "none"
        if key == "pretrained_backbone" and says_none:
            merged[key] = value = False  # not a file named "none"
        if len(args) == 2 and type(None) in args:  # X | None
            hint = next(a for a in args if a is not type(None))
            if hint in (int, float) and says_none:
                merged[key] = value = None  # as --eval-output-stride none
            if value is None:
                continue
        if hint is float and isinstance(value, str):
            try:
                merged[key] = value = float(value)
            except ValueError:
                pass
        if key == "atrous_rates" and isinstance(value, (list, tuple)) and value and all(
                _fits(v, int) for v in value):
            merged[key] = value = ",".join(str(int(v)) for v in value)
        if hint in (int, float, bool, str) and not _fits(value, hint):
            name = hint.__name__
            forms = f": {_STR_FORMS[key]}" if key in _STR_FORMS else ""
            none = " or none" if len(args) == 2 and type(None) in args and hint in (int, float) else ""
            raise ConfigError(f"{key}={value!r} (from {source}) should be {'a' if name != 'int' else 'an'} "
                              f"{name}{none}{forms}")
        if _not_finite(value, hint):
            raise ConfigError(f"{key}={value!r} (from {source}) should be a finite number")
        if key in _PATH_SETTINGS and (problem := _path_problem(key, value, hints[key])):
            raise ConfigError(f"{problem} (from {source})")
        if key == "device" and value and value.strip():  # its spelling and kind here, with its source; whether
            import torch  # this machine has it, when a run starts (a config.json may be read on another machine)

            where = f" (from {origin[key]})" if key in origin else ""  # else the flag, which the CLI names
            try:
                kind = torch.device(value.strip()).type
            except (RuntimeError, ValueError):
                raise ConfigError(f"device={value!r}{where} is not a device: use cpu, cuda, cuda:N (the N-th GPU) "
                                  "or mps") from None
            if kind not in ("cpu", "cuda", "mps"):  # as config.resolve_device refuses it, but naming the file
                raise ConfigError(f"device={value!r}{where} is a {kind} device, which the course does not run on: "
                                  "use cpu, cuda, cuda:N (the N-th GPU) or mps")


#: The settings that name a file or folder.
_PATH_SETTINGS = ("data_root", "init_from", "out_dir")


def _path_problem(key: str, value: Any, hint: Any) -> str | None:
    """Why ``value`` is no path for the setting ``key`` (``None`` when it is one): a number or a list, or
    an empty name (YAML reads a folder named ``2024`` as a number; ``out_dir: ''`` trained into the
    working folder itself, a practitioner's trial)."""
    optional = value is None and _fits(None, hint)
    if optional or (isinstance(value, (str, os.PathLike)) and str(os.fspath(value)).strip()):
        return None
    if isinstance(value, str) or value is None:
        return f"{key}={value!r} names no file or folder: give a path"
    return (f"{key}={value!r} should be a path: write it as a string (in YAML, quote a name that reads as a "
            f"number or a list, e.g. {key}: '2024')")


#: The values of ``class_weights`` (``None``: no class weights; ``"none"`` becomes ``None``).
CLASS_WEIGHTS = (None, "median_frequency")


def _holds_checkpoints(out_dir: str | os.PathLike[str]) -> bool:
    """Whether the run folder ``out_dir`` holds a checkpoint (a run that has started)."""
    from .checkpoint import latest_checkpoint  # torch: only where a pretrained_backbone file is missing

    return latest_checkpoint(Path(out_dir).expanduser() / "checkpoints") is not None


def missing_pretrained_file(pretrained_backbone: object) -> str | None:
    """What is wrong with ``pretrained_backbone`` as the path of a local ``.pth`` file (``None``: nothing, or it is
    not a path but ``True``/``False``): it names a folder, or no file. :func:`validate` refuses it unless the run's
    folder holds checkpoints (a run that has started never reads it again); the Trainer, where a run starts."""
    if not isinstance(pretrained_backbone, str) or Path(pretrained_backbone).expanduser().is_file():
        return None
    folder = Path(pretrained_backbone).expanduser().is_dir()
    return (f"pretrained_backbone={pretrained_backbone!r}: "
            + ("a folder; name the .pth file of torchvision's weights in it" if folder else "no such file"))


def validate(cfg: TrainConfig) -> None:
    """Raise :class:`ConfigError` for settings that cannot work together, or ``model_kwargs`` that
    :func:`~deeplab_edu.models.build_model` does not take (an unknown argument, one that is a setting of
    its own, or a value of the wrong type); also for ``tensorboard`` without the tensorboard package
    installed (before a run's folder is made).

    Raises:
        ConfigError: the first setting found that cannot work (the message names it and a value that does).
    """
    _check_field_types(cfg)
    if cfg.model not in MODELS:
        raise ConfigError(unknown_model(cfg.model))
    if cfg.backbone not in BACKBONES:
        raise ConfigError(f"unknown backbone {cfg.backbone!r}; choose one of {', '.join(BACKBONES)}")
    for name in ("output_stride", "eval_output_stride"):
        os_ = getattr(cfg, name)
        if os_ is None:
            continue
        strides = ", ".join(map(str, OUTPUT_STRIDES))
        if os_ == 4 and cfg.backbone.startswith("resnet"):
            raise ConfigError(
                f"{name}=4 with {cfg.backbone}: the ResNet stem (a stride-2 convolution and a stride-2 "
                "max pooling) already reaches stride 4 before any block can be dilated; the smallest "
                "output stride of a dilated ResNet is 8"
            )
        if os_ == 4:
            raise ConfigError(f"{name}=4 is not supported by {cfg.backbone}; use {strides}")
        if os_ not in OUTPUT_STRIDES:
            raise ConfigError(f"{name}={os_} is not an output stride; use {strides}")
    if cfg.model == "deeplabv1" and cfg.backbone != "vgg16":
        raise ConfigError(f"deeplabv1 (LargeFOV) is built on vgg16, not {cfg.backbone}; set backbone=vgg16 "
                          "and output_stride=eval_output_stride=8 (--backbone vgg16 --output-stride 8 "
                          "--eval-output-stride 8); load_config and the CLI use these when nothing else sets them")
    if cfg.model in ("deeplabv3", "deeplabv3plus") and cfg.backbone == "vgg16":
        raise ConfigError(f"{cfg.model} needs a ResNet or MobileNetV3 backbone, not vgg16")
    if cfg.backbone == "vgg16":
        for name in ("output_stride", "eval_output_stride"):
            if getattr(cfg, name) not in (None, 8):
                raise ConfigError(f"{name}={getattr(cfg, name)} with vgg16: DeepLab's VGG-16 (v1/v2) is built "
                                  "at output stride 8 only (pool4/pool5 have stride 1, fc6 is atrous): "
                                  f"set {name}=8 ({flag_of(name)} 8)")
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
    # a run that has started does not read the file again (its checkpoint holds the weights: a review, a moved file
    # left a run with no way on, not even loaded when finished); the Trainer checks it where a run starts
    problem = missing_pretrained_file(cfg.pretrained_backbone)
    if problem and not _holds_checkpoints(cfg.out_dir):
        raise ConfigError(problem)
    if cfg.difficulty not in ("easy", "medium", "hard"):
        raise ConfigError(f"difficulty={cfg.difficulty!r}; the procedural scenes come as easy, medium or hard")
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer={cfg.optimizer!r}; use sgd (the papers') or adamw (short runs from scratch)")
    if cfg.amp not in ("none", "bf16", "fp16"):
        raise ConfigError(f"amp={cfg.amp!r}; use none, bf16 or fp16")
    if cfg.compile_mode not in COMPILE_MODES:
        raise ConfigError(f"compile_mode={cfg.compile_mode!r}; use {', '.join(COMPILE_MODES)}")
    if cfg.compile and cfg.compile_mode in ("reduce-overhead", "max-autotune") and cfg.grad_accum > 1:
        raise ConfigError(f"compile_mode={cfg.compile_mode!r} (CUDA graphs) with grad_accum={cfg.grad_accum}: on a GPU, "
                          "a graph's replay overwrites the gradients the micro-batch before it accumulated "
                          "(pytorch/pytorch#169545), and on a CPU the mode adds nothing to default; use compile_mode "
                          "default for gradient accumulation, or grad_accum 1 with a larger batch_size")
    if cfg.compile_mode != "default" and not cfg.compile:
        raise ConfigError(f"compile_mode={cfg.compile_mode!r} has no effect without compile: true (--compile); "
                          "set both, or leave compile_mode at default")
    if cfg.tensorboard:  # refused before the run folder is made (a trial: a traceback after config.json was written)
        try:
            require_packages("tensorboard", what="tensorboard=True (--tensorboard)")
        except ImportError as err:  # a setting's error, with what to do without it
            raise ConfigError(f"{err}; or train without it (metrics.csv holds the same numbers)") from None
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
            "(grad_accum for a larger effective batch, in which each image's loss then weighs alike)"
        )
    for name in ("batch_size", "iterations", "grad_accum", "eval_every", "ckpt_every", "keep_last", "log_every"):
        if int(getattr(cfg, name)) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if not 0 < cfg.top_k <= 1:
        raise ConfigError(f"top_k={cfg.top_k}: the fraction of hardest pixels kept must be in (0, 1]")
    if cfg.class_weights not in CLASS_WEIGHTS:
        raise ConfigError(f"class_weights={cfg.class_weights!r}; use \"median_frequency\" or none (every pixel alike)")
    if cfg.class_weights is not None and cfg.top_k < 1:
        raise ConfigError(f"class_weights={cfg.class_weights!r} with top_k={cfg.top_k}: both make some pixels weigh "
                          "more; use one of them (top_k 1, or class_weights none)")
    lo, hi = _scale_range(cfg.scale_range, "the configuration")
    if not 0 < lo <= hi:
        raise ConfigError(f"scale_range={cfg.scale_range} should be (min, max) with 0 < min <= max")
    if cfg.warmup_iters > cfg.iterations:
        raise ConfigError(f"warmup_iters={cfg.warmup_iters} is longer than the run ({cfg.iterations} iterations); "
                          f"shorten it (--warmup-iters) or train longer (--iterations)")
    if cfg.lr <= 0:
        raise ConfigError(f"lr must be positive, got {cfg.lr}")
    if not 0 <= cfg.momentum < 1:
        raise ConfigError(f"momentum={cfg.momentum}: SGD's momentum (AdamW's beta1) is in [0, 1); the papers use 0.9")
    for name in ("weight_decay", "hard_mining_iters", "warmup_iters"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be 0 or more, got {getattr(cfg, name)}")
    if cfg.poly_power < 0:  # 0.0 ** -1 at the last step: the run would fail there, hours on
        raise ConfigError(f"poly_power={cfg.poly_power}: the poly schedule (1 - iter / iterations) ** poly_power "
                          "needs a power of 0 or more (DeepLab: 0.9; 0: a constant learning rate)")
    if cfg.head_lr_mult <= 0:
        raise ConfigError(f"head_lr_mult={cfg.head_lr_mult}: the head's learning rate is lr times it, so it must be "
                          "positive (a negative one climbs the loss; freeze the head otherwise)")
    if cfg.aux_weight < 0:
        raise ConfigError(f"aux_weight={cfg.aux_weight}: the auxiliary loss's weight must be 0 or more "
                          "(a negative weight trains the auxiliary head to be wrong)")
    if cfg.aux_loss and cfg.aux_weight == 0:  # an audit: DDP stopped at iteration 2 on the head's missing gradients
        raise ConfigError("aux_loss with aux_weight=0 (--aux-loss --aux-weight 0): an aux head that the loss ignores: "
                          "drop --aux-loss, or give its loss a positive --aux-weight (0.5 by convention)")
    if cfg.dataset == "procedural":
        if cfg.image_size < 8:
            raise ConfigError(f"image_size={cfg.image_size}: the generated scenes are at least 8 pixels a side")
        for name in ("train_length", "val_length"):
            if getattr(cfg, name) < 1:
                raise ConfigError(f"{name} must be at least 1 (scenes in the split), got {getattr(cfg, name)}")
    if cfg.seed < 0:
        raise ConfigError(f"seed must be 0 or more, got {cfg.seed} (NumPy's generators take no negative seed)")
    if cfg.bn_momentum is not None and not 0 < cfg.bn_momentum <= 1:
        raise ConfigError(f"bn_momentum={cfg.bn_momentum}: the weight of each new batch in batch norm's running "
                          "statistics is in (0, 1] (DeepLabv3's decay 0.9997 is bn_momentum 0.0003)")
    if cfg.num_workers is not None and (isinstance(cfg.num_workers, bool) or not isinstance(cfg.num_workers, int)
                                        or cfg.num_workers < 0):
        raise ConfigError(f"num_workers={cfg.num_workers!r}; use 0 (load in the main process), a positive number "
                          "of worker processes, or leave it unset (from the machine's cores)")
    _check_model_kwargs(cfg.model_kwargs)
    _check_rates_scale(cfg)


#: build_model arguments that are settings of their own (the setting that gives each).
_OWN_SETTINGS = {"name": "model", "backbone": "backbone", "output_stride": "output_stride", "aux_loss": "aux_loss",
                 "pretrained_backbone": "pretrained_backbone", "atrous_rates": "atrous_rates",
                 "num_classes": None}  # the data set's


def _not_finite(value: Any, hint: Any) -> bool:
    """Whether ``value`` of a setting declared ``float`` (or ``float | None``) is NaN or infinite: a NaN slips past
    every comparison of :func:`validate` (``lr <= 0``), an infinity past ``> 0``, and either failed a run later."""
    import math
    import numbers
    import typing

    if isinstance(value, (tuple, list)) and float in typing.get_args(hint):  # scale_range: (0.5, inf) (a review)
        return any(isinstance(v, numbers.Real) and not math.isfinite(v) for v in value)
    floats = hint is float or float in typing.get_args(hint)
    return floats and isinstance(value, numbers.Real) and not math.isfinite(value)


def _check_field_types(cfg: TrainConfig) -> None:
    """Each setting of a :class:`TrainConfig` built in Python has its field's type (``load_config``
    checks a file's and names the file): ``crop_size="64"`` failed later with "'<' not supported between
    instances of 'str' and 'int'", a path of ``None`` with a ``TypeError`` in the trainer."""
    import typing

    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in _PATH_SETTINGS:
            if problem := _path_problem(f.name, value, hints[f.name]):
                raise ConfigError(problem)
        elif (f.name not in ("scale_range", "model_kwargs", "pretrained_backbone", "amp")  # their own messages below
              and not _fits(value, hints[f.name])):
            kinds = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}
            wanted = " or ".join(kinds.get(a, "none" if a is type(None) else getattr(a, "__name__", str(a)))
                                 for a in (typing.get_args(hints[f.name]) or (hints[f.name],)))
            raise ConfigError(f"{f.name}={value!r} should be {wanted}")
        if _not_finite(value, hints[f.name]):  # as load_config's, which names the file
            raise ConfigError(f"{f.name}={value!r} should be a finite number")


def _check_model_kwargs(kwargs: Any) -> None:
    """``model_kwargs`` must be a mapping of :func:`~deeplab_edu.models.build_model` arguments of the
    right type (a misspelt key or ``"image_pooling": "no"`` would otherwise crash in the model, or be
    taken as true)."""
    import inspect
    import typing

    from ..models import build_model

    if not isinstance(kwargs, Mapping):
        raise ConfigError(f"model_kwargs={kwargs!r}; use a mapping of build_model arguments, e.g. "
                          '{"image_pooling": false}')
    params, hints = inspect.signature(build_model).parameters, typing.get_type_hints(build_model)
    for key, value in kwargs.items():
        if key in _OWN_SETTINGS:
            own = _OWN_SETTINGS[key]
            raise ConfigError(f"model_kwargs: {key} is a setting of its own, not a model_kwargs entry"
                              + (f"; set {own} ({flag_of(own)})" if own else " (it comes from the data set)"))
        if key not in params:
            known = sorted(set(params) - set(_OWN_SETTINGS))
            raise ConfigError(f"model_kwargs: unknown build_model argument {key!r}; known: {', '.join(known)}")
        if _fits(value, hints[key]):
            continue
        hint = str(params[key].annotation)  # as written: "bool", "float | None", "Sequence[int] | None"
        if "Sequence" in hint:
            raise ConfigError(f"model_kwargs: {key}={value!r} should be a list of integers, e.g. [1, 2, 4]")
        raise ConfigError(f"model_kwargs: {key}={value!r} should be {hint} (e.g. {key}: "
                          f"{'false' if hint.startswith('bool') else '1'} in YAML, {{\"{key}\": ...}} in JSON)")


#: The crop (pixels) and output stride each paper chose its ASPP rates for: DeepLabv3/v3+ (6, 12, 18)
#: for 513 crops at output stride 16 (DeepLabv3 sec. 3.3, 4.1); DeepLab v2 (6, 12, 18, 24) at output
#: stride 8 (DeepLab v2 sec. 3.2, 4.1) for 321 crops (the released training configuration: the paper's
#: text gives no crop size).
PAPER_RATE_SETTING = {"deeplabv2": ((6, 12, 18, 24), 321, 8), "deeplabv3": ((6, 12, 18), 513, 16),
                      "deeplabv3plus": ((6, 12, 18), 513, 16)}


def _check_rates_scale(cfg: TrainConfig) -> None:
    """The ASPP rates must be whole numbers at the training and the validation output stride (the
    model rescales them when it switches stride: DeepLab v2's 6 at 8 would be 1.5 at 32)."""
    from ..models.aspp import atrous_rates_for

    try:
        rates = resolve_atrous_rates(cfg, warn=False)
        if rates is not None and cfg.eval_output_stride is not None:
            atrous_rates_for(cfg.eval_output_stride, rates, cfg.output_stride)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"model={cfg.model} with output_stride={cfg.output_stride}, eval_output_stride="
                          f"{cfg.eval_output_stride}, atrous_rates={cfg.atrous_rates!r}: {err}; choose strides at "
                          "which the rates are whole numbers, or other atrous_rates") from None


def resolve_atrous_rates(cfg: TrainConfig, *, warn: bool = True, stacklevel: int = 2) -> tuple[int, ...] | None:
    """The ASPP rates a run trains with at ``cfg.output_stride`` (``None``: DeepLab v1, no ASPP).

    ``"paper"``: the paper's rates (scaled to the output stride); ``"fit"``: rates that use the
    training crop's feature map as the paper's rates use the paper's
    (:func:`deeplab_edu.models.aspp.fit_atrous_rates`); ``"r1,r2,..."``: these rates.

    With the paper's rates or given ones on a crop so small that a branch becomes exactly 1x1 (rate
    >= the feature-map side: DeepLabv3 sec. 3.3, Fig. 4), a ``UserWarning`` names the crop, the map
    and the rates, and suggests ``atrous_rates="fit"``; ``stacklevel`` is its ``warnings.warn``'s (2: the line
    that called this function; the :class:`~deeplab_edu.engine.trainer.Trainer` passes 3, its caller's line).

    Raises:
        ConfigError: ``model_kwargs`` holds ``atrous_rates`` (it is a setting of its own).
        ValueError: the paper's rates do not scale to ``cfg.output_stride`` in whole numbers
            (DeepLab v2's rate 6 at output stride 32 would be 1.5).
    """
    import warnings

    from ..models.aspp import degenerate_branches, degenerate_rates, feature_map_side, fit_atrous_rates
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
    else:
        rates = tuple(int(r) for r in str(cfg.atrous_rates).split(","))
    flat = degenerate_rates(side, rates)
    if flat and warn:
        base, crop, stride = PAPER_RATE_SETTING[cfg.model]
        fitted = fit_atrous_rates(side, base, feature_map_side(crop, stride))
        warnings.warn(
            f"crop_size={cfg.crop_size} at output_stride={cfg.output_stride} gives a {side} x {side} feature "
            f"map, so {degenerate_branches(flat, rates)} are exactly 1 x 1 (every off-centre tap "
            f"reads padding; DeepLabv3 sec. 3.3). Use atrous_rates='fit' (rates {fitted}), rates below {side}, "
            f"or a crop of at least {cfg.output_stride * max(rates) + 1} pixels.", UserWarning, stacklevel=stacklevel)
    return rates
