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
#     chapter: 10
#     title: "Reproducing the papers' findings"
#     cpu_minutes: 0
# ---

# %% [markdown]
# # 10 · Reproducing the papers' findings
#
# ```{note}
# **Placeholder.** This chapter has not been written yet; it is planned in the project's issue
# #7. Nothing on this page is course content.
# ```
