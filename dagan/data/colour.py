"""Colour jitter of float RGB frames in [0, 1]: brightness, contrast, saturation and hue.

The values are torchvision's ``adjust_*`` to the bit (tests/test_colour.py), without importing
torchvision: its import pulls in ``torch._dynamo`` (about 150 MB resident, see
``dagan.pipelines.optim``), which a training process would otherwise carry only for this.
Frames are (..., 3, H, W).
"""

from __future__ import annotations

import torch

#: ITU-R 601 luma weights, as torchvision and PIL take them for grayscale.
LUMA = (0.2989, 0.587, 0.114)


def _luma(frame: torch.Tensor) -> torch.Tensor:
    red, green, blue = frame.unbind(dim=-3)
    return red.mul(LUMA[0]).add_(green, alpha=LUMA[1]).add_(blue, alpha=LUMA[2]).unsqueeze(-3)


def _blend(frame: torch.Tensor, other: torch.Tensor, ratio: float) -> torch.Tensor:
    return frame.mul(ratio).add_(other, alpha=1.0 - ratio).clamp_(0, 1)


def adjust_brightness(frame: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale every channel by ``factor``."""
    return frame.mul(factor).clamp_(0, 1)


def adjust_contrast(frame: torch.Tensor, factor: float) -> torch.Tensor:
    """Move every pixel towards (``factor`` < 1) or away from the frame's mean luma."""
    return _blend(frame, _luma(frame).mean(dim=(-3, -2, -1), keepdim=True), factor)


def adjust_saturation(frame: torch.Tensor, factor: float) -> torch.Tensor:
    """Move every pixel towards (``factor`` < 1) or away from its own luma."""
    return _blend(frame, _luma(frame), factor)


def adjust_hue(frame: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue by ``shift`` turns (in [-0.5, 0.5]) in HSV space."""
    hue, saturation, value = _to_hsv(frame)
    return _from_hsv(hue.add_(shift).remainder_(1.0), saturation, value)


def _to_hsv(frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    red, green, _ = frame.unbind(dim=-3)
    low, high = torch.aminmax(frame, dim=-3)
    grey = high == low
    spread = high - low
    # Where all three channels are equal, hue and saturation are 0; a divisor of 1 there keeps
    # the divisions finite without changing that.
    ones = torch.ones_like(high)
    saturation = spread / torch.where(grey, ones, high)
    # How far each channel is below the largest, in units of the spread.
    below_r, below_g, below_b = ((high.unsqueeze(-3) - frame) / torch.where(grey, ones, spread).unsqueeze(-3)).unbind(
        dim=-3
    )
    red_is_max = high == red
    green_is_max = (high == green) & ~red_is_max
    # The hexcone sextant: red largest, then green, then blue (ties go in that order).
    sextant = torch.where(red_is_max, below_b - below_g, torch.where(green_is_max, below_r.add(2.0).sub_(below_b), 0.0))
    sextant += torch.where(red_is_max | green_is_max, 0.0, below_g.add(4.0).sub_(below_r))
    hue = sextant.mul_(1.0 / 6.0).add_(1.0).fmod_(1.0)
    return hue, saturation, high


#: For each sextant of the hue, which of (value, p, q, t) each of red, green and blue takes.
_SEXTANT_CHANNELS = ((0, 2, 1, 1, 3, 0), (3, 0, 0, 2, 1, 1), (1, 1, 3, 0, 0, 2))


def _from_hsv(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    scaled = hue.mul(6)
    sextant = torch.floor(scaled)
    fraction = scaled.sub_(sextant)
    sextant = sextant.to(torch.int32).remainder_(6)
    saturation_fraction = saturation * fraction
    unsaturated = 1.0 - saturation
    falling = (1.0 - saturation_fraction).mul_(value).clamp_(0.0, 1.0)
    rising = saturation_fraction.add_(unsaturated).mul_(value).clamp_(0.0, 1.0)
    floor = unsaturated.mul_(value).clamp_(0.0, 1.0)
    candidates = torch.stack((value, floor, falling, rising), dim=-3)
    table = torch.tensor(_SEXTANT_CHANNELS, dtype=torch.long, device=hue.device)
    return candidates.gather(-3, table[:, sextant].movedim(0, -3))
