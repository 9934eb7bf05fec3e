# ---
# jupyter:
#   deeplab_edu:
#     chapter: 5
#     cpu_minutes: 1
#     prerequisites:
#     - 1
#     - 4
#     title: 'ASPP: from DeepLab v2 to v3'
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
# # 05 · ASPP: from DeepLab v2 to v3
#
# *About 1 min on a 2-core machine in the `cpu` profile (the table in chapter 00 lists every chapter's time).
# Builds on chapters 01 and 04.*
#
# Objects appear at many scales: a car fills the frame in one photo and is a few pixels wide in
# the next. A single atrous rate gives every output position one field of view. *Atrous Spatial
# Pyramid Pooling* (ASPP) looks at the same feature map with several rates at once, in parallel,
# and lets the network combine what each sees {cite:p}`chen2018deeplabv2`. DeepLabv3 reworked it:
# batch norm, a 1x1 branch and image-level features {cite:p}`chen2017deeplabv3`.
#
# **Learning objectives of this page**
#
# - write DeepLab v2's ASPP (per-rate classifiers, summed) and DeepLabv3's ASPP (1x1, three atrous
#   branches and image pooling, concatenated and projected) as equations and as modules;
# - see, on a real photograph, which feature positions each branch reads, and why the largest
#   rate loses taps to padding at every position of the map (chapter 04);
# - count the parameters and multiply-adds of each branch, and explain where they go;
# - know the batch-size-1 trap of the image-pooling branch and how this course handles it.
#
# **Helpers introduced:** `deeplab_edu.models.ASPPv2`, `deeplab_edu.models.ASPP` (with
# `branch_outputs` and `atrous_rates`), `deeplab_edu.models.ImagePooling`,
# `deeplab_edu.models.atrous_rates_for`, `deeplab_edu.models.summary.aspp_branch_costs`,
# `deeplab_edu.viz.aspp` (`branch_footprints`, `plot_branch_footprints`, `aspp_footprint_widget`,
# `branch_names`; they measure with `deeplab_edu.boundary.input_footprint`), `deeplab_edu.models.aspp.feature_map_side`, `deeplab_edu.complexity.count_parameters`, and from earlier
# chapters `deeplab_edu.boundary.valid_tap_counts` (04), `sample_photo` (01),
# `deeplab_edu.viz.tables.markdown_table` (00).

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

from deeplab_edu import config
from deeplab_edu.boundary import valid_tap_counts
from deeplab_edu.exercises import check, measured_and_predicted, solved
from deeplab_edu.models import ASPP, ASPPv2, ImagePooling, atrous_rates_for
from deeplab_edu.models.aspp import feature_map_side
from deeplab_edu.models.summary import aspp_branch_costs
from deeplab_edu.viz import aspp as vaspp
from deeplab_edu.viz.images import sample_photo
from deeplab_edu.viz.tables import markdown_table

torch.manual_seed(0)
print(config.profile_line())

# %% [markdown]
# ## 1. DeepLab v2: one classifier per rate, summed
#
# DeepLab v2 (sec. 3.2, Fig. 4) puts four branches on top of the backbone's features $x$ (output
# stride 8). Branch $r$ is a $3 \times 3$ atrous convolution at rate $r$ that directly produces
# class scores (on VGG-16 it is an fc6-fc7-fc8 stack instead, 1024 channels wide and far larger:
# chapter 07 counts it). The scores are **summed** (the paper's text says the branches are "fused",
# its Fig. 7 calls the block "Sum-Fusion", and the released model adds them, an element-wise sum):
#
# $$
# s(x) = \sum_{r \in \{6, 12, 18, 24\}} W_r \circledast_r x + b_r ,
# $$
#
# where $\circledast_r$ is atrous convolution with rate $r$ (eq. (1) of chapter 01). Each branch
# votes for the classes it sees at its own scale; the sum fuses the votes. With these four rates
# the v2 paper calls the module **ASPP-L** (L for large rates; its Table 3 compares it with a
# small-rate ASPP-S and with v1's single-branch LargeFOV, which chapter 07 revisits).

# %%
aspp_v2 = ASPPv2(in_channels=64, num_classes=5, atrous_rates=(6, 12, 18, 24)).eval()
x = torch.randn(1, 64, 33, 33)
with torch.no_grad():
    votes = aspp_v2.branch_outputs(x)
    fused = aspp_v2(x)
print("rates:", aspp_v2.atrous_rates)
print(f"each branch gives class scores of shape {tuple(votes[0].shape)}; the sum has {tuple(fused.shape)}")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    with torch.no_grad():  # branch r is eq. (1) at rate r with "same" padding, and the module sums them
        for conv, rate, vote in zip(aspp_v2.branch_convs(0), (6, 12, 18, 24), votes):
            assert torch.allclose(vote, F.conv2d(x, conv.weight, conv.bias, padding=rate, dilation=rate), atol=1e-5), rate
    assert torch.allclose(fused, sum(votes), atol=1e-5)
    assert len(votes) == 4 and fused.shape == (1, 5, 33, 33)

# %% [markdown]
# ## 2. DeepLabv3: parallel branches, batch norm, image pooling, concatenation
#
# DeepLabv3 (sec. 3.3, Fig. 5) keeps the parallel atrous branches but changes everything around
# them. Every branch now outputs 256 *features* (not class scores) with batch norm (the paper's
# words: "all with 256 filters and batch normalization"; the ReLU after it is the released code's,
# and torchvision's):
#
# - one $1 \times 1$ convolution (the rate-1 view: the position itself);
# - three $3 \times 3$ atrous convolutions at rates $(6, 12, 18)$ for output stride 16, doubled to
#   $(12, 24, 36)$ at output stride 8 so that they reach as far *in the image*;
# - **image pooling**: global average pooling of the whole map, a $1 \times 1$ convolution, batch
#   norm (and ReLU), and bilinear upsampling back to the map size: the same vector everywhere, the
#   context of the whole image (ParseNet {cite:p}`liu2015parsenet`).
#
# The five outputs are **concatenated** (1280 channels) and projected by a $1\times1$ convolution
# with batch norm to 256 channels:
#
# $$
# \begin{aligned}
# y &= P\Big(\big[\,B_1(x),\; B_6(x),\; B_{12}(x),\; B_{18}(x),\; \operatorname{up}\!\big(B_{\text{pool}}(\bar x)\big)\,\big]\Big),\\
# \bar x &= \frac{1}{HW}\sum_{i,j} x_{:,i,j}.
# \end{aligned}
# $$
#
# A $1\times1$ classifier then turns $y$ into class scores (chapter 08 assembles the model).
#
# The cell below builds one on section 1's small 64-channel map, with 32 channels per branch
# instead of 256 to keep it small: the shapes follow the same rule, $5 \times 32 = 160$ channels
# concatenated, projected to 32.

# %%
for output_stride in (16, 8):
    print(f"output stride {output_stride:2d}: rates {atrous_rates_for(output_stride)}")

aspp_v3 = ASPP(in_channels=64, atrous_rates=atrous_rates_for(16), out_channels=32).eval()
with torch.no_grad():
    branches = aspp_v3.branch_outputs(x)
    y = aspp_v3(x)
for name, b in zip(vaspp.branch_names(aspp_v3), branches):
    print(f"{name:14s} -> {tuple(b.shape)}")
print(f"concatenated: {sum(b.shape[1] for b in branches)} channels -> projected: {tuple(y.shape)}")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert atrous_rates_for(8) == (12, 24, 36) and atrous_rates_for(16) == (6, 12, 18)
    assert len(branches) == 5 and y.shape == (1, 32, 33, 33) and sum(b.shape[1] for b in branches) == 5 * 32 == 160
    # the image-pooling branch is constant over the map
    assert torch.allclose(branches[-1], branches[-1][:, :, :1, :1].expand_as(branches[-1]))

# %% [markdown]
# ## 3. What each branch sees, on a photograph
#
# DeepLabv3 trains on $513 \times 513$ crops; at output stride 16 the feature map is $33 \times 33$
# and every position stands for a $16 \times 16$ block of the image. Which positions does each
# branch read for one output position? We do not draw this from a formula: we **measure** it by
# back-propagating one output of each branch to its input (`deeplab_edu.boundary.input_footprint`)
# and shading every input position that receives a gradient. (Every profile uses the paper's
# $513 \times 513$ crop here: the footprints are measured on a small ASPP with 4 channels, which costs
# nothing.)

# %%
size = 513
output_stride = 16
photo = sample_photo(size)
fsize = feature_map_side(size, output_stride)
centre = (fsize // 2, fsize // 2)
footprints = vaspp.branch_footprints(atrous_rates_for(output_stride), fsize, centre)
fig = vaspp.plot_branch_footprints(photo, footprints, output_stride, centre)
plt.show()
print(f"{size} x {size} image -> {fsize} x {fsize} feature map at output stride {output_stride}")
centre_counts = {name: int(fp.sum()) for name, fp in footprints.items()}
print(f"positions read for the output at the centre {centre}:", centre_counts)

# %% [markdown]
# At the centre $(16, 16)$, the $1 \times 1$ branch reads one position, and the rate-6 and rate-12
# branches read their nine taps, further apart as the rate grows: the rates are the scales. The
# rate-18 branch, though, reads **one** position, the centre itself: its off-centre taps, at
# $16 \pm 18 = -2$ and $34$, fall outside the $33 \times 33$ map, on zero padding. That is
# chapter 04's degeneration, and at the centre of the map it is complete.
#
# The centre is the worst place, not a typical one. Move the output position towards the border
# (the second figure, or the widget below) and it changes again. Near the top, at $(2, 16)$, the
# rate-6 and rate-12 branches lose their upper row of taps and read six positions, while the rate-18
# branch *gains* one: its lower tap, row $2 + 18 = 20$, lands on the map, so it reads two. The
# counts below go over every position: with rate 18 on a $33 \times 33$ map no position keeps all
# nine taps; most keep four (the centre, the tap 18 rows away on the side where the map goes on, the
# tap 18 columns away likewise, and the diagonal tap between them), and only the positions in the
# three middle rows or columns keep two or one. So the branch is a sparse filter of four taps almost everywhere, and it
# becomes a $1 \times 1$ convolution everywhere only when the rate reaches the map's side, the limit
# DeepLabv3 draws in its Fig. 4 {cite:p}`chen2017deeplabv3`. The image-pooling branch is the remedy:
# it always sees the whole image.

# %%
near_top = (2, fsize // 2)
top_footprints = vaspp.branch_footprints(atrous_rates_for(16), fsize, near_top)
fig = vaspp.plot_branch_footprints(photo, top_footprints, 16, near_top)
plt.show()
top_counts = {name: int(fp.sum()) for name, fp in top_footprints.items()}
print(f"positions read for the output at {near_top}:", top_counts)

counts = valid_tap_counts(33, 33, kernel=3, rate=18)
print("rate 18 on a 33 x 33 map (a 513 crop at output stride 16):")
for k in sorted(set(counts.ravel().tolist()), reverse=True):
    print(f"  {k} valid taps at {(counts == k).mean():6.1%} of the positions")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert fsize == 33 and centre == (16, 16)
    assert centre_counts == {"1x1": 1, "rate 6": 9, "rate 12": 9, "rate 18": 1, "image pooling": 33 * 33}, centre_counts
    assert top_counts == {"1x1": 1, "rate 6": 6, "rate 12": 6, "rate 18": 2, "image pooling": 33 * 33}, top_counts
    for r in (6, 12, 18):  # the measured footprints are the valid-tap counts of chapter 04
        assert centre_counts[f"rate {r}"] == valid_tap_counts(33, 33, 3, r)[centre]
        assert top_counts[f"rate {r}"] == valid_tap_counts(33, 33, 3, r)[near_top]
    assert (counts == 9).mean() == 0.0  # at rate 18 on 33 x 33 no position keeps all nine taps
    assert (counts == 4).mean() > 0.8 and 0 < (counts == 1).mean() < 0.01  # most keep four, one only near the centre
    assert (valid_tap_counts(33, 33, 3, 33) == 1).all()  # at a rate of the map's side, a 1 x 1 convolution everywhere

# %% [markdown]
# Explore it: choose the output stride and the output position. At output stride 8 the map is
# $65 \times 65$ and the rates double, so each branch covers the same part of the photo.

# %%
vaspp.aspp_footprint_widget(photo)

# %% [markdown]
# ## 4. Where the parameters and the computation go
#
# A $3 \times 3$ atrous convolution has $9\,C_\text{in}\,C_\text{out}$ weights whatever its rate:
# the rate spreads the taps, it adds no weights. On ResNet's 2048 channels, DeepLabv3's three
# atrous branches hold most of the ASPP's parameters; image pooling costs as many parameters as the
# $1\times1$ branch but almost no computation (it runs on a single $1\times1$ vector). DeepLab v2's
# four classifier branches are small (they output 21 class scores), but they run at output stride 8.

# %%
v3_costs = aspp_branch_costs(ASPP(2048, atrous_rates_for(16)), in_channels=2048, size=33)
display(Markdown("**DeepLabv3 ASPP** (2048 channels in, 256 out, 33 x 33 map: 513 px at output stride 16)"))
display(markdown_table(v3_costs))
v2_costs = aspp_branch_costs(ASPPv2(2048, 21, (6, 12, 18, 24)), in_channels=2048, size=65)
display(Markdown("**DeepLab v2 ASPP** (ResNet, 21 classes, 65 x 65 map: 513 px at output stride 8)"))
display(markdown_table(v2_costs))
total_v3 = sum(r["params"] for r in v3_costs)
total_v2 = sum(r["params"] for r in v2_costs)
print(f"total: DeepLabv3 ASPP {total_v3 / 1e6:.2f} M parameters, DeepLab v2 ASPP {total_v2 / 1e6:.2f} M")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    by_name = {r["branch"]: r for r in v3_costs}
    assert by_name["rate 6"]["params"] == by_name["rate 18"]["params"] == 2048 * 256 * 9 + 2 * 256
    assert by_name["image pooling"]["MACs (M)"] < 0.01 * by_name["1x1"]["MACs (M)"]
    assert total_v3 > total_v2

# %% [markdown]
# ## 5. A trap: image pooling with a batch of one
#
# In training mode, batch norm normalises each channel with the mean and variance *of the batch*.
# The image-pooling branch has a single value per channel per image. With a batch of one there is
# nothing to normalise against: the value minus its own mean is exactly zero, and PyTorch refuses
# ("Expected more than 1 value per channel"). torchvision's `ASPPPooling` crashes there:

# %%
from torchvision.models.segmentation.deeplabv3 import ASPPPooling

try:
    ASPPPooling(64, 32).train()(torch.randn(1, 64, 33, 33))
    torchvision_crashed = False
except ValueError as err:
    torchvision_crashed = True
    print("torchvision:", err)

# %% [markdown]
# This course's `ImagePooling` makes a choice and documents it: **with a batch of one in training
# mode, that one batch norm uses its running statistics (as in evaluation) and leaves them
# unchanged**; every other layer trains normally. With two or more images it is an ordinary batch
# norm. (If the whole feature map is $1 \times 1$, every branch has the problem, and `ASPP` raises
# an error that says to use a larger input or batch.)

# %%
pool = ImagePooling(64, 32).train()
single = pool(torch.randn(1, 64, 33, 33))
print("ours, batch of one in training mode:", tuple(single.shape))

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert torchvision_crashed
    assert single.shape == (1, 32, 33, 33)

# %% [markdown]
# ## Exercises
#
# ### Exercise 05.1
# DeepLab v2's ASPP-L (section 1) sets its rates $(6, 12, 18, 24)$ at output stride 8. Which rates
# reach as far in the image at output stride 16? Answer with a tuple.

# %%
answer_05_1 = ...
check("05.1", answer_05_1)

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# at output stride 16 the map is half as large, so the rates halve. (DeepLabv3's
# (6, 12, 18) at 16 therefore reach twice as far as v2's first three rates at 8.)
solved("05.1", atrous_rates_for(16, (6, 12, 18, 24), 8))

# %% [markdown]
# ### Exercise 05.2
# torchvision's `deeplabv3_mobilenet_v3_large` puts DeepLabv3's ASPP on the 960 channels of
# MobileNetV3-Large {cite:p}`howard2019mobilenetv3`. How many parameters has one of its
# $3 \times 3$ atrous branches (960 channels in, 256 out, convolution without bias, then batch
# norm)? Count it by hand, then check your count: build
# the model with `torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(weights=None,
# weights_backbone=None)` (nothing is downloaded) and count the parameters of its
# `model.classifier[0].convs[1]` with `count_parameters` (import it from `deeplab_edu.complexity`).

# %%
answer_05_2 = ...
check("05.2", answer_05_2)

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# count the parameters of a real branch (the rate does not matter).
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

from deeplab_edu.complexity import count_parameters

mobile_aspp = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None).classifier[0]
solved("05.2", count_parameters(mobile_aspp.convs[1]))

# %% [markdown]
# ### Exercise 05.3 (predict, then measure)
# DeepLabv3 tried a fourth atrous branch at rate 24 (chapter 04: it made results slightly worse).
# **How many parameters does that branch add to DeepLabv3's ASPP on ResNet's 2048 channels?** (The
# ASPP of section 4's table: 256 channels per branch, every convolution without bias and followed by
# batch norm.) Think of everything that grows, predict, and check your prediction; the cell after it
# measures the two ASPPs with `count_parameters`.

# %%
prediction_05_3 = ...  # a whole number of parameters
check("05.3", prediction_05_3)

# %% tags=["hide-output"]
from deeplab_edu.complexity import count_parameters

added_05_3 = count_parameters(ASPP(2048, (6, 12, 18, 24))) - count_parameters(ASPP(2048, (6, 12, 18)))
print(measured_and_predicted(added_05_3, prediction_05_3, fmt=",.0f"))

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# the branch: a 3x3 conv 2048 -> 256 without bias (2048 * 256 * 9) and its batch norm (2 * 256); the
# concatenation grows from 1280 to 1536 channels, so the 1x1 projection gains 256 * 256 weights.
solved("05.3", added_05_3)

# %% [markdown]
# ### Exercise 05.4 (write a function)
# Write DeepLab v2's ASPP (section 1) with `torch.nn.functional.conv2d`: `summed_aspp(x, weights,
# biases, rates)` gets the features `x` (batch, channels, height, width), one $3 \times 3$ weight
# tensor (classes, channels, 3, 3) and one bias (classes,) per rate, and returns the fused class
# scores at the size of `x`. The checker compares it with the package's `ASPPv2` module, loaded with
# the same weights, on random inputs, rates and sizes.


# %%
def summed_aspp(x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor],
                rates: tuple[int, ...]) -> torch.Tensor:
    ...  # your code here


check("05.4", summed_aspp)


# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# one "same" atrous convolution per rate (padding = rate for a 3x3 filter), scores summed.
def summed_aspp_solution(x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor],
                rates: tuple[int, ...]) -> torch.Tensor:
    return sum(F.conv2d(x, w, b, padding=r, dilation=r) for w, b, r in zip(weights, biases, rates))


solved("05.4", summed_aspp_solution)

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
if config.course_checks():  # the course checks itself here (tests, make book); a learner's run skips this
    with torch.no_grad():  # the solution's function on section 1's module and features
        weights_v2 = [b[0].weight for b in aspp_v2.branches]
        biases_v2 = [b[0].bias for b in aspp_v2.branches]
        assert torch.allclose(summed_aspp_solution(x, weights_v2, biases_v2, aspp_v2.atrous_rates), fused, atol=1e-5)
