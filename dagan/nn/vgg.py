"""VGG19 feature slices for the perceptual loss (torchvision layout, ImageNet normalisation inside)."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

#: ``features`` indices after which the relu1_1 ... relu5_1 activations are taken.
SLICE_ENDS = (1, 6, 11, 20, 29)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Sequential):
    """torchvision's ``vgg19().features`` (same state-dict keys); ``forward`` returns 5 activations."""

    def __init__(self):
        super().__init__(*torchvision.models.vgg19(weights=None).features)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 of an image in [0, 1]."""
        x = (image - self.mean) / self.std
        outputs = []
        start = 0
        for end in SLICE_ENDS:
            for layer in list(self)[start : end + 1]:
                x = layer(x)
            outputs.append(x)
            start = end + 1
        return outputs
