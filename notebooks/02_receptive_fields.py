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
#     chapter: 2
#     title: "Receptive fields"
#     cpu_minutes: 0
# ---

# %% [markdown]
# # 02 · Receptive fields
#
# ```{note}
# **Placeholder.** This chapter has not been written yet; it is planned in the project's issue
# #3. Nothing on this page is course content.
# ```
