"""Metrics against independent references and known values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dagan.io.image import read_image
from dagan.metrics.matlab import fspecial_gaussian, imresize
from dagan.metrics.niqe import fit_aggd, niqe

from .conftest import SHARED

BABOON = SHARED / "data" / "baboon.png"
needs_baboon = pytest.mark.skipif(not BABOON.is_file(), reason=f"NIQE reference image not found at {BABOON}")


def test_gaussian_window_is_matlab_fspecial():
    window = fspecial_gaussian(7, 7 / 6)
    x = np.arange(7) - 3
    expected = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * (7 / 6) ** 2))
    assert np.allclose(window, expected / expected.sum(), atol=1e-15)


@pytest.mark.parametrize("scale", [0.5, 0.25, 2.0])
def test_imresize_reproduces_a_ramp_at_matlab_sample_positions(scale):
    ramp = np.tile(np.arange(1, 41, dtype=np.float64), (40, 1))  # value = 1-based column index
    out = imresize(ramp, scale)
    assert out.shape == (int(np.ceil(40 * scale)),) * 2
    positions = np.arange(1, out.shape[1] + 1) / scale + 0.5 * (1 - 1 / scale)
    # Cubic kernels reproduce linear functions away from the mirrored borders.
    interior = (positions > 2 / min(scale, 1) + 1) & (positions < 40 - 2 / min(scale, 1))
    assert interior.sum() >= 3
    assert np.allclose(out[5][interior], positions[interior], atol=1e-9)
    assert np.allclose(imresize(np.full((30, 30), 7.0), scale), 7.0)


def test_aggd_fit_recovers_a_generalised_gaussian_shape():
    for shape in (0.8, 2.0):
        samples = stats.gennorm(shape, scale=1.5).rvs(size=400_000, random_state=np.random.default_rng(0))
        fitted, left, right = fit_aggd(samples)
        assert abs(fitted - shape) < 0.05 * shape
        assert abs(left - right) < 0.02 * right  # symmetric data: equal scales
        assert abs(left - 1.5) < 0.03


@needs_baboon
def test_niqe_of_baboon_matches_matlab():
    assert abs(niqe(read_image(BABOON)) - 5.7296) < 0.005


@needs_baboon
def test_niqe_rises_with_noise_and_blur():
    clean = read_image(BABOON)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.1, clean.shape), 0, 1)
    assert niqe(noisy) > niqe(clean) + 1
    with pytest.raises(ValueError, match="at least 96x96"):
        niqe(clean[:50, :50])
