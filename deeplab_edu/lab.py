"""The contents manager ``make lab`` starts JupyterLab with: Jupytext's, with each chapter opened as
its kernel will describe it, so that opening a chapter does not mark it changed.

A chapter is a Jupytext ``.py`` file, which keeps no ``language_info`` (the kernel's Python version
and the like: it would change with each machine). JupyterLab writes the kernel's ``language_info``
into the notebook as the kernel starts; where the notebook had none, that is a change, so Lab marked
every chapter as changed the moment it opened, and asked to save a chapter nobody had edited (a
JupyterLab trial, stop 62). :class:`CourseContentsManager` adds ipykernel's own ``language_info``
(:attr:`ipykernel.ipkernel.IPythonKernel.language_info`, the kernel Lab starts runs in the same
``.venv``) to a notebook that has a Python kernel and none, as it is read; Jupytext leaves it out of
the ``.py`` again when the chapter is saved.

``make setup`` (and Binder's ``postBuild``) name it in the ``.venv``'s Jupyter server configuration
(:func:`deeplab_edu.book.write_lab_server_config`), so every ``jupyter lab`` of the ``.venv`` starts with it;
``tests/test_lab.py`` opens a chapter in ``make lab``'s Lab and checks that it is not marked changed. It needs
the ``course`` extra's ``jupytext`` and ``ipykernel`` (``make setup`` installs them).
"""

from __future__ import annotations

import copy
from typing import Any

from jupytext import AsyncTextFileContentsManager

__all__ = ["CourseContentsManager", "kernel_language_info"]


def kernel_language_info() -> dict[str, Any]:
    """The ``language_info`` an IPython kernel of this Python reports (ipykernel's own), a new copy."""
    from ipykernel.ipkernel import IPythonKernel

    return copy.deepcopy(dict(IPythonKernel.language_info))


class CourseContentsManager(AsyncTextFileContentsManager):  # type: ignore[misc]  # jupytext's, untyped
    """Jupytext's asynchronous contents manager; a notebook read with a Python kernel and no
    ``language_info`` gets the kernel's (:func:`kernel_language_info`), so Lab opens it unchanged."""

    async def get(self, path: str, content: bool = True, type: str | None = None,  # noqa: A002 - the API's name
                  format: str | None = None, **kwargs: Any) -> dict[str, Any]:  # noqa: A002
        """The model of ``path``, as Jupytext's contents manager reads it, with ``language_info`` added to a
        notebook's metadata where it has a Python kernel and none."""
        model: dict[str, Any] = await super().get(path, content=content, type=type, format=format, **kwargs)
        notebook = model.get("content") if model.get("type") == "notebook" else None
        if isinstance(notebook, dict):
            metadata = notebook.setdefault("metadata", {})
            kernelspec = metadata.get("kernelspec") or {}  # absent, or null in a hand-written file
            jupytext = metadata.get("jupytext") or {}  # a script without a kernelspec: its language (an .R file)
            language = kernelspec.get("language") or jupytext.get("main_language") or "python"
            if "language_info" not in metadata and str(language).lower() == "python":
                metadata["language_info"] = kernel_language_info()
        return model
