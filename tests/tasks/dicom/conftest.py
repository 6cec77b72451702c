"""Corpora for the ingest tests: files pydicom ships, the real files, small synthetic series, damaged copies."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from pydicom.data.data_manager import DATA_ROOT, external_data_sources
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

KEY = b"test-key-0123456789abcdef"
REPO = Path(__file__).resolve().parents[3]
REAL_DICOM = REPO.parent / "shared" / "real-dicom"
RAW_PATIENT = {"PatientID": "MRN-4711-XYZ", "PatientName": "Testperson^Ingrid", "PatientBirthDate": "19480317"}


def shipped_files() -> list[Path]:
    """Every file pydicom and pydicom-data ship (no download is attempted)."""
    files = sorted(p for p in Path(DATA_ROOT).glob("**/*") if p.is_file())
    for _lib, src in external_data_sources().items():
        files += sorted(Path(p) for p in src.get_paths("**/*", 0))
    return files


def real_files() -> list[Path]:
    """The real scanner files in ``<repo>/../shared/real-dicom`` (README excluded); the calling test is
    skipped, with the reason, when that folder is not laid beside the repository (CI always has it)."""
    if not REAL_DICOM.is_dir():
        pytest.skip(f"real DICOM files not found at {REAL_DICOM} (shared/ is laid beside the repository)")
    return sorted(p for p in REAL_DICOM.glob("*/*") if p.is_file() and p.suffix != ".md")


def write_series(
    folder: Path,
    n: int = 12,
    *,
    spacing: float = 2.5,
    modality: str = "CT",
    iop: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    implicit: bool = False,
    patient: dict[str, str] | None = None,
    study_uid: str | None = None,
    series_description: str = "Abdomen 2.5",
    extra: dict[str, object] | None = None,
    study_date: date = date(2020, 5, 17),
) -> list[Path]:
    """Write ``n`` tiny (8x8) slices of one series, positions ``spacing`` mm apart along the normal."""
    folder.mkdir(parents=True, exist_ok=True)
    pat = RAW_PATIENT | (patient or {})
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    frame_uid = generate_uid()
    normal = np.cross(np.array(iop[:3], float), np.array(iop[3:], float))
    out = []
    for i in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        sop = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = list(image_type)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyDate = study_date.strftime("%Y%m%d")
        ds.StudyTime = "101530.25"
        ds.Modality = modality
        ds.Manufacturer = "ACME"
        ds.ManufacturerModelName = "Bone 9000"
        ds.SeriesDescription = series_description
        ds.PatientName = pat["PatientName"]
        ds.PatientID = pat["PatientID"]
        ds.IssuerOfPatientID = "TEST-ISSUER"
        ds.PatientBirthDate = pat["PatientBirthDate"]
        ds.PatientSex = "F"
        ds.AccessionNumber = "ACC-998877"
        ds.OtherPatientIDs = "OTHER-ID-5566"
        ds.ReferringPhysicianName = "Doctor^Referring"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 3
        ds.InstanceNumber = i + 1
        ds.FrameOfReferenceUID = frame_uid
        ds.ImageOrientationPatient = [float(v) for v in iop]
        pos = np.array([-100.0, -120.0, -300.0]) + normal * spacing * i
        ds.ImagePositionPatient = [round(float(v), 4) for v in pos]
        ds.SliceThickness = spacing
        ds.PixelSpacing = [0.75, 0.75]
        ds.KVP = 120
        ds.ConvolutionKernel = "B30f"
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.Rows = ds.Columns = 8
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        for k, v in (extra or {}).items():
            setattr(ds, k, v)
        ds.PixelData = (np.arange(64, dtype=np.int16) + i).tobytes()
        path = folder / f"im{i:04d}"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def damaged_copies(files: list[Path], out: Path, seed: int = 3, per_file: int = 2) -> list[Path]:
    """Truncated and bit-flipped copies of ``files`` in ``out`` (deterministic for ``seed``)."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for i, f in enumerate(files):
        data = f.read_bytes()
        if not data:
            continue
        for j in range(per_file):
            cut = out / f"trunc_{i:03d}_{j}"
            cut.write_bytes(data[: rng.randrange(0, len(data))])
            flip = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                # Flip bits mostly in the header, where they hurt the reader.
                pos = rng.randrange(0, min(len(flip), 4096))
                flip[pos] ^= 1 << rng.randrange(8)
            bad = out / f"flip_{i:03d}_{j}"
            bad.write_bytes(bytes(flip))
            made += [cut, bad]
    return made


@pytest.fixture(scope="session")
def key() -> bytes:
    return KEY
