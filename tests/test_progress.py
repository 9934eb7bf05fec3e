"""Progress bars: ``progress=False`` turns them off, and so does ``TQDM_DISABLE=1`` (a log file, CI).

tqdm reads its ``TQDM_*`` variables when it is imported, so the environment's case runs in a fresh
process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deeplab_edu.progress import progress_bar

TESTS = Path(__file__).parent
_UNDER_TQDM_DISABLE = """
from deeplab_edu.progress import progress_bar
from deeplab_edu.engine.trainer import Trainer
from test_engine_fixtures import TinyNet, TinyScenes, tiny_config

assert progress_bar(total=3, progress=True).disable
cfg = tiny_config({out!r}, iterations=4, log_every=2, eval_every=100, progress=True)
Trainer(cfg, model=TinyNet(), train_set=TinyScenes(8), val_set=TinyScenes(2, augment=False)).fit()
"""


def test_progress_false_turns_the_bar_off() -> None:
    if os.environ.get("TQDM_DISABLE"):
        pytest.skip("TQDM_DISABLE is set in this environment: every bar is off")
    with progress_bar(range(3), progress=True, desc="x") as bar:
        assert not bar.disable and list(bar) == [0, 1, 2]
    with progress_bar(range(3), progress=False) as bar:
        assert bar.disable and list(bar) == [0, 1, 2]  # a bar that is off still iterates
    with pytest.raises(TypeError, match="progress="):
        progress_bar(range(3), disable=True)


def test_tqdm_disable_turns_every_bar_off_and_training_logs_lines_instead(tmp_path: Path) -> None:
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _UNDER_TQDM_DISABLE.format(out=str(tmp_path))], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "iteration 2/4: loss" in done.stdout and "iteration 4/4: loss" in done.stdout
    assert "train:" not in done.stderr  # no bar


def test_a_bar_over_an_iterable_iterates_it_once() -> None:
    """A practitioner's trial: check-data printed each worker's warning twice. tqdm.auto's class calls
    iter() when the bar is made and again in the loop (tqdm/tqdm#1598): a DataLoader over workers
    started them twice. The bar now makes one iterator, and keeps the iterable's length."""
    from deeplab_edu.progress import progress_bar

    class Counted:
        made = 0

        def __len__(self) -> int:
            return 3

        def __iter__(self):  # type: ignore[no-untyped-def]
            Counted.made += 1
            return iter(range(3))

    for progress in (True, False):
        Counted.made = 0
        bar = progress_bar(Counted(), progress=progress)
        assert list(bar) == [0, 1, 2] and Counted.made == 1 and bar.total == 3
