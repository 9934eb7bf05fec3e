"""The training and evaluation engine (issue 7): DeepLabv3's recipe, resumable, multi-process.

Modules, one concept each: :mod:`.config` (settings and presets), :mod:`.schedule` (poly learning
rate, head learning rate), :mod:`.losses` (cross-entropy, auxiliary loss, hard-pixel mining),
:mod:`.checkpoint` (atomic, resumable), :mod:`.data` (seeded augmentation, resumable samplers),
:mod:`.distributed` (torchrun, DDP, SyncBatchNorm), :mod:`.trainer` (the loop), :mod:`.runs` (train once,
reuse the run), :mod:`.report` (learning-curve figures), :mod:`.bench` (speed and memory against
torchvision and segmentation_models_pytorch), :mod:`.workers` (DataLoader workers that do not
oversubscribe) and :mod:`.allocator` (reusing freed memory on the CPU).
"""

from .checkpoint import CheckpointMismatchError, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig, list_presets, load_config
from .losses import SegmentationLoss, bootstrapped_ce
from .schedule import PolyLR, param_groups, poly_factor
from .trainer import NonFiniteLossError, Trainer, freeze_batchnorm, seed_everything

__all__ = [
    "CheckpointMismatchError", "ConfigError", "NonFiniteLossError", "PolyLR", "SegmentationLoss", "TrainConfig",
    "Trainer", "bootstrapped_ce", "freeze_batchnorm", "list_presets", "load_config", "load_checkpoint",
    "param_groups", "poly_factor", "save_checkpoint", "seed_everything",
]
