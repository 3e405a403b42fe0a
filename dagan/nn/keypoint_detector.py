"""Unsupervised keypoint detector on RGB-D input."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dagan.config import KeypointDetectorConfig
from dagan.nn.common import (
    AntiAliasDownsample,
    Hourglass,
    Keypoints,
    make_coordinate_grid,
)


class KeypointDetector(nn.Module):
    """Predicts ``num_kp`` keypoints and their 2x2 jacobians from an image and its depth."""

    def __init__(self, config: KeypointDetectorConfig):
        super().__init__()
        self.config = config
        self.predictor = Hourglass(
            config.block_expansion,
            config.num_channels,
            config.num_blocks,
            config.max_features,
        )
        self.kp = nn.Conv2d(self.predictor.out_filters, config.num_kp, kernel_size=7, padding=config.pad)
        self.num_jacobian_maps = 1 if config.single_jacobian_map else config.num_kp
        if config.estimate_jacobian:
            self.jacobian = nn.Conv2d(
                self.predictor.out_filters,
                4 * self.num_jacobian_maps,
                kernel_size=7,
                padding=config.pad,
            )
            # Start from identity jacobians, as the original does.
            nn.init.zeros_(self.jacobian.weight)
            with torch.no_grad():
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0] * self.num_jacobian_maps))
        else:
            self.jacobian = None
        self.down = AntiAliasDownsample(config.num_channels, config.scale_factor) if config.scale_factor != 1 else None

    def forward(self, image_and_depth: torch.Tensor) -> Keypoints:
        """Keypoints for a (B, C+1, H, W) tensor of RGB concatenated with disparity."""
        x = image_and_depth if self.down is None else self.down(image_and_depth)
        features = self.predictor(x)
        logits = self.kp(features)
        b, k, h, w = logits.shape
        heatmap = F.softmax(logits.view(b, k, -1) / self.config.temperature, dim=2).view(b, k, h, w)
        grid = make_coordinate_grid(h, w, heatmap)
        value = (heatmap.unsqueeze(-1) * grid.view(1, 1, h, w, 2)).sum(dim=(2, 3))
        jacobian = None
        if self.jacobian is not None:
            jacobian_map = self.jacobian(features).reshape(b, self.num_jacobian_maps, 4, h, w)
            jacobian = (heatmap.unsqueeze(2) * jacobian_map).view(b, k, 4, -1).sum(dim=-1)
            jacobian = jacobian.view(b, k, 2, 2)
        return Keypoints(value, jacobian)
