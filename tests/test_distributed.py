"""Two processes over gloo (DDP + synchronised BatchNorm) train exactly like one process with the whole batch when
their batches hold as many labelled pixels (each process's loss is the mean over its own)."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
import torch.multiprocessing as mp

from deeplab_edu.engine.checkpoint import load_checkpoint
from deeplab_edu.engine.distributed import CPUSyncBatchNorm

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_process(rank: int, world: int, port: int | None) -> None:
    """Make this spawned process rank ``rank`` of ``world`` (torchrun's environment; ``port`` ``None``:
    torchrun set it already), one thread, the tests' fixtures importable and the model's seed set."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    torch.set_num_threads(1)
    if port is not None:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port))
    torch.manual_seed(0)


def _train(rank: int, world: int, out: str, port: int, batch: int) -> None:
    _as_process(rank, world, port)
    from test_engine_fixtures import TinyNet, TinyScenes, tiny_config

    from deeplab_edu.engine.trainer import Trainer

    model = TinyNet(dropout=0.0)
    cfg = tiny_config(out, iterations=4, batch_size=batch, eval_every=4, ckpt_every=4, momentum=0.9, num_workers=0)
    trainer = Trainer(cfg, model=model, train_set=TinyScenes(16), val_set=TinyScenes(5, seed=9, augment=False))
    if world > 1:
        assert sum(isinstance(m, CPUSyncBatchNorm) for m in trainer.net.modules()) == 2
    Path(f"{out}_dropout_seed_{rank}.txt").write_text(str(torch.initial_seed()))  # beside the run's folder
    trainer.fit()
    from deeplab_edu.engine.distributed import cleanup

    del trainer  # its DDP reducer before the group: see cleanup()
    cleanup()


def _one_and_two_processes(train: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """The final checkpoints of ``train`` (``_train``'s arguments) in one process with batch 4 and in two spawned
    processes with batch 2 each: the same global batch."""
    one, two = tmp_path / "one", tmp_path / "two"
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(name, "")  # restored after the test: train sets them in this process
    train(0, 1, str(one), 0, batch=4)
    _spawn(train, (2, str(two), _free_port(), 2))
    return load_checkpoint(one / "checkpoints"), load_checkpoint(two / "checkpoints")


def test_world_size_two_matches_world_size_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _one_and_two_processes(_train, tmp_path, monkeypatch)
    one, two = tmp_path / "one", tmp_path / "two"  # the runs' folders (_one_and_two_processes)
    for key, value in a["model"].items():
        assert torch.allclose(value.float(), b["model"][key].float(), atol=1e-5, rtol=1e-4), key
    va = [r for r in a["history"] if r["split"] == "val"][-1]
    vb = [r for r in b["history"] if r["split"] == "val"][-1]
    assert abs(va["miou"] - vb["miou"]) < 1e-6  # the summed confusion matrices count every image once
    la = [r["loss"] for r in a["history"] if r["split"] == "train"]
    lb = [r["loss"] for r in b["history"] if r["split"] == "train"]
    assert la == pytest.approx(lb, rel=1e-4)
    # dropout: each process its own random stream (a trial: every process drew the same masks); rank 0 the run's
    seeds = [int(Path(f"{two}_dropout_seed_{rank}.txt").read_text()) for rank in (0, 1)]
    assert seeds[0] == int(Path(f"{one}_dropout_seed_0.txt").read_text()) == 0 and seeds[1] != seeds[0]
    # resumed in one process: the message says the global batch changed (a practitioner's trial: it did not)
    from test_engine_fixtures import TinyNet, TinyScenes, tiny_config

    from deeplab_edu.engine.trainer import Trainer

    cfg = tiny_config(two, iterations=6, batch_size=2, eval_every=4, ckpt_every=4, momentum=0.9, num_workers=0,
                      resume=True)
    again = Trainer(cfg, model=TinyNet(dropout=0.0), train_set=TinyScenes(16),
                    val_set=TinyScenes(5, seed=9, augment=False))
    assert "processes 2 -> 1 (a global batch of 4 -> 2" in str(again._resume_message), again._resume_message


def _train_with_dropout(rank: int, world: int, out: str, port: int, resume: bool) -> None:
    """Four iterations over two processes of a model with dropout, a checkpoint every two (or resumed)."""
    _as_process(rank, world, port)
    from test_engine_fixtures import TinyNet, TinyScenes, tiny_config

    from deeplab_edu.engine.distributed import cleanup
    from deeplab_edu.engine.trainer import Trainer

    cfg = tiny_config(out, iterations=4, batch_size=2, eval_every=4, ckpt_every=2, keep_last=5, momentum=0.9,
                      num_workers=0, resume=resume)
    Trainer(cfg, model=TinyNet(dropout=0.5), train_set=TinyScenes(16),
            val_set=TinyScenes(5, seed=9, augment=False)).fit()
    cleanup()


def test_a_resumed_multi_process_run_goes_on_as_the_uninterrupted_one(tmp_path: Path) -> None:
    """Each process draws its dropout masks from a stream of its own; the checkpoint keeps every process's
    (``process_rng``), so a run resumed with as many processes trains to the uninterrupted run's weights
    bit for bit. Before, a resumed process > 0 started a new stream, and its masks differed (the control)."""
    import shutil

    from deeplab_edu.engine.checkpoint import save_atomic

    ref = tmp_path / "uninterrupted"
    _spawn(_train_with_dropout, (2, str(ref), _free_port(), False))
    final = load_checkpoint(ref / "checkpoints")
    halfway = ref / "checkpoints" / "ckpt_00000002.pt"
    assert final["iteration"] == 4 and len(torch.load(halfway, weights_only=True)["process_rng"]) == 2
    runs = {}
    for name in ("resumed", "resumed without process_rng"):
        cut = tmp_path / name.replace(" ", "_")
        shutil.copytree(ref, cut)
        (cut / "checkpoints" / "ckpt_00000004.pt").unlink()  # stopped after the checkpoint of iteration 2
        if name != "resumed":
            state = torch.load(cut / "checkpoints" / "ckpt_00000002.pt", weights_only=True)
            del state["process_rng"]  # what the checkpoints held before
            save_atomic(state, cut / "checkpoints" / "ckpt_00000002.pt")
        _spawn(_train_with_dropout, (2, str(cut), _free_port(), True))
        runs[name] = load_checkpoint(cut / "checkpoints")
        assert runs[name]["iteration"] == 4
    assert all(torch.equal(v, runs["resumed"]["model"][k]) for k, v in final["model"].items())
    assert not all(torch.equal(v, runs["resumed without process_rng"]["model"][k]) for k, v in final["model"].items())


def _train_until_stopped(rank: int, world: int, out: str, port: int | None, workers: int = 0,
                         val_length: int = 5, iterations: int = 200, resume: bool = False) -> None:
    """Up to 200 slow iterations over two processes, no planned checkpoint before the last; the iteration a
    stop request ended the run at, and the signal, are written beside the run, per process. With more than
    5 validation scenes the run validates every 2 iterations, and each process marks beside the run when
    it reads them once it has trained (``<run>_validating<rank>``)."""
    _as_process(rank, world, port)
    os.environ["DEEPLAB_EDU_TEST_SLOW"] = "1"  # 20 ms an image: a step takes tens of milliseconds
    from test_engine_fixtures import TinyNet, TinyScenes, tiny_config

    from deeplab_edu.engine.distributed import cleanup
    from deeplab_edu.engine.trainer import Trainer, TrainingInterrupted

    class MarkedScenes(TinyScenes):
        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            if Path(out, "metrics.csv").is_file():  # the run's (not the Trainer's look at a scene)
                Path(f"{out}_validating{rank}").touch()
            return super().__getitem__(i)

    validating = val_length > 5
    cfg = tiny_config(out, iterations=iterations, batch_size=2, eval_every=2 if validating else 1000,
                      ckpt_every=1000, log_every=1, num_workers=workers, resume=resume)
    trainer = Trainer(cfg, model=TinyNet(dropout=0.5), train_set=TinyScenes(16),
                      val_set=(MarkedScenes if validating else TinyScenes)(val_length, seed=9, augment=False))
    try:
        trainer.fit()
        stopped = "not stopped"
    except TrainingInterrupted as err:
        stopped = f"{trainer.iteration} {err.signum}"
    except BaseException as err:  # noqa: BLE001 - the test names what else ended it
        stopped = f"{type(err).__name__}: {err}"
    Path(f"{out}_rank{trainer.dist.rank}.txt").write_text(stopped)
    del trainer  # its DDP reducer before the group: see cleanup()
    cleanup()


def _wait_for_steps(run: Path, steps: int, alive: Callable[[], bool]) -> None:
    """Wait until the run's metrics.csv holds ``steps`` training rows (at most 120 s)."""
    import time

    metrics, deadline = run / "metrics.csv", time.monotonic() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) > steps):  # and a header
        assert alive(), "the processes ended before they were stopped"
        assert time.monotonic() < deadline, f"the two processes trained no {steps} steps within 120 s"
        time.sleep(0.05)


def _stopped_at(run: Path, first: int = 3) -> tuple[int, int]:
    """The (iteration, signal) both processes stopped at, which must be the same (from ``first`` on), and its
    checkpoint there."""
    stopped = {Path(f"{run}_rank{rank}.txt").read_text() for rank in (0, 1)}
    assert len(stopped) == 1 and stopped != {"not stopped"}, stopped
    at, signum = (int(v) for v in stopped.pop().split())
    assert first <= at < 200
    state = load_checkpoint(run / "checkpoints")
    assert state["iteration"] == at and len(state["process_rng"]) == 2
    return at, signum


@contextlib.contextmanager
def _killed_at_the_end(processes: mp.ProcessContext) -> Iterator[None]:
    """Kill those of ``processes`` still alive when the block ends (a failed test leaves none behind)."""
    try:
        yield
    finally:
        for p in processes.processes:
            if p.is_alive():
                p.kill()


def _spawn(fn: Callable[..., None], args: tuple[Any, ...], timeout: float = 300.0) -> None:
    """``mp.spawn(fn, args, nprocs=2)``, bounded: fails naming ``fn`` when the two processes have not ended
    within ``timeout`` seconds, and kills them (``mp.spawn`` waits until pytest-timeout's 900 s ends the whole
    run and leaves the processes: under torch 2.11, ``make test-compat`` hung at a process's exit, most likely
    a DDP reducer freed after its process group was destroyed)."""
    import time

    processes = mp.start_processes(fn, args=args, nprocs=2, join=False, start_method="spawn")
    with _killed_at_the_end(processes):
        deadline = time.monotonic() + timeout
        while not processes.join(timeout=5):
            assert time.monotonic() < deadline, f"{fn.__name__}: the two processes did not end within {timeout:.0f} s"


def _stop(processes: mp.ProcessContext, pids: list[int]) -> None:
    """SIGTERM to each of ``pids`` in turn, then wait at most 120 s for ``processes`` to end."""
    import signal
    import time

    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 120
    while not processes.join(timeout=5):
        assert time.monotonic() < deadline, "the two processes did not end within 120 s of the stop request"


def test_a_stop_request_stops_every_process_at_the_same_step_and_saves_there(tmp_path: Path) -> None:
    """A stop request (Ctrl-C, SIGTERM) that reaches one torchrun process stops every process after the same
    step, and the checkpoint of that step is written: the processes agree after each step (the signal too:
    each exits with SIGTERM's status). Before, a stop under torchrun kept the last planned checkpoint only.
    The request comes twice, as where a scheduler signals every process and torchrun passes its own signal
    on: it does not stop at once (torchrun kills 30 s later)."""
    import signal

    run = tmp_path / "run"
    processes = mp.start_processes(_train_until_stopped, args=(2, str(run), _free_port()), nprocs=2, join=False,
                                   start_method="spawn")
    with _killed_at_the_end(processes):
        _wait_for_steps(run, 3, lambda: all(p.is_alive() for p in processes.processes))
        _stop(processes, [processes.pids()[1]] * 2)  # the process that does not write the checkpoint, twice
    assert _stopped_at(run)[1] == signal.SIGTERM  # rank 0 too, which got no signal


def test_a_stop_request_cuts_a_validation_short_under_torchrun(tmp_path: Path) -> None:
    """A stop request during a validation (SIGTERM to each process, as torchrun passes its own on) cuts it
    short: each process stops its pass at a batch of its own, they agree that one stopped, and all save
    the step's checkpoint with the validation still due, which the resumed run does first. Before, the
    processes finished the pass (torchrun kills them 30 s after its signal, and a long one lost the run's
    progress since its last planned checkpoint)."""
    import time

    run = tmp_path / "run"
    processes = mp.start_processes(_train_until_stopped, args=(2, str(run), _free_port(), 0, 200), nprocs=2,
                                   join=False, start_method="spawn")  # 100 scenes a process: 2 s a pass
    with _killed_at_the_end(processes):
        deadline = time.monotonic() + 120
        while not Path(f"{run}_validating1").exists():
            assert all(p.is_alive() for p in processes.processes), "the processes ended before they validated"
            assert time.monotonic() < deadline, "the two processes did not validate within 120 s"
            time.sleep(0.02)
        _stop(processes, processes.pids())
    at, _ = _stopped_at(run, first=2)
    assert at == 2 and load_checkpoint(run / "checkpoints")["validation_due"] == 2
    assert ",val," not in (run / "metrics.csv").read_text()  # no validation finished
    _spawn(_train_until_stopped, (2, str(run), _free_port(), 0, 200, 2, True))
    assert Path(f"{run}_rank0.txt").read_text() == "not stopped"
    assert ",val," in (run / "metrics.csv").read_text()  # the resumed run validated at iteration 2 first


def test_torchrun_stopped_by_sigterm_saves_with_loader_workers(tmp_path: Path) -> None:
    """`kill` (SIGTERM) of torchrun, whose training processes have DataLoader workers: torchrun passes the
    signal to each process's whole group, which the workers, in groups of their own, are not in (a review's
    trial: a worker killed by it ended the run with "DataLoader worker exited unexpectedly" and no
    checkpoint when the main process noticed before its stop, a race; test_workers.py checks the groups);
    both processes stop at one step and save."""
    import signal
    import subprocess
    import sys

    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
               str(_free_port()), __file__, str(run)]
    torchrun = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_steps(run, 3, lambda: torchrun.poll() is None)
        torchrun.send_signal(signal.SIGTERM)
        output = torchrun.communicate(timeout=120)[0]
    finally:
        if torchrun.poll() is None:
            torchrun.kill()
    assert "exited unexpectedly" not in output, output[-3000:]
    assert _stopped_at(run)[1] == signal.SIGTERM, output[-3000:]


def _download_in_turn(rank: int, world: int, folder: str, port: int) -> None:
    import datetime
    import time

    import torch.distributed as dist

    from deeplab_edu.engine.distributed import DistInfo, local_main_first

    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"tcp://127.0.0.1:{port}",
                            timeout=datetime.timedelta(seconds=60))
    log = Path(folder) / "order.txt"
    try:
        with local_main_first(DistInfo(rank, world, rank)):
            if rank == 0:
                time.sleep(0.5)  # a download: the other process must not start before it ends
                with log.open("a") as f:
                    f.write("0")
                raise RuntimeError("offline")  # and when it fails, the other is not left waiting
            with log.open("a") as f:
                f.write(str(rank))
    except RuntimeError:
        pass
    dist.destroy_process_group()


def test_a_download_runs_in_the_first_process_first_also_when_it_fails(tmp_path: Path) -> None:
    _spawn(_download_in_turn, (2, str(tmp_path), _free_port()))
    assert (tmp_path / "order.txt").read_text() == "01"


if __name__ == "__main__":  # one process of torchrun's (test_torchrun_stopped_by_sigterm_saves_with_loader_workers)
    import sys

    _train_until_stopped(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), sys.argv[1], None, workers=1)


def _train_command(rank: int, world: int, out: str, port: int) -> None:
    """``deeplab-edu train --record`` in one of two processes, two iterations of tiny smoke scenes; the Trainer
    warns once as it starts. Beside the run, per process: the records it wrote and the warnings it showed."""
    import warnings

    _as_process(rank, world, port)
    from deeplab_edu import records
    from deeplab_edu.cli import main
    from deeplab_edu.engine.trainer import Trainer

    written, write, fit = Path(f"{out}_records{rank}.txt"), records.write_record, Trainer.fit
    shown = Path(f"{out}_warnings{rank}.txt")
    written.write_text(""), shown.write_text("")

    def spied_write(path: Any, *args: Any, **kwargs: Any) -> Path:
        written.write_text(written.read_text() + f"{path}\n")
        return write(path, *args, **kwargs)

    def warned_fit(self: Trainer) -> dict[str, Any]:
        warnings.warn("a warning of the run", UserWarning)
        return fit(self)

    def show(message: Any, *args: Any, **kwargs: Any) -> None:
        shown.write_text(shown.read_text() + f"{message}\n")

    records.write_record, Trainer.fit = spied_write, warned_fit  # type: ignore[method-assign]
    warnings.simplefilter("always")
    warnings.showwarning = show
    status = main(["train", "--preset", "smoke", "--iterations", "2", "--train-length", "8", "--val-length", "2",
                   "--image-size", "32", "--crop-size", "32", "--no-progress", "--out-dir", out,
                   "--record", f"{out}.json"])
    assert status == 0, status
    from deeplab_edu.engine.distributed import cleanup

    cleanup()


def test_train_under_torchrun_writes_its_record_and_shows_a_warning_once(tmp_path: Path) -> None:
    """An audit: ``deeplab-edu train --record FILE`` under torchrun wrote FILE in every process (its "done" line
    came from rank 0 only), and each Python warning printed once per process. Rank 0 now writes the record and
    shows the warnings; the other process checks the record's path (before the run) and ignores warnings."""
    import json

    run = tmp_path / "run"
    _spawn(_train_command, (2, str(run), _free_port()))
    assert Path(f"{run}_records0.txt").read_text() == f"{run}.json\n"
    assert Path(f"{run}_records1.txt").read_text() == ""
    assert json.loads(Path(f"{run}.json").read_text())["results"]["train_loss_curve"]
    assert "a warning of the run" in Path(f"{run}_warnings0.txt").read_text()
    assert Path(f"{run}_warnings1.txt").read_text() == ""


def _train_ragged(rank: int, world: int, out: str, port: int, batch: int) -> None:
    """One step of a batch of ``batch`` a process, on scenes with 0 to 14 of their 16 rows ignored."""
    _as_process(rank, world, port)
    from test_engine_fixtures import TinyNet, TinyScenes, tiny_config

    from deeplab_edu.engine.distributed import cleanup
    from deeplab_edu.engine.trainer import Trainer

    class Ragged(TinyScenes):
        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            img, mask = super().__getitem__(i)
            mask[: (i * 5) % 15] = 255
            return img, mask

    cfg = tiny_config(out, iterations=1, batch_size=batch, eval_every=1, ckpt_every=1, momentum=0.9, num_workers=0)
    trainer = Trainer(cfg, model=TinyNet(dropout=0.0), train_set=Ragged(16, augment=False),
                      val_set=TinyScenes(2, seed=9, augment=False))
    trainer.fit()
    del trainer  # its DDP reducer before the group: see cleanup()
    cleanup()


def test_world_size_two_differs_from_world_size_one_where_the_labelled_pixels_differ(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """engine/distributed.py's docstring (an audit: it promised N processes x batch B equal one process x batch N x B
    always): each process's loss is the mean over its own labelled pixels and DDP averages the processes', so where
    the shards hold different numbers of labelled pixels the step is not the one process's
    (test_world_size_two_matches_world_size_one: it is where they hold as many)."""
    a, b = _one_and_two_processes(_train_ragged, tmp_path, monkeypatch)
    la = [r["loss"] for r in a["history"] if r["split"] == "train"]
    lb = [r["loss"] for r in b["history"] if r["split"] == "train"]
    assert la != pytest.approx(lb, rel=1e-4)  # the tolerance under which they match there
    assert not all(torch.allclose(v.float(), b["model"][k].float(), atol=1e-5, rtol=1e-4)
                   for k, v in a["model"].items())
