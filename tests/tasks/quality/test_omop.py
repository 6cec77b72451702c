"""OHDSI DQD-style checks of the OMOP input, with injected defects."""

from __future__ import annotations

from datetime import date

import polars as pl
import pyarrow as pa

from tasks.quality.omop import OmopThresholds, check_omop
from tasks.quality.results import CheckKind, Severity


def _failed(results):  # type: ignore[no-untyped-def]
    return {(r.table, r.check): r for r in results if not r.success}


def test_clean_extract_passes(omop_frames: dict[str, pa.Table]) -> None:
    results = check_omop(omop_frames, today=date(2026, 12, 1))
    assert not _failed(results), list(_failed(results))
    checks = {(r.table, r.check) for r in results}
    for expected in [("omop.person", "cdmField"), ("omop.condition_occurrence", "isForeignKey(person_id)"),
                     ("omop.condition_occurrence", "plausibleAfterBirth(condition_start_date)"),
                     ("omop.visit_occurrence", "plausibleBeforeDeath(visit_start_date)"),
                     ("omop.observation_period", "plausibleStartBeforeEnd(observation_period_start_date)"),
                     ("omop.condition_occurrence", "cdmDatatype(condition_start_date)"),
                     ("omop.person", "measurePersonCompleteness(observation_period)")]:
        assert expected in checks
    assert all(r.kind is CheckKind.OMOP and r.stage == "clinical" for r in results)


def test_fracture_before_birth(omop_frames: dict[str, pa.Table]) -> None:
    cond = pl.from_arrow(omop_frames["condition_occurrence"])
    # person 1 was born 1950-05-17: a vertebral fracture on 1950-05-01 is before birth, 1950-05-17 is not
    extra = pl.DataFrame({"condition_occurrence_id": [13, 14], "person_id": [1, 1],
                          "condition_concept_id": [4129394, 4129394],
                          "condition_start_date": ["1950-05-01", "1950-05-17"], "condition_end_date": [None, None],
                          "condition_type_concept_id": [32020, 32020]}, schema=cond.schema)
    frames = {**omop_frames, "condition_occurrence": pl.concat([cond, extra])}
    failed = _failed(check_omop(frames))
    r = failed[("omop.condition_occurrence", "plausibleAfterBirth(condition_start_date)")]
    assert r.failing_count == 1 and r.element_count == 5 and r.severity is Severity.WARNING
    assert r.details == "1 record(s) dated before the person's birth"
    assert list(failed) == [("omop.condition_occurrence", "plausibleAfterBirth(condition_start_date)")]


def test_visit_after_death_respects_grace(omop_frames: dict[str, pa.Table]) -> None:
    visits = omop_frames["visit_occurrence"].to_pylist()
    visits.append({**visits[1], "visit_occurrence_id": 102, "visit_start_date": date(2020, 3, 1),
                   "visit_end_date": date(2020, 3, 1)})   # 29 days after death: inside the 60-day grace
    visits.append({**visits[1], "visit_occurrence_id": 103, "visit_start_date": date(2021, 1, 5),
                   "visit_end_date": date(2021, 1, 5)})
    frames = {**omop_frames, "visit_occurrence": pa.Table.from_pylist(visits)}
    r = _failed(check_omop(frames))[("omop.visit_occurrence", "plausibleBeforeDeath(visit_start_date)")]
    assert r.failing_count == 1
    strict = check_omop(frames, OmopThresholds(death_grace_days=0))
    assert _failed(strict)[("omop.visit_occurrence", "plausibleBeforeDeath(visit_start_date)")].failing_count == 2


def test_missing_required_column_is_critical_and_named(omop_frames: dict[str, pa.Table]) -> None:
    frames = {**omop_frames,
              "condition_occurrence": omop_frames["condition_occurrence"].drop_columns(["condition_start_date"])}
    failed = _failed(check_omop(frames))
    r = failed[("omop.condition_occurrence", "cdmField")]
    assert r.severity is Severity.CRITICAL and r.details == "missing required column(s) condition_start_date"
    assert r.column == "condition_start_date"
    assert not any("condition_start_date)" in c for _, c in failed)  # dependent checks are not run


def test_conformance_defects(omop_frames: dict[str, pa.Table]) -> None:
    cond = omop_frames["condition_occurrence"].to_pylist()
    cond.append({**cond[0], "person_id": 99})                                  # orphan + duplicate key
    cond.append({**cond[1], "condition_occurrence_id": 20, "condition_start_date": "2019-02-30"})  # not a date
    frames = {**omop_frames, "condition_occurrence": pa.Table.from_pylist(cond)}
    failed = _failed(check_omop(frames))
    assert failed[("omop.condition_occurrence", "isForeignKey(person_id)")].failing_count == 1
    assert failed[("omop.condition_occurrence", "isPrimaryKey(condition_occurrence_id)")].failing_count == 2
    assert failed[("omop.condition_occurrence", "cdmDatatype(condition_start_date)")].failing_count == 1
    assert all(r.severity is Severity.CRITICAL for r in failed.values())


def test_plausibility_and_completeness(omop_frames: dict[str, pa.Table]) -> None:
    person = omop_frames["person"].to_pylist()
    person.append({**person[0], "person_id": 4, "year_of_birth": 1800})
    op = omop_frames["observation_period"].to_pylist()
    op[1] = {**op[1], "observation_period_end_date": date(2010, 1, 1)}    # ends before it starts
    meas = omop_frames["measurement"].to_pylist()
    meas.append({**meas[0], "measurement_id": 1002, "measurement_concept_id": 0})
    frames = {**omop_frames, "person": pa.Table.from_pylist(person), "observation_period": pa.Table.from_pylist(op),
              "measurement": pa.Table.from_pylist(meas)}
    failed = _failed(check_omop(frames, today=date(2026, 12, 1)))
    assert failed[("omop.person", "plausibleValueLow(year_of_birth)")].failing_count == 1
    assert failed[("omop.person", "measurePersonCompleteness(observation_period)")].failing_count == 1
    r = failed[("omop.observation_period", "plausibleStartBeforeEnd(observation_period_start_date)")]
    assert r.failing_count == 1 and r.severity is Severity.CRITICAL  # 1 of 3 rows > critical_above (25%)
    z = failed[("omop.measurement", "standardConceptRecordCompleteness(measurement_concept_id)")]
    assert z.failing_count == 1 and z.observed == "1 of 3 (33.3%)"


def test_no_person_table_and_no_identifiers_in_results(omop_frames: dict[str, pa.Table]) -> None:
    frames = {k: v for k, v in omop_frames.items() if k != "person"}
    failed = _failed(check_omop(frames))
    assert failed[("omop.person", "cdmTable")].severity is Severity.CRITICAL
    text = " ".join(f"{r.details} {r.observed} {r.expected}" for r in check_omop(omop_frames))
    assert "MRN" not in text
