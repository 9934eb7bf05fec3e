"""Run profiles and the compute device, decided in one place.

Every notebook and the training engine ask this module which *profile* they run
in, instead of reading environment variables themselves:

``smoke``
    CI and quick checks: tiny images, a handful of iterations; every notebook
    finishes in seconds.
``cpu``
    A classroom laptop without a GPU: minutes per notebook.
``gpu``
    The full recipes (real crop sizes, long schedules) on a CUDA GPU.

The profile comes from the environment variable ``DEEPLAB_EDU_PROFILE``. When it
is unset (or ``auto``) the profile is ``gpu`` if CUDA is available and ``cpu``
otherwise.

>>> from deeplab_edu.config import profile, choose
>>> steps = choose(smoke=5, cpu=300, gpu=30_000)   # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal, TypeVar

if TYPE_CHECKING:  # torch is imported where it is used: `import deeplab_edu` (and the CLI's start) stays light
    import torch

__all__ = ["ENV_VAR", "PROFILES", "Profile", "profile", "device", "choose", "is_smoke"]

ENV_VAR = "DEEPLAB_EDU_PROFILE"
DEVICE_ENV_VAR = "DEEPLAB_EDU_DEVICE"
PROFILES: tuple[str, ...] = ("smoke", "cpu", "gpu")
Profile = Literal["smoke", "cpu", "gpu"]
T = TypeVar("T")


def profile() -> Profile:
    """Return the active profile: ``DEEPLAB_EDU_PROFILE`` or the automatic default.

    Raises:
        ValueError: if the variable holds something other than a known profile
            or ``auto``, naming the variable and the allowed values.
    """
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in ("", "auto"):
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    if value not in PROFILES:
        raise ValueError(
            f"{ENV_VAR}={value!r} is not a profile; use one of {', '.join(PROFILES)} "
            "or leave it unset for the automatic choice (gpu if CUDA is available, else cpu)."
        )
    return value  # type: ignore[return-value]


def is_smoke() -> bool:
    """True in the ``smoke`` profile (CI): skip anything slow."""
    return profile() == "smoke"


def device() -> torch.device:
    """The device to compute on.

    ``DEEPLAB_EDU_DEVICE`` (e.g. ``cpu``, ``cuda:1``, ``mps``) overrides; otherwise
    CUDA when available, else the CPU. The ``smoke`` profile always uses the CPU so
    that CI results do not depend on the machine.
    """
    import torch

    forced = os.environ.get(DEVICE_ENV_VAR, "").strip()
    if forced:
        return torch.device(forced)
    if profile() != "smoke" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def choose(*, smoke: T, cpu: T, gpu: T) -> T:
    """Pick the value for the active profile, e.g. ``choose(smoke=2, cpu=200, gpu=30000)``."""
    return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[profile()]
