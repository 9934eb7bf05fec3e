"""The findings machinery of chapter 10: metrics on confusion matrices, the paired bootstrap, verdicts,
and the train-and-evaluate loop on a tiny configuration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeplab_edu import findings
from deeplab_edu.findings import (
    FINDINGS, VIEWS, bootstrap_difference, class_iou, confusion_share, findings_table, metric, miou, removed_errors,
    seed_interval, seed_prediction_interval, seed_values, verdict,
)
from deeplab_edu.metrics import ConfusionMatrix


def _matrices(rng: np.random.Generator, seeds: int = 3, scenes: int = 40, c: int = 8, boost: int = 0) -> np.ndarray:
    m = rng.integers(0, 30, (seeds, scenes, c, c)).astype(np.float64)
    m[:, :, range(c), range(c)] += 300 + boost
    return m


def test_metrics_agree_with_the_confusion_matrix_class() -> None:
    rng = np.random.default_rng(0)
    pred, target = torch.from_numpy(rng.integers(0, 8, (2, 30, 30))), torch.from_numpy(rng.integers(0, 8, (2, 30, 30)))
    target[0, :3] = 255
    cm = ConfusionMatrix(8)
    cm.update(pred, target)
    ref = cm.compute()
    m = cm.mat.numpy()
    assert miou(m) == pytest.approx(ref["miou"])
    assert class_iou(m, 5) == pytest.approx(ref["iou"][5])
    assert confusion_share(np.array([[5, 1], [3, 7]]), 0, 1) == pytest.approx(4 / 16)
    assert np.isnan(class_iou(np.zeros((3, 3)), 1))


def test_metric_names() -> None:
    key, fn = metric("band1:iou:wire")
    assert key == "band1" and fn(np.eye(8)) == 1.0
    assert metric("miou")[0] == "all"
    with pytest.raises(ValueError, match="unknown metric"):
        metric("dice")
    for f in FINDINGS:  # every finding names a known metric, arm and view
        metric(f.metric)
        for arm, view in (f.baseline, f.variant):
            assert arm in findings.ARMS and view in VIEWS


def test_bootstrap_finds_a_real_difference_and_no_difference() -> None:
    rng = np.random.default_rng(1)
    base = _matrices(rng)
    better = base.copy()
    better[:, :, range(8), range(8)] += 60
    diff, lo, hi = bootstrap_difference(base, better, miou, n_boot=300)
    assert 0 < lo <= diff <= hi
    assert verdict(lo, hi, +1) == "reproduced" and verdict(lo, hi, -1) == "opposite"
    noise = _matrices(np.random.default_rng(2))
    diff, lo, hi = bootstrap_difference(base, noise, miou, n_boot=300)
    assert lo < 0 < hi and verdict(lo, hi, +1) == "not resolved"
    with pytest.raises(ValueError, match="same shape|one shape"):
        bootstrap_difference(base, base[:2], miou)


def test_seed_values_and_table_rows() -> None:
    rng = np.random.default_rng(3)
    keys = {}
    for f in FINDINGS:
        for arm, view in (f.baseline, f.variant):
            for k in ("all", "band1", "band4"):
                keys[f"{arm}|{view}|{k}"] = _matrices(rng, seeds=2, scenes=10)
    rows = findings_table(keys, FINDINGS[:3], n_boot=50, scenes=5)
    assert len(rows) == 3 and all(r["verdict"] in ("reproduced", "opposite", "not resolved") for r in rows)
    assert len(rows[0]["_baseline"]) == 2
    f = FINDINGS[0]  # the difference is the pooled matrices' (first 5 scenes), unrounded in _difference
    pooled = [miou(keys[f"{arm}|{view}|all"][:, :5].sum((0, 1))) for arm, view in (f.baseline, f.variant)]
    assert rows[0]["_difference"] == pytest.approx(100 * (pooled[1] - pooled[0]), abs=1e-12)
    assert rows[0]["difference (points)"] == round(rows[0]["_difference"], 2)
    vals = seed_values(keys[f"{FINDINGS[0].baseline[0]}|{FINDINGS[0].baseline[1]}|all"], miou)
    assert vals.shape == (2,) and np.all((0 < vals) & (vals <= 1))


def test_removed_errors_counts_per_seed_over_all_scenes() -> None:
    """Seed 0: the variant removes 6 wrong pixels, 3 of them in the 1-px band and 5 in the 4-px band;
    seed 1: it removes none (nan)."""
    def arm(wrong_all: list[int], wrong_b1: list[int], wrong_b4: list[int]) -> dict[str, np.ndarray]:
        out = {}
        for key, wrong, pixels in (("all", wrong_all, 90), ("band1", wrong_b1, 10), ("band4", wrong_b4, 30)):
            m = np.zeros((2, 2, 2, 2))  # (seeds, scenes, C, C): each seed's pixels split over two scenes
            for s, w in enumerate(wrong):
                m[s, 0, 0, 0], m[s, 0, 0, 1] = pixels // 2 - w, w
                m[s, 1, 1, 1] = pixels - pixels // 2
            out[key] = m
        return out

    mats = {f"a|eval OS 8|{k}": v for k, v in arm([10, 4], [5, 2], [8, 3]).items()}
    mats |= {f"b|eval OS 8|{k}": v for k, v in arm([4, 4], [2, 2], [3, 3]).items()}
    shares = removed_errors(mats, ("a", "eval OS 8"), ("b", "eval OS 8"))
    assert shares[1]["removed"][0] == 0.5 and shares[4]["removed"][0] == 5 / 6
    assert np.isnan(shares[4]["removed"][1]) and np.allclose(shares[4]["pixels"], 30 / 90)


@pytest.mark.slow
def test_run_findings_trains_evaluates_and_reuses(tmp_path) -> None:
    torch.set_num_threads(1)
    tiny = dict(image_size=40, crop_size=32, iterations=2, warmup_iters=0, batch_size=2, train_length=8, eval_every=2,
                ckpt_every=2, num_workers=0)
    mats = findings.run_findings(tmp_path, [0, 1], arms=["v3", "v2"], val_length=3, progress=False, **tiny)
    assert mats["v3|eval OS 8|all"].shape == (2, 3, 8, 8)
    assert {"v3|eval OS 16|band1", "v3|OS 8 + MS + flip|all", "v2|OS 8 + CRF|band4"} <= set(mats)
    assert (mats["v3|eval OS 8|all"].sum((2, 3)) <= 40 * 40).all()  # each pixel counted at most once (ignored: not)
    assert (mats["v3|eval OS 8|band1"] <= mats["v3|eval OS 8|all"]).all()  # the band is part of the image
    again = findings.run_findings(tmp_path, [0, 1], arms=["v3"], val_length=3, progress=False, **tiny)
    assert np.array_equal(again["v3|eval OS 8|all"], mats["v3|eval OS 8|all"])  # finished runs are reused
    trained_by = findings.runs_provenance(tmp_path, ["v3", "v2", "v3+"], [0, 1])
    assert sorted(trained_by) == ["v2/seed0", "v2/seed1", "v3/seed0", "v3/seed1"]  # v3+ was not trained
    assert all(len(s) == 1 and s[0]["iterations"] == "0-2" and s[0]["cpu"] and s[0]["torch_threads"] == 1
               for s in trained_by.values())  # the threads too: another count sums in another order


def test_an_unknown_view_is_named_before_anything_runs() -> None:
    class NoModel(torch.nn.Module):  # never called: the names are checked first
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            raise AssertionError("evaluated before the views were checked")

    net = NoModel()
    net.w = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match=r"unknown view\(s\) 'OS 8'; choose from 'eval OS 8'"):
        findings.evaluate_views(net, [], ["eval OS 8", "OS 8"])


def test_tune_crf_keeps_the_best_of_its_grid_and_refuses_an_empty_axis() -> None:
    from deeplab_edu.data import build_dataset
    from deeplab_edu.data.transforms import eval_transform
    from deeplab_edu.models import build_model

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = build_model("deeplabv2", backbone="tiny_resnet", num_classes=8).eval()
        scenes = build_dataset("procedural", "train", length=2, size=32, difficulty="easy", transform=eval_transform())
        best, tried = findings.tune_crf(net, scenes, w_bilateral=(0.0, 5.0), theta_alpha=(20.0,),
                                        theta_beta=(5.0, 10.0))
    finally:
        torch.set_num_threads(threads)
    assert [(t.w_bilateral, t.theta_beta) for t, _ in tried] == [(0.0, 5.0), (0.0, 10.0), (5.0, 5.0), (5.0, 10.0)]
    assert best == max(tried, key=lambda t: t[1])[0] and all(0 <= m <= 1 for _, m in tried)
    assert tried[0][1] == tried[1][1]  # w1 = 0: no bilateral kernel, so its width cannot matter
    with pytest.raises(ValueError, match=r"theta_alpha=\[\]"):
        findings.tune_crf(net, scenes, theta_alpha=())


def test_crf_edges_says_where_a_search_stopped_and_what_its_last_step_gained() -> None:
    def search(scores: dict[tuple[float, float, float], float]) -> findings.RecordedFindings:
        rows = [{"w_bilateral": w, "theta_alpha": a, "theta_beta": b, "miou": m} for (w, a, b), m in scores.items()]
        best = max(rows, key=lambda r: r["miou"])
        return findings.RecordedFindings({"results": {"crf_params": {k: best[k] for k in findings.CRF_GRID},
                                                      "crf_search": rows}}, {})

    grid = {(w, a, b): 0.5 for w in (5.0, 10.0, 20.0) for a in (20.0, 40.0, 80.0) for b in (5.0, 10.0, 20.0)}
    inside = search({**grid, (10.0, 40.0, 10.0): 0.6})
    assert inside.crf_edges() == {}
    # the largest w1 and the smallest theta_alpha win, by 3 points over w1 = 10 and 1 point over theta_alpha = 40
    edge = search({**grid, (20.0, 20.0, 10.0): 0.6, (10.0, 20.0, 10.0): 0.57, (20.0, 40.0, 10.0): 0.59})
    assert set(edge.crf_edges()) == {"w_bilateral", "theta_alpha"}
    (e_w, step_w), (e_a, step_a) = edge.crf_edges()["w_bilateral"], edge.crf_edges()["theta_alpha"]
    assert (e_w, e_a) == ("largest", "smallest") and np.isclose(step_w, 3.0) and np.isclose(step_a, 1.0)
    assert findings.RecordedFindings({"results": {"crf_params": None, "crf_search": []}}, {}).crf_edges() == {}
    # in words: inside; cut short (a last step of 3 points); a plateau (last steps under a tenth of a point)
    assert inside.describe_crf().endswith("w1 = 10, theta_alpha = 40 px, theta_beta = 10 (inside the grid searched)")
    assert ("on the edge of the grid: w1 at the largest value tried, theta_alpha at the smallest; the best CRF beats "
            "the best one with that parameter one value inside by +3.00 (w1) and +1.00 (theta_alpha) mIoU points: "
            ) in edge.describe_crf()
    assert edge.describe_crf().endswith("a wider grid may find a better CRF, so the CRF's gain may be understated")
    tie = search({(w, 40.0, b): 0.6 if w >= 10 else 0.5 for w in (5.0, 10.0, 20.0) for b in (5.0, 10.0, 20.0)})
    # the first best row wins, (10, 40, 5): theta_beta on its edge, tied with the value inside (a step of 0, a
    # plateau); the one theta_alpha is no search, so no edge
    assert tie.crf_edges() == {"theta_beta": ("smallest", 0.0)}
    assert tie.describe_crf().endswith("the search ends on a plateau, where a wider grid would gain little")
    flat = search({**grid, (20.0, 40.0, 10.0): 0.6, (10.0, 40.0, 10.0): 0.5995})
    assert flat.crf_edges() == {"w_bilateral": ("largest", pytest.approx(0.05))}
    assert flat.describe_crf().endswith("w1 at the largest value tried; the best CRF beats the best one with w1 "
                                        "one value inside by +0.05 mIoU points: the search ends on a plateau, where "
                                        "a wider grid would gain little")


def test_a_finding_needs_the_seeds_to_agree_too() -> None:
    """Three seeds that differ by +0.45, +0.31 and +1.57 points (chapter 10's image pooling): the
    bootstrap over seeds and scenes can exclude zero, the t interval over the seeds does not."""
    lo, hi = seed_interval([0.45, 0.31, 1.57])
    assert lo < 0 < hi and abs((lo + hi) / 2 - 0.7767) < 1e-3 and abs(hi - lo - 2 * 4.303 * 0.6896 / 3**0.5) < 0.01
    lo, hi = seed_interval([20.42, 19.9, 18.25])
    assert 16 < lo < hi < 23
    with pytest.raises(ValueError, match="two seeds"):
        seed_interval([1.0])
    # where a fourth seed should land: wider by sqrt(1 + 3) = 2 than the interval of the mean
    (p_lo, p_hi), (m_lo, m_hi) = seed_prediction_interval([0.45, 0.31, 1.57]), seed_interval([0.45, 0.31, 1.57])
    assert np.isclose(p_hi - p_lo, 2 * (m_hi - m_lo)) and np.isclose(p_lo + p_hi, m_lo + m_hi)
    with pytest.raises(ValueError, match="two seeds"):
        seed_prediction_interval([1.0])
    # a table row whose seeds disagree is not reproduced, whatever its bootstrap says
    rng = np.random.default_rng(0)
    base = _matrices(rng, seeds=3, scenes=20)
    variant = base.copy()
    variant[:, :, 1, 1] += np.array([40.0, 1.0, 1.0])[:, None]  # every seed gains, one far more than the others
    keys = {f"{arm}|{view}|{k}": (variant if (arm, view) == FINDINGS[0].variant else base)
            for f in FINDINGS[:1] for arm, view in (f.baseline, f.variant) for k in ("all", "band1", "band4")}
    row = findings_table(keys, FINDINGS[:1], n_boot=200)[0]
    boot_lo = float(row["95% interval"].strip("[]").split(",")[0])
    assert boot_lo > 0 and row["_low"] < 0 and row["verdict"] == "not resolved"


def test_phase_two_arms_fine_tune_their_seeds_v3_run_where_chapter_08_does(tmp_path) -> None:
    import json

    from deeplab_edu.viz.training import chapter_run

    torch.set_num_threads(1)
    root = tmp_path / "course" / "cpu"
    for arm, stride in findings.PHASE2_ARMS.items():  # the same folders as chapter 08's phase 2 and control
        assert findings.run_dir(root, arm, 0) == chapter_run("deeplabv3", phase=2, root=tmp_path, profile="cpu",
                                                             output_stride=stride).out_dir
    with pytest.raises(ValueError, match="root"):
        findings.arm_overrides("v3, phase 2 (OS 8)", 1)
    tiny = dict(image_size=40, crop_size=32, iterations=2, warmup_iters=0, batch_size=2, train_length=8, eval_every=2,
                ckpt_every=2, num_workers=0)
    # the smoke profile: phase 2 is one iteration there
    mats = findings.run_findings(root, [1], arms=["v3, phase 2 at OS 16"], val_length=3, progress=False,
                                 preset="smoke", **tiny)
    assert set(mats) == {f"v3, phase 2 at OS 16|eval OS {os_}|{k}" for os_ in (8, 16) for k in ("all", "band1", "band4")}
    config = json.loads((findings.run_dir(root, "v3, phase 2 at OS 16", 1) / "config.json").read_text())
    base = findings.run_dir(root, "v3", 1)  # trained first: the control starts from its checkpoint
    assert config["init_from"] == str(base / "checkpoints" / "last.pt") and (base / "metrics.json").is_file()
    assert config["freeze_bn"] and config["output_stride"] == 16 and config["seed"] == 1
    # phase 2 keeps its own schedule and computes its rates from the (overridden) run it fine-tunes
    base_config = json.loads((base / "config.json").read_text())
    assert config["iterations"] == 1 and config["crop_size"] == base_config["crop_size"] == 32
    from deeplab_edu.engine.config import TrainConfig, resolve_atrous_rates

    assert resolve_atrous_rates(TrainConfig(**{**config, "scale_range": tuple(config["scale_range"])})) == \
        resolve_atrous_rates(TrainConfig(**{**base_config, "scale_range": tuple(base_config["scale_range"])}), warn=False)
    # the runs' tree moved elsewhere: phase 2 still starts from its neighbour, so it is reused, not refused
    import shutil

    moved = tmp_path / "moved" / "course" / "cpu"
    shutil.copytree(root, moved)
    again = findings.run_findings(moved, [1], arms=["v3, phase 2 at OS 16"], val_length=3, progress=False,
                                  preset="smoke", **tiny)
    assert np.array_equal(again["v3, phase 2 at OS 16|eval OS 8|all"], mats["v3, phase 2 at OS 16|eval OS 8|all"])


def test_train_runs_shares_the_work_and_waits_for_phase_2s_base(tmp_path) -> None:
    torch.set_num_threads(1)
    tiny = dict(image_size=40, crop_size=32, iterations=2, warmup_iters=0, batch_size=2, train_length=8, eval_every=2,
                ckpt_every=2, num_workers=0)
    # the control comes first in the list, but it waits for the v3 run it fine-tunes
    trained = findings.train_runs(tmp_path, [0], arms=["v3, phase 2 at OS 16"], poll_s=0, preset="smoke", **tiny)
    assert trained == ["v3/seed0", "v3, phase 2 at OS 16/seed0"]  # the run it fine-tunes is trained too, first
    assert findings.train_runs(tmp_path, [0], arms=["v3"], poll_s=0, preset="smoke", **tiny) == []  # finished: left as it is
    # a finished run whose metrics.json is missing (stopped after its last checkpoint) is finished:
    # reusing it writes the file, instead of "training" it again and again
    (findings.run_dir(tmp_path, "v3", 0) / "metrics.json").unlink()
    assert findings.train_runs(tmp_path, [0], arms=["v3, phase 2 at OS 16"], poll_s=0, preset="smoke", **tiny) == ["v3/seed0"]
    assert findings.train_runs(tmp_path, [0], arms=["v3"], poll_s=0, preset="smoke", **tiny) == []
    with pytest.raises(ValueError, match="unknown arm"):
        findings.train_runs(tmp_path, [0], arms=["v4"], preset="smoke", **tiny)
    # a run another process trains (its lock held) is skipped, and named when nothing else is left
    import subprocess
    import sys

    folder = findings.run_dir(tmp_path, "v3", 1)
    folder.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from filelock import FileLock; "
                               "lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); time.sleep(60)",
                               str(folder / "train.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError, match=r"v3/seed1"):
            findings.train_runs(tmp_path, [0, 1], arms=["v3"], wait_s=0.2, poll_s=0.05, preset="smoke", **tiny)
    finally:
        holder.kill()
        holder.wait()


def test_the_book_names_metrics_as_a_reader_says_them() -> None:
    from deeplab_edu.findings import SHOWN_COLUMNS, metric_label, shown_rows

    assert [metric_label(m) for m in ("miou", "iou:wire", "confusion:car/boat", "band1:miou", "band2:iou:wire")] == [
        "mIoU", "wire IoU", "car/boat confusion", "mIoU in the 1-px trimap band", "wire IoU in the 2-px trimap band"]
    row = {k: "x" for k in SHOWN_COLUMNS} | {"metric": "iou:boat", "_difference": 1.0}
    assert shown_rows([row]) == [{k: "x" for k in SHOWN_COLUMNS} | {"metric": "boat IoU"}]
    assert list(shown_rows([row])[0]) == list(SHOWN_COLUMNS)


def test_the_colour_views_show_the_crf_recoloured_objects_and_the_network_the_scene() -> None:
    from deeplab_edu.crf import DEEPLAB_RELEASED
    from deeplab_edu.data import build_dataset
    from deeplab_edu.data.transforms import eval_transform
    from deeplab_edu.models import build_model

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    views = ["OS 8 + CRF", "OS 8 + CRF, colours per class", "OS 8 + CRF, colours per object"]
    try:
        net = build_model("deeplabv2", backbone="tiny_resnet", num_classes=8).eval()
        scenes = build_dataset("procedural", "val", length=3, size=48, difficulty="easy", transform=eval_transform())
        no_colour = findings.evaluate_views(net, scenes, views, crf_params=DEEPLAB_RELEASED.replace(w_bilateral=0.0))
        strong = findings.evaluate_views(net, scenes, views, crf_params=DEEPLAB_RELEASED.replace(w_bilateral=40.0))
        again = findings.evaluate_views(net, scenes, views[2:], crf_params=DEEPLAB_RELEASED.replace(w_bilateral=40.0),
                                        batch_size=2)
    finally:
        torch.set_num_threads(threads)
    for v in views[1:]:  # without the bilateral kernel the colours cannot matter: the same scores, the same CRF
        assert np.array_equal(no_colour[v]["all"], no_colour["OS 8 + CRF"]["all"]), v
    assert not np.array_equal(strong[views[2]]["all"], strong["OS 8 + CRF"]["all"])  # with it they do
    assert np.array_equal(again[views[2]]["all"], strong[views[2]]["all"])  # a scene's colours follow its index


def test_the_colour_control_compares_alike_with_apart_on_the_v2_arm() -> None:
    rows = {f.key: f for f in FINDINGS}
    for key in ("f3", "f4"):
        f = rows[key]
        assert f.baseline == ("v2", "OS 8 + CRF, colours per class")
        assert f.variant == ("v2", "OS 8 + CRF, colours per object")
        assert VIEWS[f.baseline[1]].crf_colours == "class" and VIEWS[f.variant[1]].crf_colours == "object"
        assert f.paper is None and f.direction == -1
    with pytest.raises(ValueError, match="needs crf=True"):
        findings.View(output_stride=8, crf_colours="object")
    assert rows["f3"].metric == "miou" and rows["f4"].metric == "band1:miou"


def test_one_seed_has_no_interval_over_seeds_and_no_verdict() -> None:
    """With one seed the column "95 % interval over seeds" showed the bootstrap of the scenes alone and the
    verdict read "reproduced" where three seeds say "not resolved" (an audit: c1, c2, c4, ... of the context
    record, cut to seed 0). Now it has no interval over seeds and no verdict either way."""
    rng = np.random.default_rng(0)
    base = _matrices(rng, seeds=1, scenes=60)
    variant = base.copy()
    variant[:, :, range(8), range(8)] += 200  # far better on every scene: the bootstrap interval excludes zero
    one = FINDINGS[0]
    key = f"{{}}|{{}}|{metric(one.metric)[0]}"
    matrices = {key.format(*one.baseline): base, key.format(*one.variant): variant}
    (row,) = findings_table(matrices, [one], n_boot=50)
    low, high = (float(v) for v in row["95% interval"].strip("[]").split(", "))
    assert low > 0  # the scenes alone would call it
    assert row["95% interval over seeds"] == "n/a" and row["verdict"] == findings.ONE_SEED_VERDICT
    assert row[findings.HOLM_COLUMN] == "n/a" and np.isnan(row["_p"]) and np.isnan(row["_low"])
    # a NaN interval excludes nothing, whichever side min() and max() meet it on
    assert findings.joint_verdict((1.0, 2.0), (float("nan"), float("nan")), 1) == "not resolved"
    recorded = findings.load_findings("findings_context_cpu")
    assert recorded is not None
    first = {k: v[:1] for k, v in recorded.matrices.items()}
    rows = findings_table(first, findings.measurable(first), n_boot=50)
    assert {r["verdict"] for r in rows} == {findings.ONE_SEED_VERDICT}


def test_holm_steps_down_over_a_table_of_findings() -> None:
    """Each finding is judged at 95 % alone; Holm's step-down over the table's paired t tests says which hold
    over the whole table: of the main record's 16, (b1) and (b3) (p about 0.015 and 0.014) do not."""
    adjusted = findings.holm([0.01, 0.04, 0.03, float("nan")])  # the NaN counts as p = 1, one of the 4
    assert np.allclose(adjusted[:3], [0.04, 0.09, 0.09]) and np.isnan(adjusted[3])  # 4 x 0.01, 3 x 0.03, kept monotone
    assert np.allclose(findings.holm([0.2, 0.9]), [0.4, 0.9]) and findings.holm([0.6, 0.7]).max() == 1.0
    assert np.isclose(findings.seed_p_value([0.45, 0.31, 1.57]), 0.1908, atol=1e-4)  # t = 1.951, 2 degrees of freedom
    assert np.isnan(findings.seed_p_value([1.0])) and np.isnan(findings.seed_p_value([4.0, 4.0, 4.0]))
    # the t test's p < 0.05 exactly when the t interval excludes zero
    for d in ([0.45, 0.31, 1.57], [20.42, 19.9, 18.25], [1.0, 2.0, -0.5, 3.0]):
        lo, hi = seed_interval(d)
        assert (findings.seed_p_value(d) < 0.05) == (lo > 0 or hi < 0), d
    recorded = findings.load_findings()
    assert recorded is not None
    measured = findings.measurable(recorded.matrices)
    rows = {f.key: r for f, r in zip(measured, findings_table(recorded.matrices, measured, n_boot=50))}
    assert len(rows) == 16
    lost = {k for k, r in rows.items() if r[findings.HOLM_COLUMN] == "no"}
    assert lost == {"b1", "b3"}, lost
    assert all(r[findings.HOLM_COLUMN] == ("yes" if r["verdict"] in ("reproduced", "opposite") and k not in lost
                                           else "no" if k in lost else "n/a") for k, r in rows.items())
    assert findings.HOLM_COLUMN not in findings.SHOWN_COLUMNS  # shown only when asked: the test below


def test_the_holm_column_is_shown_only_when_asked() -> None:
    """Holm's family is one findings_table call: chapter 09's four-row table said (s8) "no" beside prose that claims
    it, and (b1) holds in chapter 08's three rows but not in chapter 10's sixteen. The column is shown only where the
    family is the whole record (chapter 10's main table, ``holm=True``), right after the verdict."""
    from deeplab_edu.findings import HOLM_COLUMN, SHOWN_COLUMNS, shown_rows

    row = {k: "x" for k in SHOWN_COLUMNS} | {"metric": "miou", HOLM_COLUMN: "no"}
    assert HOLM_COLUMN not in shown_rows([row])[0] and list(shown_rows([row])[0]) == list(SHOWN_COLUMNS)
    shown = list(shown_rows([row], holm=True)[0])
    assert shown[shown.index("verdict") + 1] == HOLM_COLUMN and [k for k in shown if k != HOLM_COLUMN] == list(
        SHOWN_COLUMNS)
    assert shown_rows([{k: "x" for k in SHOWN_COLUMNS} | {"metric": "miou"}], holm=True)[0][HOLM_COLUMN] is None


def test_holm_counts_an_untested_comparison_in_the_family() -> None:
    """holm([0.01, nan, nan]) left the NaN rows out and gave 0.01, as if the family were one comparison: a row that
    could not be tested is still one of the m, counted as p = 1, and stays NaN in the output."""
    adjusted = findings.holm([0.01, float("nan"), float("nan")])
    assert np.isclose(adjusted[0], 0.03) and np.isnan(adjusted[1:]).all()
    assert np.isnan(findings.holm([float("nan")])).all() and findings.holm([]).shape == (0,)
    # in a table: a row whose seeds all differ alike has no p-value and still counts in "the table's N comparisons"
    rng = np.random.default_rng(1)
    one = _matrices(rng, seeds=1, scenes=40)
    flat = np.repeat(one, 3, axis=0)  # three identical seeds: every seed differs by as much, no t test
    varied = _matrices(rng, seeds=3, scenes=40)
    better = varied.copy()
    better[:, :, range(8), range(8)] += rng.integers(100, 300, size=(3, 40, 1))  # a real gain, varying by seed
    first, second = (next(f for f in FINDINGS if f.key == k) for k in ("a1", "f1"))  # four different arms/views
    keys = [f"{arm}|{view}|{metric(f.metric)[0]}" for f in (first, second) for arm, view in (f.baseline, f.variant)]
    matrices = dict(zip(keys, (flat, flat + np.eye(8, dtype=flat.dtype) * 50, varied, better)))
    rows = findings_table(matrices, [first, second], n_boot=20)
    assert np.isnan(rows[0]["_p"]) and np.isnan(rows[0]["_p_holm"])
    assert np.isclose(rows[1]["_p_holm"], min(1.0, 2 * rows[1]["_p"]))  # m = 2, the untested row included


def test_seeds_that_differ_alike_up_to_rounding_have_no_p_value_and_no_verdict() -> None:
    """seed_p_value([0.3] * 3) was NaN but seed_p_value([0.1 + 0.2, 0.3, 0.3]) 1e-32 (float noise); and a zero-width
    interval over seeds made joint_verdict "reproduced" (chapter 02: an interval of no width is no evidence)."""
    assert np.isnan(findings.seed_p_value([0.1 + 0.2, 0.3, 0.3])) and np.isnan(findings.seed_p_value([0.3] * 3))
    assert np.isnan(findings.seed_p_value([1e6 + 1e-5, 1e6, 1e6]))  # relative to the mean's size
    assert findings.seed_p_value([0.3, 0.3, 0.3 + 1e-6]) < 1  # a spread above rounding is tested
    assert findings.joint_verdict((1.0, 2.0), (1.5, 1.5), 1) == "not resolved"
    assert findings.joint_verdict((-2.0, -1.0), (-1.5, -1.5 + 1e-12), 1) == "not resolved"
    assert findings.joint_verdict((1.0, 2.0), (1.4, 1.6), 1) == "reproduced"
    # in a table: three identical seeds, a variant far better on every scene; the scenes' bootstrap excludes zero
    rng = np.random.default_rng(0)
    base = np.repeat(_matrices(rng, seeds=1, scenes=60), 3, axis=0)
    variant = base.copy()
    variant[:, :, range(8), range(8)] += 200
    one = FINDINGS[0]
    key = f"{{}}|{{}}|{metric(one.metric)[0]}"
    (row,) = findings_table({key.format(*one.baseline): base, key.format(*one.variant): variant}, [one], n_boot=50)
    low, high = (float(v) for v in row["95% interval"].strip("[]").split(", "))
    assert low > 0 and row["verdict"] == "not resolved" and row[findings.HOLM_COLUMN] == "n/a", row


def test_family_p_values_judge_a_few_rows_in_the_whole_tables_family() -> None:
    """Chapter 08 quotes (b1) of chapter 10's sixteen comparisons: its Holm value is the whole table's
    (0.08, does not hold), not that of the three rows it prints (3 x 0.015 = 0.045 would hold)."""
    recorded = findings.load_findings()
    assert recorded is not None
    measured = findings.measurable(recorded.matrices)
    family = findings.family_p_values(recorded.matrices, measured)
    rows = findings_table(recorded.matrices, measured, n_boot=20)
    assert [(r["_p"], r["_p_holm"]) for r in rows] == [family[f.key] for f in measured]
    assert family["b1"][1] >= 0.05 > family["b1"][0]
    few = findings.family_p_values(recorded.matrices, [f for f in measured if f.key in ("b1", "g1", "g2")])
    assert few["b1"][1] < 0.05 <= family["b1"][1]  # a smaller family corrects less


def test_train_runs_logs_each_runs_losses_without_a_bar(tmp_path, capsys) -> None:
    """A review: train_runs(progress=False) (benchmarks/findings.py --train-only, hours of runs) passed
    verbose=progress to train_or_load, whose verbose now silences the Trainer: the job's log lost every run's
    start line, losses and throughput. progress drops the bar only."""
    findings.train_runs(tmp_path, [0], arms=["v3"], poll_s=0, preset="smoke", progress=False, iterations=2,
                        image_size=40, crop_size=32, batch_size=2, train_length=8, num_workers=0)
    out = capsys.readouterr().out
    assert "train deeplabv3" in out and "images/s" in out, out


def test_the_sources_say_unit_rates_only_for_multi_grid_factors() -> None:
    """Chapter 03 calls multi-grid's factors, (1, 2, 4), *unit rates*; the 'source' column chapter 10 shows
    called block 4's final rates (2, 4, 8) 'unit rates' (an audit of the course's terms): a source that quotes
    rates says 'rates' and names the multi-grid factors beside them."""
    for finding in findings.FINDINGS:
        assert "unit rates" not in finding.source, (finding.key, finding.source)
        if "(2, 4, 8)" in finding.source:
            assert "multi-grid (1, 2, 4)" in finding.source, (finding.key, finding.source)
