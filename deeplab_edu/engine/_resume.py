"""Whether and how a checkpoint resumes or starts a run, for :class:`~deeplab_edu.engine.trainer.Trainer`
(trainer.py imports these): which settings a resumed run may change and which it cannot
(:func:`_resume_differences`), the checkpoint ``--resume`` reads (:func:`_checkpoint_to_resume`), the checks
of its counters and the errors for a damaged or diverged one (:func:`_check_counters`, :func:`_damaged`), and
what an ``init_from`` start (DeepLabv3 sec. 4.1's second phase) says of ASPP rates and of classes named or
ordered otherwise (:func:`_init_from_rates_note`, :func:`_renamed_classes_note`; :func:`_reorder_rows` puts
the class-scoring rows in the data's order). Private: moved out of trainer.py unchanged, to keep it readable
in one sitting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..choices import is_whole
from ..data.classes import nfc_names
from ..records import shown_path
from . import checkpoint as ck
from .config import TrainConfig, normalised_settings
from .runs import _shell_path


#: Settings a resumed run takes from its own configuration rather than from the checkpoint (the
#: resume message lists those that changed, first).
_RESUMABLE_SETTINGS = ("iterations", "lr", "weight_decay", "momentum", "warmup_iters", "poly_power", "head_lr_mult",
                       "class_weights")
#: Settings a run cannot change when resumed: they define the network that the checkpoint's weights
#: were trained as (a rate or an output stride changes no weight's shape, so nothing else would
#: notice) or the optimiser whose state it holds (SGD's momentum buffers are no Adam moments).
_FIXED_ON_RESUME = ("model", "backbone", "output_stride", "atrous_rates", "model_kwargs", "aux_loss", "optimizer",
                    "freeze_bn",  # frozen batch norm leaves its parameters out of the optimiser's groups
                    "weight_decay_norm_and_bias")  # off, the optimiser has groups without decay
#: Settings that say how or where a run goes on, not what it trains: not listed when they change.
_UNLISTED_ON_RESUME = ("resume", "out_dir", "progress")



def _resume_differences(saved: Mapping[str, Any], now: Mapping[str, Any], saved_info: Mapping[str, Any],
                       now_info: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """What a resumed run changes: ``(refused, changed)``, each a list of ``"name old -> new"``.

    ``saved``/``now``: the checkpoint's and this run's :meth:`TrainConfig.to_dict`; ``saved_info``/
    ``now_info``: their model descriptions (``model_info``). Refused: a setting of
    :data:`_FIXED_ON_RESUME`, or the ASPP rates the model was built with (``atrous_rates: fit``
    fits them to the crop, so another ``crop_size`` can change them), or an ``init_from`` given to a run
    that started without one. Changed: every other setting
    whose value differs, the resumable ones (:data:`_RESUMABLE_SETTINGS`) first; settings absent
    from an older checkpoint are not compared, but for ``weight_decay_norm_and_bias``, which counts as ``True``
    there (what such a run did).
    """
    # a checkpoint from before the setting existed decayed every parameter (its optimiser has no groups without);
    # the same value spelt otherwise is no change (a tuple of model_kwargs, JSON's list; '6, 12, 18', '6,12,18')
    saved = normalised_settings({"weight_decay_norm_and_bias": True, **saved})
    now = normalised_settings(now)

    def differ(k: str) -> bool:
        return k in saved and k in now and saved[k] != now[k]

    refused = [f"{k} {saved[k]!r} -> {now[k]!r}" for k in _FIXED_ON_RESUME if differ(k)]
    if (changed_start := _pretrained_change(saved, now)) is not None:
        refused.append(changed_start)
    if "init_from" in saved and not saved["init_from"] and now.get("init_from"):  # weights come at a run's start
        refused.append(f"init_from None -> {now['init_from']!r} (--init-from starts a new run from weights; a "
                       "resumed run continues from its own checkpoint)")
    built, building = saved_info.get("atrous_rates"), now_info.get("atrous_rates")
    if built and building and list(built) != list(building) and not differ("atrous_rates"):
        refused.append(f"the ASPP's rates {tuple(built)} -> {tuple(building)} (atrous_rates "
                       f"{now.get('atrous_rates')!r} at crop_size {now.get('crop_size')})")
    rest = [k for k in now if k not in _RESUMABLE_SETTINGS + _FIXED_ON_RESUME + _UNLISTED_ON_RESUME]
    changed = [f"{k} {saved[k]} -> {now[k]}" for k in (*_RESUMABLE_SETTINGS, *rest) if differ(k)]
    return refused, changed


def _pretrained_change(saved: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """``"pretrained_backbone old -> new (...)"`` when a resumed run (``now``) names other starting weights for the
    backbone than its checkpoint's run (``saved``), else ``None`` (also for a checkpoint that does not record it).
    The backbone's weights count at a run's start only: resumed, the checkpoint's replace them, and the run's
    ``config.json`` would record weights it did not start from."""
    if "pretrained_backbone" not in saved or saved["pretrained_backbone"] == now.get("pretrained_backbone"):
        return None
    return (f"pretrained_backbone {saved['pretrained_backbone']!r} -> {now.get('pretrained_backbone')!r} (the "
            "backbone's starting weights count at a run's start; a resumed run continues from its own checkpoint)")


def _checkpoint_to_resume(cfg: TrainConfig) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint of ``cfg.out_dir`` and its contents, for ``cfg.resume`` (``None``: there is none),
    read before the model is built: a ``pretrained_backbone`` the run did not start from is refused before any
    weights are downloaded (:func:`_pretrained_change`).

    Raises:
        ~deeplab_edu.engine.checkpoint.CheckpointMismatchError: ``cfg.pretrained_backbone`` differs from the
            checkpoint's run's, naming the file and the command that continues the run.
        FileNotFoundError, RuntimeError, ValueError: the checkpoint cannot be read
            (:func:`~deeplab_edu.engine.checkpoint.load_checkpoint`).
    """
    path = ck.latest_checkpoint(Path(cfg.out_dir) / "checkpoints")
    if path is None:
        return None
    state = ck.load_checkpoint(path)
    refused = _pretrained_change(state.get("config", {}), cfg.to_dict())
    if refused is not None:
        raise _unchangeable(path, [refused], _own_settings(Path(cfg.out_dir)))
    return path, state


def _own_settings(out: Path) -> str:
    """How a resumed run in ``out`` gets its own settings back: its ``config.json`` with ``--resume``, paths quoted
    for a shell (``""`` for a folder without one)."""
    config = out / "config.json"
    return f" (--config {_shell_path(config)} --resume --out-dir {_shell_path(out)})" if config.is_file() else ""


def _unchangeable(path: Path, refused: list[str], own: str) -> ck.CheckpointMismatchError:
    """The error for a resumed run that changes settings it cannot (``refused``: ``"name old -> new"``), naming the
    checkpoint ``path`` and the two ways on: the run's own settings (``own``: how to give them back, or ``""``),
    or a new run from its weights."""
    return ck.CheckpointMismatchError(
        f"{path} was trained with other settings than this command's, which a resumed run cannot change: "
        f"{'; '.join(refused)}. To continue the run with its own settings, give them back{own}; to train "
        f"on from its weights with these, start a new run in another folder with --init-from {_shell_path(path)}")


#: The counters a training checkpoint holds, which a resumed run continues from.
_COUNTERS = ("iteration", "epoch", "batch_in_epoch")


def _check_counters(state: Mapping[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose counters (:data:`_COUNTERS`) are missing, not whole numbers or negative, naming
    the file and the key, before anything is loaded from it (a trial: a ``KeyError`` traceback, or a run
    "resumed at iteration -5").

    Raises:
        CheckpointMismatchError: naming the file and the counter.
    """
    for key in _COUNTERS:
        value = state.get(key)
        if not is_whole(value) or value < 0:
            raise _damaged(path, f"its {key!r} is {'missing' if key not in state else repr(value)}, not a whole "
                                 "number of at least 0")


def _damaged(path: Path, what: str, *, diverged: bool = False) -> ck.CheckpointMismatchError:
    """The error for a resumed checkpoint one part of which cannot be used (``what``: which and why), naming
    the file and the two ways on: an older checkpoint, or a new run from this one's weights. ``diverged``: its
    weights are not finite, so the way on is the newest older checkpoint whose weights are
    (:func:`~deeplab_edu.engine.checkpoint.last_finite_checkpoint`), or a new run where there is none."""
    if diverged:
        older, newer = ck.last_finite_checkpoint(path.parent)
        folder = shown_path(path.parent)
        way = (f"resume from {shown_path(older)}, the newest checkpoint whose weights are finite: move "
               f"{', '.join(p.name for p in newer)} out of {folder}, then --resume, perhaps with a lower --lr"
               if older is not None else
               f"no checkpoint in {folder} has finite weights: start the run again in a new folder, perhaps with "
               "a lower --lr")
        return ck.CheckpointMismatchError(f"{path}: {what}; {way}")
    return ck.CheckpointMismatchError(
        f"{path}: {what}; the file is damaged or was written by another program. Resume from an older checkpoint "
        f"(move this one out of {shown_path(path.parent)}), or start a new run from its weights with --init-from "
        f"{shown_path(path)}")



def _init_from_rates_note(saved: dict[str, Any], here: dict[str, Any], *, fitted: bool = False) -> str | None:
    """What an ``init_from`` start changes in the ASPP: ``None`` when the branches reach as far in the
    image as in the checkpoint's run (DeepLabv3's phase 2 doubles the rates with the halved output
    stride: the same reach), else a sentence naming both (and, with ``fitted``, that ``atrous_rates: fit``
    follows the crop size)."""
    rates_there, rates_here = saved.get("atrous_rates"), here.get("atrous_rates")
    stride_there = int((saved.get("build_kwargs") or {}).get("output_stride") or 0)
    stride_here = int((here.get("build_kwargs") or {}).get("output_stride") or 0)
    if not (rates_there and rates_here and stride_there and stride_here):
        return None
    reach_there = [int(r) * stride_there for r in rates_there]
    reach_here = [int(r) * stride_here for r in rates_here]
    if reach_there == reach_here:
        return None
    keep = ("; --atrous-rates " + ",".join(str(r // stride_here) for r in reach_there) + " keeps the reach"
            if all(r % stride_here == 0 for r in reach_there) else "")
    return (f"its ASPP was trained at atrous rates {tuple(rates_there)} (output stride {stride_there}: "
            f"{', '.join(map(str, reach_there))} image pixels apart), this run's are {tuple(rates_here)} (output "
            f"stride {stride_here}: {', '.join(map(str, reach_here))} pixels), so the branches' weights now read "
            "other distances" + (f" (atrous_rates 'fit' follows the crop size{keep})" if fitted else
                                 f" ({keep.removeprefix('; ')})" if keep else ""))



def _class_order(theirs: Mapping[str, Any], ours: Mapping[str, Any]) -> list[int] | None:
    """Where the checkpoint's classes (``model_info``) are the data's in another order: for each of the data's
    classes, its index in the checkpoint (names compared in NFC); else ``None`` (the same order, other names,
    repeated names, or either side without names)."""
    before, after = theirs.get("class_names"), ours.get("class_names")
    if before is None or after is None:
        return None
    before, after = nfc_names(before), nfc_names(after)
    if before == after or sorted(before) != sorted(after) or len(set(before)) != len(before):
        return None
    return [before.index(name) for name in after]


def _reorder_rows(weights: Mapping[str, torch.Tensor], keys: Sequence[str],
                  order: Sequence[int]) -> dict[str, torch.Tensor]:
    """``weights`` with the first dimension (classes) of the tensors ``keys`` taken in ``order``: row ``i``
    becomes the checkpoint's row ``order[i]``; the other tensors as they are."""
    return {k: v.index_select(0, torch.tensor(order, device=v.device)) if k in keys else v
            for k, v in weights.items()}


def _renamed_classes_note(theirs: Mapping[str, Any], ours: Mapping[str, Any],
                          reordered: Sequence[str] | None = None) -> str | None:
    """What ``--init-from`` should say when the checkpoint's classes (``model_info``) are as many as the data's
    but named or ordered otherwise (None when the names agree in NFC, or either side has none): the same names
    in another order, with ``reordered`` (the class-scoring tensors): their rows were put in the data's order;
    otherwise its classifiers are loaded as they are, each class's scorer now scoring the data's class at its
    index."""
    before, after = theirs.get("class_names"), ours.get("class_names")
    if before is None or after is None or len(before) != len(after) or nfc_names(before) == nfc_names(after):
        return None
    order = _class_order(theirs, ours)
    if order is not None and reordered:
        moves = [f"{after[i]!s} {j} -> {i}" for i, j in enumerate(order) if i != j]
        return (f"its {len(before)} classes are the data's in another order ({', '.join(moves[:4])}"
                f"{', ...' if len(moves) > 4 else ''}); the class-scoring layers' rows ({', '.join(reordered)}) "
                "were reordered to the data's, so each class keeps its own scorer")
    pairs = [f"{a} -> {b}" for a, b in zip(nfc_names(before), nfc_names(after)) if a != b]
    unknown = (" (the same names in another order, but this model, not made by build_model, does not say which "
               "layers score the classes)") if order is not None else ""
    return (f"its {len(before)} classes are named otherwise than the data's ({', '.join(pairs[:4])}"
            f"{', ...' if len(pairs) > 4 else ''}){unknown}; its classifiers are loaded as they are, each class's "
            "scorer now scoring the data's class at its index (fine-tuning retrains them)")
