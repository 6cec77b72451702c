"""Series and studies aggregation: geometry, flags and extractor eligibility against known series."""

from __future__ import annotations

import shutil
from pathlib import Path
from statistics import median
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from schemas import get_table
from tasks.dicom.ingest import index_batch
from tasks.dicom.series import (
    _LATERAL_VIEWS,
    MIN_CT_COVERAGE_MM,
    SeriesAccumulator,
    _median,
    _mode,
    _normal,
    _words,
    aggregate_series,
    aggregate_studies,
    is_dxa,
    orientation_class,
)
from tasks.dicom.sources import FolderSource
from tests.tasks.dicom.conftest import real_files, shipped_files, write_series


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


# -- the row-by-row implementation the incremental one replaced: the reference for the tests below ------
def _ref_series_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    first = min(rows, key=lambda r: r["sop_instance_uid"])
    get = lambda k: _mode(r[k] for r in rows)  # noqa: E731
    modality = get("modality")
    image_types = [[s.upper() for s in (r["image_type"] or [])] for r in rows]
    is_localizer = any("LOCALIZER" in t for t in image_types)
    is_derived = bool(image_types) and all(t[:1] == ["DERIVED"] for t in image_types if t) and any(image_types)
    iops = [r["image_orientation_patient"] for r in rows if r["image_orientation_patient"]]
    iop = iops[0] if iops else None
    orient = orientation_class(iop)
    z_min = z_max = spacing = None
    uniform = None
    n_pos = None
    if iop is not None:
        n = _normal(iop)
        zs = sorted({round(sum(a * b for a, b in zip(n, r["image_position_patient"], strict=True)), 3)
                     for r in rows if r["image_position_patient"] and len(r["image_position_patient"]) == 3})
        if zs:
            n_pos = len(zs)
            z_min, z_max = zs[0], zs[-1]
            gaps = [b - a for a, b in zip(zs, zs[1:], strict=False)]
            if gaps:
                spacing = float(median(gaps))
                tol = max(0.1, 0.1 * spacing)
                uniform = all(abs(g - spacing) <= tol for g in gaps)
    coverage = (z_max - z_min) if z_max is not None and z_min is not None else None
    texts = [get("series_description"), get("protocol_name"), get("study_description"), get("body_part_examined")]
    dxa = is_dxa(modality, texts, get("manufacturer"))
    words = _words(*texts)
    body = (get("body_part_examined") or "").upper()
    spine = bool(words & {"SPINE", "LSPINE", "TSPINE", "TLSPINE", "LUMBAR", "THORACIC", "VERTEBRAL", "L1", "L4"}) \
        or "SPINE" in body
    hip = bool(words & {"HIP", "FEMUR", "FEMORAL", "NECK"}) or body in ("HIP", "FEMUR", "PELVIS")
    view = (get("view_position") or "").upper()
    lateral = view in _LATERAL_VIEWS or bool(words & {"LAT", "LATERAL"})
    pixel = [r["pixel_spacing_mm"] or r["imager_pixel_spacing_mm"] for r in rows]
    eligible = {
        "ct_spine": modality == "CT" and orient == "axial" and not is_localizer and (n_pos or 0) >= 2
        and (coverage or 0.0) >= MIN_CT_COVERAGE_MM,
        "vertebral_fracture_dx": modality in ("DX", "CR") and not dxa and lateral and spine,
        "dxa_hip": dxa and hip,
        "dxa_spine": dxa and spine and not hip,
    }
    agent = get("contrast_bolus_agent")
    return {
        "series_instance_uid": first["series_instance_uid"],
        "study_instance_uid": get("study_instance_uid"),
        "frame_of_reference_uid": get("frame_of_reference_uid"),
        "person_key": get("person_key"),
        "age_at_study_years": _median(r["age_at_study_years"] for r in rows),
        "patient_sex": get("patient_sex"),
        "modality": modality,
        "study_date": get("study_date"),
        "series_number": get("series_number"),
        "series_description": get("series_description"),
        "body_part_examined": get("body_part_examined"),
        "manufacturer": get("manufacturer"),
        "manufacturer_model_name": get("manufacturer_model_name"),
        "convolution_kernel": get("convolution_kernel"),
        "contrast_bolus_agent": agent,
        "has_contrast": bool(agent and agent.strip().upper() not in ("NONE", "NO", "N/A", "0")),
        "kvp": _median(r["kvp"] for r in rows),
        "view_position": get("view_position"),
        "n_instances": len(rows),
        "n_positions": n_pos,
        "rows": get("rows"),
        "columns": get("columns"),
        "pixel_spacing_mm": _median(p[0] if p else None for p in pixel),
        "slice_thickness_mm": _median(r["slice_thickness_mm"] for r in rows),
        "slice_spacing_mm": spacing,
        "is_spacing_uniform": uniform,
        "z_min_mm": z_min,
        "z_max_mm": z_max,
        "z_coverage_mm": coverage,
        "orientation_class": orient,
        "is_localizer": is_localizer,
        "is_derived": is_derived,
        "is_dxa": dxa,
        **{f"is_eligible_{k}": v for k, v in eligible.items()},
        "eligible_extractors": sorted(k for k, v in eligible.items() if v),
    }


def _reference_aggregate_series(instances: pa.Table) -> pa.Table:
    """The ``series`` table from instance rows (the narrow columns of ``tasks.dicom.ingest`` suffice).

    Notes
    -----
    Positions are projected on the normal of the first orientation found; a series that mixes
    orientations is summarised by that one (the volume builder flags it).
    """
    decl = get_table("series")
    # Sort once (one copy of the narrow columns), then turn one series at a time into Python rows.
    t = instances.take(pc.sort_indices(instances, sort_keys=[("series_instance_uid", "ascending")]))
    t = t.combine_chunks()
    uids = t.column("series_instance_uid")
    ends = pc.indices_nonzero(pc.not_equal(uids.slice(1), uids.slice(0, len(uids) - 1))).to_pylist()
    bounds = [0, *[e + 1 for e in ends], len(uids)]
    rows = [_ref_series_row(t.slice(a, b - a).to_pylist()) for a, b in zip(bounds, bounds[1:], strict=False)]
    return decl.conform(pa.Table.from_pylist(rows, schema=decl.arrow_schema()))




def test_incremental_equals_row_by_row_reference(tmp_path: Path, key: bytes) -> None:
    """Vectorised partials merged batch by batch give exactly the row-by-row summary, any batching."""
    write_series(tmp_path / "a", 9, spacing=2.5, series_description="axial")
    write_series(tmp_path / "b", 5, iop=(0, 1, 0, 0, 0, -1), image_type=("DERIVED", "SECONDARY"))
    write_series(tmp_path / "c", 3, image_type=("ORIGINAL", "PRIMARY", "localizer"))
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for i, f in enumerate(shipped_files()):
        shutil.copy(f, shipped / f"{i:04d}_{f.name}")
    folders = [tmp_path / "a", tmp_path / "b", tmp_path / "c", real_files()[0].parent.parent, shipped]
    tables = []
    for folder in folders:
        src = FolderSource(str(folder))
        tables.append(index_batch(src, sorted(src.list_files()), key=key).parsed)
    inst = pa.concat_tables(tables)
    # one series split over batches with two orientations: the first one found names the normal
    mixed = inst.filter(pc.equal(inst.column("series_description"), "axial"))
    iops = [[1.0, 0.0, 0.0, 0.0, 1.0, 0.0] if i < 4 else [0.0, 1.0, 0.0, 0.0, 0.0, -1.0] for i in range(mixed.num_rows)]
    mixed = mixed.set_column(mixed.schema.get_field_index("image_orientation_patient"), "image_orientation_patient",
                             pa.array(iops, mixed.schema.field("image_orientation_patient").type))
    inst = pa.concat_tables([inst, mixed.slice(0, 0), mixed])
    ref = _reference_aggregate_series(inst)
    assert ref.num_rows >= 60
    assert aggregate_series(inst).equals(ref)
    for size in (1, 4, 7):
        acc = SeriesAccumulator()
        for i in range(0, inst.num_rows, size):
            acc.add_table(inst.slice(i, size))
        assert acc.series_table().equals(ref), size
        assert acc.studies_table(ref).equals(aggregate_studies(ref, inst))
