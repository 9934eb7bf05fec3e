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
#     chapter: 8
#     title: "DeepLabv3: assemble and train"
#     cpu_minutes: 0
# ---

# %% [markdown]
# # 08 · DeepLabv3: assemble and train
#
# ```{note}
# **Placeholder.** This chapter has not been written yet; it is planned in the project's issue
# #7. Nothing on this page is course content.
# ```
