"""Depth-aware cross-modal attention: depth features query the warped appearance features.

``DepthAwareAttention.mode`` says how the attention is computed; all give the same numbers to
float rounding. "auto": query chunks, SDPA on accelerators and plain matmuls on CPU (where SDPA
runs the same matmuls plus guards for fully masked rows, which an unmasked attention never has:
20% slower); "sdpa": query chunks through SDPA everywhere; "matrix": the whole (HW x HW) matrix at
once, as the original computes it (for comparisons).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mode: str) -> torch.Tensor:
    """softmax(query key^T) value, with the original's scale of 1."""
    if mode == "matrix" or (mode == "auto" and query.device.type == "cpu"):
        return torch.softmax(query @ key.transpose(1, 2), dim=-1) @ value
    return F.scaled_dot_product_attention(query, key, value, scale=1.0)


class DepthAwareAttention(nn.Module):
    """Attention with query from source-depth features, key and value from warped RGB features."""

    def __init__(self, channels: int):
        super().__init__()
        self.query_conv = nn.Conv2d(channels, channels // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(channels, channels // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.query_chunk = 1024
        self.mode = "auto"  # "auto", "sdpa" or "matrix": how forward computes the attention

    def forward(self, depth_features: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Return ``gamma * attended + features``; shapes are (B, C, H, W)."""
        b, c, h, w = features.shape
        query = F.relu(self.query_conv(depth_features)).flatten(2).transpose(1, 2)
        key = F.relu(self.key_conv(features)).flatten(2).transpose(1, 2)
        value = F.relu(self.value_conv(features)).flatten(2).transpose(1, 2)
        query = query.expand(b, -1, -1)
        # The original uses unscaled dot products: scale 1, not 1/sqrt(d). Rows of the softmax
        # are independent, so queries go in chunks: the same numbers, without ever holding the
        # whole (HW x HW) matrix (256 MB per frame at 64x64).
        chunk = h * w if self.mode == "matrix" else self.query_chunk
        attended = torch.cat(
            [_attend(query[:, i : i + chunk], key, value, self.mode) for i in range(0, h * w, chunk)], dim=1
        )
        # The transposed view has channels-last strides. ``features`` goes first so that the sum
        # takes its layout: an NCHW network stays NCHW, whose convolution backward is twice as fast
        # on CPU as channels-last (training), and a channels-last one stays channels-last.
        return features + self.gamma * attended.transpose(1, 2).reshape(b, c, h, w)
