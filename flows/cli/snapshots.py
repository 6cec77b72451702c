"""``osteolake snapshots`` and ``osteolake rollback``: list snapshots, make an older one current.

Also registers ``osteolake export-omop`` (see :mod:`flows.cli.export`). None of these start Prefect.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from flows.cli.common import console, fail


def _root(warehouse: Path | None) -> Path:
    from flows.settings import SettingsError, load_settings

    try:
        return warehouse if warehouse is not None else load_settings().warehouse
    except (SettingsError, ValueError) as e:
        fail(str(e))


def _keep(keep: int | None) -> int:
    from flows.settings import load_settings

    return keep if keep is not None else load_settings().keep_snapshots


def register(app: typer.Typer) -> None:
    @app.command()
    def snapshots(
        warehouse: Path | None = typer.Option(None, "--warehouse", help="warehouse folder (default: settings)"),
        as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    ) -> None:
        """List the kept snapshots of a warehouse, oldest first; * marks the current one."""
        from rich.table import Table

        from warehouse.lake import Warehouse

        root = _root(warehouse)
        if not root.is_dir():
            fail(f"--warehouse {root}: no such folder")
        snaps = Warehouse(root, keep=_keep(None)).snapshots()
        if as_json:
            console.print_json(json.dumps([
                {"id": s.id, "created_at": s.created_at.isoformat(), "run_id": s.run_id, "parent": s.parent,
                 "is_current": s.is_current, "tables": s.tables, "meta": s.meta} for s in snaps
            ], default=str))
            return
        table = Table(show_header=True, header_style="bold")
        table.add_column("")
        table.add_column("snapshot", no_wrap=True, min_width=29)
        for col in ("created (UTC)", "run", "tables", "rows"):
            table.add_column(col)
        for s in snaps:
            table.add_row("*" if s.is_current else "", s.id, s.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                          s.run_id, str(len(s.tables)), str(sum(s.tables.values())))
        console.print(table)
        if not snaps:
            console.print("no snapshots yet", style="dim")

    @app.command()
    def rollback(
        snapshot_id: str = typer.Argument(..., help="id of the snapshot to make current (see `osteolake snapshots`)"),
        warehouse: Path | None = typer.Option(None, "--warehouse", help="warehouse folder (default: settings)"),
    ) -> None:
        """Make an older snapshot current again (rebuilds WH/osteolake.duckdb; deletes nothing)."""
        from warehouse.lake import Warehouse

        root = _root(warehouse)
        if not root.is_dir():
            fail(f"--warehouse {root}: no such folder")
        wh = Warehouse(root, keep=_keep(None))
        try:
            info = wh.rollback(snapshot_id)
        except KeyError as e:
            fail(str(e.args[0]))
        console.print(f"current snapshot is now [bold]{info.id}[/] (run {info.run_id}, {info.created_at:%Y-%m-%d %H:%M:%S} UTC)")

    from flows.cli import export

    export.register(app)
