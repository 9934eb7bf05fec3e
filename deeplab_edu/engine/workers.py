"""DataLoader workers that do not fight over the cores, and how many of them to start.

Each DataLoader worker is a separate process. PyTorch already gives every worker a single
intra-op thread (``torch.set_num_threads(1)`` in its worker loop), but the *other* thread pools
loaded in the process keep their default size, one thread per core: NumPy's BLAS (OpenBLAS or
MKL) and OpenMP runtimes. The procedural scenes use NumPy heavily, so with ``k`` workers on ``c``
cores up to ``k * c`` BLAS threads compete for ``c`` cores, and adding workers stops helping or
even slows loading down (issue 11: on a 2-core machine 2 workers were 0.88x as fast as one).

:func:`limit_worker_threads` is the ``worker_init_fn`` that caps every thread pool of a worker
at one thread, with threadpoolctl's :func:`~threadpoolctl.threadpool_limits` (BLAS and OpenMP)
and :func:`torch.set_num_threads`. It runs inside the worker only; the main process keeps its
threads for the model. :func:`make_loader` builds every DataLoader of the package with it.

:func:`default_num_workers` is the default number of workers: the cores this process may use
(its CPU affinity, or a container's CPU quota), less one for the main process, shared between the training processes of one
machine (``LOCAL_WORLD_SIZE``, set by ``torchrun``), at most :data:`MAX_DEFAULT_WORKERS`.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any, Callable, Generator, Iterable, Iterator, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["MAX_DEFAULT_WORKERS", "WORKERS_PER_CORE_LIMIT", "LOADER_TIMEOUT_S", "available_cores", "max_num_workers",
           "default_num_workers", "resolve_num_workers", "limit_worker_threads", "end_with_parent", "worker_context",
           "WorkerInit", "worker_thread_counts", "make_loader", "loader_timed_out", "stalled_loader_message",
           "naming_a_stall", "shutting_down_workers", "shut_down_workers", "original_message", "busy_cpu_note"]

#: Upper bound of :func:`default_num_workers`: beyond about 8 workers a single process's loading rarely
#: limits training, while each worker holds its own copy of the dataset object and its prefetched batches.
MAX_DEFAULT_WORKERS = 8

#: Workers per core above which :func:`resolve_num_workers` refuses a number (with at least
#: :data:`MAX_DEFAULT_WORKERS` allowed on any machine): each worker is a process of its own (about
#: 0.5 GB each for the engine's loaders here), and past one per core they only take turns on the cores;
#: ``num_workers=1000`` once started processes until the machine ran out of memory.
WORKERS_PER_CORE_LIMIT = 4

#: Seconds the main process waits for a batch from a worker before the loader fails (DataLoader's
#: ``timeout``), instead of waiting for ever on a worker that hangs (an item read from a stalled
#: network file system, a deadlock in a user's transform). A batch takes seconds at most here.
LOADER_TIMEOUT_S = 600.0

T = TypeVar("T")
_limiter: Any = None  # keeps the threadpoolctl limiter of this (worker) process alive


def available_cores() -> int:
    """CPU cores this process may use: the fewest of the machine's cores, its affinity mask and a container's
    CPU quota (cgroups' ``cpu.max``: Docker's ``--cpus``, a JupyterHub or Binder spawner's CPU limit), as
    joblib's loky reads them (``joblib.cpu_count`` itself says 1 wherever joblib has turned multiprocessing
    off, e.g. without ``/dev/shm``: a review). A quota is not an affinity: PyTorch still starts a thread per
    core of the machine under it (:func:`busy_cpu_note` says so)."""
    from joblib.externals.loky import cpu_count

    return max(1, int(cpu_count()))


def _affinity_cores() -> int:
    """The cores of this process's affinity mask (``os.cpu_count()`` where the OS has none), a quota left aside."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_num_workers(processes_per_machine: int | None = None) -> int:
    """The default number of DataLoader workers per training process.

    ``cores // processes - 1`` (one core per process is left for the process itself, which runs the
    model and feeds the GPU), clipped to ``[0, MAX_DEFAULT_WORKERS]``. ``processes_per_machine``
    defaults to ``LOCAL_WORLD_SIZE`` (set by ``torchrun``) or 1. On a 2-core laptop this is 1 worker,
    on a 16-core GPU machine 8.
    """
    if processes_per_machine is None:
        processes_per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    per_process = available_cores() // max(1, processes_per_machine)
    return max(0, min(MAX_DEFAULT_WORKERS, per_process - 1))


def max_num_workers() -> int:
    """The most DataLoader workers :func:`resolve_num_workers` accepts on this machine:
    :data:`WORKERS_PER_CORE_LIMIT` per core (:func:`available_cores`), at least :data:`MAX_DEFAULT_WORKERS`."""
    return max(MAX_DEFAULT_WORKERS, WORKERS_PER_CORE_LIMIT * available_cores())


def resolve_num_workers(num_workers: int | None) -> int:
    """``num_workers`` itself, or :func:`default_num_workers` when it is ``None``.

    Raises:
        ValueError: ``num_workers`` is negative, not an integer, or more than :func:`max_num_workers`
            (the message gives the machine's cores and the default).
    """
    if num_workers is None:
        return default_num_workers()
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be a non-negative integer or None (one per core), got {num_workers!r}")
    if num_workers > (most := max_num_workers()):
        raise ValueError(f"num_workers={num_workers}: more than {most} worker processes on this machine's "
                         f"{available_cores()} core(s) (each a process of its own, about 0.5 GB for the engine's "
                         f"loaders; past one per core they only take turns); use at most {most}, or leave it unset "
                         f"({default_num_workers()} here)")
    return num_workers


def limit_worker_threads(worker_id: int = 0) -> None:
    """``worker_init_fn``: one BLAS, one OpenMP and one torch thread in this worker process.

    The worker also leaves a stop to the main process, which decides what it means (the Trainer finishes
    its step and saves a checkpoint) and stops its workers itself; a worker that quit on the signal would
    end the run with "DataLoader worker exited unexpectedly" and no checkpoint. So it ignores Ctrl-C
    (SIGINT, which a terminal sends to every process of its job), and it runs in a process group of its
    own: ``torchrun`` signals each training process's whole group (SIGTERM when it is stopped itself, a
    review's trial), which then holds the training process only; it starts with both signals blocked
    (:func:`worker_context`) and takes those that reached it before it left the group, which were for
    the training process (a ``terminate()`` in that moment is taken too: the worker then ends when its
    loader sends it no more work, as at the end of every pass). It still ends on SIGTERM (how
    ``multiprocessing`` and the DataLoader end a worker), and when its main process is gone: on Linux
    the kernel kills it then (:func:`end_with_parent`: its group no longer dies with a kernel that
    Jupyter kills, and PyTorch's own watchdog misses a parent that died while the worker started; 4
    of the 34 workers of 17 processes killed after their first batch were left for good, a
    measurement), elsewhere PyTorch's watchdog ends it within seconds.

    Call it only in a worker (DataLoader does): it changes the process it runs in.
    """
    global _limiter

    end_with_parent()
    from threadpoolctl import threadpool_limits

    _limiter = threadpool_limits(limits=1)
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(os, "setpgid"):  # POSIX (not Windows, which has no process groups of this kind)
        try:
            os.setpgid(0, 0)  # out of the training process's group: a signal to that group is not for the workers
        except OSError:  # not permitted here (a session leader): the group's signals then reach it as before
            pass
    if _BLOCKS_AT_START:  # started with SIGINT and SIGTERM blocked (make_loader's context): those sent to the
        while signal.sigtimedwait(_STOP_SIGNALS, 0) is not None:  # training process's group before the line above
            pass  # are for it, not for this worker (a fuzzing trial: 8 of 10 group SIGTERMs at a validation's start
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # killed a worker)


def end_with_parent() -> None:
    """Linux: have the kernel kill this process (SIGKILL) when the thread that started it ends, as its
    parent dies (``prctl(PR_SET_PDEATHSIG)``, ``man 2 prctl``; under the ``forkserver`` start method the
    parent is the fork server, which ends with the process that started it); and end it at once if the
    process that :mod:`multiprocessing` started it from is gone already. A DataLoader worker holds
    nothing that its main process's end would leave unsaved. Does nothing on other systems, or outside
    a process that :mod:`multiprocessing` started (PyTorch's watchdog remains).

    Call it only in a worker: it changes the process it runs in.
    """
    import multiprocessing
    import sys

    parent = multiprocessing.parent_process()
    if not sys.platform.startswith("linux") or parent is None or parent.pid is None:
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1: PR_SET_PDEATHSIG (linux/prctl.h)
    except (OSError, AttributeError):  # no prctl to call: the watchdog alone
        return
    if os.getppid() != parent.pid:  # a forkserver started it (its end ends this one), or the parent is gone:
        try:
            os.kill(parent.pid, 0)  # (signal 0: is it there?)
        except ProcessLookupError:  # it died before prctl, which then had nothing to watch
            os._exit(0)
        except PermissionError:
            pass


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
#: Whether :func:`worker_context`'s workers start with those blocked: where the platform can block them and
#: take the pending ones (POSIX with ``sigtimedwait``: Linux, not macOS).
_BLOCKS_AT_START = os.name == "posix" and hasattr(signal, "pthread_sigmask") and hasattr(signal, "sigtimedwait")


class _BlockedStart:
    """A :mod:`multiprocessing` process whose ``start()`` blocks SIGINT and SIGTERM around the fork (or
    spawn), so that the worker is born with them blocked, until :func:`limit_worker_threads` has moved it
    to a process group of its own and taken those that were meant for the training process."""

    def start(self) -> None:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            super().start()  # type: ignore[misc]
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def worker_context() -> Any:
    """The :mod:`multiprocessing` context for :func:`make_loader`'s workers: the start method that
    ``multiprocessing.set_start_method`` chose, else the platform's default (``fork`` on Linux up to
    Python 3.13, ``spawn`` on macOS), not fixing it for later (as ``multiprocessing.get_context()``
    would); for ``fork`` and ``spawn`` one whose processes start with SIGINT and SIGTERM blocked
    (:class:`_BlockedStart`). Not for ``forkserver``: its workers are forked by the fork server, whose
    mask blocking here cannot set (and the server, started in that moment, would keep the signals
    blocked for every process it starts later, a review found); nor where the platform cannot take
    pending signals (``signal.sigtimedwait``: not on macOS or Windows)."""
    import multiprocessing

    method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    made = {"fork": _ForkWorkers, "spawn": _SpawnWorkers}.get(method) if _BLOCKS_AT_START else None
    return made() if made is not None else multiprocessing.get_context(method)


class WorkerInit:
    """A picklable ``worker_init_fn``: :func:`limit_worker_threads`, then ``user_fn(worker_id)`` if given.

    Picklable (a module-level class) so that it also works with the ``spawn`` start method.
    """

    def __init__(self, user_fn: Callable[[int], None] | None = None) -> None:
        self.user_fn = user_fn

    def __call__(self, worker_id: int) -> None:
        """Run :func:`limit_worker_threads` in this worker, then ``user_fn(worker_id)`` if given."""
        limit_worker_threads(worker_id)
        if self.user_fn is not None:
            self.user_fn(worker_id)


def worker_thread_counts() -> dict[str, int]:
    """Threads of every thread pool of *this* process: ``{"torch": n, "openblas": n, "openmp": n, ...}``.

    For tests and diagnostics (call it inside a worker to see its limits).
    """
    from threadpoolctl import threadpool_info

    counts = {"torch": torch.get_num_threads()}
    for pool in threadpool_info():
        key = pool["internal_api"]
        counts[key] = max(counts.get(key, 0), int(pool["num_threads"]))
    return counts


if os.name == "posix":  # the start methods' process classes, each starting blocked (module level: picklable)
    from multiprocessing.context import ForkContext, ForkProcess, SpawnContext, SpawnProcess

    class _ForkWorker(_BlockedStart, ForkProcess):
        pass

    class _SpawnWorker(_BlockedStart, SpawnProcess):
        pass

    class _ForkWorkers(ForkContext):
        Process = _ForkWorker

    class _SpawnWorkers(SpawnContext):
        Process = _SpawnWorker


def make_loader(dataset: Dataset, *, batch_size: int | None = 1, num_workers: int | None = None,
                device: torch.device | str | None = None, worker_init_fn: Callable[[int], None] | None = None,
                **kwargs: Any) -> DataLoader:
    """A DataLoader whose workers use one thread each (:func:`limit_worker_threads`).

    Args:
        dataset: any map-style dataset.
        batch_size: as DataLoader's (``None`` with a ``batch_sampler``).
        num_workers: worker processes; ``None`` for :func:`default_num_workers`.
        device: where the batches go; on a CUDA device the batches are put in pinned memory so that
            ``tensor.to(device, non_blocking=True)`` copies asynchronously.
        worker_init_fn: run in each worker after the thread limits.
        **kwargs: passed to :class:`~torch.utils.data.DataLoader` (``sampler``, ``drop_last``,
            ``generator``, ``collate_fn``, ...); with workers, ``timeout`` defaults to
            :data:`LOADER_TIMEOUT_S` (a worker that hangs fails the loader with a ``RuntimeError``).

    Raises:
        ValueError: ``num_workers`` is negative or not an integer (:func:`resolve_num_workers`), or
            ``worker_init_fn`` is given with no workers to run it.
    """
    workers = resolve_num_workers(num_workers)
    dev = torch.device(device) if device is not None else None
    kwargs.setdefault("pin_memory", dev is not None and dev.type == "cuda")
    if workers > 0:
        kwargs["worker_init_fn"] = WorkerInit(worker_init_fn)
        kwargs.setdefault("timeout", LOADER_TIMEOUT_S)
        kwargs.setdefault("multiprocessing_context", worker_context())
    elif worker_init_fn is not None:
        raise ValueError("worker_init_fn needs num_workers > 0: with 0 workers nothing would call it")
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, **kwargs)


def busy_cpu_note(threads: int | None = None, *, interval: float = 0.25, remedy: str = "--threads {n}") -> str | None:
    """A note for a CPU run when other processes keep cores busy, or a container's CPU quota allows fewer cores
    than PyTorch's threads, else ``None``.

    PyTorch's CPU kernels split each operation between its intra-op threads (one per core by default)
    and wait for the slowest: when another job holds a core, one of them waits its turn each time,
    and a training step can become several times slower than with fewer threads. The other
    processes' use of the CPU is sampled for ``interval`` seconds with psutil (all processes' use
    less this one's, so a notebook or test session that has just worked does not count itself, as
    a load average would); the note is given when the cores left free are fewer than ``threads``
    (default: :func:`torch.get_num_threads`) by more than half a core and fewer threads are left to
    advise (never for one thread, which waits for no other). Under a CPU quota (:func:`available_cores`
    fewer than the affinity's cores) the container's cores are its own: other processes are not sampled,
    and the note says when PyTorch's threads (one per core of the machine) outnumber the quota's cores. ``remedy`` is the advice with
    ``{n}`` for the threads to use: the command line's flag by default, ``torch.set_num_threads({n})``
    in a notebook (:func:`deeplab_edu.config.profile_line`).
    """
    import psutil

    threads = threads or torch.get_num_threads()
    cores = available_cores()
    if cores < _affinity_cores():  # a CPU quota: this container's own cores, whatever other containers do
        others = 0.0
    else:
        me = psutil.Process()
        me.cpu_percent(None)  # starts this process's count
        busy = psutil.cpu_percent(interval=interval) / 100 * (psutil.cpu_count() or 1)  # cores in use, all processes
        others = max(0.0, busy - me.cpu_percent(None) / 100)
    free = cores - others
    fewer = max(1, round(free))  # the threads to advise
    # no note where the advice is what runs already: one thread waits for no other (a learner's trial was
    # told to set 1 thread under OMP_NUM_THREADS=1, as the README advises)
    if threads <= free + 0.5 or fewer >= threads:
        return None
    if others < 0.5:  # nothing else runs: a quota (or a thread count set by hand) allows fewer cores than threads
        return (f"note: this process may use {cores} CPU core{'' if cores == 1 else 's'} (its CPU quota or affinity), "
                f"and PyTorch will use {threads} threads that wait for each other: {remedy.format(n=fewer)} can be "
                "several times faster")
    return (f"note: other processes keep {others:.1f} of this machine's {cores} cores busy, and PyTorch "
            f"will use {threads} threads that wait for each other: {remedy.format(n=fewer)} can be "
            "several times faster until the machine is free")


def loader_timed_out(err: BaseException) -> bool:
    """Whether ``err`` is PyTorch's "DataLoader timed out after 600.0 seconds": a worker produced no batch
    within the loader's ``timeout`` (:data:`LOADER_TIMEOUT_S` for :func:`make_loader`'s loaders)."""
    return isinstance(err, RuntimeError) and "DataLoader timed out" in str(err)


def stalled_loader_message(err: BaseException, where: str, advice: str) -> str:
    """The message for a loader that :func:`loader_timed_out`: PyTorch's, ``where`` the loader stalled ("at
    iteration 5"), the likely causes and ``advice``."""
    return (f"{err}: a data loader worker produced no batch in that time {where} (an item that hangs: a stalled "
            f"network file system, a transform that deadlocks); {advice}")


def naming_a_stall(batches: Iterable[T], where: Callable[[], str], advice: str) -> Generator[T, None, None]:
    """``batches`` (a DataLoader's), whose stalled worker fails with a message that says where. Closed
    (``contextlib.closing``), or failing, it ends the loader's workers (:func:`shut_down_workers`).

    Raises:
        RuntimeError: a worker produced no batch in time (:func:`loader_timed_out`): the message is
            :func:`stalled_loader_message`'s, with ``where()`` (called then: "after 40 of the 100
            images") and ``advice``; any other ``RuntimeError`` as it came.
    """
    with shutting_down_workers(batches) as iterator:
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except RuntimeError as err:
                if not loader_timed_out(err):
                    raise
                err.__traceback__ = None  # its frames hold the loader and so the stuck worker (a notebook keeps errors)
                raise RuntimeError(stalled_loader_message(err, where(), advice)) from None
            yield batch


@contextlib.contextmanager
def shutting_down_workers(batches: Iterable[T]) -> Iterator[Iterator[T]]:
    """``iter(batches)`` (a DataLoader's) for a ``with`` block, whose workers end as the block is left, however
    it is left (:func:`shut_down_workers`): at its end, on an error, or as a generator paused inside it is
    closed (``contextlib.closing``), whatever a kept error's frames still hold.

    >>> with shutting_down_workers(loader) as iterator:              # doctest: +SKIP
    ...     for images, labels in iterator:
    ...         ...

    Raises:
        RuntimeError: PyTorch's "DataLoader worker (pid ...) exited unexpectedly" as the workers end
            (:func:`shut_down_workers`); whatever the block raises passes through.
    """
    iterator = iter(batches)
    try:
        yield iterator
    finally:
        shut_down_workers(iterator)


def shut_down_workers(iterator: Iterator[Any]) -> None:
    """End the worker processes of a DataLoader's ``iterator`` now (nothing for a loader without workers, or
    one already ended: its last batch read ends them).

    PyTorch ends them only when the iterator is garbage: a frame that holds it keeps them alive, and a
    notebook keeps the last error's traceback, whose frames (the loader's own, a paused generator's) hold
    the iterator of a loop that an error or Ctrl-C left, so a set of worker processes (and their queue
    threads in the kernel) stayed behind per interrupted run (an audit). PyTorch's own shutdown is
    called (``_shutdown_workers``, as its ``__del__`` does; it waits at most 5 s for each worker, then
    terminates it).

    Raises:
        RuntimeError: PyTorch's "DataLoader worker (pid ...) exited unexpectedly" (or "is killed by signal"),
            from its SIGCHLD handler, for a worker that had died.
    """
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def original_message(err: BaseException) -> str:
    """The message of ``err`` without the worker traceback a DataLoader adds when it re-raises an
    exception from a worker process ("Caught BadDataError in DataLoader worker process 0. Original
    Traceback ..."): the original exception's own message, in one line where it was one."""
    text = str(err)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    name = type(err).__name__
    for prefix in (f"{type(err).__module__}.{name}: ", f"{name}: "):
        if last.startswith(prefix):
            return last[len(prefix):]
    return last

