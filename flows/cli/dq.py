"""``osteolake dq``: the data-quality results of the latest run (or a given one), without starting Prefect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from flows.cli.common import console, fail


def _root(warehouse: Path | None) -> Path:
    from flows.settings import SettingsError, load_settings

    try:
        return warehouse if warehouse is not None else load_settings().warehouse
    except (SettingsError, ValueError) as e:
        fail(str(e))


def _report_of(wh: Any, run_id: str) -> Path | None:
    """The run's HTML report: the path its run summary names, else the ``WH/reports`` convention."""
    import pyarrow.compute as pc

    try:
        runs = wh.read("run_summaries")
    except KeyError:  # run log not declared in this build
        runs = None
    if runs is not None and runs.num_rows and "summary_json" in runs.column_names:
        mine = runs.filter(pc.equal(runs.column("run_id"), run_id))
        for text in reversed(mine.column("summary_json").to_pylist()):
            try:
                path = json.loads(text or "{}").get("report_path")
            except json.JSONDecodeError:
                continue
            if path and Path(path).is_file():
                return Path(path)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)
    for candidate in (wh.root / "reports" / f"dq-{safe}.html", wh.root / "files" / "reports" / "dq" / f"{safe}.html"):
        if candidate.is_file():
            return Path(candidate)
    return None


def register(app: typer.Typer) -> None:
    @app.command()
    def dq(
        warehouse: Path | None = typer.Option(None, "--warehouse", help="warehouse folder (default: settings)"),
        run: str | None = typer.Option(None, "--run", help="run id (default: the latest run with results)"),
        show_all: bool = typer.Option(False, "--all", help="list passed checks too"),
    ) -> None:
        """Show the data-quality results of the latest run: failures first, and where its HTML report is."""
        import pyarrow.compute as pc
        from rich.table import Table

        from tasks.quality import Severity, results_from_table
        from warehouse.lake import Warehouse

        root = _root(warehouse)
        if not root.is_dir():
            fail(f"--warehouse {root}: no such folder")
        wh = Warehouse(root)
        rows = wh.read("dq_results")
        if rows.num_rows == 0:
            fail(f"no data-quality results recorded in {root} yet (run `osteolake refresh` first)", code=1)
        if run is None:
            latest = pc.max(rows.column("run_time")).as_py()
            at_latest = rows.filter(pc.equal(rows.column("run_time"), latest))
            run_id = str(at_latest.column("run_id")[at_latest.num_rows - 1].as_py())
        else:
            run_id = run
        mine = rows.filter(pc.equal(rows.column("run_id"), run_id))
        if mine.num_rows == 0:
            known = sorted(set(rows.column("run_id").to_pylist()))[-5:]
            fail(f"--run {run_id}: no results recorded; recent runs: {', '.join(known)}", code=1)

        results = results_from_table(mine)
        rank = {Severity.CRITICAL: 0, Severity.WARNING: 1}
        results.sort(key=lambda r: (r.success, rank[r.severity], r.stage, r.table, r.check))
        failed = [r for r in results if not r.success]
        critical = [r for r in failed if r.severity is Severity.CRITICAL]
        shown = results if show_all else failed

        run_time = mine.column("run_time")[0].as_py()
        table = Table(title=f"data quality — run {run_id} ({run_time:%Y-%m-%d %H:%M} UTC)", show_lines=False)
        for col, kw in (("result", {}), ("stage", {}), ("table", {}), ("check", {"overflow": "fold"}),
                        ("observed", {}), ("details", {"overflow": "fold"})):
            table.add_column(col, **kw)  # type: ignore[arg-type]
        for r in shown:
            if r.success:
                badge = "[green]pass[/]"
            else:
                badge = "[bold red]CRITICAL[/]" if r.severity is Severity.CRITICAL else "[yellow]warning[/]"
            table.add_row(badge, r.stage, r.table, r.check, r.observed or "", r.details or "")
        if shown:
            console.print(table)
        n = len(results)
        console.print(f"{n} checks: {n - len(failed)} passed, {len(critical)} critical failures, "
                      f"{len(failed) - len(critical)} warnings")
        if critical:
            console.print("[bold red]publish blocked[/] by critical failures; the previous snapshot stayed current")
        report = _report_of(wh, run_id)
        console.print(f"report: {report}" if report else "report: (no HTML report stored for this run)",
                      soft_wrap=True)
