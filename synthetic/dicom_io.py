"""pydicom writers of the synthetic hospital: deterministic UIDs, patient/study headers, file output.

Every UID comes from :func:`uid` (``pydicom.uid.generate_uid(entropy_srcs=...)``), so the same seed writes
the same bytes. No clock is read anywhere: all dates and times derive from the study date.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

from schemas.enums import StrValueEnum
from synthetic.population import ISSUER, Patient, Study

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
XRAY_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.8.498.1"


class Syntax(StrValueEnum):
    """Transfer syntaxes the hospital writes; accepts the member or its string value."""

    EXPLICIT = "explicit"
    IMPLICIT = "implicit"
    RLE = "rle"



def uid(*parts: object) -> str:
    """Deterministic DICOM UID from ``parts`` (seed, patient, study, series, instance, ...)."""
    return str(generate_uid(entropy_srcs=[str(p) for p in parts]))


def da(d: date) -> str:
    """DICOM DA string of ``d``."""
    return d.strftime("%Y%m%d")


def patient_study_header(
    ds: Dataset, p: Patient, study: Study, study_uid: str, *, accession: str, description: str, time: str
) -> None:
    """Raw patient and study attributes, as a real archive holds them (the pipeline must pseudonymise)."""
    ds.PatientName = p.name
    ds.PatientID = p.patient_id
    ds.IssuerOfPatientID = ISSUER
    ds.PatientBirthDate = da(p.birth_date)
    ds.PatientSex = p.sex
    ds.PatientAge = f"{int(p.age_at(study.study_date)):03d}Y"
    ds.PatientSize = f"{p.height_cm / 100.0:.2f}"
    ds.PatientWeight = f"{p.weight_kg:.1f}"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = da(study.study_date)
    ds.StudyTime = time
    ds.StudyID = str(study.index + 1)
    ds.AccessionNumber = accession
    ds.StudyDescription = description
    ds.ReferringPhysicianName = "Ref^Doc"
    ds.InstitutionName = f"Osteolake General {p.site.title()}"


def series_header(
    ds: Dataset, *, modality: str, series_uid: str, number: int, description: str, manufacturer: str,
    model: str, sop_class: str, frame_of_reference: str | None, body_part: str, time: str,
) -> None:
    """Series and equipment attributes shared by every instance of a series."""
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = number
    ds.SeriesDescription = description
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = time
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.SOPClassUID = sop_class
    ds.BodyPartExamined = body_part
    if frame_of_reference:
        ds.FrameOfReferenceUID = frame_of_reference
        ds.PositionReferenceIndicator = ""
    ds.SpecificCharacterSet = "ISO_IR 100"


def set_pixels(ds: Dataset, pixels: np.ndarray, *, signed: bool, bits_stored: int = 16) -> None:
    """Monochrome pixel module for a 2-D integer image."""
    arr = np.ascontiguousarray(pixels.astype(np.int16 if signed else np.uint16))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.add_new(0x7FE00010, "OW", arr.tobytes())


def finish(ds: Dataset, sop_uid: str, syntax: Syntax | str = Syntax.EXPLICIT) -> Dataset:
    """Add SOPInstanceUID and file meta; compress with RLE Lossless when asked (``ds.compress``)."""
    syntax = Syntax(syntax)
    ds.SOPInstanceUID = sop_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    meta.ImplementationVersionName = "OSTEOLAKE_SYN"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    if syntax is Syntax.RLE and "PixelData" in ds:
        ds.compress(RLELossless, generate_instance_uid=False)
    else:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian if syntax is Syntax.IMPLICIT else ExplicitVRLittleEndian
    return ds


def write(ds: Dataset, path: Path) -> int:
    """Write ``ds`` as a DICOM Part 10 file; returns the number of bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path.stat().st_size


def instance(template: Dataset) -> Dataset:
    """A new dataset holding the template's elements (shared, never mutated: set only new tags on it)."""
    return Dataset(dict(template))


def write_series(datasets: list[Dataset], paths: list[Path]) -> int:
    """Write the instances of one series; returns the bytes written.

    Instances made by :func:`instance` from one template share most elements: those are encoded once
    with pydicom's ``write_dataset`` and the per-instance elements (UIDs, positions, pixels) are encoded
    per file, then the pieces are joined in tag order. Output is byte-identical to ``dcmwrite``
    (checked in tests). RLE-compressed or heterogeneous series fall back to ``dcmwrite``.
    """
    if not datasets:
        return 0
    first = datasets[0]
    ts = first.file_meta.TransferSyntaxUID
    keys = sorted(first.keys())
    if ts not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian) or any(
        sorted(ds.keys()) != keys for ds in datasets[1:]
    ):
        return sum(write(ds, p) for ds, p in zip(datasets, paths, strict=True))
    implicit = ts == ImplicitVRLittleEndian
    shared = {t for t in keys if all(ds._dict[t] is first._dict[t] for ds in datasets[1:])}
    chunks: list[bytes | int] = []  # encoded runs of shared elements, or the tag of a varying element
    run = Dataset()
    for t in keys:
        if t in shared:
            run.add(first[t])
            continue
        if len(run):
            chunks.append(_encode(run, implicit))
            run = Dataset()
        chunks.append(int(t))
    if len(run):
        chunks.append(_encode(run, implicit))
    total = 0
    for ds, path in zip(datasets, paths, strict=True):
        buf = DicomBytesIO()
        buf.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(buf, ds.file_meta, enforce_standard=True)
        parts = [buf.getvalue()]
        for c in chunks:
            if isinstance(c, bytes):
                parts.append(c)
            else:
                one = Dataset()
                one.add(ds[c])
                parts.append(_encode(one, implicit))
        data = b"".join(parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total += len(data)
    return total


def _encode(ds: Dataset, implicit: bool) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = implicit
    write_dataset(fp, ds)
    return fp.getvalue()
