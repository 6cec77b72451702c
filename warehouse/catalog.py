"""The analysts' DuckDB catalog: views over one snapshot's Parquet files plus the SQL models.

:func:`build_catalog` writes a fresh ``.duckdb`` file (the caller renames it into place). It holds

- schemas ``bronze``, ``silver``, ``marts``: one view per declared table (typed and empty when the snapshot
  has no rows for it), named after the table; unqualified views in ``main`` with the same names;
- ``dq_results`` and ``run_summaries``: the append-only run log (every recorded run), copied into tables
  inside the catalog (refreshed by every :meth:`~warehouse.lake.Warehouse.record_run`, see
  :mod:`warehouse.runlog`), so queries over it never open the log's Parquet files;
- schema ``staging`` (``warehouse/sql/staging/*.sql``, views) and the mart models (``warehouse/sql/marts/*.sql``,
  materialised as tables once per publish unless the file says ``-- config: view``), mirrored into ``main``;
- schema ``meta``: ``snapshot`` (id, root the views point at), ``tables``, ``columns`` (the data
  dictionary) and ``models`` (each SQL model's status and, when it could not be built, why).

Views use absolute file paths (DuckDB resolves relative Parquet paths against the reader's working
directory), so a moved warehouse needs a rebuild; :class:`warehouse.lake.Warehouse` does that on open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from schemas import TABLES
from schemas.core import Table
from schemas.ddl import duckdb_type, empty_select_sql, quote_ident
from warehouse import runlog

__all__ = ["build_catalog", "catalog_state", "ModelStatus", "SQL_DIR", "model_files", "table_select"]

SQL_DIR = Path(__file__).parent / "sql"
_MODEL_SCHEMAS = ("staging", "marts")


@dataclass(frozen=True)
class ModelStatus:
    """Outcome of building one SQL model view."""

    name: str
    schema: str
    path: str
    is_built: bool
    error: str | None


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def model_files(sql_dir: Path = SQL_DIR) -> list[tuple[str, Path]]:
    """``(schema, path)`` of every SQL model, staging first, sorted by name."""
    out: list[tuple[str, Path]] = []
    for schema in _MODEL_SCHEMAS:
        out.extend((schema, p) for p in sorted((sql_dir / schema).glob("*.sql")))
    return out


def table_select(con: duckdb.DuckDBPyConnection, decl: Table, paths: list[Path]) -> str:
    """SELECT of the declared columns over ``paths``; columns missing from the files come back NULL."""
    if not paths:
        return empty_select_sql(decl)
    files = "[" + ", ".join(_lit(str(p)) for p in paths) + "]"
    source = f"read_parquet({files}, union_by_name = true)"
    present = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    cols = []
    for c in decl.columns:
        want = duckdb_type(c.type)
        q = quote_ident(c.name)
        if c.name not in present:
            cols.append(f"CAST(NULL AS {want}) AS {q}")
        elif present[c.name] == want:
            cols.append(q)
        else:
            cols.append(f"CAST({q} AS {want}) AS {q}")
    return f"SELECT {', '.join(cols)} FROM {source}"


def _table_paths(root: Path, manifest: Mapping[str, Any] | None, name: str) -> list[Path]:
    if name in runlog.RUN_LOG_TABLES:
        return runlog.files(root, name)
    if manifest is None:
        return []
    entry = manifest["tables"].get(name)
    return [root / f["path"] for f in entry["files"]] if entry else []


def _build_models(
    con: duckdb.DuckDBPyConnection, sql_dir: Path, taken: set[str], materialise: bool
) -> list[ModelStatus]:
    pending = model_files(sql_dir)
    errors: dict[Path, str] = {}
    built: list[ModelStatus] = []
    progress = True
    while pending and progress:  # models may depend on each other: retry until nothing more builds
        progress = False
        for schema, path in list(pending):
            body = path.read_text().strip().rstrip(";")
            name = path.stem
            as_view = "-- config: view" in body
            kind = "TABLE" if materialise and schema == "marts" and not as_view else "VIEW"
            try:
                con.execute(f"CREATE {kind} {quote_ident(schema)}.{quote_ident(name)} AS\n{body}")
            except duckdb.Error as e:
                errors[path] = str(e).splitlines()[0]
                continue
            pending.remove((schema, path))
            progress = True
            built.append(ModelStatus(name, schema, str(path.relative_to(sql_dir)), True, None))
            if name not in taken:
                con.execute(f"CREATE VIEW main.{quote_ident(name)} AS SELECT * FROM {quote_ident(schema)}.{quote_ident(name)}")
                taken.add(name)
    failed = [ModelStatus(p.stem, s, str(p.relative_to(sql_dir)), False, errors.get(p)) for s, p in pending]
    return built + failed


def build_catalog(
    root: Path,
    manifest: Mapping[str, Any] | None,
    out: Path,
    *,
    tables: Mapping[str, Table] | None = None,
    sql_dir: Path = SQL_DIR,
    materialise_marts: bool = True,
) -> list[ModelStatus]:
    """Write a new catalog for ``manifest`` (``None``: no snapshot yet) at ``out``.

    Parameters
    ----------
    root
        The warehouse folder (absolute); the views point at files under it.
    manifest
        The snapshot manifest (see :mod:`warehouse.lake`).
    out
        Path of the new DuckDB file; must not exist.
    tables
        Declared tables (default: the registry).
    sql_dir
        Folder with ``staging/`` and ``marts/`` SQL models.
    materialise_marts
        Store the mart models as tables inside the catalog (computed once per publish, fast to query)
        rather than as views recomputed by every query. Staging models, and marts whose file contains the
        line ``-- config: view`` (those over the run log, which grows between publishes), are views.

    Returns
    -------
    list of ModelStatus
        One per SQL model; a model whose inputs are missing is reported here (and in ``meta.models``),
        not raised.
    """
    tables = dict(TABLES if tables is None else tables)
    con = duckdb.connect(str(out))
    try:
        for schema in ("bronze", "silver", "marts", "staging", "meta"):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        taken: set[str] = set()
        table_rows = []
        col_rows = []
        for name in sorted(tables):
            decl = tables[name]
            paths = _table_paths(root, manifest, name)
            layer = decl.layer.value
            if name in runlog.RUN_LOG_TABLES:
                runlog.materialise(con, root, decl)
            else:
                con.execute(f"CREATE VIEW {layer}.{quote_ident(name)} AS {table_select(con, decl, paths)}")
            con.execute(f"CREATE VIEW main.{quote_ident(name)} AS SELECT * FROM {layer}.{quote_ident(name)}")
            taken.add(name)
            if name in runlog.RUN_LOG_TABLES or manifest is None:
                rows = None
            else:
                entry = manifest["tables"].get(name)
                rows = sum(int(f["rows"]) for f in entry["files"]) if entry else 0
            table_rows.append((name, layer, decl.grain, decl.description, ",".join(decl.key), rows, len(paths)))
            for c in decl.columns:
                col_rows.append((name, c.name, duckdb_type(c.type), c.unit, c.nullable, c.min, c.max,
                                 None if c.allowed is None else ", ".join(map(str, c.allowed)),
                                 c.phi.value, c.description))
        con.execute("CREATE TABLE meta.tables (table_name VARCHAR, layer VARCHAR, grain VARCHAR, "
                    "description VARCHAR, key_columns VARCHAR, n_rows BIGINT, n_files INTEGER)")
        if table_rows:
            con.executemany("INSERT INTO meta.tables VALUES (?, ?, ?, ?, ?, ?, ?)", table_rows)
        con.execute("CREATE TABLE meta.columns (table_name VARCHAR, column_name VARCHAR, data_type VARCHAR, "
                    "unit VARCHAR, is_nullable BOOLEAN, min_value DOUBLE, max_value DOUBLE, "
                    "allowed_values VARCHAR, phi_class VARCHAR, description VARCHAR)")
        if col_rows:
            con.executemany("INSERT INTO meta.columns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", col_rows)
        models = _build_models(con, sql_dir, taken, materialise_marts)
        con.execute("CREATE TABLE meta.models (model_name VARCHAR, schema_name VARCHAR, path VARCHAR, "
                    "is_built BOOLEAN, error VARCHAR)")
        if models:
            con.executemany("INSERT INTO meta.models VALUES (?, ?, ?, ?, ?)",
                            [(m.name, m.schema, m.path, m.is_built, m.error) for m in models])
        con.execute("CREATE TABLE meta.snapshot (snapshot_id VARCHAR, root VARCHAR, run_id VARCHAR, "
                    "created_at VARCHAR, built_at TIMESTAMPTZ)")
        con.execute(
            "INSERT INTO meta.snapshot VALUES (?, ?, ?, ?, ?)",
            [
                None if manifest is None else manifest["id"],
                str(root),
                None if manifest is None else manifest["run_id"],
                None if manifest is None else manifest["created_at"],
                datetime.now(UTC),
            ],
        )
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return models


def catalog_state(path: Path) -> tuple[str, str | None] | None:
    """``(root, snapshot_id)`` recorded in the catalog at ``path``; ``None`` if absent or unreadable."""
    if not path.exists():
        return None
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return None
    try:
        rows = con.execute("SELECT root, snapshot_id FROM meta.snapshot").fetchall()
    except duckdb.Error:
        return None
    finally:
        con.close()
    if not rows:
        return None
    root, sid = rows[0]
    return str(root), None if sid is None else str(sid)
