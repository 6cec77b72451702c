"""Body composition on one axial slice (L3, L1): muscle, intermuscular, visceral and subcutaneous fat.

HU windows (Mitsiopoulos 1998; Shen 2004; DESIGN.md): skeletal muscle -29..150 HU, adipose -190..-30 HU.

Anatomical compartments on the slice through the level's centre:

- body: > -500 HU, largest component, holes filled;
- bone: > 200 HU; its filled outline (vertebral body, canal, posterior elements) and the labeller's body
  mask are never muscle (osteoporotic trabecular bone and the canal fall in the muscle window);
- fascia region: the muscle-window mask (slightly opened to drop skin partial volume) plus bone,
  hole-filled, and the largest filled component: the abdominal wall muscles form a closed ring, so this is
  everything inside the muscular wall (filling before choosing the component keeps a ring that encloses a
  larger mass of touching bowel loops);
- subcutaneous fat (SAT): adipose in the body outside the fascia region;
- wall muscle: muscle within the wall thickness of the fascia boundary (thickness estimated from the
  anterior half, where nothing but wall lies against the fascia);
- other skeletal muscle (psoas, quadratus lumborum, paraspinal): the remaining muscle-window pixels inside
  the fascia, less enhancing organs (a local mean > 40 HU above the wall muscle's own median: kidney,
  liver, spleen after iodine), are split into compact pieces by a distance-transform watershed (touching
  bowel loops, kidney and liver separate from the muscle they press on); a piece is muscle when its centre
  lies behind the posterior edge of the vertebral body (paraspinals, posterior wall), or when it lies
  against the vertebral body with its centre behind the body's front quarter (psoas; a bowel loop against
  the front or the anterolateral corner of the body has its centre further forward). A piece against the
  wall with its centre behind the body's centre (quadratus lumborum, posterolateral wall) counts behind
  that centre line, and any other piece counts behind the posterior edge of the body: only muscle lies
  there, and a kidney merged with the quadratus lumborum it touches (no fat plane, no HU contrast
  without iodine) is then neither counted nor dropped whole. Bowel, kidney and liver lie in front of
  those lines or beside the column without touching the body;
- intermuscular fat (IMAT): adipose holes (< 150 mm2) enclosed by muscle;
- visceral fat (VAT): the remaining adipose inside the fascia region.

:func:`measure_level` works at the body's mid-plane (the centroid of the labeller's full-resolution body
mask): areas are interpolated between the two slices that bracket it, and the subcutaneous fat hidden in
the partial-volume rim at the skin is added (see :func:`_skin_partial_sat`).

Notes
-----
No HU threshold separates unenhanced kidney or bowel wall from muscle; the split relies on shape and
position, so a kidney pressed against the psoas over a long contact, or bowel lying against the side of
the vertebral body, can still be counted as muscle. L3 is the level of record for sarcopenia (SMI is
computed in the warehouse).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from tasks.biomarkers import morphology as morph
from tasks.biomarkers.distance import edt_2d
from tasks.biomarkers.spine import VertebraLabel
from tasks.dicom.volume import Volume

MUSCLE_HU = (-29.0, 150.0)
ADIPOSE_HU = (-190.0, -30.0)
BONE_HU = 200.0
IMAT_MAX_MM2 = 150.0
ENHANCED_HU = 40.0  # above the wall muscle's median: an enhancing organ, not muscle (local-mean noise SD < 10)
SPLIT_MM = 1.0  # watershed markers: distance-transform maxima at least this much above their saddle
PSOAS_FRONT = 0.25  # a piece against the body is psoas when its centre is behind the body's front quarter
_DIST_STEPS = 64  # distances quantised to 1/64 mm for the marker reconstruction


@dataclass
class BodyComposition:
    """Areas (cm2) and muscle attenuation on one slice; ``labels`` 1 muscle, 2 IMAT, 3 VAT, 4 SAT."""

    level: str
    z_mm: float
    muscle_area_cm2: float
    muscle_hu_mean: float
    imat_area_cm2: float
    vat_area_cm2: float
    sat_area_cm2: float
    sat_hu_median: float | None
    labels: np.ndarray | None = None


def _wall_mm(fascia: np.ndarray, dist: np.ndarray, muscle: np.ndarray) -> float:
    """Abdominal wall thickness: the first 1-mm shell inside the fascia (anterior half) where muscle no
    longer dominates; 8 mm when no shell qualifies."""
    rows = np.nonzero(fascia.any(axis=1))[0]
    front = rows.min() + (rows.max() - rows.min()) // 2
    sel = fascia.copy()
    sel[front:] = False
    shells = np.minimum(dist[sel].astype(int), 60)
    tot = np.bincount(shells, minlength=61).astype(float)
    mus = np.bincount(shells[muscle[sel]], minlength=61).astype(float)
    for s in range(2, 60):
        if tot[s] > 0 and mus[s] / tot[s] < 0.5:
            return float(s)
    return 8.0


def _spine_bone(bone: np.ndarray, vmask: np.ndarray | None, vertebra_yx: tuple[float, float] | None,
                spacing_yx: tuple[float, float]) -> np.ndarray:
    """Vertebral body, canal and posterior elements: the bone component(s) of the vertebra (touching the
    labeller's body mask, or holding the body centre), slightly closed and hole-filled, plus the mask.

    Bright vessels (enhanced aorta, IVC) are other components and are left out, so the fat between them
    and the vertebra stays fat.
    """
    dy, dx = spacing_yx
    out = np.zeros(bone.shape, dtype=bool)
    lab, n = ndi.label(bone)
    seeds = np.zeros(n + 1, dtype=bool)
    if vmask is not None:
        seeds[np.unique(lab[vmask])] = True
    if vertebra_yx is not None:
        c = (int(round(vertebra_yx[0])), int(round(vertebra_yx[1])))
        if 0 <= c[0] < bone.shape[0] and 0 <= c[1] < bone.shape[1]:
            # Behind the centre on the midline: the body's posterior cortex, the laminae, the spinous process.
            near = lab[c[0] : c[0] + int(45.0 / dy) + 1, max(0, c[1] - int(5.0 / dx)) : c[1] + int(5.0 / dx) + 1]
            seeds[np.unique(near)] = True
    seeds[0] = False
    if seeds.any():
        # On the seeds' box grown by twice the closing radius and a background ring (same result as on
        # the whole image: the closing reaches one radius out, the ring keeps outer background connected).
        sel = seeds[lab]
        box = morph.bounding_box(sel, 2 * int(np.ceil(2.0 / min(dy, dx))) + 2)
        if box is not None:
            out[box] = morph.fill_holes(morph.closing(sel[box], 2.0 / dy, 2.0 / dx))
    if vmask is not None:
        out |= vmask
    return out


def _split(inner: np.ndarray, spacing_yx: tuple[float, float]) -> tuple[np.ndarray, int]:
    """Label ``inner`` into compact pieces: watershed of the negated distance transform from its
    h-maxima (``SPLIT_MM``), inside the bounding box of ``inner``."""
    lab = np.zeros(inner.shape, dtype=np.int32)
    if not inner.any():
        return lab, 0
    rows = np.nonzero(inner.any(axis=1))[0]
    cols = np.nonzero(inner.any(axis=0))[0]
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    m = inner[r0:r1, c0:c1]
    dist = edt_2d(m, spacing_yx)
    # h-maxima by reconstruction (regional maxima of dist - h reconstructed under dist), on a ~1.5 mm
    # subsample: the markers only need to find the compact pieces, the watershed runs at full resolution.
    f = max(1, int(round(1.5 / max(min(spacing_yx), 1e-6))))
    # Distances in 1/64 mm as integers: the reconstruction then sorts integers (see
    # morph.reconstruct_dilation); SPLIT_MM is a whole number of steps, so the test is exact.
    d = np.rint(dist[::f, ::f] * _DIST_STEPS).astype(np.int64)
    h = int(round(SPLIT_MM * _DIST_STEPS))
    rec = morph.reconstruct_dilation(np.maximum(d - h, 0), d)
    peaks = np.repeat(np.repeat((d - rec) >= h, f, axis=0), f, axis=1)[: m.shape[0], : m.shape[1]]
    markers, n = ndi.label(peaks & m)
    if n == 0:
        markers, n = ndi.label(m)
    lab[r0:r1, c0:c1] = watershed(-dist, markers, mask=m)
    return lab, int(n)


def _skin_partial_sat(hu: np.ndarray, labels: np.ndarray, body: np.ndarray) -> float:
    """Subcutaneous fat (in pixels) in the partial-volume rim at the skin, which the adipose window misses.

    A pixel straddling the skin holds a fraction ``f`` of fat and ``1 - f`` of air, so its HU is
    ``air + f (fat - air)``; below -190 HU (``f`` < ~0.9) it is not counted as adipose, which biases SAT
    low by about half a pixel of the body's perimeter. Here each pixel of the two-pixel ring across the
    body outline that is neither labelled nor brighter than fat adds its fraction
    ``f = (HU + 1000) / (fat + 1000)``, with ``fat`` the median of the labelled SAT.
    """
    sat = labels == 4
    if sat.sum() < 50:
        return 0.0
    fat_hu = float(np.median(hu[sat]))
    ring = morph.dilate(body, 1.0, 1.0) & ~morph.erode(body, 1.0, 1.0) & (labels == 0)
    vals = hu[ring & (hu < ADIPOSE_HU[0])]
    # Only where the rim borders subcutaneous fat (not muscle or bone reaching the skin).
    near_sat = morph.dilate(sat, 1.5, 1.5)[ring & (hu < ADIPOSE_HU[0])]
    f = np.clip((vals[near_sat] + 1000.0) / (fat_hu + 1000.0), 0.0, 1.0)
    return float(f.sum())


def _hit(lab: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """Boolean per label 0..n: whether the label has a pixel in ``mask`` (label 0 always False)."""
    out = np.bincount(lab[mask], minlength=n + 1) > 0
    out[0] = False
    return out


def _posterior_muscle(inner: np.ndarray, wall: np.ndarray, bone_fill: np.ndarray, vmask: np.ndarray | None,
                      vertebra_yx: tuple[float, float] | None, spacing_yx: tuple[float, float]) -> np.ndarray:
    """The parts of ``inner`` (muscle-window pixels inside the fascia, off the wall) that are skeletal
    muscle: pieces behind the back of the vertebral body or against the body (psoas) whole, pieces against
    the wall (quadratus lumborum, posterolateral wall) behind the body's centre, anything else behind the
    back of the body (see the module docstring)."""
    dy, dx = spacing_yx
    out = np.zeros(inner.shape, dtype=bool)
    if vertebra_yx is None or not inner.any():
        return out
    # The vertebral body on this slice: the labeller's mask, else the bone component at the centre.
    vb = vmask
    if vb is None or not vb.any():
        bl, _ = ndi.label(bone_fill)
        c = (int(round(vertebra_yx[0])), int(round(vertebra_yx[1])))
        inside = 0 <= c[0] < inner.shape[0] and 0 <= c[1] < inner.shape[1] and bl[c] > 0
        vb = (bl == bl[c]) if inside else np.zeros_like(inner)
    if vb.any():
        vrows = np.nonzero(vb.any(axis=1))[0]
        front, back = float(vrows.min()), float(vrows.max())
    else:
        front, back = vertebra_yx[0] - 15.0 / dy, vertebra_yx[0] + 15.0 / dy
    # Only what lies behind a line 40 mm in front of the body can qualify; bowel further forward is
    # left out before the (costly) split.
    r0 = max(0, int(front - 40.0 / dy))
    sub = inner[r0:]
    near = (morph.dilate(vb, 3.0 / dy, 3.0 / dx) if vb.any() else vb)[r0:]
    wall_near = morph.dilate(wall, 1.5, 1.5)[r0:]
    # Components that are clear-cut need no split: wholly behind the back of the body (muscle), or
    # touching neither the body nor the wall and wholly in front of the back (not muscle).
    comp, nc = ndi.label(sub)
    if nc == 0:
        return out
    objs = ndi.find_objects(comp)
    top = np.array([r0 + o[0].start if o is not None else np.inf for o in objs])
    bottom = np.array([r0 + o[0].stop - 1 if o is not None else -np.inf for o in objs])
    contact = _hit(comp, (near | wall_near) & sub, nc)[1:]
    behind = np.r_[False, top >= back]
    ambiguous = np.r_[False, ~(top >= back) & ~(~contact & (bottom < back))]
    out[r0:] = behind[comp]
    amb = ambiguous[comp]
    if not amb.any():
        return out
    lab, _ = _split(amb, (dy, dx))
    n = int(lab.max())
    if n == 0:
        return out
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    row_sum = np.bincount(lab.ravel(), weights=np.broadcast_to(np.arange(sub.shape[0])[:, None], sub.shape).ravel(),
                          minlength=n + 1)
    cy = r0 + row_sum[1:] / np.maximum(sizes[1:], 1)
    touch = _hit(lab, near, n)
    on_wall = _hit(lab, wall_near, n)
    mid = 0.5 * (front + back)
    whole = np.zeros(n + 1, dtype=bool)  # muscle wherever it lies
    whole[1:] = (cy >= back) | (touch[1:] & (cy >= front + PSOAS_FRONT * (back - front)))
    posterior = np.zeros(n + 1, dtype=bool)  # muscle behind the body's centre (quadratus lumborum)
    posterior[1:] = on_wall[1:] & (cy >= mid) & ~whole[1:]
    rest = ~(whole | posterior)  # muscle behind the back of the body only
    rest[0] = False
    out[r0:] |= whole[lab]
    km, kb = max(r0, int(np.ceil(mid))), max(r0, int(np.ceil(back)))
    out[km:] |= posterior[lab[km - r0 :]]
    out[kb:] |= rest[lab[kb - r0 :]]
    return out


def segment_slice(
    hu: np.ndarray,
    spacing_yx: tuple[float, float],
    vertebra_yx: tuple[float, float] | None,
    vertebra_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Label image (0 other, 1 muscle, 2 IMAT, 3 VAT, 4 SAT) of one axial HU slice.

    Parameters
    ----------
    hu : (rows, columns) HU slice.
    spacing_yx : pixel size (row, column) in mm.
    vertebra_yx : (row, column) of the vertebral body centre, used to place the posterior muscles.
    vertebra_mask : optional boolean mask of the vertebral body on this slice (same shape as ``hu``).
    """
    return _segment(hu, spacing_yx, vertebra_yx, vertebra_mask)[0]


def _segment(
    hu_full: np.ndarray,
    spacing_yx: tuple[float, float],
    vertebra_yx: tuple[float, float] | None,
    vertebra_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """:func:`segment_slice` and the skin partial-volume SAT (pixels), worked inside the body's box."""
    dy, dx = spacing_yx
    px_area = dy * dx
    out_full = np.zeros(hu_full.shape, dtype=np.uint8)
    above = hu_full > -500.0
    tbox = morph.bounding_box(above)
    if tbox is None:
        return out_full, 0.0
    body_full = np.zeros(hu_full.shape, dtype=bool)
    body_full[tbox] = morph.largest(above[tbox])
    rows = np.nonzero(body_full.any(axis=1))[0]
    cols = np.nonzero(body_full.any(axis=0))[0]
    r0, c0 = max(0, rows[0] - 2), max(0, cols[0] - 2)
    box = (slice(r0, rows[-1] + 3), slice(c0, cols[-1] + 3))
    hu = hu_full[box]
    body = morph.fill_holes(body_full[box])
    if vertebra_yx is not None:
        vertebra_yx = (vertebra_yx[0] - r0, vertebra_yx[1] - c0)
    if vertebra_mask is not None and vertebra_mask.shape == hu_full.shape:
        vertebra_mask = vertebra_mask[box]
    else:
        vertebra_mask = None
    muscle = (hu >= MUSCLE_HU[0]) & (hu <= MUSCLE_HU[1]) & body
    fat = (hu >= ADIPOSE_HU[0]) & (hu <= ADIPOSE_HU[1]) & body
    bone = (hu > BONE_HU) & body
    vmask = vertebra_mask if vertebra_mask is not None and vertebra_mask.shape == hu.shape else None
    bone_fill = _spine_bone(bone, vmask, vertebra_yx, (dy, dx))
    muscle &= ~bone_fill
    fat &= ~bone_fill
    k = 1.5 / dx
    opened = morph.opening(muscle, k, k)
    filled = morph.fill_holes(opened | bone)
    fascia = morph.largest(filled) if filled.any() else filled
    out = out_full[box]  # a view: labels are written into the full-slice image
    out[fat & ~fascia] = 4
    if not fascia.any():
        return out_full, _skin_partial_sat(hu, out, body)
    # On the fascia's box with a one-pixel background ring: every nearest background pixel lies inside it.
    dist = np.zeros(fascia.shape, dtype=np.float64)
    fbox = morph.bounding_box(fascia, 1)
    if fbox is not None:
        dist[fbox] = edt_2d(fascia[fbox], (dy, dx))
    wall = muscle & (dist <= _wall_mm(fascia, dist, muscle) + 0.5)
    inner = muscle & fascia & ~wall
    if wall.sum() > 50:
        # Enhancing organs (kidney, liver, spleen with iodine) sit in the muscle window but well above the
        # patient's own muscle, measured on the wall: drop what is > ENHANCED_HU above it (local mean).
        ref = float(np.median(hu[wall]))
        # The mean is over ~3.5 mm (at least 3x3 pixels); pixels whose window reaches bone are left alone,
        # their mean is raised by the bone itself.
        size = max(3, 2 * int(round(1.75 / dx)) + 1)
        enhanced = np.zeros(hu.shape, dtype=bool)
        ibox = morph.bounding_box(inner, size // 2)  # the window of every inner pixel (reflection as before)
        if ibox is not None:
            enhanced[ibox] = ndi.uniform_filter(hu[ibox], size=size) > ref + ENHANCED_HU
        reach = size // 2 + 1.0
        inner &= ~(enhanced & ~morph.dilate(bone, reach, reach))
    smm = wall | _posterior_muscle(inner, wall, bone_fill, vmask, vertebra_yx, (dy, dx))
    # Intermuscular fat: small fat holes enclosed by skeletal muscle.
    hl, is_hole = morph.hole_labels(smm)  # the holes of smm, one label each
    imat = np.zeros(smm.shape, dtype=bool)
    if is_hole.any():
        areas = np.bincount(hl.ravel(), minlength=len(is_hole)) * px_area
        small = is_hole & (areas < IMAT_MAX_MM2)
        imat = small[hl] & fat
    out[smm] = 1
    out[imat] = 2
    out[fat & fascia & ~imat & ~smm] = 3
    return out_full, _skin_partial_sat(hu, out, body)


def _vertebra_slice_mask(volume: Volume, v: VertebraLabel, k: int) -> np.ndarray | None:
    """The labeller's body mask of ``v`` on slice ``k`` as a full-slice boolean image, or None."""
    if v.body_mask is None:
        return None
    k0, k1, i0, i1, j0, j1 = v.bbox
    if not k0 <= k < k1 or k - k0 >= v.body_mask.shape[0]:
        return None
    m = np.zeros(volume.shape[1:], dtype=bool)
    sub = v.body_mask[k - k0]
    m[i0 : i0 + sub.shape[0], j0 : j0 + sub.shape[1]] = sub
    return m if m.any() else None


def centre_index(volume: Volume, v: VertebraLabel) -> float:
    """Fractional slice index of the body's centre: the area-weighted mean slice of the labeller's
    full-resolution body mask (closer to the mid-plane than the labeller's ~2 mm grid), else its centre."""
    if v.body_mask is not None and v.body_mask.any():
        area = v.body_mask.sum(axis=(1, 2)).astype(float)
        return float(v.bbox[0] + np.sum(area * np.arange(len(area))) / area.sum())
    return float(v.centre_voxel[0])


def measure_level(volume: Volume, v: VertebraLabel) -> BodyComposition:
    """Body composition at the mid-plane of vertebra ``v``.

    The areas are interpolated linearly between the two slices that bracket the mid-plane (the nearer
    slice alone when it lies within 0.5 mm of it, or at the edge of the volume); ``labels`` are those of
    the nearer slice.
    """
    nz = volume.shape[0]
    kc = min(max(centre_index(volume, v), 0.0), nz - 1.0)
    k0 = int(np.floor(kc))
    w = kc - k0
    if k0 + 1 >= nz:
        k0, w = nz - 1, 0.0
    # One slice when the nearer one lies within 0.5 mm of the mid-plane (thin slices), else two.
    gap = abs(volume.z_mm(k0 + 1) - volume.z_mm(k0)) if k0 + 1 < nz else 0.0
    if min(w, 1.0 - w) * gap <= 0.5:
        k0, w = (k0, 0.0) if w <= 0.5 else (k0 + 1, 0.0)
    parts = [(k0, 1.0)] if w == 0.0 else [(k0, 1.0 - w), (k0 + 1, w)]
    _, dy, dx = volume.spacing_mm
    a = dy * dx / 100.0
    acc = dict.fromkeys(("muscle", "imat", "vat", "sat", "hu_sum"), 0.0)
    labels_near: np.ndarray | None = None
    sat_vals: list[np.ndarray] = []
    n_muscle = 0.0
    for k, wt in parts:
        hu = volume.hu[k]
        labels, skin_sat = _segment(hu, (dy, dx), (v.centre_voxel[1], v.centre_voxel[2]),
                                    _vertebra_slice_mask(volume, v, k))
        if labels_near is None or wt > 0.5:
            labels_near = labels
        m = labels == 1
        acc["muscle"] += wt * float(m.sum())
        acc["imat"] += wt * float((labels == 2).sum())
        acc["vat"] += wt * float((labels == 3).sum())
        acc["sat"] += wt * (float((labels == 4).sum()) + skin_sat)
        acc["hu_sum"] += wt * float(hu[m].sum(dtype=np.float64))
        n_muscle += wt * float(m.sum())
        sat_vals.append(hu[labels == 4])
    sat = np.concatenate(sat_vals) if sat_vals else np.zeros(0, dtype=np.float32)
    return BodyComposition(
        level=v.level,
        z_mm=volume.z_mm(kc),
        muscle_area_cm2=acc["muscle"] * a,
        muscle_hu_mean=acc["hu_sum"] / n_muscle if n_muscle > 0 else float("nan"),
        imat_area_cm2=acc["imat"] * a,
        vat_area_cm2=acc["vat"] * a,
        sat_area_cm2=acc["sat"] * a,
        sat_hu_median=float(np.median(sat)) if sat.size > 50 else None,
        labels=labels_near,
    )
