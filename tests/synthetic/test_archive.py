"""The synthetic archive: files match truth, dirt is present and listed, headers, determinism."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest

from synthetic.hospital import generate
from synthetic.truth import SCHEMAS

PATIENT_TAGS = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "PatientAge",
                "PatientSize", "PatientWeight")


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hospital")
    generate(out, 6, 1, small=True)
    return out


def _digest(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


def test_truth_tables_have_declared_columns(hospital: Path) -> None:
    for name, schema in SCHEMAS.items():
        t = pq.read_table(hospital / "truth" / f"{name}.parquet")
        assert t.schema.names == schema.names, name
        if name != "dirty_files":
            assert t.num_rows > 0, name
    kinds = set(pq.read_table(hospital / "truth" / "series.parquet").column("kind").to_pylist())
    assert kinds == {"ct_axial_thin", "ct_axial_thick", "ct_localizer", "ct_sagittal", "ct_dose_sr",
                     "dx_lateral_spine", "dxa_hip", "dxa_spine", "mr"}


def test_every_series_file_exists_and_headers_match(hospital: Path) -> None:
    series = pq.read_table(hospital / "truth" / "series.parquet").to_pylist()
    dirty_rows = pq.read_table(hospital / "truth" / "dirty_files.parquet").to_pylist()
    dirty = {r["path"] for r in dirty_rows}
    dropped = {r["path"]: r["detail"].split(",") for r in dirty_rows if r["defect"] == "missing_optional_tags"}
    arc = hospital / "archive"
    for s in series:
        files = [f for f in (arc / s["folder"]).iterdir() if f.is_file()]
        assert len(files) == s["n_files"], s["folder"]
        for f in files[:2]:
            if str(f.relative_to(arc)) in dirty:
                continue
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            assert ds.SeriesInstanceUID == s["series_instance_uid"]
            assert ds.StudyInstanceUID == s["study_instance_uid"]
            assert ds.Modality == s["modality"]
            for tag in PATIENT_TAGS:
                assert tag in ds or tag in dropped.get(s["folder"], []), (tag, f)
            assert ds.PatientID == s["patient_id"]
            if s["kind"] == "ct_localizer":
                assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "LOCALIZER"]
            if s["kind"] == "ct_sagittal":
                assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "REFORMATTED"]
            if s["kind"] == "ct_dose_sr":
                assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.67" and "PixelData" not in ds
    with_ext = [f for f in arc.rglob("*.dcm")]
    without = [f for f in arc.rglob("IM*") if f.is_file()]
    assert with_ext and without


def test_ct_series_cover_t12_to_l5_and_truth_is_consistent(hospital: Path) -> None:
    series = pq.read_table(hospital / "truth" / "series.parquet").to_pandas()
    vert = pq.read_table(hospital / "truth" / "vertebrae.parquet").to_pandas()
    axial = series[series.kind.isin(["ct_axial_thin", "ct_axial_thick"])]
    for uid in axial.series_instance_uid:
        levels = set(vert[vert.series_instance_uid == uid].level)
        assert {"L1", "L2", "L3", "L4", "L5"} <= levels, uid
    assert set(vert.fracture_type) >= {"none", "wedge", "biconcave", "crush"}
    g = vert[vert.fracture_type != "none"]
    assert (g.genant_grade >= 1).all()
    # Genant: the grade matches the height ratio of the deformed point
    ratio = np.minimum(g.height_anterior_mm, g.height_middle_mm) / g.height_posterior_mm
    wb = g[g.fracture_type != "crush"]
    assert ((1 - ratio[wb.index]) >= 0.2).all()


def test_dirt_is_present_and_listed(hospital: Path) -> None:
    arc = hospital / "archive"
    dirty = pq.read_table(hospital / "truth" / "dirty_files.parquet").to_pylist()
    defects = {r["defect"] for r in dirty}
    assert defects >= {"non_dicom", "zero_byte", "truncated", "duplicate_sop_instance_uid", "missing_slice",
                       "gantry_tilt", "missing_optional_tags"}
    for r in dirty:
        assert (arc / r["path"]).exists(), r
        path = arc / r["path"]
        if r["defect"] == "zero_byte":
            assert path.stat().st_size == 0
        if r["defect"] == "truncated":
            with pytest.raises(Exception):  # noqa: B017 - pydicom raises several types on truncation
                pydicom.dcmread(path).pixel_array  # noqa: B018
        if r["defect"] == "duplicate_sop_instance_uid":
            orig = arc / r["detail"].removeprefix("copy of ")
            assert pydicom.dcmread(path).SOPInstanceUID == pydicom.dcmread(orig).SOPInstanceUID
        if r["defect"] == "gantry_tilt":
            dss = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(path.iterdir())[:3]]
            assert float(dss[0].GantryDetectorTilt) != 0.0
            ys = sorted((float(d.ImagePositionPatient[2]), float(d.ImagePositionPatient[1])) for d in dss)
            assert ys[0][1] != ys[-1][1]
        if r["defect"] == "missing_slice":
            zs = sorted(float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])
                        for f in path.iterdir())
            steps = np.round(np.diff(zs), 3)
            assert len(set(steps)) == 2
        if r["defect"] == "missing_optional_tags":
            ds = pydicom.dcmread(next(f for f in sorted(path.iterdir())), stop_before_pixels=True)
            for tag in r["detail"].split(","):
                assert tag not in ds


def test_transfer_syntaxes_and_storage_vary(hospital: Path) -> None:
    series = pq.read_table(hospital / "truth" / "series.parquet").to_pylist()
    syntaxes, reps = set(), set()
    for s in series:
        if s["kind"] not in ("ct_axial_thin", "ct_axial_thick"):
            continue
        f = sorted((hospital / "archive" / s["folder"]).iterdir())[0]
        ds = pydicom.dcmread(f)
        syntaxes.add(ds.file_meta.TransferSyntaxUID)
        reps.add((int(ds.PixelRepresentation), float(ds.RescaleIntercept)))
    assert len(syntaxes) >= 2 and len(reps) >= 2


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    generate(tmp_path / "a", 2, 5, small=True)
    generate(tmp_path / "b", 2, 5, small=True)
    generate(tmp_path / "c", 2, 6, small=True)
    a, b, c = (_digest(tmp_path / k) for k in "abc")
    assert a == b
    assert a != c
