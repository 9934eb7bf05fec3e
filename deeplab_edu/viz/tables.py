"""Markdown tables from rows of dicts: how every chapter shows a computed table (no pandas needed).

:func:`markdown_table` is what a chapter displays; :func:`markdown_text` is the same table as text
(for a record, a file or a test).
"""

from __future__ import annotations

import numbers
from typing import Any, Mapping, Sequence

from ..choices import is_whole

__all__ = ["markdown_table", "markdown_text"]


def _cell(value: Any, digits: int | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, numbers.Real) and value != value:  # NaN: e.g. the IoU of a class in neither truth nor prediction
        return "n/a"
    if is_whole(value):
        return f"{value:,}"  # every table writes 524,800 alike
    if digits is not None and isinstance(value, float):
        return f"{int(value):,}" if value.is_integer() else f"{value:.{digits}g}"
    return str(value).replace("|", "\\|")  # a bare '|' would end the cell


def markdown_text(rows: Sequence[Mapping[str, Any]], digits: int | None = None) -> str:
    """Rows of dicts as Markdown table text; the first row's keys are the columns.

    Args:
        rows: the table rows; missing keys and ``None`` show as an en dash, NaN as "n/a".
        digits: significant digits for floats; ``None`` prints them as they are. Integers
            always have thousands separators (524,800).

    Raises:
        ValueError: if ``rows`` is empty.
    """
    if not rows:
        raise ValueError("rows is empty: nothing to tabulate")
    keys = list(rows[0])
    lines = ["| " + " | ".join(_cell(str(k), None) for k in keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(r.get(k), digits) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def markdown_table(rows: Sequence[Mapping[str, Any]], digits: int | None = None) -> Any:
    """Rows of dicts as a Markdown table to display in a notebook (and in the book).

    Args:
        rows: the table rows; the first row's keys are the columns, missing keys and ``None`` show
            as an en dash, NaN as "n/a" (e.g. the IoU of a class absent from the scenes).
        digits: significant digits for floats; ``None`` prints them as they are. Integers
            always have thousands separators (524,800).

    Returns:
        An ``IPython.display.Markdown`` object; the last line of a cell or ``display(...)`` shows
        it; its ``.data`` is the text :func:`markdown_text` returns.

    Raises:
        ValueError: if ``rows`` is empty.
    """
    from IPython.display import Markdown

    return Markdown(markdown_text(rows, digits=digits))
