"""Train a run once, reuse it afterwards: what the notebooks call instead of training every time.

:func:`train_or_load` looks for the finished checkpoint of a run in its output folder. When it is
there the model is rebuilt from it and nothing is trained; when the run is missing (or was
interrupted) it is trained (resuming where it stopped). A notebook therefore says "skipping training:
found ..." on a second execution, and a teacher can train once before class.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Literal, NamedTuple, Sequence

from torch import nn

from .checkpoint import (InitFromChangedError, check_init_from, latest_checkpoint, load_checkpoint, repair_last,
                         run_checkpoint)
from .config import TrainConfig, load_config, normalised_settings
from ..records import nan_to_null, shown_path

__all__ = ["train_or_load", "run_status", "RunStatus", "EarlierFolder", "BOOKKEEPING", "RunFolderError",
           "claim_run_folder", "write_metrics_json", "read_metrics_json"]

#: Settings that say where and how a run is logged or how memory is laid out and managed, not what it
#: is designed to learn: a finished run is reused even when these differ (the depthwise recomputation gives
#: the same numbers; validating more or less often changes the points of the learning curve, not the
#: weights; a run trained on ``cuda`` is the same run on ``cuda:0``, or loaded on a CPU). channels_last,
#: like the number of CPU threads, changes only the order of the sums, but that rounding grows over
#: training into other weights, by about as much as another seed (a reproducibility trial: 20 iterations
#: changed most weight tensors): the same experiment, not the same numbers.
BOOKKEEPING = frozenset({"out_dir", "resume", "progress", "keep_last", "ckpt_every", "log_every", "eval_every",
                         "num_workers", "tensorboard", "recompute_depthwise", "keep_freed_memory",
                         "channels_last", "device"})


class RunFolderError(RuntimeError):
    """A run folder another process is training into, or one that holds another run."""


_LOCKS: dict[str, Any] = {}


def _held_elsewhere(lock_file: Path) -> bool:
    """Whether another process holds ``lock_file``, a run's lock this process cannot open for writing (another
    user's, in a class's shared folder): a shared ``flock`` tried on a read-only descriptor (POSIX; False where
    there is none, or the file cannot be read)."""
    try:
        import fcntl
    except ImportError:  # Windows
        return False
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:  # its trainer holds it
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _run_lock(out_dir: Path) -> Any:
    """The lock of the run in ``out_dir``: one object per folder in this process, so that the same
    process can take it again (``train_or_load`` holds it while its Trainer's ``fit`` takes it)."""
    from filelock import FileLock

    path = os.path.abspath(out_dir / "train.lock")
    if path not in _LOCKS:
        _LOCKS[path] = FileLock(path)
    return _LOCKS[path]


def _check_writable(folder: Path, holds: str = "the run's checkpoints") -> None:
    """Make ``folder`` and write a file in it (:func:`~deeplab_edu.atomic.check_writable`): a checkpoints folder
    that cannot be written was found only after training, when the first checkpoint failed and the steps were lost
    (a trial); ``holds``: what goes there, for the message.

    Raises:
        RunFolderError: ``folder`` cannot be made or written in (read-only, a broken link where it belongs).
    """
    from ..atomic import check_writable

    try:
        check_writable(folder)
    except OSError as err:
        raise RunFolderError(f"{err}: {holds} go there; make it a folder this process can write in, or "
                             "choose another out_dir (--out-dir)") from None


def claim_run_folder(out_dir: str | Path, *, resume: bool) -> Any:
    """Lock ``out_dir`` for this process's training and make it ready; returns the held lock (release it).

    A new run (``resume=False``) refuses a folder that holds another run's checkpoints, instead of
    writing over them and mixing two runs' files; a run stopped before its first checkpoint left
    only its ``metrics.csv``, which is removed. Temporary files left by a process killed mid-write
    (:func:`~deeplab_edu.atomic.remove_stale_temporaries`) are removed, and a ``last.pt`` older than the newest
    ``ckpt_*.pt`` (killed between the two) is linked to it again (:func:`~deeplab_edu.engine.checkpoint.repair_last`).

    Raises:
        RunFolderError: ``out_dir`` is a file, or cannot be made or written in (read-only, a broken link), its lock
            cannot be opened, another process holds the folder's lock (it is training there), ``resume`` is false
            and the folder holds checkpoints, or its ``checkpoints`` folder cannot be written in.
    """
    from filelock import Timeout

    from ..atomic import remove_stale_temporaries

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunFolderError(f"out_dir {shown_path(out_dir)} is a file; out_dir (--out-dir) names the run's folder")
    _check_writable(out_dir, "the run's files (train.lock, checkpoints, metrics)")  # a read-only run, a broken link
    lock = _run_lock(out_dir)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunFolderError(f"another process is training into {shown_path(out_dir)} (it holds "
                             f"{shown_path(lock.lock_file)}); wait for it to end, or choose another out_dir "
                             "(--out-dir)") from None
    except OSError as err:  # (after Timeout, an OSError too) e.g. another user's lock file in a shared folder
        raise RunFolderError(f"cannot open the run's lock {shown_path(lock.lock_file)} ({err.strerror or err}): "
                             "make it writable (or remove it, when no process trains there), or choose another "
                             "out_dir (--out-dir)") from None
    try:
        found = latest_checkpoint(out_dir / "checkpoints")
        if not resume and found is not None:
            raise RunFolderError(f"{shown_path(out_dir)} already holds a run (its newest checkpoint is "
                                 f"{shown_path(found)}): continue it with resume (--resume), choose another "
                                 "out_dir (--out-dir), or delete the folder to start again")
        if not resume:
            (out_dir / "metrics.csv").unlink(missing_ok=True)
        for folder in (out_dir, out_dir / "checkpoints"):
            remove_stale_temporaries(folder)
        _check_writable(out_dir / "checkpoints")
        repair_last(out_dir / "checkpoints")  # a process killed between its newest ckpt_*.pt and last.pt
    except BaseException:
        lock.release()
        raise
    return lock


def _iterations(n: int) -> str:
    """``"1 iteration"``, ``"600 iterations"``: a count of iterations as the run's messages say it."""
    return f"{n} iteration{'' if n == 1 else 's'}"


def _learning_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide what a run learns. ``init_from`` counts relative to the run's own
    folder, so a phase-2 run that starts from its neighbour (``../seed0/checkpoints/last.pt``) is
    the same run after the whole ``runs/`` tree was moved or copied elsewhere."""
    out = {k: v for k, v in config.items() if k not in BOOKKEEPING}
    init, folder = config.get("init_from"), config.get("out_dir")
    if init and folder:
        out["init_from"] = os.path.relpath(os.path.abspath(init), os.path.abspath(folder))
    return out


#: The numbers of a history row that may be NaN (a diverged loss; a score without a class in truth or
#: prediction), ``iou``'s entries too: ``metrics.json`` writes them as ``null``.
_ROW_NUMBERS = ("loss", "lr", "images_per_s", "miou", "pixel_accuracy", "fw_iou")


def write_metrics_json(path: Path, result: dict[str, Any]) -> Path:
    """Write a run's ``result`` (:func:`~deeplab_edu.engine.trainer.run_result`) to ``path`` (``metrics.json``),
    atomically, as strict JSON: a NaN or infinity as ``null`` (Python's default ``NaN`` is no JSON: jq,
    JavaScript and strict parsers refuse it; ``eval --json`` writes ``null`` too). :func:`read_metrics_json`
    reads ``null`` back as NaN.

    Raises:
        OSError: ``path`` cannot be written (a read-only folder).
    """
    from ..atomic import write_text_atomic

    return write_text_atomic(path, json.dumps(nan_to_null(result), indent=2, allow_nan=False) + "\n")


def read_metrics_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A run's ``metrics.json`` (``{"history", "final", "class_names", "provenance"}``), each ``null`` among a
    history row's numbers (:data:`_ROW_NUMBERS` and ``iou``'s entries, in ``history`` and ``final``) read as
    NaN: a file :func:`write_metrics_json` wrote and one written before it (with ``NaN``, which Python's
    ``json`` reads) give the same numbers. Other ``null`` values stay ``None`` (an unknown ``output_stride``).

    Raises:
        OSError: the file cannot be read.
        ValueError: it is not JSON, or not a JSON object (naming the file).
    """
    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{shown_path(path)} is not JSON ({err}): delete it, and train_or_load writes a finished "
                         "run's metrics.json again from its last checkpoint") from None
    if not isinstance(result, dict):
        raise ValueError(f"{shown_path(path)} holds a {type(result).__name__}, not a run's metrics (a JSON object)")
    nan = float("nan")
    for row in [*(result.get("history") or []), result.get("final") or {}]:
        if not isinstance(row, dict):
            continue
        for key in _ROW_NUMBERS:
            if key in row and row[key] is None:
                row[key] = nan
        if isinstance(row.get("iou"), list):
            row["iou"] = [nan if v is None else v for v in row["iou"]]
    return result


def _differing(state: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """The learning settings in which the checkpoint ``state``'s run and ``cfg`` differ.

    A field the run's configuration lacks (one added to :class:`TrainConfig` after it was trained)
    counts as its default: a new field's default keeps the old behaviour (CONTRIBUTING.md), so a pull
    that adds one does not turn every trained run into a run with "other settings" (a contributor's
    trial)."""
    saved_config = {**TrainConfig().to_dict(), **state.get("config", {})}
    # the same value spelt otherwise is the same setting (model_kwargs' tuples, JSON's lists; '6, 12, 18')
    saved = _learning_settings(normalised_settings(saved_config))
    wanted = _learning_settings(normalised_settings(cfg.to_dict()))
    return sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))


class EarlierFolder(NamedTuple):
    """A folder a run was trained in before an update of the course moved it: ``folder``, and ``moved_by``, the
    commit that moved it (``"d8ed0de"``). A learner's run there is not moved for them, nor trained again without
    a word (:func:`train_or_load`'s ``earlier``)."""

    folder: Path
    moved_by: str


class RunStatus(NamedTuple):
    """What :func:`train_or_load` would do with a run folder now: ``state`` is one of ``"not started"``,
    ``"finished"`` (reused), ``"interrupted"`` (resumed), ``"busy"`` (another process trains it; waited
    for), ``"other settings"``, ``"stale"`` or ``"moved"`` (refused: see ``text``; ``"moved"``: the folder holds no
    checkpoint, and an earlier folder of the run holds it); ``text`` says it in a few words (for a finished run,
    the commit that trained it, and a note when the package has changed since)."""

    state: Literal["not started", "finished", "interrupted", "busy", "other settings", "stale", "moved"]
    text: str

    def __str__(self) -> str:
        return self.text

    @property
    def refused(self) -> bool:
        """Whether :func:`train_or_load` refuses the folder as it is (its text says what to do)."""
        return self.state in ("other settings", "stale", "moved")


class _Found(NamedTuple):
    """A run folder's ``last.pt`` judged against the settings asked for: what :func:`run_status`
    reports (before it tries the lock) and what :func:`train_or_load` acts on."""

    status: RunStatus  # "not started", "finished", "interrupted", "other settings", "stale" or "moved"
    state: dict[str, Any] | None  # the run's checkpoint, loaded (None when there is none, or in an earlier folder)
    refusal: Exception | None  # what train_or_load raises: when status.refused, or when its start is not ready
    trained_by: str = ""  # a finished run's "trained at commit ...", from its provenance ("" when it names none)
    note: str = ""  # a run not started: what an earlier folder of it holds that cannot be reused ("" when none)
    checkpoint: Path | None = None  # the file state was read from (last.pt, or a newer ckpt_*.pt)


def _commits(state: dict[str, Any]) -> tuple[list[str], bool]:
    """The commits that trained the checkpoint ``state`` (its provenance: one entry per stretch of iterations;
    several for a run resumed after a pull), in order, and whether one of them had uncommitted changes."""
    commits: list[str] = []
    dirty = False
    for stretch in state.get("provenance", []) or []:
        version = stretch.get("code_version", {}) if isinstance(stretch, dict) else {}
        commit = str(version.get("git_commit") or "")
        dirty = dirty or bool(version.get("git_dirty"))
        if commit and commit not in commits:
            commits.append(commit)
    return commits, dirty


def _trained_by(state: dict[str, Any]) -> str:
    """Which commit trained the run of the checkpoint ``state``: ``"trained at commit 4a88406"``, say (``""`` for a
    run that kept none)."""
    commits, dirty = _commits(state)
    if not commits:
        return ""
    return (f"trained at commit{'s' if len(commits) > 1 else ''} {', '.join(c[:7] for c in commits)}"
            f"{' plus uncommitted changes' if dirty else ''}")


def _changed_since_note(state: dict[str, Any], folder: Path) -> str:
    """For :func:`run_status` (the maintainers' view, not a learner's load): ``"deeplab_edu/ has changed since
    4a88406: if the change alters what a run learns (...), delete <folder> ..."`` when
    :func:`~deeplab_edu.records.package_changed_since` says so for a commit that trained the run in ``folder``;
    ``""`` otherwise, and where git cannot tell (no git, no repository, a time-out). The course's shipped runs
    were trained at older commits on purpose (retraining them takes hours): the note only informs."""
    from ..records import package_changed_since

    commits, _ = _commits(state)
    if not any(package_changed_since(c) for c in commits):
        return ""
    return (f"deeplab_edu/ has changed since {', '.join(c[:7] for c in commits)}: if the change alters what a run "
            f"learns (data, transforms, losses, models), delete {shown_path(folder)} to retrain it with this code")


def _start_not_ready(cfg: TrainConfig) -> tuple[str, Exception] | None:
    """``(status text, error to raise)`` when the run starts from a run's checkpoint (``init_from``) that
    is not there yet, or from a run's final checkpoint (``last.pt``, or its folder) while that run is
    unfinished: chapter 08's phase 2 run before its phase 1, or after phase 1 was interrupted, which
    trained silently from a half-trained model (a learner's trial). ``None`` when it can start."""
    from .checkpoint import checkpoint_file

    if not cfg.init_from:
        return None
    init = Path(cfg.init_from)
    shown = shown_path(init)
    try:
        start = checkpoint_file(init)
    except FileNotFoundError:
        return (f"waits for {shown}, the run it starts from", FileNotFoundError(
            f"this run starts from {shown} (init_from), which does not exist yet: train the run it starts from "
            "first (in a chapter, that run's cell comes earlier; `deeplab-edu course-runs` trains them in order)"))
    if start.name != "last.pt" and not init.is_dir():  # a checkpoint chosen by its iteration: as asked
        return None
    state = load_checkpoint(start)
    done, total = int(state.get("iteration", 0)), int(state.get("config", {}).get("iterations", 0) or 0)
    if total and done < total:
        return (f"waits for the run it starts from, {shown}, stopped at {done} of {_iterations(total)}", ValueError(
            f"this run starts from {shown} (init_from), whose run stopped at iteration {done} of {total}: finish "
            "that run first (run its cell again: it resumes), then this one; started now, it would learn from a "
            "half-trained model"))
    return None


def _shell_path(path: Path) -> str:
    """``path`` as :func:`~deeplab_edu.records.shown_path` shows it, quoted for a POSIX shell (a leading ``~/`` left
    unquoted, so that the shell expands it)."""
    import shlex

    shown = shown_path(path)
    return "~/" + shlex.quote(shown[2:]) if shown.startswith("~/") else shlex.quote(shown)


def _move_command(old: Path, new: Path) -> str:
    """The shell command that moves the run folder ``old`` to ``new``, which holds no checkpoint: ``mv OLD NEW``,
    after ``mkdir -p`` of ``new``'s parent where it is missing, or after ``rm -r NEW`` where ``new`` exists (``mv``
    would put ``old`` inside it)."""
    move = f"mv {_shell_path(old)} {_shell_path(new)}"
    if new.exists():
        return f"rm -r {_shell_path(new)} && {move}"
    if not new.parent.is_dir():
        return f"mkdir -p {_shell_path(new.parent)} && {move}"
    return move


def _in_earlier_folder(cfg: TrainConfig, folder: Path, earlier: Sequence[EarlierFolder]) -> tuple[_Found | None, str]:
    """For ``folder`` without a checkpoint: the first of the run's ``earlier`` folders that holds a ``last.pt``.
    A run there with these learning settings gives ``(a "moved" _Found, "")``, refused with the command that moves
    it (a learner's finished run was trained again without a word after a pull that moved its folder: an audit);
    one with other settings (it could not be reused where it is now) gives ``(None, a note that says so)``;
    ``(None, "")`` when none holds one."""
    for old in earlier:
        old_folder = Path(old.folder)
        last = run_checkpoint(old_folder / "checkpoints")  # as _judge reads a folder (a newer ckpt_*.pt than last.pt)
        if last is None:
            continue
        where = f"{shown_path(old_folder)} (its folder before commit {old.moved_by})"
        state = load_checkpoint(last)
        differ = _differing(state, cfg)
        if differ:
            return None, (f"{where} holds an earlier run of it with other settings ({', '.join(differ)}), which this "
                          f"code cannot reuse: delete {shown_path(old_folder)} to free its space")
        done = int(state.get("iteration", 0))
        stage = (f"finished ({_iterations(done)})" if done >= cfg.iterations else
                 f"stopped at {done} of {_iterations(cfg.iterations)}")
        move = _move_command(old_folder, folder)
        text = (f"in its earlier folder {where}, {stage}: to {'reuse' if done >= cfg.iterations else 'resume'} it, "
                f"move it in a terminal, from the repository's folder: `{move}`; or delete {shown_path(old_folder)} "
                "to train it again")
        return _Found(RunStatus("moved", text), None, RunFolderError(
            f"{shown_path(folder)} holds no checkpoint, but the run's earlier folder {where} holds it, {stage}; "
            f"nothing is moved for you: move it in a terminal, from the repository's folder, with `{move}`, then run "
            f"this again to {'reuse' if done >= cfg.iterations else 'resume'} it; or delete {shown_path(old_folder)} "
            "to train the run again from the start")), ""
    return None, ""


def _judge(cfg: TrainConfig, folder: Path, earlier: Sequence[EarlierFolder] = ()) -> _Found:
    """Read ``folder``'s run checkpoint once (:func:`~deeplab_edu.engine.checkpoint.run_checkpoint`: ``last.pt``, or
    the newest ``ckpt_*.pt`` where a process killed between the two left ``last.pt`` older) and apply the three
    tests of a reusable run: the same learning settings, the same ``init_from`` file, enough iterations. Without
    one, the run's ``earlier`` folders are looked at (:func:`_in_earlier_folder`)."""
    last = run_checkpoint(folder / "checkpoints")
    if last is None:
        moved, note = _in_earlier_folder(cfg, folder, earlier)
        if moved is not None:
            return moved
        noted = f"; {note}" if note else ""
        start = _start_not_ready(cfg)
        if start is not None:
            return _Found(RunStatus("not started", f"not started: {start[0]}{noted}"), None, start[1], note=note)
        return _Found(RunStatus("not started", f"not started: will be trained{noted}"), None, None, note=note)
    state = load_checkpoint(last)
    differ = _differing(state, cfg)
    if differ:
        return _Found(RunStatus("other settings", f"holds another run (other settings: {', '.join(differ)}): delete "
                                                  f"{shown_path(folder)} or choose another folder"), state,
                      ValueError(f"{shown_path(folder)} holds a run with other settings ({', '.join(differ)}); "
                                 "delete the folder or choose another out_dir"))
    try:
        check_init_from(state, cfg.init_from, source=f"the run in {shown_path(folder)}")
    except InitFromChangedError as err:
        return _Found(RunStatus("stale", f"started from an earlier {shown_path(cfg.init_from or '')} (trained again "
                                         f"since): delete {shown_path(folder)} to train it again from the new one"),
                      state, err)
    done = int(state.get("iteration", 0))
    if done >= cfg.iterations:
        named = _trained_by(state)
        return _Found(RunStatus("finished", f"finished ({_iterations(cfg.iterations)}{', ' + named if named else ''}): "
                                            "reused"), state, None, named, checkpoint=last)
    if (start := _start_not_ready(cfg)) is not None:
        return _Found(RunStatus("interrupted", f"interrupted at {done} of {_iterations(cfg.iterations)}, and "
                                               f"{start[0]}"), state, start[1], checkpoint=last)
    return _Found(RunStatus("interrupted", f"interrupted at {done} of {_iterations(cfg.iterations)}: resumed (by hand: "
                                           "the command with --resume)"), state, None, checkpoint=last)


def run_status(preset: str | None = None, *, out_dir: str | Path, earlier: Sequence[EarlierFolder] = (),
               **overrides: Any) -> RunStatus:
    """What :func:`train_or_load` would find in ``out_dir`` for these settings (see :class:`RunStatus`);
    ``earlier``: as :func:`train_or_load`'s.

    Reads the run's checkpoint (a second or less) and tries the folder's lock without waiting; trains nothing.

    Raises:
        ValueError: an unknown preset or setting (:func:`~deeplab_edu.engine.config.load_config`).
    """
    from filelock import Timeout

    cfg = load_config(preset, {**overrides, "out_dir": str(out_dir)})
    folder = Path(out_dir)
    busy = False
    if (folder / "train.lock").is_file():  # a holder creates it: no file, no holder (and none is written here)
        try:
            with _run_lock(folder).acquire(timeout=0):
                pass
        except Timeout:
            busy = True
        except OSError:  # a lock this process cannot open: another user's (held?), or a read-only folder's
            busy = _held_elsewhere(folder / "train.lock")
    found = _judge(cfg, folder, earlier)
    if found.state is not None and found.status.state == "finished" and (note := _changed_since_note(found.state,
                                                                                                       folder)):
        return RunStatus("finished", f"{found.status.text}; {note}")
    if not busy or found.status.state not in ("not started", "interrupted"):
        return found.status  # a finished run is reused (another process may be loading it: that is no training)
    if found.state is None:
        return RunStatus("busy", "being trained by another process now: waited for")
    return RunStatus("busy", f"being trained by another process now ({int(found.state.get('iteration', 0))} of "
                             f"{_iterations(cfg.iterations)}): waited for")


def train_or_load(preset: str | None = None, *, out_dir: str | Path, verbose: bool = True,
                  lock_timeout_s: float = 3600.0, earlier: Sequence[EarlierFolder] = (),
                  **overrides: Any) -> tuple[nn.Module, list[dict[str, Any]], TrainConfig]:
    """Return ``(model in eval mode, history, config)`` of the run in ``out_dir``, training it if needed.

    ``history`` is the run's log, one dict per row: ``{"split": "train", "iteration", "loss", "lr",
    "images_per_s"}`` every ``log_every`` iterations (the loss averaged over the window), and
    ``{"split": "val", "iteration", "miou", "pixel_accuracy", "fw_iou", "iou" (one per class),
    "output_stride"}`` at every evaluation (fractions in [0, 1]). A finished run is reused only when
    its learning settings equal these (everything but :data:`BOOKKEEPING`, such as the folder, the
    logging, the workers or the device) and, for a run started from ``init_from``, when that file
    is still the one it started from. Its message names the commit that trained the reused run
    (:func:`run_status` and ``deeplab-edu course-runs --dry-run`` add a note when ``deeplab_edu/`` has changed
    since, for the maintainers who retrain the shipped runs; most changes alter no run, so a learner is not told
    to retrain); the run is reused all the same.

    The caller's random streams are left as they were, whether the run was trained (which seeds them) or
    loaded (which builds a model): a notebook's next random draw is the same either way
    (:func:`~deeplab_edu.engine.trainer.callers_random_state_kept`; on a GPU, for the streams of a CUDA in
    use before the call; a reproducibility trial found chapter 08's numbers after its runs differ between a
    first execution and one with the runs on disk).

    Two processes that ask for the same run (two notebooks executed side by side, a notebook and
    ``benchmarks/findings.py``) do not train it twice or write into each other's checkpoints: the
    second waits for the first on a lock file in ``out_dir`` (released when the first ends, even
    if it is killed), then reuses the finished run.

    Args:
        preset: a preset name or YAML file (see :func:`~deeplab_edu.engine.config.list_presets`).
        out_dir: the run's folder (checkpoints, metrics.csv, metrics.json).
        verbose: ``False`` prints nothing: neither this function's lines (a reused run, a wait for another
            process, a note on an ``earlier`` folder) nor the training's (the Trainer's ``verbose``: its start-up
            line, loss and validation lines and notes, and its progress bar); warnings are warnings all the same.
        lock_timeout_s: how long to wait for another process that trains the same run.
        earlier: the folders the run was trained in before an update of the course moved it (the course's runs:
            :data:`~deeplab_edu.viz.training.EARLIER_FOLDERS`). When ``out_dir`` holds no checkpoint and one of
            them holds the run (with these learning settings), it is not trained again: a :class:`RunFolderError`
            names the ``mv`` that moves it (nothing is moved for the user); one that holds the run with other
            settings is named in a note (``verbose``), and the run is trained.
        **overrides: settings that replace the preset's.

    Raises:
        ValueError: ``out_dir`` holds a run with other learning settings, or the run starts from the final
            checkpoint of a run that is unfinished (``init_from``: chapter 08's phase 2 after an
            interrupted phase 1).
        FileNotFoundError: the run starts from a checkpoint (``init_from``) that does not exist yet.
        ~deeplab_edu.engine.checkpoint.InitFromChangedError: the run started from an ``init_from``
            file that has changed since (its phase 1 was retrained).
        TimeoutError: another process kept the run's lock longer than ``lock_timeout_s``.
        RuntimeError: called in a process of ``torchrun`` (``WORLD_SIZE`` above 1) for a run to train or resume:
            it trains in one process (a finished run loads in each).
        RunFolderError: ``out_dir`` cannot be created, or cannot be written to (a read-only share) and its run
            is not finished (a finished run there is loaded without the lock), or it holds no checkpoint and an
            ``earlier`` folder holds the run (the message names the ``mv`` to run).
    """
    from filelock import Timeout

    from ..atomic import acquire_or_wait

    from .distributed import launched_world_size
    from .trainer import callers_random_state_kept

    cfg = load_config(preset, {**overrides, "out_dir": str(out_dir)})
    found = _judge(cfg, Path(out_dir), earlier)
    if found.status.state == "moved":  # refused before out_dir is made (mv OLD NEW then works), as it raises refusals
        return _train_or_load(cfg, Path(out_dir), verbose, found=found)
    # a finished run loads in each process (no lock: a new user's DDP evaluation script loaded one so)
    if found.status.state != "finished" and found.refusal is None and (processes := launched_world_size()) > 1:
        # an audit: each process took the lock, and all waited ~30 minutes
        raise RuntimeError(f"train_or_load trains in one process, but torchrun launched {processes} (WORLD_SIZE="
                           f"{processes}) and {shown_path(out_dir)} holds no finished run: the first would take the "
                           "run's lock and wait for the others to join the process group while they wait for the "
                           f"lock; train with `torchrun --nproc-per-node {processes} -m deeplab_edu train ...` "
                           "(deeplab-edu train) or a Trainer under torchrun, or call train_or_load without torchrun")
    if verbose and found.note:
        print(f"note: {found.note}")
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as err:  # e.g. a new run's folder inside a read-only share
        raise RunFolderError(f"cannot create the run's folder {shown_path(out_dir)} ({err.strerror or err}); train "
                             "it in a folder this process can write to (another out_dir, or DEEPLAB_EDU_RUNS naming "
                             "one)") from err
    if found.status.state == "finished":  # loaded without the lock: 30 kernels loading one run need not queue
        with callers_random_state_kept():
            return _train_or_load(cfg, Path(out_dir), verbose, found=found)
    lock = _run_lock(Path(out_dir))
    try:
        acquire_or_wait(lock, lock_timeout_s, f"waiting for another process that trains {shown_path(out_dir)} (up to "
                        f"{lock_timeout_s:.0f} s)" if verbose else None)
    except Timeout:  # (a subclass of OSError: before the clause below)
        raise TimeoutError(f"another process has been training {shown_path(out_dir)} for more than "
                           f"{lock_timeout_s:.0f} s (lock {shown_path(lock.lock_file)}); wait for it or stop it") from None
    except OSError as err:  # the lock file cannot be written: a read-only folder (a class's shared runs), or
        # another user's lock in a shared folder, whose training this process waits for before it loads the run
        _wait_while_held_elsewhere(Path(lock.lock_file), out_dir, verbose, lock_timeout_s)
        with callers_random_state_kept():
            return _train_or_load(cfg, Path(out_dir), verbose, unwritable=err)  # a finished run loads without the lock
    try:
        with callers_random_state_kept():
            return _train_or_load(cfg, Path(out_dir), verbose)
    finally:
        lock.release()


#: Seconds between two looks at another user's lock (:func:`_wait_while_held_elsewhere`).
_POLL_S = 5.0


def _wait_while_held_elsewhere(lock_file: Path, out_dir: str | Path, verbose: bool, timeout_s: float) -> None:
    """Wait, at most ``timeout_s`` seconds, while another user's process holds the run's lock
    (:func:`_held_elsewhere`), checking every 5 s.

    Raises:
        TimeoutError: it still held it after ``timeout_s``.
    """
    if not _held_elsewhere(lock_file):
        return
    if verbose:
        print(f"waiting for another user's process that trains {shown_path(out_dir)} (up to {timeout_s:.0f} s)")
    deadline = time.monotonic() + timeout_s
    while _held_elsewhere(lock_file):
        if time.monotonic() > deadline:
            raise TimeoutError(f"another user's process has been training {shown_path(out_dir)} for more than "
                               f"{timeout_s:.0f} s (lock {shown_path(lock_file)}); wait for it or ask them to stop it")
        time.sleep(_POLL_S)


def _train_or_load(cfg: TrainConfig, out_dir: Path, verbose: bool, unwritable: OSError | None = None,
                   found: _Found | None = None) -> tuple[nn.Module, list[dict[str, Any]], TrainConfig]:
    """:func:`train_or_load`'s work once it holds the lock, or, ``unwritable`` (why the lock could not be
    written: a read-only folder), only the loading of a finished run, any other state raising
    :class:`RunFolderError` naming the folder; ``found``: the folder as judged already (a finished run, loaded
    without the lock)."""
    from ..inference import run_from_checkpoint
    from .trainer import Trainer

    if found is None:
        found = _judge(cfg, out_dir)  # as run_status decides
    if found.refusal is not None:
        raise found.refusal
    if unwritable is not None and (found.state is None or found.status.state != "finished"):
        raise RunFolderError(
            f"cannot write to {shown_path(out_dir)} ({unwritable.strerror or unwritable}): a finished run there is "
            f"loaded as it is, but this one is {found.status.state}; train it in a folder this process can write to "
            "(another out_dir, or DEEPLAB_EDU_RUNS naming one), or have the folder's owner finish it") from unwritable
    if found.state is not None and found.status.state == "finished":
        last = out_dir / "checkpoints" / "last.pt"
        try:  # a process killed between its newest ckpt_*.pt and last.pt: last.pt names the run's model again
            repair_last(out_dir / "checkpoints")
        except OSError:  # a read-only folder: the run loads all the same, from the checkpoint it was read from
            last = found.checkpoint or last
        if verbose:
            named = f", {found.trained_by}" if found.trained_by else ""
            print(f"skipping training: found the finished run {shown_path(last)} ({_iterations(cfg.iterations)}{named})")
        model = run_from_checkpoint(found.state, last).model
        history = list(found.state.get("history", []))
        metrics = out_dir / "metrics.json"
        if not metrics.is_file():  # stopped between its last checkpoint and metrics.json (Ctrl-C, killed)
            from .trainer import run_result

            result = run_result(history, list(found.state.get("provenance", [])),
                                found.state.get("model_info", {}).get("class_names"))
            try:
                write_metrics_json(metrics, result)
            except OSError:  # a read-only folder: the run loads all the same (metrics.json is a convenience)
                pass
        return model, history, cfg
    # an interrupted run continues where it stopped; a new one starts fresh
    cfg.resume = latest_checkpoint(out_dir / "checkpoints") is not None
    trainer = Trainer(cfg, verbose=verbose)
    result = trainer.fit()
    return trainer.model.eval(), result["history"], cfg  # fit() wrote metrics.json
