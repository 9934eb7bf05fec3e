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
#     chapter: 11
#     title: "Real data on a GPU, inference strategies and export"
#     cpu_minutes: 1
# ---

# %% [markdown]
# # 11 · Real data on a GPU, inference strategies and export
#
# The last chapter leaves the procedural scenes for real street scenes (CamVid
# {cite:p}`brostow2009camvid`), shows how the engine trains on one or several GPUs, measures what
# the test-time strategies of DeepLabv3 {cite:p}`chen2017deeplabv3` cost, and exports a model to
# ONNX so it runs without PyTorch.
#
# **Learning objectives**
#
# - load CamVid through the package and train DeepLabv3+ on it with the `camvid_gpu` preset;
# - launch multi-GPU training with `torchrun`, and know what DDP, SyncBatchNorm, bf16 and
#   `channels_last` change;
# - measure the cost of multi-scale, flip and sliding-window inference on a full-size image;
# - export a model to ONNX, run it with onnxruntime and check it agrees with PyTorch.
#
# **Helpers introduced:** `deeplab_edu.data.find_camvid` and `build_dataset("camvid", ...)`,
# `deeplab_edu.engine.runs.train_or_load` with the `camvid_gpu` preset,
# `deeplab_edu.inference.predict_probs` / `sliding_window_logits` / `prediction_gallery`,
# `deeplab_edu.models.export.export_onnx` / `run_onnx`.

# %% [markdown]
# ## CamVid
#
# CamVid has 367 training and 101 validation images of 360 x 480 pixels with 11 classes (plus a
# void label, mapped to 255). The package looks for a copy in the usual places (see
# `deeplab_edu.data.paths`); `build_dataset("camvid", ..., download=True)` fetches one when you are
# online. Without a copy, this notebook falls back to procedural scenes of the same size.

# %%
import torch

from deeplab_edu import config
from deeplab_edu.data import build_dataset, find_camvid
from deeplab_edu.data.transforms import eval_transform

torch.manual_seed(0)
camvid_root = find_camvid()
if camvid_root is not None:
    data = build_dataset("camvid", "val", root=camvid_root, transform=eval_transform())
    print(f"CamVid found at {camvid_root}: {len(data)} validation images, {data.num_classes} classes")
else:
    data = build_dataset("procedural", "val", size=(360, 480), length=4, transform=eval_transform())
    print("no CamVid copy found: using 360 x 480 procedural scenes instead")
image, mask = data[0]
print("image", tuple(image.shape), "mask", tuple(mask.shape), "classes", data.class_names)

# %% tags=["remove-cell"]
assert image.shape[0] == 3 and mask.shape == image.shape[1:]

# %% [markdown]
# ## Training on a GPU
#
# The `camvid_gpu` preset trains DeepLabv3+ with a ResNet-50 (ImageNet weights) at output stride 16,
# crop 360, batch 8, bf16 autocast and `channels_last`, and evaluates at output stride 8. In the
# `gpu` profile this cell trains it (about half an hour on one recent GPU) unless the run already
# finished; in the other profiles it only shows the command.
#
# ```bash
# deeplab-edu train --preset camvid_gpu                                  # one GPU
# torchrun --nproc_per_node=4 -m deeplab_edu train --preset camvid_gpu   # four GPUs, same recipe
# deeplab-edu train --preset camvid_gpu --resume                         # continue after a crash
# ```
#
# With `torchrun`, every process trains on its own shard of each epoch (a `DistributedSampler`),
# DDP averages the gradients, BatchNorm statistics are computed over all processes
# (SyncBatchNorm), and only rank 0 writes checkpoints and metrics. The batch size is *per process*
# (exercise 11.3). bf16 keeps float32's exponent range, so unlike fp16 it needs no gradient scaler
# (exercise 11.2).

# %%
from deeplab_edu.engine.runs import train_or_load
from deeplab_edu.records import REPO_ROOT

if config.profile() == "gpu" and camvid_root is not None:
    camvid_model, camvid_history, _ = train_or_load("camvid_gpu", out_dir=REPO_ROOT / "runs" / "camvid_deeplabv3plus",
                                                    data_root=str(camvid_root))
    from deeplab_edu.engine.report import plot_history

    plot_history(camvid_history, title="DeepLabv3+ ResNet-50 on CamVid")
else:
    camvid_model = None
    print(f"profile '{config.profile()}': not training on CamVid here; run the commands above on a GPU.")

# %% [markdown]
# ## What the inference strategies cost
#
# Multi-scale inference runs the network at every scale, flipping doubles that, and a sliding window
# runs it once per window. On a full-size image we time each strategy with an 11-class DeepLabv3+
# (MobileNetV3-Large, random weights unless the GPU run above exists: cost does not depend on the
# weights). The smoke profile uses a reduced image.

# %%
import time

from deeplab_edu.inference import PAPER_SCALES, Strategy, predict_probs
from deeplab_edu.models import build_model

model = camvid_model or build_model("deeplabv3plus", backbone="mobilenet_v3_large", num_classes=data.num_classes)
model = model.to(config.device()).eval()
size = config.choose(smoke=(90, 120), cpu=(360, 480), gpu=(360, 480))
x = torch.nn.functional.interpolate(image[None], size=size, mode="bilinear", align_corners=False).to(config.device())
crop = min(size) * 2 // 3
strategies = {
    "single scale": Strategy(),
    "flip": Strategy(flip=True),
    "MS (6 scales)": Strategy(scales=PAPER_SCALES),
    "MS + flip": Strategy(scales=PAPER_SCALES, flip=True),
    f"sliding {crop}px": Strategy(crop_size=crop),
}
predict_probs(model, x)  # warm-up: the first call allocates and picks kernels
seconds = {}
for name, s in strategies.items():
    start = time.perf_counter()
    predict_probs(model, x, s)
    seconds[name] = time.perf_counter() - start
base = seconds["single scale"]
for name, t in seconds.items():
    print(f"{name:18s} {t:7.3f} s   x{t / base:5.1f}")

from deeplab_edu.engine.report import plot_metric_bars

plot_metric_bars({k: v / base for k, v in seconds.items()}, ylabel="time / single scale", scale=1.0,
                 title=f"inference cost on a {size[0]} x {size[1]} image ({config.device()})");

# %% tags=["remove-cell"]
assert seconds["MS + flip"] > seconds["single scale"]

# %% [markdown]
# The multi-scale cost is not simply 6x: the scales 0.5 and 0.75 are cheap and 1.75 costs about
# three times a single pass ($1.75^2$ pixels). In a deployment that budget is usually better spent
# on a larger model; in a benchmark it buys the last point of mIoU.

# %% [markdown]
# ## A small gallery
#
# Image, ground truth, prediction, and the errors in red (white: ignored pixels). With random
# weights the prediction is noise; after the GPU run it is the trained model's.

# %%
from deeplab_edu.inference import predict, prediction_gallery

n_show = config.choose(smoke=1, cpu=2, gpu=3)
samples = [data[i] for i in range(n_show)]
preds = [predict(model, im.to(config.device()))[0].cpu() for im, _ in samples]
prediction_gallery([im for im, _ in samples], [m for _, m in samples], preds, data.palette);

# %% [markdown]
# ## Export to ONNX
#
# `export_onnx` traces the model in evaluation mode with height and width left dynamic, and
# onnxruntime runs the file on the CPU without PyTorch. The exported graph must give the same
# logits as the eager model, up to float rounding.

# %%
import tempfile
from pathlib import Path

from deeplab_edu.models.export import export_onnx, run_onnx

small = build_model("deeplabv3plus", backbone="mobilenet_v3_large", num_classes=data.num_classes).eval()
probe = torch.randn(1, 3, 64, 96)
onnx_path = export_onnx(small, Path(tempfile.mkdtemp()) / "deeplabv3plus.onnx", probe)
with torch.no_grad():
    eager = small(probe)["out"].numpy()
onnx_out = run_onnx(onnx_path, probe)
other_size = torch.randn(1, 3, 80, 80)
print(f"ONNX file {onnx_path.stat().st_size / 2**20:.1f} MiB; max |onnx - eager| = {abs(onnx_out - eager).max():.2e}")
print("another input size works too:", run_onnx(onnx_path, other_size).shape)

# %% tags=["remove-cell"]
assert abs(onnx_out - eager).max() < 1e-3
assert run_onnx(onnx_path, other_size).shape[-2:] == (80, 80)

# %% [markdown]
# ## Exercises
#
# ### Exercise 11.1
# A 360 x 480 CamVid image is evaluated in sliding windows of 256 x 256 with a stride of 170
# pixels (the last window of a row or column is shifted to end at the border). How many windows?

# %%
from deeplab_edu.exercises import check

answer_11_1 = ...
check("11.1", answer_11_1)

# %% tags=["hide-cell"]
# Solution: per axis ceil((size - crop) / stride) + 1
import math

check("11.1", (math.ceil((360 - 256) / 170) + 1) * (math.ceil((480 - 256) / 170) + 1))

# %% [markdown]
# ### Exercise 11.2
# Which mixed-precision type needs a gradient scaler, `"bf16"` or `"fp16"`?

# %%
answer_11_2 = ...
check("11.2", answer_11_2)

# %% tags=["hide-cell"]
# Solution
check("11.2", "fp16")

# %% [markdown]
# ### Exercise 11.3
# `torchrun --nproc_per_node=4 -m deeplab_edu train --batch-size 4 --grad-accum 2`: how many images
# contribute to each optimiser step?

# %%
answer_11_3 = ...
check("11.3", answer_11_3)

# %% tags=["hide-cell"]
# Solution: processes x per-process batch x accumulation steps
check("11.3", 4 * 4 * 2)

# %% tags=["remove-cell"]
assert check("11.1", 6) and check("11.2", "fp16") and check("11.3", 32)
