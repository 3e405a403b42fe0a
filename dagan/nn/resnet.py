"""ResNet-18 to -152 with torchvision's state-dict keys and initialisation, without importing torchvision.

``import torchvision`` pulls in its detection operators and, through them, ``torch._dynamo``:
2.3 s and 160 MB of resident memory before a frame is animated, for the only torchvision class
animation needs. The modules are built in torchvision's order and initialised the same way, so
a seeded construction draws the same random weights as ``torchvision.models.resnetNN()``
(``tests/test_resnet.py`` checks keys, weights and outputs against torchvision).
"""

from __future__ import annotations

import torch
from torch import nn

#: Blocks per stage of each depth, and whether the stages use bottleneck blocks.
RESNET_LAYOUTS: dict[int, tuple[tuple[int, int, int, int], bool]] = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
    152: ((3, 8, 36, 3), True),
}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (ResNet-18 and -34)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + shortcut)


class Bottleneck(nn.Module):
    """1x1 squeeze, strided 3x3, 1x1 expand by 4, and a shortcut (ResNet-50 and deeper; stride on the 3x3)."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + shortcut)


class ResNet(nn.Module):
    """The ImageNet ResNet of ``depth`` layers: stem, four stages, pooled 1000-way classifier."""

    def __init__(self, depth: int):
        super().__init__()
        if depth not in RESNET_LAYOUTS:
            raise ValueError(f"unsupported ResNet depth {depth}; use one of {sorted(RESNET_LAYOUTS)}")
        blocks, bottleneck = RESNET_LAYOUTS[depth]
        block = Bottleneck if bottleneck else BasicBlock
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_channels = 64
        for index, (count, channels) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True)):
            stride = 1 if index == 0 else 2
            stage, in_channels = _stage(block, in_channels, channels, count, stride)
            setattr(self, f"layer{index + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, 1000)
        # torchvision's initialisation, in its order: a seeded build draws torchvision's weights.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000) of a normalised (B, 3, H, W) image."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _stage(
    block: type[BasicBlock | Bottleneck], in_channels: int, channels: int, count: int, stride: int
) -> tuple[nn.Sequential, int]:
    out_channels = channels * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        # Built before the first block, as torchvision does: the random draws keep its order.
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
        )
    layers = [block(in_channels, channels, stride, downsample)]
    layers += [block(out_channels, channels, 1, None) for _ in range(count - 1)]
    return nn.Sequential(*layers), out_channels
