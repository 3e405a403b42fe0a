"""Building blocks shared by several DaGAN networks (first-order-model conventions).

Attribute names are part of the checkpoint format: they produce the state-dict keys of
the published checkpoints, so they must not be renamed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Keypoints:
    """Keypoint values in [-1, 1] (x first, then y) and optional 2x2 local jacobians."""

    value: torch.Tensor  # (B, K, 2)
    jacobian: torch.Tensor | None = None  # (B, K, 2, 2)

    def detach(self) -> Keypoints:
        """Copy without gradient history."""
        jac = None if self.jacobian is None else self.jacobian.detach()
        return Keypoints(self.value.detach(), jac)

    def expand(self, batch: int) -> Keypoints:
        """Broadcast a batch-1 keypoint set to ``batch`` items (no copy)."""
        jac = None if self.jacobian is None else self.jacobian.expand(batch, -1, -1, -1)
        return Keypoints(self.value.expand(batch, -1, -1), jac)


def inverse_2x2(matrices: torch.Tensor) -> torch.Tensor:
    """Inverse of (..., 2, 2) matrices in closed form (exportable to ONNX, unlike ``torch.inverse``)."""
    a, b, c, d = matrices[..., 0, 0], matrices[..., 0, 1], matrices[..., 1, 0], matrices[..., 1, 1]
    determinant = a * d - b * c
    rows = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2)
    return rows / determinant[..., None, None]


def make_coordinate_grid(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """Grid of shape (H, W, 2) with x then y, each spanning [-1, 1] at pixel centres' ends."""
    x = torch.arange(width, device=like.device).to(like.dtype)
    y = torch.arange(height, device=like.device).to(like.dtype)
    x = 2 * (x / (width - 1)) - 1
    y = 2 * (y / (height - 1)) - 1
    xx = x.view(1, -1).expand(height, width)
    yy = y.view(-1, 1).expand(height, width)
    return torch.stack([xx, yy], dim=2)


def kp2gaussian(value: torch.Tensor, height: int, width: int, kp_variance: float) -> torch.Tensor:
    """Unnormalised Gaussian heatmaps (B, K, H, W) centred on keypoint values (B, K, 2)."""
    grid = make_coordinate_grid(height, width, value)
    diff = grid.view(1, 1, height, width, 2) - value.view(*value.shape[:2], 1, 1, 2)
    heatmap = torch.exp(-0.5 * (diff**2).sum(-1) / kp_variance)
    # The far tails of a narrow Gaussian underflow to subnormal floats (5-7% of a 256x256 map at
    # the default variance), which x86 cores multiply on a slow microcode path: with them, the
    # discriminator's first convolution ran 6x and its weight gradient 4x slower. Wherever a
    # heatmap also holds values near its peak of 1, as every keypoint within the frame's reach
    # does, sums absorb the subnormal ones, so zeroing them leaves the networks' outputs and
    # gradients the same to the bit (tests/test_discriminator.py). The threshold is fp32's
    # smallest normal float whatever the dtype: bf16 shares it, and in fp16 it zeroes nothing.
    return torch.where(heatmap < torch.finfo(torch.float32).tiny, 0.0, heatmap)


class AntiAliasDownsample(nn.Module):
    """Gaussian blur with sigma (1/scale - 1)/2, then strided sampling: band-limited resize."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.pad_before = size // 2
        self.pad_after = self.pad_before - 1 if size % 2 == 0 else self.pad_before
        coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        gauss = torch.exp(-(coords**2) / (2 * sigma**2))
        kernel = gauss[:, None] * gauss[None, :]
        kernel = kernel / kernel.sum()
        self.register_buffer("weight", kernel.expand(channels, 1, size, size).clone())
        self.groups = channels
        self.stride = int(1 / scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Blur and subsample ``x``."""
        out = F.pad(x, (self.pad_before, self.pad_after, self.pad_before, self.pad_after))
        # A strided convolution computes only the kept pixels: the same values as blurring
        # everything and then subsampling, with stride^2 less work.
        return F.conv2d(out, self.weight, groups=self.groups, stride=self.stride)


def anti_alias_kernel_scale(kernel_size: int) -> float:
    """Invert ``AntiAliasDownsample``'s kernel size back to its scale (13 -> 0.25)."""
    for n in range(1, 8):
        sigma = (2.0**n - 1) / 2
        if 2 * round(sigma * 4) + 1 == kernel_size:
            return 1 / 2.0**n
    raise ValueError(f"no downsampling scale has a {kernel_size}x{kernel_size} kernel")


class ResBlock2d(nn.Module):
    """Pre-activation residual block: (BN, ReLU, conv) twice, plus the input."""

    def __init__(self, features: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(features, features, kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(features, affine=True)
        self.norm2 = nn.BatchNorm2d(features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class UpBlock2d(nn.Module):
    """Nearest x2 upsampling, conv, BN, ReLU."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int = 3,
        padding: int = 1,
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=2))))


class DownBlock2d(nn.Module):
    """Conv, BN, ReLU, 2x2 average pooling."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int = 3,
        padding: int = 1,
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


class SameBlock2d(nn.Module):
    """Conv, BN, ReLU at constant resolution."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int = 3,
        padding: int = 1,
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return F.relu(self.norm(self.conv(x)))


def _width(block_expansion: int, level: int, max_features: int) -> int:
    return min(max_features, block_expansion * (2**level))


class HourglassEncoder(nn.Module):
    """Down blocks that keep every intermediate map for the skip connections."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(
                in_features if i == 0 else _width(block_expansion, i, max_features),
                _width(block_expansion, i + 1, max_features),
            )
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the input followed by each block's output."""
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class HourglassDecoder(nn.Module):
    """Up blocks, each followed by concatenation with the matching encoder map."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.up_blocks = nn.ModuleList(
            UpBlock2d(
                (1 if i == num_blocks - 1 else 2) * _width(block_expansion, i + 1, max_features),
                _width(block_expansion, i, max_features),
            )
            for i in reversed(range(num_blocks))
        )
        self.out_filters = block_expansion + in_features

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Decode the encoder's list of maps, deepest last."""
        out = features[-1]
        for i, block in enumerate(self.up_blocks):
            out = torch.cat([block(out), features[-2 - i]], dim=1)
        return out


class Hourglass(nn.Module):
    """U-Net style hourglass; ``out_filters`` is the channel count of its output."""

    def __init__(
        self,
        block_expansion: int,
        in_features: int,
        num_blocks: int = 3,
        max_features: int = 256,
    ):
        super().__init__()
        self.encoder = HourglassEncoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = HourglassDecoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the hourglass."""
        return self.decoder(self.encoder(x))


def resize_bilinear(
    maps: torch.Tensor, size: torch.Size | tuple[int, int], align_corners: bool = False
) -> torch.Tensor:
    """Bilinear resize to ``size``; a no-op when already that size."""
    if tuple(maps.shape[2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=align_corners)


def deform(features: torch.Tensor, deformation: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
    """Warp ``features`` by a sampling grid (B, h, w, 2), resizing the grid bilinearly if needed.

    ``align_corners`` is the grid's convention (``DenseMotionConfig.align_corners``); the resize
    follows it too, so that a resized identity grid stays the identity.
    """
    _, h_grid, w_grid, _ = deformation.shape
    _, _, h, w = features.shape
    if (h_grid, w_grid) != (h, w):
        deformation = resize_bilinear(deformation.permute(0, 3, 1, 2), (h, w), align_corners).permute(0, 2, 3, 1)
    return F.grid_sample(
        features,
        deformation,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=align_corners,
    )
