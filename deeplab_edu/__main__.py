"""``python -m deeplab_edu train|eval|predict|bench``: the same as the ``deeplab-edu`` command."""

from .cli import main

raise SystemExit(main())
