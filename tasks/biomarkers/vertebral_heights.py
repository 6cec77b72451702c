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
   without the rounded corners);
4. CT only (``measure_body(..., slice_mm=...)``, :func:`tasks.biomarkers.slice_profile.slice_profile_fit`):
   the endplate quadratics are refitted to the slice samples of their columns with a box
   slice-sensitivity profile, which places an endplate inside its slice (the endplate cortex's thickness
   chosen per series by the fit's residual); radiographs skip this.
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
PROJECTION_WALL_LEVEL = 0.3
WALL_BAND_MM = (3.0, 6.0)  # rows above / below the centre where the walls are found first
CRUSHED_WALL_BAND_MM = (1.0, 3.0)  # ... and where they are looked for when they are not found there


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
class EndplateColumns:
    """What :func:`tasks.biomarkers.slice_profile.slice_profile_fit` needs of one measured body: its patch, the endplate columns
    (``centres`` with half band ``w``, depth coordinates ``u``), the edges found on them (``top``, ``bottom``,
    mm along the axis from the centre) and their quadratics, the search range (``up_mm``, ``down_mm``), the
    slice box ``width`` along the axis, and what :func:`heights_from_quadratics` needs again."""

    patch: _Patch
    centres: NDArray[np.intp]
    w: int
    u: NDArray[np.float64]
    top: NDArray[np.float64]
    bottom: NDArray[np.float64]
    coef_top: NDArray[np.float64]
    coef_bottom: NDArray[np.float64]
    up_mm: float
    down_mm: float
    width: float
    depth: float
    mid_t: float
    n_ok: int
    flags: list[str]


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
    # the endplate columns, kept by measure_body(slice_mm=...) for slice_profile.slice_profile_fit
    columns: EndplateColumns | None = field(default=None, repr=False, compare=False)

    def heights(self) -> VertebralHeights:
        return VertebralHeights(self.level, self.anterior_mm, self.middle_mm, self.posterior_mm)


def sample_patch(image: NDArray[np.floating], spacing: tuple[float, float], g: BodyGuess,
                 half_len_mm: float, half_width_mm: float) -> NDArray[np.float64]:
    """Resample ``image`` (rows, cols with ``spacing`` mm) on the body frame of ``g`` at ``STEP_MM``.

    Row ``r`` of the patch lies ``(r - n) * STEP_MM`` mm cranial of the centre (``n`` = half length in
    steps), so the patch's row index increases cranially; column ``c`` lies ``(c - m) * STEP_MM`` mm
    posterior of it.
    """
    return _Patch(image, spacing, g, half_len_mm, half_width_mm).sample(None, None)


class _Patch:
    """The patch of :func:`sample_patch`, sampled only where it is read (rows for the walls, column strips
    for the endplates): every sample is the same bilinear interpolation at the same point."""

    def __init__(self, image: NDArray[np.floating], spacing: tuple[float, float], g: BodyGuess,
                 half_len_mm: float, half_width_mm: float) -> None:
        self.image = np.asarray(image, dtype=np.float64)
        self.spacing, self.g = spacing, g
        self.s = np.arange(-half_len_mm, half_len_mm + STEP_MM / 2, STEP_MM)
        self.t = np.arange(-half_width_mm, half_width_mm + STEP_MM / 2, STEP_MM)
        self.shape = (len(self.s), len(self.t))

    def sample(self, rows: NDArray[np.intp] | None, cols: NDArray[np.intp] | None) -> NDArray[np.float64]:
        """Samples at ``rows`` x ``cols`` of the patch (None: all)."""
        g, sp = self.g, self.spacing
        s = self.s if rows is None else self.s[rows]
        t = self.t if cols is None else self.t[cols]
        coords = np.empty((2, len(s), len(t)))
        coords[0] = (g.centre[0] + s[:, None] * g.axis[0] + t[None, :] * g.posterior[0]) / sp[0]
        coords[1] = (g.centre[1] + s[:, None] * g.axis[1] + t[None, :] * g.posterior[1]) / sp[1]
        return np.asarray(ndi.map_coordinates(self.image, coords, order=1, mode="nearest"))

    def column_means(self, centres: NDArray[np.intp], w: int) -> NDArray[np.float64]:
        """(len(centres), rows): each column ``c`` averaged with its neighbours ``c - w .. c + w`` (clipped
        to the patch)."""
        idx = centres[:, None] + np.arange(-w, w + 1)
        if idx.min() >= 0 and idx.max() < self.shape[1]:
            uniq, inv = np.unique(idx, return_inverse=True)
            return np.asarray(self.sample(None, uniq)[:, inv.reshape(idx.shape)].mean(axis=2).T)
        return np.stack([self.sample(None, np.arange(max(c - w, 0), min(c + w + 1, self.shape[1]))).mean(axis=1)
                         for c in centres])


def outward_edge(profile: NDArray[np.floating], start: int, stop: int, half_layer: float = 0.0,
                 min_contrast: float = 0.0, fraction: float = 0.5, floor_reach: int | None = None) -> float | None:
    """Fractional index of the outer surface of a bright structure between ``start`` and ``stop``.

    Walks from ``start`` (inside the body) towards ``stop`` (exclusive; either direction). The peak is the
    first local maximum reaching 70% of the range's maximum rise over the start value (the cortex or the
    body plateau); the floor is the minimum beyond it (disc or soft tissue). When the peak stands out from
    the inside as well (a cortical layer thinner than the blur or the slice), the surface is the centroid
    of the layer's excess intensity plus ``half_layer`` (indices) outwards: a blurred thin layer keeps its
    centre but not its half-maximum edges. Otherwise (a plateau) it is the first outward crossing of
    floor + ``fraction`` * (peak - floor) (the half maximum by default), linearly interpolated. Returns None
    when the peak does not stand out from the floor (by a quarter of the profile's range, and by
    ``min_contrast``, e.g. a few noise SDs). With ``floor_reach`` (indices) the floor is the minimum within
    that many samples beyond the peak rather than in the whole range: the tissue right outside the
    layer, not a darker one further out (fat or a vessel a few mm in front of a vertebral wall, which
    would pull a cortical layer's centroid outwards across the soft tissue in between).
    """
    e = float(outward_edges(np.asarray(profile, dtype=np.float64)[None, :], start, stop, half_layer,
                            min_contrast, fraction, floor_reach)[0])
    return None if math.isnan(e) else e


def outward_edges(profiles: NDArray[np.floating], start: int, stop: int, half_layer: float = 0.0,
                  min_contrast: float = 0.0, fraction: float = 0.5,
                  floor_reach: int | None = None) -> NDArray[np.float64]:
    """:func:`outward_edge` of every row of ``profiles`` (2-D) at once; NaN where it returns None."""
    step = 1 if stop > start else -1
    prof = np.asarray(profiles, dtype=np.float64)
    p = prof[:, start:stop] if step == 1 else prof[:, max(stop + 1, 0) : start + 1][:, ::-1]
    m, n = p.shape
    out = np.full(m, np.nan)
    if n < 4 or m == 0:
        return out
    rows = np.arange(m)
    j = np.arange(n)[None, :]
    p0 = p[:, 0]
    pmax = p.max(axis=1)
    rise = pmax - p0
    level = np.where(rise > 0, p0 + 0.7 * rise, pmax)
    # the peak: first local maximum reaching ``level`` (the last sample when there is none)
    hit = (p[:, :-1] >= level[:, None]) & (p[:, :-1] >= p[:, 1:])
    k = np.where(hit.any(axis=1), hit.argmax(axis=1), n - 1)
    kk = k[:, None]
    beyond_peak = j >= kk if floor_reach is None else (j >= kk) & (j <= kk + floor_reach)
    floor = np.where(beyond_peak, p, np.inf).min(axis=1)
    peak = p[rows, k]
    span = np.maximum(peak - np.minimum(floor, p0), 1e-9)
    found = ~(peak - floor < np.maximum(MIN_EDGE_CONTRAST * span, min_contrast))
    if half_layer > 0:
        # median of the inside (before the layer): sorted with the samples beyond it pushed to the end
        mm = np.maximum(k - int(round(2 * half_layer)) - 1, 1)
        srt = np.sort(np.where(j < mm[:, None], p, np.inf), axis=1)
        inner = 0.5 * (srt[rows, (mm - 1) // 2] + srt[rows, mm // 2])
        layer = found & (peak - inner >= 0.3 * (peak - floor))
        # Centroid of the layer's excess over the inside level (inner flank) and the floor (outer flank):
        # with box-shaped slice profiles (thick CT slices) this stays unbiased where a half-maximum does not.
        low = (j < kk) & (p <= (inner + 0.1 * (peak - inner))[:, None])
        lo = np.where(low.any(axis=1), n - low[:, ::-1].argmax(axis=1), 0)
        beyond = (j > kk) & (p <= (floor + 0.1 * (peak - floor))[:, None])
        hi = np.where(beyond.any(axis=1), beyond.argmax(axis=1) - 1, n - 1)
        base = np.where(j < kk, inner[:, None], np.where(j > kk, floor[:, None], (0.5 * (inner + floor))[:, None]))
        w = np.where((j >= lo[:, None]) & (j <= hi[:, None]), np.clip(p - base, 0.0, None), 0.0)
        wsum = w.sum(axis=1)
        layer &= (hi + 1 < n) & (wsum > 0)
        if layer.any():
            centre = (w[layer] * j).sum(axis=1) / wsum[layer]
            out[layer] = start + step * (centre + half_layer)
        found &= ~layer
    # a plateau: first outward crossing of the ``fraction`` level between the peak and the floor
    half = (floor + fraction * (peak - floor))[:, None]
    cross = (j[:, :-1] >= kk) & (p[:, :-1] >= half) & (half > p[:, 1:])
    found &= cross.any(axis=1)
    if found.any():
        jc = cross[found].argmax(axis=1)
        r = rows[found]
        h = half[found, 0]
        frac = (p[r, jc] - h) / (p[r, jc] - p[r, jc + 1])
        out[found] = start + step * jc + step * frac
    return out


def robust_quadratic(u: NDArray[np.float64], z: NDArray[np.float64]) -> NDArray[np.float64] | None:
    """Quadratic z(u) (``np.polyfit`` order) with residuals beyond 3 MAD (at least 1 mm) dropped; ``None``
    with fewer than 5 finite points."""
    ok = np.isfinite(z)
    if ok.sum() < 5:
        return None
    uu, zz = u[ok], z[ok]
    for _ in range(3):
        coef = _quadratic_fit(uu, zz)
        res = zz - np.polyval(coef, uu)
        mad = _median(np.abs(res - _median(res))) * 1.4826
        keep = np.abs(res) <= max(3.0 * mad, 1.0)
        if keep.all() or keep.sum() < 5:
            break
        uu, zz = uu[keep], zz[keep]
    return _quadratic_fit(uu, zz)


def _quadratic_fit(u: NDArray[np.float64], z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Least-squares quadratic (highest power first, as ``np.polyfit(u, z, 2)``) by the normal equations
    (3x3, well conditioned for ``u`` in [-1, 1]; an order of magnitude faster than ``np.polyfit``)."""
    v = np.vander(u, 3)
    return np.asarray(np.linalg.solve(v.T @ v, v.T @ z), dtype=np.float64)


def _median(x: NDArray[np.float64]) -> float:
    """``np.median`` of a short 1-D array without its dispatch overhead (same value)."""
    s = np.sort(x)
    m = len(s) // 2
    return float(s[m]) if len(s) % 2 else float(0.5 * (s[m - 1] + s[m]))


def image_noise_sd(image: NDArray[np.floating]) -> float:
    """Pixel noise SD of a 2-D image: robust SD (MAD) of the differences between neighbouring columns,
    divided by sqrt(2)."""
    d = np.diff(np.asarray(image, dtype=np.float64), axis=1).ravel()
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0)) if d.size else 0.0


def measure_body(image: NDArray[np.floating], spacing: tuple[float, float], g: BodyGuess,
                 column_half_mm: float = 0.5, u_max: float = U_RANGE, inner_walls: bool = False,
                 projection: bool = False, noise_sd: float | None = None,
                 wall_floor_mm: float | None = None, slice_mm: float | None = None,
                 defer_slice_fit: bool = False, u_min: float = -U_RANGE) -> HeightMeasurement:
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
    projection
        The image is a projection (radiograph): the body's rounded cross-section thins the path through
        bone towards the anterior and posterior walls (an ellipse's chord falls to half its length at 87%
        of the half depth), so a wall is where the projected bone falls to ``PROJECTION_WALL_LEVEL`` of
        its contrast over the soft tissue, not to half of it.
    noise_sd
        Pixel noise SD of ``image`` (:func:`image_noise_sd`); pass it when several bodies are measured on
        the same image so that it is estimated once.
    wall_floor_mm
        Take the level outside a wall from the first ``wall_floor_mm`` beyond its peak
        (:func:`outward_edge`'s ``floor_reach``; CT, where fat or a vessel may lie a few mm in front of
        the body); None: from the whole search range.
    slice_mm
        Slice thickness of a CT series whose slices are the image rows: the endplates found on the column
        profiles are then placed inside their slices by a least-squares fit of a box slice profile to the
        slice samples (:func:`tasks.biomarkers.slice_profile.box_profile_endplates`); None: the edge search
        alone (radiographs).
    defer_slice_fit
        With ``slice_mm``: keep the endplate columns in the result (``columns``) and leave the fit to
        :func:`tasks.biomarkers.slice_profile.slice_profile_fit`, which fits many bodies at once.
    u_min
        Most anterior profile position (fraction of the half depth, negative).

    Notes
    -----
    Heights are outer heights, cortex included, perpendicular to the local spine axis. Bodies whose walls
    or endplates cannot be found get ``None`` heights and a flag; nothing is guessed.
    """
    flags: list[str] = []
    half_len = max(g.up_mm, g.down_mm) + 2.0
    half_w = g.half_depth_mm + 12.0
    patch = _Patch(image, spacing, g, half_len, half_w)
    n0 = int(round(half_len / STEP_MM))
    m0 = int(round(half_w / STEP_MM))
    hl = CORTEX_HALF_MM / STEP_MM
    # noise of the source image (pixel level) -> contrast an edge must have in an averaged profile
    sigma = image_noise_sd(image) if noise_sd is None else float(noise_sd)
    pix = min(spacing)
    wall_min = 5.0 * sigma / math.sqrt(max(1.0, 6.0 / spacing[0]))
    plate_min = 5.0 * sigma / math.sqrt(max(1.0, 2.0 * column_half_mm / pix))
    up_stop = min(n0 + int(g.up_mm / STEP_MM), patch.shape[0] - 1) + 1
    down_stop = max(n0 - int(g.down_mm / STEP_MM), 0) - 1
    w = max(1, int(round(column_half_mm / STEP_MM)))
    wl, lv = (0.0, PROJECTION_WALL_LEVEL) if projection else (hl, 0.5)
    reach = None if wall_floor_mm is None else max(1, int(round(wall_floor_mm / STEP_MM)))
    kept: list[EndplateColumns] = []  # the endplate columns of the last attempt that found both endplates

    def attempt(bands_mm: tuple[tuple[float, float], tuple[float, float]]) -> HeightMeasurement | tuple[
            float, float, NDArray[np.float64], NDArray[np.float64], int]:
        """Walls on the two row bands (mm from the centre, cranial +), then the endplates between them."""
        # 1. walls (pooled over the bands; with ``inner_walls`` each band apart and the inner-most wall
        # counts: on a radiograph the pedicles overlap the upper posterior wall)
        rows = [[r for r in range(n0 + int(round(lo / STEP_MM)), n0 + int(round(hi / STEP_MM)) + 1)
                 if 0 <= r < patch.shape[0]] for lo, hi in bands_mm]
        if not inner_walls:
            rows = [rows[0] + rows[1]]
        ants, posts = [], []
        for rr in rows:
            if not rr:
                continue
            row = ndi.uniform_filter1d(patch.sample(np.asarray(rr, dtype=np.intp), None).mean(axis=0), size=3)
            a = outward_edge(row, m0, max(m0 - int((g.half_depth_mm + 10) / STEP_MM), 0) - 1, wl, wall_min, lv,
                             reach)
            b = outward_edge(row, m0, min(m0 + int((g.half_depth_mm + 8) / STEP_MM), len(row) - 1) + 1, wl,
                             wall_min, lv, reach)
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
        # 2. endplates on column profiles
        u = np.linspace(u_min, u_max, N_POINTS)
        cs = np.rint(c_mid + u * (post - ant) / 2).astype(np.intp)
        cols = patch.column_means(cs, w)  # (N_POINTS, rows)
        top = (outward_edges(cols, n0, up_stop, hl, plate_min) - n0) * STEP_MM
        bot = (outward_edges(cols, n0, down_stop, hl, plate_min) - n0) * STEP_MM
        ct, cb = robust_quadratic(u, top), robust_quadratic(u, bot)
        n_ok = int(np.sum(np.isfinite(top) & np.isfinite(bot)))
        if ct is None or cb is None:
            return HeightMeasurement(g.level, None, None, None, depth, None, n_ok, ["endplates_not_found"])
        if slice_mm is not None and g.axis[0] > 0.5:
            kept[:] = [EndplateColumns(patch, cs, w, u, top, bot, ct, cb, (up_stop - 1 - n0) * STEP_MM,
                                       (n0 - down_stop - 1) * STEP_MM, slice_mm * g.axis[0], depth,
                                       float((c_mid - m0) * STEP_MM), n_ok, [])]
        return depth, float((c_mid - m0) * STEP_MM), ct, cb, n_ok

    # walls first on bands 3-6 mm above and below the centre (clear of the basivertebral foramen at
    # mid-height and of the endplates of a normal body)
    res = attempt(((WALL_BAND_MM[0], WALL_BAND_MM[1]), (-WALL_BAND_MM[1], -WALL_BAND_MM[0])))
    if isinstance(res, HeightMeasurement) and "walls_not_found" in res.flags:
        # a body crushed to 10-12 mm: 3-6 mm from its centre are its endplates (or the discs), where no
        # wall stands out; its walls are read nearer the centre
        again = attempt(((CRUSHED_WALL_BAND_MM[0], CRUSHED_WALL_BAND_MM[1]),
                         (-CRUSHED_WALL_BAND_MM[1], -CRUSHED_WALL_BAND_MM[0])))
        if not isinstance(again, HeightMeasurement):
            res = again
            flags.append("walls_remeasured")
    if not isinstance(res, HeightMeasurement):
        # a body lower at its centre than 20 mm (a biconcave or crush fracture, a small body): those bands lie
        # in its endplates or in the disc filling their depression, where the body is narrower; measure
        # again with the bands at 25-50% of the measured half height, above and below the measured centre
        t0, b0 = float(np.polyval(res[2], 0.0)), float(np.polyval(res[3], 0.0))
        mid, half = 0.5 * (t0 + b0), 0.5 * (t0 - b0)
        if 0.0 < half and WALL_BAND_MM[1] > 0.6 * half:
            again = attempt(((mid + 0.25 * half, mid + 0.5 * half), (mid - 0.5 * half, mid - 0.25 * half)))
            if not isinstance(again, HeightMeasurement):
                res = again
                if "walls_remeasured" not in flags:
                    flags.append("walls_remeasured")
    if isinstance(res, HeightMeasurement):
        return res
    depth, mid_t, ct, cb, n_ok = res
    if n_ok < 0.7 * N_POINTS:
        flags.append("endplates_partly_found")
    out = heights_from_quadratics(g, ct, cb, depth, mid_t, n_ok, flags)
    if kept and out.centre_mm is not None:
        out.columns = kept[0]
        out.columns.flags = list(flags)
        if not defer_slice_fit:
            from tasks.biomarkers.slice_profile import slice_profile_fit  # it builds on this module

            out = slice_profile_fit([out])[0]
    return out


def heights_from_quadratics(g: BodyGuess, ct: NDArray[np.float64], cb: NDArray[np.float64], depth: float, mid_t: float,
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

