"""The command line: ``deeplab-edu train | eval | predict | export | bench | course-runs | check-data`` (also
``python -m deeplab_edu``).

Every ``train`` setting of :class:`~deeplab_edu.engine.config.TrainConfig` is a flag
(``crop_size`` -> ``--crop-size``), and so are the papers' architecture ablations (``--multi-grid 1 2 4``,
``--no-image-pooling``, ``--separable``: entries of ``model_kwargs``); ``--preset NAME`` and
``--config FILE.yaml`` set many at once (the file on top of the preset), and flags given explicitly win
over both. Examples::

    deeplab-edu train --preset cpu
    deeplab-edu train --preset cpu --iterations 50 --out-dir runs/quick
    deeplab-edu train --preset cpu --config mine.yaml       # the cpu preset with mine.yaml's settings
    deeplab-edu train --preset cpu --resume                  # continue where it stopped
    deeplab-edu train --preset cpu --no-image-pooling --out-dir runs/no_pooling   # an ablation
    torchrun --nproc_per_node=2 -m deeplab_edu train --preset gpu
    deeplab-edu eval --checkpoint runs/cpu/checkpoints/last.pt --scales 0.5 0.75 1 1.25 1.5 1.75 --flip
    deeplab-edu predict --checkpoint runs/cpu/checkpoints/last.pt photo.jpg --out predictions/
    deeplab-edu export --checkpoint runs/cpu/checkpoints --out model.pt --onnx model.onnx
    deeplab-edu bench --device cpu --size 128
    deeplab-edu course-runs                                  # before class: every run chapters 08-11 load
    deeplab-edu check-data --data-root my_data               # every bad file of your data set, before training

Mistakes end with ``error: ...`` naming the setting and what to do, not a traceback; with
``DEEPLAB_EDU_DEBUG=1`` in the environment the error is raised with its traceback (for a bug report).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import functools
import json
import math
import os
import statistics
import sys
import textwrap
import time
import traceback
import typing
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .engine.config import flag_of  # torch-free, as every import at the top of this module (build_parser reads it)

if TYPE_CHECKING:
    from .engine.config import TrainConfig
    from .inference import Strategy

__all__ = ["main", "build_parser", "OneLineErrorParser"]


def _json_value(text: str) -> Any:
    """``json.loads`` for argparse: its error then reads "invalid JSON value: '{bad'"."""
    return json.loads(text)


_json_value.__name__ = "JSON"


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a mistake on the command line ends with one line (not the whole usage block); also the
    parser of ``python -m deeplab_edu.book``. A flag must be spelt whole (``allow_abbrev=False``: ``--scale``
    is not silently ``--scales``), and an unknown flag is reported by the command it was given to, with the
    closest flag it has (``--itrations``: did you mean ``--iterations``?)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help lists the flags)\n")

    def parse_known_args(self, args: typing.Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        """As argparse's, but a sliding window (:func:`_window`) is checked once every flag is read: its message
        gives the map at the ``--output-stride`` asked for, which may come after ``--crop-size``."""
        parsed, unknown = super().parse_known_args(args, namespace)
        window = next((a for a in self._actions if a.type is _window), None)
        if window is not None and (side := getattr(parsed, window.dest)) is not None and side < MIN_WINDOW:
            self.error(f"argument --crop-size: {_small_window(side, getattr(parsed, 'output_stride', None))}")
        return parsed, unknown

    def parse_args(self, args: typing.Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        """As argparse's, but unknown flags are reported by the sub-command that was given them."""
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            commands = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
            owner = commands[0].choices.get(str(getattr(parsed, commands[0].dest, "")), self) if commands else self
            given = list(sys.argv[1:] if args is None else args)
            after = given[given.index("--") + 1:] if "--" in given else []  # what came after "--", which ends the flags
            (owner if isinstance(owner, OneLineErrorParser) else self)._unknown(unknown, after)
        return parsed

    def _unknown(self, unknown: list[str], after_dashes_given: Sequence[str] = ()) -> typing.NoReturn:
        import difflib

        flags = [flag for action in self._actions for flag in action.option_strings]
        # a flag it has, unrecognised: it came after "--" (a trial: "--flip (did you mean --flip?)")
        known = [arg for arg in unknown if arg.split("=", 1)[0] in flags]
        after_dashes = [arg for arg in known if arg in after_dashes_given]
        before_command = [arg for arg in known if arg not in after_dashes]  # "deeplab-edu --flip predict ..."
        guesses = [close[0] for arg in unknown if arg.startswith("--") and arg != "--" and arg not in known
                   if (close := difflib.get_close_matches(arg.split("=", 1)[0], flags, n=1))]
        hints = [f"did you mean {', '.join(guesses)}?"] if guesses else []
        if after_dashes:
            hints.append(f"{', '.join(after_dashes)} came after --, which ends the flags: give every flag before it")
        if before_command:
            hints.append(f"{', '.join(before_command)} came before the command's name: give it after {self.prog}")
        takes_input = any(a.dest == "input" and not a.option_strings for a in self._actions)
        # a word that is no unknown flag's value: another path (a trial: predict ... *.png gave several images)
        stray = [arg for i, arg in enumerate(unknown) if not arg.startswith("-")
                 and not (i and unknown[i - 1].startswith("-") and "=" not in unknown[i - 1])]
        if takes_input and stray:
            hints.append("it takes one image file or one folder: to predict several images, give their folder")
        self.error(f"unrecognized arguments: {' '.join(unknown)}" + "".join(f" ({h})" for h in hints))


#: Help of the training flags (the fields of TrainConfig); each overrides the preset's value.
_TRAIN_HELP = {
    "model": "one of {models} (without a preset: deeplabv3)",
    "backbone": "one of {backbones} (without a preset: resnet50; vgg16 for v1/v2 only, and v1's default)",
    "output_stride": "training output stride: one of {strides} (without a preset: 16, DeepLabv3 sec. 3.1; "
                     "8 for deeplabv1/v2 unless a preset or flag sets it)",
    "eval_output_stride": "output stride for validation (without a preset: 8; none: the training one)",
    "pretrained_backbone": "start from torchvision's ImageNet weights (downloaded once; online), or from FILE",
    "atrous_rates": 'the ASPP branches\' rates: "paper" (the model\'s paper\'s: v3/v3+ 6,12,18 at output stride '
                    '16, v2 6,12,18,24 at 8, v1 12; scaled to the stride), "fit" (the largest rates the training '
                    'crop\'s feature map still uses) or "r1,r2,..." (one ASPP branch per rate)',
    "dataset": "one of {datasets} (folder: your own images and masks in --data-root, laid out as the README's "
               "'Your own data' shows: classes.txt, train/ and val/)",
    "difficulty": "procedural scenes: easy, medium or hard",
    "data_root": "folder of a real data set, or of your own with --dataset folder (default for a real data set: "
                 "{places})",
    "download": "download a real data set if it is missing (online)",
    "crop_size": "training crop side in pixels",
    "batch_size": "images per forward pass (a micro-batch) and process; an optimiser step sees batch-size x "
                  "grad-accum x processes",
    "num_workers": "{workers}",
    "iterations": "optimiser steps of the whole run (on --resume: extends or shortens it)",
    "optimizer": "one of {optimizers} (sgd: the papers')",
    "lr": "base learning rate (poly schedule, DeepLabv3 sec. 4.1)",
    "warmup_iters": "linear warm-up iterations (at most --iterations)",
    "head_lr_mult": "learning-rate multiplier of everything but the backbone",
    "grad_accum": "micro-batches per optimiser step",
    "freeze_bn": "keep batch norm's running statistics and its scale and shift parameters fixed (DeepLabv3 "
                 "sec. 4.1, the second phase at output stride 8)",
    "bn_momentum": "batch norm running-statistics momentum, 1 - decay (DeepLabv3: 0.0003; default: PyTorch's 0.1)",
    "init_from": "start from this checkpoint's weights, or a model file's, or a run folder's newest checkpoint (a "
                 "new run, not a resume)",
    "top_k": "fraction of hardest pixels kept by the loss, in (0, 1] (1: plain cross-entropy; not with "
             "--class-weights)",
    "hard_mining_iters": "iterations over which --top-k falls from 1 to its value",
    "class_weights": "class balancing of the loss: median_frequency weights each class by the median class "
                     "frequency over its own, counted on the training labels (Eigen & Fergus 2015; SegNet's for "
                     "CamVid), so rare classes weigh more; none: every pixel alike; not with --top-k",
    "aux_loss": "add torchvision's auxiliary FCN head on block 3 (its loss weighted by --aux-weight)",
    "tensorboard": "also write TensorBoard logs to --out-dir (needs the tensorboard package)",
    "amp": "mixed precision: none, bf16 or fp16 (autocast; fp16 with a gradient scaler, CUDA only)",
    "channels_last": "NHWC memory format (faster on GPUs and CPUs with oneDNN)",
    "uint8_batches": "augment and send training batches as uint8 and normalise them on the device (less work for "
                     "the workers, fewer bytes; the training set built from the configuration, 8-bit images, labels 0-255)",
    "compile": "torch.compile the model (minutes of compiling before the first step)",
    "compile_mode": "torch.compile's mode with --compile: default (the default), reduce-overhead (CUDA graphs) or "
                    "max-autotune",
    "device": "cpu, cuda, cuda:1, mps, ... (default: $DEEPLAB_EDU_DEVICE, else cuda when available; for train, a "
              "preset's device comes first: the cpu, smoke and camvid_cpu presets set cpu)",
    "recompute_depthwise": "recompute separable convs' depthwise half in the backward pass (less memory, a few "
                           "%% more time)",
    "keep_freed_memory": "CPU, glibc: reuse freed memory while training instead of returning it to the OS",
    "out_dir": "folder of the run: checkpoints, metrics.csv, metrics.json, config.json",
    "eval_every": "validate every N iterations", "ckpt_every": "checkpoint every N iterations",
    "keep_last": "checkpoints kept", "log_every": "log the loss every N iterations (metrics.csv; a console line each with --no-progress)",
    "resume": "continue from the newest checkpoint in --out-dir, under this command's settings",
    "progress": "{progress}",
}

#: Help shared by the flags of the same name in several commands.
_PROGRESS_HELP = "show the progress bar (--no-progress: none, e.g. in a log file)"
_WORKERS_HELP = ("DataLoader worker processes (default: the cores of this process less one, at most 8; 0: load in "
                 "the main process)")
_PLACES_HELP = "$DEEPLAB_EDU_<NAME>, e.g. $DEEPLAB_EDU_CAMVID, else <clone>/../shared/data/<name>, else " \
               "$DEEPLAB_EDU_DATA/<name> or ~/.cache/deeplab_edu/data/<name> ($XDG_CACHE_HOME for ~/.cache)"
_CHECKPOINT_HELP = ("a training checkpoint or a model file (.pt; deeplab-edu export --out writes one), a run's folder, "
                    "or its checkpoints/ folder (the newest checkpoint)")


def _field_comments(cls: type) -> dict[str, str]:
    """The ``#:`` comment above each field of the dataclass ``cls`` (what Sphinx autodoc shows), in
    one line without reST markup: the help of the flags that ``_TRAIN_HELP`` does not word itself."""
    import inspect
    import re

    names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    words = {"True": "on", "False": "off", "None": "none"}  # a flag's user types on/off or none, not Python

    def as_typed(match: re.Match[str]) -> str:
        """A ``name`` in a comment as a user of the command line types it: a field as its flag."""
        word = match.group(1)
        return flag_of(word) if word in names else words.get(word, word)

    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        text = line.strip()
        if text.startswith("#:"):
            pending.append(text[2:].strip())
        elif pending and (field := re.match(r"(\w+)\s*:", text)):
            comment = re.sub(r"``([^`]+)``", as_typed, " ".join(pending)).rstrip(".")
            # in the style of the other flags' help: lower case ("add ...", not "Add ..."; "CPU" stays)
            comments[field.group(1)] = comment[:1].lower() + comment[1:] if comment[1:2].islower() else comment
            pending = []
        else:
            pending = []
    return comments


def _with_default(help_: str | None, f: dataclasses.Field[Any]) -> str | None:
    """``help_`` with the field's default appended, "(without a preset: 0.007)" ("on" or "off" for a switch),
    unless it names its default already: a user without a preset sees what each flag is set to, and that a
    switch such as --recompute-depthwise is on (a finding of the CLI's audit)."""
    if help_ is None or "without a preset" in help_ or "default" in help_ or f.default is dataclasses.MISSING:
        return help_
    value = f.default
    shown = ("on" if value else "off") if isinstance(value, bool) else "none" if value is None else (
        " ".join(map(str, value)) if isinstance(value, tuple) else str(value))
    return f"{help_} (without a preset: {shown})"


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    from .engine.config import TrainConfig

    from .choices import BACKBONES, DATASETS, MODELS, OPTIMIZERS, OUTPUT_STRIDES

    choices = {k: ", ".join(map(str, v)) for k, v in (("models", MODELS), ("backbones", BACKBONES),
                                                       ("datasets", DATASETS), ("optimizers", OPTIMIZERS),
                                                       ("strides", OUTPUT_STRIDES))}
    choices.update(places=_PLACES_HELP, workers=_WORKERS_HELP, progress=_PROGRESS_HELP)
    hints = typing.get_type_hints(TrainConfig)
    comments = _field_comments(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = flag_of(f.name)
        t = hints[f.name]
        help_ = (_TRAIN_HELP[f.name].format(**choices) if f.name in _TRAIN_HELP else
                 comments.get(f.name, "").replace("%", "%%") or None)
        help_ = _with_default(help_, f)
        if f.name == "pretrained_backbone":  # a switch that also takes a local file
            p.add_argument(flag, nargs="?", const=True, default=None, metavar="FILE", help=help_)
            p.add_argument("--no-" + flag[2:], dest=f.name, action="store_false", default=None,
                           help="start from random weights (overrides a preset's pretrained_backbone)")
        elif t is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif f.name == "scale_range":
            p.add_argument(flag, nargs=2, type=float, default=None, metavar=("MIN", "MAX"), help=help_)
        elif f.name == "model_kwargs":
            p.add_argument(flag, type=_json_value, default=None, metavar="JSON",
                           help='extra build_model arguments, e.g. \'{"image_pooling": false}\', added to those of '
                                "the preset and --config (an argument named again replaces theirs), as the model "
                                "flags below are")
        elif f.name in ("eval_output_stride",):
            # absent unless given (SUPPRESS), so that "none" (None: the training stride) is told from "not given"
            p.add_argument(flag, type=_output_stride_or_none, default=argparse.SUPPRESS, help=help_)
        else:
            base = int if "int" in str(t) else float if "float" in str(t) else str
            p.add_argument(flag, type=base, default=None, help=help_)
    model = p.add_argument_group("the model's architecture (build_model arguments, kept in model_kwargs)")
    for name, help_ in _MODEL_FLAGS.items():
        flag = flag_of(name)
        if name == "multi_grid":
            model.add_argument(flag, nargs="+", type=int, default=None, metavar="RATE", help=help_)
        else:
            model.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)


#: The build_model arguments that are flags of ``train`` too (``--multi-grid 1 2 4``, ``--no-image-pooling``):
#: the papers' ablations, each of which ``--model-kwargs`` JSON also gives.
_MODEL_FLAGS = {
    "multi_grid": "v3/v3+: the rates of block 4's three units, as multiples of the block's rate (DeepLabv3 "
                  "sec. 3.2.1, e.g. 1 2 4; default: torchvision's, not a multi-grid: block 4's first unit at the "
                  "previous block's rate, the other two at the block's)",
    "image_pooling": "v3/v3+: ASPP's image-level branch (DeepLabv3 sec. 3.3; default on)",
    "separable": "v3/v3+: depthwise-separable convolutions in ASPP and the decoder (DeepLabv3+ sec. 3.1; "
                 "default on for v3+, off for v3)",
}


_THREADS_HELP = ("PyTorch's CPU threads (default: one per core); fewer, e.g. 1, are often much faster while other "
                 "jobs share the CPU")


def _cpu_threads(args: argparse.Namespace, device: str) -> None:
    """Apply ``--threads`` (``torch.set_num_threads``), or on a CPU say when other jobs make fewer
    threads faster (:func:`~deeplab_edu.engine.workers.busy_cpu_note`).

    Raises:
        ValueError: ``--threads`` is not a positive number.
    """
    import torch

    from .engine.distributed import is_main
    from .engine.workers import busy_cpu_note

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    elif device.startswith("cpu") and is_main() and (note := busy_cpu_note()):
        print(note, file=sys.stderr)


def _output_stride_or_none(text: str) -> int | None:
    """``--eval-output-stride``'s type: a whole number, or ``none`` (the training stride); validation checks
    the number (argparse's own message for a lambda read "invalid <lambda> value")."""
    if text.strip().lower() in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"use 8, 16, 32 or none (the training output stride), got {text!r}") from None


def _scale(text: str) -> float:
    """``--scales``' type: a positive number. A word that is none (an image path after ``predict --scales 0.5 1``,
    which the list took) is refused saying where the list ends."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a scale (a number such as 0.75): --scales takes the numbers up to the next flag (predict: "
            "give the image before --scales)") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"a scale must be a positive, finite number, got {text!r}")
    return value


#: The smallest sliding window ``eval`` and ``predict`` take: at output stride 16 it is two feature-map cells a
#: side (a trial ran one-pixel windows without a word), and the smallest image side the exports keep dynamic.
MIN_WINDOW = 32


def _window(text: str) -> int:
    """``--crop-size``'s type for ``eval`` and ``predict``: a sliding window's side, a whole number (at least
    :data:`MIN_WINDOW` pixels, which :meth:`OneLineErrorParser.parse_known_args` checks once ``--output-stride``
    is read too)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a window's side in pixels, a whole number, got {text!r}") from None


def _small_window(side: int, output_stride: int | None) -> str:
    """Why a window of ``side`` pixels (below :data:`MIN_WINDOW`) is refused: its map at ``output_stride``, or at
    16 and 8 when none was asked for (a census: --output-stride 32 was told of strides 16 and 8)."""
    at = (f"{max(side // output_stride, 0)} cells a side at output stride {output_stride}" if output_stride else
          f"{max(side // 16, 0)} cells a side at output stride 16, {max(side // 8, 0)} at 8")
    return (f"a sliding window of {side} pixel{'' if side == 1 else 's'} is too small to predict from (a map of {at}): "
            f"use at least {MIN_WINDOW}, or leave --crop-size out (each image whole)")


def _threads(text: str) -> int:
    """``--threads``' type (and ``--repeats``', ``eval --limit``'s): a whole number of at least 1 (refused by
    argparse, before anything runs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _path(text: str) -> str:
    """The type of every path flag the configuration does not read itself: ``text`` with a leading ``~``
    expanded (bash leaves ``--out=~/p`` as it is, so ``~`` was a folder of that name in the working folder);
    an empty path is refused (it meant the working folder: ``predict --out ""`` wrote the masks there)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path: name a file or folder (. for the working folder)")
    return os.path.expanduser(text)


def _output_file(text: str) -> str:
    """:func:`_path` for a file a command writes (``eval --json``, ``train --record``, ``export --out``): ``-``,
    which is no file name but standard output to a Unix tool, is refused (it wrote a file named ``-``)."""
    if text == "-":
        raise argparse.ArgumentTypeError("- (standard output) is not written to: name the file to write, e.g. "
                                         "out.json")
    return _path(text)


def build_parser() -> argparse.ArgumentParser:
    """The ``deeplab-edu`` argument parser, with the subcommands ``train``, ``eval``, ``predict``, ``export``,
    ``bench``, ``course-runs`` and ``check-data``."""
    from .choices import OUTPUT_STRIDES  # torch-free, as the whole parser is

    parser = OneLineErrorParser(prog="deeplab-edu", description="Train, evaluate and run DeepLab models.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str, more: str = "") -> argparse.ArgumentParser:
        """A sub-command whose own --help starts with its summary (as the list of commands gives it)."""
        return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + "." + (
            " " + more if more else ""))

    tr = command("train", "train a model (DeepLabv3's recipe)")
    tr.add_argument("--preset", help="a preset name (see --list-presets); without it, the papers' defaults")
    tr.add_argument("--config", help="a YAML file of settings, applied on top of --preset if both are given (its "
                                     "relative paths, e.g. data_root, start from the working folder, not the file's); "
                                     "a run's own config.json with --resume continues that run in its folder",
                    type=_path)
    tr.add_argument("--list-presets", action="store_true", help="print the presets, each with its first line, and exit")
    tr.add_argument("--record", type=_output_file,
                    help="also write a provenance record (JSON) of the run's result here")
    tr.add_argument("--threads", type=_threads, help=_THREADS_HELP)
    _add_train_flags(tr)

    ev = command("eval", "evaluate a checkpoint (DeepLabv3 inference strategies: OS, multi-scale, flip)")
    ev.add_argument("--checkpoint", required=True, help=_CHECKPOINT_HELP, type=_path)
    ev.add_argument("--split", default="val", help="the data set's split to evaluate (default: val); the procedural "
                                                   "scenes' train split holds the run's train_length scenes (100,000 "
                                                   "on the cpu preset): --limit N scores the first N")
    ev.add_argument("--dataset", help="the data set to evaluate on (default: the run's), e.g. folder with --data-root "
                                      "for a run whose script passed its own data")
    ev.add_argument("--data-root", type=_path,
                    help="where the data set is (default: the run's data_root, else " + _PLACES_HELP + ")")
    ev.add_argument("--download", action=argparse.BooleanOptionalAction, default=False, help=_TRAIN_HELP["download"])
    ev.add_argument("--scales", nargs="+", type=_scale, default=[1.0],
                    help="input scales whose probabilities are averaged, e.g. 0.5 0.75 1 1.25 1.5 1.75 "
                         "(DeepLabv3 sec. 4.2; default: 1)")
    ev.add_argument("--flip", action="store_true", help="also average over left-right flipped inputs")
    ev.add_argument("--output-stride", type=int, choices=OUTPUT_STRIDES,
                    help="the network's output stride at inference (DeepLabv3 Tables 4 and 6: 8 is slower and "
                         "more accurate than 16); default: the run's eval_output_stride (what its validation used), "
                         "else its training output stride")
    ev.add_argument("--crop-size", type=_window, help="side in pixels of a sliding window for images larger than it (less "
                                                  "memory for the network's activations, not for the per-class "
                                                  "score maps, kept at full resolution; default: each image whole "
                                                  "at once)")
    ev.add_argument("--limit", type=_threads, help="evaluate only the first N images")
    ev.add_argument("--device", default=None, help=_TRAIN_HELP["device"])
    ev.add_argument("--json", help="write the metrics here (fractions in [0, 1]; null: a class in neither truth nor "
                                   "prediction)", type=_output_file)
    ev.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help=_PROGRESS_HELP)
    ev.add_argument("--threads", type=_threads, help=_THREADS_HELP)

    pr = command("predict", "predict masks for an image file or a folder of images")
    pr.add_argument("--checkpoint", required=True, help=_CHECKPOINT_HELP, type=_path)
    pr.add_argument("input", help="an image file or a folder of images", type=_path)
    pr.add_argument("--out", default="predictions", type=_path,
                    help="folder for <name>_mask.png (the class index of each pixel, in a palette PNG that viewers "
                         "show in the class colours) and <name>_overlay.png (default: ./predictions)")
    pr.add_argument("--scales", nargs="+", type=_scale, default=[1.0],
                    help="input scales whose probabilities are averaged, e.g. 0.75 1 1.25 (default: 1; give the "
                         "image before --scales, which takes every number up to the next flag)")
    pr.add_argument("--flip", action="store_true", help="also average over left-right flipped inputs")
    pr.add_argument("--output-stride", type=int, choices=OUTPUT_STRIDES,
                    help="the network's output stride at inference (8: slower, finer); default: the run's "
                         "eval_output_stride, else its training one")
    pr.add_argument("--crop-size", type=_window, help="side in pixels of a sliding window for images larger than it "
                                                  "(less memory for the network's activations on large photos, not "
                                                  "for the per-class score maps, kept at full resolution; default: "
                                                  "each image whole at once)")
    pr.add_argument("--device", default=None, help=_TRAIN_HELP["device"])
    pr.add_argument("--threads", type=_threads, help=_THREADS_HELP)
    pr.add_argument("--overwrite", action="store_true",
                    help="replace files of those names that predict did not write, or wrote for another image of "
                         "the same name (by default it refuses: a ground-truth a_mask.png beside a.png, say, or "
                         "a.png's mask when a.webp is predicted)")

    ex = command("export", "a trained run as a model file to share or predict with (no optimiser "
                           "state), and/or as ONNX")
    ex.add_argument("--checkpoint", required=True, help=_CHECKPOINT_HELP, type=_path)
    ex.add_argument("--out", help="the model file to write (.pt: weights, configuration and class names; what "
                                  "eval, predict and --init-from read)", type=_output_file)
    ex.add_argument("--onnx", help="also (or only) write the model as ONNX here (batch, height and width dynamic; "
                                   "input (N, 3, H, W) float32 RGB in [0, 1] normalised as in training, (x - mean) / "
                                   "std with ImageNet's mean 0.485, 0.456, 0.406 and std 0.229, 0.224, 0.225; output "
                                   "logits (N, classes, H, W); the file's metadata holds these and the class names)",
                    type=_output_file)
    ex.add_argument("--output-stride", type=int, choices=OUTPUT_STRIDES,
                    help="the ONNX graph's output stride (fixed in it); default: the run's eval_output_stride, as "
                         "eval and predict use, else its training one")
    ex.add_argument("--overwrite", action="store_true",
                    help="replace a file of the other kind at --out or --onnx (by default export replaces only an "
                         "earlier model file at --out, or an earlier ONNX file at --onnx)")

    cd = command("check-data", "read a data set once, as training would: every bad file, and each "
                               "class's share of the labelled pixels")
    cd.add_argument("--dataset", default="folder", help="the data set (default: folder, your own images and masks "
                                                        "in --data-root)")
    cd.add_argument("--data-root", help="where the data set is (folder: required; others: default " + _PLACES_HELP
                    + ")", type=_path)
    cd.add_argument("--split", nargs="+", default=["train", "val"], help="the splits to read (default: train val)")
    cd.add_argument("--download", action=argparse.BooleanOptionalAction, default=False, help=_TRAIN_HELP["download"])
    cd.add_argument("--num-workers", type=int, help=_WORKERS_HELP)
    cd.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help=_PROGRESS_HELP)

    cr = command("course-runs", "before class: train every run the chapters load (08-11); finished runs "
                                "are loaded, not retrained",
                 "One after the other, the runs chapters 08, 09 and 11 train (and chapter 10 loads), into "
                 "runs/course/<profile>/ of the package's clone, or of DEEPLAB_EDU_RUNS; chapter 11's CamVid run only where "
                 "a CamVid copy is found. An interrupted run resumes when the command runs again. --dry-run lists "
                 "each run's command and state and, in the cpu profile, how long they take at most (the chapters' "
                 "header minutes, added up).")
    cr.add_argument("--profile", choices=["cpu", "gpu"], default=None,
                    help="the course profile whose runs to train (default: DEEPLAB_EDU_PROFILE, else gpu with CUDA, cpu "
                         "without)")
    cr.add_argument("--dry-run", action="store_true", help="print the runs' commands and train nothing")
    cr.add_argument("--threads", type=_threads, help=_THREADS_HELP + " (a laptop in use for a browser or a call)")

    be = command("bench", "throughput and memory vs torchvision and segmentation_models_pytorch; "
                          "the data pipeline; torch.compile")
    be.add_argument("--mode", choices=["models", "pipeline", "loader", "compile"], default="models",
                    help="models: ours vs torchvision/smp; pipeline: training through the engine's loader vs the "
                         "step alone; loader: scenes/s per worker count; compile: eager vs torch.compile")
    be.add_argument("--device", default=None, help="cpu (default; pipeline mode: the preset's device) or cuda; "
                    "the loader mode runs on the CPU")
    be.add_argument("--size", type=int, default=None, help="input side in pixels (default 128, a multiple of 16: smp "
                    "needs it; loader mode: the scenes' side, default 256)")
    be.add_argument("--batch", type=int, default=None, help="images per step (default 2; loader mode: scenes per "
                    "batch, default 8)")
    be.add_argument("--repeats", type=_threads, help="interleaved rounds, default 6 (loader mode: 3); pipeline mode: "
                    "timed windows per source. A speed-up gets a 95 %% interval and a verdict from 6 rounds on "
                    "(the loader mode gives none); more are steadier")
    be.add_argument("--out", help="record JSON path (default runs/bench/<mode>_<device>.json, models mode "
                    "bench_<device>.json; the committed records are in benchmarks/results/)", type=_output_file)
    be.add_argument("--pairs", nargs="+", default=None, choices=["v3", "v3plus"],
                    help="models mode: v3 (ours vs torchvision's DeepLabv3) and/or v3plus (vs smp's DeepLabV3Plus); "
                         "default both")
    be.add_argument("--threads", type=_threads, help="models, pipeline and compile modes: torch intra-op threads for the "
                    "run (1: steadier on a shared CPU)")
    be.add_argument("--preset", help="pipeline mode: the training preset (default: gpu with --device cuda or, "
                    "without --device, where PyTorch sees CUDA; cpu otherwise, whose network trains in minutes "
                    "on a CPU where gpu's would take hours)")
    be.add_argument("--iterations", type=int, default=None, help="pipeline mode: training steps per timed window "
                    "(default 30)")
    be.add_argument("--num-workers", type=int, help="pipeline mode: DataLoader workers (default: the preset's)")
    be.add_argument("--workers", type=int, nargs="+", default=None, help="loader mode: worker counts (default 0 1 2)")
    be.add_argument("--backbone", default=None, help="compile mode: the DeepLabv3+ backbone (default "
                    "mobilenet_v3_large)")
    return parser


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The configuration ``deeplab-edu train`` runs: the preset, then the ``--config`` file, then the flags
    given (:func:`~deeplab_edu.engine.config.load_config`, for which ``None`` means "not given"; so
    ``--eval-output-stride none``, validation at the training stride, is applied here). ``--model-kwargs`` and
    the model flags (``--multi-grid``, ``--image-pooling``, ``--separable``) are added to the ``model_kwargs``
    the preset and the file give (an argument given again replaces theirs), the flags last.

    Raises:
        ~deeplab_edu.engine.config.ConfigError: a setting :func:`~deeplab_edu.engine.config.load_config`
            refuses, or a model flag and ``--model-kwargs`` that give one argument two values.
    """
    from .engine.config import ConfigError, TrainConfig, file_settings, load_config, run_of_config

    field_names = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in field_names and v is not None}
    run = run_of_config(args.config)
    if run is not None and "out_dir" not in overrides:  # a copied or moved run continues where its config.json is
        overrides["out_dir"] = str(run)
    given = overrides.get("model_kwargs") or {}
    if isinstance(given, dict) and given:  # merged over the preset's and the file's entries, as the flags are
        underneath = file_settings(args.preset, args.config).get("model_kwargs")
        if isinstance(underneath, dict):  # another type: load_config names the file that gives it
            overrides["model_kwargs"] = {**underneath, **given}
    cfg = load_config(args.preset, overrides, config=args.config)
    flags = {name: getattr(args, name) for name in _MODEL_FLAGS if getattr(args, name, None) is not None}
    if flags:  # on top of the preset's, the file's and --model-kwargs' entries
        clash = sorted(k for k in flags if k in given and given[k] != flags[k])
        if clash:
            raise ConfigError(f"{flag_of(clash[0])} and --model-kwargs give {clash[0]} two values "
                              f"({flags[clash[0]]!r} and {given[clash[0]]!r}); give one")
        overrides["model_kwargs"] = {**cfg.model_kwargs, **flags}
        cfg = load_config(args.preset, overrides, config=args.config)
    if "eval_output_stride" in vars(args) and args.eval_output_stride is None:
        cfg.eval_output_stride = None
    return cfg


def _check_data(args: argparse.Namespace) -> int:
    """Read every split of the data set (:func:`~deeplab_edu.data.check.check_dataset`); 2 when a file is bad."""
    from .choices import dataset_name
    from .data import build_dataset
    from .data.check import check_dataset

    from .data.io import BadDataError, DatasetNotFoundError

    bad = left_out = read = 0
    unread: list[tuple[str, Exception]] = []  # splits that could not be listed (an empty one), with why
    # a folder lists its unpaired files among the problems instead of stopping at them
    key = dataset_name(args.dataset)  # as build_dataset reads the name
    options: dict[str, Any] = {"skip_unpaired": True} if key == "folder" else {}
    for split in args.split:
        try:
            try:
                dataset = build_dataset(args.dataset, split, root=args.data_root, download=args.download, **options)
            except DatasetNotFoundError as err:
                if key in ("folder", "procedural"):
                    raise
                dataset = _with_missing_files(args, split, err)
        except (DatasetNotFoundError, BadDataError) as err:  # the other splits are still read (a practitioner's trial)
            if args.download and not read:
                raise  # nothing read yet: a download that failed for one split fails for the next too
            unread.append((split, err))
            continue
        read += 1
        print(f"{args.dataset} {split}: {dataset!r}")
        report = check_dataset(dataset, num_workers=args.num_workers, progress=args.progress)
        print(report.summary())
        bad, left_out = bad + len(report.problems), left_out + len(report.unpaired)
    if len(unread) == len(args.split):  # nothing could be read: the data set's own error, once, as before
        raise unread[0][1]
    for split, problem in unread:
        print(f"{args.dataset} {split}: not read: {problem}", file=sys.stderr)
    if bad or left_out or unread:  # the counts the splits' summaries gave, summed (a trial: one total of both)
        found = [f"{bad} bad item(s)" if bad else "", f"{left_out} file(s) left out" if left_out else "",
                 f"the split(s) {', '.join(s for s, _ in unread)} not read" if unread else ""]
        print(f"{' and '.join(f for f in found if f)}: fix or remove them before training", file=sys.stderr)
    return 2 if bad or left_out or unread else 0


def _with_missing_files(args: argparse.Namespace, split: str, err: Exception) -> Any:
    """A real data set's ``split`` whose listed files are not all there, for ``check-data`` to read item by item
    (each missing file one of its problems: a trial had the split refused as a whole, its other bad files one
    run later); ``err``, the data set's own error (which says how to get the data), where the split's images
    or its masks are all missing (a part not unpacked, as Cityscapes' ``gtFine``) or the split is not listed.

    Raises:
        DatasetNotFoundError: ``err``, as said.
    """
    from .data import build_dataset
    from .data.io import BadDataError, DatasetNotFoundError

    try:
        dataset = build_dataset(args.dataset, split, root=args.data_root, check_files=False)
    except (DatasetNotFoundError, BadDataError):
        raise err from None
    images, masks = zip(*getattr(dataset, "pairs"))
    if not any(Path(f).is_file() for f in images) or not any(Path(f).is_file() for f in masks):
        raise err  # a whole part of the data set is missing: its message says how to get it
    return dataset


def _train(args: argparse.Namespace) -> int:
    from .config import device as _default_device
    from .engine.config import list_presets, preset_summary
    from .engine.distributed import is_main
    from .engine.trainer import Trainer

    if args.list_presets:
        names = list_presets()
        width = max(map(len, names))
        for name in names:
            print(textwrap.fill(preset_summary(name), width=100, initial_indent=f"{name:<{width}}  ",
                                subsequent_indent=" " * (width + 2)))
        return 0
    cfg = _train_config(args)
    if args.record:  # before the run, not after its minutes (a safety audit: a user's file was replaced)
        from .records import check_record_path

        check_record_path(args.record)
    on_cpu = (cfg.device or str(_default_device())).startswith("cpu") and is_main()
    if not args.preset and not args.config and on_cpu:
        print(f"note: no --preset: these are the papers' settings ({cfg.backbone}, {cfg.crop_size}-pixel crops in "
              f"batches of {cfg.batch_size}), made for GPUs: on a CPU each iteration is slow (the papers train "
              "30000); --preset cpu trains the course's teaching-scale model in minutes (--list-presets shows "
              "them all)", file=sys.stderr)
    elif args.preset in list_presets() and on_cpu and _preset_device(args.preset) is None:  # a trial: camvid_gpu
        # started on a CPU without a word (the course's CPU presets set device: cpu)
        print(f"note: --preset {args.preset} is made for a GPU ({cfg.backbone}, {cfg.crop_size}-pixel crops in batches "
              f"of {cfg.batch_size}, {cfg.iterations} iterations), and this run is on the CPU: each iteration is slow; "
              "--preset cpu or camvid_cpu trains the course's teaching-scale model in minutes", file=sys.stderr)
    given = {k for k, v in vars(args).items() if v is not None}
    from .config import DEVICE_ENV_VAR

    wanted = os.environ.get(DEVICE_ENV_VAR, "").strip()
    if wanted and "device" not in given and cfg.device and cfg.device != wanted and is_main():  # a trial: silent
        print(f"note: the settings (--preset or --config) set device {cfg.device}, which comes before "
              f"{DEVICE_ENV_VAR}={wanted}; --device {wanted} trains there", file=sys.stderr)
    if args.preset and "iterations" in given and is_main():  # a preset's short intervals, kept for a longer run
        often = [f"{flag_of(name)} {every}" for name in ("eval_every", "ckpt_every")
                 if name not in given and (every := getattr(cfg, name)) * 50 < cfg.iterations]
        if often:
            print(f"note: the preset '{args.preset}' keeps {' and '.join(often)} for {cfg.iterations} iterations: a "
                  f"validation or checkpoint that often costs time; set them for this run", file=sys.stderr)
    if args.preset and "out_dir" not in given and is_main() and (moved := _run_in_earlier_folder(cfg)):
        from .records import shown_path

        print(f"note: {shown_path(cfg.out_dir)}, the preset's out_dir, holds no checkpoint, so this trains a new run "
              f"from the start; the preset's run is {moved} (a moved run continues with --resume)", file=sys.stderr)
    _cpu_threads(args, cfg.device or str(_default_device()))
    start = time.time()
    try:
        trainer = Trainer(cfg)
        start_iteration = trainer.iteration  # a resumed run's
        result = trainer.fit()
    except KeyboardInterrupt as err:
        import signal

        from .engine.checkpoint import latest_checkpoint

        last = latest_checkpoint(Path(cfg.out_dir) / "checkpoints")
        if is_main():  # once, not once per process under torchrun (whose processes agree on the step to stop at)
            with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
                print("interrupted; " + (f"the last checkpoint is {last}: run the same command with --resume to "
                                         "continue" if last else "no checkpoint had been written yet"), file=sys.stderr)
        return 128 + getattr(err, "signum", signal.SIGINT)  # 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP, as a shell reports
    seconds = time.time() - start
    curve = [(r["iteration"], round(r["miou"], 4)) for r in result["history"] if r["split"] == "val"]
    final = result["final"]
    if args.record and is_main():  # before the last line: a closed pipe (`| head -1`) must not lose the record;
        # under torchrun by rank 0 only, as the line (an audit: each process wrote the file)
        from .records import write_record

        rates = [r["images_per_s"] for r in result["history"] if r["split"] == "train" and "images_per_s" in r]
        steady = rates[1:] or rates  # the first window holds the warm-up (a compile, CUDA graphs' capture)
        write_record(args.record, {"seconds": round(seconds, 1), "final_miou": final.get("miou"),
                                   "images_per_s_median": round(statistics.median(steady), 2) if steady else None,
                                   "images_per_s_windows": len(steady),
                                   "final_pixel_accuracy": final.get("pixel_accuracy"),
                                   "final_iou": final.get("iou"), "val_miou_curve": curve,
                                   "train_loss_curve": [(r["iteration"], round(r["loss"], 4))
                                                        for r in result["history"] if r["split"] == "train"]},
                     extra={"config": cfg.to_dict()})
    if is_main():  # under torchrun, rank 0 speaks for the run
        done = (f"done in {seconds:.0f} s" if trainer.iteration > start_iteration else
                f"nothing trained (the run already has {trainer.iteration} iterations); its last validation")
        print(f"{done}: val mIoU {100 * final.get('miou', float('nan')):.1f}%"
              f"{_unscored_note(final.get('iou'), trainer.model_info.get('class_names'))} "
              f"(curve: {_short_curve(curve)}); outputs in {cfg.out_dir}")
    return 0


def _run_in_earlier_folder(cfg: TrainConfig) -> str:
    """Where the run of a course preset whose ``out_dir`` an update of the course moved (``camvid_gpu``:
    ``runs/camvid_deeplabv3plus`` before d8ed0de) is, with the ``mv`` that moves it, when its ``out_dir`` holds no
    checkpoint and its earlier folder holds the run (:data:`~deeplab_edu.viz.training.EARLIER_FOLDERS`, relative
    to ``runs/`` of the working folder, as the preset's ``out_dir`` is); ``""`` otherwise."""
    from .engine.runs import _judge
    from .viz.training import earlier_folders

    folder = Path(cfg.out_dir)
    found = _judge(cfg, folder, earlier_folders(folder, Path("runs")))
    return found.status.text if found.status.state == "moved" else ""


def _preset_device(preset: str) -> str | None:
    """The ``device`` a preset of ``deeplab_edu/presets`` (a name of :func:`~deeplab_edu.engine.config.list_presets`)
    sets, if any: the course's CPU presets set ``cpu``."""
    import yaml

    from .engine.config import PRESETS_DIR

    path = PRESETS_DIR / f"{preset}.yaml"
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # load_config has read it already: this is only a note's question
    return settings.get("device") if isinstance(settings, dict) else None


def _short_curve(curve: list[tuple[int, float]], most: int = 6) -> str:
    """A validation curve of (iteration, mIoU) pairs for one line: at most ``most`` pairs, the first two
    and the last ones, with how many were left out (the whole curve is in metrics.csv and metrics.json)."""
    if len(curve) <= most:
        return str(curve)
    head, tail = curve[:2], curve[2 - most:]
    return (f"[{', '.join(map(str, head))}, ... {len(curve) - len(head) - len(tail)} more ..., "
            f"{', '.join(map(str, tail))}]")


def _version() -> str:
    from . import __version__

    return __version__


def _unscored_note(iou: Any, class_names: Any) -> str:
    """" over K of N classes (...: no pixel in truth or prediction)" when the mIoU leaves classes out, else ""."""
    if not isinstance(iou, (list, tuple)) or not iou:
        return ""
    missing = [k for k, v in enumerate(iou) if v is None or (isinstance(v, float) and math.isnan(v))]
    if not missing:
        return ""
    names = list(class_names) if class_names is not None and len(class_names) == len(iou) else list(range(len(iou)))
    return (f" over {len(iou) - len(missing)} of {len(iou)} classes ({', '.join(str(names[k]) for k in missing)}: "
            "no pixel in the validation truth or prediction, not scored)")


def _dataset_for(cfg: dict[str, Any], split: str, root: str | None, *, download: bool = False) -> Any:
    from .data import build_dataset
    from .data.transforms import eval_transform

    from .data.io import DatasetNotFoundError

    kw: dict[str, Any] = {"download": True} if download else {}
    if cfg["dataset"] == "procedural":  # the split's own length, as the run generated it
        length = cfg["train_length"] if split == "train" else cfg["val_length"]
        kw = {**kw, "size": cfg["image_size"], "length": length, "difficulty": cfg.get("difficulty", "hard")}
    try:
        return build_dataset(cfg["dataset"], split, root=root or cfg.get("data_root"), transform=eval_transform(), **kw)
    except DatasetNotFoundError as err:
        if root or not cfg.get("data_root") or Path(cfg["data_root"]).exists():  # a split missing, say: not moved
            raise
        # a practitioner's trial: the run's data folder had moved, and the message did not say where it came from
        raise DatasetNotFoundError(f"{err} (the run's data_root, where it was trained; --data-root DIR reads the "
                                   "data set from where it is now)") from None


#: The keys every ``eval --json`` output holds: a file with them is an earlier evaluation, which ``--json`` replaces.
EVAL_JSON_KEYS = ("strategy", "miou", "iou")


def _check_eval_json(path: str, checkpoint: Path) -> None:
    """Refuse, before the model is loaded, an ``eval --json`` ``path`` whose writing would lose a file: the
    ``checkpoint`` being scored, or what :func:`~deeplab_edu.records.check_record_path` refuses (a folder, a
    pipe or device, a non-empty file that is not an earlier ``eval --json`` output: a run's config.json or
    metrics.json, the training history; a CLI audit found each replaced without a word).

    Raises:
        ValueError: naming ``path``, what it holds and what to do.
    """
    from .records import check_record_path

    target = Path(path)
    if target.is_file() and target.stat().st_size == 0:  # mktemp's, or `: > m.json`: nothing there to lose
        return
    if target.is_file() and os.path.samefile(target, checkpoint):
        raise ValueError(f"--json {path} is the checkpoint being scored: name another file, e.g. "
                         f"{target.parent / 'eval.json'}")
    check_record_path(target, "--json", keys=EVAL_JSON_KEYS,
                      what=f"an earlier eval output (one with {', '.join(EVAL_JSON_KEYS)})", example="eval.json")


def _eval(args: argparse.Namespace) -> int:
    from .atomic import write_text_atomic
    from .choices import dataset_name
    from .config import resolve_device
    from .data.classes import nfc_names
    from .inference import Strategy, evaluate, load_run
    from .metrics import format_iou_table
    from .records import nan_to_null

    dev = str(resolve_device(args.device))  # "gpu", or cuda where there is none: a message naming --device
    from .engine.checkpoint import checkpoint_file

    # the file scored, not the folder given: a folder's newest checkpoint changes while a run trains on
    checkpoint = checkpoint_file(args.checkpoint)
    if args.json:  # before the model is loaded and the minutes of scoring
        _check_eval_json(args.json, checkpoint)
    model, cfg, info = load_run(checkpoint, dev)
    if args.dataset:  # another data set than the run's: its data_root is not this one's
        # named as the run's configuration names it (PROCEDURAL, pascal_voc): the run's own keeps its settings
        dataset, own = dataset_name(args.dataset), dataset_name(cfg["dataset"])
        cfg = {**cfg, "dataset": dataset, "data_root": cfg.get("data_root") if dataset == own else None}
    elif "data_class" in info and not (cfg["dataset"] == "folder" and (args.data_root or cfg.get("data_root"))):
        raise ValueError(f"checkpoint {args.checkpoint} was trained on a data set its training script passed to the "
                         f"Trainer ({info['data_class']}), which deeplab-edu eval cannot rebuild (its configuration "
                         f"says dataset: {cfg['dataset']}): name it (--dataset folder --data-root DIR for your own "
                         "folder), or evaluate in Python: deeplab_edu.inference.evaluate(load_model(path)[0], "
                         "your_val_set) with the val set normalised (transform=eval_transform())")
    ds = _dataset_for(cfg, args.split, args.data_root, download=args.download)
    if getattr(ds, "num_classes", info["num_classes"]) != info["num_classes"]:
        raise ValueError(f"the model of {args.checkpoint} has {info['num_classes']} classes but data set "
                         f"{cfg['dataset']!r} has {ds.num_classes}")
    trained, named = info.get("class_names"), getattr(ds, "class_names", None)
    # compared in NFC: a checkpoint made before class names were normalised may hold the NFD forms
    if trained and named and nfc_names(trained) != nfc_names(named):  # same count, other classes or another order
        raise ValueError(f"the model of {args.checkpoint} was trained on the classes {', '.join(trained)}, but data set "
                         f"{cfg['dataset']!r} names {', '.join(named)} (in label order): its IoUs would be scored "
                         "under the wrong names; evaluate on data labelled like the training set")
    strategy = Strategy(tuple(args.scales), args.flip, _output_stride(args, cfg), args.crop_size)
    _cpu_threads(args, dev)  # --threads, or the note on a busy CPU: after every check that fails at once
    images = min(len(ds), args.limit) if args.limit else len(ds)
    given_root = args.data_root or cfg.get("data_root")
    where = given_root or getattr(ds, "root", None)  # else the copy data.paths found
    print(f"scoring {checkpoint} on {cfg['dataset']} {args.split} ({images} image{'s' * (images != 1)}"
          f"{f', {where}' if where else ''})")  # what the numbers below score, before the wait
    m = evaluate(model, ds, strategy, limit=args.limit, device=dev, progress=args.progress)
    if args.json:  # before the console's lines: a closed pipe (`| head -1`) must not lose the file
        names = named or trained  # per-class IoU also by name: {"sky": 0.91, ...} beside the list
        by_name = {"iou_by_class": dict(zip(names, m["iou"]))} if names and len(names) == len(m["iou"]) else {}
        scored = {"checkpoint": str(checkpoint), "dataset": cfg["dataset"], "split": args.split,
                  "data_root": given_root,
                  "images": images}  # what the numbers score
        record = nan_to_null({**scored, "strategy": dataclasses.asdict(strategy), **m, **by_name})
        write_text_atomic(args.json, json.dumps(record, indent=2, allow_nan=False) + "\n")  # strict JSON (jq, JS)
    print(f"{strategy.label}: mIoU {100 * m['miou']:.2f}%  pixel accuracy {100 * m['pixel_accuracy']:.2f}%  "
          f"fwIoU {100 * m['fw_iou']:.2f}%")
    print(format_iou_table(m["iou"], getattr(ds, "class_names", None)))
    if args.json:
        print(f"metrics written to {args.json}")
    return 0


def _output_stride(args: argparse.Namespace, cfg: dict[str, Any]) -> int | None:
    """``--output-stride``, else the run's evaluation output stride, else its training one."""
    if args.output_stride is not None:
        return args.output_stride  # 0 or 4 is refused by name before any image is read, not replaced
    from .choices import OUTPUT_STRIDES

    for name in ("eval_output_stride", "output_stride"):
        value = cfg.get(name)
        if value in OUTPUT_STRIDES:
            return int(value)
        if value is not None:  # a trial: "output_stride must be one of 8, 16, 32, got 7" named no file
            raise ValueError(f"checkpoint {args.checkpoint}: its configuration's {name}={value!r} is not an output "
                             f"stride ({', '.join(map(str, OUTPUT_STRIDES))}); the file is damaged or was written "
                             f"by another program: give --output-stride to choose one")
    return None


def _class_info(dataset: str) -> Any:
    from . import data

    infos = {"procedural": data.PROCEDURAL, "voc": data.VOC, "camvid": data.CAMVID, "cityscapes": data.CITYSCAPES}
    if dataset not in infos:
        raise ValueError(f"the checkpoint records no palette and its data set {dataset!r} has none built in")
    return infos[dataset]


#: Images larger than this (pixels) make ``predict`` suggest ``--crop-size`` when it is not given:
#: a whole 4000 x 3000 photo took 6.2 GB of resident memory and 45 s with a ``camvid_cpu`` model on
#: the 2-core development VM (measured once, with ``/usr/bin/time -v``).
LARGE_IMAGE_PIXELS = 2048 * 2048

#: Per-class score maps larger than this (bytes, :func:`_class_map_bytes`) make ``predict`` say so, with
#: ``--crop-size`` too, which does not make them smaller: a 150-class model's maps of a 2016 x 1512 photo are
#: 1.8 GB a copy (6.2 GB resident before predict kept one copy rather than three; an audit's measure).
LARGE_CLASS_MAP_BYTES = 2 ** 30


def _class_map_bytes(width: int, height: int, num_classes: int, strategy: Strategy) -> int:
    """An estimate of the bytes of the per-class score maps that predicting a ``width`` x ``height`` image holds
    at once: 4 (float32) per class and pixel for each full-resolution copy. One scale without flip keeps one
    copy (the logits, whose argmax is the mask); several views (``--scales``, ``--flip``) keep their running
    average too; a scale ``s`` other than 1 adds its logits before they are resized (``s**2`` copies). The
    network's activations come on top (``--crop-size`` bounds those, not these maps)."""
    largest = max(strategy.scales)
    copies = 1 + (largest ** 2 if largest != 1 else 0)
    if len(strategy.scales) > 1 or strategy.flip:
        copies += 1  # the running average of the probabilities
    return int(4 * num_classes * width * height * copies)


def _large_image_note(name: str, width: int, height: int, num_classes: int, strategy: Strategy) -> str | None:
    """``predict``'s note on an image whose prediction may need several GB, or ``None``: first for per-class
    maps beyond :data:`LARGE_CLASS_MAP_BYTES` (which ``--crop-size`` does not reduce), else for an image of more
    than :data:`LARGE_IMAGE_PIXELS` predicted whole (whose network activations ``--crop-size`` does reduce)."""
    maps = _class_map_bytes(width, height, num_classes, strategy)
    if maps > LARGE_CLASS_MAP_BYTES:
        return (f"note: {name} is {width} x {height} pixels and the model scores {num_classes} classes: predicting "
                f"it holds about {maps / 1e9:.1f} GB of per-class score maps at full resolution, besides the "
                "network's activations; --crop-size limits the activations, not these maps: predict a smaller copy "
                "of the image if memory runs out (half its width and height: a quarter of the maps)")
    if strategy.crop_size is None and width * height > LARGE_IMAGE_PIXELS:
        return (f"note: {name} is {width} x {height} pixels; predicting it whole may take several GB of memory and "
                "minutes on a CPU: --crop-size 1024 predicts it in overlapping windows with less")
    return None


def _out_of_memory_advice(width: int, height: int, num_classes: int, strategy: Strategy) -> str:
    """What ``predict`` advises when a ``width`` x ``height`` image failed (out of memory, most often): a smaller
    copy of the image where its per-class maps pass :data:`LARGE_CLASS_MAP_BYTES` (as :func:`_large_image_note`
    says, ``--crop-size`` does not reduce them), else ``--crop-size``."""
    maps = _class_map_bytes(width, height, num_classes, strategy)
    if maps > LARGE_CLASS_MAP_BYTES:
        return (f"its {num_classes} per-class score maps take about {maps / 1e9:.1f} GB at full resolution, which "
                "--crop-size does not reduce: predict a smaller copy of the image")
    return "--crop-size 1024 predicts a large image in windows with less memory"


#: The PNG ``Software`` text of every mask and overlay ``predict`` writes: it replaces only files carrying it.
PREDICT_SOFTWARE = "deeplab-edu predict"


def _brief_list(values: Sequence[Any], shown: int = 3) -> str:
    """The first ``shown`` of ``values`` for a message, with ``...`` when there are more."""
    return ", ".join(str(list(v)) for v in values[:shown]) + (", ..." if len(values) > shown else "")


def _output_names(files: list[Path]) -> dict[Path, str]:
    """Each image's output name (``NAME_mask.png``, ``NAME_overlay.png``): its stem; where stems repeat
    (photo.jpg and photo.png), the stem and suffix (``photo_jpg``); where even those repeat, letter case aside
    (a.jpg and a.JPG, one file name on macOS and Windows; a.png beside a_png.tif), a number added
    (``a_jpg_2``): no image's masks replace another's (a fuzzing trial found one of two lost)."""
    stems = collections.Counter(f.stem.casefold() for f in files)
    taken: set[str] = set()
    names: dict[Path, str] = {}
    for f in files:
        name = f.stem if stems[f.stem.casefold()] == 1 else f"{f.stem}_{f.suffix[1:].lower()}"
        base, n = name, 2
        while name.casefold() in taken:
            name, n = f"{base}_{n}", n + 1
        taken.add(name.casefold())
        names[f] = name
    return names


def _written_by_predict(path: Path) -> bool:
    """Whether ``path`` is a PNG that ``predict`` wrote (its ``Software`` text is :data:`PREDICT_SOFTWARE`)."""
    return _png_text(path).get("Software") == PREDICT_SOFTWARE


def _png_text(path: Path) -> dict[str, str]:
    """The text chunks of the PNG ``path`` (``{}`` for another file or none)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return dict(getattr(image, "text", {}))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):  # a safety audit: a bomb's
        return {}  # traceback; the loader names the file (io.load_image)


def _first_names(names: Sequence[str], shown: int = 3) -> str:
    """``"a, b, c, ..."``: the first ``shown`` of ``names`` for a one-line note, and whether there are more."""
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def _predict(args: argparse.Namespace) -> int:
    """Predict every image with the data sets' reader (:func:`~deeplab_edu.data.io.load_image`).

    Images are read as displayed (EXIF orientation applied; 16-bit and float images scaled by their
    mode), so the masks and overlays are written in the orientation a photo viewer shows.
    """
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from .atomic import atomic_path
    from .config import resolve_device
    from .data.io import has_transparency, load_image
    from .data.own import IMAGE_SUFFIXES, image_files
    from .data.transforms import normalize
    from .inference import Strategy, load_run, predict
    from .models.backbones import at_output_stride
    from .viz.images import colorize, overlay

    src, out = Path(args.input), Path(args.out)
    if not out.exists() and out.suffix.lower() in IMAGE_SUFFIXES:
        raise ValueError(f"--out {out} looks like a file name; --out names the folder the masks and overlays are "
                         f"written to (<name>_mask.png, <name>_overlay.png), e.g. --out {out.parent / out.stem}")
    if src.is_dir():
        files = image_files(src)  # not hidden files: .x_mask.tmp<pid>.png of an interrupted call, macOS's ._x.jpg
        shown = sorted((p for p in src.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
        if folders := [p.name for p in shown if p.is_dir()]:
            print(f"note: predict reads the images of {src} itself, not of its subfolders ({_first_names(folders)})",
                  file=sys.stderr)
        # a trial: notes.txt skipped without a word
        if others := [p.name for p in shown if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES]:
            print(f"note: {len(others)} file(s) of {src} without an image's suffix are not predicted "
                  f"({_first_names(others)})", file=sys.stderr)
        beside = out.resolve() == src.resolve()  # outputs written beside the images
        if beside and (src.parent / "masks").is_dir():  # a folder data set's images/
            raise ValueError(f"--out {out} is the images folder of a data set (masks in {src.parent / 'masks'}): "
                             "its _mask.png and _overlay.png files would become images without masks there; "
                             f"name another folder, e.g. --out {src.parent / 'predictions'}")
        # not the masks and overlays of an earlier call: beside the images (src is a folder, so out is one),
        # any so named; elsewhere (predict run on its own output folder), those predict marked as its own
        earlier = [p for p in files if p.name.endswith(("_mask.png", "_overlay.png"))
                   and (beside or _written_by_predict(p))]
        files = [p for p in files if p not in earlier]
        if not files:
            message = f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {src}"
            if earlier:
                whose = "named as predict writes them" if beside else "an earlier predict wrote"
                listed = ", ".join(p.name for p in earlier[:2]) + (", ..." if len(earlier) > 2 else "")
                message += (f" other than {len(earlier)} masks and overlays {whose} ({listed}), which are not "
                            "predicted again: give the folder of the photos")
            raise FileNotFoundError(message)
        if earlier and not beside:
            print(f"note: {len(earlier)} masks and overlays an earlier predict wrote in {src} are not predicted "
                  "again", file=sys.stderr)
    elif src.is_file():
        files = [src]
        if _written_by_predict(src):  # asked for by name: predicted, but not without a word (a trial)
            print(f"note: {src} is a mask or overlay an earlier predict wrote, not a photo; it is predicted as "
                  "one all the same", file=sys.stderr)
    else:
        raise FileNotFoundError(f"input {src} does not exist" if not src.exists() else
                                f"input {src} is neither an image file nor a folder")
    dev = str(resolve_device(args.device))  # "gpu", or cuda where there is none: a message naming --device
    model, cfg, info = load_run(args.checkpoint, dev)
    num_classes = int(info["num_classes"])  # how large the per-class score maps of an image are
    # the run's own classes; a checkpoint that does not record them: those of its configured data set
    palette = [tuple(rgb) for rgb in info["palette"]] if "palette" in info else _class_info(cfg["dataset"]).palette
    if len(palette) < int(info.get("num_classes", 0)) or not all(
            len(rgb) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in rgb) for rgb in palette):
        # a trial: a damaged palette failed in NumPy after the first mask was written, its overlay not
        raise ValueError(f"checkpoint {args.checkpoint}: its class colours ({_brief_list(palette)}) are not one RGB "
                         f"colour, three whole numbers 0-255, for each of its {info.get('num_classes')} classes; "
                         "the file is damaged or was written by another program")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; --out names the folder the masks and overlays are written to")
    from .atomic import check_writable  # a new user's trial: a read-only --out gave a raw "[Errno 30] ..."

    check_writable(out, before="--out: ", after="; name a folder this process can write to")
    strategy = Strategy(tuple(args.scales), args.flip, _output_stride(args, cfg), args.crop_size)
    names = _output_names(files)
    # each file to write, with the image it is predicted from
    sources = {out / f"{names[f]}_{kind}.png": f.name for f in files for kind in ("mask", "overlay")}
    existing = {} if args.overwrite else {t: _png_text(t) for t in sources if t.exists()}  # each read once
    foreign = [t for t, text in existing.items() if text.get("Software") != PREDICT_SOFTWARE]
    if foreign:  # before any file is predicted: a ground-truth a_mask.png beside a.png was replaced silently
        raise FileExistsError(f"--out {out} already holds {', '.join(t.name for t in foreign[:3])}"
                              f"{' ...' if len(foreign) > 3 else ''}, which predict did not write; give another "
                              "--out, or --overwrite to replace them")
    # predicted by an earlier call from another image of the same stem (odd.png, then odd.webp): not replaced
    # without a word either; the same image predicted again is (the Source text names it; older files lack it)
    other = [(t, was) for t, text in existing.items() if (was := text.get("Source")) not in (None, sources[t])]
    if other:
        raise FileExistsError(f"--out {out} already holds {', '.join(f'{t.name} (of {was})' for t, was in other[:3])}"
                              f"{' ...' if len(other) > 3 else ''}, which an earlier predict wrote for another image "
                              "of the same name; give another --out, or --overwrite to replace them")
    flat_palette = [c for rgb in palette for c in rgb]
    failed: list[str] = []
    warned_large = warned_alpha = False
    # one switch for the folder (a stride the model cannot run at fails here, before any file is read)
    with at_output_stride(model, strategy.output_stride):
        _cpu_threads(args, dev)  # --threads, or the note on a busy CPU: after every check that fails at once
        for f in files:
            try:
                x = load_image(f)  # (3, H, W) in [0, 1]; BadDataError (a ValueError) names the file
            except (ValueError, OSError) as err:
                if len(files) == 1:
                    raise
                failed.append(str(err))  # one unreadable file does not stop a folder
                print(f"skipped: {err}", file=sys.stderr)
                continue
            if not warned_alpha and has_transparency(f):  # once per call, as the large-image note
                warned_alpha = True
                print(f"note: {f.name} has transparent pixels (an alpha channel or a transparent colour); the "
                      "transparency is dropped: the colours stored under those pixels are predicted as they are",
                      file=sys.stderr)
            large = _large_image_note(f.name, x.shape[2], x.shape[1], num_classes, strategy)
            if large and not warned_large:
                warned_large = True  # once per call: a camera's photos are all alike
                print(large, file=sys.stderr)
            try:
                with warnings.catch_warnings():  # normalised here: a flat or misty photo may still lie in [0, 1]
                    warnings.filterwarnings("ignore", message=r"the image is in \[0, 1\], not normalised")
                    pred = predict(model, normalize(x).to(dev), strategy)[0].cpu()
            except RuntimeError as err:  # out of memory on one large photo, say: name it, go on with the others
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                message = (f"predicting {f} ({x.shape[2]} x {x.shape[1]} pixels) failed ({type(err).__name__}: "
                           f"{first}); {_out_of_memory_advice(x.shape[2], x.shape[1], num_classes, strategy)}")
                if len(files) == 1:
                    raise RuntimeError(message) from None
                failed.append(message)
                print(f"skipped: {message}", file=sys.stderr)
                continue
            mask_path, overlay_path = out / f"{names[f]}_mask.png", out / f"{names[f]}_overlay.png"
            marked = PngInfo()
            marked.add_text("Software", PREDICT_SOFTWARE)  # what _written_by_predict reads on the next call
            marked.add_text("Source", f.name)  # which image: another of the same stem must not replace it unasked
            # class indices in a palette PNG: np.asarray(Image.open(mask_path)) gives them, viewers show colours
            mask = Image.frombytes("P", (pred.shape[1], pred.shape[0]), pred.numpy().astype("uint8").tobytes())
            mask.putpalette(flat_palette)
            with atomic_path(mask_path) as tmp:  # an interrupted call leaves no truncated PNG under the name
                mask.save(tmp, format="PNG", pnginfo=marked)
            with atomic_path(overlay_path) as tmp:
                Image.fromarray(overlay(x, colorize(pred, palette), 0.5)).save(tmp, format="PNG", pnginfo=marked)
            print(f"{f} -> {mask_path}, {overlay_path}")
    if failed:
        print(f"deeplab-edu predict: {len(failed)} of {len(files)} images could not be read or predicted:\n  "
              + "\n  ".join(failed), file=sys.stderr)
        return 2
    return 0


def _export(args: argparse.Namespace) -> int:
    if not args.out and not args.onnx:
        raise ValueError("name what to write: --out model.pt (a model file), --onnx model.onnx, or both")
    if args.output_stride is not None and not args.onnx:
        raise ValueError("--output-stride sets the ONNX graph's output stride: give --onnx too (a model file "
                         "keeps the run's settings; eval and predict take --output-stride themselves)")
    from .engine.checkpoint import checkpoint_file, load_checkpoint, names_a_run_checkpoint, save_model_file
    from .models.export import is_onnx_file

    # a trial: --onnx m.pt replaced the model file m.pt with an ONNX graph, without a word
    if args.out and Path(args.out).suffix.lower() == ".onnx":
        raise ValueError(f"--out {args.out}: --out writes the PyTorch model file (.pt), --onnx the ONNX graph; "
                         "name the model file .pt, or give this name to --onnx")
    if args.onnx and Path(args.onnx).suffix.lower() in (".pt", ".pth"):
        raise ValueError(f"--onnx {args.onnx}: --onnx writes the ONNX graph (.onnx), --out the PyTorch model file; "
                         "name the graph .onnx, or give this name to --out")
    source = checkpoint_file(args.checkpoint).resolve()
    for flag, target, of_its_kind, kind in (("--out", args.out, zipfile.is_zipfile, "a PyTorch file"),
                                            ("--onnx", args.onnx, is_onnx_file, "an ONNX model")):
        if target and Path(target).is_file() and not args.overwrite and not of_its_kind(target):
            raise FileExistsError(f"{flag} {target} already holds a file that is not {kind}: name another file, "
                                  "or --overwrite to replace it")
        if target and Path(target).resolve() == source:  # the training state (optimiser, iteration) would be lost
            raise ValueError(f"{flag} {target} is the checkpoint being exported: name another file")
        if target and Path(target).is_dir():  # the atomic rename would fail naming its temporary file
            raise ValueError(f"{flag} {target} is a folder: name the file to write in it, e.g. "
                             f"{Path(target) / ('model.pt' if flag == '--out' else 'model.onnx')}")
        if target and names_a_run_checkpoint(target):  # a run's resume would read a model file as its newest
            raise ValueError(f"{flag} {target} names a training checkpoint of a run ({Path(target).parent}): write "
                             "the model file outside the run's checkpoints folder")
    if args.onnx:  # before anything is written: a missing exporter must not leave the model file half the job
        from .choices import require_packages

        require_packages("onnx", "onnxscript", what="export --onnx (torch.onnx.export)")
    from .engine.checkpoint import CheckpointMismatchError
    from .inference import run_from_checkpoint

    state = load_checkpoint(args.checkpoint)  # read once for both files
    try:  # before anything is written: --onnx needs the model, and --out says who can read the file
        loaded = run_from_checkpoint(state, checkpoint_file(args.checkpoint), "cpu")  # the file the messages name
    except (ValueError, CheckpointMismatchError):
        if args.onnx or not state.get("model_info", {}).get("model_class"):
            raise
        loaded = None  # a model the training script built: the file holds its weights, for that script
    if args.out:
        replaced = ", replacing the file there" if Path(args.out).exists() else ""
        path = save_model_file(state, args.out, source=args.checkpoint)
        readers = ("eval, predict and --init-from read it" if loaded is not None else
                   f"its model is one the training script built ({state['model_info']['model_class']}), which eval, "
                   "predict and --init-from cannot rebuild: build it in Python and load the file's 'model' weights "
                   "into it (torch.load(path, weights_only=True)['model'])")
        print(f"{args.checkpoint} -> {path} ({path.stat().st_size / 2**20:.1f} MiB{replaced}; {readers})")
    if args.onnx:
        from .models.export import export_onnx, onnx_metadata

        from .models.backbones import at_output_stride

        assert loaded is not None  # run_from_checkpoint raised otherwise
        model, cfg, info = loaded
        output_stride = _output_stride(args, cfg)
        replaced = ", replacing the file there" if Path(args.onnx).exists() else ""
        with at_output_stride(model, output_stride):  # what eval and predict run, and what validation measured
            metadata = onnx_metadata(info.get("class_names"), output_stride=int(getattr(model, "output_stride", 0))
                                     or None)
            path = export_onnx(model, args.onnx, metadata=metadata)
        print(f"{args.checkpoint} -> {path} (ONNX, output stride {output_stride or 'as trained'}{replaced}; its "
              "metadata holds the normalisation and the class names)")
    return 0


#: The ``bench`` flags each mode reads besides ``--mode``, ``--repeats`` and ``--out`` (the loader mode also
#: takes ``--device cpu``: its workers load on the CPU whatever the device).
BENCH_MODE_FLAGS = {
    "models": ("device", "size", "batch", "pairs", "threads"),
    "pipeline": ("device", "preset", "iterations", "num_workers", "threads"),
    "loader": ("workers", "size", "batch"),
    "compile": ("device", "size", "batch", "backbone", "threads"),
}


def _bench(args: argparse.Namespace) -> int:
    """``deeplab-edu bench``: a flag the chosen mode does not read is an error (naming the modes that read it),
    never silently ignored; a flag not given leaves the benchmark function's default (its rounds included:
    6, the loader's 3)."""
    from .engine import bench

    used = set(BENCH_MODE_FLAGS[args.mode])
    if args.out:
        from .records import check_record_path

        check_record_path(args.out, "--out")
    if args.mode == "loader" and args.device not in (None, "cpu"):
        raise ValueError(f"--device {args.device}: the loader mode measures DataLoader workers on the CPU; "
                         "leave --device out or give cpu")
    unused = [name for name in sorted(set().union(*BENCH_MODE_FLAGS.values()) - used)
              if getattr(args, name) is not None and not (args.mode == "loader" and name == "device")]
    if unused:
        readers = {name: ", ".join(m for m, flags in BENCH_MODE_FLAGS.items() if name in flags) for name in unused}
        raise ValueError(f"the {args.mode} mode does not read "
                         + "; ".join(f"{flag_of(name)} (read by: {readers[name]})" for name in unused))
    given = {name: getattr(args, name) for name in used if getattr(args, name) is not None}
    if args.repeats is not None:
        given["rounds" if args.mode in ("pipeline", "loader") else "repeats"] = args.repeats
    if args.mode == "pipeline":
        workers = given.pop("num_workers", None)
        bench.run_pipeline_benchmark(preset=given.pop("preset", None) or bench.default_preset(args.device),
                                     out=args.out, overrides=None if workers is None else {"num_workers": workers},
                                     **given)
    elif args.mode == "loader":
        if "workers" in given:
            given["workers"] = tuple(given["workers"])
        bench.run_loader_benchmark(out=args.out, **given)
    else:
        if "pairs" in given:
            given["pairs"] = tuple(given["pairs"])
        given.setdefault("device", "cpu")
        run = bench.run_compile_benchmark if args.mode == "compile" else bench.run_benchmarks
        run(out=args.out, **given)
    return 0


def _course_runs(args: argparse.Namespace) -> int:
    from . import config
    from .data import find_camvid
    from .data.paths import candidate_roots
    from .records import shown_path
    from .viz.training import camvid_run, course_runs, runs_root

    profile = args.profile or config.profile()
    if profile not in ("cpu", "gpu"):
        raise ValueError(f"the course's runs are trained in the 'cpu' or 'gpu' profile (the 'smoke' profile trains "
                         f"in temporary folders), got {profile!r}: pass --profile cpu (with make: "
                         f"DEEPLAB_EDU_PROFILE=cpu make course-runs)")
    if profile == "gpu" and not str(config.device()).startswith("cuda"):
        raise ValueError("the 'gpu' profile's runs (ResNet-50 on 513-pixel crops) need a CUDA GPU and PyTorch sees "
                         "none: use --profile cpu for the laptops' runs")
    specs = course_runs(profile)
    camvid_root = find_camvid()
    if camvid_root is not None:
        specs.append(camvid_run(profile))  # the engine finds the same copy (a stored data_root would tie the run to it)
    statuses = _plan_statuses(specs)
    print(f"The runs chapters 08-11 load in the {profile!r} profile ({len(specs)}; a finished run is reused, an "
          f"interrupted one resumed), as commands to run from the repository's folder with its .venv "
          f"activated, each with its state now:")
    for i, (spec, status) in enumerate(zip(specs, statuses), 1):
        print(f"  [{i}/{len(specs)}] {spec.command()}\n        {status}")
    if camvid_root is None:
        searched = ", ".join(str(p) for p in candidate_roots("camvid"))
        print(f"  no CamVid copy found (searched {searched}): chapter 11's CamVid run is not trained")
    else:
        print(f"  CamVid: {camvid_root}")
    if profile == "cpu" and (estimate := _course_runs_minutes(camvid_root is not None)) is not None:
        waiting = sum(status.state != "finished" for status in statuses)
        print(f"  time: {waiting} of {len(specs)} runs to train; all {len(specs)} together take less than {estimate}"
              if waiting else
              "  time: every run is finished: nothing to train")
    for i, spec in enumerate(specs, 1):
        if statuses[i - 1].state != "finished" and (needs := _weights_to_download(spec)):
            print(f"  [{i}/{len(specs)}] downloads {needs} when its turn comes: it needs the network then")
    refused = [shown_path(spec.out_dir) for spec, status in zip(specs, statuses) if status.refused
               and status.state != "moved"]
    moved = [shown_path(spec.out_dir) for spec, status in zip(specs, statuses) if status.state == "moved"]
    if refused or moved:  # before any training, not after phase 1's minutes
        raise ValueError("; ".join(
            ([f"{len(refused)} run folder(s) hold runs the chapters cannot use (their state above): delete "
              f"{', '.join(refused)}"] if refused else []) +
            ([f"{len(moved)} run(s) are in the folders an earlier version of the course trained them in (their state "
              f"above): move them to {', '.join(moved)} with the mv commands shown, or delete the earlier folders to "
              "train them again"] if moved else [])) + ", then run the command again")
    if args.dry_run:
        return 0
    _cpu_threads(args, str(config.device()))
    start = time.perf_counter()
    failed: dict[Path, str] = {}
    try:
        for i, spec in enumerate(specs, 1):
            print(f"\n[{i}/{len(specs)}] {spec.preset} -> {shown_path(spec.out_dir)}", flush=True)
            init = spec.overrides.get("init_from")
            base = next((s.out_dir for s in specs if s.out_dir in failed and init and s.checkpoint == Path(init)), None)
            if base is not None:
                failed[spec.out_dir] = f"not trained: the run it starts from ({shown_path(base)}) failed"
                print(failed[spec.out_dir], file=sys.stderr)
                continue
            try:
                spec.train_or_load()
            except (ValueError, OSError, RuntimeError) as err:  # e.g. no network for pretrained weights
                if os.environ.get(DEBUG_ENV):
                    traceback.print_exc()
                failed[spec.out_dir] = str(err)
                print(f"failed: {err}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nstopped: run the same command again to resume where it stopped", file=sys.stderr)
        raise
    seconds = time.perf_counter() - start
    took = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
    if failed:
        print(f"\ndeeplab-edu course-runs: {len(specs) - len(failed)} of {len(specs)} runs ready in {took}; "
              "not ready: " + "; ".join(f"{shown_path(folder)} ({why})" for folder, why in failed.items()),
              file=sys.stderr)
        return 2
    root = runs_root(profile)
    print(f"\nall {len(specs)} runs ready in {took} (to use them in another clone of the course, copy "
          f"its folder {shown_path(root)}/ there, {_folder_megabytes(root):.0f} MB: with `tar` or `rsync -aH`, "
          "which keep each run's hard-linked checkpoints one file; `cp -r` doubles them)")
    return 0


def _folder_megabytes(folder: Path) -> float:
    """The bytes under ``folder`` in MB (10^6), each file once however many hard links name it."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in Path(folder).rglob("*"):
        try:
            st = path.stat()
        except OSError:  # removed while walking
            continue
        if path.is_file() and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total / 1e6


def _course_runs_minutes(with_camvid: bool) -> str | None:
    """The time the ``cpu`` profile's course runs take at most, as text: the ``cpu_minutes`` of the
    chapters that train them (08, 09, and 11 with CamVid) added up, as their headers state them
    for a 2-core machine; ``None`` outside a checkout (no book to read the headers from)."""
    from .book import COURSE_RUN_CHAPTERS, course_runs_minutes

    minutes = course_runs_minutes(with_camvid)
    if minutes is None:
        return None
    chapters = COURSE_RUN_CHAPTERS if with_camvid else COURSE_RUN_CHAPTERS[:2]
    return (f"{minutes:.0f} min on a 2-core machine (the minutes the headers of chapters "
            f"{', '.join(f'{c:02d}' for c in chapters)} state, added up: those chapters train them)")


def _weights_to_download(spec: Any) -> str | None:
    """What ImageNet weights the run ``spec`` will download (torchvision's, not cached yet), or ``None``."""
    from .engine.config import load_config
    from .models.pretrained import cached_weights, torchvision_weights

    cfg = load_config(spec.preset, spec.overrides)
    if cfg.pretrained_backbone is not True:
        return None
    weights = torchvision_weights(cfg.backbone)
    return None if cached_weights(weights) else f"torchvision's ImageNet weights of {cfg.backbone} ({weights.url})"


def _plan_statuses(specs: Sequence[Any]) -> list[Any]:
    """Each run's :class:`~deeplab_edu.engine.runs.RunStatus`, in the order ``specs`` train: a finished
    run that starts from one still to be trained (``init_from``) is ``stale``, since that training
    replaces the file it started from (a phase 1 deleted to be trained again)."""
    from .engine.runs import RunStatus
    from .records import shown_path

    statuses: list[Any] = []
    to_train: set[Path] = set()  # the checkpoints of the runs not finished yet
    for spec in specs:
        status = spec.status()
        init = spec.overrides.get("init_from")
        if init and Path(init) in to_train and status.state in ("finished", "interrupted"):
            status = RunStatus("stale", f"{status.state}, but from {shown_path(init)}, which this command trains "
                                        f"first: delete {shown_path(spec.out_dir)} to train it again after that")
        if status.state != "finished":
            to_train.add(Path(spec.checkpoint))
        statuses.append(status)
    return statuses


#: Set (to anything non-empty) to see an error's traceback instead of the one-line message.
DEBUG_ENV = "DEEPLAB_EDU_DEBUG"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deeplab-edu`` console script; returns the exit status (130 on Ctrl-C,
    also while torch is still being imported; 2 for an error, printed as one line). Under ``torchrun``
    (``WORLD_SIZE`` above 1) each process prefixes its error with ``[rank N]``: a settings error prints
    once per process (torchrun may stop the others before rank 0 has printed, and a setting such as
    ``--device`` can fail on one machine only), and the prefix tells the copies apart. Warnings, as the notes,
    print once, from rank 0: the other processes ignore them while the command runs.

    Raises:
        ValueError, OSError, RuntimeError, ImportError, MemoryError: only with the environment variable
            ``DEEPLAB_EDU_DEBUG`` set (for the traceback); otherwise such an error is printed as one line and 2
            returned (a missing optional package, e.g. onnx or tensorboard, with the pip command that installs
            it; a memory error with the size settings that may have caused it).
    """
    import warnings

    handlers = {"train": _train, "eval": _eval, "predict": _predict, "export": _export, "bench": _bench,
                "course-runs": _course_runs, "check-data": _check_data}
    shown_before = warnings.showwarning
    warnings.showwarning = functools.partial(_warning_above_bars, shown_before)
    try:
        args = build_parser().parse_args(argv)  # torch-free; each command imports what it needs
        try:
            with warnings.catch_warnings():  # the filters restored when the command ends
                if os.environ.get("WORLD_SIZE"):  # under torchrun (is_main's module imports torch: the command does)
                    from .engine.distributed import is_main

                    if not is_main():  # each warning once, rank 0's, as the notes (an audit: once per process)
                        warnings.simplefilter("ignore")
                return handlers[args.command](args)
        except BrokenPipeError:  # `deeplab-edu ... | head` closed the pipe: stop quietly, as Python's docs advise
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush at exit would fail again
            return 1
        except (ValueError, OSError, RuntimeError, ImportError, MemoryError) as err:  # OSError: e.g. a folder not
            if os.environ.get(DEBUG_ENV):  # writable; MemoryError: a trial's --crop-size 1000000 (a 29 GiB array)
                raise
            from .choices import OPTIONAL_PACKAGES, install_advice
            missing = err.name.split(".")[0] if isinstance(err, ModuleNotFoundError) and err.name else ""
            if missing in OPTIONAL_PACKAGES and "pip install" not in str(err):
                err = ModuleNotFoundError(f"{err} (an optional package this command needs: {install_advice(missing)})")
            if isinstance(err, MemoryError):
                sizes = "--crop-size, --image-size, --batch-size" if args.command == "train" else "--crop-size"
                err = MemoryError(f"out of memory ({type(err).__name__}: {err}); a size setting too large for this "
                                  f"machine ({sizes})?")
            from .engine.trainer import NonFiniteLossError
            from .engine.workers import original_message

            several = os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1")  # under torchrun
            where = f"[rank {os.environ.get('RANK', '?')}] " if several else ""
            name = "training stopped" if isinstance(err, NonFiniteLossError) else "error"
            # a RuntimeError, or an import that fails for another reason than a missing optional package: a bug to show;
            # memory running out: where it ran out
            unexpected = (type(err) is RuntimeError or isinstance(err, MemoryError)
                          or (isinstance(err, ImportError) and "pip install" not in str(err)))
            hint = f" ({DEBUG_ENV}=1 shows the traceback)" if unexpected else ""
            if args.command == "train":
                hint += _flag_of_setting(original_message(err))
            print(f"{where}deeplab-edu {args.command}: {name}: {original_message(err)}{hint}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown_before


def _flag_of_setting(message: str) -> str:
    """``" (the setting batch_size is the flag --batch-size)"``: for a settings error of ``train`` that names a
    setting as the configuration spells it (a practitioner's trial: "batch_size must be at least 1" when
    they had typed ``--batch-size 0``), unless the message names the flag already; ``""`` otherwise."""
    import re

    from .engine.config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for match in re.finditer(r"\b([a-z][a-z0-9]*(?:_[a-z0-9]+)*)\b(?=[= ])", message):
        setting = match.group(1)
        flag = flag_of(setting)
        if setting in names and ("_" in setting or message[match.end():].startswith("=")) and flag not in message:
            return f" (the setting {setting} is the flag {flag})"
    return ""


def _warning_above_bars(fallback: Any, message: Warning | str, category: type[Warning], filename: str, lineno: int,
                        file: Any = None, line: str | None = None) -> None:
    """``warnings.showwarning`` while a command runs: the warning on lines of its own, above the bars
    (tqdm's ``write``) while one is drawn; else ``fallback``, the handler before the command (which
    ``catch_warnings`` and pytest's recording rely on)."""
    import warnings

    from tqdm.auto import tqdm

    if not getattr(tqdm, "_instances", None):  # no bar open (tqdm's own set of open bars)
        fallback(message, category, filename, lineno, file, line)
        return
    tqdm.write(warnings.formatwarning(message, category, filename, lineno, line).rstrip("\n"),
               file=file if file is not None else sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
