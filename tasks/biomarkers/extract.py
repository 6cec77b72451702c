"""CT biomarker extraction of one series: volume -> vertebrae -> trabecular density, body composition,
vertebral heights and Genant grades, trabecular texture, QC.

``extract_ct_series(paths)`` is what the extract flow fans out and what ``osteolake extract`` prints.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from schemas.tables.biomarkers import BODY_COMPOSITION, EXTRACTION_RUNS, LEVELS, VERTEBRA_MEASUREMENTS
from schemas.tables.fragility import TEXTURE, VERTEBRAL_FRACTURES
from tasks.biomarkers import body_composition as bc
from tasks.biomarkers import density as dens
from tasks.biomarkers import texture as tex
from tasks.biomarkers import vertebral_fracture as vf
from tasks.biomarkers.qc import qc_png
from tasks.biomarkers.segmentation import Backend, get_backend
from tasks.biomarkers.spine import VertebraLabel
from tasks.dicom.volume import Opener, Volume, load_best_ct_volume

EXTRACTOR = "ct_biomarkers"
EXTRACTOR_VERSION = "0.1.0"
BODY_LEVELS = ("L3", "L1")
CONTRAST_FLAG = "contrast_enhanced"  # portal venous adds ~10-25 HU to trabecular bone (not corrected)
KVP_FLAG = "kvp_not_120"  # lower kVp raises bone HU; thresholds hold at 120 kVp
MIN_CONFIDENCE = 0.5


@dataclass
class CTResult:
    """Everything measured on one CT series."""

    series_instance_uid: str
    study_instance_uid: str
    volume: Volume | None
    vertebrae: list[VertebraLabel]
    trabecular: dict[str, dens.TrabecularMeasure]
    body: dict[str, bc.BodyComposition]
    flags: list[str]
    calibration: dens.Calibration
    selection: dict[str, Any] = field(default_factory=dict)
    fracture: dict[str, dict[str, Any]] = field(default_factory=dict)
    assessments: list[vf.VertebraAssessment] = field(default_factory=list)
    texture: list[tex.RegionTexture] = field(default_factory=list)
    qc_png: bytes | None = None
    seconds: float = 0.0
    status: str = "ok"
    error: str | None = None

    def l1_category(self) -> str | None:
        m = self.trabecular.get("L1")
        return dens.l1_category(m.hu_mean).value if m else None

    def to_json(self) -> dict[str, Any]:
        """The ``osteolake extract --json`` object (key names are a contract)."""
        verts = []
        for v in self.vertebrae:
            if v.level not in LEVELS:
                continue
            m = self.trabecular.get(v.level)
            row: dict[str, Any] = {
                "level": v.level,
                "z_mm": round(v.z_mm, 2),
                "centre_mm": [round(c, 2) for c in v.centre_mm],
                "trabecular_hu_mean": _r(m.hu_mean if m else None),
                "trabecular_hu_median": _r(m.hu_median if m else None),
                "trabecular_hu_sd": _r(m.hu_sd if m else None),
                "roi_volume_mm3": _r(m.roi_volume_mm3 if m else None, 0),
                "vbmd_mg_cm3": _r(m.vbmd_mg_cm3 if m else None),
                "confidence": v.confidence,
                "flags": list(dict.fromkeys(v.flags)),
            }
            row.update(self.fracture.get(v.level, {}))
            verts.append(row)
        body = [
            {
                "level": b.level, "z_mm": round(b.z_mm, 2), "muscle_area_cm2": _r(b.muscle_area_cm2),
                "muscle_hu_mean": _r(b.muscle_hu_mean), "imat_area_cm2": _r(b.imat_area_cm2),
                "vat_area_cm2": _r(b.vat_area_cm2), "sat_area_cm2": _r(b.sat_area_cm2),
            }
            for b in self.body.values()
        ]
        vol = self.volume
        return {
            "series_instance_uid": self.series_instance_uid,
            "study_instance_uid": self.study_instance_uid,
            "extractor": EXTRACTOR,
            "extractor_version": EXTRACTOR_VERSION,
            "status": self.status,
            "selected_series": self.selection,
            "volume": None if vol is None else {
                "shape": list(vol.shape), "spacing_mm": [round(s, 4) for s in vol.spacing_mm],
                "kvp": vol.kvp, "contrast_agent": vol.contrast_agent,
            },
            "vertebrae": verts,
            "body_composition": body,
            "l1_category": self.l1_category(),
            "calibration": self.calibration.method,
            "flags": self.flags,
            "seconds": round(self.seconds, 3),
        }

    def tables(self) -> dict[str, pa.Table]:
        """Warehouse rows keyed by table name, conformed to the declared schemas (no patient identifiers)."""
        uid, study, ver = self.series_instance_uid, self.study_instance_uid, EXTRACTOR_VERSION
        vol = self.volume
        contrast = bool(vol and vol.contrast_agent)
        vrows = []
        for v in self.vertebrae:
            m = self.trabecular.get(v.level)
            if v.level not in LEVELS or m is None:
                continue
            vrows.append({
                "series_instance_uid": uid, "level": v.level, "z_mm": v.z_mm, "trabecular_hu_mean": m.hu_mean,
                "trabecular_hu_median": m.hu_median, "trabecular_hu_sd": m.hu_sd,
                "roi_volume_mm3": m.roi_volume_mm3, "vbmd_mg_cm3": m.vbmd_mg_cm3,
                "calibration": self.calibration.method,
                "l1_category": dens.l1_category(m.hu_mean).value if v.level == "L1" else None,
                "confidence": v.confidence, "is_contrast": contrast, "kvp": vol.kvp if vol else None,
                "qc_flags": ",".join(dict.fromkeys(v.flags)), "study_instance_uid": study, "extractor_version": ver,
            })
        conf = {v.level: v for v in self.vertebrae}
        brows = [
            {
                "series_instance_uid": uid, "level": b.level, "z_mm": b.z_mm, "muscle_area_cm2": b.muscle_area_cm2,
                "muscle_hu_mean": b.muscle_hu_mean, "imat_area_cm2": b.imat_area_cm2,
                "vat_area_cm2": b.vat_area_cm2, "sat_area_cm2": b.sat_area_cm2,
                "confidence": conf[b.level].confidence if b.level in conf else None,
                "qc_flags": ",".join(dict.fromkeys(conf[b.level].flags)) if b.level in conf else "",
                "study_instance_uid": study, "extractor_version": ver,
            }
            for b in self.body.values()
        ]
        run = [{
            "series_instance_uid": uid, "extractor": EXTRACTOR, "extractor_version": ver, "status": self.status,
            "n_slices": vol.shape[0] if vol else None, "slice_mm": vol.spacing_mm[0] if vol else None,
            "pixel_mm": vol.spacing_mm[2] if vol else None, "n_levels_found": len(self.vertebrae),
            "n_levels_measured": len(vrows),
            "min_confidence": min((v.confidence for v in self.vertebrae), default=None),
            "flags": ",".join(self.flags), "error": self.error, "seconds": self.seconds,
            "study_instance_uid": study,
        }]
        fractures = vf.fracture_table(uid, study, self.assessments, "ct", ver)
        texture = tex.texture_table(uid, study, self.texture, "ct", ver)
        return {
            VERTEBRA_MEASUREMENTS.name: VERTEBRA_MEASUREMENTS.conform(_table(vrows, VERTEBRA_MEASUREMENTS)),
            BODY_COMPOSITION.name: BODY_COMPOSITION.conform(_table(brows, BODY_COMPOSITION)),
            VERTEBRAL_FRACTURES.name: fractures,
            TEXTURE.name: texture,
            EXTRACTION_RUNS.name: EXTRACTION_RUNS.conform(_table(run, EXTRACTION_RUNS)),
        }


def _table(rows: list[dict[str, Any]], decl: Any) -> pa.Table:
    if not rows:
        return decl.empty()
    return pa.Table.from_pylist(rows, schema=decl.arrow_schema())


def _r(x: float | None, nd: int = 2) -> float | None:
    if x is None or not np.isfinite(x):
        return None
    return round(float(x), nd)


def measure_volume(
    volume: Volume,
    *,
    backend: Backend | str = Backend.CLASSICAL,
    calibration: str = "default",
    with_qc: bool = True,
    with_fracture: bool = True,
    with_texture: bool = True,
) -> CTResult:
    """Run spine labelling, density, body composition, vertebral fracture heights, trabecular texture and
    QC on a built volume.

    Parameters
    ----------
    calibration : ``"default"`` (0.80 mg/cm3 per HU), ``"internal_fat"`` (air + subcutaneous fat).
    with_fracture : measure vertebral heights and Genant grades (:func:`~tasks.biomarkers.vertebral_fracture.assess_ct`).
    with_texture : GLCM texture of the trabecular bone (:func:`~tasks.biomarkers.texture.ct_trabecular_texture`).
    """
    t0 = time.perf_counter()
    flags = list(volume.flags)
    seg = get_backend(backend)(volume)
    flags.extend(seg.flags)
    verts = seg.vertebrae
    if volume.contrast_agent:
        flags.append(CONTRAST_FLAG)
    if volume.kvp is not None and abs(volume.kvp - 120.0) > 1.0:
        flags.append(KVP_FLAG)
    if any(v.confidence < MIN_CONFIDENCE for v in verts):
        flags.append("low_label_confidence")
    body: dict[str, bc.BodyComposition] = {}
    by_level = {v.level: v for v in verts}
    for level in BODY_LEVELS:
        if level in by_level:
            body[level] = bc.measure_level(volume, by_level[level])
    cal = dens.Calibration()
    if calibration == "internal_fat":
        fat = next((b.sat_hu_median for b in body.values() if b.sat_hu_median is not None), None)
        try:
            cal = dens.internal_calibration(volume, fat, "fat")
        except ValueError:
            flags.append("internal_calibration_failed")
    elif calibration != "default":
        raise ValueError(f"calibration must be 'default' or 'internal_fat', got {calibration!r}")
    trab: dict[str, dens.TrabecularMeasure] = {}
    for v in verts:
        if v.level in LEVELS:
            m = dens.measure_trabecular(volume, v, cal)
            if m is not None:
                trab[v.level] = m
    if not verts:
        flags.append("no_vertebrae_measured")
    assessments: list[vf.VertebraAssessment] = []
    if with_fracture and verts:
        try:
            assessments = vf.assess_ct(volume, verts)  # all levels: those above T10 bound their neighbours
        except Exception as e:  # noqa: BLE001 - another module's failure is recorded, never fatal
            flags.append(f"fracture_assessment_failed:{type(e).__name__}")
    textures: list[tex.RegionTexture] = []
    if with_texture and verts:
        try:
            textures = tex.ct_trabecular_texture(volume, verts)
        except Exception as e:  # noqa: BLE001 - another module's failure is recorded, never fatal
            flags.append(f"texture_failed:{type(e).__name__}")
    png = None
    if with_qc:
        l1 = by_level.get("L1")
        png = qc_png(volume, verts, trab["L1"].mask if "L1" in trab else None, l1,
                     body["L1"].labels if "L1" in body else None)
    status = "ok" if trab else "partial"
    return CTResult(
        series_instance_uid=volume.series_instance_uid, study_instance_uid=volume.study_instance_uid,
        volume=volume, vertebrae=verts, trabecular=trab, body=body, flags=list(dict.fromkeys(flags)),
        calibration=cal, fracture={a.level: a.to_json() for a in assessments}, assessments=assessments,
        texture=textures, qc_png=png, seconds=time.perf_counter() - t0, status=status,
    )


def extract_ct_series(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    opener: Opener | None = None,
    *,
    backend: Backend | str = Backend.CLASSICAL,
    calibration: str = "default",
    with_qc: bool = True,
    with_fracture: bool = True,
    with_texture: bool = True,
) -> CTResult:
    """Extract CT biomarkers from the files of a series (or a folder holding several: the thinnest
    complete axial CT series is chosen and named in ``selected_series``).

    Raises
    ------
    ValueError
        When the paths hold no readable CT series (the message says what was found).
    """
    t0 = time.perf_counter()
    volume, selection = load_best_ct_volume(paths, opener)
    res = measure_volume(volume, backend=backend, calibration=calibration, with_qc=with_qc,
                         with_fracture=with_fracture, with_texture=with_texture)
    res.selection = selection
    res.seconds = time.perf_counter() - t0
    return res
