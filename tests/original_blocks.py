"""Blocks written the way the original code computes them, for tests and benchmarks to compare with.

Each takes the block as ``self``, so the benchmarks' plain paths can patch it over the block's
``forward``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dagan.nn.common import make_coordinate_grid


def original_discriminator_block(self, x: torch.Tensor) -> torch.Tensor:
    """The original's discriminator DownBlock2d: its leaky ReLU is not in place."""
    out = self.conv(x)
    if self.norm is not None:
        out = self.norm(out)
    out = F.leaky_relu(out, 0.2)
    return F.avg_pool2d(out, 2) if self.pool else out


def original_kp2gaussian(value: torch.Tensor, height: int, width: int, kp_variance: float) -> torch.Tensor:
    """The original's kp2gaussian: its far tails stay subnormal floats."""
    grid = make_coordinate_grid(height, width, value)
    diff = grid.view(1, 1, height, width, 2) - value.view(*value.shape[:2], 1, 1, 2)
    return torch.exp(-0.5 * (diff**2).sum(-1) / kp_variance)
