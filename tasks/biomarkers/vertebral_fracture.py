"""Vertebral body heights on a sagittal image (CT mid-sagittal reformat or lateral radiograph) and Genant
grading of every level.

The measurement works on a local patch resampled around one vertebral body at 0.25 mm, with rows along
the spine axis (cranial up) and columns from anterior to posterior:

1. the anterior and posterior walls are found on row profiles a few mm above and below the centre (the
   mid-body row is avoided: the basivertebral foramen interrupts the posterior wall there);
2. on column profiles at 21 positions between 12% and 88% of the body depth, the upper and lower endplates
   are the outward half-maximum crossings between the endplate peak (cortex) and the disc beyond it,
   searched only up to half-way to the neighbouring body;
3. each endplate is fitted by a quadratic in the depth coordinate ``u`` (-1 anterior, +1 posterior; outliers
   dropped), and Ha, Hm, Hp are the fitted heights at u = -1, 0, +1 (outer surfaces, six-point morphometry
   without the rounded corners);
4. :mod:`tasks.biomarkers.genant` turns the heights of a series into ratios, grades and types.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray
from scipy import ndimage as ndi

from schemas.tables.fragility import VERTEBRAL_FRACTURES
from tasks.biomarkers.genant import LEVELS, FractureType, GenantResult, VertebralHeights, grade_vertebrae
from tasks.biomarkers.spine import VertebraLabel
from tasks.dicom.volume import Volume

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
                 ) -> HeightMeasurement:
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
    h = np.polyval(ct, [-1.0, 0.0, 1.0]) - np.polyval(cb, [-1.0, 0.0, 1.0])
    if np.any(h <= 2.0):
        return HeightMeasurement(g.level, None, None, None, depth, None, n_ok, flags + ["implausible_heights"])
    # centre of the measured body in image mm (mid-height at mid-depth)
    mid_s = 0.5 * float(np.polyval(ct, 0.0) + np.polyval(cb, 0.0))
    mid_t = float((c_mid - m0) * STEP_MM)
    centre = (g.centre[0] + mid_s * g.axis[0] + mid_t * g.posterior[0],
              g.centre[1] + mid_s * g.axis[1] + mid_t * g.posterior[1])
    return HeightMeasurement(g.level, float(h[0]), float(h[1]), float(h[2]), depth, centre, n_ok, flags)


@dataclass
class VertebraAssessment:
    """Heights, ratios, Genant grade and type of one level, with the measurement flags.

    The attribute names are those of ``osteolake extract --json`` and of the ``vertebral_fractures`` table.
    """

    level: str
    height_anterior_mm: float | None
    height_middle_mm: float | None
    height_posterior_mm: float | None
    ratio_anterior_posterior: float | None
    ratio_middle_posterior: float | None
    ratio_posterior_neighbours: float | None
    height_loss: float | None
    genant_grade: int | None
    deformity: FractureType | None
    body_center_mm: float | None = None
    flags: list[str] = field(default_factory=list)

    @staticmethod
    def from_result(g: GenantResult, body_center_mm: float | None, flags: Sequence[str]) -> VertebraAssessment:
        return VertebraAssessment(
            g.level, g.height_anterior_mm, g.height_middle_mm, g.height_posterior_mm, g.ratio_anterior_posterior,
            g.ratio_middle_posterior, g.ratio_posterior_neighbours, g.height_loss, g.genant_grade, g.deformity,
            body_center_mm, list(dict.fromkeys(flags)),
        )

    def to_json(self) -> dict[str, object]:
        """The per-vertebra fields added to ``osteolake extract --json``."""
        return {
            "height_anterior_mm": _r(self.height_anterior_mm),
            "height_middle_mm": _r(self.height_middle_mm),
            "height_posterior_mm": _r(self.height_posterior_mm),
            "genant_grade": self.genant_grade,
            "deformity": self.deformity.value if self.deformity is not None else None,
        }


def _r(x: float | None, nd: int = 2) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def grade_measurements(ms: Sequence[HeightMeasurement]) -> list[GenantResult]:
    """Genant results for measured bodies, in the order of ``ms`` (levels outside T10-L5 are skipped)."""
    known = [m for m in ms if m.level in LEVELS]
    res = {r.level: r for r in grade_vertebrae([m.heights() for m in known])}
    return [res[m.level] for m in known]


def assess_heights(image: NDArray[np.floating], spacing: tuple[float, float], guesses: Sequence[BodyGuess],
                   column_half_mm: float = 0.5, u_max: float = U_RANGE, inner_walls: bool = False,
                   ) -> list[VertebraAssessment]:
    """Measure every body of ``guesses`` on one sagittal image and grade the series."""
    ms = [measure_body(image, spacing, g, column_half_mm, u_max, inner_walls) for g in guesses
          if g.level in LEVELS]
    grades = grade_measurements(ms)
    out = []
    for m, gr in zip(ms, grades, strict=True):
        out.append(VertebraAssessment.from_result(gr, None, m.flags))
    return out


def sagittal_reformat(volume: Volume, column: float, slab_mm: float = 2.0) -> tuple[NDArray[np.float64],
                                                                                      tuple[float, float]]:
    """Mid-sagittal reformat of ``volume`` at voxel column ``column`` (right-left index).

    Returns the image (rows: patient z from the lowest slice upwards on a regular grid of the median slice
    spacing; columns: anterior to posterior) and its (row, column) spacing in mm. The slab of
    ``slab_mm`` around the column is averaged.
    """
    dz, dy, dx = volume.spacing_mm
    half = max(0, int(round(slab_mm / 2 / dx)))
    j = int(round(column))
    j0, j1 = max(0, j - half), min(volume.shape[2], j + half + 1)
    if j0 >= j1:
        raise ValueError(f"series {volume.series_instance_uid}: column {column} is outside the volume")
    sag = volume.hu[:, :, j0:j1].mean(axis=2, dtype=np.float64)
    zs = np.asarray(volume.slice_z_mm, dtype=np.float64)
    if len(zs) > 1 and dz > 0:
        grid = np.arange(zs[0], zs[-1] + dz / 2, dz)
        k = np.interp(grid, zs, np.arange(len(zs), dtype=np.float64))
        k0 = np.floor(k).astype(int)
        k1 = np.minimum(k0 + 1, len(zs) - 1)
        f = (k - k0)[:, None]
        sag = sag[k0] * (1 - f) + sag[k1] * f
    return sag, (float(dz or 1.0), float(dy))


CT_BONE_HU = 150.0  # cortex and dense bone on a sagittal reformat (partial volume lowers thin cortex)


def locate_body_ct(image: NDArray[np.floating], spacing: tuple[float, float], centre: tuple[float, float],
                   reach_mm: float = 30.0) -> tuple[tuple[float, float], float] | None:
    """Centre (row_mm, col_mm) and half depth (mm) of the vertebral body near ``centre`` on a CT sagittal
    reformat (rows cranial-increasing, columns anterior to posterior), or None.

    Bone above ``CT_BONE_HU`` is closed (along the columns only), hole-filled (the cortical shell encloses the trabecular body,
    however low its density) and opened by a 3 mm disk; of the components at least 12 mm deep and 6 mm
    high, the one nearest to ``centre`` along the spine (within 15 mm) is the body, and among equally near
    ones the most anterior: in the mid-sagittal plane the posterior elements always lie behind it.
    """
    sr, sc = spacing
    r0 = int(max(0, (centre[0] - reach_mm) / sr))
    r1 = int(min(image.shape[0], (centre[0] + reach_mm) / sr + 1))
    c0 = int(max(0, (centre[1] - reach_mm - 10) / sc))
    c1 = int(min(image.shape[1], (centre[1] + reach_mm) / sc + 1))
    if r1 - r0 < 3 or c1 - c0 < 3:
        return None
    win = np.asarray(image[r0:r1, c0:c1], dtype=np.float64)
    m = win > CT_BONE_HU
    # close across the columns only (gaps up to ~4 mm in a blurred cortex): closing along the spine would
    # bridge thin discs
    m = ndi.binary_closing(m, structure=np.ones((1, 2 * max(1, int(round(2.0 / sc))) + 1), bool), border_value=0)
    m = ndi.binary_fill_holes(m)
    rr = max(1, int(round(1.5 / sr)))
    rc = max(1, int(round(1.5 / sc)))
    yy, xx = np.mgrid[-rr : rr + 1, -rc : rc + 1]
    disk = (yy * sr) ** 2 + (xx * sc) ** 2 <= 1.5**2 + 1e-6
    m = ndi.binary_opening(m, structure=disk)
    lab, n = ndi.label(m)
    best: tuple[float, float, tuple[tuple[float, float], float]] | None = None
    for sl in ndi.find_objects(lab):
        if sl is None:
            continue
        h = (sl[0].stop - sl[0].start) * sr
        d = (sl[1].stop - sl[1].start) * sc
        top, bottom = (r0 + sl[0].stop - 1) * sr, (r0 + sl[0].start) * sr
        rc_mm = 0.5 * (top + bottom)
        cc_mm = (c0 + (sl[1].start + sl[1].stop - 1) / 2) * sc
        miss = max(bottom - centre[0], centre[0] - top, 0.0)  # distance along the spine from the guess
        if h < 6.0 or d < 12.0 or miss > 15.0:
            continue
        key = (round(miss / 3.0), cc_mm)  # nearest along the spine first, then the most anterior
        if best is None or key < best[:2]:
            best = (key[0], key[1], ((rc_mm, cc_mm), d / 2))
    return best[2] if best is not None else None


def assess_ct(volume: Volume, vertebrae: Sequence[VertebraLabel]) -> list[VertebraAssessment]:
    """Heights, ratios and Genant grades of the levels T10-L5 found in a CT volume.

    Parameters
    ----------
    volume
        Canonical HU volume (:class:`tasks.dicom.volume.Volume`).
    vertebrae
        Labelled bodies from :func:`tasks.biomarkers.spine.find_vertebrae` (all of them: levels above T10
        still bound the search of their neighbours).

    Returns
    -------
    list of VertebraAssessment
        One per level T10-L5 present, cranial first; ``body_center_mm`` is the patient z of the centre.

    Notes
    -----
    Each body is measured on a 2 mm sagittal slab through its own centre column, so a scoliotic column is
    followed body by body; rotation about the spine axis is not corrected. The labeller's centres are
    only a start: each body is located again on its reformat (:func:`locate_body_ct`) and measured twice,
    the second time from the centres of the first measurement (a body that failed restarts half-way
    between its measured neighbours, and gets a third try). With slices thicker than ~3 mm the
    endplates are located to within about a third of the slice spacing.
    """
    if not vertebrae:
        return []
    z0 = float(volume.slice_z_mm[0])
    _, dy, _ = volume.spacing_mm
    by_level = {v.level: v for v in vertebrae}
    images = {v.level: sagittal_reformat(volume, v.centre_voxel[2]) for v in vertebrae}
    centres: list[tuple[str, float, float]] = []
    half_depths: dict[str, float] = {}
    located: set[str] = set()
    for v in vertebrae:
        kc, ic, _ = v.centre_voxel
        c = (volume.z_mm(kc) - z0, ic * dy)
        img, spacing = images[v.level]
        found = locate_body_ct(img, spacing, c)
        if found is not None:
            c, half_depths[v.level] = found
            located.add(v.level)
        centres.append((v.level, c[0], c[1]))
    ms: dict[str, HeightMeasurement] = {}
    for step in range(3):
        ordered = sorted(centres, key=lambda c: -c[1])
        for g in guesses_from_centres(ordered, half_depths):
            if step == 0 or (g.level in LEVELS and (step == 1 or ms[g.level].centre_mm is None)):
                img, spacing = images[g.level]
                ms[g.level] = measure_body(img, spacing, g)
        # next start: the measured centre; for a body that failed, half-way between its measured neighbours
        ordered = sorted(centres, key=lambda c: -c[1])
        new = []
        for i, (lv, r_mm, c_mm) in enumerate(ordered):
            m = ms[lv]
            if m.centre_mm is not None:
                new.append((lv, *m.centre_mm))
                continue
            nb = [ms[ordered[j][0]].centre_mm for j in (i - 1, i + 1) if 0 <= j < len(ordered)]
            if len(nb) == 2 and nb[0] is not None and nb[1] is not None:
                new.append((lv, 0.5 * (nb[0][0] + nb[1][0]), 0.5 * (nb[0][1] + nb[1][1])))
            else:
                new.append((lv, r_mm, c_mm))
        centres = new
        half_depths.update({lv: m.depth_mm / 2 for lv, m in ms.items() if m.depth_mm and m.centre_mm})
    measured = [ms[v.level] for v in sorted(vertebrae, key=lambda v: -v.z_mm) if v.level in LEVELS]
    for m in measured:
        if "partial_body" in by_level[m.level].flags:
            m.flags.append("partial_body")
        if m.level not in located:
            m.flags.append("body_not_located")
    grades = grade_measurements(measured)
    out: list[VertebraAssessment] = []
    for m, gr in zip(measured, grades, strict=True):
        z = z0 + m.centre_mm[0] if m.centre_mm else by_level[m.level].z_mm
        out.append(VertebraAssessment.from_result(gr, float(z), m.flags))
    return out


def _half_depth(v: VertebraLabel, dy: float) -> float:
    if v.body_mask is not None and v.body_mask.any():
        rows = np.nonzero(v.body_mask.any(axis=(0, 2)))[0]
        return float(np.clip((rows.max() - rows.min() + 1) * dy / 2.0, 10.0, 30.0))
    return float(np.clip(1.3 * v.radius_mm, 12.0, 25.0)) if v.radius_mm else 20.0


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


def fracture_table(series_instance_uid: str, study_instance_uid: str | None,
                   assessments: Sequence[VertebraAssessment], source: str, extractor_version: str) -> pa.Table:
    """``vertebral_fractures`` rows (one per level) of one series, conformed to the declared schema.

    Parameters
    ----------
    source
        ``ct``, ``radiograph`` or ``dxa``.
    """
    sdi = sum(a.genant_grade or 0 for a in assessments)
    rows = []
    for a in assessments:
        rows.append({
            "series_instance_uid": series_instance_uid, "level": a.level,
            "height_anterior_mm": a.height_anterior_mm, "height_middle_mm": a.height_middle_mm,
            "height_posterior_mm": a.height_posterior_mm, "ratio_anterior_posterior": a.ratio_anterior_posterior,
            "ratio_middle_posterior": a.ratio_middle_posterior,
            "ratio_posterior_neighbours": a.ratio_posterior_neighbours, "height_loss": a.height_loss,
            "genant_grade": a.genant_grade, "fracture_type": a.deformity.value if a.deformity else None,
            "is_fracture": None if a.genant_grade is None else a.genant_grade >= 1,
            "spinal_deformity_index": sdi, "body_center_mm": a.body_center_mm,
            "qc_flags": ",".join(a.flags), "study_instance_uid": study_instance_uid, "source": source,
            "extractor_version": extractor_version,
        })
    if not rows:
        return VERTEBRAL_FRACTURES.empty()
    return VERTEBRAL_FRACTURES.conform(pa.Table.from_pylist(rows))
