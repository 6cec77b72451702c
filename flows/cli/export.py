"""``osteolake export-omop``: the current snapshot as OMOP MI-CDM tables (CSV folder or PostgreSQL).

The person_id mapping reads the site's OMOP person table (``--omop``, folder or ``postgresql://`` URL) and
maps ``person_source_value`` through the pseudonymisation key to ``person_key``. Never starts Prefect.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from flows.cli.common import console, fail


def person_map_from_omop(omop: str, key: bytes, issuer: str | None) -> object:
    """``(person_id, person_key)`` as Arrow from an OMOP source's person table."""
    import polars as pl

    from tasks.clinical.source import omop_source
    from tasks.privacy import person_key

    persons = omop_source(omop).read("person").select("person_id", "person_source_value").collect()
    keys = [None if v is None else person_key(key, str(v), issuer) for v in persons["person_source_value"]]
    return persons.select(pl.col("person_id").cast(pl.Int64)).with_columns(
        pl.Series("person_key", keys, dtype=pl.String)).to_arrow()


def register(app: typer.Typer) -> None:
    @app.command("export-omop")
    def export_omop_cmd(
        to: str = typer.Option(..., "--to", help="output folder for CSV, or postgresql://...?schema=cdm"),
        warehouse: Path | None = typer.Option(None, "--warehouse", help="warehouse folder (default: settings)"),
        omop: str | None = typer.Option(None, "--omop", help="OMOP source with the person table (default: settings)"),
        id_offset: int = typer.Option(0, "--id-offset", min=0, help="added to every generated OMOP id"),
        concepts: Path | None = typer.Option(None, "--concepts", help="JSON {source_value: concept_id}"),
    ) -> None:
        """Write IMAGE_OCCURRENCE, IMAGE_FEATURE, MEASUREMENT and PROCEDURE_OCCURRENCE for the current snapshot."""
        import pyarrow as pa

        from flows.settings import SettingsError, load_settings
        from warehouse.lake import CATALOG_NAME, Warehouse
        from warehouse.omop_export import export_omop

        try:
            settings = load_settings(warehouse=warehouse, omop=omop)
            key = settings.key_bytes()
        except (SettingsError, ValueError) as e:
            fail(str(e))
        if settings.omop is None:
            fail("--omop is needed: the OMOP source whose person table maps person_key to person_id")
        Warehouse(settings.warehouse)
        catalog = settings.warehouse / CATALOG_NAME
        if not catalog.is_file():
            fail(f"--warehouse {settings.warehouse}: no {CATALOG_NAME} (run a refresh first)")
        mapping = None
        if concepts is not None:
            try:
                mapping = {str(k): int(v) for k, v in json.loads(concepts.read_text()).items()}
            except (OSError, ValueError, AttributeError) as e:
                fail(f"--concepts {concepts}: expected a JSON object of source value -> concept id ({e})")
        try:
            pmap = person_map_from_omop(settings.omop, key, settings.issuer)
            assert isinstance(pmap, pa.Table)
            result = export_omop(catalog, pmap, to, id_offset=id_offset, concepts=mapping)
        except (ValueError, OSError) as e:
            fail(str(e), code=1)
        for name, n in result.rows.items():
            console.print(f"  {name}: {n}")
        if result.unmapped_series:
            console.print(f"  {result.unmapped_series} series left out: their person is not in the OMOP person table",
                          style="yellow")
        console.print(f"exported to {result.target}")
