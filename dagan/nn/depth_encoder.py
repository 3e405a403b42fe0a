"""Face-depth encoder: a ResNet (torchvision's keys) that returns five feature maps."""

from __future__ import annotations

import torch
from torch import nn

from dagan.config import DepthConfig
from dagan.nn.resnet import ResNet


class DepthEncoder(nn.Module):
    """ResNet feature pyramid; the ImageNet-style input normalisation happens inside."""

    def __init__(self, config: DepthConfig, num_input_images: int = 1):
        super().__init__()
        self.encoder = ResNet(config.num_layers)
        if num_input_images != 1:
            # Pose networks see frames stacked along channels.
            self.encoder.conv1 = nn.Conv2d(3 * num_input_images, 64, kernel_size=7, stride=2, padding=3, bias=False)
        # The classifier stays only for the key layout of encoder.pth; it never sees data, so it
        # takes no gradients (DDP would otherwise wait for them forever).
        self.encoder.fc.requires_grad_(False)
        expansion = 4 if config.num_layers > 34 else 1
        self.num_ch_enc = [64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion]

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at 1/2, 1/4, 1/8, 1/16 and 1/32 of a (B, 3, H, W) image in [0, 1]."""
        net = self.encoder
        x = net.relu(net.bn1(net.conv1((image - 0.45) / 0.225)))
        features = [x]
        features.append(net.layer1(net.maxpool(x)))
        features.append(net.layer2(features[-1]))
        features.append(net.layer3(features[-1]))
        features.append(net.layer4(features[-1]))
        return features
