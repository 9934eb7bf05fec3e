"""Checkpoints that survive a crash: atomic writes, the last K kept, exact resume, safe loading.

A checkpoint holds everything needed to continue a run *exactly* where it stopped: the model, the
optimizer (momentum buffers), the grad scaler, the learning-rate scheduler, the iteration, the
sampler's epoch and position, and the random-number generator states of Python, NumPy and torch.

- Writes are atomic: the file is written under a temporary name in the same folder, flushed to disk,
  then renamed over the target with :func:`os.replace`, so a kill at any moment leaves either the
  old file or the new one, never half of one.
- Only the newest ``keep_last`` files ``ckpt_<iteration>.pt`` are kept; ``last.pt`` always names
  the newest (a copy written the same atomic way). A Ctrl-C while they are written waits until
  both are (:func:`interrupts_deferred`), so ``last.pt`` never lags behind the newest ``ckpt_*.pt``.
- Whatever is written can be read back by that loader: :func:`weights_only_safe` converts NumPy
  scalars to Python numbers, NumPy arrays to tensors, paths to strings and other mappings to
  ``dict`` (recursively), and refuses anything else ``weights_only=True`` cannot read, naming its
  key, *before* a file is written.
- Loading uses ``torch.load(..., weights_only=True)`` (no arbitrary code runs from a file);
  :func:`check_compatible` then checks the checkpoint's model description (name, backbone, number of
  classes) against the model it is to be loaded into, raising :class:`CheckpointMismatchError` with
  both descriptions when they differ (the Trainer does so on resume and ``init_from``).
- A run started from another checkpoint (``init_from``, DeepLabv3's phase 2) keeps that file's
  SHA-256 (``init_from_sha256``); :func:`check_init_from` refuses to continue or reuse it once the
  file has changed (its phase 1 was retrained), instead of mixing two phase 1s in one run.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import random
import re
import shutil
import signal
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping, cast

import numpy as np
import torch

from ..atomic import atomic_path
from ..models.pretrained import ONNX_NOT_TORCH, checksum_failure, load_failure_reason, torchvision_deeplabv3_note
from ..records import shown_path

__all__ = [
    "CheckpointMismatchError", "UnreadableCheckpointError", "rng_state", "set_rng_state", "save_atomic", "save_checkpoint", "interrupts_deferred",
    "latest_checkpoint", "names_a_run_checkpoint", "load_checkpoint", "check_compatible", "load_except_classifier", "weights_only_safe",
    "class_scoring_keys", "save_model_file", "TRAINING_STATE_KEYS", "OPTIONAL_TRAINING_STATE_KEYS",
    "checkpoint_file", "file_sha256", "init_from_sha256", "InitFromChangedError", "check_init_from", "repair_last",
    "run_checkpoint", "check_finite_weights", "non_finite_tensor", "last_finite_checkpoint",
    "init_from_advice", "checkpoint_iteration",
]

_NAME = re.compile(r"^ckpt_(\d+)\.pt$")


#: What a mismatching ``init_from`` checkpoint's message advises.
INIT_FROM_ADVICE = ("Start from a checkpoint of the same model and backbone (its number of classes may differ: the "
                    "classifiers then start fresh).")


def init_from_advice(weights: Mapping[str, Any], path: str | os.PathLike[str]) -> str:
    """What a mismatching ``init_from`` checkpoint's message advises: :data:`INIT_FROM_ADVICE`, or, for
    torchvision DeepLabv3 weights, the converter that makes this package's model of them."""
    note = torchvision_deeplabv3_note(weights, path)
    return note[0].upper() + note[1:] + "." if note else INIT_FROM_ADVICE


class UnreadableCheckpointError(RuntimeError):
    """A file that is not a readable checkpoint: truncated, damaged, of another kind, or holding Python objects
    ``weights_only=True`` refuses (the message names the file and what to do). Its own class, so that the
    command line says it as an error of the input, not as a bug (a trial)."""


class CheckpointMismatchError(RuntimeError):
    """The checkpoint was written for another model (architecture, backbone or class count)."""


class InitFromChangedError(RuntimeError):
    """A run started from an ``init_from`` checkpoint whose file has changed since (retrained or replaced)."""


def rng_state(all_devices: bool = True) -> dict[str, Any]:
    """The random states of Python, NumPy and torch (CPU and CUDA), in a ``weights_only``-loadable form.

    ``all_devices``: every CUDA device's state (``"cuda"``, a single process's view); ``False``: only the
    current device's (``"cuda_device"``), what one process of a multi-process run draws dropout from, and
    only where this process has started CUDA (a CPU run on a machine with GPUs opens no CUDA context).
    """
    py = random.getstate()
    np_state = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())  # the legacy tuple
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if all_devices and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    elif not all_devices and torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_device"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (a ``"cuda_device"`` state to the current CUDA device: call
    ``torch.cuda.set_device`` first)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():  # those of the devices this process sees (fewer: the rest)
        torch.cuda.set_rng_state_all(list(state["cuda"])[: torch.cuda.device_count()])
    if "cuda_device" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_device"])


#: Leaf types ``torch.load(weights_only=True)`` reads back as they are (besides tensors).
_SAFE_LEAVES = (type(None), bool, int, float, complex, str, bytes, bytearray, torch.Size, torch.dtype, torch.device)


def weights_only_safe(obj: Any, name: str = "state") -> Any:
    """``obj`` in a form that ``torch.load(..., weights_only=True)`` reads back, converted recursively.

    ======================================  ==========================================
    value                                   written as
    ======================================  ==========================================
    NumPy scalar (``np.float64(0.5)``)      Python number (``.item()``)
    NumPy array (numeric)                   ``torch.Tensor`` of the same dtype
    ``os.PathLike`` (``pathlib.Path``)      ``str``
    other mapping (``defaultdict``)         ``dict``
    tensor subclass                         plain ``torch.Tensor``
    dict, OrderedDict, list, tuple, set     the same, with converted items (and keys)
    ======================================  ==========================================

    Containers whose items need no conversion are returned as they are (a model's ``state_dict``
    keeps its ``_metadata``). ``name`` names ``obj`` in errors.

    Raises:
        TypeError: naming the key (e.g. ``state['history'][3]['iou']``) of a value that cannot be
            converted (an arbitrary object, a NumPy array of objects or strings, a named tuple...).
    """
    if type(obj) in _SAFE_LEAVES or type(obj) in (torch.Tensor, torch.nn.Parameter):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.as_subclass(torch.Tensor)
    if isinstance(obj, np.generic):
        value = obj.item()
        if type(value) not in _SAFE_LEAVES:
            raise TypeError(f"{name} is a NumPy {obj.dtype} scalar; torch.load(weights_only=True) cannot read it back")
        return value
    if isinstance(obj, np.ndarray):
        try:
            return torch.from_numpy(np.ascontiguousarray(obj))
        except TypeError:
            raise TypeError(
                f"{name} is a NumPy array of dtype {obj.dtype}, which is neither a tensor dtype nor readable by "
                "torch.load(weights_only=True); store numbers, or a list of strings"
            ) from None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Mapping):
        items = [(weights_only_safe(k, f"{name} key {k!r}"), weights_only_safe(v, f"{name}[{k!r}]"))
                 for k, v in obj.items()]
        if type(obj) in (dict, collections.OrderedDict) and all(
            k2 is k and v2 is v for (k2, v2), (k, v) in zip(items, obj.items())
        ):
            return obj
        return (collections.OrderedDict if type(obj) is collections.OrderedDict else dict)(items)
    if type(obj) in (list, tuple, set):
        seq = list(obj)
        new = [weights_only_safe(v, f"{name}[{i}]") for i, v in enumerate(seq)]
        if all(a is b for a, b in zip(new, seq)):
            return obj
        return type(obj)(new)
    raise TypeError(
        f"{name} is a {type(obj).__module__}.{type(obj).__qualname__}, which torch.load(weights_only=True) cannot "
        "read back; store plain numbers, strings, lists, dicts or tensors in a checkpoint"
    )


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file next to ``path``, fsync, then rename over ``path``.

    ``obj`` goes through :func:`weights_only_safe` first (a ``TypeError`` naming the key is raised
    before anything is written); a failed write leaves no temporary file behind.
    """
    obj = weights_only_safe(obj)
    with atomic_path(path, fsync=True) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def save_checkpoint(state: Mapping[str, Any], folder: str | os.PathLike[str], iteration: int,
                    keep_last: int = 3) -> Path:
    """Write ``ckpt_<iteration>.pt`` and ``last.pt`` atomically into ``folder``; keep the newest ``keep_last``.

    ``last.pt`` is a hard link to the new checkpoint where the file system has them (one write, not
    two: a ResNet-101 checkpoint with its optimiser state is hundreds of MB), and a copy written
    atomically where it does not. Either way it is replaced in one rename, and deleting older
    checkpoints never touches it.

    ``state`` is converted by :func:`weights_only_safe` (NumPy values, paths), so that
    :func:`load_checkpoint` reads back whatever is written here; a value it cannot convert raises
    ``TypeError`` naming its key, before any file is written.

    Raises:
        ValueError: ``keep_last`` is below 1.
        TypeError: a value of ``state`` cannot be converted by :func:`weights_only_safe` (before any file is
            written).
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be at least 1, got {keep_last}")
    folder = Path(folder)
    safe = weights_only_safe(dict(state))
    with interrupts_deferred():  # a second Ctrl-C must not leave last.pt older than the newest ckpt_*
        path = save_atomic(safe, folder / f"ckpt_{iteration:08d}.pt")
        _link_or_save(path, safe, folder / "last.pt")
        for old in _checkpoints(folder)[:-keep_last]:
            old.unlink(missing_ok=True)
    return path


def _link_or_save(checkpoint: Path, state: Mapping[str, Any], last: Path) -> None:
    """Make ``last`` the same file as ``checkpoint`` (a hard link, renamed into place), or, where the
    file system has no hard links, write ``state`` to it atomically."""
    try:
        with atomic_path(last) as tmp:
            tmp.unlink(missing_ok=True)
            os.link(checkpoint, tmp)
    except OSError:  # no hard links here (FAT, some network shares): a second write
        save_atomic(state, last)


def run_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The file that holds the run's state in its checkpoints ``folder``: ``last.pt``, unless the newest
    ``ckpt_*.pt`` is not it and was written after it (a process died between writing that checkpoint and linking
    ``last.pt``, :func:`save_checkpoint`): then that checkpoint; the newest ``ckpt_*.pt`` where there is no
    ``last.pt``; ``None`` when there is neither. (A ``last.pt`` rewritten by hand after the newest checkpoint is
    the run's.)"""
    found, last = _checkpoints(Path(folder)), Path(folder) / "last.pt"
    if not found:
        return last if last.is_file() else None
    newest = found[-1]
    if last.is_file() and (os.path.samefile(newest, last) or last.stat().st_mtime_ns >= newest.stat().st_mtime_ns):
        return last
    return newest


def repair_last(folder: str | os.PathLike[str]) -> bool:
    """Make ``folder``'s ``last.pt`` its newest ``ckpt_*.pt`` again where a process died between writing that
    checkpoint and linking ``last.pt`` (:func:`run_checkpoint` names that one): ``last.pt`` then held an older
    iteration for ever. Returns whether ``last.pt`` was relinked (or copied, without hard links).

    Raises:
        OSError: ``last.pt`` cannot be written (a read-only folder).
    """
    current, last = run_checkpoint(folder), Path(folder) / "last.pt"
    if current is None or current == last:
        return False
    with interrupts_deferred():
        try:
            with atomic_path(last) as tmp:
                tmp.unlink(missing_ok=True)
                os.link(current, tmp)
        except OSError:  # no hard links here: a copy
            with atomic_path(last, fsync=True) as tmp:
                shutil.copyfile(current, tmp)
    return True


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM until the block ends, then hand the first one held to the handler
    that was installed for it.

    For short steps that must not be cut in two (a checkpoint and ``last.pt``). In a thread other
    than the main one (where signals cannot be handled) the block simply runs.

    Raises:
        KeyboardInterrupt: at the end of the block, for a Ctrl-C held during it, when the handler that
            was installed raises it (Python's default handler does).
        SystemExit: for a SIGTERM held during it when no Python handler was installed for it (its
            default ends the process; exit status 143, as the signal would give).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum)) for sig in signals}
    try:
        yield
    finally:  # None: a handler installed outside Python; Python's own is the nearest
        for sig, handler in previous.items():
            default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            signal.signal(sig, handler if handler is not None else default)
    if caught:
        held = signal.Signals(caught[0])
        handler = previous[held]
        if callable(handler):
            handler(held, None)
        elif handler == signal.SIG_DFL:
            if held == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + held)


def checkpoint_iteration(path: str | os.PathLike[str]) -> int | None:
    """The iteration a run's checkpoint was written after, read from its name (``ckpt_<iteration>.pt``, as
    :func:`save_checkpoint` names it); ``None`` for ``last.pt`` or any other name."""
    match = _NAME.match(Path(path).name)
    return None if match is None else int(match.group(1))


def _checkpoints(folder: Path) -> list[Path]:
    """The ``ckpt_*.pt`` files in ``folder``, oldest iteration first (none if it is not a folder)."""
    if not folder.is_dir():
        return []
    found = sorted((i, p) for p in folder.iterdir() if (i := checkpoint_iteration(p)) is not None)
    return [p for _, p in found]


def last_finite_checkpoint(folder: str | os.PathLike[str]) -> tuple[Path | None, list[Path]]:
    """The newest checkpoint of ``folder`` (as :func:`latest_checkpoint` orders them) whose weights and buffers are
    all finite (:func:`non_finite_tensor`), and the newer ones whose are not, newest first: a run that diverged
    before checkpoints were checked as they were written (an audit: "the last good checkpoint" held 22 infinite
    tensors). ``(None, [...])`` where none is finite. The files are read from the newest until a finite one; a file
    that cannot be read is given as it is (loading it names its problem)."""
    folder = Path(folder)
    last = folder / "last.pt"
    found = _checkpoints(folder)[::-1] or ([last] if last.is_file() else [])
    newer: list[Path] = []
    for path in found:
        try:
            weights = load_checkpoint(path).get("model")
        except (OSError, RuntimeError, ValueError):
            return path, newer
        if non_finite_tensor(weights) is None:
            return path, newer
        newer.append(path)
    return None, newer


def names_a_run_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is named as a run's training checkpoints are (``ckpt_<iteration>.pt``,
    ``last.pt``) in a folder that holds such checkpoints: a file there is what ``--resume`` reads."""
    p = Path(path)
    if p.name != "last.pt" and _NAME.match(p.name) is None:
        return False
    # a ckpt_N.pt beside it, or a run's checkpoints folder holding a lone last.pt (a model file named last.pt
    # elsewhere is no run's: a review found its own name made it one)
    return bool(_checkpoints(p.parent)) or (p.parent.name == "checkpoints" and latest_checkpoint(p.parent) is not None)


def latest_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The newest ``ckpt_*.pt`` in ``folder``; where there is none, its ``last.pt`` (a copy of the newest, which a
    folder may hold alone: copied without the rest, it was taken for an empty folder and overwritten, a trial
    found); ``None`` when there is neither."""
    found = _checkpoints(Path(folder))
    if found:
        return found[-1]
    last = Path(folder) / "last.pt"
    return last if last.is_file() else None


def checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or for a folder its newest ``ckpt_*.pt`` (what :func:`load_checkpoint` reads);
    a run's folder (one with a ``checkpoints/`` folder and no ``ckpt_*.pt`` of its own) means that folder;
    a folder without any ``ckpt_*.pt`` gives its ``last.pt`` (:func:`latest_checkpoint`). A leading ``~`` is
    the home folder.

    Raises:
        FileNotFoundError: naming the path when there is no checkpoint there.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        own = _checkpoints(p)
        newest = own[-1] if own else None
        if newest is None and (p / "checkpoints").is_dir():  # deeplab-edu eval --checkpoint runs/mine
            p = p / "checkpoints"  # (before a stray last.pt beside it: a review)
        if newest is None:
            newest = latest_checkpoint(p)
        if newest is None:
            raise FileNotFoundError(f"no checkpoint (ckpt_*.pt or last.pt) in folder {p}")
        p = newest
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    return p


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a folder means its newest checkpoint.

    Raises:
        FileNotFoundError: naming the path when there is no checkpoint there.
        UnreadableCheckpointError: (a ``RuntimeError``) naming the file when it is not a readable checkpoint
            (also when its bytes fail the CRC-32 checksums its zip archive stores:
            :func:`~deeplab_edu.models.pretrained.checksum_failure`).
        ValueError: naming the file when it reads, but is not a deeplab-edu checkpoint (a plain
            ``state_dict``, a tensor, a list, or a dictionary whose ``model``, ``config`` or
            ``model_info`` is not one).
    """
    p = checkpoint_file(path)
    damaged = None
    try:
        if damaged := checksum_failure(p):  # torch.load would read flipped bytes as weights
            raise UnreadableCheckpointError(damaged)
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as err:
        reason = damaged or load_failure_reason(p, err)
        if not damaged and p.suffix.lower() in (".json", ".yaml", ".yml", ".csv"):  # a census: "copy it again"
            raise UnreadableCheckpointError(
                f"could not read checkpoint {p}: it is a run's settings or metrics file (config.json, metrics.csv), "
                f"not a checkpoint; pass the checkpoint (a .pt file in the run's checkpoints/ folder) or the run's "
                f"folder ({p.parent}), whose newest checkpoint is read") from None
        if reason.startswith("it holds a Python object"):  # whole, not damaged: refused, as it must be
            raise UnreadableCheckpointError(f"could not read checkpoint {p}: {reason}") from None
        if reason == ONNX_NOT_TORCH:  # whole, and of another kind: a trial gave predict its ONNX export
            raise UnreadableCheckpointError(f"could not read checkpoint {p}: {reason}. Give the model file export --out "
                               "wrote (.pt), or a run's checkpoint") from None
        # beside a damaged ckpt_N.pt, the older ones; beside a damaged last.pt (a copy), every ckpt_N.pt (a trial)
        older = [c for c in _checkpoints(p.parent) if c != p] if _NAME.match(p.name) or p.name == "last.pt" else []
        hint = (f"; checkpoints are written atomically, so this one was damaged or replaced afterwards: move it "
                f"away, and the run's folder then offers {older[-1].name} (to --resume, eval or predict)" if older else
                "; restore it from a copy, or train again" if damaged else
                "" if reason.endswith("copy it again") else  # the reason says it (a trial read it twice)
                "; it is truncated, damaged or not a PyTorch checkpoint")
        raise UnreadableCheckpointError(f"could not read checkpoint {p}: {reason}{hint}") from None
    _check_structure(state, p)
    return state


def _check_structure(state: Any, path: Path) -> None:
    """Raise :class:`ValueError` naming ``path`` unless ``state`` is laid out as this package writes
    checkpoints (and exported models): a dict whose ``model`` maps names to tensors, and whose
    ``config`` and ``model_info``, where present, are dicts."""
    what = None
    if not isinstance(state, dict):
        what = f"a {type(state).__name__}, not a dictionary"
    elif "model" not in state:
        plain = state and all(isinstance(v, torch.Tensor) for v in state.values())
        what = ("a plain state_dict (tensors by name), without the configuration a run needs" if plain
                else "no 'model' weights")
    elif not isinstance(state["model"], dict) or not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        what = "a 'model' entry that is not a state_dict of tensors"
    else:
        odd = [k for k in ("config", "model_info") if k in state and not isinstance(state[k], dict)]
        what = f"a '{odd[0]}' entry that is not a dictionary" if odd else None
    if what is not None and isinstance(state, dict) and (note := torchvision_deeplabv3_note(state, path)):
        raise ValueError(f"{path} is not a deeplab-edu checkpoint: {note}")  # a plain state dict of torchvision's
    if what is not None:
        raise ValueError(f"{path} is not a deeplab-edu checkpoint: it holds {what}. Checkpoints are written by "
                         "'deeplab-edu train' (runs/<name>/checkpoints) or 'deeplab-edu export'; a backbone's "
                         "ImageNet weights go to --pretrained-backbone instead")


def load_except_classifier(model: torch.nn.Module, ckpt: Mapping[str, Any], model_info: Mapping[str, Any],
                           source: str = "checkpoint") -> list[str]:
    """Load ``ckpt``'s weights into ``model`` (described by ``model_info``, as for
    :func:`check_compatible`), which has another number of classes: fine-tuning a model trained on
    one data set to the classes of another. Every tensor of the same name and shape is loaded; the
    class-scoring layers, whose first dimension is the checkpoint's number of classes, keep
    ``model``'s fresh initialisation. Returns the names of the tensors not loaded.

    Raises:
        CheckpointMismatchError: the checkpoint is of another model or backbone, or a tensor other
            than a classifier's differs (naming it).
        KeyError: ``ckpt`` holds no ``"model"`` weights.
    """
    classes = ckpt.get("model_info", {}).get("num_classes")
    check_compatible(ckpt, {**model_info, "num_classes": classes}, source=source,  # model and backbone
                     advice=INIT_FROM_ADVICE)
    theirs, mine = ckpt["model"], model.state_dict()
    fresh = sorted(k for k in mine if k not in theirs or tuple(theirs[k].shape) != tuple(mine[k].shape))
    odd = [k for k in fresh if k not in theirs or tuple(theirs[k].shape[:1]) != (classes,)]
    odd += sorted(set(theirs) - set(mine))
    if odd:
        raise CheckpointMismatchError(f"{source} was written for another model: {odd[0]} differs beyond its "
                                      f"classes ({len(odd)} such tensors); use a checkpoint of the same model "
                                      "and backbone")
    model.load_state_dict({k: v for k, v in theirs.items() if k not in fresh}, strict=False)
    return fresh


def class_scoring_keys(model: torch.nn.Module, num_classes: int) -> list[str] | None:
    """The ``state_dict`` keys of ``model``'s class-scoring tensors (the classifier's weight and bias, the
    auxiliary classifier's, v3+'s decoder's last conv), each ``(num_classes, ...)``: those whose shape differs
    in the same model built with one class more, on the ``"meta"`` device (no memory, no weights).

    ``None`` where that cannot be told: a model :func:`~deeplab_edu.models.build_model` did not make (it has
    no ``build_kwargs`` to rebuild it from), one changed since (other tensors), or one whose class count
    shows in a tensor otherwise than as its first dimension.
    """
    built = getattr(model, "build_kwargs", None)
    if not built:
        return None
    from ..models import build_model

    try:
        with torch.device("meta"):
            other = build_model(num_classes=num_classes + 1, **built).state_dict()
    except (ValueError, TypeError):  # build_kwargs edited by hand
        return None
    mine = model.state_dict()
    if set(mine) != set(other):
        return None
    keys = sorted(k for k in mine if tuple(mine[k].shape) != tuple(other[k].shape))
    rows = [(tuple(mine[k].shape), tuple(other[k].shape)) for k in keys]
    if not keys or any(a[:1] != (num_classes,) or b != (num_classes + 1, *a[1:]) for a, b in rows):
        return None
    return keys


def check_compatible(ckpt: Mapping[str, Any], model_info: Mapping[str, Any], model: torch.nn.Module | None = None,
                     source: str = "checkpoint", advice: str | None = None) -> None:
    """Raise :class:`CheckpointMismatchError` when ``ckpt`` was made for another model.

    Compares the recorded ``model_info`` (``name``, ``backbone``, ``num_classes``) and, when
    ``model`` is given, the parameter names and shapes. The message names the checkpoint's
    ``model_class`` (a model passed to its Trainer) where it is not this one's. ``advice`` ends the message
    (what to do instead); by default: use a checkpoint of the same model, or start a new run.

    Raises:
        CheckpointMismatchError: a recorded name, backbone or class count differs, or (with ``model``)
            a parameter is missing, unexpected or of another shape.
    """
    saved = ckpt.get("model_info", {})
    diffs = [f"{k} {saved.get(k)!r} there, {model_info.get(k)!r} here"
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
    theirs_class, mine_class = saved.get("model_class"), model_info.get("model_class")  # a script's own model
    if diffs and theirs_class and theirs_class != mine_class:  # the configuration's model/backbone do not name it
        here = mine_class or f"{model_info.get('name')} / {model_info.get('backbone')}"
        diffs.append(f"model {theirs_class} there (passed to its Trainer), {here} here")
    if diffs:
        raise CheckpointMismatchError(
            f"{source} was written for another model: " + "; ".join(diffs) + ". "
            + (advice or "Use a checkpoint of the same model, backbone and number of classes, or start a new run.")
        )


#: What only resuming a run needs: the optimiser, the schedule, the loss scaler and the random streams
#: (``process_rng``: every process's, in rank order, of a multi-process run).
TRAINING_STATE_KEYS = ("optimizer", "scheduler", "scaler", "rng", "process_rng")
#: Those of :data:`TRAINING_STATE_KEYS` a checkpoint may lack: the scaler's state without mixed precision,
#: ``process_rng`` in a single-process run (and in checkpoints written before it).
OPTIONAL_TRAINING_STATE_KEYS = ("scaler", "process_rng")


def save_model_file(state: Mapping[str, Any], path: str | os.PathLike[str], source: str = "checkpoint") -> Path:
    """Write ``state``, a training checkpoint as :func:`load_checkpoint` returns it, without what only
    resuming needs (:data:`TRAINING_STATE_KEYS`): the weights with the configuration, model description,
    class names and provenance, a third of the file for AdamW. It loads, like the checkpoint, with
    ``weights_only=True`` (:func:`load_checkpoint`), and serves ``deeplab-edu eval``, ``predict`` and
    ``--init-from``, :func:`deeplab_edu.inference.load_run`; not ``--resume``.

    Raises:
        ValueError: ``state`` holds no ``model`` weights, or no ``config`` or ``model_info`` (what ``eval`` and
            ``predict`` build the model from: a trial's export of a plain state dict wrote a file they refused);
            ``source`` names it in the message.
    """
    if "model" not in state:
        raise ValueError(f"{source} holds no model weights: not a deeplab-edu training checkpoint")
    lacking = [k for k in ("config", "model_info") if not state.get(k)]
    if lacking:
        raise ValueError(f"{source} holds no {' or '.join(lacking)}, from which eval and predict build the model: "
                         "not a deeplab-edu training checkpoint (a plain state dict?), so a model file of it would "
                         "load nowhere. Train from it with --init-from instead")
    return save_atomic({k: v for k, v in state.items() if k not in TRAINING_STATE_KEYS}, path)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits (a checkpoint of tens of MB: well under a second).

    Raises:
        OSError: the file cannot be read (``FileNotFoundError`` when it is missing).
    """
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def init_from_sha256(init_from: str | os.PathLike[str] | None) -> str | None:
    """:func:`file_sha256` of the checkpoint ``init_from`` names (:func:`checkpoint_file`; a folder: its
    newest), or ``None`` when there is no ``init_from`` or no checkpoint there."""
    if not init_from:
        return None
    try:
        return file_sha256(checkpoint_file(init_from))
    except FileNotFoundError:
        return None


def check_init_from(ckpt: Mapping[str, Any], init_from: str | os.PathLike[str] | None, *, source: str,
                    current: str | None = None) -> None:
    """Check that ``init_from`` is still the file the run in ``ckpt`` started from.

    A checkpoint keeps the SHA-256 of its run's ``init_from`` file (``init_from_sha256``; for a
    folder, of its newest checkpoint: :func:`checkpoint_file`). When the file is there and its
    bytes differ (its run was retrained, or another file was copied over it), the run belongs to the
    old weights: continuing or reusing it would present a phase 2 that did not start from the
    phase 1 beside it. Nothing is checked when the checkpoint predates this key,
    when the run has no ``init_from``, or when the file is gone (the run is still a run).

    Args:
        ckpt: a loaded checkpoint (:func:`load_checkpoint`).
        init_from: the run's ``init_from`` setting, or ``None``.
        source: what ``ckpt`` is, for the message (e.g. its path).
        current: :func:`init_from_sha256` of ``init_from`` when the caller has it already (the file
            is then not read again).

    Raises:
        InitFromChangedError: the file's SHA-256 differs from the recorded one.
    """
    recorded = ckpt.get("init_from_sha256")
    if not init_from or not recorded:
        return
    now = current if current is not None else init_from_sha256(init_from)
    if now is not None and now != recorded:
        raise InitFromChangedError(
            f"{source} was started from another {shown_path(init_from)} than the one there now (the file changed since: "
            "its run was retrained or the file replaced); delete this run's folder to train it again from the "
            "new file, or put the old file back")


def check_finite_weights(weights: Mapping[str, Any], source: str | os.PathLike[str]) -> None:
    """Refuse model weights that hold NaN or infinite values, naming the first such tensor and ``source`` (the
    file): a NaN model scored 20.6 % mIoU, every pixel its first class, and as ``--init-from`` it was blamed on
    the learning rate (a trial).

    Raises:
        ValueError: a floating-point tensor of ``weights`` holds a NaN or an infinite value.
    """
    name = non_finite_tensor(weights)
    if name is not None:
        raise ValueError(f"{source}: its weights hold NaN or infinite values (e.g. {name}): the run that wrote "
                         "them diverged, or the file is damaged; use an earlier checkpoint of the run")


def non_finite_tensor(weights: Any) -> str | None:
    """The name of the first floating-point tensor of ``weights`` (a state dict: parameters and buffers, such as
    batch norm's running statistics) that holds a NaN or an infinite value; ``None`` where all are finite, or
    where ``weights`` is no mapping. One pass over the tensors (on a GPU, one read back per tensor)."""
    if not isinstance(weights, Mapping):  # not a state dict at all: the structure checks name that
        return None
    for name, value in weights.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return str(name)
    return None
