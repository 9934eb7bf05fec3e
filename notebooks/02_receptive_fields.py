# ---
# jupyter:
#   deeplab_edu:
#     chapter: 2
#     cpu_minutes: 3
#     prerequisites:
#     - 1
#     title: Receptive fields
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
# # 02 · Receptive fields
#
# *About 3 min on a 2-core machine in the `cpu` profile (the table in chapter 00 lists every chapter's time).
# Builds on chapter 01.*
#
# A unit of a feature map can only react to the input pixels it is connected to: its
# **receptive field**. Segmentation needs units that see a lot of context (is this grey patch a
# road or a wall?) *and* feature maps dense enough to place boundaries. This chapter computes
# receptive fields exactly, checks them by brute force on real networks, and shows the central
# claim of atrous convolution: turning ResNet-50's last strides into dilations makes the feature
# map 4x denser per side while keeping the receptive field.
#
# **Learning objectives**
#
# - compute receptive field size, effective stride and effective padding of a layer stack with
#   the recurrences of Araujo, Norris & Sim, dilation included;
# - derive them from a PyTorch module (AlexNet, VGG-16, ResNet-50 with its residual branches) and
#   confirm them by brute force (which input pixels get a non-zero gradient);
# - tell the theoretical receptive field from the *effective* one (Luo et al.), and measure over seeds
#   how training changes it;
# - recognise *gridding*, the holes left by stacking equal rates.
#
# **Helpers introduced:** `deeplab_edu.receptive_field` (`LayerSpec`, `receptive_field`,
# `receptive_field_table`, `receptive_field_of`, `empirical_receptive_field`,
# `compare_with_brute_force`, `strides_in_last_unit`), `deeplab_edu.gridding` (`path_counts`, `sampling_pattern`, `coverage`),
# `deeplab_edu.effective_receptive_field` (`effective_receptive_field`, `mass_extent`, `interpolated_extent`,
# `TinyDilatedNet`, `noisy_halves_batch`, `erf_before_and_after_training`, `imagenet_resnet50`), ahead of
# chapter 10 `deeplab_edu.findings.seed_interval` (a 95 % interval over seeds), and `deeplab_edu.viz.receptive_field`
# (`DEFAULT_STACK`, `parse_layer_stack`, `plot_layer_stack`, `layer_stack_editor`,
# `plot_output_stride_grids`, `plot_gridding`, `plot_erf_maps`); from chapter 01, `deeplab_edu.viz.explorers`
# (`show`: an explorer that also runs in the static book), `sample_photo`, and from chapter 00 `deeplab_edu.viz.tables.markdown_table`.

# %% [markdown]
# ## The recurrences
#
# Take a single path of layers $l = 1, \dots, L$ from the input to a feature map, each with kernel
# size $k_l$, stride $s_l$, padding $p_l$ and dilation (atrous rate) $d_l$. Dilation only
# changes how wide the kernel reaches, so replace $k_l$ by the effective kernel size of
# chapter 01, $\hat k_l = d_l (k_l - 1) + 1$. {cite:t}`araujo2019receptive` derive closed forms
# for the receptive field size $r_0$, the effective stride $S_0$ (distance in input pixels
# between neighbouring output units) and the effective padding $P_0$ (their symbols: $d_l$ is the rate that
# chapter 01 calls $r$, and $r_0$ is a size in pixels, not a rate):
#
# $$
# r_0 = \sum_{l=1}^{L} (\hat k_l - 1) \prod_{m=1}^{l-1} s_m + 1, \qquad
# S_0 = \prod_{l=1}^{L} s_l, \qquad
# P_0 = \sum_{l=1}^{L} p_l \prod_{m=1}^{l-1} s_m .
# $$
#
# Output unit $j$ then sees the input interval $[u_j, v_j] = [j S_0 - P_0,\; j S_0 - P_0 + r_0 - 1]$.
# Read the first sum as: *each layer widens the field by $\hat k_l - 1$ of its input's pixels,
# and one of those is worth $\prod_{m<l} s_m$ input pixels.* That is why a stride early on makes
# every later layer count more, and why a dilation is a way to widen the field *without* a stride.

# %%
import time

import matplotlib.pyplot as plt
import torch
import torchvision
from IPython.display import display

from deeplab_edu import config
from deeplab_edu.receptive_field import (
    LayerSpec,
    compare_with_brute_force,
    receptive_field,
    receptive_field_of,
    receptive_field_table,
)
from deeplab_edu.viz.tables import markdown_table
from deeplab_edu.viz.receptive_field import (
    DEFAULT_STACK,
    layer_stack_editor,
    parse_layer_stack,
    plot_erf_maps,
    plot_gridding,
    plot_layer_stack,
    plot_output_stride_grids,
)

stack = [LayerSpec(3, 2, 1, name="conv 3x3 / 2"), LayerSpec(3, 1, 1, name="conv 3x3"),
         LayerSpec(2, 2, 0, name="pool 2x2 / 2"), LayerSpec(3, 1, 2, 2, name="conv 3x3, rate 2"),
         LayerSpec(3, 1, 4, 4, name="conv 3x3, rate 4")]
markdown_table(receptive_field_table(stack), digits=3)

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert receptive_field(stack).size == 1 + 2 * 1 + 2 * 2 + 1 * 2 + 4 * 4 + 8 * 4 == 57

# %% [markdown]
# ## On a photograph
#
# The same stack, drawn to scale on a 128x128 photograph. Left: the yellow square is the
# theoretical receptive field of the centre output unit; the heat map is its **effective**
# receptive field in a randomly initialised network: how strongly each input pixel moves that
# unit's output (the gradient's magnitude; the section on the effective receptive field makes it
# precise). The cyan square holds 90% of it. Right: the output feature map, one dot per unit at the centre of its field, spaced
# by the effective stride.

# %%
axes = plot_layer_stack(DEFAULT_STACK, samples=config.choose(smoke=1, cpu=4, gpu=8))
axes[0].figure.tight_layout()
plt.show()

# %% [markdown]
# **Try it.** Edit the stack (one layer per line: `conv k=3 s=2 d=1`, `pool k=2 s=2`; padding
# defaults to "same" for odd kernels), pick an output unit, and toggle the effective map. Try replacing a
# `s=2` by `d=2` on the following layers and compare the number of dots with the size of the
# square. (The editor needs a running kernel; in the book, the figure above shows the default
# stack, and the JavaScript version below is live.)
#
# The two effective maps differ on purpose. The editor's is measured: the gradient of a randomly
# initialised network with ReLUs, averaged over a few inputs. The JavaScript one is exact for the
# simplest case Luo et al. analyse, every weight 1 and nothing nonlinear: the gradient is then the
# number of paths from each pixel to the unit (`path_counts` of the gridding section below). Type
# `conv k=3 d=2` on three lines: the field, enlarged beside the photograph, turns into a lattice,
# and the line under it counts the pixels never read (120 of 169): that is gridding, the subject of
# the section below.

# %%
layer_stack_editor(DEFAULT_STACK)

# %%
# The explorer in JavaScript (deeplab_edu.viz.explorers): it needs no kernel, so it is live in the static
# book too, and it computes the same numbers as the package (tests/test_explorers.py).
from deeplab_edu.viz import explorers

explorers.show("receptive_field", stack=DEFAULT_STACK)

# %% [markdown]
# ## From a PyTorch module
#
# `receptive_field_of` reads the layers from the module itself. It traces the forward pass with
# `torch.fx`, composes convolutions and pooling with the recurrences, lets point-wise layers
# (batch norm, ReLU) pass through, and where branches meet (the addition at the end of every
# ResNet bottleneck) takes the **union** of their intervals: the path with the widest reach sets
# the receptive field, here the 3x3 convolutions of the residual branch rather than the 1x1
# shortcut. Global layers (average pooling, the classifier) end the spatial part, so for
# `resnet50()` we get the receptive field of `layer4`'s output.
#
# We only need the architecture, not weights, so the models are built on PyTorch's `meta`
# device (instant, no memory).

# %%
with torch.device("meta"):
    models = {
        "AlexNet (features)": torchvision.models.alexnet().features,
        "VGG-16 (features)": torchvision.models.vgg16().features,
        "ResNet-50, OS 32": torchvision.models.resnet50(),
        "ResNet-50, OS 16": torchvision.models.resnet50(replace_stride_with_dilation=[False, False, True]),
        "ResNet-50, OS 8": torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True]),
    }
fields = {name: receptive_field_of(m) for name, m in models.items()}
markdown_table([{"model": n, "receptive field": f.size, "effective stride": f.stride, "effective padding": f.padding,
                 "layers on the widest path": len(f.path)} for n, f in fields.items()], digits=3)

# %% [markdown]
# ## Checking by brute force
#
# The receptive field has an operational definition: the input pixels whose value can change the
# output unit, i.e. those with a non-zero gradient $\partial y / \partial x$. Computing it naively
# has two traps. Max pooling sends the gradient only to the arg-max of each window, and ReLU sends
# none through inactive units, so a random network shows *fewer* pixels than are connected. So
# `empirical_receptive_field` back-propagates through a *faithful* copy of the network: one
# channel, positive averaging weights, average instead of max pooling, no activations. Same
# graph, same strides, paddings, dilations and residual additions (it runs torchvision's own
# `forward`), but now a gradient is non-zero exactly where a connection exists. With one channel
# even ResNet-50 on a 513x513 input is quick on a CPU (the cell prints how long all five took).
#
# For each network, `compare_with_brute_force` compares the theoretical interval of the centre
# unit with the bounding box of the pixels that receive gradient. AlexNet and VGG-16 get an input a
# little larger than their field (the field plus two strides, grown by a stride until the centre
# unit's field lies inside it); the three ResNets get DeepLabv3's 513x513 training crop, which we reuse
# below.

# %%
crop = 513
started = time.perf_counter()
checks = [compare_with_brute_force(m, crop if n.startswith("ResNet") else None, name=n) for n, m in models.items()]
print(f"{len(checks)} networks checked by back-propagation in {time.perf_counter() - started:.1f} s")
markdown_table(checks, digits=3)

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert all(row["agree"] for row in checks), checks
    assert fields["ResNet-50, OS 8"].size == fields["ResNet-50, OS 16"].size == fields["ResNet-50, OS 32"].size
    assert [fields[f"ResNet-50, OS {s}"].stride for s in (32, 16, 8)] == [32, 16, 8]

# %% [markdown]
# ### 427 or 483?
#
# Araujo et al.'s table lists **483** pixels for ResNet-50, not the 427 above. Both are right, for
# two different ResNet-50s: torchvision puts each stage's stride in the *first* unit of the stage,
# while TF-Slim's `resnet_v1_50`, which their table measures, puts it in the *last* unit of the stage
# before. Count the 3x3 convolutions by the stride of the map they read: 4, 4, 6 and 2 at strides
# 4, 8, 16 and 32 in torchvision, 3, 4, 6 and 3 in TF-Slim. Each of the three strided units moved,
# and in net one 3x3 convolution went from stride 4 (it adds $2 \cdot 4 = 8$ pixels) to stride 32
# (it adds $2 \cdot 32 = 64$): $427 - 8 + 64 = 483$. `strides_in_last_unit` moves torchvision's
# strides to TF-Slim's places (same weights, same output stride 32), and both the recurrences and
# the brute force give 483:

# %%
from deeplab_edu.receptive_field import strides_in_last_unit

with torch.device("meta"):
    slim = strides_in_last_unit(torchvision.models.resnet50())
slim_field = receptive_field_of(slim)
slim_check = compare_with_brute_force(strides_in_last_unit(torchvision.models.resnet50()), crop,
                                      name="ResNet-50, strides in the last unit (TF-Slim)")
markdown_table([{"model": name, "receptive field": f.size, "effective stride": f.stride}
                for name, f in (("torchvision resnet50 (stride in a stage's first unit)", fields["ResNet-50, OS 32"]),
                                ("TF-Slim resnet_v1_50 layout (stride in a stage's last unit)", slim_field))]
               + [{"model": "brute force, TF-Slim layout", "receptive field": slim_check["brute force"],
                   "effective stride": slim_check["effective stride"]}], digits=3)

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert fields["ResNet-50, OS 32"].size == 427 and slim_field.size == 483 and slim_field.stride == 32
    assert slim_check["agree"] and slim_check["receptive field (theory)"] == 483

# %% [markdown]
# ## The central claim: same field, denser map
#
# DeepLab {cite:p}`chen2018deeplabv2,chen2017deeplabv3` removes the stride of ResNet's last
# stage (output stride 16) or last two stages (output stride 8) and dilates the following 3x3
# convolutions by 2 (and 4) instead. The recurrence explains why nothing is lost: a 3x3 layer at
# stride $S$ adds $2S$ pixels; with the stride removed it works at stride $S/2$, and rate 2 makes
# its effective kernel 5, which adds $4 \cdot S/2 = 2S$ again. For a 513x513 input (DeepLabv3's crop
# size) the table shows the feature map each network produced in the brute-force pass above,
# next to its receptive field.

# %%
from deeplab_edu.viz.images import sample_photo

photo = sample_photo(crop)
resnets = {f"OS {s}": models[f"ResNet-50, OS {s}"] for s in (32, 16, 8)}
maps = {f"OS {s}": row["output map"] for s, row in zip((32, 16, 8), checks[2:])}
markdown_table([{"output stride": n, "receptive field": fields[f"ResNet-50, {n}"].size,
                 "effective stride": fields[f"ResNet-50, {n}"].stride, "feature map": "x".join(map(str, maps[n])),
                 "units": maps[n][0] * maps[n][1]} for n in resnets], digits=3)

# %%
plot_output_stride_grids({n: fields[f"ResNet-50, {n}"] for n in resnets}, photo, maps)
plt.tight_layout()
plt.show()

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert maps["OS 32"] == (17, 17) and maps["OS 16"] == (33, 33) and maps["OS 8"] == (65, 65)

# %% [markdown]
# Every red square is the same 427-pixel field; only the density of the dots changes. The price is
# compute: the dilated stages now run on 4x or 16x more positions (chapter 03 measures it).
#
# ## The effective receptive field
#
# The theoretical field says which pixels *can* matter; {cite:t}`luo2016erf` asked how much each
# one *does*. Their effective receptive field is the map of $|\partial y_{\text{centre}} /
# \partial x|$ averaged over inputs. Because many more paths run through the middle of the field
# than through its edges, the map is close to a Gaussian that fills only part of the square, and
# they report that training makes it grow.
#
# First, depth. A stack of $n$ plain 3x3 convolutions (randomly initialised, ReLU) has a
# theoretical field of $2n + 1$ pixels. Luo et al. show that the effective field grows only like
# $\sqrt{n}$; here is the measurement:

# %%
from deeplab_edu.effective_receptive_field import (
    TinyDilatedNet,
    effective_receptive_field,
    mass_extent,
)

samples = config.choose(smoke=1, cpu=16, gpu=32)
depth_rows = []
for n in (2, 4, 8, 16):
    torch.manual_seed(0)
    plain = TinyDilatedNet(rates=(1,) * n, channels=8)
    erf = effective_receptive_field(plain, 49, samples=samples)
    depth_rows.append({"3x3 layers": n, "theoretical field (px)": receptive_field_of(plain).size,
                       "50% of the gradient within (px)": mass_extent(erf, 0.5),
                       "90% of the gradient within (px)": mass_extent(erf, 0.9)})
display(markdown_table(depth_rows, digits=3))
growth = [(b["theoretical field (px)"] / a["theoretical field (px)"],
           b["90% of the gradient within (px)"] / a["90% of the gradient within (px)"])
          for a, b in zip(depth_rows, depth_rows[1:])]
print("each doubling of depth: theoretical field " + ", ".join(f"x{t:.2f}" for t, _ in growth)
      + "; 90% extent " + ", ".join(f"x{e:.2f}" for _, e in growth) + f" (sqrt(2) = {2 ** 0.5:.2f})")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert all(r["90% of the gradient within (px)"] <= r["theoretical field (px)"] for r in depth_rows)
    if not config.is_smoke():  # (one noise sample in smoke) the share of its field a stack uses falls with depth
        shares = [r["90% of the gradient within (px)"] / r["theoretical field (px)"] for r in depth_rows]
        assert all(a >= b for a, b in zip(shares, shares[1:])) and shares[-1] < 0.75 * shares[0], shares
        assert depth_rows[0]["90% of the gradient within (px)"] == depth_rows[0]["theoretical field (px)"]  # n = 2: all of it
        assert all(1.1 < e < 1.7 and e < t for t, e in growth[1:]), growth  # "about sqrt(2) per doubling", from 4 layers on

# %% [markdown]
# Read the last column against the theoretical field. The field, $2n + 1$ pixels, nearly doubles
# with each doubling of depth; the extent that holds 90 % of the gradient grows much less from 4
# layers on, by about $\sqrt 2 \approx 1.4$ per doubling, as a growth like $\sqrt n$ predicts (the
# line under the table). Two layers are too few to tell: their 5-pixel field is so small that 90 %
# of the gradient needs all of it. The extents are the sides of centred squares, odd numbers of
# pixels, so they move in steps of 2 px: three ratios are a rough check of $\sqrt n$, and a deeper
# stack (try 32 layers) is a better one.
#
# Now training, which Luo et al. report to widen the effective field. Seeing it takes two things,
# a network whose map has room to grow and a task that pays for far pixels.
#
# *Room to grow.* The plain stacks of the table concentrate their gradient in the middle of their
# field; we train one like them, 12 layers deep (a 25-pixel field, between the table's 8 and 16
# layers) and 16 channels wide. A small atrous net of rates 1, 2, 4, 8, 1 would not do: its rates add
# up like binary digits, so at random initialisation its paths already reach nearly every offset of
# its 33-pixel field about equally. The next cell compares its map with a flat square of that size.

# %%
torch.manual_seed(0)
atrous_net = TinyDilatedNet(rates=(1, 2, 4, 8, 1), channels=16)
atrous_rf = receptive_field_of(atrous_net)
erf_atrous = effective_receptive_field(atrous_net, 65, samples=samples)
flat_square = torch.zeros(65, 65)
top, bottom = atrous_rf.region(32)  # the input rows (and columns) the centre unit's field covers
flat_square[top:bottom + 1, top:bottom + 1] = 1
for name, m in (("atrous (1, 2, 4, 8, 1), random init", erf_atrous), (f"a flat {atrous_rf.size}px square", flat_square)):
    print(f"{name:36s}: 50% within {mass_extent(m, 0.5)}px, 90% within {mass_extent(m, 0.9)}px")

# %% [markdown]
# At random initialisation the atrous net's map is already nearly as spread as a flat square (the two
# lines above): there is little room left for training to widen it.
#
# *A task that needs context: noisy halves.* A random straight line splits each image in two; one
# half is 0.2 brighter than the other, and every pixel carries noise of standard deviation 1, five
# times that difference. One pixel alone is nearly a coin flip; the mean of $k$ pixels of one half
# has noise $1/\sqrt{k}$, so the more pixels a unit weighs, the better it labels its own, as far as
# its field reaches. Here is a batch, the same images averaged, and the labels:

# %%
from deeplab_edu.effective_receptive_field import noisy_halves_batch

halves, halves_labels = noisy_halves_batch(4, 48)
averaged = torch.nn.functional.avg_pool2d(halves[:, :1], 15, stride=1, padding=7, count_include_pad=False)
rows = {"images": (halves[:, 0], 2.5), "each pixel averaged with its 15x15 neighbours": (averaged[:, 0], 0.25),
        "labels (white: the brighter half)": (halves_labels - 0.5, 0.5)}
fig, axes = plt.subplots(3, 4, figsize=(8, 6))
for row, (title, (pictures, limit)) in enumerate(rows.items()):
    axes[row, 0].set_title(title, loc="left")
    for k in range(4):
        axes[row, k].imshow(pictures[k].numpy(), cmap="gray", vmin=-limit, vmax=limit)
        axes[row, k].set_xticks([])
        axes[row, k].set_yticks([])  # the frame stays: a white half does not melt into the page
plt.show()

# %% [markdown]
# By eye the images are noise; averaged over 225 pixels (noise $1/15$ against a difference of 0.2)
# the halves begin to show, blurred along the line and still unsure in places. A network can learn the
# same: weigh many pixels, which is to widen its effective field.
#
# **What "trained" means here:** the course is offline by default, so instead of ImageNet weights
# the network is trained for a few hundred steps on this toy task (the cell prints how many, and how long they
# took). It is trained from several random initialisations (seeds), because one run's change could be
# no larger than the spread between initialisations; the line under the table gives the mean change
# with its 95 % interval over the seeds. Both maps are averaged over random-noise inputs, as in the
# table above (on a 41-pixel input, which holds the 25-pixel field). A loss of 0.693 (ln 2) is a coin
# flip.
#
# The extents of the table above move in steps of 2 px, too coarse for a change over seeds: three
# seeds that each grew by one step would differ by exactly as much, and their interval, $[+2, +2]$,
# would have no width, which says nothing about how far another seed could land. So this table
# measures the extents on a continuous scale (`interpolated_extent`): the side at which the squares
# around the centre reach the share, found linearly between the odd side that holds less and the one
# that holds enough (rounded up to an odd number, it is the extent above).

# %%
from statistics import fmean

from deeplab_edu.effective_receptive_field import erf_before_and_after_training, interpolated_extent
from deeplab_edu.findings import seed_interval


def erf_growth_table(runs):
    """Display one row per seed, print the mean growth of the 50 % and 90 % extents with its interval."""
    def extents(r, fraction):
        return f"{interpolated_extent(r.before, fraction):.1f} -> {interpolated_extent(r.after, fraction):.1f}"

    display(markdown_table([{"seed": r.seed, "loss, first step -> last 20": f"{r.losses[0]:.3f} -> {fmean(r.losses[-20:]):.3f}",
                             "50% within (px), before -> after": extents(r, 0.5),
                             "90% within (px), before -> after": extents(r, 0.9)}
                            for r in runs]))
    for fraction in (0.5, 0.9):
        change = [r.growth(fraction) for r in runs]
        low, high = seed_interval(change)
        same = " (no width: every seed changed by as much, so it says nothing)" if low == high else ""
        print(f"{fraction:.0%} extent: {fmean(change):+.2f} px on average over {len(runs)} seeds, "
              f"95% interval [{low:+.2f}, {high:+.2f}] px{same}")


plain_rates = (1,) * 12
erf_seeds = config.choose(smoke=(0, 1), cpu=(0, 1, 2), gpu=(0, 1, 2, 3, 4))
steps = config.choose(smoke=5, cpu=300, gpu=300)
started = time.perf_counter()
erf_runs = erf_before_and_after_training(plain_rates, erf_seeds, steps, contrast=0.2, samples=samples, input_size=41,
                                         size=config.choose(smoke=32, cpu=48, gpu=48))
print(f"trained {len(erf_seeds)} networks of {steps} steps in {time.perf_counter() - started:.0f} s")
erf_growth_table(erf_runs)
plain_rf = receptive_field_of(TinyDilatedNet(rates=plain_rates))
plot_erf_maps({"random initialisation (seed 0)": erf_runs[0].before,
               f"after {steps} training steps": erf_runs[0].after}, plain_rf)
plt.show()

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert plain_rf.size == 25 and atrous_rf.size == 33
    assert mass_extent(flat_square, 0.5) - mass_extent(erf_atrous, 0.5) <= 4  # "about equally": close to flat
    assert all(mass_extent(m, 0.9) <= plain_rf.size for r in erf_runs for m in (r.before, r.after))
    if not config.is_smoke():  # the prose below: every seed grew, and the interval of the mean excludes zero
        assert all(r.growth(0.5) > 0 for r in erf_runs), [r.growth(0.5) for r in erf_runs]
        for fraction in (0.5, 0.9):  # ... a real interval, with a width, wholly above zero
            low, high = seed_interval([r.growth(fraction) for r in erf_runs])
            assert 0 < low < high, (fraction, low, high)
        assert all(fmean(r.losses[-20:]) < 0.45 for r in erf_runs)  # well below a coin flip's 0.693

# %% [markdown]
# The map grew in every seed, each by its own amount, and the interval of the mean growth lies above
# zero: a finding, not noise. Training moved gradient from the middle of the square towards its
# edges, because the task paid for it: a unit that weighs more pixels averages away more noise.
# (The trained map need not be a smooth blob; what the extents measure is how far it spreads.) It
# cannot grow past the theoretical field (the yellow square); it can only fill more of it. Whether it grows at all
# depends on the task; exercise 02.5 asks you to predict what an easier one does.
#
# ### An ImageNet-trained ResNet-50
#
# The real comparison needs real weights. The course is offline by default, so this cell uses
# torchvision's ImageNet ResNet-50 only if its weights are already on this machine (set
# `download=True` once when you are online) and skips the measurement in the `smoke` profile.
# **Without the weights the cell draws nothing**: it prints where it looked for them and what to
# do, and no figure follows (the book is built offline, so it may show only that line). With them,
# it draws two maps like the ones above, ResNet-50 at random initialisation and with ImageNet
# weights, for the centre unit of a 193x193 input. That unit sits exactly in the middle of the
# image, and its 427-pixel field is larger than the image: the whole image lies inside the field,
# and the edges of its yellow square fall outside the picture.

# %%
from deeplab_edu.effective_receptive_field import imagenet_resnet50

trained_r50, source = imagenet_resnet50(download=False)  # download=True fetches the weights (online)
print(source)
if trained_r50 is not None and not config.is_smoke():
    r50_samples = config.choose(smoke=1, cpu=4, gpu=16)
    torch.manual_seed(0)
    r50_maps = {
        "ResNet-50, random initialisation": effective_receptive_field(torchvision.models.resnet50(), 193, samples=r50_samples),
        "ResNet-50, ImageNet weights": effective_receptive_field(trained_r50, 193, samples=r50_samples),
    }
    plot_erf_maps(r50_maps, fields["ResNet-50, OS 32"], output_index=3)
    plt.show()
else:
    print("no figure here: " + ("the smoke profile skips this measurement" if trained_r50 is not None
                                else "without the ImageNet weights there is nothing to compare"))

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert abs(float(erf_runs[0].before.sum()) - 1) < 1e-4 and abs(float(erf_runs[0].after.sum()) - 1) < 1e-4

# %% [markdown]
# ## Gridding: holes in the field
#
# The receptive field is an interval, but with dilation not every pixel inside it is read.
# Stack three 3x3 convolutions at rate 2: every offset is a sum of three numbers from
# $\{-2, 0, 2\}$, so only *even* offsets are reachable, and more than two thirds of the 13x13 square
# never influence the output (a pixel is read when both its row offset and its column offset are
# reachable, so the 2-D count is the product of the two axes' counts). {cite:t}`wang2018hdc` call this **gridding** and propose hybrid
# dilated convolution: rates chosen so that the stack leaves no holes, such as (1, 2, 5). A common
# factor guarantees holes, but its absence is not enough: (1, 2, 9) and (3, 4, 5) still read only
# about 71 % of their field, because a rate may not jump further than the layers below it can fill
# (Wang et al.'s condition on the largest gap a stack leaves, $M_2 \le K$). DeepLabv3's multi-grid
# {cite:p}`chen2017deeplabv3` also uses different rates within a block, but its (1, 2, 4) at output
# stride 16 reads at (2, 4, 8), which share the factor 2: a stack of those alone would still grid.
# `sampling_pattern` counts the paths from each input pixel to one output (the tests check it
# against the brute-force gradient of a real conv stack); it multiplies the two axes' counts of
# `path_counts`, which handles any stack, strides, padding and the image's edge included.

# %%
from deeplab_edu.gridding import coverage, sampling_pattern

patterns = {"(2, 2, 2)": sampling_pattern((2, 2, 2)), "(1, 2, 4)": sampling_pattern((1, 2, 4))}
plot_gridding(patterns)
plt.show()
for name, p in patterns.items():
    print(f"rates {name}: field {p.shape[0]}x{p.shape[1]}, {coverage(p):.0%} of its pixels are read")
others = {rates: coverage(sampling_pattern(rates)) for rates in [(1, 2, 5), (1, 2, 9), (3, 4, 5), (2, 4, 8)]}
print("read share of other stacks: " + ", ".join(f"{r} {c:.0%}" for r, c in others.items()))

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert coverage(patterns["(1, 2, 4)"]) == 1.0 and int((patterns["(2, 2, 2)"] > 0).sum()) == 49
    # the prose: (1, 2, 5) has no holes; (1, 2, 9) and (3, 4, 5) read about 71 % without a common factor; (2, 4, 8) grids
    assert others[(1, 2, 5)] == 1.0 and all(0.69 < others[r] < 0.73 for r in [(1, 2, 9), (3, 4, 5)]) and others[(2, 4, 8)] < 0.5

# %% [markdown]
# ## Exercises
#
# ### Exercise 02.1
# What is the receptive field of three stacked 3x3 convolutions with stride 1?

# %%
from deeplab_edu.exercises import check, prediction_made, solved

answer_02_1 = ...  # your answer here
check("02.1", answer_02_1)

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
solved("02.1", receptive_field([LayerSpec(3)] * 3).size)

# %% [markdown]
# ### Exercise 02.2
# Give `(receptive field, effective stride)` of conv 3x3 / stride 2, conv 3x3 / stride 2,
# conv 3x3 / stride 1 (padding 1 each). Use the recurrence by hand first.

# %%
answer_02_2 = ...
check("02.2", answer_02_2)

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# r_0 = 1 + 2*1 + 2*2 + 2*4 = 15, S_0 = 2 * 2 * 1 = 4
rf = receptive_field([LayerSpec(3, 2, 1), LayerSpec(3, 2, 1), LayerSpec(3, 1, 1)])
solved("02.2", (rf.size, rf.stride))

# %% [markdown]
# ### Exercise 02.3 (predict, then measure)
# Three 3x3 convolutions at rates (2, 2, 4) have a 17x17 receptive field. How many of its pixels
# actually influence the output? Reason per axis as the gridding section did, predict, then run
# the cell after this one, which counts them with `sampling_pattern`.

# %%
prediction_02_3 = ...  # your prediction here
check("02.3", prediction_02_3)

# %% [markdown]
# **Exercise 02.3, measured:**

# %% tags=["hide-output"]
from deeplab_edu.exercises import measured_and_predicted

read_02_3 = int((sampling_pattern((2, 2, 4)) > 0).sum())
print(measured_and_predicted(read_02_3, prediction_02_3, fmt="d"))
if prediction_made("02.3", prediction_02_3):
    plot_gridding({"(2, 2, 4)": sampling_pattern((2, 2, 4))})
    plt.show()

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# per axis, a + b + c with a, b in {-2, 0, 2} and c in {-4, 0, 4} reaches every even
# offset from -8 to 8 (9 of them) and no odd one: 9 x 9 of the 17 x 17 pixels
solved("02.3", 9 * 9)

# %% [markdown]
# ### Exercise 02.4 (write a function)
# Write `receptive_field_size(layers)`, the first recurrence of this chapter: `layers` is a list of
# `(kernel, stride, dilation)` triples, input first, and the result is $r_0$ in pixels. The checker
# compares it with the package's `receptive_field` on edge cases (no layer at all, dilated stacks)
# and on random stacks of up to six layers. Then try it on the stack at the top of the page.


# %%
def receptive_field_size(layers: list[tuple[int, int, int]]) -> int:
    ...  # your code here


check("02.4", receptive_field_size)


# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# walk the layers keeping r and the product of the strides so far
def receptive_field_size_solution(layers: list[tuple[int, int, int]]) -> int:
    size, jump = 1, 1
    for kernel, stride, dilation in layers:
        size += dilation * (kernel - 1) * jump  # (effective kernel - 1) pixels of this layer's input
        jump *= stride
    return size


layers_02_4 = [(s.kernel, s.stride, s.dilation) for s in stack]
solved("02.4", receptive_field_size_solution,
       f"the stack at the top of the page: {receptive_field_size_solution(layers_02_4)}")

# %% [markdown]
# ### Exercise 02.5 (predict, then measure)
# The 12-layer stack widened its effective field on halves 0.2 apart. Now make the task easy: halves
# 1.0 apart, as much as the noise's standard deviation. *Predict* what training does to the 50 %
# extent then: does the map end `"wider"`, `"the same"` or
# `"narrower"` than at random initialisation? Check your prediction, then run the cell after it, which
# trains the same seeds on the easy task (about as long as the training above) and prints the same table.

# %%
prediction_02_5 = ...  # "wider", "the same" or "narrower"
check("02.5", prediction_02_5)

# %% [markdown]
# **Exercise 02.5, measured:**

# %% tags=["hide-output"]
if prediction_made("02.5", prediction_02_5):
    easy_runs = erf_before_and_after_training(plain_rates, erf_seeds, steps, contrast=1.0, samples=samples,
                                              input_size=41, size=config.choose(smoke=32, cpu=48, gpu=48))
    erf_growth_table(easy_runs)
    plot_erf_maps({"random initialisation (seed 0)": easy_runs[0].before,
                   f"after {steps} steps on the easy task": easy_runs[0].after}, plain_rf)
    plt.show()

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# narrower. With halves 1.0 apart a 3x3 neighbourhood already labels most pixels (its mean has noise
# 1/3); pixels further out add little, and near the line they lie in the other half and mislead. So
# training moves the gradient towards the middle: the map ends narrower than at initialisation, in
# every seed (by one to three pixels of the 50 % extent's continuous scale). Training
# does not simply grow the effective field; it fits the field to the task.
solved("02.5", "narrower")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
if config.course_checks():  # the course checks itself here (tests, make book); a learner's run skips this
    assert check("02.3", read_02_3)  # the measured count is the exercise's answer
    assert receptive_field_size_solution(layers_02_4) == receptive_field(stack).size == 57  # the solution's list
    if not config.is_smoke():  # the measured direction is the exercise's answer (interval over seeds below zero)
        easy_growth = [r.growth(0.5) for r in easy_runs]  # the solution: "by one to three pixels", in every seed
        easy_low, easy_high = seed_interval(easy_growth)
        assert easy_low < easy_high < 0 and all(-3 < g < -1 for g in easy_growth), easy_growth
        assert check("02.5", "narrower")
assert len(parse_layer_stack(DEFAULT_STACK)) == 5
