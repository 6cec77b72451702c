"""Great Expectations suites generated from the table declarations in :mod:`schemas`.

This is the only module that imports Great Expectations, so the engine can be swapped. GX 1.x has no
Polars engine and its DuckDB path through SQLAlchemy has open bugs, so each table is validated as a pandas
batch (Arrow -> pandas with Arrow-backed dtypes, which keeps integer columns with nulls as integers) in
one ephemeral context per process.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pandas as pd
import pyarrow as pa

from schemas.core import PHI, Table
from tasks.quality.results import CheckKind, CheckResult, Severity

_LOCK = threading.Lock()
_CONTEXT: Any = None
_DATASOURCE = "osteolake"
_MAX_SAMPLES = 5


def _quiet_gx_loggers() -> None:
    """GX sets INFO on its module loggers (temp docs folders, registrations); keep them to warnings."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _context() -> Any:
    """The process-wide ephemeral GX context (created once, ~3 s; offline)."""
    global _CONTEXT
    if _CONTEXT is None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        _quiet_gx_loggers()
        ctx = gx.get_context(mode="ephemeral")
        _quiet_gx_loggers()
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        ctx.data_sources.add_pandas(_DATASOURCE)
        _CONTEXT = ctx
    return _CONTEXT


def _batch_definition(asset_name: str) -> Any:
    ds = _context().data_sources.get(_DATASOURCE)
    try:
        asset = ds.get_asset(asset_name)
    except LookupError:
        asset = ds.add_dataframe_asset(asset_name)
    try:
        return asset.get_batch_definition("whole")
    except (KeyError, LookupError):
        return asset.add_batch_definition_whole_dataframe("whole")


def severity_of(table: Table) -> Severity:
    """Severity of the checks generated from ``table``: critical unless it opts out."""
    return Severity.CRITICAL if table.critical_checks else Severity.WARNING


def build_suite(table: Table, present: list[str] | None = None) -> Any:
    """The expectation suite of a declared table.

    Parameters
    ----------
    table
        The declaration: column set, nullability, numeric ranges, allowed values and key uniqueness become
        expectations.
    present
        Columns present in the data; column expectations are made only for these (a missing column is
        reported once, by the column-set expectation). ``None`` means all declared columns.

    Returns
    -------
    great_expectations.ExpectationSuite

    Notes
    -----
    Arrow types are not part of the suite: pandas conversion blurs them, so :func:`validate_table` compares
    the Arrow schema with the declaration directly.
    """
    import great_expectations as gx

    _context()  # GX needs an active context even to assemble a suite
    E = gx.expectations
    have = set(table.column_names if present is None else present)
    suite = gx.ExpectationSuite(name=f"osteolake.{table.name}")
    suite.add_expectation(E.ExpectTableColumnsToMatchSet(column_set=table.column_names, exact_match=True))
    for col in table.columns:
        if col.name not in have:
            continue
        if not col.nullable:
            suite.add_expectation(E.ExpectColumnValuesToNotBeNull(column=col.name))
        numeric = pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
        if numeric and (col.min is not None or col.max is not None):
            suite.add_expectation(
                E.ExpectColumnValuesToBeBetween(column=col.name, min_value=col.min, max_value=col.max)
            )
        if col.allowed is not None:
            suite.add_expectation(E.ExpectColumnValuesToBeInSet(column=col.name, value_set=list(col.allowed)))
    key = [k for k in table.key if k in have]
    if key and len(key) == len(table.key):
        if len(key) == 1:
            suite.add_expectation(E.ExpectColumnValuesToBeUnique(column=key[0]))
        else:
            suite.add_expectation(E.ExpectCompoundColumnsToBeUnique(column_list=key))
    return suite


def _expected_text(kind: str, kwargs: dict[str, Any]) -> str:
    if kind == "expect_column_values_to_be_between":
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        return f"values in [{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]"
    if kind == "expect_column_values_to_be_in_set":
        return "values in {" + ", ".join(map(str, kwargs.get("value_set", []))) + "}"
    if kind == "expect_column_values_to_not_be_null":
        return "no nulls"
    if kind in ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"):
        return "unique key"
    if kind == "expect_table_columns_to_match_set":
        return "columns: " + ", ".join(kwargs.get("column_set", []))
    return kind


def _to_result(table: Table, res: Any, severity: Severity, n_rows: int) -> CheckResult:
    cfg = res.expectation_config
    kind: str = cfg.type
    kwargs: dict[str, Any] = dict(cfg.kwargs)
    column = kwargs.get("column") or (",".join(kwargs["column_list"]) if "column_list" in kwargs else None)
    info = res.result or {}
    exc = res.exception_info or {}
    raised = bool(exc.get("raised_exception")) if isinstance(exc, dict) else False
    check = f"{kind}({column})" if column else kind
    failing = info.get("unexpected_count")
    observed: str | None = None
    details: str | None = None
    if raised:
        details = f"check could not run: {exc.get('exception_message')}"
    elif kind == "expect_table_columns_to_match_set":
        seen = list(info.get("observed_value") or [])
        missing = [c for c in table.column_names if c not in seen]
        extra = [c for c in seen if c not in table.column_names]
        observed = ", ".join(seen)
        failing = len(missing) + len(extra)
        if not res.success:
            parts = []
            if missing:
                parts.append(f"missing column(s) {', '.join(missing)}")
            if extra:
                parts.append(f"undeclared column(s) {', '.join(extra)}")
            details = "; ".join(parts)
    elif failing is not None:
        observed = f"{failing} of {info.get('element_count', n_rows)} failing"
        if not res.success:
            what = {
                "expect_column_values_to_be_between": "out of range",
                "expect_column_values_to_be_in_set": "not an allowed value",
                "expect_column_values_to_not_be_null": "null",
                "expect_column_values_to_be_unique": "duplicate key",
                "expect_compound_columns_to_be_unique": "duplicate key",
            }.get(kind, "failing")
            details = f"{failing} row(s) {what} in {column}"
            col_decl = table.column(column) if column in table.column_names else None
            samples = info.get("partial_unexpected_list") or []
            if col_decl is not None and col_decl.phi is PHI.NONE and samples and "null" not in what:
                shown = ", ".join(str(v) for v in samples[:_MAX_SAMPLES])
                details += f" (e.g. {shown})"
    return CheckResult(
        table=table.name,
        check=check,
        severity=severity,
        success=bool(res.success) and not raised,
        kind=CheckKind.SCHEMA,
        column=column,
        observed=observed,
        expected=_expected_text(kind, kwargs),
        details=details,
        failing_count=None if failing is None else int(failing),
        element_count=n_rows,
    )


def check_types(table: Table, data: pa.Table) -> CheckResult:
    """Compare the Arrow types of ``data`` with the declaration (one result for the table)."""
    wrong = []
    for col in table.columns:
        if col.name in data.column_names:
            got = data.schema.field(col.name).type
            if not got.equals(col.type):
                wrong.append(f"{col.name} is {got}, declared {col.type}")
    return CheckResult(
        table=table.name,
        check="expect_column_types_to_match_declaration",
        severity=severity_of(table),
        success=not wrong,
        kind=CheckKind.SCHEMA,
        observed=f"{len(wrong)} column(s) of another type",
        expected="declared Arrow types",
        details="; ".join(wrong) or None,
        failing_count=len(wrong),
        element_count=data.num_rows,
    )


def validate_table(table: Table, data: pa.Table) -> list[CheckResult]:
    """Run the generated suite of ``table`` on ``data``.

    Parameters
    ----------
    table
        The declaration.
    data
        The rows to check (any Arrow table; it need not conform).

    Returns
    -------
    list of CheckResult
        One per expectation, plus one for the Arrow types; severity from ``table.critical_checks``.

    Notes
    -----
    Samples of failing values are quoted only for columns declared ``PHI.NONE``.
    """
    present = [c for c in data.column_names]
    suite = build_suite(table, present)
    df = data.to_pandas(types_mapper=pd.ArrowDtype)
    severity = severity_of(table)
    with _LOCK:
        batch = _batch_definition(table.name).get_batch(batch_parameters={"dataframe": df})
        outcome = batch.validate(suite, result_format="BASIC")
    results = [check_types(table, data)]
    results.extend(_to_result(table, r, severity, data.num_rows) for r in outcome.results)
    return results
