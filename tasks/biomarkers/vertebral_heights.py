"""Vertebral body heights on a 2-D sagittal image (CT mid-sagittal reformat or lateral radiograph).

The measurement works on a local patch resampled around one vertebral body at 0.25 mm, with rows along
the spine axis (cranial up) and columns from anterior to posterior:

1. the anterior and posterior walls are found on row profiles a few mm above and below the centre (the
   mid-body row is avoided: the basivertebral foramen interrupts the posterior wall there);
2. on column profiles at 21 positions between 12% and 88% of the body depth, the upper and lower endplates
   are the outward edges between the endplate peak (cortex) and the disc beyond it, searched only up to
   half-way to the neighbouring body;
3. each endplate is fitted by a quadratic in the depth coordinate ``u`` (-1 anterior, +1 posterior; outliers
   dropped), and Ha, Hm, Hp are the fitted heights at u = -1, 0, +1 (outer surfaces, six-point morphometry
   without the rounded corners).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from tasks.biomarkers.genant import VertebralHeights

STEP_MM = 0.25
N_POINTS = 21
U_RANGE = 0.88
MIN_EDGE_CONTRAST = 0.25  # endplate peak above disc, relative to peak above body centre
# Half the thickness of a vertebral endplate / wall cortex (typical adult cortical shell ~1 mm). Used to go
# from the centre of a blurred cortical layer to its outer surface.
CORTEX_HALF_MM = 0.5


@dataclass(frozen=True)
class BodyGuess:
    """Where a vertebral body is on a 2-D sagittal image (mm in image coordinates).

    ``centre`` is (row_mm, col_mm); ``axis`` the unit vector (d_row, d_col) pointing cranially;
    ``posterior`` the unit vector pointing posteriorly; ``up_mm``/``down_mm`` how far the cranial and
    caudal endplate searches may go (half-way to the neighbouring bodies); ``half_depth_mm`` a rough
    half AP depth (search range for the walls).
    """

    level: str
    centre: tuple[float, float]
    axis: tuple[float, float]
    posterior: tuple[float, float]
    up_mm: float
    down_mm: float
    half_depth_mm: float = 20.0


@dataclass
class HeightMeasurement:
    """Heights of one body (mm) and what the measurement found."""

    level: str
    anterior_mm: float | None
    middle_mm: float | None
    posterior_mm: float | None
    depth_mm: float | None = None
    centre_mm: tuple[float, float] | None = None
    n_points: int = 0
    flags: list[str] = field(default_factory=list)

    def heights(self) -> VertebralHeights:
        return VertebralHeights(self.level, self.anterior_mm, self.middle_mm, self.posterior_mm)


def sample_patch(image: NDArray[np.floating], spacing: tuple[float, float], g: BodyGuess,
                 half_len_mm: float, half_width_mm: float) -> NDArray[np.float64]:
    """Resample ``image`` (rows, cols with ``spacing`` mm) on the body frame of ``g`` at ``STEP_MM``.

    Row ``r`` of the patch lies ``(r - n) * STEP_MM`` mm cranial of the centre (``n`` = half length in
    steps), so the patch's row index increases cranially; column ``c`` lies ``(c - m) * STEP_MM`` mm
    posterior of it.
    """
    s = np.arange(-half_len_mm, half_len_mm + STEP_MM / 2, STEP_MM)
    t = np.arange(-half_width_mm, half_width_mm + STEP_MM / 2, STEP_MM)
    ss, tt = np.meshgrid(s, t, indexing="ij")
    rr = (g.centre[0] + ss * g.axis[0] + tt * g.posterior[0]) / spacing[0]
    cc = (g.centre[1] + ss * g.axis[1] + tt * g.posterior[1]) / spacing[1]
    return np.asarray(ndi.map_coordinates(np.asarray(image, dtype=np.float64), [rr, cc], order=1,
                                          mode="nearest"))


def outward_edge(profile: NDArray[np.floating], start: int, stop: int, half_layer: float = 0.0,
                 min_contrast: float = 0.0) -> float | None:
    """Fractional index of the outer surface of a bright structure between ``start`` and ``stop``.

    Walks from ``start`` (inside the body) towards ``stop`` (exclusive; either direction). The peak is the
    first local maximum reaching 70% of the range's maximum rise over the start value (the cortex or the
    body plateau); the floor is the minimum beyond it (disc or soft tissue). When the peak stands out from
    the inside as well (a cortical layer thinner than the blur or the slice), the surface is the centroid
    of the layer's excess intensity plus ``half_layer`` (indices) outwards: a blurred thin layer keeps its
    centre but not its half-maximum edges. Otherwise (a plateau) it is the first outward crossing of
    (peak + floor) / 2, linearly interpolated. Returns None when the peak does not stand out from the floor
    (by a quarter of the profile's range, and by ``min_contrast``, e.g. a few noise SDs).
    """
    step = 1 if stop > start else -1
    idx = np.arange(start, stop, step)
    if len(idx) < 4:
        return None
    p = np.asarray(profile, dtype=np.float64)[idx]
    rise = p.max() - p[0]
    level = p[0] + 0.7 * rise if rise > 0 else p.max()
    k = 0
    while k < len(p) - 1 and not (p[k] >= level and p[k] >= p[k + 1]):
        k += 1
    floor = float(p[k:].min())
    peak = float(p[k])
    span = max(peak - min(floor, p[0]), 1e-9)
    if peak - floor < max(MIN_EDGE_CONTRAST * span, min_contrast):
        return None
    inner = float(np.median(p[: max(k - int(round(2 * half_layer)) - 1, 1)]))
    if half_layer > 0 and peak - inner >= 0.3 * (peak - floor):
        # Centroid of the layer's excess over the inside level (inner flank) and the floor (outer flank):
        # with box-shaped slice profiles (thick CT slices) this stays unbiased where a half-maximum does not.
        lo = k
        while lo > 0 and p[lo - 1] > inner + 0.1 * (peak - inner):
            lo -= 1
        hi = k
        while hi < len(p) - 1 and p[hi + 1] > floor + 0.1 * (peak - floor):
            hi += 1
        jj = np.arange(lo, hi + 1)
        base = np.where(jj < k, inner, np.where(jj > k, floor, 0.5 * (inner + floor)))
        w = np.clip(p[lo : hi + 1] - base, 0.0, None)
        if hi + 1 < len(p) and w.sum() > 0:
            centre = float(np.sum(w * jj) / w.sum())
            return float(idx[0] + step * (centre + half_layer))
    half = 0.5 * (peak + floor)
    for j in range(k, len(p) - 1):
        if p[j] >= half > p[j + 1]:
            frac = (p[j] - half) / (p[j] - p[j + 1])
            return float(idx[j] + step * frac)
    return None


def _robust_quadratic(u: NDArray[np.float64], z: NDArray[np.float64]) -> NDArray[np.float64] | None:
    ok = np.isfinite(z)
    if ok.sum() < 5:
        return None
    uu, zz = u[ok], z[ok]
    for _ in range(3):
        coef = np.polyfit(uu, zz, 2)
        res = zz - np.polyval(coef, uu)
        mad = float(np.median(np.abs(res - np.median(res)))) * 1.4826
        keep = np.abs(res) <= max(3.0 * mad, 1.0)
        if keep.all() or keep.sum() < 5:
            break
        uu, zz = uu[keep], zz[keep]
    return np.polyfit(uu, zz, 2)


def measure_body(image: NDArray[np.floating], spacing: tuple[float, float], g: BodyGuess,
                 column_half_mm: float = 0.5, u_max: float = U_RANGE, inner_walls: bool = False,
                 thick_slice_mm: float | None = None) -> HeightMeasurement:
    """Anterior, middle and posterior height of the body described by ``g`` on a 2-D sagittal image.

    Parameters
    ----------
    image
        CT mid-sagittal reformat (HU) or lateral radiograph (brighter = more attenuating).
    spacing
        (row, column) pixel spacing in mm.
    g
        Where the body is and how far the endplate searches may reach.
    column_half_mm
        Half width of the band averaged into each endplate profile (wider for noisy radiographs).
    u_max
        Most posterior profile position (fraction of the half depth); radiographs stop short of the
        pedicles, which overlap the posterior wall.
    inner_walls
        Find the walls above and below the centre separately and keep the inner-most (radiographs).
    thick_slice_mm
        Slice thickness of a thick-slice CT whose image rows are the native slices: the endplates are then
        fitted by the slab-profile model (:func:`fit_endplates_thick`) instead of edge search.

    Notes
    -----
    Heights are outer heights, cortex included, perpendicular to the local spine axis. Bodies whose walls
    or endplates cannot be found get ``None`` heights and a flag; nothing is guessed.
    """
    flags: list[str] = []
    half_len = max(g.up_mm, g.down_mm) + 2.0
    half_w = g.half_depth_mm + 12.0
    patch = sample_patch(image, spacing, g, half_len, half_w)
    n0 = int(round(half_len / STEP_MM))
    m0 = int(round(half_w / STEP_MM))
    hl = CORTEX_HALF_MM / STEP_MM
    # noise of the source image (pixel level) -> contrast an edge must have in an averaged profile
    src = np.asarray(image, dtype=np.float64)
    d = np.diff(src, axis=1).ravel()
    sigma = float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0)) if d.size else 0.0
    pix = min(spacing)
    wall_min = 5.0 * sigma / math.sqrt(max(1.0, 6.0 / spacing[0]))
    plate_min = 5.0 * sigma / math.sqrt(max(1.0, 2.0 * column_half_mm / pix))
    # 1. walls, on bands 3-6 mm above and below the centre (pooled; with ``inner_walls`` each band apart
    # and the inner-most wall counts: on a radiograph the pedicles overlap the upper posterior wall).
    bands = [[n0 + sign * r for r in range(int(3 / STEP_MM), int(6 / STEP_MM) + 1)] for sign in (-1, 1)]
    rows = [[b for b in band if 0 <= b < patch.shape[0]] for band in bands]
    if not inner_walls:
        rows = [rows[0] + rows[1]]
    ants, posts = [], []
    for rr in rows:
        row = ndi.uniform_filter1d(patch[rr].mean(axis=0), size=3)
        a = outward_edge(row, m0, max(m0 - int((g.half_depth_mm + 10) / STEP_MM), 0) - 1, hl, wall_min)
        b = outward_edge(row, m0, min(m0 + int((g.half_depth_mm + 8) / STEP_MM), len(row) - 1) + 1, hl, wall_min)
        if a is not None:
            ants.append(a)
        if b is not None:
            posts.append(b)
    ant = max(ants) if ants else None
    post = min(posts) if posts else None
    if ant is None or post is None or post - ant < 8 / STEP_MM:
        return HeightMeasurement(g.level, None, None, None, flags=["walls_not_found"])
    depth = (post - ant) * STEP_MM
    c_mid = 0.5 * (ant + post)
    if thick_slice_mm is not None:
        ant_mm, post_mm = (ant - m0) * STEP_MM, (post - m0) * STEP_MM
        fit = fit_endplates_thick(image, spacing, g, ant_mm, post_mm, thick_slice_mm)
        if fit is None:
            return HeightMeasurement(g.level, None, None, None, depth, None, 0, ["endplates_not_found"])
        ct, cb, _ = fit
        return _from_fit(g, ct, cb, depth, 0.5 * (ant_mm + post_mm), N_POINTS, flags)
    # 2. endplates on column profiles.
    u = np.linspace(-U_RANGE, u_max, N_POINTS)
    top = np.full(N_POINTS, np.nan)
    bot = np.full(N_POINTS, np.nan)
    up_stop = min(n0 + int(g.up_mm / STEP_MM), patch.shape[0] - 1) + 1
    down_stop = max(n0 - int(g.down_mm / STEP_MM), 0) - 1
    w = max(1, int(round(column_half_mm / STEP_MM)))
    for q, uq in enumerate(u):
        c = int(round(c_mid + uq * (post - ant) / 2))
        col = patch[:, max(c - w, 0) : c + w + 1].mean(axis=1)
        e_up = outward_edge(col, n0, up_stop, hl, plate_min)
        e_dn = outward_edge(col, n0, down_stop, hl, plate_min)
        if e_up is not None:
            top[q] = (e_up - n0) * STEP_MM
        if e_dn is not None:
            bot[q] = (e_dn - n0) * STEP_MM
    ct, cb = _robust_quadratic(u, top), _robust_quadratic(u, bot)
    n_ok = int(np.sum(np.isfinite(top) & np.isfinite(bot)))
    if ct is None or cb is None:
        return HeightMeasurement(g.level, None, None, None, depth, None, n_ok, ["endplates_not_found"])
    if n_ok < 0.7 * N_POINTS:
        flags.append("endplates_partly_found")
    return _from_fit(g, ct, cb, depth, float((c_mid - m0) * STEP_MM), n_ok, flags)


def _from_fit(g: BodyGuess, ct: NDArray[np.float64], cb: NDArray[np.float64], depth: float, mid_t: float,
              n_ok: int, flags: list[str]) -> HeightMeasurement:
    """Heights at u = -1, 0, +1 from the endplate quadratics, and the body centre in image mm."""
    h = np.polyval(ct, [-1.0, 0.0, 1.0]) - np.polyval(cb, [-1.0, 0.0, 1.0])
    if np.any(h <= 2.0):
        return HeightMeasurement(g.level, None, None, None, depth, None, n_ok, flags + ["implausible_heights"])
    # centre of the measured body in image mm (mid-height at mid-depth)
    mid_s = 0.5 * float(np.polyval(ct, 0.0) + np.polyval(cb, 0.0))
    centre = (g.centre[0] + mid_s * g.axis[0] + mid_t * g.posterior[0],
              g.centre[1] + mid_s * g.axis[1] + mid_t * g.posterior[1])
    return HeightMeasurement(g.level, float(h[0]), float(h[1]), float(h[2]), depth, centre, n_ok, flags)


def guesses_from_centres(
    ordered: Sequence[tuple[str, float, float]],
    half_depths: dict[str, float] | None = None,
    posterior_sign: float = 1.0,
) -> list[BodyGuess]:
    """Body frames from (level, row_mm, col_mm) centres on a sagittal image, ordered cranial first.

    The spine axis at a body is the direction from its caudal to its cranial neighbour; the posterior
    direction is the axis turned by 90 degrees towards ``posterior_sign`` * columns. The endplate searches
    reach half-way to each neighbour (0.55 of the median spacing at the ends of the column).
    """
    half_depths = half_depths or {}
    pts = np.array([[c[1], c[2]] for c in ordered], dtype=float)
    n = len(ordered)
    gaps = [float(np.hypot(*(pts[i + 1] - pts[i]))) for i in range(n - 1)]
    mean_gap = float(np.median(gaps)) if gaps else 35.0
    out = []
    for i, (level, _, _) in enumerate(ordered):
        a = pts[max(i - 1, 0)] - pts[min(i + 1, n - 1)] if n > 1 else np.array([1.0, 0.0])
        a = a / np.linalg.norm(a) if np.any(a) else np.array([1.0, 0.0])
        perp = np.array([-a[1], a[0]])
        if perp[1] * posterior_sign < 0:
            perp = -perp
        up = 0.5 * gaps[i - 1] if i > 0 else 0.55 * mean_gap
        down = 0.5 * gaps[i] if i < n - 1 else 0.55 * mean_gap
        out.append(BodyGuess(level, (float(pts[i, 0]), float(pts[i, 1])), (float(a[0]), float(a[1])),
                             (float(perp[0]), float(perp[1])), up, down, half_depths.get(level, 20.0)))
    return out


# --- thick slices: endplates by a forward model of the slice profile --------------------------------------
# Hand-written (no library fits a partial-volume slab model): with slices of 3-5 mm the 1 mm endplate
# cortex and the disc beside it share a slice, so the measured column profile is the true layered profile
# (neighbour body | cortex | disc | cortex | body | cortex | disc | cortex | neighbour body) averaged over
# each slice's sensitivity profile (a box of width W along the spine). Fitting that model to the native
# samples locates an endplate within a slice, where an edge on the interpolated profile cannot.
THICK_U = 0.8  # columns used: |u| <= THICK_U (away from the walls, blurred in-plane at coarse pixels)
# intensity of the 9 segments (upper body, cortex, disc, cortex, body, cortex, disc, cortex, lower body):
# 0 marrow, 1 cortex, 2 disc. Marrow and disc get one value per column (the walls' in-plane blur and the
# basivertebral vein change them across the depth), the cortex one value: few enough unknowns that a
# handful of thick slices per column still constrain the geometry.
_SEG_VALUE = (0, 1, 2, 1, 0, 1, 2, 1, 0)


def _segments(geo: NDArray[np.float64], u: NDArray[np.float64], t: float) -> NDArray[np.float64]:
    """Breakpoints (n, 8), descending along the spine axis, of the layered model at depths ``u``.

    ``geo`` = (top c0 c1 c2, bottom c0 c1 c2, upper disc d0 d1, lower disc d0 d1) with the endplates
    ``c0 + c1 u + c2 u^2`` (outer surfaces, mm along the axis from the guess centre) and the disc
    thicknesses ``d0 + d1 u`` (at least 0.2 mm).
    """
    top = geo[0] + geo[1] * u + geo[2] * u * u
    bot = geo[3] + geo[4] * u + geo[5] * u * u
    a = top + np.maximum(geo[6] + geo[7] * u, 0.2)
    b = bot - np.maximum(geo[8] + geo[9] * u, 0.2)
    p = np.stack([a + t, a, top, top - t, bot + t, bot, b, b - t], axis=1)
    return np.minimum.accumulate(p, axis=1)


def _design(p: NDArray[np.float64], s: NDArray[np.float64], w: float, q: NDArray[np.intp],
            n_cols: int) -> NDArray[np.float64]:
    """(n, 2 * n_cols + 1) fraction of each sample's box window ``[s - w/2, s + w/2]`` covered by each
    intensity: marrow of column ``q`` (first ``n_cols``), disc of column ``q`` (next ``n_cols``), cortex."""
    lo, hi = s - w / 2, s + w / 2
    edges = np.concatenate([np.full((len(s), 1), np.inf), p, np.full((len(s), 1), -np.inf)], axis=1)
    frac = np.zeros((len(s), 3))
    for j, k in enumerate(_SEG_VALUE):
        frac[:, k] += np.clip(np.minimum(hi, edges[:, j]) - np.maximum(lo, edges[:, j + 1]), 0.0, None)
    a = np.zeros((len(s), 2 * n_cols + 1))
    rows = np.arange(len(s))
    a[rows, q] = frac[:, 0]
    a[rows, n_cols + q] = frac[:, 2]
    a[:, -1] = frac[:, 1]
    return a / w


def _fit_residuals(x: NDArray[np.float64], s: NDArray[np.float64], u: NDArray[np.float64],
                   y: NDArray[np.float64], t: float, q: NDArray[np.intp], n_cols: int) -> NDArray[np.float64]:
    """Residuals of the layered model with geometry ``x[:-1]`` and profile width ``x[-1]``; the
    intensities are solved by linear least squares (variable projection)."""
    a = _design(_segments(x[:-1], u, t), s, float(x[-1]), q, n_cols)
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return np.asarray(y - a @ coef)


def column_samples(image: NDArray[np.floating], spacing: tuple[float, float], g: BodyGuess,
                   t_mm: NDArray[np.float64], s_lo: float, s_hi: float,
                   ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Native samples of ``image`` along body-frame columns (``t_mm`` posterior of the centre).

    Each image row is kept as it is (a thick slice is one measurement: it is not interpolated along the
    spine); along the row the value is interpolated at the column's crossing. Returns flat arrays of the
    axis position ``s`` (mm, cranial +), the index of the column and the value, for ``s_lo <= s <= s_hi``.
    """
    img = np.asarray(image, dtype=np.float64)
    rows = np.arange(img.shape[0], dtype=np.float64)
    ar = g.axis[0] if abs(g.axis[0]) > 1e-6 else 1e-6
    ss, qq, vv = [], [], []
    for q, t in enumerate(t_mm):
        s = (rows * spacing[0] - g.centre[0] - t * g.posterior[0]) / ar
        col = (g.centre[1] + s * g.axis[1] + t * g.posterior[1]) / spacing[1]
        ok = (s >= s_lo) & (s <= s_hi) & (col >= 0) & (col <= img.shape[1] - 1)
        if not ok.any():
            continue
        r = rows[ok].astype(int)
        c0 = np.floor(col[ok]).astype(int)
        c1 = np.minimum(c0 + 1, img.shape[1] - 1)
        f = col[ok] - c0
        ss.append(s[ok])
        qq.append(np.full(int(ok.sum()), q, dtype=np.float64))
        vv.append(img[r, c0] * (1 - f) + img[r, c1] * f)
    if not ss:
        return np.empty(0), np.empty(0), np.empty(0)
    return np.concatenate(ss), np.concatenate(qq), np.concatenate(vv)


def _flat_init(s: NDArray[np.float64], y: NDArray[np.float64], q: NDArray[np.intp], n_cols: int,
               reach_up: float, reach_dn: float, w: float, t: float) -> NDArray[np.float64]:
    """Flat endplates and discs by a grid search, one side at a time (three rounds): geometry vector."""
    geo = np.array([0.4 * reach_up, 0, 0, -0.4 * reach_dn, 0, 0, 6.0, 0, 6.0, 0])
    zeros = np.zeros_like(s)
    for side in (0, 3, 0, 3):
        reach = reach_up if side == 0 else reach_dn
        sign = 1.0 if side == 0 else -1.0
        best: tuple[float, float, float] | None = None
        for e in np.arange(3.0, max(0.75 * reach, 3.5), 0.5):
            for d in np.arange(1.0, max(min(16.0, reach - e - 2.0), 1.5), 1.0):
                trial = geo.copy()
                trial[side] = sign * e
                trial[6 if side == 0 else 8] = d
                sse = float(np.sum(_fit_residuals(np.r_[trial, w], s, zeros, y, t, q, n_cols) ** 2))
                if best is None or sse < best[0]:
                    best = (sse, e, d)
        if best is not None:
            geo[side] = sign * best[1]
            geo[6 if side == 0 else 8] = best[2]
    return geo


def fit_endplates_thick(image: NDArray[np.floating], spacing: tuple[float, float], g: BodyGuess,
                        ant_mm: float, post_mm: float, slice_mm: float,
                        ) -> tuple[NDArray[np.float64], NDArray[np.float64], float] | None:
    """Upper and lower endplates of one body on a thick-slice sagittal image by a slab-profile model.

    Parameters
    ----------
    image, spacing
        Sagittal reformat whose rows are the native slices (``spacing[0]`` = slice spacing, mm).
    g
        Body frame (centre, axis, reach to the neighbours).
    ant_mm, post_mm
        Outer anterior and posterior wall positions (mm posterior of ``g.centre``).
    slice_mm
        Nominal slice thickness; the profile width is fitted between 0.8 and 1.8 times it.

    Returns
    -------
    (top, bottom, width) or None
        Quadratic coefficients (numpy order: c2, c1, c0) of the outer endplate surfaces in the depth
        coordinate u (-1 anterior wall, +1 posterior wall; mm along the axis from ``g.centre``), and the
        fitted profile width. None when the samples do not constrain the model.

    Notes
    -----
    The cortex is modelled as a ``2 * CORTEX_HALF_MM`` layer of one (fitted) intensity; the discs and the
    three bodies each have their own intensity. The fit does not model the basivertebral vein or
    osteophytes; a body whose neighbours are outside the image is fitted with what remains.
    """
    from scipy.optimize import least_squares

    t = 2.0 * CORTEX_HALF_MM
    half = 0.5 * (post_mm - ant_mm)
    mid = 0.5 * (post_mm + ant_mm)
    step = max(spacing[1], 1.0)
    n_cols = max(5, int(2 * THICK_U * half / step) + 1)
    u_cols = np.linspace(-THICK_U, THICK_U, n_cols)
    reach_up, reach_dn = 2.0 * g.up_mm, 2.0 * g.down_mm
    s, q, y = column_samples(image, spacing, g, mid + half * u_cols, -reach_dn + 4.0, reach_up - 4.0)
    if len(s) < 3 * 6:
        return None
    u = u_cols[q.astype(int)]
    w0 = 1.2 * slice_mm
    central = np.abs(u) <= 0.5
    if central.sum() < 8:
        return None
    x0 = np.r_[_flat_init(s[central], y[central], reach_up, reach_dn, w0, t), w0]
    lb = np.array([2.0, -8, -6, -reach_dn, -8, -6, 0.2, -8, 0.2, -8, 0.8 * slice_mm])
    ub = np.array([reach_up, 8, 6, -2.0, 8, 6, 20, 8, 20, 8, 1.8 * slice_mm])
    x0 = np.clip(x0, lb + 1e-6, ub - 1e-6)
    try:
        fit = least_squares(_fit_residuals, x0, bounds=(lb, ub), args=(s, u, y, t), diff_step=1e-3,
                            x_scale=np.r_[np.ones(10), slice_mm], max_nfev=200)
    except (ValueError, np.linalg.LinAlgError):
        return None
    x = fit.x
    top = np.array([x[2], x[1], x[0]])
    bot = np.array([x[5], x[4], x[3]])
    return top, bot, float(x[10])
