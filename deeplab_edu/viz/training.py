"""The training halves of chapters 08 and 09: which runs they train, and the figures that read them.

DeepLabv3 (Chen et al. 2017, sec. 4.1, "Batch normalization") trains in two phases: phase 1 at
output stride 16 with batch-norm statistics updated, phase 2 from phase 1's weights at output
stride 8 with batch norm *frozen* and a smaller learning rate. DeepLabv3+ (Chen et al. 2018b, sec. 4.4 and Fig. 5)
measures the decoder's gain on object boundaries in a "trimap" band around them.

- :func:`chapter_run` gives the settings of one run for the active profile (``smoke``/``cpu``/``gpu``),
  so chapter 09 trains DeepLabv3+ exactly like chapter 08 trained DeepLabv3, and reuses 08's run;
- :func:`band_metrics` scores a model on the whole image and inside trimap bands of several widths
  in one pass (with :func:`deeplab_edu.metrics.trimap_target`);
- :func:`plot_phases`, :func:`plot_histories`, :func:`plot_band_comparison` and
  :func:`plot_model_comparison` draw them.

Training itself is :func:`deeplab_edu.engine.runs.train_or_load` (the same code path as
``deeplab-edu train``); nothing here trains.
"""

from __future__ import annotations

import atexit
import itertools
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import torch
from torch import nn

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..engine.runs import EarlierFolder, RunStatus

__all__ = ["RUNS_ENV", "EARLIER_FOLDERS", "earlier_folders", "RunSpec", "runs_root", "chapter_run", "phase2_run", "phase2_dir", "camvid_run", "memory_before_training", "course_runs", "band_metrics", "plot_phases", "plot_band_comparison",
           "plot_histories", "plot_model_comparison", "loss_decreased", "learnability_table", "class_weights_table"]

#: Settings of the chapter-08/09 runs per profile (overrides of the engine's preset of that name).
#: smoke: seconds, meaningless numbers; cpu: the ``cpu`` preset as it is (tiny_resnet, easy scenes,
#: a few minutes on a laptop CPU); gpu: DeepLabv3's crop size and batch on one GPU with
#: ResNet-50 from scratch, on the same easy scenes.
_PHASE1: dict[str, dict[str, Any]] = {
    "smoke": dict(image_size=40, crop_size=32, train_length=8, val_length=3, batch_size=2, iterations=2,
                  warmup_iters=0, eval_every=2, ckpt_every=2, keep_last=1, progress=False),
    "cpu": dict(keep_last=1),
    "gpu": dict(backbone="resnet50", difficulty="easy", image_size=513, crop_size=513, train_length=20000,
                val_length=200, batch_size=16, iterations=4000, lr=0.01, warmup_iters=200, eval_every=500,
                ckpt_every=500, device=None),
}
#: Phase 2 (DeepLabv3 sec. 4.1, "Batch normalization"): from phase 1's weights, output stride 8, batch
#: norm frozen, the learning rate divided by 7 (the paper goes from 0.007 to 0.001, for its test-set
#: submission), the ASPP rates doubled with the output stride.
_PHASE2: dict[str, dict[str, Any]] = {
    "smoke": dict(iterations=1, eval_every=1, ckpt_every=1, warmup_iters=0),
    "cpu": dict(iterations=100, eval_every=50, ckpt_every=50, warmup_iters=0),
    "gpu": dict(iterations=1000, eval_every=500, ckpt_every=500, warmup_iters=0),
}


#: The course's run folders that an update of the course moved: each folder now, relative to :func:`runs_root`, to
#: its earlier folders (relative to the same root) with the commit that moved it, newest first. A learner's run
#: trained before the pull stays where it was (nothing moves it for them); :func:`chapter_run` and
#: :func:`camvid_run` give these to the engine (:attr:`RunSpec.earlier`), which refuses to train such a run again
#: without a word and names the ``mv`` that moves it (it did: an audit). Add a line here when a course run moves.
EARLIER_FOLDERS: dict[str, tuple[tuple[str, str], ...]] = {
    # chapter 11's GPU run: runs/camvid_deeplabv3plus until d8ed0de (0210a2b had moved it once, 2c7535e reverted)
    "course/gpu/camvid": (("camvid_deeplabv3plus", "d8ed0de"),),
    # chapters 08-09: runs/ch08-09_<profile>_<model>[_phase2] until c007887 (the control came later, in its folder)
    **{f"course/{profile}/{arm}/seed0{phase}": ((f"ch08-09_{profile}_{model}{phase}", "c007887"),)
       for profile in ("cpu", "gpu") for arm, model in (("v3", "deeplabv3"), ("v3plus", "deeplabv3plus"))
       for phase in ("", "_phase2")},
}

#: About how many markers a run's loss curve carries where several runs share a panel: enough to tell the runs
#: apart by marker (not by colour alone), few enough that a long run's curve stays a line, not a band of markers.
_LOSS_MARKERS = 25


def _marker_step(points: int) -> int:
    """Every how many of a loss curve's ``points`` a marker is drawn (``markevery``): about :data:`_LOSS_MARKERS`."""
    return max(1, points // _LOSS_MARKERS)


def earlier_folders(out_dir: Path, root: Path) -> tuple[EarlierFolder, ...]:
    """The earlier folders of the course's run in ``out_dir`` under ``root`` (:data:`EARLIER_FOLDERS`), as the
    engine takes them (:class:`~deeplab_edu.engine.runs.EarlierFolder`); ``()`` for a run that never moved, or a
    folder outside ``root``."""
    from ..engine.runs import EarlierFolder

    try:
        key = Path(out_dir).relative_to(root).as_posix()
    except ValueError:
        return ()
    return tuple(EarlierFolder(Path(root) / old, commit) for old, commit in EARLIER_FOLDERS.get(key, ()))


@dataclass
class RunSpec:
    """The arguments of :func:`~deeplab_edu.engine.runs.train_or_load` for one run.

    Attributes:
        preset: the engine's preset (``smoke``, ``cpu``, ``gpu``, ``camvid_cpu``, ...).
        out_dir: the run's folder (checkpoints, ``metrics.csv``, ``metrics.json``).
        overrides: the settings that replace the preset's (``TrainConfig`` field names).
        earlier: the folders the run lived in before an update of the course moved it
            (:func:`earlier_folders`): a run found there is named, not trained again.
    """

    preset: str
    out_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    earlier: tuple[EarlierFolder, ...] = ()

    def train_or_load(self, verbose: bool = True) -> tuple[nn.Module, list[dict[str, Any]], Any]:
        """Train the run, or reload it when its finished checkpoint exists (the engine says which).

        Returns:
            ``(model, history, config)``: the model in eval mode, the run's history (a row per log and per
            validation, as :meth:`~deeplab_edu.engine.trainer.Trainer.fit` gives it) and its ``TrainConfig``.

        Raises:
            ValueError, FileNotFoundError, TimeoutError, RunFolderError: as
                :func:`~deeplab_edu.engine.runs.train_or_load` (another run's settings in the folder, a phase 2
                whose phase 1 is missing or unfinished, a lock held too long, a folder that cannot be written, the
                run in an earlier folder of it: :attr:`earlier`).
        """
        from ..engine.runs import train_or_load

        return train_or_load(self.preset, out_dir=self.out_dir, verbose=verbose, earlier=self.earlier,
                             **self.overrides)

    def status(self) -> RunStatus:
        """What :meth:`train_or_load` would do now (:func:`~deeplab_edu.engine.runs.run_status`; ``str()`` of it
        says so in a few words)."""
        from ..engine.runs import run_status

        return run_status(self.preset, out_dir=self.out_dir, earlier=self.earlier, **self.overrides)

    @property
    def checkpoint(self) -> Path:
        """Where the run's final checkpoint is (or will be)."""
        return self.out_dir / "checkpoints" / "last.pt"

    def command(self, width: int | None = None, indent: int = 4) -> str:
        """The equivalent ``deeplab-edu train`` command line (values quoted for a POSIX shell), written as the
        command line parses it back: a dict (``model_kwargs``) as JSON, a pair (``scale_range``) as two words.

        Args:
            width: the longest line, in characters: longer commands are broken between options (never
                inside one) with a ``\\`` continuation, so that a book page or a terminal does not wrap
                them at a hyphen; ``None``: one line.
            indent: spaces in front of each continuation line.

        Raises:
            ValueError: ``width`` is less than 20 characters.
        """
        import shlex

        from ..engine.runs import shown_path

        if width is not None and width < 20:
            raise ValueError(f"width must be at least 20 characters (or None: one line), got {width!r}")
        parts = ["deeplab-edu train", f"--preset {shlex.quote(self.preset)}"]
        for k, v in self.overrides.items():
            if v is None or k == "progress":
                continue
            flag = "--" + k.replace("_", "-")
            if isinstance(v, bool):
                parts.append(flag if v else f"--no-{k.replace('_', '-')}")
            elif isinstance(v, Mapping):  # --model-kwargs reads JSON
                parts.append(f"{flag} {shlex.quote(json.dumps(v))}")
            elif isinstance(v, (list, tuple)):  # --scale-range MIN MAX; --atrous-rates takes one word, "6,12,18"
                words = [",".join(map(str, v))] if k == "atrous_rates" else [str(x) for x in v]
                parts.append(" ".join([flag, *map(shlex.quote, words)]))
            else:
                # paths as the book may show them: relative to the repository, never the machine's
                shown = shown_path(v) if isinstance(v, (str, Path)) and Path(v).is_absolute() else v
                parts.append(f"{flag} {shlex.quote(str(shown))}")
        parts.append(f"--out-dir {shlex.quote(str(shown_path(self.out_dir)))}")
        if width is None:
            return " ".join(parts)
        lines = [parts[0]]
        for part in parts[1:]:
            if len(lines[-1]) + 1 + len(part) + 2 <= width:  # room for the part and " \\"
                lines[-1] += " " + part
            else:
                lines.append(" " * indent + part)
        return " \\\n".join(lines)


#: ``deeplab_edu_smoke_<pid>_<random>``: a smoke profile's runs folder, named after the process that owns it.
_SMOKE_PREFIX = "deeplab_edu_smoke_"
#: A smoke folder untouched for this long, whose owner no longer runs, belongs to a process that was killed
#: (its exit handler never ran).
_STALE_SMOKE_SECONDS = 24 * 3600


#: The folder of the course's runs, when set (``~`` expanded): for a shared environment, or a disk
#: with more room. Unset, it is ``runs/`` in the repository the package is imported from.
RUNS_ENV = "DEEPLAB_EDU_RUNS"
_warned_other_clone: set[Path] = set()


def runs_root(profile: str | None = None) -> Path:
    """The folder of the course's runs: ``$DEEPLAB_EDU_RUNS`` when set, else ``<repo>/runs`` (git-ignored)
    of the repository the package is imported from; a fresh temporary folder in the ``smoke``
    profile (CI). A package installed as a copy (``pip install /path/to/deeplab-edu``, not ``-e``) lives in
    ``site-packages``, where runs do not belong (a portability trial found them written there): its runs go
    to ``runs/`` of the course folder the working directory lies in, else of the working directory.

    The temporary folder (checkpoints of tens of MB) is deleted when the Python process exits; those of
    processes killed before they could (the pid its name carries no longer runs, and untouched for a day)
    are deleted by the next smoke run. A
    kernel of ``python -m deeplab_edu.book`` (CI, ``make book``) is killed when its notebook ends, but
    its temporary folder is its own, which the book removes.

    Warns (``UserWarning``, once) when the working directory lies in another clone of the course
    than the package's (an environment shared by several clones): the runs would land in the
    other clone's ``runs/``.

    Raises:
        ValueError: ``profile`` is not one of :data:`~deeplab_edu.config.PROFILES`.
    """
    import os
    import warnings

    from .. import config
    from ..records import REPO_ROOT

    profile = profile or config.profile()
    if profile not in config.PROFILES:  # an audit: "bogus" gave runs/ without a word
        raise ValueError(f"profile must be one of {', '.join(config.PROFILES)} (or None: the active one), got {profile!r}")
    if profile == "smoke":
        from ..atomic import owned_temporary_folder  # those of killed kernels removed first

        path = owned_temporary_folder(_SMOKE_PREFIX, abandoned_after_s=_STALE_SMOKE_SECONDS)
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        return path
    if chosen := os.environ.get(RUNS_ENV, "").strip():
        return Path(chosen).expanduser()
    here = Path.cwd().resolve()
    clone = next((d for d in (here, *here.parents) if (d / "deeplab_edu" / "__init__.py").is_file()), None)
    if not (REPO_ROOT / "pyproject.toml").is_file():  # installed as a copy: REPO_ROOT is site-packages
        return (clone or here) / "runs"
    if clone is not None and clone != REPO_ROOT and clone not in _warned_other_clone:
        _warned_other_clone.add(clone)
        warnings.warn(f"this runs in the course folder {clone}, but deeplab_edu is imported from {REPO_ROOT}, so the "
                      f"runs go to {REPO_ROOT / 'runs'}: install the package from this folder (make setup) or set "
                      f"{RUNS_ENV} to the folder the runs should go to", stacklevel=2)
    return REPO_ROOT / "runs"


def memory_before_training(chapter: int, runs: Mapping[int, Iterable[RunSpec]]) -> None:
    """Print :func:`deeplab_edu.config.memory_note` before chapter ``chapter`` trains, where one of ``runs`` will
    be trained now by this kernel, not loaded (:meth:`RunSpec.status`: not started or interrupted; a run another
    process trains is waited for, then loaded), and a learner runs the chapter (not
    :func:`~deeplab_edu.config.course_checks`). ``runs``: each chapter whose recorded peak memory training those
    runs reaches, to the runs (chapter 09: ``{9: [DeepLabv3+'s run], 8: [chapter 08's run]}``, which it trains
    when it is missing). Nothing is printed where every run is finished: a class server's learners load the runs
    their teacher trained (``make course-runs``), and chapter 11 without CamVid trains nothing."""
    from .. import config

    if config.course_checks() or config.memory_note(chapter, *runs) is None:  # every training fits: no status read
        return  # (each RunSpec.status loads a finished run's checkpoint)
    training = [c for c, specs in runs.items()
                if any(spec.status().state in ("not started", "interrupted") for spec in specs)]  # this kernel trains
    if training and (note := config.memory_note(chapter, *(c for c in training if c != chapter))):
        print(note)


def chapter_run(model: str, *, phase: int = 1, root: Path | None = None, profile: str | None = None,
                output_stride: int | None = None) -> RunSpec:
    """The chapter-08/09 run of ``model`` ("deeplabv3" or "deeplabv3plus") for the profile.

    Phase 1 trains at output stride 16 (evaluated at 8); phase 2 starts from phase 1's checkpoint
    with ``freeze_bn=True``, ``output_stride=8`` (the ASPP rates doubled) and a seventh of the
    learning rate (DeepLabv3 sec. 4.1). ``phase=2, output_stride=16`` is its control: the same
    fine-tuning at phase 1's stride and rates, in its own folder (``..._phase2_os16``), so that the
    gain of phase 2 can be split into "trained longer" and "trained at output stride 8".

    Raises:
        ValueError: an unknown ``model``, ``phase`` or ``profile``; an ``output_stride`` other than
            8 or 16, or one given for phase 1 (which trains at the profile's stride, 16).
    """
    from .. import config

    if model not in ("deeplabv3", "deeplabv3plus"):
        raise ValueError(f"model must be 'deeplabv3' or 'deeplabv3plus', got {model!r}")
    if phase not in (1, 2):
        raise ValueError(f"phase must be 1 or 2, got {phase!r}")
    if output_stride is not None and (phase == 1 or output_stride not in (8, 16)):
        raise ValueError(f"output_stride is phase 2's: 8 (the paper's) or 16 (the control); phase 1 trains at the "
                         f"profile's stride. Got output_stride={output_stride!r} with phase={phase}")
    output_stride = output_stride or 8
    profile = profile or config.profile()
    if profile not in _PHASE1:
        raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(_PHASE1)}")
    root = Path(root) if root is not None else runs_root(profile)
    preset = profile
    overrides: dict[str, Any] = {"model": model, **_PHASE1[profile]}
    if profile == "gpu":
        overrides["device"] = str(config.device())
    from ..findings import run_dir

    out_dir = run_dir(root / "course" / profile, "v3" if model == "deeplabv3" else "v3+", 0)
    if phase == 2:
        spec = phase2_run(chapter_run(model, phase=1, root=root, profile=profile), output_stride=output_stride,
                          profile=profile)
        spec.earlier = earlier_folders(spec.out_dir, root)
        return spec
    return RunSpec(preset, out_dir, overrides, earlier_folders(out_dir, root))


def phase2_dir(phase1_dir: Path, output_stride: int = 8) -> Path:
    """The folder of phase 2 (``<phase 1's>_phase2``) or of its control (``<phase 1's>_phase2_os16``)."""
    return phase1_dir.with_name(phase1_dir.name + "_phase2" + ("" if output_stride == 8 else f"_os{output_stride}"))


def phase2_run(phase1: RunSpec, *, output_stride: int = 8, profile: str | None = None) -> RunSpec:
    """Phase 2 of DeepLabv3's recipe after the run ``phase1`` (sec. 4.1), or its control.

    From ``phase1``'s final checkpoint (``init_from``), with batch norm frozen (``freeze_bn``), a
    seventh of its learning rate (the paper: 0.007 -> 0.001) and the profile's phase-2 length, at
    ``output_stride`` 8 with the ASPP rates scaled to keep their field of view (the paper's), or
    16 with phase 1's rates (the control: as long and as frozen, only the stride differs). Its
    folder is :func:`phase2_dir` of phase 1's.

    Raises:
        ValueError: ``output_stride`` is not 8 or 16, or ``profile`` is unknown.
    """
    from .. import config
    from ..engine.config import load_config, resolve_atrous_rates

    if output_stride not in (8, 16):
        raise ValueError(f"phase 2 trains at output stride 8 (the paper's) or 16 (the control), got {output_stride!r}")
    profile = profile or config.profile()
    if profile not in _PHASE2:
        raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(_PHASE2)}")
    cfg1 = load_config(phase1.preset, phase1.overrides)
    rates = resolve_atrous_rates(cfg1, warn=False) or ()
    overrides = {**phase1.overrides, **_PHASE2[profile], "init_from": str(phase1.checkpoint), "freeze_bn": True,
                 "output_stride": output_stride, "lr": float(f"{cfg1.lr / 7:.3g}"),
                 "atrous_rates": ",".join(str(r * cfg1.output_stride // output_stride) for r in rates)}
    return RunSpec(phase1.preset, phase2_dir(phase1.out_dir, output_stride), overrides)


def camvid_run(profile: str | None = None, root: Path | None = None, *, data_root: Path | None = None) -> RunSpec:
    """Chapter 11's CamVid run: the ``camvid_cpu`` preset in ``<root>/course/cpu/camvid`` (``cpu``
    profile), or ``camvid_gpu`` in ``<root>/course/gpu/camvid`` (``gpu``; ``<root>/camvid_deeplabv3plus`` before
    commit d8ed0de, where a run is named instead of trained again: :data:`EARLIER_FOLDERS`). ``root`` defaults to
    :func:`runs_root`; ``data_root`` is passed on when given, for a copy the search of
    :func:`~deeplab_edu.data.find_camvid` does not reach (else the engine finds the copy itself, and
    the run does not depend on where it lies).

    Raises:
        ValueError: ``profile`` is not ``cpu`` or ``gpu`` (the ``smoke`` profile trains nothing on CamVid).
    """
    from .. import config

    profile = profile or config.profile()
    if profile not in ("cpu", "gpu"):
        raise ValueError(f"chapter 11 trains on CamVid in the 'cpu' and 'gpu' profiles only, got {profile!r}")
    root = Path(root) if root is not None else runs_root(profile)
    overrides: dict[str, Any] = {} if data_root is None else {"data_root": str(data_root)}
    out_dir = root / "course" / profile / "camvid"
    return RunSpec(f"camvid_{profile}", out_dir, overrides, earlier_folders(out_dir, root))


def course_runs(profile: str | None = None, root: Path | None = None) -> list[RunSpec]:
    """The procedural-scene runs chapters 08-10 load, in an order that can train them: DeepLabv3's
    phase 1, its phase 2 and phase 2's control (both start from phase 1), then DeepLabv3+.
    Chapter 11's CamVid run is :func:`camvid_run` (it needs a CamVid copy).

    Raises:
        ValueError: ``profile`` is unknown (see :func:`chapter_run`).
    """
    from .. import config

    profile = profile or config.profile()
    root = Path(root) if root is not None else runs_root(profile)  # one folder for all (smoke: a temporary one)
    return [chapter_run("deeplabv3", root=root, profile=profile),
            chapter_run("deeplabv3", phase=2, root=root, profile=profile),
            chapter_run("deeplabv3", phase=2, root=root, profile=profile, output_stride=16),
            chapter_run("deeplabv3plus", root=root, profile=profile)]


@torch.no_grad()
def band_metrics(model: nn.Module, dataset: Any, widths: Sequence[int], *, output_stride: int | None = 8,
                 limit: int | None = None, progress: bool = False) -> dict[Any, dict[str, Any]]:
    """Confusion-matrix metrics on whole images (key ``"all"``) and in trimap bands of each width.

    Every image is predicted once (:func:`deeplab_edu.inference.predict` at ``output_stride``); the
    band of width ``w`` keeps the boundary pixels (both sides of a ground-truth label change) and those
    within ``w`` pixels of one, chessboard distance: ``2 w + 2`` pixels across a straight edge
    (:func:`deeplab_edu.metrics.trimap_target`; the trimap of DeepLab v1 Fig. 5, v2 Fig. 10 and
    v3+ Fig. 5, whose "band width" is this ``w``). Returns ``{"all" or w: ConfusionMatrix.compute() of those pixels}``.

    Raises:
        ValueError: ``widths`` is empty or holds a negative width.
    """
    from ..progress import progress_bar

    from ..inference import Strategy, predict
    from ..metrics import ConfusionMatrix, trimap_target

    if not widths or min(widths) < 0:
        raise ValueError(f"widths must be non-negative band widths, got {list(widths)}")
    num_classes = int(getattr(dataset, "num_classes"))
    ignore = int(getattr(dataset, "ignore_index", 255))
    device = next(model.parameters()).device
    mats: dict[Any, ConfusionMatrix] = {"all": ConfusionMatrix(num_classes, ignore)}
    mats.update({w: ConfusionMatrix(num_classes, ignore) for w in widths})
    strategy = Strategy(output_stride=output_stride)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    was_training = model.training
    model.eval()
    try:
        for i in progress_bar(range(n), desc="band metrics", progress=progress, leave=False):
            image, mask = dataset[i]
            pred = predict(model, image.to(device), strategy)[0].cpu()
            mats["all"].update(pred[None], mask[None])
            for w in widths:
                mats[w].update(pred[None], trimap_target(mask, w, ignore)[None])
    finally:
        model.train(was_training)
    return {k: m.compute() for k, m in mats.items()}


def loss_decreased(history: Sequence[Mapping[str, Any]], window: int = 3) -> bool:
    """Whether the mean training loss of the last ``window`` logged points is below that of the first.

    Raises:
        ValueError: ``window`` is below 1, or fewer than ``2 * window`` training losses are logged.
    """
    if window < 1:  # an audit: -1 answered False, 0 divided by zero
        raise ValueError(f"window must be at least 1 logged point, got {window}")
    losses = [r["loss"] for r in history if r.get("split") == "train"]
    if len(losses) < 2 * window:
        raise ValueError(f"need at least {2 * window} logged training losses, got {len(losses)}")
    return sum(losses[-window:]) / window < sum(losses[:window]) / window


def plot_phases(phase1: Sequence[Mapping[str, Any]], phase2: Sequence[Mapping[str, Any]], *,
                control: Sequence[Mapping[str, Any]] | None = None, title: str = "") -> Figure:
    """The learning curves of both phases on one iteration axis, phase 2 after a dashed line.

    Args:
        phase1, phase2: the runs' histories (``Trainer.fit()["history"]``: train rows with
            ``loss``, val rows with ``miou``), phase 2's iterations counted from its own start.
        control: optionally the history of phase 2's control (the same fine-tuning at output
            stride 16, :func:`chapter_run` with ``output_stride=16``), drawn beside phase 2.
        title: the figure's title.

    Returns:
        The matplotlib figure, with the training loss at left and the validation mIoU (%) at right; one colour
        per run in both panels (phase 1 blue, phase 2 orange, the control green), and one marker.
    """
    from ..engine.report import plot_history

    end = max((r["iteration"] for r in phase1), default=0)
    fig = plot_history(list(phase1), title=title)
    a, b = fig.axes[:2]
    # one colour per run in both panels (plot_history draws loss and mIoU in two colours)
    for line in (a.lines[0], b.lines[0]):
        line.set_color("tab:blue")
        line.set_label("phase 1 (OS 16 training, eval OS 8)")
    # phase 1's loss marked as the other runs' (plot_history leaves a long single run's loss unmarked)
    a.lines[0].set_marker(".")
    a.lines[0].set_markevery(_marker_step(len(a.lines[0].get_xdata())))
    later = [(phase2, "tab:orange", "s", "phase 2 (OS 8, frozen BN)")]
    if control is not None:
        # Okabe-Ito's bluish green: matplotlib's purple was one colour with phase 1's blue to a protanope
        later.append((control, "#009E73", "^", "control (OS 16, frozen BN)"))
    for history, colour, marker, label in later:
        shifted = [{**r, "iteration": r["iteration"] + end} for r in history]
        val2 = [r for r in shifted if r.get("split") == "val"]
        train2 = [r for r in shifted if r.get("split") == "train"]
        a.plot([r["iteration"] for r in train2], [r["loss"] for r in train2], marker=marker, markersize=3,
               markevery=_marker_step(len(train2)), color=colour, label=label)  # marked in both panels
        b.plot([r["iteration"] for r in val2], [100 * r["miou"] for r in val2], marker=marker, color=colour,
               label=label)
    for ax in (a, b):
        ax.axvline(end, color="gray", linestyle="--", linewidth=1)
        # plot_history fixed the limits to phase 1's data (mIoU from zero): take phase 2's in too
        ax.relim()
        ax.autoscale()
    b.set_ylim(0, 1.08 * b.get_ylim()[1])  # from zero, with room above the last markers
    for ax in (a, b):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_histories(histories: Mapping[str, Sequence[Mapping[str, Any]]], *, title: str = "") -> Figure:
    """Training loss and validation mIoU of several runs on shared axes, one colour and one marker per run (the
    marker tells the runs apart where colours do not: a colour-blind reader, a grey print)."""
    import matplotlib.pyplot as plt

    from ..engine.report import iteration_ticks
    from .layout import LINE_MARKERS

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for (name, history), marker in zip(histories.items(), itertools.cycle(LINE_MARKERS)):
        train = [r for r in history if r.get("split") == "train"]
        val = [r for r in history if r.get("split") == "val"]
        line, = a.plot([r["iteration"] for r in train], [r["loss"] for r in train], marker=marker, markersize=3,
                       markevery=_marker_step(len(train)), label=name)
        b.plot([r["iteration"] for r in val], [100 * r["miou"] for r in val], marker=marker, color=line.get_color(),
               label=name)
    a.set_ylabel("training loss")
    b.set_ylabel("validation mIoU (%)")
    for ax in (a, b):
        ax.set_xlabel("iteration")
        iteration_ticks(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_band_comparison(widths: Sequence[int], results: Mapping[str, Mapping[Any, Mapping[str, Any]]], *,
                         title: str = "") -> Figure:
    """mIoU inside trimap bands of growing width, one line (and marker) per model (``results`` from
    :func:`band_metrics`)."""
    import matplotlib.pyplot as plt

    from .layout import LINE_MARKERS

    fig, ax = plt.subplots(figsize=(5.2, 3.3))
    for (name, res), marker in zip(results.items(), itertools.cycle(LINE_MARKERS)):  # a marker per model, not colour alone
        ax.plot(list(widths), [100 * res[w]["miou"] for w in widths], marker=marker, label=name)
    if min(widths) > 0:
        ax.set_xscale("log", base=2)
    else:  # a band of width 0 (the boundary pixels alone, which band_metrics takes): linear up to 1 (an audit:
        ax.set_xscale("symlog", base=2, linthresh=1)  # a log axis piled 0, 1 and 4 at its right edge)
    ax.set_xticks(list(widths), [str(w) for w in widths])
    ax.set_xlabel("trimap band width w (pixels from a boundary pixel)")
    ax.set_ylabel("mIoU in the band (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_model_comparison(image: torch.Tensor, target: torch.Tensor, preds: Mapping[str, torch.Tensor],
                          palette: Sequence[Sequence[int]], *, ignore_index: int = 255,
                          class_names: Sequence[str] | None = None) -> Figure:
    """A column per picture, all panels of one size: the image above the truth, then each model's
    prediction above its errors (red; right pixels black); with ``class_names``, a legend of the class colours under them.
    (The image and truth once spanned two rows each, which left the predictions, the point of the
    figure, the smallest panels: a learner's trial.)

    Args:
        image: (3, H, W), normalised or in [0, 1].
        target: (H, W) class indices, ``ignore_index`` where unlabelled.
        preds: model name -> (H, W) class indices.
        palette: an RGB triple (0-255) per class.
        ignore_index: the label that is neither right nor wrong.
        class_names: names for the legend (none without them).
    """
    import matplotlib.pyplot as plt

    from ..inference import ERRORS_TITLE, error_map
    from .images import colorize, display_rgb
    n = len(preds)
    fig = plt.figure(figsize=(2.7 * (n + 1), 5.6))
    grid = fig.add_gridspec(2, n + 1)  # the image above the truth, then a column per model
    scene = [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0])]
    scene[0].imshow(display_rgb(image))
    scene[0].set_title("image", fontsize=9)
    scene[1].imshow(colorize(target, palette, ignore_index), interpolation="nearest")
    scene[1].set_title("truth", fontsize=9)
    predicted = []
    for j, (name, pred) in enumerate(preds.items(), start=1):
        top, bottom = fig.add_subplot(grid[0, j]), fig.add_subplot(grid[1, j])
        top.imshow(colorize(pred, palette, ignore_index), interpolation="nearest")
        top.set_title(name, fontsize=9)
        bottom.imshow(error_map(pred, target, ignore_index), interpolation="nearest")
        scored = target.cpu() != ignore_index  # ignored pixels are neither right nor wrong
        wrong = float((pred.cpu() != target.cpu())[scored].float().mean()) if bool(scored.any()) else 0.0
        bottom.set_title(f"{ERRORS_TITLE}\n{100 * wrong:.1f}% of scored pixels", fontsize=8)
        predicted += [top, bottom]
    for ax in scene + predicted:
        ax.set_xticks([])
        ax.set_yticks([])
    if class_names is not None:
        from .data import class_legend

        fig.tight_layout(rect=(0, class_legend(fig, class_names, palette), 1, 1))
    else:
        fig.tight_layout()
    return fig


def learnability_table(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of the learnability record (``benchmarks/learnability.py``): one per candidate, with what
    it tests, the validation mIoU (%) reached after each training budget (minutes); for the last
    budget the iterations, the lowest class IoU other than wire (with the class) and the wire IoU,
    the per-class targets of the training chapters; then its scenes, model, optimiser and
    resolution. The results come first so that a page too narrow for the whole table shows them."""
    from ..data.classes import PROCEDURAL

    res = record["results"]
    rows = []
    for name, cand in res["candidates"].items():
        cfg = cand["config"]
        row: dict[str, Any] = {"candidate": name, "what": cand.get("what", "")}
        for snap in cand["snapshots"]:
            row[f"{snap['minutes']:g} min mIoU (%)"] = round(100 * snap["miou"], 1)
        if cand["snapshots"]:
            last = cand["snapshots"][-1]
            row[f"iterations in {last['minutes']:g} min"] = last["iterations"]
            names = PROCEDURAL.class_names
            others = [(iou, k) for k, iou in enumerate(last["iou"])
                      if names[k] != "wire" and not math.isnan(iou)]  # NaN: a class absent from the scenes
            worst_iou, worst = min(others)
            row[f"weakest class other than wire, IoU at {last['minutes']:g} min (%)"] = f"{100 * worst_iou:.1f} ({names[worst]})"
            row[f"wire IoU at {last['minutes']:g} min (%)"] = round(100 * last["iou"][names.index("wire")], 1)
        row.update({
            "scenes": cfg["difficulty"], "model": f"{'v3+' if cfg['model'] == 'deeplabv3plus' else 'v3'} / {cfg['backbone']}",
            "optimiser": f"{cfg['optimizer']} {cfg['lr']:g}", "image / crop": f"{cfg['image_size']} / {cfg['crop_size']}",
        })
        rows.append(row)
    return rows


def class_weights_table(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of the class-weights record (``benchmarks/class_weights.py``): one for the mIoU, then
    one per class, with the class's median-frequency weight, its IoU (%) averaged over the seeds
    with plain and with weighted cross-entropy, the mean per-seed difference (points) with its
    95 % Student's t interval over the seeds, and whether that interval excludes zero (a finding). The
    table's rows are many comparisons, each judged at 95 % alone: ``"holds after Holm"`` says whether a
    finding still holds after Holm's correction over the table's rows (:func:`deeplab_edu.findings.holm` of the
    paired t tests over the seeds, :func:`~deeplab_edu.findings.seed_p_value`; ``"n/a"`` where the row is no
    finding), and ``"p"`` gives the test's p-value alone (``None`` with one seed).

    Raises:
        KeyError: ``record`` is not such a record (no ``results.median_frequency_minus_none``).
    """
    from ..findings import HOLM_COLUMN, holm, seed_p_value

    res = record["results"]
    diffs, runs = res["median_frequency_minus_none"], res["runs"]
    weights = next(iter(runs["median_frequency"].values()))["class_weights"]

    def mean(arm: str, c: int | None) -> float:
        """The mIoU (``c`` None) or class ``c``'s IoU, in %, averaged over the arm's seeds."""
        values = [float(run["miou"] if c is None else run["iou"][c]) for run in runs[arm].values()]
        return 100 * sum(values) / len(values)

    rows = []
    for c, name in [(None, "mIoU"), *enumerate(res["class_names"])]:
        entry = diffs[name]
        interval = entry.get("interval_95")  # none with one seed
        rows.append({"class": name, "weight": None if c is None else f"{weights[c]:.2f}",
                     "plain (%)": f"{mean('none', c):.1f}", "weighted (%)": f"{mean('median_frequency', c):.1f}",
                     "difference (points)": f"{100 * entry['mean']:+.1f}",
                     "95 % interval over seeds": interval and f"{100 * interval[0]:+.1f} to {100 * interval[1]:+.1f}",
                     "finding": "yes" if entry.get("excludes_zero") else "no",
                     "p": seed_p_value(entry.get("differences", []))})
    for row, p_holm in zip(rows, holm([r["p"] for r in rows])):
        row[HOLM_COLUMN] = "n/a" if row["finding"] == "no" else "yes" if p_holm < 0.05 else "no"
        row["p"] = None if math.isnan(row["p"]) else f"{row['p']:.3f}" if row["p"] >= 0.001 else "< 0.001"
    return rows
