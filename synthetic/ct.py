"""Axial CT renderer of the synthetic hospital, its reformats (sagittal, localizer) and the CT truth.

Attenuation model (documented in ``synthetic/README.md``): each tissue label of :mod:`synthetic.anatomy`
has a value at 120 kVp without contrast; bone (trabecular, cortical, posterior elements) is multiplied by
:data:`KVP_BONE_FACTOR` (lower kVp raises bone HU), fat is shifted by :data:`KVP_FAT_SHIFT`, and iodine adds
:data:`CONTRAST_ADD` per phase scaled by :data:`IODINE_FACTOR`. Trabecular bone gains the study's
``trab_contrast_hu`` (arterial 3-8 HU, portal venous 10-25 HU) times the iodine factor. So the imaged
trabecular value of a level is ``hu_level_120 * KVP_BONE_FACTOR[kvp] + trab_contrast_hu * IODINE_FACTOR[kvp]``.

Image formation (physical, deterministic): each pixel is the mean attenuation over its footprint. The
anatomy is sampled on a sub-pixel grid (<= 0.5 mm in a window around the column: bodies, canal, posterior
elements, rib heads, sacrum; <= 1 mm elsewhere) and averaged to the pixel; near bone the slice thickness
is integrated with sub-planes every <= 0.25 mm (a near-continuous box slice profile, so that an endplate's
position inside a slice is kept in the partial-volume value). Then the kernel's in-plane PSF is applied
in mm (Gaussian, FWHM 0.7 mm sharp, 1.1 mm soft, whatever the pixel size), thick slices are the mean of the
thin noise-free planes they cover, and white or correlated Gaussian noise is added. Thin structures (the
1.2 mm cortex at 3 mm pixels) are therefore continuous with reduced contrast (partial volume), as a
scanner shows them. The truth comes from the geometry, never from the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date

import numpy as np
from scipy import ndimage

from synthetic import anatomy as A
from synthetic.anatomy import Anatomy, build_anatomy
from synthetic.population import LEVELS, Patient

KVP_BONE_FACTOR: dict[int, float] = {80: 1.28, 100: 1.12, 120: 1.0, 140: 0.93}
KVP_FAT_SHIFT: dict[int, float] = {80: -12.0, 100: -5.0, 120: 0.0, 140: 3.0}
IODINE_FACTOR: dict[int, float] = {80: 1.6, 100: 1.25, 120: 1.0, 140: 0.85}
CONTRAST_PHASES: tuple[str, ...] = ("none", "arterial", "portal_venous")
# HU added by iodine at 120 kVp: blood, liver, spleen, kidney, muscle, bowel wall / soft tissue.
CONTRAST_ADD: dict[str, dict[int, float]] = {
    "none": {},
    "arterial": {A.BLOOD: 260.0, A.BVV: 200.0, A.KIDNEY: 120.0, A.SPLEEN: 40.0, A.LIVER: 15.0, A.MUSCLE: 3.0,
                 A.SOFT: 10.0},
    "portal_venous": {A.BLOOD: 130.0, A.BVV: 120.0, A.KIDNEY: 110.0, A.SPLEEN: 65.0, A.LIVER: 55.0,
                      A.MUSCLE: 8.0, A.SOFT: 25.0},
}
_BASE_HU: dict[int, float] = {
    A.AIR: -1000.0, A.LUNG: -850.0, A.SAT: -105.0, A.VAT: -92.0, A.IMAT: -85.0, A.SOFT: 30.0,
    A.LIVER: 58.0, A.SPLEEN: 48.0, A.KIDNEY: 32.0, A.BLOOD: 42.0, A.GAS: -950.0, A.DISC: 85.0, A.CSF: 12.0,
    A.CORTEX: 950.0, A.POST_BONE: 520.0, A.RIB_MARROW: 200.0, A.BVV: 45.0, A.TABLE: 180.0,
}
_BONE = (A.CORTEX, A.POST_BONE, A.RIB_MARROW)
_FAT = (A.SAT, A.VAT, A.IMAT)
KERNELS: dict[str, tuple[tuple[str, str], ...]] = {  # manufacturer -> (soft kernel, sharp kernel) choices
    "SIEMENS": (("B30f", "B70f"), ("Br40", "Br64")),
    "GE MEDICAL SYSTEMS": (("STANDARD", "BONE"), ("SOFT", "LUNG")),
    "Philips": (("B", "YC"), ("C", "D")),
    "Canon Medical Systems": (("FC03", "FC30"), ("FC08", "FC52")),
}
MODELS: dict[str, str] = {
    "SIEMENS": "SOMATOM Definition AS", "GE MEDICAL SYSTEMS": "Revolution CT", "Philips": "iCT 256",
    "Canon Medical Systems": "Aquilion ONE",
}


@dataclass(frozen=True)
class CTParams:
    """Acquisition and reconstruction parameters of one axial CT series."""

    kvp: int = 120
    contrast: str = "none"
    trab_contrast_hu: float = 0.0
    fov_mm: float = 400.0
    pixel_mm: float = 0.78125
    slice_mm: float = 2.5
    z_start: float = -400.0  # lowest slice position (mm)
    z_end: float = -100.0  # highest slice position (mm)
    center_x: float = 0.0
    center_y: float = 0.0
    manufacturer: str = "SIEMENS"
    kernel: str = "B30f"
    sharp: bool = False
    noise_sd: float = 15.0
    correlated: bool = False
    signed: bool = True
    intercept: float = -1024.0
    syntax: str = "explicit"
    tilt_deg: float = 0.0
    drop_tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def matrix(self) -> int:
        return int(min(512, max(16, round(self.fov_mm / self.pixel_mm))))

    @property
    def spacing(self) -> float:
        """In-plane pixel spacing actually used (FOV / matrix)."""
        return self.fov_mm / self.matrix

    def positions(self) -> np.ndarray:
        """Slice positions (mm), head first (descending z), as a scanner writes them."""
        n = int(np.floor((self.z_end - self.z_start) / self.slice_mm + 1e-6)) + 1
        return self.z_end - self.slice_mm * np.arange(n)


def hu_table(p: Patient, at: date, kvp: int, contrast: str, trab_contrast_hu: float) -> np.ndarray:
    """HU of every anatomy label for patient ``p`` imaged on ``at`` at ``kvp`` in ``contrast`` phase."""
    if kvp not in KVP_BONE_FACTOR:
        raise ValueError(f"kvp must be one of {sorted(KVP_BONE_FACTOR)}, got {kvp}")
    if contrast not in CONTRAST_ADD:
        raise ValueError(f"contrast must be one of {CONTRAST_PHASES}, got {contrast!r}")
    t = np.zeros(A.N_LABELS, dtype=np.float32)
    for lab, v in _BASE_HU.items():
        t[lab] = v
    t[A.MUSCLE] = p.muscle_hu
    for lab in _BONE:
        t[lab] *= KVP_BONE_FACTOR[kvp]
    for lab in _FAT:
        t[lab] += KVP_FAT_SHIFT[kvp]
    for lab, add in CONTRAST_ADD[contrast].items():
        t[lab] += add * IODINE_FACTOR[kvp]
    for i, level in enumerate(A.ALL_LEVELS):
        t[A.TRAB0 + i] = trabecular_truth(p, at, level, kvp, trab_contrast_hu)
    t[A.SACRUM_TRAB] = trabecular_truth(p, at, "L5", kvp, trab_contrast_hu) - 5.0
    return t


def trabecular_truth(p: Patient, at: date, level: str, kvp: int, trab_contrast_hu: float) -> float:
    """Imaged trabecular HU of ``level``: 120 kVp value times the kVp factor plus the iodine term."""
    lev = level if level in LEVELS else "T10"
    hu120 = p.hu_level_120(lev, at) + (4.0 if level == "T9" else 0.0)
    return float(hu120 * KVP_BONE_FACTOR[kvp] + trab_contrast_hu * IODINE_FACTOR[kvp])


def grid(params: CTParams) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x columns, y rows) of the axial matrix (mm)."""
    n, s = params.matrix, params.spacing
    x = params.center_x - params.fov_mm / 2.0 + s * (np.arange(n) + 0.5)
    y = params.center_y - params.fov_mm / 2.0 + s * (np.arange(n) + 0.5)
    return x, y


def paint_table(lab: np.ndarray, y: np.ndarray, anat: Anatomy) -> None:
    """The scanner table: a 10 mm board 15 mm behind the patient's back."""
    y_back = anat.skin.cy + anat.skin.ay
    rows = (y >= y_back + 15.0) & (y <= y_back + 25.0)
    lab[rows, :] = np.where(lab[rows, :] == A.AIR, A.TABLE, lab[rows, :])


FINE_MM = 0.5  # sub-pixel step near bone (vertebrae, posterior elements, rib heads, sacrum)
SOFT_FINE_MM = 1.0  # sub-pixel step elsewhere (soft tissue edges)
# Spacing of the sub-planes integrated across the slice near bone: a scanner's slice sensitivity profile is
# continuous (about a box of the slice thickness), and at 1 mm the partial-volume value of a slice holding
# a 1.2 mm endplate cortex came in thirds (2.5 mm) or fifths (5 mm), so that where the endplate lay inside
# the slice could not be recovered from the image. At 0.25 mm the steps are 0.1 (2.5 mm) or 0.05 (5 mm)
# of a slice: below the noise. Rendering near bone costs about twice as much as at 1 mm.
SUB_SLICE_MM = 0.25
PSF_FWHM_MM: dict[bool, float] = {True: 0.7, False: 1.1}  # sharp / soft kernel, in-plane system PSF


def _fine_axis(lo_edge: float, step: float, i0: int, i1: int, f: int) -> np.ndarray:
    """Centres of ``f`` equal sub-samples of each pixel ``i0..i1-1`` of an axis starting at ``lo_edge``."""
    return lo_edge + (step / f) * (np.arange(i0 * f, i1 * f) + 0.5)


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return a
    ny, nx = a.shape[0] // f, a.shape[1] // f
    return a.reshape(ny, f, nx, f).mean(axis=(1, 3), dtype=np.float32)


def _bone_window(anat: Anatomy, z: float) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) mm around the column at ``z``: body, canal, posterior elements, rib heads, sacrum."""
    v = min(anat.vertebrae, key=lambda w: abs(w.zc - z))
    back = 0.6 * max(anat.z_s1 - z, 0.0)  # the sacrum tilts backwards below S1
    return -72.0, 72.0, v.yc - v.depth / 2.0 - 12.0, v.yc + v.depth / 2.0 + 64.0 + back


def render_clean(anat: Anatomy, table: np.ndarray, params: CTParams, zs: np.ndarray,
                 thickness: float | None = None) -> np.ndarray:
    """Noise-free HU planes (len(zs), ny, nx) at positions ``zs`` before the kernel PSF.

    Each pixel is the mean attenuation over its footprint: the anatomy is sampled on a sub-pixel grid
    (<= :data:`FINE_MM` in a window around the column, <= :data:`SOFT_FINE_MM` elsewhere) and averaged
    to the pixel; near bone the slice thickness is integrated with sub-planes every <= :data:`SUB_SLICE_MM`
    (a near-continuous box slice-sensitivity profile: an endplate anywhere inside a slice moves its value).
    So a 1.2 mm cortex at 3 mm pixels is a continuous ring of reduced contrast (partial volume), as a
    scanner shows it, not a dotted ring. Deterministic.
    """
    s, n = params.spacing, params.matrix
    x0e = params.center_x - params.fov_mm / 2.0
    y0e = params.center_y - params.fov_mm / 2.0
    th = params.slice_mm if thickness is None else thickness
    n_sub = max(1, int(np.ceil(th / SUB_SLICE_MM - 1e-9)))
    offs = (np.arange(n_sub) + 0.5) / n_sub * th - th / 2.0
    fs = max(1, int(np.ceil(s / SOFT_FINE_MM - 1e-9)))
    fb = max(1, int(np.ceil(s / FINE_MM - 1e-9)))
    xs_all, ys_all = _fine_axis(x0e, s, 0, n, fs), _fine_axis(y0e, s, 0, n, fs)
    out = np.empty((len(zs), n, n), dtype=np.float32)
    tan = np.tan(np.radians(params.tilt_deg))
    z_ref = float(zs[0]) if len(zs) else 0.0
    for k, z in enumerate(zs):
        shift = (z - z_ref) * tan  # gantry tilt: each plane sheared along y
        ys = ys_all + shift
        lab = anat.paint(xs_all, ys, float(z))
        paint_table(lab, ys, anat)
        plane = _block_mean(np.take(table, lab), fs)
        wx0, wx1, wy0, wy1 = _bone_window(anat, float(z))
        j0, j1 = max(0, int((wx0 - x0e) // s)), min(n, int((wx1 - x0e) // s) + 1)
        i0, i1 = max(0, int((wy0 - shift - y0e) // s)), min(n, int((wy1 - shift - y0e) // s) + 1)
        if j1 > j0 and i1 > i0:
            xf = _fine_axis(x0e, s, j0, j1, fb)
            yf = _fine_axis(y0e, s, i0, i1, fb) + shift
            acc = np.zeros((len(yf), len(xf)), dtype=np.float32)
            for o in offs:
                acc += np.take(table, anat.paint(xf, yf, float(z + o)))
            plane[i0:i1, j0:j1] = _block_mean(acc, fb) / n_sub
        out[k] = plane
    return out


def blur_and_noise(clean: np.ndarray, params: CTParams, rng: np.random.Generator) -> np.ndarray:
    """Kernel PSF (Gaussian, FWHM :data:`PSF_FWHM_MM` in mm, whatever the pixel size) in-plane, then
    Gaussian noise (white, or correlated over ~1 mm) with SD ``params.noise_sd``."""
    sigma = PSF_FWHM_MM[params.sharp] / 2.3548 / params.spacing
    img = ndimage.gaussian_filter(clean, sigma=(0, sigma, sigma), mode="nearest", truncate=3.0)
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    if params.correlated:
        ns = max(0.9 * 0.78 / params.spacing, 0.3)
        noise = ndimage.gaussian_filter(noise, sigma=(0, ns, ns))
        noise /= max(float(noise.std()), 1e-6)
    return img + params.noise_sd * noise


def thick_from_thin(thin_clean: np.ndarray, thin_z: np.ndarray, thick_z: np.ndarray,
                    thickness: float) -> np.ndarray:
    """Mean of the noise-free thin planes whose centres fall inside each thick slab."""
    out = np.empty((len(thick_z),) + thin_clean.shape[1:], dtype=np.float32)
    for k, z in enumerate(thick_z):
        sel = np.abs(thin_z - z) <= thickness / 2.0 + 1e-6
        if not sel.any():
            sel = np.abs(thin_z - z) == np.abs(thin_z - z).min()
        out[k] = thin_clean[sel].mean(axis=0)
    return out


def covered_levels(anat: Anatomy, z_lo: float, z_hi: float) -> list[str]:
    """Truth levels T10-L5 whose whole body lies between the lowest and highest slice."""
    return [v.level for v in anat.vertebrae if v.level in LEVELS and v.z_min >= z_lo and v.z_max <= z_hi]


def vertebra_truth(p: Patient, anat: Anatomy, at: date, params: CTParams, levels: list[str]) -> list[dict]:
    """vertebrae.parquet rows (without the series UID) of an axial series covering ``levels``."""
    rows = []
    for level in levels:
        v = anat.vertebra(level)
        ha, hm, hp = v.heights()
        rows.append({
            "level": level, "z_mm": float(v.zc),
            "trabecular_hu": trabecular_truth(p, at, level, params.kvp, params.trab_contrast_hu),
            "trabecular_hu_120": float(p.hu_level_120(level, at)),
            "height_anterior_mm": ha, "height_middle_mm": hm, "height_posterior_mm": hp,
            "genant_grade": int(v.grade), "fracture_type": v.fracture,
        })
    return rows


def body_composition_truth(p: Patient, anat: Anatomy, params: CTParams, level: str,
                           step: float = 0.5) -> dict:
    """Muscle, IMAT, VAT and SAT areas (cm^2) at the level's mid-slice from a fine label mask inside
    the series' field of view, and the imaged muscle HU (muscle tissue without IMAT)."""
    v = anat.vertebra(level)
    x0, y0 = params.center_x - params.fov_mm / 2.0, params.center_y - params.fov_mm / 2.0
    xs = x0 + step * (np.arange(int(params.fov_mm / step)) + 0.5)
    ys = y0 + step * (np.arange(int(params.fov_mm / step)) + 0.5)
    lab = anat.paint(xs, ys, v.zc)
    px = step * step / 100.0
    muscle_hu = p.muscle_hu + CONTRAST_ADD[params.contrast].get(A.MUSCLE, 0.0) * IODINE_FACTOR[params.kvp]
    return {
        "level": level,
        "muscle_area_cm2": float((lab == A.MUSCLE).sum() * px),
        "muscle_hu_mean": float(muscle_hu),
        "imat_area_cm2": float((lab == A.IMAT).sum() * px),
        "vat_area_cm2": float((lab == A.VAT).sum() * px),
        "sat_area_cm2": float((lab == A.SAT).sum() * px),
    }


def default_params(anat: Anatomy, **changes: object) -> CTParams:
    """A 512x512, 2.5 mm, 120 kVp non-contrast series covering T10-S1 of ``anat``."""
    base = CTParams(
        z_start=round(anat.z_s1 - 40.0), z_end=round(anat.vertebra("T10").z_max + 8.0),
        center_y=round(anat.skin.cy),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def render_ct_series(
    patient: Patient, study_date: date, params: CTParams, seed: int, *, anat: Anatomy | None = None,
) -> tuple[list, list[dict]]:
    """One axial CT series of ``patient`` as pydicom datasets, with its vertebrae truth rows.

    Parameters
    ----------
    patient
        A latent patient from :func:`synthetic.population.make_population`.
    study_date
        Date of the study (sets age-dependent trabecular HU and the header dates).
    params
        Scanner and reconstruction parameters; :func:`default_params` gives a 512x512 T10-S1 series.
    seed
        Seed of the noise and the UIDs.

    Returns
    -------
    (datasets, truth)
        Datasets ordered head first; truth rows carry ``series_instance_uid`` and the vertebrae columns.
    """
    from synthetic.ct_dicom import axial_datasets  # local import: ct_dicom imports this module

    anat = anat or build_anatomy(patient)
    table = hu_table(patient, study_date, params.kvp, params.contrast, params.trab_contrast_hu)
    zs = params.positions()
    clean = render_clean(anat, table, params, zs)
    img = blur_and_noise(clean, params, np.random.default_rng([seed, patient.index, 0xC7]))
    datasets, series_uid = axial_datasets(patient, study_date, params, img, zs, seed=seed, tag="bench")
    rows = vertebra_truth(patient, anat, study_date, params, covered_levels(anat, zs.min(), zs.max()))
    for r in rows:
        r["series_instance_uid"] = series_uid
    return datasets, rows
