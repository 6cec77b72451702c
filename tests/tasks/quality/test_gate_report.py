"""The verdict and the report: every injected defect is caught, named and (when critical) blocks."""

from __future__ import annotations

import html as htmllib
import re
from datetime import UTC, date, datetime

import pyarrow as pa

from schemas import get_table
from schemas.core import Table
from tasks.quality import check_omop_input, check_tables, results_from_table, verdict
from tasks.quality.expectations import validate_table

RUN_TIME = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def _inject(clean: dict[str, pa.Table], omop: dict[str, pa.Table]) -> tuple[dict[str, pa.Table], dict[str, pa.Table]]:
    vm = clean["vertebra_measurements"]
    hu = vm.column("trabecular_hu_mean").to_pylist()
    hu[0] = 3500.0                                                     # out-of-range HU
    vm = vm.set_column(2, "trabecular_hu_mean", pa.array(hu, pa.float64()))
    vm = pa.concat_tables([vm, vm.slice(1, 1)])                        # duplicate key
    series = clean["series"]
    orphan = series.slice(0, 1).set_column(0, "series_instance_uid", pa.array(["7.7.7"]))
    orphan = orphan.set_column(1, "study_instance_uid", pa.array(["7.7"]))
    orphan = orphan.cast(series.schema)
    tables = {**clean, "vertebra_measurements": vm, "series": pa.concat_tables([series, orphan])}  # orphan series
    cond = omop["condition_occurrence"].to_pylist()
    cond.append({**cond[0], "condition_occurrence_id": 13, "condition_start_date": "1949-01-01"})  # before birth
    measurement = omop["measurement"].drop_columns(["measurement_date"])                            # missing column
    return tables, {**omop, "condition_occurrence": pa.Table.from_pylist(cond), "measurement": measurement}


def test_clean_run_passes_and_rows_conform(clean_tables: dict[str, pa.Table], omop_frames: dict[str, pa.Table],
                                           declared: dict[str, Table]) -> None:
    results = check_tables("ingest", clean_tables, declared=declared) + check_omop_input(omop_frames)
    out = verdict(results, "run-ok", RUN_TIME)
    assert out.passed and out.critical_failures == [] and out.reason() == ""
    dq = get_table("dq_results")
    assert out.results.schema.equals(dq.arrow_schema())
    assert out.results.num_rows == len(results)
    # dq_results passes its own generated suite (types, enums, key uniqueness)
    failed = [r.label for r in validate_table(dq, out.results) if not r.success]
    assert failed == []
    assert "No critical failures" in out.report_html


def test_injected_defects_are_caught_named_and_block(clean_tables: dict[str, pa.Table],
                                                     omop_frames: dict[str, pa.Table],
                                                     declared: dict[str, Table]) -> None:
    tables, omop = _inject(clean_tables, omop_frames)
    results = check_tables("extract", tables, declared=declared) + check_omop_input(omop)
    out = verdict(results, "run-bad", RUN_TIME)
    assert not out.passed
    crit = "\n".join(out.critical_failures)
    expected_critical = [
        "extract/vertebra_measurements: expect_column_values_to_be_between(trabecular_hu_mean)",
        "extract/vertebra_measurements: expect_compound_columns_to_be_unique(series_instance_uid,level)",
        "extract/series: references(study_instance_uid->studies)",
        "clinical/omop.measurement: cdmField",
    ]
    for label in expected_critical:
        assert label in crit
    assert len(out.critical_failures) == 4, out.critical_failures
    warn = "\n".join(out.warnings)
    assert "clinical/omop.condition_occurrence: plausibleAfterBirth(condition_start_date)" in warn
    # the domain plausibility window also flags the HU (as a warning)
    assert "extract/vertebra_measurements: plausible_range(trabecular_hu_mean)" in warn
    assert out.reason().startswith("publish blocked by 4 critical data-quality failures: ")

    html = htmllib.unescape(out.report_html)
    for label in expected_critical + ["plausibleAfterBirth(condition_start_date)"]:
        assert label.split(": ")[-1] in html
    assert "Publish blocked: 4 critical checks failed" in html
    assert "missing required column(s) measurement_date" in html
    # failures come before passes: the first 'pass' badge follows the last failure row of the summary table
    first_pass = html.index('<span class="badge b-pass">pass</span>')
    assert html.index("plausibleAfterBirth(condition_start_date)") < first_pass
    # grouped by stage
    assert html.index("stage: extract") < html.index("stage: clinical")

    rows = out.results.to_pylist()
    failed_rows = {(r["table_name"], r["check_name"]) for r in rows if not r["success"]}
    assert ("vertebra_measurements", "expect_column_values_to_be_between(trabecular_hu_mean)") in failed_rows
    assert ("omop.condition_occurrence", "plausibleAfterBirth(condition_start_date)") in failed_rows
    assert all(r["run_id"] == "run-bad" and r["run_time"] == RUN_TIME for r in rows)
    assert [r.label for r in results_from_table(out.results)] == [r.label for r in results]


def test_no_identifiers_reach_results_or_report(clean_tables: dict[str, pa.Table], omop_frames: dict[str, pa.Table],
                                                 declared: dict[str, Table]) -> None:
    tables, omop = _inject(clean_tables, omop_frames)
    dup_person = pa.concat_tables([tables["studies"], tables["studies"].slice(0, 1)])
    tables = {**tables, "studies": dup_person}
    out = verdict(check_tables("ingest", tables, declared=declared) + check_omop_input(omop), "r", RUN_TIME)
    blob = out.report_html + " ".join(str(v) for v in out.results.to_pylist())
    for secret in ["a" * 32, "MRN001", "1.2.1.1", "7.7.7", "1.2.2.1"]:
        assert secret not in blob
    assert re.search(r"\b1949\b", blob) is None and str(date(1950, 5, 17)) not in blob


def test_undeclared_table_is_a_critical_failure(declared: dict[str, Table]) -> None:
    out = check_tables("ingest", {"mystery": pa.table({"x": [1]})}, declared=declared)
    assert len(out) == 1 and not out[0].success and out[0].check == "table_is_declared"
