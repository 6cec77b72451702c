"""Vertebral fracture assessment: heights of every level on a sagittal image (CT mid-sagittal reformat or
lateral radiograph), Genant grading of the series, and the ``vertebral_fractures`` rows.

Heights are measured by :mod:`tasks.biomarkers.vertebral_heights`; :mod:`tasks.biomarkers.genant` checks
their plausibility and turns them into ratios, grades and types. The CT path (:func:`assess_ct`) measures
each labelled body (:func:`tasks.biomarkers.spine.find_vertebrae`) on a sagittal reformat through its centre
column; bodies on the same column share one reformat (:func:`sagittal_reformats`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray
from scipy import ndimage as ndi

from schemas.tables.fragility import VERTEBRAL_FRACTURES
from tasks.biomarkers.genant import LEVELS, PLAUSIBLE_HEIGHT_MM, FractureType, GenantResult, grade_vertebrae
from tasks.biomarkers.ranges import enforce_ranges
from tasks.biomarkers.slice_profile import slice_profile_fit
from tasks.biomarkers.spine import VertebraLabel
from tasks.biomarkers.vertebral_heights import (
    STEP_MM,
    U_RANGE,
    BodyGuess,
    HeightMeasurement,
    guesses_from_centres,
    image_noise_sd,
    measure_body,
    outward_edge,
    sample_patch,
)
from tasks.dicom.volume import Volume

__all__ = [
    "STEP_MM", "BodyGuess", "HeightMeasurement", "VertebraAssessment", "assess_ct", "assess_heights",
    "fracture_table", "grade_measurements", "guesses_from_centres", "locate_body_ct", "measure_body",
    "outward_edge", "sagittal_reformat", "sagittal_reformats", "sample_patch",
]


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
            body_center_mm, list(dict.fromkeys([*flags, *g.flags])),
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
                   projection: bool = False) -> list[VertebraAssessment]:
    """Measure every body of ``guesses`` on one sagittal image and grade the series (the options are
    those of :func:`tasks.biomarkers.vertebral_heights.measure_body`)."""
    ms = [measure_body(image, spacing, g, column_half_mm, u_max, inner_walls, projection) for g in guesses
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
    return sagittal_reformats(volume, [column], slab_mm)[0]


def sagittal_reformats(volume: Volume, columns: Sequence[float], slab_mm: float = 2.0) -> list[
        tuple[NDArray[np.float64], tuple[float, float]]]:
    """:func:`sagittal_reformat` at each of ``columns``, sharing the work: columns whose slabs are the same
    voxels get the same image object, and the resampling along z is planned once (and skipped when the
    slices are already on a regular grid)."""
    dz, dy, dx = volume.spacing_mm
    half = max(0, int(round(slab_mm / 2 / dx)))
    zs = np.asarray(volume.slice_z_mm, dtype=np.float64)
    plan: tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]] | None = None
    if len(zs) > 1 and dz > 0:
        grid = np.arange(zs[0], zs[-1] + dz / 2, dz)
        k = np.interp(grid, zs, np.arange(len(zs), dtype=np.float64))
        if not np.array_equal(k, np.arange(len(zs), dtype=np.float64)):  # identity on a regular grid
            k0 = np.floor(k).astype(np.intp)
            plan = (k0, np.minimum(k0 + 1, len(zs) - 1), (k - k0)[:, None])
    spacing = (float(dz or 1.0), float(dy))
    done: dict[tuple[int, int], tuple[NDArray[np.float64], tuple[float, float]]] = {}
    out = []
    for column in columns:
        j = int(round(column))
        j0, j1 = max(0, j - half), min(volume.shape[2], j + half + 1)
        if j0 >= j1:
            raise ValueError(f"series {volume.series_instance_uid}: column {column} is outside the volume")
        if (j0, j1) not in done:
            # Column by column (strided 2-D views) rather than a reduction over a short last axis: the same
            # sums in the same order, several times faster.
            sag = volume.hu[:, :, j0].astype(np.float64)
            for jj in range(j0 + 1, j1):
                sag += volume.hu[:, :, jj]
            sag /= j1 - j0
            if plan is not None:
                k0, k1, f = plan
                sag = sag[k0] * (1 - f) + sag[k1] * f
            done[(j0, j1)] = (sag, spacing)
        out.append(done[(j0, j1)])
    return out


THICK_SLICE_MM = 3.0  # slice spacing above which the labeller's z is kept (see assess_ct)
# qc flag of every level measured on slices thicker than THICK_SLICE_MM. There the heights and grades fall
# short of issue 5's targets (bench/fragility_accuracy.py, 5 mm phantoms: exact 0.87-0.90, sensitivity for
# grade >= 2 0.67-0.71, specificity 0.97): a thin disc (6-8 mm at the thoracolumbar junction) is about
# one slice, and with bone as dense as disc the endplate searches can take the neighbour's endplate. The
# extractor measures the thinnest reconstruction of each study (flows.extract_biomarkers); a study that
# only has thick slices is measured and flagged, so that a grade from it can be told apart.
THICK_SLICES_FLAG = "thick_slices"
THICK_REACH = 0.5  # thick slices: endplate searches reach this many slices beyond half-way to the neighbour
CT_BONE_HU = 150.0  # cortex and dense bone on a sagittal reformat (partial volume lowers thin cortex)
# A failed body measured again between its measured neighbours searches up to this far short of their facing
# endplates (their cortex, blurred, lies beyond them).
FACING_MARGIN_MM = 1.5
# No vertebral body T10-L5 is lower than this, even collapsed (a grade 3 fracture of a 20 mm body leaves ~12 mm):
# a lower component is a fragment, e.g. one endplate of a body whose thin walls fall below CT_BONE_HU
# (osteoporotic bone at 2-3 mm slices), and its centre is not the body's.
MIN_BODY_HEIGHT_MM = 10.0
# No vertebral body T10-L5 is deeper (anterior to posterior; adult lumbar bodies reach ~40 mm) than this: a
# deeper component above CT_BONE_HU is a body bridged to something in front of it (a contrast-filled vessel),
# whose centre and depth would mislead.
MAX_BODY_DEPTH_MM = 45.0
# No vertebral body T10-L5 is taller than this (adult lumbar bodies ~25-32 mm): a taller component is two
# bodies joined along their anterior walls by an enhanced vessel (the aorta or the cava lying against them).
MAX_BODY_HEIGHT_MM = 40.0
# A body's centre lies no further than this in depth (mm) off the line through its two nearest bodies (the
# column curves by a few mm over one level); a start further off is on a posterior element or a vessel, and
# the body is searched for on that line instead.
OFF_COLUMN_MM = 10.0
# The level outside a vertebral wall is read within this distance of the wall's peak: further out there may
# be fat or a vessel (retroperitoneal fat in front of the lumbar bodies), darker than the soft tissue next to
# the wall, and a floor taken there drags the wall outwards across that soft tissue (by up to 3 mm).
CT_WALL_FLOOR_MM = 4.0
# Slices thicker than this (mm) get their endplates placed inside the slices by a box slice-profile fit
# (slice_profile.slice_profile_fit); None: never (the edge search alone). At 5 mm it raised exact
# agreement (0.843 -> 0.882, 0.834 -> 0.874, 0.825 -> 0.868 on tuning, held-out and fresh phantoms)
# and heights within tolerance (0.56 -> 0.61-0.67). At 2-2.5 mm, with the endplate columns kept within
# CT_U_RANGE of the walls, it finds the endplate inside its slice where the edge search alone stops at the
# slice's centre (the staircase of a tilted endplate, 1-2 mm on biconcave and wedge bodies): whole CT path
# on five hospital samples, sensitivity 0.889-0.977 -> 0.964-1.0 (bench/fragility_accuracy.py, README).
CT_SLICE_PROFILE_MIN_MM: float | None = 2.0
# Endplate columns of a CT body run from -CT_U_RANGE to +CT_U_RANGE of its half depth: closer to the walls
# a column takes in the wall's blurred cortex (a plateau as bright as the endplate), and the slice-profile
# fit carried that into the posterior height of wedge bodies (2-3.5 mm low on phantoms at 0.88). Slices
# thicker than THICK_SLICE_MM keep U_RANGE (0.88): at 0.84 their held-out phantoms lost (exact 0.871 ->
# 0.860, sensitivity 0.71 -> 0.68, heights 0.664 -> 0.633).
CT_U_RANGE = 0.84


def locate_body_ct(image: NDArray[np.floating], spacing: tuple[float, float], centre: tuple[float, float],
                   reach_mm: float = 30.0, along_spine: bool = True) -> tuple[tuple[float, float], float] | None:
    """Centre (row_mm, col_mm) and half depth (mm) of the vertebral body near ``centre`` on a CT sagittal
    reformat (rows cranial-increasing, columns anterior to posterior), or None.

    Bone above ``CT_BONE_HU`` is closed (along the columns only), hole-filled (the cortical shell encloses the trabecular body,
    however low its density) and opened by a 3 mm disk; of the components at least 12 mm deep, the one
    nearest to ``centre`` along the spine (within 15 mm) is the body, and among equally near
    ones the most anterior: in the mid-sagittal plane the posterior elements always lie behind it. A
    component deeper than ``MAX_BODY_DEPTH_MM`` is not taken (a body bridged to an enhanced vessel), nor one
    lower than ``MIN_BODY_HEIGHT_MM`` (a fragment of a body's shell) or taller than ``MAX_BODY_HEIGHT_MM``
    (two bodies bridged by a vessel along their anterior walls), nor one cut by the search window. With
    ``along_spine=False`` (thick slices, where only the depth position is used: bodies there merge across
    thin discs) those last two checks are left out.
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
        if h < MIN_BODY_HEIGHT_MM or d < 12.0 or d > MAX_BODY_DEPTH_MM or miss > 15.0:
            continue
        if along_spine and (h > MAX_BODY_HEIGHT_MM or sl[0].start == 0 or sl[0].stop == win.shape[0]):
            continue  # two bodies, or cut by the search window (or the image): its centre along the spine is unknown
        key = (round(miss / 3.0), cc_mm)  # nearest along the spine first, then the most anterior
        if best is None or key < best[:2]:
            best = (key[0], key[1], ((rc_mm, cc_mm), d / 2))
    return best[2] if best is not None else None


def _line(a: tuple[str, float, float], b: tuple[str, float, float]) -> Callable[[float], float]:
    """Depth position (column mm) along the spine (row mm) on the line through bodies ``a`` and ``b``."""
    (_, r1, c1), (_, r2, c2) = a, b
    if abs(r1 - r2) < 1.0:
        return lambda r: 0.5 * (c1 + c2)
    return lambda r: c1 + (c2 - c1) * (r - r1) / (r2 - r1)


def _off_column(centres: list[tuple[str, float, float]]) -> list[tuple[int, float]]:
    """Bodies whose start lies more than ``OFF_COLUMN_MM`` in depth off the line through their two nearest
    bodies along the spine (twice that where the line is extrapolated, at an end of the column), with the
    depth position on that line; the worst first, each judged after the worse ones were moved.

    The line must hold for the next body beyond those two as well (else one of them is the stray one), and
    a start within ``MIN_BODY_HEIGHT_MM`` along the spine of another body is left as it is (two labels on
    one body, not a stray start).
    """
    work = list(centres)
    out: list[tuple[int, float]] = []
    moved: set[int] = set()
    while True:
        cands = []
        for i, (_, row, col) in enumerate(work):
            if i in moved:
                continue
            near = sorted((j for j in range(len(work)) if j != i), key=lambda j: abs(work[j][1] - row))
            if len(near) < 2 or abs(work[near[0]][1] - row) < MIN_BODY_HEIGHT_MM:
                continue
            line = _line(work[near[0]], work[near[1]])
            on_line = line(row)
            # beyond both (an end of the column) the line is extrapolated, which doubles its error
            outside = (work[near[0]][1] - row) * (work[near[1]][1] - row) > 0
            if abs(col - on_line) <= OFF_COLUMN_MM * (2.0 if outside else 1.0):
                continue
            if len(near) > 2 and abs(work[near[2]][2] - line(work[near[2]][1])) > OFF_COLUMN_MM:
                continue
            cands.append((abs(col - on_line), i, on_line))
        if not cands:
            return out
        _, i, col = max(cands)
        out.append((i, col))
        moved.add(i)
        work[i] = (work[i][0], work[i][1], col)


def _usable(m: HeightMeasurement) -> bool:
    """A measurement whose centre can seed the next one: found, with every height anatomically plausible
    (:data:`tasks.biomarkers.genant.PLAUSIBLE_HEIGHT_MM`). Heights of a few mm mean both endplate searches
    started beside one endplate (a start far from the body centre), and that centre must not be kept."""
    if m.centre_mm is None:
        return False
    lo, hi = PLAUSIBLE_HEIGHT_MM
    return all(h is not None and lo <= h <= hi for h in (m.anterior_mm, m.middle_mm, m.posterior_mm))


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
    only a start: each body is located again on its reformat (:func:`locate_body_ct`; a start more than
    ``OFF_COLUMN_MM`` in depth off the line through its two nearest bodies is moved onto it first,
    :func:`_off_column`) and measured twice,
    the second time from the centres of the first measurement (a body that failed restarts half-way
    between its measured neighbours, or, without two, from the labeller's centre when its first start was
    the located one, and gets a third try). With slices thicker than ``THICK_SLICE_MM``
    the located centre keeps the labeller's z (marrow barely clears ``CT_BONE_HU`` there and the located
    centre drifts by 5-13 mm), and the endplate searches reach ``THICK_REACH`` slices beyond half-way to
    the neighbours: linear interpolation spreads an endplate over a slice on either side, and a search that
    stops at half-way (with the labeller's centre a few mm off) sees it rise but not fall, so the body got
    no grade. With slices thicker than ``CT_SLICE_PROFILE_MIN_MM`` the endplates found by the edge search
    are then placed inside their slices by a box slice-profile fit of all bodies at once
    (:func:`tasks.biomarkers.slice_profile.slice_profile_fit`; heights within 1.5 mm or 7% for about
    two thirds of the bodies at 5 mm; see ``bench/fragility_accuracy.py``).

    The walls are read against the tissue within ``CT_WALL_FLOOR_MM`` of them (fat further in front of a
    lumbar body dragged the anterior wall up to 3 mm outwards). A measurement with a height outside
    ``PLAUSIBLE_HEIGHT_MM`` counts as failed for the next start (its centre is replaced by the neighbours'
    mid-point where it has two), so a start beside one endplate is not carried over.

    The reformats are shared: bodies whose slabs are the same voxel columns use one image, and its noise
    is estimated once (:func:`sagittal_reformats`).
    """
    if not vertebrae:
        return []
    z0 = float(volume.slice_z_mm[0])
    _, dy, _ = volume.spacing_mm
    by_level = {v.level: v for v in vertebrae}
    # one reformat per distinct slab (most columns share one), its noise estimated once
    reformats = sagittal_reformats(volume, [v.centre_voxel[2] for v in vertebrae])
    images = {v.level: r for v, r in zip(vertebrae, reformats, strict=True)}
    noise: dict[int, float] = {}
    for img, _ in reformats:
        if id(img) not in noise:
            noise[id(img)] = image_noise_sd(img)
    centres: list[tuple[str, float, float]] = []
    half_depths: dict[str, float] = {}
    located: set[str] = set()
    thick = volume.spacing_mm[0] > THICK_SLICE_MM
    labelled = {v.level: (volume.z_mm(v.centre_voxel[0]) - z0, v.centre_voxel[1] * dy) for v in vertebrae}
    found_at = {lv: locate_body_ct(images[lv][0], images[lv][1], c, along_spine=not thick)
                for lv, c in labelled.items()}
    # one body is not two levels: where two labels found the same body (the same centre), it is the body of
    # the label nearer to it, and the other keeps its label's centre
    for a, b in combinations(list(found_at), 2):
        fa, fb = found_at[a], found_at[b]
        if fa is not None and fb is not None and np.hypot(*np.subtract(fa[0], fb[0])) < 1.0:
            far = max((a, b), key=lambda lv: abs(labelled[lv][0] - fa[0][0]))
            found_at[far] = None
    for v in vertebrae:
        c = labelled[v.level]
        found = found_at[v.level]
        if found is not None:
            if thick:
                # thick slices: marrow barely clears the bone threshold and the located centre drifts
                # along the spine; keep the labeller's z and take only the depth position and size
                found = ((c[0], found[0][1]), found[1])
            c, half_depths[v.level] = found
            located.add(v.level)
        centres.append((v.level, c[0], c[1]))
    for i, col in _off_column(centres):  # a start on a posterior element (the labeller's top body, most often)
        lv = centres[i][0]
        centres[i] = (lv, labelled[lv][0], col)
        located.discard(lv)
        half_depths.pop(lv, None)
    # thick slices: an endplate is a bump one slice wide on each side of its slice (linear interpolation), so
    # the searches reach THICK_REACH slices beyond half-way to the neighbour to see the bump fall into the disc
    thick_reach = THICK_REACH * volume.spacing_mm[0] if thick else 0.0
    dz = float(volume.spacing_mm[0])
    slice_mm = dz if CT_SLICE_PROFILE_MIN_MM is not None and dz > CT_SLICE_PROFILE_MIN_MM else None
    ms: dict[str, HeightMeasurement] = {}
    u_range = U_RANGE if thick else CT_U_RANGE
    reach: dict[str, float] = {}  # a failed body's search reach, up to its measured neighbours' endplates
    for step in range(3):
        ordered = sorted(centres, key=lambda c: -c[1])
        for g in guesses_from_centres(ordered, half_depths):
            if thick_reach:
                g = replace(g, up_mm=g.up_mm + thick_reach, down_mm=g.down_mm + thick_reach)
            if g.level in reach:
                g = replace(g, up_mm=max(g.up_mm, reach[g.level]), down_mm=max(g.down_mm, reach[g.level]))
            if step == 0 or (g.level in LEVELS and (step == 1 or not _usable(ms[g.level]))):
                img, spacing = images[g.level]
                # the slice samples are kept from step 1 on (every graded level is measured again there)
                ms[g.level] = measure_body(img, spacing, g, noise_sd=noise[id(img)], wall_floor_mm=CT_WALL_FLOOR_MM,
                                           slice_mm=slice_mm if step else None, defer_slice_fit=True,
                                           u_max=u_range, u_min=-u_range)
        # next start: the measured centre; for a body that failed or came out implausibly low (both endplate
        # searches started beside one endplate), half-way between its measured neighbours' facing endplates
        # (not their centres: a collapsed neighbour's centre lies closer), searching up to those endplates
        ordered = sorted(centres, key=lambda c: -c[1])
        new = []
        for i, (lv, r_mm, c_mm) in enumerate(ordered):
            m = ms[lv]
            if _usable(m):
                assert m.centre_mm is not None
                new.append((lv, *m.centre_mm))
                continue
            nb = [ms[ordered[j][0]] if _usable(ms[ordered[j][0]]) else None
                  for j in (i - 1, i + 1) if 0 <= j < len(ordered)]
            up, down = (nb[0], nb[1]) if len(nb) == 2 else (None, None)
            if up is not None and down is not None:
                assert up.centre_mm is not None and down.centre_mm is not None
                assert up.middle_mm is not None and down.middle_mm is not None
                above = up.centre_mm[0] - up.middle_mm / 2.0  # the upper neighbour's lower endplate
                below = down.centre_mm[0] + down.middle_mm / 2.0
                new.append((lv, 0.5 * (above + below), 0.5 * (up.centre_mm[1] + down.centre_mm[1])))
                if above - below > 2.0 * FACING_MARGIN_MM:
                    reach[lv] = 0.5 * (above - below) - FACING_MARGIN_MM
            elif step == 0 and lv in located and not thick:  # (thick: the located start kept the labeller's z)
                # the body search's start failed (on 2 mm slices with a soft kernel an open shell left a
                # component of one endplate and a wall, 12 mm below a normal L2's centre): the labeller's own
                located.discard(lv)
                new.append((lv, *labelled[lv]))
            elif m.centre_mm is not None:  # an end of the column: the implausible body's centre is all there is
                new.append((lv, *m.centre_mm))
            else:
                new.append((lv, r_mm, c_mm))
        centres = new
        half_depths.update({lv: m.depth_mm / 2 for lv, m in ms.items() if m.depth_mm and _usable(m)})
    measured = [ms[v.level] for v in sorted(vertebrae, key=lambda v: -v.z_mm) if v.level in LEVELS]
    measured = slice_profile_fit(measured)  # all bodies' endplates at once
    for m in measured:
        if thick:  # measured, but less accurately than on thin slices: see THICK_SLICES_FLAG
            m.flags.append(THICK_SLICES_FLAG)
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
    return VERTEBRAL_FRACTURES.conform(pa.Table.from_pylist(enforce_ranges(VERTEBRAL_FRACTURES, rows)))
