"""The training loop: DeepLabv3's recipe (sec. 4.1), resumable, mixed precision, multi-process.

One *iteration* is one optimiser step (``grad_accum`` micro-batches of ``batch_size`` images per
process). Per iteration: forward at the training output stride, the loss of
:class:`~deeplab_edu.engine.losses.SegmentationLoss`, backward (scaled for fp16), an optimiser step
(SGD with momentum, the papers', or AdamW: ``optimizer``), and one step of the poly schedule. Every ``eval_every`` iterations the model is switched to
``eval_output_stride`` (DeepLabv3 trains at 16 and evaluates at 8, sec. 4), evaluated,
and switched back. The *second phase* of DeepLabv3 (sec. 4.1: after the train_aug phase, batch
norm is frozen and training continues at output stride 8 with base lr 0.001) is ``freeze_bn=True``
with ``init_from=<phase-1 checkpoint>`` (the ``deeplabv3_voc_phase2`` preset).

A non-finite loss stops the run with :class:`NonFiniteLossError` before anything is written, and so do
non-finite weights or buffers as a checkpoint is about to be written (a finite loss, then a step that
diverged), so the newest checkpoint on disk is the last good state. :meth:`Trainer.fit` reads the losses back from the
device only when it logs, evaluates or saves, not every iteration: reading a value waits for the GPU
to finish, which leaves it idle while the next iteration is being queued. The error still names
the first iteration whose loss was not finite, but by then the steps since the last read have been
taken: the model *in memory* may hold NaN weights; the checkpoints on disk are the good state to
resume from. (Hard-pixel mining, ``top_k < 1``, reads each image's count of labelled pixels back,
so it still waits for the device every iteration.)

What decides whether and how a checkpoint resumes or starts a run is in ``engine/_resume.py``; the checks and
warnings about the data sets, model and crop given to the Trainer are in ``engine/_passed_sets.py``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import csv
import json
import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Iterator, Sized, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..atomic import atomic_path, write_text_atomic
from ..config import resolve_device
from ..data.classes import nfc_names
from ..data.io import BadDataError
from ..inference import model_logits, unwrap_out
from ..metrics import NAN_SCORES, NAN_SCORES_CAUSE, ConfusionMatrix
from ..records import provenance, shown_path
from ..viz.images import IMAGENET_MEAN, IMAGENET_STD
from ..models.aspp import set_recompute_depthwise
from ..models.backbones import at_output_stride
from . import checkpoint as ck
from ._passed_sets import _check_passed_set, _check_same_classes, _warn_crop_padding, _warn_flat_aspp
from ._resume import (_check_counters, _checkpoint_to_resume, _class_order, _damaged, _init_from_rates_note,
                      _own_settings, _renamed_classes_note, _reorder_rows, _resume_differences, _unchangeable)
from .allocator import freed_memory_kept
from .config import ConfigError, TrainConfig, missing_pretrained_file, resolve_atrous_rates, validate
from .data import (ResumableSampler, SeededDataset, ShardSampler, _random_state_kept, build_datasets, eval_loader,
                   train_loader)
from .distributed import (DistInfo, all_gather_objects, all_reduce_mean, barrier, cpu_group, init_distributed,
                          local_main_first, max_over_processes, release_group, unwrap, wrap_model)
from .losses import SegmentationLoss
from .runs import RunFolderError, claim_run_folder, write_metrics_json
from .schedule import PolyLR, build_optimizer, load_optimizer_state, param_groups, poly_factor
from .workers import (loader_timed_out, naming_a_stall, original_message, resolve_num_workers, shutting_down_workers,
                      stalled_loader_message)

__all__ = ["Trainer", "NonFiniteLossError", "seed_everything", "callers_random_state_kept", "process_seed", "freeze_batchnorm", "set_bn_momentum", "autocast_context",
           "last_validation", "run_result", "TrainingInterrupted", "ValidationStopped"]


#: Settings :meth:`Trainer.fit` reads afresh at each call (how often it logs, validates and saves, what it
#: shows): the only ones that may change after the Trainer was built (the others made its model, optimiser,
#: schedule and data).
_READ_BY_FIT = ("eval_every", "log_every", "ckpt_every", "keep_last", "progress", "tensorboard")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite, or the weights did (found as a checkpoint was about to be written); the
    message names the iteration and the last good checkpoint.

    Raised after the optimiser steps of the iterations since the losses were last read: the model in
    memory may then be NaN, the checkpoints on disk are not."""


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; with ``deterministic`` also ask for deterministic kernels (for the rest of
    the process: :class:`Trainer` switches them for its :meth:`~Trainer.fit` alone)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        _ask_for_deterministic_kernels()


def _ask_for_deterministic_kernels() -> None:
    """torch's deterministic algorithms (warning where an operation has none), cuDNN's benchmark off and
    cuBLAS's deterministic workspace (``CUBLAS_WORKSPACE_CONFIG``, unless set already)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def _deterministic_kernels(enabled: bool = True) -> Iterator[None]:
    """Deterministic kernels (with ``enabled``: :func:`seed_everything`'s) for the body, then torch's
    deterministic-algorithms switch, ``torch.backends.cudnn.benchmark`` and ``CUBLAS_WORKSPACE_CONFIG`` as they
    were before, whether the body returns or raises: what :meth:`Trainer.fit` runs in for ``cfg.deterministic``
    (an audit: a Trainer left them on for the rest of the process). ``enabled`` False switches nothing, but
    restores them all the same."""
    switch = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark, workspace = torch.backends.cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    try:
        if enabled:
            _ask_for_deterministic_kernels()
        yield
    finally:
        torch.use_deterministic_algorithms(switch[0], warn_only=switch[1])
        torch.backends.cudnn.benchmark = benchmark
        if workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = workspace


def process_seed(seed: int, rank: int, iteration: int = 0) -> int:
    """The seed of torch's global random stream (dropout) in process ``rank`` > 0 of a multi-process run,
    from the run's ``seed`` and the ``iteration`` it starts or resumes at: every process draws other dropout
    masks for its images (with one seed, all would draw the same). Rank 0 keeps ``seed`` itself, so that a
    one-process run and its checkpoints' random state are as before; the weights, the data order and the
    augmentations do not use this stream (DDP copies rank 0's weights; the sampler and the items are
    seeded apart).

    Returns:
        a seed in [0, 2**63), the same for the same arguments in any process.
    """
    return (seed * 1_000_003 + rank * 7_919 + iteration) % 2**63


def freeze_batchnorm(model: nn.Module) -> int:
    """Put every BatchNorm in eval mode (running statistics) and stop training its affine parameters: the
    second phase of DeepLabv3's training (sec. 4.1: batch norm frozen, output stride 8, a smaller rate).

    Returns the number of BatchNorm layers frozen. Call it again after every ``model.train()``.
    """
    n = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
            n += 1
    return n


def set_bn_momentum(model: nn.Module, momentum: float) -> int:
    """Set the momentum of every BatchNorm's running statistics (PyTorch's convention: the weight of each
    new batch, ``1 - decay``; DeepLabv3 sec. 4.1 trains with decay 0.9997, i.e. ``momentum=0.0003``).

    Returns the number of BatchNorm layers changed.

    Raises:
        ValueError: ``momentum`` is not in (0, 1].
    """
    if not 0 < momentum <= 1:
        raise ValueError(f"momentum must be in (0, 1], got {momentum}")
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in layers:
        m.momentum = momentum
    return len(layers)


def autocast_context(amp: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for ``amp`` in ``{"none", "bf16", "fp16"}`` on ``device``.

    Raises:
        ValueError: ``amp`` is none of those three, or ``"fp16"`` and ``device`` is not a CUDA device.
    """
    if amp not in ("none", "bf16", "fp16"):
        raise ValueError(f"amp must be 'none', 'bf16' or 'fp16', got {amp!r}")
    if amp == "none":
        return contextlib.nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("amp='fp16' needs a CUDA device (float16 kernels on the CPU are slow or missing); use 'bf16'")
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _model_info(cfg: TrainConfig, num_classes: int, model: nn.Module | None = None, *, model_passed: bool = False,
                train_set: Any = None, data_passed: bool = False) -> dict[str, Any]:
    """What a checkpoint says of its model and classes (``inference.load_model`` and the CLI read it).

    ``name``/``backbone`` come from ``cfg``, or from the model's ``build_kwargs`` when it was made by
    :func:`~deeplab_edu.models.build_model` (recorded too, so that ``load_model`` rebuilds the model
    that was trained, also one the caller passed); a model or data set passed to the Trainer by its
    caller is named too (``model_class``, ``data_class``), since the configuration does not describe it.
    """
    info: dict[str, Any] = {"name": cfg.model, "backbone": cfg.backbone, "num_classes": num_classes}
    built = getattr(model, "build_kwargs", None)
    if built:
        info.update(name=built["name"], backbone=built["backbone"], build_kwargs=dict(built))
    rates = tuple(getattr(model, "atrous_rates", ()) or ())
    if rates:  # at the training output stride; load_model rebuilds the model with them
        info["atrous_rates"] = [int(r) for r in rates]
    names, palette = getattr(train_set, "class_names", None), getattr(train_set, "palette", None)
    if names is not None and palette is not None and len(names) == len(palette) == num_classes:
        info["class_names"] = [str(n) for n in names]
        info["palette"] = [[int(c) for c in rgb] for rgb in palette]
    if model_passed:
        info["model_class"] = f"{type(model).__module__}.{type(model).__qualname__}"
    if data_passed:
        info["data_class"] = f"{type(train_set).__module__}.{type(train_set).__qualname__}"
    return info


def last_validation(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The last validation row of a run's ``history`` (``{}`` if it has none)."""
    return next((r for r in reversed(history) if r.get("split") == "val"), {})


def run_result(history: list[dict[str, Any]], provenance: list[dict[str, Any]],
               class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """What :meth:`Trainer.fit` returns and writes to ``metrics.json``: ``{"history", "final",
    "class_names", "provenance"}``, ``final`` the :func:`last_validation` row of ``history``;
    ``class_names`` (where the data set names its classes) names the entries of each row's ``iou``."""
    return {"history": history, "final": last_validation(history),
            **({"class_names": [str(n) for n in class_names]} if class_names is not None else {}),
            "provenance": provenance}


#: Training images whose labels :func:`_median_frequency_weights` counts at most, spread evenly
#: over the set (a procedural set can be long; the frequencies settle long before).
CLASS_WEIGHT_IMAGES = 1000


@contextlib.contextmanager
def callers_random_state_kept() -> Iterator[None]:
    """Python's, NumPy's and torch's CPU random streams, every GPU's stream when CUDA was in use before the
    body, torch's deterministic-algorithms switch and ``CUBLAS_WORKSPACE_CONFIG`` as they were before,
    whatever the body seeds, draws or switches: a training (:func:`seed_everything`) inside a notebook must
    not decide the notebook's later draws. Not kept: a GPU's stream when the body is the first to use CUDA
    (it starts from the body's seed) and Apple's MPS stream."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with _deterministic_kernels(enabled=False), _random_state_kept(devices):
        yield


def _median_frequency_weights(train_set: Any, num_classes: int) -> torch.Tensor:
    """Median-frequency class weights (:func:`~deeplab_edu.data.stats.median_frequency_weights`)
    from the labels of at most :data:`CLASS_WEIGHT_IMAGES` training images spread evenly over the
    set, untransformed where the set can load them so (``load``). The masks are read one at a time
    and only their pixels per class kept, so memory does not grow with their number or size."""
    from ..data.stats import iter_dataset_masks, mask_class_counts, median_frequency_from_counts

    n = len(train_set)
    indices = np.unique(np.linspace(0, n - 1, min(n, CLASS_WEIGHT_IMAGES)).round().astype(int)).tolist()
    with _random_state_kept():
        counts = [mask_class_counts(mask, num_classes, name=f"the mask of training item {i}")
                  for i, mask in zip(indices, iter_dataset_masks(train_set, indices=indices))]
    absent = np.flatnonzero(np.sum(counts, axis=0) == 0)
    if absent.size:  # its weight is the rarest class's; the model may still never see it
        names = list(getattr(train_set, "class_names", range(num_classes)))
        warnings.warn(f"class weights: no pixel of {', '.join(str(names[c]) for c in absent)} in the "
                      f"{len(indices)} training masks counted; such a class gets the rarest class's weight "
                      "(`deeplab-edu check-data` counts every mask)", stacklevel=3)  # the line of Trainer(...)
    return torch.as_tensor(median_frequency_from_counts(counts, num_classes), dtype=torch.float32)


class Trainer:
    """Trains a segmentation model as ``cfg`` says.

    Building one seeds Python's, NumPy's and torch's global random streams from ``cfg.seed``
    (:func:`seed_everything`; a resumed run then takes the checkpoint's streams back), and training draws from
    them (dropout): the caller's later random draws depend on the run. Build and fit it inside
    :func:`callers_random_state_kept` to keep them, as :func:`~deeplab_edu.engine.runs.train_or_load` does.
    ``cfg.deterministic`` turns on deterministic kernels (:func:`seed_everything`'s) while :meth:`fit` runs, and
    puts the switches back as they were when it returns or raises (:meth:`step` or :meth:`evaluate` called by
    itself runs under the caller's).

    The Trainer is built from ``cfg`` as it is then: its model, optimiser, learning-rate schedule and data
    follow those settings, so :meth:`fit` refuses a ``cfg`` changed since, but for what it reads afresh
    (``eval_every``, ``log_every``, ``ckpt_every``, ``keep_last``, ``progress``, ``tensorboard``): a longer or
    otherwise changed run is a new Trainer with ``cfg.resume`` on, which goes on from the newest checkpoint.

    Args:
        cfg: the configuration (validated here); the Trainer keeps a copy, ``trainer.cfg`` (a change to ``cfg``
            after this does not reach it; one to ``trainer.cfg`` is refused by :meth:`fit`, but for the settings
            it reads again).
        model: a ready model (tests, notebooks); built with ``deeplab_edu.models.build_model`` when ``None``.
            One that can switch its output stride (``set_output_stride``: this package's models, also
            ``from_torchvision``'s, which come at torchvision's stride 8 or 16) is switched to ``cfg.output_stride``
            as the engine's own are built there, and validated at ``cfg.eval_output_stride`` (``None``: the
            training stride); one that cannot trains and validates at its own, which the history records.
        train_set, val_set: datasets of ``(image, mask)`` (a :class:`~torch.utils.data.Dataset`, or any
            sequence of pairs, e.g. a list); built from ``cfg`` when ``None``.
        num_classes: defaults to ``train_set.num_classes``.
        verbose: ``False`` prints nothing (the start-up line, the loss and validation lines, the notes on
            ``init_from``, ``compile``, a resume or a stop request) and shows no progress bar; warnings are
            warnings all the same, and what is written to ``out_dir`` is the same.

    Raises:
        ValueError: only one of ``train_set`` and ``val_set`` is given, the first mask of one is no ``(H, W)`` or
            ``(1, H, W)`` label map of an integer type, ``train_set`` has no ``num_classes``
            and none is passed, the training set does not hold one full batch of ``cfg.batch_size`` per
            process, ``amp="fp16"`` off a CUDA device, or ``init_from``'s weights hold NaN or infinite values
            (:func:`~deeplab_edu.engine.checkpoint.check_finite_weights`). A passed ``model`` that scores
            another number of classes raises it on its first training step (:meth:`fit`, :meth:`train_step`).
        ~deeplab_edu.engine.config.ConfigError: (a ``ValueError``) ``cfg`` fails
            :func:`~deeplab_edu.engine.config.validate`, ``cfg.device`` names no device this PyTorch
            can use (:func:`~deeplab_edu.config.resolve_device`), or ``cfg.num_workers`` is more than
            :func:`~deeplab_edu.engine.workers.max_num_workers`, or a passed ``model`` cannot switch to
            ``cfg.output_stride`` (a VGG-16 model at 16).
        FileNotFoundError, RuntimeError: ``init_from`` names no readable checkpoint (a file that reads but is
            no deeplab-edu checkpoint: ``ValueError``; :func:`~deeplab_edu.engine.checkpoint.load_checkpoint`; for
            a resumed run, the message says to give the file's new path with ``--resume``),
            or the ImageNet weights of
            ``pretrained_backbone`` are missing (:class:`~deeplab_edu.models.pretrained.PretrainedWeightsUnavailable`).
        ~deeplab_edu.engine.checkpoint.CheckpointMismatchError: ``init_from`` holds weights of another model,
            or (with ``cfg.resume``) the run's own checkpoint does (the message says how to give the run's
            own settings back), was trained on classes of other names or order than the data set's or with
            another setting a resumed run cannot change (``optimizer``, ``freeze_bn``, ...; ``pretrained_backbone``
            before the model is built, so that nothing is downloaded), or holds damaged counters, random states
            or optimiser state (naming the file and the key); a checkpoint of the run that cannot be read raises
            ``RuntimeError``.
        ~deeplab_edu.engine.checkpoint.InitFromChangedError: with ``cfg.resume``, ``init_from`` has been
            trained again since the run started from it.
    """

    def __init__(self, cfg: TrainConfig, *, model: nn.Module | None = None,
                 train_set: Dataset | Sequence[Any] | None = None, val_set: Dataset | Sequence[Any] | None = None,
                 num_classes: int | None = None, verbose: bool = True) -> None:
        validate(cfg)
        # its own copy: a script that changes one configuration between Trainers (a seed sweep) builds each from
        # the settings it had then (a new user's trial); settings changed on trainer.cfg are refused by fit()
        self.cfg = copy.deepcopy(cfg)
        self._callers_cfg = cfg  # fit() says when it changed since (the Trainer does not follow it)
        cfg = self.cfg
        self.verbose = verbose
        self._built_from = cfg.to_dict()  # a copy: fit() refuses settings changed since (_check_cfg_unchanged)
        try:
            self.device = resolve_device(cfg.device, what="device")
        except ValueError as err:  # "gpu", or CUDA where there is none: the message names the setting (from the
            raise ConfigError(str(err)) from None  # command line or a file: the command line adds its flag)
        self.dist: DistInfo = init_distributed(self.device)
        if self.dist.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        autocast_context(cfg.amp, self.device)  # fp16 off CUDA fails here, before a folder or model is made
        seed_everything(cfg.seed)  # cfg.deterministic: the kernels are switched while fit() runs, then back
        model_passed, data_passed = model is not None, train_set is not None
        # resumed: the checkpoint read before the data and the model are built (another pretrained_backbone is
        # refused first); a run that starts needs its backbone's file, which validate leaves to a folder with a run
        resumed = _checkpoint_to_resume(cfg) if cfg.resume else None
        if resumed is None and model is None and (problem := missing_pretrained_file(cfg.pretrained_backbone)):
            raise ConfigError(problem)
        if (train_set is None) != (val_set is None):
            raise ValueError("pass train_set and val_set together (or neither: the configuration's data set); "
                             f"with only one, the other would come from dataset={cfg.dataset!r}")
        if train_set is None or val_set is None:
            with local_main_first(self.dist, enabled=cfg.download):  # one download per machine under torchrun
                train_set, val_set = build_datasets(cfg, stacklevel=3)  # its warnings name the line of Trainer(...)
            _warn_crop_padding(cfg, train_set)
        else:
            _check_passed_set(train_set, "train_set", crop_size=cfg.crop_size if model is None else None,
                              objects_as_ignore=True)
            if hasattr(val_set, "__len__") and len(val_set) == 0:  # an audit: accepted, every validation's mIoU NaN
                raise ValueError("the validation set (val_set) has 0 items: not one image to score (its mIoU would be "
                                 "NaN); add images")
            _check_passed_set(val_set, "val_set", objects_as_ignore=True)  # objects saved as 255: never scored
            _check_same_classes(train_set, val_set)
            if cfg.uint8_batches and not getattr(getattr(train_set, "transform", None), "as_uint8", False):
                warnings.warn("uint8_batches applies to the data sets the Trainer builds from the configuration: "
                              "the passed train_set's items are sent as they are (give it "
                              "train_transform(crop_size, normalize=False, as_uint8=True) for uint8 items, which "
                              "the Trainer normalises on the device)", stacklevel=2)
        if num_classes is None and not hasattr(train_set, "num_classes"):  # a trial: a bare AttributeError
            raise ValueError(f"train_set ({type(train_set).__name__}) has no num_classes attribute: pass "
                             "num_classes=, the number of classes its masks label (ignore_index not counted)")
        self.num_classes = int(num_classes or getattr(train_set, "num_classes"))
        if self.num_classes < 2:  # the cross-entropy over one class is 0 whatever the model says
            raise ValueError(f"{self.num_classes} class: the loss is a softmax cross-entropy over the classes, which "
                             "one class leaves at 0; an object against its background is 2 classes (a data set's "
                             "classes.txt names the background too)")
        self.ignore_index = int(getattr(train_set, "ignore_index", 255))
        # a list of pairs is map-style too; its masks' labels are checked as loaded (a passed set's were never)
        self.train_set = SeededDataset(cast(Dataset, train_set), cfg.seed, num_classes=self.num_classes,
                                       ignore_index=self.ignore_index)
        self.val_set = cast(Dataset, val_set)
        if data_passed:  # its masks' labels checked as loaded too: a bad one named no item, at the first validation
            self.val_set = SeededDataset(self.val_set, cfg.seed, num_classes=self.num_classes,
                                         ignore_index=self.ignore_index, what="validation set", stream=1)
        if model is None:
            from deeplab_edu.models import build_model

            rates = resolve_atrous_rates(cfg, stacklevel=3)  # a warning names the line of Trainer(...)
            given: dict[str, Any] = {"atrous_rates": rates} if rates else {}
            # a resumed run's weights come from its checkpoint: the backbone's starting weights are not read again
            pretrained = False if resumed is not None else cfg.pretrained_backbone
            with local_main_first(self.dist, enabled=pretrained is True):  # ImageNet weights, once
                model = build_model(cfg.model, backbone=cfg.backbone, num_classes=self.num_classes,
                                    output_stride=cfg.output_stride, pretrained_backbone=pretrained,
                                    aux_loss=cfg.aux_loss, **given, **cfg.model_kwargs)
        else:
            _to_training_stride(unwrap(model), cfg.output_stride)
            _warn_flat_aspp(model, cfg.crop_size)
        self._check_classes = model_passed  # the first training step compares its logits with num_classes
        self.model_info = _model_info(cfg, self.num_classes, model, model_passed=model_passed, train_set=train_set,
                                      data_passed=data_passed)
        self._init_from_sha256 = ck.init_from_sha256(cfg.init_from)  # kept in checkpoints: ck.check_init_from
        if cfg.init_from:
            try:
                state = ck.load_checkpoint(cfg.init_from)
            except FileNotFoundError as err:
                if resumed is None:
                    raise
                raise FileNotFoundError(  # a new user's trial: the moved file's path alone said nothing of the way on
                    f"{err}: the run in {shown_path(Path(cfg.out_dir))} started from it (init_from); if the file moved, "
                    "resume with its new path, --init-from NEWPATH beside --resume (init_from=NEWPATH): the run's "
                    "checkpoint checks that it is the same file") from None
            source = f"init_from checkpoint {cfg.init_from}"
            ck.check_finite_weights(state.get("model", {}), source)
            classes = state.get("model_info", {}).get("num_classes")
            reordered: list[str] | None = None  # the class-scoring tensors whose rows follow the data's order
            if classes is not None and classes != self.num_classes:  # fine-tuning to other classes
                fresh = ck.load_except_classifier(model, state, self.model_info, source=source)
                if self._says:
                    print(f"{source}: {classes} classes there, {self.num_classes} here; all weights loaded but "
                          f"the classifiers' ({', '.join(fresh)}), which start fresh", flush=True)
            else:
                ck.check_compatible(state, self.model_info, model, source=source,
                                    advice=ck.init_from_advice(state["model"], cfg.init_from))
                weights = state["model"]
                order = _class_order(state.get("model_info", {}), self.model_info)  # the same classes reordered
                if order is not None and (reordered := ck.class_scoring_keys(model, self.num_classes)) is not None:
                    weights = _reorder_rows(weights, reordered, order)  # each class keeps its scorer
                model.load_state_dict(weights)
            if self._says and (note := _renamed_classes_note(state.get("model_info", {}), self.model_info,
                                                             reordered)):
                print(f"{source}: {note}", flush=True)
            if self._says and (note := _init_from_rates_note(state.get("model_info", {}), self.model_info,
                                                             fitted=cfg.atrous_rates == "fit")):
                print(f"{source}: {note}", flush=True)
        if cfg.bn_momentum is not None:
            set_bn_momentum(model, cfg.bn_momentum)
        if cfg.freeze_bn:
            freeze_batchnorm(model)
        set_recompute_depthwise(model, cfg.recompute_depthwise)
        model.to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        self.net = wrap_model(model, self.dist, self.device)
        self.model = model
        self.groups = param_groups(model, lr=cfg.lr, weight_decay=cfg.weight_decay, head_lr_mult=cfg.head_lr_mult,
                                   no_decay_norm=not cfg.weight_decay_norm_and_bias)
        self.optimizer = build_optimizer(cfg.optimizer, self.groups, lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay)
        self.scheduler = PolyLR(self.optimizer, cfg.iterations, cfg.poly_power, cfg.warmup_iters)
        self.scaler = _grad_scaler(cfg.amp == "fp16", self.device)
        #: The loss weight per class (``cfg.class_weights``), or ``None``.
        self.class_weights = (_median_frequency_weights(train_set, self.num_classes)
                              if cfg.class_weights is not None else None)
        self.criterion = SegmentationLoss(self.ignore_index, cfg.aux_weight, cfg.top_k, cfg.hard_mining_iters,
                                          class_weights=self.class_weights).to(self.device)
        if cfg.compile:
            self.net = cast(nn.Module, torch.compile(self.net, mode=cfg.compile_mode))  # an OptimizedModule
            if self._says:  # the compilation itself happens in the first steps, with no sign of progress
                print("compile: torch.compile compiles the model in the first steps (and again for a new input "
                      "size; validation runs the model uncompiled): they take from tens of seconds to minutes",
                      flush=True)
        self.sampler = ResumableSampler(self.train_set, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                        shuffle=True, seed=cfg.seed, drop_last=True)
        if len(self.sampler) // cfg.batch_size < 1:
            n, world = len(self.train_set), self.dist.world_size
            processes = f" per process ({world} processes)" if world > 1 else ""
            raise ValueError(f"the training set has {n} item{'' if n == 1 else 's'}: not one full batch of "
                             f"{cfg.batch_size}{processes}; lower batch_size (--batch-size on the command line) or "
                             "add images")
        # cfg.num_workers None: from the machine's cores, shared by the processes of this machine
        try:
            self.num_workers = resolve_num_workers(cfg.num_workers)
        except ValueError as err:  # before any worker starts; the message names the setting
            raise ConfigError(f"{err} (--num-workers)") from None
        self.out = Path(cfg.out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.iteration, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.history: list[dict[str, Any]] = []
        self._tb: Any = None
        # The DataLoader draws its worker base seed from this generator, not from the global one, so
        # creating a loader after a resume does not shift the global random stream (dropout).
        self._loader_gen = torch.Generator().manual_seed(cfg.seed)
        self._pixel_stats: tuple[torch.Tensor, ...] | None = None  # to_device's mean and std of uint8 pixels
        self._resume_message: str | None = None  # printed by fit once the run's folder is claimed
        self._saved_at = 0  # the iteration the newest checkpoint holds (nothing to save before training)
        # the iteration whose planned validation a stop request skipped or cut short: kept in the checkpoint,
        # so that a resumed run validates there first and the learning curve has no gap
        self._validation_due: int | None = None
        self._fitting = False  # fit() runs: a stall of evaluate()'s loader is named by fit (after it saves)
        self._earlier_stretches: list[dict[str, Any]] = []  # what trained the checkpoint this run resumed
        self._stretch: dict[str, Any] = {**provenance(), "device": str(self.device),
                                         "processes": self.dist.world_size, "from_iteration": 0}
        self._saved_process_rng: list[Any] | None = None  # each process's random streams in the resumed checkpoint
        # the newest checkpoint as this Trainer knows it (read by _resume, written by save): fit() refuses a folder
        # another process has trained on since
        self._known_checkpoint: Path | None = None
        self._resumed_from: Path | None = None  # the checkpoint this run continued (_last_good: a diverged one)
        self._data_passed = data_passed  # a bad item is then no file (the advice after a data error)
        if cfg.resume:
            self._resume(resumed)
        if self.dist.rank > 0:  # dropout draws from the global stream: each process its own (rank 0 keeps the
            # run's); a resumed process takes its own streams back from the checkpoint (every process's is kept
            # there, process_rng), so that the run goes on as if uninterrupted; one of another number of
            # processes, or an older checkpoint: a stream of its own from the iteration it resumes at
            saved = self._saved_process_rng
            mine = saved[self.dist.rank] if saved is not None and len(saved) == self.dist.world_size else None
            # its streams where they are of this device: a CPU run's (no CUDA stream) resumed on GPUs would leave
            # every process the CUDA stream seed_everything gave them all, and so the same dropout masks
            if mine is not None and ("cuda_device" in mine) == (self.device.type == "cuda"):
                ck.set_rng_state(mine)
            else:
                torch.manual_seed(process_seed(cfg.seed, self.dist.rank, self.iteration))

    # ------------------------------------------------------------------ state
    @property
    def _says(self) -> bool:
        """Whether this process prints what the run does: the main one, unless ``verbose`` is off."""
        return self.verbose and self.dist.is_main

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds.

        Returns:
            The model, optimiser, scheduler and scaler states, the counters (``iteration``, ``epoch``,
            ``batch_in_epoch``), the RNG states, the config, the model info, the history, the
            provenance (what trained each stretch of iterations) and ``validation_due`` (the
            iteration whose validation a stop request skipped, which a resumed run does first; ``None``).
        """
        return {
            "model": unwrap(self.net).state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "iteration": self.iteration, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "rng": ck.rng_state(), "config": self.cfg.to_dict(), "model_info": self.model_info,
            "history": self.history, "provenance": self.provenance, "init_from_sha256": self._init_from_sha256,
            "validation_due": self._validation_due,
        }

    @property
    def provenance(self) -> list[dict[str, Any]]:
        """What trained this run so far, one entry per stretch of iterations (a resumed run adds one):
        the command, commit, hardware and libraries (:func:`deeplab_edu.records.provenance`, taken
        when this Trainer was built), the device, the processes and ``from_iteration`` /
        ``to_iteration``; this process's stretch once it has trained. Kept in checkpoints and
        ``metrics.json``."""
        if self.iteration <= self._stretch["from_iteration"]:  # nothing trained here yet
            return list(self._earlier_stretches)
        return [*self._earlier_stretches, {**self._stretch, "to_iteration": self.iteration}]

    def _resume(self, resumed: tuple[Path, dict[str, Any]] | None) -> None:
        """Continue the checkpoint ``resumed`` (:func:`~deeplab_edu.engine._resume._checkpoint_to_resume`: its path
        and contents; ``None``: there is none, and the run starts)."""
        if resumed is None:
            self._resume_message = (f"resume: no checkpoint in {shown_path(self.ckpt_dir)} (a new folder, or a mistyped "
                                    "--out-dir?): starting a new run from iteration 0")
            return
        path, state = resumed
        self._known_checkpoint = self._resumed_from = path
        # what resuming reads, which a model file leaves out (the scaler is optional: absent without mixed precision)
        lacking = [k for k in ck.TRAINING_STATE_KEYS if k not in ck.OPTIONAL_TRAINING_STATE_KEYS and k not in state]
        if lacking:  # a model file (deeplab-edu export) where a training checkpoint was expected
            raise ck.CheckpointMismatchError(
                f"{path} holds no training state ({', '.join(lacking)} missing): it is a model file, as `deeplab-edu "
                "export` writes, not a checkpoint of this run; move it out of the checkpoints folder to resume from "
                "the newest one left, or start a new run from it with --init-from")
        _check_counters(state, path)
        ck.check_init_from(state, self.cfg.init_from, source=f"the run in {shown_path(self.out)}",
                           current=self._init_from_sha256)  # hashed once, in __init__
        trained, named = state.get("model_info", {}).get("class_names"), self.model_info.get("class_names")
        if trained and named and len(trained) == len(named) and nfc_names(trained) != nfc_names(named):  # renamed
            raise ck.CheckpointMismatchError(
                f"{path} was trained on the classes {', '.join(trained)}, but this run's data set names "
                f"{', '.join(named)} (in label order): resumed, the same label would change its meaning mid-run. "
                "Resume with the data set the run started on, or start a new run (--init-from keeps the weights)")
        own = _own_settings(self.out)
        passed = state.get("model_info", {}).get("data_class")
        if passed and "data_class" not in self.model_info:  # its config.json names the default data set, not these
            own = (f" (it trained on data sets its script passed, {passed.rsplit('.', 1)[-1]}: pass them again with "
                   "resume=True, or name them on the command line beside --config and --resume, e.g. --dataset "
                   "folder --data-root DIR)")
        made = state.get("model_info", {}).get("model_class")
        if made and "model_class" not in self.model_info:  # its config.json names the model the engine builds, not it
            own = (f" (it trained a model its script passed, {made.rsplit('.', 1)[-1]}: pass it again with "
                   "resume=True, Trainer(cfg, model=..., resume=True); the command line builds its own models)")
        # the settings first: a changed network setting (image pooling, rates) also changes the weights' shapes, and
        # the shapes' message alone named no setting (a new user's trial)
        saved, now = state.get("config", {}), self.cfg.to_dict()
        refused, changed = _resume_differences(saved, now, state.get("model_info", {}), self.model_info)
        if refused:
            raise _unchangeable(path, refused, own)
        ck.check_compatible(state, self.model_info, unwrap(self.net), source=f"checkpoint {path}",
                            advice="A resumed run continues under this command's settings: to continue with the "
                                   f"run's own, give them back{own}, or start a new run in another folder.")
        if (name := ck.non_finite_tensor(state["model"])) is not None:  # written before save() checked (an audit)
            raise _damaged(path, f"its weights hold NaN or infinite values (e.g. {name}): the run had diverged "
                                 "when it was written", diverged=True)
        unwrap(self.net).load_state_dict(state["model"])
        # The checkpoint's counters and buffers (iteration, momentum, Adam's moments, RNG, loss
        # scale) continue under *this* run's settings (iterations, lr, weight decay, momentum,
        # warm-up): so a run can be extended, or resumed with a lower --lr after a non-finite loss.
        try:
            load_optimizer_state(self.optimizer, state["optimizer"])
        except (ValueError, KeyError, TypeError) as err:  # a trial: PyTorch's message named no file
            raise _damaged(path, f"its optimiser state does not fit this run's optimiser ({err})") from None
        self.scheduler.resume(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.iteration, self.epoch = int(state["iteration"]), int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self._saved_at = self.iteration
        self.history = list(state.get("history", []))
        self._earlier_stretches = list(state.get("provenance", []))  # absent in checkpoints written before it
        before = int((self._earlier_stretches or [{}])[-1].get("processes", self.dist.world_size))
        if before != self.dist.world_size:  # a practitioner's trial: the global batch changed without a word
            batch = self.cfg.batch_size * self.cfg.grad_accum  # what one optimiser step sees, per process
            changed = [*changed, f"processes {before} -> {self.dist.world_size} (a global batch of {batch * before} -> "
                                 f"{batch * self.dist.world_size}; this epoch goes on from a position counted per "
                                 "process, so its remaining images are not exactly the ones the first run had left)"]
        old_length = saved.get("iterations")
        if old_length and old_length != self.cfg.iterations and self.iteration < self.cfg.iterations:
            # a trial: extending a run raised its learning rate again, unannounced (the poly schedule spans the run)
            def lr_at(settings: Mapping[str, Any], length: int) -> float:  # this run's or the checkpoint's settings
                return float(settings.get("lr", self.cfg.lr)) * poly_factor(
                    self.iteration, length, float(settings.get("poly_power", self.cfg.poly_power)),
                    int(settings.get("warmup_iters", self.cfg.warmup_iters)))

            changed = [*changed, f"the poly schedule now decays over {self.cfg.iterations} iterations, so the learning "
                                 f"rate at iteration {self.iteration} is {lr_at(now, self.cfg.iterations):.3g} (it was "
                                 f"{lr_at(saved, old_length):.3g} on the run's schedule of {old_length})"]
        self._stretch["from_iteration"] = self.iteration
        try:
            ck.set_rng_state(state["rng"])
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as err:  # a trial: an IndexError traceback
            raise _damaged(path, "its random number generators' state ('rng') cannot be restored "
                                 f"({type(err).__name__}: {err})") from None
        self._saved_process_rng = state.get("process_rng")  # absent in single-process runs and older checkpoints
        due = state.get("validation_due")  # absent in checkpoints written before it
        self._validation_due = self.iteration if due == self.iteration else None
        self._resume_message = (f"resumed from {shown_path(path)} at iteration {self.iteration}"
                                + (f"; with this run's settings: {', '.join(changed)}" if changed else "")
                                + (f"; it has reached its {self.cfg.iterations} iterations, so nothing is trained "
                                   f"(--iterations above {self.cfg.iterations} trains on)"
                                   if self.iteration >= self.cfg.iterations else "")
                                + ("; first the validation the stop cut short" if self._validation_due is not None
                                   else ""))

    def _truncate_metrics_csv(self) -> None:
        """Drop the rows ``metrics.csv`` got after the checkpoint (an interrupted run logs past its last
        checkpoint; the resumed run logs those iterations again). Written atomically."""
        path = self.out / "metrics.csv"
        if not path.exists():
            return
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if not rows or rows[0][:1] != ["iteration"]:
            return
        keep = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= self.iteration]
        if len(keep) == len(rows):
            return
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(keep)

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0 writes it; every process must call this); returns its path.

        In a multi-process run the checkpoint also keeps every process's random streams (``process_rng``,
        in rank order: each process's dropout draws from its own), which a resume with as many processes
        restores, so that the resumed run goes on bit for bit as the uninterrupted one.

        Raises:
            NonFiniteLossError: the model's weights or buffers (batch norm's running statistics) hold NaN or
                infinite values, though the losses read were finite (the optimiser step after the last loss, or
                the statistics, diverged): nothing is written, and the message names the last good checkpoint.
        """
        # one pass over the weights and buffers (an audit: a loss of 1e19, finite, with running_var infinite was
        # saved as "the last good checkpoint"); under torchrun every process checks its own (batch norm's
        # statistics differ between them) and all stop if one does
        problem = ck.non_finite_tensor(unwrap(self.net).state_dict())
        streams = None
        if self.dist.distributed:
            gathered = all_gather_objects((ck.rng_state(all_devices=False), problem))
            streams = [stream for stream, _ in gathered]
            problem = next((name for _, name in gathered if name is not None), None)
        if problem is not None:
            raise NonFiniteLossError(f"the model's weights hold NaN or infinite values at iteration {self.iteration} "
                                     f"(e.g. {problem}), though its losses were finite; stopping without writing. "
                                     f"{self._last_good()}")
        path = None
        if self.dist.is_main:
            state = self.state_dict()
            if streams is not None:
                state["process_rng"] = streams
            path = ck.save_checkpoint(state, self.ckpt_dir, self.iteration, self.cfg.keep_last)
            self._known_checkpoint = path
        barrier()
        self._saved_at = self.iteration
        return path

    def _save_unplanned(self, unread: list[torch.Tensor], agreed: bool = False) -> bool:
        """Save a checkpoint between planned ones (Ctrl-C, a bad file found mid-run) if training was
        done since the last; the losses not read yet are read first, so a NaN is reported, not saved.
        Under torchrun only where every process saves at this step (``agreed``: a stop request the
        processes agreed on); a bad file is met by one process alone, which cannot save without the others."""
        if (self.dist.distributed and not agreed) or self.iteration <= self._saved_at:
            return False
        self._read_losses(unread, self.iteration)
        self.save()
        return True

    def _after_data_error(self, err: BadDataError, unread: list[torch.Tensor]) -> BadDataError:
        """Save the training done so far (when a file turns out bad mid-run), then the error to raise:
        the file's message in one line, and what to do."""
        # the loader's frames go with the traceback: they hold its iterator, and so its workers, which a kept
        # error (a notebook's last one) would keep alive until the process ends
        err.__traceback__ = None
        note = ""
        if self._save_unplanned(unread):
            fix = ("fix the item of the set you passed" if self._data_passed else "fix the file")
            folder = ("" if self._data_passed else "; `deeplab-edu check-data` lists every bad file of a data set "
                      "at once")
            note = (f" ({self._iterations_saved()}: {fix}, then run again with resume=True (the command line: "
                    f"--resume){folder})")
        return BadDataError(original_message(err) + note, labels=err.labels)

    def _iterations_saved(self) -> str:
        """"the iteration done was saved" or "the 12 iterations done were saved", for a run's last message."""
        return ("the iteration done was saved" if self.iteration == 1
                else f"the {self.iteration} iterations done were saved")

    def _loading_at(self) -> str:
        """Where a loader failed, for its message: "in the validation at iteration 4" where the validation
        at this iteration is due (:meth:`_validate` marks it so as it fails), else "at iteration 5" (the step
        that waited for its batch)."""
        return (f"in the validation at iteration {self.iteration}" if self._validation_due == self.iteration
                else f"at iteration {self.iteration + 1}")

    def _after_loader_timeout(self, err: BaseException, unread: list[torch.Tensor]) -> RuntimeError:
        """Save the training done so far when a loader worker produced no batch within
        :data:`~deeplab_edu.engine.workers.LOADER_TIMEOUT_S`, then the error to raise: what stalled,
        where (:meth:`_loading_at`), and what to do."""
        err.__traceback__ = None  # its frames hold the loader, and so the stuck worker (see _after_data_error)
        saved = self.iteration > 0 and (self._save_unplanned(unread) or self._saved_at == self.iteration)
        then = "continue from the last checkpoint with resume (--resume)"
        advice = f"{self._iterations_saved()}; {then}" if saved else then
        return RuntimeError(stalled_loader_message(err, self._loading_at(), advice))

    def _after_worker_death(self, err: BaseException, unread: list[torch.Tensor],
                            batches: Iterator[Any]) -> RuntimeError:
        """Save the training done so far when a data loader worker died (killed by the system's
        out-of-memory killer, most often), then the error to raise: what happened and what to do.
        PyTorch's SIGCHLD handler reports the dead worker again while the others exit, so the loader
        is shut down first and the save tried again if that report interrupts it."""
        done = False
        for _ in range(3):
            try:
                _close_batches(batches)  # the loader's workers shut down (their deaths reported again: swallowed)
                done = self._save_unplanned(unread) or self._saved_at == self.iteration
                break
            except (RuntimeError, ConnectionError, EOFError) as again:  # reported again while saving
                if not _loader_worker_died(again):
                    raise
        saved = f"; {self._iterations_saved()}" if done else ""
        return RuntimeError(
            f"a data loader worker died {self._loading_at()} ({' '.join(str(err).split())[:160]}): a "
            "worker killed by a signal is most often the system's out-of-memory killer" + saved + "; use fewer "
            "workers (--num-workers) or a smaller batch (--batch-size), then continue with --resume")

    # ------------------------------------------------------------------ data
    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless training batches ``(images, labels)``, continuing from (epoch, batch_in_epoch).

        What :meth:`fit` feeds :meth:`step`; public so that a benchmark can time the loader, or
        the step on one batch repeated (``benchmarks/pipeline_diagnosis.py``,
        ``deeplab-edu bench --mode pipeline``). Images are float32 (batch_size, 3, H, W), labels
        int64 (batch_size, H, W) with ``ignore_index`` (255) where no class is known (both uint8 with
        ``cfg.uint8_batches`` and the data sets built from the configuration), on the CPU
        (pinned when training on CUDA); H = W = ``crop_size`` with the engine's transforms (padded to
        the crop), whatever the passed data set or ``pad_to_crop=False`` makes otherwise.

        A new DataLoader per epoch, because its workers hold copies of the dataset made when the
        epoch starts (``train_set.epoch`` seeds the augmentations). Workers use one thread each and
        batches are pinned on CUDA (:func:`~deeplab_edu.engine.data.train_loader`).
        """
        cfg = self.cfg
        while True:
            self.sampler.set_epoch(self.epoch)
            self.train_set.epoch = self.epoch
            self.sampler.set_start(self.batch_in_epoch * cfg.batch_size)
            loader = train_loader(self.train_set, self.sampler, batch_size=cfg.batch_size,
                                  num_workers=self.num_workers, device=self.device, generator=self._loader_gen)
            # closed by fit (however it ended) or failed: its workers end now (see _close_batches)
            with shutting_down_workers(loader) as iterator:
                for batch in iterator:
                    self.batch_in_epoch += 1
                    yield batch
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Copy a batch of :meth:`batches` to the device, as :meth:`step` does: from pinned memory the
        copies are asynchronous (``non_blocking``); a uint8 image batch, as ``cfg.uint8_batches``
        makes them or as a passed data set may give them (whatever the setting, in training and
        validation), is normalised there with ImageNet's statistics, as the transforms normalise
        float ones; images become channels-last when ``cfg.channels_last``, labels int64 (N, H, W): a batch of
        masks (N, 1, H, W), as torchvision's ``PILToTensor`` makes them (1, H, W), loses its 1, as the
        package's transforms squeeze it."""
        x = x.to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if x.dtype == torch.uint8:  # uint8_batches: (x / 255 - mean) / std, as the transforms' Normalize
            if self._pixel_stats is None or self._pixel_stats[0].device != x.device:
                self._pixel_stats = tuple(torch.tensor(v, device=x.device).mul_(255).view(1, -1, 1, 1)
                                          for v in (IMAGENET_MEAN, IMAGENET_STD))
            mean, std = self._pixel_stats
            x = (x.float() - mean) / std  # keeps x's memory format
        if y.dim() == 4 and y.shape[1] == 1:
            y = y.squeeze(1)
        return x, y.to(self.device, non_blocking=True).long()

    # ------------------------------------------------------------------ loops
    def _train_mode(self) -> None:
        self.net.train()
        if self.cfg.freeze_bn:
            freeze_batchnorm(self.net)

    def train_step(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, int]:
        """One optimiser step over ``grad_accum`` micro-batches; returns (mean loss, images seen).

        Reads the loss back at once (a GPU sync); :meth:`fit` uses :meth:`step` and reads the
        losses of several iterations together. The learning-rate schedule steps; ``self.iteration``
        does not (``fit`` counts, validates and saves; this is the step alone, for benchmarks).
        ``images`` counts every process's (batch x ``grad_accum`` x processes).

        Raises:
            NonFiniteLossError: the loss was NaN or infinite (checked after the optimiser step, so the
                weights in memory may then be NaN).
            ValueError: a passed model scores another number of classes than ``num_classes`` (checked on the
                first step, :meth:`step`).
        """
        loss, images = self.step(batches)
        (value,) = self._read_losses([loss], self.iteration + 1)
        return value, images

    def step(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, int]:
        """One optimiser step without reading anything back from the device (no GPU sync).

        ``grad_accum`` micro-batches from ``batches`` (pairs as :meth:`batches` yields them, on
        the CPU or already on the device), forward, loss, backward, optimiser and schedule step.
        Like :meth:`train_step`, it does not count ``self.iteration`` and checks nothing: a loss
        that is NaN is only seen when read (:meth:`train_step` reads and checks it). For timing the
        step alone; :meth:`fit` calls it and reads the losses of several iterations together.

        Returns:
            ``(loss, images)``: this process's mean loss over the micro-batches, a 0-d float32
            tensor on ``self.device`` (not averaged over processes; :meth:`_read_losses` does that),
            and the number of images all processes saw.

        Raises:
            ValueError: a passed model scores another number of classes than ``num_classes`` (checked on the
                first step; a model the Trainer builds always matches).
        """
        cfg = self.cfg
        self._train_mode()
        self.criterion.set_iteration(self.iteration)
        total, images = torch.zeros((), device=self.device), 0
        graphs = cfg.compile and cfg.compile_mode in ("reduce-overhead", "max-autotune")  # the modes with CUDA graphs
        for micro in range(cfg.grad_accum):
            x, y = self.to_device(*next(batches))
            last = micro == cfg.grad_accum - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.net, "no_sync") else cast(Any, self.net).no_sync()
            if graphs:  # a new iteration: CUDA graphs may reuse the memory of the last one's outputs
                torch.compiler.cudagraph_mark_step_begin()
            with sync:
                with autocast_context(cfg.amp, self.device):
                    outputs = self.net(x)
                    if self._check_classes:  # a passed model's first step (a trial: "Target 7 is out of bounds")
                        self._check_output_classes(outputs)
                    loss = self.criterion(outputs, y) / cfg.grad_accum
                self.scaler.scale(loss).backward()
            total += loss.detach().float()
            images += x.shape[0]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return total, images * self.dist.world_size

    def _check_output_classes(self, outputs: Any) -> None:
        """Raise :class:`ValueError` when a passed model scores another number of classes than the data's
        ``num_classes`` (checked on its first training step; a model the Trainer builds always matches)."""
        logits = unwrap_out(outputs)
        if logits.shape[1] != self.num_classes:
            raise ValueError(f"the model scores {logits.shape[1]} classes (its logits: {tuple(logits.shape)}), but the "
                             f"data has {self.num_classes} (num_classes): build it with num_classes="
                             f"{self.num_classes}, or give the Trainer data with its {logits.shape[1]} classes")
        self._check_classes = False

    def _read_losses(self, losses: list[torch.Tensor], last_iteration: int) -> list[float]:
        """The losses of iterations ``last_iteration - len(losses) + 1`` to ``last_iteration`` (1-based)
        as numbers, averaged over processes: one read from the device for all of them.

        Raises:
            NonFiniteLossError: naming the first iteration whose loss was not finite and the newest
                checkpoint (written before it, since :meth:`fit` reads the losses before saving).
        """
        if not losses:  # nothing trained since the last read (every process alike)
            return []
        values = all_reduce_mean(torch.stack(losses).double(), self.device).tolist()
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        if bad is not None:
            raise NonFiniteLossError(
                f"the training loss became {values[bad]} at iteration {last_iteration - len(values) + 1 + bad}; "
                f"stopping without writing. {self._last_good()}")
        return values

    def _last_good(self) -> str:
        """Where a run whose model became NaN resumes from: its newest checkpoint whose weights are finite
        (:func:`~deeplab_edu.engine.checkpoint.last_finite_checkpoint`; newer ones, written before checkpoints
        were checked, are named to be moved away), and what makes a loss NaN: the learning rate, fp16 (only where
        ``cfg.amp`` is fp16), or a NaN or infinite value in the images. A checkpoint whose weights are finite may
        hold a model that had diverged already (a trial: resuming from it at a 200 000 times lower rate diverged
        again, and the message named it again): its training loss is given where it had risen tenfold, and a
        run that diverged again from the checkpoint it resumed is told to start anew where that loss had risen,
        else to resume with a clearly lower rate than its own."""
        good, newer = ck.last_finite_checkpoint(self.ckpt_dir)
        amp = " or amp=bf16/none" if self.cfg.amp == "fp16" else ""
        images = (" A NaN or infinite value in the images (a float image file, a passed data set or its transform) "
                  "makes the loss NaN too, whatever the learning rate.")
        if good is None:
            return f"No checkpoint with finite weights had been written yet; try a lower lr (--lr){amp}.{images}"
        risen = self._loss_risen_by(good)
        if self._resumed_from is not None and good.resolve() == self._resumed_from.resolve():
            again = f"This run resumed from {good}, its last checkpoint with finite weights, and diverged again"
            if risen:  # a review: a healthy checkpoint resumed at the same rate is no reason to start anew
                return f"{again}, and {risen}: start a new run with a lower lr.{images}"
            return (f"{again}: resume from it with a clearly lower lr than this run's {self.cfg.lr:g} (resume=True, the "
                    f"command line --resume --lr){amp}.{images}")
        move = (f"; move {', '.join(p.name for p in newer)} out of {shown_path(self.ckpt_dir)} first: their weights "
                "are not finite" if newer else "")
        if risen:
            risen = f" But {risen}; if resuming from it fails again, start a new run with a lower lr."
        return (f"The last good checkpoint is {good} (resume with resume=True, the command line --resume, perhaps "
                f"with a lower lr{amp}{move}).{risen}{images}")

    def _loss_risen_by(self, checkpoint: Path) -> str:
        """Where the training loss logged at or before ``checkpoint``'s iteration is not finite or ten times the run's
        first one, a clause saying so ("its training loss had risen to ...: its model may have diverged already"),
        else ``""``."""
        iteration = ck.checkpoint_iteration(checkpoint)
        train = [r for r in self.history if r.get("split") == "train" and isinstance(r.get("loss"), float)]
        if iteration is None or not train:
            return ""
        before = [r for r in train if r["iteration"] <= iteration]
        if not before or (math.isfinite(before[-1]["loss"]) and before[-1]["loss"] <= 10 * train[0]["loss"]):
            return ""
        return (f"its training loss had risen to {before[-1]['loss']:.3g} by then (from {train[0]['loss']:.3g} at "
                f"iteration {train[0]['iteration']}): its model may have diverged already")

    @torch.no_grad()
    def evaluate(self, output_stride: int | None = None, *,
                 should_stop: Callable[[], bool] | None = None,
                 agree_to_stop: Callable[[bool], bool] | None = None) -> dict[str, Any]:
        """mIoU etc. on the validation set, at ``output_stride`` (default ``eval_output_stride``).

        Batched: up to ``batch_size`` images per forward pass, grouped by size and never resized or
        padded (:func:`~deeplab_edu.engine.data.eval_loader`), so the metrics are those of an
        evaluation one image at a time. ``output_stride`` and ``eval_output_stride`` both ``None``:
        the training stride; a model without ``set_output_stride`` is evaluated at its own. Draws
        nothing from the training's random stream. The loader's worker processes end as it returns or
        raises (the error a notebook keeps does not keep them).

        Returns:
            :meth:`~deeplab_edu.metrics.ConfusionMatrix.compute`'s metrics (``miou``, ``iou``,
            ``pixel_accuracy``, ``fw_iou``), fractions in [0, 1], summed over every process.

        Under torchrun the processes' shards differ in length, so they cannot agree between two
        batches: each stops its own pass when its ``should_stop()`` becomes true, and
        ``agree_to_stop(stopped)``, which every process calls after its pass (:meth:`fit`'s: a MAX
        all-reduce over a gloo group), says whether any of them stopped; then none sums the metrics.

        Raises:
            ValidationStopped: ``should_stop()`` became true between two batches, or ``agree_to_stop``
                said another process's did (:meth:`fit` passes its Ctrl-C / SIGTERM request: a stop
                need not wait for a whole validation).
            NonFiniteLossError: the model's scores held NaN (:data:`~deeplab_edu.metrics.NAN_SCORES`; under
                torchrun, on any process: all raise it, after the pass), naming the last good checkpoint.
            BadDataError: an item of a validation set passed to the Trainer has a mask label outside the classes,
                naming the item (:class:`~deeplab_edu.engine.data.SeededDataset`).
            ValueError: a mask of the configuration's validation set holds a label outside the classes
                (:meth:`~deeplab_edu.metrics.ConfusionMatrix.update`).
            RuntimeError: called directly (not by :meth:`fit`, which saves first and says how to resume), a loader
                worker produced no batch within :data:`~deeplab_edu.engine.workers.LOADER_TIMEOUT_S` seconds: the
                message says after how many images (:func:`~deeplab_edu.engine.workers.naming_a_stall`).
        """
        cfg = self.cfg
        model = unwrap(self.net)
        os_eval = output_stride if output_stride is not None else cfg.eval_output_stride
        if not hasattr(model, "set_output_stride"):
            os_eval = None  # a model that cannot switch is evaluated at its own stride
        cm = ConfusionMatrix(self.num_classes, self.ignore_index, device=self.device)
        nan_batches = torch.zeros((), dtype=torch.int64, device=self.device)  # batches whose scores hold NaN
        sampler = ShardSampler(len(cast(Sized, self.val_set)), num_replicas=self.dist.world_size, rank=self.dist.rank)
        loader = eval_loader(self.val_set, batch_size=cfg.batch_size, num_workers=self.num_workers,
                             sampler=sampler, device=self.device)
        scored, n = 0, len(sampler)
        # the loader's workers end as the loop is left, however (a notebook keeps the last error, whose frames
        # held the loader: a set of workers per failed call, an audit); fit names a stall itself, after saving
        batches = (shutting_down_workers(loader) if self._fitting else contextlib.closing(naming_a_stall(
            loader, lambda: f"in Trainer.evaluate() after {scored} of the {n} validation images",
            "`deeplab-edu check-data` reads every file of a data set and names those it cannot read")))
        try:
            with batches as iterator, at_output_stride(model, os_eval):  # restored also when evaluation raises
                model.eval()
                stopped = False
                for same_size_batches in iterator:
                    for x, y in same_size_batches:
                        if should_stop is not None and should_stop():
                            stopped = True
                            break
                        x, y = self.to_device(x, y)
                        with autocast_context(cfg.amp, self.device):
                            out = model_logits(model, x)  # a passed model's tensor, too
                        if out.shape[-2:] != y.shape[-2:]:  # at the labels' size, as the loss scores it
                            out = F.interpolate(out, size=y.shape[-2:], mode="bilinear", align_corners=False)
                        nan_batches += out.isnan().any()  # counted where it is (no wait for the device here)
                        cm.update(out.float().argmax(1), y)
                        scored += len(x)
                    if stopped:
                        break
                if agree_to_stop is not None:
                    stopped = agree_to_stop(stopped)
                if stopped:
                    raise ValidationStopped("validation stopped by a stop request")
                cm.all_reduce()
                if torch.distributed.is_available() and torch.distributed.is_initialized():  # all raise, or none
                    torch.distributed.all_reduce(nan_batches, op=torch.distributed.ReduceOp.SUM)
                if int(nan_batches):  # an audit: argmax labels NaN class 0, and the mIoU logged was a number
                    why = NAN_SCORES if self.cfg.amp == "fp16" else NAN_SCORES_CAUSE  # fp16 only where it trained
                    raise NonFiniteLossError(f"the model's validation scores hold NaN at iteration {self.iteration} "
                                             f"({why}); stopping without writing. {self._last_good()}")
        finally:
            self._train_mode()
        return cm.compute()

    def fit(self, on_eval: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Train to ``cfg.iterations``; returns :func:`run_result`: ``{"history": [...], "final": {...},
        "class_names": [...], "provenance": [...]}`` (``class_names`` where the data set names its classes).

        The run's folder is locked while it trains (:func:`~deeplab_edu.engine.runs.claim_run_folder`). On the
        CPU (glibc) freed memory is kept for the next step while it trains, unless ``cfg.keep_freed_memory`` is
        false, and given back to the system as it ends (:func:`~deeplab_edu.engine.allocator.freed_memory_kept`).

        ``history`` holds a row per log (``split="train"``: mean loss of the window, the learning
        rate the step used, images/s) and per validation (``split="val"``: ``miou``,
        ``pixel_accuracy``, ``fw_iou`` and per-class ``iou``, fractions); ``final`` is the last
        validation row (``{}`` if there was none); ``provenance`` what trained the run
        (:attr:`provenance`). ``metrics.json`` holds the same.

        Raises:
            ~deeplab_edu.engine.config.ConfigError: a setting of ``cfg`` changed since the Trainer was built from it
                (but ``eval_every``, ``log_every``, ``ckpt_every``, ``keep_last``, ``progress``, ``tensorboard``),
                naming it; nothing is trained or written.
            ~deeplab_edu.engine.runs.RunFolderError: another process trains into ``cfg.out_dir``, or it holds the
                checkpoints of another run and ``cfg.resume`` is false, or another process trained it on after this
                Trainer was built (its newest checkpoint is not the one resumed from: build the Trainer again).
            NonFiniteLossError: the loss, or the weights as a checkpoint is written, became NaN or infinite (nothing
                is written for those steps).
            ValueError: a passed model scores another number of classes than ``num_classes`` (on the first step).
            BadDataError: a data file proved bad mid-run, or a training item's (or a passed validation set's
                item's) mask holds a label outside the classes, naming the item (the iterations done are saved
                first, for ``resume``).
            TrainingInterrupted: (a ``KeyboardInterrupt``) after Ctrl-C or SIGTERM, once the step is
                finished and a checkpoint saved (a validation under way is cut short, the final one
                aside); a second signal stops at once.
            RuntimeError: a data loader worker died (the iterations done are saved first, for ``resume``), or
                one produced no batch within
                :data:`~deeplab_edu.engine.workers.LOADER_TIMEOUT_S` seconds (the
                message names the iteration and says to continue with ``resume``), or a failure of
                PyTorch's own (out of memory, a kernel error), as it raised it.
        """
        self._check_cfg_unchanged()
        # a Trainer that has trained already is in its own run (fit() called again)
        continuing = self.cfg.resume or self.iteration > 0
        lock = claim_run_folder(self.out, resume=continuing) if self.dist.is_main else None
        try:
            if lock is not None and continuing:
                self._check_not_trained_since()
            if lock is not None and self._resume_message and self.verbose:
                print(self._resume_message)
            if lock is not None and self.cfg.resume:
                self._truncate_metrics_csv()
            # both switched back however fit ends (the allocator's setting: glibc's defaults, the memory returned)
            with _deterministic_kernels(self.cfg.deterministic), \
                    freed_memory_kept(self.cfg.keep_freed_memory and self.device.type == "cpu"):
                self._fitting = True
                return self._fit(on_eval)
        finally:
            self._fitting = False
            if lock is not None:
                lock.release()

    def _check_cfg_unchanged(self) -> None:
        """Refuse settings changed since this Trainer was built from them (but those of :data:`_READ_BY_FIT`): its
        model, optimiser, schedule and data follow the old ones (an audit: ``t.cfg.iterations = 6`` after a
        run of 2 trained iterations 3-6 at learning rate 0, the poly schedule having ended at 2, and
        config.json said 6).

        Raises:
            ~deeplab_edu.engine.config.ConfigError: naming each changed setting, its old and new value; or a value
                of those it may change that :func:`~deeplab_edu.engine.config.validate` refuses (a review:
                ``eval_every = 0`` failed with ZeroDivisionError after the first step).
        """
        # the backbone's file was read when the Trainer was built (a review: a moved file failed a later fit)
        validate(dataclasses.replace(self.cfg, pretrained_backbone=False))
        def changes(cfg: TrainConfig) -> list[str]:  # "name old -> new" for each setting fit() does not read again
            return [f"{k} {self._built_from.get(k)!r} -> {v!r}" for k, v in cfg.to_dict().items()
                    if k not in _READ_BY_FIT and v != self._built_from.get(k)
                    and repr(v) != repr(self._built_from.get(k))]  # NaN != NaN: an equal NaN is no change

        changed = changes(self.cfg)
        if not changed and self._callers_cfg is not self.cfg:
            if moved := changes(self._callers_cfg):
                # a review: a change to the caller's cfg after Trainer(cfg) was dropped without a word
                warnings.warn(f"the configuration this Trainer was built from changed since ({'; '.join(moved)}); "
                              "the Trainer trains with its own copy, trainer.cfg, as it was: build a new Trainer from "
                              "the changed one (with resume=True to continue this run) to train with it",
                              stacklevel=3)
        if changed:
            raise ConfigError(
                f"the configuration changed since this Trainer was built from it ({'; '.join(changed)}): its model, "
                "optimiser, learning-rate schedule and data follow the settings it was built with, not the change. "
                "To train on with the new settings, build a new Trainer from them with resume on (cfg = "
                "trainer.cfg; cfg.resume = True; Trainer(cfg, ...), passing again any model and data sets passed to "
                f"this one): it goes on from the newest checkpoint in {shown_path(self.out)}. Between two fit() calls only "
                f"{', '.join(_READ_BY_FIT)} may change")

    def _check_not_trained_since(self) -> None:
        """Refuse to train when the run's newest checkpoint is no longer the one this Trainer resumed from (or
        wrote): another process trained the folder on between this Trainer's construction and :meth:`fit`, which
        would otherwise train on from the older iteration, link ``last.pt`` to it beside the newer checkpoint and
        cut ``metrics.csv`` back.

        Raises:
            ~deeplab_edu.engine.runs.RunFolderError: naming both checkpoints (and saying to build the Trainer again).
        """
        newest = ck.latest_checkpoint(self.ckpt_dir)
        if newest == self._known_checkpoint:
            return
        had = (f"it resumed from {shown_path(self._known_checkpoint)}" if self._known_checkpoint is not None
               else "it found no checkpoint there")
        now = f"the newest is now {shown_path(newest)}" if newest is not None else "none is there now"
        raise RunFolderError(f"{shown_path(self.out)} was trained on by another process after this Trainer was built "
                             f"({had}; {now}): build the Trainer again (resume=True, or run the command again with "
                             "--resume) to continue from the newest checkpoint")

    def describe(self) -> str:
        """One line: the model, the data, the schedule, the device and the run's folder (``fit`` prints it, unless
        ``verbose`` is off)."""
        cfg, info = self.cfg, self.model_info
        model = info.get("model_class", f"{cfg.model} / {cfg.backbone}").rsplit(".", 1)[-1]
        if "data_class" in info:
            data = info["data_class"].rsplit(".", 1)[-1]
        else:
            data = cfg.dataset + (f" ({cfg.difficulty}, {cfg.image_size} px)" if cfg.dataset == "procedural" else "")
            data += f" at {shown_path(cfg.data_root)}" if cfg.data_root else ""
        start = f", from iteration {self.iteration}" if self.iteration else ""
        val = len(self.val_set) if hasattr(self.val_set, "__len__") else "?"
        crop = "" if "data_class" in info else f" (crop {cfg.crop_size})"  # a script's data: its own transform
        strides = ""  # a model that cannot switch its output stride trains and validates at its own
        if hasattr(unwrap(self.net), "set_output_stride"):
            strides = f" (output stride {cfg.output_stride}" + (
                f", validated at {cfg.eval_output_stride})" if cfg.eval_output_stride not in (None, cfg.output_stride)
                else ")")
        balanced = ("" if self.class_weights is None else
                    f" (class weights {float(self.class_weights.min()):.2f}-{float(self.class_weights.max()):.2f}, "
                    "median frequency)")
        world = self.dist.world_size if self.dist.distributed else 1
        accum = cfg.grad_accum
        per_process = (f" per process x {world} processes" if world > 1 else "") + (
            f" x {accum} accumulated" if accum > 1 else "")
        if world > 1 or accum > 1:
            per_process += f" (a global batch of {cfg.batch_size * world * accum} per optimiser step)"
        return (f"train {model}{strides} on {data}: {len(self.train_set)} training / {val} validation images, "
                f"{self.num_classes} classes{balanced}; {cfg.iterations} iteration{'' if cfg.iterations == 1 else 's'} of batch {cfg.batch_size}"
                f"{per_process}"
                f"{crop}{start} on {self.device} ({self.num_workers} loader worker{'' if self.num_workers == 1 else 's'}"
                f"{', uint8 batches' if cfg.uint8_batches and 'data_class' not in info else ''}) -> "
                f"{shown_path(self.out)}")

    def _fit(self, on_eval: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
        from ..progress import progress_bar

        cfg = self.cfg
        config = self.out / "config.json"
        # the settings that trained the run: a resume with nothing left to train keeps the ones it has
        if self.dist.is_main and (self.iteration < cfg.iterations or not config.is_file()):
            write_text_atomic(config, json.dumps(cfg.to_dict(), indent=2) + "\n")
        if self.dist.is_main and cfg.tensorboard and self.iteration < cfg.iterations:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: the events a run killed after its last checkpoint logged (or a killed run before it,
            # whose folder this run took over) are dropped, so no step is drawn twice (an audit: 340 points of
            # train/loss for 300 iterations after a resume)
            self._tb = SummaryWriter(str(self.out / "tensorboard"), purge_step=self.iteration + 1)
        batches = self.batches()
        if self._says and self.iteration < cfg.iterations:  # a finished run resumed trains nothing
            print(self.describe(), flush=True)
        bar = progress_bar(total=cfg.iterations, initial=self.iteration, desc="train", unit="it",
                           progress=cfg.progress and self._says, dynamic_ncols=True)
        # no bar (progress off, or TQDM_DISABLE=1, e.g. a job writing to a log file): a line per log
        say_loss = self._says and bool(bar.disable)
        window_loss, window_imgs, window_steps, t0 = 0.0, 0, 0, time.perf_counter()
        unread: list[torch.Tensor] = []  # losses still on the device (see the module docstring)
        # under torchrun every process stops at the same step: after each step they agree (max_over_processes,
        # over a gloo group on the CPU, no wait for the GPU) whether one of them was asked to stop, and by which
        # signal, and after each validation pass, which each cuts short at a batch of its own. torchrun passes a
        # signal on to each process's group (its loader workers have groups of their own) and kills them 30 s
        # later; a scheduler may also signal every process itself, so that each gets the request twice: a second
        # signal does not stop at once there
        several = self.dist.distributed
        stop = _StopRequest(enabled=threading.current_thread() is threading.main_thread(), repeat_stops=not several,
                            announce=self._says)
        group = cpu_group() if several else None

        def agree_to_stop(stopped: bool) -> bool:  # whether one of the processes stopped (or was asked to)
            if not several:
                return stopped
            agreed = max_over_processes(stop.signum if stopped else 0, group)
            if agreed:
                stop.signum = agreed  # the exit status says the signal one of them got
            return bool(agreed)

        def stopping() -> bool:  # the processes' common answer, taken once per step (a signal after it: next step)
            return agree_to_stop(stop.requested)
        try:  # a loader worker's death is reported by PyTorch's SIGCHLD handler, in whatever line runs
            with stop, bar:  # an error closes the bar too: its message then starts a line of its own
                if self._validation_due == self.iteration:  # resumed where a stop cut a validation short
                    self._validate(stop, True, agree_to_stop if several else None, unread, bar, on_eval)
                    if stopping():  # stopped again: the checkpoint of this iteration still says it is due
                        raise self._interrupted(stop, unread)
                    t0 = time.perf_counter()  # the validation does not count against the first window's throughput
                while self.iteration < cfg.iterations:
                    lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses (logged with it)
                    try:
                        loss, imgs = self.step(batches)
                    except BadDataError as err:
                        raise self._after_data_error(err, unread) from None
                    except RuntimeError as err:
                        if not loader_timed_out(err):
                            raise
                        raise self._after_loader_timeout(err, unread) from None
                    self.iteration += 1
                    unread.append(loss)
                    window_imgs, window_steps = window_imgs + imgs, window_steps + 1
                    bar.update(1)
                    last = self.iteration == cfg.iterations
                    log_now, eval_now, save_now = (last or self.iteration % every == 0
                                                    for every in (cfg.log_every, cfg.eval_every, cfg.ckpt_every))
                    if log_now or eval_now or save_now:  # the losses read before anything is logged, evaluated, written
                        window_loss += sum(self._read_losses(unread, self.iteration))
                        unread = []
                    if log_now:
                        dt = time.perf_counter() - t0
                        # the steps since the last log: fewer than log_every after a resume between two logs
                        row = {"iteration": self.iteration, "split": "train", "loss": window_loss / window_steps,
                               "lr": lr, "images_per_s": window_imgs / max(dt, 1e-9)}
                        bar.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{lr:.2e}", img_s=f"{row['images_per_s']:.1f}")
                        self._log(row)
                        if say_loss:
                            print(f"iteration {self.iteration}/{cfg.iterations}: loss {row['loss']:.4f}, lr {lr:.2e}, "
                                  f"{row['images_per_s']:.1f} images/s", flush=True)
                        window_loss, window_imgs, window_steps, t0 = 0.0, 0, 0, time.perf_counter()
                    paused = time.perf_counter()
                    if eval_now:
                        if several and not last and stopping():  # asked before a validation: skipped, as one
                            self._validation_due = self.iteration  # process skips it (no loaders started for
                            raise self._interrupted(stop, unread)  # nothing); the resumed run does it first
                        self._validate(stop, not last, agree_to_stop if several and not last else None, unread,
                                       bar, on_eval)
                    if save_now:
                        self.save()
                    t0 += time.perf_counter() - paused  # evaluation and checkpoints do not count against throughput
                    # Ctrl-C: this step is complete, so the checkpoint is a consistent one (after the last step
                    # the run ends as planned, its metrics written)
                    if not last and stopping():
                        raise self._interrupted(stop, unread)
        except BrokenPipeError:  # the console's pipe closed (`deeplab-edu train | head -1`): no worker died
            if not stop.requested:  # the training done is kept, as for Ctrl-C (a stop saves its own)
                with contextlib.suppress(BrokenPipeError):
                    self._save_unplanned(unread)
            raise
        except (RuntimeError, ConnectionError, EOFError) as err:
            if not _loader_worker_died(err):
                raise
            died = self._after_worker_death(err, unread, batches)
            if stop.requested and several:  # one process cannot save without the others
                raise RuntimeError(f"{died}. A stop was asked for too, so its signal (sent to every process of the "
                                   "job?) more likely ended the worker; under torchrun a process cannot save without "
                                   "the others") from None
            if stop.requested:  # the stop's signal reached the workers too (sent to every process of the job)
                raise self._interrupted(stop, unread, " (the signal ended the loader's workers too)") from None
            raise died from None
        finally:
            try:  # (a second Ctrl-C while the workers shut down still lets the group and the writer go)
                _close_batches(batches)
            finally:
                release_group(group)  # the gloo group cpu_group made for this fit (none where it is the default group)
                if self._tb is not None:  # also after a failure or a stop: no writer thread left in a notebook's kernel
                    self._tb.close()
                    self._tb = None
        result = run_result(self.history, self.provenance, self.model_info.get("class_names"))
        if self.dist.is_main:
            write_metrics_json(self.out / "metrics.json", result)
        return result

    def _interrupted(self, stop: "_StopRequest", unread: list[torch.Tensor], why: str = "") -> TrainingInterrupted:
        """After a stop request (under torchrun: one the processes agreed on, at the same step), between two
        steps: save a checkpoint (unless this iteration's is written), then the :class:`TrainingInterrupted`
        to raise, naming it (and ``why``, a parenthesis after it) and how to continue."""
        self._save_unplanned(unread, agreed=True)
        saved = ck.latest_checkpoint(self.ckpt_dir) if self.dist.is_main else None
        how = ("run the same cell again (a chapter's run resumes by itself; a Trainer needs resume=True)"
               if _in_notebook() else "run it again (train_or_load resumes by itself; a Trainer needs resume=True, "
               "the command line --resume)")
        return TrainingInterrupted(stop.signum, (
            f"stopped after iteration {self.iteration} of {self.cfg.iterations}, saved in {shown_path(saved)}{why}; "
            f"to continue, {how}") if saved is not None else "")

    def _validate(self, stop: "_StopRequest", stoppable: bool, agree: Callable[[bool], bool] | None,
                  unread: list[torch.Tensor], bar: Any, on_eval: Callable[[dict[str, Any]], None] | None) -> None:
        """The planned validation at this iteration: logged, written above the bar, passed to ``on_eval``.

        A stop request skips it (or cuts it short between two batches) if it is ``stoppable`` (all but
        the final one): stopping must not wait for a whole validation pass. The iteration is then kept
        as ``validation_due``, which the checkpoint saved on stopping holds, and the resumed run
        validates there before it trains on. ``agree``: under torchrun, the processes' common answer
        to "did one of us stop?" after each one's pass (:meth:`evaluate`'s ``agree_to_stop``).
        """
        self._validation_due = None
        m = None
        should_stop = (lambda: stop.requested) if stoppable else None
        if agree is not None or not stop.requested or not stoppable:  # alone: no loader started for nothing
            stop.validating = stoppable
            try:
                m = self.evaluate(should_stop=should_stop, agree_to_stop=agree)
            except BadDataError as err:  # a bad validation file: keep the training done so far, the validation
                self._validation_due = self.iteration  # still due (the resumed run does it first, the file fixed)
                raise self._after_data_error(err, unread) from None
            except ValidationStopped:
                pass
            except (RuntimeError, ConnectionError, EOFError) as err:
                self._validation_due = self.iteration  # the resumed run validates here first (and messages say where)
                if loader_timed_out(err):
                    raise self._after_loader_timeout(err, unread) from None
                if not (stop.requested and not self.dist.distributed and _loader_worker_died(err)):
                    raise  # fit's handler saves where a worker died
                # the stop's signal reached the workers too (a scheduler that signals every process of the job):
                # the validation is cut short, as asked; its loader goes with the error's frames
                if not stoppable:  # the final one: the run stops (fit's handler saves), not ending without it
                    raise
                err.__traceback__ = None
            finally:
                stop.validating = False
        if m is None:
            self._validation_due = self.iteration
            return
        row = {"iteration": self.iteration, "split": "val", "miou": m["miou"],
               "pixel_accuracy": m["pixel_accuracy"], "fw_iou": m["fw_iou"], "iou": m["iou"],
               "output_stride": self._validated_stride()}
        self._log(row)
        if self._says:
            bar.write(f"iteration {self.iteration}: val mIoU {100 * m['miou']:.1f}% "
                      f"(pixel acc. {100 * m['pixel_accuracy']:.1f}%)")
        if on_eval:
            on_eval(row)

    def _validated_stride(self) -> int | None:
        """The output stride :meth:`evaluate` ran at: the configuration's for a model that switches (this
        package's), else the model's own ``output_stride`` if it has one, else ``None`` (not known: a
        torchvision model, which the history recorded as the configuration's, a trial found)."""
        model = unwrap(self.net)
        if hasattr(model, "set_output_stride"):
            return self.cfg.eval_output_stride or self.cfg.output_stride
        stride = getattr(model, "output_stride", None)
        return int(stride) if isinstance(stride, int) else None

    def _log(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if not self.dist.is_main:
            return
        fields = ["iteration", "split", "loss", "lr", "images_per_s", "miou", "pixel_accuracy", "fw_iou",
                  "output_stride"]
        path = self.out / "metrics.csv"
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        if self._tb is not None:
            for k in ("loss", "lr", "images_per_s", "miou", "pixel_accuracy"):
                if k in row:
                    self._tb.add_scalar(f"{row['split']}/{k}", row[k], row["iteration"])


class ValidationStopped(Exception):
    """:meth:`Trainer.evaluate` stopped between two batches because its ``should_stop()`` said so."""


def _to_training_stride(model: nn.Module, output_stride: int) -> None:
    """Switch a model passed to the Trainer to the configuration's ``output_stride``, as the engine builds its
    own there (an audit: torchvision's DeepLabv3-ResNet from ``from_torchvision`` is at 8, the default 16; it
    trained at 8 while the start-up line, the history and the checkpoint said 16). Its ``build_kwargs``, where
    it has them, then name that stride and the rates at it, so that ``load_run`` rebuilds the model trained.
    A model without ``set_output_stride`` is left at its own. Switching a model the package built (one with
    ``build_kwargs``) is a ``UserWarning`` naming both strides (the caller's model object changes: one built at 8
    on purpose keeps it with ``output_stride=8``).

    Raises:
        ~deeplab_edu.engine.config.ConfigError: the model cannot switch to ``output_stride`` (VGG-16: 8 only;
            rates that do not scale to whole numbers), naming its own stride.
    """
    own = getattr(model, "output_stride", None)
    if not hasattr(model, "set_output_stride") or own == output_stride:
        return
    try:
        cast(Any, model).set_output_stride(output_stride)
    except ValueError as err:
        at = "" if own is None else f", at output stride {own}"
        raise ConfigError(f"output_stride={output_stride}: the passed model ({type(model).__name__}{at}) cannot "
                          f"train there ({err}); set output_stride to one it can take"
                          + (f", e.g. its own, {own}" if own else "")) from None
    built = getattr(model, "build_kwargs", None)
    if built:  # a model the package built (build_model, from_torchvision): its stride is a choice made there
        if own is not None:
            warnings.warn(f"the passed model ({type(model).__name__}, built at output stride {own}) is switched to "
                          f"output_stride={output_stride}, the configuration's, to train there; set "
                          f"output_stride={own} to keep its own", stacklevel=3)
        rates = getattr(model, "atrous_rates", None)
        cast(Any, model).build_kwargs = {**built, "output_stride": output_stride,
                                         "atrous_rates": None if rates is None else [int(r) for r in rates]}


def _close_batches(batches: Iterator[Any]) -> None:
    """Close :meth:`Trainer.batches`'s generator as :meth:`Trainer.fit` ends, however it ends: the loader
    iterator it holds is dropped and its workers shut down (PyTorch joins each for at most 5 s, then
    terminates it). Left paused, the generator kept them alive as long as anything held fit's frames: a
    notebook keeps the last error's traceback, and so one set of worker processes (and their queue threads)
    per interrupted or failed run. A worker reported dead as they shut down (PyTorch's SIGCHLD handler)
    leaves the run's outcome, its result or the error it raises, as it was."""
    try:
        if hasattr(batches, "close"):
            batches.close()
    except (RuntimeError, ConnectionError, EOFError) as err:
        if not _loader_worker_died(err):
            raise


def _loader_worker_died(err: BaseException) -> bool:
    """Whether ``err``, raised while a batch was fetched, says a DataLoader worker process died:
    PyTorch's "DataLoader worker (pid 328) is killed by signal: Killed." or "... exited unexpectedly",
    or the broken connection the main process may see first ("Connection reset by peer", a practitioner's
    trial, killing a worker as the out-of-memory killer would)."""
    text = str(err)
    if isinstance(err, BrokenPipeError):  # a write to a closed pipe, the console's (`| head`): the loader only reads
        return False
    return (isinstance(err, (ConnectionError, EOFError))
            or ("DataLoader worker" in text and ("killed by signal" in text or "exited unexpectedly" in text)))


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython's kernel shell, which has a ``kernel``), where a stopped
    run goes on by running its cell again; not a script, the command line or IPython in a terminal. IPython is
    not imported for it (a script that never imported it runs in no kernel)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return getattr(shell, "kernel", None) is not None


class TrainingInterrupted(KeyboardInterrupt):
    """:meth:`Trainer.fit` stopped on a signal, after finishing its step and saving a checkpoint.

    ``signum`` is the signal (``signal.SIGINT`` for Ctrl-C, ``signal.SIGTERM`` for ``kill``): a
    command exits with ``128 + signum`` (130, 143), as a shell reports a process the signal ended.
    ``detail`` (the message after the signal's name) says where the checkpoint is and how to continue:
    the last line a notebook's traceback shows.
    """

    def __init__(self, signum: int = signal.SIGINT, detail: str = "") -> None:
        name = signal.Signals(signum).name
        super().__init__(f"{name}: {detail}" if detail else name)
        self.signum = int(signum)


class _StopRequest:
    """While training: the first Ctrl-C (SIGINT), SIGTERM (``kill``, ``docker stop``, a batch
    scheduler's notice) or SIGHUP (a closed terminal) asks the loop to finish its step, save a checkpoint and stop (raising
    KeyboardInterrupt); a second one stops at once where ``repeat_stops`` (a single process; not under
    torchrun, which passes its signal on to each process and kills them 30 s later, while a scheduler
    that signals every process of the job itself makes each get the request twice). Only in the main
    thread (``enabled``); ``announce``: say so on the console (one process of several)."""

    #: SIGHUP too (a closed terminal, a dropped SSH connection), where the system has it (not Windows)
    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

    def __init__(self, enabled: bool, repeat_stops: bool = True, announce: bool = True) -> None:
        self.enabled, self.requested, self.signum = enabled, False, int(signal.SIGINT)
        self.repeat_stops, self.announce = repeat_stops, announce
        self.validating = False  # set by the loop around a validation that a request cuts short
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        if self.enabled:  # a signal the process ignores (SIGHUP under nohup, SIGINT in a background job) stays so
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS
                              if signal.getsignal(sig) is not signal.SIG_IGN}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            if self.repeat_stops:
                raise TrainingInterrupted(signum)
            return
        self.requested, self.signum = True, int(signum)
        if not self.announce:
            return
        doing = ("stopping the validation under way and saving a checkpoint" if self.validating
                 else "finishing this step and saving a checkpoint")
        again = ("interrupt again to stop at once" if self.repeat_stops else
                 "every process stops after the same step; torchrun ends them 30 s after its signal")
        try:  # after SIGHUP the terminal may be gone: the checkpoint matters, not the line
            print(f"\n{'interrupted' if signum == signal.SIGINT else signal.Signals(signum).name}: {doing} "
                  f"({again})", file=sys.stderr, flush=True)
        except OSError:
            pass

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            signal.signal(sig, previous if previous is not None else default)
        self._previous = {}


def _grad_scaler(enabled: bool, device: torch.device) -> Any:
    try:
        return torch.amp.GradScaler(device.type, enabled=enabled)
    except (AttributeError, TypeError):  # older torch
        return torch.cuda.amp.GradScaler(enabled=enabled)
