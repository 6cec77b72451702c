"""The per-run HTML report: self-contained, grouped by stage and table, failures first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

import jinja2

from tasks.quality.results import CheckResult, Severity

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("tasks.quality", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _order(r: CheckResult) -> tuple[int, str]:
    """Failed critical first, then failed warnings, then passes; by check name within each."""
    rank = 2 if r.success else (0 if r.severity is Severity.CRITICAL else 1)
    return rank, r.check


@dataclass
class _TableGroup:
    name: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def n_critical(self) -> int:
        return sum(1 for r in self.results if not r.success and r.severity is Severity.CRITICAL)

    @property
    def n_warning(self) -> int:
        return sum(1 for r in self.results if not r.success and r.severity is Severity.WARNING)

    @property
    def n_failed(self) -> int:
        return self.n_critical + self.n_warning


@dataclass
class _StageGroup:
    name: str
    tables: list[_TableGroup] = field(default_factory=list)

    @property
    def n_checks(self) -> int:
        return sum(len(t.results) for t in self.tables)

    @property
    def n_failed(self) -> int:
        return sum(t.n_failed for t in self.tables)


def _groups(results: Sequence[CheckResult]) -> list[_StageGroup]:
    stages: dict[str, dict[str, _TableGroup]] = {}
    for r in results:
        stages.setdefault(r.stage, {}).setdefault(r.table, _TableGroup(r.table)).results.append(r)
    out = []
    for name, tables in stages.items():
        groups = list(tables.values())
        for g in groups:
            g.results.sort(key=_order)
        groups.sort(key=lambda g: (-g.n_critical, -g.n_warning, g.name))
        out.append(_StageGroup(name, groups))
    return out


def _version() -> str:
    try:
        return version("osteolake")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "(dev)"


def render_report(results: Sequence[CheckResult], run_id: str, run_time: datetime | None = None) -> str:
    """Render the HTML report of one run.

    Parameters
    ----------
    results
        All check results of the run (any stages), e.g. from :func:`tasks.quality.gate.run_checks`.
    run_id
        The run's id (shown in the title).
    run_time
        When the run's checks started; now when omitted.

    Returns
    -------
    str
        A self-contained HTML page (inline CSS, no scripts, no external resources): a verdict banner naming
        every critical failure, counts, a table of all failed checks (critical first), then every check
        grouped by stage and table with failures first.
    """
    when = run_time or datetime.now(UTC)
    stage_rank: dict[str, int] = {}
    for r in results:
        stage_rank.setdefault(r.stage, len(stage_rank))
    ordered = sorted(results, key=lambda r: (_order(r)[0], stage_rank[r.stage], r.table, r.check))
    failures = [r for r in ordered if not r.success]
    return _ENV.get_template("report.html.j2").render(
        run_id=run_id,
        run_time=when.strftime("%Y-%m-%d %H:%M:%S %Z").strip(),
        n_checks=len(results),
        n_passed=sum(1 for r in results if r.success),
        n_tables=len({(r.stage, r.table) for r in results}),
        critical=[r for r in failures if r.severity is Severity.CRITICAL],
        warnings=[r for r in failures if r.severity is Severity.WARNING],
        failures=failures,
        stages=_groups(results),
        version=_version(),
    )
