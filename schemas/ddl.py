"""DuckDB and PostgreSQL DDL generated from the table declarations.

The Arrow type of each declared column maps to one SQL type per engine; everything the warehouse builds
(typed empty views, PostgreSQL tables for the benchmark and the OMOP export) comes from these functions.
"""

from __future__ import annotations

import pyarrow as pa

from schemas.core import Table

__all__ = [
    "duckdb_type",
    "postgres_type",
    "quote_ident",
    "create_table_sql",
    "empty_select_sql",
    "conform_select_sql",
]


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (double quotes, doubled inside)."""
    return '"' + name.replace('"', '""') + '"'


def duckdb_type(t: pa.DataType) -> str:
    """The DuckDB type of an Arrow type.

    Raises
    ------
    ValueError
        When the Arrow type has no DuckDB equivalent here (the message names the type).
    """
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_int8(t):
        return "TINYINT"
    if pa.types.is_int16(t):
        return "SMALLINT"
    if pa.types.is_int32(t):
        return "INTEGER"
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_uint8(t):
        return "UTINYINT"
    if pa.types.is_uint16(t):
        return "USMALLINT"
    if pa.types.is_uint32(t):
        return "UINTEGER"
    if pa.types.is_uint64(t):
        return "UBIGINT"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "FLOAT"
    if pa.types.is_float64(t):
        return "DOUBLE"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision},{t.scale})"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "VARCHAR"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "BLOB"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP WITH TIME ZONE" if t.tz else "TIMESTAMP"
    if pa.types.is_time(t):
        return "TIME"
    if pa.types.is_duration(t):
        return "INTERVAL"
    if pa.types.is_dictionary(t):
        return duckdb_type(t.value_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"{duckdb_type(t.value_type)}[]"
    if pa.types.is_fixed_size_list(t):
        return f"{duckdb_type(t.value_type)}[{t.list_size}]"
    if pa.types.is_struct(t):
        inner = ", ".join(f"{quote_ident(f.name)} {duckdb_type(f.type)}" for f in t)
        return f"STRUCT({inner})"
    if pa.types.is_map(t):
        return f"MAP({duckdb_type(t.key_type)}, {duckdb_type(t.item_type)})"
    raise ValueError(f"Arrow type {t} has no DuckDB mapping in schemas.ddl")


def postgres_type(t: pa.DataType) -> str:
    """The PostgreSQL type of an Arrow type (lists become arrays, structs and maps ``jsonb``)."""
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return "smallint"
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "integer"
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return "bigint"
    if pa.types.is_uint64(t):
        return "numeric(20,0)"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "real"
    if pa.types.is_float64(t):
        return "double precision"
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "text"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "bytea"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_duration(t):
        return "interval"
    if pa.types.is_dictionary(t):
        return postgres_type(t.value_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return f"{postgres_type(t.value_type)}[]"
    if pa.types.is_struct(t) or pa.types.is_map(t):
        return "jsonb"
    raise ValueError(f"Arrow type {t} has no PostgreSQL mapping in schemas.ddl")


def create_table_sql(table: Table, *, schema: str | None = None, dialect: str = "duckdb") -> str:
    """``CREATE TABLE`` for a declared table, with NOT NULL and the primary key where declared.

    Parameters
    ----------
    table
        The declaration.
    schema
        SQL schema to qualify the name with (none: unqualified).
    dialect
        ``"duckdb"`` or ``"postgres"``.
    """
    if dialect not in ("duckdb", "postgres"):
        raise ValueError(f"dialect {dialect!r}: expected 'duckdb' or 'postgres'")
    typer = duckdb_type if dialect == "duckdb" else postgres_type
    name = quote_ident(table.name) if schema is None else f"{quote_ident(schema)}.{quote_ident(table.name)}"
    lines = []
    for c in table.columns:
        null = "" if c.nullable else " NOT NULL"
        lines.append(f"    {quote_ident(c.name)} {typer(c.type)}{null}")
    if table.key:
        lines.append(f"    PRIMARY KEY ({', '.join(quote_ident(k) for k in table.key)})")
    return f"CREATE TABLE {name} (\n" + ",\n".join(lines) + "\n)"


def empty_select_sql(table: Table) -> str:
    """A DuckDB ``SELECT`` with the declared columns and types and no rows (for typed empty views)."""
    cols = ", ".join(f"CAST(NULL AS {duckdb_type(c.type)}) AS {quote_ident(c.name)}" for c in table.columns)
    return f"SELECT {cols} WHERE false"


def conform_select_sql(table: Table, source: str) -> str:
    """A DuckDB ``SELECT`` of the declared columns, in order and cast to their types, from ``source``.

    ``source`` is any FROM item (a table name or a ``read_parquet(...)`` call); every declared column must
    be present in it.
    """
    cols = ", ".join(f"CAST({quote_ident(c.name)} AS {duckdb_type(c.type)}) AS {quote_ident(c.name)}" for c in table.columns)
    return f"SELECT {cols} FROM {source}"
