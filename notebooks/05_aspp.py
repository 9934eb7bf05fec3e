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
#     chapter: 5
#     title: "ASPP: from DeepLab v2 to v3"
#     cpu_minutes: 0
# ---

# %% [markdown]
# # 05 · ASPP: from DeepLab v2 to v3
#
# ```{note}
# **Placeholder.** This chapter has not been written yet; it is planned in the project's issue
# #5. Nothing on this page is course content.
# ```
