"""The effective receptive field (Luo, Li, Urtasun & Zemel, NeurIPS 2016).

The theoretical receptive field (:mod:`deeplab_edu.receptive_field`) says which input pixels
*can* influence an output unit. Luo et al. measure how much each one *does*: back-propagate a
gradient of 1 from one output unit (their Sec. 2: the partial derivative of the centre output
with respect to every input pixel) and average its magnitude over random inputs. The map is
roughly Gaussian and fills only part of the theoretical square; training enlarges it (where the
task pays for far pixels: chapter 02 also measures a task on which it narrows).

* :func:`effective_receptive_field`: the averaged ``|d y_centre / d x|`` map of a model.
* :func:`mass_extent`: side of the centred square holding a given share of that map;
  :func:`interpolated_extent`: the same on a continuous scale (for a change over seeds).
* :func:`row_share`: the share of that map in the rows a given distance above and below the output's.
* :class:`TinyDilatedNet`, :func:`noisy_halves_batch`, :func:`train_tiny_segmenter`: a small
  network (plain or atrous) and a toy task that needs context (tell the two halves of a noisy image
  apart, which one pixel alone cannot), so that a "trained" map can be measured on a CPU in seconds.
  It is *this* toy network trained for a few hundred steps, not an ImageNet model.
* :func:`erf_before_and_after_training` (:class:`ErfTraining`): the map before and after that training,
  over several seeds, for an interval.
* :func:`imagenet_resnet50`: torchvision's ImageNet-trained ResNet-50 when its weights are
  already on this machine (or ``download=True``), for the real comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .atrous import same_padding
from .choices import require_tensor
from .inference import eval_mode, unwrap_out
from .receptive_field import _input_size, spatial_part

__all__ = [
    "effective_receptive_field",
    "mass_extent",
    "interpolated_extent",
    "row_share",
    "TinyDilatedNet",
    "noisy_halves_batch",
    "train_tiny_segmenter",
    "ErfTraining",
    "erf_before_and_after_training",
    "train_toy",
    "imagenet_resnet50",
]


def effective_receptive_field(
    model: nn.Module,
    input_size: int | tuple[int, int],
    *,
    samples: int = 4,
    output_index: tuple[int, int] | None = None,
    in_channels: int | None = None,
    seed: int = 0,
    output_key: str = "out",
) -> torch.Tensor:
    """Luo et al.'s map: mean over ``samples`` random inputs of ``|d y[:, i, j] / d x|``.

    The gradient of the output unit (summed over its channels) with respect to the input is
    summed over input channels, averaged over standard-normal inputs, and normalised to sum
    to 1. The inputs are on the device and in the dtype of the model's first parameter (drawn in
    float32, then cast); the map is summed in float32 whatever that dtype. The model runs in eval mode
    (restored afterwards); a global head is cut off first (:func:`~deeplab_edu.receptive_field.spatial_part`),
    while channel gates (squeeze-and-excitation) stay in: they read the whole input, so some gradient
    reaches every pixel.

    Args:
        model: a network mapping (1, C, H, W) images to (1, K, H', W') maps (or a dict holding them).
        input_size: the input's side, or (H, W), in pixels.
        samples: how many standard-normal inputs the map averages.
        output_index: the output unit (row, column) in the output map; ``None``: its centre.
        in_channels: C; ``None``: the first ``nn.Conv2d``'s input channels.
        seed: seed of the random inputs.
        output_key: the output's key when the model returns a dict (torchvision's ``"out"``).

    Returns:
        a float32 tensor ``(H, W)`` summing to 1, or all zeros when no gradient reaches the input (a
        dead network: :func:`mass_extent` refuses such a map).

    Raises:
        ValueError: ``samples`` is below 1; ``input_size`` is not a whole number of pixels (or two) of at least 1;
            ``in_channels`` is not given and the (cut) model has no ``nn.Conv2d``
            to infer it from; ``output_index`` lies outside the output map; or, from
            :func:`~deeplab_edu.receptive_field.spatial_part`, the model cannot be traced by torch.fx, returns
            a dict without ``output_key``, or has a global output not computed by a head from one spatial map.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    h, w = _input_size(input_size)
    net = spatial_part(model, output_key=output_key)
    if in_channels is None:
        first = next((m for m in net.modules() if isinstance(m, (nn.Conv2d,))), None)
        if first is None:
            raise ValueError("cannot infer the number of input channels; pass in_channels")
        in_channels = first.in_channels
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(h, w)
    param = next(model.parameters(), None)  # the inputs on its device and in its dtype (an audit: float64 raised)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    with eval_mode(model):  # its training mode restored afterwards, also when this raises
        for _ in range(samples):  # drawn in float32: the same inputs, rounded, whatever the model's dtype
            x = torch.randn(1, in_channels, h, w, generator=gen).to(device, dtype).requires_grad_(True)
            out = net(x)
            oh, ow = out.shape[-2:]
            i, j = ((oh - 1) // 2, (ow - 1) // 2) if output_index is None else output_index
            if not (0 <= i < oh and 0 <= j < ow):
                raise ValueError(f"output_index {(i, j)} is outside the output map of size {(oh, ow)}")
            (grad,) = torch.autograd.grad(out[0, :, i, j].sum(), x)
            total += grad[0].abs().sum(0).cpu()
    s = total.sum()
    return total / s if s > 0 else total


def mass_extent(erf: torch.Tensor, fraction: float = 0.9) -> int:
    """Side (pixels) of the smallest square around the map's centre of mass holding ``fraction`` of it.

    A one-number summary to set against the theoretical receptive field size.

    Raises:
        TypeError: ``erf`` is not a tensor (a NumPy array: ``torch.from_numpy``).
        ValueError: ``fraction`` is not in (0, 1], or ``erf`` is not 2-D, holds NaN, infinite or negative values,
            or does not sum to a positive value (an all-zero map).
    """
    masses = _square_masses(erf, fraction)
    half = next((k for k, mass in enumerate(masses) if mass >= fraction - 1e-9), None)
    return 2 * len(masses) - 1 if half is None else 2 * half + 1


def interpolated_extent(erf: torch.Tensor, fraction: float = 0.9) -> float:
    """:func:`mass_extent` on a continuous scale: the side (pixels) at which the squares around the map's
    centre of mass hold ``fraction`` of it, interpolated linearly in their mass between the odd side that
    holds less and the one that holds enough (:func:`mass_extent`; an empty square of side 0 below the 1-pixel
    one). Rounded up to an odd number it is :func:`mass_extent`; unlike it, it moves continuously with
    ``fraction``, so seeds that all grew by one step of 2 px still differ, and an interval over them has a width.
    It is continuous in the map only while the squares keep their centre: they sit on the centre of mass
    rounded to a pixel, so a change that moves the centre of mass across a half pixel moves every square by
    one pixel and can change the extent by a pixel or more (on a 1 x 7 map holding 1, 2 and 2.2 at columns
    0, 1 and 5, 2.2 +- 0.001 there moves the 30 % extent from 2.56 to 3.74 px). Chapter 02's maps, of the
    centre output unit, are centred on it, so their squares stay put.

    Args:
        erf: a non-negative map (H, W), e.g. of :func:`effective_receptive_field` (it is normalised here).
        fraction: the share of the map's mass the square holds, in (0, 1].

    Returns:
        The side in pixels (a float, between 0 and ``2 * max(H, W) - 1``).

    Raises:
        TypeError: ``erf`` is not a tensor (a NumPy array: ``torch.from_numpy``).
        ValueError: ``fraction`` is not in (0, 1], or ``erf`` is not 2-D, holds NaN, infinite or negative values,
            or does not sum to a positive value (an all-zero map).
    """
    masses = _square_masses(erf, fraction)
    half = next((k for k, mass in enumerate(masses) if mass >= fraction - 1e-9), None)
    if half is None:
        return float(2 * len(masses) - 1)
    below, side_below = (masses[half - 1], 2 * half - 1) if half else (0.0, 0)
    share = min(1.0, max(0.0, (fraction - below) / (masses[half] - below)))  # of the step's mass, 0-1
    return side_below + share * (2 * half + 1 - side_below)


def _square_masses(erf: torch.Tensor, fraction: float) -> list[float]:
    """The share of ``erf`` (H, W) in the squares of sides 1, 3, 5, ... around its centre of mass (rounded to a
    pixel), ``max(H, W)`` of them, for :func:`mass_extent` and :func:`interpolated_extent`, which check
    ``fraction``."""
    require_tensor(erf, "erf", "(H, W)")  # an audit: a NumPy map was "'numpy.ndarray' object has no attribute 'double'"
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    # a census: a NaN map failed as "cannot convert float NaN to integer", a negative one was "all zero", a 1-D or
    # 3-D one "too many values to unpack"
    if erf.dim() != 2:
        raise ValueError(f"erf must be a map (H, W), got shape {tuple(erf.shape)}: pass one map (erf[0], say)")
    if not bool(torch.isfinite(erf).all()):
        raise ValueError("erf holds NaN or infinite values: the gradients diverged (NaN weights?)")
    if bool((erf < 0).any()):
        raise ValueError(f"erf holds negative values (down to {float(erf.min()):g}): a mass map is not negative; "
                         "pass the gradients' magnitude (erf.abs())")
    if float(erf.sum()) <= 0:
        raise ValueError("the map is all zero: no gradient reached the input")
    # in float64: a float32 map summed to 0.99999976, so fraction 1 was never reached (an audit: 41 for a 21-pixel map)
    m = erf.double() / erf.double().sum()
    h, w = m.shape
    rows = torch.arange(h, dtype=m.dtype)
    cols = torch.arange(w, dtype=m.dtype)
    ci = int(round(float((m.sum(1) * rows).sum())))
    cj = int(round(float((m.sum(0) * cols).sum())))
    return [float(m[max(0, ci - half): ci + half + 1, max(0, cj - half): cj + half + 1].sum())
            for half in range(max(h, w))]


def row_share(erf: torch.Tensor, nearest: int, farthest: int, *, centre_row: int | None = None) -> float:
    """The share of ``erf`` in the rows ``nearest`` to ``farthest`` pixels (both included) above or below
    ``centre_row``: how much of the gradient comes from a horizontal band of the input that far away.

    Args:
        erf: a map ``(H, W)`` of :func:`effective_receptive_field` (any non-negative map; it is normalised).
        nearest, farthest: distances in rows, ``0 <= nearest <= farthest``.
        centre_row: the output's row; default ``(H - 1) // 2``, where :func:`effective_receptive_field`
            takes its output unit by default.

    Returns:
        a fraction in [0, 1] (rows beyond the map's edge hold nothing).

    Raises:
        ValueError: the distances are negative or out of order, ``centre_row`` lies outside the map, or
            ``erf`` does not sum to a positive value.

    >>> erf = torch.zeros(5, 3)
    >>> erf[2, 1], erf[0, 0], erf[4, 2] = 2.0, 1.0, 1.0
    >>> row_share(erf, 2, 2), row_share(erf, 0, 1)
    (0.5, 0.5)
    """
    if not 0 <= nearest <= farthest:
        raise ValueError(f"row_share needs 0 <= nearest <= farthest, got nearest={nearest}, farthest={farthest}")
    h = erf.shape[0]
    centre = (h - 1) // 2 if centre_row is None else centre_row
    if not 0 <= centre < h:
        raise ValueError(f"centre_row {centre} is outside the map's {h} rows")
    total = float(erf.sum())
    if total <= 0:
        raise ValueError("the map is all zero: no gradient reached the input")
    distance = (torch.arange(h) - centre).abs()
    inside = (distance >= nearest) & (distance <= farthest)
    return float(erf[inside].sum()) / total


class TinyDilatedNet(nn.Module):
    """A small fully convolutional net: 3x3 convs at the given atrous rates, ReLU, 1x1 classifier.

    Same padding everywhere, so the output has the input's size. Its theoretical receptive
    field is ``1 + 2 * sum(rates)``.

    Raises:
        ValueError: ``rates`` is empty or holds a rate below 1.
        TypeError: a rate is not an int.
    """

    def __init__(self, rates: Sequence[int] = (1, 2, 4, 8, 1), channels: int = 16, in_channels: int = 3,
                 num_classes: int = 2) -> None:
        super().__init__()
        if not rates:
            raise ValueError("rates must name at least one layer")
        layers: list[nn.Module] = []
        c = in_channels
        for r in rates:
            layers += [nn.Conv2d(c, channels, 3, padding=same_padding(3, r), dilation=r), nn.ReLU(inplace=True)]
            c = channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes, H, W) for an input (N, in_channels, H, W)."""
        return self.classifier(self.features(x))


def noisy_halves_batch(
    batch: int, size: int = 48, *, contrast: float = 0.2, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A toy task that needs context: label the two halves of a noisy image, which differ only a little.

    A random straight line splits each image in two; one half is ``contrast`` brighter than the other,
    and every pixel carries noise of standard deviation 1 on top. One pixel alone hardly tells its half
    (with ``contrast=0.2`` the noise is five times the difference); the mean of ``k`` pixels of one
    half has noise ``1 / sqrt(k)``, so a unit labels its pixel well only by weighing many pixels around
    it, as far as its receptive field reaches: the task rewards a wide *effective* field, which Luo et al.
    report training to grow.

    Args:
        batch: images to make.
        size: their side, in pixels.
        contrast: the difference of the halves' mean brightness (the noise's standard deviation is 1).
        generator: the random numbers; ``None``: a new generator seeded 0, so calls without one
            return the same batch.

    Returns:
        images ``(batch, 3, size, size)`` float32 (one grey value in the three channels, mean
        ``-contrast / 2`` or ``+contrast / 2``, not clipped) and masks ``(batch, size, size)`` int64
        (1 on the brighter half). The line passes within ``0.3 * size`` of the centre, at any angle.

    Raises:
        ValueError: ``batch`` or ``size`` is below 1, or ``contrast`` is not positive.
    """
    if batch < 1 or size < 1:
        raise ValueError(f"batch and size must be >= 1, got batch={batch}, size={size}")
    if not contrast > 0:
        raise ValueError(f"contrast must be > 0, got {contrast}")
    g = generator or torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    angle = torch.rand(batch, 1, 1, generator=g) * 2 * math.pi
    offset = (torch.rand(batch, 1, 1, generator=g) - 0.5) * 0.6 * size
    side = (xx - size / 2) * torch.cos(angle) + (yy - size / 2) * torch.sin(angle) - offset
    masks = (side > 0).long()
    grey = (masks.float() - 0.5) * contrast + torch.randn(batch, size, size, generator=g)
    return grey[:, None].expand(-1, 3, -1, -1).contiguous(), masks


def train_tiny_segmenter(
    model: nn.Module, steps: int, *, batch: int = 16, size: int = 48, contrast: float = 0.2, lr: float = 3e-3,
    seed: int = 0, progress: bool = True
) -> list[float]:
    """Train ``model`` on :func:`noisy_halves_batch` with Adam for ``steps`` steps; return the losses.

    ``model`` maps images (N, 3, size, size) to logits (N, 2, size, size), a tensor (such as
    :class:`TinyDilatedNet`) or a dict holding them under ``"out"`` (:func:`train_toy`); it is left in eval mode. Each step draws a new
    batch of ``batch`` images (``contrast`` as in :func:`noisy_halves_batch`) from a generator seeded ``seed``.

    Returns:
        the training loss (cross-entropy, nats per pixel) of every step.

    Raises:
        ValueError: ``steps`` is negative.
        RuntimeError: the last loss is not finite (training diverged).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    return train_toy(model, lambda: noisy_halves_batch(batch, size, contrast=contrast, generator=g), steps, lr=lr,
                     progress=progress, desc="training the tiny net")


@dataclass
class ErfTraining:
    """One seed of :func:`erf_before_and_after_training`: the maps (each ``(H, W)``, summing to 1) of the
    network at random initialisation and after training, and the training losses (nats per pixel)."""

    seed: int
    before: torch.Tensor
    after: torch.Tensor
    losses: list[float]

    def growth(self, fraction: float = 0.5) -> float:
        """How many pixels wider the square holding ``fraction`` of the map became (negative: narrower), on the
        continuous scale of :func:`interpolated_extent`: :func:`mass_extent`'s steps of 2 px made seeds grow by
        exactly as much, and an interval over them of no width.

        Raises:
            ValueError: ``fraction`` is not in (0, 1].
        """
        return interpolated_extent(self.after, fraction) - interpolated_extent(self.before, fraction)


def erf_before_and_after_training(
    rates: Sequence[int], seeds: Sequence[int], steps: int, *, contrast: float = 0.2, channels: int = 16,
    batch: int = 16, size: int = 48, input_size: int = 65, samples: int = 16, progress: bool = True
) -> list[ErfTraining]:
    """Luo et al.'s "does training grow the effective field?", once per seed: a :class:`TinyDilatedNet` of
    ``rates`` (initialised by ``torch.manual_seed(seed)``) is measured with :func:`effective_receptive_field`
    (``input_size``, ``samples`` noise inputs), trained ``steps`` steps on :func:`noisy_halves_batch` of
    ``contrast`` (:func:`train_tiny_segmenter`: ``batch`` images of ``size`` pixels), and measured again.

    Several seeds, because one run's change can be as large as the spread between initialisations: set the
    per-seed :meth:`ErfTraining.growth` against its interval over seeds.

    Returns:
        one :class:`ErfTraining` per seed, in the order of ``seeds``.

    Raises:
        ValueError: no seed, or an argument :class:`TinyDilatedNet` or :func:`train_tiny_segmenter` refuses.
        RuntimeError: a training diverged, or left no gradient at the centre unit (every ReLU on its paths off).
    """
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    runs = []
    for seed in seeds:
        torch.manual_seed(seed)
        net = TinyDilatedNet(rates=rates, channels=channels)
        before = effective_receptive_field(net, input_size, samples=samples)
        losses = train_tiny_segmenter(net, steps, batch=batch, size=size, contrast=contrast, seed=seed,
                                      progress=progress)
        after = effective_receptive_field(net, input_size, samples=samples)
        if float(after.sum()) <= 0 or float(before.sum()) <= 0:
            when = "after" if float(before.sum()) > 0 else "before"
            raise RuntimeError(f"seed {seed}: no gradient reached the input {when} training (every ReLU on the "
                               "centre unit's paths is off); try another seed or more channels")
        runs.append(ErfTraining(seed, before, after, losses))
    return runs


def train_toy(model: nn.Module, draw: Callable[[], tuple[torch.Tensor, torch.Tensor]], steps: int, *, lr: float,
              progress: bool = False, desc: str = "training") -> list[float]:
    """The course's small training loop for its toy networks: ``steps`` Adam steps of per-pixel
    cross-entropy, each on a fresh batch ``draw()`` returns (images (N, 3, H, W), labels (N, H, W));
    ``model``'s output is the logits (N, C, H, W) or a mapping holding them under ``"out"`` (a dict, an
    OrderedDict: :func:`~deeplab_edu.inference.unwrap_out`). The model is left in eval mode.

    Returns:
        the training loss (cross-entropy, nats per pixel) of every step.

    Raises:
        RuntimeError: the last loss is not finite (training diverged).
        ValueError: ``model`` returns a mapping without ``"out"``.
    """
    from .progress import progress_bar

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in progress_bar(range(steps), desc=desc, progress=progress):
        images, labels = draw()
        loss = F.cross_entropy(unwrap_out(model(images)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    if losses and not math.isfinite(losses[-1]):
        raise RuntimeError(f"{desc}: training diverged (the last loss is {losses[-1]}); lower lr={lr}")
    return losses


def imagenet_resnet50(*, download: bool = False) -> tuple[nn.Module | None, str]:
    """torchvision's ResNet-50 with ImageNet weights (``IMAGENET1K_V1``), if they can be had.

    Offline by default: the weights are used only when torchvision's cache already holds them
    (``$TORCH_HOME/hub/checkpoints``); with ``download=True`` they are downloaded there (online).

    Returns:
        ``(model in eval mode, where the weights came from)``, or ``(None, what to do)`` when the
        weights are not on this machine and ``download`` is false.
    """
    import torchvision

    from .models.pretrained import download_state_dict, load_state_dict_file, torchvision_weights

    from .records import shown_path

    weights = torchvision_weights("resnet50")
    path = Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    shown = shown_path(path, absolute_outside=True)  # "~/.cache/..." in the book, not the machine's home
    if path.is_file():
        state = load_state_dict_file(path, "the cached ImageNet weights")
    elif download:
        state = download_state_dict(weights, "the ImageNet weights of resnet50", "imagenet_resnet50")
    else:
        return None, (
            f"ImageNet weights for ResNet-50 are not on this machine (looked for {shown}). "
            "When online, call imagenet_resnet50(download=True) once; they are then cached there."
        )
    model = torchvision.models.resnet50()
    model.load_state_dict(state)
    return model.eval(), f"torchvision ResNet50_Weights.IMAGENET1K_V1, read from {shown}"
