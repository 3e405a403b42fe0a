"""Dense motion network: blends per-keypoint local affine motions into one flow."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dagan.config import DenseMotionConfig
from dagan.nn.common import (
    AntiAliasDownsample,
    Hourglass,
    Keypoints,
    inverse_2x2,
    kp2gaussian,
    make_coordinate_grid,
)


class DenseMotionNetwork(nn.Module):
    """Predicts a backward-warping grid, a keypoint mask and an occlusion map at low resolution."""

    def __init__(self, config: DenseMotionConfig):
        super().__init__()
        self.config = config
        k = config.num_kp
        self.hourglass = Hourglass(
            config.block_expansion,
            (k + 1) * (config.num_channels + 1),
            config.num_blocks,
            config.max_features,
        )
        self.mask = nn.Conv2d(self.hourglass.out_filters, k + 1, kernel_size=7, padding=3)
        self.occlusion = (
            nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=7, padding=3)
            if config.estimate_occlusion_map
            else None
        )
        self.down = AntiAliasDownsample(config.num_channels, config.scale_factor) if config.scale_factor != 1 else None

    def heatmap_difference(self, h: int, w: int, kp_driving: Keypoints, kp_source: Keypoints) -> torch.Tensor:
        """Driving minus source Gaussians, with a zero background channel first: (B, K+1, 1, h, w)."""
        var = self.config.kp_variance
        heatmap = kp2gaussian(kp_driving.value, h, w, var) - kp2gaussian(kp_source.value, h, w, var)
        zeros = heatmap.new_zeros(heatmap.shape[0], 1, h, w)
        return torch.cat([zeros, heatmap], dim=1).unsqueeze(2)

    def sparse_motions(self, h: int, w: int, kp_driving: Keypoints, kp_source: Keypoints) -> torch.Tensor:
        """Per-keypoint sampling grids (B, K+1, h, w, 2); the first is the identity."""
        b, k, _ = kp_driving.value.shape
        identity = make_coordinate_grid(h, w, kp_source.value).view(1, 1, h, w, 2)
        coords = identity - kp_driving.value.view(b, k, 1, 1, 2)
        if kp_driving.jacobian is not None:
            jacobian = torch.matmul(kp_source.jacobian, inverse_2x2(kp_driving.jacobian))
            coords = torch.einsum("bkij,bkhwj->bkhwi", jacobian, coords)
        driving_to_source = coords + kp_source.value.view(b, k, 1, 1, 2)
        return torch.cat([identity.expand(b, 1, h, w, 2), driving_to_source], dim=1)

    def forward(
        self, source_image: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints
    ) -> dict[str, torch.Tensor]:
        """Return ``deformation`` (B, h, w, 2), ``mask``, ``sparse_deformed`` and ``occlusion_map``."""
        image = source_image if self.down is None else self.down(source_image)
        b, c, h, w = image.shape
        k1 = self.config.num_kp + 1
        heatmaps = self.heatmap_difference(h, w, kp_driving, kp_source)
        motions = self.sparse_motions(h, w, kp_driving, kp_source)
        repeated = image.unsqueeze(1).expand(b, k1, c, h, w).reshape(b * k1, c, h, w)
        deformed = F.grid_sample(repeated, motions.reshape(b * k1, h, w, 2), align_corners=self.config.align_corners)
        deformed = deformed.view(b, k1, c, h, w)
        prediction = self.hourglass(torch.cat([heatmaps, deformed], dim=2).view(b, -1, h, w))
        mask = F.softmax(self.mask(prediction), dim=1)
        deformation = (motions.permute(0, 1, 4, 2, 3) * mask.unsqueeze(2)).sum(dim=1).permute(0, 2, 3, 1)
        out = {"mask": mask, "sparse_deformed": deformed, "deformation": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction))
        return out
