# ---
# jupyter:
#   deeplab_edu:
#     chapter: 1
#     cpu_minutes: 1
#     prerequisites: []
#     title: Atrous convolution
#   jupytext:
#     formats: py:percent
#     notebook_metadata_filter: deeplab_edu
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Atrous convolution
#
# *About 1 min on a 2-core machine in the `cpu` profile (the table in chapter 00 lists every chapter's time).
# Builds on no earlier chapter.*
#
# A classification network shrinks its input 32 times before it decides what it sees. A
# segmentation network must answer for every pixel. DeepLab keeps the feature maps dense with one
# small change to convolution: read the input with **holes** between the filter taps. This page
# builds that operation from its equation, checks it against PyTorch, and measures what it costs.
#
# **Learning objectives**
#
# - read eq. (1) of DeepLabv3 and compute an atrous convolution by hand;
# - see the same operation as an ordinary convolution with an "upsampled" filter;
# - predict output sizes with the effective kernel size (relationship 15 of Dumoulin & Visin) and
#   choose the padding that keeps the size;
# - measure that a larger rate costs no extra parameters or multiply-adds.
#
# **Helpers introduced:** `deeplab_edu.atrous` (`atrous_conv1d`, `atrous_conv2d`, `dilate_kernel`,
# `effective_kernel_size`, `conv_output_size`, `same_padding`, `input_positions`, `cost_vs_rate`,
# `edge_and_line_response`) and `deeplab_edu.viz.atrous` (`plot_eq1`, `plot_eq1_2d`,
# `atrous_widget`, `plot_dilated_kernel`, `plot_edge_and_line`, `plot_cost_vs_rate`),
# `deeplab_edu.viz.explorers` (`show`: the explorers that also run in the static book),
# `deeplab_edu.viz.images.sample_photo` (the course's photograph), `deeplab_edu.complexity.count_macs`
# (multiply-adds of a forward pass, exercise 01.6) and `deeplab_edu.config.choose` (a value per
# profile); from chapter 00, `deeplab_edu.viz.tables.markdown_table`.

# %% [markdown]
# ## Eq. (1): a filter with holes
#
# For a one-dimensional signal $x$ and a filter $w$ with $K$ taps, atrous convolution at rate $r$
# is eq. (1) of DeepLabv3 {cite:p}`chen2017deeplabv3` (written there for two-dimensional signals, a
# location $i$ and a tap $k$ each a pair of indices; DeepLab v2 {cite:p}`chen2018deeplabv2`, sec. 3.1,
# writes it in one dimension with the taps counted from $k = 1$ to $K$, the same sum shifted by $r$):
#
# $$
# y[i] = \sum_{k=0}^{K-1} x[i + r\,k]\; w[k].
# $$
#
# With $r = 1$ this is the ordinary (cross-correlation) convolution of every deep-learning
# library. With $r > 1$ the taps are read $r$ samples apart: the filter "sees" a window of
# $K + (K-1)(r-1)$ samples but still has only $K$ weights. The name comes from the *algorithme à
# trous* ("with holes") of wavelet analysis {cite:p}`holschneider1989wavelet`; DeepLab
# {cite:p}`chen2015deeplab,chen2018deeplabv2` and the "dilated convolutions" of
# {cite:t}`yu2016dilated` brought it to dense prediction. PyTorch calls $r$ the `dilation`.
#
# With a stride $s$ and $p$ zeros of padding at both ends, output $i$ reads
# $x[s\,i - p + r\,k]$ (indices outside the signal read a padding zero). Here is the package's
# reference implementation: nothing but indexing, so you can follow every step.

# %%
import inspect

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from deeplab_edu import config
from deeplab_edu.atrous import (
    atrous_conv1d,
    atrous_conv2d,
    conv_output_size,
    cost_vs_rate,
    dilate_kernel,
    effective_kernel_size,
    input_positions,
    same_padding,
)
from deeplab_edu.viz.atrous import (
    atrous_widget,
    plot_cost_vs_rate,
    plot_dilated_kernel,
    plot_eq1,
    plot_eq1_2d,
)
from deeplab_edu.viz.tables import markdown_table

source = inspect.getsource(atrous_conv1d)
head, _, rest = source.partition('"""')
print(head + '"""(docstring omitted)"""' + rest.partition('"""')[2])

# %% [markdown]
# Let us run it on a tiny signal, $x = (0, 1, \dots, 9)$, with the filter $w = (1, 10, 100)$ at
# rate 2. Output $y[0]$ reads $x[0], x[2], x[4]$, so it is $0 + 20 + 400 = 420$; the
# "digits" of each output show which inputs were read. PyTorch's `conv1d(..., dilation=2)` gives
# the same numbers.

# %%
x = torch.arange(10.0)
w = torch.tensor([1.0, 10.0, 100.0])
ours = atrous_conv1d(x, w, rate=2)
theirs = F.conv1d(x.view(1, 1, -1), w.view(1, 1, -1), dilation=2).view(-1)
print("eq. (1) by hand :", ours.tolist())
print("F.conv1d        :", theirs.tolist())
print("y[0] reads x at", input_positions(0, 3, rate=2))

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert ours.tolist() == [420.0, 531.0, 642.0, 753.0, 864.0, 975.0]
    torch.testing.assert_close(ours, theirs)

# %% [markdown]
# ### Which inputs does one output read?
#
# The figure marks, for one output, the input samples eq. (1) multiplies with $w[0], w[1],
# w[2]$; hatched cells are padding zeros. The right panel is the same in two dimensions, where
# the taps form a $K \times K$ lattice with spacing $r$.

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 3.2), gridspec_kw={"width_ratios": [2.3, 1]})
plot_eq1(input_size=12, kernel_size=3, rate=2, stride=1, padding=2, output_index=3, ax=a1)
plot_eq1_2d(input_size=9, kernel_size=3, rate=2, stride=1, padding=2, output_index=(1, 2), ax=a2)
fig.tight_layout()
plt.show()

# %% [markdown]
# **Try it.** Move the sliders: kernel size, rate, stride, padding and input size. Press ▶ to
# walk the output index across the signal and watch the taps slide by the stride while staying
# $r$ apart. (These sliders need a running kernel; in the book, the figure above shows the default
# values, and the JavaScript version below, with both pictures, is live.)

# %%
atrous_widget(input_size=12, kernel_size=3, rate=2, stride=1, padding=2, output_index=3)

# %%
# The explorer in JavaScript (deeplab_edu.viz.explorers; both pictures): it needs no kernel, so it is live
# in the static book too, and it computes the same numbers as the package (tests/test_explorers.py).
from deeplab_edu.viz import explorers

explorers.show("atrous", input_size=12, kernel_size=3, rate=2, stride=1, padding=2, output_index=3)

# %% [markdown]
# ## In two dimensions, with channels
#
# Real layers have a batch, input channels and output channels:
#
# $$
# y[n, o, i, j] = \sum_{c}\sum_{k,l} x[n, c,\; s\,i - p + r\,k,\; s\,j - p + r\,l]\; w[o, c, k, l].
# $$
#
# `atrous_conv2d` loops over output positions and taps and leaves the sum over channels to a
# matrix product. On a small crop of a photograph it matches `F.conv2d(..., dilation=r)`:

# %%
from deeplab_edu.viz.images import sample_photo

photo = sample_photo(96)
crop = photo[None, :, 30:50, 30:50]  # (1, 3, 20, 20): the reference loops are slow, keep it small
torch.manual_seed(0)
weight = torch.randn(4, 3, 3, 3)
for r in (1, 2, 3):
    mine = atrous_conv2d(crop, weight, rate=r, padding=r)
    ref = F.conv2d(crop, weight, padding=r, dilation=r)
    print(f"rate {r}: output {tuple(mine.shape)}, max |difference| = {float((mine - ref).abs().max()):.1e}")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    for r in (1, 2, 3):
        torch.testing.assert_close(atrous_conv2d(crop, weight, rate=r, padding=r), F.conv2d(crop, weight, padding=r, dilation=r))

# %% [markdown]
# What does the rate change in what a filter responds to? Below, the same 3x3 edge filter
# (a vertical Sobel) runs on the whole grey photograph at rates 1, 4 and 12 (with `F.conv2d`,
# now that we trust it). Same nine weights each time. At rate 1 it finds fine edges. At rate 12
# it compares pixels 24 apart, 12 to either side: on an image that does not change down its columns
# it computes $4\,(x[j+12] - x[j-12])$ along a row (on the photo, the column weights 1, 2, 1 also
# average three rows 12 apart). It responds to larger
# structures, and what it makes of a sharp feature depends on its kind. A **step** edge (dark on
# one side, bright on the other) answers wherever it lies between the two outer taps: a band
# $2r = 24$ pixels wide instead of a thin line. A **thin line** answers only where one outer tap
# lands on it: it shows up *twice*, 12 pixels to either side of where it is, and nothing in
# between, because the filter only looks through its holes. Chapter 02 comes back to these holes
# as *gridding*.

# %%
grey = photo.mean(0, keepdim=True)[None]
sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
axes[0].imshow(grey[0, 0].numpy(), cmap="gray")
axes[0].set_title("input", fontsize=9)
for a, r in zip(axes[1:], (1, 4, 12)):
    a.imshow(F.conv2d(grey, sobel, padding=same_padding(3, r), dilation=r)[0, 0].abs().numpy(), cmap="magma")
    a.set_title(f"|Sobel| at rate {r} (sees {effective_kernel_size(3, r)}px)", fontsize=9)
for a in axes:
    a.set_axis_off()
plt.show()

# %% [markdown]
# The photograph mixes both kinds of feature, so here they are apart: a test pattern with a step at
# column 40 and a one-pixel dark line at column 88, the same filter at rates 1, 4 and 12. The
# bottom row is the middle row of each response; the shaded band and the dashed lines are where it
# is non-zero, measured (`edge_and_line_response` pads the borders by repeating the edge pixels,
# so that only the step and the line respond).

# %%
from deeplab_edu.atrous import edge_and_line_response
from deeplab_edu.viz.atrous import plot_edge_and_line

edges = [edge_and_line_response(r) for r in (1, 4, 12)]
plot_edge_and_line(edges)
plt.show()
for e in edges:
    print(f"rate {e.rate:2d}: the step answers on {len(e.step_columns):2d} columns "
          f"({e.step_columns[0]}..{e.step_columns[-1]}); the line at column {e.line_at} answers at {e.line_columns}")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    for e in edges:
        assert e.step_columns == list(range(e.step_at - e.rate, e.step_at + e.rate))   # a band 2r wide
        assert e.line_columns == [e.line_at - e.rate, e.line_at + e.rate]              # the line, twice
    assert len(edges[-1].step_columns) == 24

# %% [markdown]
# ## The upsampled filter
#
# Both papers also describe the same operation another way (DeepLab v2 {cite:p}`chen2018deeplabv2`
# and DeepLabv3, sec. 3.1 of each): *upsample* the filter by inserting $r - 1$ zeros between
# consecutive taps, then convolve normally. The
# result is identical, which `dilate_kernel` lets us check. (Libraries do not actually build the
# big filter: that would waste multiplications on zeros.)

# %%
w2 = torch.arange(1.0, 10.0).view(3, 3)
plot_dilated_kernel(w2, rate=3)
plt.show()
big = dilate_kernel(weight, 2)
same = torch.allclose(F.conv2d(crop, big), F.conv2d(crop, weight, dilation=2), atol=1e-5)
print(f"filter {tuple(weight.shape)} -> upsampled {tuple(big.shape)}; same output as dilation=2: {same}")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert same and big.shape[-1] == effective_kernel_size(3, 2) == 5

# %% [markdown]
# ## How big is the output?
#
# A $K$-tap filter at rate $r$ spans the **effective kernel size**
#
# $$
# \hat k = K + (K-1)(r-1),
# $$
#
# and plugging $\hat k$ into the general output-size formula gives relationship 15 of
# {cite:t}`dumoulin2016guide` (who write $k$ for our $K$, $d$ for our $r$ and $i$ for the input size): for an
# input of $n$ samples, padding $p$ and stride $s$,
#
# $$
# o = \left\lfloor \frac{n + 2p - K - (K-1)(r-1)}{s} \right\rfloor + 1 .
# $$
#
# At stride 1 the size is kept when $2p = \hat k - 1$: for DeepLab's 3x3 atrous convolutions
# $\hat k = 2r + 1$, so **padding = rate** (exercise 01.4 asks what a wider filter needs). The table checks the formula against the shapes
# PyTorch produces (the course's tests do the same for 200 random settings, drawn by hypothesis, a
# property-based testing library: it generates the inputs of a test at random and, when one fails,
# shrinks it to the smallest failing case).

# %%
# (not the settings of exercises 01.1, 01.2 and 01.4, which you work out yourself)
cases = [(13, 3, 1, 0, 1), (13, 3, 1, 0, 2), (13, 3, 2, 1, 3), (65, 3, 1, 7, 7), (513, 3, 2, 1, 1), (7, 3, 1, 0, 2)]
rows = []
for n, taps, s, p, r in cases:
    shape = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, taps, taps), stride=s, padding=p, dilation=r).shape[-1]
    rows.append({"input n": n, "taps K": taps, "stride s": s, "padding p": p, "rate r": r,
                 "effective kernel": effective_kernel_size(taps, r), "formula o": conv_output_size(n, taps, s, p, r),
                 "PyTorch": shape})
markdown_table(rows, digits=3)

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert all(r["formula o"] == r["PyTorch"] for r in rows)
    assert same_padding(3, 12) == 12 and conv_output_size(65, 3, 1, 12, 12) == 65

# %% [markdown]
# ## What a larger rate costs
#
# The rate changes *where* the taps read, not *how many* there are. So a dilated convolution has
# the same parameters and the same multiply-adds per output pixel as an ordinary one, while its
# field of view grows linearly with $r$. The numbers below are measured with
# `deeplab_edu.complexity` on a same-padded 3x3 convolution (multiply-adds are counted from a real
# forward pass, so padding and output size are whatever PyTorch actually does); the wall-clock
# time is from this machine, now.

# %%
size, channels = config.choose(smoke=(33, 32), cpu=(65, 64), gpu=(129, 64))
print(f"a {channels} -> {channels} channel 3x3 convolution on a {size}x{size} input, at each rate:")
cost = cost_vs_rate((1, 2, 4, 8, 12), channels=channels, size=size, time_it=True)
plot_cost_vs_rate(cost)
plt.tight_layout()
plt.show()
times = [r["forward (ms)"] for r in cost]
spread = max(times) / min(times)
change = ("rose" if times[-1] > 1.1 * times[0] else "fell" if times[-1] < times[0] / 1.1 else "barely changed")
print(f"in this run the time {change} from rate {cost[0]['rate']} to rate {cost[-1]['rate']} "
      f"({times[0]:.2f} -> {times[-1]:.2f} ms); slowest / fastest rate: {spread:.2f}")
markdown_table(cost, digits=3)

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert len({r["params"] for r in cost}) == 1 and len({r["MACs"] for r in cost}) == 1
    assert all(t > 0 for t in times)

# %% [markdown]
# The time column need not be flat, and it can move either way with the rate: reading memory $r$
# pixels apart can be less cache-friendly, while libraries pick different kernels for different
# dilations, some faster than the plain one. The line above the table says how the times moved in
# this run. They also move with whatever else the machine is doing, so another run can order them
# differently: one run shows no trend. The arithmetic is the same; chapter 03 measures what this
# means for a whole dilated ResNet.
#
# ## Exercises
#
# ### Exercise 01.1
# DeepLabv3's ASPP has a 3x3 branch at rate 6. How wide is its effective kernel, counted in
# positions of the feature map it convolves (not pixels of the input image)?

# %%
from deeplab_edu.exercises import check, solved

answer_01_1 = ...  # your answer here
check("01.1", answer_01_1)

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# K + (K - 1)(r - 1) = 3 + 2 * 5
solved("01.1", effective_kernel_size(3, 6))

# %% [markdown]
# ### Exercise 01.2
# An input of length 13 goes through a 3-tap convolution with rate 4, stride 2 and padding 2.
# How long is the output? Work it out with relationship 15 before you run anything.

# %%
answer_01_2 = ...
check("01.2", answer_01_2)

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# floor((13 + 4 - 9) / 2) + 1 = 5
solved("01.2", (13 + 2 * 2 - effective_kernel_size(3, 4)) // 2 + 1)

# %% [markdown]
# ### Exercise 01.3
# With $K = 3$, rate 3, stride 1 and padding 3, which input indices does $y[2]$ read? Give a
# list in tap order (negative indices are padding).

# %%
answer_01_3 = ...
check("01.3", answer_01_3)

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# s*i - p + r*k for k = 0, 1, 2
solved("01.3", [1 * 2 - 3 + 3 * k for k in range(3)])

# %% [markdown]
# ### Exercise 01.4
# Which padding keeps the size of a 5x5 convolution at rate 3 (stride 1)? (DeepLab's filters are
# 3x3, where the answer is the rate; work out what the rule becomes for a wider filter.)

# %%
answer_01_4 = ...
check("01.4", answer_01_4)

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# the effective kernel is 5 + 4 * 2 = 13 pixels wide; (13 - 1) / 2 = 6 = r * (K - 1) / 2
solved("01.4", (effective_kernel_size(5, 3) - 1) // 2)

# %% [markdown]
# ### Exercise 01.5 (write a function)
# Write `dilate(w, rate)` for a 1-D filter `w`: it returns the upsampled filter, with `rate - 1`
# zeros between consecutive taps. The checker compares it with the package's `dilate_kernel` on
# a few edge cases and on random filters and rates.


# %%
def dilate(w: torch.Tensor, rate: int) -> torch.Tensor:
    ...  # your code here


check("01.5", dilate)


# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
def dilate_solution(w: torch.Tensor, rate: int) -> torch.Tensor:
    out = torch.zeros((len(w) - 1) * rate + 1, dtype=w.dtype)
    out[::rate] = w
    return out


solved("01.5", dilate_solution)

# %% [markdown]
# ### Exercise 01.6 (predict, then measure)
# The section on cost measured a whole table; here you count one convolution yourself: a 3x3
# convolution from 256 to 256 channels without a bias, at rate 12 with padding 12, on one 33x33
# feature map (the size of the output-stride-16 map of a 513-pixel crop). How many
# multiply-adds does its forward pass do? Count per output value first, predict, then run the
# cell after this one, which measures it with `deeplab_edu.complexity.count_macs` (PyTorch's
# own operation counter), and then the same convolution at rate 1.

# %%
prediction_01_6 = ...  # your prediction here
check("01.6", prediction_01_6)

# %% [markdown]
# **Exercise 01.6, measured:**

# %% tags=["hide-output"]
from deeplab_edu.complexity import count_macs
from deeplab_edu.exercises import measured_and_predicted, prediction_made

feature_map = torch.zeros(1, 256, 33, 33)
macs_01_6 = {rate: count_macs(torch.nn.Conv2d(256, 256, 3, padding=rate, dilation=rate, bias=False), feature_map)
             for rate in (12, 1)}
print(measured_and_predicted(macs_01_6[12], prediction_01_6, fmt=",d"))
if prediction_made("01.6", prediction_01_6):  # rate 1's count would give the answer away
    print(f"the same convolution at rate 1: {macs_01_6[1]:,d} multiply-adds")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert check("01.6", macs_01_6[12])  # the measured count is the exercise's answer
    assert macs_01_6[12] == macs_01_6[1]  # what the rate costs: nothing

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# each output value multiplies K x K = 9 taps in each of the 256 input channels (the holes are
# never multiplied); padding 12 = rate keeps the map 33 x 33, and there are 256 output channels
solved("01.6", 33 * 33 * 256 * 256 * 9)
