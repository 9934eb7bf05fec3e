# ---
# jupyter:
#   deeplab_edu:
#     chapter: 0
#     cpu_minutes: 1
#     prerequisites: []
#     title: Start here
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
# # 00 · Start here
#
# *About 1 min on a 2-core machine in the `cpu` profile (the table under "For teachers" below lists every chapter's time).*
#
# Welcome to **deeplab-edu**, a course on semantic segmentation with *atrous* (dilated)
# convolution. It starts from one equation and ends with DeepLab v2 (with its CRF), v3 and v3+
# trained for real: on your laptop, with a teaching-scale backbone and results averaged over
# several seeds (with error bars); with the papers' ResNet-101 recipes when you have a GPU. The
# papers' findings become numbers you measure yourself.
#
# **Learning objectives of this page**
#
# - know what the course teaches and in which order;
# - run a notebook in the profile that fits your machine (`smoke`, `cpu`, `gpu`);
# - check your environment, and answer a first checked exercise.
#
# **Helpers introduced:** `deeplab_edu.config` (your profile and device; `profile_line`, the first line of chapters 03 and 05 to 11),
# `deeplab_edu.records.environment` (the environment report) and `deeplab_edu.exercises` (`check`
# your answer, ask for a `hint`; this chapter's exercise cells also call `solved` and
# `measured_and_predicted`). For teachers: `deeplab_edu.book` (`chapter_headers`: each chapter's time;
# `chapter_workload`: its words of prose and exercises; `course_runs_minutes`: what `make course-runs` takes;
# `NOTEBOOK_DIR`: where the chapters are),
# `deeplab_edu.viz.training` (`course_runs`, `camvid_run`: the runs `make course-runs` trains before
# class), `deeplab_edu.records` (`RESULTS_DIR`, `load_record`: the recorded timings) and
# `deeplab_edu.viz.tables.markdown_table` (a computed table shown as Markdown).

# %% [markdown]
# ## What you will learn, and in what order
#
# Semantic segmentation gives every pixel a class. Classification networks shrink the image
# by a factor of 32 on the way to their last feature map; a segmentation network needs dense,
# full-resolution answers (fully convolutional networks upsample them back {cite:p}`long2015fcn`). DeepLab's answer is **atrous convolution**: eq. (1) of DeepLabv3
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
# | 05 | ASPP | DeepLab v2's summed branches vs v3's concatenated branches + image pooling |
# | 06 | Data | the offline procedural scenes; VOC, CamVid and Cityscapes |
# | 07 | DeepLab v1/v2 and the CRF | LargeFOV, ASPP-L, the fully connected CRF |
# | 08 | DeepLabv3 | assemble it and train it |
# | 09 | DeepLabv3+ | the decoder and depthwise-separable convolutions |
# | 10 | Reproducing the papers | ablations over seeds with intervals; designed experiments: when image pooling and multi-grid matter |
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
# | `gpu` | a CUDA GPU | ResNet backbones, larger images, longer runs on the same scenes |
#
# Unset, the profile is `gpu` when PyTorch sees a CUDA device and `cpu` otherwise. Set it before
# starting JupyterLab, e.g. `DEEPLAB_EDU_PROFILE=smoke make lab`. Notebooks never read the variable
# themselves: they ask `deeplab_edu.config`, as below. Chapters 03 and 05 to 11 print their profile
# first (`config.profile_line()`); in the `smoke` profile the line adds that the numbers mean
# nothing, and on a CPU that other programs keep busy, that fewer threads (`torch.set_num_threads`
# with the number it gives) can run several times faster, since PyTorch's threads wait for each other.

# %%
from deeplab_edu import config
from deeplab_edu.records import environment

env = environment()
print(f"{'profile':27s}: {config.profile()}  (from ${config.ENV_VAR}, automatic when unset)")
print(f"{'device':27s}: {config.device()}")
print(f"{'python':27s}: {env['python']}")
for name, ver in env["libraries"].items():
    print(f"{name:27s}: {ver or 'not installed'}")

# %% tags=["remove-cell"] jupyter={"source_hidden": true}
# Checks run by the tests (hidden in the book).
with config.text_checks():
    assert config.profile() in config.PROFILES
    assert env["libraries"]["torch"] is not None and env["libraries"]["torchvision"] is not None

# %% [markdown]
# `config.choose` is how a notebook sizes its work for the profile. Here is what a training
# chapter might ask for:

# %%
iterations = config.choose(smoke=3, cpu=300, gpu=30_000)
print(f"In the '{config.profile()}' profile a training cell would run {iterations} iterations.")

# %% [markdown]
# ## For teachers: before class
#
# Every chapter's header states the minutes it takes in the `cpu` profile on the course's 2-core cloud machine,
# listed below from the headers themselves with the earlier chapters each builds on (its
# prerequisites, chapter 00 aside: a class can start at any chapter whose prerequisites it has
# covered). The minutes are upper bounds: each holds the slowest of the
# course's recorded timings of every chapter (`benchmarks/notebook_times.py`, whose records name
# the commit and machine), taken one notebook at a time in a slow hour of that machine; the line
# under the table says how much less the long chapters took in their fastest recorded run. These
# minutes are the time the chapter's cells take to *run*; reading and exercises come on top, so the
# table also counts each chapter's prose (the words of its text cells) and its exercises, and gives
# the reading time at 100 to 200 words a minute: our assumption for technical prose with formulas,
# below the 175 to 300 words a minute at which most adults read ordinary non-fiction silently
# (238 on average, {cite:t}`brysbaert2019reading`'s meta-analysis). The course
# assumes Python, NumPy and PyTorch basics (tensors, `nn.Module`, a training loop) and what a
# convolutional network is; chapter 01 starts from the convolution itself. Chapters 08 and 09 train their models from scratch,
# the longest steps of the course; chapter 10 reuses those runs (and reads its many-seed table
# from a recorded run), and chapter 09 reuses chapter 08's first run. Chapter 11 trains a model on
# CamVid when a copy of it is present (its minutes count that; without a copy it trains nothing and
# takes far less).
# A training cell that finds a finished run loads it instead of training, so one command before
# class, `make course-runs` in the repository's folder (it trains the runs printed below, one
# after the other, and skips those already finished; it takes less than the minutes of chapters
# 08, 09 and 11 added up, printed below, since their training is most of those chapters; run it
# again after an interruption and it resumes), turns the training cells into a few-second load. The runs are in the clone's `runs/` folder: run the command on every
# laptop, or copy that folder into each clone. Nothing needs a GPU or the network; the real data sets of chapters
# 06 and 11 are not bundled, and those sections say what they show without them.

# %%
from IPython.display import display

from deeplab_edu.book import NOTEBOOK_DIR, chapter_headers, chapter_workload, course_runs_minutes
from deeplab_edu.records import RESULTS_DIR, load_record
from deeplab_edu.viz.tables import markdown_table
from deeplab_edu.viz.training import camvid_run, course_runs

workload = {h["source"]: chapter_workload(NOTEBOOK_DIR / h["source"]) for h in chapter_headers()}
display(markdown_table([{"chapter": f"{h['chapter']:02d}", "title": h["title"],
                        "builds on": ", ".join(f"{c:02d}" for c in h["prerequisites"]) or "-",
                        "minutes to run (cpu profile)": f"{h['cpu_minutes']:g}",
                        "words of prose": f"{workload[h['source']]['words']:,}",
                        "reading (min)": f"{workload[h['source']]['words'] / 200:.0f}-{workload[h['source']]['words'] / 100:.0f}",
                        "exercises": workload[h["source"]]["exercises"]} for h in chapter_headers()]))
print("Before class, `make course-runs` (or `deeplab-edu course-runs`) trains, from the repository's folder,")
print("the runs chapters 08-10 load:")
for spec in course_runs("cpu"):
    print(spec.command(width=78))
print("and, with a CamVid copy (chapter 11), the run it loads:\n" + camvid_run("cpu").command(width=78))
with_camvid, without = course_runs_minutes(with_camvid=True), course_runs_minutes(with_camvid=False)
if with_camvid is not None and without is not None:  # (a teacher who dropped chapter 08, 09 or 11: no bound)
    print(f"On the course's 2-core VM this takes less than {with_camvid:g} minutes "
          f"(chapters 08, 09 and 11 added up), less than {without:g} without CamVid.")
fastest: dict[str, float] = {}  # each chapter's fastest recorded run, in minutes, over every timing record
for path in sorted(RESULTS_DIR.glob("notebook_times_cpu*.json")):
    for row in load_record(path)["results"]["chapters"]:
        fastest[row["source"]] = min(fastest.get(row["source"], float("inf")), row["seconds"] / 60)
long_chapters = [h for h in chapter_headers() if h["cpu_minutes"] >= 5 and h["source"] in fastest]
shares = [fastest[h["source"]] / h["cpu_minutes"] for h in long_chapters]
names = ", ".join(f"{h['chapter']:02d}" for h in long_chapters)
print(f"The long chapters ({names}) took {min(shares):.0%} to {max(shares):.0%} of their stated minutes in their "
      "fastest recorded run.")

# %% [markdown]
# ## How the exercises work
#
# Each chapter ends with exercises. You write your answer in place of `...` and call
# `check("CC.N", answer)`. The checker says whether it is right, and if not, *what* is wrong.
# Running a notebook with unanswered exercises is fine: the checker says "not answered yet".
# The solutions are hidden: behind a "Show code cell content" button in the book, in a collapsed cell in
# JupyterLab (click the cell's left bar to open it); a class's copy of the chapters
# (`make student-copy`) may leave them out. Running all cells runs them too, but in your
# notebook they print nothing (their last line, `solved(...)`, only checks them), so no answer
# appears until you open one; after a wrong answer, a hint comes with your next try, or at once from
# `hint("CC.N")` after `from deeplab_edu.exercises import hint` (some hints come in two steps: the
# idea first, the formula with the next try or call). There are three kinds of exercise:
#
# - **a value**: compute one number, shape or name, by hand first;
# - **predict, then measure**: write down your prediction, check it, then run the cell below it,
#   which measures the same thing with the package and prints both (before you predict, it keeps
#   the measurement to itself: it is the answer);
# - **write a function**: fill in a small function; the checker runs it against the package's own
#   implementation on edge cases and random inputs, and recognises the typical mistakes; it refuses
#   a function that only calls the package's own version. A function still running after a minute
#   (a `while` loop whose condition never changes, say) is stopped, and the checker tells you which
#   input it was working on. (Where no timer can interrupt it, on Windows or outside the
#   notebook's main thread, the check stops between two calls: a loop that never returns from one
#   call needs the kernel's stop button.)
#
# ### Exercise 00.1
# A network halves the resolution of its input three times. What is its output stride?

# %%
from deeplab_edu.exercises import check, solved

answer_00_1 = ...  # your answer here
check("00.1", answer_00_1)

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
solved("00.1", 2**3)

# %% [markdown]
# ### Exercise 00.2 (predict, then measure)
# Suppose you start JupyterLab on this machine without setting `DEEPLAB_EDU_PROFILE`. How many
# iterations would the `config.choose(smoke=3, cpu=300, gpu=30_000)` cell above ask for? Predict
# from the rule in "Profiles", then run the cell after this one, which measures it.

# %%
prediction_00_2 = ...  # your prediction here
check("00.2", prediction_00_2)

# %% [markdown]
# **Exercise 00.2, measured.** The same call with the variable set to `auto` (the same as unset),
# for this one call:

# %% tags=["hide-output"]
import os
from unittest import mock

from deeplab_edu.exercises import measured_and_predicted

with mock.patch.dict(os.environ, {config.ENV_VAR: "auto"}):
    iterations_00_2 = config.choose(smoke=3, cpu=300, gpu=30_000)
print(measured_and_predicted(iterations_00_2, prediction_00_2, fmt=",.0f"))

# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# unset, the profile is gpu where PyTorch sees a CUDA device, else cpu; smoke is only chosen explicitly.
solved("00.2", iterations_00_2)

# %% [markdown]
# ### Exercise 00.3 (write a function)
# DeepLabv3 trains on $513 \times 513$ crops. Write `feature_size(n, output_stride)`: the side of
# the feature map of a ResNet for an $n \times n$ input at output stride 4, 8, 16 or 32. A ResNet
# halves the resolution $\log_2(\text{output stride})$ times, and each stride-2 layer maps a side
# $n$ to $\lceil n/2 \rceil$: an odd size rounds *up*. Try `feature_size(513, 16)` yourself first.


# %%
def feature_size(n: int, output_stride: int) -> int:
    ...  # your code here


check("00.3", feature_size)


# %% tags=["hide-cell"] jupyter={"source_hidden": true}
# Solution
# one ceil(n / 2) per halving; 513 -> 257 -> 129 -> 65 -> 33 at output stride 16
def feature_size_solution(n: int, output_stride: int) -> int:
    for _ in range(output_stride.bit_length() - 1):  # log2 of a power of two
        n = (n + 1) // 2
    return n


solved("00.3", feature_size_solution, f"513 at output stride 16 -> {feature_size_solution(513, 16)}")
