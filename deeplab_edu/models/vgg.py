"""VGG-16 with DeepLab v1's LargeFOV modifications (DeepLab v1 sec. 3.1-3.2 and 5, "DeepLab-LargeFOV").

DeepLab v1 turns the VGG-16 classifier into a dense feature extractor at output stride 8:

- pool1-3 become 3x3 max pools with stride 2 and padding 1 (so odd sizes round up, like ResNet);
- pool4 and pool5 keep 3x3 windows but stride 1 (no more subsampling);
- the conv5 layers (after pool4) are dilated by 2 to keep their receptive field;
- LargeFOV: the fully connected fc6 becomes a 3x3 convolution with 1024 filters at rate 12, and
  fc7 a 1x1 convolution with 1024 filters; both are initialised by *decimating* ImageNet's fc6
  (4096 x 512 x 7 x 7 -> 1024 x 512 x 3 x 3) and fc7 (4096 x 4096 -> 1024 x 1024).

With ``largefov=False`` the backbone stops after pool5 (512 channels): DeepLab v2's VGG variant puts
its fc6/fc7 inside every ASPP-L branch instead.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .backbones import Backbone, check_output_stride
from .pretrained import load_weights_into

__all__ = ["VGG16Backbone", "decimated_fc_weights"]

# (out_channels per conv, or a pool tag); the layout gives torchvision's vgg16 feature indices.
_LAYOUT: list[int | str] = [64, 64, "P2", 128, 128, "P2", 256, 256, 256, "P2", 512, 512, 512, "P1", 512, 512, 512, "P1"]


def decimated_fc_weights(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fc6 (1024 x 512 x 3 x 3) and fc7 (1024 x 1024 x 1 x 1) decimated from torchvision's VGG-16.

    DeepLab v1 sec. 3.2 (fc6 subsampled "by simple decimation" to 4 x 4 or 3 x 3) and sec. 5, Table 2
    (LargeFOV: 3 x 3 at rate 12, 1024 filters in fc6 and fc7). The papers keep "a random subset of
    1,024 out of the 4,096 filters" (v2 sec. 4.1); this code keeps every 4th filter of fc6/fc7
    (4096 -> 1024, reproducible without a seed) and every 3rd spatial tap of fc6's 7 x 7 window (-> 3 x 3), so that the
    convolutional fc layers start from ImageNet.

    Raises:
        ValueError: ``state_dict`` lacks torchvision's fc weights (``classifier.0`` and ``classifier.3``)
            or holds them in other shapes (not torchvision's ``vgg16``).
    """
    shapes = {"classifier.0.weight": (4096, 25088), "classifier.0.bias": (4096,),
              "classifier.3.weight": (4096, 4096), "classifier.3.bias": (4096,)}
    wrong = {k: tuple(state_dict[k].shape) if k in state_dict else "missing" for k, shape in shapes.items()
             if k not in state_dict or tuple(state_dict[k].shape) != shape}
    if wrong:
        raise ValueError(f"the state dict given for vgg16's fc6/fc7 does not fit torchvision's vgg16: {wrong} "
                         f"(expected {shapes})")
    w6 = state_dict["classifier.0.weight"].reshape(4096, 512, 7, 7)
    return {
        "fc6.weight": w6[::4, :, ::3, ::3].clone(),
        "fc6.bias": state_dict["classifier.0.bias"][::4].clone(),
        "fc7.weight": state_dict["classifier.3.weight"][::4, ::4, None, None].clone(),
        "fc7.bias": state_dict["classifier.3.bias"][::4].clone(),
    }


#: Why DeepLab's VGG-16 has one output stride (said by the error for any other).
VGG_STRIDE_NOTE = "DeepLab's VGG-16 (v1/v2: pool4 and pool5 have stride 1, fc6 is atrous)"


class VGG16Backbone(Backbone):
    """VGG-16 at output stride 8, optionally with LargeFOV's fc6 (3x3, rate 12) and fc7.

    Args:
        output_stride: must be 8 (the configuration of DeepLab v1/v2).
        largefov: include fc6/fc7 (1024 channels each) so ``out`` has 1024 channels.
        fc6_rate: atrous rate of fc6 (12 in DeepLab-LargeFOV).
        state_dict: torchvision ``vgg16`` ImageNet weights to load (fc6/fc7 are decimated).

    Raises:
        ValueError: ``output_stride`` is not 8, or ``state_dict`` does not fit torchvision's ``vgg16``
            (:func:`decimated_fc_weights`).
    """

    low_level_channels = 128
    aux_channels = 512

    def __init__(
        self,
        output_stride: int = 8,
        *,
        largefov: bool = True,
        fc6_rate: int = 12,
        state_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        check_output_stride(output_stride, allowed=(8,), what=VGG_STRIDE_NOTE)
        layers: list[nn.Module] = []
        in_ch, dilation = 3, 1
        for item in _LAYOUT:
            if item == "P2":
                layers.append(nn.MaxPool2d(3, stride=2, padding=1))
            elif item == "P1":
                layers.append(nn.MaxPool2d(3, stride=1, padding=1))
                dilation = 2  # layers after pool4 are dilated to compensate for the lost stride
            else:
                layers += [nn.Conv2d(in_ch, int(item), 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)]
                in_ch = int(item)
        self.features = nn.Sequential(*layers)
        self.low_level_index = 9  # pool2: stride 4
        self.aux_index = 23  # pool4: stride 8
        self.largefov = largefov
        if largefov:
            self.fc6 = nn.Conv2d(512, 1024, 3, padding=fc6_rate, dilation=fc6_rate)
            self.fc7 = nn.Conv2d(1024, 1024, 1)
            self.drop = nn.Dropout2d(0.5)
        self.out_channels = 1024 if largefov else 512
        self.output_stride = 8
        if state_dict is not None:
            self.load_torchvision_state_dict(state_dict)

    def load_torchvision_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load torchvision ``vgg16`` weights; fc6/fc7 are decimated as in DeepLab v1 sec. 3.2."""
        feats = {k[len("features."):]: v for k, v in state_dict.items() if k.startswith("features.")}
        load_weights_into(self.features, feats, "vgg16's convolutional layers")
        if self.largefov:
            fc = decimated_fc_weights(state_dict)
            with torch.no_grad():
                for name, value in fc.items():
                    layer, kind = name.split(".")
                    getattr(getattr(self, layer), kind).copy_(value)

    def set_output_stride(self, output_stride: int) -> None:
        """Only output stride 8 is supported (DeepLab v1/v2's configuration).

        Raises:
            ValueError: ``output_stride`` is not 8.
        """
        check_output_stride(output_stride, allowed=(8,), what=VGG_STRIDE_NOTE)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """An (N, 3, H, W) image -> ``{"out": (N, out_channels, H/8, W/8) (fc7 with LargeFOV, else
        pool5), "low_level": pool2 (N, 128, H/4, W/4), "aux": pool4 (N, 512, H/8, W/8)}`` (sides rounded up)."""
        feats: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self.low_level_index:
                feats["low_level"] = x
            if i == self.aux_index:
                feats["aux"] = x
        if self.largefov:
            x = self.drop(torch.relu(self.fc7(self.drop(torch.relu(self.fc6(x))))))
        feats["out"] = x
        return feats
