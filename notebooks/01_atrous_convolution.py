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
#     chapter: 1
#     title: "Atrous convolution"
#     cpu_minutes: 0
# ---

# %% [markdown]
# # 01 · Atrous convolution
#
# ```{note}
# **Placeholder.** This chapter has not been written yet; it is planned in the project's issue
# #3. Nothing on this page is course content.
# ```
