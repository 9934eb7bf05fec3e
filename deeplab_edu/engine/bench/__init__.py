"""Benchmarks of the engine and the models, as ``deeplab-edu bench`` runs them (issue 11).

Modules, one concept each:

- :mod:`.timing`: interleaved rounds, the paired bootstrap interval of a speed-up, the exact paired test
  of the same rounds, their verdict (faster / slower / parity), and the records the benchmarks write;
- :mod:`.pairs`: our DeepLabv3 / v3+ against torchvision's / segmentation_models_pytorch's, speed
  and memory at equal settings and with our defaults (``--mode model``);
- :mod:`.loader`: scenes/s of the engine's training loader per worker count, and the ceiling the
  cores set (``--mode loader``);
- :mod:`.pipeline`: training through the engine's loader against the step alone (``--mode pipeline``);
- :mod:`.compiled`: eager against ``torch.compile`` (``--mode compile``).

Every benchmark prints its ratios with their 95 % intervals and writes a record naming the
command, commit and hardware (``benchmarks/results/*.json``, shown in ``benchmarks/README.md``).
"""

from .compiled import run_compile_benchmark
from .loader import cores_scaling, loader_throughput, run_loader_benchmark
from .pairs import PEAK_BF16_TFLOPS, build_pair, format_results, pair_summary, run_benchmarks
from .pipeline import default_preset, diagnosis_rows, paired_throughput_ratios, profile_totals, run_pipeline_benchmark, summarise_profile
from .timing import (SpeedComparison, compare_speeds, interleaved, min_rounds, paired_p_value, speed_verdict,
                     speedup_interval, timed_steps)

__all__ = ["build_pair", "run_benchmarks", "format_results", "pair_summary", "PEAK_BF16_TFLOPS", "loader_throughput", "cores_scaling",
           "run_loader_benchmark", "run_pipeline_benchmark", "default_preset", "diagnosis_rows", "paired_throughput_ratios", "profile_totals", "summarise_profile", "run_compile_benchmark", "interleaved", "timed_steps",
           "min_rounds", "speedup_interval", "paired_p_value", "speed_verdict", "compare_speeds", "SpeedComparison"]
