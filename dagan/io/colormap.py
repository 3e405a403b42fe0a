"""A dependency-free colour map for depth and disparity images."""

from __future__ import annotations

import numpy as np

# Anchor colours sampled from matplotlib's "magma" (dark purple -> orange -> pale yellow).
_MAGMA = np.array(
    [
        [0.001, 0.000, 0.014],
        [0.113, 0.065, 0.277],
        [0.317, 0.071, 0.485],
        [0.513, 0.148, 0.508],
        [0.717, 0.215, 0.475],
        [0.904, 0.330, 0.382],
        [0.991, 0.553, 0.384],
        [0.996, 0.780, 0.536],
        [0.987, 0.991, 0.750],
    ]
)


def magma(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (clipped) to RGB in [0, 1]; output shape is values.shape + (3,)."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0) * (len(_MAGMA) - 1)
    low = np.floor(v).astype(int).clip(0, len(_MAGMA) - 2)
    frac = (v - low)[..., None]
    return (_MAGMA[low] * (1 - frac) + _MAGMA[low + 1] * frac).astype(np.float32)


def colorize_disparity(disparity: np.ndarray) -> np.ndarray:
    """Disparity to a magma-coloured image, normalised between its 1st and 99th percentiles."""
    low, high = np.percentile(disparity, 1), np.percentile(disparity, 99)
    return magma((disparity - low) / max(high - low, 1e-8))


class VideoDisparityColours:
    """Colour-maps the disparity frames of one video over one fixed range, so the colours do not flicker.

    The range is the 1st to 99th percentile of the first frame, widened by ``margin`` of itself on
    each side for what later frames reach; a streamed video has no later frames to look at yet.
    """

    def __init__(self, margin: float = 0.1):
        self.margin = margin
        self.low: float | None = None
        self.high: float | None = None

    def __call__(self, disparity: np.ndarray) -> np.ndarray:
        if self.low is None:
            low, high = float(np.percentile(disparity, 1)), float(np.percentile(disparity, 99))
            pad = self.margin * max(high - low, 1e-8)
            self.low, self.high = low - pad, high + pad
        return magma((disparity - self.low) / max(self.high - self.low, 1e-8))
