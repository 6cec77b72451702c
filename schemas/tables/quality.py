"""Data-quality results: one row per check per run, so trends can be queried over runs."""

from __future__ import annotations

import pyarrow as pa

from schemas.core import Column, Layer, Table

SEVERITIES: tuple[str, ...] = ("critical", "warning")
CHECK_KINDS: tuple[str, ...] = ("schema", "domain", "omop")

DQ_RESULTS = Table(
    name="dq_results",
    layer=Layer.MARTS,
    grain="one row per check per run (run, stage, table, check)",
    description=(
        "Outcome of every data-quality check of every run: expectation suites generated from the table "
        "declarations, domain rules and OMOP Data-Quality-Dashboard-style checks. Holds counts and "
        "non-identifying observed values only, never patient data."
    ),
    columns=(
        Column("run_id", pa.string(), "the refresh run that executed the check", nullable=False),
        Column("run_time", pa.timestamp("us", tz="UTC"), "when the run's checks started", nullable=False),
        Column("stage", pa.string(), "pipeline stage after which the check ran (ingest, extract, ...)",
               nullable=False),
        Column("table_name", pa.string(), "checked table (warehouse table or omop.<table>)", nullable=False),
        Column("check_name", pa.string(), "check identifier, unique within run, stage and table",
               nullable=False),
        Column("column_name", pa.string(), "checked column(s), comma separated; null for table-level checks"),
        Column("check_kind", pa.string(), "origin of the check", nullable=False, allowed=CHECK_KINDS),
        Column("severity", pa.string(), "a failed critical check blocks the publish", nullable=False,
               allowed=SEVERITIES),
        Column("success", pa.bool_(), "whether the check passed", nullable=False),
        Column("observed_value", pa.string(), "what was observed (a count, fraction or type)"),
        Column("expected", pa.string(), "what the check expects, in words"),
        Column("details", pa.string(), "explanation of a failure; no identifiers or patient values"),
        Column("failing_count", pa.int64(), "rows (or values) that fail the check", unit="rows", min=0),
        Column("element_count", pa.int64(), "rows the check looked at", unit="rows", min=0),
    ),
    key=("run_id", "stage", "table_name", "check_name"),
    critical_checks=False,
)

TABLES: list[Table] = [DQ_RESULTS]
