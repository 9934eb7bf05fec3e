"""The benchmark compares like with like, and runs end to end on a tiny input (not a timed test)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from deeplab_edu.complexity import count_parameters
from deeplab_edu.engine.bench import (
    build_pair, cores_scaling, format_results, run_benchmarks, run_compile_benchmark, run_loader_benchmark,
    compare_speeds, min_rounds, paired_p_value, run_pipeline_benchmark, speed_verdict, speedup_interval,
)
from deeplab_edu.models.aspp import ASPPConv, SeparableConv2d, atrous_conv

pytestmark = pytest.mark.slow


def test_pairs_have_the_same_configuration() -> None:
    (_, ours), (_, peer) = build_pair("v3")
    assert count_parameters(ours) == count_parameters(peer)  # same layers: OS 8, rates 12/24/36, extra 3x3
    (_, ours_p), (_, peer_p) = build_pair("v3plus")
    assert abs(count_parameters(ours_p) - count_parameters(peer_p)) / count_parameters(peer_p) < 0.01
    x = torch.randn(1, 3, 32, 48)
    assert ours.eval()(x).shape == peer.eval()(x).shape == (1, 21, 32, 48)
    with pytest.raises(ValueError, match="unknown benchmark pair"):
        build_pair("v4")


def test_run_benchmarks_writes_a_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deeplab_edu.engine.bench import timing

    # the record's form, not its statistics (test_a_speedup_is_called_only_when_its_interval_excludes_one):
    # an interval from three rounds here keeps the test short
    monkeypatch.setattr(timing, "min_rounds", lambda confidence=0.95: 3)
    out = tmp_path / "bench.json"
    res = run_benchmarks(device="cpu", size=16, batch=2, repeats=3, warmup=0, out=out, pairs=("v3",), threads=1)
    record = json.loads(out.read_text())
    assert record["command"] and record["hardware"]["cpu_count"]
    settings = record["results"]["pairs"]["v3"]["settings"]
    assert len(settings) == 3  # fp32, channels_last, bf16 + channels_last (all measurable on a CPU)
    for s in settings.values():
        assert s["ratios"]["train_speedup"] > 0 and s["ratios"]["train_speedup_cpu_time"] > 0 and len(s["rows"]) == 2
        assert all(0 < r["train_held_mib"] < r["train_peak_mib"] for r in s["rows"])
        assert all(r["train_minor_faults"] is None or r["train_minor_faults"] >= 0 for r in s["rows"])
        low, high = s["ratios"]["train_speedup_interval"]  # three rounds (min_rounds patched): an interval
        assert 0 < low <= high and s["ratios"]["train_verdict"] in ("faster", "slower", "parity")
        assert f"[{low:.2f}, {high:.2f}] {s['ratios']['train_verdict']}" in format_results(record)
    # the same network in both libraries: the same memory held for the backward pass, within 5 %
    equal = settings["equal settings (fp32, contiguous)"]["ratios"]
    assert 0.95 < equal["train_held_memory_ratio"] < 1.05
    assert "held for backward" in format_results(record) and record["results"]["torch_threads"] >= 1
    assert res["pairs"]["v3"]["ours_best_vs_peer_equal_train_speedup"] > 0
    from deeplab_edu.engine.allocator import keep_freed_memory

    assert record["results"]["keeps_freed_memory"] == keep_freed_memory()  # as the engine trains on a CPU
    with pytest.raises(ValueError, match="batch=1"):
        run_benchmarks(device="cpu", size=32, batch=1, out=out)


def test_cpu_memory_counts_frees_too() -> None:
    """The step's peak is a high-water mark (frees counted), not the sum of every allocation."""
    from deeplab_edu.engine.bench.pairs import StepRunner, train_memory

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1))
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 4, (2, 32, 32))
    runner = StepRunner(net, x, y, channels_last=False, amp=False)
    runner.train_step()
    peak, held = train_memory(runner, torch.device("cpu"))
    activation = 2 * 8 * 32 * 32 * 4  # one (2, 8, 32, 32) float tensor
    assert activation <= held < peak < 12 * activation  # a sum of all allocations would be far larger


@pytest.mark.parametrize("amp", [False, True])
def test_degenerate_rate_shortcut_keeps_the_function(amp: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rate >= map size: the depthwise conv runs as a multiplication, with the same output bits."""
    from deeplab_edu.models import aspp

    taken: list[int] = []
    apply = aspp._ChannelScale.apply
    monkeypatch.setattr(aspp._ChannelScale, "apply", lambda *a: taken.append(1) or apply(*a))
    torch.manual_seed(0)
    branch = ASPPConv(32, 8, rate=12, separable=True).train()
    for fmt in (torch.contiguous_format, torch.channels_last):
        branch.to(memory_format=fmt)
        x = torch.randn(2, 32, 9, 12).contiguous(memory_format=fmt)
        results = []
        for forward in (branch.forward, lambda t: torch.nn.Sequential.forward(branch, t)):  # shortcut, plain
            xx, before = x.clone().requires_grad_(), len(taken)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                out = forward(xx)
            out.float().square().sum().backward()
            results.append((out.detach(), xx.grad, branch[0].weight.grad.clone(), len(taken) - before))
            branch.zero_grad()
        (o1, g1, w1, shortcuts), (o2, g2, w2, plain) = results
        assert shortcuts > 0 and plain == 0  # the multiplication ran in the first forward only
        assert torch.equal(o1, o2) and torch.equal(g1, g2)
        tol = 1e-2 if amp else 1e-5  # the centre weights' gradient sums the same products in another order
        torch.testing.assert_close(w1, w2, rtol=tol, atol=tol * w2.abs().max().item())
    taken.clear()
    small = SeparableConv2d(4, 4, rate=2)
    atrous_conv(small[0], torch.ones(1, 4, 5, 5))  # rate below the map size
    regular = ASPPConv(8, 8, rate=12, separable=False)
    atrous_conv(regular[0], torch.ones(1, 8, 9, 12))  # a regular conv sums its channels: never taken
    assert not taken


def test_loader_benchmark_writes_a_record(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "loader.json"
    res = run_loader_benchmark(workers=(0, 1), size=32, batch=2, batches=2, rounds=1, out=out)
    rows = {(r["num_workers"], r["limit_threads"]): r for r in res["rows"]}
    assert set(rows) == {(0, True), (1, True), (1, False)} and all(r["scenes_per_s"] > 0 for r in rows.values())
    assert json.loads(out.read_text())["hardware"]["cpu_count"] and res["cores_scaling"] is None
    # the ratios are to the fewest workers (here 1): no row is compared with itself, nor the main process
    assert " vs 1 worker" not in capsys.readouterr().out


def test_the_loader_benchmark_gives_each_row_its_ratio_to_the_fewest_workers(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from deeplab_edu.engine.bench import loader

    speed = {0: 10.0, 1: 20.0, 2: 30.0}  # scenes/s per worker count; half that without the thread limits
    monkeypatch.setattr(loader, "loader_throughput", lambda w, limit_threads=True, **_: {
        "scenes_per_s": speed[w] / (1 if limit_threads else 2), "cpu_s_per_scene": 0.1})
    monkeypatch.setattr(loader, "cores_scaling", lambda n, **_: {"processes": n, "alone_scenes_per_s": 1.0,
                                                                  "together_scenes_per_s": 1.9, "ratio": 1.9})
    run_loader_benchmark(workers=(0, 1, 2), rounds=1, out=tmp_path / "loader.json")
    lines = {line.split(":")[0].strip(): line for line in capsys.readouterr().out.splitlines() if "scenes/s," in line}
    assert "x" not in lines["the main process"].split("ms/scene")[1]
    assert "x" not in lines["1 worker, one thread per worker"].split("ms/scene")[1]
    assert "x1.50 vs 1 worker with one thread per worker" in lines["2 workers, one thread per worker"]
    assert "x1.50 vs 1 worker with default threads" in lines["2 workers, default threads"]


def test_cores_scaling_runs_separate_processes() -> None:
    res = cores_scaling(2, size=32, batch=2, batches=2)
    assert res["processes"] == 2 and res["alone_scenes_per_s"] > 0 and res["ratio"] > 0
    with pytest.raises(ValueError, match="processes must be at least 2"):
        cores_scaling(1)


def _crash(*args: object) -> None:
    raise SystemExit(3)


def test_cores_scaling_names_a_child_that_crashed(monkeypatch: pytest.MonkeyPatch) -> None:
    from deeplab_edu.engine.bench import loader

    monkeypatch.setattr(loader, "_one_thread_loading", _crash)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"gave no result \(one crashed; exit codes \[3\]\)"):
        cores_scaling(2, size=32, batch=2, batches=2, timeout_s=60)
    assert time.monotonic() - start < 20, "a crashed child must be reported at once, not after the timeout"


def test_a_speedup_is_called_only_when_its_interval_excludes_one() -> None:
    rounds = [0.40, 0.46, 0.42, 0.44, 0.41, 0.45, 0.43, 0.47, 0.42]  # seconds per round, a noisy machine
    faster = [t * 0.9 for t in rounds]  # 10 % faster in every round, however slow the round
    interval = speedup_interval(rounds, faster)
    assert interval is not None and interval[0] == pytest.approx(1 / 0.9) == interval[1]
    assert speed_verdict(interval, None) == "faster" and speed_verdict(speedup_interval(faster, rounds), None) == "slower"
    # the same times in another order: within the noise of the rounds, so parity, not "x1.02"
    shuffled = [0.44, 0.41, 0.47, 0.40, 0.46, 0.42, 0.42, 0.43, 0.45]
    low, high = speedup_interval(rounds, shuffled)
    assert low < 1 < high and speed_verdict((low, high), None) == "parity"
    assert speedup_interval(rounds, shuffled) == (low, high)  # a fixed seed: the record is reproducible
    # every one of 5 rounds faster happens by chance 2 / 32 of the time: no interval from so few
    assert min_rounds() == 6 and min_rounds(0.99) == 8
    assert speedup_interval(rounds[:5], faster[:5]) is None and speed_verdict(None, None).startswith("no interval")
    assert speed_verdict(speedup_interval(rounds[:6], faster[:6]), None) == "faster"
    with pytest.raises(ValueError, match="confidence"):
        min_rounds(1.0)
    with pytest.raises(ValueError, match="paired"):
        speedup_interval(rounds, faster[:-1])


def test_the_verdict_also_asks_an_exact_paired_test() -> None:
    """At a few rounds the bootstrap interval can exclude 1 by chance more often than 5 %; the sign-flip
    test of the same rounds cannot (all 2 ** n sign patterns are counted), so a verdict needs both."""
    import numpy as np

    rounds = [0.40, 0.46, 0.42, 0.44, 0.41, 0.45]
    assert paired_p_value(rounds, [t * 0.9 for t in rounds]) == pytest.approx(2 / 2 ** 6)  # every round agrees
    assert paired_p_value(rounds[:5], rounds[:5]) is None  # fewer than min_rounds()
    assert speed_verdict((1.05, 1.2), 0.2) == "parity" and speed_verdict((1.05, 1.2), 0.03) == "faster"
    assert speed_verdict((0.8, 0.9), 0.01) == "slower" and speed_verdict((0.95, 1.1), 0.01) == "parity"
    with pytest.raises(ValueError, match="paired"):
        paired_p_value(rounds, rounds[:-1])
    # no difference at all, 6 noisy rounds per experiment: how often is a difference called?
    rng = np.random.default_rng(0)
    called = [compare_speeds(b, c).verdict != "parity" for b, c in (rng.lognormal(0, 0.1, (2, 6)).tolist()
                                                                    for _ in range(300))]
    assert np.mean(called) <= 0.05 + 0.02  # at most 3 of the 64 sign patterns reject: 4.7 %, plus sampling


def test_compare_speeds_is_the_interval_the_test_and_the_verdict_of_the_same_rounds() -> None:
    rounds = [0.40, 0.46, 0.42, 0.44, 0.41, 0.45, 0.43]
    faster = [t / 1.25 for t in rounds]
    c = compare_speeds(rounds, faster)
    assert c.speedup == pytest.approx(1.25) and c.interval == speedup_interval(rounds, faster)
    assert c.p_value == paired_p_value(rounds, faster) == pytest.approx(2 / 2 ** 7)
    assert c.verdict == "faster" and str(c) == "x1.25 [1.25, 1.25] faster"
    assert compare_speeds(faster, rounds).verdict == "slower"
    few = compare_speeds(rounds[:3], faster[:3])  # below min_rounds: the ratio, no interval, no verdict
    assert few.interval is None and few.p_value is None and str(few).startswith("x1.25 no interval")
    with pytest.raises(ValueError, match="paired"):
        compare_speeds(rounds, faster[:-1])
    with pytest.raises(ValueError, match="at least one round"):
        compare_speeds([], [])


def test_pipeline_benchmark_compares_loader_and_step(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.json"
    threads = torch.get_num_threads()
    res = run_pipeline_benchmark(preset="smoke", overrides={"num_workers": 1}, device="cpu", iterations=2, warmup=1,
                                 rounds=2, out=out, threads=1)
    assert torch.get_num_threads() == threads
    assert res["num_workers"] == 1 and res["pipeline_images_per_s"] > 0 and res["step_images_per_s"] > 0
    assert res["ratio"] == pytest.approx(res["pipeline_images_per_s"] / res["step_images_per_s"])
    assert json.loads(out.read_text())["results"]["torch_threads"] == 1
    with pytest.raises(ValueError, match="iterations"):
        run_pipeline_benchmark(preset="smoke", iterations=0)


def test_compile_benchmark_path_runs(tmp_path: Path) -> None:
    """The compile path end to end with the quick ``aot_eager`` back end (inductor needs minutes here)."""
    try:
        import torch._dynamo  # noqa: F401
    except Exception as err:  # pragma: no cover - a torch without dynamo
        pytest.skip(f"torch.compile is unavailable: {err}")
    res = run_compile_benchmark(backbone="tiny_resnet", size=32, batch=2, repeats=1, out=tmp_path / "compile.json",
                                threads=1, backend="aot_eager")
    assert res["max_abs_diff"] <= 1e-4 * max(1.0, res["max_abs_logit"])
    assert res["train_speedup"] > 0 and res["compile_seconds_first_train_step"] > 0


def test_gpu_session_script_uses_existing_flags() -> None:
    """benchmarks/gpu_session.sh cannot be run here (no GPU): at least every command in it parses."""
    import re
    import shlex

    from deeplab_edu.cli import build_parser

    script = (Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_session.sh").read_text()
    joined = script.replace("\\\n", " ")
    commands = re.findall(r'"\$PY" -m deeplab_edu ([^;|}\n]+)', joined)
    assert len(commands) == 6  # stages 1-4 and the two training runs of stage 8
    for command in commands:
        argv = [a.replace('"$RES', "benchmarks/results").strip('"') for a in shlex.split(command.split(" || ")[0])]
        build_parser().parse_args(argv)  # SystemExit on an unknown flag


def test_gpu_session_script_runs_stages_in_order_past_failures_and_writes_under_out(tmp_path: Path) -> None:
    """The script's own logic, with a stand-in for Python that logs its arguments (and fails for the
    optimiser benchmark): stages in the order given, a failed step reported and the next one run, the
    records and the log under $OUT (what a lent device machine sends back)."""
    import os
    import stat
    import subprocess

    calls = tmp_path / "calls.txt"
    fake = tmp_path / "fakepy"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\ncase "$*" in *optimizer_step*) exit 3 ;; esac\nexit 0\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "out"
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_session.sh"
    env = {**os.environ, "PY": str(fake), "OUT": str(out), "DEEPLAB_EDU_CODE_COMMIT": "abc1234"}
    proc = subprocess.run(["bash", str(script), "6", "2"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = [line for line in calls.read_text().splitlines() if "diagnosis" in line or "bench" in line
             or "optimizer" in line]
    assert "pipeline_diagnosis.py" in steps[0] and "--profile" in steps[0]  # stage 6 first, as asked
    assert "--mode pipeline" in steps[1] and "optimizer_step.py" in steps[2]
    assert all(f"--out {out}/" in step for step in steps)
    log = (out / "gpu_session_6_2.log").read_text()
    assert "stage 2 (optimiser step) failed or timed out (exit 3)" in log and "commit abc1234" in log


def _benchmark_script(name: str) -> Any:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_memory_format_benchmark_times_both_layouts_through_the_trainer() -> None:
    res = _benchmark_script("memory_format").measure("smoke", iterations=1, rounds=2, warmup=1)
    assert set(res["ms_per_step"]) == {"contiguous", "channels_last"} and min(res["ms_per_step"].values()) > 0
    assert res["contiguous_over_channels_last"] == pytest.approx(
        res["ms_per_step"]["contiguous"] / res["ms_per_step"]["channels_last"])
    assert all(len(v) == 2 for v in res["seconds_per_step"].values())


def test_optimizer_step_benchmark_compares_fused_and_foreach() -> None:
    module = _benchmark_script("optimizer_step")
    tiny = {k: v for k, v in module.NETWORKS.items() if v == "tiny_resnet"}
    res = module.measure(torch.device("cpu"), steps=1, networks=tiny)
    assert len(res) == 2 and {k.split(" / ")[1] for k in res} == {"sgd", "adamw"}
    for r in res.values():
        assert r["fused_ms"] > 0 and r["foreach_ms"] > 0 and r["parameters"] > 1_000_000


def test_interleaved_reverses_every_other_round() -> None:
    from deeplab_edu.engine.bench import interleaved

    assert list(interleaved(("a", "b", "c"), 3)) == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]
    assert list(interleaved(("a", "b"), 0)) == []


def test_the_compile_benchmark_compiles_from_scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    """An earlier run's inductor cache made a 15-minute compile take 5 s: the benchmark compiles with
    the caches off, in an empty cache folder, and puts the setting back."""
    import os

    import torch._inductor.config as inductor_config

    from deeplab_edu.engine.bench.compiled import _first_compile

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/somewhere/else")
    with _first_compile("inductor"):
        folder = os.environ["TORCHINDUCTOR_CACHE_DIR"]
        assert os.path.isdir(folder) and not os.listdir(folder) and inductor_config.force_disable_caches
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/somewhere/else" and not os.path.exists(folder)
    assert not inductor_config.force_disable_caches


def test_pipeline_diagnosis_times_every_feed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deeplab_edu.engine.bench import diagnosis_rows, profile_totals
    from deeplab_edu.engine.bench.pipeline import FEEDS, PROFILE_STEPS
    from deeplab_edu.records import load_record

    module = _benchmark_script("pipeline_diagnosis")
    out = tmp_path / "diagnosis.json"
    monkeypatch.setattr("sys.argv", ["pipeline_diagnosis.py", "--preset", "smoke", "--iterations", "1", "--rounds", "1",
                                     "--num-workers", "0", "--profile", "--out", str(out)])
    module.main()
    record = load_record(out)
    rows = diagnosis_rows(record)
    assert [r["feed"] for r in rows] == list(FEEDS)[:7]  # the default: the seven of the first diagnosis
    assert all(r["ms per step"] > 0 and r["launching ms"] <= r["ms per step"] + 1e-6 for r in rows)
    assert record["results"]["compile_mode"] == "none" and record["results"]["switch_interval"] is None
    # the profile's totals come from its events; the printed table (all the first record kept) agrees
    totals = profile_totals(record)
    assert totals == record["results"]["profile_totals"]
    assert totals["cpu_ms_per_step"] > 0 and totals["gpu_ms_per_step"] == 0 and totals["launches_per_step"] == 0
    assert totals["steps"] == record["results"]["profile_steps"] == PROFILE_STEPS
    del record["results"]["profile_totals"]
    from_table = profile_totals(record)
    assert from_table is not None and from_table["cpu_ms_per_step"] == pytest.approx(totals["cpu_ms_per_step"], rel=1e-3)


def test_pipeline_diagnosis_feeds_uint8_batches_and_the_switch_interval(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from deeplab_edu.engine.bench import diagnosis_rows
    from deeplab_edu.records import load_record

    module = _benchmark_script("pipeline_diagnosis")
    out = tmp_path / "diagnosis.json"
    feeds = ["step", "loader-uint8", "loader+switch", "loader-uint8+switch"]
    switch = sys.getswitchinterval()
    monkeypatch.setattr("sys.argv", ["pipeline_diagnosis.py", "--preset", "smoke", "--iterations", "1", "--rounds", "1",
                                     "--num-workers", "0", "--feeds", ",".join(feeds), "--switch-interval", "0.001",
                                     "--out", str(out)])
    module.main()
    record = load_record(out)
    assert [r["feed"] for r in diagnosis_rows(record)] == feeds
    assert record["results"]["switch_interval"] == 0.001 and sys.getswitchinterval() == switch  # given back
    monkeypatch.setattr("sys.argv", ["pipeline_diagnosis.py", "--feeds", "loader,lodaer"])
    with pytest.raises(SystemExit):
        module.main()


def test_uint8_batches_benchmark_compares_float_and_uint8_items(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deeplab_edu.records import load_record

    module = _benchmark_script("uint8_batches")
    assert module.batch_bytes(256, 16, False) == 5 * module.batch_bytes(256, 16, True) == 20 * 2**20
    out = tmp_path / "uint8.json"
    monkeypatch.setattr("sys.argv", ["uint8_batches.py", "--workers", "0", "--size", "32", "--batch", "2",
                                     "--batches", "1", "--rounds", "1", "--out", str(out)])
    module.main()
    results = load_record(out)["results"]
    assert len(results["scenes_per_s"]["float"]) == len(results["scenes_per_s"]["uint8"]) == 1
    assert results["speedup"] > 0 and results["speedup_interval"] is None  # one round: no interval
    assert set(results["item_cpu_ms"]) == {"render", "float32 transform", "uint8 transform"}
    assert all(v > 0 for v in results["item_cpu_ms"].values())


def test_book_time_names_a_step_that_fails_or_hangs_and_its_log(tmp_path: Path) -> None:
    import os

    module = _benchmark_script("book_time")
    with pytest.raises(RuntimeError, match=r"false failed \(exit 1\); its output is in .*setup\.log"):
        module._timed(["false"], tmp_path, dict(os.environ), 10, tmp_path / "setup.log")
    with pytest.raises(RuntimeError, match=r"sleep 5 ran past 1 s; its output is in .*book\.log"):
        module._timed(["sleep", "5"], tmp_path, dict(os.environ), 1, tmp_path / "book.log")
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "lib.so").write_bytes(b"x" * 100_000)
    assert module._size_bytes(tmp_path / "venv") >= 100_000


def test_time_forward_names_a_call_it_cannot_time() -> None:
    from deeplab_edu.complexity import time_forward

    assert time_forward(torch.nn.Identity(), torch.zeros(2), repeats=1, warmup=0) >= 0.0
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        time_forward(torch.nn.Identity(), torch.zeros(2), repeats=0)  # statistics.median([]) raised before
    with pytest.raises(ValueError, match="give the model's inputs"):
        time_forward(torch.nn.Identity())


def test_findings_benchmark_refuses_a_bad_crf_grid_before_training(capsys) -> None:
    main = _benchmark_script("findings").main
    with pytest.raises(SystemExit):
        main(["--crf-theta-alpha", "20", "0"])
    assert "--crf-theta-alpha 0: CRFParams.theta_alpha must be a finite number > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--arms", "v3", "--crf-w-bilateral", "3", "5"])
    assert "choose the CRF search of the arm v2, which --arms leaves out" in capsys.readouterr().err


def test_findings_benchmark_writes_its_matrices_whole_and_only_with_their_record(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The .npz beside the record was written before the record, in place: a crash between left new matrices
    beside an old record (or a truncated .npz) for chapters 08/09 to load. Now it takes its name only once the
    record is written."""
    import numpy as np

    module = _benchmark_script("findings")
    matrices = {"v3|plain|all": np.ones((1, 2, 3, 3))}
    monkeypatch.setattr(module.findings, "run_findings", lambda *a, **k: matrices)
    monkeypatch.setattr(module.findings, "findings_table", lambda *a, **k: [])
    monkeypatch.setattr(module.findings, "runs_provenance", lambda *a, **k: {})
    out = tmp_path / "findings.json"
    npz = out.with_suffix(".npz")
    np.savez_compressed(npz, old=np.zeros(1))
    out.write_text(json.dumps({"command": "old", "results": {"matrices_file": npz.name}}))  # the record it goes with

    def crash(*args: Any, **kwargs: Any) -> None:
        raise OSError("the record could not be written")

    monkeypatch.setattr(module, "write_record", crash)
    argv = ["--arms", "v3", "--seeds", "0", "1", "--runs", str(tmp_path / "runs"), "--out", str(out)]
    with pytest.raises(OSError, match="could not be written"):
        module.main(argv)
    with np.load(npz) as held:
        assert list(held) == ["old"]  # the old matrices, beside their old record
    assert sorted(p.name for p in tmp_path.iterdir()) == ["findings.json", "findings.npz"], "a temporary file was left"

    def write(path: Path, results: dict, **kwargs: Any) -> None:
        Path(path).write_text(json.dumps(results))

    monkeypatch.setattr(module, "write_record", write)
    monkeypatch.setattr(module, "load_record", lambda path: {})
    monkeypatch.setattr(module.findings, "RecordedFindings", lambda record, _: type("R", (), {"markdown": str})())
    assert module.main(argv) == 0
    with np.load(npz) as held:
        assert list(held) == ["v3|plain|all"] and held["v3|plain|all"].dtype == np.uint16
    assert json.loads(out.read_text())["matrices_file"] == "findings.npz"


def test_findings_benchmark_refuses_one_seed_but_trains_it(capsys, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    """One seed has no interval over seeds: its record's verdicts rested on the scenes' bootstrap alone."""
    module = _benchmark_script("findings")

    def evaluated(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("one seed was trained and evaluated")

    monkeypatch.setattr(module.findings, "run_findings", evaluated)  # nothing trains or writes a record here
    where = ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "findings.json")]
    with pytest.raises(SystemExit):  # ["3", "3"]: the next test
        module.main(["--arms", "v3", "--seeds", "0", *where])
    assert "at least two different seeds" in capsys.readouterr().err
    monkeypatch.setattr(module.findings, "train_runs", lambda *a, **k: ["v3/seed0"])
    assert module.main(["--arms", "v3", "--seeds", "0", "--train-only", *where]) == 0  # training one seed is fine


def test_findings_benchmark_refuses_a_seed_given_twice(capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--seeds 0 0 1 passed the two-different-seeds guard and counted seed 0's runs twice (an interval over seeds
    narrower from no new evidence): a seed given twice is refused, and named, with --train-only too."""
    module = _benchmark_script("findings")

    def ran(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a repeated seed was trained or evaluated")

    monkeypatch.setattr(module.findings, "run_findings", ran)  # nothing trains or writes a record here
    monkeypatch.setattr(module.findings, "train_runs", ran)
    where = ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "findings.json")]
    for seeds, named in ((["0", "0", "1"], "seed 0 given more than once"), (["3", "3"], "seed 3 given more than once"),
                         (["1", "2", "1", "2", "4"], "seeds 1, 2 given more than once")):
        for extra in ([], ["--train-only"]):
            with pytest.raises(SystemExit):
                module.main(["--arms", "v3", "--seeds", *seeds, *where, *extra])
            err = capsys.readouterr().err
            assert f"--seeds {' '.join(seeds)}: {named}" in err and "give each seed once" in err, err
    assert not tmp_path.joinpath("runs").exists() and list(tmp_path.iterdir()) == []


def test_the_v3plus_pair_without_smp_stops_before_any_measurement(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    """A dependency audit: without segmentation_models_pytorch, `deeplab-edu bench` measured the whole v3 pair
    (minutes) and only then failed on the v3plus pair's import, writing no record. It is checked first."""
    import sys

    from deeplab_edu.engine.bench import pairs

    def measured(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a pair was measured before the missing package was named")

    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", None)  # not installed, as find_spec sees it
    monkeypatch.setattr(pairs, "measure_models", measured)
    with pytest.raises(ImportError, match="v3plus benchmark pair needs segmentation_models_pytorch.*"
                                          "pip install segmentation-models-pytorch"):
        run_benchmarks(size=32, repeats=2, threads=1, out=tmp_path / "b.json")
    assert list(tmp_path.iterdir()) == []


def test_every_script_that_steps_a_trainer_outside_fit_keeps_freed_memory() -> None:
    """A review: fit() now keeps glibc's freed memory only while it trains, and benchmarks/learnability.py, which
    times train_step() outside fit(), silently lost the setting its record was measured with."""
    scripts = sorted(Path(__file__).resolve().parents[1].glob("benchmarks/*.py"))
    stepping = [p for p in scripts if ".train_step(" in p.read_text()]
    assert stepping, "no benchmark steps a Trainer: this test checks nothing"
    missing = [p.name for p in stepping if "keep_freed_memory()" not in p.read_text()]
    assert not missing, f"these time train_step() outside fit() without keep_freed_memory(): {missing}"


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_every_benchmark_script_imports_its_own_checkout_first() -> None:
    """An audit: seven scripts imported deeplab_edu from wherever the environment's install pointed (another
    checkout's editable install), so they measured that code and recorded its commit. Every script that
    imports the package puts its own checkout first on sys.path before it does."""
    import re

    insert = re.compile(r"^sys\.path\.insert\(0, str\((ROOT|Path\(__file__\)\.resolve\(\)\.parent\.parent)\)\)", re.M)
    importing = re.compile(r"^\s*(from|import) deeplab_edu\b", re.M)
    late = []
    for path in sorted(BENCHMARKS.glob("*.py")):
        text = path.read_text()
        first_import = importing.search(text)
        if first_import is None:
            continue
        found = insert.search(text)
        root_ok = found is not None and (found[1] != "ROOT" or "ROOT = Path(__file__).resolve().parent.parent" in text)
        if not (root_ok and found.start() < first_import.start()):  # type: ignore[union-attr]
            late.append(path.name)
    assert not late, f"these import deeplab_edu without putting their checkout first on sys.path: {late}"


def test_a_benchmark_script_runs_this_checkouts_package_not_the_installed_one(tmp_path: Path) -> None:
    """The same, as it happens: another deeplab_edu first on PYTHONPATH (as an editable install of another
    checkout is) is not the one the script imports."""
    import os
    import subprocess
    import sys

    other = tmp_path / "deeplab_edu"
    other.mkdir()
    (other / "__init__.py").write_text("raise ImportError('the other checkout was imported')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    for name in ("optimizer_step", "pipeline_diagnosis"):
        proc = subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), "--help"], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0 and "the other checkout" not in proc.stderr, (name, proc.stderr[-2000:])


def test_worker_memory_trains_this_checkouts_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its training is a subprocess (``python -m deeplab_edu train``), which found the package from its working
    folder or the environment: it gets this checkout first on PYTHONPATH, before any the caller set."""
    import subprocess

    monkeypatch.syspath_prepend(str(BENCHMARKS))  # its notebook_times, as when it runs as a script
    module = _benchmark_script("worker_memory")
    seen: dict[str, Any] = {}

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        seen.update(kwargs)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(module.subprocess, "run", run)
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    module.peak_bytes(0, 1, timeout=10)
    root = str(Path(__file__).resolve().parents[1])
    assert seen["env"]["PYTHONPATH"].split(":") == [root, "/somewhere/else"]


def _refused(capsys: pytest.CaptureFixture, run: Any) -> str:
    """The one-line error of a script's parser (exit status 2) that ``run`` ends with."""
    with pytest.raises(SystemExit) as exit_:
        run()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].count("error:") == 1, err
    return err


def _measured(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("measured before the arguments were checked")


def test_benchmark_scripts_refuse_a_bad_out_before_measuring(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit: --out naming a folder failed only after the whole measurement (IsADirectoryError in the atomic
    rename) and --out naming a file that is not a record was silently replaced; deeplab-edu bench checked it
    first, the scripts did not. Now each does, right after parsing its arguments."""
    notes = tmp_path / "notes.json"
    notes.write_text("my notes")
    optimizer = _benchmark_script("optimizer_step")
    monkeypatch.setattr(optimizer, "measure", _measured)
    for out, said in ((tmp_path, "is a folder"), (notes, "already holds a file that is not a record")):
        monkeypatch.setattr("sys.argv", ["optimizer_step.py", "--out", str(out)])
        assert f"--out {out} {said}" in _refused(capsys, optimizer.main)
    assert notes.read_text() == "my notes"
    variants = _benchmark_script("v3plus_variants")
    monkeypatch.setattr(variants, "build_pair", _measured)
    monkeypatch.setattr("sys.argv", ["v3plus_variants.py", "--out", str(tmp_path)])
    assert "is a folder" in _refused(capsys, variants.main)
    weights = _benchmark_script("class_weights")
    monkeypatch.setattr(weights, "train_arm", _measured)
    assert "is a folder" in _refused(capsys, lambda: weights.main(["--seeds", "0", "--out", str(tmp_path)]))
    findings = _benchmark_script("findings")
    monkeypatch.setattr(findings.findings, "run_findings", _measured)
    where = ["--arms", "v3", "--seeds", "0", "1", "--runs", str(tmp_path / "runs")]
    assert "is a folder" in _refused(capsys, lambda: findings.main([*where, "--out", str(tmp_path)]))
    # its confusion matrices go beside the record as .npz, which check_record_path does not look at
    (tmp_path / "f.npz").mkdir()
    err = _refused(capsys, lambda: findings.main([*where, "--out", str(tmp_path / "f.json")]))
    assert "f.npz, which is a folder" in err
    (tmp_path / "g.npz").write_bytes(b"someone's arrays")
    err = _refused(capsys, lambda: findings.main([*where, "--out", str(tmp_path / "g.json")]))
    assert "would replace" in err and "g.npz" in err and (tmp_path / "g.npz").read_bytes() == b"someone's arrays"


def test_every_benchmark_script_checks_its_out_after_parsing() -> None:
    """The same for every script that writes a record (run_benchmarks.py is deeplab-edu bench, which checks)."""
    writing = [p for p in sorted(BENCHMARKS.glob("*.py")) if "write_result(" in p.read_text()
               or "write_record(" in p.read_text()]
    assert len(writing) >= 12, [p.name for p in writing]
    unchecked = []
    for path in writing:
        text = path.read_text()
        parsed = text.find(".parse_args(")
        if parsed < 0 or text.find("check_out(", parsed) < 0:
            unchecked.append(path.name)
    assert not unchecked, f"these write a record without checking --out after parsing it: {unchecked}"


def test_pipeline_diagnosis_takes_the_pipeline_benchmarks_preset(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """An audit: without --preset it trained the gpu preset (ResNet-50 at 256 px, seconds a step on a CPU: hours
    at the defaults) on a machine without a GPU. It now takes deeplab-edu bench --mode pipeline's choice."""
    module = _benchmark_script("pipeline_diagnosis")

    class Chosen(Exception):
        pass

    def load_config(preset: str, overrides: Any = None) -> None:
        raise Chosen(preset)

    monkeypatch.setattr(module, "load_config", load_config)
    for cuda, preset in ((False, "cpu"), (True, "gpu")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        monkeypatch.setattr("sys.argv", ["pipeline_diagnosis.py"])
        with pytest.raises(Chosen, match=f"^{preset}$"):
            module.main()
    monkeypatch.setattr("sys.argv", ["pipeline_diagnosis.py", "--preset", "smoke"])
    with pytest.raises(Chosen, match="^smoke$"):
        module.main()
    monkeypatch.setattr("sys.argv", ["pipeline_diagnosis.py", "--help"])
    with pytest.raises(SystemExit):
        module.main()
    shown = " ".join(capsys.readouterr().out.split())
    assert "cpu otherwise" in shown and "(default: 0.0005)" in shown and "Python's own default" in shown


def test_class_weights_writes_runs_bench_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit: its --out defaulted to benchmarks/results/class_weights_camvid_cpu.json, so the README's own
    command replaced the six-seed record chapter 11 reads. It writes runs/bench/ as the other scripts do."""
    module = _benchmark_script("class_weights")
    classes = len(module.CAMVID.class_names)
    monkeypatch.setattr(module, "train_arm", lambda seed, arm, work, iterations: {"miou": 0.5, "iou": [0.5] * classes})
    written = []
    monkeypatch.setattr(module, "write_record", lambda path, *a, **k: written.append(Path(path)))
    monkeypatch.chdir(tmp_path)
    assert module.main(["--seeds", "0"]) == 0
    assert written == [Path("runs") / "bench" / "class_weights_camvid_cpu.json"]


def test_gpu_and_input_checks_come_first_as_one_line(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    """An audit: --device cuda without a GPU ended in torch's "Found no NVIDIA driver" after the models were built
    (optimizer_step.py, v3plus_variants.py) or in a ConfigError's traceback (memory_format.py,
    pipeline_diagnosis.py); v3plus_variants.py --size 40 in smp's traceback and --batch 1 in BatchNorm's."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    optimizer = _benchmark_script("optimizer_step")
    monkeypatch.setattr(optimizer, "measure", _measured)
    monkeypatch.setattr("sys.argv", ["optimizer_step.py", "--device", "cuda"])
    assert "--device='cuda', but this PyTorch sees no CUDA GPU" in _refused(capsys, optimizer.main)
    variants = _benchmark_script("v3plus_variants")
    monkeypatch.setattr(variants, "build_pair", _measured)
    for argv, said in ((["--device", "cuda"], "sees no CUDA GPU"), (["--size", "40"], "size=40: segmentation_models"),
                       (["--batch", "1"], "batch=1: a training step needs at least 2 images")):
        monkeypatch.setattr("sys.argv", ["v3plus_variants.py", *argv])
        assert said in _refused(capsys, variants.main)
    memory = _benchmark_script("memory_format")
    monkeypatch.setattr(memory, "measure", _measured)
    for argv, said in ((["--device", "cuda"], "sees no CUDA GPU"), (["--preset", "nope"], "unknown preset 'nope'")):
        monkeypatch.setattr("sys.argv", ["memory_format.py", *argv])
        assert said in _refused(capsys, memory.main)
    diagnosis = _benchmark_script("pipeline_diagnosis")
    monkeypatch.setattr(diagnosis, "Trainer", _measured)
    for argv, said in ((["--device", "cuda"], "sees no CUDA GPU"), (["--preset", "nope"], "unknown preset 'nope'")):
        monkeypatch.setattr("sys.argv", ["pipeline_diagnosis.py", *argv])
        assert said in _refused(capsys, diagnosis.main)
