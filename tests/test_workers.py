"""DataLoader workers run one thread each, so two workers load (nearly) twice the scenes of one (issue 11)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from deeplab_edu.engine import workers
from deeplab_edu.engine.bench import cores_scaling, loader_throughput
from deeplab_edu.engine.config import ConfigError, TrainConfig, validate
from deeplab_edu.engine.workers import (
    MAX_DEFAULT_WORKERS, default_num_workers, make_loader, resolve_num_workers, worker_thread_counts,
)


class _ThreadCounts(Dataset):
    """Each item is the thread count of every thread pool of the process that loads it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict[str, int]:
        import numpy as np

        np.ones((64, 64)) @ np.ones((64, 64))  # BLAS is loaded and used, as in the scene generator
        time.sleep(0.05)  # so both workers get items
        return worker_thread_counts()


def test_default_num_workers_follows_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    for cores, expected in [(1, 0), (2, 1), (4, 3), (16, MAX_DEFAULT_WORKERS), (64, MAX_DEFAULT_WORKERS)]:
        monkeypatch.setattr(workers, "available_cores", lambda c=cores: c)
        assert default_num_workers() == expected, cores
    monkeypatch.setattr(workers, "available_cores", lambda: 16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: 4 training processes share the 16 cores
    assert default_num_workers() == 3
    assert resolve_num_workers(None) == 3 and resolve_num_workers(0) == 0 and resolve_num_workers(5) == 5
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="num_workers"):
            resolve_num_workers(bad)  # type: ignore[arg-type]
    assert TrainConfig().num_workers is None
    with pytest.raises(ConfigError, match="num_workers=-2"):
        validate(TrainConfig(num_workers=-2))


def test_workers_use_one_thread_each_and_the_main_process_keeps_its_own() -> None:
    import numpy  # noqa: F401  (BLAS loaded before the workers fork, as in the engine)

    before = worker_thread_counts()
    seen = list(make_loader(_ThreadCounts(), batch_size=None, num_workers=2))
    assert len(seen) == 4
    for counts in seen:
        assert counts["torch"] == 1
        assert all(v == 1 for v in counts.values()), f"a worker runs more than one thread: {counts}"
    assert worker_thread_counts() == before, "the limits leaked into the main process"
    if workers.available_cores() > 1 and before.get("openblas", 1) > 1:
        # the control: a plain DataLoader's workers keep one BLAS thread per core
        plain = list(DataLoader(_ThreadCounts(), batch_size=None, num_workers=1))
        assert max(c.get("openblas", 1) for c in plain) > 1


def test_user_worker_init_runs_after_the_limits() -> None:
    with pytest.raises(ValueError, match="worker_init_fn needs num_workers > 0"):
        make_loader(_ThreadCounts(), num_workers=0, worker_init_fn=print)
    loader = make_loader(_ThreadCounts(), num_workers=1, worker_init_fn=_set_seed)
    assert loader.worker_init_fn is not None and loader.worker_init_fn.user_fn is _set_seed
    assert make_loader(_ThreadCounts(), num_workers=0, device="cpu").pin_memory is False


class _Hangs(Dataset):
    """An item that never comes (a stalled network file system, a deadlocked transform)."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> torch.Tensor:
        time.sleep(60)
        return torch.zeros(1)


def test_a_worker_that_hangs_fails_the_loader_instead_of_blocking_it() -> None:
    assert make_loader(_ThreadCounts(), num_workers=1).timeout == workers.LOADER_TIMEOUT_S
    assert make_loader(_ThreadCounts(), num_workers=0).timeout == 0  # the main process: nothing to wait for
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="DataLoader timed out after 2 seconds"):
        next(iter(make_loader(_Hangs(), num_workers=1, timeout=2)))
    assert time.monotonic() - start < 30


def _set_seed(worker_id: int) -> None:
    torch.manual_seed(worker_id)


def _single_thread_cpu_per_scene(batches: int) -> float:
    """CPU seconds per scene of the same loading in this process, limited to one thread."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    try:
        with threadpool_limits(limits=1):
            torch.set_num_threads(1)
            return loader_throughput(0, batches=batches)["cpu_s_per_scene"]
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_two_workers_load_at_least_one_and_a_half_times_the_scenes_of_one() -> None:
    """Through the engine's own training loader (256 px scenes, DeepLab's augmentation, batch 8).

    Measured on the wall clock, interleaved (1, 2, 2, 1 workers). Two things other than the loader can
    keep two workers under 1.5x, and the test tells them apart instead of flaking:

    - another job takes cores the workers need: the test measures how many cores other processes kept
      busy and, above a quarter of a core, tries again; if the machine stays busy it checks the CPU
      cost instead (each worker no more CPU per scene than the same loading in one thread, where
      oversubscribed BLAS threads cost about 2.5x here; two workers no more than 4/3 of one worker's);
    - the two cores themselves do not give 2x to independent work (hyper-threads of one core, a host
      that takes time from the VM): :func:`~deeplab_edu.engine.bench.loader.cores_scaling` measures what two
      separate one-thread processes get, and two workers must reach 80 % of that ceiling when it is
      under 1.875x (1.5 / 0.8). On this project's 2-core VM two workers give 1.8-1.9x, so the ceiling is
      rarely measured; oversubscribed workers give 0.67-0.85x here, which fails whatever the ceiling.
      The host of a VM makes both figures noisy (the ceiling here ranged 1.3-2.2x over 30-80 batches),
      so a miss gets up to three tries, each measuring both again.
    """
    batches, attempts = 30, 3
    results: list[dict[str, Any]] = []
    quiet_misses: list[str] = []
    for attempt in range(attempts):
        results = [loader_throughput(w, batches=batches) for w in (1, 2, 2, 1)]
        one = results[0]["scenes_per_s"] + results[3]["scenes_per_s"]
        two = results[1]["scenes_per_s"] + results[2]["scenes_per_s"]
        others = [r["other_cores"] for r in results]
        print(f"attempt {attempt + 1}: 2 workers / 1 worker x{two / one:.2f} "
              f"({[round(r['scenes_per_s'], 1) for r in results]} scenes/s; other processes used "
              f"{[None if o is None else round(o, 2) for o in others]} cores)")
        if two >= 1.5 * one:
            return
        if any(o is None for o in others) or max(others) < 0.25:  # type: ignore[type-var]
            cores = cores_scaling(2, batches=batches)
            bar = min(1.5, 0.8 * cores["ratio"])
            print(f"    two separate one-thread processes get x{cores['ratio']:.2f} the scenes/s of one: "
                  f"2 workers need x{bar:.2f}")
            if two >= bar * one:
                return
            quiet_misses.append(f"x{two / one:.2f} where x{bar:.2f} was needed (cores x{cores['ratio']:.2f})")
        time.sleep(2)
    if quiet_misses:
        pytest.fail(f"on a quiet machine 2 workers gave too few scenes/s compared with 1 worker: {quiet_misses}; "
                    f"last attempt: {results}")
    reference = _single_thread_cpu_per_scene(batches)
    cpu_one = (results[0]["cpu_s_per_scene"] + results[3]["cpu_s_per_scene"]) / 2
    cpu_two = (results[1]["cpu_s_per_scene"] + results[2]["cpu_s_per_scene"]) / 2
    print(f"busy machine: CPU ms per scene: one thread in-process {1000 * reference:.1f}, "
          f"1 worker {1000 * cpu_one:.1f}, 2 workers {1000 * cpu_two:.1f}")
    assert cpu_one <= 1.5 * reference, f"a worker costs {cpu_one / reference:.2f}x the CPU of one thread per scene"
    assert cpu_two <= 4 / 3 * cpu_one, f"2 workers cost {cpu_two / cpu_one:.2f}x the CPU per scene of 1 worker"


class _SigintHandlers(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> torch.Tensor:
        import signal

        own_group = os.getpgid(0) == os.getpid()  # torchrun's SIGTERM to the training process's group misses it
        return torch.tensor(signal.getsignal(signal.SIGINT) == signal.SIG_IGN and own_group
                            and signal.getsignal(signal.SIGTERM) != signal.SIG_IGN)  # still ended by terminate()


def test_workers_leave_ctrl_c_to_the_main_process() -> None:
    """A terminal's Ctrl-C reaches every process of the job, and torchrun's SIGTERM every process of each
    training process's group; the workers ignore the first and are out of that group, so the Trainer can
    finish its step and save instead of waiting for a worker that quit. SIGTERM still ends a worker:
    ignoring it left Python waiting at exit for a worker that multiprocessing's terminate() could not end."""
    assert all(bool(x) for x in make_loader(_SigintHandlers(), batch_size=1, num_workers=1))


_LOADING_FOR_EVER = """
import time, torch
from torch.utils.data import Dataset
from deeplab_edu.engine.workers import make_loader
class Endless(Dataset):
    def __len__(self):
        return 10**6
    def __getitem__(self, i):
        time.sleep(0.01)
        return torch.zeros(3)
batches = iter(make_loader(Endless(), batch_size=2, num_workers=2))
next(batches)
time.sleep(1)  # the workers' prefetched batches done: they wait for work, where PyTorch's watchdog looks every 5 s
print("loading", flush=True)
time.sleep(1000)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's signal at a parent's death is Linux's")
def test_workers_end_at_once_with_a_main_process_that_is_killed() -> None:
    """A killed main process (a Jupyter kernel that is restarted: killed with its group, which the workers are
    not in) takes its workers with it at once. Before, PyTorch's watchdog ended them within 5 s, and a worker
    that saw its parent die before its watchdog began kept waiting for work for good (a measurement: 4 of
    the 34 workers of 17 killed processes)."""
    import signal
    import subprocess

    main = subprocess.Popen([sys.executable, "-c", _LOADING_FOR_EVER], stdout=subprocess.PIPE, text=True)
    try:
        assert main.stdout is not None and main.stdout.readline().strip() == "loading"
        kids = subprocess.run(["pgrep", "-P", str(main.pid)], capture_output=True, text=True).stdout.split()
        assert len(kids) == 2, kids
    finally:
        main.kill()
        main.wait()

    def running(pid: str) -> bool:  # not ended, nor a zombie that waits for init to collect it
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 2
    while any(running(pid) for pid in kids) and time.monotonic() < deadline:
        time.sleep(0.02)
    left = [pid for pid in kids if running(pid)]
    for pid in left:
        os.kill(int(pid), signal.SIGKILL)
    assert not left, f"workers {left} still ran 2 s after their main process was killed"


_SIGNALLED_AT_START = """
import os, signal, sys, torch
from torch.utils.data import Dataset
from deeplab_edu.engine.workers import make_loader
asked = []
signal.signal(signal.SIGTERM, lambda signum, frame: asked.append(signum))  # the Trainer's stop request, in short
class Scenes(Dataset):
    def __len__(self):
        return 4
    def __getitem__(self, i):
        return torch.zeros(3)
loader = make_loader(Scenes(), batch_size=2, num_workers=2, timeout=20)  # a worker lost: no wait of 600 s
for attempt in range(10):
    batches = iter(loader)  # the workers are forked here (a validation's start, an epoch's)
    os.killpg(os.getpgid(0), signal.SIGTERM)  # `kill -TERM -- -PGID`, `timeout`, torchrun: to the whole group
    try:
        list(batches)
    except RuntimeError as err:
        sys.exit(f"attempt {attempt}: {err}")
print(len(asked), "stop requests, no worker lost")
"""


@pytest.mark.skipif(os.name != "posix", reason="process groups and blocked signals are POSIX's")
def test_a_signal_to_the_group_as_workers_start_is_left_to_the_main_process() -> None:
    """A SIGTERM to the training process's group just as its loader forks workers (each validation and
    epoch starts new ones) reached a worker before it had left the group, and killed it: the run ended
    with a false "out-of-memory" message, or waited 600 s for the dead worker (a fuzzing trial: 8 of 10
    group SIGTERMs at a validation's start). Workers now start with SIGINT and SIGTERM blocked and take
    those meant for the group before they unblock them."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", _SIGNALLED_AT_START], capture_output=True, text=True, timeout=120,
                          start_new_session=True)  # a group of its own: the signals are not for pytest
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "10 stop requests, no worker lost"


@pytest.mark.parametrize("preset", ["smoke", "cpu", "gpu", "camvid_cpu"])
def test_the_presets_data_sets_pickle_for_workers_started_by_spawn_or_forkserver(preset: str) -> None:
    """A worker started by spawn (macOS's default) or forkserver (Python 3.14's on Linux) receives the data set,
    its transforms and the ``worker_init_fn`` pickled: a lambda or a local function among them fails there only,
    never under Linux's fork up to Python 3.13."""
    import pickle

    from deeplab_edu.data.paths import find_camvid
    from deeplab_edu.engine.config import load_config
    from deeplab_edu.engine.data import build_datasets

    if preset.startswith("camvid") and find_camvid() is None:
        pytest.skip("no CamVid copy (../shared/data/camvid or DEEPLAB_EDU_CAMVID): its data sets are not built")
    for dataset in build_datasets(load_config(preset)):
        pickle.loads(pickle.dumps(dataset))
    pickle.loads(pickle.dumps(workers.WorkerInit(None)))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_training_with_a_worker_runs_under_spawn_and_forkserver(method: str, tmp_path) -> None:
    """The smoke preset trains with one loader worker started by spawn and by forkserver: the whole path a
    worker takes (data set, transforms, seeding, thread limits, collation) works away from fork."""
    import subprocess
    import sys

    code = ("import multiprocessing as mp, sys; mp.set_start_method(sys.argv[1]); from deeplab_edu.cli import main; "
            "sys.exit(main(['train', '--preset', 'smoke', '--num-workers', '1', '--iterations', '2', "
            "'--out-dir', sys.argv[2]]))")
    proc = subprocess.run([sys.executable, "-c", code, method, str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 loader worker" in proc.stdout + proc.stderr and (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.busy_cpu_note
def test_a_containers_cpu_quota_counts_and_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cores were read from the affinity mask only: in a container limited to 2 CPUs (Docker's --cpus, a
    JupyterHub or Binder spawner) on a 64-core host, the engine planned 8 loader workers, and PyTorch's 64
    threads waited for each other without a word. joblib reads the quota (cgroups' cpu.max)."""
    import joblib.externals.loky
    import psutil

    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(joblib.externals.loky, "cpu_count", lambda *args, **kwargs: 2)  # the quota: 2 CPUs
    monkeypatch.setattr(workers, "_affinity_cores", lambda: 64)
    monkeypatch.setattr(psutil, "cpu_percent", lambda *a, **k: pytest.fail("a quota's cores are not sampled"))
    assert workers.available_cores() == 2 and default_num_workers() == 1
    note = workers.busy_cpu_note(64, remedy="torch.set_num_threads({n})")
    assert note is not None and "may use 2 CPU cores (its CPU quota or affinity)" in note
    assert "PyTorch will use 64 threads" in note and "torch.set_num_threads(2)" in note
    assert workers.busy_cpu_note(2) is None  # the threads fit the quota


def test_the_cores_are_counted_where_joblib_runs_serially(monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: joblib.cpu_count() says 1 wherever joblib has turned multiprocessing off (JOBLIB_MULTIPROCESSING=0,
    no /dev/shm), which made every machine a 1-core one; loky's count still reads the affinity and quota."""
    import subprocess
    import sys

    code = ("from deeplab_edu.engine import workers; "
            "print(workers.available_cores(), workers._affinity_cores())")
    env = {**os.environ, "JOBLIB_MULTIPROCESSING": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    cores, affinity = out.stdout.split()
    if int(affinity) == 1:
        pytest.skip("one core here: the count cannot tell")
    assert cores == affinity


def test_the_trainers_batches_and_naming_a_stall_end_their_workers_through_one_helper(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A refactor: Trainer.batches and naming_a_stall each wrapped their loader's iteration in try/finally:
    shut_down_workers; both now use workers.shutting_down_workers, which ends them however its block is left."""
    from test_engine_fixtures import TinyNet, TinyScenes, tiny_config

    from deeplab_edu.engine.trainer import Trainer

    loader = DataLoader(range(6), batch_size=2, num_workers=1)
    with pytest.raises(KeyError):
        with workers.shutting_down_workers(loader) as iterator:
            assert next(iterator).tolist() == [0, 1] and iterator._workers[0].is_alive()  # type: ignore[attr-defined]
            raise KeyError("a failed step")
    assert not iterator._workers[0].is_alive()  # type: ignore[attr-defined]

    ended: list[object] = []
    monkeypatch.setattr(workers, "shut_down_workers", ended.append)
    stalls = workers.naming_a_stall(range(4), lambda: "here", "advice")
    assert next(stalls) == 0
    stalls.close()
    cfg = tiny_config(tmp_path, iterations=2, num_workers=0)
    batches = Trainer(cfg, model=TinyNet(), train_set=TinyScenes(4), val_set=TinyScenes(2, augment=False)).batches()
    next(batches)
    batches.close()
    assert len(ended) == 2
