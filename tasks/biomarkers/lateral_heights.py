"""Heights of a vertebral body on a lateral radiograph: its endplates measured against the disc.

On a projection the ray beyond a disc may cross lung or bowel gas, darker than the disc itself; an endplate
edge referred to the darkest point anywhere beyond it lands out in the disc (up to 3 mm on a severe T12
wedge). :func:`remeasure_endplates` measures the endplates again on the walls and centre that
:func:`tasks.biomarkers.vertebral_heights.measure_body` found, each against the disc right beyond it
(:func:`endplate_edge`). Used by :mod:`tasks.biomarkers.lateral_spine`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from tasks.biomarkers.vertebral_heights import (
    CORTEX_HALF_MM,
    MIN_EDGE_CONTRAST,
    N_POINTS,
    STEP_MM,
    U_RANGE,
    BodyGuess,
    HeightMeasurement,
    robust_quadratic,
    sample_patch,
)

__all__ = ["MIN_DISC_MM", "endplate_edge", "remeasure_endplates"]

MIN_DISC_MM = 3.0  # narrowest thoracolumbar disc (degenerated) between two bodies


def endplate_edge(p: NDArray[np.float64], half_layer: float, min_contrast: float) -> float:
    """Outer surface (fractional index) of the endplate cortex on profile ``p`` walking outward from the
    body centre (index 0), or NaN.

    The cortex is the first local maximum reaching 70% of the profile's rise; its surface is the centroid
    of its excess over the inside (the body before it) and over the disc right beyond it, plus
    ``half_layer``. On a projection the floor must be that of the disc: further out the ray may cross lung
    or bowel gas, which is darker than the disc and would pull the centroid out into the disc (the floor
    is the darkest point within ``MIN_DISC_MM`` beyond the peak). A plateau without a cortex line gives
    the half-maximum crossing between the peak and that floor.
    """
    n = len(p)
    if n < 4:
        return float("nan")
    rise = float(p.max() - p[0])
    level = p[0] + 0.7 * rise if rise > 0 else float(p.max())
    hit = np.nonzero((p[:-1] >= level) & (p[:-1] >= p[1:]))[0]
    k = int(hit[0]) if len(hit) else n - 1
    reach = k + int(round(MIN_DISC_MM / STEP_MM)) + 1
    peak, floor = float(p[k]), float(p[k:reach].min())
    if peak - floor < max(MIN_EDGE_CONTRAST * max(peak - min(floor, float(p[0])), 1e-9), min_contrast):
        return float("nan")
    inner = float(np.median(p[: max(k - int(round(2 * half_layer)) - 1, 1)]))
    if peak - inner >= 0.3 * (peak - floor):
        lo = k
        while lo > 0 and p[lo - 1] > inner + 0.1 * (peak - inner):
            lo -= 1
        hi = k
        while hi < min(reach, n) - 1 and p[hi + 1] > floor + 0.1 * (peak - floor):
            hi += 1
        jj = np.arange(lo, hi + 1)
        base = np.where(jj < k, inner, np.where(jj > k, floor, 0.5 * (inner + floor)))
        w = np.clip(p[lo : hi + 1] - base, 0.0, None)
        if hi + 1 < n and w.sum() > 0:
            return float(np.sum(w * jj) / w.sum()) + half_layer
    half = floor + 0.5 * (peak - floor)
    for j in range(k, min(reach, n) - 1):
        if p[j] >= half > p[j + 1]:
            return j + float((p[j] - half) / (p[j] - p[j + 1]))
    return float("nan")


def remeasure_endplates(image: NDArray[np.float64], pixel_mm: float, g: BodyGuess, m: HeightMeasurement,
                        noise_sd: float, column_half_mm: float = 1.5, u_max: float = 0.6,
                        ) -> HeightMeasurement:
    """Heights of a body of a lateral radiograph from its endplates, measured again on the walls and centre
    that :func:`tasks.biomarkers.vertebral_heights.measure_body` found.

    Parameters
    ----------
    image
        The radiograph (brighter = more attenuating).
    pixel_mm
        Pixel size (mm).
    g
        The frame the body was measured in (its axis, posterior direction and search reach).
    m
        The first measurement; returned unchanged when it has no centre or depth (nothing to measure on)
        or when the endplates are not found again.
    noise_sd
        Pixel noise SD of ``image``.
    column_half_mm, u_max
        Half width of the column profiles and their most posterior position (fraction of the half depth).

    Returns
    -------
    HeightMeasurement
        Ha, Hm, Hp at u = -1, 0, +1 of quadratic fits to the endplate surfaces, each found with the disc
        right beyond it as the floor (:func:`endplate_edge`).
    """
    if m.centre_mm is None or m.depth_mm is None or m.anterior_mm is None:
        return m
    shift = (m.centre_mm[0] - g.centre[0]) * g.axis[0] + (m.centre_mm[1] - g.centre[1]) * g.axis[1]
    up, down = g.up_mm - shift, g.down_mm + shift
    if up <= 2.0 or down <= 2.0:
        return m
    half_len = max(up, down) + 2.0
    half_w = 0.5 * m.depth_mm + 4.0
    frame = BodyGuess(g.level, m.centre_mm, g.axis, g.posterior, up, down, 0.5 * m.depth_mm)
    patch = sample_patch(image, (pixel_mm, pixel_mm), frame, half_len, half_w)
    n0, m0 = int(round(half_len / STEP_MM)), int(round(half_w / STEP_MM))
    w = max(1, int(round(column_half_mm / STEP_MM)))
    hl = CORTEX_HALF_MM / STEP_MM
    plate_min = 5.0 * noise_sd / np.sqrt(max(1.0, 2.0 * column_half_mm / pixel_mm))
    u = np.linspace(-U_RANGE, u_max, N_POINTS)
    top, bot = np.full(N_POINTS, np.nan), np.full(N_POINTS, np.nan)
    up_stop, down_stop = min(n0 + int(up / STEP_MM), patch.shape[0] - 1), max(n0 - int(down / STEP_MM), 0)
    for q, uq in enumerate(u):
        c = int(round(m0 + uq * 0.5 * m.depth_mm / STEP_MM))
        col = patch[:, max(c - w, 0) : c + w + 1].mean(axis=1)
        top[q] = endplate_edge(col[n0 : up_stop + 1], hl, plate_min) * STEP_MM
        bot[q] = -endplate_edge(col[down_stop : n0 + 1][::-1], hl, plate_min) * STEP_MM
    ct, cb = robust_quadratic(u, top), robust_quadratic(u, bot)
    if ct is None or cb is None:
        return m
    h = np.polyval(ct, [-1.0, 0.0, 1.0]) - np.polyval(cb, [-1.0, 0.0, 1.0])
    if np.any(h <= 2.0):
        return m
    n_ok = int(np.sum(np.isfinite(top) & np.isfinite(bot)))
    flags = [f for f in m.flags if f != "endplates_partly_found"]
    if n_ok < 0.7 * N_POINTS:
        flags.append("endplates_partly_found")
    return HeightMeasurement(m.level, float(h[0]), float(h[1]), float(h[2]), m.depth_mm, m.centre_mm, n_ok,
                             flags)
