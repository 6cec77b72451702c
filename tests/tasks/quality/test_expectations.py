"""Suites generated from declarations: column set, types, nullability, ranges, allowed values, keys."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import schemas
from tasks.quality.expectations import build_suite, validate_table
from tasks.quality.results import Severity

from .conftest import SERIES, VERTEBRA


def _by_check(results):  # type: ignore[no-untyped-def]
    return {r.check: r for r in results}


def test_every_declared_table_gets_a_suite_and_its_empty_table_passes() -> None:
    assert "dq_results" in schemas.TABLES
    for name, table in schemas.TABLES.items():
        suite = build_suite(table)
        assert len(suite.expectations) >= 1 + sum(not c.nullable for c in table.columns), name
        results = validate_table(table, table.empty())
        failed = [r.label for r in results if not r.success]
        assert not failed, f"{name}: {failed}"


def test_clean_table_passes_every_check(clean_tables: dict[str, pa.Table]) -> None:
    results = validate_table(VERTEBRA, clean_tables["vertebra_measurements"])
    checks = _by_check(results)
    assert all(r.success for r in results), [r.label for r in results if not r.success]
    # one per: column set, types, 2 not-null, 1 range, 1 allowed set, compound key
    assert len(results) == 7
    assert checks["expect_column_values_to_be_between(trabecular_hu_mean)"].failing_count == 0
    assert checks["expect_column_values_to_be_between(trabecular_hu_mean)"].element_count == 6


def test_out_of_range_hu_is_named_with_its_value(clean_tables: dict[str, pa.Table]) -> None:
    vm = clean_tables["vertebra_measurements"]
    hu = vm.column("trabecular_hu_mean").to_pylist()
    hu[1] = 4100.0
    bad = vm.set_column(2, "trabecular_hu_mean", pa.array(hu, pa.float64()))
    r = _by_check(validate_table(VERTEBRA, bad))["expect_column_values_to_be_between(trabecular_hu_mean)"]
    assert not r.success and r.severity is Severity.CRITICAL
    assert r.failing_count == 1
    assert "4100" in (r.details or "") and "out of range" in (r.details or "")
    assert r.expected == "values in [-1000, 3000]"


def test_duplicate_keys_are_counted_but_not_quoted(clean_tables: dict[str, pa.Table]) -> None:
    vm = clean_tables["vertebra_measurements"]
    bad = pa.concat_tables([vm, vm.slice(0, 1)])
    r = _by_check(validate_table(VERTEBRA, bad))["expect_compound_columns_to_be_unique(series_instance_uid,level)"]
    assert not r.success and r.failing_count == 2
    assert "1.2.1.1" not in (r.details or "")  # UIDs are quasi-identifiers: never quoted

    series = clean_tables["series"]
    dup = pa.concat_tables([series, series.slice(2, 1)])
    r = _by_check(validate_table(SERIES, dup))["expect_column_values_to_be_unique(series_instance_uid)"]
    assert not r.success and r.failing_count == 2 and "1.2.2.1" not in (r.details or "")


def test_nulls_allowed_values_types_and_missing_columns(clean_tables: dict[str, pa.Table]) -> None:
    series = clean_tables["series"]
    bad = series.set_column(2, "modality", pa.array(["CT", "PET", None]))
    bad = bad.set_column(1, "study_instance_uid", pa.array(["1.2.1", None, "1.2.2"]))
    checks = _by_check(validate_table(SERIES, bad))
    assert checks["expect_column_values_to_be_in_set(modality)"].failing_count == 1
    assert "PET" in (checks["expect_column_values_to_be_in_set(modality)"].details or "")
    assert checks["expect_column_values_to_not_be_null(study_instance_uid)"].failing_count == 1

    wrong_type = series.set_column(3, "n_instances", pc.cast(series.column("n_instances"), pa.int64()))
    r = _by_check(validate_table(SERIES, wrong_type))["expect_column_types_to_match_declaration"]
    assert not r.success and "n_instances is int64, declared int32" in (r.details or "")

    missing = series.drop_columns(["modality"])
    checks = _by_check(validate_table(SERIES, missing))
    cols = checks["expect_table_columns_to_match_set"]
    assert not cols.success and cols.details == "missing column(s) modality"
    assert not any("(modality)" in c for c in checks)  # no column checks on a missing column


def test_severity_follows_critical_checks_flag(clean_tables: dict[str, pa.Table]) -> None:
    from dataclasses import replace

    relaxed = replace(SERIES, critical_checks=False)
    bad = clean_tables["series"].set_column(2, "modality", pa.array(["CT", "PET", "DX"]))
    r = _by_check(validate_table(relaxed, bad))["expect_column_values_to_be_in_set(modality)"]
    assert not r.success and r.severity is Severity.WARNING


@pytest.mark.parametrize("n", [0, 1])
def test_ranges_on_integer_columns(clean_tables: dict[str, pa.Table], n: int) -> None:
    series = clean_tables["series"]
    counts = [120, n, 1]
    r = _by_check(validate_table(SERIES, series.set_column(3, "n_instances", pa.array(counts, pa.int32()))))
    assert r["expect_column_values_to_be_between(n_instances)"].success is (n >= 1)
