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
#     cpu_minutes: 0
# ---

# %% [markdown]
# # 11 · Real data on a GPU, inference strategies and export
#
# ```{note}
# **Placeholder.** This chapter has not been written yet; it is planned in the project's issue
# #7. Nothing on this page is course content.
# ```
