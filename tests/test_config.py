from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from deeplab_edu import config


@pytest.mark.parametrize("name", config.PROFILES)
def test_explicit_profile(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(config.ENV_VAR, name)
    assert config.profile() == name
    assert config.choose(smoke=1, cpu=2, gpu=3) == {"smoke": 1, "cpu": 2, "gpu": 3}[name]


@pytest.mark.parametrize("value", ["", "auto", "AUTO "])
def test_automatic_profile(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(config.ENV_VAR, value)
    assert config.profile() == ("gpu" if torch.cuda.is_available() else "cpu")


def test_unknown_profile_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="DEEPLAB_EDU_PROFILE='fast'.*smoke, cpu, gpu"):
        config.profile()


def test_smoke_profile_uses_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.ENV_VAR, "smoke")
    monkeypatch.delenv(config.DEVICE_ENV_VAR, raising=False)
    assert config.device() == torch.device("cpu")
    monkeypatch.setenv(config.ENV_VAR, "cpu")  # the variable decides in every profile, over a GPU there is
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.device() == torch.device("cuda")
    monkeypatch.setenv(config.DEVICE_ENV_VAR, "cpu")
    assert config.device() == torch.device("cpu")


@pytest.mark.parametrize("name", ["meta", "xpu"])
def test_a_device_of_another_kind_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A trial: DEEPLAB_EDU_DEVICE=meta was accepted, and failed later inside a model."""
    monkeypatch.setenv(config.DEVICE_ENV_VAR, name)
    with pytest.raises(ValueError, match=rf"DEEPLAB_EDU_DEVICE='{name}' is a {name} device, which the course does "
                                         r"not run on: use cpu, cuda"):
        config.device()


def test_a_config_files_bad_setting_names_the_file(tmp_path: Path) -> None:
    """A trial: 'device: gpu9' in a config file was blamed on the command line's --device, and
    'output_stride: 7' did not say which file set it."""
    from deeplab_edu.engine.config import ConfigError, load_config

    mine = tmp_path / "mine.yaml"
    for line, expected in [("device: gpu9", r"device='gpu9' \(from the config file '.*mine.yaml'\) is not a device"),
                           ("output_stride: 7", r"output_stride=7 is not an output stride.*\(from the config file "
                                                r"'.*mine.yaml'\)"),
                           ("atrous_rates: [0, 2]", r"atrous_rates='0,2'.*\(from the config file"),
                           ("batch_size: 0", r"batch_size must be at least 1, got 0 \(from the config file"),
                           ("device: meta", r"device='meta' \(from the config file '.*mine.yaml'\) is a meta device")]:
        mine.write_text(line + "\n")
        with pytest.raises(ConfigError, match=expected):
            load_config("smoke", config=mine)
    with pytest.raises(ConfigError) as given:  # a flag's value: no file named (the command line names its flag)
        load_config("smoke", {"output_stride": 7, "device": "cpu"})
    assert "from" not in str(given.value)
    with pytest.raises(ConfigError) as flag:
        load_config("smoke", {"device": "gpu9"})
    assert str(flag.value).startswith("device='gpu9' is not a device")


def test_a_device_torch_cannot_use_is_named_with_its_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """'--device gpu' ended eval and predict with torch's 'Expected one of cpu, cuda, ipu, xpu, ...'."""
    assert config.resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv(config.ENV_VAR, "smoke")
    assert config.resolve_device(None) == torch.device("cpu")
    with pytest.raises(ValueError, match=r"--device='gpu' is not a device: use cpu, cuda, cuda:N"):
        config.resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"--device='cuda:1', but this PyTorch sees no CUDA GPU; use --device=cpu"):
            config.resolve_device("cuda:1")
    monkeypatch.setenv(config.DEVICE_ENV_VAR, "gpu")
    with pytest.raises(ValueError, match=r"DEEPLAB_EDU_DEVICE='gpu' is not a device"):
        config.device()


def test_compile_mode_needs_compile() -> None:
    from deeplab_edu.engine.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="compile_mode='reduce-overhead' has no effect without compile: true"):
        load_config("smoke", {"compile_mode": "reduce-overhead"})
    assert load_config("smoke", {"compile_mode": "reduce-overhead", "compile": True}).compile_mode == "reduce-overhead"


def test_settings_of_the_generated_scenes_are_refused_for_another_data_set(tmp_path) -> None:
    """load_config itself (not only the CLI) refuses image_size, train_length, val_length and difficulty
    given for a data set that does not read them, from the overrides or a config file; a preset's and a
    run's own config.json (which lists every setting) stay silent."""
    import json

    from deeplab_edu.engine.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"image_size=64 \(given\): settings of the generated scenes \(dataset "
                                          "procedural\\), not of dataset folder"):
        load_config("smoke", {"dataset": "folder", "data_root": str(tmp_path), "image_size": 64})
    mine = tmp_path / "mine.yaml"
    mine.write_text("dataset: camvid\ndifficulty: hard\nval_length: 4\n")
    with pytest.raises(ConfigError, match=r"val_length=3 \(given\); difficulty: 'hard' \(in the config file"):
        load_config("smoke", {"val_length": 3}, config=mine)
    # the data set's name in any case (TrainConfig lowers it), and a user's YAML given as the preset
    assert load_config("smoke", {"dataset": "Procedural", "image_size": 64}).image_size == 64
    with pytest.raises(ConfigError, match=r"image_size: 64 \(in the preset"):
        (tmp_path / "own.yaml").write_text("dataset: folder\nimage_size: 64\n")
        load_config(tmp_path / "own.yaml")
    # a run's config.json with nothing saved beside it (the run stopped at its first batch), or a copy
    full = load_config("smoke").to_dict() | {"dataset": "camvid"}
    (tmp_path / "copied.json").write_text(json.dumps(full))
    assert load_config(config=tmp_path / "copied.json").dataset == "camvid"
    assert load_config("smoke", {"dataset": "camvid"}).image_size == load_config("smoke").image_size  # the preset's
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"dataset": "camvid", "image_size": 64, "difficulty": "easy"}))
    assert load_config(config=run / "config.json").dataset == "camvid"
    assert load_config("smoke", {"image_size": 64}).image_size == 64  # the generated scenes read it


def test_a_chapter_in_the_smoke_profile_says_its_numbers_mean_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A learner's trial (stop 59): chapter 10 run in the smoke profile printed "a gain of -6.0 points" and
    contradicted its text, and only the book built in smoke said why; a chapter's first line now says it too."""
    from deeplab_edu import config
    from deeplab_edu.book_pages import SMOKE_NOTE

    monkeypatch.setenv(config.ENV_VAR, "smoke")
    assert config.profile_line().startswith("profile: smoke\n") and config.SMOKE_MEANS in config.profile_line()
    assert config.profile_line(with_device=True).startswith(f"profile: smoke, device: {config.device()}\n")
    # the book's warning says the same, with the profile's name in code font (as `smoke` before it)
    assert "the cpu profile" in config.SMOKE_MEANS and "the `cpu` profile" in SMOKE_NOTE
    assert config.SMOKE_MEANS.replace("the cpu profile", "the `cpu` profile") in SMOKE_NOTE
    monkeypatch.setenv(config.ENV_VAR, "cpu")
    assert config.profile_line() == "profile: cpu"


@pytest.mark.busy_cpu_note
def test_a_chapter_on_a_busy_cpu_says_fewer_threads_help(monkeypatch: pytest.MonkeyPatch) -> None:
    """A learner's trial (stop 59): chapter 10 ran 11 times slower beside another job, with PyTorch's two
    threads waiting for each other; the command line said so, a notebook did not."""
    import psutil

    from deeplab_edu.engine import workers

    monkeypatch.setenv(config.ENV_VAR, "cpu")
    monkeypatch.setenv(config.DEVICE_ENV_VAR, "cpu")
    monkeypatch.setattr(workers, "available_cores", lambda: 2)
    monkeypatch.setattr(workers, "_affinity_cores", lambda: 2)  # no CPU quota
    monkeypatch.setattr(psutil, "cpu_count", lambda: 2)
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None: 60.0)  # 1.2 cores busy...

    class Idle:  # ...none of it this process's (a real count over microseconds could be anything)
        def cpu_percent(self, interval: float | None = None) -> float:
            return 0.0

    monkeypatch.setattr(psutil, "Process", Idle)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.delenv(config.COURSE_CHECKS_ENV, raising=False)
    line = config.profile_line()
    assert line.startswith("profile: cpu\nnote: other processes keep 1.2") and "torch.set_num_threads(1)" in line
    monkeypatch.setenv(config.COURSE_CHECKS_ENV, "1")  # the book's and the tests' runs: no note in the pages
    assert config.profile_line() == "profile: cpu"


def test_memory_limit_reads_the_cgroups_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Binder gives a session about 2 GB on a large machine: the cgroup's limit, not the RAM, is what a chapter
    may use; cgroup v2's "max" and v1's huge "no limit" leave the RAM."""
    import psutil

    ram = psutil.virtual_memory().total
    proc = tmp_path / "cgroup"
    proc.write_text("0::/\n")
    monkeypatch.setattr(config, "PROC_SELF_CGROUP", proc)
    monkeypatch.setattr(config, "CGROUP_ROOT", tmp_path)
    assert config.memory_limit_bytes() == ram  # no limit file
    limit = tmp_path / "memory.max"
    for text, expected in (("2147483648\n", min(ram, 2147483648)), ("max\n", ram), ("9223372036854771712", ram)):
        limit.write_text(text)
        assert config.memory_limit_bytes() == expected, text
    monkeypatch.setattr(config, "PROC_SELF_CGROUP", tmp_path / "absent")  # not Linux
    assert config.memory_limit_bytes() == ram


def test_memory_limit_reads_the_process_cgroup_and_its_parents(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    """A process in a cgroup below the root (this VM's memory cgroup is /process_api/<id>, a JupyterHub
    spawner's a user's slice) is bound by its own limit and every parent's: only the root's files were read, so
    the limit was missed. cgroup v1 (one folder per controller) and v2 (one tree, or unified/ on a hybrid)."""
    import psutil

    ram = psutil.virtual_memory().total
    proc = tmp_path / "cgroup"
    proc.write_text("5:cpu,cpuacct:/x\n4:memory:/hub/user-1\n0::/slice/session\n")
    monkeypatch.setattr(config, "PROC_SELF_CGROUP", proc)
    monkeypatch.setattr(config, "CGROUP_ROOT", tmp_path)

    def limit(relative: str, text: str) -> None:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)

    limit("memory/memory.limit_in_bytes", "9223372036854771712")  # v1's root: no limit
    limit("memory/hub/user-1/memory.limit_in_bytes", "9223372036854771712")
    limit("cpu/x/memory.limit_in_bytes", "1000")  # another controller's folder: not a memory limit
    assert config.memory_limit_bytes() == ram
    limit("memory/hub/memory.limit_in_bytes", "3000000000")  # the parent's limit binds the child
    assert config.memory_limit_bytes() == min(ram, 3000000000)
    limit("slice/session/memory.max", "max")
    limit("unified/slice/memory.max", "2000000000")  # v2's tree on a hybrid machine
    assert config.memory_limit_bytes() == min(ram, 2000000000)
    limit("memory/hub/user-1/memory.limit_in_bytes", "1500000000")
    assert config.memory_limit_bytes() == min(ram, 1500000000)
    # in a cgroup namespace the path can climb above the mount ("0::/../../x", a review): only the mount's root
    monkeypatch.setattr(config, "CGROUP_ROOT", tmp_path / "namespace")
    proc.write_text("0::/../slice\n")
    limit("namespace/memory.max", "1800000000")
    limit("slice/memory.max", "1000")  # beside the mount, not in it: not this process's limit to read
    assert config.memory_limit_bytes() == min(ram, 1800000000)


def test_a_chapter_short_of_memory_says_so_before_it_trains(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Binder's 2 GB is below chapter 08's recorded peak at the cpu profile: its kernel was killed partway through
    the training with no word of why (the README said so, nothing enforced it). Before a chapter trains, it says
    so, naming the record and the smoke profile; chapter 09, which trains chapter 08's run when it is missing,
    too. Not where the runs are finished (a class server's learners load them: a new user's trial found the first
    version, in the chapters' first line, warned them too), in the course's own runs, at smoke or with enough
    memory."""
    import json

    from deeplab_edu.records import RESULTS_DIR
    from deeplab_edu.viz.training import memory_before_training

    peak, chapter, record = config.recorded_peak_memory((9, 8), "cpu")
    rows = {row["chapter"]: row for row in json.loads((RESULTS_DIR / record).read_text())["results"]["chapters"]}
    assert chapter == 8 and peak == rows[8]["peak_memory_gb"] >= rows[9]["peak_memory_gb"]
    assert config.recorded_peak_memory((8,), "gpu") is None  # no such record
    monkeypatch.setenv(config.ENV_VAR, "cpu")
    monkeypatch.delenv(config.COURSE_CHECKS_ENV, raising=False)
    monkeypatch.setattr(config, "memory_limit_bytes", lambda: 2_000_000_000)
    note = config.memory_note(9, 8)
    assert note is not None and note.startswith(
        f"Memory: this session may use 2.00 GB, and chapter 08's training took {peak:.2f} GB at the cpu profile "
        f"(benchmarks/results/{record}; JupyterLab's own memory"), note
    assert "%env DEEPLAB_EDU_PROFILE=smoke in a new cell above the chapter's first cell" in note
    assert "a laptop with 8 GB, Colab" in note and "this chapter took" in config.memory_note(11)

    class Run:  # a RunSpec's status: what train_or_load would do
        def __init__(self, state: str) -> None:
            self.state = state

        def status(self) -> "Run":
            return self

    memory_before_training(9, {9: [Run("finished")], 8: [Run("not started")]})  # trains chapter 08's run
    assert "chapter 08's training took" in capsys.readouterr().out
    monkeypatch.setattr(config, "memory_limit_bytes", lambda: 1_000_000_000)
    memory_before_training(9, {9: [Run("not started")], 8: [Run("finished")]})  # v3+ alone: 09's own peak
    assert f"and this chapter took {rows[9]['peak_memory_gb']:.2f} GB" in capsys.readouterr().out
    monkeypatch.setattr(config, "memory_limit_bytes", lambda: 2_000_000_000)
    memory_before_training(8, {8: [Run("finished")] * 3})  # a class server's finished runs: loaded
    memory_before_training(8, {8: [Run("busy")]})  # another process trains it: this kernel waits, then loads
    assert capsys.readouterr().out == ""
    memory_before_training(8, {8: [Run("finished"), Run("interrupted")]})  # resumed here
    assert "this chapter took" in capsys.readouterr().out
    monkeypatch.setattr(config, "memory_limit_bytes", lambda: 16_000_000_000)  # a laptop: no run's status read

    class Unread(Run):
        def status(self) -> "Run":
            raise AssertionError("status() read where every training fits")

    memory_before_training(8, {8: [Unread("not started")]})
    assert capsys.readouterr().out == "" and config.memory_note(11) is None
    monkeypatch.setattr(config, "memory_limit_bytes", lambda: 2_000_000_000)
    monkeypatch.setenv(config.COURSE_CHECKS_ENV, "1")  # the book's and the tests' runs
    memory_before_training(8, {8: [Run("not started")]})
    assert capsys.readouterr().out == ""
    monkeypatch.delenv(config.COURSE_CHECKS_ENV)
    monkeypatch.setenv(config.ENV_VAR, "smoke")
    assert config.memory_note(11) is None


def test_scale_range_given_as_a_list_is_kept_as_a_pair() -> None:
    """A new user's trial: TrainConfig(scale_range=[0.5, 2.0]) stayed a list (its hint says a tuple); a list
    of another length failed in validate as "too many values to unpack" instead of naming the setting."""
    from deeplab_edu.engine.config import ConfigError, TrainConfig, validate

    cfg = TrainConfig(scale_range=[0.75, 1.25])  # type: ignore[arg-type]
    assert cfg.scale_range == (0.75, 1.25) and isinstance(cfg.scale_range, tuple)
    assert cfg.to_dict()["scale_range"] == [0.75, 1.25]  # checkpoints store a list, as before
    with pytest.raises(ConfigError, match=r"scale_range=\(0.5, 1.0, 2.0\) \(from the configuration\) should be two"):
        validate(TrainConfig(scale_range=[0.5, 1.0, 2.0]))  # type: ignore[arg-type]


def test_a_setting_of_the_wrong_type_is_named_in_python_and_in_a_file(tmp_path) -> None:
    """A practitioner's trial: ``out_dir: null`` (or a folder named 2024, which YAML reads as a number)
    crashed the trainer with a ``TypeError`` traceback, ``out_dir: ''`` trained into the working folder,
    and ``TrainConfig(crop_size="64")`` failed in validate with "'<' not supported between ..."."""
    from deeplab_edu.engine.config import ConfigError, TrainConfig, load_config, validate

    for kwargs, message in [({"crop_size": "64"}, "crop_size='64' should be a whole number"),
                            ({"lr": "0.01"}, "lr='0.01' should be a number"),
                            ({"batch_size": 2.0}, "batch_size=2.0 should be a whole number"),
                            ({"out_dir": None}, "out_dir=None names no file or folder"),
                            ({"out_dir": ""}, "out_dir='' names no file or folder"),
                            ({"data_root": 5}, "data_root=5 should be a path")]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            validate(TrainConfig(**kwargs))
    validate(TrainConfig(data_root=None, eval_output_stride=None, class_weights=None, num_workers=None))
    # the rates as build_model takes them are kept in the flag's form
    assert TrainConfig(atrous_rates=(1, 2, 3)).atrous_rates == "1,2,3"  # type: ignore[arg-type]
    for text, message in [("out_dir: null", "out_dir=None names no file or folder"),
                          ("data_root: 2024", "data_root=2024 should be a path: write it as a string"),
                          ("init_from: [a, b]", "init_from=['a', 'b'] should be a path")]:
        (tmp_path / "run.yaml").write_text(text + "\n")
        with pytest.raises(ConfigError, match=rf"{re.escape(message)}.*\(from the preset '.*run.yaml'\)"):
            load_config(tmp_path / "run.yaml")


def test_text_checks_print_the_blocks_own_failed_assert_in_a_learners_run(monkeypatch, capsys) -> None:
    """``config.text_checks()``: in a learner's run the block's own ``assert`` prints and the run goes on;
    where the course checks itself it raises; an AssertionError from inside a called function always raises
    (it is a failure, not a check of the text)."""
    import pytest

    from deeplab_edu import config

    monkeypatch.delenv(config.COURSE_CHECKS_ENV, raising=False)
    miou = 0.29
    with config.text_checks():
        assert miou > 0.3, miou
    assert "`assert miou > 0.3, miou` does not hold (0.29)" in capsys.readouterr().out

    def helper() -> None:
        assert False, "inside a helper"

    with pytest.raises(AssertionError, match="inside a helper"), config.text_checks():
        helper()
    monkeypatch.setenv(config.COURSE_CHECKS_ENV, "1")
    with pytest.raises(AssertionError), config.text_checks():
        assert miou > 0.3


def test_an_aux_head_with_a_loss_weight_of_0_is_refused() -> None:
    """``--aux-loss --aux-weight 0``: the loss skips the head, so under torchrun DDP stopped at iteration 2
    ("Parameter indices which did not receive grad"; an audit), and in one process the head was dead weight.
    Refused naming both flags; a weight of 0 without the head, and the head with a weight, still validate."""
    from deeplab_edu.engine.config import ConfigError, TrainConfig, load_config, validate

    with pytest.raises(ConfigError, match=r"--aux-loss --aux-weight 0\): an aux head that the loss ignores: "
                                          r"drop --aux-loss"):
        validate(TrainConfig(aux_loss=True, aux_weight=0.0))
    with pytest.raises(ConfigError, match="aux_loss with aux_weight=0"):
        load_config("smoke", {"aux_loss": True, "aux_weight": 0})
    validate(TrainConfig(aux_loss=False, aux_weight=0.0))
    validate(TrainConfig(aux_loss=True, aux_weight=0.5))
