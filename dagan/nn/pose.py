"""Pose network for self-supervised depth: relative motion between two frames, and the camera.

Face videos come without calibration, so besides axis-angle rotation and translation the
decoder predicts the intrinsics (focal lengths and principal point) through softplus heads
scaled by the image size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dagan.config import MONODEPTH2_MOTION_SCALE, DepthConfig
from dagan.nn.depth_encoder import DepthEncoder


class PoseDecoder(nn.Module):
    """1x1 squeeze, two 3x3 convolutions, then 6 motion numbers; a linear head gives 4 intrinsics."""

    def __init__(self, in_channels: int, translation_scale: float = MONODEPTH2_MOTION_SCALE):
        super().__init__()
        # Monocular depth and translation share one free scale, and training settles where the
        # translation head's raw outputs are of order one: depth ~ translation_scale / (motion per
        # frame as a fraction of the distance). monodepth2's 0.01 suits driving; a face video that
        # moves by several percent of its distance a frame lands at the 0.1 depth bound, where the
        # disparity sigmoid saturates (docs/depth.md).
        self.translation_scale = translation_scale
        self.squeeze = nn.Conv2d(in_channels, 256, 1)
        self.conv1 = nn.Conv2d(256, 256, 3, padding=1)
        self.conv2 = nn.Conv2d(256, 256, 3, padding=1)
        self.motion = nn.Conv2d(256, 6, 1)
        self.intrinsics = nn.Linear(256, 4)
        # Start near a plausible camera: focal about the image width, principal point at the centre.
        with torch.no_grad():
            self.intrinsics.weight.mul_(0.01)
            # softplus(0.5413) = 1 and softplus(-0.4328) = 0.5, in units of the image size.
            self.intrinsics.bias.copy_(torch.tensor([0.5413, 0.5413, -0.4328, -0.4328]))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Axis-angle (B, 3), translation (B, 3) and raw intrinsics (B, 4) from deepest features."""
        x = F.relu(self.squeeze(features))
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        motion = self.motion(x).mean(dim=(2, 3))
        raw = self.intrinsics(x.mean(dim=(2, 3)))
        return MONODEPTH2_MOTION_SCALE * motion[:, :3], self.translation_scale * motion[:, 3:], raw


class PoseNetwork(nn.Module):
    """ResNet on a pair of frames stacked along channels, then ``PoseDecoder``."""

    def __init__(self, config: DepthConfig, translation_scale: float = MONODEPTH2_MOTION_SCALE):
        super().__init__()
        self.encoder = DepthEncoder(config, num_input_images=2)
        self.decoder = PoseDecoder(self.encoder.num_ch_enc[-1], translation_scale)

    def forward(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Motion from ``frame_a`` to ``frame_b`` and the 3x3 intrinsics in pixels."""
        features = self.encoder(torch.cat([frame_a, frame_b], dim=1))[-1]
        axisangle, translation, raw = self.decoder(features)
        h, w = frame_a.shape[2:]
        size = torch.tensor([w, h], dtype=raw.dtype, device=raw.device)
        focal, principal = F.softplus(raw[:, :2]) * size, F.softplus(raw[:, 2:]) * size
        k = torch.zeros(raw.shape[0], 3, 3, dtype=raw.dtype, device=raw.device)
        k[:, 0, 0], k[:, 1, 1] = focal[:, 0], focal[:, 1]
        k[:, 0, 2], k[:, 1, 2] = principal[:, 0], principal[:, 1]
        k[:, 2, 2] = 1
        return {"axisangle": axisangle, "translation": translation, "intrinsics": k}
