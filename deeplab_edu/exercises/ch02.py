"""Exercises of chapter 02 (receptive fields): the recurrences, gridding and the effective field."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from ..gridding import sampling_pattern
from ..receptive_field import LayerSpec, receptive_field, receptive_field_of, receptive_field_table
from ._core import direction, function_exercise, normalise_text, not_judged, shown, value_exercise

value_exercise(
    "02.1",
    "Receptive field of three stacked 3x3 convolutions (stride 1)",
    solution=lambda: receptive_field([LayerSpec(3)] * 3).size,
    answer_type="whole",
    unit="pixel",
    mistakes=[
        (9, "9 = 3 * 3 adds the kernel sizes; neighbouring windows overlap, so each layer adds only k - 1."),
        (27, "27 = 3**3 counts paths, not pixels."),
        (6, "6 forgets the starting pixel: with no layer at all the field is that one pixel, and each layer "
            "widens it."),
    ],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, receptive_field([LayerSpec(3)] * 3).size)} for the receptive "
                         "field: start from one pixel and let each stride-1 layer widen it."),
    more_wrong=(3,),
    hint="each stride-1 3x3 layer adds k - 1 = 2 pixels.",
)

_STACK = [LayerSpec(3, 2, 1), LayerSpec(3, 2, 1), LayerSpec(3, 1, 1)]

value_exercise(
    "02.2",
    "(receptive field, effective stride) of conv3x3/s2, conv3x3/s2, conv3x3/s1",
    solution=lambda: (receptive_field(_STACK).size, receptive_field(_STACK).stride),
    answer_type="ints",
    mistakes=[
        (lambda a: len(a) != 2, not_judged("answer with a pair (receptive_field, effective_stride).")),
        (lambda a: tuple(a) == (receptive_field(_STACK).stride, receptive_field(_STACK).size),
         "the right numbers the other way round: the pair is (receptive_field, effective_stride)."),
        (lambda a: a[1] != receptive_field(_STACK).stride,
         lambda a: f"effective stride {a[1]} is {direction(a[1], receptive_field(_STACK).stride)}: one step on "
                   "the last feature map moves as many input pixels as the layers' strides multiply to."),
        ((7, 4), "7 treats every layer as if it were at stride 1; after stride-2 layers, each of a layer's k - 1 "
                 "extra cells is several input pixels wide."),
    ],
    otherwise=lambda a: (f"receptive field {a[0]} is {direction(a[0], receptive_field(_STACK).size)}: each layer adds "
                         "k - 1 cells of its input, and a cell after stride-2 layers is as many input pixels wide as "
                         "their strides multiply to."),
    more_wrong=((15, 8), (7, 2), 15),
    hint="r grows by (k - 1) times the product of the strides *before* the layer; S is the product of all strides.",
)

_READ_02_3 = int((sampling_pattern((2, 2, 4)) > 0).sum())

value_exercise(
    "02.3",
    "Predict: how many pixels of its 17x17 receptive field does a stack of 3x3 convs at rates (2, 2, 4) read?",
    solution=lambda: int((sampling_pattern((2, 2, 4)) > 0).sum()),
    answer_type="whole",
    unit="pixel",
    kind="predict",
    mistakes=[
        (289, "289 is the whole square; all three rates are even, so odd offsets are never reached (gridding)."),
        (49, "49 is the (2, 2, 2) stack's count; the rate-4 layer reaches further: offsets up to 2 + 2 + 4."),
        (729, "729 = 9**3 counts paths through the stack; several paths land on the same pixel."),
        (lambda a: a in (9, 17), lambda a: f"{a} is one axis; the field is a square, and a pixel is read when "
                                            "both its row and its column offsets are reachable."),
    ],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, _READ_02_3, more='too many', less='too few')}: a pixel is "
                         "read when some choice of one tap per layer lands on it; which row offsets can the taps' "
                         "offsets add up to, and which column offsets?"),
    more_wrong=(27, 25),
    hint="along one axis the offsets are sums of a, b from {-2, 0, 2} and c from {-4, 0, 4}: which of -8..8 are reached?",
)


# 02.4: the recurrence as a function of (kernel, stride, dilation) triples, input first.
Layers = Sequence[tuple[int, int, int]]


def _reference_size(layers: Layers) -> int:
    return receptive_field([LayerSpec(k, s, 0, d) for k, s, d in layers]).size


def _learner_size(layers: Layers) -> int:
    """A learner-style solution of r_0 = 1 + sum_l (k^_l - 1) prod_{i<l} s_i."""
    size, jump = 1, 1
    for k, s, d in layers:
        size += d * (k - 1) * jump  # the effective kernel d (k - 1) + 1, minus one
        jump *= s
    return size


def _walk(layers: Layers, grow: Callable[[int, int], int], *, own_stride: bool = False, start: int = 1) -> int:
    """r_0 with a per-layer growth ``grow(k, d)``, a wrong stride rule or a wrong start (the mistakes)."""
    size, jump = start, 1
    for k, s, d in layers:
        if own_stride:
            jump *= s
        size += grow(k, d) * jump
        if not own_stride:
            jump *= s
    return size


def _ignores_dilation(layers: Layers) -> int:
    return _walk(layers, lambda k, d: k - 1)


def _own_stride(layers: Layers) -> int:
    return _walk(layers, lambda k, d: d * (k - 1), own_stride=True)


def _no_strides(layers: Layers) -> int:
    return 1 + sum(d * (k - 1) for k, _, d in layers)


def _starts_at_zero(layers: Layers) -> int:
    return _walk(layers, lambda k, d: d * (k - 1), start=0)


def _whole_kernel(layers: Layers) -> int:
    return _walk(layers, lambda k, d: d * (k - 1) + 1)


def _random_stack(g: torch.Generator) -> tuple[list[tuple[int, int, int]]]:
    n = int(torch.randint(1, 7, (1,), generator=g))
    pick = lambda options: options[int(torch.randint(0, len(options), (1,), generator=g))]  # noqa: E731
    return ([(pick((1, 2, 3, 3, 5, 7)), pick((1, 1, 2)), pick((1, 1, 2, 4))) for _ in range(n)],)


function_exercise(
    "02.4",
    "Write receptive_field_size(layers): the recurrence of Araujo et al., dilation included",
    reference=_reference_size,
    packaged=(receptive_field, receptive_field_table, receptive_field_of),
    solution=_learner_size,
    inputs=_random_stack,
    cases=[([(3, 1, 1)] * 3,), ([(3, 2, 1), (3, 2, 1), (3, 1, 1)],), ([(3, 1, 2), (3, 1, 4)],), ([],)],
    mistakes=[
        (_ignores_dilation, "it ignores the dilation: a layer with rate d widens the field by its effective "
                                  "kernel d (k - 1) + 1, minus one."),
        (_own_stride, "it multiplies a layer's growth by its own stride too; only the strides "
                                        "*before* the layer count (a stride acts on the next layers' inputs)."),
        (_no_strides, "it ignores the strides: after a stride-2 layer every pixel of the feature map "
                                   "is worth 2 input pixels, so later layers add twice as much."),
        (_starts_at_zero, "it starts from 0: with no layer at all the field is the pixel itself, 1."),
        (_whole_kernel, "it adds the whole effective kernel per layer; neighbouring windows overlap "
                                       "by all but k^ - 1 pixels, so each layer adds k^ - 1."),
    ],
    signature="receptive_field_size(layers)",
    hint="walk the layers from the input, keeping two numbers: the field size (1 before any layer) and the product "
         "of the strides of the layers before the current one (also 1); each layer widens the field by its "
         "effective kernel minus one, in units of that product, and then its stride joins the product.",
)


# 02.5: what training does to the effective field on an easy task (chapter 02, "The effective receptive field").
_CHANGES = {"wider": ("wider", "wide", "widens", "grows", "grow", "larger", "bigger", "broader", "increases",
                      "increase", "expands", "expand", "more wide"),
            "the same": ("the same", "same", "unchanged", "no change", "equal"),
            "narrower": ("narrower", "narrow", "narrows", "shrinks", "shrink", "smaller", "tighter", "thinner",
                         "decreases", "decrease", "reduced", "reduces", "contracts", "contract", "less wide",
                         "less broad", "less large")}


_NEGATIONS = ("not", "no", "never", "less", "isn t", "doesn t", "won t", "don t", "didn t", "hardly")


def _change_word(answer: Any) -> Any:
    """02.5 reads a text naming one change as that change: 'grows', 'it gets larger', 'Wider!' as 'wider';
    'same', 'unchanged', 'no change' as 'the same'; 'shrinks', 'smaller', 'narrow.' as 'narrower' (case,
    hyphens, quotes and punctuation aside). A text naming none or two, or negated ("not wider", "doesn't
    grow", "less wide"), is left as it is."""
    if not isinstance(answer, str):
        return answer
    text = " " + " ".join("".join(c if c.isalnum() else " " for c in normalise_text(answer)).split()) + " "
    # the change words, longest first, each taken out of the text once found: "less wide" names narrower, not
    # wider, and its "less" (as the "no" of "no change") is then no negation
    named, rest = set(), text
    for change, word in sorted(((c, w) for c, words in _CHANGES.items() for w in words), key=lambda cw: -len(cw[1])):
        if f" {word} " in rest:
            named.add(change)
            rest = rest.replace(f" {word} ", " ")
    negated = any(f" {w} " in rest for w in _NEGATIONS)  # what is left: "doesn't grow", "no wider", "not less wide"
    if len(named) != 1 or negated:  # two answers, or a negated one: left as written (refused, not judged)
        return answer
    return named.pop()


value_exercise(
    "02.5",
    "Predict: trained on noisy halves that differ by 1.0 instead of 0.2, does the 12-layer stack's 50 % extent "
    "end 'wider', 'the same' or 'narrower' than at random initialisation?",
    solution=lambda: "narrower",
    answer_type="text",
    kind="predict",
    parse=_change_word,
    mistakes=[
        ("wider", "not on this task. Halves 0.2 apart paid for far pixels; do halves 1.0 apart? Run the measuring "
                  "cell and compare its table with the first one."),
        ("the same", "training does change the map here, by more than the seeds' spread. Run the measuring cell and "
                     "read the table's before and after columns."),
    ],
    # a form to fix, not a wrong try (a trial's "less wide" counted as one and brought a hint)
    otherwise=lambda a: not_judged(f"'{a}': answer with one of 'wider', 'the same' and 'narrower'."),
    hint=("how many pixels must a unit average to tell a difference of 1.0 under noise of standard deviation 1 "
          "(the mean of k pixels has noise 1 / sqrt(k))?",
          "and the pixels beyond that: near the line, in which half do they lie, and what do they tell the unit?"),
)
