"""Figures and interactive widgets used by the notebooks, one module per chapter topic.

``images`` holds what every chapter shares: the sample photograph (no download needed),
colouring a label map with a palette, and overlays. Imported in IPython or Jupyter, the package
gives every matplotlib figure a text description as its plain-text form
(:func:`~deeplab_edu.viz.alt_text.register_alt_text`), which the book uses as the image's alt text.
"""

from .alt_text import register_alt_text

register_alt_text()
