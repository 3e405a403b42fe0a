"""Blocks written the way the original code computes them, for tests and benchmarks to compare with.

Each takes the block as ``self``, so the benchmarks' plain paths can patch it over the block's
``forward``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def original_discriminator_block(self, x: torch.Tensor) -> torch.Tensor:
    """The original's discriminator DownBlock2d: its leaky ReLU is not in place."""
    out = self.conv(x)
    if self.norm is not None:
        out = self.norm(out)
    out = F.leaky_relu(out, 0.2)
    return F.avg_pool2d(out, 2) if self.pool else out
