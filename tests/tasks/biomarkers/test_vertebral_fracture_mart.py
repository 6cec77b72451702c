"""The unrecognised_vertebral_fracture mart on hand-made silver/bronze rows (DuckDB, declared schemas)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from schemas.registry import get_table

SQL = Path(__file__).parents[3] / "warehouse" / "sql" / "marts" / "unrecognised_vertebral_fracture.sql"


def _table(name: str, rows: list[dict]) -> pa.Table:
    decl = get_table(name)
    full = [{c: r.get(c) for c in decl.column_names} for r in rows]
    return pa.Table.from_pylist(full, schema=decl.arrow_schema())


def _series(uid: str, study: str, person: str, d: date) -> dict:
    return {"series_instance_uid": uid, "study_instance_uid": study, "person_key": person, "study_date": d,
            "n_instances": 1}


def _vf(uid: str, level: str, grade: int, kind: str = "wedge", sdi: int = 2, flags: str | None = None) -> dict:
    return {"series_instance_uid": uid, "level": level, "genant_grade": grade, "fracture_type": kind,
            "spinal_deformity_index": sdi, "source": "ct", "extractor_version": "t", "qc_flags": flags}


def _fx(person: str, d: date, site: str = "vertebral") -> dict:
    return {"person_key": person, "event_date": d, "site": site, "is_mof": True, "is_high_trauma": False,
            "is_fragility": True, "phenotype": "vf@1"}


def test_mart_finds_only_unrecognised_grade2_fractures() -> None:
    d = date(2020, 5, 1)
    series = [
        _series("s.a", "st.a", "pa", d),  # grade 2, no diagnosis -> listed
        _series("s.b", "st.b", "pb", d),  # grade 3, diagnosed before -> not listed
        _series("s.c", "st.c", "pc", d),  # grade 1 only -> not listed
        _series("s.d1", "st.d1", "pd", date(2019, 1, 1)),  # first image grade 2; diagnosis after it
        _series("s.d2", "st.d2", "pd", date(2021, 1, 1)),
        _series("s.e", "st.e", "pe", d),  # grade 2, only a hip fracture recorded before -> listed
    ]
    studies = [{"study_instance_uid": s["study_instance_uid"], "person_key": s["person_key"],
                "study_date": s["study_date"], "n_series": 1, "n_instances": 1} for s in series]
    vfs = [
        _vf("s.a", "L1", 2), _vf("s.a", "T12", 0, "none"), _vf("s.a", "L2", 3, "crush"),
        _vf("s.b", "L1", 3), _vf("s.c", "L1", 1), _vf("s.d1", "T12", 2, "biconcave"), _vf("s.d2", "T12", 3),
        _vf("s.e", "L3", 2, flags="partial_body,thick_slices"),  # from a thick-slice series only
    ]
    events = [_fx("pb", date(2018, 1, 1)), _fx("pd", date(2019, 6, 1)), _fx("pe", date(2018, 1, 1), "hip")]
    con = duckdb.connect()
    for schema in ("bronze", "silver"):
        con.execute(f"create schema {schema}")
    for schema, name, rows in (("bronze", "series", series), ("bronze", "studies", studies),
                               ("silver", "vertebral_fractures", vfs), ("silver", "fracture_events", events)):
        t = _table(name, rows)  # noqa: F841 - read by DuckDB's replacement scan
        con.execute(f"create table {schema}.{name} as select * from t")
    out = con.sql(SQL.read_text()).to_arrow_table().to_pylist()
    by = {r["person_key"]: r for r in out}
    assert sorted(by) == ["pa", "pd", "pe"]
    assert by["pa"]["max_genant_grade"] == 3 and by["pa"]["n_fractured_levels"] == 2
    assert by["pa"]["fractured_levels"] == "L1:wedge,L2:crush"
    assert by["pa"]["first_vf_diagnosis_after_date"] is None
    assert by["pd"]["series_instance_uid"] == "s.d1" and by["pd"]["image_date"] == date(2019, 1, 1)
    assert by["pd"]["first_vf_diagnosis_after_date"] == date(2019, 6, 1)
    assert by["pd"]["days_image_to_diagnosis"] == 151
    assert [by[p]["thick_slices"] for p in ("pa", "pd", "pe")] == [False, False, True]
    text = SQL.read_text()
    assert text.rstrip().endswith("select * from final")
