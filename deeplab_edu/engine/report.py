"""Figures of a training run and of an evaluation: the learning curves and the strategy comparison."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["plot_history", "MARKED_POINTS", "plot_metric_bars", "history_from_record", "iteration_ticks"]


def iteration_ticks(ax: Any) -> None:
    """Whole-number ticks on ``ax``'s x axis (iterations): a smoke run of 4 iterations read 1.25, 1.90 (an
    audit), while a run of 30,000 keeps matplotlib's usual steps (1, 2, 2.5, 5 times a power of ten: a
    review found steps of 4,000 crowding the axis with the integer locator's default steps)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 2.5, 5, 10], integer=True, min_n_ticks=1))


def history_from_record(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The history :func:`plot_history` draws, from a training record (``deeplab-edu train --record``).

    Raises:
        ValueError: the record holds no curves (``val_miou_curve`` and ``train_loss_curve``).
    """
    results = record.get("results", {})
    if "val_miou_curve" not in results or "train_loss_curve" not in results:
        raise ValueError(f"the record of {record.get('command', '?')!r} holds no training curves "
                         "(val_miou_curve / train_loss_curve): it was not written by deeplab-edu train --record")
    return ([{"split": "train", "iteration": it, "loss": loss} for it, loss in results["train_loss_curve"]]
            + [{"split": "val", "iteration": it, "miou": miou} for it, miou in results["val_miou_curve"]])


#: Logged training losses above which :func:`plot_history` draws a thin line without markers.
MARKED_POINTS = 300


def plot_history(history: Sequence[Mapping[str, Any]] | Mapping[str, Any] | str | os.PathLike[str], *,
                 title: str = "", ax_pair: Any = None) -> Any:
    """Two panels: training loss and validation mIoU (%) against the iteration (whole-number ticks). A marker
    shows each logged loss of a short run; above :data:`MARKED_POINTS` of them (a long run: 10,000 points made a
    solid band of markers) the loss is a thin line.

    ``history`` is a run's rows (``train_or_load``'s history), what :meth:`~deeplab_edu.engine.Trainer.fit`
    returns (its ``"history"`` is drawn) or the path of a run's ``metrics.json``, which holds the same, or of
    the run's folder (its ``metrics.json``).

    Raises:
        OSError: ``history`` names a file that cannot be read.
        TypeError: ``history`` is none of these (a mapping without ``"history"``, say).
        ValueError: ``history`` names a file that is not a run's metrics
            (:func:`~deeplab_edu.engine.runs.read_metrics_json`).
    """
    import matplotlib.pyplot as plt

    if isinstance(history, (str, os.PathLike)):  # an audit: a path was "'str' object has no attribute 'get'"
        from .runs import read_metrics_json

        path = Path(history).expanduser()
        history = read_metrics_json(path / "metrics.json" if path.is_dir() else path)  # a trial: IsADirectoryError
    rows: Sequence[Mapping[str, Any]]
    if isinstance(history, Mapping):  # fit()'s result, or metrics.json's
        if not isinstance(history.get("history"), list):
            raise TypeError(f"history must be a run's rows, fit()'s result or the path of its metrics.json, got a "
                            f"{type(history).__name__} without a 'history' list (keys: {sorted(map(str, history))})")
        rows = history["history"]
    else:
        rows = history
    train = [r for r in rows if r.get("split") == "train"]
    val = [r for r in rows if r.get("split") == "val"]
    if ax_pair is None:
        fig, ax_pair = plt.subplots(1, 2, figsize=(9, 3.2))
    else:
        fig = ax_pair[0].figure
    a, b = ax_pair
    marks = {"marker": "."} if len(train) <= MARKED_POINTS else {"linewidth": 0.7}
    a.plot([r["iteration"] for r in train], [r["loss"] for r in train], color="tab:blue", **marks)
    a.set_xlabel("iteration")
    a.set_ylabel("training loss")
    b.plot([r["iteration"] for r in val], [100 * r["miou"] for r in val], marker="o", color="tab:green")
    b.set_xlabel("iteration")
    b.set_ylabel("validation mIoU (%)")
    b.set_ylim(bottom=0)  # from zero: a few points on a cut axis overstate the progress
    for ax in (a, b):
        ax.grid(alpha=0.3)
        iteration_ticks(ax)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_metric_bars(values: Mapping[str, float], *, ylabel: str = "mIoU (%)", title: str = "",
                     scale: float = 100.0) -> Any:
    """A bar per entry (label -> value in [0, 1], drawn as percent), value printed on each bar; the bars
    are grey, since the labels are often classes, whose palette colours a bar colour would echo."""
    import matplotlib.pyplot as plt

    from ..viz.layout import label_bars

    fig, ax = plt.subplots(figsize=(min(1.6 + 1.4 * len(values), 9.5), 3.2))  # at most the book's column
    labels = list(values)
    heights = [scale * values[k] for k in labels]
    bars = ax.bar(range(len(labels)), heights, color="0.55")  # grey: no class colour of any palette
    # 40 degrees: CamVid's 11 class names overlapped at 15 (an audit)
    ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_ylabel(ylabel)
    label_bars(ax, bars, [f"{h:.1f}" for h in heights], fontsize=9)
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
