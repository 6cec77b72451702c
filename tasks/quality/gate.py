"""Run the checks of a stage and turn all results of a run into the publish verdict."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import pyarrow as pa

from schemas.core import Table
from tasks.quality.expectations import validate_table
from tasks.quality.omop import Frame, OmopThresholds, check_omop
from tasks.quality.report import render_report
from tasks.quality.results import (
    CheckKind,
    CheckResult,
    QualityOutcome,
    Severity,
    critical_failures,
    results_table,
)
from tasks.quality.rules import DOMAIN_RULES, Rule, run_rules


def _declared(declared: Mapping[str, Table] | None) -> Mapping[str, Table]:
    if declared is not None:
        return declared
    from schemas import TABLES

    return TABLES


def check_tables(
    stage: str,
    tables: Mapping[str, pa.Table],
    *,
    context: Mapping[str, pa.Table] | None = None,
    declared: Mapping[str, Table] | None = None,
    rules: Iterable[Rule] = DOMAIN_RULES,
) -> list[CheckResult]:
    """Check warehouse tables after a stage: generated suites plus domain rules.

    Parameters
    ----------
    stage
        The stage that produced (or last changed) ``tables``, e.g. ``"ingest"``, ``"extract"``.
    tables
        Arrow tables by declared name; each gets its suite, and the rules about it run.
    context
        Further tables the rules may look up but that are not checked themselves at this stage (e.g.
        ``series`` when checking ``vertebra_measurements``); rules whose tables are absent are skipped.
    declared
        Declarations to check against; ``schemas.TABLES`` by default.
    rules
        Domain rules; :data:`tasks.quality.rules.DOMAIN_RULES` by default.

    Returns
    -------
    list of CheckResult
        Suite results per table, then rule results; an undeclared table gives one critical failure.
    """
    decl = _declared(declared)
    out: list[CheckResult] = []
    for name, data in tables.items():
        table = decl.get(name)
        if table is None:
            out.append(CheckResult(
                table=name, check="table_is_declared", severity=Severity.CRITICAL, success=False,
                kind=CheckKind.SCHEMA, details=f"{name} is not declared in schemas.tables", stage=stage,
                element_count=data.num_rows))
            continue
        out.extend(replace(r, stage=stage) for r in validate_table(table, data))
    frames = {**(context or {}), **tables}
    mine = [r for r in rules if r.table in tables]
    out.extend(run_rules(frames, mine, decl, stage))
    return out


def check_omop_input(
    frames: Mapping[str, Frame], *, stage: str = "clinical", thresholds: OmopThresholds | None = None
) -> list[CheckResult]:
    """DQD-style checks of the OMOP input (see :func:`tasks.quality.omop.check_omop`)."""
    return check_omop(frames, thresholds, stage=stage)


def verdict(results: Sequence[CheckResult], run_id: str, run_time: datetime | None = None) -> QualityOutcome:
    """The publish verdict of a run from all its results.

    Parameters
    ----------
    results
        Every check result of the run, all stages.
    run_id
        The run's id.
    run_time
        When the checks started (UTC); now when omitted.

    Returns
    -------
    QualityOutcome
        ``dq_results`` rows, the labels of critical failures (non-empty: do not publish) and the HTML
        report.
    """
    when = run_time or datetime.now(UTC)
    return QualityOutcome(
        results=results_table(results, run_id, when),
        critical_failures=critical_failures(results),
        report_html=render_report(results, run_id, when),
    )
