"""Exercises of chapter 11 (real data on a GPU, inference strategies, export).

11.1 images per optimiser step under ``torchrun`` (predict, then measure one process's step with the
engine's ``Trainer`` and the 4 processes' shares of the data with its ``ResumableSampler``); 11.2
which half-precision type flushes a small gradient to zero (predict, then cast); 11.3 the multiply-adds of multi-scale + flip inference
(predict, then count with :func:`deeplab_edu.complexity.count_macs`); 11.4 the number of sliding
windows (write a function, checked against :func:`deeplab_edu.inference.sliding_window_logits`);
11.5 the output shape of an exported ONNX model for another batch size and image size (predict,
then run it with onnxruntime); 11.6 a rare class's median-frequency weight (count by hand, then with
:func:`deeplab_edu.data.stats.median_frequency_weights`).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.classes import CAMVID
from ._core import direction, function_exercise, not_judged, shown, value_exercise

# --- 11.1 -------------------------------------------------------------------------------------
value_exercise(
    "11.1",
    "Predict the images per optimiser step of `torchrun --nproc_per_node=4 ... --batch-size 4 --grad-accum 2`",
    solution=lambda: 4 * 4 * 2,
    answer_type="whole",
    unit="image",
    kind="predict",
    mistakes=[
        (16, "16 forgets the gradient accumulation: each process runs 2 micro-batches before its step."),
        (8, "8 forgets that each of the 4 processes loads its own batch of 4 (the batch size is per process)."),
        (4, "4 is one process's micro-batch; DDP averages the gradients of all 4 processes, each over 2 "
            "micro-batches."),
    ],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, 4 * 4 * 2, more='too many', less='too few')} images: count "
                         "every batch that goes into one optimiser step, in every process."),
    hint="every process sees its own batch; DDP averages the gradients over processes and accumulation runs several "
         "micro-batches before the step.",
)


# --- 11.2 -------------------------------------------------------------------------------------
_DTYPE_NAMES = {"fp16": "fp16", "float16": "fp16", "half": "fp16", "f16": "fp16", "halfprecision": "fp16",
                "halffloat": "fp16", "16bitfloat": "fp16", "float16(fp16)": "fp16", "fp16(float16)": "fp16",
                "bf16": "bf16", "bfloat16": "bf16", "brainfloat16": "bf16", "brainfloat": "bf16",
                "bfloat16(bf16)": "bf16", "bf16(bfloat16)": "bf16", "binary16": "fp16"}


def _dtype_name(answer: Any) -> Any:
    """11.2 accepts torch.float16, torch.half and 'float16', 'half', 'half precision', '16-bit float',
    'torch.half', 'FP-16' for 'fp16', and torch.bfloat16, 'bfloat16', 'brain float 16', 'torch.bfloat16' for
    'bf16' (case, spaces, hyphens and underscores aside)."""
    if isinstance(answer, torch.dtype):
        answer = str(answer)
    if isinstance(answer, np.dtype) or (isinstance(answer, type) and issubclass(answer, np.generic)):
        answer = np.dtype(answer).name  # np.float16 (a census: "got type")
    if isinstance(answer, str):
        # a full stop or a word around the name ("fp16.", "the fp16", "fp16 only": a census counted them wrong)
        words = [w for w in answer.lower().replace("-", " ").replace("_", " ").rstrip(".!").split()
                 if w not in ("the", "a", "only", "just", "type", "dtype")]
        return _DTYPE_NAMES.get("".join(words).removeprefix("torch."), answer)
    return answer


value_exercise(
    "11.2",
    "Predict: which type rounds a gradient value of 1e-8 to exactly 0, 'fp16' or 'bf16'?",
    solution=lambda: "fp16",
    answer_type="text",
    kind="predict",
    parse=_dtype_name,
    mistakes=[
        ("bf16", "bfloat16 keeps float32's 8 exponent bits: numbers down to about 1e-38 stay nonzero. It keeps "
                 "fewer digits (1e-8 becomes 1.0012e-8), but not zero."),
        ("both", "only one of them: bfloat16 has float32's exponent range; float16's smallest positive number "
                 "is 2**-24, about 6e-8."),
        ("neither", "float16's smallest positive number is 2**-24, about 6e-8; 1e-8 is below half of it and "
                    "rounds to 0."),
        ("none", "float16's smallest positive number is 2**-24, about 6e-8; 1e-8 is below half of it and "
                 "rounds to 0."),
    ],
    # a form to fix, not a wrong try (as 02.5's): text that names neither, or both ("float16, not bf16")
    otherwise=lambda a: not_judged(f"{a!r}: answer with one of 'fp16' and 'bf16'."),
    hint="float16 has 5 exponent bits, bfloat16 8 (as many as float32); compare the smallest positive numbers, "
         "torch.finfo(dtype).smallest_normal and the subnormals below it.",
)


# --- 11.3 -------------------------------------------------------------------------------------
#: DeepLab v2's multi-scale inputs (MSC, sec. 4.1 "Deeper Networks and Multiscale Processing" and Table 4): 0.5, 0.75 and 1.
V2_SCALES: tuple[float, ...] = (0.5, 0.75, 1.0)


def ms_flip_cost(scales: tuple[float, ...], flip: bool) -> float:
    """Multiply-adds of multi-scale (+ flip) inference in units of one pass at scale 1: (1 + flip) * sum(s^2).

    A convolution does the same work at every output position, and an image resized by ``s`` has
    ``s^2`` times as many positions (up to the rounding of each feature map's side).
    """
    return (2 if flip else 1) * sum(s * s for s in scales)


value_exercise(
    "11.3",
    "Predict: multiply-adds of DeepLab v2's scales (0.5, 0.75, 1) with left-right flip, in single passes",
    solution=lambda: ms_flip_cost(V2_SCALES, flip=True),
    rel_tol=0.03,
    kind="predict",
    unit="pass",
    mistakes=[
        (6, "6 counts the forward passes (3 scales x 2 flips); a pass at scale 0.5 runs on a quarter of the "
            "positions, so it costs a quarter of a full pass."),
        (3, "3 counts the forward passes of the scales, as if each cost a full pass; and the flip doubles them."),
        (ms_flip_cost(V2_SCALES, flip=False), "that is the cost without the flip; the flipped image runs at "
                                              "every scale too, which doubles it."),
        (2 * sum(V2_SCALES), "that adds the scales; the cost follows the number of positions, height x width, "
                             "which grows with the square of the scale."),
        (sum(V2_SCALES), "that adds the scales, without the flip; the cost grows with the square of the scale, "
                         "and the flip doubles it."),
        (2 * sum(V2_SCALES) ** 2, "that squares the sum of the scales; square each scale, then add."),
        (ms_flip_cost((0.5, 0.75, 1.0, 1.25, 1.5, 1.75), flip=True),
         "that is DeepLabv3's six scales; DeepLab v2 used three: 0.5, 0.75 and 1."),
    ],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, ms_flip_cost(V2_SCALES, flip=True))}: express each forward pass's "
                         "cost in passes at scale 1 (a pass costs in proportion to its number of positions), then "
                         "add up every pass the strategy runs."),
    hint="a pass at scale s runs on s^2 times as many positions as one at scale 1; add the scales' costs, "
         "then account for the flipped copy.",
)


# --- 11.4 -------------------------------------------------------------------------------------
class _CountPasses(nn.Module):
    """A stand-in model that counts its forward passes and returns one channel of its input."""

    def __init__(self) -> None:
        super().__init__()
        self.passes = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.passes += 1
        return x[:, :1]


def _windows_reference(h: int, w: int, crop: int, stride: int) -> int:
    """Forward passes :func:`deeplab_edu.inference.sliding_window_logits` makes on an ``h x w`` image.

    Runs the package's function itself, on the ``meta`` device (shapes only: instant for any size).
    """
    from ..inference import sliding_window_logits

    counter = _CountPasses()
    sliding_window_logits(counter, torch.empty(1, 1, h, w, device="meta"), crop, stride)
    return counter.passes


def _windows(h: int, w: int, crop: int, stride: int) -> int:
    """A learner-style solution: per axis ceil((size - crop) / stride) + 1 (one if the image is smaller), multiplied."""
    rows = math.ceil(max(h - crop, 0) / stride) + 1
    cols = math.ceil(max(w - crop, 0) / stride) + 1
    return rows * cols


def _floor(h: int, w: int, crop: int, stride: int) -> int:
    return (max(h - crop, 0) // stride + 1) * (max(w - crop, 0) // stride + 1)


def _no_plus_one(h: int, w: int, crop: int, stride: int) -> int:
    return math.ceil(max(h - crop, 0) / stride) * math.ceil(max(w - crop, 0) / stride)


def _always_shifted(h: int, w: int, crop: int, stride: int) -> int:
    def axis(size: int) -> int:
        return 1 if size <= crop else (size - crop) // stride + 2
    return axis(h) * axis(w)


def _sum_of_axes(h: int, w: int, crop: int, stride: int) -> int:
    return math.ceil(max(h - crop, 0) / stride) + 1 + math.ceil(max(w - crop, 0) / stride) + 1


def _starts_to_border(h: int, w: int, crop: int, stride: int) -> int:
    return math.ceil(h / stride) * math.ceil(w / stride)


def _by_area(h: int, w: int, crop: int, stride: int) -> int:
    return math.ceil(h * w / (crop * crop))


def _no_padding(h: int, w: int, crop: int, stride: int) -> int:
    return (math.ceil((h - crop) / stride) + 1) * (math.ceil((w - crop) / stride) + 1)


def _window_sizes(g: torch.Generator) -> tuple[int, int, int, int]:
    def draw(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    crop = draw(64, 600)
    return draw(16, 2100), draw(16, 2100), crop, draw(max(1, crop // 4), crop)


function_exercise(
    "11.4",
    "Write windows(h, w, crop, stride): the number of sliding windows on an h x w image",
    reference=_windows_reference,
    solution=_windows,
    inputs=_window_sizes,
    trials=24,
    # (855, 513, ...) and (512, 768, ...): size - crop a whole number of strides, where the last window
    # already ends at the border (a teacher's trial: a shifted window added there anyway passed 24 random trials)
    cases=[(360, 480, 256, 170), (513, 513, 513, 342), (100, 700, 256, 170), (1024, 2048, 769, 512),
           (40, 50, 513, 342), (855, 513, 513, 342), (512, 768, 256, 128)],
    atol=0,
    mistakes=[
        (_floor, "floor drops the last window: when (size - crop) is not a multiple of the stride, one more "
                 "window, shifted to end at the border, covers the rest. Use ceil."),
        (_always_shifted, "when size - crop is a whole number of strides, the last window already ends at the "
                          "border: no shifted window is added there (ceil((size - crop) / stride) + 1 counts it "
                          "right either way)."),
        (_no_plus_one, "each axis needs one more window: ceil((size - crop) / stride) counts the steps between "
                       "windows, the first window at 0 comes on top (+1)."),
        (_sum_of_axes, "the windows form a grid of rows x columns: multiply the per-axis counts, do not add them."),
        (_starts_to_border, "ceil(size / stride) starts a window at every stride up to the border, but a window "
                            "must fit inside the image: where does the last one start?"),
        (_by_area, "the image area over the crop area ignores the overlap: windows advance by the stride, not by "
                   "the crop; count them per axis."),
        (_no_padding, "an image smaller than the crop along an axis is padded up to the crop first: one window "
                      "along that axis, never zero or fewer (use max(size - crop, 0))."),
    ],
    signature="windows(h, w, crop, stride)",
    hint="per axis, windows start at 0, stride, 2 stride, ... while they fit, plus one shifted to end at the "
         "border when the last one falls short of it; an axis shorter than the crop gets one window. Multiply the "
         "rows by the columns.",
)


# --- 11.5 -------------------------------------------------------------------------------------
#: Exercise 11.5's input: a batch of 3 images of 50 x 70 pixels, given to a model exported from a
#: 1 x 3 x 64 x 96 probe.
ONNX_PROBE_SHAPE: tuple[int, int, int, int] = (1, 3, 64, 96)
ONNX_INPUT_SHAPE: tuple[int, int, int, int] = (3, 3, 50, 70)


def _onnx_shape() -> tuple[int, int, int, int]:
    n, _, h, w = ONNX_INPUT_SHAPE
    return n, CAMVID.num_classes, h, w


def _shape_feedback(a: tuple[int, ...]) -> str:
    """11.5's message: which of the four axes are wrong."""
    names = ("the batch", "the classes", "the height", "the width")
    wrong = [name for name, got, want in zip(names, a, _onnx_shape()) if got != want]
    return (f"{a}: {', '.join(wrong[:-1]) + ' and ' + wrong[-1] if len(wrong) > 1 else wrong[0]} "
            f"{'are' if len(wrong) > 1 else 'is'} not what the model returns for this input.")


value_exercise(
    "11.5",
    f"Predict: the shape run_onnx returns for a batch of shape {ONNX_INPUT_SHAPE} "
    f"(an {CAMVID.num_classes}-class model exported from a {ONNX_PROBE_SHAPE} probe)",
    solution=_onnx_shape,
    answer_type="ints",
    kind="predict",
    mistakes=[
        ((ONNX_PROBE_SHAPE[0], CAMVID.num_classes, *ONNX_INPUT_SHAPE[2:]),
         "export_onnx keeps the batch axis dynamic (as height and width): the file accepts any batch and "
         "returns one logit map per image."),
        ((2, CAMVID.num_classes, *ONNX_INPUT_SHAPE[2:]),
         "the probe was traced as a batch of two (torch.export would fix a batch of one), but the batch axis "
         "stays dynamic: the output has one map per input image."),
        ((ONNX_INPUT_SHAPE[0], CAMVID.num_classes, *ONNX_PROBE_SHAPE[2:]),
         "height and width are dynamic too: the output follows the input's size, not the probe's."),
        ((ONNX_INPUT_SHAPE[0], CAMVID.num_classes, math.ceil(50 / 16), math.ceil(70 / 16)),
         "that is the size of the logits at output stride 16; the model upsamples its logits to the input size "
         "before returning them."),
        ((ONNX_INPUT_SHAPE[0], CAMVID.num_classes, math.ceil(50 / 4), math.ceil(70 / 4)),
         "that is the size of the decoder's stride-4 grid; the model upsamples its logits to the input size "
         "before returning them."),
        (ONNX_INPUT_SHAPE, "the output's channels are class scores, one per class, not the 3 colour channels."),
        ((ONNX_INPUT_SHAPE[0], CAMVID.num_classes, ONNX_INPUT_SHAPE[3], ONNX_INPUT_SHAPE[2]),
         "height and width are swapped: PyTorch orders an image batch (N, C, H, W), height before width, and the "
         "output follows the input's."),
        ((ONNX_INPUT_SHAPE[0], CAMVID.num_classes + 1, *ONNX_INPUT_SHAPE[2:]),
         "that counts the void label as a class: void pixels carry the ignore label, and the model has no output "
         "channel for them, one per class it predicts."),
        (lambda a: len(a) == 3, "the output keeps the batch axis: (batch, classes, height, width)."),
        (lambda a: len(a) != 4, "the output has four axes: (batch, classes, height, width)."),
    ],
    otherwise=_shape_feedback,
    hint="(batch, classes, height, width): which of them did the export fix, and to what size does the model "
         "return its logits?",
)


# 11.6: median-frequency balancing by hand, on three 100-pixel label maps (class: pixels).
BALANCING_IMAGES: tuple[dict[str, int], ...] = (
    {"road": 60, "sky": 40},
    {"road": 50, "sky": 30, "pole": 2, "car": 18},
    {"sky": 50, "car": 48, "pole": 2},
)
BALANCING_CLASSES = ("road", "sky", "pole", "car")


def _balancing_masks() -> list[torch.Tensor]:
    """The three label maps of 11.6 as 1 x 100 masks of class indices (BALANCING_CLASSES' order)."""
    return [torch.cat([torch.full((n,), BALANCING_CLASSES.index(c)) for c, n in image.items()])[None]
            for image in BALANCING_IMAGES]


def _pole_weight() -> float:
    from ..data.stats import median_frequency_weights

    return float(median_frequency_weights(_balancing_masks(), len(BALANCING_CLASSES))[BALANCING_CLASSES.index("pole")])


def _frequencies(only_where_present: bool = True) -> list[float]:
    """freq(c) per class: its pixels over the pixels of the images it is in (or of all images)."""
    def pixels_of(images: Any) -> int:
        return sum(sum(image.values()) for image in images)

    return [sum(image.get(c, 0) for image in BALANCING_IMAGES)
            / pixels_of([i for i in BALANCING_IMAGES if c in i or not only_where_present])
            for c in BALANCING_CLASSES]


def _weight_of_pole(frequencies: list[float], centre: Any) -> float:
    return float(centre(frequencies) / frequencies[BALANCING_CLASSES.index("pole")])


value_exercise(
    "11.6",
    "Median-frequency balancing: the weight of pole in three 100-pixel label maps",
    solution=_pole_weight,
    answer_type="number",
    rel_tol=0.015,  # 18 for 18.25 passes; the lower-middle mistake 16.5 and the mean's 16.25 stay apart
    mistakes=[
        (_weight_of_pole(_frequencies(), statistics.median_low),
         "that takes the lower of the two middle frequencies; with four classes the median is the mean of the "
         "middle two."),
        (_weight_of_pole(_frequencies(only_where_present=False), statistics.median),
         "that divides each class's pixels by the pixels of all three images; freq(c) counts only the images "
         "where c is present (pole: two of them)."),
        (_weight_of_pole(_frequencies(), statistics.mean),
         "that uses the mean frequency; the weight is the *median* frequency over the class's own."),
        (1 / _weight_of_pole(_frequencies(), statistics.median),
         "that is the inverse: the weight is median freq / freq(pole), large for a rare class."),
        (_weight_of_pole(_frequencies(), statistics.median_high),
         "that takes the higher of the two middle frequencies (or the median of the other three classes); the "
         "median is over all four classes, pole included: the mean of the middle two."),
    ],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, _pole_weight())}: compute freq(c) for the four classes first, "
                         "then divide their median by pole's."),
    hint="freq(c) divides by the pixels of the images where c appears, not of all three; the median of four "
         "frequencies is the mean of the middle two.",
)
