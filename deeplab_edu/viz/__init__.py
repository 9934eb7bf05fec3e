"""Figures and interactive widgets used by the notebooks, one module per chapter topic.

``images`` holds what every chapter shares: the sample photograph (no download needed),
colouring a label map with a palette, and overlays.
"""
