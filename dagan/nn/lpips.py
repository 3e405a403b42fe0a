"""LPIPS v0.1 with the AlexNet trunk (Zhang et al. 2018), laid out as the ``lpips`` package computes it.

Images in [0, 1] are mapped to [-1, 1] and shifted/scaled per channel; the five ReLU outputs of
AlexNet's convolutions are unit-normalised over channels, their squared differences weighted per
channel by the learnt 1x1 ``lin`` layers, averaged over space and summed.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

#: Where AlexNet's ``features`` are cut: each slice ends with a ReLU.
SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))
CHANNELS = (64, 192, 384, 256, 256)


class LPIPS(nn.Module):
    """Perceptual distance between two batches of RGB images in [0, 1]; keys ``features.*`` and ``lin{i}.weight``."""

    def __init__(self):
        super().__init__()
        # Only AlexNet's convolutional trunk is used: building the whole network would spend half a
        # second initialising its 58M classifier weights, so it is built on the meta device and
        # only the trunk is given memory and initialised.
        with torch.device("meta"):
            trunk = torchvision.models.alexnet(weights=None).features
        self.features = trunk.to_empty(device="cpu")
        for layer in self.features:
            if isinstance(layer, nn.Conv2d):
                layer.reset_parameters()
        for index, channels in enumerate(CHANNELS):
            self.add_module(f"lin{index}", nn.Conv2d(channels, 1, 1, bias=False))
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)

    def _layers(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = (image * 2 - 1 - self.shift) / self.scale
        outputs = []
        for start, stop in SLICES:
            for index in range(start, stop):
                x = self.features[index](x)
            outputs.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return outputs

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(B,) distances between (B, 3, H, W) batches ``a`` and ``b``."""
        total = 0
        for index, (fa, fb) in enumerate(zip(self._layers(a), self._layers(b), strict=True)):
            total = total + getattr(self, f"lin{index}")((fa - fb) ** 2).mean(dim=(2, 3))
        return total.flatten()
