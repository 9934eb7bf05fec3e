"""Train a run once, reuse it afterwards: what the notebooks call instead of training every time.

:func:`train_or_load` looks for the finished checkpoint of a run in its output folder. When it is
there the model is rebuilt from it and nothing is trained; when the run is missing (or was
interrupted) it is trained (resuming where it stopped). A notebook therefore says "skipping training:
found ..." on a second execution, and a teacher can train once before class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from .checkpoint import load_checkpoint
from .config import TrainConfig, load_config
from ..records import shown_path  # re-exported: where notebooks have always imported it from

__all__ = ["train_or_load", "shown_path", "BOOKKEEPING"]

#: Settings that say where and how a run is logged or how memory is laid out and managed, not what it
#: learns: a finished run is reused even when these differ (the depthwise recomputation gives the same
#: numbers; channels_last the same up to the rounding of another summation order).
BOOKKEEPING = frozenset({"out_dir", "resume", "progress", "keep_last", "ckpt_every", "log_every",
                         "num_workers", "tensorboard", "recompute_depthwise", "keep_freed_memory",
                         "channels_last"})


def _learning_settings(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in BOOKKEEPING}


def train_or_load(preset: str | None = None, *, out_dir: str | Path, verbose: bool = True,
                  lock_timeout_s: float = 3600.0, **overrides: Any) -> tuple[nn.Module, list[dict[str, Any]], TrainConfig]:
    """Return ``(model in eval mode, history, config)`` of the run in ``out_dir``, training it if needed.

    Two processes that ask for the same run (two notebooks executed side by side, a notebook and
    ``benchmarks/findings.py``) do not train it twice or write into each other's checkpoints: the
    second waits for the first on a lock file in ``out_dir`` (released when the first ends, even
    if it is killed), then reuses the finished run.

    Args:
        preset: a preset name or YAML file (see :func:`~deeplab_edu.engine.config.list_presets`).
        out_dir: the run's folder (checkpoints, metrics.csv, metrics.json).
        lock_timeout_s: how long to wait for another process that trains the same run.
        **overrides: settings that replace the preset's.

    Raises:
        ValueError: ``out_dir`` holds a run with other learning settings.
        TimeoutError: another process kept the run's lock longer than ``lock_timeout_s``.
    """
    from filelock import FileLock, Timeout

    cfg = load_config(preset, {**overrides, "out_dir": str(out_dir)})
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(Path(out_dir) / "train.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if verbose:
            print(f"waiting for another process that trains {shown_path(out_dir)} (up to {lock_timeout_s:.0f} s)")
        try:
            lock.acquire(timeout=lock_timeout_s)
        except Timeout:
            raise TimeoutError(f"another process has been training {shown_path(out_dir)} for more than "
                               f"{lock_timeout_s:.0f} s (lock {shown_path(lock.lock_file)}); wait for it or stop it") from None
    try:
        return _train_or_load(cfg, Path(out_dir), verbose)
    finally:
        lock.release()


def _train_or_load(cfg: TrainConfig, out_dir: Path, verbose: bool) -> tuple[nn.Module, list[dict[str, Any]], TrainConfig]:
    from ..inference import load_model
    from .trainer import Trainer

    last = Path(out_dir) / "checkpoints" / "last.pt"
    if last.is_file():
        state = load_checkpoint(last)
        same = _learning_settings(state.get("config", {})) == _learning_settings(cfg.to_dict())
        if same and int(state.get("iteration", -1)) >= cfg.iterations:
            if verbose:
                print(f"skipping training: found the finished run {shown_path(last)} ({cfg.iterations} iterations)")
            model, _ = load_model(last)
            return model, list(state.get("history", [])), cfg
        if not same:
            differ = sorted(k for k in set(_learning_settings(state.get("config", {}))) | set(_learning_settings(cfg.to_dict()))
                            if state.get("config", {}).get(k) != cfg.to_dict().get(k))
            raise ValueError(f"{shown_path(out_dir)} holds a run with other settings ({', '.join(differ)}); "
                             "delete the folder or choose another out_dir")
    cfg.resume = last.is_file()  # an interrupted run continues where it stopped; a new one starts fresh
    trainer = Trainer(cfg)
    result = trainer.fit()
    return trainer.model.eval(), result["history"], cfg  # fit() wrote metrics.json
