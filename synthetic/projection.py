"""Projection images from the same anatomy: lateral spine radiograph (DX/CR), DXA hip and DXA spine.

Lateral spine radiograph: a parallel-beam projection along x (no magnification: ImagerPixelSpacing equals
the anatomy scale, EstimatedRadiographicMagnificationFactor 1.0). Columns run anterior -> posterior (+y),
rows head -> feet. Attenuation is painted in detail inside |x| <= 75 mm; the soft tissue outside is the
analytic chord of the skin ellipse. Truth heights are the anatomy heights in mm (detector plane equals the
mid-sagittal plane); truth ``z_mm`` of a DX row is the distance from the centre of the first image row
down to the level centre.

DXA images are Secondary Capture objects with Modality ``BMD``; pixels are areal BMD in mg/cm^2
(RescaleSlope 0.001 -> g/cm^2). Hip: BodyPartExamined ``HIP``, SeriesDescription ``DXA LEFT HIP``; spine:
``LSPINE`` / ``DXA AP SPINE L1-L4``. The femur geometry and its truth live in :mod:`synthetic.femur`.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from synthetic import anatomy as A
from synthetic import dicom_io as io
from synthetic.anatomy import Anatomy
from synthetic.ct import hu_table
from synthetic.ct_dicom import StudyContext, _base
from synthetic.femur import femur_for, render_hip
from synthetic.population import LEVELS, Patient, Study
from synthetic.truth import TruthRows

if TYPE_CHECKING:
    from synthetic.hospital import Archive

MU_WATER = 0.02  # 1/mm at radiographic energies
BONE_CONTRAST = 3.0  # bone HU excess is tripled in the radiograph relative to CT


def lateral_projection(anat: Anatomy, table: np.ndarray, y: np.ndarray, zs: np.ndarray) -> np.ndarray:
    """Line integral of attenuation along x for rows ``zs`` (head first) and columns ``y`` (mm).

    The sacral promontory gets its endplate: the top ``CORTEX_MM`` of the S1 body is cortex, as in a real
    sacrum (the shared anatomy paints the sacral body's top as trabecular bone, which leaves a radiograph
    without the S1 endplate line that readers count the lumbar levels from).
    """
    dx = 1.0
    xs = np.arange(-75.0, 75.0 + 1e-6, dx)
    radio = table.copy()
    bone = [A.CORTEX, A.POST_BONE, A.RIB_MARROW, A.SACRUM_TRAB, *range(A.TRAB0, A.TRAB0 + len(A.ALL_LEVELS))]
    radio[bone] *= BONE_CONTRAST  # photoelectric bone contrast at radiographic energies
    mu_of = np.clip(radio + 1000.0, 0.0, None) / 1000.0 * MU_WATER
    s = anat.skin
    chord = 2.0 * s.ax * np.sqrt(np.clip(1.0 - ((y - s.cy) / s.ay) ** 2, 0.0, None))
    outside = np.clip(chord - 2.0 * 75.0, 0.0, None) * 0.95 * MU_WATER
    l5 = anat.vertebra("L5")
    out = np.empty((len(zs), len(y)), dtype=np.float32)
    for k, z in enumerate(zs):
        lab = anat.paint(xs, y, float(z))  # (ny, nx)
        dz = anat.z_s1 - float(z)
        if 0.0 <= dz <= A.CORTEX_MM:  # S1 superior endplate (the sacral body ellipse of the anatomy)
            yc = l5.yc + 0.6 * dz
            w, d = l5.width * (1.0 - 0.4 * dz / 100.0), l5.depth * (1.0 - 0.45 * dz / 100.0)
            body = ((xs[None, :] / (w / 2.0)) ** 2 + ((y[:, None] - yc) / (d / 2.0)) ** 2) <= 1.0
            lab = np.where(body & (lab == A.SACRUM_TRAB), A.CORTEX, lab)
        out[k] = mu_of[lab].sum(axis=1) * dx + outside
    return out


def lateral_radiograph(p: Patient, anat: Anatomy, at: date, pix: float, rng: np.random.Generator,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stored pixel values (0-4095) of a lateral lumbar radiograph, its row positions ``zs`` (patient z of
    each row, head first) and column positions ``y`` (mm, anterior -> posterior).

    The field of view runs from 15-40 mm above T10 to 40-70 mm below the top of S1 (the sacrum is always
    in view, as on a lumbar spine film). Processing: the log signal (line integral) windowed linearly to
    its 2nd-99.8th percentiles, as a FOR PRESENTATION image; quantum noise SD 25.
    """
    l3 = anat.vertebra("L3")
    z_top = anat.vertebra("T10").z_max + float(rng.uniform(15, 40))
    z_bot = anat.z_s1 - float(rng.uniform(40, 70))
    zs = z_top - pix * np.arange(int((z_top - z_bot) / pix))
    y = l3.yc - 170.0 + pix * np.arange(int(300.0 / pix))
    table = hu_table(p, at, 80, "none", 0.0)
    proj = lateral_projection(anat, table, y, zs)
    lo, hi = np.percentile(proj, [2.0, 99.8])  # processing: log signal windowed to the anatomy
    img = 4095.0 * np.clip((proj - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    img += rng.normal(0.0, 25.0, img.shape)
    return np.clip(np.rint(img), 0, 4095), zs, y


def write_dx_study(arc: Archive, truth: TruthRows, seed: int, p: Patient, anat: Anatomy, study: Study,
                   small: bool) -> None:
    """One lateral lumbar spine radiograph (DX or CR) with vertebrae truth rows."""
    rng = np.random.default_rng([seed, p.index, study.index, 0xD7])
    cr = bool(rng.random() < 0.35)
    pix = 2.0 if small else float(rng.choice([0.8, 1.0]))
    img, zs, _ = lateral_radiograph(p, anat, study.study_date, pix, rng)
    ctx = StudyContext.make(seed, p, study, "XR LUMBAR SPINE 2 VIEWS")
    suid = io.uid("series", ctx.study_uid, "dx")
    modality, sop = ("CR", io.CR_IMAGE) if cr else ("DX", io.DX_PRESENTATION)
    maker = str(rng.choice(["Carestream Health", "FUJIFILM Corporation", "Agfa", "Philips Medical Systems"]))
    ds = _base(ctx, modality, suid, 1, "L-SPINE LAT", maker, sop, "LSPINE")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ViewPosition = "LL"
    ds.PatientOrientation = ["P", "F"]
    ds.ImagerPixelSpacing = [f"{pix:.4f}", f"{pix:.4f}"]
    ds.EstimatedRadiographicMagnificationFactor = "1.0"
    ds.DistanceSourceToDetector = "1500"
    ds.DistanceSourceToPatient = "1500"
    ds.KVP = "85"
    ds.InstanceNumber = 1
    if not cr:
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.WindowCenter, ds.WindowWidth = "2048", "4096"
    io.set_pixels(ds, np.clip(np.rint(img), 0, 4095), signed=False, bits_stored=12)
    ds = io.finish(ds, io.uid("sop", suid, 0))
    arc.write_series(p, study, 1, [ds], {
        "study_instance_uid": ctx.study_uid, "series_instance_uid": suid, "kind": "dx_lateral_spine",
        "modality": modality, "kvp": 85, "contrast_phase": None, "pixel_mm": pix, "slice_mm": None,
        "manufacturer": maker, "kernel": None})
    for level in LEVELS:
        v = anat.vertebra(level)
        if v.z_max > zs[0] or v.z_min < zs[-1]:
            continue
        ha, hm, hp = v.heights()
        truth.add("vertebrae", {
            "series_instance_uid": suid, "level": level, "z_mm": float(zs[0] - v.zc), "trabecular_hu": None,
            "trabecular_hu_120": float(p.hu_level_120(level, study.study_date)), "height_anterior_mm": ha,
            "height_middle_mm": hm, "height_posterior_mm": hp, "genant_grade": v.grade,
            "fracture_type": v.fracture})


def fbm_texture(rng: np.random.Generator, shape: tuple[int, int], hurst: float) -> np.ndarray:
    """Fractional-Brownian-like field (spectral synthesis, power ~ f^-(2H+2)); zero mean, unit SD."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    amp = f ** (-(2.0 * hurst + 2.0) / 2.0)
    amp[0, 0] = 0.0
    spec = amp * np.exp(2j * np.pi * rng.random(amp.shape))
    field = np.fft.irfft2(spec, s=shape)
    return (field - field.mean()) / max(float(field.std()), 1e-12)


def variogram_slope(img: np.ndarray, mask: np.ndarray, lags: tuple[int, ...] = (1, 2, 3, 4)) -> float:
    """Slope of log mean squared increment vs log lag (pixels), horizontal and vertical pairs inside
    ``mask``: the TBS-like texture index used for ``tbs_true``."""
    v = []
    for h in lags:
        d1 = (img[:, h:] - img[:, :-h])[mask[:, h:] & mask[:, :-h]]
        d2 = (img[h:, :] - img[:-h, :])[mask[h:, :] & mask[:-h, :]]
        v.append(float(np.mean(np.r_[d1, d2] ** 2)))
    return float(np.polyfit(np.log(lags), np.log(v), 1)[0])


# Hurst exponents of the trabecular texture: 2 H is about the TBS (normal >= 1.35, degraded <= 1.2)
HURST_NORMAL: tuple[float, float] = (0.70, 0.77)
HURST_DEGRADED: tuple[float, float] = (0.49, 0.58)
DXA_BLUR_MM = 0.6  # detector and focal-spot blur of a DXA scanner (Gaussian sigma)


def spine_abmd(anat: Anatomy, p: Patient, at: date, x: np.ndarray, zs: np.ndarray,
               texture: np.ndarray, tex_amp: float) -> tuple[np.ndarray, np.ndarray]:
    """AP areal BMD image (mg/cm^2) of the lumbar spine and the L1-L4 body mask.

    Body chords are integrated on a 0.1 mm grid and the pedicles are solid cylinders (chord profile, no
    hard edge); the anatomy is blurred by the scanner (``DXA_BLUR_MM``) before the trabecular texture
    modulates it, so that the only fine-scale structure inside a body is the texture (the texture's
    variogram slope, not quantisation steps or edges, is what the TBS index measures).
    """
    from scipy import ndimage as ndi

    img = np.zeros((len(zs), len(x)))
    mask = np.zeros(img.shape, dtype=bool)
    step = 0.1
    for v in anat.vertebrae:
        if v.level not in ("T12", "L1", "L2", "L3", "L4", "L5"):
            continue
        ys = np.arange(v.yc - v.depth / 2, v.yc + v.depth / 2, step) + step / 2
        u = (ys - v.yc) / (v.depth / 2)
        rows = (zs >= v.z_min - 1) & (zs <= v.z_max + 1)
        cols = np.abs(x) <= v.width / 2
        zz = zs[rows][:, None, None]
        xx = x[cols][None, :, None]
        inside = ((xx / (v.width / 2)) ** 2 + u[None, None, :] ** 2 <= 1.0)
        inside = inside & (zz >= v.bottom(u)[None, None, :]) & (zz <= v.top(u)[None, None, :])
        chord_cm = inside.sum(axis=2) * step / 10.0
        dens = 1.9 * p.hu_level_120(v.level if v.level in LEVELS else "T12", at)  # mg/cm^3 (about 1.9 x HU)
        block = chord_cm * dens
        if v.level in ("L1", "L2", "L3", "L4"):
            mask[np.ix_(rows, cols)] |= chord_cm > 0.5 * v.depth / 10
        img[np.ix_(rows, cols)] += block
        # pedicles: two dense cylinders (chord profile) in the upper half of the body
        for sgn in (-1.0, 1.0):
            r2 = ((x[None, :] - sgn * 15.0) / 4.5) ** 2 + ((zs[:, None] - v.zc - 0.2 * v.h_post) / 7.0) ** 2
            img += 250.0 * np.sqrt(np.clip(1.0 - r2, 0.0, None))
    pix = float(abs(x[1] - x[0])) if len(x) > 1 else 1.0
    img = ndi.gaussian_filter(img, DXA_BLUR_MM / pix)
    img *= 1.0 + tex_amp * texture * (img > 0)
    return img, mask


def texture_slope(texture: np.ndarray, mask: np.ndarray) -> float:
    """``tbs_true``: log-log variogram slope of the trabecular texture itself inside the L1-L4 mask, at lags
    of 1-4 mm (2-8 pixels of 0.5 mm). For the fractional-Brownian texture it is close to 2 H, which puts
    normal microarchitecture (``HURST_NORMAL``) at about 1.35-1.5 and degraded (``HURST_DEGRADED``) at
    about 1.0-1.2, the ranges of real TBS."""
    return variogram_slope(texture, mask, (2, 4, 6, 8))


def write_dxa_study(arc: Archive, truth: TruthRows, seed: int, p: Patient, anat: Anatomy, study: Study,
                    small: bool) -> None:
    """DXA left hip and AP lumbar spine (Secondary Capture, Modality BMD) with hip and texture truth."""
    rng = np.random.default_rng([seed, p.index, study.index, 0xDA])
    ctx = StudyContext.make(seed, p, study, "DXA BONE DENSITY")
    maker = str(rng.choice(["HOLOGIC", "GE Healthcare"]))
    pix = 1.0 if small else 0.5
    # hip
    femur = femur_for(p)
    hip, _ = render_hip(femur, p, study.study_date, pix)
    hip += rng.normal(0.0, 8.0, hip.shape)
    suid = io.uid("series", ctx.study_uid, "hip")
    _write_dxa(arc, p, study, ctx, 1, suid, hip, pix, maker, "HIP", "DXA LEFT HIP")
    truth.add("hip_geometry", {"series_instance_uid": suid, **femur.truth()})
    # spine with trabecular texture
    x = np.arange(-60.0, 60.0, pix) + pix / 2
    l1, l4 = anat.vertebra("L1"), anat.vertebra("L4")
    zs = (l1.z_max + 35.0) - pix * np.arange(int((l1.z_max - l4.z_min + 70.0) / pix))
    age = p.age_at(study.study_date)
    p_deg = 1.0 / (1.0 + np.exp(1.2 * p.bmd_z + 1.0 - 0.04 * (age - 65.0)))
    degraded = bool(rng.random() < p_deg)
    hurst = float(rng.uniform(*HURST_DEGRADED) if degraded else rng.uniform(*HURST_NORMAL))
    tex = fbm_texture(rng, (len(zs), len(x)), hurst)
    spine, mask = spine_abmd(anat, p, study.study_date, x, zs, tex, 0.12)
    tbs = texture_slope(tex, mask)
    spine += rng.normal(0.0, 4.0, spine.shape)
    suid = io.uid("series", ctx.study_uid, "spine")
    _write_dxa(arc, p, study, ctx, 2, suid, spine, pix, maker, "LSPINE", "DXA AP SPINE L1-L4")
    truth.add("texture", {"series_instance_uid": suid, "microarchitecture": "degraded" if degraded else "normal",
                          "tbs_true": tbs})


def _write_dxa(arc: Archive, p: Patient, study: Study, ctx: StudyContext, number: int, suid: str,
               img: np.ndarray, pix: float, maker: str, part: str, desc: str) -> None:
    ds = _base(ctx, "BMD", suid, number, desc, maker, io.SECONDARY_CAPTURE, part)
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.PixelSpacing = [f"{pix:.4f}", f"{pix:.4f}"]
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "0.001", "G/CM2"
    io.set_pixels(ds, np.clip(np.rint(img), 0, 65535), signed=False)
    ds = io.finish(ds, io.uid("sop", suid, 0))
    arc.write_series(p, study, number, [ds], {
        "study_instance_uid": ctx.study_uid, "series_instance_uid": suid,
        "kind": "dxa_hip" if part == "HIP" else "dxa_spine", "modality": "BMD", "kvp": None,
        "contrast_phase": None, "pixel_mm": pix, "slice_mm": None, "manufacturer": maker, "kernel": None})


_ = A  # labels are used through hu_table
