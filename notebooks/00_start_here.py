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
#     chapter: 0
#     title: Start here
#     cpu_minutes: 1
# ---

# %% [markdown]
# # 00 · Start here
#
# Welcome to **deeplab-edu**, a course on semantic segmentation with *atrous* (dilated)
# convolution. It starts from one equation and ends with DeepLab v2, v3 and v3+ trained for
# real, with the papers' findings reproduced as numbers you measure yourself.
#
# **Learning objectives of this page**
#
# - know what the course teaches and in which order;
# - run a notebook in the profile that fits your machine (`smoke`, `cpu`, `gpu`);
# - check your environment, and answer a first checked exercise.
#
# **Helpers introduced:** `deeplab_edu.config` (profile and device),
# `deeplab_edu.records.environment` (the environment report),
# `deeplab_edu.exercises.check` (the exercise checker).

# %% [markdown]
# ## What you will learn, and in what order
#
# Semantic segmentation gives every pixel a class. Classification networks shrink the image
# by a factor of 32 on the way to their last feature map; a segmentation network needs dense,
# full-resolution answers. DeepLab's answer is **atrous convolution**: eq. (1) of DeepLabv3
# {cite:p}`chen2017deeplabv3`,
#
# $$
# y[\mathbf{i}] = \sum_{\mathbf{k}} x[\mathbf{i} + r \cdot \mathbf{k}]\; w[\mathbf{k}],
# $$
#
# a convolution whose filter taps are spread $r$ pixels apart. With it, a network can keep its
# feature maps dense (a small *output stride*) without losing its receptive field or adding
# parameters.
#
# | # | Chapter | What it teaches |
# |---|---------|-----------------|
# | 01 | Atrous convolution | eq. (1) by hand; the upsampled-filter view; output sizes |
# | 02 | Receptive fields | the recurrences; theoretical vs effective receptive field; gridding |
# | 03 | Output stride | dilated ResNets at output stride 32/16/8; multi-grid; cost |
# | 04 | Boundary degeneration | why a 3x3 filter with a huge rate becomes 1x1 (DeepLabv3 Fig. 4); image pooling |
# | 05 | ASPP | DeepLab v2's summed branches vs v3's parallel branches + image pooling |
# | 06 | Data | the offline procedural scenes; VOC, CamVid and Cityscapes |
# | 07 | DeepLab v1/v2 and the CRF | LargeFOV, ASPP-L, the fully connected CRF |
# | 08 | DeepLabv3 | assemble it and train it |
# | 09 | DeepLabv3+ | the decoder and depthwise-separable convolutions |
# | 10 | Reproducing the papers | ablations with measured numbers |
# | 11 | Real data on a GPU | inference strategies, export |

# %% [markdown]
# ## How to run the course
#
# - `make lab` sets everything up (a local `.venv` with pinned versions) and opens JupyterLab on
#   `notebooks/`. The notebooks are plain Python files in Jupytext's `py:percent` format; they
#   open as notebooks.
# - `make book` executes every notebook and writes this book to `book/_build/html`.
# - `make test` runs the tests, including every notebook in the `smoke` profile.
#
# ### Profiles
# Heavy notebooks read one environment variable, `DEEPLAB_EDU_PROFILE`:
#
# | profile | for | size of the work |
# |---------|-----|------------------|
# | `smoke` | CI and quick checks | seconds per notebook, tiny images |
# | `cpu` | a laptop in a classroom | minutes per notebook |
# | `gpu` | a CUDA GPU | the papers' recipes |
#
# Unset, the profile is `gpu` when PyTorch sees a CUDA device and `cpu` otherwise. Set it before
# starting JupyterLab, e.g. `DEEPLAB_EDU_PROFILE=smoke make lab`. Notebooks never read the variable
# themselves: they ask `deeplab_edu.config`, as below.

# %%
from deeplab_edu import config
from deeplab_edu.records import environment

env = environment()
print(f"profile : {config.profile()}  (from ${config.ENV_VAR}, automatic when unset)")
print(f"device  : {config.device()}")
print(f"python  : {env['python']}")
for name, ver in env["libraries"].items():
    print(f"{name:12s}: {ver or 'not installed'}")

# %% tags=["remove-cell"]
# Checks run by the tests (hidden in the book).
assert config.profile() in config.PROFILES
assert env["libraries"]["torch"] is not None and env["libraries"]["torchvision"] is not None

# %% [markdown]
# `config.choose` is how a notebook sizes its work for the profile. Here is what a training
# chapter might ask for:

# %%
iterations = config.choose(smoke=3, cpu=300, gpu=30_000)
print(f"In the '{config.profile()}' profile a training cell would run {iterations} iterations.")

# %% [markdown]
# ## How the exercises work
#
# Each chapter ends with exercises. You write your answer in place of `...` and call
# `check("CC.N", answer)`. The checker says whether it is right, and if not, *what* is wrong.
# Running a notebook with unanswered exercises is fine: the checker says "not answered yet".
# In the book the solutions are hidden behind a "Click to show" button.
#
# ### Exercise 00.1
# A network halves the resolution of its input three times. What is its output stride?

# %%
from deeplab_edu.exercises import check

answer_00_1 = ...  # your answer here
check("00.1", answer_00_1)

# %% tags=["hide-cell"]
# Solution
check("00.1", 2**3)

# %% [markdown]
# ### Exercise 00.2
# Which profile does CI use to run the notebooks?

# %%
answer_00_2 = ...
check("00.2", answer_00_2)

# %% tags=["hide-cell"]
# Solution
check("00.2", "smoke")

# %% [markdown]
# ### Exercise 00.3
# DeepLab trains on $513 \times 513$ crops. How large (per side) is the feature map at output
# stride 16? (Each stride-2 layer of a ResNet maps an odd size $n$ to $(n+1)/2$.)

# %%
answer_00_3 = ...
check("00.3", answer_00_3)

# %% tags=["hide-cell"]
# Solution: 513 -> 257 -> 129 -> 65 -> 33 (four halvings)
size = 513
for _ in range(4):
    size = (size + 1) // 2
check("00.3", size)

# %% tags=["remove-cell"]
assert check("00.1", 8) and check("00.2", "smoke") and check("00.3", size)
assert not check("00.1", 3)
