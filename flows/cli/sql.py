"""``osteolake sql``: run SQL against the warehouse catalog (read-only); never starts Prefect."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from flows.cli.common import console, fail

MAX_TABLE_ROWS = 200


def register(app: typer.Typer) -> None:
    @app.command()
    def sql(
        query: str = typer.Argument(..., help="SQL to run (DuckDB dialect), e.g. \"select count(*) from series\""),
        warehouse: Path | None = typer.Option(None, "--warehouse", help="warehouse folder (default: settings)"),
        fmt: str = typer.Option("table", "--format", help="table | csv | parquet | json"),
        out: Path | None = typer.Option(None, "--out", help="write the result to FILE (needed for parquet)"),
    ) -> None:
        """Query WH/osteolake.duckdb read-only and print a table, or write CSV, Parquet or JSON."""
        from rich.table import Table

        from flows.settings import SettingsError, load_settings
        from warehouse.query import OutputFormat, run_query, write_result

        try:
            form = OutputFormat(fmt)
        except ValueError:
            fail(f"--format {fmt!r}: expected one of table, csv, parquet, json")
        if form is OutputFormat.PARQUET and out is None:
            fail("--format parquet needs --out FILE")
        try:
            root = warehouse if warehouse is not None else load_settings().warehouse
        except (SettingsError, ValueError) as e:
            fail(str(e))
        if not (root / "osteolake.duckdb").is_file():
            fail(f"--warehouse {root}: no osteolake.duckdb there (run a refresh first)")
        try:
            result = run_query(root, query)
        except (ValueError, FileNotFoundError) as e:
            fail(str(e), code=1)
        if form is OutputFormat.TABLE:
            if out is not None:
                fail("--out needs --format csv, parquet or json")
            table = Table(show_header=True, header_style="bold")
            for name in result.column_names:
                table.add_column(name)
            for row in result.slice(0, MAX_TABLE_ROWS).to_pylist():
                table.add_row(*("" if v is None else str(v) for v in row.values()))
            console.print(table)
            more = result.num_rows - MAX_TABLE_ROWS
            tail = f" (first {MAX_TABLE_ROWS} shown; use --format csv for all)" if more > 0 else ""
            console.print(f"{result.num_rows} row{'s' if result.num_rows != 1 else ''}{tail}", style="dim")
            return
        write_result(result, form, out if out is not None else sys.stdout)
        if out is not None:
            console.print(f"wrote {result.num_rows} rows to {out}", style="dim")
