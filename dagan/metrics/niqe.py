"""NIQE (Mittal et al. 2013) as the authors' MATLAB code computes it.

Luma (ITU-R BT.601 Y, on 0-255, rounded), 96x96 blocks, two scales (the second made with MATLAB's
antialiased bicubic ``imresize``), 18 natural-scene statistics per block and scale: a generalised
Gaussian fit of the mean-subtracted contrast-normalised (MSCN) coefficients and asymmetric
generalised Gaussian fits of their products with four neighbours. The score is the Mahalanobis-like
distance between the image's multivariate Gaussian and that of pristine images (lower is better).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np
from scipy.ndimage import convolve
from scipy.special import gamma

from dagan.metrics.matlab import fspecial_gaussian, imresize

BLOCK = 96
#: Neighbour offsets whose products with each MSCN coefficient are modelled: right, down, two diagonals.
SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))
_SHAPES = np.arange(0.2, 10.001, 0.001)
_RATIO_OF_SHAPE = gamma(2 / _SHAPES) ** 2 / (gamma(1 / _SHAPES) * gamma(3 / _SHAPES))


@cache
def pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """Mean (36,) and covariance (36, 36) of the pristine-image features shipped with the package."""
    with resources.files("dagan.metrics").joinpath("data/niqe_pristine.npz").open("rb") as handle:
        data = np.load(handle)
        return data["mu"], data["cov"]


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 Y on 16-235 from RGB in [0, 1], rounded to integers as MATLAB's ``rgb2ycbcr`` on uint8."""
    y = 16.0 + rgb[..., 0] * 65.481 + rgb[..., 1] * 128.553 + rgb[..., 2] * 24.966
    return np.round(y)


def fit_aggd(values: np.ndarray) -> tuple[float, float, float]:
    """Shape and left/right scales of an asymmetric generalised Gaussian, by moment matching."""
    values = values.ravel()
    left = np.sqrt(np.mean(values[values < 0] ** 2))
    right = np.sqrt(np.mean(values[values > 0] ** 2))
    ratio = left / right
    r_hat = np.mean(np.abs(values)) ** 2 / np.mean(values**2)
    r_hat_norm = r_hat * (ratio**3 + 1) * (ratio + 1) / (ratio**2 + 1) ** 2
    shape = _SHAPES[np.argmin((_RATIO_OF_SHAPE - r_hat_norm) ** 2)]
    spread = np.sqrt(gamma(1 / shape) / gamma(3 / shape))
    return float(shape), float(left * spread), float(right * spread)


def block_features(mscn: np.ndarray) -> list[float]:
    """The 18 statistics of one block of MSCN coefficients."""
    shape, left, right = fit_aggd(mscn)
    features = [shape, (left + right) / 2]
    for shift in SHIFTS:
        products = mscn * np.roll(mscn, shift, axis=(0, 1))
        shape, left, right = fit_aggd(products)
        mean = (right - left) * gamma(2 / shape) / gamma(1 / shape)
        features += [shape, mean, left, right]
    return features


def mscn_coefficients(image: np.ndarray) -> np.ndarray:
    """(image - local mean) / (local deviation + 1), with a 7x7 Gaussian (sigma 7/6) and replicated borders."""
    window = fspecial_gaussian(7, 7 / 6)
    mean = convolve(image, window, mode="nearest")
    deviation = np.sqrt(np.abs(convolve(image * image, window, mode="nearest") - mean * mean))
    return (image - mean) / (deviation + 1)


def niqe(image: np.ndarray, crop_border: int = 0) -> float:
    """NIQE of an RGB image in [0, 1] (H, W, 3) or a luma image on 0-255 (H, W); lower is better."""
    y = luma(image) if image.ndim == 3 else np.asarray(image, dtype=np.float64)
    if crop_border:
        y = y[crop_border:-crop_border, crop_border:-crop_border]
    rows, cols = y.shape[0] // BLOCK, y.shape[1] // BLOCK
    if rows * cols < 2:
        # The image's feature covariance needs at least two blocks.
        raise ValueError(
            f"NIQE needs at least two {BLOCK}x{BLOCK} blocks (e.g. {2 * BLOCK}x{BLOCK} pixels), "
            f"got {y.shape[1]}x{y.shape[0]}"
        )
    y = y[: rows * BLOCK, : cols * BLOCK]
    per_scale = []
    for scale in (1, 2):
        mscn = mscn_coefficients(y)
        size = BLOCK // scale
        per_scale.append(
            [
                block_features(mscn[r * size : (r + 1) * size, c * size : (c + 1) * size])
                for r in range(rows)
                for c in range(cols)
            ]
        )
        if scale == 1:
            y = imresize(y / 255.0, 0.5) * 255.0
    features = np.concatenate([np.asarray(f) for f in per_scale], axis=1)  # (blocks, 36)
    mu = np.nanmean(features, axis=0)
    covariance = np.cov(features[~np.isnan(features).any(axis=1)], rowvar=False)
    pristine_mu, pristine_cov = pristine_model()
    difference = pristine_mu - mu
    return float(np.sqrt(difference @ np.linalg.pinv((pristine_cov + covariance) / 2) @ difference))
