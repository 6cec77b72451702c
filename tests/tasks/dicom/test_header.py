"""Header rows against values written into synthetic files; quarantine reasons; identifiers left out."""

from __future__ import annotations

import json
from datetime import date, time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from tasks.dicom.dicom_json import PHI_TAGS
from tasks.dicom.header import HeaderError, QuarantineReason, parse_da, parse_header, parse_tm
from tasks.privacy import person_key
from tests.tasks.dicom.conftest import RAW_PATIENT, write_series


@pytest.mark.parametrize("implicit", [False, True])
def test_promoted_values_match_what_was_written(tmp_path: Path, key: bytes, implicit: bool) -> None:
    files = write_series(tmp_path, 3, spacing=2.5, implicit=implicit)
    ds = pydicom.dcmread(files[1])
    row = parse_header(files[1].read_bytes(), key=key)
    assert row["parser"] == "fast"
    assert row["sop_instance_uid"] == ds.SOPInstanceUID
    assert row["series_instance_uid"] == ds.SeriesInstanceUID
    assert row["modality"] == "CT"
    assert row["study_date"] == date(2020, 5, 17)
    assert row["study_time"] == time(10, 15, 30, 250000)
    assert row["image_type"] == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert row["image_orientation_patient"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert row["image_position_patient"] == pytest.approx([-100.0, -120.0, -297.5])
    assert row["pixel_spacing_mm"] == [0.75, 0.75]
    assert row["slice_thickness_mm"] == 2.5
    assert (row["rows"], row["columns"], row["kvp"]) == (8, 8, 120.0)
    assert (row["rescale_intercept"], row["rescale_slope"]) == (-1024.0, 1.0)
    assert row["convolution_kernel"] == "B30f"
    assert row["instance_number"] == 2
    assert row["transfer_syntax_uid"] == ("1.2.840.10008.1.2" if implicit else "1.2.840.10008.1.2.1")
    assert row["person_key"] == person_key(key, RAW_PATIENT["PatientID"], "TEST-ISSUER")
    # born 1948-03-17, study 2020-05-17: 72.17 years
    assert row["age_at_study_years"] == pytest.approx(72.2, abs=0.05)


def test_dicom_json_has_header_but_no_identifiers_or_pixels(tmp_path: Path, key: bytes) -> None:
    f = write_series(tmp_path, 1)[0]
    row = parse_header(f.read_bytes(), key=key)
    js = json.loads(row["dicom_json"])
    assert js["00080060"] == {"vr": "CS", "Value": ["CT"]}
    assert js["00280030"] == {"vr": "DS", "Value": [0.75, 0.75]}
    assert js["00280010"] == {"vr": "US", "Value": [8]}
    assert "7FE00010" not in js
    assert not {f"{t:08X}" for t in PHI_TAGS} & set(js)
    text = row["dicom_json"] + repr({k: v for k, v in row.items() if k != "dicom_json"})
    for raw in (*RAW_PATIENT.values(), "ACC-998877", "OTHER-ID-5566", "Doctor", "Testperson"):
        assert raw not in text


def test_age_from_patient_age_when_no_birth_date(tmp_path: Path, key: bytes) -> None:
    f = write_series(tmp_path, 1, patient={"PatientBirthDate": ""}, extra={"PatientAge": "067Y"})[0]
    assert parse_header(f.read_bytes(), key=key)["age_at_study_years"] == 67.0


def test_quarantine_reasons(tmp_path: Path, key: bytes) -> None:
    good = write_series(tmp_path, 1)[0].read_bytes()
    cases = {
        QuarantineReason.NOT_DICOM: b"hello, this is a text file\n" * 20,
        QuarantineReason.TRUNCATED: good[: len(good) - 40],  # inside the pixel data
    }
    no_uid = write_series(tmp_path / "n", 1, extra={"SeriesInstanceUID": ""})[0].read_bytes()
    cases[QuarantineReason.MISSING_TAGS] = no_uid
    odd = write_series(tmp_path / "u", 1)[0]
    ds = pydicom.dcmread(odd)
    ds.file_meta.TransferSyntaxUID = generate_uid()  # a private syntax nobody can decode
    ds.save_as(odd)
    cases[QuarantineReason.UNSUPPORTED_SYNTAX] = odd.read_bytes()
    for reason, data in cases.items():
        for fast in (True, False):
            with pytest.raises(HeaderError) as e:
                parse_header(data, key=key, fast=fast)
            assert e.value.reason is reason, (reason, fast, e.value.message)
    assert QuarantineReason("TRUNCATED") is QuarantineReason.TRUNCATED


def test_da_tm_parsing() -> None:
    assert parse_da("20200517") == date(2020, 5, 17)
    assert parse_da("2020.05.17") == date(2020, 5, 17)
    assert parse_da("20201317") is None and parse_da("") is None
    assert parse_tm("0930") == time(9, 30)
    assert parse_tm("09:30:15") == time(9, 30, 15)
    assert parse_tm("093015.5") == time(9, 30, 15, 500000)
    assert parse_tm("25") is None
