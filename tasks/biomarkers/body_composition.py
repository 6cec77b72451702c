"""Body composition on one axial slice (L3, L1): muscle, intermuscular, visceral and subcutaneous fat.

HU windows (Mitsiopoulos 1998; Shen 2004; DESIGN.md): skeletal muscle -29..150 HU, adipose -190..-30 HU.

Classical compartments on the slice through the level's centre:

- body: > -500 HU, largest component, holes filled;
- fascia region: the muscle-window mask (slightly opened to drop skin partial volume) hole-filled; the
  abdominal wall muscles form a closed ring, so this is everything inside the muscular wall;
- subcutaneous fat (SAT): adipose in the body outside the fascia region;
- wall muscle: muscle within the wall thickness of the fascia boundary (thickness estimated from the
  anterior half, where nothing but wall lies against the fascia);
- other skeletal muscle (psoas, quadratus lumborum, paraspinal): muscle-window components inside the
  fascia that touch the wall or the vertebra and lie behind the front of the vertebral body (bowel and
  organs lie in front or float in fat);
- intermuscular fat (IMAT): adipose holes (< 150 mm2) enclosed by muscle;
- visceral fat (VAT): the remaining adipose inside the fascia region.

Notes
-----
Organs lying against the posterior muscles at L1 (kidneys) can be counted as muscle; L3 is the level of
record for sarcopenia (SMI is computed in the warehouse).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from tasks.biomarkers.spine import VertebraLabel
from tasks.dicom.volume import Volume

MUSCLE_HU = (-29.0, 150.0)
ADIPOSE_HU = (-190.0, -30.0)


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


def _largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = ndi.sum_labels(mask, lab, index=np.arange(1, n + 1))
    return np.asarray(lab == (int(np.argmax(sizes)) + 1))


def segment_slice(
    hu: np.ndarray, spacing_yx: tuple[float, float], vertebra_yx: tuple[float, float] | None
) -> np.ndarray:
    """Label image (0 other, 1 muscle, 2 IMAT, 3 VAT, 4 SAT) of one axial HU slice.

    ``vertebra_yx`` is the (row, column) of the vertebral body centre, used to keep posterior muscles.
    """
    dy, dx = spacing_yx
    px_area = dy * dx
    body = ndi.binary_fill_holes(_largest(hu > -500.0))
    muscle = (hu >= MUSCLE_HU[0]) & (hu <= MUSCLE_HU[1]) & body
    fat = (hu >= ADIPOSE_HU[0]) & (hu <= ADIPOSE_HU[1]) & body
    bone = (hu > 200.0) & body
    k = max(1, int(round(1.5 / dx)))
    opened = ndi.binary_opening(muscle, structure=np.ones((2 * k + 1, 2 * k + 1), dtype=bool))
    fascia = ndi.binary_fill_holes(_largest(opened | bone) if opened.any() else opened)
    fascia = _largest(fascia) if fascia.any() else fascia
    out = np.zeros(hu.shape, dtype=np.uint8)
    out[fat & ~fascia] = 4
    if not fascia.any():
        return out
    dist = ndi.distance_transform_edt(fascia, sampling=(dy, dx))
    rows = np.nonzero(fascia.any(axis=1))[0]
    front = rows.min() + (rows.max() - rows.min()) // 2
    # Wall thickness: first 1-mm shell (anterior half) where muscle no longer dominates.
    ant = np.zeros_like(fascia)
    ant[:front] = True
    shells = np.minimum((dist / 1.0).astype(int), 60)
    sel = fascia & ant
    tot = np.bincount(shells[sel], minlength=61).astype(float)
    mus = np.bincount(shells[sel & muscle], minlength=61).astype(float)
    frac = np.divide(mus, tot, out=np.zeros_like(mus), where=tot > 0)
    wall_mm = 8.0
    for s in range(2, 60):
        if tot[s] > 0 and frac[s] < 0.5:
            wall_mm = float(s)
            break
    wall = muscle & (dist <= wall_mm + 0.5)
    inner = muscle & fascia & ~wall
    lab, n = ndi.label(inner)
    keep = np.zeros(n + 1, dtype=bool)
    if n and vertebra_yx is not None:
        vy = vertebra_yx[0]
        touch = ndi.binary_dilation(wall | bone, iterations=max(1, int(round(2.0 / dx))))
        touching = np.unique(lab[touch & inner])
        cy = ndi.center_of_mass(inner, lab, index=np.arange(1, n + 1))
        body_front = vy - 20.0 / dy
        for idx in touching:
            if idx > 0 and cy[idx - 1][0] >= body_front:
                keep[idx] = True
    smm = wall | keep[lab]
    # Intermuscular fat: small fat holes enclosed by skeletal muscle.
    holes = ndi.binary_fill_holes(smm) & ~smm
    hl, hn = ndi.label(holes)
    imat = np.zeros_like(holes)
    if hn:
        areas = ndi.sum_labels(holes, hl, index=np.arange(1, hn + 1)) * px_area
        small = np.r_[False, areas < 150.0]
        imat = small[hl] & fat
    out[smm] = 1
    out[imat] = 2
    out[fat & fascia & ~imat & ~smm] = 3
    return out


def measure_level(volume: Volume, v: VertebraLabel) -> BodyComposition:
    """Body composition on the axial slice nearest to the centre of vertebra ``v``."""
    k = int(round(v.centre_voxel[0]))
    k = min(max(k, 0), volume.shape[0] - 1)
    hu = volume.hu[k]
    _, dy, dx = volume.spacing_mm
    labels = segment_slice(hu, (dy, dx), (v.centre_voxel[1], v.centre_voxel[2]))
    a = dy * dx / 100.0
    m = labels == 1
    sat = labels == 4
    return BodyComposition(
        level=v.level,
        z_mm=float(volume.slice_z_mm[k]),
        muscle_area_cm2=float(m.sum() * a),
        muscle_hu_mean=float(hu[m].mean()) if m.any() else float("nan"),
        imat_area_cm2=float((labels == 2).sum() * a),
        vat_area_cm2=float((labels == 3).sum() * a),
        sat_area_cm2=float(sat.sum() * a),
        sat_hu_median=float(np.median(hu[sat])) if sat.sum() > 50 else None,
        labels=labels,
    )
