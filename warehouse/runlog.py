"""The append-only run log (``dq_results``, ``run_summaries``): one Parquet file per run, folded periodically.

Every run (also one whose publish was blocked) leaves its data-quality results and summary under
``WH/runs/<table>/``. The log is kept outside the snapshots and never pruned, but it is *compacted*: when a
folder holds more than ``compact_at`` files, all of them are folded into one new file (sorted by time) and
the old ones are deleted, so the log stays a handful of files however many runs it records.

The analysts' catalog does not read these files at query time: :func:`refresh_catalog` copies the run log
into tables inside ``osteolake.duckdb`` (a new copy of the catalog, renamed into place), so a query over
the run log reads one small in-catalog table rather than opening dozens of Parquet files.

Writers hold the warehouse's exclusive lock; :func:`read` takes the shared lock, so a Python reader never
sees a folder mid-compaction. Engines reading ``WH/runs`` directly (no lock) can, for the moment between
writing a folded file and deleting its inputs, see rows twice: read the catalog tables instead.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from schemas import get_table
from schemas.core import Table
from schemas.ddl import quote_ident

__all__ = ["RUN_LOG_TABLES", "COMPACT_AT", "folder", "files", "write", "compact", "read", "refresh_catalog",
           "materialise"]

#: Tables served from the run log rather than from snapshots.
RUN_LOG_TABLES = ("dq_results", "run_summaries")
#: Fold a run-log folder into one file once it holds more than this many files.
COMPACT_AT = 16


def folder(root: Path, table: str) -> Path:
    """``WH/runs/<table>``."""
    return root / "runs" / table


def files(root: Path, table: str) -> list[Path]:
    """The run log's Parquet files of ``table``, oldest first (names start with a UTC time stamp)."""
    return sorted(p for p in folder(root, table).glob("*.parquet") if not p.name.startswith("."))


def _write(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def _read_conformed(decl: Table, paths: list[Path]) -> pa.Table:
    if not paths:
        return decl.empty()
    parts = []
    for p in paths:
        t = pq.read_table(p)
        parts.append(decl.conform(t.select([n for n in t.column_names if n in decl.column_names])))
    return pa.concat_tables(parts)


def write(root: Path, table: str, stamp: str, run: str, rows: pa.Table) -> Path:
    """Write one run's rows of ``table`` as ``WH/runs/<table>/<stamp>-<run>.parquet`` (caller holds the lock)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run)
    path = folder(root, table) / f"{stamp}-{safe}.parquet"
    _write(path, rows)
    return path


def compact(root: Path, table: str, compact_at: int = COMPACT_AT) -> Path | None:
    """Fold the folder of ``table`` into one file when it holds more than ``compact_at`` files.

    The caller holds the warehouse's exclusive lock. The new file is named after the newest input (so
    time order by name is kept) with a ``-folded`` suffix; the inputs are deleted after it is in place.

    Returns
    -------
    Path or None
        The folded file, or ``None`` when there was nothing to do.
    """
    if compact_at < 1:
        raise ValueError(f"compact_at={compact_at}: must be at least 1")
    paths = files(root, table)
    if len(paths) <= compact_at:
        return None
    decl = get_table(table)
    merged = _read_conformed(decl, paths)
    order = "recorded_at" if "recorded_at" in decl.column_names else "run_time"
    if order in decl.column_names:
        merged = merged.sort_by([(order, "ascending")])
    stem = paths[-1].stem.split("-folded")[0]
    out = folder(root, table) / f"{stem}-folded-{uuid.uuid4().hex[:6]}.parquet"
    _write(out, merged)
    for p in paths:
        p.unlink(missing_ok=True)
    return out


def read(root: Path, table: str) -> pa.Table:
    """All recorded rows of ``table`` (conformed to its declaration). The caller holds a shared lock."""
    return _read_conformed(get_table(table), files(root, table))


def materialise(con: duckdb.DuckDBPyConnection, root: Path, decl: Table) -> None:
    """(Re)create ``<layer>.<table>`` inside the catalog as a table holding the whole run log of ``decl``."""
    from warehouse.catalog import table_select

    paths = files(root, decl.name)
    target = f"{decl.layer.value}.{quote_ident(decl.name)}"
    con.execute(f"CREATE OR REPLACE TABLE {target} AS {table_select(con, decl, paths)}")


#: Marts over the run log only: recomputed (as tables) each time the run log is copied into the catalog.
RUN_LOG_MODELS = ("dq_failures_recent",)


def refresh_models(con: duckdb.DuckDBPyConnection) -> None:
    """Recompute the :data:`RUN_LOG_MODELS` marts inside the catalog from its run-log tables."""
    from warehouse.catalog import SQL_DIR

    for name in RUN_LOG_MODELS:
        sql = (SQL_DIR / "marts" / f"{name}.sql").read_text()
        con.execute(f"CREATE OR REPLACE TABLE marts.{quote_ident(name)} AS {sql}")


def refresh_catalog(root: Path, catalog: Path) -> bool:
    """Copy the run log into a new copy of ``catalog`` and rename it into place (caller holds the lock).

    Returns ``False`` (and changes nothing) when the catalog is missing or does not hold the run-log tables
    as tables (built by an older version): the caller then rebuilds the catalog from scratch.
    """
    if not catalog.is_file():
        return False
    tmp = catalog.with_name(f".{catalog.name}.tmp-{uuid.uuid4().hex}")
    try:
        shutil.copyfile(catalog, tmp)
        con = duckdb.connect(str(tmp))
        try:
            kinds = dict(con.execute(
                "select table_name, schema_name from duckdb_tables() where table_name in ('dq_results', "
                "'run_summaries') and database_name = current_database()").fetchall())
            if set(kinds) != set(RUN_LOG_TABLES):
                return False
            for name in RUN_LOG_TABLES:
                materialise(con, root, get_table(name))
            refresh_models(con)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, catalog)
        return True
    finally:
        for p in (tmp, tmp.with_name(tmp.name + ".wal")):
            p.unlink(missing_ok=True)
