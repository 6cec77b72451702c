"""OMOP MI-CDM export: image_occurrence per series, image_feature linked to measurement rows."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from warehouse.lake import Warehouse
from warehouse.omop_export import export_omop

D = dt.date


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    wh = Warehouse(tmp_path / "wh")
    b = wh.begin("load")
    b.replace("series", pa.table({
        "series_instance_uid": ["1.1", "1.2", "2.1", "9.1"],
        "study_instance_uid": ["st1", "st1", "st2", "st9"],
        "person_key": ["k1", "k1", "k2", "k-unmapped"],
        "modality": ["CT", "CT", "DX", "CT"],
        "study_date": [D(2020, 1, 2), D(2020, 1, 2), D(2021, 5, 6), D(2022, 1, 1)],
        "n_instances": [100, 2, 1, 50],
    }))
    b.replace("vertebra_measurements", pa.table({
        "series_instance_uid": ["1.1", "1.1", "9.1"], "level": ["L1", "L2", "L1"],
        "extractor_version": ["v1"] * 3, "trabecular_hu_mean": [95.5, 101.0, 150.0], "z_mm": [1.0, 2.0, 3.0],
    }))
    b.replace("body_composition", pa.table({
        "series_instance_uid": ["1.1"], "level": ["L3"], "extractor_version": ["v1"], "muscle_area_cm2": [120.0],
    }))
    b.publish()
    return wh


PERSONS = pa.table({"person_id": pa.array([101, 202], pa.int64()), "person_key": ["k1", "k2"]})


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_export_csv(wh: Warehouse, tmp_path: Path) -> None:
    out = tmp_path / "omop"
    res = export_omop(wh.catalog_path, PERSONS, out, id_offset=1000, concepts={"CT": 4300757})
    assert res.unmapped_series == 1
    assert res.rows == {"procedure_occurrence": 2, "image_occurrence": 3, "measurement": 3, "image_feature": 3}
    io = {r["image_series_uid"]: r for r in read_csv(out / "image_occurrence.csv")}
    assert set(io) == {"1.1", "1.2", "2.1"}
    assert io["1.1"]["person_id"] == "101" and io["2.1"]["person_id"] == "202"
    assert io["1.1"]["modality_concept_id"] == "4300757" and io["2.1"]["modality_concept_id"] == "0"
    assert io["1.1"]["procedure_occurrence_id"] == io["1.2"]["procedure_occurrence_id"]  # same study
    assert io["1.1"]["image_occurrence_date"] == "2020-01-02"
    assert int(io["1.1"]["image_occurrence_id"]) > 1000
    meas = {r["measurement_id"]: r for r in read_csv(out / "measurement.csv")}
    feats = read_csv(out / "image_feature.csv")
    by_source = {(m["measurement_source_value"], m["value_source_value"]): m for m in meas.values()}
    assert set(by_source) == {("vertebra_measurements.trabecular_hu_mean", "L1"),
                              ("vertebra_measurements.trabecular_hu_mean", "L2"),
                              ("body_composition.muscle_area_cm2", "L3")}  # z_mm is geometry, not exported
    l1 = by_source[("vertebra_measurements.trabecular_hu_mean", "L1")]
    assert float(l1["value_as_number"]) == 95.5 and l1["unit_source_value"] == "HU" and l1["person_id"] == "101"
    for f in feats:  # every feature points at a measurement of the same person and at its series
        m = meas[f["image_feature_event_id"]]
        assert m["person_id"] == f["person_id"] and f["image_occurrence_id"] == io["1.1"]["image_occurrence_id"]


def test_person_map_must_have_columns(wh: Warehouse, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="person_map lacks"):
        export_omop(wh.catalog_path, pa.table({"person_id": [1]}), tmp_path / "x")


@pytest.mark.integration
def test_export_postgres(wh: Warehouse, postgres_url: str) -> None:
    import psycopg

    res = export_omop(wh.catalog_path, PERSONS, postgres_url + "?schema=mi_export")
    assert res.rows["image_feature"] == 3
    with psycopg.connect(postgres_url) as pg:
        rows = pg.execute(
            "select io.image_series_uid, m.value_source_value, m.value_as_number "
            "from mi_export.image_feature f join mi_export.measurement m on m.measurement_id = f.image_feature_event_id "
            "join mi_export.image_occurrence io using (image_occurrence_id) order by 2").fetchall()
    assert rows == [("1.1", "L1", 95.5), ("1.1", "L2", 101.0), ("1.1", "L3", 120.0)]
