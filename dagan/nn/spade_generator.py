"""SPADEDepthAwareGenerator: the DaGAN generator variant with a SPADE decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from dagan.config import GeneratorConfig
from dagan.nn.common import resize_bilinear
from dagan.nn.generator import DepthAwareWarper


class SPADE(nn.Module):
    """Instance norm without affine, modulated by gamma/beta maps predicted from a condition map."""

    def __init__(self, channels: int, condition_channels: int, hidden: int = 128):
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(condition_channels, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` and modulate it by ``condition`` resized (nearest) to ``x``."""
        normalized = F.instance_norm(x)
        condition = F.interpolate(condition, size=x.shape[2:], mode="nearest")
        hidden = self.mlp_shared(condition)
        return normalized * (1 + self.mlp_gamma(hidden)) + self.mlp_beta(hidden)


class SPADEResnetBlock(nn.Module):
    """Residual block of spectral-normalised convolutions with SPADE normalisation."""

    def __init__(self, fin: int, fout: int, condition_channels: int):
        super().__init__()
        middle = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = spectral_norm(nn.Conv2d(fin, middle, 3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(middle, fout, 3, padding=1))
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))
        self.norm_0 = SPADE(fin, condition_channels)
        self.norm_1 = SPADE(middle, condition_channels)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, condition_channels)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        shortcut = self.conv_s(self.norm_s(x, condition)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, condition), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, condition), 0.2))
        return shortcut + dx


class SPADEDecoder(nn.Module):
    """Decoder conditioned on a compressed copy of the features and the occluded warped image."""

    def __init__(
        self,
        features: int,
        out_features: int,
        image_channels: int = 3,
        compressed: int = 4,
    ):
        super().__init__()
        condition = image_channels + compressed
        self.compress = nn.Conv2d(features, compressed, 3, padding=1)
        self.fc = nn.Conv2d(features, 2 * features, 3, padding=1)
        self.G_middle_0 = SPADEResnetBlock(2 * features, 2 * features, condition)
        self.G_middle_1 = SPADEResnetBlock(2 * features, 2 * features, condition)
        self.G_middle_2 = SPADEResnetBlock(2 * features, 2 * features, condition)
        self.up_0 = SPADEResnetBlock(2 * features, features, condition)
        self.up_1 = SPADEResnetBlock(features, out_features, condition)
        self.conv_img = nn.Conv2d(out_features, image_channels, 3, padding=1)

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Decode ``features`` (B, C, h, w) into an image the size of ``image``."""
        compressed = F.interpolate(self.compress(features), size=image.shape[2:], mode="nearest")
        condition = torch.cat([compressed, image], dim=1)
        x = self.fc(features)
        x = self.G_middle_0(x, condition)
        x = self.G_middle_1(x, condition)
        x = self.G_middle_2(x, condition)
        x = self.up_0(F.interpolate(x, scale_factor=2), condition)
        x = self.up_1(F.interpolate(x, scale_factor=2), condition)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))


class SPADEDepthAwareGenerator(DepthAwareWarper):
    """The DaGAN generator with the SPADE decoder (the ``SPADE_DaGAN_*`` checkpoints)."""

    def __init__(self, config: GeneratorConfig):
        if config.num_down_blocks != 2:
            raise ValueError("the SPADE decoder upsamples exactly twice: num_down_blocks must be 2")
        super().__init__(config)
        self.config = config
        width = min(config.max_features, config.block_expansion * 4)
        self.decoder = SPADEDecoder(width, config.block_expansion, config.num_channels)

    def decode(self, features: torch.Tensor, warped: dict[str, torch.Tensor]) -> torch.Tensor:
        """Decode, conditioned on the warped source image multiplied by the occlusion map."""
        image = warped["deformed"]
        occlusion = warped.get("occlusion_map")
        if occlusion is not None:
            image = image * resize_bilinear(occlusion, image.shape[2:])
        return self.decoder(features, image)
