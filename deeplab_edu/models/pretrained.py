"""ImageNet-pretrained backbone weights: torchvision's weights when online, a local file otherwise.

DeepLab initialises its backbone from an ImageNet classifier (DeepLab v1 sec. 3.1 and 5, DeepLab v2
sec. 4, DeepLabv3 sec. 4). We use torchvision's published ImageNet weights through torchvision's
own mechanism (``Weights.get_state_dict``, which caches in ``$TORCH_HOME/hub/checkpoints``). With
no network and no cached copy, loading fails with a message that says how to get the file, or how
to pass a local copy instead: ``pretrained_backbone="/path/to/resnet50.pth"``. Local files are read
with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import os
import pickle
import re
import socket
import urllib.error
from pathlib import Path
from typing import Any, Mapping, Union

import torch

__all__ = [
    "PretrainedSource", "torchvision_weights", "load_pretrained_state_dict", "download_state_dict",
    "load_state_dict_file", "load_weights_into", "load_failure_reason", "PretrainedWeightsUnavailable", "cached_weights",
    "torchvision_cache_path", "checksum_failure", "torchvision_deeplabv3_note",
]

#: ``False``/``None``: random init; ``True``: torchvision's ImageNet weights; a path: a local file.
PretrainedSource = Union[bool, None, str, os.PathLike]


class PretrainedWeightsUnavailable(RuntimeError):
    """The pretrained weights could not be downloaded (usually: no network) and no local copy was given."""


#: The errors of a download that did not reach the server (no network, no name resolution, a time-out); any other
#: ``OSError`` (``socket.error`` is ``OSError``: a read-only TORCH_HOME, a full disk) is the cache folder's.
_OFFLINE = (urllib.error.URLError, ConnectionError, TimeoutError, socket.gaierror, socket.herror)


def torchvision_weights(name: str) -> Any:
    """The torchvision ``WeightsEnum`` member used for backbone ``name`` (ImageNet-1k, version 1).

    Raises:
        ValueError: ``name`` is not ``"resnet50"``, ``"resnet101"``, ``"mobilenet_v3_large"`` or ``"vgg16"``.
    """
    from torchvision import models

    table = {
        "resnet50": models.ResNet50_Weights.IMAGENET1K_V1,
        "resnet101": models.ResNet101_Weights.IMAGENET1K_V1,
        "mobilenet_v3_large": models.MobileNet_V3_Large_Weights.IMAGENET1K_V1,
        "vgg16": models.VGG16_Weights.IMAGENET1K_V1,
    }
    if name not in table:
        raise ValueError(f"no pretrained ImageNet weights known for backbone {name!r}; known: {', '.join(table)}")
    return table[name]


def _unwrap(obj: Any, path: Path) -> Mapping[str, torch.Tensor]:
    """Accept a raw state dict or a checkpoint holding one under ``state_dict``/``model``."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise ValueError(f"pretrained_backbone file {path} does not hold a state dict (a mapping of names to tensors)")


def download_state_dict(weights: Any, what: str, argument: str, *, progress: bool = True,
                        flag: str | None = None) -> Mapping[str, torch.Tensor]:
    """``weights.get_state_dict()`` (torchvision's cached download), or a clear error when offline.

    Args:
        weights: a torchvision ``WeightsEnum`` member.
        what: what the weights are, for the message (e.g. "the ImageNet weights of resnet50").
        argument: the argument that accepts a local file instead, for the message.
        flag: the command-line flag that does the same, if there is one, for the message.

    Raises:
        PretrainedWeightsUnavailable: the download failed, or was cut short (the file's SHA-256 does
            not start as its name says; nothing is kept), or torchvision's cached copy does not load;
            the message names the URL, where torchvision looks for a copy, and ``argument`` (and
            ``flag``) to pass a local file; or the download could not be kept in torchvision's cache folder
            (another ``OSError``: a read-only ``TORCH_HOME``, a full disk), naming the folder and the error.
        RuntimeError: torch's own failure where there is no cached copy to blame, as it raised it.
    """
    from ..engine.runs import shown_path
    from ..network import stall_timeout

    cached = torchvision_cache_path(weights)
    filename = cached.name
    try:
        with stall_timeout():  # a server that stops sending fails here instead of hanging the run
            # check_hash: the file's SHA-256 must start as its name says ("resnet50-0676ba61.pth"), so that a
            # download cut short is not kept as the cached copy (torch.hub removes it)
            return weights.get_state_dict(progress=progress, check_hash=True)
    except RuntimeError as err:
        if "invalid hash value" in str(err):
            raise PretrainedWeightsUnavailable(
                f"the download of {what} from {weights.url} was cut short or damaged ({err}; nothing was kept): "
                f"run it again, or pass a local copy: {argument}='/path/to/{filename}'"
                + (f" (on the command line: {flag} /path/to/{filename})." if flag else ".")) from err
        if not cached.is_file():
            raise
        raise PretrainedWeightsUnavailable(
            f"torchvision's copy of {what}, {shown_path(cached, absolute_outside=True)}, does not load "
            f"({load_failure_reason(cached, err)}): delete it, and the next run downloads it again") from err
    except _OFFLINE as err:
        raise PretrainedWeightsUnavailable(
            f"could not download {what} from {weights.url} ({type(err).__name__}: {err}). "
            f"You are probably offline. Either download that file on a machine with internet access and put it "
            f"at {shown_path(cached, absolute_outside=True)} (torchvision then finds it without the network), "
            f"or pass a local copy: "
            f"{argument}='/path/to/{filename}'"
            + (f" (on the command line: {flag} /path/to/{filename})." if flag else ".")
        ) from err
    except OSError as err:  # not the network: the cache folder (a read-only TORCH_HOME, a full disk)
        raise PretrainedWeightsUnavailable(
            f"could not keep {what} in torchvision's cache folder {shown_path(cached.parent, absolute_outside=True)} "
            f"({type(err).__name__}: {err}): make that folder writable or free space there, point TORCH_HOME at a "
            f"writable folder, or pass a local copy: {argument}='/path/to/{filename}'"
            + (f" (on the command line: {flag} /path/to/{filename})." if flag else ".")) from err


def torchvision_cache_path(weights: Any) -> Path:
    """Where torchvision keeps (or will keep) its download of ``weights``, a ``WeightsEnum`` member:
    ``$TORCH_HOME/hub/checkpoints/<the URL's file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]


def cached_weights(weights: Any) -> Path | None:
    """:func:`torchvision_cache_path` of ``weights`` when the file is there, or ``None`` when it has not
    been downloaded yet (then loading it needs the network)."""
    path = torchvision_cache_path(weights)
    return path if path.is_file() else None


#: :func:`load_failure_reason`'s clause for an ONNX file given where a PyTorch file belongs.
ONNX_NOT_TORCH = ("it is an ONNX model (what deeplab-edu export --onnx writes), which PyTorch does not load; "
                  "onnxruntime runs it (deeplab_edu.models.export.run_onnx)")


def load_failure_reason(path: Path, err: BaseException) -> str:
    """Why ``torch.load(path, weights_only=True)`` raised ``err``, in one short clause for an error
    message: "it is not a file torch.save wrote (no zip archive: ...)" (torch's own text would suggest
    ``weights_only=False``, which runs code from the file) or the exception's name and first line."""
    import zipfile

    from .export import is_onnx_file

    if is_onnx_file(path):
        return ONNX_NOT_TORCH
    if not zipfile.is_zipfile(path):
        # a truncated copy has lost the zip's directory at its end: say so (a practitioner's trial)
        return ("it is not a file torch.save wrote (no zip archive: a copy or download cut short, or another "
                "format); copy it again")
    if "Weights only load failed" in str(err):  # a pickled object: torch's advice would run code from the file
        found = re.search(r"Unsupported global: (?:GLOBAL )?([\w.]+)", str(err))
        return ("it holds a Python object that is not tensors" + (f" ({found.group(1)})" if found else "")
                + ", which loading with weights_only=True refuses, since unpickling it could run code from the file; "
                "save the state_dict (tensors) instead")
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first[:300]}"


def checksum_failure(path: str | os.PathLike) -> str | None:
    """Why the file ``torch.save`` wrote at ``path`` is damaged, or ``None`` when every entry of its zip
    archive matches the CRC-32 checksum stored with it (also ``None`` for a file that is no zip archive:
    ``torch.load`` reports those itself). ``torch.load`` does not check the checksums, so flipped bytes in
    a tensor's data would load silently as wrong weights; this reads the whole file once (0.03 s for a
    73 MB checkpoint here). A file that cannot be read at all raises ``OSError`` as ``open`` does."""
    import zipfile
    import zlib

    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError, zlib.error) as err:  # a damaged directory or header
        return f"its zip archive is damaged ({type(err).__name__}: {err})"
    if bad is None:
        return None
    return f"the bytes of its entry {bad} do not match their checksum (CRC-32): the file was damaged"


def load_state_dict_file(path: str | os.PathLike, argument: str) -> Mapping[str, torch.Tensor]:
    """A state dict from a local file (raw, or under ``state_dict``/``model``), read with ``weights_only=True``.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: ``torch.load`` (with ``weights_only=True``) cannot read the file, or it holds neither a state
            dict (a mapping of names to tensors) nor one under ``state_dict``/``model``.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{argument}={str(path)!r}: no such file")
    if damaged := checksum_failure(p):
        raise ValueError(f"{argument}={str(path)!r} is not a weights file torch.load can read ({damaged})")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, KeyError, EOFError, ValueError, IndexError) as err:
        # what torch.load raises depends on how the file is damaged and on torch's version
        raise ValueError(f"{argument}={str(path)!r} is not a weights file torch.load can read "
                         f"({load_failure_reason(p, err)})") from err
    return _unwrap(obj, p)


def torchvision_deeplabv3_note(state_dict: Mapping[str, Any], path: str | os.PathLike) -> str | None:
    """For weights named as torchvision's DeepLabv3 names them (``classifier.4.weight`` beside a ResNet's
    ``backbone.layer4...`` or MobileNetV3's ``backbone.16...``), read from the file ``path``: a sentence (no
    capital, no full stop) naming the converter that makes this package's model of them (an audit: ``--init-from``
    refused such a file without a word of it); ``None`` for other weights."""
    keys = set(state_dict)
    if "classifier.4.weight" not in keys:
        return None
    if any(k.startswith("backbone.layer4.") for k in keys):
        backbone = "resnet101" if any(k.startswith("backbone.layer3.22.") for k in keys) else "resnet50"
    elif any(k.startswith("backbone.16.") for k in keys):
        backbone = "mobilenet_v3_large"
    else:
        return None
    return (f"it holds torchvision's deeplabv3_{backbone} weights, whose names are not this package's: in Python, "
            f"deeplab_edu.models.interop.torchvision_pretrained({backbone!r}, {str(path)!r}) makes this package's "
            "model of them (convert_torchvision_state_dict renames a state dict), to pass to Trainer(cfg, model=...)")


def load_weights_into(net: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    """``net.load_state_dict(state_dict)``, raising a short ValueError when it does not fit ``net``.

    PyTorch's own error lists every missing and unexpected name (kilobytes for a whole network);
    this one counts them and shows a few, so that weights of another architecture are recognised.
    The names are compared before anything is loaded; shapes that differ are PyTorch's message.

    Raises:
        ValueError: names or shapes differ; the message starts "the state dict given for <what>
            does not fit it".
    """
    expected, given = set(net.state_dict()), set(state_dict)
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        def few(names: list[str]) -> str:
            return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "") or "none"

        raise ValueError(f"the state dict given for {what} does not fit it ({len(expected & given)} of "
                         f"{len(expected)} names match; missing: {few(missing)}; unexpected: {few(unexpected)}): "
                         "pass torchvision's weights for this architecture")
    try:
        net.load_state_dict(state_dict)
    except RuntimeError as err:  # same names, other shapes
        raise ValueError(f"the state dict given for {what} does not fit it: {err}") from None


def load_pretrained_state_dict(name: str, source: PretrainedSource, *, progress: bool = True) -> Mapping[str, torch.Tensor] | None:
    """The torchvision-format state dict for backbone ``name``, or ``None`` when ``source`` is false.

    Args:
        name: backbone name (``"resnet50"``, ``"resnet101"``, ``"mobilenet_v3_large"``, ``"vgg16"``).
        source: ``True`` for torchvision's ImageNet weights (downloaded once, then cached), or a path
            to a local ``.pth`` file holding torchvision's state dict for that architecture.
        progress: show a download progress bar.

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        PretrainedWeightsUnavailable: the download failed (e.g. offline); the message says what to do.
        TypeError: ``source`` is neither ``None``, ``True``, ``False`` nor a path (``str`` or ``os.PathLike``).
        ValueError: ``source`` is ``True`` and ``name`` has no known ImageNet weights, or ``source`` is a file that
            ``torch.load`` cannot read or that holds no state dict.
    """
    if source is None or source is False:
        return None
    if source is True:
        return download_state_dict(
            torchvision_weights(name), f"the ImageNet weights of {name}", "pretrained_backbone", progress=progress,
            flag="--pretrained-backbone",
        )
    if isinstance(source, (str, os.PathLike)):
        return load_state_dict_file(source, "pretrained_backbone")
    raise TypeError(f"pretrained_backbone must be True, False or a file path, got {type(source).__name__}")
