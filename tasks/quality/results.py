"""Check results and the verdict of a quality run (the object the publish gate reads)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from schemas.enums import StrValueEnum
from schemas.tables.quality import DQ_RESULTS


class Severity(StrValueEnum):
    """How bad a failed check is: ``critical`` blocks the publish, ``warning`` is reported only."""

    CRITICAL = "critical"
    WARNING = "warning"



class CheckKind(StrValueEnum):
    """Where a check comes from: the table declaration, a domain rule or the OMOP input checks."""

    SCHEMA = "schema"
    DOMAIN = "domain"
    OMOP = "omop"



@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check on one table.

    ``details`` and ``observed`` must never hold identifiers or patient values from PHI columns; the
    producers of results only quote values of columns declared ``PHI.NONE``.
    """

    table: str
    check: str
    severity: Severity
    success: bool
    kind: CheckKind
    column: str | None = None
    observed: str | None = None
    expected: str | None = None
    details: str | None = None
    failing_count: int | None = None
    element_count: int | None = None
    stage: str = ""

    @property
    def label(self) -> str:
        """``stage/table: check`` — how a failure is named in messages and the report."""
        where = f"{self.stage}/{self.table}" if self.stage else self.table
        return f"{where}: {self.check}"


def results_table(results: Iterable[CheckResult], run_id: str, run_time: datetime | None = None) -> pa.Table:
    """The ``dq_results`` rows of ``results`` (one row per check), conformed to the declaration.

    Parameters
    ----------
    results
        Check results of one run, any stages.
    run_id
        The run that executed them.
    run_time
        When the run's checks started (UTC); now when omitted. A naive datetime is taken as UTC.
    """
    if not run_id:
        raise ValueError("run_id is empty; every dq_results row needs its run")
    when = run_time or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    rows = list(results)
    data = {
        "run_id": [run_id] * len(rows),
        "run_time": [when] * len(rows),
        "stage": [r.stage for r in rows],
        "table_name": [r.table for r in rows],
        "check_name": [r.check for r in rows],
        "column_name": [r.column for r in rows],
        "check_kind": [CheckKind(r.kind).value for r in rows],
        "severity": [Severity(r.severity).value for r in rows],
        "success": [bool(r.success) for r in rows],
        "observed_value": [r.observed for r in rows],
        "expected": [r.expected for r in rows],
        "details": [r.details for r in rows],
        "failing_count": [r.failing_count for r in rows],
        "element_count": [r.element_count for r in rows],
    }
    return pa.Table.from_pydict(data, schema=DQ_RESULTS.arrow_schema())


def results_from_table(table: pa.Table) -> list[CheckResult]:
    """Inverse of :func:`results_table`: ``CheckResult`` objects from ``dq_results`` rows."""
    out: list[CheckResult] = []
    for row in table.to_pylist():
        out.append(
            CheckResult(
                table=row["table_name"],
                check=row["check_name"],
                severity=Severity(row["severity"]),
                success=bool(row["success"]),
                kind=CheckKind(row["check_kind"]),
                column=row["column_name"],
                observed=row["observed_value"],
                expected=row["expected"],
                details=row["details"],
                failing_count=row["failing_count"],
                element_count=row["element_count"],
                stage=row["stage"],
            )
        )
    return out


@dataclass
class QualityOutcome:
    """Verdict of the quality checks of a run (or of one stage).

    Attributes
    ----------
    results
        ``dq_results`` rows, one per check.
    critical_failures
        Labels (``stage/table: check — details``) of failed critical checks; non-empty blocks the publish.
    report_html
        Self-contained HTML report of all results, failures first.
    """

    results: pa.Table
    critical_failures: list[str] = field(default_factory=list)
    report_html: str = ""

    @property
    def passed(self) -> bool:
        """True when no critical check failed (the publish may go ahead)."""
        return not self.critical_failures

    @property
    def warnings(self) -> list[str]:
        """Labels of failed warning-level checks."""
        return [_failure_line(r) for r in results_from_table(self.results)
                if not r.success and r.severity is Severity.WARNING]

    def reason(self) -> str:
        """One sentence saying why the publish is blocked ("" when it is not)."""
        if self.passed:
            return ""
        n = len(self.critical_failures)
        head = "; ".join(self.critical_failures[:3])
        more = f" (and {n - 3} more)" if n > 3 else ""
        return f"publish blocked by {n} critical data-quality failure{'s' if n != 1 else ''}: {head}{more}"


def _failure_line(r: CheckResult) -> str:
    return f"{r.label} — {r.details}" if r.details else r.label


def critical_failures(results: Sequence[CheckResult]) -> list[str]:
    """Labels of the failed critical checks among ``results``, in order."""
    return [_failure_line(r) for r in results if not r.success and r.severity is Severity.CRITICAL]
