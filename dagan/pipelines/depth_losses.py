"""The losses of self-supervised depth training, as monodepth2 defines them.

The photometric error 0.85 (1 - SSIM) / 2 + 0.15 L1, its per-pixel minimum over the source frames
with auto-masking of pixels that do not move, and an edge-aware smoothness of the disparity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) / 2 per pixel, with 3x3 mean windows and reflection padding, clamped to [0, 1]."""
    c1, c2 = 0.01**2, 0.03**2
    x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x**2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y**2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (sigma_x + sigma_y + c2)
    return ((1 - numerator / denominator) / 2).clamp(0, 1)


def photometric_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0.85 (1 - SSIM) / 2 + 0.15 L1, averaged over channels: (B, 1, H, W)."""
    l1 = (prediction - target).abs().mean(1, keepdim=True)
    return 0.85 * ssim_loss(prediction, target).mean(1, keepdim=True) + 0.15 * l1


def smoothness(disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware smoothness of mean-normalised disparity."""
    disp = disp / (disp.mean(dim=(2, 3), keepdim=True) + 1e-7)
    grad_disp_x = (disp[:, :, :, :-1] - disp[:, :, :, 1:]).abs()
    grad_disp_y = (disp[:, :, :-1, :] - disp[:, :, 1:, :]).abs()
    grad_img_x = (image[:, :, :, :-1] - image[:, :, :, 1:]).abs().mean(1, keepdim=True)
    grad_img_y = (image[:, :, :-1, :] - image[:, :, 1:, :]).abs().mean(1, keepdim=True)
    return (grad_disp_x * torch.exp(-grad_img_x)).mean() + (grad_disp_y * torch.exp(-grad_img_y)).mean()


def min_reprojection(
    reprojection: torch.Tensor, identity: torch.Tensor | None, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel minimum over sources, auto-masked: pixels whose unwarped error is smaller drop out.

    ``reprojection`` and ``identity`` are (B, S, H, W). Returns the per-pixel loss and the mask
    of pixels that count (1 where a warped source wins).
    """
    if identity is None:
        loss, _ = reprojection.min(dim=1)
        return loss, torch.ones_like(loss)
    # A tiny random offset breaks ties on static texture-less pixels, as monodepth2 does.
    noise = torch.randn(identity.shape, generator=generator, dtype=identity.dtype).to(identity.device) * 1e-5
    combined = torch.cat([identity + noise, reprojection], dim=1)
    loss, index = combined.min(dim=1)
    mask = (index >= identity.shape[1]).to(loss.dtype)
    return loss * mask, mask
