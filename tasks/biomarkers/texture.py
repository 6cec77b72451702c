"""Bone texture: a TBS-style variogram index for DXA projections and GLCM features for CT trabecular bone.

TBS-style index: the slope of the log-log experimental variogram ``V(k) = mean((I(x + k) - I(x))^2)``
over small lags ``k`` (pixels, horizontal and vertical pairs pooled). For a fractional Brownian field of
Hurst exponent H the slope is 2H: a texture rich in fine, connected trabeculae correlates over the small
lags (steep variogram, high index); a degraded texture of sparse, noisy structure is rougher (flat
variogram, low index). The index is on its own scale (0-2), not the calibrated TBS of the commercial
software (which maps to ~1.0-1.6); the ranking of microarchitecture is what it is meant for.

GLCM features: grey-level co-occurrence matrix (``skimage.feature.graycomatrix``) of a masked region,
quantised over a fixed window so that features from different series are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from skimage.feature import graycomatrix, graycoprops

DEFAULT_LAGS: tuple[int, ...] = (1, 2, 3, 4)
# HU window for the quantisation of CT trabecular bone (fixed, so features compare across series).
TRABECULAR_WINDOW_HU: tuple[float, float] = (-100.0, 500.0)
GLCM_PROPS: tuple[str, ...] = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation")


def variogram(image: NDArray[np.floating], lags: Sequence[int] = DEFAULT_LAGS,
              mask: NDArray[np.bool_] | None = None) -> NDArray[np.float64]:
    """Experimental variogram of a 2-D image at integer pixel ``lags`` (horizontal and vertical pooled).

    Parameters
    ----------
    image
        2-D intensity image.
    lags
        Positive integer lags in pixels.
    mask
        Optional boolean region; only pairs with both pixels inside count.

    Returns
    -------
    numpy.ndarray
        ``V(k)`` per lag (mean squared difference); NaN for a lag with no pair.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {img.shape}")
    m = np.ones(img.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != img.shape:
        raise ValueError(f"mask shape {m.shape} differs from image shape {img.shape}")
    out = np.full(len(lags), np.nan)
    for i, k in enumerate(lags):
        if int(k) < 1:
            raise ValueError(f"lags must be positive integers, got {k!r}")
        k = int(k)
        total, count = 0.0, 0
        for a, b, ma, mb in (
            (img[:, k:], img[:, :-k], m[:, k:], m[:, :-k]),
            (img[k:, :], img[:-k, :], m[k:, :], m[:-k, :]),
        ):
            if a.size == 0:
                continue
            both = ma & mb
            d = (a - b)[both]
            total += float(np.sum(d * d))
            count += int(d.size)
        if count:
            out[i] = total / count
    return out


def tbs_index(image: NDArray[np.floating], lags: Sequence[int] = DEFAULT_LAGS,
              mask: NDArray[np.bool_] | None = None) -> float:
    """TBS-style index: least-squares slope of log V(k) against log k over ``lags``.

    Returns NaN when fewer than two lags have a positive variogram (a flat or tiny region).

    Notes
    -----
    The index depends on pixel size and on the detector's noise and blur: compare values from the same
    kind of acquisition only. It does not correct for soft-tissue thickness, which lowers the real TBS.
    """
    v = variogram(image, lags, mask)
    k = np.asarray(lags, dtype=np.float64)
    ok = np.isfinite(v) & (v > 0)
    if ok.sum() < 2:
        return float("nan")
    slope = np.polyfit(np.log(k[ok]), np.log(v[ok]), 1)[0]
    return float(slope)


@dataclass(frozen=True)
class GlcmFeatures:
    """Haralick-style GLCM features of one region (averaged over distances and angles)."""

    contrast: float
    dissimilarity: float
    homogeneity: float
    energy: float
    correlation: float
    entropy: float
    n_pixels: int


def glcm_features(
    image: NDArray[np.floating],
    mask: NDArray[np.bool_] | None = None,
    *,
    window: tuple[float, float] = TRABECULAR_WINDOW_HU,
    levels: int = 32,
    distances: Sequence[int] = (1, 2),
) -> GlcmFeatures:
    """GLCM features of the masked region of a 2-D image or a 3-D stack (slices along axis 0).

    Parameters
    ----------
    image
        2-D image or 3-D volume (co-occurrences are counted in-plane, per slice, and pooled).
    mask
        Boolean region of the same shape; default the whole image.
    window
        Intensity range mapped onto the grey levels (values outside are clipped).
    levels
        Number of grey levels.
    distances
        Pixel distances; angles are 0, 45, 90 and 135 degrees.

    Notes
    -----
    Pairs with a pixel outside the mask are not counted (masked pixels get a reserved level 0 whose row
    and column are dropped before normalisation).
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        img = img[None]
    if img.ndim != 3:
        raise ValueError(f"image must be 2-D or 3-D, got shape {np.shape(image)}")
    m = np.ones(img.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(img.shape)
    lo, hi = window
    if not hi > lo:
        raise ValueError(f"window must be (low, high) with high > low, got {window}")
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    q = np.clip(((img - lo) / (hi - lo) * levels).astype(np.int64), 0, levels - 1) + 1
    q[~m] = 0
    angles = [0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    total = np.zeros((levels, levels, len(distances), len(angles)), dtype=np.float64)
    for z in range(q.shape[0]):
        if not m[z].any():
            continue
        g = graycomatrix(q[z].astype(np.uint16), distances=list(distances), angles=angles,
                         levels=levels + 1, symmetric=True)
        total += g[1:, 1:].astype(np.float64)
    n = int(m.sum())
    sums = total.sum(axis=(0, 1), keepdims=True)
    if n == 0 or not np.all(sums > 0):
        nan = float("nan")
        return GlcmFeatures(nan, nan, nan, nan, nan, nan, n)
    p = total / sums
    props = {name: float(np.nanmean(graycoprops(p, name))) for name in GLCM_PROPS}
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=(0, 1))
    return GlcmFeatures(entropy=float(np.mean(ent)), n_pixels=n, **props)
