"""Face-depth decoder: sigmoid disparity at four scales (monodepth2 layout)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DECODER_CHANNELS = (16, 32, 64, 128, 256)


class PaddedConv3x3(nn.Module):
    """3x3 convolution after reflection padding."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the convolution."""
        return self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))


class ConvBlock(nn.Module):
    """Padded 3x3 convolution followed by ELU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = PaddedConv3x3(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return F.elu(self.conv(x))


class DepthDecoder(nn.Module):
    """Upsampling decoder with skips; ``forward`` returns {scale: disparity in (0, 1)}."""

    def __init__(self, num_ch_enc: list[int], scales: tuple[int, ...] = (0, 1, 2, 3)):
        super().__init__()
        self.scales = tuple(scales)
        blocks: list[nn.Module] = []
        # Order matters: it fixes the ``decoder.{i}`` checkpoint keys.
        for i in range(4, -1, -1):
            in_ch = num_ch_enc[-1] if i == 4 else DECODER_CHANNELS[i + 1]
            blocks.append(ConvBlock(in_ch, DECODER_CHANNELS[i]))
            skip = num_ch_enc[i - 1] if i > 0 else 0
            blocks.append(ConvBlock(DECODER_CHANNELS[i] + skip, DECODER_CHANNELS[i]))
        for s in self.scales:
            blocks.append(PaddedConv3x3(DECODER_CHANNELS[s], 1))
        self.decoder = nn.ModuleList(blocks)

    def forward(self, features: list[torch.Tensor], scales: tuple[int, ...] | None = None) -> dict[int, torch.Tensor]:
        """Disparities for ``scales`` (default: all the decoder has), scale 0 at input size."""
        wanted = self.scales if scales is None else scales
        outputs: dict[int, torch.Tensor] = {}
        x = features[-1]
        for step, i in enumerate(range(4, -1, -1)):
            x = F.interpolate(self.decoder[2 * step](x), scale_factor=2, mode="nearest")
            if i > 0:
                x = torch.cat([x, features[i - 1]], dim=1)
            x = self.decoder[2 * step + 1](x)
            if i in wanted:
                head = self.decoder[10 + self.scales.index(i)]
                outputs[i] = torch.sigmoid(head(x))
        return outputs
