"""DepthAwareGenerator: keypoint-driven warping, depth-aware attention, residual decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dagan.config import GeneratorConfig
from dagan.nn.attention import DepthAwareAttention
from dagan.nn.common import (
    DownBlock2d,
    Keypoints,
    ResBlock2d,
    SameBlock2d,
    UpBlock2d,
    deform,
    resize_bilinear,
)
from dagan.nn.dense_motion import DenseMotionNetwork


@dataclass
class SourceEncoding:
    """What the generator computes from the source alone; reusable for every driving frame."""

    features: torch.Tensor
    depth_features: torch.Tensor


def _widths(config: GeneratorConfig, level: int) -> int:
    return min(config.max_features, config.block_expansion * (2**level))


class DepthAwareWarper(nn.Module):
    """What both generator variants share: source encoders, dense motion and depth-aware attention."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        n = config.num_down_blocks
        self.dense_motion_network = DenseMotionNetwork(config.dense_motion)
        self.first = SameBlock2d(config.num_channels, config.block_expansion, kernel_size=7, padding=3)
        self.down_blocks = nn.ModuleList(DownBlock2d(_widths(config, i), _widths(config, i + 1)) for i in range(n))
        self.src_first = SameBlock2d(1, config.block_expansion, kernel_size=7, padding=3)
        self.src_down_blocks = nn.ModuleList(DownBlock2d(_widths(config, i), _widths(config, i + 1)) for i in range(n))
        self.AttnModule = DepthAwareAttention(_widths(config, n))

    def encode_source(self, source_image: torch.Tensor, source_depth: torch.Tensor) -> SourceEncoding:
        """Encode the source image and its depth."""
        features = self.first(source_image)
        for block in self.down_blocks:
            features = block(features)
        depth_features = self.src_first(source_depth)
        for block in self.src_down_blocks:
            depth_features = block(depth_features)
        return SourceEncoding(features, depth_features)

    def warp(
        self,
        source_image: torch.Tensor,
        kp_driving: Keypoints,
        kp_source: Keypoints,
        encoding: SourceEncoding,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Warp and occlude the source features, then apply the depth-aware attention."""
        batch = kp_driving.value.shape[0]
        if source_image.shape[0] != batch:
            source_image = source_image.expand(batch, -1, -1, -1)
        if kp_source.value.shape[0] != batch:
            kp_source = kp_source.expand(batch)
        motion = self.dense_motion_network(source_image, kp_driving, kp_source)
        out = {"mask": motion["mask"], "sparse_deformed": motion["sparse_deformed"]}
        aligned = self.dense_motion_network.config.align_corners
        features = deform(encoding.features.expand(batch, -1, -1, -1), motion["deformation"], aligned)
        occlusion = motion.get("occlusion_map")
        if occlusion is not None:
            out["occlusion_map"] = occlusion
            features = features * resize_bilinear(occlusion, features.shape[2:])
        features = self.AttnModule(encoding.depth_features, features)
        out["deformation"] = motion["deformation"]
        out["deformed"] = deform(source_image, motion["deformation"], aligned)
        return features, out

    def decode(self, features: torch.Tensor, warped: dict[str, torch.Tensor]) -> torch.Tensor:
        """Turn attended features into an image in [0, 1]; each variant has its own decoder."""
        raise NotImplementedError

    def forward(
        self,
        source_image: torch.Tensor,
        kp_driving: Keypoints,
        kp_source: Keypoints,
        source_depth: torch.Tensor,
        driving_depth: torch.Tensor | None = None,
        encoding: SourceEncoding | None = None,
    ) -> dict[str, torch.Tensor]:
        """Animate the source. ``driving_depth`` is unused, as in the original; ``encoding`` may be cached."""
        if encoding is None:
            encoding = self.encode_source(source_image, source_depth)
        features, out = self.warp(source_image, kp_driving, kp_source, encoding)
        out["prediction"] = self.decode(features, out)
        return out


class DepthAwareGenerator(DepthAwareWarper):
    """The DaGAN generator with the residual-bottleneck decoder."""

    def __init__(self, config: GeneratorConfig):
        super().__init__(config)
        self.config = config
        n = config.num_down_blocks
        self.up_blocks = nn.ModuleList(UpBlock2d(_widths(config, n - i), _widths(config, n - i - 1)) for i in range(n))
        self.bottleneck = nn.Sequential()
        for i in range(config.num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(_widths(config, n)))
        self.final = nn.Conv2d(config.block_expansion, config.num_channels, kernel_size=7, padding=3)
        self.blend = nn.Conv2d(config.block_expansion, 1, kernel_size=7, padding=3) if config.blend_deformed else None

    def decode(self, features: torch.Tensor, warped: dict[str, torch.Tensor]) -> torch.Tensor:
        """Turn attended features into an image in [0, 1] (with ``blend_deformed``, also store the
        mask in ``warped["blend_mask"]``, so the generator's outputs include it)."""
        out = self.bottleneck(features)
        for block in self.up_blocks:
            out = block(out)
        image = torch.sigmoid(self.final(out))
        if self.blend is None:
            return image
        mask = torch.sigmoid(self.blend(out))
        warped["blend_mask"] = mask
        return mask * warped["deformed"] + (1 - mask) * image
