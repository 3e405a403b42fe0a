"""The face-depth network as DaGAN uses it: encoder + decoder, disparity at full resolution."""

from __future__ import annotations

import torch
from torch import nn

from dagan.config import DepthConfig
from dagan.nn.depth_decoder import DepthDecoder
from dagan.nn.depth_encoder import DepthEncoder


class FaceDepthNetwork(nn.Module):
    """What DaGAN calls "depth": the sigmoid disparity at scale 0, in (0, 1)."""

    def __init__(self, config: DepthConfig):
        super().__init__()
        self.config = config
        self.encoder = DepthEncoder(config)
        self.decoder = DepthDecoder(self.encoder.num_ch_enc, config.scales)

    def forward(self, image: torch.Tensor, all_scales: bool = False) -> torch.Tensor | dict[int, torch.Tensor]:
        """Disparity (B, 1, H, W) of a (B, 3, H, W) image in [0, 1]; ``all_scales`` gives {scale: map}."""
        if all_scales:
            return self.decoder(self.encoder(image))
        return self.decoder(self.encoder(image), scales=(0,))[0]
