"""Full-reference image metrics on RGB in [0, 1]: PSNR, two SSIM conventions, L1.

SSIM has two conventions in this field, and their numbers differ:

- ``ssim_gaussian``: an 11x11 Gaussian window (sigma 1.5), statistics over the valid region only,
  per channel then averaged, as MATLAB's reference code and BasicSR compute it;
- ``ssim_skimage``: a 7x7 uniform window with sample (N - 1) covariances, borders cropped, per
  channel then averaged: ``skimage.metrics.structural_similarity(a, b, channel_axis=-1,
  data_range=1)``, which the DaGAN authors' evaluation uses.
"""

from __future__ import annotations

import numpy as np

# scikit-image computes PSNR and both SSIMs. On float32 frames its SSIMs are 1.7x (Gaussian) and
# 2.3x (uniform) faster than the same arithmetic by hand in float64, its PSNR as fast, and all agree
# to 1e-6 (benchmarks/evaluate.py): there is no reason to keep our own.


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for a peak of 1; ``inf`` for identical images."""
    from skimage.metrics import peak_signal_noise_ratio

    with np.errstate(divide="ignore"):  # identical images: a mean squared error of 0 is inf dB, said plainly
        return float(peak_signal_noise_ratio(np.asarray(a), np.asarray(b), data_range=1))


def l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference, as the original reconstruction mode reports it."""
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


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


def ssim_gaussian(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM with an 11x11 Gaussian window (sigma 1.5) over the valid region (MATLAB / BasicSR)."""
    from skimage.metrics import structural_similarity

    a, b = _checked(a, b, 11)
    # Population covariances; skimage filters with a sigma-1.5 Gaussian truncated at 5 pixels (the
    # 11x11 fspecial window, separable) and crops those 5 pixels: exactly the valid region.
    value = structural_similarity(
        a,
        b,
        channel_axis=-1 if a.ndim == 3 else None,
        data_range=1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    return float(value)


def ssim_skimage(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM as the DaGAN authors compute it: skimage's ``structural_similarity(channel_axis=-1, data_range=1)``."""
    from skimage.metrics import structural_similarity

    a, b = _checked(a, b, 7)
    return float(structural_similarity(a, b, channel_axis=-1 if a.ndim == 3 else None, data_range=1))
