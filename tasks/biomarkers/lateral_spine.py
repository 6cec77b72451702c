"""Vertebral bodies on a lateral lumbar spine radiograph: find them, count the levels, measure and grade.

The image is used as stored (brighter = more attenuating; any monotone tone curve), with rows head -> feet
and columns anterior -> posterior. Sizes are in mm from the pixel spacing, so the expected anatomy
(endplates ~1 mm thick, bodies 8-45 mm high, discs 2-18 mm) constrains the search:

1. column band of the bodies: endplates are long horizontal bright lines (a row-wise ridge filter
   averaged over 20 mm of columns is strongest there; posterior elements and bowel gas give shorter or
   curved edges);
2. on the band's profile (median over the band's central columns) the endplates are narrow bright peaks
   (white top-hat); a body is a pair of endplate peaks 8-45 mm apart whose inside is at least as bright as
   the discs beside it and holds no further strong endplate; discs are the darker gaps (2-18 mm) between
   consecutive bodies; the best chain of bodies is found by dynamic programming. A gap may hold one
   unseen body (the tilted endplates of a wedge give no narrow peak) when it fits one body with its two
   discs and reads disc - body - disc; a gap bright up to one end is the rim of a biconcave body or the
   raised side of a tilted endplate, not a body;
3. the sacrum is the anchor: a last endplate (the S1 promontory) below the lowest disc (or below one unseen
   body, an L5 with tilted endplates) with bone beyond it and no further disc. When it is found the body
   above is L5 and the levels are counted upwards; when it is not (sacrum outside the image, unclear
   anatomy) the lowest body is still called L5 but every level carries the flag ``levels_uncertain`` and
   the series a low ``level_confidence``.

Each body is then measured by :func:`tasks.biomarkers.vertebral_heights.measure_body` (walls, body
centre), its endplates are measured again for a projection
(:func:`tasks.biomarkers.lateral_heights.remeasure_endplates`) and the series is
graded by :mod:`tasks.biomarkers.genant`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from tasks.biomarkers.genant import LEVELS
from tasks.biomarkers.lateral_heights import MIN_DISC_MM, remeasure_endplates
from tasks.biomarkers.vertebral_fracture import VertebraAssessment, grade_measurements, guesses_from_centres
from tasks.biomarkers.vertebral_heights import image_noise_sd, measure_body

BODY_MM = (8.0, 45.0)  # vertebral body heights a chain may contain (grade-3 crush to a large L3)
DISC_MM = (2.0, 25.0)  # disc spaces between consecutive bodies (a biconcave endplate deepens one)
MIN_BODY_FRACTION = 0.45  # the lowest a body gets: a grade-3 fracture keeps >= ~45% of its height
SACRUM_BONE_MM = 20.0  # bone below the S1 endplate without a further disc


@dataclass
class LateralSpine:
    """Bodies found on a lateral radiograph, cranial first: (level, row_mm, col_mm) and half depths."""

    centres: list[tuple[str, float, float]] = field(default_factory=list)
    half_depth_mm: dict[str, float] = field(default_factory=dict)
    inferred: set[str] = field(default_factory=set)
    sacrum_row_mm: float | None = None
    level_confidence: float = 0.0
    flags: list[str] = field(default_factory=list)


def _med(p: NDArray[np.float64], a: int, b: int) -> float:
    a, b = max(a, 0), min(b, len(p))
    return float(np.median(p[a:b])) if b > a else float("nan")


def _band(img: NDArray[np.float64], px: float) -> tuple[int, int] | None:
    """Columns of the vertebral bodies: where long horizontal bright lines (endplates) concentrate."""
    ridge = -ndi.gaussian_filter(img, (max(0.8 / px, 0.5), max(1.0 / px, 0.5)), order=(2, 0))
    line = ndi.uniform_filter1d(np.clip(ridge, 0, None), max(3, int(round(20 / px))), axis=1)
    score = (line**2).sum(axis=0)
    if not np.any(score > 0):
        return None
    c = int(np.argmax(score))
    lab, _ = ndi.label(score > 0.5 * score.max())
    cols = np.nonzero(lab == lab[c])[0]
    return int(cols.min()), int(cols.max()) + 1


def _one_missing(gap_mm: float, body_mm: float) -> bool:
    """Whether a gap between two bodies can hold exactly one unseen body.

    ``body_mm`` is the taller of the two neighbours' heights (a fractured neighbour is lower than the
    body it stands for). The unseen body is at least a grade-3 crush of it (``MIN_BODY_FRACTION``) with a
    disc of at least ``MIN_DISC_MM`` on either side, at most 1.3 times it with the widest discs.
    """
    return MIN_BODY_FRACTION * body_mm + 2 * MIN_DISC_MM <= gap_mm <= 1.3 * body_mm + 2 * DISC_MM[1]


def _walls(im: NDArray[np.float64], px: float, top: float, bottom: float, col: float,
           ) -> tuple[float, float] | None:
    """Centre column and half depth (pixels, mm) of the body between rows ``top`` and ``bottom``, or None.

    The anterior and posterior walls are the outward edges of the mean row profile over the lower middle
    of the body (10-35% of its height below the centre; the pedicles overlap the posterior wall in the
    upper half), within 35 mm of ``col``.
    """
    h = bottom - top
    r0, r1 = int(round(top + 0.6 * h)), int(round(top + 0.85 * h)) + 1
    prof = ndi.uniform_filter1d(im[max(r0, 0) : max(r1, r0 + 1)].mean(axis=0), 3)
    reach = int(round(35.0 / px))
    c = int(round(col))
    grad = np.gradient(ndi.gaussian_filter1d(prof, max(0.7 / px, 0.5)))
    # anterior wall: the strongest fall going anteriorly (soft tissue in front of the body is clean)
    a_lo = max(c - reach, 1)
    if a_lo >= c - 2:
        return None
    ant = a_lo + int(np.argmax(grad[a_lo:c]))
    fall = float(grad[ant])
    # posterior wall: the first fall going posteriorly at least 35% as strong (the canal behind the wall;
    # pedicles and articular processes further back give later falls)
    post = None
    for j in range(c + 1, min(c + reach, len(grad) - 1)):
        if -grad[j] >= 0.35 * fall and -grad[j] >= -grad[j - 1] and -grad[j] >= -grad[j + 1]:
            post = j
            break
    if fall <= 0 or post is None or not 16.0 <= (post - ant) * px <= 60.0:
        return None
    return 0.5 * (ant + post), 0.5 * (post - ant) * px


def find_bodies_lateral(img: NDArray[np.floating], pixel_mm: float) -> LateralSpine:
    """Vertebral body centres and levels on a lateral spine image (rows head -> feet, columns A -> P).

    Parameters
    ----------
    img
        The radiograph, brighter = more attenuating (MONOCHROME1 already inverted).
    pixel_mm
        Pixel size in the patient plane (mm).

    Returns
    -------
    LateralSpine
        Centres cranial first (at most T10-L5 are named), the sacrum row if found, a level confidence
        (0-1) and flags (``no_spine_found``, ``sacrum_not_found``, ``levels_uncertain``).

    Notes
    -----
    The count assumes five lumbar vertebrae above the sacrum; a transitional vertebra (lumbarised S1 or
    sacralised L5) shifts every label and is not detected.
    """
    px = float(pixel_mm)
    im = np.asarray(img, dtype=np.float64)
    lo, hi = np.percentile(im, [1.0, 99.5])
    im = (im - lo) / max(hi - lo, 1e-9)
    out = LateralSpine()
    band = _band(im, px)
    if band is None or (band[1] - band[0]) * px < 8.0:
        out.flags.append("no_spine_found")
        return out
    c0, c1 = band
    mid = 0.5 * (c0 + c1)
    q0, q1 = int(mid - 0.3 * (c1 - c0)), int(mid + 0.3 * (c1 - c0)) + 1
    prof = np.median(im[:, q0:q1], axis=1)
    prof = ndi.gaussian_filter1d(prof, max(0.3 / px, 0.3))
    n = len(prof)
    # endplates: narrow bright peaks (white top-hat over 5 mm)
    size = max(3, int(round(5.0 / px)) | 1)
    top_hat = prof - ndi.grey_opening(prof, size=size)
    mad = float(np.median(np.abs(np.diff(prof)))) * 1.4826 + 1e-9
    peaks = [r for r in range(1, n - 1) if top_hat[r] >= top_hat[r - 1] and top_hat[r] > top_hat[r + 1]
             and top_hat[r] > 4.0 * mad]
    if len(peaks) < 3:
        out.flags.append("no_spine_found")
        return out
    ref = float(np.percentile([top_hat[r] for r in peaks], 80))
    strength = {r: min(float(top_hat[r]) / ref, 1.5) for r in peaks}
    peaks = [r for r in peaks if strength[r] >= 0.12]
    g, w = max(1, int(round(1.5 / px))), max(2, int(round(4.0 / px)))

    def inside(a: int, b: int) -> float:
        return _med(prof, a + g, b - g + 1)

    def outside_above(a: int) -> float:
        return _med(prof, a - g - w, a - g)

    def outside_below(b: int) -> float:
        return _med(prof, b + g + 1, b + g + 1 + w)

    # (a peak at the image's first or last rows has no outside: its contrast is unknown, NaN, and must
    # neither poison the contrast scale nor the chain's scores)
    steps = [abs(inside(a, b) - outside_above(a)) for a, b in zip(peaks[:-1], peaks[1:], strict=True)
             if BODY_MM[0] <= (b - a) * px <= BODY_MM[1]]
    steps = [s for s in steps if np.isfinite(s)]
    cs = max(float(np.percentile(steps, 75)) if steps else 0.0, 4.0 * mad)

    def contrast(x: float) -> float:
        return float(np.clip(x / cs, -1.0, 1.0)) if np.isfinite(x) else 0.0

    def body_score(a: int, b: int) -> float:
        body = inside(a, b)
        s = strength[a] + strength[b]
        s += contrast(body - outside_above(a))
        s += contrast(body - outside_below(b))
        inner = [strength[r] for r in peaks if a + 2 * g < r < b - 2 * g]
        s -= 2.0 * max(inner, default=0.0)
        return s - 1.2  # a fixed cost: weak pairs join only where they fit the chain

    def gap_brightness(a0: int, b0: int, a: int, b: int) -> float:
        """Fraction of the gap between two bodies that is as bright as bone (a disc is darker)."""
        seg = prof[b0 + g + 1 : a - g]
        if len(seg) == 0:
            return 0.0
        level = 0.5 * (inside(a0, b0) + inside(a, b)) - 0.5 * cs
        return float(np.mean(seg >= level))

    def holds_body(b0: int, a: int, bone: float) -> bool:
        """Whether the gap between endplates ``b0`` and ``a`` reads disc - body - disc: one bright run (at
        least the upper quartile - cs / 2, endplate lines under 2 mm left out) with a darker disc before
        and after it, and that run as bright as ``bone`` (the dimmer neighbour's inside - cs).

        A gap that is bright up to an end is no unseen body: it is the rim of a biconcave body above its
        depressed endplate or the raised part of a wedge's tilted endplate next to the disc, or a gap
        running into a seen body. Two bright runs are two bodies. (The gap's bright part, not the
        neighbours' bone, is the reference: low in the image the pelvis adds to every row, so a disc
        there can be brighter than a body higher up.)
        """
        seg = prof[b0 + g + 1 : a - g]
        if len(seg) < 3:
            return False
        bright = seg >= float(np.percentile(seg, 75)) - 0.5 * cs
        bright = ndi.binary_opening(bright, np.ones(max(2, int(round(2.0 / px))) + 1, dtype=bool))
        return (not bright[0] and not bright[-1] and ndi.label(bright)[1] == 1
                and float(np.median(seg[bright])) >= bone)

    # dynamic programming over (top, bottom) endplate pairs, bodies ordered head -> feet
    pairs = [(a, b) for i, a in enumerate(peaks) for b in peaks[i + 1 :]
             if BODY_MM[0] <= (b - a) * px <= BODY_MM[1]]
    # best[(a, b)] = (score of the best chain ending with body (a, b), previous body, whether an unseen
    # body lies between the previous one and this one)
    best: dict[tuple[int, int], tuple[float, tuple[int, int] | None, bool]] = {}
    for a, b in sorted(pairs, key=lambda ab: ab[0]):
        sc = body_score(a, b)
        prev = None
        val = sc
        skipped = False
        for (a0, b0), (v0, _, _) in best.items():
            gap = (a - b0) * px
            if gap < DISC_MM[0]:
                continue
            if _one_missing(gap, max(b - a, b0 - a0) * px) and holds_body(
                    b0, a, min(inside(a0, b0), inside(a, b)) - cs):
                cand, sk = v0 + sc - 0.8, True  # a body between them was not seen (e.g. tilted endplates)
            elif gap <= DISC_MM[1]:
                bright = gap_brightness(a0, b0, a, b)
                # a disc; one too narrow to hold a body may still look bright in the band's median (the
                # depressed endplate of a biconcave body, the tilted one of a wedge): a small cost only
                cand, sk = v0 + sc - (0.8 * bright if bright >= 0.3 else 0.0), False
            else:
                continue
            if cand > val:
                val, prev, skipped = cand, (a0, b0), sk
        best[(a, b)] = (val, prev, skipped)
    # the sacrum: an endplate below the last body's disc with bone beyond it and no further disc; or below
    # one unseen body (an L5 whose tilted endplates, e.g. of a wedge fracture, give no narrow peak in the
    # band's median): then the gap holds exactly one body (``_one_missing``, ``holds_body``)
    def sacrum_after(k: tuple[int, int]) -> tuple[int, bool] | None:
        a, b = k
        disc = outside_below(b)
        if not np.isfinite(disc):
            return None
        far = int(round(SACRUM_BONE_MM / px))
        for s in peaks:
            gap = (s - b) * px
            skipped = gap > DISC_MM[1]
            if gap < DISC_MM[0]:
                continue
            if skipped and not (_one_missing(gap, (b - a) * px) and holds_body(b, s, inside(a, b) - cs)):
                continue
            seg = prof[s + g : min(s + g + far, n)]
            if len(seg) < 0.8 * far or np.mean(seg > disc + 0.5 * cs) < 0.6:
                continue
            # a lumbar body's top would be followed by its bottom endplate and a darker disc; the sacrum
            # has bone beyond its endplate and no disc below it
            if not starts_body(s):
                return s, skipped
        return None

    def starts_body(s: int) -> bool:
        for b in peaks:
            if b <= s or not BODY_MM[0] <= (b - s) * px <= BODY_MM[1] or strength[b] < 0.5:
                continue
            body = inside(s, b)
            after = _med(prof, b + g + 1, b + g + 1 + w)
            nxt = [r for r in peaks if DISC_MM[0] <= (r - b) * px <= 15.0 and strength[r] >= 0.5]
            if nxt and after < body - 0.5 * cs and _med(prof, nxt[0] + g, nxt[0] + g + w) > after + 0.5 * cs:
                return True
        return False

    def total(k: tuple[int, int]) -> float:
        sac = sacrum_after(k)  # a sacrum below an unseen L5 costs what an unseen body in the chain costs
        return best[k][0] + (0.0 if sac is None else 1.5 - 0.8 if sac[1] else 1.5)

    if not best or max(total(k) for k in best) <= 0:
        out.flags.append("no_spine_found")
        return out
    end = max(best, key=total)
    chain: list[tuple[int, int]] = []
    cur: tuple[int, int] | None = end
    while cur is not None:
        chain.append(cur)
        cur = best[cur][1]
    chain.reverse()
    sac_found = sacrum_after(end)
    l5_unseen = sac_found is not None and sac_found[1]
    if sac_found is None:
        out.flags += ["sacrum_not_found", "levels_uncertain"]
        out.level_confidence = 0.3
    else:
        out.sacrum_row_mm = sac_found[0] * px
        out.level_confidence = 0.9 if len(chain) >= 4 else 0.6
        if len(chain) < 4:
            out.flags.append("levels_uncertain")
    # body rows (top, bottom), with a placeholder where the chain stepped over an unseen body
    rows: list[tuple[float, float, bool]] = []
    for k, (a, b) in enumerate(chain):
        if k and best[(a, b)][2]:
            b0 = chain[k - 1][1]
            gap = a - b0
            rows.append((b0 + 0.2 * gap, a - 0.2 * gap, True))
        rows.append((float(a), float(b), False))
    if sac_found is not None and l5_unseen:  # the unseen L5 above the sacrum
        gap = sac_found[0] - end[1]
        rows.append((end[1] + 0.2 * gap, sac_found[0] - 0.2 * gap, True))
    names = list(reversed(LEVELS))
    rows = list(reversed(rows))[: len(names)]
    walls = [_walls(im, px, a_r, b_r, mid) for a_r, b_r, _ in rows]
    # a smooth spine line through the measured body centres (robust quadratic in the row), so that one
    # bad wall does not tilt a body's frame; half depths: measured, else the median of the series
    rr = np.array([0.5 * (a_r + b_r) for a_r, b_r, _ in rows])
    ok = np.array([wl is not None for wl in walls])
    cols = np.full(len(rows), mid)
    if ok.sum() >= 3:
        cc = np.array([wl[0] for wl in walls if wl is not None])
        deg = 2 if ok.sum() >= 5 else 1
        coef = np.polyfit(rr[ok], cc, deg)
        for _ in range(2):
            res = np.abs(cc - np.polyval(coef, rr[ok]))
            keep = res <= max(3.0 * float(np.median(res)) * 1.4826, 2.0 / px)
            if keep.sum() <= deg + 1 or keep.all():
                break
            coef = np.polyfit(rr[ok][keep], cc[keep], deg)
        cols = np.polyval(coef, rr)
    halves = [wl[1] for wl in walls if wl is not None]
    typical = float(np.median(halves)) if halves else 16.0
    centres = []
    for k, (a_r, b_r, inferred) in enumerate(rows):
        if inferred:
            out.inferred.add(names[k])
        wl = walls[k]
        half = wl[1] if wl is not None and abs(wl[1] - typical) <= 0.2 * typical else typical
        centres.append((names[k], 0.5 * (a_r + b_r) * px, float(cols[k]) * px))
        out.half_depth_mm[names[k]] = float(np.clip(half, 10.0, 30.0))
    out.centres = list(reversed(centres))
    out.flags = list(dict.fromkeys(out.flags))
    return out


def assess_lateral_spine(img: NDArray[np.floating], pixel_mm: float,
                         ) -> tuple[list[VertebraAssessment], list[str], float]:
    """Find, measure and grade the bodies of a lateral spine image (rows head->feet, columns A->P).

    Returns the assessments (cranial first; ``body_center_mm`` is the row position in mm from the first
    row), the series flags and the level confidence (0-1).
    """
    spine = find_bodies_lateral(img, pixel_mm)
    if not spine.centres:
        return [], spine.flags, 0.0
    guesses = [g for g in guesses_from_centres(spine.centres, spine.half_depth_mm, posterior_sign=1.0)
               if g.level in LEVELS]
    im = np.asarray(img, dtype=np.float64)
    sd = image_noise_sd(im)
    # walls and centre as on any sagittal image (profiles 1.5 mm wide against the noise, stopping short of
    # the pedicles at 60% of the half depth, inner-most walls, projection wall level), then the endplates
    # again against the disc right beyond them
    first = [measure_body(im, (pixel_mm, pixel_mm), g, 1.5, 0.6, True, True) for g in guesses]
    ms = [remeasure_endplates(im, pixel_mm, g, m, sd) for g, m in zip(guesses, first, strict=True)]
    res = [VertebraAssessment.from_result(gr, None, m.flags)
           for m, gr in zip(ms, grade_measurements(ms), strict=True)]
    for r, (_, row_mm, _) in zip(res, spine.centres, strict=True):
        r.body_center_mm = row_mm
        if "levels_uncertain" in spine.flags:
            r.flags.append("levels_uncertain")
        if r.level in spine.inferred:
            r.flags.append("body_inferred_from_gap")
    return res, spine.flags, spine.level_confidence
