"""Domain rules: ranges, date order, referential integrity, uniqueness, completeness, skipping."""

from __future__ import annotations

from datetime import date

import polars as pl
import pyarrow as pa

from schemas.core import PHI, Column, Layer, Table
from tasks.quality.results import CheckKind, Severity
from tasks.quality.rules import (
    DOMAIN_RULES,
    CompletenessRule,
    DateOrderRule,
    RangeRule,
    ReferenceRule,
    UniqueRule,
    applicable,
    run_rules,
)


def test_default_rules_pass_on_consistent_tables(clean_tables: dict[str, pa.Table], declared: dict[str, Table]) -> None:
    results = run_rules(clean_tables, DOMAIN_RULES, declared, stage="ingest")
    names = {(r.table, r.check) for r in results}
    assert ("series", "references(study_instance_uid->studies)") in names
    assert ("vertebra_measurements", "references(series_instance_uid->series)") in names
    assert ("vertebra_measurements", "plausible_range(trabecular_hu_mean)") in names
    assert ("studies", "plausible_range(age_at_study_years)") in names
    assert all(r.success for r in results), [r.label for r in results if not r.success]
    assert all(r.stage == "ingest" and r.kind is CheckKind.DOMAIN for r in results)
    # body_composition / series.modality completeness are skipped: not declared in this test's schema
    assert not any(r.table == "body_composition" for r in results)


def test_orphan_series_is_caught(clean_tables: dict[str, pa.Table], declared: dict[str, Table]) -> None:
    series = clean_tables["series"]
    orphan = pa.table({"series_instance_uid": ["9.9.1", "9.9.2"], "study_instance_uid": ["9.9", "9.9"],
                       "modality": ["CT", "CT"], "n_instances": pa.array([5, 5], pa.int32())},
                      schema=series.schema)
    tables = {**clean_tables, "series": pa.concat_tables([series, orphan])}
    res = {r.check: r for r in run_rules(tables, DOMAIN_RULES, declared) if r.table == "series"}
    r = res["references(study_instance_uid->studies)"]
    assert not r.success and r.severity is Severity.CRITICAL
    assert r.failing_count == 2 and r.element_count == 5
    assert "2 row(s) (1 distinct key(s)) of series have no studies row" == r.details
    assert "9.9" not in (r.details or "")


def test_orphan_measurement_and_int_width_mismatch() -> None:
    child = pl.DataFrame({"series_id": pl.Series([1, 2, 3], dtype=pl.Int32)})
    parent = pl.DataFrame({"id": pl.Series([1, 2], dtype=pl.Int64)})
    rule = ReferenceRule("m", Severity.CRITICAL, columns=("series_id",), parent="p", parent_columns=("id",))
    (r,) = run_rules({"m": child, "p": parent}, [rule])
    assert r.failing_count == 1 and not r.success


def test_range_rule_quotes_values_only_for_phi_free_columns() -> None:
    decl = Table("t", Layer.SILVER, "g", "d", columns=(
        Column("hu", pa.float64(), "hu"), Column("age", pa.float64(), "age", phi=PHI.QUASI)))
    data = pa.table({"hu": [150.0, 900.0, None, -150.0], "age": [50.0, 130.0, 70.0, 71.0]})
    rules = [RangeRule("t", Severity.WARNING, column="hu", min=-100, max=600, why="implausible"),
             RangeRule("t", Severity.WARNING, column="age", min=0, max=110)]
    hu, age = run_rules({"t": data}, rules, {"t": decl})
    assert hu.failing_count == 2 and "900" in (hu.details or "") and "-150" in (hu.details or "")
    assert hu.element_count == 4 and hu.severity is Severity.WARNING
    assert age.failing_count == 1 and "130" not in (age.details or "")


def test_date_order_rule() -> None:
    data = pa.table({"index_date": [date(2020, 1, 1), date(2021, 5, 1), date(2019, 1, 1), None],
                     "followup_end_date": [date(2024, 1, 1), date(2021, 4, 30), date(2019, 1, 1), date(2020, 1, 1)]})
    (r,) = run_rules({"cohort": data}, [DateOrderRule("cohort", Severity.CRITICAL, earlier="index_date",
                                                      later="followup_end_date")])
    assert r.failing_count == 1 and not r.success
    (s,) = run_rules({"cohort": data}, [DateOrderRule("cohort", Severity.CRITICAL, earlier="index_date",
                                                      later="followup_end_date", strict=True)])
    assert s.failing_count == 2


def test_unique_and_completeness_rules() -> None:
    data = pl.DataFrame({"k": ["a", "a", "b", "c", "d"], "v": [1.0, None, None, 2.0, 3.0]})
    u, c80, c50 = run_rules({"t": data}, [
        UniqueRule("t", Severity.CRITICAL, columns=("k",)),
        CompletenessRule("t", Severity.WARNING, column="v", min_fraction=0.8),
        CompletenessRule("t", Severity.WARNING, column="v", min_fraction=0.5),
    ])
    assert u.failing_count == 2 and not u.success
    assert not c80.success and c80.observed == "60.0% filled" and c80.failing_count == 2
    assert c50.success and c50.details is None


def test_rules_skip_absent_or_undeclared_tables_and_flag_missing_columns(declared: dict[str, Table]) -> None:
    rule = ReferenceRule("series", Severity.CRITICAL, columns=("study_instance_uid",), parent="studies")
    series = pa.table({"series_instance_uid": ["1"], "study_instance_uid": ["2"]})
    assert run_rules({"series": series}, [rule], declared) == []  # parent not loaded at this stage
    assert not applicable(RangeRule("body_composition", Severity.CRITICAL, column="muscle_hu_mean"), declared)
    assert not applicable(RangeRule("series", Severity.CRITICAL, column="no_such_column"), declared)
    (r,) = run_rules({"series": series, "studies": pa.table({"person_key": ["x"]})}, [rule], declared)
    assert not r.success and "missing column(s) studies.study_instance_uid" in (r.details or "")


def test_default_rule_names_are_unique_per_table() -> None:
    seen = [(r.table, r.check_name) for r in DOMAIN_RULES]
    assert len(seen) == len(set(seen))
