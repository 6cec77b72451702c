"""Data-quality checks as pipeline steps: after each stage, and on the current snapshot.

What it does: reads the tables a stage wrote from the run's snapshot builder (or the current snapshot),
runs the generated expectation suites and domain rules of :mod:`tasks.quality` on them, and turns all
results of a run into the publish verdict and its HTML report.

Reads: warehouse tables (through :class:`warehouse.lake.SnapshotBuilder` / :class:`~warehouse.lake.Warehouse`).
Writes: ``WH/reports/dq-<run_id>.html`` and, for :func:`check_snapshot`, the run log (``dq_results``,
``run_summaries``). Settings: the warehouse folder only; no secrets.

The logic lives in plain functions (:func:`run_quality`, :func:`write_report`, :func:`check_current`);
the Prefect task and flow at the bottom wrap them.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
from prefect import flow, task

from tasks.quality import CheckResult, QualityOutcome, check_tables, verdict
from tasks.quality.rules import DOMAIN_RULES, Rule

#: Tables kept in the run log; they are results of checks, not checked themselves.
_NOT_CHECKED = frozenset({"dq_results", "run_summaries"})
#: Tables already checked, per snapshot builder (so ``tables=None`` checks each table once per run).
_CHECKED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


class _Reader(Protocol):
    def read(self, table: str) -> pa.Table: ...


def _declared_names() -> list[str]:
    from schemas import TABLES

    return [n for n in TABLES if n not in _NOT_CHECKED]


def _changed_tables(builder: Any) -> list[str]:
    """Tables the run has written so far (the builder's pending operations)."""
    names = getattr(builder, "changed_tables", None)
    if callable(names):
        names = names()
    if names is None:
        names = list(getattr(builder, "_ops", {}))
    return [n for n in names if n not in _NOT_CHECKED]


def _parents(tables: Iterable[str], rules: Iterable[Rule]) -> set[str]:
    wanted = set(tables)
    return {t for r in rules if r.table in wanted for t in r.needs if t not in wanted}


def run_quality(
    builder: _Reader,
    stage: str,
    tables: Sequence[str] | None = None,
    *,
    rules: Sequence[Rule] = DOMAIN_RULES,
) -> list[CheckResult]:
    """Check the tables of a stage as the run sees them.

    Parameters
    ----------
    builder
        The run's :class:`warehouse.lake.SnapshotBuilder` (anything with ``read(table) -> pa.Table``).
    stage
        Stage name stamped on the results (``ingest``, ``extract``, ...).
    tables
        Tables to check; ``None`` means those the run has written so far and not yet checked at an earlier
        stage of the same builder (so each table is checked once, after the stage that last wrote it).
        Undeclared names are skipped.
    rules
        Domain rules (default :data:`tasks.quality.rules.DOMAIN_RULES`); tables they reference are read as
        context.

    Returns
    -------
    list of CheckResult
    """
    from schemas import TABLES

    try:
        seen = _CHECKED.setdefault(builder, set())
    except TypeError:  # not weak-referenceable: no memory of earlier stages
        seen = set()
    if tables is None:
        names = [n for n in _changed_tables(builder) if n not in seen and n in TABLES]
    else:
        names = [n for n in tables if n in TABLES and n not in _NOT_CHECKED]
    seen.update(names)
    if not names:
        return []
    data = {n: builder.read(n) for n in names}
    context = {n: builder.read(n) for n in _parents(names, rules) if n in TABLES}
    return check_tables(stage, data, context=context, rules=rules)


def report_path(warehouse_root: Path, run_id: str) -> Path:
    """Where the HTML report of ``run_id`` is kept: ``WH/reports/dq-<run_id>.html``."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)
    return Path(warehouse_root) / "reports" / f"dq-{safe}.html"


def write_report(warehouse_root: Path, outcome: QualityOutcome, run_id: str) -> Path:
    """Write the outcome's HTML report beside the lake and return its path."""
    path = report_path(warehouse_root, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(outcome.report_html, encoding="utf-8")
    tmp.replace(path)
    return path


def check_current(
    warehouse_root: Path | str,
    run_id: str | None = None,
    *,
    record: bool = True,
    stage: str = "snapshot",
) -> tuple[QualityOutcome, Path]:
    """Check every declared table of the current snapshot; write the report; record the run.

    Parameters
    ----------
    warehouse_root
        The warehouse folder.
    run_id
        Id of this check run; ``dq-<UTC timestamp>`` when omitted.
    record
        Append the results to the run log (``dq_results``, ``run_summaries`` with status ``checked``).
    stage
        Stage name stamped on the results.

    Returns
    -------
    (QualityOutcome, Path)
        The verdict on the current snapshot and the report's path. Nothing is published or rolled back.
    """
    from warehouse.lake import Warehouse

    wh = Warehouse(warehouse_root)
    started = datetime.now(UTC)
    rid = run_id or "dq-" + started.strftime("%Y%m%dT%H%M%SZ")
    names = _declared_names()
    results = check_tables(stage, {n: wh.read(n) for n in names})
    outcome = verdict(results, rid, started)
    path = write_report(wh.root, outcome, rid)
    if record:
        current = wh.current()
        wh.record_run(rid, outcome.results, {
            "run_id": rid, "status": "checked", "is_published": False,
            "snapshot_id": current.id if current else None, "report_path": str(path),
            "blocked_by": outcome.critical_failures,
        })
    return outcome, path


def outcome_summary(outcome: QualityOutcome, path: Path | None) -> dict[str, Any]:
    """A JSON-ready summary of a verdict (for run summaries and flow results)."""
    rows = outcome.results
    n_failed = rows.num_rows - sum(1 for v in rows.column("success").to_pylist() if v)
    return {
        "checks": rows.num_rows, "failed": n_failed, "critical_failures": outcome.critical_failures,
        "passed": outcome.passed, "reason": outcome.reason(), "report_path": str(path) if path else None,
    }


# -- Prefect wrappers ------------------------------------------------------------------------------------

@task(name="dq-check-stage")
def check_stage_task(builder: Any, stage: str, tables: Sequence[str] | None = None) -> list[CheckResult]:
    """Prefect task around :func:`run_quality`."""
    return run_quality(builder, stage, tables)


@task(name="dq-verdict")
def verdict_task(results: Sequence[CheckResult], run_id: str, run_time: datetime | None = None) -> QualityOutcome:
    """Prefect task around :func:`tasks.quality.verdict`."""
    return verdict(results, run_id, run_time)


@flow(name="check_snapshot", log_prints=True)
def check_snapshot(warehouse: str, run_id: str | None = None) -> dict[str, Any]:
    """Prefect flow: re-check the current snapshot and record the results (publishes nothing)."""
    outcome, path = check_current(Path(warehouse), run_id)
    summary = outcome_summary(outcome, path)
    print(f"data quality: {summary['checks']} checks, {summary['failed']} failed; report {path}")
    if not outcome.passed:
        print(outcome.reason())
    return summary

