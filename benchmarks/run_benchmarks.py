"""Benchmark our DeepLabv3 / v3+ against torchvision and segmentation_models_pytorch.

    python benchmarks/run_benchmarks.py --device cpu --size 128 --batch 2 --repeats 6
    python benchmarks/run_benchmarks.py --device cuda --size 512 --batch 8 --repeats 20

The same as ``deeplab-edu bench``; see benchmarks/README.md and deeplab_edu/engine/bench/.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deeplab_edu.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
