# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   deeplab_edu:
#     chapter: 10
#     title: "Reproducing the papers' findings"
#     cpu_minutes: 2
# ---

# %% [markdown]
# # 10 · Reproducing the papers' findings
#
# The DeepLab papers make claims you can check yourself: a model trained at output stride 16
# scores better when it is *evaluated* at output stride 8; averaging the predictions of several
# input scales and of the mirrored image adds a little more (DeepLabv3 {cite:p}`chen2017deeplabv3`,
# the inference-strategy tables of sec. 4); a decoder sharpens object boundaries (DeepLabv3+ {cite:p}`chen2018deeplabv3plus`).
# Here we train DeepLab models with the course's training engine on the procedural scenes and
# measure each claim. The numbers will not match the papers' (other data, a tiny budget, no
# ImageNet pre-training): what we reproduce is the *direction* of each effect, and we say when we
# do not.
#
# **Learning objectives**
#
# - train a DeepLab model with the paper's recipe through the engine, and read its learning curves;
# - measure the effect of the evaluation output stride, multi-scale inputs and flipping;
# - measure boundary accuracy in a trimap band, and compare DeepLabv3 with DeepLabv3+;
# - tell a measured finding from a recorded one, and know which command made the record.
#
# **Helpers introduced:** `deeplab_edu.engine.runs.train_or_load` (train once, reuse the run),
# `deeplab_edu.engine.report.plot_history` / `plot_metric_bars`, `deeplab_edu.inference.evaluate`
# with `Strategy` and `TABLE5_STRATEGIES`, `deeplab_edu.metrics.trimap_target` and
# `format_iou_table`, `deeplab_edu.records.load_record` / `describe_record`.
#
# The same runs can be started from a terminal: `deeplab-edu train --preset cpu` (see
# `deeplab-edu train --help`).

# %% [markdown]
# ## The run, sized by the profile
#
# In the `smoke` profile (CI) the models are tiny and trained for a few iterations in a temporary
# folder: the numbers are meaningless, only the code path is exercised. In the `cpu` profile the
# engine trains DeepLabv3 and DeepLabv3+ with a MobileNetV3-Large backbone from scratch with the
# `cpu` preset (this whole notebook took under 2 minutes on a quiet 2-core VM, and 17 minutes on a
# heavily shared one); in the `gpu`
# profile the `gpu` preset. **A run that already finished is not trained again**: `train_or_load` finds
# its checkpoint in `runs/` and reloads it (delete the folder to retrain).

# %%
import torch

from deeplab_edu import config
from deeplab_edu.engine.report import plot_history, plot_metric_bars
from deeplab_edu.engine.runs import train_or_load
from deeplab_edu.viz.training import runs_root as chapter_runs_root

torch.manual_seed(0)
profile = config.profile()
runs_root = chapter_runs_root()  # <repo>/runs, or a temporary folder in the smoke profile
preset = config.choose(smoke="smoke", cpu="cpu", gpu="gpu")
overrides = config.choose(
    smoke=dict(image_size=32, crop_size=32, iterations=2, eval_every=2, ckpt_every=2, val_length=2,
               batch_size=2, progress=False),
    cpu=dict(progress=True),
    gpu=dict(progress=True),
)
# The DeepLabv3+ run of the cpu/gpu profile is the folder `deeplab-edu train --preset cpu` (or gpu) writes.
out_v3plus = runs_root / (f"ch10_{profile}_v3plus" if profile == "smoke" else preset)
model_v3, history_v3, cfg_v3 = train_or_load(preset, out_dir=runs_root / f"ch10_{profile}_deeplabv3",
                                             model="deeplabv3", **overrides)
print(f"DeepLabv3 ({cfg_v3.backbone}): {cfg_v3.iterations} iterations, batch {cfg_v3.batch_size}, "
      f"crop {cfg_v3.crop_size}, trained at output stride {cfg_v3.output_stride}")
plot_history(history_v3, title=f"DeepLabv3, '{preset}' preset: learning curves");

# %% tags=["remove-cell"]
val_curve = [r["miou"] for r in history_v3 if r["split"] == "val"]
assert val_curve and all(0.0 <= v <= 1.0 for v in val_curve)
assert any(r["split"] == "train" for r in history_v3)

# %% [markdown]
# The left panel is the training loss (it is noisy: each point averages a few batches of random
# crops); the right one the validation mIoU, measured at output stride 8 as DeepLabv3 does.
#
# ### The recorded run of the `cpu` preset
#
# The engine's acceptance run, `deeplab-edu train --preset cpu`, was recorded on the course's
# development machine. A record carries the command, the code version and the hardware, so this
# curve is not a hand-typed number:

# %%
from deeplab_edu.records import describe_record, load_record

try:
    record = load_record("train_cpu_preset")
except FileNotFoundError as err:
    record = None
    print(err)
if record is not None:
    print(describe_record(record))
    res = record["results"]
    print(f"wall time {res['seconds'] / 60:.1f} min, final validation mIoU {100 * res['final_miou']:.1f}%")
    curve = [{"split": "val", "iteration": it, "miou": m} for it, m in res["val_miou_curve"]]
    curve += [{"split": "train", "iteration": it, "loss": l} for it, l in res["train_loss_curve"]]
    plot_history(curve, title="recorded: deeplab-edu train --preset cpu");

# %% [markdown]
# ## Finding 1: evaluate at output stride 8 (DeepLabv3 sec. 4, Table 6)
#
# DeepLabv3 trains at output stride 16 (cheaper: the last block runs on a 4x smaller map) and
# evaluates at 8: `set_output_stride(8)` switches the backbone's last stage from stride to dilation
# and doubles the ASPP rates, with the *same weights*. The paper reports a gain on PASCAL VOC val.
# We evaluate the same model both ways.

# %%
from deeplab_edu.data import build_dataset
from deeplab_edu.data.transforms import eval_transform
from deeplab_edu.inference import PAPER_SCALES, Strategy, evaluate

val = build_dataset("procedural", "val", size=cfg_v3.image_size, length=cfg_v3.val_length,
                    transform=eval_transform())
by_os = {f"eval OS {s}": evaluate(model_v3, val, Strategy(output_stride=s), progress=False)["miou"]
         for s in (16, 8)}
plot_metric_bars(by_os, title="same weights, two output strides");
for k, v in by_os.items():
    print(f"{k}: mIoU {100 * v:.1f}%")

# %% tags=["remove-cell"]
assert set(by_os) == {"eval OS 16", "eval OS 8"} and all(0 <= v <= 1 for v in by_os.values())

# %% [markdown]
# ## Finding 2: multi-scale inputs and flipping (DeepLabv3 sec. 4, Table 6)
#
# "MS" resizes the image by each of the scales $\{0.5, 0.75, 1, 1.25, 1.5, 1.75\}$ and averages
# the class probabilities; "Flip" adds the mirrored image. Each costs more forward passes
# (exercise 10.3). In the smoke profile we use two scales only.

# %%
scales = config.choose(smoke=(0.5, 1.0), cpu=PAPER_SCALES, gpu=PAPER_SCALES)
strategies = {
    "OS 8": Strategy(output_stride=8),
    "OS 8 + MS": Strategy(scales=scales, output_stride=8),
    "OS 8 + MS + Flip": Strategy(scales=scales, flip=True, output_stride=8),
}
by_strategy = {k: evaluate(model_v3, val, s, progress=False)["miou"] for k, s in strategies.items()}
plot_metric_bars(by_strategy, title="inference strategies (DeepLabv3 sec. 4)");

# %% tags=["remove-cell"]
assert len(by_strategy) == 3 and all(0 <= v <= 1 for v in by_strategy.values())

# %% [markdown]
# ## Finding 3: the decoder and object boundaries (DeepLabv3+)
#
# DeepLabv3+ adds a decoder that refines the stride-16 output with stride-4 features. The paper
# measures the gain near object boundaries with a *trimap*: only pixels within a band of a few
# pixels around the true boundaries are scored. We train DeepLabv3+ with exactly the same settings
# and compare the two in bands of growing width.

# %%
from deeplab_edu.metrics import ConfusionMatrix, trimap_target
from deeplab_edu.inference import predict

model_v3p, history_v3p, _ = train_or_load(preset, out_dir=out_v3plus, model="deeplabv3plus", **overrides)
plot_history(history_v3p, title="DeepLabv3+: learning curves");


def trimap_miou(model: torch.nn.Module, width: int) -> float:
    cm = ConfusionMatrix(val.num_classes)
    for i in range(len(val)):
        image, mask = val[i]
        cm.update(predict(model, image, Strategy(output_stride=8)), trimap_target(mask, width)[None])
    return cm.compute()["miou"]


widths = config.choose(smoke=[2], cpu=[1, 2, 4, 8, 16], gpu=[1, 2, 4, 8, 16, 32])
bands = {name: [trimap_miou(m, w) for w in widths] for name, m in (("DeepLabv3", model_v3), ("DeepLabv3+", model_v3p))}

import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(5, 3.2))
for name, values in bands.items():
    ax.plot(widths, [100 * v for v in values], marker="o", label=name)
ax.set_xlabel("trimap band width (pixels)")
ax.set_ylabel("mIoU in the band (%)")
ax.set_xscale("log", base=2)
ax.legend()
ax.grid(alpha=0.3)
fig.tight_layout()

# %% tags=["remove-cell"]
assert all(len(v) == len(widths) and all(0 <= x <= 1 for x in v) for v in bands.values())

# %% [markdown]
# ### Per-class view
#
# mIoU averages very different classes: big, common ones (background, car, boat) and thin or small
# ones (wire, triangle). The per-class table shows where each model fails.

# %%
from IPython.display import Markdown, display

from deeplab_edu.metrics import format_iou_table

for name, m in (("DeepLabv3", model_v3), ("DeepLabv3+", model_v3p)):
    metrics = evaluate(m, val, Strategy(output_stride=8), progress=False)
    display(Markdown(f"**{name}** (OS 8, single scale)\n\n" + format_iou_table(metrics["iou"], val.class_names)))

# %% [markdown]
# ## What we found, and what we did not
#
# Read the figures above for *your* run: the directions you should expect from the papers are
# (1) output stride 8 at evaluation $\geq$ 16, (2) MS + Flip $\geq$ MS $\geq$ single scale, and (3)
# the decoder helps most in the narrowest bands. With a short CPU run from scratch any of these can
# fail to show: the model is far from converged and the validation set is small (a few dozen
# images), so differences of a point or two are noise. The `gpu` profile trains long enough for
# the effects to be clearer. Further ablations the engine runs from the command line, for example
# image pooling off:
#
# ```bash
# deeplab-edu train --preset cpu --model-kwargs '{"image_pooling": false}' --out-dir runs/no_pooling
# ```

# %% [markdown]
# ## Exercises
#
# ### Exercise 10.1
# A validation set gives the confusion matrix below (rows: truth, columns: prediction). What is its
# mIoU, as a fraction?

# %%
from deeplab_edu.exercises import check
from deeplab_edu.exercises.ch10 import CONFUSION_10_1

print(CONFUSION_10_1)
answer_10_1 = ...  # your answer here
check("10.1", answer_10_1)

# %% tags=["hide-cell"]
# Solution: IoU per class = diagonal / (row sum + column sum - diagonal), then the mean.
import numpy as np

tp = np.diag(CONFUSION_10_1)
iou = tp / (CONFUSION_10_1.sum(0) + CONFUSION_10_1.sum(1) - tp)
check("10.1", float(iou.mean()))

# %% [markdown]
# ### Exercise 10.2
# DeepLabv3 trains for 30 000 iterations with the poly schedule from 0.007 (power 0.9). What is the
# learning rate at iteration 15 000?

# %%
answer_10_2 = ...
check("10.2", answer_10_2)

# %% tags=["hide-cell"]
# Solution
from deeplab_edu.engine.schedule import poly_factor

check("10.2", 0.007 * poly_factor(15_000, 30_000))

# %% [markdown]
# ### Exercise 10.3
# How many forward passes does "OS 8 + MS + Flip" need per image with the paper's six scales?

# %%
answer_10_3 = ...
check("10.3", answer_10_3)

# %% tags=["hide-cell"]
# Solution: every scale, with and without the flip
check("10.3", len(PAPER_SCALES) * 2)

# %% tags=["remove-cell"]
assert check("10.1", float(iou.mean())) and check("10.2", 0.007 * poly_factor(15_000, 30_000))
assert check("10.3", 12) and not check("10.3", 6)

# %% tags=["remove-cell"]
# The smoke profile trained in a temporary folder (checkpoints of tens of MB): remove it.
if profile == "smoke":
    import shutil

    shutil.rmtree(runs_root, ignore_errors=True)
