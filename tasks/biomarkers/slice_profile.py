"""Endplates placed inside their CT slices: a box slice-sensitivity-profile fit of the endplate columns.

A CT slice is the mean of the anatomy over the slice thickness (roughly a box), so a slice holding an
endplate has a value between bone, cortex and disc that says where inside the slice the endplate lies.
:func:`slice_profile_fit` refits the endplate quadratics that :func:`tasks.biomarkers.vertebral_heights.
measure_body` found (with ``slice_mm``, keeping the columns) to those slice samples, all bodies of a series
at once (:func:`box_profile_endplates`), with the endplate cortex thickness that fits the series best
(``CORTEX_CANDIDATES_MM``). Used on slices of 2 mm and more (see
``tasks.biomarkers.vertebral_fracture.CT_SLICE_PROFILE_MIN_MM``); radiographs never.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, overload

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from tasks.biomarkers.vertebral_heights import (
    CORTEX_HALF_MM,
    STEP_MM,
    EndplateColumns,
    HeightMeasurement,
    heights_from_quadratics,
)

SLICE_FIT_INNER_MM = 2.5  # the slice-profile fit reads this far beyond one slice inside the body
SLICE_FIT_NEAR_MM = 1.5  # ... on the columns whose edge lies this close to the endplate's quadratic
SLICE_FIT_ITERATIONS = 6  # Gauss-Newton steps of the slice-profile fit
SHIFT_GRID = 21  # shifts of each endplate tried before them
# Endplate cortex thicknesses (mm) the fit tries on each series (:func:`slice_profile_fit`). A model cortex
# thinner than the image's places the surfaces wrongly in their slices, and not evenly: the columns whose
# cortex straddles two slices pull the curve, and where they lie along the endplate depends on its
# curvature, so a fixed 1 mm model under a 1.2 mm cortex made every biconcave body more concave than it was
# (noise-free phantoms: Ha and Hp 0.9-1.1 mm low, Hm right; the true curves fitted 50-90% less residual with
# a 1.2 mm model than the fitted ones). Real endplates are 0.4-1.5 mm (thicker at the rim), so the
# thickness is a parameter of the series, chosen by its residual.
CORTEX_CANDIDATES_MM = (0.6, 0.8, 1.0, 1.2, 1.4, 1.6)



@overload
def box_profile_endplates(s: NDArray[np.float64], v: NDArray[np.float64], u: NDArray[np.float64],
                          coef0: NDArray[np.float64], group: NDArray[np.intp], width: NDArray[np.float64],
                          cortex_mm: float = ..., iterations: int = ...,
                          with_residual: Literal[False] = ...) -> NDArray[np.float64]: ...


@overload
def box_profile_endplates(s: NDArray[np.float64], v: NDArray[np.float64], u: NDArray[np.float64],
                          coef0: NDArray[np.float64], group: NDArray[np.intp], width: NDArray[np.float64],
                          cortex_mm: float = ..., iterations: int = ...,
                          *, with_residual: Literal[True]) -> tuple[NDArray[np.float64], float]: ...


def box_profile_endplates(s: NDArray[np.float64], v: NDArray[np.float64], u: NDArray[np.float64],
                          coef0: NDArray[np.float64], group: NDArray[np.intp], width: NDArray[np.float64],
                          cortex_mm: float = 2 * CORTEX_HALF_MM, iterations: int = 6,
                          with_residual: bool = False) -> NDArray[np.float64] | tuple[NDArray[np.float64], float]:
    """Endplate surfaces fitted to slice samples with a box slice-profile model, jointly over columns.

    Each row of ``s`` / ``v`` holds the samples of one column (depth coordinate ``u``) across endplate
    ``group``, oriented outwards (bone at low ``s``, disc at high ``s``; NaN where unused), taken at the
    slice centres (all endplates of one series at once). The outer surface of endplate
    ``k`` is the quadratic ``e(u) = polyval(coef[k], u)``. Along a column the tissue is trabecular bone
    ``B`` up to ``e - cortex_mm``, cortex ``C`` up to ``e``, disc ``D`` beyond, and a sample is the mean of
    that profile over a box of ``width`` (per row) around it, a scanner's slice sensitivity profile:
    ``v = D + (B - C) F(e - cortex_mm - s) + (C - D) F(e - s)`` with ``F`` the box's cumulative fraction.
    ``B`` is fitted per column, ``D`` per endplate and ``C`` once for all, by linear least squares (``B``
    eliminated per column, ``D`` by the Schur complement); the quadratics by damped Gauss-Newton steps from
    ``coef0``, each kept only where it lowers its endplate's squared residual.

    A column whose cortex straddles two slices fixes ``C`` (the cortex's mass per area); given ``C``, the
    value of the slice holding a surface places it inside that slice where bone and disc differ. Where they
    do not, a cortex inside one slice only says which slice, and the column exerts no pull until the curve
    leaves that slice: the curve is placed by the other columns. ``C`` is shared because within one
    endplate, or one body, no column may straddle (then ``C`` and the surfaces' place inside their slices
    trade off). Returns the coefficients
    (n_groups, 3), highest power first; ``coef0`` for an endplate with fewer than three usable columns.
    With ``with_residual`` also the squared residual per used sample (inf when no column is usable), which
    :func:`slice_profile_fit` compares across cortex thicknesses.
    """
    coef = np.array(coef0, dtype=np.float64)
    n_groups = len(coef)
    ok_k = np.isfinite(s) & np.isfinite(v)
    rows = ok_k.sum(axis=1) >= 2
    if not rows.any():
        return (coef, float("inf")) if with_residual else coef
    # compact the used samples of each column to the left
    order = np.argsort(~ok_k[rows], axis=1, kind="stable")[:, : int(ok_k[rows].sum(axis=1).max())]
    m = np.take_along_axis(ok_k[rows], order, axis=1).astype(np.float64)
    sz = np.take_along_axis(np.where(ok_k, s, 0.0)[rows], order, axis=1)
    vz = np.take_along_axis(np.where(ok_k, v, 0.0)[rows], order, axis=1)
    gi = np.asarray(group)[rows]
    wd = np.asarray(width, dtype=np.float64)[rows][:, None]
    half = 0.5 * wd
    og = (gi[:, None] == np.arange(n_groups)[None, :]).astype(np.float64)  # (rows, endplates)
    vu = np.vander(np.asarray(u, dtype=np.float64)[rows], 3)  # u^2, u, 1
    vv = (vu[:, :, None] * vu[:, None, :]).reshape(-1, 9)

    def amplitudes(e: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
        f1 = np.clip((e[:, None] - cortex_mm - sz) / wd + 0.5, 0.0, 1.0) * m
        f2 = np.clip((e[:, None] - sz) / wd + 0.5, 0.0, 1.0) * m
        x = np.stack([f2 - f1, m - f2, vz])  # coefficients of C, D, and the samples
        ff = (f1 * f1).sum(axis=1)
        use = (ff > 0.25).astype(np.float64)  # at least part of a bone sample
        proj = (x * f1).sum(axis=2) * (use / np.maximum(ff, 1e-12))  # B eliminated per column
        p = x - proj[:, :, None] * f1
        gram = np.einsum("irk,jrk->rij", p, p).reshape(-1, 9) * use[:, None]
        aa, ab, av, bb, bv = gram[:, [0, 1, 2, 4, 5]].T @ og  # per endplate
        # one C, D per endplate (an arrow-shaped system): D = (bv - ab C) / bb, C from the Schur complement
        bb = bb + 1e-6
        c_one = float((av.sum() - (ab * bv / bb).sum()) / max(aa.sum() - (ab * ab / bb).sum(), 1e-9))
        d_g = (bv - ab * c_one) / bb
        c_hu, d_hu = np.full(len(gi), c_one), d_g[gi]
        b_hu = proj[2] - c_hu * proj[0] - d_hu * proj[1]
        r = (vz - b_hu[:, None] * f1 - c_hu[:, None] * x[0] - d_hu[:, None] * x[1]) * use[:, None]
        return r, b_hu, c_hu, d_hu, use

    e = (vu * coef[gi]).sum(axis=1)
    r, b_hu, c_hu, d_hu, use = amplitudes(e)
    good = use @ og >= 3
    # the squared residual is piecewise quadratic in the surfaces, with flat parts and local minima: first
    # move each endplate's curve as a whole to the best of a grid of shifts within half a slice
    shifts = np.linspace(-0.5, 0.5, SHIFT_GRID)[:, None] * wd[:, 0][None, :]  # (shifts, rows)
    xs = (e[None, :] + shifts)[:, :, None] - sz[None]
    pred = (d_hu[:, None] + (b_hu - c_hu)[:, None] * np.clip((xs - cortex_mm) / wd + 0.5, 0.0, 1.0)
            + (c_hu - d_hu)[:, None] * np.clip(xs / wd + 0.5, 0.0, 1.0)) * m
    ss_shift = ((((vz - pred) ** 2).sum(axis=2)) * use) @ og  # (shifts, endplates)
    best = ss_shift.argmin(axis=0)
    coef[:, 2] += np.where(good, np.linspace(-0.5, 0.5, SHIFT_GRID)[best] * ((wd[:, 0] @ og) / np.maximum(og.sum(axis=0), 1.0)), 0.0)
    e = (vu * coef[gi]).sum(axis=1)
    r, b_hu, c_hu, d_hu, use = amplitudes(e)
    lam = np.full(n_groups, 1e-3)
    jump_b, jump_c = (b_hu - c_hu)[:, None], (c_hu - d_hu)[:, None]
    for _ in range(iterations):
        xe = e[:, None] - sz
        d_e = (jump_b * (np.abs(xe - cortex_mm) < half) + jump_c * (np.abs(xe) < half)) * (m / wd)
        ata = ((vv * ((d_e * d_e).sum(axis=1) * use)[:, None]).T @ og).T.reshape(n_groups, 3, 3)
        atb = ((vu * (d_e * r).sum(axis=1)[:, None]).T @ og).T
        ata[:, [0, 1, 2], [0, 1, 2]] *= 1.0 + lam[:, None]
        ata[:, [0, 1, 2], [0, 1, 2]] += 1e-9
        step = np.linalg.solve(ata, atb[:, :, None])[:, :, 0]
        de = (vu * step[gi]).sum(axis=1)
        # no endplate moves by more than half a slice on average in one step
        scale = np.minimum(1.0, (half[:, 0] @ og) / np.maximum(np.abs(de) @ og, 1e-9))
        trial = coef + step * scale[:, None]
        xt = (vu * trial[gi]).sum(axis=1)[:, None] - sz
        pred = (d_hu[:, None] + jump_b * np.clip((xt - cortex_mm) / wd + 0.5, 0.0, 1.0)
                + jump_c * np.clip(xt / wd + 0.5, 0.0, 1.0)) * m
        better = good & (((((vz - pred) ** 2).sum(axis=1)) * use) @ og < ((r * r).sum(axis=1)) @ og)
        coef = np.where(better[:, None], trial, coef)
        lam = np.where(better, lam * 0.3, lam * 10.0)
        e = (vu * coef[gi]).sum(axis=1)
        r, b_hu, c_hu, d_hu, use = amplitudes(e)
        jump_b, jump_c = (b_hu - c_hu)[:, None], (c_hu - d_hu)[:, None]
    if with_residual:
        n_used = float((m * use[:, None]).sum())
        return coef, float((r * r).sum()) / max(n_used, 1.0)
    return coef


def _endplate_samples(cols: Sequence[EndplateColumns]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Slice samples (s outwards, v), rows: for each body its upper then its lower endplate columns, for
    :func:`box_profile_endplates`: where each column crosses the image rows from ``width +
    SLICE_FIT_INNER_MM`` inside its endplate's quadratic to one slice beyond it (within the search range),
    on the columns whose edge lies within ``SLICE_FIT_NEAR_MM`` of the quadratic; NaN elsewhere. One
    interpolation per image for all bodies."""
    c0 = cols[0]
    nb, m, w = len(cols), len(c0.centres), c0.w
    gs = [c.patch.g for c in cols]
    cen, axis, post = (np.array([x.centre for x in gs]), np.array([x.axis for x in gs]),
                       np.array([x.posterior for x in gs]))
    sp = c0.patch.spacing
    t = np.stack([c.patch.t[c.centres] for c in cols])[:, :, None] + STEP_MM * np.arange(-w, w + 1)  # (B, m, b)
    row0 = (cen[:, 0, None, None] + t * post[:, 0, None, None]) / sp[0]  # image row at s = 0
    d_row = axis[:, 0] / sp[0]  # image rows per mm along the axis
    width = np.array([c.width for c in cols])
    reach = width + SLICE_FIT_INNER_MM
    vu = np.vander(c0.u, 3)
    e_out = np.stack([np.stack([vu @ c.coef_top, -(vu @ c.coef_bottom)]) for c in cols])  # (B, 2, m) outward
    lim = np.array([[c.up_mm, c.down_mm] for c in cols])
    lo = np.maximum(0.0, e_out.min(axis=2) - reach[:, None])  # (B, 2) outward mm
    hi = np.minimum(lim, e_out.max(axis=2) + width[:, None])
    rmin, rmax = row0.min(axis=(1, 2)), row0.max(axis=(1, 2))
    n_rows = c0.patch.image.shape[0]
    k_first = np.stack([np.ceil(rmin + lo[:, 0] * d_row), np.ceil(rmin - hi[:, 1] * d_row)], axis=1)
    k_last = np.stack([np.floor(rmax + hi[:, 0] * d_row), np.floor(rmax - lo[:, 1] * d_row)], axis=1)
    k_first, k_last = np.clip(k_first, 0, n_rows - 1), np.clip(k_last, 0, n_rows - 1)
    kk = max(1, int((k_last - k_first).max()) + 1)
    ks = k_first[:, :, None] + np.arange(kk)  # (B, 2, K)
    ok = ks <= k_last[:, :, None]
    ks = np.minimum(ks, n_rows - 1)
    ss = (ks[:, :, None, None, :] - row0[:, None, :, :, None]) / d_row[:, None, None, None, None]  # (B,2,m,b,K)
    cc = (cen[:, 1, None, None, None, None] + ss * axis[:, 1, None, None, None, None]
          + t[:, None, :, :, None] * post[:, 1, None, None, None, None]) / sp[1]
    kb = np.broadcast_to(ks[:, :, None, None, :], ss.shape)
    vals = np.empty(ss.shape)
    for img_id in dict.fromkeys(id(c.patch.image) for c in cols):
        sel = np.array([id(c.patch.image) == img_id for c in cols])
        img = next(c.patch.image for c in cols if id(c.patch.image) == img_id)
        vals[sel] = ndi.map_coordinates(img, [kb[sel].ravel(), cc[sel].ravel()], order=1,
                                        mode="nearest").reshape(vals[sel].shape)
    s_out = ss.mean(axis=3) * np.array([1.0, -1.0])[None, :, None, None]  # (B, 2, m, K) outward
    v_out = vals.mean(axis=3)
    e0 = np.stack([np.stack([c.top, -c.bottom]) for c in cols])  # (B, 2, m)
    with np.errstate(invalid="ignore"):
        keep = (ok[:, :, None, :] & (np.abs(e0 - e_out) <= SLICE_FIT_NEAR_MM)[..., None]
                & (s_out >= (e_out - reach[:, None, None])[..., None]) & (s_out <= (e_out + width[:, None, None])[..., None])
                & (s_out >= 0.0) & (s_out <= lim[:, :, None, None]))
    return (np.where(keep, s_out, np.nan).reshape(nb * 2 * m, kk), v_out.reshape(nb * 2 * m, kk))


def slice_profile_fit(ms: Sequence[HeightMeasurement], cortex_mm: float | None = None) -> list[
        HeightMeasurement]:
    """The measurements ``ms`` with the endplates of those that kept their columns
    (``measure_body(..., slice_mm=..., defer_slice_fit=True)``) refitted by :func:`box_profile_endplates`,
    all bodies at once; the others, and any whose refitted heights are implausible, unchanged.

    ``cortex_mm`` is the endplate cortex thickness of the box model; None: estimated per series, the one of
    ``CORTEX_CANDIDATES_MM`` whose fit leaves the least squared residual per slice sample."""
    out = list(ms)
    todo = [i for i, m in enumerate(ms) if m.columns is not None]
    cols = [c for c in (ms[i].columns for i in todo) if c is not None]
    if not cols or any(len(c.centres) != len(cols[0].centres) or c.w != cols[0].w for c in cols):
        return out
    s_all, v_all = _endplate_samples(cols)
    m = len(cols[0].centres)
    coef0 = np.concatenate([np.stack([c.coef_top, -c.coef_bottom]) for c in cols])
    u = np.tile(cols[0].u, 2 * len(cols))
    group = np.repeat(np.arange(2 * len(cols)), m)
    width = np.repeat([c.width for c in cols], 2 * m)
    # the thickness whose fit leaves the least residual per sample
    fits = [box_profile_endplates(s_all, v_all, u, coef0, group, width, c, SLICE_FIT_ITERATIONS, with_residual=True)
            for c in (CORTEX_CANDIDATES_MM if cortex_mm is None else (cortex_mm,))]
    coef = min(fits, key=lambda f: f[1])[0]
    for j, i in enumerate(todo):
        c = cols[j]
        new = heights_from_quadratics(c.patch.g, coef[2 * j], -coef[2 * j + 1], c.depth, c.mid_t, c.n_ok, list(c.flags))
        if new.centre_mm is not None:
            out[i] = new
    return out
