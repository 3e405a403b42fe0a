"""Full-reference image metrics on RGB in [0, 1]: PSNR, two SSIM conventions, L1.

SSIM has two conventions in this field, and their numbers differ:

- ``ssim_gaussian``: an 11x11 Gaussian window (sigma 1.5), statistics over the valid region only,
  per channel then averaged, as MATLAB's reference code and BasicSR compute it;
- ``ssim_skimage``: a 7x7 uniform window with sample (N - 1) covariances, borders cropped, per
  channel then averaged: ``skimage.metrics.structural_similarity(a, b, channel_axis=-1,
  data_range=1)``, which the DaGAN authors' evaluation uses.
"""

from __future__ import annotations

import math

import numpy as np

from dagan.metrics.matlab import fspecial_gaussian

K1, K2 = 0.01, 0.03

# benchmarks/evaluate.py times these against scikit-image in float64, the precision dagan reports in:
# by hand, PSNR is about 12x and the Gaussian SSIM 1.5x faster, with equal values, so they stay ours.
# The uniform SSIM is scikit-image's own call, as the DaGAN authors make it: 2x faster there.


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for a peak of 1; ``inf`` for identical images."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference, as the original reconstruction mode reports it."""
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _ssim_formula(mx: np.ndarray, my: np.ndarray, vx: np.ndarray, vy: np.ndarray, cxy: np.ndarray) -> np.ndarray:
    c1, c2 = K1**2, K2**2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def _checked(a: np.ndarray, b: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} and {b.shape}")
    if min(a.shape[:2]) < window:
        # Nothing is left of an image smaller than the window: the mean of no values, NaN, without a word.
        raise ValueError(
            f"SSIM's {window}x{window} window needs frames at least that large, got {a.shape[1]}x{a.shape[0]}"
        )
    return a, b


def _per_channel(a: np.ndarray, b: np.ndarray, window: int) -> list[tuple[np.ndarray, np.ndarray]]:
    a, b = (np.asarray(x, np.float64) for x in _checked(a, b, window))
    if a.ndim == 2:
        return [(a, b)]
    return [(a[..., c], b[..., c]) for c in range(a.shape[-1])]


#: Output samples per matrix product of the banded filter below.
_BAND_BLOCK = 32


def _valid_filter(stack: np.ndarray, taps: np.ndarray, axis: int) -> np.ndarray:
    """Correlation of ``stack`` (M, H, W) with ``taps`` along ``axis`` (1 or 2), valid region only.

    Each block of output samples is one matrix product with a small banded matrix of the taps:
    BLAS does the multiply-adds about twice as fast as ``correlate1d`` along the contiguous axis,
    and three to five times as fast along the strided one, for the same sums.
    """
    if axis not in (1, 2):
        raise ValueError(f"filters along axis 1 or 2 of an (M, H, W) stack, not {axis}")
    width = len(taps)
    length = stack.shape[axis] - width + 1
    band = np.zeros((_BAND_BLOCK + width - 1, _BAND_BLOCK))
    for i in range(_BAND_BLOCK):
        band[i : i + width, i] = taps
    shape = list(stack.shape)
    shape[axis] = length
    out = np.empty(shape)
    for start in range(0, length, _BAND_BLOCK):
        count = min(_BAND_BLOCK, length - start)
        window = band[: count + width - 1, :count]
        if axis == 2:
            np.matmul(stack[:, :, start : start + count + width - 1], window, out=out[:, :, start : start + count])
        else:
            np.matmul(window.T, stack[:, start : start + count + width - 1], out=out[:, start : start + count])
    return out


def ssim_gaussian(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM with an 11x11 Gaussian window (sigma 1.5) over the valid region (MATLAB / BasicSR)."""
    # fspecial's Gaussian is separable: two 1-D passes give the same window sums, 5x faster.
    taps = fspecial_gaussian(11, 1.5).sum(axis=0)
    channels = _per_channel(a, b, 11)
    x, y = np.stack([x for x, _ in channels]), np.stack([y for _, y in channels])
    # The five statistics of every channel are filtered together, one pass per axis.
    maps = np.concatenate([x, y, x * x, y * y, x * y])
    mx, my, mxx, myy, mxy = np.split(_valid_filter(_valid_filter(maps, taps, 2), taps, 1), 5)
    ssim_maps = _ssim_formula(mx, my, mxx - mx * mx, myy - my * my, mxy - mx * my)
    return float(np.mean(ssim_maps.mean(axis=(1, 2))))


def ssim_skimage(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM as the DaGAN authors compute it: skimage's ``structural_similarity(channel_axis=-1, data_range=1)``."""
    from skimage.metrics import structural_similarity

    a, b = _checked(a, b, 7)
    return float(structural_similarity(a, b, channel_axis=-1 if a.ndim == 3 else None, data_range=1))
