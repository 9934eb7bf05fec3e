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
#     chapter: 6
#     title: "Data: procedural scenes and real data sets"
#     cpu_minutes: 0
# ---

# %% [markdown]
# # 06 · Data: procedural scenes and real data sets
#
# ```{note}
# **Placeholder.** This chapter has not been written yet; it is planned in the project's issue
# #6. Nothing on this page is course content.
# ```
