"""Proximal femur geometry from an AP DXA hip image: femoral neck width, hip axis length, neck-shaft angle.

Steps (all in mm on the image plane, rows head -> feet):

1. bone = pixels above a threshold set from the image noise; the femur is the largest component, the
   acetabulum and the rest of the pelvis are the others;
2. shaft axis: line fitted to the midpoints of the femur's rows over its distal quarter;
3. femoral head: circular Hough transform (``skimage.transform.hough_circle``) on the femur outline in its
   proximal 45%, radii 12-40 mm;
4. neck axis: the direction from the head centre, on the shaft's side, about which the neck is symmetric
   (the midpoints of the bone chords perpendicular to it, 1-9 mm beyond the head's edge, lie on it);
5. femoral neck width = the narrowest perpendicular bone chord along the neck axis; neck-shaft angle =
   angle between the neck axis (towards the head) and the shaft axis (distally); hip axis length = from
   the last bone along the axis on the lateral side (below the greater trochanter) to the last bone beyond
   the head on the medial side within 30 mm of it (the inner pelvic brim).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi
from skimage.transform import hough_circle, hough_circle_peaks

from tasks.biomarkers.vertebral_heights import image_noise_sd

SIDES = ("left", "right")


@dataclass
class HipGeometry:
    """Geometry of one proximal femur (mm, degrees); ``None`` where a step failed (see ``flags``)."""

    side: str
    femoral_neck_width_mm: float | None
    hip_axis_length_mm: float | None
    neck_shaft_angle_deg: float | None
    femoral_head_diameter_mm: float | None
    flags: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else round(float(x), 2)

        return {"side": self.side, "femoral_neck_width_mm": r(self.femoral_neck_width_mm),
                "hip_axis_length_mm": r(self.hip_axis_length_mm),
                "neck_shaft_angle_deg": r(self.neck_shaft_angle_deg),
                "femoral_head_diameter_mm": r(self.femoral_head_diameter_mm), "flags": self.flags}


def side_from_header(ds: Any) -> str | None:
    """``left``/``right`` from ImageLaterality, Laterality or the series description; None if unknown."""
    for key in ("ImageLaterality", "Laterality"):
        v = str(ds.get(key, "") or "").upper()
        if v in ("L", "R"):
            return "left" if v == "L" else "right"
    desc = str(ds.get("SeriesDescription", "") or "").upper()
    if "LEFT" in desc or desc.endswith(" L"):
        return "left"
    if "RIGHT" in desc or desc.endswith(" R"):
        return "right"
    return None


def _chord(img: NDArray[np.float64], thr: float, centre: NDArray[np.float64], along: NDArray[np.float64],
           pixel_mm: float, reach_mm: float) -> tuple[float, float] | None:
    """Signed distances (mm) along ``along`` from ``centre`` to the two threshold crossings bounding the
    bone run that contains ``centre``; None if ``centre`` is not in bone or a side never leaves it."""
    s = np.arange(-reach_mm, reach_mm + 1e-9, 0.25)
    pts = centre[:, None] + along[:, None] * s[None, :]
    prof = ndi.map_coordinates(img, pts / pixel_mm, order=1, mode="constant", cval=0.0)
    i0 = len(s) // 2
    if prof[i0] <= thr:
        return None
    hi = i0
    while hi < len(s) - 1 and prof[hi + 1] > thr:
        hi += 1
    lo = i0
    while lo > 0 and prof[lo - 1] > thr:
        lo -= 1
    if hi == len(s) - 1 or lo == 0:
        return None
    e_hi = s[hi] + 0.25 * (prof[hi] - thr) / (prof[hi] - prof[hi + 1])
    e_lo = s[lo] - 0.25 * (prof[lo] - thr) / (prof[lo] - prof[lo - 1])
    return float(e_lo), float(e_hi)


def _last_bone(img: NDArray[np.float64], thr: float, centre: NDArray[np.float64], direction: NDArray[np.float64],
               pixel_mm: float, start_mm: float, stop_mm: float) -> float | None:
    """Distance (mm) from ``centre`` along ``direction`` to the outer edge of the last bone before
    ``stop_mm`` (threshold crossing, interpolated); None if no bone lies in [start, stop]."""
    s = np.arange(start_mm, stop_mm, 0.25)
    pts = centre[:, None] + direction[:, None] * s[None, :]
    prof = ndi.map_coordinates(img, pts / pixel_mm, order=1, mode="constant", cval=0.0)
    above = np.nonzero(prof > thr)[0]
    if len(above) == 0 or above[-1] == len(s) - 1:
        return None
    k = above[-1]
    return float(s[k] + 0.25 * (prof[k] - thr) / (prof[k] - prof[k + 1]))


def measure_hip(img: NDArray[np.floating], pixel_mm: float, side: str | None = None) -> list[HipGeometry]:
    """Geometry of the femur in an AP DXA hip image (rows head -> feet, square pixels of ``pixel_mm``).

    Parameters
    ----------
    img
        Areal density (or any bone-bright) image with soft tissue near zero.
    pixel_mm
        Pixel size in mm.
    side
        ``left`` or ``right`` when the header says; otherwise guessed from the image (the shaft lies lateral
        of the head; on an AP view of a left hip lateral is towards the image's right) and flagged.

    Returns
    -------
    list of HipGeometry
        One element (one femur per DXA hip image); empty when no femur-like bone is found.

    Notes
    -----
    Femoral rotation (anteversion seen in projection) shortens the neck and changes the angle; it is not
    corrected. The inner pelvic brim is taken as the last bone within 30 mm beyond the head.
    """
    a = np.asarray(img, dtype=np.float64)
    if a.ndim != 2 or pixel_mm <= 0:
        raise ValueError(f"img must be 2-D with pixel_mm > 0, got shape {a.shape} and pixel_mm {pixel_mm}")
    flags: list[str] = []
    sm = ndi.gaussian_filter(a, 0.5)
    thr = max(6.0 * image_noise_sd(a), 0.05 * float(np.percentile(sm, 99.5)))
    bone = sm > thr
    lab, n = ndi.label(bone)
    if n == 0:
        return []
    sizes = ndi.sum_labels(bone, lab, index=np.arange(1, n + 1))
    femur = lab == int(np.argmax(sizes)) + 1
    rows = np.nonzero(femur.any(axis=1))[0]
    r_top, r_bot = int(rows.min()), int(rows.max())
    span = r_bot - r_top + 1
    if span * pixel_mm < 60:
        return [HipGeometry(side or "left", None, None, None, None, ["femur_not_found"])]
    # shaft axis (row, col) from the distal quarter
    rr = np.arange(r_bot - span // 4, r_bot + 1)
    mids = [(r, float(np.mean(np.nonzero(femur[r])[0]))) for r in rr if femur[r].any()]
    if len(mids) < 5:
        return [HipGeometry(side or "left", None, None, None, None, ["shaft_not_found"])]
    mr = np.array(mids)
    slope = np.polyfit(mr[:, 0], mr[:, 1], 1)[0]
    down = np.array([1.0, slope]) / math.hypot(1.0, slope)
    shaft_pt = np.array([mr[:, 0].mean(), mr[:, 1].mean()]) * pixel_mm
    # head: Hough circle on the outline of the proximal femur
    edge = femur & ~ndi.binary_erosion(femur)
    edge[r_top + int(0.45 * span) :] = False
    radii = np.arange(max(3, int(12 / pixel_mm)), int(40 / pixel_mm) + 1)
    hspace = hough_circle(edge, radii)
    _, cx, cy, rad = hough_circle_peaks(hspace, radii, total_num_peaks=1)
    if len(rad) == 0:
        return [HipGeometry(side or "left", None, None, None, None, ["head_not_found"])]
    head = np.array([float(cy[0]), float(cx[0])]) * pixel_mm
    r_head = float(rad[0]) * pixel_mm
    # lateral = the side of the shaft relative to the head
    lat_sign = 1.0 if (shaft_pt[1] - head[1]) >= 0 else -1.0
    if side is None:
        side = "left" if lat_sign > 0 else "right"
        flags.append("side_assumed")
    # neck axis: scan directions pointing laterally and distally from the head centre
    best: tuple[float, float] | None = None
    ts = r_head + np.arange(1.0, 9.0 + 1e-9, 1.0)
    for phi in np.radians(np.arange(5.0, 175.0, 0.5)):
        e = np.array([-math.cos(phi), lat_sign * math.sin(phi)])
        p = np.array([-e[1], e[0]])
        offs = []
        for t in ts:
            ch = _chord(sm, thr, head + t * e, p, pixel_mm, 45.0)
            if ch is None:
                break
            offs.append(0.5 * (ch[0] + ch[1]))
        if len(offs) < len(ts):
            continue
        cost = float(np.mean(np.square(offs)))
        if best is None or cost < best[0]:
            best = (cost, float(phi))
    if best is None:
        return [HipGeometry(side, None, None, None, 2 * r_head, flags + ["neck_axis_not_found"])]
    phi = best[1]
    e = np.array([-math.cos(phi), lat_sign * math.sin(phi)])
    p = np.array([-e[1], e[0]])
    widths = []
    for t in np.arange(0.8 * r_head, r_head + 40.0, 0.5):
        ch = _chord(sm, thr, head + t * e, p, pixel_mm, 45.0)
        if ch is not None:
            widths.append(ch[1] - ch[0])
    fnw = float(min(widths)) if widths else None
    nsa = math.degrees(math.acos(float(np.clip(np.dot(-e, down), -1.0, 1.0))))
    lateral = _last_bone(sm, thr, head, e, pixel_mm, r_head, r_head + 160.0)
    medial = _last_bone(sm, thr, head, -e, pixel_mm, 0.0, r_head + 30.0)
    hal = lateral + medial if lateral is not None and medial is not None else None
    if hal is None:
        flags.append("hip_axis_not_bounded")
    if best[0] > 1.0:
        flags.append("neck_asymmetric")
    return [HipGeometry(side, fnw, hal, nsa, 2 * r_head, flags)]
