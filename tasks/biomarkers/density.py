"""Trabecular attenuation and volumetric BMD per vertebral level.

The region of interest is the inside of the vertebral body, at least 4 mm clear of the cortex, in the
central half of the body's height (of the slices where the body is found; away from the endplates) and
anterior to the posterior 40% of the body, where the basivertebral vein enters.

Calibration (HU -> mg/cm3 K2HPO4-equivalent) is linear. The default is an asynchronous, scanner-agnostic
approximation, ``vBMD = 0.80 * HU`` (slope of typical 120 kVp QCT phantom calibrations, e.g. the
Mindways/Image Analysis phantoms, where 1 HU is about 0.7-0.9 mg/cm3); replace it with a scanner-specific
phantom calibration where one exists. Phantomless internal calibration (:func:`internal_calibration`)
first maps the measured air and subcutaneous fat (or blood) to their nominal values (-1000 HU; -100 HU for
fat, +40 HU for unenhanced blood at 120 kVp), then applies the default slope.

Published effects flagged, not corrected: iodinated contrast raises trabecular HU (portal-venous phase by
roughly 10-25 HU; Pickhardt 2011, DESIGN.md); lower tube voltage raises bone HU (and higher lowers it), so
the 110/160 HU L1 thresholds (Pickhardt 2013) hold for 120 kVp unenhanced scans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.enums import StrValueEnum
from tasks.biomarkers import morphology as morph
from tasks.biomarkers.spine import VertebraLabel
from tasks.dicom.volume import Volume

L1_OSTEOPOROSIS_HU = 110.0
L1_NORMAL_HU = 160.0
DEFAULT_SLOPE_MG_PER_HU = 0.80


class L1Category(StrValueEnum):
    """L1 trabecular attenuation category against the published thresholds (120 kVp, unenhanced)."""

    OSTEOPOROSIS_LIKELY = "osteoporosis_likely"
    INDETERMINATE = "indeterminate"
    NORMAL_LIKELY = "normal_likely"



def l1_category(hu: float) -> L1Category:
    """<=110 HU osteoporosis likely, 110-160 indeterminate (osteopenia), >160 normal likely."""
    if hu <= L1_OSTEOPOROSIS_HU:
        return L1Category.OSTEOPOROSIS_LIKELY
    if hu <= L1_NORMAL_HU:
        return L1Category.INDETERMINATE
    return L1Category.NORMAL_LIKELY


@dataclass(frozen=True)
class Calibration:
    """Linear map: ``vBMD = slope * (gain * HU + offset) + intercept`` (mg/cm3)."""

    slope: float = DEFAULT_SLOPE_MG_PER_HU
    intercept: float = 0.0
    gain: float = 1.0
    offset: float = 0.0
    method: str = "default_linear"

    def vbmd(self, hu: float) -> float:
        return self.slope * (self.gain * hu + self.offset) + self.intercept


@dataclass
class TrabecularMeasure:
    """Trabecular ROI statistics of one level."""

    level: str
    hu_mean: float
    hu_median: float
    hu_sd: float
    roi_volume_mm3: float
    n_voxels: int
    vbmd_mg_cm3: float
    mask: np.ndarray | None = None  # ROI inside the label's bbox


def trabecular_roi(volume: Volume, v: VertebraLabel, clearance_mm: float = 4.0) -> np.ndarray:
    """Boolean ROI inside ``v.bbox`` (see the module docstring for the rules)."""
    k0, k1, i0, i1, j0, j1 = v.bbox
    nk = k1 - k0
    _, dy, dx = volume.spacing_mm
    roi = np.zeros((nk, i1 - i0, j1 - j0), dtype=bool)
    if v.body_mask is None:
        return roi
    # The central half of the body's slices (those where the body mask is found: the labeller's box may
    # reach into the discs), rounded to whole slices; with 3 thick slices only the middle one (the outer
    # ones hold the endplates, whose cortex would raise the mean).
    body = np.nonzero(np.asarray(v.body_mask).any(axis=(1, 2)))[0]
    if not len(body):
        return roi
    b0, nb = k0 + int(body[0]), int(body[-1] - body[0]) + 1
    q0 = b0 + int(np.floor(nb * 0.25 + 0.5))
    q1 = max(q0 + 1, b0 + int(np.floor(nb * 0.75 + 0.5)))
    m = np.asarray(v.body_mask[q0 - k0 : q1 - k0], dtype=bool)
    if not m.any():
        return roi
    # At least ``clearance_mm`` from every pixel outside the body (the EDT >= clearance), slice by slice:
    # an in-plane erosion by the open disk of that radius.
    r = clearance_mm - 1e-6
    inner = morph.erode(m, r / dy, r / dx)
    for k in range(m.shape[0]):
        rows = np.nonzero(m[k].any(axis=1))[0]
        if not len(rows):
            continue
        front, back = rows.min(), rows.max()
        inner[k, front + int(0.6 * (back - front)) :, :] = False
    roi[q0 - k0 : q1 - k0] = inner
    return roi


def measure_trabecular(volume: Volume, v: VertebraLabel, calibration: Calibration | None = None) -> (
    TrabecularMeasure | None
):
    """Trabecular HU statistics and vBMD of one vertebra; None when the ROI is empty."""
    cal = calibration or Calibration()
    roi = trabecular_roi(volume, v)
    n = int(roi.sum())
    if n < 10:
        return None
    k0, k1, i0, i1, j0, j1 = v.bbox
    vals = volume.hu[k0:k1, i0:i1, j0:j1][roi]
    dz, dy, dx = volume.spacing_mm
    mean = float(vals.mean())
    return TrabecularMeasure(
        level=v.level, hu_mean=mean, hu_median=float(np.median(vals)), hu_sd=float(vals.std(ddof=1)),
        roi_volume_mm3=float(n * dz * dy * dx), n_voxels=n, vbmd_mg_cm3=cal.vbmd(mean), mask=roi,
    )


def internal_calibration(volume: Volume, fat_hu: float | None, reference: str = "fat") -> Calibration:
    """Phantomless calibration from air outside the body and a reference tissue.

    Parameters
    ----------
    volume : the CT volume (air is the median of voxels in (-1020, -900) HU, i.e. inside the field of view).
    fat_hu : measured median HU of the reference tissue (subcutaneous fat, or blood when ``reference`` is
        ``"blood"``), e.g. from :mod:`tasks.biomarkers.body_composition`.
    reference : ``"fat"`` (nominal -100 HU) or ``"blood"`` (nominal +40 HU, unenhanced 120 kVp).

    Raises
    ------
    ValueError
        When ``reference`` is unknown or air or the tissue value is missing.
    """
    nominal = {"fat": -100.0, "blood": 40.0}
    if reference not in nominal:
        raise ValueError(f"reference must be 'fat' or 'blood', got {reference!r}")
    if fat_hu is None or not np.isfinite(fat_hu):
        raise ValueError(f"internal calibration: no {reference} HU measured")
    sample = volume.hu[:, ::8, ::8]
    air_vox = sample[(sample > -1020.0) & (sample < -900.0)]
    if air_vox.size < 20:
        raise ValueError("internal calibration: too little air inside the field of view")
    air = float(np.median(air_vox))
    if abs(fat_hu - air) < 100.0:
        raise ValueError(f"internal calibration: {reference} ({fat_hu:.0f} HU) too close to air ({air:.0f} HU)")
    gain = (nominal[reference] + 1000.0) / (fat_hu - air)
    offset = -1000.0 - gain * air
    return Calibration(gain=gain, offset=offset, method=f"internal_air_{reference}")
