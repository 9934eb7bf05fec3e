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
#     chapter: 7
#     title: "DeepLab v1/v2 and the dense CRF"
#     cpu_minutes: 0
# ---

# %% [markdown]
# # 07 · DeepLab v1/v2 and the dense CRF
#
# ```{note}
# **Placeholder.** This chapter has not been written yet; it is planned in the project's issue
# #5. Nothing on this page is course content.
# ```
