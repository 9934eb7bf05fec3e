"""Progress bars: :func:`progress_bar`, the one way the package makes them.

Every helper that loops for long takes ``progress: bool``. ``progress=False`` turns its bar off;
``progress=True`` leaves the decision to tqdm and its ``TQDM_*`` environment variables, so that
``TQDM_DISABLE=1`` (a log file, a CI job) silences every bar of the package. Passing
``disable=not progress`` to tqdm would not: an explicit keyword wins over tqdm's environment
defaults (tqdm >= 4.66, ``tqdm.utils.envwrap``).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, TypeVar

__all__ = ["progress_bar"]

T = TypeVar("T")


def progress_bar(iterable: Iterable[T] | None = None, *, progress: bool = True, **kwargs: Any) -> Any:
    """A ``tqdm.auto.tqdm`` bar (a widget in Jupyter, text in a terminal), off when ``progress`` is
    False or the environment says ``TQDM_DISABLE=1``.

    Args:
        iterable: what to iterate over, or None for a bar updated by hand (``total=...``,
            ``bar.update(n)``).
        progress: False turns the bar off whatever the environment says.
        **kwargs: tqdm's own (``desc``, ``total``, ``leave``, ``unit``...), except ``disable``.

    Returns:
        The tqdm bar; ``bar.disable`` says whether it is shown.

    Raises:
        TypeError: ``disable`` is given (use ``progress``).
    """
    from tqdm.auto import tqdm

    if "disable" in kwargs:
        raise TypeError("progress_bar takes progress=..., not disable=...")
    if not progress:
        kwargs["disable"] = True
    if iterable is not None and not hasattr(iterable, "__next__"):
        # tqdm.auto's class (tqdm.asyncio's) calls iter() on an iterable when the bar is made and the loop
        # calls it again: a DataLoader started its workers twice (tqdm/tqdm#1598). One iterator, made here.
        if "total" not in kwargs and hasattr(iterable, "__len__"):
            with contextlib.suppress(TypeError):
                kwargs["total"] = len(iterable)  # type: ignore[arg-type]
        iterable = iter(iterable)
    return tqdm(iterable, **kwargs)
