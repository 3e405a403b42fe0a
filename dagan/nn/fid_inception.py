"""The Inception v3 that pytorch-fid uses (the TF FID graph ported): pool3 features for FID.

It differs from torchvision's Inception v3 in 1008 classes and in the pooling branches: average
pooling that ignores padding in the A, C and first E blocks, and max pooling in the last E block.
Inputs in [0, 1] are resized to 299x299 (bilinear) and mapped to [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models import inception


def _average_without_padding(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def _pooling_branch(block: nn.Module, x: torch.Tensor, pool) -> torch.Tensor:
    """The block's pooling branch with FID's pooling."""
    if pool is _max:
        return block.branch_pool(pool(x))
    # An average that ignores padding commutes with the branch's 1x1 convolution and its batch norm
    # in eval mode, the only mode features are computed in (both affine per pixel, and the weights
    # of the average sum to one): pooling after them, on 32-192 channels instead of 192-2048, gives
    # the same values to float rounding, faster.
    branch = block.branch_pool
    return F.relu(pool(branch.bn(branch.conv(x))))


class FidInceptionA(inception.InceptionA):
    """InceptionA with padding-free average pooling."""

    pool = staticmethod(_average_without_padding)

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        # torchvision's own _forward would also compute its pooling branch, only to have it replaced.
        return [
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            _pooling_branch(self, x, self.pool),
        ]


class FidInceptionC(inception.InceptionC):
    """InceptionC with padding-free average pooling."""

    pool = staticmethod(_average_without_padding)

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        seven = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        return [self.branch1x1(x), seven, double, _pooling_branch(self, x, self.pool)]


class FidInceptionE1(inception.InceptionE):
    """The first InceptionE, with padding-free average pooling."""

    pool = staticmethod(_average_without_padding)

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        three = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return [
            self.branch1x1(x),
            torch.cat([self.branch3x3_2a(three), self.branch3x3_2b(three)], 1),
            torch.cat([self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double)], 1),
            _pooling_branch(self, x, self.pool),
        ]


class FidInceptionE2(FidInceptionE1):
    """The last InceptionE, with max pooling."""

    pool = staticmethod(_max)


class FidInception(nn.Module):
    """pool3 (2048-d) features; the state dict has torchvision's Inception v3 keys (``fc`` of 1008 classes)."""

    def __init__(self):
        super().__init__()
        net = inception.Inception3(
            num_classes=1008,
            aux_logits=False,
            init_weights=False,
            inception_blocks=[
                inception.BasicConv2d,
                FidInceptionA,
                inception.InceptionB,
                FidInceptionC,
                inception.InceptionD,
                FidInceptionE1,
                inception.InceptionAux,
            ],
        )
        net.Mixed_7c = FidInceptionE2(2048)
        for name, module in net.named_children():
            self.add_module(name, module)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 2048) pool3 features of (B, 3, H, W) images in [0, 1]."""
        x = F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            x = getattr(self, name)(x)
        for name in ("Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def fold_batch_norms(self) -> FidInception:
        """For inference only: fold each convolution's batch norm into it (the same features to float
        rounding, one pass over each activation fewer; about 20% faster on CPU). Returns self, in eval mode."""
        self.eval()
        for module in self.modules():
            if isinstance(module, inception.BasicConv2d) and isinstance(module.bn, nn.BatchNorm2d):
                module.conv = fuse_conv_bn_eval(module.conv, module.bn)
                module.bn = nn.Identity()
        return self
