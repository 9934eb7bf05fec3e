"""Timing two settings fairly, and saying when one is faster: the measuring tools of every benchmark.

Settings are timed in :func:`interleaved` rounds (A B, B A, ...) so that a machine that gets busier
part-way slows both alike; :func:`speedup_interval` is a paired bootstrap 95 % interval of the
ratio of medians over those rounds (none below :func:`min_rounds` rounds: 6 at 95 %), and
:func:`speed_verdict` calls a setting faster or slower only when that interval excludes 1 and the
exact paired test of :func:`paired_p_value` rejects "no difference". :func:`compare_speeds` does all
three from the rounds, the one call a benchmark makes.
:func:`write_result` writes the record (command, commit, hardware:
:func:`~deeplab_edu.records.write_record`) that the course and ``benchmarks/README.md`` quote.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch

__all__ = ["synchronize", "timed", "timed_steps", "minor_faults", "interleaved", "min_rounds", "speedup_interval", "paired_p_value",
           "speed_verdict", "interval_text", "SpeedComparison", "compare_speeds",
           "load_average", "busy_cpu_seconds", "torch_threads", "check_out", "DefaultsHelpFormatter", "write_result",
           "DEFAULT_OUT_DIR"]


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA; a no-op on the CPU) before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def minor_faults() -> int | None:
    """Minor page faults of this process so far (``None`` where the OS does not count them)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall-clock, process CPU) seconds of ``fn()``; on CUDA after synchronising."""
    synchronize(device)
    t, c = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return time.perf_counter() - t, time.process_time() - c


def timed_steps(step: Callable[[], Any], iterations: int, device: torch.device) -> float:
    """Wall-clock seconds per call of ``step`` over a window of ``iterations`` calls (CUDA: synchronised
    before and after the window only, so the calls queue on the GPU as in training)."""
    return timed(lambda: [step() for _ in range(iterations)], device)[0] / iterations


_T = TypeVar("_T")


def interleaved(settings: Sequence[_T], rounds: int) -> Iterator[_T]:
    """Each of ``settings`` once per round, in order in even rounds and reversed in odd ones (A B, B A, ...).

    Every benchmark here measures the settings it compares this way, so a machine that speeds up or
    slows down during a run (another process, thermal limits, a warming cache) affects them alike.
    """
    for r in range(rounds):
        yield from (settings if r % 2 == 0 else settings[::-1])


def min_rounds(confidence: float = 0.95) -> int:
    """The fewest paired rounds from which :func:`speedup_interval` gives an interval at ``confidence``.

    The percentile bootstrap of a few paired rounds excludes 1 whenever every round favours the same
    setting, and with no difference at all that alone happens with probability ``2 * 0.5 ** n`` (a
    sign test): 25 % at 3 rounds, 6 % at 5. So no interval is given below the smallest ``n`` where
    that chance is at most ``1 - confidence``: 6 rounds at 95 %, 8 at 99 %. This is a floor, not a
    guarantee: the bootstrap can also exclude 1 when most rounds, not all, agree, and at so few
    rounds its percentile interval is approximate (it calls a difference somewhat more often than
    ``1 - confidence`` when there is none); so :func:`speed_verdict` also asks the exact test of
    :func:`paired_p_value`, whose smallest p at ``n`` rounds is ``2 * 0.5 ** n`` (0.031 at 6). The
    recorded benchmarks use 10-15 rounds. (Chapter 10's
    findings over seeds meet the same small-sample problem with Student's t: ``findings.seed_interval``.)

    Raises:
        ValueError: ``confidence`` is not strictly between 0 and 1.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    n = 1
    while 2 * 0.5 ** n > 1 - confidence:
        n += 1
    return n


def _enough_paired_rounds(baseline_s: Sequence[float], candidate_s: Sequence[float],
                          confidence: float = 0.95) -> bool:
    """Whether there are :func:`min_rounds` paired rounds; a :class:`ValueError` when the two differ in length."""
    if len(baseline_s) != len(candidate_s):
        raise ValueError(f"{len(baseline_s)} baseline rounds but {len(candidate_s)} candidate rounds: "
                         "the rounds are paired")
    return len(baseline_s) >= min_rounds(confidence)


def speedup_interval(baseline_s: Sequence[float], candidate_s: Sequence[float], *, confidence: float = 0.95,
                     resamples: int = 9999, seed: int = 0) -> tuple[float, float] | None:
    """A paired bootstrap interval of the speed-up ``median(baseline_s) / median(candidate_s)``.

    ``baseline_s[i]`` and ``candidate_s[i]`` are the seconds of round ``i`` of :func:`interleaved`,
    measured one after the other, so the rounds are resampled in pairs (``scipy.stats.bootstrap``,
    percentile method, ``resamples`` replicates, fixed ``seed``): a machine that was slow in one
    round was slow for both. Above 1: the candidate is faster. A speed-up is a finding only when its
    interval excludes 1 (:func:`speed_verdict`).

    Returns:
        ``(low, high)``, or None with fewer than :func:`min_rounds` rounds (6 at 95 %; fewer would call
        a difference where there is none far too often) or without SciPy.

    Raises:
        ValueError: the two sequences differ in length.
    """
    if not _enough_paired_rounds(baseline_s, candidate_s, confidence):
        return None
    import numpy as np
    try:
        from scipy.stats import bootstrap
    except ImportError:  # e.g. a GPU machine's own Python without SciPy: the medians are still recorded
        return None
    result = bootstrap((np.asarray(baseline_s, float), np.asarray(candidate_s, float)),
                       lambda b, c, axis=-1: np.median(b, axis=axis) / np.median(c, axis=axis),
                       paired=True, vectorized=True, confidence_level=confidence, n_resamples=resamples,
                       method="percentile", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_p_value(baseline_s: Sequence[float], candidate_s: Sequence[float], *, confidence: float = 0.95,
                   resamples: int = 9999, seed: int = 0) -> float | None:
    """Two-sided p-value of "no difference" for paired rounds: a sign-flip permutation test.

    The statistic is the mean of the rounds' log ratios ``log(baseline_s[i] / candidate_s[i])``; with no
    difference the two settings of a round are exchangeable, so each round's ratio is as likely inverted,
    and all ``2 ** n`` sign patterns are equally likely (``scipy.stats.permutation_test``,
    ``permutation_type="samples"``). Exact, and needing no normality, while ``2 ** n <= resamples`` (up to
    13 rounds at the default); a fixed-``seed`` Monte Carlo estimate above. Its false-call rate at level
    ``alpha`` is at most ``alpha``, which the percentile bootstrap of :func:`speedup_interval` does not
    promise at a few rounds (:func:`min_rounds`).

    Returns:
        the p-value, or None with fewer than :func:`min_rounds` rounds (at ``confidence``) or without SciPy.

    Raises:
        ValueError: the two sequences differ in length.
    """
    if not _enough_paired_rounds(baseline_s, candidate_s, confidence):
        return None
    import numpy as np
    try:
        from scipy.stats import permutation_test
    except ImportError:  # as in speedup_interval
        return None
    result = permutation_test((np.log(np.asarray(baseline_s, float)), np.log(np.asarray(candidate_s, float))),
                              lambda b, c, axis=-1: np.mean(b - c, axis=axis), permutation_type="samples",
                              vectorized=True, n_resamples=resamples, alternative="two-sided",
                              random_state=np.random.default_rng(seed))
    return float(result.pvalue)


def speed_verdict(interval: tuple[float, float] | None, p_value: float | None, *,
                  confidence: float = 0.95) -> str:
    """``"faster"`` / ``"slower"`` when a :func:`speedup_interval` excludes 1 and the :func:`paired_p_value`
    of the same rounds is at most ``1 - confidence``; else ``"parity"`` (``"no interval"`` without an
    interval: too few rounds, :func:`min_rounds`, or no SciPy). ``p_value`` is required so that no caller
    forgets it: pass None only for a record made before the test was added, which carries the
    interval's verdict alone (every such record re-checked with the test: unchanged,
    benchmarks/README.md). :func:`compare_speeds` computes all three from the rounds."""
    if interval is None:
        return f"no interval (too few rounds: at least {min_rounds(confidence)}; or no SciPy)"
    low, high = interval
    if p_value is not None and p_value > 1 - confidence:
        return "parity"
    return "faster" if low > 1 else "slower" if high < 1 else "parity"


@dataclass(frozen=True)
class SpeedComparison:
    """A candidate's speed against a baseline over paired rounds: what :func:`compare_speeds` returns.

    Attributes:
        speedup: ``median(baseline_s) / median(candidate_s)``; above 1 the candidate is faster.
        interval: its paired bootstrap interval (:func:`speedup_interval`), None below :func:`min_rounds`
            or without SciPy.
        p_value: the exact paired test of "no difference" (:func:`paired_p_value`), None likewise.
        verdict: ``"faster"``, ``"slower"``, ``"parity"`` or ``"no interval ..."`` (:func:`speed_verdict`).
    """

    speedup: float
    interval: tuple[float, float] | None
    p_value: float | None
    verdict: str

    def __str__(self) -> str:
        """``"x1.13 [1.07, 1.19] faster"``: the ratio, its interval where there is one, the verdict."""
        return f"x{self.speedup:.2f}{interval_text(self.interval)} {self.verdict}"


def compare_speeds(baseline_s: Sequence[float], candidate_s: Sequence[float], *,
                   confidence: float = 0.95) -> SpeedComparison:
    """The speed-up of ``candidate_s`` over ``baseline_s`` (seconds of the same :func:`interleaved` rounds,
    paired by index), its interval, the exact test and the verdict, from one call.

    Raises:
        ValueError: the two sequences differ in length or are empty.
    """
    if len(baseline_s) == 0 or len(candidate_s) == 0:
        raise ValueError("compare_speeds needs at least one round of each setting")
    interval = speedup_interval(baseline_s, candidate_s, confidence=confidence)
    p_value = paired_p_value(baseline_s, candidate_s, confidence=confidence)
    return SpeedComparison(statistics.median(baseline_s) / statistics.median(candidate_s), interval, p_value,
                           speed_verdict(interval, p_value, confidence=confidence))


def interval_text(interval: tuple[float, float] | None) -> str:
    """``" [low, high]"`` to two decimals, to follow a printed ratio (``""`` without an interval)."""
    return "" if interval is None else f" [{interval[0]:.2f}, {interval[1]:.2f}]"


def load_average() -> tuple[float, float, float] | None:
    """The machine's 1/5/15-minute load averages (``None`` where the OS has none): recorded with timings."""
    try:
        import os

        return tuple(round(v, 2) for v in os.getloadavg())  # type: ignore[return-value]
    except (AttributeError, OSError):
        return None


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes of the machine have run since boot (psutil's ``cpu_times``: user, nice,
    system, irq, softirq and steal where the system counts them; idle and I/O wait left out), else ``None``."""
    import psutil

    try:
        times = psutil.cpu_times()
    except (OSError, psutil.Error):
        return None
    return sum(getattr(times, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads (``None``: unchanged), restoring them after."""
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


#: Where a benchmark writes its record unless ``--out`` names a file: relative to the working folder, beside
#: the training runs, so that measuring one's own machine never rewrites the committed records of
#: ``benchmarks/results/`` (re-recording those passes ``--out benchmarks/results/<name>.json``).
DEFAULT_OUT_DIR = Path("runs") / "bench"


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """The benchmark scripts' ``--help``: argparse's :class:`~argparse.ArgumentDefaultsHelpFormatter`, which adds
    "(default: ...)" to each option's help, except after an option whose default is ``None``: its help says in
    its own words what leaving it out does ("record path (default: runs/bench/...)"), where argparse added
    "(default: None)" to it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def check_out(parser: argparse.ArgumentParser, out: str | os.PathLike[str] | None, flag: str = "--out") -> None:
    """A benchmark script's record path ``out``, checked right after its arguments are parsed, before any
    measurement, as ``deeplab-edu bench --out`` is (:func:`~deeplab_edu.records.check_record_path`): a folder, or
    a file that is not a record, ends the script with ``parser``'s one-line error naming ``flag`` (an audit: a
    folder failed only after the whole measurement, in the atomic rename, and another file was silently
    replaced). ``None`` (the default, under :data:`DEFAULT_OUT_DIR`) is not checked.

    Raises:
        SystemExit: ``out`` is refused (:meth:`argparse.ArgumentParser.error`, exit status 2).
    """
    if out is None:
        return
    from ...records import check_record_path

    try:
        check_record_path(out, flag)
    except (ValueError, OSError) as err:
        parser.error(str(err))


def write_result(results: dict[str, Any], out: str | Path | None, default_name: str, note: str,
                 **extra: Any) -> Path:
    """Write ``results`` as a record (default ``runs/bench/<default_name>``, :data:`DEFAULT_OUT_DIR`) and say
    where."""
    from ...records import write_record

    path = Path(out) if out else DEFAULT_OUT_DIR / default_name
    write_record(path, results, extra={**extra, "note": note})
    print(f"record written to {path}")
    return path
