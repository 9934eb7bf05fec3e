# ---
# jupyter:
#   deeplab_edu:
#     chapter: 3
#     cpu_minutes: 1
#     prerequisites:
#     - 1
#     - 2
#     title: Output stride and dilated backbones
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
# # 03 · Output stride and dilated backbones
#
# *About 1 min on a 2-core machine in the `cpu` profile (the table in chapter 00 lists every chapter's time).
# Builds on chapters 01 and 02.*
#
# A classification ResNet shrinks its input 32 times on the way to its last feature map: a
# $513 \times 513$ image becomes $17 \times 17$ positions, each answering for a patch of about
# $32 \times 32$ pixels. Segmentation needs an answer per pixel. DeepLab keeps the feature maps
# dense with atrous convolution: remove the last strides, dilate every later filter by the factor
# the stride would have applied, and the network computes the *same* features, just more of them
# {cite:p}`chen2017deeplabv3`. This chapter does that to a real ResNet-50 and measures the price.
#
# **Learning objectives of this page**
#
# - define the *output stride* and compute the feature-map size for odd inputs such as 513;
# - turn a classification backbone into a dense feature extractor (output stride 16 or 8) by
#   replacing strides with dilation, predict what that costs in parameters, and check that the dense features
#   contain the strided ones exactly;
# - look at the feature maps of a photograph at output stride 32, 16 and 8;
# - measure multiply-adds, parameters, forward time and peak memory at each output stride, and how
#   they grow with the input size, and put them next to the paper's Table 1;
# - know DeepLabv3's multi-grid rates and "going deeper" cascade (sec. 3.2), and what they cost.
#
# **Helpers introduced:** `deeplab_edu.models.build_backbone` (with its `set_output_stride` and
# `block_rates`), `deeplab_edu.complexity` (`measure`'s parts, through
# `deeplab_edu.viz.output_stride.measure_output_strides`),
# `deeplab_edu.viz.output_stride` (`measure_output_strides`, `expected_feature_size`, `macs_by_input_size`, `macs_by_stage`, `photo_features`, `dense_vs_strided_difference`,
# `cached_imagenet_weights`, `plot_feature_maps` (its colour scale from `interior_range`), `feature_map_widget`,
# `plot_cost_vs_output_stride`, `plot_cost_vs_input_size`, `plot_macs_by_stage`, and the paper's
# tables `PAPER_TABLE1_MIOU`, `PAPER_TABLE2_MIOU`, `PAPER_TABLE3_MIOU`),
# `deeplab_edu.records.hardware`, and ahead of chapter 04, which explains it,
# `deeplab_edu.boundary.effective_kernel_shape`; from chapter 01, `sample_photo`; from chapter 00,
# `deeplab_edu.viz.tables.markdown_table` (a computed table).

# %%
import time

import torch
from IPython.display import display

from deeplab_edu import config
from deeplab_edu.boundary import effective_kernel_shape
from deeplab_edu.exercises import check, measured_and_predicted, prediction_made, solved
from deeplab_edu.models import build_backbone
from deeplab_edu.records import hardware
from deeplab_edu.viz import output_stride as vos
from deeplab_edu.viz.images import sample_photo
from deeplab_edu.viz.tables import markdown_table

torch.manual_seed(0)
print(config.profile_line(with_device=True))

# %% [markdown]
# ## 1. Output stride
#
# DeepLabv3 (sec. 3.1) calls *output stride* the ratio of the input resolution to the resolution of
# the final feature map:
#
# $$
# \text{output stride} = \frac{\text{input side}}{\text{feature-map side}},
# $$
#
# which is the product of the strides of the layers on the way. For sides that are not a multiple
# of it the ratio is not exact (513 / 33 = 15.5 below); DeepLab's sizes make it exact on the
# *steps* between pixels instead: $(513 - 1) / (33 - 1) = 16$.
#
# A ResNet halves the resolution five times: the stem's $7 \times 7$ convolution (stride 2), its
# max pooling (stride 2), and the first unit of blocks 2, 3 and 4 (stride 2 each). With "same"
# padding a stride-2 layer maps a side of $n$ pixels to $\lceil n/2 \rceil$, so odd sizes round
# *up*: DeepLab's crop of 513 gives
#
# $$
# 513 \to 257 \to 129 \to 65 \;(\text{OS } 8) \to 33 \;(\text{OS } 16) \to 17 \;(\text{OS } 32).
# $$
#
# (The "$+1$" in $513 = 16 \cdot 32 + 1$ is deliberate: corners of the image and of the feature map
# stay aligned.) `expected_feature_size` does this arithmetic, and the real backbone agrees:

# %%
# torchvision's ImageNet weights if they are already in your torch cache (never downloaded here)
weights = vos.cached_imagenet_weights("resnet50") if not config.is_smoke() else None
backbone = build_backbone("resnet50", output_stride=16, pretrained=weights or False)
for size in (513, 321, 97):
    sizes = {os_: vos.expected_feature_size(size, os_) for os_ in (32, 16, 8)}
    print(f"input {size}: " + ", ".join(f"OS {k} -> {v} x {v}" for k, v in sizes.items()))
shape_rows = vos.macs_by_input_size(backbone, (513, 97))      # the real layers, on the meta device
print("measured on the backbone:", {(r["input"], r["output stride"]): r["feature map"] for r in shape_rows})

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert [vos.expected_feature_size(513, s) for s in (8, 16, 32)] == [65, 33, 17]
    for r in shape_rows:
        assert r["feature map"] == vos.expected_feature_size(r["input"], r["output stride"]), r

# %% [markdown]
# ### Exercise 03.1 (predict, then read and measure)
# Section 2 makes the map denser: output stride 16, then 8, instead of 32. Before reading it, predict:
# **how many parameters does a ResNet-50 gain when its output stride goes from 32 to 8?** Check your
# prediction here; section 2 says why, and section 3 measures the parameters at each output stride.

# %%
prediction_03_1 = ...  # a whole number of parameters
check("03.1", prediction_03_1)

# %% [markdown]
# ## 2. From stride to dilation
#
# To get output stride 16 instead of 32, DeepLabv3 sets the stride of the last downsampling layer
# to 1 (in torchvision's ResNet the first unit of block 4; in the TF-Slim ResNet the paper uses, the
# last unit of block 3, chapter 02) and replaces every later convolution by an atrous convolution with
# rate 2; for output stride 8 block 3 gets the same treatment and block 4's rate becomes 4. No
# parameter is added or changed, only *where* the filters read their inputs. `build_backbone`
# follows torchvision's convention (`replace_stride_with_dilation`): the first unit of a dilated
# block still uses the previous rate, because its input has not been "un-strided" yet.
# `block_rates()` lists the rate of every unit's $3 \times 3$ convolution, block by block:

# %%
for os_ in (32, 16, 8):
    backbone.set_output_stride(os_)
    rates = backbone.block_rates()
    n_params = sum(p.numel() for p in backbone.parameters())
    print(f"OS {os_:2d}: block3 rates {rates[2]}, block4 rates {rates[3]}, parameters {n_params:,}")
backbone.set_output_stride(16)

# %% [markdown]
# Why is this the *same* network, only denser? Take a stride-2 layer followed by a $3 \times 3$
# filter. The strided network computes $z[i] = \sum_k y[2i + 2k]\, w[k]$ over the subsampled map
# $y[2i]$; without the stride and with rate 2 the dense network computes
# $z'[j] = \sum_k y[j + 2k]\, w[k]$ at *every* $j$, and $z'[2i] = z[i]$. Every even position of the
# dense output is exactly the strided output, and the odd positions are new, in-between answers:
# this is the "algorithme à trous" of {cite:p}`holschneider1989wavelet`. With the same weights, the
# output-stride-8 features sampled at every 4th position are the output-stride-32 features. We
# check that on a photograph, with our one backbone switched in place between output strides. If
# torchvision's ImageNet weights are already in your torch cache they are used (the notebook never
# downloads them; the smoke profile never uses them); otherwise the weights are random, and the
# features show image *structure* rather than meaning.

# %%
print("weights:", weights or "random (no cached ImageNet weights)")
photo_size = config.choose(smoke=97, cpu=513, gpu=513)
photo = sample_photo(photo_size)
features = vos.photo_features(backbone, photo, output_strides=(32, 16, 8))
for os_, f in features.items():
    print(f"OS {os_:2d}: features {tuple(f.shape)}")
for (dense, strided), rel in vos.dense_vs_strided_difference(features).items():
    print(f"OS {dense} sampled with step {strided // dense} vs OS {strided}: relative difference {rel:.1e}")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert {os_: f.shape[-1] for os_, f in features.items()} == {s: vos.expected_feature_size(photo_size, s) for s in (32, 16, 8)}
    assert all(rel < 1e-5 for rel in vos.dense_vs_strided_difference(features).values())  # float32 rounding

# %% [markdown]
# The differences are float rounding (of the order of $10^{-6}$ of the largest value): the dense map
# contains the strided one. Below, the top row draws the grid of feature cells over the photograph
# (each cell is one feature vector, about OS $\times$ OS pixels); the bottom row shows, per
# position, how far its feature vector is from the map's mean feature.

# %%
frame_vs_inside = {}
for os_, f in features.items():
    dist = (f[0] - f[0].mean(dim=(1, 2), keepdim=True)).norm(dim=0)  # what the bottom row draws
    ring = torch.cat([dist[0], dist[-1], dist[1:-1, 0], dist[1:-1, -1]])
    frame_vs_inside[os_] = (float(ring.mean()), float(dist[1:-1, 1:-1].mean()))
print("mean distance from the mean feature, outermost cells vs the cells inside: "
      + ", ".join(f"OS {k} {a:.0f} vs {b:.0f}" for k, (a, b) in frame_vs_inside.items()))
fig = vos.plot_feature_maps(photo, features)

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    if weights is None and photo_size == 513:  # the paragraph below: with random weights the border is brighter
        assert all(a > 1.3 * b for a, b in frame_vs_inside.values()), frame_vs_inside

# %% [markdown]
# With random weights (the `weights:` line above says which weights this run uses) and the
# full-size photograph, the maps are brighter along the border than inside: the line above the
# figure compares the outermost cells with the rest. That frame is the zero padding showing through
# the 50 layers (chapter 04 studies a related effect, the taps of atrous filters that fall on
# padding), not something in the photograph. So that it does not set the colours, the colour scale
# is taken from the maps' interiors, without a thin outer frame (`interior_range`); brighter values
# are all drawn in the top colour (the arrow at the top of the colour bar). The smoke profile's
# small photograph shows no such frame.
#
# ### Try it
# Pick an output stride and a channel (−1 shows the distance from the mean feature, as above).

# %%
vos.feature_map_widget(photo, features)

# %% [markdown]
# ## 3. What density costs
#
# We now measure ResNet-50 at each output stride with `measure_output_strides`, which measures as
# `deeplab_edu.complexity.measure` does: multiply-adds counted from a real forward pass, parameters,
# the median forward time and the peak memory of one image, batch size 1, on this machine (what
# the forward pass allocates for its feature maps; the weights, already in memory, do not count).
# The forward passes are timed in rounds that run every output stride once, after `warmup` untimed
# rounds, so that no output stride alone pays the warm-up or a busy moment of the machine. The
# `cpu` and `gpu` profiles measure the paper's $513 \times 513$ input; the `smoke` profile, which
# CI uses, measures a $65 \times 65$ input so that the page runs in seconds. The cell below prints
# which one you are looking at, and how long the measurement took.

# %%
input_size = config.choose(smoke=65, cpu=513, gpu=513)
repeats, warmup = config.choose(smoke=(1, 1), cpu=(3, 1), gpu=(10, 3))
device = config.device()
hw = hardware()
print(f"input {input_size} x {input_size}, profile '{config.profile()}', device {device}, "
      f"{hw.get('gpu') or hw['cpu']} ({hw['cpu_count']} CPU cores, {hw['torch_threads']} torch threads)")
if config.is_smoke():
    print("smoke profile: a 65 x 65 input so that this runs in seconds; "
          "the cpu and gpu profiles measure the paper's 513 x 513.")
started = time.perf_counter()
cost_rows = vos.measure_output_strides(backbone, input_size, (32, 16, 8), repeats=repeats, warmup=warmup, device=device)
backbone.to("cpu")
print(f"measured in {time.perf_counter() - started:.0f} s")

display(markdown_table([{"OS": r["output stride"], "feature map": f"{r['feature map']} x {r['feature map']}",
                         "params (M)": f"{r['params (M)']:.2f}", "GMACs": f"{r['GMACs']:.2f}",
                         "forward (s)": f"{r['forward (s)']:.3f}", "peak MiB": f"{r['peak memory (MiB)']:.1f}",
                         "paper mIoU (Table 1)": f"{vos.PAPER_TABLE1_MIOU[r['output stride']]:.2f}"} for r in cost_rows]))
print("DeepLabv3 Table 1 in full (paper, mIoU %): "
      + ", ".join(f"OS {k}: {v}" for k, v in sorted(vos.PAPER_TABLE1_MIOU.items())))
fig = vos.plot_cost_vs_output_stride(cost_rows, paper_miou=vos.PAPER_TABLE1_MIOU)

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    by_os = {r["output stride"]: r for r in cost_rows}  # also in the cell of exercise 03.1 below, which the book shows
    assert by_os[32]["params (M)"] == by_os[16]["params (M)"] == by_os[8]["params (M)"]
    assert by_os[32]["GMACs"] < by_os[16]["GMACs"] < by_os[8]["GMACs"]
    assert all(r["feature map"] == vos.expected_feature_size(input_size, r["output stride"]) for r in cost_rows)
    if input_size == 513 and device.type == "cpu":  # the reading below: the peak barely moves from 32 to 16, rises at 8
        peak = {s: r["peak memory (MiB)"] for s, r in by_os.items()}
        assert abs(peak[16] - peak[32]) <= 0.1 * peak[16] and peak[8] > 1.5 * peak[16], peak

# %% [markdown]
# **Exercise 03.1, measured.** The parameters the table counts at output stride 8 minus those at 32,
# against your prediction of section 1:

# %% tags=["hide-output"]
by_os = {r["output stride"]: r for r in cost_rows}  # the rows of the table above, by output stride
params_gained_03_1 = round((by_os[8]["params (M)"] - by_os[32]["params (M)"]) * 1e6)
print(measured_and_predicted(params_gained_03_1, prediction_03_1, fmt=",.0f"))

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# none. Dilation moves the taps of the same 3x3 filters apart; it adds no weight.
solved("03.1", params_gained_03_1)

# %% [markdown]
# **mIoU**, the measure in the table's last column, of every DeepLab paper and of this course from
# here on: for each class $c$, the *intersection over union*
# $\mathrm{IoU}_c = TP_c / (TP_c + FP_c + FN_c)$, with $TP_c$ the evaluated pixels labelled $c$ and
# predicted $c$, $FP_c$ those predicted $c$ but labelled otherwise, and $FN_c$ those labelled $c$ but
# predicted otherwise, all counted over the whole data set (not per image); mIoU is the mean of
# $\mathrm{IoU}_c$ over the classes, in percent. Pixels labelled 255 (VOC's unlabelled band along
# object outlines) are not evaluated. A class absent from both the labels and the predictions has no
# IoU (0/0) and is left out of the mean; one predicted but never labelled scores 0 and counts
# (`deeplab_edu.metrics`).
#
# **Reading the table.** The columns on the left are *measured* here, with the hardware printed
# above (the book shows the numbers of the machine that built it; run the notebook to get yours).
# The right-hand column is *quoted*: DeepLabv3's Table 1, PASCAL VOC 2012 val mIoU of ResNet-50
# with three extra blocks (block7) at each output stride. In the paper,
# mIoU rises from 70.06% at output stride 32 to 73.88% at 16 and 75.18% at 8 (and collapses to
# 20.29% at output stride 256, with no atrous convolution at all), while our measurement shows what
# that costs: the parameters do not change at all, and the multiply-adds grow because blocks 3 and
# 4 run on 4 or 16 times as many positions. The multiply-adds are exact counts; forward times are
# medians of a few runs and move with whatever else the machine is doing (on a shared CPU they can
# even come out in the wrong order). Peak memory is set by the largest tensors alive at once. For a
# 513 input, block 1's 256 channels on a $129 \times 129$ grid (16 MiB per tensor) dominate at
# output stride 32 and 16, so the peak barely moves; at output stride 8 block 4 holds 2048
# channels on a $65 \times 65$ grid (33 MiB per tensor) and the peak rises. (With the smoke
# profile's tiny input every tensor is small and the peaks say little.) The paper's caption puts it
# as "better performance
# at the cost of more memory usage"; it also notes that training at output stride 16 is several
# times faster than at 8, which is why DeepLabv3 trains at 16 and evaluates at 8.
#
# What *our* training shows (mIoU against output stride on this course's data) is measured in
# chapter 10, {doc}`10_reproducing_findings`; no number is quoted here before it exists.
#
# ## 4. How the cost grows with the input size
#
# A convolution's cost is proportional to the number of output positions, so doubling the input
# side should roughly quadruple the multiply-adds, at every output stride: a slope of 2 on a
# log-log plot. `macs_by_input_size` counts them on PyTorch's `meta` device (the shapes flow through
# the real layers, no arithmetic is done), which takes seconds even for large inputs.

# %%
sizes = config.choose(smoke=(65, 129, 257), cpu=(129, 257, 385, 513, 769), gpu=(129, 257, 385, 513, 769, 1025))
size_rows = vos.macs_by_input_size(backbone, sizes, (32, 16, 8))
for r in size_rows:
    print(f"input {r['input']:4d}, OS {r['output stride']:2d}: feature map {r['feature map']:3d}, {r['GMACs']:8.1f} GMACs")
fig = vos.plot_cost_vs_input_size(size_rows)

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    import math

    for os_ in (32, 16, 8):
        sel = sorted((r for r in size_rows if r["output stride"] == os_), key=lambda r: r["input"])
        slope = math.log(sel[-1]["GMACs"] / sel[0]["GMACs"]) / math.log(sel[-1]["input"] / sel[0]["input"])
        assert 1.7 < slope < 2.2, (os_, slope)

# %% [markdown]
# Where does the extra cost of a dense map go? Split by stage: the stem and blocks 1-2 do not
# change; block 3 costs the same at output stride 32 and 16 and less than four times more at 8,
# block 4 less than four times more at 16 and less than sixteen times more at 8 (the cell prints the
# ratios). Not the full factors, and not only because of odd sizes ($33^2/17^2 = 3.77$): in
# torchvision's layout the first unit of a block strides in its $3 \times 3$ convolution, so that
# unit's first $1 \times 1$ convolution runs on the block's *input* map, whose size the output
# stride does not change (exercise 03.3 counts it).

# %%
stage_input = config.choose(smoke=129, cpu=513, gpu=513)
stages = {}
for os_ in (32, 16, 8):
    backbone.set_output_stride(os_)
    stages[f"OS {os_}"] = vos.macs_by_stage(backbone, stage_input)
backbone.set_output_stride(16)
for name, st in stages.items():
    print(f"{name:6s}: " + ", ".join(f"{k} {v:.2f}" for k, v in st.items()) + f"  (total {sum(st.values()):.1f} GMACs)")
stage_ratios = {(block, dense, sparse): stages[f"OS {dense}"][block] / stages[f"OS {sparse}"][block]
                for block, dense, sparse in (("block3", 8, 16), ("block4", 16, 32), ("block4", 8, 32))}
print("ratios: " + ", ".join(f"{block} OS {dense} / OS {sparse}: {r:.2f}" for (block, dense, sparse), r in stage_ratios.items()))
fig = vos.plot_macs_by_stage(stages, title=f"ResNet-50, {stage_input} x {stage_input} input")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert abs(stages["OS 32"]["block2"] - stages["OS 8"]["block2"]) < 1e-9
    assert stages["OS 8"]["block4"] > 10 * stages["OS 32"]["block4"]
    assert 3 < stage_ratios["block3", 8, 16] < 4 and 3 < stage_ratios["block4", 16, 32] < 4 < stage_ratios["block4", 8, 32] < 16

# %% [markdown]
# ## 5. Multi-grid and going deeper (DeepLabv3 sec. 3.2)
#
# **Going deeper.** DeepLabv3 appends copies of block 4, called block5, block6 and block7, each
# with three bottleneck units. Without atrous convolution each copy would halve the resolution
# again (output stride 256 after block7); with it, the output stride stays at 16 and every extra
# block doubles the rate instead: 2, 4, 8, 16 for blocks 4 to 7 (the paper's Fig. 3).
#
# **Multi-grid.** Inside each of those blocks, the three units get *unit rates*
# $(r_1, r_2, r_3)$ that multiply the block's rate: with output stride 16 and multi-grid
# $(1, 2, 4)$, block 4's three $3 \times 3$ convolutions use rates $2 \cdot (1, 2, 4) = (2, 4, 8)$.
# `build_backbone(..., multi_grid=..., extra_blocks=...)` builds both:

# %%
configs = {
    "block4": dict(),
    "block4, MG (1, 1, 1)": dict(multi_grid=(1, 1, 1)),
    "block4, MG (1, 2, 4)": dict(multi_grid=(1, 2, 4)),
    "block7": dict(extra_blocks=3),
    "block7, MG (1, 2, 1)": dict(multi_grid=(1, 2, 1), extra_blocks=3),
}
deep_rows = {}
deep_stages = {}
feature_side = vos.expected_feature_size(513, 16)
for label, kwargs in configs.items():
    with torch.device("meta"):                     # structure only: no memory, no random init time
        net = build_backbone("resnet50", output_stride=16, **kwargs)
    rates = net.block_rates()[3:]
    deep_stages[label] = vos.macs_by_stage(net, stage_input)
    deep_rows[label] = (rates, sum(p.numel() for p in net.parameters()) / 1e6, sum(deep_stages[label].values()))
    print(f"{label:22s}: rates of blocks 4.. {rates}, {deep_rows[label][1]:.1f} M parameters")
per_block = (deep_rows["block7"][1] - deep_rows["block4"][1]) / 3
print(f"each of blocks 5-7 adds {per_block:.1f} M parameters")
# multiply-adds by stage: the multi-grid rows repeat the row of the same depth without it
stage_names = list(deep_stages["block7"])
print(f"\nGMACs by stage, output stride 16, {stage_input} x {stage_input} input:")
print(f"{'':22s}" + "".join(f"{name:>8s}" for name in stage_names) + f"{'total':>8s}")
for label, st in deep_stages.items():
    print(f"{label:22s}" + "".join(f"{st[name]:8.2f}" if name in st else f"{'-':>8s}" for name in stage_names)
          + f"{sum(st.values()):8.1f}")
same_macs = all(deep_stages[mg] == deep_stages[plain] for mg, plain in
                (("block4, MG (1, 1, 1)", "block4"), ("block4, MG (1, 2, 4)", "block4"), ("block7, MG (1, 2, 1)", "block7")))
print("multi-grid " + ("changes no stage's multiply-adds: each MG row repeats the row of its depth without it"
                       if same_macs else "changes the multiply-adds of some stage"))

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert deep_rows["block4, MG (1, 2, 4)"][0] == [(2, 4, 8)]
    assert deep_rows["block4, MG (1, 1, 1)"][0] == [(2, 2, 2)] and deep_rows["block4"][0] == [(1, 2, 2)]
    assert deep_rows["block7"][0] == [(1, 2, 2), (4, 4, 4), (8, 8, 8), (16, 16, 16)]
    assert deep_rows["block7, MG (1, 2, 1)"][0][2] == (8, 16, 8)
    assert deep_rows["block4"][1] == deep_rows["block4, MG (1, 2, 4)"][1] < deep_rows["block7"][1]
    assert same_macs and deep_rows["block7"][2] > deep_rows["block4"][2]  # "no multiply-add"; going deeper adds some
    with torch.device("meta"):  # the table below: Table 3's (2, 2, 2) row reads at (4, 4, 4)
        assert build_backbone("resnet50", output_stride=16, multi_grid=(2, 2, 2)).block_rates()[3] == (4, 4, 4)

# %% [markdown]
# **Which one is the paper's plain block 4?** First the consequence: **with any `multi_grid`,
# `build_backbone` gives up section 2's identity** (every output of the strided network found in
# the dense one); it holds only without `multi_grid`. The reason is where the formerly strided
# $3 \times 3$ convolution sits. DeepLabv3 defines a unit's rate as its block's rate times its unit rate ("when
# output_stride = 16 and Multi_Grid = (1, 2, 4), the three convolutions will have rates = 2 · (1, 2,
# 4) = (2, 4, 8) in the block4", sec. 3.2.1). In the paper's TF-Slim ResNet the formerly strided
# convolution is block 3's last, so all of block 4 reads at rate 2 and the identity holds. In
# torchvision's layout, which `build_backbone` follows, it is block 4's first; without `multi_grid`,
# torchvision's `replace_stride_with_dilation` keeps it at the previous rate, 1 (the identity holds),
# but a `multi_grid` sets its rate too, to the block's rate times its unit rate, so it reads dilated
# where the paper's reads at rate 1. Block 4 at output stride 16, in both conventions:
#
# | here | block 4's rates | in the paper |
# |---|---|---|
# | `build_backbone(...)`, no `multi_grid` (torchvision's rule) | (1, 2, 2) | no row |
# | `multi_grid=(1, 1, 1)` | (2, 2, 2) | the plain block 4: Table 2's block4 column, Table 3's (1, 1, 1) row |
# | `multi_grid=(2, 2, 2)` | (4, 4, 4) | Table 3's (2, 2, 2) row |
# | `multi_grid=(1, 2, 4)` | (2, 4, 8) | Table 3's (1, 2, 4) row |
#
# The default and the paper's plain block 4 differ only in the rate of that one $3 \times 3$
# convolution, and neither adds a parameter.
#
# Multi-grid changes no parameter and no multiply-add (the MG rows of the printed GMACs table): it
# only moves where the filters read. Going deeper adds three blocks of parameters (the line printed above says how
# many each) and their multiply-adds (the columns block5 to block7), all computed at the dense
# resolution. The rates grow fast, and chapter 04 shows why that is a problem: with multi-grid
# $(1, 2, 4)$, block 7's last unit reads at rate $16 \cdot 4 = 64$ on a $33 \times 33$ map (a
# 513 crop at output stride 16), where a $3 \times 3$ filter has degenerated into a $1 \times 1$
# filter:

# %%
print(f"3x3 at rate 64 on a {feature_side} x {feature_side} map acts as a "
      f"{effective_kernel_shape(feature_side, 64)} filter")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert effective_kernel_shape(33, 64) == (1, 1) and effective_kernel_shape(33, 8) == (3, 3)

# %% [markdown]
# **What the paper found** (PASCAL VOC 2012 val mIoU, output stride 16, quoted from
# {cite:p}`chen2017deeplabv3`; not measured here):

# %%
blocks = ("block4", "block5", "block6", "block7")
print("Table 2: going deeper")
display(markdown_table([{"network": net_name, **{b: f"{v:.2f}" for b, v in zip(blocks, vals)}}
                        for net_name, vals in vos.PAPER_TABLE2_MIOU.items()]))
print("Table 3: ResNet-101, multi-grid")
display(markdown_table([{"multi-grid": str(mg), **{b: f"{v:.2f}" for b, v in zip(blocks, vals)}}
                        for mg, vals in vos.PAPER_TABLE3_MIOU.items()]))

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert vos.PAPER_TABLE3_MIOU[(1, 1, 1)] == vos.PAPER_TABLE2_MIOU["resnet101"]
    # what the paragraph below reads off Table 3 (depths block4..block7 are columns 0..3)
    t3 = vos.PAPER_TABLE3_MIOU
    multi_grids = [mg for mg in t3 if len(set(mg)) > 1]
    assert all(t3[mg][d] > t3[(1, 1, 1)][d] for mg in multi_grids for d in range(4))  # multi-grid beats (1, 1, 1)
    assert all(t3[(2, 2, 2)][d] < t3[mg][d] for mg in multi_grids for d in range(1, 4))  # (2, 2, 2) below them from block5
    assert t3[(2, 2, 2)][0] > t3[(1, 2, 1)][0]  # ... but not at block4
    assert [t3[(2, 2, 2)][d] < t3[(1, 1, 1)][d] for d in range(4)] == [False, False, True, True]  # below (1, 1, 1) from block6
    assert max(v[3] for v in t3.values()) == t3[(1, 2, 1)][3] == 76.66  # the best cascaded model

# %% [markdown]
# More blocks help, with shrinking returns (for ResNet-50, block7 is even slightly worse than
# block6); multi-grid beats constant unit rates $(1, 1, 1)$, and simply doubling them, $(2, 2, 2)$,
# helps less than any multi-grid from block5 on (at block4 it beats $(1, 2, 1)$) and falls below
# $(1, 1, 1)$ from block6 on (the paper: "not effective"). (The $(1, 1, 1)$ row of Table 3 repeats Table 2's ResNet-101 row: in
# the paper, a block without multi-grid *is* $(1, 1, 1)$, rates $(2, 2, 2)$ at output stride 16.)
# The best cascaded model uses block7 with multi-grid $(1, 2, 1)$ (76.66%). In the final DeepLabv3
# the cascade is replaced by ASPP on block 4 with multi-grid $(1, 2, 4)$ ({doc}`05_aspp`); our own
# measurements with training come in {doc}`10_reproducing_findings`.

# %% [markdown]
# ## Exercises
#
# ### Exercise 03.2 (write a function)
# Write `block_rates(output_stride, multi_grid, extra_blocks)`: the rates of the three $3 \times 3$
# convolutions of block 4 and of each extra block (blocks 5-7, 0 to 3 of them), as a list of
# tuples, block 4 first, for a ResNet at output stride 8, 16 or 32 with the given multi-grid unit
# rates. Extra blocks never reduce the resolution, at output stride 32 too: there block 4 keeps rate 1
# and each extra block still doubles the rate (block 5 at 2), as `build_backbone` builds it. The checker compares it with the rates of the backbones `build_backbone` builds, on a few
# cases from this page and on random configurations.


# %%
def block_rates(output_stride: int, multi_grid: tuple[int, int, int], extra_blocks: int) -> list[tuple[int, ...]]:
    ...  # your code here


check("03.2", block_rates)


# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# block 4's rate is 32 / output_stride, each extra block doubles it, and multi-grid
# multiplies it unit by unit (DeepLabv3 sec. 3.2).
def block_rates_solution(output_stride: int, multi_grid: tuple[int, int, int], extra_blocks: int) -> list[tuple[int, ...]]:
    block4 = 32 // output_stride
    return [tuple(block4 * 2**b * unit for unit in multi_grid) for b in range(1 + extra_blocks)]


solved("03.2", block_rates_solution, f"OS 16, multi-grid (1, 2, 1), block7: {block_rates_solution(16, (1, 2, 1), 3)}")

# %% [markdown]
# ### Exercise 03.3 (predict, then measure)
# The cost tables above measure a 513 input. Take the $321 \times 321$ crop of DeepLab v1 and v2
# (DeepLabv3 tries it in appendix A; chapter 04 shows what it does to large rates): how many times more
# multiply-adds does **block 4** need at output stride 8 than at output stride 16? Predict it from
# the feature-map sizes of section 1, check your prediction, then run the cell after it, which
# counts the multiply-adds of each block with `macs_by_stage`.

# %%
prediction_03_3 = ...
check("03.3", prediction_03_3)

# %% tags=["hide-output"]
crop_03_3 = 321  # DeepLab v1/v2's training crop
measured_stage = {}
for os_ in (16, 8):
    backbone.set_output_stride(os_)
    measured_stage[os_] = vos.macs_by_stage(backbone, crop_03_3)
backbone.set_output_stride(16)
if prediction_made("03.3", prediction_03_3):
    for block in ("block3", "block4"):
        print(f"{block}: {measured_stage[16][block]:5.2f} GMACs at OS 16, {measured_stage[8][block]:5.2f} at OS 8: "
              f"x{measured_stage[8][block] / measured_stage[16][block]:.3f}")

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# 321 -> 161 -> 81 -> 41 -> 21, so block 4 runs on 21 x 21 positions at output stride 16
# and on 41 x 41 at 8, with the same weights: (41 / 21)**2 = 3.81, exactly what was measured. Block 3
# grows a little less: its first unit's 1x1 convolution runs on the 41 x 41 input of the block at
# both output strides.
solved("03.3", (vos.expected_feature_size(crop_03_3, 8) / vos.expected_feature_size(crop_03_3, 16)) ** 2)

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
if config.course_checks():  # the course checks itself here (tests, make book); a learner's run skips this
    assert block_rates_solution(16, (1, 2, 1), 3) == deep_rows["block7, MG (1, 2, 1)"][0]
    ratio4 = measured_stage[8]["block4"] / measured_stage[16]["block4"]
    assert check("03.3", ratio4)  # the measured ratio is the exercise's answer
    assert measured_stage[8]["block3"] / measured_stage[16]["block3"] < ratio4

# %% [markdown]
# ## Summary
#
# - Output stride = input side / feature-map side; for odd sizes every stride-2 layer rounds up, so
#   a 513 crop gives 65, 33 and 17 at output stride 8, 16 and 32.
# - Removing a stride and dilating every later filter by the same factor makes the map denser
#   without new parameters; the dense map contains the strided one exactly.
# - The price is computation and memory in the dilated blocks, growing with the number of
#   positions: about 4x per halving of the output stride for the blocks that run dense, and
#   quadratically with the input side.
# - Multi-grid and the going-deeper cascade multiply the rates; large rates on small maps lead to
#   the boundary problem of chapter 04.
