"""VGG19 feature slices for the perceptual loss (torchvision layout, ImageNet normalisation inside).

Built here rather than taken from torchvision, whose ``vgg19()`` builds (and draws random weights
for) a 140-million-parameter classifier that the features then drop. The weights are always
loaded from torchvision's file, so only the layout has to match (``tests/test_train.py`` checks
keys, shapes and activations against torchvision's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
        if x.requires_grad and not self._trains() and not _autocasting(x) and not torch.compiler.is_compiling():
            return self._frozen_forward(x)
        return self._layer_by_layer(x)

    def _layer_by_layer(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        start = 0
        for end in SLICE_ENDS:
            for layer in list(self)[start : end + 1]:
                x = layer(x)
            outputs.append(x)
            start = end + 1
        return outputs

    def _trains(self) -> bool:
        return any(parameter.requires_grad for parameter in self.parameters())

    def _frozen_forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The same activations, keeping for backward only what an input gradient needs.

        With the weights frozen, autograd would still keep each convolution's input (for a weight
        gradient nobody asks for) and each ReLU's float output: about 250 MB for the perceptual
        loss of a 256x256 batch of 2 over four scales, held at the end of a training step's
        forward pass, where its memory peaks. A ReLU's gradient needs only where its output is
        positive, a 2x2 max pool's only which of the four won; the arithmetic of both backward
        passes is unchanged, so the input gradient is the same to the bit (tests/test_train.py).
        """
        outputs = []
        layers = list(self)
        index = 0
        while index <= SLICE_ENDS[-1]:
            layer = layers[index]
            if isinstance(layer, nn.Conv2d):  # always followed by its ReLU
                x = _FrozenConvReLU.apply(x, layer.weight, layer.bias)
                index += 2
                if index - 1 in SLICE_ENDS:
                    outputs.append(x)
            else:
                x = _FrozenMaxPool.apply(x)
                index += 1
        return outputs


def _autocasting(x: torch.Tensor) -> bool:
    return torch.is_autocast_enabled(x.device.type)


class _FrozenConvReLU(torch.autograd.Function):
    """relu(conv3x3(x)) with frozen weights; keeps the weight and a bool mask of positive outputs."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        y = F.relu(F.conv2d(x, weight, bias, padding=1))
        ctx.save_for_backward(y > 0, weight)
        ctx.input_shape = x.shape
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        positive, weight = ctx.saved_tensors
        grad = torch.where(positive, grad, 0.0)
        # The input gradient needs only the input's shape: the same kernel autograd's own
        # convolution backward runs for it.
        return torch.nn.grad.conv2d_input(ctx.input_shape, weight, grad, padding=1), None, None


class _FrozenMaxPool(torch.autograd.Function):
    """2x2 max pool, stride 2; keeps which of the four inputs won, as uint8."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y, indices = F.max_pool2d(x, 2, 2, return_indices=True)
        width = x.shape[-1]
        ctx.save_for_backward(((indices // width % 2) * 2 + indices % width % 2).to(torch.uint8))
        ctx.input_size = x.shape[-2:]
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (winner,) = ctx.saved_tensors
        height, width = ctx.input_size
        rows = torch.arange(grad.shape[-2], device=grad.device).view(-1, 1) * 2
        columns = torch.arange(grad.shape[-1], device=grad.device).view(1, -1) * 2
        winner = winner.long()
        indices = (rows + winner // 2) * width + columns + winner % 2
        return F.max_unpool2d(grad, indices, 2, 2, output_size=(height, width))
