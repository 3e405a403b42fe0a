"""MATLAB's image functions where metrics depend on their exact arithmetic (``imresize``, ``fspecial``)."""

from __future__ import annotations

import math

import numpy as np


def fspecial_gaussian(size: int, sigma: float) -> np.ndarray:
    """``fspecial('gaussian', size, sigma)``: a normalised (size, size) Gaussian window."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    window = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2))
    window[window < np.finfo(np.float64).eps * window.max()] = 0
    return window / window.sum()


def _cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB's bicubic kernel (a = -0.5)."""
    ax = np.abs(x)
    near = (1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
    far = (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


def _contributions(in_length: int, out_length: int, scale: float, antialiasing: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per output sample: the input indices it reads (0-based, mirrored at the borders) and their weights."""
    kernel_width = 4.0
    if scale < 1 and antialiasing:
        # Downscaling stretches the kernel so it also low-passes the image.
        kernel_width /= scale
    positions = np.arange(1, out_length + 1, dtype=np.float64)
    centres = positions / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(centres - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based, may fall outside the image
    distance = centres[:, None] - indices
    if scale < 1 and antialiasing:
        weights = scale * _cubic(scale * distance)
    else:
        weights = _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    used = np.any(weights != 0, axis=0)
    return indices[:, used], weights[:, used]


def imresize(image: np.ndarray, scale: float, antialiasing: bool = True) -> np.ndarray:
    """``imresize(image, scale, 'bicubic')`` for a float (H, W) or (H, W, C) array; no rounding."""
    out = np.asarray(image, dtype=np.float64)
    # MATLAB resizes along the dimension with the smaller scale first; with one scale, rows first.
    for axis in (0, 1):
        in_length = out.shape[axis]
        out_length = math.ceil(in_length * scale)
        indices, weights = _contributions(in_length, out_length, scale, antialiasing)
        moved = np.moveaxis(out, axis, 0)
        gathered = moved[indices]  # (out_length, taps, ...)
        shape = weights.shape + (1,) * (moved.ndim - 1)
        out = np.moveaxis((gathered * weights.reshape(shape)).sum(axis=1), 0, axis)
    return out
