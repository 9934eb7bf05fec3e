"""The names the package accepts: models, backbones, output strides, data sets and optimisers; and the
optional packages some of its features need (:func:`require_packages`); and the checks of arguments that
many modules share (:func:`whole_number`, :func:`require_tensor`).

One torch-free module, so that the settings' checks (:func:`deeplab_edu.engine.config.validate`)
and the command line's ``--help`` list them without importing torch; the modules that build each
thing (:func:`~deeplab_edu.models.build_model`, :func:`~deeplab_edu.models.build_backbone`,
:func:`~deeplab_edu.data.build_dataset`, :func:`~deeplab_edu.engine.schedule.build_optimizer`)
import their names from here.
"""

from __future__ import annotations

import numbers
from typing import TypeGuard

__all__ = ["BACKBONES", "DATASETS", "MODELS", "OPTIMIZERS", "OUTPUT_STRIDES", "OPTIONAL_PACKAGES", "unknown_model",
           "require_packages", "install_advice", "is_whole", "whole_number", "require_tensor", "dataset_name"]

#: DeepLab v1 (LargeFOV), v2 (ASPP), v3 and v3+ (:func:`~deeplab_edu.models.build_model`).
MODELS = ("deeplabv1", "deeplabv2", "deeplabv3", "deeplabv3plus")
#: The backbones :func:`~deeplab_edu.models.build_backbone` builds.
BACKBONES = ("resnet50", "resnet101", "tiny_resnet", "mobilenet_v3_large", "vgg16")
#: The output strides (input side / feature-map side) a backbone can be set to (DeepLabv3 sec. 3.1).
OUTPUT_STRIDES = (8, 16, 32)
#: The names :func:`~deeplab_edu.data.build_dataset` knows.
DATASETS = ("procedural", "voc", "camvid", "cityscapes", "folder")
#: Other names of the data sets, as :func:`dataset_name` folds them: Pascal VOC's whole name.
_DATASET_ALIASES = {"pascalvoc": "voc"}
#: The optimisers the engine builds (:func:`~deeplab_edu.engine.schedule.build_optimizer`).
OPTIMIZERS = ("sgd", "adamw")
#: The optional packages (the ``course`` and ``dev`` extras) a feature imports, by module name: their ``pip install``
#: names.
OPTIONAL_PACKAGES = {"jupytext": "jupytext", "onnx": "onnx", "onnxscript": "onnxscript", "onnxruntime": "onnxruntime",
                     "tensorboard": "tensorboard", "segmentation_models_pytorch": "segmentation-models-pytorch"}


def dataset_name(name: str) -> str:
    """The name of :data:`DATASETS` that ``name`` means, case, ``-`` and ``_`` aside (``"PROCEDURAL"``,
    ``"Cam-Vid"``; ``"pascal_voc"`` is ``"voc"``): the one rule of :func:`~deeplab_edu.data.build_dataset`,
    :class:`~deeplab_edu.engine.config.TrainConfig` and the command line. A name of no data set comes back
    lower-cased (:func:`~deeplab_edu.data.build_dataset` then refuses it by name).
    """
    key = name.lower().replace("-", "").replace("_", "")
    key = _DATASET_ALIASES.get(key, key)
    return key if key in DATASETS else name.lower()


def require_packages(*modules: str, what: str) -> None:
    """Check, without importing them, that ``modules`` are installed (before the work that needs them).

    Raises:
        ImportError: naming every missing module, ``what`` needs it, and the ``pip install`` that installs it
            (:data:`OPTIONAL_PACKAGES`' name where it has one).
    """
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"{what} needs {' and '.join(missing)}, not installed here: {install_advice(*missing)}")


def install_advice(*modules: str) -> str:
    """How to install ``modules``: "pip install onnx (or the package's dev extra: pip install -e '.[dev]')",
    by their :data:`OPTIONAL_PACKAGES` names (a module's own name where it has none)."""
    names = " ".join(OPTIONAL_PACKAGES.get(m, m) for m in modules)
    return f"pip install {names} (or the package's dev extra: pip install -e '.[dev]')"


def unknown_model(name: object) -> str:
    """The message for a model name that is not one of :data:`MODELS`: the names, and the one meant
    when ``name`` spells it as the papers do (``"DeepLabv3+"``, ``"deeplab_v3"``)."""
    spelled = str(name).lower().replace("+", "plus").replace("_", "").replace("-", "").replace(" ", "")
    meant = f" (did you mean {spelled!r}?)" if spelled in MODELS else ""
    return f"unknown model {name!r}{meant}; choose one of {', '.join(MODELS)}"


def is_whole(value: object) -> TypeGuard[int]:
    """Whether ``value`` is a whole number as the package takes counts, sizes, rates and indices: a Python or
    NumPy integer, not a bool (``True`` is no rate) and not a float; the callers check its range."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def whole_number(value: object, name: str, *, minimum: int = 1) -> int:
    """``value`` as an ``int``, checked to be a whole number (:func:`is_whole`) of at least ``minimum``.

    Raises:
        TypeError: naming ``name``, when ``value`` is no whole number (a float, a bool, a string).
        ValueError: naming ``name``, when it is below ``minimum``.
    """
    if not is_whole(value):
        raise TypeError(f"{name} must be a whole number (an int), got {value!r} ({type(value).__name__})")
    if int(value) < minimum:
        raise ValueError(f"{name} must be {'a positive integer' if minimum == 1 else f'>= {minimum}'}, got {value}")
    return int(value)


def require_tensor(value: object, name: str, form: str, convert: str = "") -> None:
    """Check that ``value``, the argument ``name``, is a torch tensor (torch is imported only by this call).

    ``form`` is the layout it takes (``"(H, W)"``); ``convert`` says how to make one from what was given, by
    default ``torch.from_numpy(name)`` for a NumPy array and ``torch.as_tensor(numpy.asarray(name))`` otherwise
    (a PIL image, a list). A NumPy array or a PIL image otherwise failed deep inside with an ``AttributeError``
    (``'numpy.ndarray' object has no attribute 'dim'``).

    Raises:
        TypeError: naming ``name``, ``form``, the type given and ``convert``, when ``value`` is not a tensor.
    """
    import torch

    if not isinstance(value, torch.Tensor):
        numpy = type(value).__module__ == "numpy"
        convert = convert or (f"torch.from_numpy({name})" if numpy else f"torch.as_tensor(numpy.asarray({name}))")
        raise TypeError(f"{name} must be a torch tensor {form}, got {type(value).__name__}: {convert}")
