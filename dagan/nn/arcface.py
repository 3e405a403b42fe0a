"""The ArcFace ResNet-18 of GFPGAN's identity loss (IR blocks without squeeze-excitation, 512-d output).

Input: grey faces of 128x128 in [-1, 1] (luma 0.2989 R + 0.5870 G + 0.1140 B); the state dict
keys are those of GFPGAN's ``arcface_resnet18.pth``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv3x3(inputs: int, outputs: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)


class IRBlock(nn.Module):
    """BN, 3x3 conv, BN, PReLU, strided 3x3 conv, BN, plus the (projected) input, then PReLU."""

    def __init__(self, inputs: int, outputs: int, stride: int = 1):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(inputs)
        self.conv1 = _conv3x3(inputs, inputs)
        self.bn1 = nn.BatchNorm2d(inputs)
        self.prelu = nn.PReLU()
        self.conv2 = _conv3x3(inputs, outputs, stride)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.downsample = None
        if stride != 1 or inputs != outputs:
            self.downsample = nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False), nn.BatchNorm2d(outputs)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One residual step."""
        out = self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(self.bn0(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.prelu(out + shortcut)


class ArcFaceResNet18(nn.Module):
    """Identity embeddings of (B, 1, 128, 128) grey faces in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        widths = (64, 64, 128, 256, 512)
        for index in range(4):
            stride = 1 if index == 0 else 2
            blocks = [IRBlock(widths[index], widths[index + 1], stride), IRBlock(widths[index + 1], widths[index + 1])]
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
        self.bn4 = nn.BatchNorm2d(512)
        self.fc5 = nn.Linear(512 * 8 * 8, 512)
        self.bn5 = nn.BatchNorm1d(512)

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        """(B, 512) embeddings."""
        x = F.max_pool2d(self.prelu(self.bn1(self.conv1(grey))), 2)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.bn5(self.fc5(self.bn4(x).flatten(1)))


def arcface_input(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] to the (B, 1, 128, 128) grey input in [-1, 1], resized bilinearly."""
    grey = (0.2989 * images[:, 0] + 0.5870 * images[:, 1] + 0.1140 * images[:, 2]).unsqueeze(1) * 2 - 1
    return F.interpolate(grey, size=(128, 128), mode="bilinear", align_corners=False)
