"""CT DICOM objects of a synthetic study: axial series, sagittal reformat, localizer and dose SR."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from scipy import ndimage

from synthetic import dicom_io as io
from synthetic.ct import MODELS, CTParams, grid
from synthetic.population import Patient, Study


@dataclass(frozen=True)
class StudyContext:
    """What every object of one study shares."""

    seed: int
    patient: Patient
    study: Study
    study_uid: str
    frame_uid: str
    accession: str
    time: str
    description: str

    @staticmethod
    def make(seed: int, patient: Patient, study: Study, description: str) -> StudyContext:
        key = (seed, patient.index, study.index)
        return StudyContext(
            seed, patient, study, io.uid("study", *key), io.uid("for", *key),
            f"A{(patient.index * 7 + study.index) % 10**8:08d}{seed % 1000:03d}",
            f"{8 + (patient.index + study.index) % 9:02d}{(patient.index * 13) % 60:02d}00", description,
        )


def _base(ctx: StudyContext, modality: str, series_uid: str, number: int, description: str,
          manufacturer: str, sop_class: str, body_part: str) -> Dataset:
    ds = Dataset()
    io.patient_study_header(ds, ctx.patient, ctx.study, ctx.study_uid, accession=ctx.accession,
                            description=ctx.description, time=ctx.time)
    io.series_header(ds, modality=modality, series_uid=series_uid, number=number, description=description,
                     manufacturer=manufacturer, model=MODELS.get(manufacturer, "Generic"), sop_class=sop_class,
                     frame_of_reference=ctx.frame_uid if modality == "CT" else None, body_part=body_part,
                     time=ctx.time)
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = ctx.time
    return ds


def _ct_common(ds: Dataset, params: CTParams) -> None:
    ds.KVP = str(params.kvp)
    ds.XRayTubeCurrent = 180 + 10 * (params.kvp // 20)
    ds.ConvolutionKernel = params.kernel
    ds.PatientPosition = "FFS"
    ds.GantryDetectorTilt = f"{params.tilt_deg:.1f}"
    ds.ReconstructionDiameter = f"{params.fov_mm:.1f}"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    if params.contrast != "none":
        ds.ContrastBolusAgent = "IOPAMIDOL 370"
        ds.ContrastBolusRoute = "IV"
        ds.ContrastBolusStartTime = ""
    ds.AcquisitionNumber = 1


def _store(hu: np.ndarray, params: CTParams) -> np.ndarray:
    lo = -1024 if params.signed else 0
    hi = 32767 if params.signed else 4095
    return np.clip(np.rint(hu - params.intercept), lo, hi)


def ct_context(patient: Patient, study_date: date, seed: int) -> StudyContext:
    """Context of a stand-alone CT study (for benches and tests)."""
    return StudyContext.make(seed, patient, Study("ct_abdomen", study_date, 0), "CT ABDOMEN")


def axial_datasets(
    patient: Patient, study_date: date, params: CTParams, img: np.ndarray, zs: np.ndarray, *, seed: int,
    tag: str, ctx: StudyContext | None = None, number: int = 2, description: str | None = None,
) -> tuple[list[Dataset], str]:
    """Axial CT image datasets (one per plane of ``img``, head first) and the series UID."""
    ctx = ctx or ct_context(patient, study_date, seed)
    series_uid = io.uid("series", ctx.study_uid, tag)
    x, y = grid(params)
    tan = np.tan(np.radians(params.tilt_deg))
    desc = description or f"{'BONE' if params.sharp else 'STD'} {params.slice_mm:g}mm AXIAL"
    stored = _store(img, params)
    tpl = _base(ctx, "CT", series_uid, number, desc, params.manufacturer, io.CT_IMAGE, "ABDOMEN")
    tpl.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    _ct_common(tpl, params)
    tpl.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    tpl.PixelSpacing = [f"{params.spacing:.6f}", f"{params.spacing:.6f}"]
    tpl.SliceThickness = f"{params.slice_mm:g}"
    tpl.RescaleIntercept = f"{params.intercept:g}"
    tpl.WindowCenter, tpl.WindowWidth = "40", "400"
    io.set_pixels(tpl, stored[0], signed=params.signed, bits_stored=16 if params.signed else 12)
    del tpl.PixelData
    for tag_name in params.drop_tags:
        if tag_name in tpl:
            delattr(tpl, tag_name)
    dtype = np.int16 if params.signed else np.uint16
    out = []
    for k, z in enumerate(zs):
        ds = io.instance(tpl)
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{x[0]:.3f}", f"{y[0] + (z - zs[0]) * tan:.3f}", f"{z:.3f}"]
        if "SliceLocation" not in params.drop_tags:
            ds.SliceLocation = f"{z:.3f}"
        ds.add_new(0x7FE00010, "OW", np.ascontiguousarray(stored[k].astype(dtype)).tobytes())
        out.append(io.finish(ds, io.uid("sop", series_uid, k), params.syntax))
    return out, series_uid


def sagittal_datasets(ctx: StudyContext, params: CTParams, img: np.ndarray, zs: np.ndarray,
                      *, number: int, xs_mm: tuple[float, ...] = (-9.0, -6.0, -3.0, 0.0, 3.0, 6.0, 9.0)
                      ) -> tuple[list[Dataset], str]:
    """Sagittal MPR (DERIVED\\SECONDARY\\REFORMATTED) planes at ``xs_mm`` from an axial volume (head first,
    evenly spaced); resampled to square pixels of the axial spacing."""
    series_uid = io.uid("series", ctx.study_uid, "sag")
    x, y = grid(params)
    s = params.spacing
    dz = float(zs[0] - zs[1]) if len(zs) > 1 else params.slice_mm
    out = []
    for k, xm in enumerate(xs_mm):
        col = int(np.clip(np.searchsorted(x, xm), 0, len(x) - 1))
        plane = img[:, :, col]  # (nz, ny), row 0 = highest z
        plane = ndimage.zoom(plane, (dz / s, 1.0), order=1)
        ds = _base(ctx, "CT", series_uid, number, "SAG BONE MPR", params.manufacturer, io.CT_IMAGE, "LSPINE")
        ds.ImageType = ["DERIVED", "SECONDARY", "REFORMATTED"]
        _ct_common(ds, params)
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{x[col]:.3f}", f"{y[0]:.3f}", f"{zs[0]:.3f}"]
        ds.ImageOrientationPatient = ["0", "1", "0", "0", "0", "-1"]
        row_mm = dz * (len(zs) - 1) / max(plane.shape[0] - 1, 1)
        ds.PixelSpacing = [f"{row_mm:.6f}", f"{s:.6f}"]
        ds.SliceThickness = f"{s:.3f}"
        ds.RescaleIntercept = "-1024"
        ds.WindowCenter, ds.WindowWidth = "400", "1800"
        io.set_pixels(ds, np.clip(np.rint(plane + 1024), 0, 4095), signed=False, bits_stored=12)
        out.append(io.finish(ds, io.uid("sop", series_uid, k)))
    return out, series_uid


def localizer_dataset(ctx: StudyContext, params: CTParams, clean: np.ndarray, zs: np.ndarray,
                      *, number: int) -> tuple[Dataset, str]:
    """AP localizer (ORIGINAL\\PRIMARY\\LOCALIZER): line integral of attenuation along y."""
    series_uid = io.uid("series", ctx.study_uid, "loc")
    x, y = grid(params)
    mu = np.clip(clean + 1000.0, 0.0, None) / 1000.0 * 0.019  # 1/mm, water 0.019
    proj = mu.sum(axis=1) * params.spacing  # (nz, nx)
    img = np.clip(np.rint(4095.0 * (1.0 - np.exp(-proj / 3.0))), 0, 4095)
    ds = _base(ctx, "CT", series_uid, number, "TOPOGRAM AP", params.manufacturer, io.CT_IMAGE, "ABDOMEN")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    _ct_common(ds, params)
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = [f"{x[0]:.3f}", f"{params.center_y:.3f}", f"{zs[0]:.3f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "0", "-1"]
    dz = float(zs[0] - zs[1]) if len(zs) > 1 else params.slice_mm
    ds.PixelSpacing = [f"{dz:.6f}", f"{params.spacing:.6f}"]
    ds.SliceThickness = "0"
    ds.RescaleIntercept = "0"
    ds.RescaleType = "US"
    io.set_pixels(ds, img, signed=False, bits_stored=12)
    return io.finish(ds, io.uid("sop", series_uid, 0)), series_uid


def _num(code: str, meaning: str, value: float, unit: str) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "NUM"
    item.ConceptNameCodeSequence = Sequence([_code(code, "DCM", meaning)])
    mv = Dataset()
    mv.NumericValue = f"{value:.2f}"
    mv.MeasurementUnitsCodeSequence = Sequence([_code(unit, "UCUM", unit)])
    item.MeasuredValueSequence = Sequence([mv])
    return item


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def dose_sr_dataset(ctx: StudyContext, params: CTParams, scan_mm: float, *, number: int) -> tuple[Dataset, str]:
    """X-Ray Radiation Dose SR (no pixels): CTDIvol and DLP of the acquisition."""
    series_uid = io.uid("series", ctx.study_uid, "dose")
    ds = _base(ctx, "SR", series_uid, number, "Dose Report", params.manufacturer, io.XRAY_DOSE_SR, "ABDOMEN")
    ctdi = 2.0 + 10.0 * (params.kvp / 120.0) ** 2.5
    ds.InstanceNumber = 1
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ConceptNameCodeSequence = Sequence([_code("113701", "DCM", "X-Ray Radiation Dose Report")])
    tpl = Dataset()
    tpl.MappingResource, tpl.TemplateIdentifier = "DCMR", "10011"
    ds.ContentTemplateSequence = Sequence([tpl])
    ds.ContentSequence = Sequence([
        _num("113830", "Mean CTDIvol", ctdi, "mGy"),
        _num("113838", "DLP", ctdi * scan_mm / 10.0, "mGy.cm"),
    ])
    ds.KVP = str(params.kvp)
    return io.finish(ds, io.uid("sop", series_uid, 0)), series_uid
