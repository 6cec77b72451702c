"""``osteolake ingest SOURCE --warehouse WH``: index a DICOM archive on its own (no Prefect server)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from flows.cli.common import console, fail, progress_bar


def register(app: typer.Typer) -> None:
    @app.command()
    def ingest(
        source: str = typer.Argument(..., help="folder, glob, fsspec URL (s3://, file://) or dicomweb+http(s)://"),
        warehouse: Path | None = typer.Option(None, "--warehouse", help="lake folder (default: settings)"),
        workers: int | None = typer.Option(None, "--workers", min=1, help="Dask LocalCluster worker processes"),
        dask_address: str | None = typer.Option(None, "--dask-address", help="existing Dask scheduler"),
        batch_size: int | None = typer.Option(
            None, "--batch-size", min=1, help="files per batch (default: 256 in this process, 2048 on Dask)"),
        as_json: bool = typer.Option(False, "--json", help="print the summary as JSON on stdout"),
    ) -> None:
        """Index new and changed DICOM files into instances, series, studies, quarantine (bronze)."""
        from flows.ingest_archive import ingest_archive_core
        from flows.settings import SettingsError, load_settings

        try:
            settings = load_settings(warehouse=warehouse, workers=workers, dask_address=dask_address)
            key = settings.key_bytes()
        except (SettingsError, ValueError) as e:
            fail(str(e))
        with progress_bar("ingesting", None) as bar:
            task = bar.task_ids[0]

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            try:
                out = ingest_archive_core(
                    source, settings.warehouse, key, workers=settings.workers if workers else 1,
                    dask_address=settings.dask_address, issuer=settings.issuer, batch_size=batch_size,
                    progress=advance,
                )
            except FileNotFoundError as e:
                fail(str(e))
        if as_json:
            print(json.dumps(out, default=str))
            return
        q = out["quarantined"]
        console.print(
            f"seen {out['seen']}  new {out['new']}  changed {out['changed']}  unchanged {out['unchanged']}  "
            f"indexed {out['indexed']}  duplicates {out['duplicates']}  quarantined {sum(q.values())}"
        )
        if q:
            console.print("  quarantined by reason: " + ", ".join(f"{k} {v}" for k, v in q.items()))
        console.print(
            f"read {out['read']} files in {out['seconds']:.1f} s ({out['files_per_second']:.0f} files/s, "
            f"{out['fast_parsed']} on the fast path)"
            + (f"; published snapshot {out['snapshot_id']}" if out.get("snapshot_id") else "; nothing to publish")
        )
