"""A small landmark regressor for synthetic heads: heatmaps and a soft-argmax.

dlib's detector does not find ``dagan synth`` heads reliably, so AKD on synthetic evaluation sets
uses this network, trained on the synthetic ground truth (``dagan train-landmarks``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class LandmarkNet(nn.Module):
    """RGB in [0, 1] (B, 3, H, W) to landmark positions in pixels (B, L, 2), x then y."""

    def __init__(self, num_landmarks: int = 16, width: int = 16):
        super().__init__()
        self.num_landmarks = num_landmarks
        self.features = nn.Sequential(
            _block(3, width, 2),
            _block(width, 2 * width, 1),
            _block(2 * width, 2 * width, 2),
            _block(2 * width, 4 * width, 1),
            _block(4 * width, 4 * width, 1),
        )
        self.heatmaps = nn.Conv2d(4 * width, num_landmarks, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Expected position under each landmark's softmax heatmap, in input pixels."""
        b, _, h, w = images.shape
        logits = self.heatmaps(self.features(images * 2 - 1))
        hh, ww = logits.shape[2:]
        probabilities = F.softmax(logits.flatten(2), dim=-1).view(b, self.num_landmarks, hh, ww)
        # Heatmap cell centres, mapped back to input pixel coordinates (pixel centres at i + 0.5).
        xs = (torch.arange(ww, dtype=images.dtype, device=images.device) + 0.5) * (w / ww)
        ys = (torch.arange(hh, dtype=images.dtype, device=images.device) + 0.5) * (h / hh)
        x = (probabilities.sum(2) * xs).sum(-1)
        y = (probabilities.sum(3) * ys).sum(-1)
        return torch.stack([x, y], -1)
