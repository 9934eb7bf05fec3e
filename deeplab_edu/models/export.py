"""Export a trained DeepLab model for deployment: ONNX (run with onnxruntime) and ``torch.export``.

Both exports trace the model in evaluation mode (batch norm uses its running statistics, dropout is
off), at the output stride it has when exported, and keep the batch size (1 to 1024), the image
height and the image width (32 to 4096 pixels each) *dynamic*: within those ranges the graph takes
any batch and any size, as the eager model does. Only the ``torch.export`` program checks the ranges
(:func:`load_program`'s module refuses other sizes with a shape-guard error); the ONNX file does not
(onnxruntime runs other sizes too, untested by the export). The graph takes
images normalised as in training (ImageNet mean and std: the normalisation is not in it) and
returns the ``"out"`` logits; files are written atomically (to a temporary name, then renamed).
:func:`onnx_metadata` writes the normalisation, the class names and the output stride into the ONNX
file (``deeplab-edu export --onnx`` does), so that a deployment needs nothing but the file.

>>> path = export_onnx(model, "/tmp/deeplab.onnx")          # doctest: +SKIP
>>> logits = run_onnx(path, images)                           # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..choices import require_packages
from ..inference import eval_mode, unwrap_out
from ..viz.images import IMAGENET_MEAN, IMAGENET_STD
from .deeplab import _images_dtype_message

__all__ = ["export_onnx", "onnx_metadata", "run_onnx", "export_program", "load_program", "LogitsOnly", "is_onnx_file"]


class LogitsOnly(nn.Module):
    """Wrap a model so that it returns its logits tensor, (N, num_classes, H, W), rather than
    torchvision's ``{"out": ...}`` dict (simpler graph outputs for export; one call for every model
    in the benchmarks). A model that already returns a tensor passes it through."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) images -> the wrapped model's ``"out"`` (or its tensor output)."""
        return unwrap_out(self.model(image))


def is_onnx_file(path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` begins as an ONNX model does (a ``ModelProto`` message: its field 1,
    ``ir_version``, then field 2, ``producer_name``, as ``torch.onnx`` writes it; the ONNX specification,
    ``onnx/onnx.proto``). A quick look at 3 bytes, not a validation; ``False`` for a file that cannot be read.
    Used to name an ONNX file given where a PyTorch file is expected (and the reverse)."""
    try:
        with open(path, "rb") as f:
            head = f.read(3)
    except OSError:
        return False
    return len(head) == 3 and head[0] == 0x08 and head[1] < 0x80 and head[2] == 0x12


def _example(model: nn.Module, example: torch.Tensor | None, dynamic: bool) -> torch.Tensor:
    if example is None:  # on the model's device and in its dtype, so that a CUDA or float64 model exports without one
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
        dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
        example = torch.rand(1, 3, 65, 65, device=device, dtype=dtype)
    if example.dim() != 4 or example.shape[1] != 3:
        raise ValueError(f"example must be an image batch (N, 3, H, W), got {tuple(example.shape)}")
    if dynamic and example.shape[0] == 1:
        # torch.export specialises a dimension of size 1 to the constant 1: trace a batch of two instead
        example = example.expand(2, -1, -1, -1).contiguous()
    return example


def _dynamic_shapes(dynamic: bool) -> Any:
    if not dynamic:
        return None
    n = torch.export.Dim("batch", min=1, max=1024)
    h = torch.export.Dim("height", min=32, max=4096)
    w = torch.export.Dim("width", min=32, max=4096)
    return ({0: n, 2: h, 3: w},)


def export_onnx(
    model: nn.Module, path: str | os.PathLike, example: torch.Tensor | None = None, *, dynamic: bool = True,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Export ``model`` (traced in eval mode, on the device it is on; its mode is restored) to ONNX
    at ``path`` with torch's ``torch.export``-based exporter.

    Args:
        model: a model whose forward returns ``{"out": logits}``.
        path: the ``.onnx`` file to write.
        example: an example batch (N, 3, H, W) on the model's device (default: one random 65 x 65
            image there, in the dtype of the model's first parameter; with ``dynamic``, a batch of one is
            traced as two).
        dynamic: keep the batch size (1 to 1024) and the height and width (32 to 4096 pixels)
            dynamic; ``False`` fixes all three to the example's.
        metadata: key -> text pairs stored in the file's ``metadata_props`` (ONNX's own place for what a
            deployment needs to know; ``onnxruntime``'s ``session.get_modelmeta().custom_metadata_map`` reads
            them): :func:`onnx_metadata` gives the normalisation and the classes. ``None``: none.

    Returns:
        The path written (atomically).

    Raises:
        ValueError: ``example`` is not (N, 3, H, W).
        RuntimeError: the exporter returned no program.
        ImportError: ``onnx`` or ``onnxscript``, which torch's exporter needs, is not installed (the
            ``dev`` extra holds them; ``pip install onnx onnxscript``).
    """
    require_packages("onnx", "onnxscript", what="export_onnx (torch.onnx.export)")
    with eval_mode(model):  # its training mode restored afterwards, also when the export fails
        wrapped = LogitsOnly(model).eval()
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # it prints its progress
            # torch 2.11's exporter trips its own deprecation of LeafSpec (gone in later versions)
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                    category=FutureWarning)
            program = torch.onnx.export(
                wrapped, (_example(model, example, dynamic),), dynamo=True, input_names=["image"], output_names=["out"],
                dynamic_shapes=_dynamic_shapes(dynamic), verbose=False,
            )
        if program is None:  # only the legacy (dynamo=False) exporter returns nothing
            raise RuntimeError("torch.onnx.export returned no ONNX program")
        program.model.metadata_props.update({str(k): str(v) for k, v in (metadata or {}).items()})  # saved with it
        with atomic_path(path) as tmp:
            program.save(str(tmp))
    return Path(path)


def onnx_metadata(class_names: Sequence[str] | None = None, *, output_stride: int | None = None,
                  mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> dict[str, str]:
    """What a deployment of an exported segmentation model needs to know, as :func:`export_onnx`'s ``metadata``:
    the input's normalisation (``x = (rgb / 255 - mean) / std`` per channel, RGB order, (N, 3, H, W) float32),
    the output (logits (N, classes, H, W): the class of a pixel is their argmax), the class names in label
    order and the output stride: ``input`` and ``output`` as prose, the others as JSON text.

    >>> sorted(onnx_metadata(["background", "car"], output_stride=8))
    ['class_names', 'input', 'mean', 'output', 'output_stride', 'std']
    """
    import json

    meta = {"input": "image: float32 (N, 3, H, W), RGB scaled to [0, 1], then (x - mean) / std per channel",
            "output": "out: float32 logits (N, classes, H, W); a pixel's class is their argmax",
            "mean": json.dumps([float(m) for m in mean]), "std": json.dumps([float(v) for v in std])}
    if class_names is not None:
        meta["class_names"] = json.dumps(list(class_names))
    if output_stride is not None:
        meta["output_stride"] = json.dumps(output_stride)
    return meta


def run_onnx(path: str | os.PathLike, images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Logits of the ONNX model at ``path`` for ``images`` (N, 3, H, W), computed by onnxruntime on the CPU.

    Args:
        path: a model written by :func:`export_onnx` (its input is named ``image``).
        images: normalised images (N, 3, H, W) as the PyTorch model takes them, floating point; cast to float32.

    Returns:
        The model's first output, ``"out"``, as float32 logits (N, num_classes, H, W), a NumPy array,
        equal to ``model(images)["out"]`` within float tolerance (chapter 11 checks it).

    Raises:
        FileNotFoundError: no file exists at ``path``.
        ImportError: ``onnxruntime`` is not installed (the ``dev`` extra holds it; ``pip install onnxruntime``).
        TypeError: ``images`` are integers (uint8 pixels 0-255: the PyTorch model refuses them with the same
            advice).
    """
    require_packages("onnxruntime", what="run_onnx")
    import onnxruntime as ort

    if not Path(path).is_file():
        raise FileNotFoundError(f"no ONNX model at {path}")
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if not np.issubdtype(x.dtype, np.floating):  # an audit: uint8 pixels 0-255 gave meaningless logits without a word
        raise TypeError(_images_dtype_message(x.dtype, torch.float32, floating=False))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x.astype(np.float32)})[0]


def export_program(
    model: nn.Module, path: str | os.PathLike, example: torch.Tensor | None = None, *, dynamic: bool = True
) -> Path:
    """Export ``model`` (eval mode) with ``torch.export`` and save the program (``.pt2``) at ``path``.

    Batch size (1 to 1024), height and width (32 to 4096 pixels) are dynamic as in :func:`export_onnx`;
    calling the loaded program with a shape outside them raises torch's shape-guard error (an
    ``AssertionError`` naming the bound, e.g. ``image.size()[2] >= 32``). ``example`` (N, 3, H, W)
    defaults to a random 65 x 65 image on the model's device, in the dtype of its first parameter.

    Raises:
        ValueError: ``example`` is not an image batch (N, 3, H, W).
        RuntimeError: with ``dynamic``, this torch's ``torch.export`` cannot keep the height and width
            dynamic through the model (torch 2.11 adds a guard on the parity of the size at a ResNet
            stem's max pooling, which would refuse half the sizes; the pinned torch 2.14.1 does not):
            the message names the guard and the ways out (``dynamic=False``, :func:`export_onnx`).
    """
    with eval_mode(model):  # its training mode restored afterwards, also when the export fails
        program = _export(model, example, dynamic)
        with atomic_path(path) as tmp:
            torch.export.save(program, str(tmp))
    return Path(path)


def _export(model: nn.Module, example: torch.Tensor | None, dynamic: bool) -> Any:
    """``torch.export.export`` of ``LogitsOnly(model)``; a size guard it cannot keep dynamic (torch 2.11 at a
    ResNet stem's max pooling) becomes a RuntimeError that names it and the ways out."""
    try:
        return torch.export.export(LogitsOnly(model).eval(), (_example(model, example, dynamic),),
                                   dynamic_shapes=_dynamic_shapes(dynamic))
    except Exception as err:  # torch._dynamo.exc.UserError, whose module differs between versions
        if not dynamic or "Constraints violated" not in str(err):
            raise
        guard = next((line.strip(" -") for line in str(err).splitlines() if "Not all values" in line), "")
        raise RuntimeError(
            f"torch {torch.__version__}'s torch.export cannot keep the height and width dynamic through this "
            f"model ({guard}): a program with that guard would refuse other sizes. Export one size "
            "(dynamic=False), or use export_onnx, whose exporter keeps every size (the course's pinned torch "
            "2.14.1 exports this program too)") from err


def load_program(path: str | os.PathLike) -> nn.Module:
    """Load a program saved by :func:`export_program`; calling it returns the logits tensor.

    Raises:
        FileNotFoundError: no file exists at ``path``.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no exported program at {path}")
    with warnings.catch_warnings():  # torch 2.11's loader warns about a read-only buffer of its own archive
        warnings.filterwarnings("ignore", message="The given buffer is not writable", category=UserWarning)
        return torch.export.load(str(path)).module()
