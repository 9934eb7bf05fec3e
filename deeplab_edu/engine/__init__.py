"""The training and evaluation engine: DeepLabv3's recipe, resumable, multi-process.

Modules, one concept each: :mod:`.config` (settings and presets), :mod:`.schedule` (poly learning
rate, head learning rate), :mod:`.losses` (cross-entropy, auxiliary loss, hard-pixel mining),
:mod:`.checkpoint` (atomic, resumable), :mod:`.data` (seeded augmentation, resumable samplers),
:mod:`.distributed` (torchrun, DDP, SyncBatchNorm), :mod:`.trainer` (the loop), :mod:`.runs` (train once,
reuse the run), :mod:`.report` (learning-curve figures), :mod:`.bench` (speed and memory against
torchvision and segmentation_models_pytorch), :mod:`.workers` (DataLoader workers that do not
oversubscribe) and :mod:`.allocator` (reusing freed memory on the CPU).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on first use (below), so that ``engine.config`` alone does not import torch
    from .checkpoint import CheckpointMismatchError, load_checkpoint, save_checkpoint
    from .config import ConfigError, TrainConfig, list_presets, load_config
    from .losses import SegmentationLoss, bootstrapped_ce
    from .schedule import PolyLR, param_groups, poly_factor
    from .trainer import NonFiniteLossError, Trainer, freeze_batchnorm, seed_everything, set_bn_momentum

#: Each public name and the module that defines it.
_MODULE_OF = {
    "CheckpointMismatchError": "checkpoint", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "ConfigError": "config", "TrainConfig": "config", "list_presets": "config", "load_config": "config",
    "SegmentationLoss": "losses", "bootstrapped_ce": "losses",
    "PolyLR": "schedule", "param_groups": "schedule", "poly_factor": "schedule",
    "NonFiniteLossError": "trainer", "Trainer": "trainer", "freeze_batchnorm": "trainer", "seed_everything": "trainer",
    "set_bn_momentum": "trainer",
}

__all__ = [
    "CheckpointMismatchError", "ConfigError", "NonFiniteLossError", "PolyLR", "SegmentationLoss", "TrainConfig",
    "Trainer", "bootstrapped_ce", "freeze_batchnorm", "list_presets", "load_config", "load_checkpoint",
    "param_groups", "poly_factor", "save_checkpoint", "seed_everything", "set_bn_momentum",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module when the name is first used (PEP 562): the command line's
    ``--help`` and :mod:`.config` stay free of torch.

    Raises:
        AttributeError: ``name`` is not a public name of the engine.
    """
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))
