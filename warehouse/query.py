"""Read-only SQL over a warehouse's catalog, and writers for the result formats of ``osteolake sql``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from schemas.enums import StrValueEnum
from warehouse.lake import CATALOG_NAME, Warehouse

__all__ = ["OutputFormat", "connect", "run_query", "write_result"]


class OutputFormat(StrValueEnum):
    """Result formats of ``osteolake sql``; accepts the member or its string value."""

    TABLE = "table"
    CSV = "csv"
    PARQUET = "parquet"
    JSON = "json"



def connect(warehouse: Path | str) -> duckdb.DuckDBPyConnection:
    """Open ``WH/osteolake.duckdb`` read-only, as an analyst would.

    Opening goes through :class:`~warehouse.lake.Warehouse` first, so a moved warehouse gets its views
    re-pointed before the query runs.

    Raises
    ------
    FileNotFoundError
        When ``warehouse`` has no catalog yet (nothing was published or recorded).
    """
    root = Path(warehouse)
    Warehouse(root)
    path = root / CATALOG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"warehouse {root}: no {CATALOG_NAME} (run a refresh first)")
    return duckdb.connect(str(path), read_only=True)


def run_query(warehouse: Path | str, sql: str) -> pa.Table:
    """Run ``sql`` against the warehouse's catalog (read-only) and return the result as Arrow.

    Raises
    ------
    ValueError
        When DuckDB rejects the query (the message is DuckDB's).
    """
    con = connect(warehouse)
    try:
        try:
            return con.sql(sql).to_arrow_table()
        except duckdb.Error as e:
            raise ValueError(f"query failed: {e}") from e
    finally:
        con.close()


def _json_default(v: object) -> str:
    return str(v)


def write_result(result: pa.Table, fmt: OutputFormat | str, out: Path | IO[str] | None) -> None:
    """Write ``result`` as CSV, Parquet or JSON records to ``out`` (a path, or a text stream for CSV/JSON).

    Parquet needs a path. The ``table`` format is rendered by the CLI, not here.
    """
    fmt = OutputFormat(fmt)
    if fmt is OutputFormat.TABLE:
        raise ValueError("format 'table' is printed by the CLI; write_result handles csv, parquet, json")
    if fmt is OutputFormat.PARQUET:
        if not isinstance(out, Path):
            raise ValueError("--format parquet needs --out FILE")
        pq.write_table(result, out, compression="zstd")
        return
    if fmt is OutputFormat.CSV:
        if isinstance(out, Path):
            pacsv.write_csv(result, out)
            return
        sink = pa.BufferOutputStream()
        pacsv.write_csv(result, sink)
        text = sink.getvalue().to_pybytes().decode()
    else:
        text = json.dumps(result.to_pylist(), default=_json_default, indent=1) + "\n"
    if isinstance(out, Path):
        out.write_text(text)
    elif out is not None:
        out.write(text)
