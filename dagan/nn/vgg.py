"""VGG19 feature slices for the perceptual loss (torchvision layout, ImageNet normalisation inside).

Built here rather than taken from torchvision: ``import torchvision`` brings ``torch._dynamo`` with
it, about 165 MB of resident memory that a training process would carry through every step, and
``vgg19()`` builds (and draws random weights for) a 140-million-parameter classifier only to drop
it. The weights are always loaded from torchvision's file, so only the layout has to match
(``tests/test_train.py`` checks keys, shapes and activations against torchvision's).
"""

from __future__ import annotations

import torch
from torch import nn

#: Output channels of each 3x3 convolution, "M" a 2x2 max pool: torchvision's configuration "E".
LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
#: ``features`` indices after which the relu1_1 ... relu5_1 activations are taken.
SLICE_ENDS = (1, 6, 11, 20, 29)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Sequential):
    """torchvision's ``vgg19().features`` (same state-dict keys); ``forward`` returns 5 activations."""

    def __init__(self):
        layers: list[nn.Module] = []
        channels = 3
        for entry in LAYOUT:
            if entry == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, entry, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = entry
        super().__init__(*layers)
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
