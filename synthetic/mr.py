"""Simple MR series of the lumbar spine: sagittal T1 and T2 spin echo from the same anatomy.

Signal per tissue label (arbitrary units); vertebral marrow gets brighter on T1 as trabecular density
falls (fatty marrow). Planes at x = -6, -3, 0, 3, 6 mm (thickness 3 mm); rows head -> feet (-z), columns
anterior -> posterior (+y); ImageOrientationPatient ``[0, 1, 0, 0, 0, -1]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from synthetic import anatomy as A
from synthetic import dicom_io as io
from synthetic.anatomy import Anatomy
from synthetic.ct_dicom import StudyContext, _base
from synthetic.population import Patient, Study
from synthetic.truth import TruthRows

if TYPE_CHECKING:
    from synthetic.hospital import Archive

_T1 = {A.SAT: 900, A.VAT: 880, A.IMAT: 850, A.MUSCLE: 300, A.SOFT: 320, A.LIVER: 380, A.SPLEEN: 300,
       A.KIDNEY: 330, A.BLOOD: 40, A.GAS: 0, A.DISC: 260, A.CSF: 120, A.CORTEX: 30, A.POST_BONE: 80,
       A.RIB_MARROW: 500, A.BVV: 200, A.LUNG: 20}
_T2 = {A.SAT: 700, A.VAT: 680, A.IMAT: 650, A.MUSCLE: 180, A.SOFT: 400, A.LIVER: 200, A.SPLEEN: 450,
       A.KIDNEY: 500, A.BLOOD: 40, A.GAS: 0, A.DISC: 750, A.CSF: 1300, A.CORTEX: 20, A.POST_BONE: 60,
       A.RIB_MARROW: 400, A.BVV: 500, A.LUNG: 20}
PLANES_X = (-6.0, -3.0, 0.0, 3.0, 6.0)


def _table(values: dict[int, int], p: Patient, at_hu: dict[str, float], t1: bool) -> np.ndarray:
    t = np.zeros(A.N_LABELS, dtype=np.float32)
    for k, v in values.items():
        t[k] = v
    for i, level in enumerate(A.ALL_LEVELS):
        hu = at_hu.get(level, at_hu["T10"])
        t[A.TRAB0 + i] = (420.0 + 1.6 * (200.0 - hu)) if t1 else (330.0 + 0.8 * (200.0 - hu))
    t[A.SACRUM_TRAB] = t[A.TRAB0 + A.ALL_LEVELS.index("L5")]
    return t


def write_mr_study(arc: Archive, truth: TruthRows, seed: int, p: Patient, anat: Anatomy, study: Study,
                   small: bool) -> None:
    """Sagittal T1 and T2 of the lumbar spine (MR Image Storage); series truth only."""
    rng = np.random.default_rng([seed, p.index, study.index, 0x3B])
    pix = 4.0 if small else float(rng.choice([0.9, 1.1]))
    field = str(rng.choice(["1.5", "3"]))
    maker = str(rng.choice(["SIEMENS", "GE MEDICAL SYSTEMS", "Philips"]))
    l3 = anat.vertebra("L3")
    z_top = anat.vertebra("T11").zc
    zs = z_top - pix * np.arange(int((z_top - anat.z_s1 + 60.0) / pix))
    y = l3.yc - 130.0 + pix * np.arange(int(240.0 / pix))
    xs = np.array(PLANES_X)
    labs = np.stack([anat.paint(xs, y, float(z)) for z in zs])  # (nz, ny, nplanes)
    hu = {lv: p.hu_level_120(lv, study.study_date) for lv in A.ALL_LEVELS if lv != "T9"}
    ctx = StudyContext.make(seed, p, study, "MR LUMBAR SPINE")
    for number, (name, values, t1, tr, te) in enumerate(
        (("T1 TSE SAG", _T1, True, 550, 12), ("T2 TSE SAG", _T2, False, 3500, 95)), start=1
    ):
        table = _table(values, p, hu, t1)
        suid = io.uid("series", ctx.study_uid, "mr", number)
        tpl = _base(ctx, "MR", suid, number, name, maker, io.MR_IMAGE, "LSPINE")
        tpl.FrameOfReferenceUID = io.uid("for-mr", ctx.study_uid)
        tpl.ImageType = ["ORIGINAL", "PRIMARY", "M", "NORM"]
        tpl.ScanningSequence, tpl.SequenceVariant, tpl.ScanOptions = "SE", "SK", ""
        tpl.MRAcquisitionType = "2D"
        tpl.RepetitionTime, tpl.EchoTime = str(tr), str(te)
        tpl.MagneticFieldStrength = field
        tpl.ImageOrientationPatient = ["0", "1", "0", "0", "0", "-1"]
        tpl.PixelSpacing = [f"{pix:.4f}", f"{pix:.4f}"]
        tpl.SliceThickness, tpl.SpacingBetweenSlices = "3", "3"
        datasets = []
        for k, xk in enumerate(xs):
            img = table[labs[:, :, k]]
            img = np.abs(img + rng.normal(0.0, 25.0, img.shape))
            ds = io.instance(tpl)
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = [f"{xk:.3f}", f"{y[0]:.3f}", f"{zs[0]:.3f}"]
            ds.SliceLocation = f"{xk:.3f}"
            io.set_pixels(ds, np.clip(np.rint(img), 0, 4095), signed=False, bits_stored=12)
            datasets.append(io.finish(ds, io.uid("sop", suid, k)))
        arc.write_series(p, study, number, datasets, {
            "study_instance_uid": ctx.study_uid, "series_instance_uid": suid, "kind": "mr", "modality": "MR",
            "kvp": None, "contrast_phase": None, "pixel_mm": pix, "slice_mm": 3.0, "manufacturer": maker,
            "kernel": None})
    _ = truth
