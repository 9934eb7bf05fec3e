"""deeplab_edu.viz.training: the chapter-08/09 run settings, boundary-band metrics and figures."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from deeplab_edu.engine.config import load_config  # noqa: E402
from deeplab_edu.records import REPO_ROOT  # noqa: E402
from deeplab_edu.viz.training import (  # noqa: E402
    band_metrics,
    chapter_run,
    learnability_table,
    loss_decreased,
    plot_band_comparison,
    plot_histories,
    plot_model_comparison,
    plot_phases,
    runs_root,
)


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_chapter_runs_are_valid_and_phase2_follows_the_paper(profile: str, tmp_path: Path) -> None:
    p1 = chapter_run("deeplabv3", root=tmp_path, profile=profile)
    p2 = chapter_run("deeplabv3", phase=2, root=tmp_path, profile=profile)
    c1 = load_config(p1.preset, p1.overrides)
    c2 = load_config(p2.preset, p2.overrides)
    assert (c1.output_stride, c1.eval_output_stride, c1.freeze_bn) == (16, 8, False)
    assert (c2.output_stride, c2.freeze_bn, c2.init_from) == (8, True, str(p1.checkpoint))
    assert c2.lr == pytest.approx(c1.lr / 7, rel=1e-2)
    assert p1.out_dir == tmp_path / "course" / profile / "v3" / "seed0" and p1.out_dir != p2.out_dir
    # the ASPP rates double with the output stride, as set_output_stride doubles them
    from deeplab_edu.engine.config import resolve_atrous_rates

    assert resolve_atrous_rates(c2) == tuple(2 * r for r in resolve_atrous_rates(c1, warn=False))
    # the control: phase 2 at phase 1's stride and rates, everything else as phase 2, its own folder
    control = chapter_run("deeplabv3", phase=2, root=tmp_path, profile=profile, output_stride=16)
    cc = load_config(control.preset, control.overrides)
    d2, dc = c2.to_dict(), cc.to_dict()
    assert {k for k in d2 if d2[k] != dc[k]} == {"output_stride", "atrous_rates"}
    assert cc.output_stride == 16 and resolve_atrous_rates(cc) == resolve_atrous_rates(c1, warn=False)
    assert control.out_dir == p2.out_dir.with_name("seed0_phase2_os16")
    # v3+ differs from v3 in the model only
    p3 = chapter_run("deeplabv3plus", root=tmp_path, profile=profile)
    plus = load_config(p3.preset, p3.overrides)
    d1, d3 = c1.to_dict(), plus.to_dict()
    assert {k for k in d1 if d1[k] != d3[k]} == {"model"}


def test_command_line_names_every_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shlex

    from deeplab_edu.records import HIDE_PATHS_ENV

    monkeypatch.delenv(HIDE_PATHS_ENV, raising=False)
    spec = chapter_run("deeplabv3", phase=2, root=tmp_path, profile="cpu")
    cmd = spec.command()
    assert cmd.startswith("deeplab-edu train --preset cpu --model deeplabv3")
    assert "--freeze-bn" in cmd and "--output-stride 8" in cmd
    assert f"--out-dir {shlex.quote(str(spec.out_dir))}" in cmd  # a learner can paste it: the folder in full
    monkeypatch.setenv(HIDE_PATHS_ENV, "1")  # as in the book's build
    assert str(tmp_path) not in spec.command(), "the book shows a path of the machine"


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model"):
        chapter_run("deeplabv2", root=tmp_path)
    with pytest.raises(ValueError, match="phase"):
        chapter_run("deeplabv3", phase=3, root=tmp_path)
    with pytest.raises(ValueError, match="profile"):
        chapter_run("deeplabv3", root=tmp_path, profile="tpu")
    with pytest.raises(ValueError, match="output_stride"):
        chapter_run("deeplabv3", root=tmp_path, output_stride=16)  # phase 1 has the profile's stride
    with pytest.raises(ValueError, match="output_stride"):
        chapter_run("deeplabv3", phase=2, root=tmp_path, output_stride=32)


def test_runs_root_is_temporary_in_smoke_and_the_repo_folder_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPLAB_EDU_RUNS", raising=False)
    assert runs_root("cpu") == REPO_ROOT / "runs"
    smoke = runs_root("smoke")
    assert smoke.is_dir() and REPO_ROOT not in smoke.parents


def test_runs_root_follows_deeplab_edu_runs_and_warns_from_another_clone(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEEPLAB_EDU_RUNS", str(tmp_path / "shared-runs"))
    assert runs_root("cpu") == tmp_path / "shared-runs"
    monkeypatch.delenv("DEEPLAB_EDU_RUNS")
    other = tmp_path / "other-clone"
    (other / "deeplab_edu").mkdir(parents=True)
    (other / "deeplab_edu" / "__init__.py").write_text("")
    (other / "notebooks").mkdir()
    monkeypatch.chdir(other / "notebooks")  # a notebook of another clone, with this clone's package
    with pytest.warns(UserWarning, match="DEEPLAB_EDU_RUNS"):
        assert runs_root("cpu") == REPO_ROOT / "runs"


def test_a_package_installed_as_a_copy_keeps_its_runs_out_of_site_packages(tmp_path, monkeypatch) -> None:
    """A portability trial (stop 70): `pip install /path/to/deeplab-edu` (not -e) put the course's runs in
    site-packages/runs; they go to the course folder the working directory lies in, else to the working
    directory's runs/."""
    import deeplab_edu.records

    monkeypatch.delenv("DEEPLAB_EDU_RUNS", raising=False)
    site = tmp_path / "site-packages"
    (site / "deeplab_edu").mkdir(parents=True)
    monkeypatch.setattr(deeplab_edu.records, "REPO_ROOT", site)  # no pyproject.toml beside the package
    course = tmp_path / "course"
    (course / "deeplab_edu").mkdir(parents=True)
    (course / "deeplab_edu" / "__init__.py").write_text("")
    (course / "notebooks").mkdir()
    monkeypatch.chdir(course / "notebooks")
    assert runs_root("cpu") == course / "runs"
    monkeypatch.chdir(tmp_path)
    assert runs_root("cpu") == tmp_path / "runs"


class _Constant(nn.Module):
    """Predicts the label map it was given, whatever the input (an oracle for the metric)."""

    def __init__(self, masks: list[torch.Tensor], num_classes: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.masks, self.k, self.i = masks, num_classes, 0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        m = self.masks[self.i].clamp(max=self.k - 1)
        self.i += 1
        return {"out": nn.functional.one_hot(m, self.k).permute(2, 0, 1)[None].float() + 0 * self.w}


class _Scenes:
    num_classes, ignore_index = 3, 255

    def __init__(self) -> None:
        m = torch.zeros(9, 11, dtype=torch.long)
        m[2:6, 3:8] = 1
        m[0, :] = 2
        self.items = [(torch.randn(3, 9, 11), m)]  # normalised-like (a [0, 1] image is warned of)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.items[i]


def test_band_metrics_of_a_perfect_prediction() -> None:
    data = _Scenes()
    res = band_metrics(_Constant([data[0][1]], 3), data, [1, 2], output_stride=None)
    assert set(res) == {"all", 1, 2}
    assert all(res[k]["miou"] == pytest.approx(1.0) for k in res)
    assert res[1]["pixels"] < res[2]["pixels"] <= res["all"]["pixels"] == 99


def test_band_metrics_of_a_wrong_prediction_and_bad_widths() -> None:
    data = _Scenes()
    wrong = torch.zeros(9, 11, dtype=torch.long)  # background everywhere
    res = band_metrics(_Constant([wrong], 3), data, [1], output_stride=None)
    assert res["all"]["miou"] < 1 and res[1]["miou"] < res["all"]["miou"]  # the band holds the mistakes
    with pytest.raises(ValueError, match="widths"):
        band_metrics(_Constant([wrong], 3), data, [], output_stride=None)


def _history(losses: list[float], mious: list[float]) -> list[dict]:
    rows = [{"split": "train", "iteration": 10 * (i + 1), "loss": v, "images_per_s": 1.0} for i, v in enumerate(losses)]
    rows += [{"split": "val", "iteration": 20 * (i + 1), "miou": v} for i, v in enumerate(mious)]
    return rows


def test_loss_decreased() -> None:
    assert loss_decreased(_history([3, 3, 3, 1, 1, 1], [0.1]))
    assert not loss_decreased(_history([1, 1, 1, 3, 3, 3], [0.1]))
    with pytest.raises(ValueError, match="at least"):
        loss_decreased(_history([1, 2], [0.1]))


def test_figures_build() -> None:
    h1, h2 = _history([2, 1.5, 1.2], [0.1, 0.2]), _history([1.1, 1.0], [0.25])
    fig = plot_phases(h1, h2, title="t")
    assert len(fig.axes) == 2 and fig.axes[1].get_legend() is not None
    with_control = plot_phases(h1, h2, control=_history([1.2, 1.1], [0.22]))
    labels = [t.get_text() for t in with_control.axes[1].get_legend().get_texts()]
    assert labels[-1].startswith("control (OS 16") and len(with_control.axes[0].lines) == len(fig.axes[0].lines) + 1
    # one colour per run in both panels, each named in both legends
    loss, miou = ([(line.get_label(), line.get_color()) for line in ax.lines if not line.get_label().startswith("_")]
                  for ax in with_control.axes[:2])
    assert loss == miou and len(loss) == 3 and len({c for _, c in loss}) == 3
    fig2 = plot_histories({"a": h1, "b": h2})
    assert len(fig2.axes[0].lines) == 2
    band = {"x": {1: {"miou": 0.2}, 2: {"miou": 0.3}}}
    fig3 = plot_band_comparison([1, 2], band)
    assert len(fig3.axes[0].lines) == 1
    data = _Scenes()
    image, mask = data[0]
    fig4 = plot_model_comparison((image - 0.5) * 4, mask, {"a": mask, "b": torch.zeros_like(mask)},
                                 [(0, 0, 0), (255, 0, 0), (0, 255, 0)])
    # no panel is left empty (a lecturer's review found two), and every panel has one size (a learner's
    # trial: the predictions, the point of the figure, were the smallest)
    assert len(fig4.axes) == 6 and all(ax.images for ax in fig4.axes)
    assert len({tuple(round(v, 3) for v in ax.get_position().size) for ax in fig4.axes}) == 1
    plt.close("all")


def test_learnability_table_reads_a_record() -> None:
    iou = [0.9, 0.7, 0.35, 0.6, 0.8, 0.1, 0.95, 0.9]  # wire (5) lowest, box (2) lowest of the others
    record = {"results": {"candidates": {"easy-v3plus-tiny-adamw": {
        "what": "the cpu preset", "config": {"difficulty": "easy", "model": "deeplabv3plus", "backbone": "tiny_resnet",
                   "optimizer": "adamw", "lr": 0.002, "image_size": 128, "crop_size": 96},
        "snapshots": [{"minutes": 1.0, "iterations": 170, "miou": 0.5, "iou": iou},
                      {"minutes": 6.0, "iterations": 1100, "miou": 0.6625, "iou": iou}]}}}}
    (row,) = learnability_table(record)
    assert row["model"] == "v3+ / tiny_resnet" and row["image / crop"] == "128 / 96" and row["what"] == "the cpu preset"
    assert row["1 min mIoU (%)"] == 50.0 and row["6 min mIoU (%)"] == 66.2
    assert row["iterations in 6 min"] == 1100
    assert row["weakest class other than wire, IoU at 6 min (%)"] == "35.0 (box)"
    assert row["wire IoU at 6 min (%)"] == 10.0


def test_phase_two_is_inside_the_axes() -> None:
    """Chapter 08's figure clipped phase 2 (71.9 and 73.2 % drawn above an axis ending near 65 %)."""
    h1, h2 = _history([2, 1.5, 1.2], [0.4, 0.6]), _history([1.1, 1.0], [0.72, 0.73])
    fig = plot_phases(h1, h2)
    for ax in fig.axes[:2]:
        low, high = ax.get_ylim()
        left, right = ax.get_xlim()
        for line in ax.lines:
            x, y = list(line.get_xdata()), list(line.get_ydata())
            if len(set(x)) == 1:  # the dashed line between the phases
                continue
            assert all(low <= v <= high for v in y) and all(left <= v <= right for v in x), line.get_label()
    assert fig.axes[1].get_ylim()[0] == 0


#: A finished run's status, naming the commit that trained it (this checkout's; none in a copy without git,
#: a note in a copy whose .git is older than its files: test_engine.py -k names_its_commit tests those).
REUSED = r"finished \(1 iteration(, trained at commit \S+( plus uncommitted changes)?)?\): reused(; .*)?"


def test_a_phase2_run_follows_its_phase1_and_says_its_state(tmp_path: Path) -> None:
    """course_runs' phase 2 keeps the SHA-256 of the phase-1 checkpoint it started from: once phase 1
    is retrained (another seed here), phase 2 is neither reused nor resumed but named as stale; the
    status line says what train_or_load would do in each state."""
    from deeplab_edu.engine import checkpoint as ck
    from deeplab_edu.engine.trainer import Trainer
    from deeplab_edu.viz.training import RunSpec, course_runs

    from filelock import FileLock

    phase1, phase2 = course_runs("smoke", root=tmp_path)[:2]
    assert phase1.status().state == phase2.status().state == "not started"
    assert not phase1.out_dir.exists()  # a status writes nothing
    phase1.out_dir.mkdir(parents=True)
    with FileLock(phase1.out_dir / "train.lock"):  # another holder (a lock of its own, as another process has)
        assert phase1.status().state == "busy"
    phase1.train_or_load(verbose=False)
    with FileLock(phase1.out_dir / "train.lock"):  # a process that only loads the finished run holds it too
        assert phase1.status().state == "finished"
    phase2.train_or_load(verbose=False)
    assert re.fullmatch(REUSED, str(phase2.status()))
    state = ck.load_checkpoint(phase2.checkpoint)
    assert state["init_from_sha256"] == ck.file_sha256(phase1.checkpoint)
    ck.save_atomic({**state, "iteration": 0}, phase2.checkpoint)  # as if stopped before its last step
    assert str(phase2.status()).startswith("interrupted at 0 of 1 iteration: resumed")
    ck.save_atomic(state, phase2.checkpoint)
    other = RunSpec(phase2.preset, phase2.out_dir, {**phase2.overrides, "lr": 0.5}).status()
    assert other.refused and str(other).startswith("holds another run (other settings: lr)")
    # a run trained before a field was added to TrainConfig: the missing field counts as its default
    ck.save_atomic({**state, "config": {k: v for k, v in state["config"].items() if k != "top_k"}},
                   phase2.checkpoint)
    assert re.fullmatch(REUSED, str(phase2.status()))
    ck.save_atomic({**state, "config": {**state["config"], "top_k": 0.5}}, phase2.checkpoint)
    assert str(phase2.status()).startswith("holds another run (other settings: top_k)")
    ck.save_atomic(state, phase2.checkpoint)

    for old in phase1.out_dir.glob("checkpoints/*.pt"):  # phase 1 trained again, with another seed
        old.unlink()
    RunSpec(phase1.preset, phase1.out_dir, {**phase1.overrides, "seed": 1}).train_or_load(verbose=False)
    stale = phase2.status()
    assert stale.refused and str(stale).startswith("started from an earlier") and str(phase2.out_dir) in str(stale)
    with pytest.raises(ck.InitFromChangedError, match="delete this run's folder"):
        phase2.train_or_load(verbose=False)
    with pytest.raises(ck.InitFromChangedError, match="seed0_phase2"):  # deeplab-edu train --resume
        Trainer(load_config(phase2.preset, {**phase2.overrides, "out_dir": str(phase2.out_dir), "resume": True}))


def test_a_smoke_run_removes_the_folders_of_killed_smoke_processes(tmp_path, monkeypatch) -> None:
    import os
    import tempfile
    import time

    from deeplab_edu.viz import training

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale, recent = tmp_path / "deeplab_edu_smoke_old", tmp_path / "deeplab_edu_smoke_new"
    for folder in (stale, recent):
        (folder / "run").mkdir(parents=True)
    day_and_more = time.time() - training._STALE_SMOKE_SECONDS - 60
    os.utime(stale, (day_and_more, day_and_more))
    fresh = training.runs_root("smoke")
    assert not stale.exists() and recent.exists() and fresh.parent == tmp_path and fresh.is_dir()


def test_class_weights_table_reads_the_record_it_describes() -> None:
    """One row for the mIoU, then one per CamVid class; a finding is an interval that excludes zero,
    and the means are the seeds' means of the record's runs."""
    from deeplab_edu.records import load_record
    from deeplab_edu.viz.training import class_weights_table

    record = load_record("class_weights_camvid_cpu")
    rows = class_weights_table(record)
    res = record["results"]
    assert [r["class"] for r in rows] == ["mIoU", *res["class_names"]] and rows[0]["weight"] is None
    for row in rows:
        low, high = (float(v) for v in row["95 % interval over seeds"].split(" to "))
        assert (row["finding"] == "yes") == (low > 0 or high < 0), row
    plain = [run["iou"][res["class_names"].index("fence")] for run in res["runs"]["none"].values()]
    fence = next(r for r in rows if r["class"] == "fence")
    assert fence["plain (%)"] == f"{100 * sum(plain) / len(plain):.1f}"


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_the_shown_command_trains_the_run_it_names(tmp_path: Path, profile: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Pasted into a shell, a run's command (one line, or broken between options at ``width``) gives the
    settings the chapter trains with: the parser's configuration equals the run's, field for field."""
    import shlex

    from deeplab_edu.cli import _train_config, build_parser
    from deeplab_edu.engine.config import load_config

    monkeypatch.chdir(tmp_path)
    if profile == "gpu":  # the gpu profile names the device it trains on; this machine may have none
        monkeypatch.setattr("deeplab_edu.config.device", lambda: torch.device("cpu"))
    root = tmp_path / "my runs"  # a space: the command quotes it
    specs = [chapter_run("deeplabv3", root=root, profile=profile),
             chapter_run("deeplabv3", phase=2, root=root, profile=profile),
             chapter_run("deeplabv3plus", root=root, profile=profile)]
    for spec in specs:
        expected = load_config(spec.preset, {**spec.overrides, "out_dir": str(spec.out_dir)}).to_dict()
        for width in (None, 80):
            command = spec.command(width=width)
            if width:
                assert all(len(line) <= width for line in command.splitlines()), command
                assert not any(line.rstrip(" \\").endswith("-") for line in command.splitlines())
            words = shlex.split(command.replace("\\\n", " "))
            assert words[:2] == ["deeplab-edu", "train"]
            parsed = _train_config(build_parser().parse_args(words[1:])).to_dict()
            for settings in (parsed, expected):
                settings["out_dir"] = str(Path(settings["out_dir"]).resolve())
                settings.pop("progress", None)  # how the run is shown, not what it trains (command() leaves it out)
            assert parsed == expected, command
    with pytest.raises(ValueError, match="width must be at least 20"):
        specs[0].command(width=10)


def test_a_smoke_run_keeps_the_folders_of_smoke_processes_still_running(tmp_path, monkeypatch) -> None:
    """A smoke kernel left open for a day lost its runs folder when another smoke process started (the folders
    went by age alone): a folder names its owner's pid, and one whose owner runs is kept, however old."""
    import os
    import subprocess
    import sys
    import tempfile
    import time

    from deeplab_edu.viz import training

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mine = training.runs_root("smoke")
    assert mine.name.startswith(f"deeplab_edu_smoke_{os.getpid()}_")
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    dead = tmp_path / f"deeplab_edu_smoke_{int(ended.stdout)}_abc"
    dead.mkdir()
    day_and_more = time.time() - training._STALE_SMOKE_SECONDS - 60
    for folder in (mine, dead):
        os.utime(folder, (day_and_more, day_and_more))
    training.runs_root("smoke")  # another smoke run starts
    assert mine.is_dir() and not dead.exists()


def test_class_weights_table_says_which_findings_hold_after_holm() -> None:
    """Twelve rows, each judged at 95 % alone: signs' gain (p = 0.019 over six seeds) excludes zero, but not
    after Holm's correction over the table; the mean's rise and the other classes' findings do."""
    from deeplab_edu.findings import HOLM_COLUMN
    from deeplab_edu.records import load_record
    from deeplab_edu.viz.training import class_weights_table

    rows = {r["class"]: r for r in class_weights_table(load_record("class_weights_camvid_cpu"))}
    assert rows["sign_symbol"]["finding"] == "yes" and rows["sign_symbol"]["p"] == "0.019"
    assert {c for c, r in rows.items() if r[HOLM_COLUMN] == "no"} == {"sign_symbol"}
    assert {c for c, r in rows.items() if r[HOLM_COLUMN] == "yes"} == {
        "mIoU", "building", "pole", "fence", "bicyclist", "pavement"}
    assert all(r[HOLM_COLUMN] == "n/a" for r in rows.values() if r["finding"] == "no")


def _fake_run(spec, folder: Path, iterations: int | None = None, **changed) -> None:
    """A run of ``spec``'s settings (``changed`` replacing some) as its ``last.pt`` in ``folder``, after
    ``iterations`` (all of them by default): what the status and the reuse read (no weights)."""
    from deeplab_edu.engine import checkpoint as ck

    cfg = load_config(spec.preset, {**spec.overrides, **changed, "out_dir": str(folder)})
    ck.save_atomic({"model": {}, "config": cfg.to_dict(), "iteration": cfg.iterations if iterations is None else
                    iterations}, folder / "checkpoints" / "last.pt")


def test_a_run_in_the_folder_an_earlier_course_gave_it_is_named_not_trained_again(tmp_path: Path) -> None:
    """An audit: after a pull that moved a course run's folder (chapter 11's GPU run, from runs/camvid_deeplabv3plus
    at d8ed0de), the learner's finished run was "not started: will be trained" and trained again (10,000
    ResNet-50 iterations) without a word. Now its status names the earlier folder and the mv, train_or_load
    refuses with it (nothing moved, nothing made), and once moved the run is reused; an interrupted run's mv
    replaces a new folder that holds no checkpoint; an earlier run with other settings is only noted."""
    import subprocess

    from deeplab_edu.engine.runs import RunFolderError
    from deeplab_edu.records import shown_path
    from deeplab_edu.viz.training import camvid_run

    spec = camvid_run("gpu", root=tmp_path)
    old = tmp_path / "camvid_deeplabv3plus"
    _fake_run(spec, old)
    status = spec.status()
    move = f"mkdir -p {shown_path(spec.out_dir.parent)} && mv {shown_path(old)} {shown_path(spec.out_dir)}"
    assert status.state == "moved" and status.refused, status
    assert "d8ed0de" in str(status) and f"`{move}`" in str(status) and f"or delete {shown_path(old)}" in str(status)
    with pytest.raises(RunFolderError, match=re.escape(f"`{move}`")) as err:
        spec.train_or_load(verbose=False)
    assert str(err.value).startswith(f"{shown_path(spec.out_dir)} holds no checkpoint") and "nothing is moved" in str(
        err.value)
    assert not spec.out_dir.exists() and (old / "checkpoints" / "last.pt").is_file()
    subprocess.run(move, shell=True, check=True)  # the command as given
    assert re.fullmatch(r"finished \(10000 iterations\): reused", str(spec.status()))

    phase1 = chapter_run("deeplabv3", root=tmp_path, profile="cpu")  # chapter 08's, from ch08-09_cpu_deeplabv3
    old = tmp_path / "ch08-09_cpu_deeplabv3"
    _fake_run(phase1, old, iterations=5)
    (phase1.out_dir / "checkpoints").mkdir(parents=True)  # a new folder without a checkpoint: mv would nest into it
    status = phase1.status()
    move = f"rm -r {shown_path(phase1.out_dir)} && mv {shown_path(old)} {shown_path(phase1.out_dir)}"
    assert status.state == "moved" and "c007887" in str(status) and "stopped at 5 of" in str(status), status
    assert f"to resume it, move it in a terminal, from the repository's folder: `{move}`" in str(status)
    subprocess.run(move, shell=True, check=True)
    assert phase1.status().state == "interrupted"

    plus = chapter_run("deeplabv3plus", root=tmp_path, profile="cpu")  # an earlier recipe: not this run
    _fake_run(plus, tmp_path / "ch08-09_cpu_deeplabv3plus", lr=0.5)
    status = plus.status()
    assert status.state == "not started" and not status.refused
    assert str(status).startswith("not started: will be trained; ") and "other settings (lr)" in str(status)
    assert chapter_run("deeplabv3", phase=2, root=tmp_path, profile="cpu", output_stride=16).earlier == ()


def test_the_shown_command_writes_dicts_and_pairs_as_the_command_line_reads_them(tmp_path: Path) -> None:
    """A settings-parity audit: a RunSpec's command wrote model_kwargs with Python's repr
    (--model-kwargs '{'"'"'separable'"'"': True}', not JSON) and a pair as '(0.75, 1.25)' (one word, where
    --scale-range takes two): pasted, neither parsed. The command now parses back to the run's settings."""
    import shlex

    from deeplab_edu.cli import _train_config, build_parser
    from deeplab_edu.viz.training import RunSpec

    overrides = {"model_kwargs": {"separable": True, "multi_grid": (1, 2, 4)}, "scale_range": (0.75, 1.25),
                 "atrous_rates": (1, 2, 3), "class_weights": "median_frequency"}
    spec = RunSpec("smoke", tmp_path / "run", overrides)
    words = shlex.split(spec.command())
    assert words[words.index("--model-kwargs") + 1] == '{"separable": true, "multi_grid": [1, 2, 4]}'
    parsed = _train_config(build_parser().parse_args(words[1:])).to_dict()
    expected = load_config("smoke", overrides).to_dict()
    for settings in (parsed, expected):
        settings.pop("out_dir")  # shown relative to the repository in the book's build (HIDE_PATHS_ENV)
    assert parsed == expected
