"""Series and studies aggregation: geometry, flags and extractor eligibility against known series."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from tasks.dicom.ingest import index_batch
from tasks.dicom.series import aggregate_series, aggregate_studies, is_dxa, orientation_class
from tasks.dicom.sources import FolderSource
from tests.tasks.dicom.conftest import real_files, write_series


def _series(folder: Path, key: bytes) -> dict[str, dict]:
    src = FolderSource(str(folder))
    res = index_batch(src, list(src.list_files()), key=key)
    table = aggregate_series(res.parsed)
    return {r["series_description"]: r for r in table.to_pylist()}, res.parsed, table  # type: ignore[return-value]


def test_orientation_class() -> None:
    assert orientation_class([1, 0, 0, 0, 1, 0]) == "axial"
    assert orientation_class([0, 1, 0, 0, 0, -1]) == "sagittal"
    assert orientation_class([1, 0, 0, 0, 0, -1]) == "coronal"
    assert orientation_class([1, 0, 0, 0, 0.7071, 0.7071]) == "other"
    assert orientation_class(None) is None


def test_series_geometry_flags_and_eligibility(tmp_path: Path, key: bytes) -> None:
    study = "1.2.826.0.1.3680043.8.498.1"
    write_series(tmp_path / "a", 16, spacing=2.5, study_uid=study, series_description="axial thin")
    write_series(tmp_path / "b", 8, spacing=3.0, study_uid=study, series_description="axial short")  # 21 mm
    write_series(tmp_path / "c", 12, spacing=2.0, iop=(0, 1, 0, 0, 0, -1), study_uid=study,
                 series_description="sag", image_type=("DERIVED", "SECONDARY", "REFORMATTED"))
    write_series(tmp_path / "d", 1, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), study_uid=study,
                 series_description="scout", iop=(1, 0, 0, 0, 0, -1))
    write_series(tmp_path / "e", 2, modality="DX", series_description="L-SPINE LAT", iop=(1, 0, 0, 0, 1, 0),
                 extra={"ViewPosition": "LL", "BodyPartExamined": "LSPINE"})
    write_series(tmp_path / "f", 1, modality="OT", series_description="DXA Left Hip",
                 extra={"Manufacturer": "HOLOGIC", "BodyPartExamined": "HIP"})
    write_series(tmp_path / "g", 1, modality="BMD", series_description="AP Spine L1-L4",
                 extra={"BodyPartExamined": "LSPINE"})
    s, inst, table = _series(tmp_path, key)
    a = s["axial thin"]
    assert a["n_instances"] == 16 and a["orientation_class"] == "axial"
    assert a["z_coverage_mm"] == pytest.approx(15 * 2.5) and a["slice_spacing_mm"] == pytest.approx(2.5)
    assert a["is_spacing_uniform"] and a["eligible_extractors"] == ["ct_spine"]
    assert s["axial short"]["z_coverage_mm"] == pytest.approx(21.0) and not s["axial short"]["is_eligible_ct_spine"]
    sag = s["sag"]
    assert sag["orientation_class"] == "sagittal" and sag["is_derived"] and sag["z_coverage_mm"] == pytest.approx(22)
    assert not sag["is_eligible_ct_spine"]
    assert s["scout"]["is_localizer"] and s["scout"]["eligible_extractors"] == []
    assert s["L-SPINE LAT"]["eligible_extractors"] == ["vertebral_fracture_dx"]
    assert s["DXA Left Hip"]["eligible_extractors"] == ["dxa_hip"]
    assert s["AP Spine L1-L4"]["eligible_extractors"] == ["dxa_spine"]
    studies = {r["study_instance_uid"]: r for r in aggregate_studies(table, inst).to_pylist()}
    st = studies[study]
    assert st["n_series"] == 4 and st["n_instances"] == 16 + 8 + 12 + 1
    assert st["eligible_extractors"] == ["ct_spine"] and st["modalities"] == ["CT"]


def test_series_with_gaps_is_not_uniform(tmp_path: Path, key: bytes) -> None:
    files = write_series(tmp_path, 10, spacing=2.0)
    files[4].unlink()
    a = next(iter(_series(tmp_path, key)[0].values()))
    assert a["is_spacing_uniform"] is False and a["n_positions"] == 9


def test_real_series(key: bytes) -> None:
    folder = real_files()[0].parent.parent
    s, _, table = _series(folder, key)
    by_n = {r["n_instances"]: r for r in table.to_pylist()}
    # GE head CT: 28 axial slices (gantry tilt); dcmqi: 3 slices 1 mm apart (1.25 mm thick).
    assert by_n[28]["orientation_class"] == "axial" and by_n[28]["modality"] == "CT"
    assert by_n[3]["z_coverage_mm"] == pytest.approx(2.0, abs=0.01) and not by_n[3]["is_eligible_ct_spine"]
    assert by_n[1]["modality"] == "DX"


def test_dxa_conventions() -> None:
    assert is_dxa("BMD", [], None)
    assert is_dxa("OT", ["Left Femur"], "HOLOGIC")
    assert is_dxa("DX", ["DXA lumbar spine"], "GE Lunar")
    assert not is_dxa("CT", ["DXA comparison"], None)
    assert not is_dxa("DX", ["L-spine lateral"], "Agfa")


def test_empty() -> None:
    from schemas import get_table

    assert aggregate_series(get_table("instances").empty()).num_rows == 0
    assert isinstance(aggregate_studies(get_table("series").empty()), pa.Table)
