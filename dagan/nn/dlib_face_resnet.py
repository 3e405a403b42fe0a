"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in torch: 150x150 chips to 128-d.

dlib runs this network on one core in its own arithmetic; here it runs batched through torch's
kernels, with the same weights (``dagan.io.dlib_net`` reads them from dlib's ``.dat`` file) and
the same conventions, so the embeddings agree with dlib's to float rounding:

- strided convolutions and all pools have no padding (dlib's default when the stride is not 1);
- the batch norms were folded into per-channel affine layers when the model was saved;
- a residual sum of tensors of different channel counts or sizes is taken over the larger shape,
  each tensor aligned at channel 0 and the top-left pixel and zero elsewhere (dlib's ``add_prev``).
  The last two downsampling blocks rely on it: their convolution path is one pixel smaller than
  the pooled shortcut.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: dlib's per-channel means (R, G, B) of the 8-bit chip; pixels are then divided by 256, not 255.
CHIP_MEAN = (122.782, 117.001, 104.298)
CHIP_SIZE = 150
#: (channels, first block downsamples, blocks) per level, from the input to the output.
LEVELS = ((32, False, 3), (64, True, 4), (128, True, 3), (256, True, 3), (256, True, 1))


class ChannelAffine(nn.Module):
    """gamma * x + beta per channel: a batch norm folded at training's end."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale and shift each channel."""
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.weight.view(1, -1, 1, 1))


def add_aligned(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b over the larger of their shapes, each zero beyond its own end (dlib's ``add_prev``)."""
    shape = [max(x, y) for x, y in zip(a.shape[1:], b.shape[1:], strict=True)]

    def grown(t: torch.Tensor) -> torch.Tensor:
        c, h, w = t.shape[1:]
        if [c, h, w] == shape:
            return t
        return F.pad(t, (0, shape[2] - w, 0, shape[1] - h, 0, shape[0] - c))

    return grown(a) + grown(b)


class ResidualBlock(nn.Module):
    """conv 3x3, affine, ReLU, conv 3x3, affine, plus the input (average-pooled 2x2 when downsampling), ReLU."""

    def __init__(self, inputs: int, outputs: int, downsample: bool):
        super().__init__()
        stride = 2 if downsample else 1
        self.downsample = downsample
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride=stride, padding=0 if downsample else 1)
        self.affine1 = ChannelAffine(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1)
        self.affine2 = ChannelAffine(outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One residual step."""
        out = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2) if self.downsample else x
        return F.relu(add_aligned(shortcut, out))


class DlibFaceResNet(nn.Module):
    """(B, 3, 150, 150) normalised RGB chips (see ``chip_input``) to (B, 128) embeddings, not normalised."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 7, stride=2)
        self.affine = ChannelAffine(32)
        blocks, channels = [], 32
        for width, downsamples, count in LEVELS:
            for index in range(count):
                blocks.append(ResidualBlock(channels, width, downsamples and index == 0))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, 128, bias=False)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        """128-d identity embeddings."""
        x = F.max_pool2d(F.relu(self.affine(self.conv(chips))), 3, stride=2)
        return self.fc(self.blocks(x).mean(dim=(2, 3)))


def chip_input(chips: torch.Tensor) -> torch.Tensor:
    """(B, 150, 150, 3) uint8 RGB chips to the network's input: NCHW, mean-subtracted, over 256."""
    mean = torch.tensor(CHIP_MEAN, dtype=torch.float32, device=chips.device).view(1, 3, 1, 1)
    return (chips.permute(0, 3, 1, 2).float() - mean) / 256.0
