"""The papers' findings, measured over seeds with bootstrap intervals (chapter 10).

Each finding of the DeepLab papers is a comparison of two *arms*, trained with the course's ``cpu``
recipe (``deeplab_edu/presets/cpu.yaml``) and differing in one setting (group g: two
fine-tunings of the same run that differ in one setting), each evaluated in a
*view* (an inference strategy; for DeepLab v2 also the dense CRF):

====  =========================================  ==========================================
key   comparison                                 paper
====  =========================================  ==========================================
a     training output stride 32 -> 16 -> 8       DeepLabv3 Table 1
b     evaluation at OS 16 -> 8, then MS + flip   DeepLabv3 Table 6
c     image pooling off -> on                    DeepLabv3 Table 5 (here: boat IoU, car/boat)
d     decoder off -> on (v3 sep. ASPP -> v3+)    DeepLabv3+ Table 3 and Fig. 5 (wires, trimap)
e     multi-grid (1, 1, 1) -> (1, 2, 4)          DeepLabv3 Table 5
f     DeepLab v2 without -> with the dense CRF   DeepLab v2 (CRF rows); f3, f4: a control
g     phase 2 at OS 16 (control) -> at OS 8      DeepLabv3 sec. 4.1 (its phase 2; no control)
====  =========================================  ==========================================

Group g is the course's own experiment around a step of the paper's recipe: the paper fine-tunes
at output stride 8 before its test-server submission and compares it with nothing; its two arms
(:data:`PHASE2_ARMS`) fine-tune a trained ``v3`` run instead of training from scratch. Findings f3
and f4 are a control of the course's too: the same DeepLab v2 and CRF, the CRF shown the image
with its objects recoloured at random, a colour per class or one per object
(:func:`~deeplab_edu.crf_eval.recolour_objects`): what the CRF gains from like-coloured objects of one class.

Every arm is trained with several seeds and every model is scored on the same validation scenes;
one confusion matrix is kept *per scene* (whole image and trimap bands), so that the statistics
can resample both sources of variation:

- :func:`seed_values`: the metric of each seed on all scenes (reported as mean +- sd);
- :func:`bootstrap_difference`: a paired bootstrap of (variant - baseline). Each replicate draws
  seeds with replacement (the same seed indices for both arms: seed ``k`` of both arms shares its
  data order) and scenes with replacement (the same scenes for both arms), pools the drawn
  matrices and computes the metric: the 2.5 and 97.5 percentiles are the 95 % interval;
- :func:`seed_interval`: Student's t interval of the mean per-seed difference. With three seeds the
  bootstrap has only ten distinct seed draws, and its spread of the seed mean is too narrow.

A finding counts as *reproduced* only when both intervals exclude zero in the paper's direction; with one
seed there is no interval over seeds, and no verdict either way. Each comparison is judged at 95 % alone,
so about one in twenty comparisons without an effect is still called a finding: :func:`findings_table` also
says whether each finding holds after Holm's step-down correction (:func:`holm`) over its table, from the
paired t test over seeds (:func:`seed_p_value`).

:func:`run_findings` trains (or reuses, :func:`~deeplab_edu.engine.runs.train_or_load`) every run
and evaluates it; ``benchmarks/findings.py`` calls it and writes the record that chapter 10 reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .choices import is_whole
from .data.classes import BOAT, CAR, WIRE

__all__ = [
    "ARMS", "PHASE2_ARMS", "PHASE2_SETTINGS", "VIEWS", "FINDINGS", "BAND_WIDTHS", "Finding", "View", "arm_overrides", "evaluate_views",
    "miou", "class_iou", "confusion_share", "metric", "metric_label", "shown_rows", "seed_values", "bootstrap_difference", "seed_interval", "seed_prediction_interval",
    "seed_p_value", "holm", "family_p_values", "verdict", "joint_verdict", "CRF_SEARCH_SCENES", "CRF_GRID",
    "measurable", "findings_table", "SHOWN_COLUMNS", "HOLM_COLUMN", "ONE_SEED_VERDICT", "removed_errors", "scene_confusions", "tune_crf", "run_dir", "run_findings", "train_runs", "runs_provenance", "RecordedFindings", "load_findings",
]

#: Trimap band widths kept per scene: pixels within ``w`` pixels (chessboard) of a boundary pixel, the
#: papers' "trimap width" (:func:`~deeplab_edu.metrics.trimap_target`; ``2 w + 2`` pixels across a straight edge).
BAND_WIDTHS = (1, 4)

#: How many *training* scenes ``benchmarks/findings.py`` chooses the CRF's parameters on (:func:`tune_crf`).
CRF_SEARCH_SCENES = 25

#: The grid :func:`tune_crf` searches by default: the bilateral kernel's weight ``w1`` and its widths
#: ``theta_alpha`` (pixels) and ``theta_beta`` (0-255 RGB units), the three DeepLab v2 searches (sec. 4.1.1).
#: Wide, because on the course's scenes the best kernels reach across most of the 128-pixel scene with a
#: large weight, where mIoU levels off (``results/findings_crf_cpu.json``);
#: ``results/findings_cpu.json`` searched w1 (3, 5), theta_alpha (5, 10, 20, 40) and theta_beta (3, 5, 10)
#: and chose the largest of each.
#: ``benchmarks/findings.py``'s ``--crf-*`` flags choose another grid.
CRF_GRID: dict[str, tuple[float, ...]] = {
    "w_bilateral": (5.0, 10.0, 20.0, 40.0, 80.0, 160.0), "theta_alpha": (20.0, 40.0, 80.0, 160.0, 320.0),
    "theta_beta": (5.0, 10.0, 20.0, 40.0)}

#: The source of the image-pooling findings: the paper's multi-grid unit rates (1, 2, 4) give block-4 rates
#: (2, 4, 8) at output stride 16; without multi-grid, ours are torchvision's (1, 2, 2) there.
_TABLE5_POOLING = ("DeepLabv3 Table 5 (its block-4 rates (2, 4, 8) at OS 16, multi-grid (1, 2, 4); "
                   "ours: torchvision's (1, 2, 2))")

#: The source and note of the findings f3 and f4, a control no paper runs.
_CRF_COLOURS = "the course's control of the CRF's colour term; no paper runs it"
_CRF_COLOURS_NOTE = ("both views show the CRF, not the network, the scene with every object recoloured at random "
                     "(crf_eval.recolour_objects): the baseline gives a class's objects one colour, the variant each "
                     "object its own (objects of different classes get independent colours in both); if the CRF "
                     "gains from like-coloured objects of one class, the variant scores lower")

#: Arm -> settings that differ from the ``cpu`` preset (DeepLabv3+ on tiny_resnet).
ARMS: dict[str, dict[str, Any]] = {
    "v3": {"model": "deeplabv3"},
    "v3+": {"model": "deeplabv3plus"},
    # the decoder alone: the course's v3+ makes the 3x3 convolutions of its ASPP *and* decoder
    # depthwise-separable (the paper's "SC"); this DeepLabv3 has v3+'s separable ASPP, so that against
    # v3+ only the decoder differs (a v3+ with regular convolutions would do the same at several
    # times the CPU cost: its regular decoder convolutions run at stride 4)
    "v3, separable ASPP": {"model": "deeplabv3", "model_kwargs": {"separable": True}},
    "v3, train OS 8": {"model": "deeplabv3", "output_stride": 8, "eval_output_stride": 8},
    "v3, train OS 32": {"model": "deeplabv3", "output_stride": 32, "eval_output_stride": 32},
    "v3, no image pooling": {"model": "deeplabv3", "model_kwargs": {"image_pooling": False}},
    "v3, multi-grid (1, 1, 1)": {"model": "deeplabv3", "model_kwargs": {"multi_grid": [1, 1, 1]}},
    "v3, multi-grid (1, 2, 4)": {"model": "deeplabv3", "model_kwargs": {"multi_grid": [1, 2, 4]}},
    "v2": {"model": "deeplabv2", "output_stride": 8, "eval_output_stride": 8},
    # phase 2 of DeepLabv3's recipe and its control (PHASE2_ARMS): settings from the "v3" run of the seed
    "v3, phase 2 (OS 8)": {"model": "deeplabv3", "after": "v3", "output_stride": 8, "freeze_bn": True},
    "v3, phase 2 at OS 16": {"model": "deeplabv3", "after": "v3", "output_stride": 16, "freeze_bn": True},
}

#: The arms that fine-tune the ``v3`` run of the same seed, as chapter 08 does
#: (:func:`deeplab_edu.viz.training.phase2_run`: frozen batch norm, a seventh of the learning rate,
#: the profile's phase-2 length), with the output stride they train at: 8 is DeepLabv3's phase 2
#: (sec. 4.1), 16 its control (as long, as frozen, only the stride differs). Their ``ARMS`` entry
#: describes them; :func:`arm_overrides` computes their settings.
PHASE2_ARMS: dict[str, int] = {"v3, phase 2 (OS 8)": 8, "v3, phase 2 at OS 16": 16}


@dataclass(frozen=True)
class View:
    """How a trained model is evaluated: output stride (``None``: the run's evaluation stride),
    input scales, flip, and whether the dense CRF refines the probabilities; ``crf_colours``
    (``"object"`` or ``"class"``) shows the CRF the image with its objects recoloured
    (:func:`~deeplab_edu.crf_eval.recolour_objects`; the network sees the image as drawn).

    Raises:
        ValueError: ``crf_colours`` is set without ``crf``, or is neither ``"object"`` nor ``"class"``.
    """

    output_stride: int | None = None
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    crf: bool = False
    crf_colours: Literal["object", "class"] | None = None

    def __post_init__(self) -> None:
        if self.crf_colours is not None and (not self.crf or self.crf_colours not in ("object", "class")):
            raise ValueError(f"crf_colours={self.crf_colours!r} needs crf=True and 'object' or 'class'")


#: View name -> view.
VIEWS: dict[str, View] = {
    "eval OS 8": View(output_stride=8),
    "eval OS 16": View(output_stride=16),
    "eval OS 32": View(output_stride=32),
    "OS 8 + MS + flip": View(output_stride=8, scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), flip=True),
    "OS 8 + CRF": View(output_stride=8, crf=True),
    "OS 8 + CRF, colours per class": View(output_stride=8, crf=True, crf_colours="class"),
    "OS 8 + CRF, colours per object": View(output_stride=8, crf=True, crf_colours="object"),
}


@dataclass(frozen=True)
class Finding:
    """One comparison: ``variant`` minus ``baseline`` ((arm, view) pairs) on ``metric``.

    ``paper`` holds the paper's (baseline, variant) values of its own metric (mIoU on PASCAL VOC
    2012 val) and ``source`` where they are printed; ``direction`` is the sign the paper found.
    """

    key: str
    title: str
    baseline: tuple[str, str]
    variant: tuple[str, str]
    metric: str
    source: str
    paper: tuple[float, float] | None
    direction: int = 1
    note: str = ""


#: The findings chapter 10 measures, one :class:`Finding` each (the table above).
FINDINGS: list[Finding] = [
    Finding("a1", "training output stride 32 -> 16", ("v3, train OS 32", "eval OS 32"), ("v3", "eval OS 16"),
            "miou", "DeepLabv3 Table 1 (ResNet-50 + block7, no ASPP)", (70.06, 73.88),
            note="the paper does not say at which stride it evaluated; we evaluate at the training stride"),
    Finding("a2", "training output stride 16 -> 8", ("v3", "eval OS 16"), ("v3, train OS 8", "eval OS 8"),
            "miou", "DeepLabv3 Table 1 (ResNet-50 + block7, no ASPP)", (73.88, 75.18),
            note="the paper does not say at which stride Table 1 evaluated; we evaluate at the training stride. "
                 "With ASPP, the paper's appendix (Table 10) found the opposite, 78.51 -> 75.62 (trained at 16 or 8, "
                 "both evaluated at 8), and puts it down to the batch of 6 that fitted at output stride 8 "
                 "(16 at 16); both our arms train with the same batch"),
    Finding("b1", "evaluate at output stride 16 -> 8", ("v3", "eval OS 16"), ("v3", "eval OS 8"),
            "miou", "DeepLabv3 Table 6", (77.21, 78.51)),
    Finding("b2", "multi-scale inputs + flip (at OS 8)", ("v3", "eval OS 8"), ("v3", "OS 8 + MS + flip"),
            "miou", "DeepLabv3 Table 6", (78.51, 79.77)),
    Finding("b3", "the whole test-time recipe: OS 16 -> OS 8 + MS + flip", ("v3", "eval OS 16"),
            ("v3", "OS 8 + MS + flip"), "miou", "DeepLabv3 Table 6", (77.21, 79.77)),
    Finding("c1", "image pooling: boat IoU", ("v3, no image pooling", "eval OS 8"), ("v3", "eval OS 8"),
            "iou:boat", _TABLE5_POOLING + " (mIoU)", (76.58, 77.21),
            note="the paper reports mIoU on VOC; car and boat are the classes only context names here"),
    Finding("c2", "image pooling: car/boat confusion", ("v3, no image pooling", "eval OS 8"), ("v3", "eval OS 8"),
            "confusion:car/boat", _TABLE5_POOLING, None, direction=-1,
            note="share of car and boat pixels given the other vehicle class; lower is better"),
    Finding("c3", "image pooling: mIoU", ("v3, no image pooling", "eval OS 8"), ("v3", "eval OS 8"),
            "miou", _TABLE5_POOLING, (76.58, 77.21)),
    Finding("d1", "decoder: mIoU", ("v3, separable ASPP", "eval OS 8"), ("v3+", "eval OS 8"),
            "miou", "DeepLabv3+ Table 3 (ResNet-101, regular convolutions; ours separable in both arms, eval OS 8)",
            (78.51, 79.35),
            note="measured at output stride 8, where this recipe's DeepLabv3 loses points (b1): part of the gain "
                 "is the decoder making up that loss; (d4) compares the two arms at 16, where the paper's own gain "
                 "is larger (77.21 -> 78.85)"),
    Finding("d2", "decoder: wire IoU", ("v3, separable ASPP", "eval OS 8"), ("v3+", "eval OS 8"),
            "iou:wire", "DeepLabv3+ Fig. 5 (boundaries)", None, note="wires are 1-3 px wide"),
    Finding("d3", "decoder: mIoU in a 1-px trimap band", ("v3, separable ASPP", "eval OS 8"), ("v3+", "eval OS 8"),
            "band1:miou", "DeepLabv3+ Fig. 5 (trimap, smallest width: +4.8 points for ResNet-101 at OS 16)", None),
    Finding("d4", "decoder at output stride 16: mIoU", ("v3, separable ASPP", "eval OS 16"), ("v3+", "eval OS 16"),
            "miou", "DeepLabv3+ Table 3 (ResNet-101, regular convolutions, eval OS 16; ours separable in both arms)",
            (77.21, 78.85),
            note="measured at the stride both arms trained at, free of (b1)'s loss, in a record of its own "
                 "(results/findings_decoder_cpu.json) that trains the two arms again and evaluates them at 8 and 16"),
    # c4-c6 and e2: the same arms at output stride 16, the stride they trained at and the paper's Table 5
    # used, free of (b1)'s loss at 8; in a record of their own (results/findings_context_cpu.json)
    Finding("c4", "image pooling at output stride 16: boat IoU", ("v3, no image pooling", "eval OS 16"),
            ("v3", "eval OS 16"), "iou:boat", _TABLE5_POOLING + " (mIoU)", (76.58, 77.21),
            note="evaluated at the stride both arms trained at, as the paper's Table 5 was"),
    Finding("c5", "image pooling at output stride 16: car/boat confusion", ("v3, no image pooling", "eval OS 16"),
            ("v3", "eval OS 16"), "confusion:car/boat", _TABLE5_POOLING, None, direction=-1,
            note="share of car and boat pixels given the other vehicle class; lower is better"),
    Finding("c6", "image pooling at output stride 16: mIoU", ("v3, no image pooling", "eval OS 16"),
            ("v3", "eval OS 16"), "miou", _TABLE5_POOLING, (76.58, 77.21)),
    Finding("e1", "multi-grid (1, 1, 1) -> (1, 2, 4)", ("v3, multi-grid (1, 1, 1)", "eval OS 8"),
            ("v3, multi-grid (1, 2, 4)", "eval OS 8"), "miou",
            "DeepLabv3 Table 5 (ASPP (6, 12, 18) without image pooling, eval OS 16; ours with it, eval OS 8)",
            (75.36, 76.58)),
    Finding("e2", "multi-grid (1, 1, 1) -> (1, 2, 4) at output stride 16", ("v3, multi-grid (1, 1, 1)", "eval OS 16"),
            ("v3, multi-grid (1, 2, 4)", "eval OS 16"), "miou",
            "DeepLabv3 Table 5 (ASPP (6, 12, 18) without image pooling, eval OS 16; ours with it)", (75.36, 76.58),
            note="evaluated at the stride both arms trained at, as the paper's Table 5 was"),
    Finding("f1", "dense CRF on DeepLab v2: mIoU", ("v2", "eval OS 8"), ("v2", "OS 8 + CRF"),
            "miou", "DeepLab v2 Table 4 (ResNet-101, ASPP, + CRF)", (76.35, 77.69)),
    Finding("f2", "dense CRF on DeepLab v2: 1-px trimap band", ("v2", "eval OS 8"), ("v2", "OS 8 + CRF"),
            "band1:miou", "DeepLab v2 Fig. 10 (trimap; no numbers printed)", None),
    # f3, f4: the course's control of why the CRF gains here, in a record of its own
    # (results/findings_crf_colour_cpu.json)
    Finding("f3", "dense CRF: objects recoloured, a colour per class -> per object",
            ("v2", "OS 8 + CRF, colours per class"), ("v2", "OS 8 + CRF, colours per object"), "miou",
            _CRF_COLOURS, None, direction=-1, note=_CRF_COLOURS_NOTE),
    Finding("f4", "dense CRF: objects recoloured, a colour per class -> per object, 1-px trimap band",
            ("v2", "OS 8 + CRF, colours per class"), ("v2", "OS 8 + CRF, colours per object"), "band1:miou",
            _CRF_COLOURS, None, direction=-1, note=_CRF_COLOURS_NOTE),
    Finding("g1", "phase 2 at output stride 8, not 16 (both evaluated at 8)", ("v3, phase 2 at OS 16", "eval OS 8"),
            ("v3, phase 2 (OS 8)", "eval OS 8"), "miou",
            "DeepLabv3 sec. 4.1 (phase 2 at OS 8 before the test server; the paper has no control)", None,
            note="the course's own control: both fine-tune the seed's v3 run for as many iterations, with frozen "
                 "batch norm and a restarted, smaller learning rate; only the training output stride differs"),
    Finding("g2", "phase 2 at 8 against its control at 16 (each evaluated at its own stride)",
            ("v3, phase 2 at OS 16", "eval OS 16"), ("v3, phase 2 (OS 8)", "eval OS 8"), "miou",
            "DeepLabv3 sec. 4.1 (phase 2 at OS 8 before the test server; the paper has no control)", None,
            note="the two fine-tuned models as each would be used: the control also at the stride it trained at"),
]


def run_dir(root: Path, arm: str, seed: int) -> Path:
    """Where run ``arm`` x ``seed`` lives under ``root``: ``root/<arm as a folder name>/seed<k>``.

    Chapters 08-10 train their runs in the same folders (``runs/course/<profile>``), so the
    chapters and ``benchmarks/findings.py`` share them.

    Raises:
        ValueError: ``arm`` is not one of :data:`ARMS`.
    """
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose one of {', '.join(ARMS)}")
    if arm in PHASE2_ARMS:  # beside the run it fine-tunes, where chapter 08 puts its phase 2
        from .viz.training import phase2_dir

        return phase2_dir(run_dir(root, ARMS[arm]["after"], seed), PHASE2_ARMS[arm])
    slug = arm.replace("+", "plus").replace(", ", "_").replace(" ", "-")
    slug = "".join(ch for ch in slug if ch.isalnum() or ch in "_-")
    return Path(root) / slug / f"seed{int(seed)}"


def runs_provenance(root: Path, arms: Sequence[str], seeds: Sequence[int]) -> dict[str, list[dict[str, Any]]]:
    """What trained each finished run under ``root``: ``{"<arm>/seed<k>": stretches}``, one entry per
    stretch of iterations (a resumed run has several) with ``commit``, ``dirty``, ``iterations``
    (``"0-800"``), ``cpu``/``gpu``, ``torch`` and ``torch_threads`` (on a CPU another number of threads sums
    in another order: the same seed then learns other weights, by about as much as another seed), from the
    run's ``metrics.json``
    (:attr:`deeplab_edu.engine.trainer.Trainer.provenance`). A run trained before runs kept their
    provenance gives ``[]``; a run not trained yet is left out.

    Raises:
        ValueError: an arm is not one of :data:`ARMS`.
    """
    from .engine.runs import read_metrics_json

    out: dict[str, list[dict[str, Any]]] = {}
    for arm in arms:
        for seed in seeds:
            path = run_dir(root, arm, seed) / "metrics.json"
            if not path.is_file():
                continue
            stretches = read_metrics_json(path).get("provenance", [])
            out[f"{arm}/seed{seed}"] = [
                {"commit": p.get("code_version", {}).get("git_commit"), "dirty": p.get("code_version", {}).get("git_dirty"),
                 "iterations": f"{p.get('from_iteration')}-{p.get('to_iteration')}",
                 "cpu": p.get("hardware", {}).get("cpu"), "gpu": p.get("hardware", {}).get("gpu"),
                 "torch": p.get("environment", {}).get("libraries", {}).get("torch"),
                 "torch_threads": p.get("hardware", {}).get("torch_threads")}
                for p in stretches]
    return out


#: The settings a phase-2 arm takes from :func:`~deeplab_edu.viz.training.phase2_run`, which the
#: caller's overrides of :func:`arm_overrides` do not replace (they apply to the run it fine-tunes).
PHASE2_SETTINGS = frozenset({"iterations", "eval_every", "ckpt_every", "warmup_iters", "init_from", "freeze_bn",
                             "output_stride", "lr", "atrous_rates"})


def arm_overrides(arm: str, seed: int, root: Path | None = None, preset: str = "cpu",
                  **overrides: Any) -> dict[str, Any]:
    """Engine settings of ``arm`` with ``seed`` (on top of ``preset``), with ``overrides`` on top.

    A phase-2 arm (:data:`PHASE2_ARMS`) starts from the checkpoint of the ``v3`` run under ``root``
    (:func:`run_dir`), so it needs ``root``; ``overrides`` apply to that run, and phase 2 keeps
    its own schedule, rate, stride and rates (:data:`PHASE2_SETTINGS`, computed from them).
    ``preset`` is then a profile name (``cpu``, ``gpu`` or ``smoke``: phase 2's length is the profile's).

    Raises:
        ValueError: ``arm`` is not one of :data:`ARMS`; a phase-2 arm without ``root``, or with a
            ``preset`` that is not a profile.
    """
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose one of {', '.join(ARMS)}")
    if arm in PHASE2_ARMS:
        if root is None:
            raise ValueError(f"arm {arm!r} fine-tunes the run {ARMS[arm]['after']!r} of its seed: pass the runs' root")
        from .viz.training import RunSpec, phase2_run

        base = ARMS[arm]["after"]
        phase1 = RunSpec(preset, run_dir(root, base, seed), arm_overrides(base, seed, **overrides))
        phase2 = phase2_run(phase1, output_stride=PHASE2_ARMS[arm], profile=preset).overrides
        return {**phase2, **{k: v for k, v in overrides.items() if k not in PHASE2_SETTINGS}}
    return {**ARMS[arm], "seed": int(seed), **overrides}


# ----------------------------------------------------------------------------- metrics on one matrix
def miou(cm: np.ndarray) -> float:
    """Mean IoU of a (C, C) confusion matrix (rows truth, columns prediction), as a fraction; classes
    absent from both are left out, as :class:`deeplab_edu.metrics.ConfusionMatrix` does, and an
    empty matrix gives NaN."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    valid = union > 0
    return float((tp[valid] / union[valid]).mean()) if valid.any() else float("nan")


def _class_index(cm: np.ndarray, *classes: int) -> None:
    """Raise a ValueError where a class is not a row of ``cm`` (a negative one counted from the end: an audit)."""
    for k in classes:
        if not 0 <= k < cm.shape[0]:
            raise ValueError(f"class {k} is not one of the matrix's {cm.shape[0]} classes (0..{cm.shape[0] - 1})")


def class_iou(cm: np.ndarray, k: int) -> float:
    """IoU of class ``k`` (nan when neither truth nor prediction has it).

    Raises:
        ValueError: ``k`` is not a class of ``cm`` (C, C).
    """
    _class_index(cm, k)
    tp = float(cm[k, k])
    union = float(cm[k, :].sum() + cm[:, k].sum()) - tp
    return tp / union if union > 0 else float("nan")


def confusion_share(cm: np.ndarray, a: int, b: int) -> float:
    """Share of the pixels of classes ``a`` and ``b`` that are predicted as the other one.

    Raises:
        ValueError: ``a`` or ``b`` is not a class of ``cm`` (C, C), or they are one class.
    """
    _class_index(cm, a, b)
    if a == b:  # an audit: (0, 0) gave 0.83, its share of right pixels halved
        raise ValueError(f"a confusion is between two classes, got class {a} twice")
    total = float(cm[a, :].sum() + cm[b, :].sum())
    return float(cm[a, b] + cm[b, a]) / total if total > 0 else float("nan")


_CLASSES = {"wire": WIRE, "car": CAR, "boat": BOAT}


def metric(name: str) -> tuple[str, Callable[[np.ndarray], float]]:
    """``(matrix key, function)`` for a metric name: ``miou``, ``iou:<class>``,
    ``confusion:car/boat``, or any of them prefixed ``band<w>:`` to score the trimap band.

    Raises:
        ValueError: ``name`` (after any ``band<w>:`` prefix) is not ``miou``, ``iou:<class>`` or
            ``confusion:<class>/<class>``; ``name`` starts with ``band`` but has no ``:`` or no width in
            whole pixels before it; or a ``confusion:`` metric does not name exactly two classes.
        KeyError: a ``<class>`` is not ``wire``, ``car`` or ``boat``.
    """
    key, given = "all", name
    if name.startswith("band"):
        if ":" not in name or not name.split(":", 1)[0][4:].isdigit():  # an audit: "band" failed to unpack,
            raise ValueError(f"metric {given!r}: a band metric is band<width>:<metric>, e.g. band1:miou")  # "bandfoo" passed
        key, name = name.split(":", 1)
    if name == "miou":
        return key, miou
    if name.startswith("iou:"):
        k = _CLASSES[name[4:]]
        return key, lambda cm: class_iou(cm, k)
    if name.startswith("confusion:"):
        pair = name[10:].split("/")
        if len(pair) != 2:
            raise ValueError(f"metric {given!r}: a confusion names two classes, e.g. confusion:car/boat")
        a, b = (_CLASSES[c] for c in pair)
        return key, lambda cm: confusion_share(cm, a, b)
    raise ValueError(f"unknown metric {given!r}: use miou, iou:<class> or confusion:<class>/<class>, optionally "
                     "prefixed band<width>:")


def metric_label(name: str) -> str:
    """A metric name as a reader says it: ``miou`` -> ``"mIoU"``, ``iou:wire`` -> ``"wire IoU"``,
    ``confusion:car/boat`` -> ``"car/boat confusion"``, ``band1:miou`` -> ``"mIoU in the 1-px trimap band"``;
    any other name is returned unchanged."""
    band = ""
    if name.startswith("band") and ":" in name:
        prefix, name = name.split(":", 1)
        band = f" in the {prefix[4:]}-px trimap band"
    if name == "miou":
        name = "mIoU"
    elif name.startswith("iou:"):
        name = f"{name[4:]} IoU"
    elif name.startswith("confusion:"):
        name = f"{name[10:]} confusion"
    return name + band


def shown_rows(rows: Sequence[Mapping[str, Any]], *, holm: bool = False) -> list[dict[str, Any]]:
    """Rows of :func:`findings_table` (or of a record) as the book shows them: the
    :data:`SHOWN_COLUMNS` in that order, the metric named as a reader says it (:func:`metric_label`).

    ``holm`` adds :data:`HOLM_COLUMN` after the verdict. Holm's family is the rows of one
    :func:`findings_table` call, so show it only for a table that is the whole family a reader judges
    (chapter 10's main table): a table of a few rows passes a row that the record's whole table does not.
    A row that predates the column (a record's) shows ``None`` there."""
    columns = SHOWN_COLUMNS if not holm else _HOLM_SHOWN_COLUMNS
    return [{k: metric_label(r[k]) if k == "metric" else r.get(k) for k in columns} for r in rows]


# ----------------------------------------------------------------------------- statistics over seeds
def seed_values(cms: np.ndarray, fn: Callable[[np.ndarray], float]) -> np.ndarray:
    """The metric of each seed over all scenes; ``cms`` is (seeds, scenes, C, C)."""
    return np.array([fn(c.sum(0)) for c in cms])


def bootstrap_difference(base: np.ndarray, variant: np.ndarray, fn: Callable[[np.ndarray], float], *,
                         n_boot: int = 2000, seed: int = 0, level: float = 0.95,
                         return_samples: bool = False) -> Any:
    """Paired bootstrap of ``fn(variant) - fn(base)``: returns (observed difference, low, high).

    ``base`` and ``variant`` are per-scene matrices (seeds, scenes, C, C) of the same scenes and
    seed indices. Each replicate resamples seed indices and scene indices with replacement (the
    same for both arms) and pools the drawn matrices before computing ``fn``. With
    ``return_samples`` the ``n_boot`` replicate differences come fourth.

    Raises:
        ValueError: the two arrays differ in shape or are not (seeds, scenes, C, C), ``n_boot`` is below 1, or
            ``level`` is not a fraction in (0, 1).
    """
    if base.shape != variant.shape or base.ndim != 4:
        raise ValueError(f"need two (seeds, scenes, C, C) arrays of one shape, got {base.shape} and {variant.shape}")
    _check_level(level)
    if not is_whole(n_boot) or n_boot < 1:
        raise ValueError(f"n_boot must be a whole number of replicates, at least 1, got {n_boot!r}")
    s, n = base.shape[:2]
    observed = fn(variant.sum((0, 1))) - fn(base.sum((0, 1)))
    rng = np.random.default_rng(seed)
    # a replicate's pooled matrix is sum_s sum_n w_s c_n M[s, n]: w_s, c_n count the draws of seed s, scene n
    diffs = np.empty(n_boot)
    for r in range(n_boot):
        seeds = rng.integers(0, s, s)
        scenes = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        w = np.bincount(seeds, minlength=s).astype(np.float64)
        pooled_b = np.einsum("s,n,snij->ij", w, scenes, base, optimize=True)
        pooled_v = np.einsum("s,n,snij->ij", w, scenes, variant, optimize=True)
        diffs[r] = fn(pooled_v) - fn(pooled_b)
    alpha = (1 - level) / 2
    lo, hi = np.nanquantile(diffs, [alpha, 1 - alpha])
    if return_samples:
        return float(observed), float(lo), float(hi), diffs
    return float(observed), float(lo), float(hi)


def seed_interval(differences: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student's t interval of the mean of per-seed differences (one value per seed, any unit).

    The paired bootstrap draws seeds with replacement: with three seeds it has only ten distinct
    draws, its spread of the seed mean is too small (resampling n values gives a variance (n - 1) / n
    of the sample's, which is itself a rough estimate from three values), and it lacks the heavy
    tails that t gives an estimate from so few. This interval uses the seeds alone, with
    ``len(differences) - 1`` degrees of freedom (t = 4.30 for three seeds at 95 %).

    Raises:
        ValueError: fewer than two seeds, or ``level`` is not a fraction in (0, 1).
    """
    d = _at_least_two(differences)
    half = _t(level, d.size) * d.std(ddof=1) / np.sqrt(d.size)
    return float(d.mean() - half), float(d.mean() + half)


def seed_prediction_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Where one more seed of the same recipe should land: Student's t prediction interval
    ``mean +- t * s * sqrt(1 + 1 / n)`` of ``n`` per-seed values (any unit), ``n - 1`` degrees of
    freedom. Wider than :func:`seed_interval`, which is about the mean of the seeds, not a new one.

    Raises:
        ValueError: fewer than two seeds, or ``level`` is not a fraction in (0, 1).
    """
    v = _at_least_two(values)
    half = _t(level, v.size) * v.std(ddof=1) * np.sqrt(1 + 1 / v.size)
    return float(v.mean() - half), float(v.mean() + half)


def seed_p_value(differences: Sequence[float]) -> float:
    """Two-sided p-value of the paired t test over seeds: does the mean of the per-seed differences (one
    value per seed, any unit) differ from zero? The test behind :func:`seed_interval` (its interval excludes
    zero exactly when this is below 0.05 at ``level`` 0.95), with ``len(differences) - 1`` degrees of
    freedom; :func:`holm` corrects a table of them for its many comparisons. NaN with fewer than two seeds
    or when every seed differs by the same amount (no spread to test against: the t interval has no width),
    up to float rounding: a spread of at most ``1e-9 * max(1, |mean|)`` counts as none (``0.1 + 0.2``, 0.3 and
    0.3 would otherwise give p = 1e-32).
    """
    from scipy import stats

    d = np.asarray(differences, dtype=np.float64)
    if d.size < 2 or _no_width(float(d.max() - d.min()), float(d.mean())):
        return float("nan")
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def _no_width(width: float, centre: float) -> bool:
    """Whether a spread (or an interval's width) of ``width`` around ``centre`` is none, up to float rounding.
    NaN counts as none: it measures nothing."""
    return not width > 1e-9 * max(1.0, abs(centre))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (one per comparison of a table): the ``k``-th
    smallest of ``m`` is multiplied by ``m - k + 1``, kept at least as large as the one before it and at most 1.
    A comparison holds at 5 % over the whole family when its adjusted p-value is below 0.05: the chance that
    any comparison without an effect is called a finding stays at most 5 %, where judging each at 5 % alone
    calls about one in twenty of them one. A NaN value (a comparison that could not be tested: one seed, no
    spread) still counts in the family, as p = 1 (leaving it out would make ``m`` smaller and the others'
    correction milder), and stays NaN in the output.

    Args:
        p_values: the family's p-values (m,), fractions in [0, 1] or NaN.

    Returns:
        The adjusted p-values (m,), in the order given.
    """
    p = np.asarray(p_values, dtype=np.float64)
    tested = np.where(np.isnan(p), 1.0, p)  # an untested comparison is one of the m: conservatively, p = 1
    adjusted = np.empty(p.shape)
    running = 0.0
    for k, i in enumerate(np.argsort(tested, kind="stable")):
        running = max(running, min(1.0, (p.size - k) * tested[i]))
        adjusted[i] = running
    adjusted[np.isnan(p)] = np.nan
    return adjusted


def _at_least_two(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        raise ValueError(f"need at least two seeds for an interval over seeds, got {v.size}")
    return v


def _check_level(level: float) -> None:
    """A confidence level is a fraction (an audit: level=95 gave (nan, nan), read as "not resolved")."""
    if not 0 < level < 1:
        raise ValueError(f"level is a fraction in (0, 1), e.g. 0.95 for 95 %, got {level!r}")


def _t(level: float, n: int) -> float:
    from scipy import stats

    _check_level(level)
    return float(stats.t.ppf(0.5 + level / 2, n - 1))


def verdict(low: float, high: float, direction: int) -> str:
    """``"reproduced"`` when the interval ``[low, high]`` excludes 0 in the paper's direction
    (``direction`` +1: the variant should be higher, -1: lower), ``"opposite"`` when it excludes 0 the
    other way, else ``"not resolved"``. An interval with an endpoint at exactly 0 does not exclude
    it (strict inequalities): ``"not resolved"``."""
    if direction * low > 0 and direction * high > 0:
        return "reproduced"
    if direction * low < 0 and direction * high < 0:
        return "opposite"
    return "not resolved"


def joint_verdict(bootstrap: tuple[float, float], seeds: tuple[float, float], direction: int) -> str:
    """:func:`verdict` of the span of the bootstrap interval and the interval over seeds
    (:func:`seed_interval`): ``"reproduced"`` (or ``"opposite"``) only when both exclude zero on
    the same side. An interval with a NaN end (none over one seed) excludes nothing: ``"not resolved"``. Nor
    does an interval over seeds of no width (every seed differed by as much, up to float rounding: see
    :func:`seed_p_value`): it says nothing about how far another seed could land, so it is no evidence
    (chapter 02 says so of its extents in steps of 2 px)."""
    ends = (*bootstrap, *seeds)
    if any(np.isnan(v) for v in ends):  # min() and max() would pass a NaN by and judge the other interval alone
        return "not resolved"
    if _no_width(seeds[1] - seeds[0], (seeds[0] + seeds[1]) / 2):
        return "not resolved"
    return verdict(min(bootstrap[0], seeds[0]), max(bootstrap[1], seeds[1]), direction)


def measurable(matrices: Mapping[str, Any], findings: Sequence[Finding] = FINDINGS) -> list[Finding]:
    """The ``findings`` whose two (arm, view) pairs have matrices in ``matrices`` (keys as
    :func:`findings_table` reads them): a record made before an arm existed, or with ``--arms``,
    measures only these."""
    return [f for f in findings
            if {f"{arm}|{view}|{metric(f.metric)[0]}" for arm, view in (f.baseline, f.variant)} <= set(matrices)]


#: The column of :func:`findings_table` that says whether a finding holds after Holm's correction over its table.
HOLM_COLUMN = "holds after Holm"

#: The verdict of a comparison measured with one seed: no interval over seeds, so no verdict either way.
ONE_SEED_VERDICT = "needs at least two seeds"

#: The columns of :func:`findings_table` that the book shows, in the order it shows them: the verdict
#: right after the difference and the two intervals it is read from, so that a page too narrow for the
#: whole table still shows it; the paper's numbers and their source last. Without :data:`HOLM_COLUMN`, which
#: :func:`shown_rows` adds only when asked (``holm=True``): Holm's family is the rows of one table.
SHOWN_COLUMNS = ("finding", "metric", "baseline (%)", "variant (%)", "difference (points)", "95% interval",
                 "95% interval over seeds", "verdict", "paper (mIoU %)", "source")
_HOLM_SHOWN_COLUMNS = (*SHOWN_COLUMNS[:SHOWN_COLUMNS.index("verdict") + 1], HOLM_COLUMN,
                       *SHOWN_COLUMNS[SHOWN_COLUMNS.index("verdict") + 1:])


def _arm_values(matrices: Mapping[str, np.ndarray], f: Finding,
                scenes: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A finding's per-scene matrices (baseline, variant; (seeds, scenes, C, C)) and its metric per seed in %."""
    key, fn = metric(f.metric)
    a = np.asarray(matrices[f"{f.baseline[0]}|{f.baseline[1]}|{key}"], dtype=np.float64)
    b = np.asarray(matrices[f"{f.variant[0]}|{f.variant[1]}|{key}"], dtype=np.float64)
    if scenes is not None:
        a, b = a[:, :scenes], b[:, :scenes]
    return a, b, 100 * seed_values(a, fn), 100 * seed_values(b, fn)


def family_p_values(matrices: Mapping[str, np.ndarray], findings: Sequence[Finding] = FINDINGS, *,
                    scenes: int | None = None) -> dict[str, tuple[float, float]]:
    """Each finding's p-value over seeds (:func:`seed_p_value`) and its :func:`holm` adjustment over
    ``findings`` as one family, keyed by the finding's key (``"b1"``): the ``_p`` and ``_p_holm`` of
    :func:`findings_table` without its bootstrap (milliseconds instead of seconds), for a page that
    quotes a few rows of a table but judges them in the whole table's family (chapter 08 quotes b1 of
    chapter 10's sixteen). Arguments as :func:`findings_table`'s; a KeyError names a missing arm."""
    p = [seed_p_value(vb - va) for va, vb in (_arm_values(matrices, f, scenes)[2:] for f in findings)]
    return {f.key: (float(p_one), float(p_adj)) for f, p_one, p_adj in zip(findings, p, holm(p))}


def findings_table(matrices: Mapping[str, np.ndarray], findings: Sequence[Finding] = FINDINGS, *,
                   scenes: int | None = None, n_boot: int = 2000) -> list[dict[str, Any]]:
    """One row per finding from per-scene matrices keyed ``"<arm>|<view>|<all or band<w>>"``
    (arrays (seeds, scenes, C, C)); ``scenes`` uses only the first scenes. Values in percent.

    Each row gives the paired bootstrap interval (:func:`bootstrap_difference`) and the interval
    over seeds alone (:func:`seed_interval`); its ``verdict`` is :func:`joint_verdict` of the two, whose
    span is ``_low``, ``_high``: a finding is reproduced only when both exclude zero. With one seed there
    is no interval over seeds (``"n/a"``, NaN ends) and the verdict is :data:`ONE_SEED_VERDICT`. The
    difference of the pooled matrices is ``"difference (points)"`` rounded to two decimals and ``_difference``
    as computed.

    The comparisons of one table are many, each judged at 95 % alone: :data:`HOLM_COLUMN` says, for a row
    whose verdict is ``"reproduced"`` or ``"opposite"``, whether the row's paired t test over seeds
    (:func:`seed_p_value`, ``_p``) still rejects zero after Holm's correction over the rows of this call
    (:func:`holm`, ``_p_holm``): ``"yes"`` or ``"no"``, ``"n/a"`` for any other verdict. The bootstrap interval
    is not corrected. The family is this call's rows: a call with fewer rows corrects less
    (:func:`shown_rows` shows the column only when asked)."""
    rows, family = [], family_p_values(matrices, findings, scenes=scenes)
    for f in findings:
        a, b, va, vb = _arm_values(matrices, f, scenes)
        diff, lo, hi = (100 * v for v in bootstrap_difference(a, b, metric(f.metric)[1], n_boot=n_boot))
        # the verdict needs both intervals to exclude zero: the bootstrap (seeds and scenes) and the
        # seeds alone (few seeds make the bootstrap's seed draws too alike)
        # (one seed has no interval over seeds: the bootstrap of the scenes alone is no stand-in for it)
        one_seed = len(va) < 2
        s_lo, s_hi = (float("nan"),) * 2 if one_seed else seed_interval(vb - va)
        paper = f"{f.paper[0]:.2f} -> {f.paper[1]:.2f} ({f.paper[1] - f.paper[0]:+.2f})" if f.paper else "n/a"
        rows.append({
            "finding": f"({f.key}) {f.title}", "metric": f.metric,
            "baseline (%)": f"{va.mean():.1f} ± {0 if one_seed else va.std(ddof=1):.1f}",
            "variant (%)": f"{vb.mean():.1f} ± {0 if one_seed else vb.std(ddof=1):.1f}",
            "difference (points)": round(diff, 2), "95% interval": f"[{lo:+.2f}, {hi:+.2f}]",
            "95% interval over seeds": "n/a" if one_seed else f"[{s_lo:+.2f}, {s_hi:+.2f}]",
            "paper (mIoU %)": paper, "source": f.source,
            "verdict": ONE_SEED_VERDICT if one_seed else joint_verdict((lo, hi), (s_lo, s_hi), f.direction),
            "_difference": diff, "_low": float("nan") if one_seed else min(lo, s_lo),
            "_high": float("nan") if one_seed else max(hi, s_hi), "_baseline": va.tolist(), "_variant": vb.tolist(),
        })
    for row, f in zip(rows, findings):
        row["_p"], row["_p_holm"] = family[f.key]
        row[HOLM_COLUMN] = ("n/a" if row["verdict"] not in ("reproduced", "opposite") else
                            "yes" if row["_p_holm"] < 0.05 else "no")  # NaN (seeds that all differ alike): no
    return rows


def removed_errors(matrices: Mapping[str, np.ndarray], baseline: tuple[str, str], variant: tuple[str, str],
                   widths: Sequence[int] = BAND_WIDTHS) -> dict[int, dict[str, np.ndarray]]:
    """Where the errors that ``variant`` removes lie, per seed: for each band width, the share of the
    net drop in wrong pixels (all scenes pooled) inside the band and the share of pixels it holds
    (:func:`deeplab_edu.metrics.removed_errors_by_band`; the same seeds of both arms).

    Args:
        matrices: per-scene matrices keyed ``"<arm>|<view>|<all or band<w>>"`` (arrays (seeds, scenes, C, C)).
        baseline, variant: (arm, view) pairs, as in a :class:`Finding`.
        widths: band widths the record holds.

    Returns:
        ``{w: {"removed": (seeds,), "pixels": (seeds,)}}``, fractions 0-1.

    Raises:
        KeyError: ``matrices`` lacks the whole image or a band of one of the pairs.
        ValueError: the two arms were scored on different pixels.
    """
    from .metrics import removed_errors_by_band

    def counts(arm_view: tuple[str, str], key: str) -> list[dict[str, float]]:
        cms = np.asarray(matrices[f"{arm_view[0]}|{arm_view[1]}|{key}"], dtype=np.float64).sum(1)  # over scenes
        return [{"pixels": float(cm.sum()), "wrong_pixels": float(cm.sum() - np.trace(cm))} for cm in cms]

    keys: list[Any] = ["all", *widths]
    stored = {k: "all" if k == "all" else f"band{k}" for k in keys}  # the record's key of each
    base = {k: counts(baseline, stored[k]) for k in keys}
    var = {k: counts(variant, stored[k]) for k in keys}
    per_seed = [removed_errors_by_band({k: base[k][s] for k in keys}, {k: var[k][s] for k in keys})
                for s in range(len(base["all"]))]
    return {w: {part: np.array([seed[w][part] for seed in per_seed]) for part in ("removed", "pixels")}
            for w in widths}


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_views(model: nn.Module, dataset: Any, views: Iterable[str], *, batch_size: int = 25,
                   band_widths: Sequence[int] = BAND_WIDTHS, crf_params: Any = None,
                   progress: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """Per-scene confusion matrices of ``model`` on ``dataset`` for every view in ``views``.

    Args:
        model: a segmentation model (``model(x)["out"]``); evaluated in eval mode on its own
            device, its training mode restored afterwards (even when this raises).
        dataset: ``(normalised image (3, H, W), mask (H, W))`` items of one size, with
            ``num_classes`` (C) and optionally ``ignore_index`` (default 255).
        views: names of :data:`VIEWS` (output stride, scales, flip, CRF), e.g. ``"eval OS 8"``.
        batch_size: scenes per forward pass.
        band_widths: trimap band widths in pixels (:func:`deeplab_edu.metrics.trimap_target`); each
            adds a ``"band<w>"`` matrix that counts only pixels within ``w`` of a label boundary.
        crf_params: the CRF view's :class:`~deeplab_edu.crf.CRFParams` (default
            :data:`deeplab_edu.crf.DEEPLAB_RELEASED`); it refines the view's probabilities with
            :func:`deeplab_edu.crf.mean_field` (the lattice) on the de-normalised image, recoloured
            for a view with ``crf_colours`` by the scene's ground-truth mask (a control, class 0 left as
            drawn as the procedural scenes' background; the scene's index seeds the colours).
        progress: show a progress bar.

    Returns:
        ``{view: {"all": (N, C, C), "band1": ..., ...}}``, uint32 pixel counts per scene, rows the
        truth, columns the prediction; ignored pixels are not counted.

    Raises:
        ValueError: a name in ``views`` is not one of :data:`VIEWS` (before anything is evaluated).
    """
    from .crf import DEEPLAB_RELEASED, mean_field, unary_from_probs
    from .crf_eval import recolour_objects
    from .data.transforms import denormalize
    from .inference import Strategy, eval_mode, predict_probs
    from .metrics import trimap_target

    views = list(views)
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise ValueError(f"unknown view(s) {', '.join(map(repr, unknown))}; choose from {', '.join(map(repr, VIEWS))}")
    c = int(dataset.num_classes)
    ignore = int(getattr(dataset, "ignore_index", 255))
    n = len(dataset)
    out = {v: {k: np.zeros((n, c, c), np.uint32) for k in ["all", *(f"band{w}" for w in band_widths)]}
           for v in views}
    with eval_mode(model):
        for start, images, masks in _batches(model, dataset, batch_size, progress):
            targets = {"all": masks, **{f"band{w}": trimap_target(masks, w, ignore) for w in band_widths}}
            scores: dict[Strategy, torch.Tensor] = {}  # one forward pass per strategy, shared by its views
            for v in views:
                view = VIEWS[v]
                strategy = Strategy(view.scales, view.flip, view.output_stride)  # frozen: a key
                if strategy not in scores:
                    scores[strategy] = predict_probs(model, images, strategy)
                probs = scores[strategy]
                if view.crf:
                    seen = denormalize(images.cpu())
                    if view.crf_colours is not None:  # seeded by the scene's index: every run sees the same colours
                        seen = torch.stack([recolour_objects(im, m, view.crf_colours, seed=start + i,
                                                             ignore_index=ignore)
                                            for i, (im, m) in enumerate(zip(seen, masks))])
                    probs = mean_field(unary_from_probs(probs.cpu()), seen, crf_params or DEEPLAB_RELEASED,
                                       method="approx")
                pred = probs.argmax(1).cpu()
                for key, target in targets.items():
                    out[v][key][start:start + len(masks)] = scene_confusions(pred, target, c, ignore)
    return out


def _batches(model: nn.Module, dataset: Any, batch_size: int,
             progress: bool) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(index of the first item, images (B, 3, H, W) on the model's device, masks (B, H, W))`` of
    ``dataset``, ``batch_size`` items at a time (:func:`evaluate_views`, :func:`tune_crf`)."""
    from .progress import progress_bar

    device = next(model.parameters()).device
    n = len(dataset)
    for start in progress_bar(range(0, n, batch_size), desc="evaluate", progress=progress, leave=False):
        items = [dataset[i] for i in range(start, min(n, start + batch_size))]
        yield start, torch.stack([x for x, _ in items]).to(device), torch.stack([y for _, y in items])


def scene_confusions(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = 255) -> np.ndarray:
    """One confusion matrix per scene: predictions and targets (N, H, W) of class indices ->
    (N, C, C) uint32 pixel counts, rows the truth, columns the prediction; pixels whose target is
    ``ignore_index`` are not counted.

    Raises:
        ValueError: ``pred`` and ``target`` differ in shape or are not (N, H, W), or a target (other
            than ``ignore_index``) or a counted prediction lies outside ``[0, num_classes)``
            (:func:`deeplab_edu.metrics.counted_labels`, as :class:`~deeplab_edu.metrics.ConfusionMatrix` refuses them).
        TypeError: ``pred`` or ``target`` is floating point (labels are integers).
    """
    if pred.shape != target.shape or target.ndim != 3:
        raise ValueError(f"pred and target must be (N, H, W) of one shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    if pred.is_floating_point() or target.is_floating_point():  # an audit: [0.7, 1.2] was cut to [0, 1] and
        raise TypeError(f"pred and target must hold integer labels, got {pred.dtype} and {target.dtype}: take "
                        "the scores' argmax(1) first")  # scored perfect, where ConfusionMatrix refuses them
    from .metrics import counted_labels

    c, n = int(num_classes), int(target.shape[0])
    target, pred = target.long(), pred.long()
    counted_labels(pred, target, c, ignore_index)  # the checks only: the counts below keep each scene apart
    idx = (target * c + pred).masked_fill(target == ignore_index, c * c).reshape(n, -1)
    idx = idx + (c * c + 1) * torch.arange(n, device=idx.device).view(n, 1)  # one block of counts per scene
    counts = torch.bincount(idx.flatten(), minlength=n * (c * c + 1)).reshape(n, c * c + 1)[:, : c * c]
    return counts.reshape(n, c, c).cpu().numpy().astype(np.uint32)


@torch.no_grad()
def tune_crf(model: nn.Module, dataset: Any, *, w_bilateral: Sequence[float] = CRF_GRID["w_bilateral"],
             theta_alpha: Sequence[float] = CRF_GRID["theta_alpha"],
             theta_beta: Sequence[float] = CRF_GRID["theta_beta"], batch_size: int = 25,
             progress: bool = False) -> tuple[Any, list[tuple[Any, float]]]:
    """Choose the CRF's ``w1``, ``theta_alpha`` and ``theta_beta`` by mIoU on ``dataset``, as DeepLab
    v2 cross-validates them on held-out images (sec. 4.1.1; ``w2 = 3``, ``theta_gamma = 3`` fixed).

    Use scenes the findings are *not* measured on (e.g. the training split). Returns the best
    :class:`~deeplab_edu.crf.CRFParams` and every ``(params, mIoU)`` tried (mIoU as a fraction, over
    ``dataset``'s pixels pooled), in the grid's order. A best value on the grid's edge
    (:func:`~deeplab_edu.crf_eval.grid_edges`) says a wider grid may do better. The network runs once
    per ``batch_size`` scenes (at output stride 8, as the view ``"OS 8 + CRF"``), the CRF once per grid
    point on its probabilities.

    Raises:
        ValueError: an axis of the grid is empty, or holds a value :class:`~deeplab_edu.crf.CRFParams` refuses
            (a weight below 0, a width of 0 or less).
    """
    if not (w_bilateral and theta_alpha and theta_beta):
        raise ValueError(f"every axis of the CRF grid needs a value: w_bilateral={list(w_bilateral)}, "
                         f"theta_alpha={list(theta_alpha)}, theta_beta={list(theta_beta)}")
    import itertools

    from .crf import DEEPLAB_RELEASED, mean_field, unary_from_probs
    from .data.transforms import denormalize
    from .inference import Strategy, eval_mode, predict_probs
    from .progress import progress_bar

    grid = [DEEPLAB_RELEASED.replace(w_bilateral=float(w1), theta_alpha=float(ta), theta_beta=float(tb))
            for w1, ta, tb in itertools.product(w_bilateral, theta_alpha, theta_beta)]  # a bad value fails here
    view = VIEWS["OS 8 + CRF"]
    c, ignore = int(dataset.num_classes), int(getattr(dataset, "ignore_index", 255))
    totals = np.zeros((len(grid), c, c), np.uint64)  # pixel counts over every scene, per grid point
    with eval_mode(model):
        for _, images, masks in _batches(model, dataset, batch_size, progress=False):
            # the network once per batch of scenes, its probabilities refined by every grid point's CRF
            probs = predict_probs(model, images, Strategy(view.scales, view.flip, view.output_stride))
            unary, seen = unary_from_probs(probs.cpu()), denormalize(images.cpu())
            for k, params in enumerate(progress_bar(grid, desc="CRF search", progress=progress, leave=False)):
                pred = mean_field(unary, seen, params, method="approx").argmax(1)
                totals[k] += scene_confusions(pred, masks, c, ignore).sum(0)
    tried = [(params, miou(total)) for params, total in zip(grid, totals)]
    return max(tried, key=lambda t: t[1])[0], tried


def run_findings(root: Path, seeds: Sequence[int], *, arms: Sequence[str] | None = None,
                 val_length: int = 500, preset: str = "cpu", crf_params: Any = None,
                 progress: bool = True, findings: Sequence[str] | None = None,
                 **overrides: Any) -> dict[str, np.ndarray]:
    """Train (or reuse) every arm x seed under ``root`` and evaluate the views its findings need
    (``"eval OS 8"`` for an arm no finding compares).

    ``findings`` (keys such as ``"c4"``) limits the views to those these findings need (default:
    every finding's), so that a record of a few findings does not pay for another's costly view.

    Returns the per-scene matrices keyed ``"<arm>|<view>|<key>"``, arrays (seeds, scenes, C, C).

    Raises:
        ValueError: ``findings`` names a key no finding has.
    """
    from .data import build_dataset
    from .data.transforms import eval_transform
    from .engine.runs import train_or_load

    keys = {f.key for f in FINDINGS}
    unknown = sorted(set(findings or ()) - keys)
    if unknown:
        raise ValueError(f"no finding has the key(s) {', '.join(unknown)}; the keys are {', '.join(sorted(keys))}")
    needed: dict[str, set[str]] = {}
    for f in FINDINGS:
        if findings is not None and f.key not in findings:
            continue
        for arm, view in (f.baseline, f.variant):
            needed.setdefault(arm, set()).add(view)
    arms = list(arms or ARMS)
    matrices: dict[str, list[np.ndarray]] = {}
    val = None
    for arm in arms:
        for seed in seeds:
            if arm in PHASE2_ARMS:  # the run it fine-tunes first (reused when finished)
                base = ARMS[arm]["after"]
                train_or_load(preset, out_dir=run_dir(root, base, seed), verbose=progress,
                              **arm_overrides(base, seed, preset=preset, progress=progress, **overrides))
            out_dir = run_dir(root, arm, seed)
            model, _, cfg = train_or_load(preset, out_dir=out_dir, verbose=progress,
                                          **arm_overrides(arm, seed, root, preset, progress=progress, **overrides))
            if val is None:
                val = build_dataset(cfg.dataset, "val", size=cfg.image_size, length=val_length,
                                    difficulty=cfg.difficulty, transform=eval_transform())
            views = sorted(needed.get(arm, {"eval OS 8"}))
            per_view = evaluate_views(model, val, views, crf_params=crf_params, progress=progress)
            for view, mats in per_view.items():
                for key, m in mats.items():
                    matrices.setdefault(f"{arm}|{view}|{key}", []).append(m)
    return {k: np.stack(v) for k, v in matrices.items()}


def _finished(out_dir: Path) -> bool:
    """A run whose ``metrics.json`` holds its final validation (written when ``fit`` ends)."""
    from .engine.runs import read_metrics_json

    try:
        return bool(read_metrics_json(Path(out_dir) / "metrics.json").get("final"))
    except (OSError, ValueError):
        return False


def train_runs(root: Path, seeds: Sequence[int], *, arms: Sequence[str] | None = None, preset: str = "cpu",
               wait_s: float = 3600.0, poll_s: float = 30.0, progress: bool = False,
               **overrides: Any) -> list[str]:
    """Train every missing run of ``arms`` x ``seeds`` under ``root``, seed by seed; no evaluation.

    Several processes can share the work (``benchmarks/findings.py --train-only`` started twice
    with one thread each): each skips a run another process is training (its lock is held) and a
    phase-2 arm whose ``v3`` run is not finished yet, and comes back to them. Finished runs are
    left as they are.

    Returns:
        The runs this process trained, as ``"<arm>/seed<k>"``.

    Raises:
        TimeoutError: for ``wait_s`` seconds only runs that other processes hold were left, naming them.
        ValueError: an unknown arm.
    """
    import time

    from .engine.runs import train_or_load
    from .engine.trainer import last_validation

    unknown = [a for a in arms or () if a not in ARMS]
    if unknown:
        raise ValueError(f"unknown arm(s) {', '.join(map(repr, unknown))}; choose from {', '.join(ARMS)}")
    jobs: list[tuple[str, int]] = []
    for seed in seeds:
        for arm in arms or list(ARMS):
            needed = [ARMS[arm]["after"], arm] if arm in PHASE2_ARMS else [arm]  # a phase-2 arm needs its run
            jobs.extend((a, seed) for a in needed if (a, seed) not in jobs)
    trained: list[str] = []
    done: set[tuple[str, int]] = set()  # returned by train_or_load here: finished, whatever its files say

    def finished(arm: str, seed: int) -> bool:
        return (arm, seed) in done or _finished(run_dir(root, arm, seed))

    idle_since = time.monotonic()
    while True:
        left = [(a, k) for a, k in jobs if not finished(a, k)]
        if not left:
            return trained
        for arm, seed in left:
            after = ARMS[arm].get("after")
            if finished(arm, seed) or (after and not finished(after, seed)):  # another process may have finished it
                continue
            started = time.monotonic()
            try:
                # verbose: the Trainer's lines (losses, throughput) in a long job's log; progress only drops the bar
                _, history, _ = train_or_load(preset, out_dir=run_dir(root, arm, seed), verbose=True,
                                              lock_timeout_s=0, **arm_overrides(arm, seed, root, preset,
                                                                                progress=progress, **overrides))
            except TimeoutError:  # another process trains it
                continue
            done.add((arm, seed))
            trained.append(f"{arm}/seed{seed}")
            idle_since = time.monotonic()
            final = last_validation(history)
            print(f"{arm}/seed{seed}: {idle_since - started:.0f} s"
                  + (f", validation mIoU {100 * final['miou']:.1f} %" if final else ""), flush=True)
        if time.monotonic() - idle_since > wait_s:
            waiting = [f"{a}/seed{k}" for a, k in jobs if not finished(a, k)]
            raise TimeoutError(f"for {wait_s:.0f} s only runs other processes hold (or runs that wait for them) were "
                               f"left: {', '.join(waiting)}; is another process still training them?")
        time.sleep(poll_s)


@dataclass
class RecordedFindings:
    """A findings record (``benchmarks/findings.py``) with its per-scene matrices."""

    record: dict[str, Any]
    matrices: dict[str, np.ndarray]

    @property
    def seeds(self) -> list[int]:
        """The training seeds of the recorded runs."""
        return list(self.record["results"]["seeds"])

    @property
    def scenes(self) -> int:
        """Number of validation scenes the runs were evaluated on."""
        return int(self.record["results"]["val_scenes"])

    def markdown(self) -> str:
        """The record's table as ``benchmarks/README.md`` shows it (Markdown text; values in %, as
        :func:`findings_table` computed them when the record was made; a record made before the
        interval over seeds existed shows an en dash there). ``benchmarks/findings.py`` prints it and
        a test checks that the README holds it."""
        from .viz.tables import markdown_text

        rows = [{"finding": r["finding"], "ours: baseline -> variant": f"{r['baseline (%)']} -> {r['variant (%)']}",
                 "difference": f"{r['difference (points)']:+.2f}", "95 % interval": r["95% interval"],
                 "95 % interval over seeds": r.get("95% interval over seeds"), "paper": r["paper (mIoU %)"],
                 "verdict": f"**{r['verdict']}**" if r["verdict"] == "opposite" else r["verdict"]}
                for r in self.record["results"]["table"]]
        return markdown_text(rows)

    def crf_edges(self) -> dict[str, tuple[str, float]]:
        """Where the record's CRF search chose a value on the edge of its grid.

        Returns:
            ``{parameter: (edge, last_step)}`` for each parameter whose chosen value is the ``"largest"`` or
            ``"smallest"`` of its grid (:func:`~deeplab_edu.crf_eval.grid_edges`), with ``last_step`` the
            mIoU points (on the search's scenes) by which the best CRF tried beats the best one with that
            parameter one value inside the grid: near zero, the search ended on a plateau and a wider grid
            would gain little; larger, a wider grid may find a better CRF. ``{}`` when every chosen value
            lies inside, or the record searched no CRF.
        """
        from .crf_eval import grid_edges

        chosen, searched = self.record["results"].get("crf_params"), self.record["results"].get("crf_search")
        if not chosen or not searched:
            return {}
        values = {k: sorted({float(t[k]) for t in searched}) for k in CRF_GRID}
        best = max(t["miou"] for t in searched)
        edges = {}
        for k, edge in grid_edges(chosen, values).items():
            inner = values[k][-2] if edge == "largest" else values[k][1]
            edges[k] = (edge, 100 * (best - max(t["miou"] for t in searched if float(t[k]) == inner)))
        return edges

    def describe_crf(self, plateau: float = 0.1) -> str:
        """The record's CRF search in words: the parameters it chose and, where one lies on its grid's edge
        (:meth:`crf_edges`), what the last step gained, read as a plateau when every such step gained less than
        ``plateau`` mIoU points (a wider grid would gain little) and as a search cut short otherwise. ``""``
        when the record searched no CRF."""
        chosen = self.record["results"].get("crf_params")
        if not chosen or not self.record["results"].get("crf_search"):
            return ""
        scenes = self.record["results"].get("crf_search_scenes", CRF_SEARCH_SCENES)  # older records: the constant
        text = (f"dense CRF parameters, chosen on {scenes} training scenes: w1 = {chosen['w_bilateral']:g}, "
                f"theta_alpha = {chosen['theta_alpha']:g} px, theta_beta = {chosen['theta_beta']:g}")
        edges = self.crf_edges()
        if not edges:
            return text + " (inside the grid searched)"
        label = {"w_bilateral": "w1", "theta_alpha": "theta_alpha", "theta_beta": "theta_beta"}
        at = ", ".join(f"{label[k]} at the {edge}" + (" value tried" if i == 0 else "")
                       for i, (k, (edge, _)) in enumerate(edges.items()))
        gains = [f"+{step:.2f}" if step >= 0.005 else f"+{step:.1g}" for _, step in edges.values()]
        if len(edges) > 1:
            gains = [f"{g} ({label[k]})" for g, k in zip(gains, edges)]
        which = "that parameter" if len(edges) > 1 else label[next(iter(edges))]
        reading = ("the search ends on a plateau, where a wider grid would gain little"
                   if all(step < plateau for _, step in edges.values()) else
                   "a wider grid may find a better CRF, so the CRF's gain may be understated")
        return (f"{text}\n  on the edge of the grid: {at}; the best CRF beats the best one with {which} one value "
                f"inside by {', '.join(gains[:-1]) + ' and ' if len(gains) > 1 else ''}{gains[-1]} mIoU points: "
                f"{reading}")

    def describe(self) -> str:
        """Provenance and size: command, commit, hardware, seeds, scenes."""
        from .records import describe_record

        return (f"{describe_record(self.record)} Seeds {self.seeds}, {self.scenes} validation scenes, "
                f"{self.record.get('extra', {}).get('wall_minutes', '?')} minutes for the command, which trains only "
                "the runs it does not find and then evaluates (a short time: the runs were there already; the "
                "record's extra.runs_trained_by says when each was trained).")


def load_findings(name: str = "findings_cpu") -> RecordedFindings | None:
    """The recorded findings and their matrices, or ``None`` when the record has not been made."""
    from .records import RESULTS_DIR, load_record

    try:
        record = load_record(name)
    except FileNotFoundError:
        return None
    npz = RESULTS_DIR / record["results"]["matrices_file"]
    with np.load(npz) as data:
        matrices = {k: data[k].astype(np.int64) for k in data.files}
    return RecordedFindings(record, matrices)
