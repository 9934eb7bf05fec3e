"""A teacher's answer key: every exercise's reference answer, computed by the package's own checker.

``python -m deeplab_edu.exercises`` prints one Markdown table row per exercise (id, kind, title,
answer), ``--chapter 08`` only chapter 08's (``--chapter 08 09``: both), ``--out key.md`` writes the
table to a file. The
answers are the ones :func:`~deeplab_edu.exercises.check` compares with (a function exercise's
answer is the package function the learner's is compared with); an answer that needs what this
machine lacks (chapter 10's findings record, a CamVid copy) says so in its row instead; an answer that
another machine computes otherwise, or an exercise that also asks to explain, adds a note in brackets
(the exercise's ``key_note``: for the latter a model explanation). The book
shows each solution's code, not always its value: this is where a teacher marking by hand finds it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..viz.tables import markdown_text
from ._core import Exercise, _brief, all_exercises


def answer_text(ex: Exercise) -> str:
    """The reference answer of ``ex`` as one line: a value, or for a function exercise the
    package function it is checked against; why not, when this machine cannot compute it."""
    try:
        answer = ex.solution()
    except Exception as err:  # a record or a data set this machine lacks: say which, keep the key whole
        return f"(not computed here: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    if ex.kind == "function" and callable(answer):
        from ..book import NOTEBOOK_DIR

        chapter = next(iter(sorted(NOTEBOOK_DIR.glob(ex.key.split(".")[0] + "_*.py"))), None)
        where = f"`notebooks/{chapter.name}`" if chapter is not None else "the chapter"
        return (f"a function: the hidden solution cell of {where} (a student copy has none); the checker's own is "
                f"`{getattr(answer, '__module__', '?')}.{getattr(answer, '__qualname__', answer)}`")
    if isinstance(answer, (np.ndarray, torch.Tensor)):  # a count map: every value, row by row
        text = str(np.asarray(answer.detach().cpu() if isinstance(answer, torch.Tensor) else answer).tolist())
    else:
        text = _brief(answer, limit=120)
    return f"{text} ({ex.key_note})" if ex.key_note else text


def answer_key(chapter: str | Sequence[str] | None = None) -> str:
    """The answer key as a Markdown table, every chapter's or only ``chapter``'s (``"08"`` or ``"8"``, or
    several: ``["08", "09"]``), in the order of the exercises.

    Raises:
        ValueError: a chosen chapter has no exercises.
    """
    exercises = all_exercises()
    chapters = None if chapter is None else [chapter] if isinstance(chapter, str) else list(chapter)
    # "4" is chapter 04 (a teacher's trial was told that chapter '4' has no exercises)
    chapters = None if chapters is None else [c.zfill(2) if str(c).isdigit() else c for c in map(str, chapters)]
    having = sorted({k.split(".")[0] for k in exercises})
    empty = [c for c in chapters or () if c not in having]
    if empty:
        raise ValueError(f"no exercises in chapter {', '.join(map(repr, empty))}; chapters with exercises: "
                         f"{', '.join(having)}")
    chosen = {k: ex for k, ex in exercises.items() if chapters is None or k.split(".")[0] in chapters}
    rows = [{"exercise": key, "kind": ex.kind, "what it asks": ex.title, "answer": answer_text(ex)}
            for key, ex in chosen.items()]
    return markdown_text(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    """``python -m deeplab_edu.exercises [--chapter NN [NN ...]] [--out FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m deeplab_edu.exercises",
                                     description="A teacher's answer key: every exercise's reference answer.")
    parser.add_argument("--chapter", nargs="+", action="extend", metavar="NN",
                        help="only these chapters' exercises, e.g. 08 (or 8) or 08 09 (may be given more than once)")
    parser.add_argument("--out", type=Path, help="write the Markdown table to this file instead of printing it")
    args = parser.parse_args(argv)
    try:
        table = answer_key(args.chapter)
    except ValueError as err:
        parser.error(str(err))
    if args.out is None:
        print(table, end="")
    else:
        if args.out.is_dir():
            parser.error(f"--out {args.out} is a folder: name a file, e.g. {args.out / 'answer_key.md'}")
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(table, encoding="utf-8")
        except OSError as err:
            parser.error(f"could not write --out {args.out}: {err.strerror or err}")
        print(f"answer key of {table.count(chr(10)) - 2} exercises written to {args.out}")


if __name__ == "__main__":
    main()
