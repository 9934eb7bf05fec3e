"""``python -m deeplab_edu.data``: how fast the procedural scene generator is on one CPU thread."""

from .procedural import main

main()
