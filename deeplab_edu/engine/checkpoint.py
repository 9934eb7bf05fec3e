"""Checkpoints that survive a crash: atomic writes, the last K kept, exact resume, safe loading.

A checkpoint holds everything needed to continue a run *exactly* where it stopped: the model, the
optimizer (momentum buffers), the grad scaler, the learning-rate scheduler, the iteration, the
sampler's epoch and position, and the random-number generator states of Python, NumPy and torch.

- Writes are atomic: the file is written under a temporary name in the same folder, flushed to disk,
  then renamed over the target with :func:`os.replace`, so a kill at any moment leaves either the
  old file or the new one, never half of one.
- Only the newest ``keep_last`` files ``ckpt_<iteration>.pt`` are kept; ``last.pt`` always names
  the newest (a copy written the same atomic way).
- Loading uses ``torch.load(..., weights_only=True)`` (no arbitrary code runs from a file) and checks
  the checkpoint's model description (name, backbone, number of classes) against the model it is
  loaded into, raising :class:`CheckpointMismatchError` with both descriptions when they differ.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

__all__ = [
    "CheckpointMismatchError", "rng_state", "set_rng_state", "save_atomic", "save_checkpoint",
    "latest_checkpoint", "load_checkpoint", "check_compatible",
]

_NAME = re.compile(r"^ckpt_(\d+)\.pt$")


class CheckpointMismatchError(RuntimeError):
    """The checkpoint was written for another model (architecture, backbone or class count)."""


def rng_state() -> dict[str, Any]:
    """The random states of Python, NumPy and torch (CPU and CUDA), in a ``weights_only``-loadable form."""
    py = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file next to ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def save_checkpoint(state: Mapping[str, Any], folder: str | os.PathLike[str], iteration: int,
                    keep_last: int = 3) -> Path:
    """Write ``ckpt_<iteration>.pt`` and ``last.pt`` atomically into ``folder``; keep the newest ``keep_last``."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be at least 1, got {keep_last}")
    folder = Path(folder)
    path = save_atomic(dict(state), folder / f"ckpt_{iteration:08d}.pt")
    save_atomic(dict(state), folder / "last.pt")
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)))
    for _, old in found[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def latest_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The newest ``ckpt_*.pt`` in ``folder`` (``None`` when there is none)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)))
    return found[-1][1] if found else None


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a folder means its newest checkpoint.

    Raises:
        FileNotFoundError: naming the path when there is no checkpoint there.
        RuntimeError: naming the file when it is not a readable checkpoint.
    """
    p = Path(path)
    if p.is_dir():
        newest = latest_checkpoint(p)
        if newest is None:
            raise FileNotFoundError(f"no checkpoint (ckpt_*.pt) in folder {p}")
        p = newest
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as err:
        raise RuntimeError(f"could not read checkpoint {p}: {type(err).__name__}: {err}") from err


def check_compatible(ckpt: Mapping[str, Any], model_info: Mapping[str, Any], model: torch.nn.Module | None = None,
                     source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointMismatchError` when ``ckpt`` was made for another model.

    Compares the recorded ``model_info`` (``name``, ``backbone``, ``num_classes``) and, when
    ``model`` is given, the parameter names and shapes.
    """
    saved = ckpt.get("model_info", {})
    diffs = [f"{k}: {source} has {saved.get(k)!r}, this run has {model_info.get(k)!r}"
             for k in ("name", "backbone", "num_classes") if k in saved and k in model_info and saved[k] != model_info[k]]
    if not diffs and model is not None and "model" in ckpt:
        mine = model.state_dict()
        theirs = ckpt["model"]
        missing = sorted(set(mine) - set(theirs))
        extra = sorted(set(theirs) - set(mine))
        shapes = [k for k in set(mine) & set(theirs) if tuple(mine[k].shape) != tuple(theirs[k].shape)]
        if missing or extra or shapes:
            diffs.append(
                f"parameters differ ({len(missing)} missing, {len(extra)} unexpected, {len(shapes)} with other shapes"
                + (f", e.g. {sorted(shapes)[0]}: {tuple(theirs[sorted(shapes)[0]].shape)} vs "
                   f"{tuple(mine[sorted(shapes)[0]].shape)}" if shapes else "") + ")"
            )
    if diffs:
        raise CheckpointMismatchError(
            f"{source} was written for another model: " + "; ".join(diffs)
            + ". Use a checkpoint of the same model, backbone and number of classes, or start a new run."
        )
