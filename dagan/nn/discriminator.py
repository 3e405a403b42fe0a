"""Multi-scale patch discriminator that also sees the driving keypoints as heatmaps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from dagan.config import DiscriminatorConfig
from dagan.nn.common import kp2gaussian


class DiscriminatorBlock(nn.Module):
    """4x4 conv (no padding), optional instance norm, leaky ReLU 0.2, optional 2x2 pooling."""

    def __init__(self, in_features: int, out_features: int, norm: bool, pool: bool, sn: bool):
        super().__init__()
        conv = nn.Conv2d(in_features, out_features, kernel_size=4)
        self.conv = spectral_norm(conv) if sn else conv
        self.norm = nn.InstanceNorm2d(out_features, affine=True) if norm else None
        self.pool = pool
        self.sn = sn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        if x.requires_grad and self._is_frozen() and not _autocasting(x) and not torch.compiler.is_compiling():
            return _FrozenBlock.apply(x, self)
        return self._plain_forward(x)

    def _plain_forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        # In place: the convolution's and the norm's backward need their inputs, not their
        # outputs, so autograd keeps one map per block instead of two.
        out = F.leaky_relu(out, 0.2, inplace=True)
        return F.avg_pool2d(out, 2) if self.pool else out

    def _is_frozen(self) -> bool:
        # Spectral norm computes the weight in a pre-hook of the convolution's own call (a power
        # iteration in training mode), which the frozen path does not make.
        return not self.sn and not any(parameter.requires_grad for parameter in self.parameters())


def _autocasting(x: torch.Tensor) -> bool:
    return torch.is_autocast_enabled(x.device.type)


class _FrozenBlock(torch.autograd.Function):
    """A frozen block that keeps for backward only what its input gradient needs.

    In the generator update the discriminator is frozen and sees the prediction: autograd would
    keep each convolution's input (for a weight gradient nobody asks for) and each leaky ReLU's
    float output, about 110 MB for a 256x256 batch of 2, held at the end of the forward pass.
    The input gradient needs only the convolution's weight, the sign of each leaky ReLU output
    (kept as bool) and, where there is an instance norm, the norm's input. The backward passes
    run the same arithmetic as autograd's, so the input gradient is the same to the bit
    (tests/test_discriminator.py).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, block: DiscriminatorBlock) -> torch.Tensor:
        out = block.conv(x)
        norm_input = out
        if block.norm is not None:
            out = block.norm(out)
        out = F.leaky_relu(out, 0.2, inplace=True)
        ctx.block, ctx.input_shape, ctx.pooled_from = block, x.shape, out.shape
        ctx.save_for_backward(out > 0, norm_input if block.norm is not None else None)
        return F.avg_pool2d(out, 2) if block.pool else out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        positive, norm_input = ctx.saved_tensors
        block = ctx.block
        if block.pool:
            # Each output of a 2x2 average spreads a quarter of its gradient over its window; a
            # last odd row or column is in no window.
            height, width = ctx.pooled_from[-2:]
            grad = (grad / 4).repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
            grad = F.pad(grad, (0, width - grad.shape[-1], 0, height - grad.shape[-2]))
        grad = torch.where(positive, grad, grad * 0.2)
        if norm_input is not None:
            # The norm's maps are small next to the first block's: recompute its forward from its
            # input and let autograd run its backward.
            with torch.enable_grad():
                norm_input = norm_input.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(block.norm(norm_input), norm_input, grad)
        return torch.nn.grad.conv2d_input(ctx.input_shape, block.conv.weight, grad), None


class Discriminator(nn.Module):
    """One-scale patch discriminator; returns its feature maps and the prediction map."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        n = config.num_blocks
        widths = [min(config.max_features, config.block_expansion * (2 ** (i + 1))) for i in range(n)]
        in_first = config.num_channels + (config.num_kp if config.use_kp else 0)
        self.down_blocks = nn.ModuleList(
            DiscriminatorBlock(in_first if i == 0 else widths[i - 1], widths[i], i != 0, i != n - 1, config.sn)
            for i in range(n)
        )
        conv = nn.Conv2d(widths[-1], 1, kernel_size=1)
        self.conv = spectral_norm(conv) if config.sn else conv

    def forward(
        self, image: torch.Tensor, kp_value: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Feature maps of every block and the final patch prediction map."""
        out = image
        if self.config.use_kp:
            heatmap = kp2gaussian(kp_value, image.shape[2], image.shape[3], self.config.kp_variance)
            out = torch.cat([out, heatmap], dim=1)
        feature_maps = []
        for block in self.down_blocks:
            out = block(out)
            feature_maps.append(out)
        return feature_maps, self.conv(out)


def scale_key(scale: float) -> str:
    """Checkpoint key of a scale, as the original writes it ('1', '0-5', ...)."""
    return str(scale).replace(".", "-")


class MultiScaleDiscriminator(nn.Module):
    """One ``Discriminator`` per image-pyramid scale, stored under ``discs.<scale>``."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.scales = tuple(config.scales)
        self.discs = nn.ModuleDict({scale_key(s): Discriminator(config) for s in self.scales})

    def forward(
        self, pyramid: dict[float, torch.Tensor], kp_value: torch.Tensor | None = None
    ) -> dict[str, tuple[list[torch.Tensor], torch.Tensor]]:
        """Map each scale key to (feature maps, prediction map) for the matching pyramid level."""
        return {
            key: disc(pyramid[scale], kp_value)
            for scale, (key, disc) in zip(self.scales, self.discs.items(), strict=True)
        }
