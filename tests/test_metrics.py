"""Metrics against independent references and known values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dagan.io.image import read_image
from dagan.metrics.fid import feature_statistics, frechet_distance
from dagan.metrics.image import l1, psnr, ssim_gaussian, ssim_skimage
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
    with pytest.raises(ValueError, match="two 96x96 blocks"):
        niqe(clean[:150, :150])


def _image_pair(seed: int = 0, shape=(40, 48, 3)):
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    b = np.clip(a + rng.normal(0, 0.05, shape), 0, 1)
    return a, b


def test_psnr_and_l1_match_skimage_and_numpy():
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _image_pair()
    assert abs(psnr(a, b) - peak_signal_noise_ratio(a, b, data_range=1)) < 1e-9
    assert abs(l1(a, b) - np.abs(a - b).mean()) < 1e-12
    assert psnr(a, a) == np.inf and l1(a, a) == 0.0


@pytest.mark.parametrize("shape", [(40, 48, 3), (33, 20)])
def test_ssim_skimage_convention_matches_skimage(shape):
    from skimage.metrics import structural_similarity

    a, b = _image_pair(1, shape)
    channel_axis = -1 if len(shape) == 3 else None
    reference = structural_similarity(a, b, channel_axis=channel_axis, data_range=1)
    assert abs(ssim_skimage(a, b) - reference) < 1e-6
    assert abs(ssim_skimage(a, a) - 1) < 1e-12


def test_ssim_gaussian_convention_matches_a_direct_computation():
    from skimage.metrics import structural_similarity

    a, b = _image_pair(2, (30, 30))
    # skimage's Gaussian mode with MATLAB's settings: sigma 1.5, 11x11, population covariance.
    reference = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, truncate=3.5
    )
    # skimage crops 5 pixels after filtering with reflected borders; ours uses the valid region,
    # which is the same set of windows.
    assert abs(ssim_gaussian(a, b) - reference) < 1e-6
    assert abs(ssim_gaussian(a, a) - 1) < 1e-12
    assert abs(ssim_gaussian(a, b) - ssim_skimage(a, b)) > 1e-4  # the conventions differ


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(37, 41, 3), (75, 107, 3), (11, 140, 3)])
def test_psnr_and_gaussian_ssim_match_their_formulas_written_out(dtype, shape):
    """The MATLAB/BasicSR definitions by hand (valid 2-D windows, no scikit-image), in float64 and float32.

    The shapes cover one block of the banded filter, several with a partial last one, and a
    valid region one row high.
    """
    from scipy.signal import convolve2d

    from dagan.metrics.matlab import fspecial_gaussian

    a, b = (x.astype(dtype) for x in _image_pair(4, shape))
    x64, y64 = a.astype(np.float64), b.astype(np.float64)
    assert abs(psnr(a, b) - 10 * np.log10(1 / np.mean((x64 - y64) ** 2))) < 1e-5
    window = fspecial_gaussian(11, 1.5)

    def mean(z):
        return convolve2d(z, window[::-1, ::-1], mode="valid")

    values = []
    for c in range(3):
        x, y = x64[..., c], y64[..., c]
        mx, my = mean(x), mean(y)
        vx, vy, cxy = mean(x * x) - mx**2, mean(y * y) - my**2, mean(x * y) - mx * my
        c1, c2 = 0.01**2, 0.03**2
        values.append((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())
    assert abs(ssim_gaussian(a, b) - np.mean(values)) < 1e-12


def test_frechet_distance_matches_the_eigenvalue_formula_and_is_zero_for_one_set():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 6))
    y = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) * 0.7 + 0.3
    mu1, s1 = feature_statistics(x)
    mu2, s2 = feature_statistics(y)
    # Tr((S1 S2)^1/2) = sum of sqrt of the eigenvalues of S1^1/2 S2 S1^1/2 (both symmetric positive).
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)).sum()
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_root
    assert abs(frechet_distance(mu1, s1, mu2, s2) - expected) < 1e-8 * max(1, expected)
    assert abs(frechet_distance(mu1, s1, mu1, s1)) < 1e-8
