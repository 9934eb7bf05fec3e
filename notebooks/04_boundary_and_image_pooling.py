# ---
# jupyter:
#   deeplab_edu:
#     chapter: 4
#     cpu_minutes: 1
#     prerequisites:
#     - 3
#     title: Boundary degeneration and image-level features
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
# # 04 · Boundary degeneration and image-level features
#
# *About 1 min on a 2-core machine in the `cpu` profile (the table in chapter 00 lists every chapter's time).
# Builds on chapter 03.*
#
# Chapter 03 made the feature maps dense: a $513 \times 513$ crop gives a $33 \times 33$ map at
# output stride 16 and a $65 \times 65$ map at output stride 8. ASPP then probes that map with
# $3 \times 3$ atrous filters at rates 6, 12 and 18 (doubled at output stride 8). This chapter asks
# what a large rate means on a *small* map. The answer is DeepLabv3's Figure 4
# {cite:p}`chen2017deeplabv3`: the larger the rate, the more filter taps land on the zero padding,
# and once the rate reaches the map size a $3 \times 3$ filter is nothing but a $1 \times 1$ filter.
# The remedy the paper adopts is image-level pooling, borrowed from ParseNet
# {cite:p}`liu2015parsenet`.
#
# **Learning objectives of this page**
#
# - count, for every output position of a zero-padded ("same") atrous convolution, how many taps
#   fall inside the feature map, in closed form and by brute force;
# - reproduce DeepLabv3 Figure 4 for a $65 \times 65$ map and every rate from 1 to 65, and explain
#   each curve;
# - show numerically that with rate $\ge$ map size a $3 \times 3$ atrous convolution returns
#   *exactly* the $1 \times 1$ convolution with its centre weight, and where, and by how much, the
#   two differ at smaller rates;
# - relate this to DeepLab's choices: crop size, ASPP rates, and the image-pooling branch.
#
# **Helpers introduced:** `deeplab_edu.boundary` (`valid_tap_counts`, `tap_counts_by_convolution`,
# `valid_weight_fractions`, `figure4_curves`, `degeneration_rate`, `effective_kernel_shape`,
# `compare_with_centre_tap`, `input_footprint`, `rate_usage_table`, `centre_weight`,
# `possible_counts`), ASPP's parts ahead of chapter 05 (`deeplab_edu.models.aspp`: `ASPP`,
# `ASPPConv`, `ImagePooling`) and
# `deeplab_edu.viz.boundary` (`plot_tap_counts`, `tap_count_widget`, `plot_figure4`,
# `plot_degeneration`, `plot_mean_valid_fraction`, `plot_footprints`), and the tap-count figure as
# a JavaScript explorer, live in the book (`deeplab_edu.viz.explorers.show`); from chapter 00,
# `deeplab_edu.viz.tables.markdown_table` (a computed table).

# %%
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import display

from deeplab_edu import boundary, config
from deeplab_edu.exercises import check, get, prediction_made, solved
from deeplab_edu.viz import boundary as vb
from deeplab_edu.viz.tables import markdown_table

# %% [markdown]
# ## 1. Counting the taps that see the map
#
# Eq. (1) of DeepLabv3 reads, for output position $\mathbf{i}$, the inputs
# $x[\mathbf{i} + r\,\mathbf{k}]$ with $\mathbf{k} \in \{-1, 0, 1\}^2$ for a $3 \times 3$ filter
# (chapter 01's eq. (1), whose taps $k = 0, \dots, K - 1$ are here re-indexed about the centre tap).
# "Same" padding pads the $n$-pixel map with $r$ zeros on each side so that the output keeps the
# input size. Along one axis, the tap at offset $r k$ is *valid* when it lands on the map,
#
# $$
# v_r(i) \;=\; \sum_{k=-1}^{1} \mathbb{1}\left[\,0 \le i + r k \le n - 1\,\right] \in \{1, 2, 3\},
# $$
#
# (the centre tap $k = 0$ is always valid), and in two dimensions a tap is valid when both its row
# and its column are, so the number of valid weights at $(i, j)$ is a product:
#
# $$
# c_r(i, j) = v_r^{\text{rows}}(i)\; v_r^{\text{cols}}(j) \in \{1, 2, 3, 4, 6, 9\}.
# $$
#
# Counts of 5, 7 or 8 cannot happen. `valid_tap_counts` evaluates this formula; here is a
# $13 \times 13$ map at rate 4:

# %%
counts = boundary.valid_tap_counts(13, 13, kernel=3, rate=4)
print(counts)
fig = vb.plot_tap_counts(13, 13, rate=4)

# %% [markdown]
# The interior keeps all nine weights; a band of width $r$ along each border loses the taps that
# would cross it, and the corners lose a row and a column of taps at once (4 of 9 left). There is a second way to count,
# with no formula at all: convolve an all-ones map with an all-ones kernel. Every valid tap adds
# $1 \cdot 1$ and every padded tap adds $0 \cdot 1$, so the output *is* the count. The two agree:

# %%
brute = boundary.tap_counts_by_convolution(13, 13, kernel=3, rate=4)
print("closed form == brute force:", np.array_equal(counts, brute))

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert np.array_equal(counts, brute)
    assert counts[6, 6] == 9 and counts[0, 0] == 4 and counts[0, 6] == 6
    for h, w, r in [(65, 65, 1), (65, 65, 24), (33, 17, 12), (7, 40, 9)]:
        assert np.array_equal(boundary.valid_tap_counts(h, w, 3, r), boundary.tap_counts_by_convolution(h, w, 3, r))

# %% [markdown]
# ### Try it
# Move the sliders: the map's height and width, and the rate. Watch the interior (green, nine
# taps) shrink as the rate grows until it vanishes (at which rate, for a $33 \times 33$ map, is
# exercise 04.1's question: try it there first), and the whole map turn vermilion (one tap) at rate
# $\ge n$. A map that is taller than it is wide loses its horizontal taps first.

# %%
vb.tap_count_widget(height=33, width=33, rate=12)

# %%
# The same explorer in JavaScript (deeplab_edu.viz.explorers): it needs no kernel, so it is live
# in the static book too, and it computes the same numbers as the package (tests/test_explorers.py).
from deeplab_edu.viz import explorers

explorers.show("boundary", height=33, width=33, rate=12)

# %% [markdown]
# The Python widget (the first of the two above) needs a running kernel; the JavaScript one is live
# in the book too. For reference, this is what both show for their default values (a
# $33 \times 33$ map, the size of a $513$ crop at output stride 16, at ASPP's middle rate 12):

# %%
fig = vb.plot_tap_counts(33, 33, rate=12)

# %% [markdown]
# ## 2. DeepLabv3 Figure 4
#
# DeepLabv3 summarises the counts over the whole map: for each rate, the fraction of output
# positions that see 1, 4 or 9 valid weights, on a $65 \times 65$ feature map (a $513$ crop at
# output stride 8). `valid_weight_fractions(size, rate)` returns that fraction for every possible
# count, and `figure4_curves` evaluates it for a range of rates. We draw every rate from 1 to 65:

# %%
curves = boundary.figure4_curves(size=65, rates=range(1, 66))
fig = vb.plot_figure4(size=65, rates=range(1, 66), counts=(1, 4, 9))

# %%
for r in (1, 6, 12, 18, 24, 32, 33, 36, 48, 64, 65):
    fr = boundary.valid_weight_fractions(65, r)
    print(f"rate {r:2d}: " + "  ".join(f"{c} valid: {fr[c]:.4f}" for c in (1, 4, 9)))

# %% [markdown]
# **Reading the figure.** Per axis, both neighbours are on the map for
# $r \le i \le n-1-r$, i.e. $\max(0, n-2r)$ positions; neither is for $n-r \le i \le r-1$, i.e.
# $\min(n, \max(0, 2r-n))$ positions; exactly one for the rest. Because the 2-D count is a
# product, the fractions are products of 1-D fractions:
#
# $$
# \begin{aligned}
# p_9(r) &= \left(\frac{\max(0,\,n-2r)}{n}\right)^2,\\
# p_1(r) &= \left(\frac{\min(n,\,\max(0,\,2r-n))}{n}\right)^2,\\
# p_4(r) &= \left(\frac{n-|n-2r|}{n}\right)^2 \quad (r \le n).
# \end{aligned}
# $$
#
# - **9 valid** starts near 1 (at rate 1 only the one-pixel border loses taps: $p_9 = (63/65)^2$)
#   and falls quadratically to exactly 0 at $r = 33 > 64/2$: from then on *no* position of the map
#   applies the full $3 \times 3$ filter.
# - **4 valid** (two rows times two columns) peaks in the middle, at $r = 32$ and $33$.
# - **1 valid** is 0 up to $r = 32$ (at 33 only the centre position, $(1/65)^2$), then rises and
#   reaches 1 at $r = 65$: the filter has become $1 \times 1$ everywhere. That is the paper's point
#   (sec. 3.3): when "the rate value is close to the feature map size, the $3 \times 3$ filter,
#   instead of capturing the whole image context, degenerates to a simple $1 \times 1$ filter since
#   only the center filter weight is effective".
#
# The 2-, 3- and 6-valid curves, which the paper leaves out, take the remaining mass
# (`vb.plot_figure4(counts=boundary.possible_counts(3))` draws all six).

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    n = 65
    for i, r in enumerate(curves["rates"]):
        r = int(r)
        assert np.isclose(curves[9][i], (max(0, n - 2 * r) / n) ** 2)
        assert np.isclose(curves[1][i], (min(n, max(0, 2 * r - n)) / n) ** 2)
        assert np.isclose(curves[4][i], ((n - abs(n - 2 * r)) / n) ** 2)
        brute = boundary.tap_counts_by_convolution(n, n, 3, r)
        for c in (1, 4, 9):
            assert np.isclose(curves[c][i], (brute == c).mean())
    assert curves[9][32] == 0 and curves[9][31] > 0 and curves[1][-1] == 1.0 and curves[1][-2] < 1.0

# %% [markdown]
# ## 3. Degeneration to a $1 \times 1$ filter, exactly
#
# When $r \ge n$ every off-centre tap is at least $n$ pixels away from its output position, so it
# misses the map from *every* position: the output is
# $y[\mathbf{i}] = w[\mathbf{0}]\, x[\mathbf{i}]$, a $1 \times 1$ convolution with the centre
# weight. `degeneration_rate(size)` is the smallest such rate, $\max(H, W)$.
#
# Between whole and $1 \times 1$, positions differ, and `effective_kernel_shape(size, rate)`
# summarises a map by the **largest filter any position still applies**: the most taps per column
# and per row that some position keeps. It is $(3, 3)$ while the filter is whole somewhere and
# $(1, 1)$ once it has degenerated; on a map wider than tall it can be $(1, 3)$. On 9 rows and 40
# columns at rate 12, no position keeps a vertical neighbour (12 rows away, on a 9-row map), and
# columns 12 to 27 keep both horizontal ones: $(1, 3)$, although the other columns apply a
# $1 \times 2$ filter.
#
# We check it on real convolutions with 16 input and 8 output channels. One care is needed to
# compare *bit for bit*: the library sums over channels in an order that depends on the kernel
# size, and floating-point addition is not associative, so two mathematically equal results can
# differ in the last bits. With small integers stored as `float64` every product and partial sum
# is exact, whatever the order, so equality means equality.

# %%
gen = torch.Generator().manual_seed(0)
h = w = 17
x = torch.randint(-4, 5, (2, 16, h, w), generator=gen).double()
weight = torch.randint(-4, 5, (8, 16, 3, 3), generator=gen).double()
r = boundary.degeneration_rate((h, w))
y_atrous = F.conv2d(x, weight, padding=r, dilation=r)          # "same" 3x3 atrous conv
y_centre = F.conv2d(x, boundary.centre_weight(weight))          # 1x1 conv with the centre weight
print(f"rate {r} on a {h} x {w} map: identical = {torch.equal(y_atrous, y_centre)}")
for bigger in (r + 1, 2 * r, 100):
    rep = boundary.compare_with_centre_tap(x, weight, bigger)
    print(f"rate {bigger:3d}: identical = {rep.identical}")

# %% [markdown]
# With ordinary random floats the two outputs agree only up to rounding, which is why the exact
# test above uses integers:

# %%
xf, wf = torch.randn(2, 64, h, w, generator=gen), torch.randn(8, 64, 3, 3, generator=gen)
rep_float = boundary.compare_with_centre_tap(xf, wf, r)
print(f"float32, 64 channels: max |difference| = {rep_float.max_abs_diff:.2e} (rounding only)")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert torch.equal(y_atrous, y_centre)
    assert all(boundary.compare_with_centre_tap(x, weight, b).identical for b in (r + 1, 2 * r, 100))
    assert rep_float.max_abs_diff < 1e-3

# %% [markdown]
# **Intermediate rates.** Below the degeneration rate the two outputs differ, and *only* at the
# positions where more than the centre tap is valid; there the difference is the contribution of
# the surviving off-centre taps, $\sum_{\mathbf{k} \ne \mathbf{0},\ \text{valid}}
# w[\mathbf{k}]\,x[\mathbf{i} + r\mathbf{k}]$. For each rate, the upper panel shows the valid-tap
# count per position and the panel below it $|y_{3\times 3} - y_{1\times 1}|$ (largest over batch and
# channels):

# %%
rates = (2, 6, 9, 12, 16, 17)
reports = [boundary.compare_with_centre_tap(x, weight, r) for r in rates]
fig = vb.plot_degeneration(reports)
display(markdown_table([{"rate": rep.rate, "positions with > 1 valid tap": f"{float((rep.tap_counts > 1).mean()):.1%}",
                         "positions that differ": f"{rep.fraction_differing:.1%}", "max abs. difference": f"{rep.max_abs_diff:.0f}"}
                        for rep in reports]))

# %% [markdown]
# At rate 9 on a $17 \times 17$ map only the single centre position (8, 8) sees nothing but its
# centre tap, and it is the only position where the difference is exactly zero (the darker cross
# through it is the rest of its row and column, whose positions keep two taps, not four: smaller
# differences, typically, but not zero); at rate 16 only the corners
# and edges still reach across the map; from rate 17 on, nothing differs. (With integer data a
# difference can cancel to zero by chance at a position that does have valid off-centre taps; the
# reverse, a difference where only the centre is valid, can never happen.)

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    for rep in reports:
        assert not (rep.differs & (rep.tap_counts == 1)).any()      # never differs where only the centre is valid
    assert reports[-1].identical and not reports[-2].identical
    assert int((reports[2].tap_counts == 1).sum()) == 1
    cross = reports[2].tap_counts == 2  # rate 9: the dark cross of the difference map, row and column 8 but the centre
    assert cross[8].sum() == 16 and cross[:, 8].sum() == 16 and cross.sum() == 32
    assert reports[2].diff_map[cross].min() > 0  # "not zero"
    assert np.median(reports[2].diff_map[cross]) < np.median(reports[2].diff_map[reports[2].tap_counts == 4])  # "smaller"
    # section 3's example of effective_kernel_shape: 9 x 40 at rate 12
    wide = boundary.valid_tap_counts(9, 40, 3, 12)
    assert boundary.effective_kernel_shape((9, 40), 12) == (1, 3)
    assert (np.flatnonzero(wide[0] == 3) == np.arange(12, 28)).all() and set(np.unique(wide)) == {2, 3}

# %% [markdown]
# ## 4. What it means for DeepLab: crop size, output stride and ASPP rates
#
# ASPP applies $3 \times 3$ filters at rates $(6, 12, 18)$ at output stride 16 and
# $(12, 24, 36)$ at output stride 8. The table below says what share of positions still apply the
# full filter and what share of the weights are in use on average, for three feature-map sizes:
# a 513 crop at output stride 16 ($33 \times 33$) and 8 ($65 \times 65$), and the older DeepLab
# crop of 321 at output stride 16 ($21 \times 21$).

# %%
cases16 = [("513 crop, OS 16", 33), ("321 crop, OS 16", 21)]
rows = boundary.rate_usage_table(cases16, (6, 12, 18)) + boundary.rate_usage_table([("513 crop, OS 8", 65)], (12, 24, 36))
display(markdown_table([{"case": row["case"], "map": row["feature map"], "rate": row["rate"],
                         "all 9 taps": f"{row['positions with all 9 taps']:.1%}",
                         "mean weights used": f"{row['mean valid weights']:.1%}",
                         "centre only": f"{row['only centre tap']:.1%}"} for row in rows]))
fig = vb.plot_mean_valid_fraction({"321 crop, OS 16": 21, "513 crop, OS 16": 33, "513 crop, OS 8": 65},
                                  max_rate=40, marked_rates=(6, 12, 18, 24, 36))

# %% [markdown]
# Look at the rate-18 rows first: even in the paper's own setting (crop 513, output stride 16) the
# largest ASPP rate applies the full $3 \times 3$ filter at *no* position of the $33 \times 33$ map
# (it would need $18 \le i \le 14$), and uses 40% of its weights on average. Three things follow,
# and the paper reports each of them (numbers quoted from {cite:p}`chen2017deeplabv3`, PASCAL VOC
# 2012 val mIoU; they are the paper's, not measured here):
#
# - **Crop size matters for large rates.** On a $21 \times 21$ map (crop 321) the rate-12 branch
#   already has no whole filter anywhere, and the rate-18 branch uses only its centre on half of the
#   map. The paper attributes a large drop to this boundary effect: DeepLabv3 trained with crop 321
#   reaches 67.22% mIoU against 77.21% with crop 513 (appendix A, Table 8).
# - **Doubling the rates with the output stride keeps the geometry.** At output stride 8 the map is
#   twice as large and the rates are doubled, so rate 24 on $65 \times 65$ behaves almost exactly
#   like rate 12 on $33 \times 33$ (compare the rows above).
# - **Larger rates do not buy more context.** Adding a fourth branch at rate 24 at output stride 16
#   (on $33 \times 33$ every position then uses at most 4 of the 9 weights, and a fifth of them
#   only the centre) made results slightly worse:
#   76.46% against 76.58% (Table 5).

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    by = {(row["case"], row["rate"]): row for row in rows}
    assert by[("321 crop, OS 16", 18)]["positions with all 9 taps"] == 0.0
    assert by[("321 crop, OS 16", 18)]["only centre tap"] > 0.5
    assert abs(by[("513 crop, OS 8", 24)]["mean valid weights"] - by[("513 crop, OS 16", 12)]["mean valid weights"]) < 0.02
    assert by[("513 crop, OS 16", 18)]["positions with all 9 taps"] == 0.0
    fr24 = boundary.valid_weight_fractions(33, 24)
    assert fr24[6] == fr24[9] == 0.0 and 0.19 < fr24[1] < 0.22

# %% [markdown]
# ## 5. The remedy: image-level features
#
# If a large rate cannot see the whole image, something else has to. ParseNet
# {cite:p}`liu2015parsenet` adds *global context* in the most direct way: average the feature map
# over all positions, and hand that vector back to every position. DeepLabv3 (sec. 3.3) adopts it as
# the fifth branch of ASPP, the **image pooling** branch: global average pooling, a $1 \times 1$
# convolution with 256 filters and batch norm (the paper; the reference code, torchvision's and
# ours add a ReLU), then bilinear upsampling back to the feature-map size; with $x$ the $H \times W$
# feature map and $A$ the $1 \times 1$ convolution's weights (256 rows, one column per channel of $x$),
#
# $$
# \begin{aligned}
# g_c &= \frac{1}{HW} \sum_{i=1}^{H} \sum_{j=1}^{W} x_c[i, j],\\
# z &= \operatorname{ReLU}\!\big(\operatorname{BN}(A g)\big),\\
# y[i, j] &= z \ \text{ for every } (i, j).
# \end{aligned}
# $$
#
# (Bilinear upsampling of a $1 \times 1$ map is a constant map, up to rounding in the interpolation
# weights.) Every output position now depends
# on every input position. `input_footprint(module, H, W)` measures exactly that: it
# back-propagates one output position to the input and marks every input with a non-zero gradient.
# We compare, on a $33 \times 33$ map, ASPP's three atrous branches with the image-pooling branch and
# with the whole ASPP module, all from the model library (`deeplab_edu.models.aspp`, the subject
# of chapter 05):

# %%
from deeplab_edu.models.aspp import ASPP, ASPPConv, ImagePooling

torch.manual_seed(0)
size, channels, centre = 33, 4, (16, 16)
aspp = ASPP(channels, atrous_rates=(6, 12, 18), out_channels=8)
footprints = {f"3x3, rate {r}": boundary.input_footprint(ASPPConv(channels, 8, r), size, size, centre, channels)
              for r in (6, 12, 18)}
footprints["image pooling"] = boundary.input_footprint(ImagePooling(channels, 8), size, size, centre, channels)
footprints["whole ASPP"] = boundary.input_footprint(aspp, size, size, centre, channels)
fig = vb.plot_footprints(footprints, position=centre)

# %% [markdown]
# At the centre of the $33 \times 33$ map the rate-18 branch reads nothing but the centre pixel: its
# off-centre taps, at $16 \pm 18$, all fall on padding. The image-pooling branch reads all 1089
# positions, and so does the whole ASPP, because its projection mixes all five branches.
#
# A degenerate branch is not useless, but it is redundant: ASPP already has a $1 \times 1$ branch,
# and a $3 \times 3$ branch whose rate reaches the map size is a second $1 \times 1$ branch. We
# check it on a filter shaped like ASPP's rate-18 branch (its weight's shape, with random integer
# weights for an exact comparison, as in section 3), at rate 18 and with the rate raised to 33:

# %%
branch = aspp.convs[3][0]                       # the 3x3 conv of the rate-18 branch
exact_weight = torch.randint(-3, 4, branch.weight.shape, generator=gen).double()
feat = torch.randint(-3, 4, (1, channels, size, size), generator=gen).double()
rep18 = boundary.compare_with_centre_tap(feat, exact_weight, 18)
rep33 = boundary.compare_with_centre_tap(feat, exact_weight, 33)
print(f"rate 18: equal to its centre-tap 1x1 conv at {1 - rep18.fraction_differing:.1%} of the positions")
print(f"rate 33: identical to its centre-tap 1x1 conv everywhere: {rep33.identical}")

pool = ImagePooling(channels, 8).eval()
with torch.no_grad():
    pooled = pool(torch.randn(2, channels, size, size))
spread = float((pooled - pooled[..., :1, :1]).abs().max())
print(f"image-pooling output {tuple(pooled.shape)}: largest difference between positions = {spread:.1e}")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert footprints["3x3, rate 6"].sum() == 9 and footprints["3x3, rate 12"].sum() == 9
    assert footprints["3x3, rate 18"].sum() == 1 and footprints["3x3, rate 18"][centre]
    assert footprints["image pooling"].all() and footprints["whole ASPP"].all()
    assert rep33.identical and not rep18.identical
    assert spread < 1e-6 and pooled.shape[-2:] == (size, size)

# %% [markdown]
# In the paper, adding the image-pooling branch to ASPP (with multi-grid $(1, 2, 4)$ and rates
# $(6, 12, 18)$ at output stride 16) raised PASCAL VOC 2012 val mIoU from 76.58% to 77.21%
# (DeepLabv3 Table 5). Chapter 05, {doc}`05_aspp`, builds the full module; the training chapters
# that follow train it on our own data.

# %% [markdown]
# ## Exercises
#
# ### Exercise 04.1
# A $513$ crop at output stride 16 gives a $33 \times 33$ map. The filter degenerates to $1 \times 1$
# at rate 33 (section 3), but it stops being whole long before. What is the smallest rate at which
# **no** position keeps all nine taps of a "same" $3 \times 3$ atrous filter? Reason first (which
# position keeps its taps longest?), then check with `boundary.valid_tap_counts`.

# %%
answer_04_1 = ...  # your answer here
check("04.1", answer_04_1)

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# the centre (16, 16) keeps all nine taps longest, 16 cells from every edge; at rate 17 its
# neighbours fall off the map, and every other position has lost at least one tap already.
rate = 1
while (boundary.valid_tap_counts(33, 33, 3, rate) == 9).any():
    rate += 1
solved("04.1", rate)

# %% [markdown]
# ### Exercise 04.2 (predict, then measure)
# Predict the whole valid-tap count map of a "same" $3 \times 3$ filter at rate 3 on a map of
# 5 rows and 8 columns: an array of shape `(5, 8)` whose entry $(i, j)$ is the number of the nine
# weights that land on the map. Work per axis first (which of the offsets $-3, 0, +3$ stay inside?),
# then combine. Check the prediction, then run the next cell: it *measures* the map with no
# formula at all, by convolving an all-ones map with an all-ones kernel.

# %%
prediction_04_2 = ...  # e.g. np.array([[...], ...]) or np.outer(rows, columns)
check("04.2", prediction_04_2)

# %% tags=["hide-output"]
measured_04_2 = boundary.tap_counts_by_convolution(5, 8, kernel=3, rate=3)
if prediction_made("04.2", prediction_04_2):
    print("measured:\n", measured_04_2)
    if prediction_04_2 is not ...:  # the checker's verdict without counting a try (a ragged list is no match)
        print("your prediction matches:", get("04.2").checker(prediction_04_2) is None)

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# rows 0, 1, 3, 4 keep one vertical neighbour (2 valid offsets), row 2 none (1): the
# map is only 5 rows tall. Columns 3 and 4 keep both horizontal neighbours (3), the others one (2).
rows = np.array([2, 2, 1, 2, 2])
columns = np.array([2, 2, 2, 3, 3, 2, 2, 2])
solved("04.2", np.outer(rows, columns))

# %% [markdown]
# ### Exercise 04.3
# On a $65 \times 65$ map at rate 20 (not a rate of the table above), what fraction of the output
# positions apply all nine weights? Use the 1-D reasoning of section 2 (a number between 0 and 1).

# %%
answer_04_3 = ...
check("04.3", answer_04_3)

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# per axis both neighbours are inside for 20 <= i <= 44, 25 of 65 positions; squared.
solved("04.3", (25 / 65) ** 2)

# %% [markdown]
# ### Exercise 04.4
# A wide feature map has 17 rows and 65 columns (say, a $129 \times 513$ strip at output stride
# 8). What is the largest filter any position of it applies, for a $3 \times 3$ atrous
# convolution at rate 24 (what `effective_kernel_shape` returns, section 3)? Answer with a shape
# `(rows, columns)`.

# %%
answer_04_4 = ...
check("04.4", answer_04_4)

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# rate 24 >= 17 rows kills every vertical off-centre tap; columns 24..40 keep both
# horizontal ones.
solved("04.4", boundary.effective_kernel_shape((17, 65), rate=24))

# %% [markdown]
# ### Exercise 04.5 (predict, then measure)
# The footprints above are taken at the centre of the map, where image pooling makes the whole ASPP
# read all 1089 inputs. Take the same ASPP **without** image pooling (its $1 \times 1$ branch and
# the $3 \times 3$ branches at rates 6, 12 and 18) and the output at the **corner** $(0, 0)$ of the
# $33 \times 33$ map. How many input positions influence it? Predict, check your prediction, then
# run the cell after it, which measures and draws the footprint with `boundary.input_footprint`.

# %%
prediction_04_5 = ...  # a whole number of input positions
check("04.5", prediction_04_5)

# %% tags=["hide-output"]
no_pooling = ASPP(channels, atrous_rates=(6, 12, 18), out_channels=8, image_pooling=False)
corner_footprint = boundary.input_footprint(no_pooling, size, size, (0, 0), channels)
if prediction_made("04.5", prediction_04_5):
    print(f"measured: {int(corner_footprint.sum())} input positions")
    fig = vb.plot_footprints({"ASPP without image pooling": corner_footprint}, position=(0, 0))

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# from the corner, each 3x3 branch keeps the taps at offsets 0 and +r on each axis, (0, 0),
# (0, r), (r, 0), (r, r); the union over rates 6, 12, 18 and the 1x1 branch is 1 + 3 * 3 = 10 inputs,
# not the 16 of every row offset with every column offset.
solved("04.5", int(corner_footprint.sum()))

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
if config.course_checks():  # the course checks itself here (tests, make book); a learner's run skips this
    assert check("04.2", measured_04_2)  # the measured counts are the exercise's answer

# %% [markdown]
# ## Summary
#
# - A "same" $3 \times 3$ atrous convolution at rate $r$ uses
#   $c_r(i,j) = v_r(i)\,v_r(j) \in \{1,2,3,4,6,9\}$ weights at position $(i, j)$; the rest multiply
#   padding.
# - On a $65 \times 65$ map the share of positions with all nine weights falls from 94% at rate 1
#   to 0 at rate 33, and at rate 65 every position uses only the centre: DeepLabv3 Figure 4.
# - With rate $\ge \max(H, W)$ the atrous convolution *is* the $1 \times 1$ convolution with its
#   centre weight (bit for bit in exact arithmetic); below that it differs exactly where more than
#   the centre is valid.
# - Large rates therefore need large feature maps (large crops, small output stride), and global
#   context comes from image-level pooling, ASPP's fifth branch, rather than from ever larger rates.
#
# Next: {doc}`05_aspp` assembles ASPP, v2's and v3's, from these pieces.
