"""Bone texture: a TBS-style variogram index for DXA projections and GLCM features for CT trabecular bone.

TBS-style index: the slope of the log-log experimental variogram ``V(k) = mean((I(x + k) - I(x))^2)``
over small lags ``k`` (pixels, horizontal and vertical pairs pooled). For a fractional Brownian field of
Hurst exponent H the slope is 2H: a texture rich in fine, connected trabeculae correlates over the small
lags (steep variogram, high index); a degraded texture of sparse, noisy structure is rougher (flat
variogram, low index). The index is on its own scale (0-2), not the calibrated TBS of the commercial
software (which maps to ~1.0-1.6); the ranking of microarchitecture is what it is meant for.

GLCM features: grey-level co-occurrence matrix (as ``skimage.feature.graycomatrix``, counted for a whole stack
at once) of a masked region,
quantised over a fixed window so that features from different series are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray
from scipy import ndimage as ndi

from schemas.tables.fragility import TEXTURE
from tasks.biomarkers import morphology as morph
from tasks.biomarkers.spine import VertebraLabel
from tasks.dicom.volume import Volume

DEFAULT_LAGS: tuple[int, ...] = (1, 2, 3, 4)
# HU window for the quantisation of CT trabecular bone (fixed, so features compare across series).
TRABECULAR_WINDOW_HU: tuple[float, float] = (-100.0, 500.0)
GLCM_LEVELS = 32
GLCM_DISTANCES: tuple[int, ...] = (1, 2)
GLCM_PROPS: tuple[str, ...] = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation")
TEXTURE_LEVELS: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")


def variogram(image: NDArray[np.floating], lags: Sequence[int] = DEFAULT_LAGS,
              mask: NDArray[np.bool_] | None = None, robust: bool = False) -> NDArray[np.float64]:
    """Experimental variogram of a 2-D image at integer pixel ``lags`` (horizontal and vertical pooled).

    Parameters
    ----------
    image
        2-D intensity image.
    lags
        Positive integer lags in pixels.
    mask
        Optional boolean region; only pairs with both pixels inside count.
    robust
        Use the Cressie-Hawkins estimator ``mean(|d|^(1/2))^4 / (0.457 + 0.494 / N)`` instead of the mean
        squared difference: a minority of pairs straddling edges (pedicles, cortex, detector seams) then
        barely moves the estimate.

    Returns
    -------
    numpy.ndarray
        ``V(k)`` per lag (twice the semivariance); NaN for a lag with no pair.
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
        parts = []
        for a, b, ma, mb in (
            (img[:, k:], img[:, :-k], m[:, k:], m[:, :-k]),
            (img[k:, :], img[:-k, :], m[k:, :], m[:-k, :]),
        ):
            if a.size:
                parts.append((a - b)[ma & mb])
        d = np.concatenate(parts) if parts else np.empty(0)
        if d.size == 0:
            continue
        if robust:
            out[i] = float(np.mean(np.sqrt(np.abs(d)))) ** 4 / (0.457 + 0.494 / d.size)
        else:
            out[i] = float(np.mean(d * d))
    return out


def relative_detail(image: NDArray[np.floating], sigma_px: float,
                    mask: NDArray[np.bool_] | None = None) -> NDArray[np.float64]:
    """``image / smooth(image) - 1``: the fine relative variation left after dividing out the anatomy.

    The smooth part is a normalised Gaussian convolution (``sigma_px``) over ``mask`` only, so the edges of
    the region do not leak in. A projection's bone shape (body outline, thickness) varies over
    centimetres; trabecular texture over a few pixels.
    """
    img = np.asarray(image, dtype=np.float64)
    m = np.ones(img.shape, dtype=np.float64) if mask is None else np.asarray(mask, dtype=np.float64)
    num = ndi.gaussian_filter(img * m, sigma_px)
    den = ndi.gaussian_filter(m, sigma_px)
    with np.errstate(divide="ignore", invalid="ignore"):
        smooth = num / den
        out = np.where((den > 1e-6) & (np.abs(smooth) > 1e-12), img / smooth - 1.0, 0.0)
    return out


def tbs_index(image: NDArray[np.floating], lags: Sequence[int] = DEFAULT_LAGS,
              mask: NDArray[np.bool_] | None = None, detrend_sigma_px: float | None = None,
              robust: bool = False) -> float:
    """TBS-style index: least-squares slope of log V(k) against log k over ``lags``.

    ``robust`` selects the Cressie-Hawkins variogram (see :func:`variogram`). With ``detrend_sigma_px`` the
    variogram is taken of :func:`relative_detail` (the anatomy divided out),
    so that the body outline and thickness gradients do not dominate the small-lag variogram.
    Returns NaN when fewer than two lags have a positive variogram (a flat or tiny region).

    Notes
    -----
    The index depends on pixel size and on the detector's noise and blur: compare values from the same
    kind of acquisition only. It does not correct for soft-tissue thickness, which lowers the real TBS.
    """
    if detrend_sigma_px:
        image = relative_detail(image, detrend_sigma_px, mask)
    v = variogram(image, lags, mask, robust)
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
    levels: int = GLCM_LEVELS,
    distances: Sequence[int] = GLCM_DISTANCES,
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
    total, n = _glcm_counts(image, mask, window, levels, distances)
    return _features([(total, n)])[0]


def _glcm_counts(image: NDArray[np.floating], mask: NDArray[np.bool_] | None, window: tuple[float, float],
                 levels: int, distances: Sequence[int]) -> tuple[NDArray[np.float64], int]:
    """Co-occurrence counts ``(levels, levels, n_distances, 4)`` of the masked region and its pixel count
    (the first half of :func:`glcm_features`)."""
    img = np.asarray(image)
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
    # Pairs with a pixel outside the mask are dropped, so the mask's bounding box holds every counted pair.
    box = _bbox(m)
    img, m = img[box].astype(np.float64), m[box]
    q = np.clip(((img - lo) / (hi - lo) * levels).astype(np.int64), 0, levels - 1) + 1
    q[~m] = 0
    angles = [0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    return _cooccurrence(q, distances, angles, levels), int(m.sum())


def _features(counts: Sequence[tuple[NDArray[np.float64], int]]) -> list[GlcmFeatures]:
    """:class:`GlcmFeatures` of several regions' co-occurrence counts (same levels, distances and angles),
    with the properties of all regions computed in one pass (their matrices side by side along the last
    axis; every property is computed per matrix, so the values are those of one region at a time)."""
    nan = float("nan")
    out: list[GlcmFeatures | None] = [None] * len(counts)
    good: list[int] = []
    blocks: list[NDArray[np.float64]] = []
    for r, (total, n) in enumerate(counts):
        sums = total.sum(axis=(0, 1), keepdims=True)
        if n == 0 or not np.all(sums > 0):
            out[r] = GlcmFeatures(nan, nan, nan, nan, nan, nan, n)
            continue
        good.append(r)
        blocks.append(total / sums)
    if blocks:
        nd, na = blocks[0].shape[2:]
        p = np.concatenate(blocks, axis=3)  # (levels, levels, nd, na * regions)
        props = _glcm_props(p)
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=(0, 1))
        for b, r in enumerate(good):
            cols = slice(b * na, (b + 1) * na)
            vals = {name: float(np.nanmean(v[:, cols])) for name, v in props.items()}
            out[r] = GlcmFeatures(entropy=float(np.mean(ent[:, cols])), n_pixels=counts[r][1], **vals)
    return [f for f in out if f is not None]


def _bbox(m: NDArray[np.bool_]) -> tuple[slice, ...]:
    """Slices of the bounding box of ``m`` (empty slices when ``m`` has no True)."""
    out = []
    for ax in range(m.ndim):
        idx = np.nonzero(m.any(axis=tuple(a for a in range(m.ndim) if a != ax)))[0]
        out.append(slice(int(idx[0]), int(idx[-1]) + 1) if len(idx) else slice(0, 0))
    return tuple(out)


def _cooccurrence(q: NDArray[np.int64], distances: Sequence[int], angles: Sequence[float],
                  levels: int) -> NDArray[np.float64]:
    """Symmetric in-plane co-occurrence counts ``(levels, levels, n_distances, n_angles)`` of a stack of
    grey-level images ``q`` (values 1..levels; 0 = outside the region, pairs touching it not counted),
    pooled over slices: ``skimage.feature.graycomatrix(..., symmetric=True)[1:, 1:]`` summed over the
    slices (same offsets: ``round(sin(angle) d)`` rows, ``round(cos(angle) d)`` columns), counted with one
    ``bincount`` per offset for the whole stack instead of one call per slice."""
    _, ny, nx = q.shape
    out = np.zeros((levels, levels, len(distances), len(angles)), dtype=np.float64)
    for a_idx, angle in enumerate(angles):
        for d_idx, dist in enumerate(distances):
            orow = int(np.trunc(np.sin(angle) * dist + np.copysign(0.5, np.sin(angle) * dist)))
            ocol = int(np.trunc(np.cos(angle) * dist + np.copysign(0.5, np.cos(angle) * dist)))
            r0, r1 = max(0, -orow), min(ny, ny - orow)
            c0, c1 = max(0, -ocol), min(nx, nx - ocol)
            if r1 <= r0 or c1 <= c0:
                continue
            a = q[:, r0:r1, c0:c1]
            b = q[:, r0 + orow : r1 + orow, c0 + ocol : c1 + ocol]
            keep = (a > 0) & (b > 0)
            idx = (a[keep] - 1) * levels + (b[keep] - 1)
            cnt = np.bincount(idx, minlength=levels * levels).reshape(levels, levels).astype(np.float64)
            out[:, :, d_idx, a_idx] = cnt + cnt.T
    return out


def _glcm_props(p: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
    """``skimage.feature.graycoprops(p, name)`` for each of ``GLCM_PROPS`` (same formulas and order of
    operations), with the normalisation and the index grids shared instead of redone per property."""
    n = p.shape[0]
    sums = np.sum(p, axis=(0, 1), keepdims=True)
    sums[sums == 0] = 1
    p = p / sums
    i, j = np.ogrid[0:n, 0:n]
    out = {
        "contrast": np.sum(p * ((i - j) ** 2).reshape((n, n, 1, 1)), axis=(0, 1)),
        "dissimilarity": np.sum(p * np.abs(i - j).reshape((n, n, 1, 1)), axis=(0, 1)),
        "homogeneity": np.sum(p * (1.0 / (1.0 + (i - j) ** 2)).reshape((n, n, 1, 1)), axis=(0, 1)),
        "energy": np.sqrt(np.sum(p**2, axis=(0, 1))),
    }
    ii = np.arange(n).reshape((n, 1, 1, 1))
    jj = np.arange(n).reshape((1, n, 1, 1))
    diff_i = ii - np.sum(ii * p, axis=(0, 1))
    diff_j = jj - np.sum(jj * p, axis=(0, 1))
    std_i = np.sqrt(np.sum(p * diff_i**2, axis=(0, 1)))
    std_j = np.sqrt(np.sum(p * diff_j**2, axis=(0, 1)))
    cov = np.sum(p * (diff_i * diff_j), axis=(0, 1))
    corr = np.ones(cov.shape, dtype=np.float64)
    ok = (std_i >= 1e-15) & (std_j >= 1e-15)
    corr[ok] = cov[ok] / (std_i[ok] * std_j[ok])
    out["correlation"] = corr
    return {k: out[k] for k in GLCM_PROPS}


@dataclass(frozen=True)
class RegionTexture:
    """Texture of one region of one series (a ``texture`` table row without the series columns)."""

    region: str
    tbs_index: float | None
    glcm: GlcmFeatures | None
    mean_intensity: float | None
    flags: tuple[str, ...] = ()


def ct_trabecular_texture(volume: Volume, vertebrae: Sequence[VertebraLabel],
                          erode_mm: float = 3.0) -> list[RegionTexture]:
    """GLCM features of the trabecular bone of each labelled body (T10-L5) of a CT volume.

    The region is the labeller's body mask, eroded by ``erode_mm`` in-plane (cortex and partial volume
    out) and restricted to the central 60% of the body's slices (endplates out).

    Notes
    -----
    GLCM values depend on pixel size, slice thickness, kernel and noise: compare them within one protocol,
    not across scanners. Bodies without a mask are skipped.
    """
    out: list[RegionTexture] = []
    measured: list[tuple[int, NDArray[np.float64], int]] = []  # (index in out, counts, pixels)
    _, dy, dx = volume.spacing_mm
    for v in vertebrae:
        if v.level not in TEXTURE_LEVELS or v.body_mask is None or not v.body_mask.any():
            continue
        k0, k1, i0, i1, j0, j1 = v.bbox
        mask = np.asarray(v.body_mask, dtype=bool)
        zs = np.nonzero(mask.any(axis=(1, 2)))[0]
        lo = zs.min() + int(0.2 * (zs.max() - zs.min() + 1))
        hi = zs.max() - int(0.2 * (zs.max() - zs.min() + 1))
        roi = np.zeros_like(mask)
        ry, rx = max(1, int(round(erode_mm / dy))), max(1, int(round(erode_mm / dx)))
        # Per-slice erosion by the (2 ry + 1) x (2 rx + 1) rectangle, border 0 (= ndi.binary_erosion of
        # each slice): separable, a row segment then a column segment (morphology's shifted ANDs, several
        # times faster than scipy's per-offset loop), for the whole stack at once.
        if hi >= lo:
            roi[lo : hi + 1] = morph.erode(morph.erode(mask[lo : hi + 1], 0.0, float(rx)), float(ry), 0.0)
        sub = volume.hu[k0:k1, i0:i1, j0:j1][: roi.shape[0], : roi.shape[1], : roi.shape[2]]
        roi = roi[: sub.shape[0], : sub.shape[1], : sub.shape[2]]
        if roi.sum() < 50:
            out.append(RegionTexture(v.level, None, None, None, ("trabecular_region_too_small",)))
            continue
        total, n = _glcm_counts(sub, roi, TRABECULAR_WINDOW_HU, GLCM_LEVELS, GLCM_DISTANCES)
        measured.append((len(out), total, n))
        out.append(RegionTexture(v.level, None, None, float(sub[roi].mean())))
    # The features of all bodies in one pass (same values as glcm_features body by body).
    for (i, _, _), g in zip(measured, _features([(t, n) for _, t, n in measured]), strict=True):
        out[i] = RegionTexture(out[i].region, None, g, out[i].mean_intensity)
    return out


def texture_table(series_instance_uid: str, study_instance_uid: str | None, rows: Sequence[RegionTexture],
                  source: str, extractor_version: str, n_pixels: Sequence[int] | None = None) -> pa.Table:
    """``texture`` rows of one series, conformed to the declared schema."""
    out = []
    for i, r in enumerate(rows):
        g = r.glcm
        out.append({
            "series_instance_uid": series_instance_uid, "region": r.region, "tbs_index": r.tbs_index,
            "glcm_contrast": g.contrast if g else None, "glcm_dissimilarity": g.dissimilarity if g else None,
            "glcm_homogeneity": g.homogeneity if g else None, "glcm_energy": g.energy if g else None,
            "glcm_correlation": g.correlation if g else None, "glcm_entropy": g.entropy if g else None,
            "mean_intensity": r.mean_intensity,
            "n_pixels": g.n_pixels if g else (n_pixels[i] if n_pixels else None),
            "qc_flags": ",".join(r.flags), "study_instance_uid": study_instance_uid, "source": source,
            "extractor_version": extractor_version,
        })
    if not out:
        return TEXTURE.empty()
    return TEXTURE.conform(pa.Table.from_pylist(out))
