"""Texture: variogram TBS index on fields of known roughness, GLCM features on simple patterns."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tasks.biomarkers.texture import glcm_features, relative_detail, tbs_index, variogram


def fbm_field(n: int, hurst: float, seed: int) -> np.ndarray:
    """Fractional Brownian surface by spectral synthesis: power ~ f^-(2H+2), variogram ~ k^(2H)."""
    rng = np.random.default_rng(seed)
    fx = np.fft.fftfreq(n)[:, None]
    fy = np.fft.fftfreq(n)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    amp = f ** (-(hurst + 1.0))
    amp[0, 0] = 0.0
    phase = np.exp(2j * np.pi * rng.random((n, n)))
    return np.real(np.fft.ifft2(amp * phase * rng.normal(size=(n, n))))


@pytest.mark.parametrize("hurst", [0.3, 0.5, 0.7])
def test_fbm_slope_is_twice_hurst(hurst: float) -> None:
    # every 4th pixel of a 512 field: lags 4-16 of the synthesis, away from its Nyquist truncation (which
    # steepens the variogram at the first few lags)
    slopes = [tbs_index(fbm_field(512, hurst, s)[::4, ::4]) for s in range(3)]
    assert np.mean(slopes) == pytest.approx(2 * hurst, abs=0.15)


def test_fbm_ranking() -> None:
    idx = [tbs_index(fbm_field(512, h, 11)[::4, ::4]) for h in (0.2, 0.4, 0.6, 0.8)]
    assert idx == sorted(idx)


def test_index_ranks_roughness() -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(size=(96, 96))
    smooth = [tbs_index(ndimage.gaussian_filter(noise, s)) for s in (0.5, 1.0, 2.0)]
    assert smooth[0] < smooth[1] < smooth[2] <= 2.05
    # white noise has a flat variogram
    assert abs(tbs_index(noise)) < 0.1


def test_variogram_mask_and_errors() -> None:
    img = np.zeros((20, 20))
    img[:, 10:] = 5.0
    mask = np.zeros_like(img, dtype=bool)
    mask[:, :10] = True
    assert np.allclose(variogram(img, (1, 2), mask), 0.0)
    assert np.isnan(tbs_index(img, mask=mask))  # flat region: no slope
    with pytest.raises(ValueError, match="2-D"):
        variogram(np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="mask shape"):
        variogram(img, mask=np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="lags"):
        variogram(img, (0,))


def test_glcm_on_patterns() -> None:
    flat = glcm_features(np.full((16, 16), 200.0))
    assert flat.contrast == pytest.approx(0.0) and flat.energy == pytest.approx(1.0)
    assert flat.homogeneity == pytest.approx(1.0) and flat.entropy == pytest.approx(0.0)
    checker = (np.indices((16, 16)).sum(axis=0) % 2) * 600.0 - 100.0
    c = glcm_features(checker, levels=8, distances=(1,), window=(-100.0, 500.0))
    # horizontal/vertical neighbours always differ by the full range (7 levels), diagonals never
    assert c.contrast == pytest.approx((49 + 0 + 49 + 0) / 4)
    rng = np.random.default_rng(3)
    coarse = ndimage.gaussian_filter(rng.normal(150, 150, (32, 32)), 3) * 8
    fine = rng.normal(150, 150, (32, 32))
    assert glcm_features(fine).contrast > glcm_features(coarse).contrast
    assert glcm_features(fine).homogeneity < glcm_features(coarse).homogeneity


def test_glcm_mask_excludes_outside() -> None:
    img = np.zeros((2, 20, 20))
    img[:, :, 10:] = 450.0
    mask = np.zeros(img.shape, bool)
    mask[:, :, :10] = True
    f = glcm_features(img, mask)
    assert f.contrast == pytest.approx(0.0) and f.n_pixels == 400
    empty = glcm_features(img, np.zeros(img.shape, bool))
    assert np.isnan(empty.contrast) and empty.n_pixels == 0
    with pytest.raises(ValueError, match="window"):
        glcm_features(img, window=(1.0, 1.0))


def test_robust_variogram_ignores_a_few_edges() -> None:
    field = fbm_field(512, 0.7, 5)[::4, ::4]
    field = field / field.std()
    edged = field.copy()
    edged[40:60, 40:60] += 8.0  # a bright block (a pedicle): a few pairs with huge increments
    plain = tbs_index(field)
    assert abs(tbs_index(edged, robust=True) - plain) < 0.1
    assert abs(tbs_index(edged) - plain) > 0.2


def test_relative_detail_divides_out_a_smooth_base() -> None:
    yy, xx = np.mgrid[0:64, 0:64]
    base = 500.0 + 4.0 * xx + 2.0 * yy
    rng = np.random.default_rng(2)
    tex = ndimage.gaussian_filter(rng.normal(size=(64, 64)), 1.0)
    img = base * (1.0 + 0.05 * tex)
    detail = relative_detail(img, 6.0)
    inner = (slice(12, -12), slice(12, -12))
    assert np.corrcoef(detail[inner].ravel(), tex[inner].ravel())[0, 1] > 0.9


def test_glcm_counts_equal_skimage_per_slice() -> None:
    """The stack co-occurrence counts equal skimage's graycomatrix summed over slices (same offsets,
    masked pixels dropped), for several distances and a ragged mask."""
    from skimage.feature import graycomatrix

    from tasks.biomarkers.texture import _cooccurrence

    rng = np.random.default_rng(7)
    q = rng.integers(1, 9, size=(3, 17, 23))
    q[rng.random(q.shape) < 0.3] = 0
    angles = [0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    mine = _cooccurrence(q, (1, 2, 3), angles, 8)
    ref = sum(graycomatrix(q[z].astype(np.uint16), [1, 2, 3], angles, levels=9, symmetric=True)[1:, 1:]
              for z in range(q.shape[0]))
    np.testing.assert_array_equal(mine, ref)


def test_ct_texture_erosion_equals_per_slice_rectangle() -> None:
    """ct_trabecular_texture's ROI: the body mask eroded slice by slice by the 3 mm rectangle."""
    from tasks.biomarkers.spine import VertebraLabel
    from tasks.biomarkers.texture import ct_trabecular_texture
    from tasks.dicom.volume import Volume

    rng = np.random.default_rng(1)
    hu = rng.normal(200.0, 60.0, (10, 40, 40)).astype(np.float32)
    body = np.zeros((10, 40, 40), bool)
    yy, xx = np.mgrid[0:40, 0:40]
    body[:, ((yy - 20) / 14.0) ** 2 + ((xx - 19) / 11.0) ** 2 <= 1] = True
    vol = Volume(hu=hu, spacing_mm=(2.0, 0.8, 0.8), origin_mm=(0.0, 0.0, 0.0),
                 slice_z_mm=np.arange(10) * 2.0, series_instance_uid="t")
    v = VertebraLabel("L1", (5.0, 20.0, 19.0), (0.0, 0.0, 10.0), (0, 9), (0, 10, 0, 40, 0, 40), body_mask=body)
    (res,) = ct_trabecular_texture(vol, [v])
    roi = np.zeros_like(body)
    for k in range(2, 8):  # the central 60% of the 10 slices
        roi[k] = ndimage.binary_erosion(body[k], structure=np.ones((9, 9), bool))
    assert res.glcm is not None and res.glcm.n_pixels == int(roi.sum())
    assert res.mean_intensity == pytest.approx(float(hu[roi].mean()), rel=1e-6)


def test_glcm_props_equal_skimage() -> None:
    """The shared-normalisation GLCM properties equal skimage's graycoprops, including a flat matrix
    (zero standard deviation: correlation 1)."""
    from skimage.feature import graycoprops

    from tasks.biomarkers.texture import GLCM_PROPS, _glcm_props

    rng = np.random.default_rng(5)
    p = rng.random((12, 12, 2, 4))
    p[:, :, 1, 3] = 0.0
    p[4, 4, 1, 3] = 7.0
    mine = _glcm_props(p)
    for name in GLCM_PROPS:
        np.testing.assert_allclose(mine[name], graycoprops(p, name), rtol=1e-12, atol=0)
