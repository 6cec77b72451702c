"""``osteolake refresh``: run the nightly refresh now (one Prefect flow on a Dask cluster)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from flows.cli.common import console, err_console, fail


def register(app: typer.Typer) -> None:
    @app.command()
    def refresh(
        archive: list[str] = typer.Option(None, "--archive", help="DICOM source (folder, glob, fsspec URL, "
                                          "dicomweb+http://...); repeat for several"),
        omop: str | None = typer.Option(None, "--omop", help="OMOP CDM folder or postgresql://user@host:port/db"),
        warehouse: Path | None = typer.Option(None, "--warehouse", help="warehouse folder"),
        dask_address: str | None = typer.Option(None, "--dask-address", help="existing Dask scheduler"),
        workers: int | None = typer.Option(None, "--workers", min=1, help="LocalCluster workers (default 2)"),
        demo_key: bool = typer.Option(
            False, "--demo-key", help="synthetic data only: create a throw-away pseudonymisation key beside the "
            "warehouse when none is configured"),
        json_out: bool = typer.Option(False, "--json", help="print the run summary as JSON"),
    ) -> None:
        """Ingest, extract, join OMOP, build the cohort, fit models, check quality and publish a snapshot."""
        from flows.settings import SettingsError, demo_key_file, load_settings

        try:
            settings = load_settings(archives=archive or None, omop=omop, warehouse=warehouse,
                                     dask_address=dask_address, workers=workers)
            if demo_key and settings.pseudonym_key is None and settings.pseudonym_key_file is None:
                path = demo_key_file(settings.warehouse.resolve().parent)
                settings.pseudonym_key_file = path
                err_console.print(f"[yellow]demo:[/] created a throw-away pseudonymisation key at {path} "
                                  "(synthetic data only; a real site sets OSTEOLAKE_PSEUDONYM_KEY_FILE)")
            settings.key_bytes()
        except (SettingsError, ValueError) as e:
            fail(str(e))
        from flows.nightly_refresh import nightly_refresh

        result = nightly_refresh.with_options(log_prints=True)(
            archives=settings.archives, omop=settings.omop, warehouse=str(settings.warehouse),
            dask_address=settings.dask_address, workers=settings.workers,
            key_file=str(settings.pseudonym_key_file) if settings.pseudonym_key_file else None,
        )
        if json_out:
            print(json.dumps(result, indent=2, default=str))
        else:
            print_summary(result)
        if result.get("blocked_by"):
            raise typer.Exit(3)


def print_summary(result: dict) -> None:  # type: ignore[type-arg]
    from rich.table import Table

    table = Table(title=f"refresh {result['run_id']}")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("counts")
    for name, counts in result["stages"].items():
        rest = ", ".join(f"{k}={v}" for k, v in counts.items() if k != "seconds")
        table.add_row(name, f"{counts.get('seconds', 0):.1f}", rest)
    console.print(table)
    if result.get("published_snapshot"):
        console.print(f"published snapshot [bold]{result['published_snapshot']}[/]")
    else:
        console.print("[bold red]publish blocked[/]: " + "; ".join(result.get("blocked_by", [])))
    console.print(f"data-quality report: {result.get('report_path')}")
    for card in result.get("model_cards", []):
        console.print(f"model card: {card}")
