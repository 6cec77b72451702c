"""Biomarkers of projection images: lateral spine radiographs (DX/CR) and DXA hip / lumbar spine images.

``extract_projection_series(paths)`` is what ``osteolake extract`` calls for a folder that is not a CT
series. Each image is classified from its header (Modality, BodyPartExamined, ViewPosition,
SeriesDescription) and analysed:

- lateral spine radiograph: :mod:`tasks.biomarkers.lateral_spine` finds the bodies (endplate lines, discs
  as darker gaps, expected sizes in mm), counts the levels upwards from the sacrum, and each body is
  measured and graded by :mod:`tasks.biomarkers.vertebral_fracture`;
- DXA hip: :func:`tasks.biomarkers.hip_geometry.measure_hip`;
- DXA lumbar spine: TBS-style variogram index of the L1-L4 bone region (:mod:`tasks.biomarkers.texture`).

Anything else (a chest radiograph, a frontal spine view) is reported with a flag and no measurements.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pydicom
from numpy.typing import NDArray
from scipy import ndimage as ndi

from schemas.tables.biomarkers import EXTRACTION_RUNS
from schemas.tables.fragility import HIP_GEOMETRY, TEXTURE
from tasks.biomarkers import hip_geometry as hg
from tasks.biomarkers.lateral_spine import assess_lateral_spine
from tasks.biomarkers.ranges import enforce_ranges
from tasks.biomarkers.texture import tbs_index
from tasks.biomarkers.vertebral_fracture import VertebraAssessment, fracture_table
from tasks.dicom.volume import Opener, list_files

EXTRACTOR = "projection_biomarkers"
EXTRACTOR_VERSION = "0.3.0"  # 0.3.0: radiograph endplates against the disc; unseen-body gaps
KINDS = ("dx_lateral_spine", "dxa_hip", "dxa_spine", "unsupported")
_SPINE_PARTS = {"LSPINE", "TLSPINE", "TSPINE", "SPINE"}
TBS_LAGS_MM = (1.0, 2.0, 3.0, 4.0)  # variogram lags of the DXA texture index (trabecular scale)


@dataclass
class ProjectionResult:
    """Everything measured on one projection image (one series)."""

    series_instance_uid: str
    study_instance_uid: str
    kind: str
    modality: str
    pixel_mm: float | None
    vertebrae: list[VertebraAssessment] = field(default_factory=list)
    hips: list[hg.HipGeometry] = field(default_factory=list)
    tbs: float | None = None
    texture_pixels: int = 0
    level_confidence: float | None = None
    flags: list[str] = field(default_factory=list)
    status: str = "ok"
    error: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The ``osteolake extract --json`` object of a projection image."""
        return {
            "series_instance_uid": self.series_instance_uid,
            "study_instance_uid": self.study_instance_uid,
            "extractor": EXTRACTOR,
            "extractor_version": EXTRACTOR_VERSION,
            "status": self.status,
            "kind": self.kind,
            "modality": self.modality,
            "pixel_mm": self.pixel_mm,
            "vertebrae": [{"level": v.level, "center_mm": _r(v.body_center_mm), **v.to_json(),
                           "flags": v.flags} for v in self.vertebrae],
            "level_confidence": _r(self.level_confidence),
            "spinal_deformity_index": sum(v.genant_grade or 0 for v in self.vertebrae) if self.vertebrae else None,
            "hip_geometry": [h.to_json() for h in self.hips],
            "tbs_index": _r(self.tbs, 4),
            "flags": self.flags,
            "error": self.error,
            "seconds": round(self.seconds, 3),
        }

    def tables(self) -> dict[str, pa.Table]:
        """Warehouse rows keyed by table name (``vertebral_fractures``, ``hip_geometry``, ``texture``,
        ``extraction_runs``), conformed to the declared schemas; no patient identifiers."""
        uid, study, ver = self.series_instance_uid, self.study_instance_uid, EXTRACTOR_VERSION
        source = "radiograph" if self.kind == "dx_lateral_spine" else "dxa"
        hips = [{
            "series_instance_uid": uid, "side": h.side, "femoral_neck_width_mm": h.femoral_neck_width_mm,
            "hip_axis_length_mm": h.hip_axis_length_mm, "neck_shaft_angle_deg": h.neck_shaft_angle_deg,
            "femoral_head_diameter_mm": h.femoral_head_diameter_mm, "qc_flags": ",".join(h.flags),
            "study_instance_uid": study, "source": source, "extractor_version": ver,
        } for h in self.hips]
        tex = [] if self.tbs is None else [{
            "series_instance_uid": uid, "region": "L1-L4", "tbs_index": self.tbs, "n_pixels": self.texture_pixels,
            "qc_flags": ",".join(self.flags), "study_instance_uid": study, "source": source,
            "extractor_version": ver,
        }]
        run = [{
            "series_instance_uid": uid, "extractor": EXTRACTOR, "extractor_version": ver, "status": self.status,
            "pixel_mm": self.pixel_mm, "n_levels_found": len(self.vertebrae),
            "n_levels_measured": sum(v.genant_grade is not None for v in self.vertebrae),
            "flags": ",".join(self.flags), "error": self.error, "seconds": self.seconds,
            "study_instance_uid": study,
        }]
        return {
            "vertebral_fractures": fracture_table(uid, study, self.vertebrae, source, ver),
            HIP_GEOMETRY.name: _conform(HIP_GEOMETRY, hips),
            TEXTURE.name: _conform(TEXTURE, tex),
            EXTRACTION_RUNS.name: _conform(EXTRACTION_RUNS, run),
        }


def _conform(decl: Any, rows: list[dict[str, Any]]) -> pa.Table:
    if not rows:
        return decl.empty()
    return decl.conform(pa.Table.from_pylist(enforce_ranges(decl, rows)))


def _r(x: float | None, nd: int = 2) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


def classify(ds: pydicom.Dataset) -> str:
    """``dx_lateral_spine``, ``dxa_hip``, ``dxa_spine`` or ``unsupported`` from the header of one image."""
    modality = str(ds.get("Modality", "") or "").upper()
    part = str(ds.get("BodyPartExamined", "") or "").upper().replace(" ", "")
    desc = str(ds.get("SeriesDescription", "") or "").upper()
    view = str(ds.get("ViewPosition", "") or "").upper()
    if modality == "BMD" or "DXA" in desc or "DEXA" in desc:
        if part in {"HIP", "FEMUR"} or "HIP" in desc or "FEMUR" in desc:
            return "dxa_hip"
        if part in _SPINE_PARTS or "SPINE" in desc:
            return "dxa_spine"
        return "unsupported"
    if modality in {"DX", "CR", "RG"}:
        spine = part in _SPINE_PARTS or "SPINE" in desc
        lateral = view in {"LL", "RL", "LATERAL", "LAT"} or "LAT" in desc
        return "dx_lateral_spine" if spine and lateral else "unsupported"
    return "unsupported"


def _pixel_mm(ds: pydicom.Dataset) -> tuple[float | None, list[str]]:
    """Pixel size in the patient plane: PixelSpacing, else ImagerPixelSpacing / magnification."""
    flags: list[str] = []
    ps = ds.get("PixelSpacing")
    if ps:
        return float(ps[0]), flags
    ips = ds.get("ImagerPixelSpacing")
    if ips:
        mag = float(ds.get("EstimatedRadiographicMagnificationFactor", 0) or 0)
        if mag <= 0:
            flags.append("magnification_unknown")
            mag = 1.0
        return float(ips[0]) / mag, flags
    return None, ["pixel_spacing_missing"]


def _pixels(ds: pydicom.Dataset) -> NDArray[np.float64]:
    arr = np.asarray(ds.pixel_array, dtype=np.float64)
    if arr.ndim == 3 and int(ds.get("SamplesPerPixel", 1) or 1) == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"image has shape {arr.shape}; expected one 2-D monochrome frame")
    slope = float(ds.get("RescaleSlope", 1) or 1)
    inter = float(ds.get("RescaleIntercept", 0) or 0)
    arr = arr * slope + inter
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        arr = arr.max() - arr
    return arr


def _orient(img: NDArray[np.float64], ds: pydicom.Dataset) -> tuple[NDArray[np.float64], list[str]]:
    """Flip so rows run head -> feet and columns anterior -> posterior (PatientOrientation)."""
    po = [str(x).upper() for x in (ds.get("PatientOrientation") or [])]
    flags: list[str] = []
    if len(po) != 2:
        return img, ["orientation_assumed"]
    if po[0].startswith("A"):
        img = img[:, ::-1]
    elif not po[0].startswith("P"):
        flags.append("orientation_assumed")
    if po[1].startswith("H"):
        img = img[::-1, :]
    elif not po[1].startswith("F"):
        flags.append("orientation_assumed")
    return img, flags


TBS_ERODE_MM = 2.0  # body edges kept out of the variogram


def dxa_spine_tbs(img: NDArray[np.float64], pixel_mm: float) -> tuple[float | None, int, list[str]]:
    """TBS-style index over the vertebral bodies of an AP DXA spine image.

    Bone = values above half the image's 99th percentile; every region at least a fifth the size of the
    largest is a body (discs separate them), eroded by ``TBS_ERODE_MM`` so that body edges stay out of the
    variogram. The index is the plain log-log slope of the mean squared increment over lags of
    ``TBS_LAGS_MM`` (converted to whole pixels). Returns (index, pixels used, flags).

    Notes
    -----
    Edges inside the region (pedicle outlines, implants) raise the index; the robust variogram of
    :func:`tasks.biomarkers.texture.variogram` resists a few of them but ranked the synthetic phantoms
    less well, so the plain estimator is used. Not calibrated to a vendor's TBS.
    """
    hi = float(np.percentile(img, 99))
    if hi <= 0:
        return None, 0, ["no_bone_found"]
    m = img > 0.5 * hi
    lab, n = ndi.label(m)
    if n == 0:
        return None, 0, ["no_bone_found"]
    sizes = ndi.sum_labels(m, lab, index=np.arange(1, n + 1))
    keep = np.nonzero(sizes >= 0.2 * sizes.max())[0] + 1
    m = ndi.binary_erosion(np.isin(lab, keep), iterations=max(1, int(round(TBS_ERODE_MM / pixel_mm))))
    if m.sum() < 200:
        return None, int(m.sum()), ["bone_region_too_small"]
    lags = sorted({max(1, int(round(x / pixel_mm))) for x in TBS_LAGS_MM})
    if len(lags) < 2:
        return None, int(m.sum()), ["pixels_too_coarse_for_texture"]
    return tbs_index(img, lags=lags, mask=m), int(m.sum()), []


def analyse_dataset(ds: pydicom.Dataset) -> ProjectionResult:
    """Classify and analyse one projection image; problems become flags or ``status='failed'``."""
    t0 = time.perf_counter()
    kind = classify(ds)
    res = ProjectionResult(
        series_instance_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        study_instance_uid=str(ds.get("StudyInstanceUID", "") or ""),
        kind=kind, modality=str(ds.get("Modality", "") or ""), pixel_mm=None,
    )
    try:
        pix, pflags = _pixel_mm(ds)
        res.pixel_mm, res.flags = pix, list(pflags)
        if kind == "unsupported":
            res.flags.append("not_a_lateral_spine_or_dxa_image")
            res.status = "skipped"
        elif pix is None:
            res.status = "failed"
            res.error = "no PixelSpacing or ImagerPixelSpacing; cannot measure in mm"
        elif kind == "dx_lateral_spine":
            img, oflags = _orient(_pixels(ds), ds)
            res.vertebrae, vflags, res.level_confidence = assess_lateral_spine(img, pix)
            res.flags += oflags + vflags
        elif kind == "dxa_hip":
            res.hips = hg.measure_hip(_pixels(ds), pix, side=hg.side_from_header(ds))
        else:
            res.tbs, res.texture_pixels, tflags = dxa_spine_tbs(_pixels(ds), pix)
            res.flags += tflags
    except (ValueError, RuntimeError, AttributeError, TypeError) as e:
        res.status, res.error = "failed", f"{type(e).__name__}: {e}"
    res.flags = list(dict.fromkeys(res.flags))
    res.seconds = time.perf_counter() - t0
    return res


def extract_projection_series(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], opener: Opener | None = None
) -> ProjectionResult:
    """Biomarkers of the first analysable projection image among ``paths`` (a folder or files).

    Raises
    ------
    ValueError
        When no file is a readable DICOM image.
    """
    files = list_files(paths)
    results: list[ProjectionResult] = []
    errors: list[str] = []
    for f in files:
        try:
            ds = pydicom.dcmread(opener(f) if opener else f)
        except Exception as e:  # noqa: BLE001 - any unreadable file is only recorded
            errors.append(f"{f}: {type(e).__name__}")
            continue
        if "PixelData" not in ds:
            continue
        results.append(analyse_dataset(ds))
        if results[-1].status == "ok":
            return results[-1]
    if results:
        return results[0]
    raise ValueError(f"paths {paths!r}: no readable DICOM image among {len(files)} files"
                     + (f" ({errors[0]})" if errors else ""))
